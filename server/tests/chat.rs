//! Chat over the real server: messages, history, resume, typing, joins and leaves, presence.

mod common;

use common::{Client, TestServer};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn two_users_chat_in_a_room() {
    let server = TestServer::start().await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("general").await;
    ben.join("general").await;

    let ack = ana.say("general", "hello <b>Ben</b>", "c-1").await;
    let id = ack["id"].as_str().unwrap().to_string();
    assert_eq!(ack["roomId"], "general");

    let message = ben.expect("message").await;
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["content"], "hello <b>Ben</b>");
    assert_eq!(message["name"], "Ana");
    assert_eq!(message["userId"], ana.user_id.as_str());
    assert_eq!(message["roomId"], "general");
    assert_eq!(message["clientMsgId"], "c-1");
    assert!(message["serverId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(message["timestamp"].as_u64().unwrap() > 1_600_000_000_000);

    // The sender's own connection is confirmed by the ack, not sent its message again.
    ana.expect_silence(Duration::from_millis(200)).await;

    let reply = ben.say("general", "  hi Ana  ", "c-2").await;
    let reply_message = ana.expect("message").await;
    assert_eq!(reply_message["content"], "hi Ana", "content is trimmed");
    let first = app::validate::MessageId::parse(&id).unwrap();
    let second = app::validate::MessageId::parse(reply["id"].as_str().unwrap()).unwrap();
    assert!(
        first < second,
        "a later message has a later id: {id} then {second}"
    );
    assert_eq!(
        reply_message["id"], reply["id"],
        "the ack names the delivered message"
    );
}

#[tokio::test]
async fn messages_arrive_in_order_with_increasing_ids() {
    let server = TestServer::start().await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("order").await;
    ben.join("order").await;
    for n in 0..50 {
        ana.send(json!({"type": "message", "roomId": "order", "content": format!("m{n}")}))
            .await;
    }
    let mut last: Option<app::validate::MessageId> = None;
    for n in 0..50 {
        let message = ben.expect("message").await;
        assert_eq!(message["content"], format!("m{n}"));
        let id = app::validate::MessageId::parse(message["id"].as_str().unwrap()).unwrap();
        assert!(last.is_none_or(|last| last < id), "ids increase");
        last = Some(id);
    }
}

#[tokio::test]
async fn joining_returns_the_last_messages_oldest_first() {
    let server = TestServer::start_with(|c| c.history_page = 3).await;
    let mut ana = server.client("Ana").await;
    ana.join("lobby").await;
    for n in 1..=5 {
        ana.say("lobby", &format!("m{n}"), &format!("c{n}")).await;
    }
    let mut ben = server.client("Ben").await;
    let history = ben.join("lobby").await;
    let contents = common::fields(&history["messages"], "content");
    assert_eq!(contents, ["m3", "m4", "m5"]);
    assert_eq!(history["hasMore"], true);
    assert!(
        history.get("recovered").is_none(),
        "no since, no recovered flag"
    );
    let members = common::fields(&history["members"], "name");
    assert_eq!(members, ["Ana", "Ben"]);

    // The same history over HTTP, and older pages by id.
    let page = server
        .http("GET", "/api/rooms/lobby/messages", None, &[])
        .await
        .json();
    assert_eq!(page["messages"].as_array().unwrap().len(), 3);
    let oldest = page["messages"][0]["id"].as_str().unwrap();
    let older = server
        .http(
            "GET",
            &format!("/api/rooms/lobby/messages?before={oldest}"),
            None,
            &[],
        )
        .await
        .json();
    let older = common::fields(&older["messages"], "content");
    assert_eq!(older, ["m1", "m2"]);
}

#[tokio::test]
async fn rejoining_with_since_gets_exactly_what_was_missed() {
    let server = TestServer::start_with(|c| {
        c.history_max = 10;
        c.resume_max = 4;
    })
    .await;
    let mut ana = server.client("Ana").await;
    ana.join("resume").await;
    let first = ana.say("resume", "one", "c1").await;
    let seen = first["id"].as_str().unwrap().to_string();
    ana.say("resume", "two", "c2").await;
    ana.say("resume", "three", "c3").await;

    let mut ben = server.client("Ben").await;
    ben.send(json!({"type": "join", "roomId": "resume", "since": seen}))
        .await;
    let history = ben.expect("room_history").await;
    assert_eq!(history["recovered"], true);
    let contents = common::fields(&history["messages"], "content");
    assert_eq!(contents, ["two", "three"]);

    // More missed than the resume window: not recovered, the newest instead.
    for n in 0..5 {
        ana.say("resume", &format!("more{n}"), &format!("m{n}"))
            .await;
    }
    let mut cara = server.client("Cara").await;
    cara.send(json!({"type": "join", "roomId": "resume", "since": seen}))
        .await;
    let history = cara.expect("room_history").await;
    assert_eq!(history["recovered"], false);

    // Trimmed past the position: not recovered either.
    for n in 0..10 {
        ana.say("resume", &format!("flood{n}"), &format!("f{n}"))
            .await;
    }
    let last_seen = ana.say("resume", "latest", "last").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut dan = server.client("Dan").await;
    dan.send(json!({"type": "join", "roomId": "resume", "since": seen}))
        .await;
    assert_eq!(dan.expect("room_history").await["recovered"], false);
    // Up to date: recovered with nothing to add.
    let mut eve = server.client("Eve").await;
    eve.send(json!({"type": "join", "roomId": "resume", "since": last_seen}))
        .await;
    let history = eve.expect("room_history").await;
    assert_eq!(history["recovered"], true);
    assert_eq!(history["messages"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn typing_reaches_others_throttled() {
    let server = TestServer::start_with(|c| c.typing_throttle_ms = 60_000).await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("t").await;
    ben.join("t").await;
    ana.expect("user_joined").await;

    ana.send(json!({"type": "typing", "roomId": "t", "isTyping": true}))
        .await;
    let typing = ben.expect("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "roomId": "t", "userId": ana.user_id, "name": "Ana", "isTyping": true})
    );
    // A second `true` within the throttle interval is not forwarded; `false` always is.
    ana.send(json!({"type": "typing", "roomId": "t", "isTyping": true}))
        .await;
    ana.send(json!({"type": "typing", "roomId": "t", "isTyping": false}))
        .await;
    let next = ben.recv().await;
    assert_eq!(next["type"], "typing");
    assert_eq!(next["isTyping"], false);
    ana.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn joins_and_leaves_are_announced_once_per_person() {
    let server = TestServer::start().await;
    let mut ana = server.client("Ana").await;
    ana.join("room").await;
    let mut ben = server.client("Ben").await;
    ben.join("room").await;
    let joined = ana.expect("user_joined").await;
    assert_eq!(joined["userId"], ben.user_id.as_str());
    assert_eq!(joined["name"], "Ben");

    // Ben's second tab: still one person, so no announcement.
    let mut ben_tab = server.second_tab(&ben).await;
    ben_tab.join("room").await;
    ana.expect_silence(Duration::from_millis(200)).await;
    let members = server
        .http("GET", "/api/rooms/room/members", None, &[])
        .await
        .json();
    assert_eq!(members["members"].as_array().unwrap().len(), 2);

    // Closing one tab keeps Ben present.
    ben_tab.socket.close(None).await.unwrap();
    ana.expect_silence(Duration::from_millis(200)).await;

    ben.send(json!({"type": "leave", "roomId": "room"})).await;
    let left = ana.expect("user_left").await;
    assert_eq!(left["userId"], ben.user_id.as_str());
    // Having left, Ben no longer receives the room.
    ana.say("room", "after", "a1").await;
    ben.expect_silence(Duration::from_millis(200)).await;
    ben.send(json!({"type": "message", "roomId": "room", "content": "x"}))
        .await;
    ben.expect_error("not_in_room").await;

    // A dropped connection counts as leaving.
    let mut cara = server.client("Cara").await;
    cara.join("room").await;
    ana.expect("user_joined").await;
    drop(cara);
    assert_eq!(ana.expect("user_left").await["name"], "Cara");
}

#[tokio::test]
async fn presence_endpoints_show_who_is_where() {
    let server = TestServer::start().await;
    let mut ana = server.client("Ana").await;
    let ana_tab = server.second_tab(&ana).await;
    let mut ben = server.client("Ben").await;
    ana.join("alpha").await;
    ben.join("alpha").await;
    ben.join("beta").await;

    let online = server
        .http("GET", "/api/online-users", None, &[])
        .await
        .json();
    assert_eq!(online["count"], 2, "two tabs are one person: {online}");
    let alpha = server
        .http("GET", "/api/rooms/alpha/members", None, &[])
        .await
        .json();
    assert_eq!(alpha["roomId"], "alpha");
    let names = common::fields(&alpha["members"], "name");
    assert_eq!(names, ["Ana", "Ben"]);
    let empty = server
        .http("GET", "/api/rooms/nobody-here/members", None, &[])
        .await
        .json();
    assert_eq!(empty["members"], json!([]));

    let rooms = server.http("GET", "/api/rooms", None, &[]).await.json();
    let rooms: Vec<(String, u64)> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["roomId"].as_str().unwrap().to_string(),
                r["members"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rooms, [("alpha".to_string(), 2), ("beta".to_string(), 1)]);

    let health = server.http("GET", "/health", None, &[]).await.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["engine"], "memory");
    assert_eq!(health["connections"], 3);
    assert_eq!(health["rooms"], 2);
    assert!(health["serverId"].as_str().is_some());

    drop(ana_tab);
    drop(ben);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let online = server
        .http("GET", "/api/online-users", None, &[])
        .await
        .json();
    assert_eq!(
        online["users"],
        json!([{"userId": ana.user_id, "name": "Ana"}])
    );
}

#[tokio::test]
async fn browser_cookie_and_bearer_authenticate_the_upgrade() {
    let server = TestServer::start().await;
    let (token, user_id) = server.guest("Ana").await;
    for header in [
        ("Cookie", format!("other=1; confab_session={token}")),
        ("Authorization", format!("Bearer {token}")),
    ] {
        let mut client = Client::connect(&server.ws_url(), &[(header.0, header.1.as_str())]).await;
        let connected = client.recv().await;
        assert_eq!(connected["type"], "connected");
        let authed = client.recv().await;
        assert_eq!(authed["type"], "authenticated");
        assert_eq!(authed["userId"], user_id.as_str());
        assert_eq!(authed["name"], "Ana");
    }
}

#[tokio::test]
async fn client_sent_user_ids_are_ignored() {
    let server = TestServer::start().await;
    let (token, user_id) = server.guest("Ana").await;
    let mut client = Client::connect(&server.ws_url(), &[]).await;
    client.expect("connected").await;
    client
        .send(json!({"type": "auth", "token": token, "userId": "admin"}))
        .await;
    assert_eq!(
        client.expect("authenticated").await["userId"],
        user_id.as_str()
    );
    client.join("r").await;
    let mut ben = server.client("Ben").await;
    ben.join("r").await;
    client
        .send(json!({"type": "message", "roomId": "r", "content": "hi", "userId": "admin", "name": "Admin"}))
        .await;
    let message = ben.expect("message").await;
    assert_eq!(message["userId"], user_id.as_str());
    assert_eq!(message["name"], "Ana");
}

#[tokio::test]
async fn sessions_over_http() {
    let server = TestServer::start().await;
    let created = server
        .http("POST", "/api/session", Some(json!({"name": "  Ana "})), &[])
        .await;
    assert_eq!(created.status, 200);
    let cookie = created.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let body = created.json();
    assert_eq!(body["user"]["name"], "Ana");
    assert_eq!(body["user"]["guest"], true);
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.len(), 64, "256 bits, hex");

    let bearer = format!("Bearer {token}");
    let me = server
        .http("GET", "/api/session", None, &[("Authorization", &bearer)])
        .await;
    assert_eq!(me.json()["user"]["name"], "Ana");
    let ended = server
        .http(
            "DELETE",
            "/api/session",
            None,
            &[("Authorization", &bearer)],
        )
        .await;
    assert_eq!(ended.status, 204);
    assert!(ended.header("set-cookie").unwrap().contains("Max-Age=0"));
    let me = server
        .http("GET", "/api/session", None, &[("Authorization", &bearer)])
        .await;
    assert_eq!(me.status, 401);
    assert_eq!(me.json()["code"], "not_authenticated");
}

#[tokio::test]
async fn room_page_is_rendered_with_history_as_text() {
    let server = TestServer::start().await;
    let mut ana = server.client("Ana").await;
    ana.join("ssr").await;
    ana.say("ssr", "<script>alert(1)</script> & hello", "c1")
        .await;
    let page = server.http("GET", "/rooms/ssr", None, &[]).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; hello"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert(1)"));
    let missing = server.http("GET", "/no/such/page", None, &[]).await;
    assert_eq!(missing.status, 404);
}

/// The app routes in the browser itself (`app::routing`); the server answers exactly the same
/// paths as pages, and renders the app's 404 page for every other one.
#[tokio::test]
async fn the_server_answers_the_pages_the_app_routes() {
    let server = TestServer::start().await;
    for (path, status, text, title) in [
        ("/", 200, "Talk in real time.", "Confab"),
        ("/signin", 200, "Your account", "Sign in · Confab"),
        (
            "/signin?next=/rooms/x",
            200,
            "Your account",
            "Sign in · Confab",
        ),
        ("/rooms/general", 200, "#general", "#general · Confab"),
        ("/rooms/general/", 404, "Not found", "Not found · Confab"),
        ("/rooms/a/b", 404, "Not found", "Not found · Confab"),
        ("/rooms/", 404, "Not found", "Not found · Confab"),
        ("/signin/", 404, "Not found", "Not found · Confab"),
        ("/no/such/page", 404, "Not found", "Not found · Confab"),
        ("/dashboard", 401, "Operators only", "Dashboard · Confab"),
        (
            "/rooms/%3C%2Ftitle%3E%3Cb%3E",
            400,
            "This room cannot be opened",
            "#&lt;/title>&lt;b> · Confab",
        ),
    ] {
        let page = server.http("GET", path, None, &[]).await;
        assert_eq!(page.status, status, "{path}");
        assert!(page.body.contains(text), "{path}: {}", page.body);
        // One title, in the head, before the body.
        let head = page.body.split("<body").next().unwrap_or_default();
        assert!(
            head.contains(&format!("<title>{title}</title>")),
            "{path}: {head}"
        );
        assert_eq!(page.body.matches("<title>").count(), 1, "{path}");
        assert!(
            page.body.contains("<!DOCTYPE html>"),
            "{path}: a whole page"
        );
        // Sign-in and the dashboard load the full bundle; the pages people chat in, the
        // readers'.
        let page_path = path.split('?').next().unwrap_or_default();
        let bundle = if page_path == "/signin" || page_path == "/dashboard" {
            "confab-full"
        } else {
            "confab"
        };
        assert!(
            page.body.contains(&format!("href=\"/pkg/{bundle}.wasm\"")),
            "{path} loads {bundle}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn the_room_form_works_without_javascript() {
    let server = TestServer::start().await;
    let valid = server
        .http("GET", "/open?room=Book%20Club", None, &[])
        .await;
    assert_eq!(valid.status, 303);
    assert_eq!(
        valid.header("location").as_deref(),
        Some("/rooms/book-club")
    );
    let invalid = server.http("GET", "/open?room=caf%C3%A9", None, &[]).await;
    assert_eq!(invalid.status, 303);
    assert_eq!(invalid.header("location").as_deref(), Some("/"));
}

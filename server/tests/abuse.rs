//! Abuse resistance: foreign origins (CSRF, cross-site WebSocket hijacking), rates of
//! messages and typing per user, connections per user, and a client's word about who it is.

mod common;

use common::{http_request, Client, TestServer};
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The HTTP status of a WebSocket upgrade with these headers (101 when it succeeded).
async fn upgrade_status(server: &TestServer, headers: &[(&str, &str)]) -> u16 {
    let mut request = server.ws_url().into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("upgrade failed: {other}"),
    }
}

#[tokio::test]
async fn a_foreign_origin_cannot_open_a_websocket() {
    let server = TestServer::start_with(|c| {
        c.allowed_origins = vec!["https://chat.example.com".into()];
    })
    .await;
    let (token, _) = server.guest("Ana").await;
    let cookie = format!("confab_session={token}");
    let ours = format!("http://{}", server.addr);
    assert_eq!(
        upgrade_status(
            &server,
            &[("Cookie", &cookie), ("Origin", "http://evil.test")]
        )
        .await,
        403
    );
    assert_eq!(
        upgrade_status(&server, &[("Cookie", &cookie), ("Origin", "null")]).await,
        403
    );
    assert_eq!(
        upgrade_status(&server, &[("Cookie", &cookie), ("Origin", &ours)]).await,
        101
    );
    assert_eq!(
        upgrade_status(
            &server,
            &[("Cookie", &cookie), ("Origin", "https://chat.example.com")]
        )
        .await,
        101
    );
    assert_eq!(
        upgrade_status(&server, &[("Cookie", &cookie)]).await,
        101,
        "programs send no Origin"
    );
}

#[tokio::test]
async fn cross_origin_state_changes_are_refused() {
    let server = TestServer::start().await;
    let (token, _) = server.guest("Ana").await;
    let cookie = format!("confab_session={token}");
    let evil = [("Origin", "http://evil.test"), ("Cookie", cookie.as_str())];

    // JSON API: signing in, out, registering.
    for (method, path, body) in [
        ("POST", "/api/session", Some(json!({"name": "Mallory"}))),
        (
            "POST",
            "/api/accounts",
            Some(json!({"username": "mallory", "password": "correct horse"})),
        ),
        (
            "POST",
            "/api/login",
            Some(json!({"username": "mallory", "password": "correct horse"})),
        ),
        ("DELETE", "/api/session", None),
    ] {
        let response = server.http(method, path, body, &evil).await;
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
        assert_eq!(response.json()["code"], "forbidden_origin");
    }
    // A server function, posted the way a hostile page's form would.
    let form = http_request(
        server.addr,
        "POST",
        "/fn/sign_out",
        Some(String::new()),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "http://evil.test"),
        ],
    )
    .await;
    assert_eq!(form.status, 403, "{}", form.body);
    // The session survived all of it.
    let bearer = format!("Bearer {token}");
    let me = server
        .http("GET", "/api/session", None, &[("Authorization", &bearer)])
        .await;
    assert_eq!(me.status, 200);

    // From our own pages, the same requests work.
    let ours = format!("http://{}", server.addr);
    let same_origin = server
        .http(
            "POST",
            "/api/session",
            Some(json!({"name": "Ben"})),
            &[("Origin", &ours)],
        )
        .await;
    assert_eq!(same_origin.status, 200, "{}", same_origin.body);
    let fetch = server
        .http(
            "DELETE",
            "/api/session",
            None,
            &[
                ("Sec-Fetch-Site", "same-origin"),
                ("Origin", &ours),
                ("Cookie", &cookie),
            ],
        )
        .await;
    assert_eq!(fetch.status, 204);
    let me = server
        .http("GET", "/api/session", None, &[("Authorization", &bearer)])
        .await;
    assert_eq!(me.status, 401, "signed out from our own page");
}

#[tokio::test]
async fn flooding_past_the_message_rate_is_refused_then_closed() {
    let server = TestServer::start_with(|c| {
        c.send_rate = 2.0;
        c.send_burst = 3;
        c.max_protocol_errors = 10;
    })
    .await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("r").await;
    ben.join("r").await;
    for n in 0..3 {
        ana.say("r", &format!("m{n}"), &format!("c{n}")).await;
    }
    ana.send(json!({"type": "message", "roomId": "r", "content": "too many", "clientMsgId": "c3"}))
        .await;
    let refused = ana.expect_error("rate_limited").await;
    assert_eq!(refused["clientMsgId"], "c3");
    let retry = refused["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!((1..=500).contains(&retry), "{retry}");
    // A second tab shares the user's budget.
    let mut tab = server.second_tab(&ana).await;
    tab.join("r").await;
    tab.send(json!({"type": "message", "roomId": "r", "content": "from tab", "clientMsgId": "t1"}))
        .await;
    tab.expect_error("rate_limited").await;
    // After the hint, sending works again.
    tokio::time::sleep(Duration::from_millis(retry + 50)).await;
    ana.say("r", "again", "c4").await;
    // Nothing refused was stored or delivered.
    let history = server
        .http("GET", "/api/rooms/r/messages", None, &[])
        .await
        .json();
    let contents = common::fields(&history["messages"], "content");
    assert_eq!(contents, ["m0", "m1", "m2", "again"]);
    // Flooding on: refusals count as protocol errors, and the connection is closed.
    for n in 0..20 {
        ana.send(json!({"type": "message", "roomId": "r", "content": "flood", "clientMsgId": format!("f{n}")}))
            .await;
    }
    assert_eq!(ana.expect_close().await.0, 4501);
    drop(ben);
}

#[tokio::test]
async fn typing_floods_are_refused() {
    let server = TestServer::start_with(|c| {
        c.typing_rate = 1.0;
        c.typing_burst = 2;
    })
    .await;
    let mut ana = server.client("Ana").await;
    ana.join("r").await;
    for is_typing in [true, false] {
        ana.send(json!({"type": "typing", "roomId": "r", "isTyping": is_typing}))
            .await;
    }
    ana.send(json!({"type": "typing", "roomId": "r", "isTyping": true}))
        .await;
    let refused = ana.expect_error("rate_limited").await;
    assert!(refused["retryAfterMs"]
        .as_u64()
        .is_some_and(|ms| ms > 0 && ms <= 1000));
}

#[tokio::test]
async fn connections_per_user_are_limited() {
    let server = TestServer::start_with(|c| c.max_connections_per_user = 2).await;
    let ana = server.client("Ana").await;
    let mut second = server.second_tab(&ana).await;
    let mut third = Client::connect(&server.ws_url(), &[]).await;
    third.expect("connected").await;
    third
        .send(json!({"type": "auth", "token": ana.token}))
        .await;
    third.expect_error("too_many_connections").await;
    assert_eq!(third.expect_close().await.0, 4502);
    // Another user is not affected; and once a tab closes, the user may connect again.
    let mut ben = server.client("Ben").await;
    ben.assert_alive().await;
    second.socket.close(None).await.unwrap();
    drop(second);
    let mut reconnected = None;
    for _ in 0..50 {
        let mut again = Client::connect(&server.ws_url(), &[]).await;
        again.expect("connected").await;
        again
            .send(json!({"type": "auth", "token": ana.token}))
            .await;
        if again.recv().await["type"] == "authenticated" {
            reconnected = Some(again);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reconnected
        .expect("a freed slot can be used")
        .assert_alive()
        .await;
}

#[tokio::test]
async fn a_client_cannot_speak_for_someone_else() {
    let server = TestServer::start().await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("r").await;
    ben.join("r").await;
    ana.send(json!({
        "type": "message", "roomId": "r", "content": "hi", "clientMsgId": "c1",
        "userId": ben.user_id, "name": "Ben"
    }))
    .await;
    let delivered = ben.expect("message").await;
    assert_eq!(delivered["userId"], ana.user_id);
    assert_eq!(delivered["name"], "Ana");
    ana.send(json!({"type": "typing", "roomId": "r", "isTyping": true, "userId": ben.user_id}))
        .await;
    let typing = ben.expect("typing").await;
    assert_eq!(typing["userId"], ana.user_id);
}

// ---------------------------------------------------------------------------------------
// A guest must not be able to break a room: every answer fits what can be written.
// ---------------------------------------------------------------------------------------

/// A message of `bytes` double quotes: the worst case for JSON, which escapes each to two.
fn quotes(bytes: usize) -> String {
    "\"".repeat(bytes)
}

#[tokio::test]
async fn a_room_of_long_quoted_messages_still_answers_every_joiner() {
    let server = TestServer::start().await;
    for guest in 0..4 {
        let mut poster = server.client(&format!("Poster {guest}")).await;
        poster.join("quoted").await;
        for n in 0..5 {
            poster
                .say("quoted", &quotes(4096), &format!("q{guest}-{n}"))
                .await;
        }
    }
    let mut joiner = server.client("Joiner").await;
    joiner
        .send(json!({"type": "join", "roomId": "quoted"}))
        .await;
    let text = joiner.recv_until("room_history").await;
    let history: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(history["messages"].as_array().unwrap().len(), 20);
    assert!(text.len() > 160_000, "{} bytes", text.len());
    joiner.assert_alive().await;
}

#[tokio::test]
async fn a_resume_that_would_not_fit_one_answer_is_not_recovered_and_still_arrives() {
    let server = TestServer::start().await;
    let max_answer = server::config::Config::defaults().max_answer_bytes;
    let mut reader = server.client("Reader").await;
    let mut writer = server.client("Writer").await;
    reader.join("long").await;
    writer.join("long").await;
    let since = writer.say("long", "where the reader stood", "w0").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(reader.expect("message").await["id"], since);
    let page = server
        .http("GET", "/api/rooms/long/messages", None, &[])
        .await;
    let epoch = page.json()["epoch"].as_str().unwrap().to_string();
    drop(reader);
    for n in 0..100 {
        writer
            .say("long", &quotes(4096), &format!("w{}", n + 1))
            .await;
    }
    let mut back = server.client("Reader again").await;
    back.send(json!({"type": "join", "roomId": "long", "since": since, "epoch": epoch}))
        .await;
    let text = back.recv_until("room_history").await;
    assert!(text.len() <= max_answer, "{} bytes", text.len());
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["recovered"], false,
        "820 kB of messages cannot be one answer"
    );
    assert_eq!(answer["hasMore"], true);
    let messages = answer["messages"].as_array().unwrap();
    assert!(messages.len() >= 40, "{}", messages.len());
    assert_eq!(
        messages.last().unwrap()["clientMsgId"],
        "w100",
        "the newest are the ones given"
    );
    back.assert_alive().await;
}

/// 100 guests in a room and a channel with presence, with an answer bound small enough
/// (32 KiB, a page of 5 messages of 1 KiB) that who is here cannot all be listed.
#[tokio::test]
async fn who_is_here_is_cut_to_fit_an_answer_and_counted() {
    let namespaces = common::TempFile::with(
        r#"{"": {"subscribe": "signed_in", "publish": "signed_in",
                  "presence": true}}"#,
    );
    let server = TestServer::start_with(|c| {
        c.history_page = 5;
        c.max_content_bytes = 1024;
        c.max_answer_bytes = 32 * 1024;
        c.outbound_queue_bytes = 64 * 1024;
        c.namespaces_file = Some(namespaces.path());
    })
    .await;
    let mut crowd = Vec::new();
    for n in 0..100 {
        let mut guest = server.client(&format!("Guest {n:03}")).await;
        guest.join("crowded").await;
        guest
            .send(json!({"type": "subscribe", "channel": "crowded"}))
            .await;
        guest.expect("subscribed").await;
        crowd.push(guest);
    }
    let mut last = server.client("Zed").await;
    last.send(json!({"type": "join", "roomId": "crowded"}))
        .await;
    let text = last.recv_until("room_history").await;
    assert!(text.len() <= 32 * 1024, "{} bytes", text.len());
    let history: serde_json::Value = serde_json::from_str(&text).unwrap();
    let listed = history["members"].as_array().unwrap().len();
    assert!((10..101).contains(&listed), "{listed} listed");
    assert_eq!(history["membersTotal"], 101);
    last.send(json!({"type": "subscribe", "channel": "crowded"}))
        .await;
    let text = last.recv_until("subscribed").await;
    assert!(text.len() <= 32 * 1024, "{} bytes", text.len());
    let subscribed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(subscribed["presence"].as_array().unwrap().len() < 101);
    assert_eq!(subscribed["presenceTotal"], 101);
    last.assert_alive().await;
}

#[tokio::test]
async fn kept_publications_are_cut_to_fit_an_answer() {
    let namespaces = common::TempFile::with(
        r#"{"feed": {"subscribe": "signed_in", "publish": "signed_in",
                     "history_size": 50, "history_ttl": 600}}"#,
    );
    let server = TestServer::start_with(|c| c.namespaces_file = Some(namespaces.path())).await;
    let max_answer = server::config::Config::defaults().max_answer_bytes;
    let mut publisher = server.client("Feed").await;
    let big = "x".repeat(15_000);
    for n in 0..50 {
        publisher
            .send(json!({"type": "publish", "channel": "feed:big", "data": {"n": n, "pad": big}}))
            .await;
    }
    publisher.assert_alive().await;
    let mut reader = server.client("Reader").await;
    reader
        .send(json!({"type": "subscribe", "channel": "feed:big"}))
        .await;
    let text = reader.recv_until("subscribed").await;
    assert!(text.len() <= max_answer, "{} bytes", text.len());
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kept = answer["publications"].as_array().unwrap();
    assert!((20..50).contains(&kept.len()), "{}", kept.len());
    assert_eq!(
        kept.last().unwrap()["data"]["n"],
        49,
        "the newest are given"
    );
    // A resume from the first of them cannot be given in one answer either.
    let first = json!("0-0");
    reader
        .send(
            json!({"type": "subscribe", "channel": "feed:big", "since": first,
                     "epoch": answer["epoch"]}),
        )
        .await;
    let text = reader.recv_until("subscribed").await;
    assert!(text.len() <= max_answer, "{} bytes", text.len());
    let resumed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(resumed["recovered"], false);
    reader.assert_alive().await;
}

#[tokio::test]
async fn start_up_refuses_limits_under_which_a_page_could_not_be_sent() {
    let mut config = server::config::Config::defaults();
    config.port = 0;
    config.max_answer_bytes = 128 * 1024;
    let refused = match server::start(config).await {
        Ok(_) => panic!("started with a page that cannot fit an answer"),
        Err(err) => err.to_string(),
    };
    assert!(refused.contains("--history-page 50"), "{refused}");
    assert!(refused.contains("--max-answer-bytes"), "{refused}");
}

// ---------------------------------------------------------------------------------------
// Bounded by bytes.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_client_that_stops_reading_pins_at_most_its_queue_in_bytes() {
    let server = TestServer::start_with(|c| c.write_timeout_secs = 60).await;
    let queue_bytes = server::config::Config::defaults().outbound_queue_bytes;
    // 24 rooms of 50 long messages: about 10 MB of answers, more than the kernel buffers.
    let mut writer = server.client("Writer").await;
    for room in 0..24 {
        let room = format!("big-{room}");
        writer.join(&room).await;
        for n in 0..50 {
            writer
                .say(&room, &"x".repeat(4000), &format!("{room}-{n}"))
                .await;
        }
        writer.send(json!({"type": "leave", "roomId": room})).await;
    }
    writer.assert_alive().await;
    let (token, _) = server.guest("Never reads").await;
    let mut idle = Client::slow_reader(&server.ws_url(), &token).await;
    for room in 0..24 {
        idle.send(json!({"type": "join", "roomId": format!("big-{room}")}))
            .await;
    }
    // While it does not read, what waits for it stays within its queue's bytes.
    let mut peak = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let health = server.http("GET", "/health", None, &[]).await.json();
        peak = peak.max(health["outboundBytes"].as_u64().unwrap() as usize);
    }
    assert!(peak > 0, "answers were waiting");
    assert!(peak <= queue_bytes, "{peak} bytes queued");
    // Reading again, it gets every answer, whole and in order.
    for room in 0..24 {
        let history = idle.expect("room_history").await;
        assert_eq!(history["roomId"], format!("big-{room}"));
        assert_eq!(history["messages"].as_array().unwrap().len(), 50);
    }
    idle.assert_alive().await;
}

#[tokio::test]
async fn a_client_the_server_gives_up_on_is_closed_with_a_code_and_counted() {
    let server = TestServer::start_with(|c| {
        c.write_timeout_secs = 1;
        c.metrics_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let metrics = server.metrics_addr().unwrap();
    let (token, _) = server.guest("Stuck").await;
    let mut stuck = Client::slow_reader(&server.ws_url(), &token).await;
    stuck.join("firehose").await;
    let mut writer = server.client("Writer").await;
    writer.join("firehose").await;
    // Live traffic the stuck client never reads, until the kernel's buffers are full and
    // frames wait in its queue; then a few more, well short of filling the queue (256
    // frames, 1 MiB): the write that blocks times out.
    let mut sent = 0;
    loop {
        for _ in 0..25 {
            writer
                .say("firehose", &"y".repeat(4000), &format!("f{sent}"))
                .await;
            sent += 1;
        }
        // 100 kB waiting (25 frames), and none of it taken 300 ms later: its writer is
        // blocked, not merely behind.
        let queued = || async {
            let health = server.http("GET", "/health", None, &[]).await.json();
            health["outboundBytes"].as_u64().unwrap()
        };
        let before = queued().await;
        if before > 100_000 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if queued().await >= before {
                break;
            }
        }
        assert!(sent < 5000, "the stuck client's writes never blocked");
    }
    common::eventually(
        Duration::from_secs(10),
        "the stuck client closed as slow",
        || async {
            let body = common::http_request(metrics, "GET", "/metrics", None, &[])
                .await
                .body;
            body.lines()
                .any(|line| line.starts_with("confab_closes_total{code=\"4001\"}"))
        },
    )
    .await;
    drop(stuck);
}

// ---------------------------------------------------------------------------------------
// Reads write nothing.
// ---------------------------------------------------------------------------------------

/// The number of keys in the Redis.
async fn key_count(redis: &common::RedisServer) -> u64 {
    let reply = redis.command(&["DBSIZE"]).await;
    reply.trim_start_matches(':').parse().expect("DBSIZE")
}

#[tokio::test]
async fn reading_rooms_and_channels_that_do_not_exist_creates_nothing() {
    let redis = common::RedisServer::start().await;
    let namespaces = common::TempFile::with(
        r#"{"feed": {"subscribe": "signed_in", "publish": "signed_in",
                     "history_size": 10, "history_ttl": 600}}"#,
    );
    let server = common::redis_instance_with(&redis, "reads", |c| {
        c.history_rate = 0.0;
        c.namespaces_file = Some(namespaces.path());
    })
    .await;
    let mut reader = server.client("Reader").await;
    reader.assert_alive().await;
    let before = key_count(&redis).await;
    for n in 0..200 {
        let page = server
            .http("GET", &format!("/api/rooms/junk{n}/messages"), None, &[])
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(
            page.json()["epoch"],
            "",
            "a room never written has no epoch"
        );
    }
    for n in 0..20 {
        let page = server
            .http("GET", &format!("/rooms/junk-page{n}"), None, &[])
            .await;
        assert_eq!(page.status, 200);
        let older = http_request(
            server.addr,
            "POST",
            "/fn/older_messages",
            Some(format!("room=junk-fn{n}&before=5-0")),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        )
        .await;
        assert_eq!(older.status, 200, "{}", older.body);
        reader
            .send(json!({"type": "subscribe", "channel": format!("feed:junk{n}")}))
            .await;
        let subscribed = reader.expect("subscribed").await;
        assert_eq!(subscribed["epoch"], "", "{subscribed}");
        reader
            .send(
                json!({"type": "subscribe", "channel": format!("feed:junk{n}"),
                         "since": "5-0", "epoch": "old"}),
            )
            .await;
        assert_eq!(reader.expect("subscribed").await["recovered"], false);
        reader
            .send(json!({"type": "unsubscribe", "channel": format!("feed:junk{n}")}))
            .await;
        reader.expect("unsubscribed").await;
    }
    assert_eq!(key_count(&redis).await, before, "reads left keys behind");
    // The first write makes a log and its epoch, and a reader sees it.
    reader.join("written").await;
    reader.say("written", "hello", "w1").await;
    let page = server
        .http("GET", "/api/rooms/written/messages", None, &[])
        .await
        .json();
    assert_ne!(page["epoch"], "");
}

#[tokio::test]
async fn history_reads_are_rate_limited_per_address() {
    let server = TestServer::start_with(|c| {
        c.history_rate = 1.0;
        c.history_burst = 3;
        c.client_ip_header = Some("X-Forwarded-For".into());
    })
    .await;
    let from = |address: &'static str| [("X-Forwarded-For", address)];
    for _ in 0..3 {
        let page = server
            .http("GET", "/api/rooms/r/messages", None, &from("10.0.0.1"))
            .await;
        assert_eq!(page.status, 200);
    }
    let refused = server
        .http("GET", "/api/rooms/r/messages", None, &from("10.0.0.1"))
        .await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.json()["code"], "rate_limited");
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    // The room page and scrolling back share the budget.
    let page = server
        .http("GET", "/rooms/r", None, &from("10.0.0.1"))
        .await;
    assert_eq!(page.status, 429);
    let older = http_request(
        server.addr,
        "POST",
        "/fn/older_messages",
        Some("room=r&before=5-0".into()),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    )
    .await;
    assert_eq!(older.status, 429, "{}", older.body);
    // Another address has its own.
    let other = server
        .http("GET", "/api/rooms/r/messages", None, &from("10.0.0.2"))
        .await;
    assert_eq!(other.status, 200);
}

// ---------------------------------------------------------------------------------------
// Exact refusals.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn out_of_range_ids_are_invalid_since_counted_and_announce_nothing() {
    let redis = common::RedisServer::start().await;
    let server = common::redis_instance_with(&redis, "ids", |c| c.max_protocol_errors = 3).await;
    for before in [
        "0-0",
        "18446744073709551615-18446744073709551615",
        "9007199254740992-1",
    ] {
        let page = server
            .http(
                "GET",
                &format!("/api/rooms/r/messages?before={before}"),
                None,
                &[],
            )
            .await;
        assert_eq!(page.status, 400, "{before}: {}", page.body);
        assert_eq!(page.json()["code"], "invalid_since");
    }
    let mut member = server.client("Member").await;
    member.join("r").await;
    let mut prober = server.client("Prober").await;
    for since in [
        "18446744073709551615-18446744073709551615",
        "1-18446744073709551615",
    ] {
        prober
            .send(json!({"type": "join", "roomId": "r", "since": since}))
            .await;
        let refused = prober.expect_error("invalid_since").await;
        assert_eq!(refused["roomId"], "r");
    }
    member.expect_silence(Duration::from_millis(2500)).await;
    // Refusals of the client's making count toward 4501.
    for _ in 0..2 {
        prober
            .send(json!({"type": "read", "roomId": "r", "id": "1-99999999999999999999"}))
            .await;
    }
    assert_eq!(prober.expect_close().await.0, 4501);
}

#[tokio::test]
async fn a_resume_without_an_epoch_is_recovered_only_where_the_log_proves_it() {
    let mut redis = common::RedisServer::start().await;
    let server = common::redis_instance(&redis, "proof").await;
    let mut ana = server.client("Ana").await;
    ana.join("r").await;
    let mut acked = Vec::new();
    for n in 0..3 {
        let said = ana.say("r", &format!("m{n}"), &format!("m{n}")).await;
        acked.push(said["id"].as_str().unwrap().to_string());
    }
    // A client that sends no epoch, from a message still in the log: exact.
    let mut simple = server.client("Simple").await;
    simple
        .send(json!({"type": "join", "roomId": "r", "since": acked[0]}))
        .await;
    let resumed = simple.expect("room_history").await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(
        common::fields(&resumed["messages"], "content"),
        ["m1", "m2"]
    );
    assert_ne!(resumed["epoch"], "", "and it learns the epoch");
    drop(simple);
    // Redis restarts empty; the conversation goes on in a new log.
    redis.restart().await;
    server.until_ready().await;
    let mut ana = server.client("Ana again").await;
    ana.join("r").await;
    ana.say_until_acked("r", "after the restart", "m3").await;
    let mut simple = server.client("Simple again").await;
    simple
        .send(json!({"type": "join", "roomId": "r", "since": acked[1]}))
        .await;
    let resumed = simple.expect("room_history").await;
    assert_eq!(
        resumed["recovered"], false,
        "m2 is not in this log: what came after it cannot be proven: {resumed}"
    );
    assert_eq!(
        common::fields(&resumed["messages"], "content"),
        ["after the restart"]
    );
}

// ---------------------------------------------------------------------------------------
// Membership requests are not free.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn membership_requests_past_the_budget_are_refused_and_cost_members_nothing() {
    let server = TestServer::start_with(|c| {
        c.membership_rate = 5.0;
        c.membership_burst = 10;
        c.user_membership_rate = 10.0;
        c.user_membership_burst = 20;
        c.presence_grace_ms = 1500;
    })
    .await;
    let mut member = server.client("Member").await;
    member.join("busy").await;
    let mut cycler = server.client("Cycler").await;
    for _ in 0..2000 {
        cycler.send(json!({"type": "join", "roomId": "busy"})).await;
        cycler
            .send(json!({"type": "leave", "roomId": "busy"}))
            .await;
    }
    let mut limited = 0;
    let close = loop {
        match tokio::time::timeout(common::WAIT, cycler.socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let event: serde_json::Value = serde_json::from_str(&text).unwrap();
                if event["code"] == "rate_limited" {
                    assert!(event["retryAfterMs"].as_u64().is_some(), "{event}");
                    limited += 1;
                }
            }
            Ok(Some(Ok(Message::Close(Some(frame))))) => break u16::from(frame.code),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected the cycler to be closed, got {other:?}"),
        }
    };
    assert!(limited > 0, "past the budget: rate_limited");
    assert_eq!(close, 4501, "refusals count toward the error budget");
    // Every join it got was undone within the grace: the member heard of none of it.
    member.expect_silence(Duration::from_millis(2500)).await;
}

#[tokio::test]
async fn a_join_and_a_leave_within_the_grace_announce_nothing_and_a_stay_is_announced() {
    let server = TestServer::start_with(|c| c.presence_grace_ms = 1000).await;
    let mut member = server.client("Member").await;
    member.join("room").await;
    let mut visitor = server.client("Visitor").await;
    for _ in 0..3 {
        visitor.join("room").await;
        visitor
            .send(json!({"type": "leave", "roomId": "room"}))
            .await;
    }
    // A dropped connection counts too.
    let mut passing = server.client("Passing").await;
    passing.join("room").await;
    drop(passing);
    member.expect_silence(Duration::from_millis(1800)).await;
    visitor.join("room").await;
    let joined = member.expect("user_joined").await;
    assert_eq!(joined["name"], "Visitor");
    visitor
        .send(json!({"type": "leave", "roomId": "room"}))
        .await;
    assert_eq!(member.expect("user_left").await["name"], "Visitor");
    // Who is present changes at once, whatever is announced.
    let mut again = server.client("Quick").await;
    again.join("room").await;
    let members = server
        .http("GET", "/api/rooms/room/members", None, &[])
        .await
        .json();
    assert_eq!(
        common::fields(&members["members"], "name"),
        ["Member", "Quick"]
    );
}

/// `count` connections subscribing to and unsubscribing from unique channel names as fast
/// as they are answered, until `stop`.
async fn cycle_subscriptions(
    server: &TestServer,
    count: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let mut cyclers = Vec::new();
    for c in 0..count {
        let mut cycler = server.client(&format!("Cycler {c}")).await;
        let stop = stop.clone();
        cyclers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let channel = format!("junk-{c}-{n}");
                cycler
                    .send(json!({"type": "subscribe", "channel": channel}))
                    .await;
                cycler.expect("subscribed").await;
                cycler
                    .send(json!({"type": "unsubscribe", "channel": channel}))
                    .await;
                cycler.expect("unsubscribed").await;
                n += 1;
            }
            n
        }));
    }
    cyclers
}

/// The median time a fresh guest takes to join each of `rooms` in turn.
async fn median_join(server: &TestServer, rooms: &[String]) -> Duration {
    let mut joiner = server.client("Joiner").await;
    let mut times = Vec::new();
    for room in rooms {
        let started = tokio::time::Instant::now();
        joiner.join(room).await;
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycling_unique_channels_does_not_stall_other_first_joins() {
    let redis = common::RedisServer::start().await;
    let proxy = common::proxy::Proxy::start(redis.port).await;
    // Every pub/sub round trip costs 40 ms: a queue of them shows.
    proxy.delay_pubsub(Duration::from_millis(20));
    let server = common::redis_instance_at(&proxy.url(), "cycle").await;
    server.until_ready().await;
    let rooms = |prefix: &str| -> Vec<String> { (0..9).map(|n| format!("{prefix}-{n}")).collect() };
    let idle = median_join(&server, &rooms("idle")).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cyclers = cycle_subscriptions(&server, 8, stop.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = median_join(&server, &rooms("busy")).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut cycled = 0;
    for cycler in cyclers {
        cycled += cycler.await.unwrap();
    }
    eprintln!("first join: idle {idle:?}, while 8 connections cycled {cycled} channels: {busy:?}");
    assert!(cycled > 16, "the cyclers cycled ({cycled})");
    assert!(
        busy <= idle * 2 + Duration::from_millis(40),
        "a first join took {busy:?} while others cycled subscriptions, {idle:?} when idle"
    );
}

#[tokio::test]
async fn one_failed_subscribe_fails_only_its_join() {
    let redis = common::RedisServer::start().await;
    // An instance allowed the channels of rooms named good-* only: subscribing to any other
    // room's channel is refused by Redis (NOPERM).
    let acl = redis
        .command(&[
            "ACL",
            "SETUSER",
            "limited",
            "on",
            ">secret",
            "~*",
            "resetchannels",
            "&acl:room:good*",
            "&acl:control",
            "&acl:probe:*",
            "+@all",
        ])
        .await;
    assert_eq!(acl, "+OK");
    let url = format!("redis://limited:secret@127.0.0.1:{}", redis.port);
    let server = common::redis_instance_at(&url, "acl").await;
    server.until_ready().await;
    let mut reader = server.client("Reader").await;
    reader.join("good-1").await;
    let mut writer = server.client("Writer").await;
    writer.join("good-1").await;
    let mut refused = server.client("Refused").await;
    refused
        .send(json!({"type": "join", "roomId": "bad-1"}))
        .await;
    let error = refused.expect_error("unavailable").await;
    assert_eq!(error["roomId"], "bad-1");
    refused.assert_alive().await;
    // The session went on: the good room is still delivered, and nothing reconnected.
    writer.say("good-1", "still here", "g1").await;
    assert_eq!(reader.expect("message").await["content"], "still here");
    let health = server.http("GET", "/health", None, &[]).await.json();
    assert_eq!(health["pubsub"]["reconnects"], 0, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
}

// ---------------------------------------------------------------------------------------
// Worker queues belong to their operators.
// ---------------------------------------------------------------------------------------

/// `open`: anyone subscribes to its channels, but its queue names its workers' groups and
/// lets no connection work (backends only); `team`: signed-in workers, in `build` only.
fn queue_namespaces(extra_group: bool) -> common::TempFile {
    let groups = if extra_group {
        r#"["build", "audit"]"#
    } else {
        r#"["build"]"#
    };
    common::TempFile::with(&format!(
        r#"{{"open": {{"subscribe": "anyone", "publish": "signed_in",
                      "queue": {{"groups": ["billing"], "ack_timeout": 1, "max_deliveries": 2}}}},
            "team": {{"subscribe": "signed_in", "publish": "signed_in",
                      "queue": {{"groups": {groups}, "workers": "signed_in",
                                 "ack_timeout": 1, "max_deliveries": 2}}}}}}"#
    ))
}

async fn work(client: &mut Client, channel: &str, group: &str, prefetch: u32) -> serde_json::Value {
    client
        .send(json!({"type": "work", "channel": channel, "group": group, "prefetch": prefetch}))
        .await;
    client.recv().await
}

#[tokio::test]
async fn who_may_work_is_the_queues_own_rule_and_only_in_listed_groups() {
    let namespaces = queue_namespaces(false);
    let server = TestServer::start_with(|c| c.namespaces_file = Some(namespaces.path())).await;
    let mut guest = server.client("Guest").await;
    let refused = work(&mut guest, "open:jobs", "billing", 1).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let refused = work(&mut guest, "team:jobs", "anything", 100).await;
    assert_eq!(refused["code"], "unknown_group", "{refused}");
    let working = work(&mut guest, "team:jobs", "build", 1).await;
    assert_eq!(working["type"], "working", "{working}");
}

#[tokio::test]
async fn a_new_group_starts_with_new_jobs() {
    let redis = common::RedisServer::start().await;
    let before = queue_namespaces(false);
    let after = queue_namespaces(true);
    let old = common::redis_instance_with(&redis, "groups", |c| {
        c.namespaces_file = Some(before.path())
    })
    .await;
    let mut producer = old.client("Producer").await;
    for n in 0..3 {
        producer
            .send(json!({"type": "publish", "channel": "team:jobs", "data": n}))
            .await;
    }
    producer.assert_alive().await;
    // The operator lists `audit`: it gets the jobs added from now on, not the ones kept.
    let new =
        common::redis_instance_with(&redis, "groups", |c| c.namespaces_file = Some(after.path()))
            .await;
    let mut auditor = new.client("Auditor").await;
    assert_eq!(
        work(&mut auditor, "team:jobs", "audit", 10).await["type"],
        "working"
    );
    auditor.expect_silence(Duration::from_millis(400)).await;
    let mut producer = new.client("Producer").await;
    producer
        .send(json!({"type": "publish", "channel": "team:jobs", "data": 3}))
        .await;
    let job = auditor.expect("job").await;
    assert_eq!(job["data"], 3);
    auditor.expect_silence(Duration::from_millis(400)).await;
    // `build` existed all along: it has all four.
    let mut builder = new.client("Builder").await;
    work(&mut builder, "team:jobs", "build", 10).await;
    for n in 0..4 {
        assert_eq!(builder.expect("job").await["data"], n);
    }
}

#[tokio::test]
async fn a_users_unfinished_jobs_are_capped() {
    let namespaces = queue_namespaces(false);
    let server = TestServer::start_with(|c| {
        c.namespaces_file = Some(namespaces.path());
        c.max_jobs_per_user = 10;
    })
    .await;
    let mut first = server.client("Worker").await;
    assert_eq!(
        work(&mut first, "team:a", "build", 8).await["type"],
        "working"
    );
    let mut second = server.second_tab(&first).await;
    let refused = work(&mut second, "team:b", "build", 5).await;
    assert_eq!(refused["code"], "too_many_jobs", "{refused}");
    assert_eq!(
        work(&mut second, "team:b", "build", 2).await["type"],
        "working"
    );
    // Asking again for the same group replaces that worker's prefetch.
    assert_eq!(
        work(&mut first, "team:a", "build", 6).await["type"],
        "working"
    );
}

#[tokio::test]
async fn acknowledged_jobs_are_trimmed() {
    let redis = common::RedisServer::start().await;
    let namespaces = queue_namespaces(false);
    let server = common::redis_instance_with(&redis, "trim", |c| {
        c.namespaces_file = Some(namespaces.path())
    })
    .await;
    let mut producer = server.client("Producer").await;
    for n in 0..10 {
        producer
            .send(json!({"type": "publish", "channel": "team:jobs", "data": n}))
            .await;
    }
    producer.assert_alive().await;
    let key = "trim:queue:team:jobs:jobs";
    assert_eq!(redis.command(&["XLEN", key]).await, ":10");
    let mut worker = server.client("Worker").await;
    work(&mut worker, "team:jobs", "build", 10).await;
    let mut jobs = Vec::new();
    for _ in 0..10 {
        jobs.push(worker.expect("job").await);
    }
    for job in jobs {
        worker
            .send(
                json!({"type": "done", "channel": "team:jobs", "group": "build", "id": job["id"]}),
            )
            .await;
        worker.expect("done").await;
    }
    assert_eq!(
        redis.command(&["XLEN", key]).await,
        ":0",
        "every group is done"
    );
}

#[tokio::test]
async fn a_late_done_never_acknowledges_the_job_given_again_on_another_instance() {
    let redis = common::RedisServer::start().await;
    let namespaces = queue_namespaces(false);
    let (a, b) = common::two_redis_instances_with(&redis, "late", |c| {
        c.namespaces_file = Some(namespaces.path())
    })
    .await;
    let mut slow = a.client("Slow").await;
    work(&mut slow, "team:jobs", "build", 1).await;
    let mut producer = a.client("Producer").await;
    producer
        .send(json!({"type": "publish", "channel": "team:jobs", "data": "x"}))
        .await;
    let first = slow.expect("job").await;
    let mut quick = b.client("Quick").await;
    work(&mut quick, "team:jobs", "build", 1).await;
    let again = tokio::time::timeout(Duration::from_secs(4), quick.expect("job"))
        .await
        .expect("given again after its 1 s");
    assert_eq!(
        (again["id"].clone(), again["attempt"].clone()),
        (first["id"].clone(), json!(2))
    );
    slow.send(json!({"type": "done", "channel": "team:jobs", "group": "build", "id": first["id"]}))
        .await;
    slow.expect_error("unknown_job").await;
    quick
        .send(json!({"type": "done", "channel": "team:jobs", "group": "build", "id": again["id"]}))
        .await;
    assert_eq!(
        quick.expect("done").await["id"],
        first["id"],
        "still the quick one's to finish"
    );
}

#[tokio::test]
async fn a_done_that_cannot_reach_redis_keeps_the_job_held() {
    let mut redis = common::RedisServer::start_durable().await;
    let namespaces = queue_namespaces(false);
    let server = common::redis_instance_with(&redis, "held", |c| {
        c.namespaces_file = Some(namespaces.path());
        c.redis_timeout_ms = 500;
    })
    .await;
    let mut worker = server.client("Worker").await;
    work(&mut worker, "team:jobs", "build", 1).await;
    let mut producer = server.client("Producer").await;
    producer
        .send(json!({"type": "publish", "channel": "team:jobs", "data": "x"}))
        .await;
    let job = worker.expect("job").await;
    redis.kill();
    let done = json!({"type": "done", "channel": "team:jobs", "group": "build", "id": job["id"]});
    worker.send(done.clone()).await;
    worker.expect_error("unavailable").await;
    redis.restart().await;
    server.until_ready().await;
    worker.send(done).await;
    assert_eq!(
        worker.expect("done").await["id"],
        job["id"],
        "still held: done again works"
    );
}

/// What the server logs while `test` runs (the test's own runtime: every task of its
/// in-process server logs on this thread).
async fn logged<F: std::future::Future<Output = ()>>(test: F) -> String {
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    test.await;
    drop(guard);
    let text = buffer.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[tokio::test]
async fn jobs_dropped_at_max_deliveries_are_logged_with_their_ids() {
    let redis = common::RedisServer::start().await;
    let namespaces = queue_namespaces(false);
    let mut id = String::new();
    let log = logged(async {
        let server = common::redis_instance_with(&redis, "poison", |c| {
            c.namespaces_file = Some(namespaces.path())
        })
        .await;
        let mut producer = server.client("Producer").await;
        producer
            .send(json!({"type": "publish", "channel": "team:poison", "data": "x"}))
            .await;
        // Two deliveries nobody finishes (each worker leaves with it), then it is dropped.
        for attempt in 1..=2 {
            let mut worker = server.client("Worker").await;
            work(&mut worker, "team:poison", "build", 1).await;
            let job = worker.expect("job").await;
            assert_eq!(job["attempt"], attempt);
            id = job["id"].as_str().unwrap().to_string();
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let mut last = server.client("Last").await;
        work(&mut last, "team:poison", "build", 1).await;
        last.expect_silence(Duration::from_millis(1500)).await;
    })
    .await;
    let dropped = log
        .lines()
        .find(|line| line.contains("dropping a job nobody finished"))
        .unwrap_or_else(|| panic!("no drop logged:\n{log}"));
    assert!(dropped.contains(&id), "{dropped}");
    assert!(dropped.contains("team:poison"), "{dropped}");
}

#[tokio::test]
async fn a_malformed_work_or_done_is_invalid_message() {
    let namespaces = queue_namespaces(false);
    let server = TestServer::start_with(|c| c.namespaces_file = Some(namespaces.path())).await;
    let mut client = server.client("Ana").await;
    for request in [
        json!({"type": "work", "channel": "team:x"}),
        json!({"type": "work", "channel": "team:x", "group": "a b"}),
        json!({"type": "work", "channel": "team:x", "group": "build", "prefetch": "ten"}),
        json!({"type": "done", "channel": "team:x", "group": "build"}),
        json!({"type": "done", "channel": "team:x", "group": "build", "id": "soon"}),
        json!({"type": "done", "channel": "team:x", "group": "build", "id": 7}),
    ] {
        client.send(request.clone()).await;
        let error = client.expect_error("invalid_message").await;
        assert!(error["error"].as_str().is_some(), "{request}");
    }
    client.assert_alive().await;
}

// ---------------------------------------------------------------------------------------
// Anonymous connections capped; the room list bounded.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn connections_without_a_session_are_capped_per_address_and_in_total() {
    let server = TestServer::start_with(|c| {
        c.max_anonymous_per_address = 3;
        c.max_anonymous_connections = 5;
        c.client_ip_header = Some("X-Forwarded-For".into());
    })
    .await;
    let from = |address: &'static str| [("X-Forwarded-For", address)];
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut anonymous = Client::connect(&server.ws_url(), &from("10.0.0.1")).await;
        anonymous.expect("connected").await;
        anonymous.assert_alive().await;
        held.push(anonymous);
    }
    let mut refused = Client::connect(&server.ws_url(), &from("10.0.0.1")).await;
    refused.expect("connected").await;
    let error = refused.expect_error("too_many_connections").await;
    assert!(
        error["error"].as_str().unwrap().contains("your address"),
        "{error}"
    );
    assert_eq!(refused.expect_close().await.0, 4504);
    for _ in 0..2 {
        let mut other = Client::connect(&server.ws_url(), &from("10.0.0.2")).await;
        other.expect("connected").await;
        other.assert_alive().await;
        held.push(other);
    }
    let mut over = Client::connect(&server.ws_url(), &from("10.0.0.3")).await;
    over.expect("connected").await;
    let error = over.expect_error("too_many_connections").await;
    assert!(
        error["error"].as_str().unwrap().contains("this server"),
        "{error}"
    );
    assert_eq!(over.expect_close().await.0, 4504);
    // Signed in from the upgrade (the browser's cookie), a connection is no anonymous one.
    let (token, _) = server.guest("Ana").await;
    let cookie = format!("confab_session={token}");
    let mut browser = Client::connect(
        &server.ws_url(),
        &[("X-Forwarded-For", "10.0.0.1"), ("Cookie", &cookie)],
    )
    .await;
    browser.expect("authenticated").await;
    // One that signs in gives its slot back.
    held[0].send(json!({"type": "auth", "token": token})).await;
    held[0].expect("authenticated").await;
    let mut again = Client::connect(&server.ws_url(), &from("10.0.0.1")).await;
    again.expect("connected").await;
    again.assert_alive().await;
}

/// Calls of every command Redis has run, from `INFO commandstats`.
async fn commands_run(redis: &redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis.clone())
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| line.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn the_room_list_does_a_bounded_amount_of_redis_work() {
    let redis = common::RedisServer::start().await;
    let server = common::redis_instance(&redis, "many").await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // 10,000 rooms with someone present: one person each, on a live instance.
    let _: () = redis::cmd("SET")
        .arg("many:instance:elsewhere")
        .arg(1)
        .arg("EX")
        .arg(600)
        .query_async(&mut conn)
        .await
        .unwrap();
    for batch in 0..10 {
        let mut pipe = redis::pipe();
        for n in batch * 1000..(batch + 1) * 1000 {
            let room = format!("busy-{n}");
            pipe.hset(
                format!("many:room:{room}:members"),
                format!("elsewhere/{n}"),
                format!("u{n}\tPerson {n}"),
            )
            .ignore()
            .sadd("many:active-rooms", &room)
            .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    let before = commands_run(&conn).await;
    let started = tokio::time::Instant::now();
    let first = server.http("GET", "/api/rooms", None, &[]).await;
    let cold = started.elapsed();
    assert_eq!(first.status, 200);
    let listed = first.json()["rooms"].as_array().unwrap().len();
    assert_eq!(listed, 100, "at most 100 listed");
    let one_computation = commands_run(&conn).await - before;
    // 50 more visits, from the API and the home page, within the second: no more work.
    let started = tokio::time::Instant::now();
    let visits = (0..25)
        .flat_map(|_| ["/api/rooms", "/"])
        .map(|path| server.http("GET", path, None, &[]));
    for page in futures::future::join_all(visits).await {
        assert_eq!(page.status, 200);
    }
    let warm = started.elapsed() / 50;
    let after = commands_run(&conn).await - before;
    eprintln!(
        "10,000 active rooms: the first /api/rooms took {cold:?} and {one_computation} Redis commands; 50 more visits (API and home page) {warm:?} each, {} commands in all",
        after
    );
    assert!(
        one_computation < 10_100,
        "one computation: a pipeline of members, not a round trip per room ({one_computation})"
    );
    assert!(
        after < 2 * one_computation + 100,
        "visits within a second share one computation ({after})"
    );
}

// ---------------------------------------------------------------------------------------
// Exact refusals, and smaller holes.
// ---------------------------------------------------------------------------------------

/// A form posted by a page without JavaScript, from the page `referer`.
async fn plain_form(
    server: &TestServer,
    path: &str,
    body: &str,
    referer: &str,
) -> common::HttpResponse {
    http_request(
        server.addr,
        "POST",
        path,
        Some(body.to_string()),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "text/html"),
            ("Referer", referer),
        ],
    )
    .await
}

#[tokio::test]
async fn a_plain_form_goes_back_only_to_a_local_page() {
    let server = TestServer::start().await;
    let host = server.addr.to_string();
    let home = plain_form(
        &server,
        "/fn/sign_out",
        "",
        &format!("http://{host}/rooms/a"),
    )
    .await;
    assert_eq!(home.status, 303);
    assert_eq!(home.header("location").as_deref(), Some("/rooms/a"));
    for elsewhere in [
        format!("http://{host}//evil.example/x"),
        format!("http://{host}/\\evil.example/x"),
        "http://evil.example/x".to_string(),
    ] {
        let response = plain_form(&server, "/fn/sign_out", "", &elsewhere).await;
        let location = response.header("location").unwrap_or_default();
        assert!(
            location.is_empty() || (location.starts_with('/') && !location.starts_with("//")),
            "{elsewhere} sent the browser to {location}"
        );
    }
}

#[tokio::test]
async fn form_errors_in_the_url_are_only_our_own_codes_texts() {
    let server = TestServer::start().await;
    let host = server.addr.to_string();
    let refused = plain_form(
        &server,
        "/fn/sign_in",
        "username=nobody&password=wrong+horse",
        &format!("http://{host}/signin"),
    )
    .await;
    assert_eq!(refused.status, 303);
    let location = refused.header("location").unwrap();
    assert_eq!(location, "/signin?error=invalid_credentials&form=sign_in");
    let page = server.http("GET", &location, None, &[]).await;
    assert!(
        page.body.contains("wrong username or password"),
        "{}",
        page.body
    );
    // Words put in the URL by someone else are never shown.
    let planted = server
        .http(
            "GET",
            "/signin?form=sign_in&error=Your+account+is+locked%2C+call+555",
            None,
            &[],
        )
        .await;
    assert_eq!(planted.status, 200);
    assert!(
        !planted.body.contains("Your account is locked"),
        "{}",
        planted.body
    );
    assert!(planted.body.contains("the request could not be completed"));
}

#[tokio::test]
async fn sign_in_attempts_are_counted_before_the_password_is_checked() {
    let server = TestServer::start_with(|c| {
        c.client_ip_header = Some("X-Forwarded-For".into());
        c.guests_per_address = 0;
    })
    .await;
    assert_eq!(server.register("ana", "correct horse").await.status, 201);
    // 60 wrong passwords at once, each from its own address: the per-username limit (10)
    // holds although every one of them started before any was counted as failed.
    let attempts = (0..60).map(|n| {
        let server = &server;
        async move {
            let address = format!("10.1.0.{n}");
            let body = json!({"username": "ana", "password": "wrong horse"});
            server
                .http(
                    "POST",
                    "/api/login",
                    Some(body),
                    &[("X-Forwarded-For", &address)],
                )
                .await
                .status
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (10, 50), "{statuses:?}");
    // A right password gives its count back: one account signs in again and again.
    assert_eq!(server.register("ben", "correct horse").await.status, 201);
    for _ in 0..15 {
        assert_eq!(server.login("ben", "correct horse").await.status, 200);
    }
}

#[tokio::test]
async fn a_username_that_breaks_the_rules_never_becomes_a_key() {
    let redis = common::RedisServer::start().await;
    let server = common::redis_instance(&redis, "names").await;
    let junk = "x".repeat(5000) + "\n\u{0}evil";
    let response = server
        .http(
            "POST",
            "/api/login",
            Some(json!({"username": junk, "password": "p"})),
            &[],
        )
        .await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["code"], "invalid_credentials");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("names:count:login-user:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let by_address: Vec<String> = redis::cmd("KEYS")
        .arg("names:count:login-addr:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        by_address.len(),
        1,
        "the attempt counts against its address"
    );
}

#[tokio::test]
async fn password_checks_past_the_queue_are_refused_not_queued() {
    let server = TestServer::start_with(|c| {
        c.max_concurrent_hashes = 1;
        c.max_queued_hashes = 1;
        c.client_ip_header = Some("X-Forwarded-For".into());
    })
    .await;
    let attempts = (0..12).map(|n| {
        let server = &server;
        async move {
            let address = format!("10.2.0.{n}");
            let body = json!({"username": format!("user{n}"), "password": "wrong horse"});
            let response = server
                .http(
                    "POST",
                    "/api/login",
                    Some(body),
                    &[("X-Forwarded-For", &address)],
                )
                .await;
            (response.status, response.header("retry-after"))
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let busy: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 429)
        .collect();
    assert!(!busy.is_empty(), "{answers:?}");
    assert!(
        busy.iter().all(|(_, retry)| retry.as_deref() == Some("1")),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|(status, _)| *status == 401),
        "some were checked"
    );
}

#[tokio::test]
async fn operators_are_made_by_the_administrator_only() {
    let key = server::api_keys::new_key();
    let keys = common::TempFile::with(&server::api_keys::file_line("admin", &key));
    let server = TestServer::start_with(|c| {
        c.operators = vec!["Boss".into()];
        c.api_keys_file = Some(keys.path());
    })
    .await;
    // Nobody else can take the name: not by the API, the form, or as a guest.
    let taken = server.register("boss", "correct horse").await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert_eq!(taken.json()["code"], "username_taken");
    let form = http_request(
        server.addr,
        "POST",
        "/fn/register",
        Some("username=BOSS&password=correct+horse".into()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    )
    .await;
    assert_eq!(form.status, 409, "{}", form.body);
    let guest = server
        .http("POST", "/api/session", Some(json!({"name": "boss"})), &[])
        .await;
    assert_eq!(guest.status, 409, "{}", guest.body);
    // The administrator's tool makes it (the password from standard input).
    let tool = std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "account",
            "create",
            "Boss",
            "--url",
            &format!("http://{}", server.addr),
        ])
        .env("CONFAB_API_KEY", &key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    tool.stdin
        .as_ref()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let made = tokio::task::spawn_blocking(move || tool.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let signed_in = server.login("boss", "correct horse").await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    // A wrong key makes nothing.
    let refused = server
        .http(
            "POST",
            "/api/accounts",
            Some(json!({"username": "someone", "password": "correct horse"})),
            &[("X-API-Key", "cfk_wrong")],
        )
        .await;
    assert_eq!(refused.status, 401);
    // Operators must be usernames: the start is refused otherwise.
    let mut config = server::config::Config::defaults();
    config.port = 0;
    config.operators = vec!["not a name".into()];
    let refused = match server::start(config).await {
        Ok(_) => panic!("started with a bad operator name"),
        Err(err) => err.to_string(),
    };
    assert!(refused.contains("--operators"), "{refused}");
}

#[tokio::test]
async fn deleting_the_api_key_file_revokes_its_keys() {
    let key = server::api_keys::new_key();
    let keys = common::TempFile::with(&server::api_keys::file_line("backend", &key));
    let server = TestServer::start_with(|c| c.api_keys_file = Some(keys.path())).await;
    let publish = || async {
        server
            .http(
                "POST",
                "/api/publish",
                Some(json!({"channel": "news", "data": 1})),
                &[("X-API-Key", &key)],
            )
            .await
            .status
    };
    assert_eq!(publish().await, 200);
    std::fs::remove_file(&keys.0).unwrap();
    common::eventually(Duration::from_secs(5), "the key revoked", || async {
        publish().await == 401
    })
    .await;
}

#[tokio::test]
async fn sessions_that_end_close_their_sockets_on_every_instance() {
    let redis = common::RedisServer::start().await;
    let (a, b) =
        common::two_redis_instances_with(&redis, "ends", |c| c.session_check_secs = 1).await;
    let mut on_a = a.client("Ana").await;
    let mut on_b = Client::signed_in(&b.ws_url(), &on_a.token).await;
    let other = a.client("Ben").await;
    // The session is removed from the store (it expired, or an operator removed it).
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let sessions: Vec<String> = redis::cmd("KEYS")
        .arg("ends:session:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2);
    let ana = server::auth::tokens::session_id(&on_a.token).unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("ends:session:{ana}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for socket in [&mut on_a, &mut on_b] {
        let (code, reason) = tokio::time::timeout(Duration::from_secs(4), socket.expect_close())
            .await
            .expect("closed within the check interval");
        assert_eq!((code, reason.as_str()), (4503, "session expired"));
    }
    drop(other);
}

#[tokio::test]
async fn a_session_past_its_maximum_age_closes_its_sockets() {
    let server = TestServer::start_with(|c| {
        c.session_check_secs = 1;
        c.session_ttl_secs = 2;
        c.session_max_age_secs = 4;
    })
    .await;
    let mut ana = server.client("Ana").await;
    // Checked every second, the connection keeps the session from idling out...
    ana.expect_silence(Duration::from_millis(3000)).await;
    // ...but not past its maximum age.
    let (code, _) = tokio::time::timeout(Duration::from_secs(4), ana.expect_close())
        .await
        .expect("closed once the session is four seconds old");
    assert_eq!(code, 4503);
}

#[tokio::test]
async fn hsts_is_sent_when_cookies_are_secure() {
    let plain = TestServer::start().await;
    let page = plain.http("GET", "/", None, &[]).await;
    assert_eq!(page.header("strict-transport-security"), None);
    let secure = TestServer::start_with(|c| c.secure_cookies = true).await;
    let page = secure.http("GET", "/", None, &[]).await;
    assert_eq!(
        page.header("strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
    let proxied =
        TestServer::start_with(|c| c.client_ip_header = Some("X-Forwarded-For".into())).await;
    let page = proxied
        .http(
            "GET",
            "/health",
            None,
            &[
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-For", "10.0.0.9"),
            ],
        )
        .await;
    assert_eq!(
        page.header("strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
}

// ---------------------------------------------------------------------------------------
// The last silent case: a pub/sub path that stays broken.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn clients_of_an_instance_whose_pubsub_stays_broken_are_sent_elsewhere() {
    let redis = common::RedisServer::start().await;
    let proxy = common::proxy::Proxy::start(redis.port).await;
    let fast_probes = |c: &mut server::config::Config| {
        c.pubsub_probe_interval_ms = 200;
        c.pubsub_probe_timeout_ms = 500;
    };
    let a = common::redis_instance_with(&redis, "stuck", fast_probes).await;
    let b = common::redis_instance_at_with(&proxy.url(), "stuck", fast_probes).await;
    b.until_ready().await;
    let mut sender = a.client("Sender").await;
    sender.join("r").await;
    let mut reader = b.client("Reader").await;
    reader.join("r").await;
    let first = sender.say("r", "before", "c0").await;
    assert_eq!(reader.expect("message").await["content"], "before");
    // Every pub/sub connection through the proxy is wedged, replacements too, for good.
    proxy.wedge_pubsub(true);
    let wedged_at = tokio::time::Instant::now();
    let (code, reason) = tokio::time::timeout(Duration::from_secs(6), reader.expect_close())
        .await
        .expect("sent elsewhere within detection plus two probe intervals");
    assert_eq!(code, 4004, "{reason}");
    eprintln!("sent elsewhere {:?} after the wedge", wedged_at.elapsed());
    assert_eq!(b.http("GET", "/health", None, &[]).await.status, 503);
    // Elsewhere, it resumes where it was and misses nothing.
    sender.say("r", "after", "c1").await;
    let mut back = Client::signed_in(&a.ws_url(), &reader.token).await;
    back.send(json!({"type": "join", "roomId": "r", "since": first["id"]}))
        .await;
    let resumed = back.expect("room_history").await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(common::fields(&resumed["messages"], "content"), ["after"]);
}

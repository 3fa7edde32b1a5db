//! Abuse resistance: foreign origins (CSRF, cross-site WebSocket hijacking), rates of
//! messages and typing per user, connections per user, and a client's word about who it is.

mod common;

use common::{http_request, Client, TestServer};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

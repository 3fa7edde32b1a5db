//! Every bad input gets a clear error with a stable code, and the connection lives on;
//! abuse closes it with a documented code. HTTP endpoints answer 4xx with JSON.

mod common;

use common::{Client, TestServer};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn each_bad_frame_gets_its_error_code_and_the_connection_lives() {
    let server = TestServer::start_with(|c| {
        c.max_content_bytes = 100;
        c.max_protocol_errors = 1000;
    })
    .await;
    // Before auth.
    let mut anon = Client::connect(&server.ws_url(), &[]).await;
    anon.expect("connected").await;
    for request in [
        json!({"type": "join", "roomId": "r"}),
        json!({"type": "message", "roomId": "r", "content": "x"}),
        json!({"type": "typing", "roomId": "r", "isTyping": true}),
        json!({"type": "leave", "roomId": "r"}),
    ] {
        anon.send(request).await;
        anon.expect_error("not_authenticated").await;
    }
    anon.send(json!({"type": "auth", "token": "not-a-real-token"}))
        .await;
    anon.expect_error("invalid_token").await;
    anon.send(json!({"type": "auth"})).await;
    anon.expect_error("invalid_message").await;
    anon.assert_alive().await;

    let mut ana = server.client("Ana").await;
    ana.join("r").await;
    let cases: Vec<(&str, String)> = vec![
        ("invalid_json", "{not json".into()),
        ("invalid_json", "".into()),
        ("unknown_type", r#"{"type":"dance"}"#.into()),
        ("unknown_type", r#"{"roomId":"r"}"#.into()),
        ("invalid_message", r#"{"type":"join"}"#.into()),
        (
            "invalid_message",
            r#"{"type":"message","roomId":"r"}"#.into(),
        ),
        (
            "invalid_message",
            r#"{"type":"typing","roomId":"r","isTyping":"yes"}"#.into(),
        ),
        ("invalid_message", "[1,2,3]".into()),
        (
            "invalid_room",
            r#"{"type":"join","roomId":"Not Valid"}"#.into(),
        ),
        ("invalid_room", r#"{"type":"join","roomId":""}"#.into()),
        (
            "invalid_room",
            format!(r#"{{"type":"join","roomId":"{}"}}"#, "r".repeat(65)),
        ),
        (
            "invalid_room",
            r#"{"type":"message","roomId":"../etc","content":"x"}"#.into(),
        ),
        (
            "not_in_room",
            r#"{"type":"message","roomId":"elsewhere","content":"x"}"#.into(),
        ),
        (
            "not_in_room",
            r#"{"type":"typing","roomId":"elsewhere","isTyping":true}"#.into(),
        ),
        (
            "not_in_room",
            r#"{"type":"leave","roomId":"elsewhere"}"#.into(),
        ),
        (
            "empty_content",
            r#"{"type":"message","roomId":"r","content":"   \n "}"#.into(),
        ),
        (
            "content_too_long",
            format!(
                r#"{{"type":"message","roomId":"r","content":"{}"}}"#,
                "x".repeat(101)
            ),
        ),
        (
            "invalid_content",
            r#"{"type":"message","roomId":"r","content":"bell\u0007"}"#.into(),
        ),
        (
            "invalid_client_msg_id",
            format!(
                r#"{{"type":"message","roomId":"r","content":"x","clientMsgId":"{}"}}"#,
                "c".repeat(65)
            ),
        ),
        (
            "invalid_since",
            r#"{"type":"join","roomId":"r2","since":"yesterday"}"#.into(),
        ),
    ];
    for (code, frame) in &cases {
        ana.send_text(frame).await;
        let error = ana.expect_error(code).await;
        assert!(
            !error["error"].as_str().unwrap().contains(" at line "),
            "no parser positions: {error}"
        );
    }
    // A refused send names its clientMsgId and room, so the client can mark that message.
    ana.send(json!({"type": "message", "roomId": "r", "content": "", "clientMsgId": "c9"}))
        .await;
    let error = ana.expect_error("empty_content").await;
    assert_eq!(error["clientMsgId"], "c9");
    assert_eq!(error["roomId"], "r");
    ana.send_raw(Message::binary(vec![1, 2, 3])).await;
    ana.expect_error("invalid_message").await;
    ana.assert_alive().await;
    // Nothing refused was stored.
    let page = server
        .http("GET", "/api/rooms/r/messages", None, &[])
        .await
        .json();
    assert_eq!(page["messages"], json!([]));
}

#[tokio::test]
async fn a_signed_in_connection_cannot_switch_user() {
    let server = TestServer::start().await;
    let mut ana = server.client("Ana").await;
    let (ben_token, _) = server.guest("Ben").await;
    ana.send(json!({"type": "auth", "token": ben_token})).await;
    ana.expect_error("invalid_token").await;
    // Still Ana: her messages carry her id.
    ana.join("r").await;
    let mut watcher = server.client("Watcher").await;
    watcher.join("r").await;
    ana.say("r", "who am I", "c1").await;
    assert_eq!(
        watcher.expect("message").await["userId"],
        ana.user_id.as_str()
    );
    // Her own token again is fine: answered with who she is.
    ana.send(json!({"type": "auth", "token": ana.token})).await;
    assert_eq!(
        ana.expect("authenticated").await["userId"],
        ana.user_id.as_str()
    );
}

#[tokio::test]
async fn oversize_frames_close_with_1009() {
    let server = TestServer::start_with(|c| {
        c.max_frame_bytes = 1024;
        c.max_content_bytes = 512;
    })
    .await;
    let mut ana = server.client("Ana").await;
    ana.join("r").await;
    let big = json!({"type": "message", "roomId": "r", "content": "x".repeat(2000)});
    ana.send(big).await;
    let (code, _) = ana.expect_close().await;
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start().await;
    let mut ana = server.client("Ana").await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ana.send_raw(Message::Frame(frame)).await;
    let (code, _) = ana.expect_close().await;
    assert_eq!(code, 1007);
}

#[tokio::test]
async fn too_many_protocol_errors_close_with_4501() {
    let server = TestServer::start_with(|c| c.max_protocol_errors = 5).await;
    let mut ana = server.client("Ana").await;
    for _ in 0..6 {
        ana.send_text("nonsense").await;
    }
    let (code, _) = ana.expect_close().await;
    assert_eq!(code, 4501);
}

#[tokio::test]
async fn unauthenticated_sockets_are_closed_with_4500() {
    let server = TestServer::start_with(|c| c.auth_timeout_secs = 1).await;
    let mut anon = Client::connect(&server.ws_url(), &[]).await;
    anon.expect("connected").await;
    let (code, _) = anon.expect_close().await;
    assert_eq!(code, 4500);
    // An authenticated one stays past the timeout.
    let mut ana = server.client("Ana").await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    ana.assert_alive().await;
}

#[tokio::test]
async fn rooms_per_connection_are_limited() {
    let server = TestServer::start_with(|c| c.max_rooms_per_connection = 2).await;
    let mut ana = server.client("Ana").await;
    ana.join("a").await;
    ana.join("b").await;
    ana.join("a").await; // rejoining is not a new room
    ana.send(json!({"type": "join", "roomId": "c"})).await;
    ana.expect_error("too_many_rooms").await;
    ana.send(json!({"type": "leave", "roomId": "a"})).await;
    ana.join("c").await;
}

#[tokio::test]
async fn http_errors_are_json() {
    let server = TestServer::start().await;
    let cases = [
        ("POST", "/api/session", Some("{broken"), 400, "invalid_json"),
        (
            "POST",
            "/api/session",
            Some(r#"{"nom":"x"}"#),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/session",
            Some(r#"{"name":"   "}"#),
            400,
            "invalid_message",
        ),
        (
            "POST",
            "/api/session",
            Some(r#"{"name":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#),
            400,
            "invalid_message",
        ),
        (
            "GET",
            "/api/rooms/Bad%20Room/members",
            None,
            400,
            "invalid_room",
        ),
        (
            "GET",
            "/api/rooms/ok/messages?before=nope",
            None,
            400,
            "invalid_since",
        ),
        ("GET", "/api/nothing-here", None, 404, "not_found"),
        ("PUT", "/health", None, 405, "method_not_allowed"),
        // Pages, too: a wrong method is a JSON refusal, not an empty body.
        ("POST", "/rooms/general", None, 405, "method_not_allowed"),
        ("PUT", "/", None, 405, "method_not_allowed"),
        ("DELETE", "/signin", None, 405, "method_not_allowed"),
        ("GET", "/api/session", None, 401, "not_authenticated"),
    ];
    for (method, path, body, status, code) in cases {
        let response =
            common::http_request(server.addr, method, path, body.map(String::from), &[]).await;
        assert_eq!(
            response.status, status,
            "{method} {path}: {}",
            response.body
        );
        assert_eq!(response.json()["code"], code, "{method} {path}");
        assert!(response.json()["error"].as_str().is_some());
    }
}

/// What a client that keeps sending hears: it writes `frames` one after another and, between
/// writes, reads what has arrived, until the server's close frame. Returns the error codes
/// it read and the close code. A write that fails before the close was read (the server reset
/// the connection) fails the test: browsers and most clients then report 1006 and lose the
/// error and the close code.
async fn errors_then_close(
    mut socket: common::Socket,
    frames: impl Iterator<Item = Message>,
) -> (Vec<String>, u16) {
    use futures::{FutureExt, SinkExt, StreamExt};
    let mut errors = Vec::new();
    let read = |frame: Option<Result<Message, _>>, errors: &mut Vec<String>| match frame {
        Some(Ok(Message::Text(text))) => {
            let event: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if event["type"] == "error" {
                errors.push(event["code"].as_str().unwrap().to_string());
            }
            None
        }
        Some(Ok(Message::Close(Some(frame)))) => Some(u16::from(frame.code)),
        Some(Ok(_)) => None,
        other => panic!("expected the close frame, got {other:?} (the client would see 1006)"),
    };
    for frame in frames {
        while let Some(next) = socket.next().now_or_never() {
            if let Some(code) = read(next, &mut errors) {
                return (errors, code);
            }
        }
        if let Err(err) = socket.send(frame).await {
            panic!("a write failed before the close was read ({err}): the client would see 1006");
        }
    }
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the close in time");
        if let Some(code) = read(next, &mut errors) {
            return (errors, code);
        }
    }
}

#[tokio::test]
async fn a_flood_that_keeps_sending_hears_its_errors_and_4501() {
    let server = TestServer::start_with(|c| {
        c.send_rate = 1.0;
        c.send_burst = 2;
        c.max_protocol_errors = 5;
    })
    .await;
    let mut ana = server.client("Ana").await;
    ana.join("r").await;
    // The flood does not stop when refused: it keeps writing until it reads the close.
    let flood = (0..20_000).map(|n| {
        let message = json!({"type": "message", "roomId": "r", "content": "flood", "clientMsgId": format!("f{n}")});
        Message::text(message.to_string())
    });
    let (errors, code) = errors_then_close(ana.socket, flood).await;
    assert!(errors.iter().any(|e| e == "rate_limited"), "{errors:?}");
    assert_eq!(code, 4501);
}

#[tokio::test]
async fn a_4_mib_frame_is_answered_with_1009() {
    let server = TestServer::start().await; // frames up to 64 KiB
    let ana = server.client("Ana").await;
    let big = Message::text("x".repeat(4 * 1024 * 1024));
    let (_, code) = errors_then_close(ana.socket, std::iter::once(big)).await;
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn server_functions_answer_client_mistakes_with_4xx() {
    let server = TestServer::start().await;
    let form = |body: &str| (Some(body.to_string()), "application/x-www-form-urlencoded");
    let post = |path: &'static str, (body, kind): (Option<String>, &'static str)| {
        let addr = server.addr;
        async move { common::http_request(addr, "POST", path, body, &[("Content-Type", kind)]).await }
    };
    // A JSON body where a form is expected, or a missing argument: 400 with a JSON error.
    for (body, kind) in [
        (
            Some(r#"{"username":"abc","password":"long enough"}"#.to_string()),
            "application/json",
        ),
        form("username=abc"),
    ] {
        let response = post("/fn/register", (body, kind)).await;
        assert_eq!(response.status, 400, "{}", response.body);
        assert_eq!(
            response.json()["code"],
            "invalid_message",
            "{}",
            response.body
        );
    }
    // The server function's own refusals carry their status.
    assert_eq!(
        post("/fn/register", form("username=abc&password=short"))
            .await
            .status,
        400
    );
    let created = post("/fn/register", form("username=abc&password=long+enough")).await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(
        post("/fn/register", form("username=ABC&password=other+words"))
            .await
            .status,
        409
    );
    assert_eq!(
        post("/fn/sign_in", form("username=abc&password=wrong+words"))
            .await
            .status,
        401
    );
    // Server functions live under /fn: /api is the JSON API's, and unknown paths are JSON 404s.
    for path in ["/api/register", "/fn/no_such_function"] {
        let response = post(path, form("x=1")).await;
        assert_eq!(response.status, 404, "{path}: {}", response.body);
        assert_eq!(response.json()["code"], "not_found");
    }
}

#[tokio::test]
async fn ws_without_a_valid_upgrade_is_refused_with_a_json_error() {
    let server = TestServer::start().await;
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let cases: [(&[(&str, &str)], u16); 4] = [
        (&[], 426),      // a plain GET
        (&upgrade, 400), // no version
        (
            &[
                upgrade[0],
                upgrade[1],
                upgrade[2],
                ("Sec-WebSocket-Version", "8"),
            ],
            400,
        ),
        (
            &[upgrade[0], upgrade[1], ("Sec-WebSocket-Version", "13")],
            400,
        ), // no key
    ];
    for (headers, status) in cases {
        let response = server.http("GET", "/ws", None, headers).await;
        assert_eq!(response.status, status, "{headers:?}: {}", response.body);
        assert_eq!(response.json()["code"], "websocket_required", "{headers:?}");
    }
    // And a valid one is answered 101 (the clients in every other test connect this way).
    let mut valid = upgrade.to_vec();
    valid.push(("Sec-WebSocket-Version", "13"));
    let addr = server.addr;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in &valid {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

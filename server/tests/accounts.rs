//! Accounts and sessions over HTTP and WebSocket: registration, sign-in, the same answer for
//! a wrong password and an unknown user, unique usernames in any case, forged and expired
//! tokens, sliding and absolute expiry, sign-out closing live sockets, attempt limits.

mod common;

use common::{Client, HttpResponse, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

fn token_of(response: &HttpResponse) -> String {
    response.json()["token"]
        .as_str()
        .expect("token")
        .to_string()
}

fn assert_refused(response: &HttpResponse, status: u16, code: &str) -> Value {
    assert_eq!(response.status, status, "{}", response.body);
    let body = response.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    body
}

#[tokio::test]
async fn register_sign_in_and_chat_with_the_token() {
    let server = TestServer::start().await;
    let created = server.register("Ana_1", "correct horse").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let body = created.json();
    assert_eq!(body["user"]["name"], "Ana_1");
    assert_eq!(body["user"]["guest"], false);
    let token = token_of(&created);
    assert_eq!(token.len(), 64);
    let cookie = created.header("set-cookie").expect("cookie");
    assert!(
        cookie.starts_with(&format!("confab_session={token};")),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    // Sign in again (any case): a second session of the same user.
    let signed = server.login("ana_1", "correct horse").await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert_eq!(signed.json()["user"], body["user"]);
    let second = token_of(&signed);
    assert_ne!(second, token);
    assert_eq!(server.whoami(&second).await.json()["user"], body["user"]);

    // The token works on the WebSocket, by bearer header and by `auth`.
    let bearer = format!("Bearer {token}");
    let mut by_header = Client::connect(&server.ws_url(), &[("Authorization", &bearer)]).await;
    by_header.expect("connected").await;
    let authed = by_header.expect("authenticated").await;
    assert_eq!(authed["name"], "Ana_1");
    assert_eq!(authed["guest"], false);
    let mut by_auth = Client::signed_in(&server.ws_url(), &second).await;
    by_header.join("r").await;
    by_auth.join("r").await;
    by_header.say("r", "hello", "c1").await;
    let delivered = by_auth.expect("message").await;
    assert_eq!(delivered["name"], "Ana_1");
    assert_eq!(delivered["userId"], body["user"]["id"]);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let server = TestServer::start().await;
    assert_eq!(server.register("ana", "correct horse").await.status, 201);
    let wrong = assert_refused(
        &server.login("ana", "wrong horse").await,
        401,
        "invalid_credentials",
    );
    let unknown = assert_refused(
        &server.login("nobody", "correct horse").await,
        401,
        "invalid_credentials",
    );
    assert_eq!(wrong, unknown, "no hint which usernames exist");
    let malformed = assert_refused(
        &server.login("a", "correct horse").await,
        401,
        "invalid_credentials",
    );
    assert_eq!(malformed, wrong);
    assert!(server.login("ana", "correct horse").await.status == 200);
}

#[tokio::test]
async fn usernames_are_unique_in_any_case_and_guests_cannot_take_them() {
    let server = TestServer::start().await;
    assert_eq!(server.register("Ana", "correct horse").await.status, 201);
    for taken in ["Ana", "ana", "ANA", " aNa "] {
        assert_refused(
            &server.register(taken, "another horse").await,
            409,
            "username_taken",
        );
    }
    let guest = server
        .http("POST", "/api/session", Some(json!({"name": "ANA"})), &[])
        .await;
    assert_refused(&guest, 409, "username_taken");
    // A display name that could never be a username stays free for guests.
    let guest = server
        .http(
            "POST",
            "/api/session",
            Some(json!({"name": "Ana Lopes"})),
            &[],
        )
        .await;
    assert_eq!(guest.status, 200, "{}", guest.body);
    assert_eq!(guest.json()["user"]["guest"], true);

    // Rules of usernames and passwords.
    assert_refused(
        &server.register("ab", "correct horse").await,
        400,
        "invalid_username",
    );
    assert_refused(
        &server.register("bad name", "correct horse").await,
        400,
        "invalid_username",
    );
    assert_refused(
        &server.register("ben", "short").await,
        400,
        "invalid_password",
    );
    assert_refused(
        &server.register("benjamin", "BENJAMIN").await,
        400,
        "invalid_password",
    );
    let missing = server
        .http(
            "POST",
            "/api/accounts",
            Some(json!({"username": "ben"})),
            &[],
        )
        .await;
    assert_refused(&missing, 400, "invalid_json");
}

#[tokio::test]
async fn forged_and_expired_tokens_are_refused() {
    let server = TestServer::start_with(|c| {
        c.session_ttl_secs = 1;
        c.session_max_age_secs = 1;
    })
    .await;
    let forged = "ab".repeat(32);
    for token in [forged.as_str(), "short", "<script>"] {
        assert_refused(&server.whoami(token).await, 401, "not_authenticated");
        let mut socket = Client::connect(&server.ws_url(), &[]).await;
        socket.expect("connected").await;
        socket.send(json!({"type": "auth", "token": token})).await;
        socket.expect_error("invalid_token").await;
    }

    let token = token_of(&server.register("ana", "correct horse").await);
    assert_eq!(server.whoami(&token).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_refused(&server.whoami(&token).await, 401, "not_authenticated");
    let mut socket = Client::connect(&server.ws_url(), &[]).await;
    socket.expect("connected").await;
    socket.send(json!({"type": "auth", "token": token})).await;
    socket.expect_error("invalid_token").await;
}

#[tokio::test]
async fn use_extends_a_session_up_to_its_maximum_age() {
    let server = TestServer::start_with(|c| {
        c.session_ttl_secs = 2;
        c.session_max_age_secs = 4;
    })
    .await;
    let token = token_of(&server.register("ana", "correct horse").await);
    // Used every 0.6 s, the session outlives its 2 s idle lifetime...
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(server.whoami(&token).await.status, 200);
    }
    // ...but not its 4 s maximum age, however often it is used.
    let mut expired = false;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if server.whoami(&token).await.status == 401 {
            expired = true;
            break;
        }
    }
    assert!(expired, "the session ended at its maximum age");

    // Left alone, a session ends after its idle lifetime.
    let idle = token_of(&server.login("ana", "correct horse").await);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_refused(&server.whoami(&idle).await, 401, "not_authenticated");
}

#[tokio::test]
async fn signing_out_closes_that_sessions_sockets() {
    let server = TestServer::start().await;
    let token = token_of(&server.register("ana", "correct horse").await);
    let other_session = token_of(&server.login("ana", "correct horse").await);
    let mut tab1 = Client::signed_in(&server.ws_url(), &token).await;
    let cookie = format!("confab_session={token}");
    let mut tab2 = Client::connect(&server.ws_url(), &[("Cookie", &cookie)]).await;
    tab2.expect("authenticated").await;
    let mut elsewhere = Client::signed_in(&server.ws_url(), &other_session).await;

    let out = server.sign_out(&token).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(tab1.expect_close().await.0, 4503);
    assert_eq!(tab2.expect_close().await.0, 4503);
    elsewhere.assert_alive().await;
    assert_refused(&server.whoami(&token).await, 401, "not_authenticated");
    assert_eq!(server.whoami(&other_session).await.status, 200);
}

#[tokio::test]
async fn sign_in_failures_are_limited_per_username_and_per_address() {
    let server = TestServer::start_with(|c| {
        c.login_failures_per_user = 3;
        c.login_failures_per_address = 5;
    })
    .await;
    for name in ["ana", "ben"] {
        assert_eq!(server.register(name, "correct horse").await.status, 201);
    }
    for _ in 0..3 {
        assert_refused(
            &server.login("ana", "guess").await,
            401,
            "invalid_credentials",
        );
    }
    // Locked: even the right password is refused until the window ends.
    let locked = server.login("ANA", "correct horse").await;
    assert_refused(&locked, 429, "rate_limited");
    let retry: u64 = locked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // Another user is still fine, until this address has failed 5 times in all.
    assert_eq!(server.login("ben", "correct horse").await.status, 200);
    for _ in 0..2 {
        assert_refused(
            &server.login("ben", "guess").await,
            401,
            "invalid_credentials",
        );
    }
    assert_refused(
        &server.login("ben", "correct horse").await,
        429,
        "rate_limited",
    );
}

#[tokio::test]
async fn accounts_and_guests_per_address_are_limited() {
    let server = TestServer::start_with(|c| {
        c.registrations_per_address = 2;
        c.guests_per_address = 3;
    })
    .await;
    assert_eq!(server.register("ana", "correct horse").await.status, 201);
    assert_eq!(server.register("ben", "correct horse").await.status, 201);
    assert_refused(
        &server.register("cat", "correct horse").await,
        429,
        "rate_limited",
    );
    for _ in 0..3 {
        server.guest("Guest").await;
    }
    let refused = server
        .http("POST", "/api/session", Some(json!({"name": "Guest"})), &[])
        .await;
    assert_refused(&refused, 429, "rate_limited");
}

#[tokio::test]
async fn the_cookie_is_secure_behind_an_https_proxy() {
    let server =
        TestServer::start_with(|c| c.client_ip_header = Some("X-Forwarded-For".into())).await;
    let response = server
        .http(
            "POST",
            "/api/session",
            Some(json!({"name": "Ana"})),
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "https"),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.header("set-cookie").unwrap().contains("; Secure"));
}

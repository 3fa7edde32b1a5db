//! The server API: a backend publishes to channels with an API key (`POST /api/publish`, one
//! or a batch), subscribers on any instance get it; keys are checked (missing, wrong,
//! revoked by editing the key file, none configured), bad requests publish nothing; and the
//! same from the shell with `confab publish`.

mod common;

use common::{eventually, redis_instance, Client, Redises, TempFile, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

/// A key file for `--api-keys-file` (removed when dropped).
struct KeyFile(TempFile);

impl KeyFile {
    /// A file listing `names`; returns it and each name's key.
    fn with(names: &[&str]) -> (KeyFile, Vec<String>) {
        let file = KeyFile(TempFile::with(""));
        let keys = file.write(names);
        (file, keys)
    }

    /// Replaces the file's keys with new ones for `names`.
    fn write(&self, names: &[&str]) -> Vec<String> {
        let keys: Vec<String> = names.iter().map(|_| server::api_keys::new_key()).collect();
        let mut text = String::from("# test keys\n");
        for (name, key) in names.iter().zip(&keys) {
            text.push_str(&server::api_keys::file_line(name, key));
            text.push('\n');
        }
        self.0.write(&text);
        keys
    }

    fn path(&self) -> String {
        self.0.path()
    }
}

async fn server_with_keys(file: &KeyFile) -> TestServer {
    let path = file.path();
    TestServer::start_with(move |c| c.api_keys_file = Some(path)).await
}

async fn subscriber(server: &TestServer, channel: &str) -> Client {
    let mut client = server.client("Dash").await;
    client
        .send(json!({"type": "subscribe", "channel": channel}))
        .await;
    client.expect("subscribed").await;
    client
}

async fn publish(server: &TestServer, key: &str, body: Value) -> common::HttpResponse {
    let bearer = format!("Bearer {key}");
    server
        .http(
            "POST",
            "/api/publish",
            Some(body),
            &[("authorization", bearer.as_str())],
        )
        .await
}

#[tokio::test]
async fn a_backend_publishes_with_its_key_one_or_a_batch() {
    let (file, keys) = KeyFile::with(&["billing", "metrics"]);
    let server = server_with_keys(&file).await;
    let mut dashboard = subscriber(&server, "revenue").await;

    let one = publish(
        &server,
        &keys[0],
        json!({"channel": "revenue", "data": {"eur": 12}}),
    )
    .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["published"], 1);
    // No history in the default namespace: no offset.
    assert_eq!(one.json()["offsets"], serde_json::json!([null]));
    assert_eq!(
        dashboard.expect("publication").await["data"],
        json!({"eur": 12})
    );

    // The other key, a batch, and the X-API-Key header.
    let batch = json!({"publications": [
        {"channel": "revenue", "data": 1},
        {"channel": "elsewhere", "data": 2},
        {"channel": "revenue", "data": 3},
    ]});
    let answer = server
        .http(
            "POST",
            "/api/publish",
            Some(batch),
            &[("x-api-key", keys[1].as_str())],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["published"], 3);
    for expected in [1, 3] {
        assert_eq!(dashboard.expect("publication").await["data"], expected);
    }
    dashboard.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn keys_are_checked_and_bad_requests_publish_nothing() {
    let (file, keys) = KeyFile::with(&["billing"]);
    let server = server_with_keys(&file).await;
    let mut dashboard = subscriber(&server, "revenue").await;
    let good = json!({"channel": "revenue", "data": 1});

    let missing = server
        .http("POST", "/api/publish", Some(good.clone()), &[])
        .await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["code"], "invalid_api_key");
    let wrong = publish(&server, &server::api_keys::new_key(), good.clone()).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "unknown or revoked API key");

    let too_many: Vec<Value> = (0..101)
        .map(|n| json!({"channel": "revenue", "data": n}))
        .collect();
    for (body, code) in [
        (json!({"channel": "bad name", "data": 1}), "invalid_channel"),
        (json!({"channel": "ns:x", "data": 1}), "unknown_namespace"),
        (
            json!({"channel": "revenue", "data": "x".repeat(20_000)}),
            "data_too_large",
        ),
        (json!({"channel": "revenue"}), "invalid_message"),
        (json!({"publications": []}), "invalid_message"),
        (json!({"publications": too_many}), "invalid_message"),
        (
            json!({"channel": "revenue", "data": 1, "extra": 2}),
            "invalid_json",
        ),
        // One bad publication in a batch: none is sent.
        (
            json!({"publications": [{"channel": "revenue", "data": 1}, {"channel": "", "data": 2}]}),
            "invalid_channel",
        ),
    ] {
        let answer = publish(&server, &keys[0], body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.json()["code"], code, "{body}");
    }
    let not_json = server
        .http(
            "POST",
            "/api/publish",
            None,
            &[("authorization", &format!("Bearer {}", keys[0]))],
        )
        .await;
    assert_eq!(not_json.status, 400);
    dashboard.expect_silence(Duration::from_millis(300)).await;

    // Without a key file, the API says so.
    let keyless = TestServer::start().await;
    let answer = publish(&keyless, &keys[0], good).await;
    assert_eq!(answer.status, 401);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("--api-keys-file"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn deleting_a_keys_line_revokes_it_without_a_restart() {
    let (file, keys) = KeyFile::with(&["old"]);
    let server = server_with_keys(&file).await;
    let body = json!({"channel": "revenue", "data": 1});
    assert_eq!(publish(&server, &keys[0], body.clone()).await.status, 200);
    let new_keys = file.write(&["new"]);
    eventually(Duration::from_secs(10), "the old key refused", || async {
        publish(&server, &keys[0], body.clone()).await.status == 401
    })
    .await;
    assert_eq!(publish(&server, &new_keys[0], body).await.status, 200);
}

#[tokio::test]
async fn a_publication_reaches_subscribers_on_every_instance() {
    let (file, keys) = KeyFile::with(&["billing"]);
    let redis = Redises::standalone().await;
    let path = file.path();
    let a = TestServer::start_with({
        let (url, path) = (common::RedisTarget::url(&redis), path.clone());
        move |c| {
            c.redis_url = Some(url);
            c.api_keys_file = Some(path);
        }
    })
    .await;
    let b = redis_instance(&redis, "confab").await;
    let mut on_b = subscriber(&b, "revenue").await;
    let answer = publish(&a, &keys[0], json!({"channel": "revenue", "data": "cross"})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(on_b.expect("publication").await["data"], "cross");
}

#[tokio::test]
async fn confab_publish_from_the_shell() {
    let (file, keys) = KeyFile::with(&["shell"]);
    let server = server_with_keys(&file).await;
    let mut dashboard = subscriber(&server, "deploys").await;
    let url = format!("http://{}", server.addr);
    // On the blocking pool: the server runs on this test's runtime and must keep serving.
    let run = |key: &str, json: &str| {
        let (key, json, url) = (key.to_string(), json.to_string(), url.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
                    .args(["publish", "deploys", &json, "--url", &url])
                    .env("CONFAB_API_KEY", key)
                    .output()
                    .expect("confab runs")
            })
            .await
            .unwrap()
        }
    };
    let ok = run(&keys[0], r#"{"version": "1.2.3"}"#).await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        dashboard.expect("publication").await["data"],
        json!({"version": "1.2.3"})
    );
    let refused = run("cfk_wrong", "1").await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let not_json = run(&keys[0], "{nope").await;
    assert_eq!(not_json.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_json.stderr).contains("not JSON"));
    dashboard.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_bad_key_file_stops_the_start_and_names_the_line() {
    let (file, _) = KeyFile::with(&["fine"]);
    file.0.write("fine 00ff\n");
    let mut config = server::config::Config::defaults();
    config.port = 0;
    config.api_keys_file = Some(file.path());
    let Err(err) = server::start(config).await else {
        panic!("started with a bad key file");
    };
    assert!(
        err.to_string()
            .contains("line 1: `00ff` is not 64 hex digits"),
        "{err}"
    );
}

#[tokio::test]
async fn the_shell_tools_refuse_bad_input() {
    let confab = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(args)
            .env("CONFAB_API_KEY", "cfk_x")
            .output()
            .expect("confab runs")
    };
    // A new key's printed line is the line for that key.
    let made = confab(&["api-key", "new", "billing"]);
    assert!(made.status.success());
    let out = String::from_utf8_lossy(&made.stdout).to_string();
    let key = out.lines().find_map(|l| l.strip_prefix("key:  ")).unwrap();
    let line = out.lines().find_map(|l| l.strip_prefix("line: ")).unwrap();
    assert_eq!(line, server::api_keys::file_line("billing", key));
    for (args, error) in [
        (&["api-key", "new", "two words"][..], "one word"),
        (
            &["publish", "c", "1", "--url", "https://example.com"],
            "http://host:port",
        ),
        (
            &["publish", "c", "1", "--url", "http://"],
            "http://host:port",
        ),
    ] {
        let refused = confab(args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains(error),
            "{args:?}"
        );
    }
    // Nobody listening: refused (1), saying whom it could not reach.
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let unreachable = confab(&["publish", "c", "1", "--url", &url]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));
}

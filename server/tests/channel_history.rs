//! Channels whose namespace keeps history: a subscriber is given the newest kept
//! publications, resumes with `since` + `epoch` exactly (or is told `recovered: false`, never
//! given a wrong history), history expires with its retention, and a pub/sub gap on an
//! instance is caught up from the kept history, every publication once and in order. On the
//! memory engine and on every Redis topology.

mod common;

use common::cluster::RedisCluster;
use common::{two_redis_instances_with, Client, Deployment, Redises, TempFile, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

/// `stats` keeps 5 publications for a minute, `brief` 10 for one second, `""` nothing.
fn namespaces() -> TempFile {
    TempFile::with(
        r#"{"stats": {"subscribe": "signed_in", "publish": "signed_in",
                      "history_size": 5, "history_ttl": 60},
            "brief": {"subscribe": "signed_in", "publish": "signed_in",
                      "history_size": 10, "history_ttl": 1},
            "":      {"subscribe": "signed_in", "publish": "signed_in"}}"#,
    )
}

async fn subscribe(client: &mut Client, request: Value) -> Value {
    client.send(request).await;
    client.expect("subscribed").await
}

/// Publishes `data` and waits for it to come back to the publisher (subscribed to the
/// channel): its offset.
async fn publish(publisher: &mut Client, channel: &str, data: Value) -> String {
    publisher
        .send(json!({"type": "publish", "channel": channel, "data": data}))
        .await;
    let publication = publisher.expect("publication").await;
    assert_eq!(publication["data"], data);
    publication["offset"]
        .as_str()
        .expect("a kept publication has an offset")
        .to_string()
}

fn datas(answer: &Value) -> Vec<Value> {
    answer["publications"]
        .as_array()
        .map(|list| list.iter().map(|p| p["data"].clone()).collect())
        .unwrap_or_default()
}

/// The whole life of a kept channel, with the publisher on `a` and the readers on `b`.
async fn kept_history_is_given_resumed_and_bounded(a: &TestServer, b: &TestServer, key: &str) {
    let mut publisher = a.client("Feed").await;
    subscribe(
        &mut publisher,
        json!({"type": "subscribe", "channel": "stats:eu"}),
    )
    .await;
    let mut offsets = Vec::new();
    for n in 0..8 {
        offsets.push(publish(&mut publisher, "stats:eu", json!({"n": n})).await);
    }

    // A new subscriber gets the newest 5, oldest first, and the history's epoch.
    let mut reader = b.client("Dash").await;
    let answer = subscribe(
        &mut reader,
        json!({"type": "subscribe", "channel": "stats:eu"}),
    )
    .await;
    assert_eq!(
        datas(&answer),
        (3..8).map(|n| json!({"n": n})).collect::<Vec<_>>()
    );
    assert!(answer.get("recovered").is_none(), "{answer}");
    let epoch = answer["epoch"].as_str().expect("an epoch").to_string();
    let kept_offsets: Vec<&str> = answer["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_str().unwrap())
        .collect();
    assert_eq!(kept_offsets, offsets[3..]);

    // Live publications follow, with their offsets; the reader goes away after one.
    let live = publish(&mut publisher, "stats:eu", json!({"n": 8})).await;
    let publication = reader.expect("publication").await;
    assert_eq!(publication["offset"], live.as_str());
    drop(reader);
    publish(&mut publisher, "stats:eu", json!({"n": 9})).await;
    publish(&mut publisher, "stats:eu", json!({"n": 10})).await;

    // Back with where it stood: exactly what it missed, then live again.
    let mut reader = b.client("Dash").await;
    let resumed = subscribe(
        &mut reader,
        json!({"type": "subscribe", "channel": "stats:eu", "since": live, "epoch": epoch}),
    )
    .await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(datas(&resumed), [json!({"n": 9}), json!({"n": 10})]);
    assert_eq!(resumed["epoch"], epoch.as_str());
    publish(&mut publisher, "stats:eu", json!({"n": 11})).await;
    assert_eq!(reader.expect("publication").await["data"], json!({"n": 11}));
    reader.expect_silence(Duration::from_millis(200)).await;

    // From a position trimmed away, from another epoch, or from an offset this history never
    // gave: not recovered, and the newest instead.
    for (since, epoch, why) in [
        (offsets[0].clone(), epoch.clone(), "trimmed"),
        (
            live.clone(),
            "0123456789abcdef".to_string(),
            "another epoch",
        ),
        ("99999999999999-0".to_string(), epoch.clone(), "never given"),
    ] {
        let mut late = b.client("Late").await;
        let answer = subscribe(
            &mut late,
            json!({"type": "subscribe", "channel": "stats:eu", "since": since, "epoch": epoch}),
        )
        .await;
        assert_eq!(answer["recovered"], false, "{why}: {answer}");
        assert_eq!(
            datas(&answer),
            (7..12).map(|n| json!({"n": n})).collect::<Vec<_>>(),
            "{why}"
        );
    }

    // A bad offset is refused; the connection lives on.
    reader
        .send(json!({"type": "subscribe", "channel": "stats:eu", "since": "yesterday"}))
        .await;
    let refused = reader.expect_error("invalid_since").await;
    assert_eq!(refused["channel"], "stats:eu");
    reader.assert_alive().await;

    // The default namespace keeps nothing: no offsets, no epoch, no history.
    let mut plain = b.client("Plain").await;
    let answer = subscribe(&mut plain, json!({"type": "subscribe", "channel": "news"})).await;
    assert!(answer.get("epoch").is_none() && answer.get("publications").is_none());
    publisher
        .send(json!({"type": "publish", "channel": "news", "data": 1}))
        .await;
    let publication = plain.expect("publication").await;
    assert!(publication.get("offset").is_none(), "{publication}");

    // The server API answers each publication's offset.
    let bearer = format!("Bearer {key}");
    let published = a
        .http(
            "POST",
            "/api/publish",
            Some(json!({"publications": [
                {"channel": "stats:eu", "data": {"n": 12}},
                {"channel": "news", "data": 2}]})),
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.body);
    let offsets = published.json()["offsets"].clone();
    assert!(offsets[1].is_null(), "{offsets}");
    let live = reader.expect("publication").await;
    assert_eq!(live["data"], json!({"n": 12}));
    assert_eq!(live["offset"], offsets[0]);
}

/// History expires `history_ttl` after the last publication, with its epoch: a position from
/// before is never resumed from the history that follows.
async fn kept_history_expires_with_its_epoch(a: &TestServer, b: &TestServer) {
    let mut publisher = a.client("Feed").await;
    subscribe(
        &mut publisher,
        json!({"type": "subscribe", "channel": "brief:x"}),
    )
    .await;
    let offset = publish(&mut publisher, "brief:x", json!("old")).await;
    let mut reader = b.client("Dash").await;
    let answer = subscribe(
        &mut reader,
        json!({"type": "subscribe", "channel": "brief:x"}),
    )
    .await;
    assert_eq!(datas(&answer), [json!("old")]);
    let epoch = answer["epoch"].as_str().unwrap().to_string();
    drop(reader);

    tokio::time::sleep(Duration::from_millis(2_200)).await;
    publish(&mut publisher, "brief:x", json!("new")).await;
    let mut reader = b.client("Dash").await;
    let answer = subscribe(
        &mut reader,
        json!({"type": "subscribe", "channel": "brief:x", "since": offset, "epoch": epoch}),
    )
    .await;
    assert_eq!(answer["recovered"], false, "{answer}");
    assert_ne!(answer["epoch"], epoch.as_str());
    assert_eq!(datas(&answer), [json!("new")]);
}

/// The namespaces above and an API key for the server API.
struct Files {
    namespaces: TempFile,
    keys: TempFile,
    key: String,
}

fn files() -> Files {
    let key = server::api_keys::new_key();
    Files {
        namespaces: namespaces(),
        keys: TempFile::with(&server::api_keys::file_line("backend", &key)),
        key,
    }
}

fn kept(config: &mut server::config::Config, files: &Files) {
    config.namespaces_file = Some(files.namespaces.path());
    config.api_keys_file = Some(files.keys.path());
}

#[tokio::test]
async fn kept_history_on_memory() {
    let files = files();
    let server = TestServer::start_with(|c| kept(c, &files)).await;
    kept_history_is_given_resumed_and_bounded(&server, &server, &files.key).await;
    kept_history_expires_with_its_epoch(&server, &server).await;
}

async fn on_redis(redis: impl Deployment) {
    let files = files();
    let (a, b) = two_redis_instances_with(&redis, "kept", |c| kept(c, &files)).await;
    kept_history_is_given_resumed_and_bounded(&a, &b, &files.key).await;
    kept_history_expires_with_its_epoch(&a, &b).await;
}

#[tokio::test]
async fn kept_history_on_one_redis() {
    on_redis(Redises::standalone().await).await;
}

#[tokio::test]
async fn kept_history_on_shards() {
    on_redis(Redises::shards(2).await).await;
}

#[tokio::test]
async fn kept_history_on_a_cluster() {
    on_redis(RedisCluster::start(3, 0).await).await;
}

/// Every pub/sub connection is dropped while publications flow: the reader's instance
/// catches the channel up from its history, and the reader gets each once, in order.
async fn a_pubsub_gap_is_caught_up_from_history(redis: impl Deployment) {
    let file = TempFile::with(
        r#"{"stats": {"subscribe": "signed_in", "publish": "signed_in",
                      "history_size": 1000, "history_ttl": 60}}"#,
    );
    let path = file.path();
    let (a, b) =
        two_redis_instances_with(&redis, "gap", |c| c.namespaces_file = Some(path.clone())).await;
    let mut publisher = a.client("Feed").await;
    let mut reader = b.client("Dash").await;
    for client in [&mut publisher, &mut reader] {
        subscribe(client, json!({"type": "subscribe", "channel": "stats:all"})).await;
    }
    let total = 120;
    for n in 0..total {
        if n == 40 {
            let killed = redis.kill_pubsub_connections().await;
            assert!(killed >= 2, "{killed}");
        }
        publisher
            .send(json!({"type": "publish", "channel": "stats:all", "data": n}))
            .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut last_offset = String::new();
    for n in 0..total {
        let publication = reader.expect("publication").await;
        assert_eq!(publication["data"], n, "{publication}");
        let offset = publication["offset"].as_str().unwrap().to_string();
        assert!(
            app::validate::MessageId::compare(&offset, &last_offset).is_gt(),
            "offsets grow"
        );
        last_offset = offset;
    }
    reader.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_pubsub_gap_is_caught_up_on_one_redis() {
    a_pubsub_gap_is_caught_up_from_history(Redises::standalone().await).await;
}

#[tokio::test]
async fn a_pubsub_gap_is_caught_up_on_a_cluster() {
    a_pubsub_gap_is_caught_up_from_history(RedisCluster::start(3, 0).await).await;
}

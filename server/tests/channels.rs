//! Channels beside chat: `subscribe` / `unsubscribe` / `publish` on the same WebSocket, as
//! the articles' generic pub/sub server speaks them; publications reach every subscriber on
//! every instance exactly once; every bad request is refused with a clear code and the
//! connection lives on.

mod common;

use common::{redis_instance, Client, Deployment, Redises, TempFile, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

async fn subscribe(client: &mut Client, channel: &str) -> Value {
    client
        .send(json!({"type": "subscribe", "channel": channel}))
        .await;
    let answer = client.expect("subscribed").await;
    assert_eq!(answer["channel"], channel);
    answer
}

/// A server with these namespaces (JSON) and an API key for the server API; the files live
/// as long as the returned guards.
async fn with_namespaces(
    namespaces: &str,
    adjust: impl FnOnce(&mut server::config::Config),
) -> (TestServer, String, [TempFile; 2]) {
    let namespaces = TempFile::with(namespaces);
    let key = server::api_keys::new_key();
    let keys = TempFile::with(&server::api_keys::file_line("backend", &key));
    let (namespaces_path, keys_path) = (namespaces.path(), keys.path());
    let server = TestServer::start_with(move |c| {
        c.namespaces_file = Some(namespaces_path);
        c.api_keys_file = Some(keys_path);
        adjust(c);
    })
    .await;
    (server, key, [namespaces, keys])
}

async fn publish(client: &mut Client, channel: &str, data: Value) {
    client
        .send(json!({"type": "publish", "channel": channel, "data": data}))
        .await;
}

#[tokio::test]
async fn publications_reach_every_subscriber_once_and_in_order() {
    let server = TestServer::start().await;
    let mut dashboard = server.client("Dash").await;
    let mut other = server.client("Other").await;
    let mut publisher = server.client("Feed").await;
    subscribe(&mut dashboard, "metrics").await;
    subscribe(&mut other, "metrics").await;
    subscribe(&mut publisher, "metrics").await;
    for n in 0..20 {
        publish(
            &mut publisher,
            "metrics",
            json!({"n": n, "cpu": [0.5, 0.25], "ok": true}),
        )
        .await;
    }
    for client in [&mut dashboard, &mut other, &mut publisher] {
        for n in 0..20 {
            let publication = client.expect("publication").await;
            assert_eq!(publication["channel"], "metrics");
            assert_eq!(
                publication["data"],
                json!({"n": n, "cpu": [0.5, 0.25], "ok": true})
            );
        }
        client.expect_silence(Duration::from_millis(200)).await;
    }
    // Unsubscribed: nothing more arrives, and the room-like bookkeeping is gone.
    other
        .send(json!({"type": "unsubscribe", "channel": "metrics"}))
        .await;
    assert_eq!(other.expect("unsubscribed").await["channel"], "metrics");
    publish(&mut publisher, "metrics", json!("after")).await;
    assert_eq!(dashboard.expect("publication").await["data"], "after");
    other.expect_silence(Duration::from_millis(300)).await;
    // Chat on the same connection is unaffected.
    dashboard.join("lobby").await;
    dashboard.say("lobby", "hello", "c1").await;
}

/// A publication on one instance reaches subscribers on the others, through each topology.
async fn publications_cross_instances(redis: impl Deployment) {
    let a = redis_instance(&redis, "channels").await;
    let b = redis_instance(&redis, "channels").await;
    let mut on_a = a.client("Ana").await;
    let mut on_b = b.client("Ben").await;
    subscribe(&mut on_a, "prices").await;
    subscribe(&mut on_b, "prices").await;
    for n in 0..30 {
        publish(&mut on_a, "prices", json!(n)).await;
    }
    for client in [&mut on_a, &mut on_b] {
        for n in 0..30 {
            assert_eq!(client.expect("publication").await["data"], n);
        }
        client.expect_silence(Duration::from_millis(200)).await;
    }
    // The instance without subscribers left stops receiving the channel.
    on_b.send(json!({"type": "unsubscribe", "channel": "prices"}))
        .await;
    on_b.expect("unsubscribed").await;
    publish(&mut on_a, "prices", json!("still")).await;
    assert_eq!(on_a.expect("publication").await["data"], "still");
    on_b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn publications_cross_instances_on_one_redis() {
    publications_cross_instances(Redises::standalone().await).await;
}

#[tokio::test]
async fn publications_cross_instances_on_shards() {
    publications_cross_instances(Redises::shards(2).await).await;
}

#[tokio::test]
async fn publications_cross_instances_on_a_cluster() {
    publications_cross_instances(common::cluster::RedisCluster::start(3, 0).await).await;
}

#[tokio::test]
async fn bad_channel_requests_are_refused_and_the_connection_lives_on() {
    let server = TestServer::start_with(|c| c.max_publication_bytes = 100).await;
    // Before signing in.
    let mut anonymous = Client::connect(&server.ws_url(), &[]).await;
    anonymous.expect("connected").await;
    anonymous
        .send(json!({"type": "subscribe", "channel": "metrics"}))
        .await;
    let refused = anonymous.expect_error("not_authenticated").await;
    assert_eq!(refused["channel"], "metrics");

    let mut client = server.client("Ana").await;
    for (request, code) in [
        (
            json!({"type": "subscribe", "channel": ""}),
            "invalid_channel",
        ),
        (
            json!({"type": "subscribe", "channel": "a b"}),
            "invalid_channel",
        ),
        (
            json!({"type": "subscribe", "channel": "x".repeat(129)}),
            "invalid_channel",
        ),
        (
            json!({"type": "subscribe", "channel": "user:42"}),
            "unknown_namespace",
        ),
        (
            json!({"type": "publish", "channel": "admin:jobs", "data": 1}),
            "unknown_namespace",
        ),
        (
            json!({"type": "publish", "channel": "metrics", "data": "x".repeat(200)}),
            "data_too_large",
        ),
        (
            json!({"type": "unsubscribe", "channel": "metrics"}),
            "not_subscribed",
        ),
        (
            json!({"type": "publish", "channel": "metrics"}),
            "invalid_message",
        ),
        (json!({"type": "subscribe"}), "invalid_message"),
    ] {
        client.send(request.clone()).await;
        let error = client.expect_error(code).await;
        // (A request that does not decode cannot be quoted back.)
        if let (Some(channel), false) = (request["channel"].as_str(), code == "invalid_message") {
            assert_eq!(error["channel"], channel, "{request}");
        }
    }
    client.assert_alive().await;
    // Within the limits, the same requests work.
    subscribe(&mut client, "metrics").await;
    publish(&mut client, "metrics", json!("x".repeat(90))).await;
    assert_eq!(
        client.expect("publication").await["data"]
            .as_str()
            .map(str::len),
        Some(90)
    );
}

#[tokio::test]
async fn a_resume_of_a_channel_without_history_says_so() {
    let server = TestServer::start().await;
    let mut client = server.client("Ana").await;
    client
        .send(json!({"type": "subscribe", "channel": "ticks", "since": "1-0"}))
        .await;
    let answer = client.expect("subscribed").await;
    assert_eq!(answer["recovered"], false, "{answer}");
    // Without `since`, nothing is claimed.
    let mut other = server.client("Ben").await;
    let answer = subscribe(&mut other, "ticks").await;
    assert!(answer.get("recovered").is_none(), "{answer}");
}

#[tokio::test]
async fn rooms_and_channels_share_the_per_connection_limit() {
    let server = TestServer::start_with(|c| c.max_rooms_per_connection = 2).await;
    let mut client = server.client("Ana").await;
    client.join("one").await;
    subscribe(&mut client, "two").await;
    client
        .send(json!({"type": "subscribe", "channel": "three"}))
        .await;
    client.expect_error("too_many_rooms").await;
    // Subscribing again to one it has is not a new one.
    subscribe(&mut client, "two").await;
}

#[tokio::test]
async fn namespaces_decide_who_subscribes_and_publishes() {
    let (server, key, _files) = with_namespaces(
        r#"{"user":   {"subscribe": "owner",     "publish": "server"},
            "alerts": {"subscribe": "signed_in", "publish": "server"},
            "ops":    {"subscribe": "nobody",    "publish": "signed_in"}}"#,
        |_| {},
    )
    .await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    let own = format!("user:{}", ana.user_id);

    // Her own channel: only Ana subscribes, only the server publishes.
    subscribe(&mut ana, &own).await;
    for (by_ben, request, code) in [
        (
            true,
            json!({"type": "subscribe", "channel": own}),
            "forbidden",
        ),
        (
            false,
            json!({"type": "publish", "channel": own, "data": 1}),
            "forbidden",
        ),
        (
            false,
            json!({"type": "publish", "channel": "alerts:disk", "data": 1}),
            "forbidden",
        ),
        (
            false,
            json!({"type": "subscribe", "channel": "ops:deploys"}),
            "forbidden",
        ),
        (
            false,
            json!({"type": "subscribe", "channel": "news"}),
            "unknown_namespace",
        ),
        (
            false,
            json!({"type": "subscribe", "channel": "billing:x"}),
            "unknown_namespace",
        ),
    ] {
        let client = if by_ben { &mut ben } else { &mut ana };
        client.send(request.clone()).await;
        let error = client.expect_error(code).await;
        assert_eq!(error["channel"], request["channel"]);
        assert!(!error["error"].as_str().unwrap().is_empty());
    }
    let bearer = format!("Bearer {key}");
    let published = server
        .http(
            "POST",
            "/api/publish",
            Some(json!({"channel": own, "data": {"unread": 3}})),
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.body);
    let publication = ana.expect("publication").await;
    assert_eq!(publication["channel"], own.as_str());
    assert_eq!(publication["data"], json!({"unread": 3}));
    // Signed-in subscribers of a server-published namespace; clients may publish on `ops`.
    subscribe(&mut ben, "alerts:disk").await;
    publish(&mut ben, "ops:deploys", json!("v2")).await;
    ben.assert_alive().await;
    ana.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_bad_namespaces_file_stops_the_start() {
    let file =
        TempFile::with(r#"{"user": {"subscribe": "owner", "publish": "server", "histroy": 5}}"#);
    let mut config = server::config::Config::defaults();
    config.port = 0;
    config.namespaces_file = Some(file.path());
    let Err(err) = server::start(config).await else {
        panic!("started with a bad namespaces file");
    };
    assert!(err.to_string().contains("unknown field `histroy`"), "{err}");
}

#[tokio::test]
async fn operators_get_every_instances_figures_each_second_and_nobody_else_does() {
    let key = server::api_keys::new_key();
    let keys = TempFile::with(&server::api_keys::file_line("admin", &key));
    let server = TestServer::start_with(|c| {
        c.operators = vec!["Boss".into()];
        c.api_keys_file = Some(keys.path());
    })
    .await;
    // An operator's account is made by the administrator, with an API key.
    let registered = server
        .http(
            "POST",
            "/api/accounts",
            Some(json!({"username": "boss", "password": "correct horse"})),
            &[("X-API-Key", &key)],
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let token = registered.json()["token"].as_str().unwrap().to_string();
    let mut boss = Client::signed_in(&server.ws_url(), &token).await;
    subscribe(&mut boss, "confab:stats").await;
    let figures = tokio::time::timeout(Duration::from_secs(3), boss.expect("publication"))
        .await
        .expect("figures within a second or two");
    let data = &figures["data"];
    assert_eq!(data["engine"], "memory");
    assert_eq!(data["healthy"], true);
    assert!(data["connections"].as_u64().unwrap() >= 1, "{data}");
    assert!(data["serverId"].as_str().is_some_and(|id| !id.is_empty()));

    // Anyone else is refused (a guest cannot even take an operator's name).
    let mut guest = server.client("Visitor").await;
    guest
        .send(json!({"type": "subscribe", "channel": "confab:stats"}))
        .await;
    let refused = guest.expect_error("forbidden").await;
    assert_eq!(refused["channel"], "confab:stats");
    guest
        .send(json!({"type": "publish", "channel": "confab:stats", "data": 1}))
        .await;
    guest.expect_error("unknown_namespace").await;
}

#[tokio::test]
async fn a_namespace_open_to_anyone_needs_no_sign_in() {
    let (server, key, _files) = with_namespaces(
        r#"{"public": {"subscribe": "anyone", "publish": "server", "presence": true},
            "":       {"subscribe": "signed_in", "publish": "signed_in"}}"#,
        |c| c.auth_timeout_secs = 1,
    )
    .await;
    let mut viewer = Client::connect(&server.ws_url(), &[]).await;
    viewer.expect("connected").await;
    subscribe(&mut viewer, "public:scores").await;
    // Other channels still need a sign-in; publishing too.
    viewer
        .send(json!({"type": "subscribe", "channel": "news"}))
        .await;
    viewer.expect_error("not_authenticated").await;
    viewer
        .send(json!({"type": "publish", "channel": "public:scores", "data": 1}))
        .await;
    viewer.expect_error("not_authenticated").await;
    // Past the sign-in deadline, the subscribed viewer stays and gets what is published.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let bearer = format!("Bearer {key}");
    let published = server
        .http(
            "POST",
            "/api/publish",
            Some(json!({"channel": "public:scores", "data": {"home": 2}})),
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.body);
    assert_eq!(
        viewer.expect("publication").await["data"],
        json!({"home": 2})
    );
    // Anonymous viewers are nobody in presence.
    let mut ana = server.client("Ana").await;
    let answer = subscribe(&mut ana, "public:scores").await;
    let names: Vec<&str> = answer["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ana"]);
    // A connection that neither signs in nor subscribes is still closed.
    let mut idle = Client::connect(&server.ws_url(), &[]).await;
    idle.expect("connected").await;
    assert_eq!(idle.expect_close().await.0, 4500);
}

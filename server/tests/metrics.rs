//! `/metrics` after a scripted conversation: the counters say what happened.

mod common;

use common::{TestServer, WAIT};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;

/// One scrape, as `name{labels}` → value.
async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let response = common::http_request(addr, "GET", "/metrics", None, &[]).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response
        .header("content-type")
        .is_some_and(|kind| kind.starts_with("text/plain")));
    response
        .body
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("`name value`");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn value(metrics: &HashMap<String, f64>, name: &str) -> f64 {
    metrics.get(name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn the_counters_match_a_scripted_conversation() {
    let server = TestServer::start_with(|config| {
        config.metrics_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let metrics_addr = server.metrics_addr().expect("metrics are on");
    let mut ana = server.client("Ana").await;
    let mut bo = server.client("Bo").await;
    ana.join("general").await;
    bo.join("general").await;
    ana.expect("user_joined").await;
    ana.say("general", "one", "c1").await;
    ana.say("general", "two", "c2").await;
    let second = bo.expect("message").await;
    assert_eq!(bo.expect("message").await["content"], "two");
    // A retry of the same message stores nothing: still two posted.
    ana.say("general", "two", "c2").await;
    // Two refusals: a room not joined, and a malformed room id.
    ana.send(json!({"type": "message", "roomId": "elsewhere", "content": "x"}))
        .await;
    ana.expect_error("not_in_room").await;
    ana.send(json!({"type": "join", "roomId": "no spaces allowed"}))
        .await;
    ana.expect_error("invalid_room").await;
    // Bo's second tab resumes after the first message: recovered.
    let mut tab = server.second_tab(&bo).await;
    tab.send(json!({"type": "join", "roomId": "general", "since": second["id"]}))
        .await;
    let resumed = tab.expect("room_history").await;
    assert_eq!(resumed["recovered"], true);

    let before = scrape(metrics_addr).await;
    assert_eq!(value(&before, "confab_connections"), 3.0);
    for (name, expected) in [
        ("confab_rooms", 1.0),
        ("confab_joins_total", 3.0),
        ("confab_messages_posted_total", 2.0),
        ("confab_refusals_total{code=\"not_in_room\"}", 1.0),
        ("confab_refusals_total{code=\"invalid_room\"}", 1.0),
        ("confab_resumes_total{recovered=\"true\"}", 1.0),
        ("confab_resumes_total{recovered=\"false\"}", 0.0),
    ] {
        assert_eq!(value(&before, name), expected, "{name}");
    }

    // One more message: exactly its ack to Ana and the message to Bo's two tabs go out.
    ana.send(
        json!({"type": "message", "roomId": "general", "content": "three", "clientMsgId": "c3"}),
    )
    .await;
    let frames = [
        ana.recv_text().await,
        bo.recv_text().await,
        tab.recv_text().await,
    ];
    for frame in &frames {
        let event: Value = serde_json::from_str(frame).expect("JSON");
        assert!(
            event["type"] == "ack" || event["content"] == "three",
            "{event}"
        );
    }
    let after = scrape(metrics_addr).await;
    let delta = |name: &str| value(&after, name) - value(&before, name);
    assert_eq!(delta("confab_deliveries_total"), 3.0);
    assert_eq!(
        delta("confab_bytes_out_total"),
        frames.iter().map(String::len).sum::<usize>() as f64
    );
    assert_eq!(delta("confab_messages_posted_total"), 1.0);

    // Leaving ends a connection with 1000 and the room with its last member.
    drop(tab);
    ana.socket.close(None).await.expect("close");
    bo.socket.close(None).await.expect("close");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = scrape(metrics_addr).await;
        if value(&now, "confab_connections") == 0.0 {
            assert_eq!(value(&now, "confab_rooms"), 0.0);
            assert!(value(&now, "confab_closes_total{code=\"1000\"}") >= 2.0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "connections closed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let other = common::http_request(metrics_addr, "GET", "/other", None, &[]).await;
    assert_eq!(other.status, 404);
    assert!(other.json()["error"].is_string());
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_are_off_unless_an_address_is_set() {
    let server = TestServer::start().await;
    assert_eq!(server.metrics_addr(), None);
    let page = server.http("GET", "/metrics", None, &[]).await;
    assert_ne!(page.status, 200, "the app does not serve metrics itself");
    server.shutdown().await;
}

#[tokio::test]
async fn redis_latency_and_pubsub_reconnects_are_counted() {
    let redis = common::RedisServer::start().await;
    let url = redis.url();
    let server = TestServer::start_with(|config| {
        config.redis_url = Some(url);
        config.redis_prefix = "metrics".into();
        config.metrics_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let metrics_addr = server.metrics_addr().expect("metrics are on");
    let mut ana = server.client("Ana").await;
    ana.join("r").await;
    ana.say("r", "before", "c1").await;
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert_ne!(killed, ":0", "the pub/sub connection was killed");
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    let scraped = loop {
        let scraped = scrape(metrics_addr).await;
        if value(&scraped, "confab_pubsub_reconnects_total") >= 1.0 {
            break scraped;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reconnected in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    ana.say("r", "after", "c2").await;
    let scraped_after = scrape(metrics_addr).await;
    assert_eq!(value(&scraped, "confab_pubsub_reconnects_total"), 1.0);
    assert_eq!(
        value(
            &scraped_after,
            "confab_redis_command_seconds_count{command=\"post\"}"
        ),
        2.0
    );
    // Every engine operation is timed, not only posts: joining read a page, presence, ...
    for command in [
        "connect",
        "join",
        "page",
        "members",
        "follow",
        "get_session",
    ] {
        let count = format!("confab_redis_command_seconds_count{{command=\"{command}\"}}");
        assert!(value(&scraped_after, &count) >= 1.0, "{count}");
    }
    let under_a_second = value(
        &scraped_after,
        "confab_redis_command_seconds_bucket{command=\"post\",le=\"1\"}",
    );
    assert_eq!(under_a_second, 2.0, "{scraped_after:#?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_metrics_address_that_cannot_be_bound_stops_the_start_with_its_reason() {
    let mut config = server::config::Config::defaults();
    config.host = "127.0.0.1".into();
    config.port = 0;
    config.redis_url = None;
    config.metrics_addr = Some("not-an-address".into());
    let Err(err) = server::start(config).await else {
        panic!("the server started without its metrics address");
    };
    let message = err.to_string();
    assert!(message.contains("not-an-address"), "{message}");
}

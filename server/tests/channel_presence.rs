//! Channel presence, join/leave and publish rates, where a namespace turns them on: who is
//! subscribed comes with `subscribed` (one entry per user, across instances), a user's first
//! subscription and last unsubscription are announced to the others, a namespace's own
//! publish rate holds apart from chat's, and channels never show up as rooms.

mod common;

use common::cluster::RedisCluster;
use common::{
    redis_instance_with, two_redis_instances_with, Client, Deployment, Redises, TempFile,
    TestServer,
};
use serde_json::{json, Value};
use std::time::Duration;

fn namespaces() -> TempFile {
    TempFile::with(
        r#"{"live": {"subscribe": "signed_in", "publish": "signed_in",
                     "presence": true, "join_leave": true,
                     "publish_rate": 1, "publish_burst": 2},
            "quiet": {"subscribe": "signed_in", "publish": "signed_in", "presence": true},
            "":     {"subscribe": "signed_in", "publish": "signed_in"}}"#,
    )
}

async fn subscribe(client: &mut Client, channel: &str) -> Value {
    client
        .send(json!({"type": "subscribe", "channel": channel}))
        .await;
    client.expect("subscribed").await
}

fn names(answer: &Value) -> Vec<String> {
    answer["presence"]
        .as_array()
        .expect("presence in the answer")
        .iter()
        .map(|member| member["name"].as_str().unwrap().to_string())
        .collect()
}

/// Ana on `a`, Ben (two tabs) on `b`.
async fn presence_follows_users_not_connections(a: &TestServer, b: &TestServer) {
    let mut ana = a.client("Ana").await;
    let answer = subscribe(&mut ana, "live:match").await;
    assert_eq!(names(&answer), ["Ana"]);

    let mut ben = b.client("Ben").await;
    let answer = subscribe(&mut ben, "live:match").await;
    assert_eq!(names(&answer), ["Ana", "Ben"]);
    let joined = ana.expect("joined").await;
    assert_eq!(joined["channel"], "live:match");
    assert_eq!(joined["userId"], ben.user_id.as_str());
    assert_eq!(joined["name"], "Ben");

    // A second tab of Ben's is no new person; closing it is no departure.
    let mut ben_again = b.second_tab(&ben).await;
    let answer = subscribe(&mut ben_again, "live:match").await;
    assert_eq!(names(&answer), ["Ana", "Ben"]);
    ben_again
        .send(json!({"type": "unsubscribe", "channel": "live:match"}))
        .await;
    ben_again.expect("unsubscribed").await;
    ana.expect_silence(Duration::from_millis(300)).await;

    // His last connection goes: he has left.
    drop(ben);
    drop(ben_again);
    let left = ana.expect("left").await;
    assert_eq!(left["channel"], "live:match");
    assert_eq!(left["name"], "Ben");

    // Presence without join/leave: the list, but no announcements.
    let answer = subscribe(&mut ana, "quiet:room").await;
    assert_eq!(names(&answer), ["Ana"]);
    let mut cid = b.client("Cid").await;
    let answer = subscribe(&mut cid, "quiet:room").await;
    assert_eq!(names(&answer), ["Ana", "Cid"]);
    ana.expect_silence(Duration::from_millis(300)).await;

    // A namespace without presence has no list.
    let answer = subscribe(&mut cid, "news").await;
    assert!(answer.get("presence").is_none(), "{answer}");

    // Channels are not rooms: the room directory does not list them.
    let rooms = a.http("GET", "/api/rooms", None, &[]).await;
    assert_eq!(rooms.status, 200);
    assert!(!rooms.body.contains("live:match"), "{}", rooms.body);
    assert!(!rooms.body.contains("quiet:room"), "{}", rooms.body);
}

fn with_namespaces(config: &mut server::config::Config, file: &TempFile) {
    config.namespaces_file = Some(file.path());
}

#[tokio::test]
async fn presence_on_memory() {
    let file = namespaces();
    let server = TestServer::start_with(|c| with_namespaces(c, &file)).await;
    presence_follows_users_not_connections(&server, &server).await;
}

async fn presence_on(redis: impl Deployment) {
    let file = namespaces();
    let (a, b) = two_redis_instances_with(&redis, "presence", |c| with_namespaces(c, &file)).await;
    presence_follows_users_not_connections(&a, &b).await;
}

#[tokio::test]
async fn presence_across_instances_on_one_redis() {
    presence_on(Redises::standalone().await).await;
}

#[tokio::test]
async fn presence_across_instances_on_shards() {
    presence_on(Redises::shards(2).await).await;
}

#[tokio::test]
async fn presence_across_instances_on_a_cluster() {
    presence_on(RedisCluster::start(3, 0).await).await;
}

#[tokio::test]
async fn a_namespace_rate_limits_publications_apart_from_chat() {
    let file = namespaces();
    let server = TestServer::start_with(|c| {
        with_namespaces(c, &file);
        c.send_rate = 1.0;
        c.send_burst = 1;
    })
    .await;
    let mut ana = server.client("Ana").await;
    subscribe(&mut ana, "live:match").await;
    // A burst of 2, then 1 per second.
    for n in 0..3 {
        ana.send(json!({"type": "publish", "channel": "live:match", "data": n}))
            .await;
    }
    for n in 0..2 {
        assert_eq!(ana.expect("publication").await["data"], n);
    }
    let refused = ana.expect_error("rate_limited").await;
    assert_eq!(refused["channel"], "live:match");
    let retry = refused["retryAfterMs"].as_u64().unwrap();
    assert!(retry > 0 && retry <= 1_000, "{refused}");
    // Chat keeps its own budget.
    ana.join("lobby").await;
    ana.say("lobby", "still here", "c1").await;
    tokio::time::sleep(Duration::from_millis(retry + 50)).await;
    ana.send(json!({"type": "publish", "channel": "live:match", "data": 3}))
        .await;
    assert_eq!(ana.expect("publication").await["data"], 3);
}

/// An instance killed with SIGKILL: its subscribers leave every channel's presence once its
/// lease expires, announced as `left` only where the namespace announces departures.
#[tokio::test]
async fn a_killed_instances_subscribers_leave_presence() {
    let redis = Redises::standalone().await;
    let file = namespaces();
    let survivor = redis_instance_with(&redis, "kill", |c| with_namespaces(c, &file)).await;
    let namespaces = ("CONFAB_NAMESPACES_FILE", file.path());
    let (mut victim, port) = common::spawn_instance(&redis, "kill", &[namespaces]).await;

    let mut ana = survivor.client("Ana").await;
    subscribe(&mut ana, "live:match").await;
    subscribe(&mut ana, "quiet:room").await;
    let (token, _) = survivor.guest("Vic").await;
    let mut vic = Client::signed_in(&format!("ws://127.0.0.1:{port}/ws"), &token).await;
    assert_eq!(
        names(&subscribe(&mut vic, "live:match").await),
        ["Ana", "Vic"]
    );
    assert_eq!(ana.expect("joined").await["name"], "Vic");
    assert_eq!(
        names(&subscribe(&mut vic, "quiet:room").await),
        ["Ana", "Vic"]
    );

    victim.kill().expect("SIGKILL");
    victim.wait().expect("reaped");
    let left = tokio::time::timeout(Duration::from_secs(15), ana.expect("left"))
        .await
        .expect("the departure is announced once the lease expires");
    assert_eq!(left["channel"], "live:match");
    assert_eq!(left["name"], "Vic");
    // Presence without join/leave: gone from the list, and nothing announced.
    let mut cid = survivor.client("Cid").await;
    assert_eq!(
        names(&subscribe(&mut cid, "quiet:room").await),
        ["Ana", "Cid"]
    );
    ana.expect_silence(Duration::from_millis(300)).await;
}

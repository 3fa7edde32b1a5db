//! Several independent Redis servers as shards: each room's keys live on the shard its id
//! hashes to and nowhere else, online users on the first; a shard that is down takes only its
//! own rooms down; a room moved to a new shard is never "recovered" from the wrong history.
//! (The conformance suite and the multi-instance tests run on two shards as well.)

mod common;

use app::protocol::close;
use common::{eventually, redis_instance, RedisServer, Redises, TestServer};
use serde_json::{json, Value};
use server::config::{Config, RedisMode};
use server::engine::shards::shard_of;
use std::time::Duration;

/// The first room names (`{stem}-0`, `{stem}-1`, ...) that live on each of `shards` shards.
fn room_on_each_shard(stem: &str, shards: usize) -> Vec<String> {
    (0..shards)
        .map(|shard| {
            (0..)
                .map(|n| format!("{stem}-{n}"))
                .find(|room| shard_of(room, shards) == shard)
                .expect("some room lands on every shard")
        })
        .collect()
}

#[tokio::test]
async fn each_rooms_keys_live_on_its_shard_only() {
    let redis = Redises::shards(2).await;
    let a = redis_instance(&redis, "place").await;
    let b = redis_instance(&redis, "place").await;
    let mut ana = a.client("Ana").await;
    let mut ben = b.client("Ben").await;
    let rooms: Vec<String> = (0..12).map(|n| format!("spread-{n}")).collect();
    for room in &rooms {
        ana.join(room).await;
        ben.join(room).await;
        ana.expect("user_joined").await;
    }
    for (n, room) in rooms.iter().enumerate() {
        ana.say(room, &format!("hello {n}"), &format!("c{n}")).await;
        let message = ben.expect("message").await;
        assert_eq!(message["roomId"], room.as_str());
    }
    let mut per_shard = [0, 0];
    for room in &rooms {
        let home = shard_of(room, 2);
        per_shard[home] += 1;
        for (shard, server) in redis.servers.iter().enumerate() {
            for key in ["log", "members", "epoch"] {
                let exists = server
                    .command(&["EXISTS", &format!("place:room:{room}:{key}")])
                    .await;
                let expected = if shard == home { ":1" } else { ":0" };
                assert_eq!(exists, expected, "{room}'s {key} on shard {shard}");
            }
        }
    }
    assert!(per_shard.iter().all(|&count| count > 0), "{per_shard:?}");
    // Online users: on the first shard only.
    assert_eq!(
        redis.servers[0].command(&["HLEN", "place:online"]).await,
        ":2"
    );
    assert_eq!(
        redis.servers[1].command(&["EXISTS", "place:online"]).await,
        ":0"
    );
    // Every instance holds a lease on every shard (room presence is checked against it).
    for server in &redis.servers {
        assert_eq!(server.command(&["SCARD", "place:instances"]).await, ":2");
    }
    let health: Value = a.http("GET", "/health", None, &[]).await.json();
    assert_eq!(health["engine"], "redis-shards");
    assert_eq!(health["pubsub"]["shards"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_shard_that_is_down_takes_only_its_own_rooms() {
    let mut redis = Redises::shards(2).await;
    let a = redis_instance(&redis, "down").await;
    let b = redis_instance(&redis, "down").await;
    let rooms = room_on_each_shard("down", 2);
    let (kept, lost) = (&rooms[0], &rooms[1]);
    // One connection per room: a room whose history is lost closes its members' connections.
    let mut ana_kept = a.client("Ana").await;
    let mut ben_kept = b.client("Ben").await;
    ana_kept.join(kept).await;
    ben_kept.join(kept).await;
    let mut ana_lost = a.client("Ana").await;
    let mut ben_lost = b.client("Ben").await;
    ana_lost.join(lost).await;
    ben_lost.join(lost).await;
    ana_lost.say(lost, "before", "l1").await;
    assert_eq!(ben_lost.expect("message").await["content"], "before");

    redis.servers[1].kill();
    let health = a.http("GET", "/health", None, &[]).await;
    assert_eq!(health.status, 503);
    let reason = health.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("shard 2 of 2: redis"), "{reason}");
    // The other shard's room goes on, across instances.
    for n in 0..5 {
        ana_kept
            .say(kept, &format!("still {n}"), &format!("k{n}"))
            .await;
        assert_eq!(
            ben_kept.expect("message").await["content"],
            format!("still {n}")
        );
    }
    // The lost shard's room refuses sends rather than dropping them.
    ana_lost
        .send(json!({"type": "message", "roomId": lost, "content": "while down", "clientMsgId": "l2"}))
        .await;
    let refused = ana_lost.expect("error").await;
    assert_eq!(refused["code"], "unavailable");

    // Back, empty: the lost room's members are told to resume; the kept room never noticed.
    redis.servers[1].restart().await;
    for server in [&a, &b] {
        eventually(Duration::from_secs(15), "healthy again", || async {
            server.http("GET", "/health", None, &[]).await.status == 200
        })
        .await;
    }
    for member in [&mut ana_lost, &mut ben_lost] {
        assert_eq!(member.expect_close().await.0, close::RESYNC);
    }
    ana_kept.say(kept, "after", "k9").await;
    assert_eq!(ben_kept.expect("message").await["content"], "after");
    ana_kept.assert_alive().await;
}

#[tokio::test]
async fn a_room_moved_to_an_added_shard_is_never_resumed_from_the_wrong_history() {
    let first = RedisServer::start().await;
    let added = RedisServer::start().await;
    // A room that moves when the second shard is added.
    let room = (0..)
        .map(|n| format!("moving-{n}"))
        .find(|room| shard_of(room, 2) == 1)
        .unwrap();
    let alone = one_shard_instance(&first).await;
    let mut ana = alone.client("Ana").await;
    ana.join(&room).await;
    let said = ana.say(&room, "on the first shard", "m1").await;
    let page = alone
        .http("GET", &format!("/api/rooms/{room}/messages"), None, &[])
        .await;
    let epoch = page.json()["epoch"].as_str().unwrap().to_string();
    assert_ne!(epoch, "");
    alone.shutdown().await;

    let both = Redises {
        servers: vec![first, added],
    };
    let grown = redis_instance(&both, "moved").await;
    let mut ana = grown.client("Ana").await;
    ana.send(json!({"type": "join", "roomId": room, "since": said["id"], "epoch": epoch}))
        .await;
    let resumed = ana.expect("room_history").await;
    assert_eq!(resumed["recovered"], false, "{resumed}");
    assert_ne!(resumed["epoch"], epoch.as_str());
    assert_eq!(resumed["messages"].as_array().map(Vec::len), Some(0));
}

/// An instance on one Redis in shards mode (a deployment about to grow).
async fn one_shard_instance(redis: &RedisServer) -> TestServer {
    let url = redis.url();
    TestServer::start_with(move |c| {
        c.redis_url = Some(url);
        c.redis_mode = Some(RedisMode::Shards);
        c.redis_prefix = "moved".into();
        c.presence_lease_secs = 2;
        c.presence_refresh_secs = 1;
    })
    .await
}

#[tokio::test]
async fn a_bad_shard_list_stops_the_start_and_says_why() {
    for (url, mode, error) in [
        (
            "redis://127.0.0.1:1,redis://127.0.0.1:2",
            Some(RedisMode::Standalone),
            "--redis-mode standalone takes one URL, --redis-url lists 2",
        ),
        ("redis://127.0.0.1:1,", None, "an empty entry"),
        (
            "redis://127.0.0.1:1,nonsense",
            Some(RedisMode::Shards),
            "REDIS_URL nonsense:",
        ),
        (
            "redis://:secret@127.0.0.1:1,redis://:secret@127.0.0.1:1",
            None,
            "--redis-url lists redis://127.0.0.1:1 twice",
        ),
    ] {
        let mut config = Config::defaults();
        config.port = 0;
        config.redis_url = Some(url.into());
        config.redis_mode = mode;
        let Err(err) = server::start(config).await else {
            panic!("{url} started");
        };
        let err = err.to_string();
        assert!(err.contains(error), "{url}: {err}");
        assert!(!err.contains("secret"), "{err}");
    }
}

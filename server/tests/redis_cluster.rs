//! Confab on a real Redis Cluster (started by the tests on loopback): a room's keys and its
//! sharded channel live in one slot, on one node; a busy room's slot migrated to another
//! node, and a primary failed over to its replica, lose and duplicate nothing.
//! (The conformance suite and the multi-instance tests run on a cluster as well.)

mod common;

use common::cluster::RedisCluster;
use common::{redis_instance, Client, TestServer};
use serde_json::Value;
use std::time::Duration;

/// `count` messages from `from` (numbered `0..count`), each acknowledged before the next,
/// about 100 a second (so a fault started meanwhile meets a busy room).
async fn send_numbered(from: &mut Client, room: &str, count: usize) {
    for n in 0..count {
        from.say_until_acked(room, &format!("m{n}"), &format!("c{n}"))
            .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The contents of the next `count` messages `to` receives.
async fn receive(to: &mut Client, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        let message = to.expect("message").await;
        got.push(message["content"].as_str().unwrap().to_string());
    }
    got
}

fn numbered(count: usize) -> Vec<String> {
    (0..count).map(|n| format!("m{n}")).collect()
}

/// Two instances on `cluster`, Ana on the first and Ben on the second, both in `room`.
async fn two_instances_in(
    cluster: &RedisCluster,
    room: &str,
) -> (TestServer, TestServer, Client, Client) {
    let a = redis_instance(cluster, "busy").await;
    let b = redis_instance(cluster, "busy").await;
    let mut ana = a.client("Ana").await;
    let mut ben = b.client("Ben").await;
    ana.join(room).await;
    ben.join(room).await;
    ana.expect("user_joined").await;
    (a, b, ana, ben)
}

#[tokio::test]
async fn a_rooms_keys_and_sharded_channel_share_its_slot() {
    let cluster = RedisCluster::start(3, 0).await;
    let (a, _b, mut ana, mut ben) = two_instances_in(&cluster, "slotted").await;
    ana.say("slotted", "hello", "c1").await;
    assert_eq!(ben.expect("message").await["content"], "hello");

    let slot = cluster.slot_of("{slotted}").await;
    for key in ["log", "epoch", "members", "ch", "sent:x:y"] {
        assert_eq!(
            cluster
                .slot_of(&format!("busy:room:{{slotted}}:{key}"))
                .await,
            slot
        );
    }
    let owner = cluster.owner_of(slot).await;
    let mut at_owner = owner.connection().await;
    let log_length: usize = redis::cmd("XLEN")
        .arg("busy:room:{slotted}:log")
        .query_async(&mut at_owner)
        .await
        .unwrap();
    assert_eq!(log_length, 1);
    // Both instances subscribe the room's sharded channel, at its owner; no node carries a
    // classic subscription to a room.
    let (_, subscribers): (String, usize) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg("busy:room:{slotted}:ch")
        .query_async(&mut at_owner)
        .await
        .unwrap();
    assert_eq!(subscribers, 2, "one sharded subscription per instance");
    for node in &cluster.nodes {
        let classic: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg("busy:room:*")
            .query_async(&mut node.connection().await)
            .await
            .unwrap();
        assert!(classic.is_empty(), "{classic:?}");
    }
    let health: Value = a.http("GET", "/health", None, &[]).await.json();
    assert_eq!(health["engine"], "redis-cluster");
    assert_eq!(health["status"], "ok", "{health}");
}

/// Ana sends 150 numbered messages to `room` on one instance while `fault` happens to the
/// cluster; Ben, on the other instance, must get each once and in order, and the room must
/// go on working afterwards.
async fn a_busy_room_survives<F: std::future::Future<Output = ()>>(
    cluster: &RedisCluster,
    room: &str,
    fault: impl FnOnce(u16) -> F,
) {
    let (_a, b, mut ana, mut ben) = two_instances_in(cluster, room).await;
    let slot = cluster.slot_of(&format!("{{{room}}}")).await;
    let before = cluster.owner_of(slot).await.port;
    const COUNT: usize = 150;
    let sending = send_numbered(&mut ana, room, COUNT);
    let faulting = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        fault(slot).await;
    };
    let receiving = receive(&mut ben, COUNT);
    let ((), (), got) = tokio::join!(sending, faulting, receiving);
    assert_ne!(
        cluster.owner_of(slot).await.port,
        before,
        "another node serves the slot"
    );
    assert_eq!(got, numbered(COUNT), "every message once, in order");
    ben.expect_silence(Duration::from_millis(500)).await;
    // History is whole where the slot is now, and the room keeps working there.
    let mut cy = b.client("Cy").await;
    let history = cy.join(room).await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 50);
    ana.say(room, "after", "after").await;
    assert_eq!(ben.expect("message").await["content"], "after");
}

#[tokio::test]
async fn a_busy_rooms_slot_migrated_to_another_node_loses_and_duplicates_nothing() {
    let cluster = RedisCluster::start(3, 0).await;
    a_busy_room_survives(&cluster, "moving", |slot| cluster.migrate_slot(slot)).await;
}

#[tokio::test]
async fn a_primary_failed_over_to_its_replica_loses_and_duplicates_nothing() {
    let cluster = RedisCluster::start(3, 1).await;
    a_busy_room_survives(&cluster, "failing", |slot| cluster.fail_over(slot)).await;
}

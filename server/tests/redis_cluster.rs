//! Confab on a real Redis Cluster (started by the tests on loopback): a room's keys and its
//! sharded channel live in one slot, on one node; a busy room's slot migrated to another
//! node, and a primary failed over to its replica, lose and duplicate nothing.
//! (The conformance suite and the multi-instance tests run on a cluster as well.)

mod common;

use common::cluster::RedisCluster;
use common::{redis_instance, Client, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

/// Sends a message and waits for its ack, sending it again (same `clientMsgId`) after every
/// `unavailable`: what a client does while the cluster moves under it.
async fn say_until_acked(client: &mut Client, room: &str, content: &str, id: &str) -> Value {
    for _ in 0..100 {
        client
            .send(json!({"type": "message", "roomId": room, "content": content, "clientMsgId": id}))
            .await;
        loop {
            let event = client.recv().await;
            match event["type"].as_str() {
                Some("ack") if event["clientMsgId"] == id => return event,
                Some("error") if event["code"] == "unavailable" => break,
                Some("error") => panic!("refused: {event}"),
                _ => continue,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} was never acknowledged");
}

/// `count` messages from `from` (numbered `0..count`), each acknowledged before the next,
/// about 100 a second (so a fault started meanwhile meets a busy room).
async fn send_numbered(from: &mut Client, room: &str, count: usize) {
    for n in 0..count {
        say_until_acked(from, room, &format!("m{n}"), &format!("c{n}")).await;
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

#[tokio::test]
async fn a_busy_rooms_slot_migrated_to_another_node_loses_and_duplicates_nothing() {
    let cluster = RedisCluster::start(3, 0).await;
    let (_a, _b, mut ana, mut ben) = two_instances_in(&cluster, "moving").await;
    let slot = cluster.slot_of("{moving}").await;
    let before = cluster.owner_of(slot).await.port;
    const COUNT: usize = 150;
    let sending = send_numbered(&mut ana, "moving", COUNT);
    let migrating = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.migrate_slot(slot).await;
    };
    let receiving = receive(&mut ben, COUNT);
    let ((), (), got) = tokio::join!(sending, migrating, receiving);
    assert_ne!(cluster.owner_of(slot).await.port, before, "the slot moved");
    assert_eq!(got, numbered(COUNT), "every message once, in order");
    ben.expect_silence(Duration::from_millis(500)).await;
    // History is whole on the new node, and the room keeps working there.
    let mut cy = _b.client("Cy").await;
    let history = cy.join("moving").await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 50);
    ana.say("moving", "after", "after").await;
    assert_eq!(ben.expect("message").await["content"], "after");
}

#[tokio::test]
async fn a_primary_failed_over_to_its_replica_loses_and_duplicates_nothing() {
    let cluster = RedisCluster::start(3, 1).await;
    let (_a, _b, mut ana, mut ben) = two_instances_in(&cluster, "failing").await;
    let slot = cluster.slot_of("{failing}").await;
    let primary = cluster.owner_of(slot).await.port;
    const COUNT: usize = 150;
    let sending = send_numbered(&mut ana, "failing", COUNT);
    let failing_over = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.fail_over(slot).await;
    };
    let receiving = receive(&mut ben, COUNT);
    let ((), (), got) = tokio::join!(sending, failing_over, receiving);
    assert_ne!(
        cluster.owner_of(slot).await.port,
        primary,
        "the replica took over"
    );
    assert_eq!(got, numbered(COUNT), "every message once, in order");
    ben.expect_silence(Duration::from_millis(500)).await;
    ana.say("failing", "after", "after").await;
    assert_eq!(ben.expect("message").await["content"], "after");
}

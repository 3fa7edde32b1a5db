//! Jitter: 50 receivers over two instances sharing Redis, each force-closed every 1.5–4 s and
//! resuming (with `since` + `epoch`) on a random instance, while two senders send 10 messages
//! a second each. Every receiver must end with every message exactly once, in order, and
//! every resume must be `recovered: true`. The replay time (reconnect to the `room_history`
//! that carries what was missed) is printed: `cargo test --test jitter -- --nocapture`.

mod common;

use common::{redis_instance, Client, RedisServer, TestServer};
use rand::Rng;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const RECEIVERS: usize = 50;
const SENDERS: usize = 2;
const PER_SENDER: usize = 120;
const SEND_EVERY: Duration = Duration::from_millis(100);
const ROOM: &str = "jitter";

/// What one receiver saw: message ids in arrival order, and each replay's duration.
struct Seen {
    ids: Vec<String>,
    replays: Vec<Duration>,
}

/// Receives until `stop`, force-closing its connection every 1.5–4 s and resuming on a
/// random instance; then one last resume to collect the rest.
async fn receiver(urls: Arc<Vec<String>>, token: String, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen {
        ids: Vec::new(),
        replays: Vec::new(),
    };
    let mut epoch: Option<String> = None;
    let mut last_round = false;
    loop {
        let url = urls[rand::rng().random_range(0..urls.len())].clone();
        let started = Instant::now();
        let mut client = Client::signed_in(&url, &token).await;
        let since = seen.ids.last().cloned();
        client
            .send(json!({"type": "join", "roomId": ROOM, "since": since, "epoch": epoch}))
            .await;
        let history = client.expect("room_history").await;
        if since.is_some() {
            seen.replays.push(started.elapsed());
            assert_eq!(
                history["recovered"], true,
                "a resume within the window is exact"
            );
        }
        epoch = history["epoch"].as_str().map(str::to_string);
        for message in history["messages"].as_array().unwrap() {
            seen.ids.push(message["id"].as_str().unwrap().to_string());
        }
        if last_round {
            return seen;
        }
        let online_for = Duration::from_millis(rand::rng().random_range(1500..4000));
        let until = Instant::now() + online_for;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            let next = tokio::time::timeout_at(until, client.recv()).await;
            if let Ok(event) = next {
                if event["type"] == "message" {
                    seen.ids.push(event["id"].as_str().unwrap().to_string());
                }
            }
        }
        // Force-closed: the socket is dropped, no close handshake.
        drop(client);
        last_round = stop.load(Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_force_closed_every_few_seconds_miss_nothing_and_see_nothing_twice() {
    let redis = RedisServer::start().await;
    let servers: Vec<TestServer> = vec![
        redis_instance(&redis, "jitter").await,
        redis_instance(&redis, "jitter").await,
    ];
    let urls = Arc::new(servers.iter().map(TestServer::ws_url).collect::<Vec<_>>());
    let stop = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    for n in 0..RECEIVERS {
        let (token, _) = servers[n % 2].guest(&format!("Reader{n}")).await;
        receivers.push(tokio::spawn(receiver(urls.clone(), token, stop.clone())));
    }
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let mut sender = servers[s % 2].client(&format!("Sender{s}")).await;
        sender.join(ROOM).await;
        senders.push(tokio::spawn(async move {
            let mut next = Instant::now();
            for n in 0..PER_SENDER {
                sender
                    .say(ROOM, &format!("{s}:{n}"), &format!("s{s}-{n}"))
                    .await;
                next += SEND_EVERY;
                tokio::time::sleep_until(next).await;
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);

    // The room's whole history, as stored.
    let stored: Vec<String> = servers[0]
        .all_messages(ROOM)
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored.len(), SENDERS * PER_SENDER);

    let mut replays = Vec::new();
    for receiver in receivers {
        let seen = receiver.await.expect("a receiver finished");
        assert_eq!(seen.ids, stored, "every message once, in order");
        replays.extend(seen.replays);
    }
    replays.sort();
    let at = |q: f64| replays[((replays.len() - 1) as f64 * q) as usize];
    eprintln!(
        "jitter: {RECEIVERS} receivers, {} messages, {} resumes: 100% delivered, 0 duplicates; replay p50 {:?}, p99 {:?}, max {:?}",
        stored.len(),
        replays.len(),
        at(0.5),
        at(0.99),
        replays.last().unwrap()
    );
    assert!(
        replays.len() >= RECEIVERS * 3,
        "each receiver resumed several times"
    );
}

//! Write batching of busy connections: a connection receiving more than
//! `--busy-frames-per-sec` has its frames held a few milliseconds and written together.
//! Held frames must never be lost, reordered or stuck.

mod common;

use common::{Client, TestServer};
use serde_json::json;
use std::time::{Duration, Instant};

/// A server where more than one frame per second makes a connection busy (so one frame in a
/// window after a burst keeps it busy however slow the machine), held for `delay_ms` (far
/// above the busy rate, the hold is the maximum), with queues deep enough that no hold is cut
/// short by a filling queue.
async fn batching_server(delay_ms: u32) -> TestServer {
    TestServer::start_with(|c| {
        c.busy_frames_per_sec = 1;
        c.busy_write_delay_ms = delay_ms;
        c.busy_write_max_delay_ms = delay_ms;
        c.outbound_queue = 4096;
    })
    .await
}

/// Makes `receiver` busy: 20 messages from `sender`, received, then a pause longer than the
/// rate window so the next frame is judged on them.
async fn make_busy(sender: &mut Client, receiver: &mut Client, room: &str) {
    for n in 0..20 {
        sender
            .send(json!({"type": "message", "roomId": room, "content": format!("warm-up {n}")}))
            .await;
    }
    for n in 0..20 {
        assert_eq!(
            receiver.expect("message").await["content"],
            format!("warm-up {n}")
        );
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn a_busy_connections_frame_waits_for_the_delay_and_is_then_sent_without_another() {
    let server = batching_server(400).await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("busy").await;
    ben.join("busy").await;
    make_busy(&mut ana, &mut ben, "busy").await;

    let sent = Instant::now();
    ana.send(json!({"type": "message", "roomId": "busy", "content": "held"}))
        .await;
    // Nothing else is queued for Ben: the hold timer alone releases the frame.
    assert_eq!(ben.expect("message").await["content"], "held");
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "a busy connection's frame is held for the delay, was sent after {waited:?}"
    );
}

#[tokio::test]
async fn a_firehose_arrives_complete_and_in_order() {
    let server = batching_server(20).await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("hose").await;
    ben.join("hose").await;
    // Sent in waves so Ben is busy for many windows, with frames arriving while held.
    let mut next = 0;
    for _wave in 0..10 {
        for _ in 0..50 {
            ana.send(json!({"type": "message", "roomId": "hose", "content": format!("m{next}")}))
                .await;
            next += 1;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for n in 0..next {
        assert_eq!(ben.expect("message").await["content"], format!("m{n}"));
    }
    ben.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn held_frames_go_out_before_the_connection_is_closed() {
    // The longest delay allowed: the close must not wait for it.
    let server = batching_server(1000).await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("closing").await;
    ben.join("closing").await;
    make_busy(&mut ana, &mut ben, "closing").await;

    // Dan, just connected and not busy, says it; his ack proves it is queued for Ben (local
    // delivery happens before the ack), and by then Ben's writer holds it.
    let mut dan = server.client("Dan").await;
    dan.join("closing").await;
    dan.say("closing", "last words", "c-last").await;
    // Ben signs out while "last words" is held: it still arrives, then the close frame.
    assert_eq!(server.sign_out(&ben.token).await.status, 204);
    assert_eq!(ben.expect("message").await["content"], "last words");
    assert_eq!(ben.expect_close().await.0, 4503);
}

#[tokio::test]
async fn a_hold_ends_early_when_its_queue_fills_past_half() {
    // A 1 s hold at this connection's rate would queue far more than 32 frames; held to the
    // end, the client would be closed as a slow consumer although it reads everything at once.
    let server = TestServer::start_with(|c| {
        c.busy_frames_per_sec = 1;
        c.busy_write_delay_ms = 1000;
        c.busy_write_max_delay_ms = 1000;
        c.outbound_queue = 32;
    })
    .await;
    let mut ana = server.client("Ana").await;
    let mut ben = server.client("Ben").await;
    ana.join("narrow").await;
    ben.join("narrow").await;
    make_busy(&mut ana, &mut ben, "narrow").await;

    // 50 frames in waves of 10 over ~100 ms: within one hold, and never 32 at once.
    for wave in 0..5 {
        for n in wave * 10..wave * 10 + 10 {
            ana.send(json!({"type": "message", "roomId": "narrow", "content": format!("m{n}")}))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..50 {
        assert_eq!(ben.expect("message").await["content"], format!("m{n}"));
    }
    ben.expect_silence(Duration::from_millis(100)).await;
}

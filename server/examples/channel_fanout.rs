//! A dashboard-shaped fan-out benchmark: many subscribers of one channel, spread over the
//! given instances, and a backend publishing to it through the server API at a fixed rate.
//! Prints one JSON line: deliveries, loss, duplicates, end-to-end latency percentiles, and
//! the CPU each listed process spent per 1,000 deliveries. Run by `server/bench/channel-fanout.sh`,
//! which starts Redis and the instances.
//!
//!   cargo run --release --example channel_fanout -- \
//!     --servers 127.0.0.1:3001,127.0.0.1:3002 --key cfk_… --subscribers 1000 --rate 20 \
//!     --seconds 20 --pids confab-1=123,confab-2=124,redis=99

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const CHANNEL: &str = "dash:all";

struct Args {
    servers: Vec<String>,
    key: String,
    subscribers: usize,
    rate: f64,
    seconds: f64,
    pids: Vec<(String, u32)>,
}

fn args() -> Args {
    let mut args = Args {
        servers: vec!["127.0.0.1:3000".into()],
        key: String::new(),
        subscribers: 1000,
        rate: 20.0,
        seconds: 20.0,
        pids: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--servers" => args.servers = value.split(',').map(str::to_string).collect(),
            "--key" => args.key = value,
            "--subscribers" => args.subscribers = value.parse().expect("--subscribers N"),
            "--rate" => args.rate = value.parse().expect("--rate per second"),
            "--seconds" => args.seconds = value.parse().expect("--seconds S"),
            "--pids" => {
                args.pids = value
                    .split(',')
                    .filter_map(|pair| {
                        let (label, pid) = pair.split_once('=')?;
                        Some((label.to_string(), pid.parse().ok()?))
                    })
                    .collect()
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!args.key.is_empty(), "--key: an API key of the servers");
    args
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One HTTP/1.1 POST with a JSON body; the reply's status and body.
async fn post(server: &str, path: &str, body: &Value, key: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(server)
        .await
        .expect("the server listens");
    let body = body.to_string();
    let auth = key.map_or(String::new(), |key| {
        format!("Authorization: Bearer {key}\r\n")
    });
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// What the subscribers saw.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u64>,
    /// seq → how many subscribers got it
    per_seq: HashMap<u64, u32>,
    duplicates: u64,
}

/// Signs a guest in, subscribes, then records every publication until `stop`.
async fn subscriber(
    server: String,
    n: usize,
    seen: Arc<Mutex<Seen>>,
    ready: tokio::sync::mpsc::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (status, body) = post(
        &server,
        "/api/session",
        &json!({"name": format!("d{n}")}),
        None,
    )
    .await;
    assert_eq!(status, 200, "guest session: {body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{server}/ws"))
        .await
        .expect("websocket");
    socket
        .send(Message::text(
            json!({"type": "auth", "token": token}).to_string(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(
            json!({"type": "subscribe", "channel": CHANNEL}).to_string(),
        ))
        .await
        .unwrap();
    let mut mine: HashMap<u64, u32> = HashMap::new();
    let mut ready = Some(ready);
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = stop.changed() => break,
        };
        let Some(Ok(Message::Text(text))) = frame else {
            break;
        };
        let received = now_us();
        let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match event["type"].as_str() {
            Some("subscribed") => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(()).await;
                }
            }
            Some("publication") => {
                let (Some(seq), Some(sent)) =
                    (event["data"]["seq"].as_u64(), event["data"]["t"].as_u64())
                else {
                    continue;
                };
                *mine.entry(seq).or_insert(0) += 1;
                seen.lock()
                    .unwrap()
                    .latencies_us
                    .push(received.saturating_sub(sent));
            }
            _ => {}
        }
    }
    let mut seen = seen.lock().unwrap();
    for (seq, times) in mine {
        *seen.per_seq.entry(seq).or_insert(0) += 1;
        seen.duplicates += u64::from(times - 1);
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = args();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.subscribers);
    let mut tasks = Vec::new();
    for n in 0..args.subscribers {
        let server = args.servers[n % args.servers.len()].clone();
        tasks.push(tokio::spawn(subscriber(
            server,
            n,
            seen.clone(),
            ready_tx.clone(),
            stop.clone(),
        )));
        if n % 64 == 63 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(ready_tx);
    let mut subscribed = 0;
    while subscribed < args.subscribers {
        match tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await {
            Ok(Some(())) => subscribed += 1,
            _ => break,
        }
    }
    eprintln!("{subscribed} subscribers ready");
    let cpu_before: Vec<f64> = args.pids.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
    let total = (args.rate * args.seconds).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let started = tokio::time::Instant::now();
    let publisher = &args.servers[0];
    let mut refused = 0;
    for seq in 0..total {
        tokio::time::sleep_until(started + interval * seq as u32).await;
        let body = json!({"channel": CHANNEL, "data": {"seq": seq, "t": now_us()}});
        let (status, _) = post(publisher, "/api/publish", &body, Some(&args.key)).await;
        if status != 200 {
            refused += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu: Vec<f64> = args
        .pids
        .iter()
        .zip(cpu_before)
        .map(|((_, pid), before)| cpu_seconds(*pid) - before)
        .collect();
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let seen = seen.lock().unwrap();
    let delivered: u64 = seen.per_seq.values().map(|n| u64::from(*n)).sum();
    let expected = total * subscribed as u64;
    let mut latencies = seen.latencies_us.clone();
    latencies.sort_unstable();
    let per_1k = |cpu: f64| {
        if delivered > 0 {
            cpu / delivered as f64 * 1000.0
        } else {
            0.0
        }
    };
    let procs: Vec<Value> = args
        .pids
        .iter()
        .zip(&cpu)
        .map(|((label, _), cpu)| json!({"label": label, "cpu_s": cpu, "cpu_s_per_1k_deliveries": per_1k(*cpu)}))
        .collect();
    println!(
        "{}",
        json!({
            "subscribers": subscribed,
            "publications": total,
            "refused": refused,
            "rate": args.rate,
            "deliveries_expected": expected,
            "delivered": delivered,
            "lost": expected.saturating_sub(delivered),
            "duplicates": seen.duplicates,
            "deliveries_per_s": delivered as f64 / args.seconds,
            "latency_ms": {
                "p50": percentile(&latencies, 0.50),
                "p99": percentile(&latencies, 0.99),
                "p999": percentile(&latencies, 0.999),
                "max": percentile(&latencies, 1.0),
            },
            "procs": procs,
        })
    );
}

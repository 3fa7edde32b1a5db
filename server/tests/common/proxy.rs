//! A TCP proxy in front of Redis that can wedge pub/sub connections: they stay open but
//! nothing passes any more, in either direction — what a stuck proxy, a detached replica or
//! a network blackhole looks like to the instance. It can also slow them down.
//!
//! A connection counts as pub/sub once the client sent `SUBSCRIBE` on it. While wedging is
//! on, every pub/sub connection that passes data is wedged for good (also ones opened later);
//! turning it off lets new connections through, and the wedged ones stay wedged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    wedging: AtomicBool,
    wedged: AtomicUsize,
    /// Milliseconds every chunk on a pub/sub connection waits before it is passed on.
    pubsub_delay_ms: std::sync::atomic::AtomicU64,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Connection {
    pubsub: AtomicBool,
    wedged: AtomicBool,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to Redis on `upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let connection = Arc::new(Connection::default());
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(
                        client_read,
                        server_write,
                        true,
                        connection.clone(),
                        state.clone(),
                    ));
                    tokio::spawn(pump(
                        server_read,
                        client_write,
                        false,
                        connection,
                        state.clone(),
                    ));
                }
            }
        });
        Proxy {
            port,
            state,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Wedges pub/sub connections (from their next byte on), or lets new ones through again.
    pub fn wedge_pubsub(&self, on: bool) {
        self.state.wedging.store(on, Ordering::SeqCst);
    }

    /// Makes every chunk on a pub/sub connection (both ways) wait `delay` before it is passed
    /// on: a slow link to Redis, where each round trip costs twice that.
    pub fn delay_pubsub(&self, delay: std::time::Duration) {
        self.state
            .pubsub_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many connections are wedged.
    pub fn wedged(&self) -> usize {
        self.state.wedged.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    from_client: bool,
    connection: Arc<Connection>,
    state: Arc<State>,
) {
    let (later, chunks) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(deliver(chunks, to));
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        if from_client
            && chunk
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
        {
            connection.pubsub.store(true, Ordering::SeqCst);
        }
        if connection.pubsub.load(Ordering::SeqCst)
            && state.wedging.load(Ordering::SeqCst)
            && !connection.wedged.swap(true, Ordering::SeqCst)
        {
            state.wedged.fetch_add(1, Ordering::SeqCst);
        }
        if connection.wedged.load(Ordering::SeqCst) {
            continue; // read and dropped: the socket stays open, nothing gets through
        }
        let delay = if connection.pubsub.load(Ordering::SeqCst) {
            state.pubsub_delay_ms.load(Ordering::SeqCst)
        } else {
            0
        };
        let due = tokio::time::Instant::now() + std::time::Duration::from_millis(delay);
        if later.send((due, chunk.to_vec())).is_err() {
            return;
        }
    }
}

/// Writes what `pump` read, each chunk once it is due: a delay is latency, not a slower link.
async fn deliver(
    mut chunks: tokio::sync::mpsc::UnboundedReceiver<(tokio::time::Instant, Vec<u8>)>,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    while let Some((due, chunk)) = chunks.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

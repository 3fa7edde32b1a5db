//! One WebSocket connection: a reader (this task) and a writer (a spawned task).
//!
//! The reader decodes frames and hands them to [`Dispatch`]; everything the client is sent
//! goes through the connection's bounded queue to the writer. When either side ends, the
//! other is stopped: the writer ends on a close request ([`Kick`]) or a failed write, and the
//! reader stops when it sees the writer gone. Limits enforced here: frame size (1009),
//! invalid UTF-8 (1007), auth timeout (4500), ping/pong (4002), write timeout.

use super::dispatch::Dispatch;
use crate::engine::SessionId;
use crate::hub::{Frame, Kick};
use crate::state::AppState;
use app::protocol::{close, User};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

/// When the client was last heard from, as milliseconds since the connection started.
/// Written by the reader, read by the writer to detect a dead peer.
struct LastSeen {
    start: Instant,
    ms: AtomicU64,
}

impl LastSeen {
    fn new() -> Self {
        LastSeen {
            start: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }
    /// Milliseconds since the connection started: the one clock both tasks compare on, so
    /// a pong arriving within the same millisecond as its ping still counts.
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn touch(&self) {
        self.ms.store(self.now_ms(), Ordering::Relaxed);
    }
    fn last_ms(&self) -> u64 {
        self.ms.load(Ordering::Relaxed)
    }
}

/// Runs a connection to its end, then cleans up its rooms and presence.
pub async fn run(socket: WebSocket, state: AppState, session: Option<(SessionId, User)>) {
    let registration = state.hub().register();
    let id = registration.id;
    let kick = registration.kick.clone();
    let last_seen = Arc::new(LastSeen::new());
    let (sink, mut stream) = socket.split();
    let timing = WriterTiming::from_state(&state);
    let mut writer = tokio::spawn(write_loop(
        sink,
        registration.queue,
        kick.clone(),
        last_seen.clone(),
        timing,
    ));
    let mut writer_done = false;

    let mut dispatch = Dispatch::new(state.clone(), id, registration.outbox);
    Box::pin(dispatch.start(session)).await;
    tracing::debug!(connection = id.0, "connection opened");

    let auth_deadline = sleep(state.config().auth_timeout());
    tokio::pin!(auth_deadline);
    loop {
        tokio::select! {
            frame = stream.next() => {
                last_seen.touch();
                match frame {
                    // Boxed: handling a request (join, post, ...) is a large future, and an idle
                    // connection should not carry its space for its whole life.
                    Some(Ok(Message::Text(text))) => Box::pin(dispatch.handle_text(text.as_str())).await,
                    Some(Ok(Message::Binary(_))) => dispatch.binary_frame(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(err)) => {
                        if let Some((code, reason)) = close_for_read_error(err) {
                            kick.kick(code, reason);
                        }
                        break;
                    }
                }
            }
            () = &mut auth_deadline, if !dispatch.is_authenticated() => {
                tracing::info!(connection = id.0, "closing unauthenticated connection");
                kick.kick(close::AUTH_TIMEOUT, "authentication timeout");
                break;
            }
            _ = &mut writer => {
                writer_done = true;
                break;
            }
        }
    }

    Box::pin(dispatch.finish()).await;
    kick.kick(1000, "");
    if !writer_done {
        // The writer sends the close frame; it is bounded by the write timeout.
        let _ = writer.await;
    }
    tracing::debug!(connection = id.0, reason = ?kick.reason(), "connection closed");
}

/// The close code for a read error, if the client should be told (it may still listen).
fn close_for_read_error(err: axum::Error) -> Option<(u16, &'static str)> {
    match err.into_inner().downcast::<tungstenite::Error>() {
        Ok(err) => match *err {
            tungstenite::Error::Capacity(_) => Some((close::MESSAGE_TOO_BIG, "message too big")),
            tungstenite::Error::Utf8(_) => Some((close::INVALID_UTF8, "invalid UTF-8")),
            tungstenite::Error::Protocol(_) => Some((1002, "protocol error")),
            _ => None,
        },
        Err(_) => None,
    }
}

#[derive(Clone, Copy)]
struct WriterTiming {
    write_timeout: Duration,
    ping_interval: Duration,
    pong_timeout: Duration,
}

impl WriterTiming {
    fn from_state(state: &AppState) -> Self {
        let config = state.config();
        WriterTiming {
            write_timeout: config.write_timeout(),
            ping_interval: config.ping_interval(),
            pong_timeout: config.pong_timeout(),
        }
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Writes queued frames (batched into one flush when several are waiting), pings the client
/// and closes the socket when asked.
///
/// Per delivery this does no timer or waiter bookkeeping: the one timer (next ping, or the
/// pong deadline while a ping is outstanding) and the close request are pinned once, and a
/// write is only given a deadline when it cannot complete at once.
async fn write_loop(
    mut sink: Sink,
    mut queue: mpsc::Receiver<Frame>,
    kick: Arc<Kick>,
    last_seen: Arc<LastSeen>,
    timing: WriterTiming,
) {
    let kicked = kick.requested();
    tokio::pin!(kicked);
    let timer = tokio::time::sleep(timing.ping_interval);
    tokio::pin!(timer);
    // Set while a ping is outstanding: when it was sent (instant, and on the LastSeen clock).
    let mut ping_sent: Option<(Instant, u64)> = None;
    loop {
        tokio::select! {
            biased;
            reason = &mut kicked => {
                // What is already queued (e.g. the error that explains the close) goes out
                // first, except for a slow consumer: its full queue is why it is closed.
                let goodbye = async {
                    if reason.code != close::SLOW_CONSUMER {
                        while let Ok(frame) = queue.try_recv() {
                            sink.feed(Message::Text(frame)).await?;
                        }
                    }
                    let frame = CloseFrame { code: reason.code, reason: reason.reason.into() };
                    sink.send(Message::Close(Some(frame))).await
                };
                let _ = bounded(goodbye, timing.write_timeout).await;
                return;
            }
            frame = queue.recv() => {
                let Some(frame) = frame else { return };
                let batch = async {
                    sink.feed(Message::Text(frame)).await?;
                    while let Ok(frame) = queue.try_recv() {
                        sink.feed(Message::Text(frame)).await?;
                    }
                    sink.flush().await
                };
                if let Err(failure) = bounded(batch, timing.write_timeout).await {
                    tracing::debug!(?failure, "write failed; dropping the connection");
                    return;
                }
            }
            () = &mut timer => match ping_sent.take() {
                Some((sent, sent_ms)) => {
                    if last_seen.last_ms() < sent_ms {
                        kick.kick(close::NO_PONG, "ping timeout");
                    }
                    timer.as_mut().reset(sent + timing.ping_interval);
                }
                None => {
                    if bounded(sink.send(Message::Ping(Default::default())), timing.write_timeout).await.is_err() {
                        return;
                    }
                    let now = Instant::now();
                    ping_sent = Some((now, last_seen.now_ms()));
                    timer.as_mut().reset(now + timing.pong_timeout);
                }
            },
        }
    }
}

#[derive(Debug)]
enum WriteFailure {
    Socket(#[allow(dead_code)] axum::Error),
    TimedOut,
}

/// Runs a write; only if it cannot finish at once is it given `limit` (a timer per write
/// would be pure overhead on the common path, where the socket is writable).
async fn bounded(
    write: impl std::future::Future<Output = Result<(), axum::Error>>,
    limit: Duration,
) -> Result<(), WriteFailure> {
    let mut write = std::pin::pin!(write);
    if let std::task::Poll::Ready(result) = futures::poll!(write.as_mut()) {
        return result.map_err(WriteFailure::Socket);
    }
    match timeout(limit, write).await {
        Ok(result) => result.map_err(WriteFailure::Socket),
        Err(_) => Err(WriteFailure::TimedOut),
    }
}

//! One WebSocket connection: a reader (this task) and a writer (a spawned task).
//!
//! The reader decodes frames and hands them to [`Dispatch`]; everything the client is sent
//! goes through the connection's bounded queue to the writer. When either side ends, the
//! other is stopped: the writer ends on a close request ([`Kick`]) or a failed write, and the
//! reader stops when it sees the writer gone. Limits enforced here: frame size (1009),
//! invalid UTF-8 (1007), auth timeout (4500), ping/pong (4002), write timeout.
//!
//! Closing follows RFC 6455 §7.1.1: the writer sends what is queued (the error that explains
//! the close) and the close frame, then the connection *lingers*: it keeps reading and
//! discarding what the client still sends, for at most `--close-linger-ms`, until the client
//! answers the close or goes away. Dropping a socket with unread data would make the kernel
//! send a reset, and a client still sending (a flood, a 4 MiB frame) would lose the error and
//! the close code and see 1006.

use super::batching::{BatchPolicy, Batching};
use super::dispatch::Dispatch;
use super::handshake::Socket;
use super::Admission;
use crate::hub::{Frame, Inbox, Kick};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::wire::ConnectionId;
use app::protocol::close;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::{sleep, timeout, Instant, Sleep};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

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
        self.ms_at(Instant::now())
    }
    fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_millis() as u64
    }
    fn instant_at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }
    fn touch(&self) {
        self.ms.store(self.now_ms(), Ordering::Relaxed);
    }
    fn last_ms(&self) -> u64 {
        self.ms.load(Ordering::Relaxed)
    }
}

/// Runs a connection to its end, then cleans up its rooms and presence.
pub async fn run(socket: Socket, state: AppState, admission: Admission) {
    let registration = state.hub().register();
    let id = registration.id;
    let kick = registration.kick.clone();
    let last_seen = Arc::new(LastSeen::new());
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(write_loop(
        sink,
        registration.queue,
        kick.clone(),
        last_seen.clone(),
        state.clone(),
        id,
    ));
    let mut sink = None;
    // Set when a read error left the WebSocket framing unusable (e.g. an oversize frame).
    let mut framing_broken = false;

    // The reader's own handle on the queue: each request waits for room for its answer.
    let outbox = registration.outbox.clone();
    let mut dispatch = Dispatch::new(state.clone(), id, registration.outbox);
    Box::pin(dispatch.start(admission)).await;
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
                    Some(Ok(Message::Text(text))) => Box::pin(async {
                        outbox.room_for_answers().await;
                        dispatch.handle_text(text.as_str()).await
                    })
                    .await,
                    Some(Ok(Message::Binary(_))) => dispatch.binary_frame(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(err)) => {
                        if let Some((code, reason)) = close_for_read_error(err) {
                            kick.kick(code, reason);
                        }
                        framing_broken = true;
                        break;
                    }
                }
            }
            () = &mut auth_deadline, if !dispatch.is_admitted() => {
                tracing::info!(connection = id.0, "closing unauthenticated connection");
                kick.kick(close::AUTH_TIMEOUT, "authentication timeout");
                break;
            }
            done = &mut writer => {
                sink = done.ok();
                break;
            }
        }
    }

    Box::pin(dispatch.finish()).await;
    kick.kick(1000, "");
    if let Some(reason) = kick.reason() {
        state.node().hub().metrics().closed(reason.code);
    }
    if sink.is_none() {
        // The writer sends the close frame; it is bounded by the write timeout.
        sink = writer.await.ok();
    }
    if let Some(socket) = sink.and_then(|sink| stream.reunite(sink).ok()) {
        let linger = state.config().close_linger();
        Box::pin(linger_after_close(socket, framing_broken, linger)).await;
    }
    tracing::debug!(connection = id.0, reason = ?kick.reason(), "connection closed");
}

/// After the close frame: reads and discards what the client still sends, until it answers
/// the close, goes away, or `linger` passes. With the framing broken the raw stream is
/// drained (tungstenite would buffer the whole oversize frame instead).
async fn linger_after_close(mut socket: Socket, framing_broken: bool, linger: Duration) {
    let deadline = Instant::now() + linger;
    if framing_broken {
        let mut discard = [0u8; 4096];
        let raw = socket.get_mut();
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, raw.read(&mut discard)).await {
            if n == 0 {
                break;
            }
        }
    } else {
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, socket.next()).await {}
    }
}

/// The close code for a read error, if the client should be told (it may still listen).
fn close_for_read_error(err: tungstenite::Error) -> Option<(u16, &'static str)> {
    match err {
        tungstenite::Error::Capacity(_) => Some((close::MESSAGE_TOO_BIG, "message too big")),
        tungstenite::Error::Utf8(_) => Some((close::INVALID_UTF8, "invalid UTF-8")),
        tungstenite::Error::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}

type Sink = SplitSink<Socket, Message>;

/// Writes queued frames (batched into one flush when several are waiting), pings the client
/// and closes the socket when asked.
///
/// An ordinary connection's deliveries do no timer or waiter bookkeeping: the one timer (next
/// ping, or the pong deadline while a ping is outstanding) and the close request are pinned
/// once, and a write is only given a deadline when it cannot complete at once. A busy
/// connection ([`batching`](super::batching)) has its frames buffered in the sink and flushed
/// together when its hold timer fires (one timer reset per batch, allocated the first time
/// the connection gets busy). Every idle connection has one of these futures, so what it
/// keeps across awaits is kept small.
async fn write_loop(
    mut sink: Sink,
    mut queue: Inbox,
    kick: Arc<Kick>,
    last_seen: Arc<LastSeen>,
    state: AppState,
    id: ConnectionId,
) -> Sink {
    let config = state.config();
    let metrics = state.node().hub().metrics().clone();
    let write_timeout = config.write_timeout();
    let kicked = kick.requested();
    tokio::pin!(kicked);
    let timer = tokio::time::sleep(config.ping_interval());
    tokio::pin!(timer);
    // Set while a ping is outstanding: when it was sent, on the LastSeen clock.
    let mut ping_sent_ms: Option<u64> = None;
    let mut batching = Batching::default();
    let mut hold: Option<Pin<Box<Sleep>>> = None;
    // Frames are buffered in the sink, waiting for `hold` to fire.
    let mut holding = false;
    loop {
        // Every arm but the close request ends in what its writes came to.
        let written = tokio::select! {
            biased;
            reason = &mut kicked => {
                // What is already queued (e.g. the error that explains the close) goes out
                // first, except for a slow consumer: its full queue is why it is closed.
                let goodbye = async {
                    if reason.code != close::SLOW_CONSUMER {
                        feed_queued(&mut sink, &mut queue, &metrics).await?;
                    }
                    let frame = CloseFrame {
                        code: reason.code.into(),
                        reason: Utf8Bytes::from_static(reason.reason),
                    };
                    sink.send(Message::Close(Some(frame))).await
                };
                let _ = bounded(goodbye, write_timeout).await;
                return sink;
            }
            // Held frames go out when the hold is up, or at once when the queue they wait in
            // fills past half (the flush request wakes this task through the close waker).
            () = std::future::poll_fn(|cx| if kick.take_flush_request() {
                Poll::Ready(())
            } else {
                hold.as_mut().expect("holding implies a hold timer").as_mut().poll(cx)
            }), if holding => {
                holding = false;
                let batch = async {
                    batching.count(feed_queued(&mut sink, &mut queue, &metrics).await?);
                    sink.flush().await
                };
                bounded(batch, write_timeout).await
            }
            frame = queue.recv(), if !holding => {
                let Some(frame) = frame else { return sink };
                let batch = async {
                    sink.feed(delivered(&metrics, frame)).await?;
                    feed_queued(&mut sink, &mut queue, &metrics).await
                };
                match bounded(batch, write_timeout).await {
                    Ok(fed) => {
                        let now = Instant::now();
                        let policy = BatchPolicy::from_config(config);
                        match batching.hold(policy, last_seen.ms_at(now), 1 + fed) {
                            0 => bounded(sink.flush(), write_timeout).await,
                            hold_ms => {
                                arm(&mut hold, now + Duration::from_millis(hold_ms.into()));
                                // The queue was just drained: an earlier request is stale.
                                kick.take_flush_request();
                                holding = true;
                                Ok(())
                            }
                        }
                    }
                    Err(failure) => Err(failure),
                }
            }
            () = &mut timer => match ping_sent_ms.take() {
                Some(sent_ms) => {
                    if last_seen.last_ms() < sent_ms {
                        kick.kick(close::NO_PONG, "ping timeout");
                    }
                    timer.as_mut().reset(last_seen.instant_at(sent_ms) + config.ping_interval());
                    Ok(())
                }
                None => bounded(sink.send(Message::Ping(Default::default())), write_timeout)
                    .await
                    .map(|()| {
                        let now = Instant::now();
                        ping_sent_ms = Some(last_seen.ms_at(now));
                        timer.as_mut().reset(now + config.pong_timeout());
                    }),
            },
        };
        if let Err(failure) = written {
            failed(&mut sink, failure, &kick, write_timeout, id).await;
            return sink;
        }
    }
}

/// A write failed: the connection ends, and it is never silent about why. A client that
/// stopped reading (the write timed out) is closed as slow; a frame the write buffer cannot
/// take (a server bug: every answer is cut to fit, see `node::answers`) is explained and
/// closed with 1011; a socket error means the client is gone.
async fn failed(
    sink: &mut Sink,
    failure: WriteFailure,
    kick: &Kick,
    write_timeout: Duration,
    id: ConnectionId,
) {
    match failure {
        WriteFailure::TimedOut => {
            tracing::warn!(
                connection = id.0,
                timeout = ?write_timeout,
                "closing a connection whose client stopped reading (write timed out)"
            );
            kick.kick(close::SLOW_CONSUMER, "write timeout");
        }
        WriteFailure::Socket(tungstenite::Error::WriteBufferFull(frame)) => {
            tracing::warn!(
                connection = id.0,
                bytes = frame.len(),
                "closing a connection: a frame larger than its write buffer"
            );
            kick.kick(close::INTERNAL_ERROR, "frame too large");
            let error = crate::wire::encode(&app::protocol::ServerMsg::error(
                app::protocol::ErrorCode::Unavailable,
                "the server could not send an answer; reconnect",
            ));
            let goodbye = async {
                sink.feed(Message::Text(error)).await?;
                let frame = CloseFrame {
                    code: close::INTERNAL_ERROR.into(),
                    reason: Utf8Bytes::from_static("frame too large"),
                };
                sink.send(Message::Close(Some(frame))).await
            };
            let _ = bounded(goodbye, write_timeout).await;
        }
        WriteFailure::Socket(err) => {
            tracing::debug!(connection = id.0, error = %err, "write failed: the client is gone");
        }
    }
}

/// A frame on its way to the client, counted.
fn delivered(metrics: &Metrics, frame: Frame) -> Message {
    metrics.deliveries.increment(1);
    metrics.bytes_out.increment(frame.len() as u64);
    Message::Text(frame)
}

/// Sets the hold timer to fire at `release`, allocating it the first time it is needed.
fn arm(hold: &mut Option<Pin<Box<Sleep>>>, release: Instant) {
    match hold {
        Some(sleep) => sleep.as_mut().reset(release),
        None => *hold = Some(Box::pin(tokio::time::sleep_until(release))),
    }
}

/// Moves every frame waiting in the queue into the sink's buffer; returns how many.
async fn feed_queued(
    sink: &mut Sink,
    queue: &mut Inbox,
    metrics: &Metrics,
) -> Result<u32, tungstenite::Error> {
    let mut fed = 0;
    while let Some(frame) = queue.try_recv() {
        sink.feed(delivered(metrics, frame)).await?;
        fed += 1;
    }
    Ok(fed)
}

#[derive(Debug)]
enum WriteFailure {
    Socket(tungstenite::Error),
    TimedOut,
}

/// Runs a write; only if it cannot finish at once is it given `limit` (a timer per write
/// would be pure overhead on the common path, where the socket is writable).
async fn bounded<T>(
    write: impl std::future::Future<Output = Result<T, tungstenite::Error>>,
    limit: Duration,
) -> Result<T, WriteFailure> {
    let mut write = std::pin::pin!(write);
    if let std::task::Poll::Ready(result) = futures::poll!(write.as_mut()) {
        return result.map_err(WriteFailure::Socket);
    }
    // Boxed: the timer is only needed on this slow path, and inline it would make every
    // idle connection's writer larger.
    match Box::pin(timeout(limit, write)).await {
        Ok(result) => result.map_err(WriteFailure::Socket),
        Err(_) => Err(WriteFailure::TimedOut),
    }
}

//! The instance's one pub/sub connection, owned by one task.
//!
//! Subscriptions follow the hub: a request to "sync" a room makes the task subscribe when the
//! room has local members and is not subscribed, or unsubscribe when it has none and is.
//! Because the task reads the hub's state when it handles the request, joins and leaves that
//! race each other always end in the right state. After the connection drops, the task
//! reconnects with backoff and subscribes every room that has local members again.
//!
//! A delivery is an envelope (`origin\n` + encoded event); the frame is handed to the hub as
//! is, once per instance, and skips the origin connection when it is one of ours.
//!
//! The task also listens, always, on the control channel: `session-ended:<id>` closes the
//! local sockets of a session that was ended on any instance. Orders sent while the
//! connection was down are caught up after reconnecting, from the ended sessions' tombstones.

use super::Keys;
use crate::engine::{EngineError, EngineResult, SessionId};
use crate::hub::{ConnectionId, Frame, Hub};
use futures::StreamExt;
use redis::aio::PubSubSink;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Sync requests waiting for the task; joins beyond this wait for room in the queue.
const REQUEST_QUEUE: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Control message: a session ended (followed by its id).
pub const SESSION_ENDED: &str = "session-ended:";
/// How long an ended session's tombstone is kept: pub/sub outages shorter than this miss no
/// sign-out.
pub const ENDED_TOMBSTONE: Duration = Duration::from_secs(600);

struct Sync {
    room: String,
    done: oneshot::Sender<EngineResult<()>>,
}

pub struct Subscriber {
    requests: mpsc::Sender<Sync>,
    connected: Arc<AtomicBool>,
}

impl Subscriber {
    pub fn start(client: redis::Client, keys: Keys, server_id: String, hub: Arc<Hub>) -> Self {
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        let task = Task {
            client,
            channel_prefix: keys.channel_prefix(),
            control: keys.control(),
            keys,
            server_id,
            hub,
            queue,
            connected: connected.clone(),
        };
        tokio::spawn(task.run());
        Subscriber {
            requests,
            connected,
        }
    }

    /// Brings the room's subscription in line with the hub, and waits until it is.
    pub async fn sync(&self, room: &str) -> EngineResult<()> {
        let (done, result) = oneshot::channel();
        let request = Sync {
            room: room.to_string(),
            done,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| EngineError::Unavailable("subscriber stopped".into()))?;
        result
            .await
            .unwrap_or_else(|_| Err(EngineError::Unavailable("subscriber stopped".into())))
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

struct Task {
    client: redis::Client,
    keys: Keys,
    /// `P:room:`, computed once: every delivery strips it from the channel name.
    channel_prefix: String,
    /// `P:control`: cluster-wide orders.
    control: String,
    server_id: String,
    hub: Arc<Hub>,
    queue: mpsc::Receiver<Sync>,
    connected: Arc<AtomicBool>,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut reconnecting = false;
        loop {
            match self.connection(reconnecting).await {
                Ok(()) => return, // every Subscriber handle is gone: the engine was dropped
                Err(err) => {
                    reconnecting = true;
                    self.connected.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %err, retry_in = ?backoff, "redis pub/sub connection lost");
                }
            }
            // While disconnected, joins are answered at once rather than left hanging.
            let deadline = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    request = self.queue.recv() => match request {
                        Some(request) => {
                            let _ = request.done.send(Err(EngineError::Unavailable("redis pub/sub is reconnecting".into())));
                        }
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: subscribe what the hub needs, then serve deliveries and sync
    /// requests until the connection fails (`Err`) or the engine is gone (`Ok`).
    async fn connection(&mut self, reconnecting: bool) -> redis::RedisResult<()> {
        let pubsub = self.client.get_async_pubsub().await?;
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed = HashSet::new();
        sink.subscribe(&self.control).await?;
        for room in self.hub.room_ids() {
            sink.subscribe(self.keys.channel(&room)).await?;
            subscribed.insert(room);
        }
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!(rooms = subscribed.len(), "redis pub/sub connected");
        if reconnecting {
            let (client, keys, hub) = (self.client.clone(), self.keys.clone(), self.hub.clone());
            tokio::spawn(async move {
                if let Err(err) = close_missed_sessions(client, keys, hub).await {
                    tracing::warn!(error = %err, "could not check for sign-outs missed while disconnected");
                }
            });
        }
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => self.deliver(&message),
                    None => return Err(redis::RedisError::from(std::io::Error::other("pub/sub stream ended"))),
                },
                request = self.queue.recv() => {
                    let Some(request) = request else { return Ok(()) };
                    let result = self.reconcile(&mut sink, &mut subscribed, &request.room).await;
                    let failed = result.is_err();
                    let _ = request.done.send(result.map_err(|err| EngineError::Unavailable(err.to_string())));
                    if failed {
                        return Err(redis::RedisError::from(std::io::Error::other("subscribe failed")));
                    }
                }
            }
        }
    }

    async fn reconcile(
        &self,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<String>,
        room: &str,
    ) -> redis::RedisResult<()> {
        let wanted = self.hub.has_members(room);
        if wanted && !subscribed.contains(room) {
            sink.subscribe(self.keys.channel(room)).await?;
            subscribed.insert(room.to_string());
        } else if !wanted && subscribed.contains(room) {
            sink.unsubscribe(self.keys.channel(room)).await?;
            subscribed.remove(room);
        }
        Ok(())
    }

    fn deliver(&self, message: &redis::Msg) {
        if message.get_channel_name() == self.control {
            return self.obey(message.get_payload_bytes());
        }
        let Some(room) = message
            .get_channel_name()
            .strip_prefix(&self.channel_prefix)
            .and_then(|rest| rest.strip_suffix(":ch"))
        else {
            return;
        };
        let payload = message.get_payload_bytes();
        let Some(split) = payload.iter().position(|b| *b == b'\n') else {
            tracing::warn!(room, "dropping a pub/sub payload without an envelope");
            return;
        };
        let skip = std::str::from_utf8(&payload[..split])
            .ok()
            .and_then(|origin| origin.split_once('/'))
            .filter(|(sid, _)| *sid == self.server_id)
            .and_then(|(_, n)| n.parse().ok())
            .map(ConnectionId);
        match Frame::try_from(payload[split + 1..].to_vec()) {
            Ok(frame) => {
                self.hub.deliver(room, &frame, skip);
            }
            Err(_) => tracing::warn!(room, "dropping a pub/sub payload that is not UTF-8"),
        }
    }

    fn obey(&self, order: &[u8]) {
        let order = String::from_utf8_lossy(order);
        match order.strip_prefix(SESSION_ENDED) {
            Some(id) => {
                let Some(id) = SessionId::from_hex(id) else {
                    return tracing::warn!(%order, "ignoring a malformed control message");
                };
                let closed = self.hub.close_session(&id);
                if closed > 0 {
                    tracing::info!(
                        connections = closed,
                        "closed the sockets of an ended session"
                    );
                }
            }
            None => tracing::warn!(%order, "ignoring an unknown control message"),
        }
    }
}

/// Closes local sockets of sessions ended while the pub/sub connection was down (their
/// tombstones say so). After Redis lost its data there are no tombstones, and no socket is
/// closed for that reason alone.
async fn close_missed_sessions(
    client: redis::Client,
    keys: Keys,
    hub: Arc<Hub>,
) -> redis::RedisResult<()> {
    let sessions = hub.session_ids();
    if sessions.is_empty() {
        return Ok(());
    }
    let mut connection = client.get_multiplexed_async_connection().await?;
    let mut pipe = redis::pipe();
    for id in &sessions {
        pipe.exists(keys.ended(id));
    }
    let ended: Vec<bool> = pipe.query_async(&mut connection).await?;
    for (id, _) in sessions.iter().zip(ended).filter(|(_, ended)| *ended) {
        let closed = hub.close_session(id);
        tracing::info!(
            connections = closed,
            "closed the sockets of a session ended while disconnected"
        );
    }
    Ok(())
}

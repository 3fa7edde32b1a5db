//! The hub: this instance's registry of live connections and the rooms they joined.
//!
//! Each connection has a bounded outbound queue ([`Outbox`]). A broadcast is serialized once
//! by its producer and the same [`Frame`] (reference counted bytes) is queued to every local
//! member. A connection whose queue is full is disconnected as a slow consumer rather than
//! allowed to grow memory.

use crate::engine::SessionId;
use app::protocol::{close, ServerMsg};
use futures::task::AtomicWaker;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::Poll;
use tokio::sync::mpsc;

/// An encoded server event: cheap to clone, shared by all recipients.
pub type Frame = axum::extract::ws::Utf8Bytes;

/// Encodes a server event once, for any number of recipients.
pub fn encode(msg: &ServerMsg) -> Frame {
    Frame::from(serde_json::to_string(msg).expect("server events always serialize"))
}

/// A connection's id, unique within this instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Why and how a connection is to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

/// What other tasks ask of a connection's writer: a one-shot close, and writing frames it
/// holds (write batching) before their delay is up.
#[derive(Default)]
pub struct Kick {
    reason: OnceLock<CloseReason>,
    flush_requested: AtomicBool,
    // Lock-free wake-up of the writer: it polls this on every pass, once per delivery.
    waker: AtomicWaker,
}

impl Kick {
    /// Asks the connection to close. The first reason wins.
    pub fn kick(&self, code: u16, reason: &'static str) {
        if self.reason.set(CloseReason { code, reason }).is_ok() {
            self.waker.wake();
        }
    }

    /// Waits until a close is requested, then returns the reason.
    pub async fn requested(&self) -> CloseReason {
        std::future::poll_fn(|cx| {
            if let Some(reason) = self.reason.get() {
                return Poll::Ready(*reason);
            }
            self.waker.register(cx.waker());
            // A kick between the check and the registration would otherwise be missed.
            match self.reason.get() {
                Some(reason) => Poll::Ready(*reason),
                None => Poll::Pending,
            }
        })
        .await
    }

    pub fn reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// Asks the writer to write what it holds now: its queue is filling up.
    fn request_flush(&self) {
        self.flush_requested.store(true, Ordering::Relaxed);
        self.waker.wake();
    }

    /// Whether a flush was requested since the last call. The writer is woken through the
    /// same waker as for a close, so it sees this on its next pass.
    pub fn take_flush_request(&self) -> bool {
        self.flush_requested.swap(false, Ordering::Relaxed)
    }
}

/// The sending side of a connection: its bounded queue and its close request.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
    kick: Arc<Kick>,
}

impl Outbox {
    /// Queues a frame without waiting. A full queue means the client does not keep up: it is
    /// disconnected (close 4001) and false is returned, as when the connection is gone. A
    /// queue more than half full asks the writer to stop holding frames: a hold must never
    /// make a client that keeps up look like a slow consumer.
    pub fn send(&self, frame: Frame) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => {
                if self.tx.capacity() * 2 < self.tx.max_capacity() {
                    self.kick.request_flush();
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kick.kick(close::SLOW_CONSUMER, "slow consumer");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn kick(&self, code: u16, reason: &'static str) {
        self.kick.kick(code, reason);
    }
}

/// What the writer task of a new connection needs.
pub struct Registration {
    pub id: ConnectionId,
    pub outbox: Outbox,
    pub queue: mpsc::Receiver<Frame>,
    pub kick: Arc<Kick>,
}

#[derive(Default)]
struct Registry {
    connections: HashMap<ConnectionId, Outbox>,
    rooms: HashMap<String, HashMap<ConnectionId, Outbox>>,
    /// The session each signed-in connection used, so signing out can close them.
    sessions: HashMap<ConnectionId, SessionId>,
}

/// Local rooms → connections. Shared by all connection tasks and the engine.
pub struct Hub {
    next_id: AtomicU64,
    queue_frames: usize,
    // std RwLock: held only for map lookups and non-blocking `try_send`s, never across an
    // await. Deliveries (the hot path) take the read side and run in parallel.
    registry: RwLock<Registry>,
}

impl Hub {
    /// `queue_frames`: the outbound queue length of each connection.
    pub fn new(queue_frames: usize) -> Self {
        Hub {
            next_id: AtomicU64::new(1),
            queue_frames: queue_frames.max(1),
            registry: RwLock::default(),
        }
    }

    /// Adds a new connection.
    pub fn register(&self) -> Registration {
        let id = ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, queue) = mpsc::channel(self.queue_frames);
        let kick = Arc::new(Kick::default());
        let outbox = Outbox {
            tx,
            kick: kick.clone(),
        };
        self.write().connections.insert(id, outbox.clone());
        Registration {
            id,
            outbox,
            queue,
            kick,
        }
    }

    /// Removes a connection that left all its rooms.
    pub fn unregister(&self, id: ConnectionId) {
        let mut registry = self.write();
        registry.connections.remove(&id);
        registry.sessions.remove(&id);
    }

    /// Records which session a connection signed in with.
    pub fn set_session(&self, id: ConnectionId, session: SessionId) {
        let mut registry = self.write();
        if registry.connections.contains_key(&id) {
            registry.sessions.insert(id, session);
        }
    }

    /// The sessions local connections are signed in with (each once).
    pub fn session_ids(&self) -> Vec<SessionId> {
        let registry = self.read();
        let unique: std::collections::HashSet<&SessionId> = registry.sessions.values().collect();
        unique.into_iter().cloned().collect()
    }

    /// Closes every local connection signed in with `session` (4503). Returns how many.
    /// A scan over the connections: sign-outs are rare next to deliveries, which stay free
    /// of a second index to maintain.
    pub fn close_session(&self, session: &SessionId) -> usize {
        let registry = self.read();
        let mut closed = 0;
        for (id, _) in registry.sessions.iter().filter(|(_, s)| *s == session) {
            if let Some(outbox) = registry.connections.get(id) {
                outbox.kick(close::SESSION_ENDED, "signed out");
                closed += 1;
            }
        }
        closed
    }

    /// Adds the connection to a local room; true when it is the room's first local member
    /// (the caller then subscribes the instance to the room).
    pub fn join(&self, room: &str, id: ConnectionId, outbox: &Outbox) -> bool {
        let mut registry = self.write();
        match registry.rooms.get_mut(room) {
            Some(members) => {
                members.insert(id, outbox.clone());
                false
            }
            None => {
                registry
                    .rooms
                    .insert(room.to_string(), HashMap::from([(id, outbox.clone())]));
                true
            }
        }
    }

    /// Removes the connection from a local room; true when that emptied the room (the caller
    /// then unsubscribes).
    pub fn leave(&self, room: &str, id: ConnectionId) -> bool {
        let mut registry = self.write();
        let Some(members) = registry.rooms.get_mut(room) else {
            return false;
        };
        if members.remove(&id).is_none() {
            return false;
        }
        if members.is_empty() {
            registry.rooms.remove(room);
            return true;
        }
        false
    }

    /// Whether the room has any local member (used to keep subscriptions in step).
    pub fn has_members(&self, room: &str) -> bool {
        self.read().rooms.contains_key(room)
    }

    /// Queues `frame` to every local member of `room` except `skip`. Returns how many got it.
    pub fn deliver(&self, room: &str, frame: &Frame, skip: Option<ConnectionId>) -> usize {
        let registry = self.read();
        let Some(members) = registry.rooms.get(room) else {
            return 0;
        };
        members
            .iter()
            .filter(|(id, _)| Some(**id) != skip)
            .filter(|(_, outbox)| outbox.send(frame.clone()))
            .count()
    }

    /// Rooms with local members (to subscribe again after a reconnect).
    pub fn room_ids(&self) -> Vec<String> {
        self.read().rooms.keys().cloned().collect()
    }

    /// Asks every connection to close (e.g. on shutdown).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for outbox in self.read().connections.values() {
            outbox.kick(code, reason);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.read().connections.len()
    }

    pub fn room_count(&self) -> usize {
        self.read().rooms.len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated (each update is
        // one insert or remove), so a poisoned lock is still consistent.
        self.registry
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_reference_counted() {
        let hub = Hub::new(4);
        let a = hub.register();
        let b = hub.register();
        assert!(hub.join("r", a.id, &a.outbox));
        assert!(!hub.join("r", b.id, &b.outbox));
        assert!(!hub.leave("r", a.id));
        assert!(!hub.leave("r", a.id), "leaving twice changes nothing");
        assert!(hub.leave("r", b.id));
        assert!(!hub.has_members("r"));
    }

    #[test]
    fn deliver_skips_origin_and_shares_bytes() {
        let hub = Hub::new(4);
        let mut a = hub.register();
        let mut b = hub.register();
        hub.join("r", a.id, &a.outbox);
        hub.join("r", b.id, &b.outbox);
        let frame = Frame::from("hello".to_string());
        assert_eq!(hub.deliver("r", &frame, Some(a.id)), 1);
        assert!(a.queue.try_recv().is_err());
        assert_eq!(b.queue.try_recv().unwrap().as_str(), "hello");
        assert_eq!(hub.deliver("nobody", &frame, None), 0);
    }

    #[test]
    fn a_full_queue_kicks_the_slow_consumer() {
        let hub = Hub::new(2);
        let slow = hub.register();
        hub.join("r", slow.id, &slow.outbox);
        let frame = Frame::from("x".to_string());
        assert_eq!(hub.deliver("r", &frame, None), 1);
        assert_eq!(hub.deliver("r", &frame, None), 1);
        assert_eq!(hub.deliver("r", &frame, None), 0);
        assert_eq!(
            slow.kick.reason().map(|r| r.code),
            Some(close::SLOW_CONSUMER)
        );
    }

    #[test]
    fn a_queue_more_than_half_full_asks_the_writer_to_flush() {
        let hub = Hub::new(4);
        let a = hub.register();
        let frame = Frame::from("x".to_string());
        assert!(a.outbox.send(frame.clone()) && a.outbox.send(frame.clone()));
        assert!(
            !a.kick.take_flush_request(),
            "half full is not yet too full"
        );
        assert!(a.outbox.send(frame.clone()));
        assert!(a.kick.take_flush_request());
        assert!(!a.kick.take_flush_request(), "a request is taken once");
        assert_eq!(a.kick.reason(), None, "a flush request is not a close");
    }

    #[test]
    fn ending_a_session_closes_only_its_connections() {
        let hub = Hub::new(4);
        let a = hub.register();
        let b = hub.register();
        let other = hub.register();
        let session = SessionId([1; 32]);
        hub.set_session(a.id, session);
        hub.set_session(b.id, session);
        hub.set_session(other.id, SessionId([2; 32]));
        assert_eq!(hub.close_session(&session), 2);
        assert_eq!(a.kick.reason().map(|r| r.code), Some(close::SESSION_ENDED));
        assert_eq!(b.kick.reason().map(|r| r.code), Some(close::SESSION_ENDED));
        assert_eq!(other.kick.reason(), None);
        hub.unregister(a.id);
        hub.unregister(b.id);
        assert_eq!(hub.close_session(&session), 0);
    }

    #[tokio::test]
    async fn a_kick_reaches_the_writer_before_or_while_it_waits() {
        let early = Kick::default();
        early.kick(close::SHUTDOWN, "bye");
        early.kick(close::SLOW_CONSUMER, "ignored: the first reason wins");
        assert_eq!(early.requested().await.code, close::SHUTDOWN);

        let late = Arc::new(Kick::default());
        let waiting = tokio::spawn({
            let late = late.clone();
            async move { late.requested().await }
        });
        tokio::task::yield_now().await;
        late.kick(close::NO_PONG, "ping timeout");
        let reason = tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reason.code, close::NO_PONG);
    }
}

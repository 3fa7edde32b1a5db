//! The hub: this instance's registry of live connections and the rooms they joined.
//!
//! Each connection has a bounded outbound queue ([`Outbox`]). A broadcast is serialized once
//! by its producer and the same [`Frame`] (reference counted bytes) is queued to every local
//! member. A connection whose queue is full is disconnected as a slow consumer rather than
//! allowed to grow memory.
//!
//! Delivery is exactly once per connection ([`LocalDelivery`]):
//! - a room remembers the newest message it was given, and drops any message at or before
//!   it, so a catch-up from history and the live stream may overlap without duplicates;
//! - a joining connection is *held*: live events for it wait (bounded by its queue length)
//!   until its `room_history` answer is queued ([`Hub::admit`]); then only the messages newer
//!   than that history follow, and any later message at or before it is dropped for it.

use crate::engine::{CatchUpFrom, LocalDelivery, SessionId};
use crate::metrics::Metrics;
pub use crate::outbox::{CloseReason, Inbox, Kick, Outbox, QueueLimits};
pub use crate::wire::{encode, ConnectionId, Frame};
use app::protocol::close;
use app::validate::MessageId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// What the writer task of a new connection needs.
pub struct Registration {
    pub id: ConnectionId,
    pub outbox: Outbox,
    pub queue: Inbox,
    pub kick: Arc<Kick>,
}

#[derive(Default)]
struct Registry {
    connections: HashMap<ConnectionId, Outbox>,
    rooms: HashMap<String, Room>,
    /// The session each signed-in connection used, so signing out can close them.
    sessions: HashMap<ConnectionId, SessionId>,
}

#[derive(Default)]
struct Room {
    members: HashMap<ConnectionId, Member>,
    // Taken (under the registry's read lock) for each delivery into the room, so that the
    // check against `delivered` and the fan-out are one step; never held across an await.
    flow: Mutex<Flow>,
}

struct Member {
    outbox: Outbox,
    /// Whose connection it is: events about one user (their read position) reach only theirs.
    user: Arc<str>,
    /// While joining: events wait in `Flow::held` until the history answer is queued.
    joining: bool,
    /// The newest message of the history this member was given; older ones are not sent again.
    floor: Option<MessageId>,
}

#[derive(Default)]
struct Flow {
    /// The newest message delivered into the room.
    delivered: Option<MessageId>,
    /// Events for members still joining, in order, with their message ids.
    held: HashMap<ConnectionId, Held>,
}

/// What waits for a joining member: bounded like its queue, in frames and in bytes.
#[derive(Default)]
struct Held {
    events: Vec<(Frame, Option<MessageId>)>,
    bytes: usize,
}

impl Room {
    fn flow(&self) -> std::sync::MutexGuard<'_, Flow> {
        // Each update under it is one field or one push: a poisoned lock is still consistent.
        self.flow
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Local rooms → connections. Shared by all connection tasks and the engine.
pub struct Hub {
    next_id: AtomicU64,
    queue: QueueLimits,
    // std RwLock: held only for map lookups and non-blocking `try_send`s, never across an
    // await. Deliveries (the hot path) take the read side and run in parallel.
    registry: RwLock<Registry>,
    metrics: Arc<Metrics>,
    stats: crate::stats::Stats,
}

impl Hub {
    /// A hub whose connections queue at most `queue_frames` frames (and any number of bytes).
    pub fn new(queue_frames: usize) -> Self {
        let queue = QueueLimits {
            frames: queue_frames,
            bytes: usize::MAX / 2,
        };
        Self::with_metrics(queue, Arc::new(Metrics::off()))
    }

    /// A hub that counts connections, local rooms and dropped frames in `metrics`.
    pub fn with_metrics(queue: QueueLimits, metrics: Arc<Metrics>) -> Self {
        Hub {
            next_id: AtomicU64::new(1),
            queue: QueueLimits {
                frames: queue.frames.max(1),
                bytes: queue.bytes.max(1),
            },
            registry: RwLock::default(),
            metrics,
            stats: crate::stats::Stats::default(),
        }
    }

    /// What the live dashboard shows of this instance.
    pub fn stats(&self) -> &crate::stats::Stats {
        &self.stats
    }

    /// What this instance counts for operators.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Adds a new connection.
    pub fn register(&self) -> Registration {
        let id = ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (outbox, queue, kick) = crate::outbox::queue(self.queue, &self.metrics);
        self.write().connections.insert(id, outbox.clone());
        self.metrics.connections.increment(1.0);
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
        if registry.connections.remove(&id).is_some() {
            self.metrics.connections.decrement(1.0);
        }
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
        self.close_session_with(session, close::SESSION_ENDED, "signed out")
    }

    /// Closes every local connection signed in with `session` with `code` and `reason`.
    pub fn close_session_with(
        &self,
        session: &SessionId,
        code: u16,
        reason: &'static str,
    ) -> usize {
        let registry = self.read();
        let mut closed = 0;
        for (id, _) in registry.sessions.iter().filter(|(_, s)| *s == session) {
            if let Some(outbox) = registry.connections.get(id) {
                outbox.kick(code, reason);
                closed += 1;
            }
        }
        closed
    }

    /// Adds the connection to a local room, held: events for it wait until [`Hub::admit`].
    /// True when it is the room's first local member (the caller then subscribes the
    /// instance to the room). Joining a room again holds the connection again.
    pub fn join(&self, room: &str, id: ConnectionId, user: &str, outbox: &Outbox) -> bool {
        let mut registry = self.write();
        let first = !registry.rooms.contains_key(room);
        if first {
            self.metrics.rooms.increment(1.0);
        }
        let room = registry.rooms.entry(room.to_string()).or_default();
        room.members.insert(
            id,
            Member {
                outbox: outbox.clone(),
                user: Arc::from(user),
                joining: true,
                floor: None,
            },
        );
        room.flow().held.insert(id, Held::default());
        first
    }

    /// Ends a join: queues the `answer` (the room's history), then what was held for the
    /// connection that is newer than `floor` (the newest message in that history), and from
    /// now on delivers to it live. False when the connection left the room meanwhile.
    pub fn admit(
        &self,
        room: &str,
        id: ConnectionId,
        answer: Frame,
        floor: Option<MessageId>,
    ) -> bool {
        let mut registry = self.write();
        let Some(room) = registry.rooms.get_mut(room) else {
            return false;
        };
        let held = room.flow().held.remove(&id).unwrap_or_default();
        let Some(member) = room.members.get_mut(&id) else {
            return false;
        };
        member.joining = false;
        member.floor = floor;
        if !member.outbox.send(answer) {
            return true;
        }
        for (frame, message) in held.events {
            if is_newer(message, floor) && !member.outbox.send(frame) {
                break;
            }
        }
        true
    }

    /// Removes the connection from a local room; true when that emptied the room (the caller
    /// then unsubscribes).
    pub fn leave(&self, room: &str, id: ConnectionId) -> bool {
        let mut registry = self.write();
        let Some(members) = registry.rooms.get_mut(room) else {
            return false;
        };
        if members.members.remove(&id).is_none() {
            return false;
        }
        members.flow().held.remove(&id);
        if members.members.is_empty() {
            registry.rooms.remove(room);
            self.metrics.rooms.decrement(1.0);
            return true;
        }
        false
    }

    /// Whether the room has any local member (used to keep subscriptions in step).
    pub fn has_members(&self, room: &str) -> bool {
        self.read().rooms.contains_key(room)
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

    /// Bytes waiting in every connection's outbound queue (for `/health`).
    pub fn queued_bytes(&self) -> usize {
        self.read()
            .connections
            .values()
            .map(Outbox::queued_bytes)
            .sum()
    }

    pub fn connection_count(&self) -> usize {
        self.read().connections.len()
    }

    pub fn room_count(&self) -> usize {
        self.read().rooms.len()
    }

    /// Closes every local member of `room` with `code` (they reconnect and resume).
    fn close_room(&self, room: &str, code: u16, reason: &'static str) -> usize {
        let registry = self.read();
        let Some(room) = registry.rooms.get(room) else {
            return 0;
        };
        for member in room.members.values() {
            member.outbox.kick(code, reason);
        }
        room.members.len()
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

/// Whether a message (or an event that is no message) is newer than what a member has.
fn is_newer(message: Option<MessageId>, floor: Option<MessageId>) -> bool {
    match (message, floor) {
        (Some(id), Some(floor)) => id > floor,
        _ => true,
    }
}

impl LocalDelivery for Hub {
    /// Returns how many got it (or will, once admitted).
    fn deliver(
        &self,
        room: &str,
        frame: &Frame,
        message: Option<MessageId>,
        skip: Option<ConnectionId>,
    ) -> usize {
        let registry = self.read();
        let Some(room) = registry.rooms.get(room) else {
            return 0;
        };
        let mut flow = room.flow();
        if let Some(id) = message {
            if flow.delivered.is_some_and(|delivered| id <= delivered) {
                return 0;
            }
            flow.delivered = Some(id);
        }
        let mut reached = 0;
        for (conn, member) in &room.members {
            if Some(*conn) == skip {
                continue;
            }
            if member.joining {
                let held = flow.held.entry(*conn).or_default();
                let bytes = held.bytes + frame.len();
                if held.events.len() >= self.queue.frames || bytes > self.queue.bytes {
                    // It could not take this much once admitted either.
                    member.outbox.kick(close::SLOW_CONSUMER, "slow consumer");
                    continue;
                }
                held.events.push((frame.clone(), message));
                held.bytes = bytes;
                reached += 1;
            } else if is_newer(message, member.floor) && member.outbox.send(frame.clone()) {
                reached += 1;
            }
        }
        let age = message.map(|id| crate::engine::now_ms().saturating_sub(id.ms));
        self.stats.delivered(reached, age);
        reached
    }

    /// Not held for joining members: what it tells is read from the store after the join's
    /// answer anyway, and a stale position is only ever replaced by a newer one.
    fn deliver_to_user(&self, room: &str, user: &str, frame: &Frame) -> usize {
        let registry = self.read();
        let Some(room) = registry.rooms.get(room) else {
            return 0;
        };
        room.members
            .values()
            .filter(|member| &*member.user == user && !member.joining)
            .filter(|member| member.outbox.send(frame.clone()))
            .count()
    }

    fn wanted_rooms(&self) -> Vec<String> {
        self.room_ids()
    }

    fn is_wanted(&self, room: &str) -> bool {
        self.has_members(room)
    }

    fn catch_up_from(&self, room: &str) -> CatchUpFrom {
        let registry = self.read();
        let Some(room) = registry.rooms.get(room) else {
            return CatchUpFrom::Nothing;
        };
        if let Some(delivered) = room.flow().delivered {
            return CatchUpFrom::After(delivered);
        }
        // Nothing delivered since the room was entered: its members have what their
        // histories held, and the catch-up starts at the oldest of those (joining members
        // read their history after this, so they need nothing from it).
        let floors = room
            .members
            .values()
            .filter(|m| !m.joining)
            .map(|m| m.floor);
        match floors.min() {
            None => CatchUpFrom::Nothing,
            Some(None) => CatchUpFrom::Start,
            Some(Some(floor)) => CatchUpFrom::After(floor),
        }
    }

    fn resync(&self, room: &str) {
        let closed = self.close_room(room, close::RESYNC, "missed messages: resume");
        tracing::warn!(
            room,
            connections = closed,
            "room members missed messages that cannot be caught up; told to resume"
        );
    }

    fn evacuate(&self, room: &str) {
        self.close_room(
            room,
            close::UNHEALTHY,
            "this instance cannot deliver: reconnect",
        );
    }

    fn close_session(&self, session: &SessionId) -> usize {
        Hub::close_session(self, session)
    }

    fn session_ids(&self) -> Vec<SessionId> {
        Hub::session_ids(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> Option<MessageId> {
        Some(MessageId { ms, seq: 0 })
    }

    fn frame(text: &str) -> Frame {
        Frame::from(text.to_string())
    }

    /// Joins and admits at once with an empty history; the answer is taken off the queue.
    fn joined(hub: &Hub, room: &str, conn: &mut Registration) -> bool {
        let first = hub.join(room, conn.id, "u", &conn.outbox);
        assert!(hub.admit(room, conn.id, frame("history"), None));
        assert_eq!(conn.queue.try_recv().unwrap().as_str(), "history");
        first
    }

    fn drain(conn: &mut Registration) -> Vec<String> {
        std::iter::from_fn(|| conn.queue.try_recv().map(|f| f.as_str().to_string())).collect()
    }

    #[test]
    fn a_joining_connection_gets_its_history_first_and_then_only_newer_messages() {
        let hub = Hub::new(8);
        let mut a = hub.register();
        hub.join("r", a.id, "u", &a.outbox);
        hub.deliver("r", &frame("m1"), id(1), None);
        hub.deliver("r", &frame("typing"), None, None);
        hub.deliver("r", &frame("m2"), id(2), None);
        assert!(drain(&mut a).is_empty(), "held until the history is queued");
        // The history read while joining already held m1.
        assert!(hub.admit("r", a.id, frame("history"), id(1)));
        assert_eq!(drain(&mut a), ["history", "typing", "m2"]);
        hub.deliver("r", &frame("m3"), id(3), None);
        assert_eq!(drain(&mut a), ["m3"]);
    }

    #[test]
    fn a_message_in_the_history_is_not_sent_again_when_it_arrives_live() {
        let hub = Hub::new(8);
        let mut a = hub.register();
        hub.join("r", a.id, "u", &a.outbox);
        assert!(hub.admit("r", a.id, frame("history"), id(5)));
        hub.deliver("r", &frame("m5"), id(5), None);
        hub.deliver("r", &frame("m6"), id(6), None);
        assert_eq!(drain(&mut a), ["history", "m6"]);
    }

    #[test]
    fn a_room_takes_each_message_once_and_in_order() {
        let hub = Hub::new(8);
        let mut a = hub.register();
        joined(&hub, "r", &mut a);
        assert_eq!(hub.deliver("r", &frame("m2"), id(2), None), 1);
        assert_eq!(
            hub.deliver("r", &frame("m1"), id(1), None),
            0,
            "older: dropped"
        );
        assert_eq!(
            hub.deliver("r", &frame("m2"), id(2), None),
            0,
            "again: dropped"
        );
        assert_eq!(drain(&mut a), ["m2"]);
    }

    #[test]
    fn a_catch_up_starts_where_the_members_stand() {
        let hub = Hub::new(8);
        assert_eq!(hub.catch_up_from("r"), CatchUpFrom::Nothing);
        let a = hub.register();
        let b = hub.register();
        hub.join("r", a.id, "u", &a.outbox);
        assert_eq!(
            hub.catch_up_from("r"),
            CatchUpFrom::Nothing,
            "still joining"
        );
        hub.admit("r", a.id, frame("h"), id(7));
        hub.join("r", b.id, "u", &b.outbox);
        hub.admit("r", b.id, frame("h"), id(4));
        assert_eq!(
            hub.catch_up_from("r"),
            CatchUpFrom::After(MessageId { ms: 4, seq: 0 })
        );
        hub.deliver("r", &frame("m9"), id(9), None);
        assert_eq!(
            hub.catch_up_from("r"),
            CatchUpFrom::After(MessageId { ms: 9, seq: 0 })
        );
        let c = hub.register();
        hub.join("s", c.id, "u", &c.outbox);
        hub.admit("s", c.id, frame("h"), None);
        assert_eq!(
            hub.catch_up_from("s"),
            CatchUpFrom::Start,
            "an empty room's members have it all"
        );
    }

    #[test]
    fn a_joining_connection_that_cannot_hold_more_is_closed_as_slow() {
        let hub = Hub::new(2);
        let a = hub.register();
        hub.join("r", a.id, "u", &a.outbox);
        for n in 1..=3 {
            hub.deliver("r", &frame("m"), id(n), None);
        }
        assert_eq!(a.kick.reason().map(|r| r.code), Some(close::SLOW_CONSUMER));
    }

    #[test]
    fn resync_closes_the_rooms_members_to_resume() {
        let hub = Hub::new(2);
        let mut a = hub.register();
        let mut other = hub.register();
        joined(&hub, "r", &mut a);
        joined(&hub, "s", &mut other);
        LocalDelivery::resync(&hub, "r");
        assert_eq!(a.kick.reason().map(|r| r.code), Some(close::RESYNC));
        assert_eq!(other.kick.reason(), None);
    }

    #[test]
    fn rooms_are_reference_counted() {
        let hub = Hub::new(4);
        let mut a = hub.register();
        let mut b = hub.register();
        assert!(joined(&hub, "r", &mut a));
        assert!(!joined(&hub, "r", &mut b));
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
        joined(&hub, "r", &mut a);
        joined(&hub, "r", &mut b);
        let frame = Frame::from("hello".to_string());
        assert_eq!(hub.deliver("r", &frame, None, Some(a.id)), 1);
        assert!(a.queue.try_recv().is_none());
        assert_eq!(b.queue.try_recv().unwrap().as_str(), "hello");
        assert_eq!(hub.deliver("nobody", &frame, None, None), 0);
    }

    #[test]
    fn an_event_for_one_user_reaches_only_their_admitted_connections() {
        let hub = Hub::new(4);
        let (mut ana, mut ana_too, mut bo) = (hub.register(), hub.register(), hub.register());
        for (conn, user) in [(&mut ana, "ana"), (&mut ana_too, "ana"), (&mut bo, "bo")] {
            hub.join("r", conn.id, user, &conn.outbox);
            assert!(hub.admit("r", conn.id, frame("history"), None));
            drain(conn);
        }
        let mut joining = hub.register();
        hub.join("r", joining.id, "ana", &joining.outbox);
        assert_eq!(hub.deliver_to_user("r", "ana", &frame("read")), 2);
        assert_eq!(drain(&mut ana), ["read"]);
        assert_eq!(drain(&mut ana_too), ["read"]);
        assert!(drain(&mut bo).is_empty());
        assert!(drain(&mut joining).is_empty());
        assert_eq!(hub.deliver_to_user("elsewhere", "ana", &frame("read")), 0);
    }

    #[test]
    fn a_full_queue_kicks_the_slow_consumer() {
        let hub = Hub::new(2);
        let mut slow = hub.register();
        joined(&hub, "r", &mut slow);
        let frame = Frame::from("x".to_string());
        assert_eq!(hub.deliver("r", &frame, None, None), 1);
        assert_eq!(hub.deliver("r", &frame, None, None), 1);
        assert_eq!(hub.deliver("r", &frame, None, None), 0);
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
}

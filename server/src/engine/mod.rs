//! The engine: everything one instance shares with the others (or keeps for itself, alone).
//!
//! Each interface has a memory implementation ([`memory`]) and a Redis one ([`redis`]), and
//! [`shards`] routes each room and key to one of several Redis engines:
//! - [`Broker`]: ephemeral room events (typing, joins) to every instance with members there.
//! - [`History`]: stored messages; `post` stores and publishes in one atomic step.
//! - [`ChannelHistory`]: the kept publications of channels whose namespace keeps history.
//! - [`Queues`]: jobs for worker groups, each acknowledged by one worker (at least once).
//! - [`Presence`]: who is connected, per room and overall, aggregated per user.
//! - [`Sessions`]: session records by id (the hash of the token), and ending them everywhere.
//! - [`Accounts`]: registered users and their password hashes.
//! - [`Reading`]: per user, the rooms they follow (their sidebar) and how far they read each.
//! - [`Counters`]: fixed-window counts shared by every instance (sign-in attempts).
//! - [`Lifecycle`]: health (is the backend reachable?) and shutdown.
//!
//! Policy (token hashing, expiry, password hashing, limits) lives in [`crate::auth`]; engines
//! only store. The rules both engines must apply alike (how a message is assembled, where a
//! page and a resume are cut) are written once, in [`rules`].
//!
//! Events reach local connections through [`LocalDelivery`], which this module defines and
//! the hub implements: an engine is handed one at construction and never sees a connection's
//! queue, so dependencies run one way (wire → engine → hub/node → ws/http).

pub mod memory;
mod memory_channels;
mod memory_queues;
pub mod redis;
pub mod rules;
pub mod shards;

use crate::wire::{ConnectionId, Frame};
use app::protocol::{ChatMessage, HistoryPage, Member, User};
use app::validate::MessageId;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// What an engine needs of the instance it serves: its local members. Implemented by the hub.
pub trait LocalDelivery: Send + Sync {
    /// Queues a room event to the room's local members except `skip`; returns how many got
    /// it. A chat message (`message` set) reaches each member once: one at or before what
    /// the room was already given is dropped, so a catch-up and the live stream may overlap.
    fn deliver(
        &self,
        room: &str,
        frame: &Frame,
        message: Option<MessageId>,
        skip: Option<ConnectionId>,
    ) -> usize;
    /// Queues an event about `user` alone (their read position) to their local connections
    /// in `room`; returns how many got it.
    fn deliver_to_user(&self, room: &str, user: &str, frame: &Frame) -> usize;
    /// Rooms with local members: the ones this instance must receive.
    fn wanted_rooms(&self) -> Vec<String>;
    fn is_wanted(&self, room: &str) -> bool;
    /// Where a catch-up of the room starts, after the subscription may have missed messages.
    fn catch_up_from(&self, room: &str) -> CatchUpFrom;
    /// The room's local members missed messages that cannot be given to them: each is told
    /// (closed with [`close::RESYNC`](app::protocol::close::RESYNC)) and resumes on its own.
    fn resync(&self, room: &str);
    /// This instance cannot deliver the room's messages for now: its local members are sent
    /// elsewhere (closed with [`close::UNHEALTHY`](app::protocol::close::UNHEALTHY)).
    fn evacuate(&self, room: &str);
    /// Closes every local connection signed in with `session`; returns how many.
    fn close_session(&self, session: &SessionId) -> usize;
    /// The sessions local connections are signed in with.
    fn session_ids(&self) -> Vec<SessionId>;
}

/// What can go wrong inside an engine. Callers turn it into an `unavailable` error for the
/// client; the detail is logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

pub type EngineResult<T> = Result<T, EngineError>;

/// What callers outside the engine see: the detail is logged here, once, never returned.
impl From<EngineError> for app::backend::BackendError {
    fn from(err: EngineError) -> Self {
        tracing::warn!(error = %err, "engine error");
        app::backend::BackendError::Unavailable
    }
}

/// Carries room events between instances.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Delivers `frame` (an encoded server event) to every member of `room` on every
    /// instance, except the connection `origin` if given.
    async fn publish(
        &self,
        room: &str,
        frame: Frame,
        origin: Option<ConnectionId>,
    ) -> EngineResult<()>;
    /// Delivers `frame` to `user`'s connections in `room`, on every instance (events only they
    /// may see, such as their own read position).
    async fn publish_to_user(&self, room: &str, user: &str, frame: Frame) -> EngineResult<()>;
    /// Starts receiving `room`'s events on this instance. Called when its first local member joins.
    async fn subscribe(&self, room: &str) -> EngineResult<()>;
    /// Stops receiving `room`'s events. Called when its last local member leaves.
    async fn unsubscribe(&self, room: &str) -> EngineResult<()>;
}

/// Where a room's local members stand, for a catch-up after a pub/sub gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUpFrom {
    /// No member has been given anything yet: nothing to catch up.
    Nothing,
    /// They have the room's history from its start (it was empty when they came).
    Start,
    /// They have every message up to this one.
    After(MessageId),
}

/// A message as the sender's connection hands it over: validated, not yet stored.
#[derive(Clone, Debug)]
pub struct Draft {
    pub room_id: String,
    pub user: User,
    pub content: String,
    pub client_msg_id: Option<String>,
}

/// What `post` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    /// The stored message; for a duplicate, its id and timestamp are the original's.
    pub message: ChatMessage,
    /// The draft's `clientMsgId` was already posted by this user in this room within the
    /// idempotency window: nothing new was stored or delivered.
    pub duplicate: bool,
}

/// Where a reader stands in a room's history: the newest message it has, and the epoch of
/// the history it read it from (none from clients that do not send one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub epoch: Option<String>,
    pub id: MessageId,
}

/// What `since` found (in a room's messages, or a channel's kept publications).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume<T = ChatMessage> {
    /// Exactly the messages after the given position (possibly none).
    Recovered(Vec<T>),
    /// History was trimmed past the position, more than the resume window was missed, or
    /// the position is from another epoch (the store lost its data since).
    Lost,
}

/// Stored messages, per room, ordered by id.
#[async_trait]
pub trait History: Send + Sync {
    /// Assigns an id and timestamp, stores the message and publishes it to the room, in one
    /// atomic step: it is either stored and delivered, or neither. Deliveries skip `origin`.
    /// A `clientMsgId` the user already posted in the room within the idempotency window is
    /// answered with the original (`duplicate`), atomically with the check.
    async fn post(&self, draft: Draft, origin: Option<ConnectionId>) -> EngineResult<Posted>;
    /// Up to `limit` messages older than `before` (or the newest), oldest first, with the
    /// room's epoch.
    async fn page(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> EngineResult<HistoryPage>;
    /// The messages after `after`, if there are at most `max`, none was trimmed and the
    /// epoch is the room's.
    async fn since(&self, room: &str, after: &Position, max: usize) -> EngineResult<Resume>;
    /// The first `max` messages after `after` (from the start without it), oldest first:
    /// what a reader has not read yet.
    async fn after(
        &self,
        room: &str,
        after: Option<MessageId>,
        max: usize,
    ) -> EngineResult<Vec<ChatMessage>>;
    /// Rooms with stored history, at most `max` of them (any, when there are more): each
    /// id with the id of its newest message.
    async fn rooms(&self, max: usize) -> EngineResult<Vec<(String, String)>>;
}

/// How much of a channel's publications its namespace keeps: the newest `size`, for `ttl`
/// after the last publication (then the history expires, with its epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub size: usize,
    pub ttl: Duration,
}

/// A publication in a channel's history: its offset (the same `<ms>-<seq>` shape as a message
/// id, so the hub delivers it once, as it does messages) and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub offset: MessageId,
    pub data: serde_json::Value,
}

/// As a `subscribed` answer carries it ([`app::protocol::KeptPublication`]), so that an
/// answer can be measured before it is built.
impl Serialize for Kept {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut kept = serializer.serialize_struct("KeptPublication", 2)?;
        kept.serialize_field("data", &self.data)?;
        kept.serialize_field("offset", &self.offset.to_string())?;
        kept.end()
    }
}

/// A read of a channel's history: its epoch and what was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptRead<T> {
    pub epoch: String,
    pub found: T,
}

/// The history of channels whose namespace keeps one. Channels are named by their hub key
/// ([`crate::wire::channel_key`]); the publication frames carry the name.
#[async_trait]
pub trait ChannelHistory: Send + Sync {
    /// Stores `data` in the channel's history (cut to `keep`) and delivers it, with its
    /// offset, to the channel's subscribers on every instance, in one atomic step. The
    /// offset is returned.
    async fn publish_kept(
        &self,
        channel: &str,
        data: &serde_json::Value,
        keep: Retention,
    ) -> EngineResult<MessageId>;
    /// The newest `limit` publications kept, oldest first, with the history's epoch (made,
    /// to expire with the history, when it has none).
    async fn recent(&self, channel: &str, limit: usize) -> EngineResult<KeptRead<Vec<Kept>>>;
    /// The publications after `after`, if there are at most `max`, none expired or was
    /// trimmed, and the epoch is the history's.
    async fn kept_since(
        &self,
        channel: &str,
        after: &Position,
        max: usize,
    ) -> EngineResult<KeptRead<Resume<Kept>>>;
}

/// A queue namespace's settings (see [`crate::namespaces`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRules {
    /// A job not done this long after it was given is given again (to any worker).
    pub ack_timeout: Duration,
    /// A job given this many times without being done is dropped (and logged).
    pub max_deliveries: u32,
    /// Jobs kept per queue; the oldest beyond it are trimmed, done or not.
    pub size: usize,
    /// The worker groups each job goes to (one worker of each). A group exists from the
    /// first job added after it was listed, and starts with that job.
    pub groups: Arc<[String]>,
}

/// Who a job is out with: a `done` counts only from them, for that delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    /// The consumer it was given to (an instance's, or `api:<key>` over HTTP).
    pub consumer: &'a str,
    /// The delivery it was (`attempt`); None: whichever is current.
    pub attempt: Option<u32>,
}

/// A job as a worker gets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: MessageId,
    pub data: serde_json::Value,
    /// How many times it was given, this one included.
    pub attempt: u32,
}

/// Work queues: each job goes to one consumer of each listed group, and again after
/// `ack_timeout` until it is acknowledged (at least once). Queues are named by their
/// channel. Only adding a job creates a queue and its groups: claiming from a queue or group
/// that does not exist finds nothing and creates nothing.
#[async_trait]
pub trait Queues: Send + Sync {
    /// Adds a job (creating the listed groups that do not exist yet, starting with it); its id.
    async fn enqueue(
        &self,
        queue: &str,
        data: &serde_json::Value,
        rules: &QueueRules,
    ) -> EngineResult<MessageId>;
    /// Up to `count` jobs for `consumer` in `group`: first those whose time ran out (given
    /// again), then new ones. Jobs past `max_deliveries` are dropped on the way (and logged
    /// with their ids).
    async fn claim(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        count: usize,
        rules: &QueueRules,
    ) -> EngineResult<Vec<Job>>;
    /// Acknowledges a job of `group` held by `holder`: false (and nothing changes) when it is
    /// not pending with them (done already, trimmed, or given to another since). Jobs every
    /// group is done with are trimmed.
    async fn ack(
        &self,
        queue: &str,
        group: &str,
        id: MessageId,
        holder: Holder<'_>,
    ) -> EngineResult<bool>;
    /// Gives jobs that `consumer` holds back at once (their worker went away), without waiting
    /// for their time to run out.
    async fn release(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[MessageId],
        rules: &QueueRules,
    ) -> EngineResult<()>;
}

/// Who is here. Entries are per connection; readers see one [`Member`] per user.
#[async_trait]
pub trait Presence: Send + Sync {
    /// A connection authenticated as `user`.
    async fn connect(&self, conn: ConnectionId, user: &User) -> EngineResult<()>;
    /// A connection ended. Its rooms must have been left first.
    async fn disconnect(&self, conn: ConnectionId) -> EngineResult<()>;
    /// Adds the connection to the room; true when the user was not present there before.
    async fn join(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool>;
    /// Removes the connection from the room; true when the user has no connection left there.
    async fn leave(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool>;
    /// Users present in the room, sorted by name.
    async fn members(&self, room: &str) -> EngineResult<Vec<Member>>;
    /// Users with at least one connection, sorted by name.
    async fn online(&self) -> EngineResult<Vec<Member>>;
    /// Rooms with anyone present, and how many users each: of at most `max` rooms (any,
    /// when more have people), in a bounded number of round trips.
    async fn room_counts(&self, max: usize) -> EngineResult<Vec<(String, usize)>>;
}

/// Per user: the rooms they follow, in the order they came to them, and their read position
/// in each. Kept as long as `keep` says: accounts forever, guests as long as their session.
#[async_trait]
pub trait Reading: Send + Sync {
    /// Adds the room to the user's list (a room already there keeps its place) and, the first
    /// time, starts their read position at `read_from` (what the room held when they came
    /// counts as read). Nothing changes when the list already holds `max` rooms.
    async fn follow(
        &self,
        user: &str,
        room: &str,
        read_from: Option<MessageId>,
        max: usize,
        keep: Option<Duration>,
    ) -> EngineResult<Follow>;
    /// Takes the room off the user's list and forgets the read position.
    async fn unfollow(&self, user: &str, room: &str) -> EngineResult<()>;
    /// The user's rooms, in the order they followed them, with their read positions.
    async fn followed(&self, user: &str) -> EngineResult<Vec<(String, Option<MessageId>)>>;
    /// Moves the user's read position in a followed room forward to `id` (never back);
    /// returns the position now, or None (and nothing stored) when the room is not on their list.
    async fn mark_read(
        &self,
        user: &str,
        room: &str,
        id: MessageId,
    ) -> EngineResult<Option<MessageId>>;
}

/// What `follow` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// The room is on the list, read up to this message (none: from its start).
    Reading(Option<MessageId>),
    /// The room is not on the list: it holds as many rooms as allowed.
    ListFull,
}

/// A session's id: the SHA-256 of its token. Only this is stored; the token itself exists
/// only in the client, so a copy of the store cannot be used to sign in. Shown (and used in
/// keys) as 64 hex digits; kept as 32 bytes, since every live connection holds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// Parses the 64 hex digits of [`SessionId`]'s `Display`.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(SessionId(bytes))
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What is stored about a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub user: User,
    /// When the session was created (the absolute lifetime counts from here), ms since epoch.
    pub created_ms: u64,
    /// When its expiry was last pushed back (sliding refresh), ms since epoch.
    pub refreshed_ms: u64,
}

/// Session records.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Stores or replaces a session; it disappears by itself `ttl` from now.
    async fn put_session(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl: Duration,
    ) -> EngineResult<()>;
    /// The session, if it exists and has not expired.
    async fn get_session(&self, id: &SessionId) -> EngineResult<Option<SessionRecord>>;
    /// Deletes the session and has every instance close the connections signed in with it.
    async fn end_session(&self, id: &SessionId) -> EngineResult<()>;
}

/// A registered account as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRecord {
    pub user_id: String,
    /// As the user typed it at registration; unique in lower case.
    pub username: String,
    /// PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    pub password_hash: String,
    pub created_ms: u64,
}

/// Registered accounts, keyed by the lower-case username.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Stores a new account under `key`; false (and nothing stored) when the key is taken.
    async fn create_account(&self, key: &str, account: &AccountRecord) -> EngineResult<bool>;
    /// The account stored under `key`.
    async fn find_account(&self, key: &str) -> EngineResult<Option<AccountRecord>>;
}

/// A count within a fixed time window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowCount {
    pub count: u64,
    /// Until the window ends and the count starts again from zero.
    pub resets_in: Duration,
}

/// Fixed-window counters, shared by every instance (so a limit holds cluster-wide).
#[async_trait]
pub trait Counters: Send + Sync {
    /// Adds one to `key`. A key's window starts with its first hit and lasts `window`.
    async fn hit(&self, key: &str, window: Duration) -> EngineResult<WindowCount>;
    /// The count of `key` now (zero when no window is open).
    async fn peek(&self, key: &str) -> EngineResult<WindowCount>;
    /// Takes one back from `key` (an attempt that turned out fine), never below zero.
    async fn undo(&self, key: &str) -> EngineResult<()>;
}

/// The engine's own state.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Ok when the engine can serve; else why not (for `/health`).
    async fn health(&self) -> Result<(), String>;
    /// Called once all connections have closed on shutdown.
    async fn shutdown(&self);
    /// Figures about the engine's own health, for `/health` (e.g. pub/sub reconnects).
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// The parts, shared by every task of the instance.
#[derive(Clone)]
pub struct Engine {
    pub broker: Arc<dyn Broker>,
    pub history: Arc<dyn History>,
    pub channels: Arc<dyn ChannelHistory>,
    pub queues: Arc<dyn Queues>,
    pub presence: Arc<dyn Presence>,
    pub sessions: Arc<dyn Sessions>,
    pub accounts: Arc<dyn Accounts>,
    pub reading: Arc<dyn Reading>,
    pub counters: Arc<dyn Counters>,
    pub lifecycle: Arc<dyn Lifecycle>,
    /// "memory", "redis", "redis-shards" or "redis-cluster", for `/health`.
    pub kind: &'static str,
}

impl Engine {
    /// One memory engine serving every role.
    pub fn memory(engine: memory::MemoryEngine) -> Self {
        Engine::serving_all(Arc::new(engine), "memory")
    }

    /// One Redis engine serving every role.
    pub fn redis(engine: Arc<redis::RedisEngine>) -> Self {
        Engine::serving_all(engine, "redis")
    }

    /// A Redis Cluster.
    pub fn cluster(engine: Arc<redis::RedisEngine>) -> Self {
        Engine::serving_all(engine, "redis-cluster")
    }

    /// Several Redis servers, each room on one of them.
    pub fn sharded(engine: shards::ShardedEngine) -> Self {
        Engine::serving_all(Arc::new(engine), "redis-shards")
    }

    fn serving_all<E>(engine: Arc<E>, kind: &'static str) -> Self
    where
        E: Broker
            + History
            + ChannelHistory
            + Queues
            + Presence
            + Sessions
            + Accounts
            + Reading
            + Counters
            + Lifecycle
            + 'static,
    {
        Engine {
            broker: engine.clone(),
            history: engine.clone(),
            channels: engine.clone(),
            queues: engine.clone(),
            presence: engine.clone(),
            sessions: engine.clone(),
            accounts: engine.clone(),
            reading: engine.clone(),
            counters: engine.clone(),
            lifecycle: engine,
            kind,
        }
    }
}

/// 256 random bits, hex encoded: session tokens and (shortened) ids.
pub fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

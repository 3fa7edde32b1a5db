//! The in-process engine: one instance, nothing to install. History, presence, sessions,
//! accounts and counters live in this process and are gone when it stops.
//!
//! Message ids have the same shape and order as Redis stream ids (`<ms>-<seq>`, per room),
//! so clients and the resume logic cannot tell the engines apart. The history's epoch is
//! made when the process starts (a room never written has none yet, as in Redis): a
//! position from an earlier run is never "recovered".

use super::rules::{self, MessageBody};
use super::{
    AccountRecord, Accounts, Broker, Counters, Draft, EngineResult, Follow, History, Lifecycle,
    LocalDelivery, Position, Posted, Presence, Reading, Resume, SessionId, SessionRecord, Sessions,
    WindowCount,
};
use crate::engine::now_ms;
use crate::wire::{encode, ConnectionId, Frame};
use app::protocol::{ChatMessage, HistoryPage, Member, ServerMsg, User};
use app::validate::MessageId;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Expired sessions and counters are swept after this many insertions, so that entries
/// nobody asks for again do not pile up.
const SWEEP_EVERY: u32 = 1024;

/// Settings of the memory engine.
#[derive(Clone, Debug)]
pub struct MemoryConfig {
    /// This instance's id, stamped on messages.
    pub server_id: String,
    /// Messages kept per room; older ones are trimmed.
    pub history_max: usize,
    /// How long a `clientMsgId` is remembered per user and room (a retry within it is
    /// answered with the original).
    pub idempotency_window: Duration,
}

pub struct MemoryEngine {
    config: MemoryConfig,
    delivery: Arc<dyn LocalDelivery>,
    /// This process's history epoch.
    epoch: String,
    // Each Mutex guards plain maps and is never held across an await. `history` is also held
    // while a new message is delivered to the hub, so deliveries leave in id order.
    history: Mutex<HashMap<String, RoomLog>>,
    presence: Mutex<PresenceState>,
    sessions: Mutex<Expiring<SessionId, SessionRecord>>,
    accounts: Mutex<HashMap<String, AccountRecord>>,
    reading: Mutex<Expiring<String, RoomList>>,
    counters: Mutex<Expiring<String, u64>>,
    /// Held, like `history`, while a kept publication is delivered.
    channels: Mutex<super::memory_channels::ChannelLogs>,
    queues: Mutex<super::memory_queues::QueueMap>,
}

/// A user's followed rooms in the order they came, each with its read position.
type RoomList = Vec<(String, Option<MessageId>)>;

/// How long an entry without its own lifetime lives: as good as forever.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A map whose entries expire, swept now and then.
struct Expiring<K, V> {
    entries: HashMap<K, (V, Instant)>,
    inserts_since_sweep: u32,
}

impl<K: std::hash::Hash + Eq, V> Default for Expiring<K, V> {
    fn default() -> Self {
        Expiring {
            entries: HashMap::new(),
            inserts_since_sweep: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq, V> Expiring<K, V> {
    fn insert(&mut self, key: K, value: V, expires: Instant) {
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep >= SWEEP_EVERY {
            self.inserts_since_sweep = 0;
            let now = Instant::now();
            self.entries.retain(|_, (_, expires)| *expires > now);
        }
        self.entries.insert(key, (value, expires));
    }

    /// The live entry and when it expires.
    fn get_mut(&mut self, key: &K) -> Option<(&mut V, Instant)> {
        let now = Instant::now();
        if self
            .entries
            .get(key)
            .is_some_and(|(_, expires)| *expires <= now)
        {
            self.entries.remove(key);
        }
        self.entries
            .get_mut(key)
            .map(|(value, expires)| (value, *expires))
    }

    fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

#[derive(Default)]
struct RoomLog {
    messages: VecDeque<(MessageId, ChatMessage)>,
    /// The newest id ever assigned (also after trimming), so ids never go backwards.
    last: Option<MessageId>,
    /// The newest id trimmed away: a resume from before it cannot be exact.
    trimmed_through: Option<MessageId>,
    /// (user id, clientMsgId) → the id it was stored as, for the idempotency window.
    sent: Expiring<(String, String), MessageId>,
}

#[derive(Default)]
struct PresenceState {
    connections: HashMap<ConnectionId, User>,
    /// user id → connections
    online: HashMap<String, HashSet<ConnectionId>>,
    /// room → user id → connections in that room
    rooms: HashMap<String, HashMap<String, HashSet<ConnectionId>>>,
    names: HashMap<String, String>,
}

impl MemoryEngine {
    pub fn new(config: MemoryConfig, delivery: Arc<dyn LocalDelivery>) -> Self {
        MemoryEngine {
            config,
            delivery,
            epoch: super::new_token()[..16].to_string(),
            history: Mutex::default(),
            presence: Mutex::default(),
            sessions: Mutex::default(),
            accounts: Mutex::default(),
            reading: Mutex::default(),
            counters: Mutex::default(),
            channels: Mutex::default(),
            queues: Mutex::default(),
        }
    }

    pub(super) fn channel_logs(&self) -> MutexGuard<'_, super::memory_channels::ChannelLogs> {
        lock(&self.channels)
    }

    pub(super) fn queues(&self) -> MutexGuard<'_, super::memory_queues::QueueMap> {
        lock(&self.queues)
    }

    pub(super) fn delivery(&self) -> &Arc<dyn LocalDelivery> {
        &self.delivery
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single map operation or a push: a panic elsewhere
    // cannot leave them inconsistent, so a poisoned lock is safe to keep using.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Broker for MemoryEngine {
    async fn publish(
        &self,
        room: &str,
        frame: Frame,
        origin: Option<ConnectionId>,
    ) -> EngineResult<()> {
        self.delivery.deliver(room, &frame, None, origin);
        Ok(())
    }

    async fn publish_to_user(&self, room: &str, user: &str, frame: Frame) -> EngineResult<()> {
        self.delivery.deliver_to_user(room, user, &frame);
        Ok(())
    }

    // One process: the hub's local rooms are all there is, so there is nothing to subscribe to.
    async fn subscribe(&self, _room: &str) -> EngineResult<()> {
        Ok(())
    }

    async fn unsubscribe(&self, _room: &str) -> EngineResult<()> {
        Ok(())
    }
}

#[async_trait]
impl History for MemoryEngine {
    async fn post(&self, draft: Draft, origin: Option<ConnectionId>) -> EngineResult<Posted> {
        let mut rooms = lock(&self.history);
        let log = rooms.entry(draft.room_id.clone()).or_default();
        let retry_key = draft
            .client_msg_id
            .clone()
            .map(|client_msg_id| (draft.user.id.clone(), client_msg_id));
        if let Some(key) = &retry_key {
            if let Some((original, _)) = log.sent.get_mut(key) {
                let message =
                    MessageBody::from_draft(draft, &self.config.server_id).into_message(*original);
                return Ok(Posted {
                    message,
                    duplicate: true,
                });
            }
        }
        let id = rules::next_id(log.last, now_ms());
        let message = MessageBody::from_draft(draft, &self.config.server_id).into_message(id);
        let frame = encode(&ServerMsg::Message(message.clone()));
        log.last = Some(id);
        log.messages.push_back((id, message.clone()));
        while log.messages.len() > self.config.history_max {
            if let Some((trimmed, _)) = log.messages.pop_front() {
                log.trimmed_through = Some(trimmed);
            }
        }
        if let Some(key) = retry_key {
            let until = Instant::now() + self.config.idempotency_window;
            log.sent.insert(key, id, until);
        }
        // Under the history lock: deliveries leave in id order.
        self.delivery
            .deliver(&message.room_id, &frame, Some(id), origin);
        Ok(Posted {
            message,
            duplicate: false,
        })
    }

    async fn page(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> EngineResult<HistoryPage> {
        let rooms = lock(&self.history);
        let Some(log) = rooms.get(room) else {
            // Never written: no messages, and no epoch yet (as in Redis).
            return Ok(rules::page(room, Vec::new(), limit, String::new()));
        };
        let newest_first: Vec<ChatMessage> = log
            .messages
            .iter()
            .rev()
            .filter(|(id, _)| before.is_none_or(|before| *id < before))
            .take(limit + 1)
            .map(|(_, m)| m.clone())
            .collect();
        Ok(rules::page(room, newest_first, limit, self.epoch.clone()))
    }

    async fn since(&self, room: &str, after: &Position, max: usize) -> EngineResult<Resume> {
        let rooms = lock(&self.history);
        let Some(log) = rooms.get(room) else {
            let never_written = rules::LogAt {
                epoch: "",
                resumable_from: None,
                found: false,
            };
            return Ok(rules::resume(after, &never_written, Vec::new(), max));
        };
        let newer = log
            .messages
            .iter()
            .filter(|(id, _)| *id > after.id)
            .map(|(_, m)| m.clone())
            .take(max + 1)
            .collect();
        let at = rules::LogAt {
            epoch: &self.epoch,
            resumable_from: log.trimmed_through,
            found: log
                .messages
                .binary_search_by(|(id, _)| id.cmp(&after.id))
                .is_ok(),
        };
        Ok(rules::resume(after, &at, newer, max))
    }

    async fn after(
        &self,
        room: &str,
        after: Option<MessageId>,
        max: usize,
    ) -> EngineResult<Vec<ChatMessage>> {
        let rooms = lock(&self.history);
        Ok(rooms
            .get(room)
            .map(|log| &log.messages)
            .into_iter()
            .flatten()
            .filter(|(id, _)| after.is_none_or(|after| *id > after))
            .take(max)
            .map(|(_, m)| m.clone())
            .collect())
    }

    async fn rooms(&self, max: usize) -> EngineResult<Vec<(String, String)>> {
        let rooms = lock(&self.history);
        Ok(rooms
            .iter()
            .filter_map(|(room, log)| log.last.map(|id| (room.clone(), id.to_string())))
            .take(max)
            .collect())
    }
}

impl PresenceState {
    fn members_of<'a>(&self, users: impl Iterator<Item = &'a String>) -> Vec<Member> {
        let mut members: Vec<Member> = users
            .map(|user_id| Member {
                user_id: user_id.clone(),
                name: self.names.get(user_id).cloned().unwrap_or_default(),
            })
            .collect();
        rules::sort_members(&mut members);
        members
    }
}

#[async_trait]
impl Presence for MemoryEngine {
    async fn connect(&self, conn: ConnectionId, user: &User) -> EngineResult<()> {
        let mut state = lock(&self.presence);
        state.connections.insert(conn, user.clone());
        state.names.insert(user.id.clone(), user.name.clone());
        state
            .online
            .entry(user.id.clone())
            .or_default()
            .insert(conn);
        Ok(())
    }

    async fn disconnect(&self, conn: ConnectionId) -> EngineResult<()> {
        let mut state = lock(&self.presence);
        let Some(user) = state.connections.remove(&conn) else {
            return Ok(());
        };
        if let Some(conns) = state.online.get_mut(&user.id) {
            conns.remove(&conn);
            if conns.is_empty() {
                state.online.remove(&user.id);
                state.names.remove(&user.id);
            }
        }
        Ok(())
    }

    async fn join(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool> {
        let mut state = lock(&self.presence);
        let conns = state
            .rooms
            .entry(room.to_string())
            .or_default()
            .entry(user.id.clone())
            .or_default();
        let first = conns.is_empty();
        conns.insert(conn);
        Ok(first)
    }

    async fn leave(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool> {
        let mut state = lock(&self.presence);
        let Some(users) = state.rooms.get_mut(room) else {
            return Ok(false);
        };
        let Some(conns) = users.get_mut(&user.id) else {
            return Ok(false);
        };
        if !conns.remove(&conn) {
            return Ok(false);
        }
        let gone = conns.is_empty();
        if gone {
            users.remove(&user.id);
            if users.is_empty() {
                state.rooms.remove(room);
            }
        }
        Ok(gone)
    }

    async fn members(&self, room: &str) -> EngineResult<Vec<Member>> {
        let state = lock(&self.presence);
        Ok(match state.rooms.get(room) {
            Some(users) => state.members_of(users.keys()),
            None => Vec::new(),
        })
    }

    async fn online(&self) -> EngineResult<Vec<Member>> {
        let state = lock(&self.presence);
        Ok(state.members_of(state.online.keys()))
    }

    async fn room_counts(&self, max: usize) -> EngineResult<Vec<(String, usize)>> {
        let state = lock(&self.presence);
        Ok(state
            .rooms
            .iter()
            .map(|(room, users)| (room.clone(), users.len()))
            .take(max)
            .collect())
    }
}

#[async_trait]
impl Sessions for MemoryEngine {
    async fn put_session(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl: Duration,
    ) -> EngineResult<()> {
        lock(&self.sessions).insert(*id, record.clone(), Instant::now() + ttl);
        Ok(())
    }

    async fn get_session(&self, id: &SessionId) -> EngineResult<Option<SessionRecord>> {
        Ok(lock(&self.sessions)
            .get_mut(id)
            .map(|(record, _)| record.clone()))
    }

    async fn end_session(&self, id: &SessionId) -> EngineResult<()> {
        lock(&self.sessions).remove(id);
        self.delivery.close_session(id);
        Ok(())
    }
}

#[async_trait]
impl Accounts for MemoryEngine {
    async fn create_account(&self, key: &str, account: &AccountRecord) -> EngineResult<bool> {
        let mut accounts = lock(&self.accounts);
        if accounts.contains_key(key) {
            return Ok(false);
        }
        accounts.insert(key.to_string(), account.clone());
        Ok(true)
    }

    async fn find_account(&self, key: &str) -> EngineResult<Option<AccountRecord>> {
        Ok(lock(&self.accounts).get(key).cloned())
    }
}

#[async_trait]
impl Reading for MemoryEngine {
    async fn follow(
        &self,
        user: &str,
        room: &str,
        read_from: Option<MessageId>,
        max: usize,
        keep: Option<Duration>,
    ) -> EngineResult<Follow> {
        let mut lists = lock(&self.reading);
        let key = user.to_string();
        let mut list = lists
            .get_mut(&key)
            .map(|(list, _)| std::mem::take(list))
            .unwrap_or_default();
        let position = match list.iter().find(|(followed, _)| followed == room) {
            Some((_, position)) => Follow::Reading(*position),
            None if list.len() >= max => Follow::ListFull,
            None => {
                list.push((room.to_string(), read_from));
                Follow::Reading(read_from)
            }
        };
        lists.insert(key, list, Instant::now() + keep.unwrap_or(FOREVER));
        Ok(position)
    }

    async fn unfollow(&self, user: &str, room: &str) -> EngineResult<()> {
        if let Some((list, _)) = lock(&self.reading).get_mut(&user.to_string()) {
            list.retain(|(followed, _)| followed != room);
        }
        Ok(())
    }

    async fn followed(&self, user: &str) -> EngineResult<Vec<(String, Option<MessageId>)>> {
        Ok(lock(&self.reading)
            .get_mut(&user.to_string())
            .map(|(list, _)| list.clone())
            .unwrap_or_default())
    }

    async fn mark_read(
        &self,
        user: &str,
        room: &str,
        id: MessageId,
    ) -> EngineResult<Option<MessageId>> {
        let mut lists = lock(&self.reading);
        let Some((list, _)) = lists.get_mut(&user.to_string()) else {
            return Ok(None);
        };
        Ok(list
            .iter_mut()
            .find(|(followed, _)| followed == room)
            .map(|(_, position)| *position.insert(position.map_or(id, |read| read.max(id)))))
    }
}

#[async_trait]
impl Counters for MemoryEngine {
    async fn hit(&self, key: &str, window: Duration) -> EngineResult<WindowCount> {
        let now = Instant::now();
        let mut counters = lock(&self.counters);
        let key = key.to_string();
        if let Some((count, expires)) = counters.get_mut(&key) {
            *count += 1;
            return Ok(WindowCount {
                count: *count,
                resets_in: expires.saturating_duration_since(now),
            });
        }
        counters.insert(key, 1, now + window);
        Ok(WindowCount {
            count: 1,
            resets_in: window,
        })
    }

    async fn undo(&self, key: &str) -> EngineResult<()> {
        if let Some((count, _)) = lock(&self.counters).get_mut(&key.to_string()) {
            *count = count.saturating_sub(1);
        }
        Ok(())
    }

    async fn peek(&self, key: &str) -> EngineResult<WindowCount> {
        let now = Instant::now();
        Ok(match lock(&self.counters).get_mut(&key.to_string()) {
            Some((count, expires)) => WindowCount {
                count: *count,
                resets_in: expires.saturating_duration_since(now),
            },
            None => WindowCount {
                count: 0,
                resets_in: Duration::ZERO,
            },
        })
    }
}

#[async_trait]
impl Lifecycle for MemoryEngine {
    // In-process: nothing can be unreachable, and nothing outlives the process.
    async fn health(&self) -> Result<(), String> {
        Ok(())
    }

    async fn shutdown(&self) {}
}

/// A memory engine delivering to a hub of its own, for the engine's unit tests.
#[cfg(test)]
pub(super) fn test_engine() -> MemoryEngine {
    let config = MemoryConfig {
        server_id: "s".into(),
        history_max: 100,
        idempotency_window: Duration::from_secs(300),
    };
    MemoryEngine::new(config, Arc::new(crate::hub::Hub::new(8)))
}

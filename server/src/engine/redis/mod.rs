//! The Redis engine: many instances share one Redis for pub/sub, history, presence and
//! sessions.
//!
//! Keys (prefix `P`, `--redis-prefix`):
//! - `P:room:{room}:log`: the room's history, a Stream capped with `MAXLEN ~`;
//! - `P:room:{room}:ch`: the room's pub/sub channel (one per room, never a pattern);
//! - `P:room:{room}:members`: connection (`sid/n`) → `user\tname`, for presence in the room;
//! - `P:online`: the same for every authenticated connection;
//! - `P:rooms`: room → newest message id; `P:active-rooms`: rooms with members entries;
//! - `P:instance:{sid}`: an instance's lease (TTL, refreshed); `P:instances`: known instances;
//!   `P:instance:{sid}:rooms`: rooms where the instance has entries (for cleanup);
//! - `P:session:{id}`: a session record (JSON) under the token's hash, with a TTL;
//!   `P:ended:{id}`: a tombstone for a while after it was ended, so an instance whose pub/sub
//!   connection was down when the order went out still closes its sockets;
//! - `P:account:{username in lower case}`: an account (JSON), created with `SET NX`;
//! - `P:count:{key}`: a fixed-window counter (sign-in attempts), with the window as TTL;
//! - `P:control`: the channel every instance listens to for cluster-wide orders (a session
//!   ended: close its sockets).
//!
//! Presence entries of an instance whose lease expired are ignored by every reader and
//! removed by the first instance that notices ([`lease`]).
//!
//! Pub/sub payloads are an envelope `origin\n` + the encoded server event, so a receiving
//! instance forwards the bytes to its members without decoding them ([`subscriber`]).

mod lease;
mod scripts;
mod subscriber;

use super::{
    AccountRecord, Accounts, Broker, Counters, Draft, EngineError, EngineResult, History,
    Lifecycle, Presence, Resume, SessionId, SessionRecord, Sessions, WindowCount,
};
use crate::hub::{ConnectionId, Frame, Hub};
use app::protocol::{ChatMessage, HistoryPage, Member, User};
use app::validate::MessageId;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of the Redis engine.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    pub url: String,
    pub prefix: String,
    pub server_id: String,
    pub history_max: usize,
    /// How long an instance's lease lives without a refresh.
    pub lease_ttl: Duration,
    /// How often the lease is refreshed and dead instances are looked for.
    pub lease_refresh: Duration,
    /// Longest a Redis command may take before the request is answered `unavailable`.
    pub command_timeout: Duration,
}

/// Key names, all under one prefix.
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn log(&self, room: &str) -> String {
        format!("{}:room:{room}:log", self.prefix)
    }
    fn channel(&self, room: &str) -> String {
        format!("{}:room:{room}:ch", self.prefix)
    }
    fn channel_prefix(&self) -> String {
        format!("{}:room:", self.prefix)
    }
    fn members(&self, room: &str) -> String {
        format!("{}:room:{room}:members", self.prefix)
    }
    fn online(&self) -> String {
        format!("{}:online", self.prefix)
    }
    fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }
    fn active_rooms(&self) -> String {
        format!("{}:active-rooms", self.prefix)
    }
    fn lease_prefix(&self) -> String {
        format!("{}:instance:", self.prefix)
    }
    fn lease(&self, sid: &str) -> String {
        format!("{}:instance:{sid}", self.prefix)
    }
    fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }
    fn instance_rooms(&self, sid: &str) -> String {
        format!("{}:instance:{sid}:rooms", self.prefix)
    }
    fn session(&self, id: &SessionId) -> String {
        format!("{}:session:{id}", self.prefix)
    }
    fn ended(&self, id: &SessionId) -> String {
        format!("{}:ended:{id}", self.prefix)
    }
    fn account(&self, key: &str) -> String {
        format!("{}:account:{key}", self.prefix)
    }
    fn counter(&self, key: &str) -> String {
        format!("{}:count:{key}", self.prefix)
    }
    fn control(&self) -> String {
        format!("{}:control", self.prefix)
    }
}

/// What this instance has registered in presence, to register it again after its lease was
/// lost (e.g. Redis was away longer than the lease) and other instances cleaned it up.
#[derive(Default)]
struct LocalPresence {
    connections: HashMap<ConnectionId, (User, HashSet<String>)>,
}

pub struct RedisEngine {
    config: RedisConfig,
    keys: Keys,
    commands: ConnectionManager,
    subscriber: subscriber::Subscriber,
    // Guards a plain map, never held across an await.
    local: Mutex<LocalPresence>,
}

/// A stored message, without the id and timestamp that the stream id gives it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredBody {
    room_id: String,
    user_id: String,
    name: String,
    content: String,
    server_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_msg_id: Option<String>,
}

fn unavailable(err: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(err.to_string())
}

/// The connection key in presence hashes: `sid/n`.
fn connection_key(sid: &str, conn: ConnectionId) -> String {
    format!("{sid}/{}", conn.0)
}

impl RedisEngine {
    /// Connects lazily: the instance starts (and reports itself unhealthy) while Redis is away.
    pub fn start(config: RedisConfig, hub: Arc<Hub>) -> Result<Arc<Self>, EngineError> {
        use redis::IntoConnectionInfo;
        // Small, latency-bound commands: no Nagle delay on the way to Redis.
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(unavailable)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(unavailable)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(unavailable)?;
        let keys = Keys {
            prefix: config.prefix.clone(),
        };
        let subscriber =
            subscriber::Subscriber::start(client, keys.clone(), config.server_id.clone(), hub);
        let engine = Arc::new(RedisEngine {
            config,
            keys,
            commands,
            subscriber,
            local: Mutex::default(),
        });
        lease::start(engine.clone());
        Ok(engine)
    }

    fn conn(&self) -> ConnectionManager {
        self.commands.clone()
    }

    fn my_key(&self, conn: ConnectionId) -> String {
        connection_key(&self.config.server_id, conn)
    }

    fn envelope_head(&self, origin: Option<ConnectionId>) -> String {
        match origin {
            Some(conn) => format!("{}\n", self.my_key(conn)),
            None => "-\n".to_string(),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, LocalPresence> {
        // Single map operations only: a poisoned lock is still consistent.
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Entries `sid/n → user\tname` of a presence hash, minus those of dead instances,
    /// aggregated per user and sorted by name.
    async fn live_members(&self, entries: HashMap<String, String>) -> EngineResult<Vec<Member>> {
        let sids: Vec<&str> = entries
            .keys()
            .filter_map(|field| field.split_once('/').map(|(sid, _)| sid))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let live = self.live_instances(&sids).await?;
        let mut users: BTreeMap<String, String> = BTreeMap::new();
        for (field, value) in &entries {
            let Some((sid, _)) = field.split_once('/') else {
                continue;
            };
            let Some((user_id, name)) = value.split_once('\t') else {
                continue;
            };
            if live.contains(sid) {
                users.insert(user_id.to_string(), name.to_string());
            }
        }
        let mut members: Vec<Member> = users
            .into_iter()
            .map(|(user_id, name)| Member { user_id, name })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.user_id.cmp(&b.user_id)));
        Ok(members)
    }

    /// Which of these instances hold a live lease.
    async fn live_instances<'a>(&self, sids: &[&'a str]) -> EngineResult<HashSet<&'a str>> {
        if sids.is_empty() {
            return Ok(HashSet::new());
        }
        let keys: Vec<String> = sids.iter().map(|sid| self.keys.lease(sid)).collect();
        let leases: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(sids
            .iter()
            .zip(leases)
            .filter_map(|(sid, lease)| lease.map(|_| *sid))
            .collect())
    }

    fn parse_entries(&self, flat: &[String]) -> Vec<ChatMessage> {
        flat.chunks_exact(2)
            .filter_map(|pair| {
                let id = MessageId::parse(&pair[0]).ok()?;
                match serde_json::from_str::<StoredBody>(&pair[1]) {
                    Ok(body) => Some(ChatMessage {
                        id: pair[0].clone(),
                        room_id: body.room_id,
                        user_id: body.user_id,
                        name: body.name,
                        content: body.content,
                        timestamp: id.ms,
                        server_id: body.server_id,
                        client_msg_id: body.client_msg_id,
                    }),
                    Err(err) => {
                        tracing::warn!(id = pair[0], error = %err, "skipping an unreadable stored message");
                        None
                    }
                }
            })
            .collect()
    }

    /// Puts this instance's connections and room memberships back into presence.
    async fn register_local_presence(&self) -> EngineResult<()> {
        let snapshot: Vec<(ConnectionId, User, Vec<String>)> = self
            .local()
            .connections
            .iter()
            .map(|(conn, (user, rooms))| (*conn, user.clone(), rooms.iter().cloned().collect()))
            .collect();
        let mut pipe = redis::pipe();
        for (conn, user, rooms) in &snapshot {
            let key = self.my_key(*conn);
            let value = format!("{}\t{}", user.id, user.name);
            pipe.hset(self.keys.online(), &key, &value).ignore();
            for room in rooms {
                pipe.hset(self.keys.members(room), &key, &value).ignore();
                pipe.sadd(self.keys.instance_rooms(&self.config.server_id), room)
                    .ignore();
                pipe.sadd(self.keys.active_rooms(), room).ignore();
            }
        }
        pipe.query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)?;
        tracing::info!(
            connections = snapshot.len(),
            "presence registered again after the lease was lost"
        );
        Ok(())
    }
}

#[async_trait]
impl Broker for RedisEngine {
    async fn publish(
        &self,
        room: &str,
        frame: Frame,
        origin: Option<ConnectionId>,
    ) -> EngineResult<()> {
        let mut payload = self.envelope_head(origin).into_bytes();
        payload.extend_from_slice(frame.as_bytes());
        self.conn()
            .publish::<_, _, ()>(self.keys.channel(room), payload)
            .await
            .map_err(unavailable)
    }

    async fn subscribe(&self, room: &str) -> EngineResult<()> {
        self.subscriber.sync(room).await
    }

    async fn unsubscribe(&self, room: &str) -> EngineResult<()> {
        self.subscriber.sync(room).await
    }
}

#[async_trait]
impl History for RedisEngine {
    async fn post(&self, draft: Draft, origin: Option<ConnectionId>) -> EngineResult<ChatMessage> {
        let body = StoredBody {
            room_id: draft.room_id.clone(),
            user_id: draft.user.id.clone(),
            name: draft.user.name.clone(),
            content: draft.content,
            server_id: self.config.server_id.clone(),
            client_msg_id: draft.client_msg_id,
        };
        let body_json = serde_json::to_string(&body).expect("stored bodies always serialize");
        let head = format!(
            "{}{{\"type\":\"message\",\"id\":\"",
            self.envelope_head(origin)
        );
        let id: String = scripts::POST
            .key(self.keys.log(&draft.room_id))
            .key(self.keys.channel(&draft.room_id))
            .key(self.keys.rooms())
            .arg(self.config.history_max)
            .arg(&body_json)
            .arg(head)
            .arg(&draft.room_id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let timestamp = MessageId::parse(&id)
            .map_err(|_| unavailable(format!("bad stream id {id}")))?
            .ms;
        Ok(ChatMessage {
            id,
            room_id: body.room_id,
            user_id: body.user_id,
            name: body.name,
            content: body.content,
            timestamp,
            server_id: body.server_id,
            client_msg_id: body.client_msg_id,
        })
    }

    async fn page(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> EngineResult<HistoryPage> {
        let end = before.map_or_else(|| "+".to_string(), |id| format!("({id}"));
        let flat: Vec<String> = scripts::PAGE
            .key(self.keys.log(room))
            .arg(end)
            .arg(limit + 1)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut messages = self.parse_entries(&flat);
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        messages.reverse();
        Ok(HistoryPage {
            room_id: room.to_string(),
            messages,
            has_more,
        })
    }

    async fn since(&self, room: &str, after: MessageId, max: usize) -> EngineResult<Resume> {
        let flat: Vec<String> = scripts::SINCE
            .key(self.keys.log(room))
            .arg(after.to_string())
            .arg(max + 1)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let Some((boundary, entries)) = flat.split_first() else {
            return Err(unavailable("empty reply to since"));
        };
        let boundary =
            MessageId::parse(boundary).map_err(|_| unavailable("bad resume boundary"))?;
        if after < boundary {
            return Ok(Resume::Lost);
        }
        let messages = self.parse_entries(entries);
        if messages.len() > max {
            return Ok(Resume::Lost);
        }
        Ok(Resume::Recovered(messages))
    }

    async fn rooms(&self) -> EngineResult<Vec<(String, String)>> {
        let rooms: HashMap<String, String> = self
            .conn()
            .hgetall(self.keys.rooms())
            .await
            .map_err(unavailable)?;
        Ok(rooms.into_iter().collect())
    }
}

#[async_trait]
impl Presence for RedisEngine {
    async fn connect(&self, conn: ConnectionId, user: &User) -> EngineResult<()> {
        self.conn()
            .hset::<_, _, _, ()>(
                self.keys.online(),
                self.my_key(conn),
                format!("{}\t{}", user.id, user.name),
            )
            .await
            .map_err(unavailable)?;
        self.local()
            .connections
            .insert(conn, (user.clone(), HashSet::new()));
        Ok(())
    }

    async fn disconnect(&self, conn: ConnectionId) -> EngineResult<()> {
        self.local().connections.remove(&conn);
        self.conn()
            .hdel::<_, _, ()>(self.keys.online(), self.my_key(conn))
            .await
            .map_err(unavailable)
    }

    async fn join(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool> {
        let newly: i64 = scripts::JOIN
            .key(self.keys.members(room))
            .key(self.keys.instance_rooms(&self.config.server_id))
            .key(self.keys.active_rooms())
            .arg(self.my_key(conn))
            .arg(&user.id)
            .arg(&user.name)
            .arg(self.keys.lease_prefix())
            .arg(room)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if let Some((_, rooms)) = self.local().connections.get_mut(&conn) {
            rooms.insert(room.to_string());
        }
        Ok(newly == 1)
    }

    async fn leave(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool> {
        if let Some((_, rooms)) = self.local().connections.get_mut(&conn) {
            rooms.remove(room);
        }
        let gone: i64 = scripts::LEAVE
            .key(self.keys.members(room))
            .key(self.keys.active_rooms())
            .arg(self.my_key(conn))
            .arg(&user.id)
            .arg(self.keys.lease_prefix())
            .arg(room)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(gone == 1)
    }

    async fn members(&self, room: &str) -> EngineResult<Vec<Member>> {
        let entries: HashMap<String, String> = self
            .conn()
            .hgetall(self.keys.members(room))
            .await
            .map_err(unavailable)?;
        self.live_members(entries).await
    }

    async fn online(&self) -> EngineResult<Vec<Member>> {
        let entries: HashMap<String, String> = self
            .conn()
            .hgetall(self.keys.online())
            .await
            .map_err(unavailable)?;
        self.live_members(entries).await
    }

    async fn room_counts(&self) -> EngineResult<Vec<(String, usize)>> {
        let rooms: Vec<String> = self
            .conn()
            .smembers(self.keys.active_rooms())
            .await
            .map_err(unavailable)?;
        let mut counts = Vec::with_capacity(rooms.len());
        for room in rooms {
            let members = self.members(&room).await?;
            if !members.is_empty() {
                counts.push((room, members.len()));
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl Sessions for RedisEngine {
    async fn put_session(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl: Duration,
    ) -> EngineResult<()> {
        let json = serde_json::to_string(record).expect("session records always serialize");
        redis::cmd("SET")
            .arg(self.keys.session(id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn get_session(&self, id: &SessionId) -> EngineResult<Option<SessionRecord>> {
        let json: Option<String> = self
            .conn()
            .get(self.keys.session(id))
            .await
            .map_err(unavailable)?;
        Ok(json.and_then(|json| match serde_json::from_str(&json) {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::warn!(error = %err, "ignoring an unreadable session record");
                None
            }
        }))
    }

    async fn end_session(&self, id: &SessionId) -> EngineResult<()> {
        // One round trip; every instance (this one too) hears the order on its control
        // channel and closes the session's sockets.
        redis::pipe()
            .atomic()
            .del(self.keys.session(id))
            .ignore()
            .set_ex(
                self.keys.ended(id),
                1,
                subscriber::ENDED_TOMBSTONE.as_secs(),
            )
            .ignore()
            .publish(
                self.keys.control(),
                format!("{}{id}", subscriber::SESSION_ENDED),
            )
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Accounts for RedisEngine {
    async fn create_account(&self, key: &str, account: &AccountRecord) -> EngineResult<bool> {
        let json = serde_json::to_string(account).expect("accounts always serialize");
        let created: Option<String> = redis::cmd("SET")
            .arg(self.keys.account(key))
            .arg(json)
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(created.is_some())
    }

    async fn find_account(&self, key: &str) -> EngineResult<Option<AccountRecord>> {
        let json: Option<String> = self
            .conn()
            .get(self.keys.account(key))
            .await
            .map_err(unavailable)?;
        json.map(|json| {
            serde_json::from_str(&json).map_err(|err| {
                EngineError::Unavailable(format!("unreadable account record {key}: {err}"))
            })
        })
        .transpose()
    }
}

#[async_trait]
impl Counters for RedisEngine {
    async fn hit(&self, key: &str, window: Duration) -> EngineResult<WindowCount> {
        let (count, ttl_ms): (u64, i64) = scripts::COUNT_HIT
            .key(self.keys.counter(key))
            .arg(window.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(WindowCount {
            count,
            resets_in: Duration::from_millis(ttl_ms.max(0) as u64),
        })
    }

    async fn peek(&self, key: &str) -> EngineResult<WindowCount> {
        let (count, ttl_ms): (Option<u64>, i64) = redis::pipe()
            .get(self.keys.counter(key))
            .pttl(self.keys.counter(key))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(WindowCount {
            count: count.unwrap_or(0),
            resets_in: Duration::from_millis(ttl_ms.max(0) as u64),
        })
    }
}

#[async_trait]
impl Lifecycle for RedisEngine {
    async fn health(&self) -> Result<(), String> {
        let ping: Result<String, _> = redis::cmd("PING").query_async(&mut self.conn()).await;
        if let Err(err) = ping {
            return Err(format!("redis unreachable: {err}"));
        }
        if !self.subscriber.is_connected() {
            return Err("redis pub/sub connection is down".into());
        }
        Ok(())
    }

    async fn shutdown(&self) {
        lease::release(self).await;
    }
}

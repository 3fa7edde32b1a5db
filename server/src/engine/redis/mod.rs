//! The Redis engine: many instances share one Redis (or a Redis Cluster, or one of several
//! shards, see [`super::shards`]) for pub/sub, history, presence and sessions.
//!
//! One code path serves one Redis and a cluster; what differs is named in one place each:
//! key names ([`keys`]: hash tags in a cluster), the command connection ([`commands`]:
//! `PUBLISH` or `SPUBLISH`, one pipeline or commands sent apart), the pub/sub session
//! ([`pubsub`]), and the room index ([`room_index`]: written apart from posts in a cluster).
//! Every script touches the keys of one room or one user only, so it runs on one node.
//! This file holds pub/sub, history and presence (per room); [`records`] what is not per
//! room (sessions, accounts, room lists and read positions, counters).
//!
//! Keys (prefix `P`, `--redis-prefix`; in a cluster `{room}`, `{user}` and a session's
//! `{id}` are hash tags, written with braces):
//! - `P:room:{room}:log`: the room's history, a Stream capped with `MAXLEN ~`; each entry
//!   holds the message body (`m`) and the connection that sent it (`o`);
//! - `P:room:{room}:epoch`: the history's epoch, created with the first write of the log
//!   (reads create nothing: a page of a room that was never written has the empty epoch);
//!   when Redis loses its data a new one comes with the next message, so old positions are
//!   never "recovered";
//! - `P:room:{room}:sent:{user}:{clientMsgId}`: the id a `clientMsgId` was stored as, for the
//!   idempotency window (a retry is answered with it);
//! - `P:room:{room}:ch`: the room's pub/sub channel (one per room, never a pattern);
//! - a channel with history has the same three keys under its hub key `#name`
//!   (`P:room:{#name}:log`, `:epoch`, `:ch`): a Stream of publications (`d`: the data),
//!   capped at the namespace's size, and both it and the epoch expire together, the
//!   namespace's retention after the last publication ([`channels`]);
//! - `P:queue:{name}:jobs`: a work queue's jobs, a Stream capped at the namespace's size,
//!   with a consumer group per worker group and a consumer per instance ([`queues`]);
//! - `P:room:{room}:members`: connection (`sid/n`) → `user\tname`, for presence in the room;
//! - `P:online`: the same for every authenticated connection;
//! - `P:rooms`: room → newest message id (the room directory); `P:active-rooms`: rooms with
//!   members entries;
//! - `P:instance:{sid}`: an instance's lease (TTL, refreshed); `P:instances`: known instances;
//!   `P:instance:{sid}:rooms`: rooms where the instance has entries (for cleanup);
//! - `P:session:{id}`: a session record (JSON) under the token's hash, with a TTL;
//!   `P:ended:{id}`: a tombstone for a while after it was ended, so an instance whose pub/sub
//!   connection was down when the order went out still closes its sockets;
//! - `P:account:{username in lower case}`: an account (JSON), created with `SET NX`;
//! - `P:user:{user}:rooms`: the rooms a user follows (sorted set, scored by when they came);
//!   `P:user:{user}:read`: room → the newest message id they have read (guests' expire with
//!   their session);
//! - `P:count:{key}`: a fixed-window counter (sign-in attempts), with the window as TTL;
//! - `P:control`: the channel every instance listens to for cluster-wide orders (a session
//!   ended: close its sockets);
//! - `P:probe:{sid}`: the channel an instance publishes its pub/sub liveness probes on.
//!
//! Presence entries of an instance whose lease expired are ignored by every reader and
//! removed by the first instance that notices ([`lease`]).
//!
//! Pub/sub payloads are an [`Envelope`] (origin, message id, the encoded server event), so a
//! receiving instance forwards the bytes to its members without decoding them; the
//! [`subscriber`] catches up from the Stream whenever its subscription may have missed some.

mod channels;
mod commands;
mod evacuation;
mod keys;
mod lease;
mod pubsub;
mod queues;
mod records;
mod room_index;
mod scripts;
mod subscriber;
mod subscriptions;

use super::rules::{self, MessageBody};
use super::{
    Broker, Draft, EngineError, EngineResult, History, Lifecycle, LocalDelivery, Position, Posted,
    Presence, Resume,
};
use crate::wire::{origin_key, ConnectionId, Envelope, Frame};
use app::protocol::{ChatMessage, HistoryPage, Member, User};
use app::validate::MessageId;
use async_trait::async_trait;
use commands::Commands;
use keys::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of the Redis engine.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// One URL; in a cluster, its seed nodes.
    pub urls: Vec<String>,
    /// A Redis Cluster: hash-tagged keys, sharded pub/sub, commands routed by slot.
    pub cluster: bool,
    pub prefix: String,
    pub server_id: String,
    pub history_max: usize,
    /// How long an instance's lease lives without a refresh.
    pub lease_ttl: Duration,
    /// How often the lease is refreshed and dead instances are looked for.
    pub lease_refresh: Duration,
    /// Longest a Redis command may take before the request is answered `unavailable`.
    pub command_timeout: Duration,
    /// How long a `clientMsgId` is remembered per user and room.
    pub idempotency_window: Duration,
    /// Whether this Redis holds what belongs to the whole deployment rather than to a room
    /// (the online hash). One Redis always does; of several shards, only the first
    /// ([`super::shards`]); the others keep their connections' entries only in memory, to
    /// register room presence again after a lost lease.
    pub home: bool,
    /// Most messages a catch-up after a pub/sub gap delivers; past it, members resync.
    pub resume_max: usize,
    /// How often the pub/sub path is probed end to end.
    pub probe_interval: Duration,
    /// How long a probe may take before the subscriber connection counts as wedged.
    pub probe_timeout: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Channel namespaces that announce departures (`join_leave`): the users of a dead
    /// instance are announced as `left` there, as they are in rooms.
    pub channel_leaves: Arc<HashSet<String>>,
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
    commands: Commands,
    subscriber: subscriber::Subscriber,
    // Guards a plain map, never held across an await.
    local: Mutex<LocalPresence>,
    /// In a cluster: rooms posted to since the room index was last written, with their
    /// newest message ids ([`room_index`]). Guards a plain map, never held across an await.
    room_index: Mutex<HashMap<String, MessageId>>,
    /// How long each engine operation takes in Redis (one command, a pipeline or a script),
    /// by the operation's name; see [`TIMED`].
    latency: HashMap<&'static str, metrics::Histogram>,
}

/// The operations whose Redis latency is measured: every engine call that reaches Redis
/// (the trait methods' names), `post` being the one on every message's path.
const TIMED: [&str; 33] = [
    "post",
    "enqueue",
    "claim",
    "ack",
    "release",
    "publish_kept",
    "recent",
    "kept_since",
    "publish",
    "publish_to_user",
    "page",
    "since",
    "after",
    "rooms",
    "connect",
    "disconnect",
    "join",
    "leave",
    "members",
    "online",
    "room_counts",
    "put_session",
    "get_session",
    "end_session",
    "create_account",
    "find_account",
    "follow",
    "unfollow",
    "followed",
    "mark_read",
    "hit",
    "peek",
    "undo",
];

/// Records how long it lived into a histogram when dropped (also when its operation failed
/// or was cancelled).
struct LatencyTimer<'a> {
    histogram: Option<&'a metrics::Histogram>,
    started: std::time::Instant,
}

impl Drop for LatencyTimer<'_> {
    fn drop(&mut self) {
        if let Some(histogram) = self.histogram {
            histogram.record(self.started.elapsed());
        }
    }
}

/// A Redis URL as it may be logged or shown: without its user name and password.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn unavailable(err: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(err.to_string())
}

/// A fresh epoch, proposed with every write of a log; used only where none exists.
/// 64 random bits (one format, no per-byte work: every post pays for it).
fn epoch_proposal() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Entries `id, body` (or `id, body, origin` with `stride` 3) of a flat script reply.
fn parse_entries(flat: &[String], stride: usize) -> Vec<(ChatMessage, Option<String>)> {
    flat.chunks_exact(stride)
        .filter_map(|entry| {
            let id = MessageId::parse(&entry[0]).ok()?;
            match serde_json::from_str::<MessageBody>(&entry[1]) {
                Ok(body) => {
                    let origin = entry.get(2).filter(|o| *o != "-").cloned();
                    Some((body.into_message(id), origin))
                }
                Err(err) => {
                    tracing::warn!(id = entry[0], error = %err, "skipping an unreadable stored message");
                    None
                }
            }
        })
        .collect()
}

/// What a resume read found: the messages after the position (with the connection each
/// came from) if they can be given exactly.
struct SinceRead {
    pub resume: Resume,
    pub origins: Vec<Option<String>>,
}

/// Reads what came after `after` in `room` (the History's `since`, and the subscriber's
/// catch-up after a gap).
async fn read_since(
    conn: &mut Commands,
    keys: &Keys,
    room: &str,
    after: &Position,
    max: usize,
) -> EngineResult<SinceRead> {
    let flat: Vec<String> = scripts::SINCE
        .key(keys.log(room))
        .key(keys.epoch(room))
        .arg(after.id.to_string())
        .arg(max + 1)
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    let [epoch, boundary, found, entries @ ..] = flat.as_slice() else {
        return Err(unavailable("short reply to since"));
    };
    let log = rules::LogAt {
        epoch,
        resumable_from: boundary_of(boundary)?,
        found: found == "1",
    };
    let (messages, origins): (Vec<_>, Vec<_>) = parse_entries(entries, 3).into_iter().unzip();
    Ok(SinceRead {
        resume: rules::resume(after, &log, messages, max),
        origins,
    })
}

/// A script's resume boundary (`0-0`: the log never lost an entry).
fn boundary_of(boundary: &str) -> EngineResult<Option<MessageId>> {
    let boundary = MessageId::parse(boundary).map_err(|_| unavailable("bad resume boundary"))?;
    Ok((boundary != MessageId { ms: 0, seq: 0 }).then_some(boundary))
}

impl RedisEngine {
    /// Times one operation (a name from [`TIMED`]) until the returned guard is dropped.
    fn timed(&self, command: &'static str) -> LatencyTimer<'_> {
        LatencyTimer {
            histogram: self.latency.get(command),
            started: std::time::Instant::now(),
        }
    }

    /// Connects lazily: the instance starts (and reports itself unhealthy) while Redis is away.
    pub fn start(
        config: RedisConfig,
        delivery: Arc<dyn LocalDelivery>,
    ) -> Result<Arc<Self>, EngineError> {
        use redis::IntoConnectionInfo;
        // Small, latency-bound commands: no Nagle delay on the way to Redis.
        let infos = config
            .urls
            .iter()
            .map(|url| {
                Ok(url
                    .as_str()
                    .into_connection_info()
                    .map_err(unavailable)?
                    .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true)))
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let (commands, source) = if config.cluster {
            let client = redis::cluster::ClusterClientBuilder::new(infos.clone())
                .connection_timeout(config.command_timeout)
                .response_timeout(config.command_timeout)
                .build()
                .map_err(unavailable)?;
            let commands = client.get_pending_async_connection_with_config(
                redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(config.command_timeout)
                    .set_response_timeout(config.command_timeout),
            );
            let source = pubsub::Source::Cluster {
                seeds: infos,
                timeout: config.command_timeout,
            };
            (Commands::Cluster(commands), source)
        } else {
            let [info] =
                <[_; 1]>::try_from(infos).map_err(|_| unavailable("one Redis takes one URL"))?;
            let client = redis::Client::open(info).map_err(unavailable)?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.command_timeout))
                .set_response_timeout(Some(config.command_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(2));
            let commands = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
                .map_err(unavailable)?;
            (Commands::Single(commands), pubsub::Source::Single(client))
        };
        let keys = Keys::new(&config.prefix, config.cluster);
        let subscriber = subscriber::Subscriber::start(
            subscriber::Link {
                source,
                commands: commands.clone(),
                keys: keys.clone(),
                server_id: config.server_id.clone(),
                metrics: config.metrics.clone(),
            },
            subscriber::Settings {
                probe_interval: config.probe_interval,
                probe_timeout: config.probe_timeout,
                resume_max: config.resume_max,
                setup_timeout: config.command_timeout,
            },
            delivery,
        );
        let latency = TIMED
            .iter()
            .map(|&command| (command, config.metrics.redis_latency(command)))
            .collect();
        let engine = Arc::new(RedisEngine {
            latency,
            config,
            keys,
            commands,
            subscriber,
            local: Mutex::default(),
            room_index: Mutex::default(),
        });
        lease::start(engine.clone());
        if engine.config.cluster {
            room_index::start(engine.clone());
        }
        Ok(engine)
    }

    /// Publishes an envelope on the room's channel.
    async fn publish_envelope(&self, room: &str, envelope: Envelope<'_>) -> EngineResult<()> {
        self.conn()
            .publish_on(&self.keys.channel(room), envelope.encode())
            .await
            .map_err(unavailable)
    }

    fn conn(&self) -> Commands {
        self.commands.clone()
    }

    fn my_key(&self, conn: ConnectionId) -> String {
        origin_key(&self.config.server_id, conn)
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
        rules::sort_members(&mut members);
        Ok(members)
    }

    /// Whether any of these instances (ids, possibly repeated) holds a live lease.
    async fn any_alive(&self, sids: &[String]) -> EngineResult<bool> {
        let unique: Vec<&str> = sids
            .iter()
            .map(String::as_str)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        Ok(!self.live_instances(&unique).await?.is_empty())
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

    /// Puts this instance's connections and room memberships back into presence.
    async fn register_local_presence(&self) -> EngineResult<()> {
        let snapshot: Vec<(ConnectionId, User, Vec<String>)> = self
            .local()
            .connections
            .iter()
            .map(|(conn, (user, rooms))| (*conn, user.clone(), rooms.iter().cloned().collect()))
            .collect();
        let mut commands = Vec::new();
        for (conn, user, rooms) in &snapshot {
            let key = self.my_key(*conn);
            let value = format!("{}\t{}", user.id, user.name);
            if self.config.home {
                commands.push(redis::Cmd::hset(self.keys.online(), &key, &value));
            }
            for room in rooms {
                commands.push(redis::Cmd::hset(self.keys.members(room), &key, &value));
                commands.push(redis::Cmd::sadd(
                    self.keys.instance_rooms(&self.config.server_id),
                    room,
                ));
                commands.push(redis::Cmd::sadd(self.keys.active_rooms(), room));
            }
        }
        self.conn().run_all(commands).await.map_err(unavailable)?;
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
        let _latency = self.timed("publish");
        let origin = origin.map(|conn| self.my_key(conn));
        self.publish_envelope(
            room,
            Envelope {
                origin: origin.as_deref(),
                message: None,
                to: None,
                frame,
            },
        )
        .await
    }

    async fn publish_to_user(&self, room: &str, user: &str, frame: Frame) -> EngineResult<()> {
        let _latency = self.timed("publish_to_user");
        let envelope = Envelope {
            origin: None,
            message: None,
            to: Some(user),
            frame,
        };
        self.publish_envelope(room, envelope).await
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
    async fn post(&self, draft: Draft, origin: Option<ConnectionId>) -> EngineResult<Posted> {
        let _latency = self.timed("post");
        let room = draft.room_id.clone();
        let sent_key = draft
            .client_msg_id
            .as_deref()
            .map(|client_msg_id| self.keys.sent(&room, &draft.user.id, client_msg_id));
        let body = MessageBody::from_draft(draft, &self.config.server_id);
        let body_json = serde_json::to_string(&body).expect("stored bodies always serialize");
        let origin = origin.map(|conn| self.my_key(conn));
        let mut conn = self.conn();
        let mut invocation = scripts::POST.prepare_invoke();
        invocation
            .key(self.keys.log(&room))
            .key(self.keys.channel(&room))
            .key(self.keys.epoch(&room));
        if let Some(sent_key) = &sent_key {
            invocation.key(sent_key);
        }
        // One Redis keeps the room index in the same step; in a cluster it lives in another
        // slot and is written apart ([`room_index`]).
        if !self.config.cluster {
            invocation.key(self.keys.rooms());
        }
        let reply: String = invocation
            .arg(self.config.history_max)
            .arg(&body_json)
            .arg(Envelope::message_head(origin.as_deref()))
            .arg(&room)
            .arg(self.config.idempotency_window.as_secs().max(1))
            .arg(epoch_proposal())
            .arg(origin.as_deref().unwrap_or("-"))
            .arg(conn.publish_command())
            .arg(if sent_key.is_some() { "1" } else { "0" })
            .arg(if self.config.cluster { "0" } else { "1" })
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let (id, duplicate) = match reply.strip_prefix('=') {
            Some(original) => (original, true),
            None => (reply.as_str(), false),
        };
        let id = MessageId::parse(id).map_err(|_| unavailable(format!("bad stream id {id}")))?;
        if self.config.cluster && !duplicate {
            room_index::note(self, &room, id);
        }
        Ok(Posted {
            message: body.into_message(id),
            duplicate,
        })
    }

    async fn page(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> EngineResult<HistoryPage> {
        let _latency = self.timed("page");
        let end = before.map_or_else(|| "+".to_string(), |id| format!("({id}"));
        let flat: Vec<String> = scripts::PAGE
            .key(self.keys.log(room))
            .key(self.keys.epoch(room))
            .arg(end)
            .arg(limit + 1)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let Some((epoch, entries)) = flat.split_first() else {
            return Err(unavailable("empty reply to page"));
        };
        let newest_first = parse_entries(entries, 2)
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        Ok(rules::page(room, newest_first, limit, epoch.clone()))
    }

    async fn since(&self, room: &str, after: &Position, max: usize) -> EngineResult<Resume> {
        let _latency = self.timed("since");
        Ok(read_since(&mut self.conn(), &self.keys, room, after, max)
            .await?
            .resume)
    }

    async fn after(
        &self,
        room: &str,
        after: Option<MessageId>,
        max: usize,
    ) -> EngineResult<Vec<ChatMessage>> {
        let _latency = self.timed("after");
        let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        let entries: redis::streams::StreamRangeReply = self
            .conn()
            .xrange_count(self.keys.log(room), start, "+", max)
            .await
            .map_err(unavailable)?;
        Ok(entries
            .ids
            .into_iter()
            .filter_map(|entry| {
                let id = MessageId::parse(&entry.id).ok()?;
                let body: String = entry.get("m")?;
                let body = serde_json::from_str::<MessageBody>(&body).ok()?;
                Some(body.into_message(id))
            })
            .collect())
    }

    async fn rooms(&self, max: usize) -> EngineResult<Vec<(String, String)>> {
        let _latency = self.timed("rooms");
        let mut conn = self.conn();
        let count: usize = conn.hlen(self.keys.rooms()).await.map_err(unavailable)?;
        if count <= max {
            let rooms: HashMap<String, String> =
                conn.hgetall(self.keys.rooms()).await.map_err(unavailable)?;
            return Ok(rooms.into_iter().collect());
        }
        // More than asked for: a scan, stopped once it has `max`.
        let mut rooms = Vec::with_capacity(max);
        let mut cursor = 0u64;
        loop {
            let (next, found): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(self.keys.rooms())
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            rooms.extend(found);
            cursor = next;
            if cursor == 0 || rooms.len() >= max {
                rooms.truncate(max);
                return Ok(rooms);
            }
        }
    }
}

#[async_trait]
impl Presence for RedisEngine {
    async fn connect(&self, conn: ConnectionId, user: &User) -> EngineResult<()> {
        let _latency = self.timed("connect");
        if !self.config.home {
            self.local()
                .connections
                .insert(conn, (user.clone(), HashSet::new()));
            return Ok(());
        }
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
        let _latency = self.timed("disconnect");
        self.local().connections.remove(&conn);
        if !self.config.home {
            return Ok(());
        }
        self.conn()
            .hdel::<_, _, ()>(self.keys.online(), self.my_key(conn))
            .await
            .map_err(unavailable)
    }

    async fn join(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool> {
        let _latency = self.timed("join");
        let (mut for_entry, mut for_sets) = (self.conn(), self.conn());
        let mut script = scripts::JOIN.prepare_invoke();
        script
            .key(self.keys.members(room))
            .arg(self.my_key(conn))
            .arg(&user.id)
            .arg(&user.name);
        let entry = script.invoke_async::<Vec<String>>(&mut for_entry);
        // Sets of rooms, each its own key (in a cluster, on other nodes): sent at once.
        let indexed = for_sets.run_all(vec![
            redis::Cmd::sadd(self.keys.instance_rooms(&self.config.server_id), room),
            redis::Cmd::sadd(self.keys.active_rooms(), room),
        ]);
        let (others, ()) = tokio::try_join!(entry, indexed).map_err(unavailable)?;
        if let Some((_, rooms)) = self.local().connections.get_mut(&conn) {
            rooms.insert(room.to_string());
        }
        Ok(!self.any_alive(&others).await?)
    }

    async fn leave(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool> {
        let _latency = self.timed("leave");
        if let Some((_, rooms)) = self.local().connections.get_mut(&conn) {
            rooms.remove(room);
        }
        let reply: Vec<String> = scripts::LEAVE
            .key(self.keys.members(room))
            .arg(self.my_key(conn))
            .arg(&user.id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let Some((remaining, others)) = reply.split_first() else {
            return Err(unavailable("empty reply to leave"));
        };
        match remaining.as_str() {
            "-1" => return Ok(false), // the connection was not in the room
            "0" => {
                // Not atomic with the script in a cluster (another slot): a join racing this
                // is put back by its instance's next lease renewal.
                self.conn()
                    .srem::<_, _, ()>(self.keys.active_rooms(), room)
                    .await
                    .map_err(unavailable)?;
            }
            _ => {}
        }
        Ok(!self.any_alive(others).await?)
    }

    async fn members(&self, room: &str) -> EngineResult<Vec<Member>> {
        let _latency = self.timed("members");
        let entries: HashMap<String, String> = self
            .conn()
            .hgetall(self.keys.members(room))
            .await
            .map_err(unavailable)?;
        self.live_members(entries).await
    }

    async fn online(&self) -> EngineResult<Vec<Member>> {
        let _latency = self.timed("online");
        let entries: HashMap<String, String> = self
            .conn()
            .hgetall(self.keys.online())
            .await
            .map_err(unavailable)?;
        self.live_members(entries).await
    }

    /// Four round trips however many rooms: how many have people, which (all, or `max`
    /// of them at random), every one's members in one pipeline, and the leases of the
    /// instances those name in one `MGET`.
    async fn room_counts(&self, max: usize) -> EngineResult<Vec<(String, usize)>> {
        let _latency = self.timed("room_counts");
        let mut conn = self.conn();
        let active = self.keys.active_rooms();
        let count: usize = conn.scard(&active).await.map_err(unavailable)?;
        let rooms: Vec<String> = if count <= max {
            conn.smembers(&active).await.map_err(unavailable)?
        } else {
            conn.srandmember_multiple(&active, max as isize)
                .await
                .map_err(unavailable)?
        };
        let lookups = rooms
            .iter()
            .map(|room| redis::Cmd::hgetall(self.keys.members(room)))
            .collect();
        let entries: Vec<HashMap<String, String>> =
            conn.query_all(lookups).await.map_err(unavailable)?;
        let sids: HashSet<&str> = entries
            .iter()
            .flat_map(|entries| entries.keys())
            .filter_map(|field| field.split_once('/').map(|(sid, _)| sid))
            .collect();
        let sids: Vec<&str> = sids.into_iter().collect();
        let live = self.live_instances(&sids).await?;
        Ok(rooms
            .into_iter()
            .zip(entries.iter())
            .filter_map(|(room, entries)| {
                let users: HashSet<&str> = entries
                    .iter()
                    .filter(|(field, _)| {
                        field
                            .split_once('/')
                            .is_some_and(|(sid, _)| live.contains(sid))
                    })
                    .filter_map(|(_, value)| value.split_once('\t').map(|(user, _)| user))
                    .collect();
                (!users.is_empty()).then_some((room, users.len()))
            })
            .collect())
    }
}

#[async_trait]
impl Lifecycle for RedisEngine {
    async fn health(&self) -> Result<(), String> {
        let ping: Result<String, _> = redis::cmd("PING").query_async(&mut self.conn()).await;
        if let Err(err) = ping {
            return Err(format!("redis unreachable: {err}"));
        }
        self.subscriber.health()
    }

    fn stats(&self) -> serde_json::Value {
        self.subscriber.stats()
    }

    async fn shutdown(&self) {
        lease::release(self).await;
    }
}

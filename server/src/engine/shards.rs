//! Many independent Redis servers as one engine: each room lives on one shard, chosen by a
//! consistent hash of its id, and everything else on the shard its own key hashes to.
//!
//! Why independent servers rather than only Redis Cluster: classic pub/sub does not scale in
//! a cluster (every node forwards every `PUBLISH` to every other node), while N unrelated
//! Redis servers each carry 1/N of the rooms' messages, publishes and subscriptions. This is
//! Centrifugo's "Redis sharding" (its `redis_shard.go`), with the same hash.
//!
//! Each shard is a complete [`RedisEngine`]: its own command connection, its own pub/sub
//! connection (subscribed to the local rooms that hash to it, with its own liveness probe
//! and catch-up), its own instance lease and dead-instance sweep. So everything proven about
//! one Redis (never silent, exactly-once posts, presence that expires with its instance)
//! holds per shard, and a shard that is down takes down only its own rooms.
//!
//! What goes where:
//! - per room (history, pub/sub, room presence): the room's shard; per channel (its pub/sub
//!   and kept history) the channel's, by its hub key;
//! - sessions, accounts, counters, a user's room list and read positions: the shard their
//!   key hashes to, so that load spreads too;
//! - online users: the first shard (the *home* shard), which every instance registers its
//!   connections with; every shard also tracks them in memory, to register room presence
//!   again after a lost lease;
//! - lists over every room (rooms with history, rooms with people): all shards, merged;
//! - a sign-out: published on its session's shard, where every instance listens.
//!
//! The shard of a key is its place in the URL list. Appending a shard moves about
//! 1/(n + 1) of the rooms (jump hash); a moved room starts over on its new shard (its
//! history stays behind, and readers are told `recovered: false`), and sessions that move
//! are signed out. Reordering or removing shards moves far more: append only.

use super::redis::RedisEngine;
use super::{
    AccountRecord, Accounts, Broker, CatchUpFrom, ChannelHistory, Counters, Draft, EngineResult,
    Follow, History, Holder, Job, Kept, KeptRead, Lifecycle, LocalDelivery, Position, Posted,
    Presence, QueueRules, Queues, Reading, Resume, Retention, SessionId, SessionRecord, Sessions,
    WindowCount,
};
use crate::wire::{ConnectionId, Frame};
use app::protocol::{ChatMessage, HistoryPage, Member, User};
use app::validate::MessageId;
use async_trait::async_trait;
use futures::future::{join_all, try_join_all};
use std::sync::Arc;
use std::time::Duration;

/// The bucket of `key` among `buckets` (Lamping and Veach, "A Fast, Minimal Memory,
/// Consistent Hash Algorithm", 2014): growing from n to n + 1 buckets moves only the keys
/// that land in the new one, about 1/(n + 1) of them.
pub fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut bucket, mut next) = (-1i64, 0i64);
    while next < buckets as i64 {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket.max(0) as usize
}

/// FNV-1a, 64 bits: a stable hash of a name (the same in every build and on every
/// instance, which the standard library's hasher does not promise).
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The shard of a room or key among `shards`.
pub fn shard_of(name: &str, shards: usize) -> usize {
    jump_hash(fnv1a(name), shards)
}

/// Hands a shard's engine only the rooms that live on that shard: its subscriber subscribes
/// (and catches up) exactly those.
pub struct ShardDelivery {
    inner: Arc<dyn LocalDelivery>,
    shard: usize,
    shards: usize,
}

impl ShardDelivery {
    pub fn new(inner: Arc<dyn LocalDelivery>, shard: usize, shards: usize) -> Self {
        ShardDelivery {
            inner,
            shard,
            shards,
        }
    }

    fn owns(&self, room: &str) -> bool {
        shard_of(room, self.shards) == self.shard
    }
}

impl LocalDelivery for ShardDelivery {
    fn deliver(
        &self,
        room: &str,
        frame: &Frame,
        message: Option<MessageId>,
        skip: Option<ConnectionId>,
    ) -> usize {
        self.inner.deliver(room, frame, message, skip)
    }
    fn deliver_to_user(&self, room: &str, user: &str, frame: &Frame) -> usize {
        self.inner.deliver_to_user(room, user, frame)
    }
    fn wanted_rooms(&self) -> Vec<String> {
        let mut rooms = self.inner.wanted_rooms();
        rooms.retain(|room| self.owns(room));
        rooms
    }
    fn is_wanted(&self, room: &str) -> bool {
        self.owns(room) && self.inner.is_wanted(room)
    }
    fn catch_up_from(&self, room: &str) -> CatchUpFrom {
        self.inner.catch_up_from(room)
    }
    fn resync(&self, room: &str) {
        self.inner.resync(room)
    }
    fn evacuate(&self, room: &str) {
        self.inner.evacuate(room)
    }
    fn close_session(&self, session: &SessionId) -> usize {
        self.inner.close_session(session)
    }
    fn session_ids(&self) -> Vec<SessionId> {
        self.inner.session_ids()
    }
}

/// The engine over several shards. Shard 0 is the home shard (see the module docs).
pub struct ShardedEngine {
    shards: Vec<Arc<RedisEngine>>,
}

impl ShardedEngine {
    /// Takes the shards in the order of the URL list; the first is the home shard.
    pub fn new(shards: Vec<Arc<RedisEngine>>) -> Self {
        assert!(!shards.is_empty(), "at least one shard");
        ShardedEngine { shards }
    }

    fn of(&self, name: &str) -> &RedisEngine {
        &self.shards[shard_of(name, self.shards.len())]
    }

    fn home(&self) -> &RedisEngine {
        &self.shards[0]
    }
}

#[async_trait]
impl Broker for ShardedEngine {
    async fn publish(
        &self,
        room: &str,
        frame: Frame,
        origin: Option<ConnectionId>,
    ) -> EngineResult<()> {
        self.of(room).publish(room, frame, origin).await
    }
    async fn publish_to_user(&self, room: &str, user: &str, frame: Frame) -> EngineResult<()> {
        self.of(room).publish_to_user(room, user, frame).await
    }
    async fn subscribe(&self, room: &str) -> EngineResult<()> {
        self.of(room).subscribe(room).await
    }
    async fn unsubscribe(&self, room: &str) -> EngineResult<()> {
        self.of(room).unsubscribe(room).await
    }
}

#[async_trait]
impl History for ShardedEngine {
    async fn post(&self, draft: Draft, origin: Option<ConnectionId>) -> EngineResult<Posted> {
        self.of(&draft.room_id).post(draft, origin).await
    }
    async fn page(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> EngineResult<HistoryPage> {
        self.of(room).page(room, before, limit).await
    }
    async fn since(&self, room: &str, after: &Position, max: usize) -> EngineResult<Resume> {
        self.of(room).since(room, after, max).await
    }
    async fn after(
        &self,
        room: &str,
        after: Option<MessageId>,
        max: usize,
    ) -> EngineResult<Vec<ChatMessage>> {
        self.of(room).after(room, after, max).await
    }
    async fn rooms(&self, max: usize) -> EngineResult<Vec<(String, String)>> {
        let share = max.div_ceil(self.shards.len());
        let per_shard = try_join_all(self.shards.iter().map(|shard| shard.rooms(share))).await?;
        Ok(per_shard.into_iter().flatten().take(max).collect())
    }
}

#[async_trait]
impl ChannelHistory for ShardedEngine {
    async fn publish_kept(
        &self,
        channel: &str,
        data: &serde_json::Value,
        keep: Retention,
    ) -> EngineResult<MessageId> {
        self.of(channel).publish_kept(channel, data, keep).await
    }
    async fn recent(&self, channel: &str, limit: usize) -> EngineResult<KeptRead<Vec<Kept>>> {
        self.of(channel).recent(channel, limit).await
    }
    async fn kept_since(
        &self,
        channel: &str,
        after: &Position,
        max: usize,
    ) -> EngineResult<KeptRead<Resume<Kept>>> {
        self.of(channel).kept_since(channel, after, max).await
    }
}

#[async_trait]
impl Queues for ShardedEngine {
    async fn enqueue(
        &self,
        queue: &str,
        data: &serde_json::Value,
        rules: &QueueRules,
    ) -> EngineResult<MessageId> {
        self.of(queue).enqueue(queue, data, rules).await
    }
    async fn claim(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        count: usize,
        rules: &QueueRules,
    ) -> EngineResult<Vec<Job>> {
        self.of(queue)
            .claim(queue, group, consumer, count, rules)
            .await
    }
    async fn ack(
        &self,
        queue: &str,
        group: &str,
        id: MessageId,
        holder: Holder<'_>,
    ) -> EngineResult<bool> {
        self.of(queue).ack(queue, group, id, holder).await
    }
    async fn release(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[MessageId],
        rules: &QueueRules,
    ) -> EngineResult<()> {
        self.of(queue)
            .release(queue, group, consumer, ids, rules)
            .await
    }
}

#[async_trait]
impl Presence for ShardedEngine {
    /// Every shard learns of the connection; only the home shard stores it (online users).
    async fn connect(&self, conn: ConnectionId, user: &User) -> EngineResult<()> {
        try_join_all(self.shards.iter().map(|shard| shard.connect(conn, user))).await?;
        Ok(())
    }
    async fn disconnect(&self, conn: ConnectionId) -> EngineResult<()> {
        try_join_all(self.shards.iter().map(|shard| shard.disconnect(conn))).await?;
        Ok(())
    }
    async fn join(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool> {
        self.of(room).join(room, conn, user).await
    }
    async fn leave(&self, room: &str, conn: ConnectionId, user: &User) -> EngineResult<bool> {
        self.of(room).leave(room, conn, user).await
    }
    async fn members(&self, room: &str) -> EngineResult<Vec<Member>> {
        self.of(room).members(room).await
    }
    async fn online(&self) -> EngineResult<Vec<Member>> {
        self.home().online().await
    }
    async fn room_counts(&self, max: usize) -> EngineResult<Vec<(String, usize)>> {
        let share = max.div_ceil(self.shards.len());
        let per_shard =
            try_join_all(self.shards.iter().map(|shard| shard.room_counts(share))).await?;
        Ok(per_shard.into_iter().flatten().take(max).collect())
    }
}

#[async_trait]
impl Sessions for ShardedEngine {
    async fn put_session(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl: Duration,
    ) -> EngineResult<()> {
        self.of(&id.to_string()).put_session(id, record, ttl).await
    }
    async fn get_session(&self, id: &SessionId) -> EngineResult<Option<SessionRecord>> {
        self.of(&id.to_string()).get_session(id).await
    }
    async fn end_session(&self, id: &SessionId) -> EngineResult<()> {
        self.of(&id.to_string()).end_session(id).await
    }
}

#[async_trait]
impl Accounts for ShardedEngine {
    async fn create_account(&self, key: &str, account: &AccountRecord) -> EngineResult<bool> {
        self.of(key).create_account(key, account).await
    }
    async fn find_account(&self, key: &str) -> EngineResult<Option<AccountRecord>> {
        self.of(key).find_account(key).await
    }
}

#[async_trait]
impl Reading for ShardedEngine {
    async fn follow(
        &self,
        user: &str,
        room: &str,
        read_from: Option<MessageId>,
        max: usize,
        keep: Option<Duration>,
    ) -> EngineResult<Follow> {
        self.of(user).follow(user, room, read_from, max, keep).await
    }
    async fn unfollow(&self, user: &str, room: &str) -> EngineResult<()> {
        self.of(user).unfollow(user, room).await
    }
    async fn followed(&self, user: &str) -> EngineResult<Vec<(String, Option<MessageId>)>> {
        self.of(user).followed(user).await
    }
    async fn mark_read(
        &self,
        user: &str,
        room: &str,
        id: MessageId,
    ) -> EngineResult<Option<MessageId>> {
        self.of(user).mark_read(user, room, id).await
    }
}

#[async_trait]
impl Counters for ShardedEngine {
    async fn hit(&self, key: &str, window: Duration) -> EngineResult<WindowCount> {
        self.of(key).hit(key, window).await
    }
    async fn peek(&self, key: &str) -> EngineResult<WindowCount> {
        self.of(key).peek(key).await
    }
    async fn undo(&self, key: &str) -> EngineResult<()> {
        self.of(key).undo(key).await
    }
}

#[async_trait]
impl Lifecycle for ShardedEngine {
    /// Healthy when every shard is: a shard that is down takes its rooms with it.
    async fn health(&self) -> Result<(), String> {
        let results = join_all(self.shards.iter().map(|shard| shard.health())).await;
        let count = self.shards.len();
        for (index, result) in results.into_iter().enumerate() {
            if let Err(reason) = result {
                return Err(format!("shard {} of {count}: {reason}", index + 1));
            }
        }
        Ok(())
    }

    /// The shards' pub/sub figures summed, and each shard's.
    fn stats(&self) -> serde_json::Value {
        let per_shard: Vec<serde_json::Value> =
            self.shards.iter().map(|shard| shard.stats()).collect();
        let mut total = serde_json::Map::new();
        for stats in &per_shard {
            for (name, value) in stats.as_object().into_iter().flatten() {
                let sum = total.get(name).and_then(|v| v.as_u64()).unwrap_or(0)
                    + value.as_u64().unwrap_or(0);
                total.insert(name.clone(), sum.into());
            }
        }
        total.insert("shards".into(), per_shard.into());
        total.into()
    }

    async fn shutdown(&self) {
        join_all(self.shards.iter().map(|shard| shard.shutdown())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bucket_takes_everything() {
        for key in ["", "general", "a-very-long-room-name-0123456789"] {
            assert_eq!(shard_of(key, 1), 0);
        }
    }

    #[test]
    fn rooms_spread_evenly() {
        let mut counts = [0usize; 4];
        for n in 0..40_000 {
            counts[shard_of(&format!("room-{n}"), 4)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn adding_a_shard_moves_only_its_share_and_only_to_it() {
        for shards in 1..8 {
            let mut moved = 0usize;
            let total = 20_000;
            for n in 0..total {
                let room = format!("r{n}");
                let (before, after) = (shard_of(&room, shards), shard_of(&room, shards + 1));
                if before != after {
                    assert_eq!(after, shards, "{room} moved between old shards");
                    moved += 1;
                }
            }
            let expected = total / (shards + 1);
            assert!(
                moved.abs_diff(expected) < expected / 10,
                "{shards} → {}: {moved} moved, expected about {expected}",
                shards + 1
            );
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // FNV-1a's published test vectors: the shard of a room must never change between builds.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }
}

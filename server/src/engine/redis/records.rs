//! What is not per room, in Redis: session records (and ending them everywhere), accounts,
//! each user's room list and read positions, and fixed-window counters. Each key is its own
//! (in a cluster a session's record and tombstone share its id's slot, a user's list and
//! positions the user's), so these work alike on one Redis, on a shard and in a cluster.

use super::{scripts, subscriber, unavailable, RedisEngine};
use crate::engine::{
    AccountRecord, Accounts, Counters, EngineError, EngineResult, Follow, Reading, SessionId,
    SessionRecord, Sessions, WindowCount,
};
use app::validate::MessageId;
use async_trait::async_trait;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::time::Duration;

#[async_trait]
impl Sessions for RedisEngine {
    async fn put_session(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl: Duration,
    ) -> EngineResult<()> {
        let _latency = self.timed("put_session");
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
        let _latency = self.timed("get_session");
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
        let _latency = self.timed("end_session");
        // Every instance (this one too) hears the order on its control channel and closes the
        // session's sockets; the tombstone tells those whose pub/sub was down. On one Redis
        // all of it is one transaction; in a cluster the control channel lives in another
        // slot, so the order follows the (atomic) record change.
        let mut conn = self.conn();
        let order = format!("{}{id}", subscriber::SESSION_ENDED);
        let mut change = redis::pipe();
        change
            .atomic()
            .del(self.keys.session(id))
            .ignore()
            .set_ex(
                self.keys.ended(id),
                1,
                subscriber::ENDED_TOMBSTONE.as_secs(),
            )
            .ignore();
        if self.config.cluster {
            change
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)?;
            conn.publish_on(&self.keys.control(), order)
                .await
                .map_err(unavailable)
        } else {
            change
                .publish(self.keys.control(), order)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)
        }
    }
}

#[async_trait]
impl Accounts for RedisEngine {
    async fn create_account(&self, key: &str, account: &AccountRecord) -> EngineResult<bool> {
        let _latency = self.timed("create_account");
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
        let _latency = self.timed("find_account");
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
impl Reading for RedisEngine {
    async fn follow(
        &self,
        user: &str,
        room: &str,
        read_from: Option<MessageId>,
        max: usize,
        keep: Option<Duration>,
    ) -> EngineResult<Follow> {
        let _latency = self.timed("follow");
        let reply: Vec<String> = scripts::FOLLOW
            .key(self.keys.user_rooms(user))
            .key(self.keys.user_read(user))
            .arg(room)
            .arg(crate::engine::now_ms())
            .arg(read_from.map(|id| id.to_string()).unwrap_or_default())
            .arg(max)
            .arg(keep.map_or(0, |keep| keep.as_secs().max(1)))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [] => Ok(Follow::ListFull),
            [position] if position.is_empty() => Ok(Follow::Reading(None)),
            [position] => MessageId::parse(position)
                .map(|id| Follow::Reading(Some(id)))
                .map_err(|_| unavailable("bad read position")),
            _ => Err(unavailable("unexpected reply to follow")),
        }
    }

    async fn unfollow(&self, user: &str, room: &str) -> EngineResult<()> {
        let _latency = self.timed("unfollow");
        redis::pipe()
            .atomic()
            .zrem(self.keys.user_rooms(user), room)
            .hdel(self.keys.user_read(user), room)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn followed(&self, user: &str) -> EngineResult<Vec<(String, Option<MessageId>)>> {
        let _latency = self.timed("followed");
        let (rooms, read): (Vec<String>, HashMap<String, String>) = redis::pipe()
            .zrange(self.keys.user_rooms(user), 0, -1)
            .hgetall(self.keys.user_read(user))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(rooms
            .into_iter()
            .map(|room| {
                let position = read.get(&room).and_then(|id| MessageId::parse(id).ok());
                (room, position)
            })
            .collect())
    }

    async fn mark_read(
        &self,
        user: &str,
        room: &str,
        id: MessageId,
    ) -> EngineResult<Option<MessageId>> {
        let _latency = self.timed("mark_read");
        let position: Option<String> = scripts::MARK_READ
            .key(self.keys.user_rooms(user))
            .key(self.keys.user_read(user))
            .arg(room)
            .arg(id.to_string())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        position
            .map(|id| MessageId::parse(&id).map_err(|_| unavailable("bad read position")))
            .transpose()
    }
}

#[async_trait]
impl Counters for RedisEngine {
    async fn hit(&self, key: &str, window: Duration) -> EngineResult<WindowCount> {
        let _latency = self.timed("hit");
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
        let _latency = self.timed("peek");
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

    async fn undo(&self, key: &str) -> EngineResult<()> {
        let _latency = self.timed("undo");
        scripts::COUNT_UNDO
            .key(self.keys.counter(key))
            .invoke_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }
}

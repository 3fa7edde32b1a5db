//! The instance's lease, and the clean-up of instances whose lease expired.
//!
//! Every `lease_refresh` the instance sets `P:instance:{sid}` with a TTL of `lease_ttl`.
//! Readers ignore presence entries of instances without a lease, so a killed instance's users
//! vanish from presence within the TTL everywhere. The first instance to notice a dead one
//! (it wins `SREM P:instances sid`) deletes its entries and announces `user_left` for users
//! who have no other live connection in a room, so open member lists follow too.
//! If this instance finds its own lease had expired (Redis was away too long), it registers
//! its connections again, since another instance may have cleaned them up.

use super::RedisEngine;
use crate::engine::now_ms;
use crate::wire::{channel_of, encode, namespace_of, Envelope};
use app::protocol::ServerMsg;
use redis::AsyncCommands;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub fn start(engine: Arc<RedisEngine>) {
    let weak = Arc::downgrade(&engine);
    let refresh = engine.config.lease_refresh;
    drop(engine);
    tokio::spawn(async move {
        let mut first = true;
        let mut ticker = tokio::time::interval(refresh);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(engine) = weak.upgrade() else { return };
            match renew(&engine).await {
                Ok(existed) => {
                    if !existed && !first {
                        if let Err(err) = engine.register_local_presence().await {
                            tracing::warn!(error = %err, "could not register presence again");
                            continue; // the lease exists now; retry registration next tick
                        }
                    }
                    first = false;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not renew the instance lease");
                    continue;
                }
            }
            if let Err(err) = sweep(&engine).await {
                tracing::warn!(error = %err, "could not clean up dead instances");
            }
        }
    });
}

/// Sets the lease; true when it still existed (nothing was lost).
async fn renew(engine: &RedisEngine) -> redis::RedisResult<bool> {
    let sid = &engine.config.server_id;
    let previous: Option<String> = redis::cmd("SET")
        .arg(engine.keys.lease(sid))
        .arg(now_ms())
        .arg("PX")
        .arg(engine.config.lease_ttl.as_millis() as u64)
        .arg("GET")
        .query_async(&mut engine.conn())
        .await?;
    // The sets naming rooms with people: also written apart from the members hash in a
    // cluster, where a leave racing a join may take a room out that still has members.
    let rooms: Vec<String> = engine
        .local()
        .connections
        .values()
        .flat_map(|(_, rooms)| rooms.iter().cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut commands = vec![redis::Cmd::sadd(engine.keys.instances(), sid)];
    if !rooms.is_empty() {
        commands.push(redis::Cmd::sadd(engine.keys.active_rooms(), &rooms));
        commands.push(redis::Cmd::sadd(engine.keys.instance_rooms(sid), &rooms));
    }
    engine.conn().run_all(commands).await?;
    Ok(previous.is_some())
}

async fn sweep(engine: &RedisEngine) -> redis::RedisResult<()> {
    let mut conn = engine.conn();
    let instances: Vec<String> = conn.smembers(engine.keys.instances()).await?;
    for sid in instances
        .iter()
        .filter(|sid| **sid != engine.config.server_id)
    {
        let alive: bool = conn.exists(engine.keys.lease(sid)).await?;
        if alive {
            continue;
        }
        // Only the instance that removes it from the set cleans up after it.
        let claimed: i64 = conn.srem(engine.keys.instances(), sid).await?;
        if claimed == 1 {
            clean_up(engine, sid).await?;
        }
    }
    Ok(())
}

/// Removes a dead instance's presence entries and announces who left.
async fn clean_up(engine: &RedisEngine, dead: &str) -> redis::RedisResult<()> {
    let mut conn = engine.conn();
    let prefix = format!("{dead}/");
    let rooms: Vec<String> = conn.smembers(engine.keys.instance_rooms(dead)).await?;
    let mut announced = 0usize;
    for room in &rooms {
        let members_key = engine.keys.members(room);
        let entries: HashMap<String, String> = conn.hgetall(&members_key).await?;
        let (dead_entries, remaining): (Vec<_>, Vec<_>) = entries
            .iter()
            .partition(|(field, _)| field.starts_with(&prefix));
        if dead_entries.is_empty() {
            continue;
        }
        let fields: Vec<&String> = dead_entries.iter().map(|(field, _)| *field).collect();
        conn.hdel::<_, _, ()>(&members_key, fields).await?;
        if remaining.is_empty() {
            conn.srem::<_, _, ()>(engine.keys.active_rooms(), room)
                .await?;
        }
        let remaining = remaining
            .iter()
            .map(|(f, v)| ((*f).clone(), (*v).clone()))
            .collect();
        let still_here: HashSet<String> = engine
            .live_members(remaining)
            .await
            .map_err(|err| redis::RedisError::from(std::io::Error::other(err.to_string())))?
            .into_iter()
            .map(|member| member.user_id)
            .collect();
        let mut gone: HashMap<&str, &str> = HashMap::new();
        for (_, value) in &dead_entries {
            if let Some((user_id, name)) = value.split_once('\t') {
                if !still_here.contains(user_id) {
                    gone.insert(user_id, name);
                }
            }
        }
        let left_event = |user_id: &str, name: &str| match channel_of(room) {
            None => Some(ServerMsg::UserLeft {
                room_id: room.clone(),
                user_id: user_id.to_string(),
                name: name.to_string(),
                timestamp: now_ms(),
            }),
            // A channel's, where its namespace announces departures.
            Some(channel) => engine
                .config
                .channel_leaves
                .contains(namespace_of(channel))
                .then(|| ServerMsg::Left {
                    channel: channel.to_string(),
                    user_id: user_id.to_string(),
                    name: name.to_string(),
                }),
        };
        for (user_id, name) in gone {
            let Some(left) = left_event(user_id, name) else {
                continue;
            };
            let payload = Envelope {
                origin: None,
                message: None,
                to: None,
                frame: encode(&left),
            }
            .encode();
            conn.publish_on(&engine.keys.channel(room), payload).await?;
            announced += 1;
        }
    }
    conn.del::<_, ()>(engine.keys.instance_rooms(dead)).await?;
    let online: HashMap<String, String> = conn.hgetall(engine.keys.online()).await?;
    let dead_online: Vec<&String> = online
        .keys()
        .filter(|field| field.starts_with(&prefix))
        .collect();
    if !dead_online.is_empty() {
        conn.hdel::<_, _, ()>(engine.keys.online(), dead_online)
            .await?;
    }
    tracing::info!(
        instance = dead,
        rooms = rooms.len(),
        announced,
        "cleaned up after a dead instance"
    );
    Ok(())
}

/// On shutdown: drop the lease so nobody waits for it to expire.
pub async fn release(engine: &RedisEngine) {
    let sid = &engine.config.server_id;
    let mut conn = engine.conn();
    let _ = conn.del::<_, ()>(engine.keys.lease(sid)).await;
    let _ = conn.srem::<_, _, ()>(engine.keys.instances(), sid).await;
    let _ = conn.del::<_, ()>(engine.keys.instance_rooms(sid)).await;
}

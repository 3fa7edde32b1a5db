//! Channel histories in Redis: a capped Stream of publications per channel and its epoch,
//! expiring together the namespace's retention after the last publication (see
//! [`scripts::PUBLISH_KEPT`]). A publication is stored and published by one script, so it
//! is delivered only if it is kept; the subscriber catches channels up after a pub/sub gap
//! with [`read_kept_since`], exactly as it catches up rooms.

use super::commands::Commands;
use super::{epoch_proposal, scripts, unavailable, Keys, RedisEngine};
use crate::engine::{
    rules, ChannelHistory, EngineResult, Kept, KeptRead, Position, Resume, Retention,
};
use crate::wire::{channel_of, publication_around_offset, Envelope};
use app::validate::MessageId;
use async_trait::async_trait;

/// `id, data` pairs of a script reply; an entry that cannot be read is skipped (and logged).
fn parse_kept(flat: &[String]) -> Vec<Kept> {
    flat.chunks_exact(2)
        .filter_map(|entry| {
            let offset = MessageId::parse(&entry[0]).ok()?;
            match serde_json::from_str(&entry[1]) {
                Ok(data) => Some(Kept { offset, data }),
                Err(err) => {
                    tracing::warn!(offset = entry[0], error = %err, "skipping an unreadable kept publication");
                    None
                }
            }
        })
        .collect()
}

fn ttl_ms(keep: Retention) -> u128 {
    keep.ttl.as_millis().max(1)
}

/// What came after `after` in a channel's history. A channel without an epoch (its history
/// was never written, or expired) reads as an empty history with the empty epoch.
pub(super) async fn read_kept_since(
    conn: &mut Commands,
    keys: &Keys,
    channel: &str,
    after: &Position,
    max: usize,
) -> EngineResult<KeptRead<Resume<Kept>>> {
    let flat: Vec<String> = scripts::KEPT_SINCE
        .key(keys.log(channel))
        .key(keys.epoch(channel))
        .arg(after.id.to_string())
        .arg(max + 1)
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    let empty = |epoch: &str| {
        let log = rules::LogAt {
            epoch,
            resumable_from: None,
            found: false,
        };
        KeptRead {
            found: rules::kept_resume(after, &log, None, Vec::new(), max),
            epoch: epoch.to_string(),
        }
    };
    Ok(match flat.as_slice() {
        [] => return Err(unavailable("empty reply to kept_since")),
        [epoch] => empty(epoch),
        [epoch, boundary, newest, found, entries @ ..] => {
            let log = rules::LogAt {
                epoch,
                resumable_from: super::boundary_of(boundary)?,
                found: found == "1",
            };
            let newest = MessageId::parse(newest).ok();
            KeptRead {
                found: rules::kept_resume(after, &log, newest, parse_kept(entries), max),
                epoch: epoch.clone(),
            }
        }
        _ => return Err(unavailable("short reply to kept_since")),
    })
}

#[async_trait]
impl ChannelHistory for RedisEngine {
    async fn publish_kept(
        &self,
        channel: &str,
        data: &serde_json::Value,
        keep: Retention,
    ) -> EngineResult<MessageId> {
        let _latency = self.timed("publish_kept");
        let name = channel_of(channel).unwrap_or(channel);
        let (prefix, suffix) = publication_around_offset(name, data);
        let mut conn = self.conn();
        let offset: String = scripts::PUBLISH_KEPT
            .key(self.keys.log(channel))
            .key(self.keys.channel(channel))
            .key(self.keys.epoch(channel))
            .arg(keep.size.max(1))
            .arg(data.to_string())
            .arg(Envelope::message_head(None))
            .arg(ttl_ms(keep))
            .arg(epoch_proposal())
            .arg(conn.publish_command())
            .arg(prefix)
            .arg(suffix)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        MessageId::parse(&offset).map_err(|_| unavailable(format!("bad stream id {offset}")))
    }

    async fn recent(&self, channel: &str, limit: usize) -> EngineResult<KeptRead<Vec<Kept>>> {
        let _latency = self.timed("recent");
        let flat: Vec<String> = scripts::KEPT_RECENT
            .key(self.keys.log(channel))
            .key(self.keys.epoch(channel))
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let Some((epoch, entries)) = flat.split_first() else {
            return Err(unavailable("empty reply to recent"));
        };
        let mut found = parse_kept(entries);
        found.reverse();
        Ok(KeptRead {
            epoch: epoch.clone(),
            found,
        })
    }

    async fn kept_since(
        &self,
        channel: &str,
        after: &Position,
        max: usize,
    ) -> EngineResult<KeptRead<Resume<Kept>>> {
        let _latency = self.timed("kept_since");
        read_kept_since(&mut self.conn(), &self.keys, channel, after, max).await
    }
}

//! The memory engine's channel histories: per channel, the kept publications with the
//! offsets Redis would give them, an epoch per incarnation, and the namespace's retention
//! (the newest `size`, for `ttl` after the last publication; then the history and its epoch
//! are gone, so a position from before is never "recovered").

use super::memory::MemoryEngine;
use super::{rules, ChannelHistory, EngineResult, Kept, KeptRead, Position, Resume, Retention};
use crate::engine::now_ms;
use crate::wire::{channel_of, publication};
use app::validate::MessageId;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

pub(super) struct ChannelLog {
    epoch: String,
    kept: VecDeque<Kept>,
    /// The newest offset given in this incarnation (also after trimming).
    last: Option<MessageId>,
    /// The newest offset trimmed away: a resume from before it cannot be exact.
    trimmed_through: Option<MessageId>,
    expires: Instant,
}

/// Every channel's history. A history is made by its first publication and dropped once
/// it expires: reading a channel that keeps nothing creates nothing.
#[derive(Default)]
pub(super) struct ChannelLogs {
    logs: HashMap<String, ChannelLog>,
    /// Expired histories are swept after this many publications.
    since_sweep: u32,
}

/// Publications between sweeps of expired histories.
const SWEEP_EVERY: u32 = 1024;

impl ChannelLogs {
    /// The channel's live history, if it has one (an expired one is dropped).
    fn live(&mut self, channel: &str) -> Option<&ChannelLog> {
        let now = Instant::now();
        if self.logs.get(channel).is_some_and(|log| log.expires <= now) {
            self.logs.remove(channel);
        }
        self.logs.get(channel)
    }

    /// The channel's live history, made (a new incarnation, with a new epoch) when it has
    /// none: only a publication does this.
    fn live_for_writing(&mut self, channel: &str, keep: Retention) -> &mut ChannelLog {
        self.since_sweep += 1;
        let now = Instant::now();
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.logs.retain(|_, log| log.expires > now);
        }
        let log = self
            .logs
            .entry(channel.to_string())
            .or_insert_with(|| ChannelLog::new(keep));
        if log.expires <= now {
            *log = ChannelLog::new(keep);
        }
        log
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.logs.len()
    }
}

impl ChannelLog {
    fn new(keep: Retention) -> Self {
        ChannelLog {
            epoch: super::new_token()[..16].to_string(),
            kept: VecDeque::new(),
            last: None,
            trimmed_through: None,
            expires: Instant::now() + keep.ttl,
        }
    }
}

#[async_trait]
impl ChannelHistory for MemoryEngine {
    async fn publish_kept(
        &self,
        channel: &str,
        data: &serde_json::Value,
        keep: Retention,
    ) -> EngineResult<MessageId> {
        let mut logs = self.channel_logs();
        let log = logs.live_for_writing(channel, keep);
        let offset = rules::next_id(log.last, now_ms());
        log.last = Some(offset);
        log.expires = Instant::now() + keep.ttl;
        log.kept.push_back(Kept {
            offset,
            data: data.clone(),
        });
        while log.kept.len() > keep.size {
            if let Some(trimmed) = log.kept.pop_front() {
                log.trimmed_through = Some(trimmed.offset);
            }
        }
        let frame = publication(channel_of(channel).unwrap_or(channel), data, Some(offset));
        // Under the lock: deliveries leave in offset order.
        self.delivery().deliver(channel, &frame, Some(offset), None);
        Ok(offset)
    }

    async fn recent(&self, channel: &str, limit: usize) -> EngineResult<KeptRead<Vec<Kept>>> {
        let mut logs = self.channel_logs();
        let Some(log) = logs.live(channel) else {
            return Ok(KeptRead {
                epoch: String::new(),
                found: Vec::new(),
            });
        };
        let skip = log.kept.len().saturating_sub(limit);
        Ok(KeptRead {
            epoch: log.epoch.clone(),
            found: log.kept.iter().skip(skip).cloned().collect(),
        })
    }

    async fn kept_since(
        &self,
        channel: &str,
        after: &Position,
        max: usize,
    ) -> EngineResult<KeptRead<Resume<Kept>>> {
        let mut logs = self.channel_logs();
        let Some(log) = logs.live(channel) else {
            let empty = rules::LogAt {
                epoch: "",
                resumable_from: None,
                found: false,
            };
            return Ok(KeptRead {
                found: rules::kept_resume(after, &empty, None, Vec::new(), max),
                epoch: String::new(),
            });
        };
        let newer: Vec<Kept> = log
            .kept
            .iter()
            .filter(|kept| kept.offset > after.id)
            .take(max + 1)
            .cloned()
            .collect();
        let at = rules::LogAt {
            epoch: &log.epoch,
            resumable_from: log.trimmed_through,
            found: log.kept.iter().any(|kept| kept.offset == after.id),
        };
        Ok(KeptRead {
            found: rules::kept_resume(after, &at, log.last, newer, max),
            epoch: log.epoch.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::test_engine as engine;
    use std::time::Duration;

    #[tokio::test]
    async fn reading_channels_that_keep_nothing_creates_nothing() {
        let engine = engine();
        let at = Position {
            epoch: None,
            id: MessageId { ms: 5, seq: 0 },
        };
        for n in 0..100 {
            let channel = format!("#junk{n}");
            let recent = engine.recent(&channel, 10).await.unwrap();
            assert_eq!((recent.epoch.as_str(), recent.found.len()), ("", 0));
            let since = engine.kept_since(&channel, &at, 10).await.unwrap();
            assert_eq!(since.found, Resume::Lost);
        }
        assert_eq!(engine.channel_logs().len(), 0);
        let keep = Retention {
            size: 5,
            ttl: Duration::from_millis(50),
        };
        engine
            .publish_kept("#real", &serde_json::json!(1), keep)
            .await
            .unwrap();
        assert_eq!(engine.channel_logs().len(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let expired = engine.recent("#real", 10).await.unwrap();
        assert_eq!(expired.epoch, "", "the history expired with its epoch");
        assert_eq!(engine.channel_logs().len(), 0, "and is gone");
    }
}

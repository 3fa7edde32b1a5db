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

pub(super) type ChannelLogs = HashMap<String, ChannelLog>;

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

    /// The channel's live history: an expired one is replaced by a new incarnation.
    fn live<'a>(logs: &'a mut ChannelLogs, channel: &str, keep: Retention) -> &'a mut ChannelLog {
        let now = Instant::now();
        let log = logs
            .entry(channel.to_string())
            .or_insert_with(|| ChannelLog::new(keep));
        if log.expires <= now {
            *log = ChannelLog::new(keep);
        }
        log
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
        let log = ChannelLog::live(&mut logs, channel, keep);
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

    async fn recent(
        &self,
        channel: &str,
        limit: usize,
        keep: Retention,
    ) -> EngineResult<KeptRead<Vec<Kept>>> {
        let mut logs = self.channel_logs();
        let log = ChannelLog::live(&mut logs, channel, keep);
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
        keep: Retention,
    ) -> EngineResult<KeptRead<Resume<Kept>>> {
        let mut logs = self.channel_logs();
        let log = ChannelLog::live(&mut logs, channel, keep);
        let newer: Vec<Kept> = log
            .kept
            .iter()
            .filter(|kept| kept.offset > after.id)
            .take(max + 1)
            .cloned()
            .collect();
        Ok(KeptRead {
            found: rules::kept_resume(after, &log.epoch, log.last, log.trimmed_through, newer, max),
            epoch: log.epoch.clone(),
        })
    }
}

//! The memory engine's work queues: per queue its jobs (oldest first, trimmed to the
//! namespace's size), and per group where its new jobs start and which jobs are out with a
//! consumer, since when and how often. The same rules as the Redis consumer groups: a group
//! starts from the oldest job kept; a job out longer than `ack_timeout` is given again; one
//! given `max_deliveries` times is dropped.

use super::memory::MemoryEngine;
use super::{rules, EngineResult, Job, QueueRules, Queues};
use crate::engine::now_ms;
use app::validate::MessageId;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, VecDeque};
use tokio::time::Instant;

#[derive(Default)]
pub(super) struct Queue {
    jobs: VecDeque<(MessageId, serde_json::Value)>,
    last: Option<MessageId>,
    groups: HashMap<String, Group>,
}

pub(super) type QueueMap = HashMap<String, Queue>;

#[derive(Default)]
struct Group {
    /// The newest job given out for the first time (none: start from the oldest).
    cursor: Option<MessageId>,
    /// Jobs given and not done.
    out: BTreeMap<MessageId, Out>,
}

struct Out {
    consumer: String,
    since: Instant,
    deliveries: u32,
}

impl Queue {
    fn data(&self, id: MessageId) -> Option<&serde_json::Value> {
        let at = self.jobs.binary_search_by(|(job, _)| job.cmp(&id)).ok()?;
        Some(&self.jobs[at].1)
    }
}

#[async_trait]
impl Queues for MemoryEngine {
    async fn enqueue(
        &self,
        queue: &str,
        data: &serde_json::Value,
        rules: QueueRules,
    ) -> EngineResult<MessageId> {
        let mut queues = self.queues();
        let queue = queues.entry(queue.to_string()).or_default();
        let id = rules::next_id(queue.last, now_ms());
        queue.last = Some(id);
        queue.jobs.push_back((id, data.clone()));
        while queue.jobs.len() > rules.size {
            queue.jobs.pop_front();
        }
        Ok(id)
    }

    async fn claim(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        count: usize,
        rules: QueueRules,
    ) -> EngineResult<Vec<Job>> {
        let now = Instant::now();
        let mut queues = self.queues();
        let queue = queues.entry(queue.to_string()).or_default();
        let mut state = queue.groups.remove(group).unwrap_or_default();
        let mut given = Vec::new();
        // Jobs whose time ran out, oldest first.
        let overdue: Vec<MessageId> = state
            .out
            .iter()
            .filter(|(_, out)| now.duration_since(out.since) >= rules.ack_timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            if given.len() >= count {
                break;
            }
            let Some(data) = queue.data(id).cloned() else {
                state.out.remove(&id); // trimmed away
                continue;
            };
            let out = state.out.get_mut(&id).expect("listed above");
            if out.deliveries >= rules.max_deliveries {
                tracing::warn!(group, job = %id, deliveries = out.deliveries, "dropping a job nobody finished");
                state.out.remove(&id);
                continue;
            }
            out.deliveries += 1;
            out.since = now;
            out.consumer = consumer.to_string();
            given.push(Job {
                id,
                data,
                attempt: out.deliveries,
            });
        }
        // Then new ones.
        let cursor = state.cursor;
        let new = queue
            .jobs
            .iter()
            .filter(|(id, _)| cursor.is_none_or(|cursor| *id > cursor))
            .take(count - given.len());
        for (id, data) in new {
            state.cursor = Some(*id);
            state.out.insert(
                *id,
                Out {
                    consumer: consumer.to_string(),
                    since: now,
                    deliveries: 1,
                },
            );
            given.push(Job {
                id: *id,
                data: data.clone(),
                attempt: 1,
            });
        }
        queue.groups.insert(group.to_string(), state);
        Ok(given)
    }

    async fn ack(&self, queue: &str, group: &str, id: MessageId) -> EngineResult<bool> {
        let mut queues = self.queues();
        Ok(queues
            .get_mut(queue)
            .and_then(|queue| queue.groups.get_mut(group))
            .is_some_and(|state| state.out.remove(&id).is_some()))
    }

    async fn release(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[MessageId],
        rules: QueueRules,
    ) -> EngineResult<()> {
        let mut queues = self.queues();
        let Some(state) = queues
            .get_mut(queue)
            .and_then(|queue| queue.groups.get_mut(group))
        else {
            return Ok(());
        };
        let due = Instant::now()
            .checked_sub(rules.ack_timeout)
            .unwrap_or_else(Instant::now);
        for id in ids {
            if let Some(out) = state.out.get_mut(id).filter(|out| out.consumer == consumer) {
                out.since = due;
            }
        }
        Ok(())
    }
}

//! The memory engine's work queues: per queue its jobs (oldest first, trimmed to the
//! namespace's size and to what every group is done with), and per group where its new jobs
//! start and which jobs are out with a consumer, since when and how often. The same rules as
//! the Redis consumer groups: a group is made by the first job added after it was listed,
//! and starts with it; a job out longer than `ack_timeout` is given again; one given
//! `max_deliveries` times is dropped; a `done` counts only from the consumer that holds the
//! job, for the delivery it holds.

use super::memory::MemoryEngine;
use super::{rules, EngineResult, Holder, Job, QueueRules, Queues};
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

struct Group {
    /// The newest job given out for the first time, or the newest when the group was made
    /// (none: the queue was empty then).
    cursor: Option<MessageId>,
    /// Jobs given and not done.
    out: BTreeMap<MessageId, Out>,
}

impl Group {
    /// The oldest job the group still needs: its oldest one out, else the first after its
    /// cursor.
    fn needs_from(&self) -> Option<MessageId> {
        let after_cursor = self.cursor.map(|cursor| MessageId {
            ms: cursor.ms,
            seq: cursor.seq + 1,
        });
        match (self.out.keys().next().copied(), after_cursor) {
            (Some(out), Some(next)) => Some(out.min(next)),
            (Some(out), None) => Some(out),
            (None, next) => next,
        }
    }
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

    /// Drops the jobs every group is done with (a group that never gave anything out needs
    /// them all).
    fn trim_done(&mut self) {
        let mut needed = Some(MessageId {
            ms: u64::MAX,
            seq: u64::MAX,
        });
        for group in self.groups.values() {
            needed = match (needed, group.needs_from()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
        }
        if let Some(needed) = needed {
            while self.jobs.front().is_some_and(|(id, _)| *id < needed) {
                self.jobs.pop_front();
            }
        }
    }
}

#[async_trait]
impl Queues for MemoryEngine {
    async fn enqueue(
        &self,
        queue: &str,
        data: &serde_json::Value,
        rules: &QueueRules,
    ) -> EngineResult<MessageId> {
        let mut queues = self.queues();
        let queue = queues.entry(queue.to_string()).or_default();
        for group in rules.groups.iter() {
            let cursor = queue.last;
            queue.groups.entry(group.clone()).or_insert(Group {
                cursor,
                out: BTreeMap::new(),
            });
        }
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
        rules: &QueueRules,
    ) -> EngineResult<Vec<Job>> {
        let now = Instant::now();
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(queue) else {
            return Ok(Vec::new());
        };
        let Some(mut state) = queue.groups.remove(group) else {
            return Ok(Vec::new());
        };
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

    async fn ack(
        &self,
        queue: &str,
        group: &str,
        id: MessageId,
        holder: Holder<'_>,
    ) -> EngineResult<bool> {
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(queue) else {
            return Ok(false);
        };
        let Some(state) = queue.groups.get_mut(group) else {
            return Ok(false);
        };
        let held = state.out.get(&id).is_some_and(|out| {
            out.consumer == holder.consumer
                && holder
                    .attempt
                    .is_none_or(|attempt| attempt == out.deliveries)
        });
        if held {
            state.out.remove(&id);
            queue.trim_done();
        }
        Ok(held)
    }

    async fn release(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[MessageId],
        rules: &QueueRules,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::test_engine as engine;
    use std::time::Duration;

    fn rules(groups: &[&str]) -> QueueRules {
        QueueRules {
            ack_timeout: Duration::from_secs(30),
            max_deliveries: 5,
            size: 100,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn claiming_creates_nothing_and_a_group_starts_with_new_jobs() {
        let engine = engine();
        let one = rules(&["a"]);
        for n in 0..50 {
            let jobs = engine
                .claim(&format!("q{n}"), "a", "c", 5, &one)
                .await
                .unwrap();
            assert!(jobs.is_empty());
        }
        assert_eq!(engine.queues().len(), 0, "claims made nothing");
        engine.enqueue("q", &1.into(), &one).await.unwrap();
        engine.enqueue("q", &2.into(), &one).await.unwrap();
        // `b` is listed from now on: it starts with the next job.
        let both = rules(&["a", "b"]);
        engine.enqueue("q", &3.into(), &both).await.unwrap();
        let data = |jobs: &[Job]| jobs.iter().map(|j| j.data.clone()).collect::<Vec<_>>();
        let a = engine.claim("q", "a", "c", 10, &both).await.unwrap();
        assert_eq!(data(&a), [1, 2, 3].map(serde_json::Value::from));
        let b = engine.claim("q", "b", "c", 10, &both).await.unwrap();
        assert_eq!(data(&b), [serde_json::Value::from(3)]);
        // Done by every group: trimmed.
        for job in &a {
            let holder = Holder {
                consumer: "c",
                attempt: Some(1),
            };
            assert!(engine.ack("q", "a", job.id, holder).await.unwrap());
        }
        assert_eq!(engine.queues()["q"].jobs.len(), 1, "b still needs job 3");
        let late = Holder {
            consumer: "someone else",
            attempt: None,
        };
        assert!(!engine.ack("q", "b", b[0].id, late).await.unwrap());
        let wrong_attempt = Holder {
            consumer: "c",
            attempt: Some(2),
        };
        assert!(!engine.ack("q", "b", b[0].id, wrong_attempt).await.unwrap());
        let holder = Holder {
            consumer: "c",
            attempt: Some(1),
        };
        assert!(engine.ack("q", "b", b[0].id, holder).await.unwrap());
        assert!(engine.queues()["q"].jobs.is_empty());
    }
}

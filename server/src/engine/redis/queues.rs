//! Work queues in Redis: a Stream per queue (`XADD … MAXLEN`), a consumer group per listed
//! worker group (made by the first job added after it was listed, at the stream's end, so
//! it starts with that job), one consumer per instance. Claiming is one script
//! ([`scripts::QUEUE_CLAIM`]): overdue jobs first (`XAUTOCLAIM`), then new ones
//! (`XREADGROUP`); a claim never makes a stream or a group. `done` is one script
//! ([`scripts::QUEUE_ACK`]): `XACK` only if the job is still out with the worker's consumer
//! for the delivery it was given, then `XTRIM MINID` of what every group is done with. A job
//! whose worker went away is handed back at once by setting its idle time past the timeout
//! (`XCLAIM … IDLE … JUSTID`, which does not count a delivery).

use super::{scripts, unavailable, RedisEngine};
use crate::engine::{EngineResult, Holder, Job, QueueRules, Queues};
use app::validate::MessageId;
use async_trait::async_trait;

fn millis(rules: &QueueRules) -> u128 {
    rules.ack_timeout.as_millis().max(1)
}

#[async_trait]
impl Queues for RedisEngine {
    async fn enqueue(
        &self,
        queue: &str,
        data: &serde_json::Value,
        rules: &QueueRules,
    ) -> EngineResult<MessageId> {
        let _latency = self.timed("enqueue");
        let mut script = scripts::QUEUE_ADD.prepare_invoke();
        script
            .key(self.keys.queue(queue))
            .arg(rules.size.max(1))
            .arg(data.to_string());
        for group in rules.groups.iter() {
            script.arg(group);
        }
        let id: String = script
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        MessageId::parse(&id).map_err(|_| unavailable(format!("bad stream id {id}")))
    }

    async fn claim(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        count: usize,
        rules: &QueueRules,
    ) -> EngineResult<Vec<Job>> {
        let _latency = self.timed("claim");
        let flat: Vec<String> = scripts::QUEUE_CLAIM
            .key(self.keys.queue(queue))
            .arg(group)
            .arg(consumer)
            .arg(count.max(1))
            .arg(millis(rules))
            .arg(rules.max_deliveries)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let Some((dropped, rest)) = flat.split_first() else {
            return Err(unavailable("empty reply to claim"));
        };
        let dropped: usize = dropped
            .parse()
            .map_err(|_| unavailable("bad reply to claim"))?;
        let (dropped, entries) = rest.split_at(dropped.min(rest.len()));
        for id in dropped {
            tracing::warn!(
                queue,
                group,
                job = id,
                deliveries = rules.max_deliveries,
                "dropping a job nobody finished"
            );
        }
        Ok(entries
            .chunks_exact(3)
            .filter_map(|entry| {
                let id = MessageId::parse(&entry[0]).ok()?;
                let data = serde_json::from_str(&entry[1])
                    .inspect_err(|err| tracing::warn!(job = entry[0], error = %err, "skipping an unreadable job"))
                    .ok()?;
                Some(Job {
                    id,
                    data,
                    attempt: entry[2].parse().unwrap_or(1),
                })
            })
            .collect())
    }

    async fn ack(
        &self,
        queue: &str,
        group: &str,
        id: MessageId,
        holder: Holder<'_>,
    ) -> EngineResult<bool> {
        let _latency = self.timed("ack");
        let acked: u64 = scripts::QUEUE_ACK
            .key(self.keys.queue(queue))
            .arg(group)
            .arg(id.to_string())
            .arg(holder.consumer)
            .arg(holder.attempt.map(|a| a.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(acked == 1)
    }

    async fn release(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        ids: &[MessageId],
        rules: &QueueRules,
    ) -> EngineResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _latency = self.timed("release");
        let mut command = redis::cmd("XCLAIM");
        command
            .arg(self.keys.queue(queue))
            .arg(group)
            .arg(consumer)
            .arg(0);
        for id in ids {
            command.arg(id.to_string());
        }
        command.arg("IDLE").arg(millis(rules)).arg("JUSTID");
        let _: redis::Value = command
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

//! Worker pools: jobs of a queue namespace go to one worker of each group.
//!
//! On each instance, a *pool* per (queue, group) with workers here holds them and one task
//! that feeds them: it claims as many jobs as the workers have room for (each takes at most
//! its `prefetch` unfinished ones) from the engine's consumer group, as this instance's
//! consumer, and pushes each to the worker with the most room. It claims again when a worker
//! finishes a job or arrives, when a job is added on this instance, and every
//! [`QUEUE_POLL`] (jobs added on other instances, and jobs whose time ran out).
//!
//! Delivery is at least once. A job not done within the namespace's `ack_timeout` is claimed
//! again, by any instance, and given to another worker (its `attempt` grows; its id stays,
//! for deduplication); the first worker's late `done` is then refused (`unknown_job`) and
//! acknowledges nothing: the engine acknowledges a job only for the consumer and delivery
//! that hold it. A worker that disconnects hands its jobs back at once ([`Queues::release`]).
//! A job given `max_deliveries` times is dropped, and logged with its id. A user's workers
//! on an instance hold at most `--max-jobs-per-user` unfinished jobs together.
//!
//! [`Queues::release`]: crate::engine::Queues::release

use super::Node;
use crate::engine::{EngineResult, Holder, Job, QueueRules, Queues};
use crate::hub::Outbox;
use crate::wire::{encode, ConnectionId};
use app::protocol::ServerMsg;
use app::validate::MessageId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// How often a pool with room looks for jobs it was not told about.
pub const QUEUE_POLL: Duration = Duration::from_millis(100);
/// Most unfinished jobs one worker may hold.
pub const PREFETCH_MAX: u32 = 100;

struct Worker {
    conn: ConnectionId,
    /// Whose connection it is: a user's workers together hold at most `max_jobs_per_user`.
    user: String,
    outbox: Outbox,
    prefetch: usize,
    /// The jobs it holds, with the delivery each was (its `attempt`).
    holding: HashMap<MessageId, u32>,
}

/// Why a connection may not become a worker.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyJobs {
    pub max: usize,
}

/// Who asks to work: their connection's outbox, their user, how many jobs at once.
pub struct WorkerOf<'a> {
    pub outbox: &'a Outbox,
    pub user: &'a str,
    pub prefetch: u32,
}

struct Pool {
    rules: QueueRules,
    workers: Vec<Worker>,
    wake: Arc<Notify>,
}

type PoolKey = (String, String);

/// The pools of this instance.
pub struct Workers {
    queues: Arc<dyn Queues>,
    /// This instance's consumer name in every group.
    consumer: String,
    /// Most unfinished jobs (the sum of their prefetch) one user's workers may ask for here.
    max_jobs_per_user: usize,
    // std Mutex: map operations only, never held across an await.
    pools: Mutex<HashMap<PoolKey, Pool>>,
}

impl Workers {
    pub fn new(queues: Arc<dyn Queues>, consumer: String, max_jobs_per_user: usize) -> Arc<Self> {
        Arc::new(Workers {
            queues,
            consumer,
            max_jobs_per_user,
            pools: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, Pool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a worker to its pool (starting the pool's task for its first worker), within
    /// what its user may hold: the prefetch of all their workers here together.
    pub fn add(
        self: &Arc<Self>,
        key: PoolKey,
        conn: ConnectionId,
        worker: WorkerOf<'_>,
        rules: QueueRules,
    ) -> Result<(), TooManyJobs> {
        let mut pools = self.lock();
        let mut asked = 0;
        for (pool_key, pool) in pools.iter() {
            for other in &pool.workers {
                let this_one = other.conn == conn && *pool_key == key;
                if other.user == worker.user && !this_one {
                    asked += other.prefetch;
                }
            }
        }
        if asked + worker.prefetch as usize > self.max_jobs_per_user {
            return Err(TooManyJobs {
                max: self.max_jobs_per_user,
            });
        }
        let pool = pools.entry(key.clone()).or_insert_with(|| {
            let wake = Arc::new(Notify::new());
            tokio::spawn(self.clone().feed(key.clone(), wake.clone()));
            Pool {
                rules,
                workers: Vec::new(),
                wake,
            }
        });
        match pool.workers.iter_mut().find(|w| w.conn == conn) {
            Some(existing) => existing.prefetch = worker.prefetch as usize,
            None => pool.workers.push(Worker {
                conn,
                user: worker.user.to_string(),
                outbox: worker.outbox.clone(),
                prefetch: worker.prefetch as usize,
                holding: HashMap::new(),
            }),
        }
        pool.wake.notify_one();
        Ok(())
    }

    /// A worker says a job is done: true when it held it and it was acknowledged. A job
    /// given to another worker since (on any instance) is no longer this one's, and its
    /// `done` acknowledges nothing; a `done` that cannot reach the engine keeps the job held
    /// (the worker may say it again).
    pub async fn done(
        &self,
        key: &PoolKey,
        conn: ConnectionId,
        id: MessageId,
    ) -> EngineResult<bool> {
        let attempt = {
            let pools = self.lock();
            let worker = pools
                .get(key)
                .and_then(|pool| pool.workers.iter().find(|w| w.conn == conn));
            match worker.and_then(|worker| worker.holding.get(&id)) {
                Some(attempt) => *attempt,
                None => return Ok(false),
            }
        };
        let holder = Holder {
            consumer: &self.consumer,
            attempt: Some(attempt),
        };
        let acked = self.queues.ack(&key.0, &key.1, id, holder).await?;
        if let Some(pool) = self.lock().get_mut(key) {
            if let Some(worker) = pool.workers.iter_mut().find(|w| w.conn == conn) {
                worker.holding.remove(&id);
            }
            pool.wake.notify_one();
        }
        if !acked {
            tracing::info!(queue = key.0, group = key.1, job = %id, attempt, "a late done: the job was given to another worker since");
        }
        Ok(acked)
    }

    /// A connection ends: it leaves its pools, and the jobs it held are handed back.
    pub async fn remove(&self, conn: ConnectionId) {
        let mut handed_back = Vec::new();
        {
            let mut pools = self.lock();
            for (key, pool) in pools.iter_mut() {
                if let Some(at) = pool.workers.iter().position(|w| w.conn == conn) {
                    let worker = pool.workers.swap_remove(at);
                    let held: Vec<MessageId> = worker.holding.into_keys().collect();
                    handed_back.push((key.clone(), held, pool.rules.clone()));
                    pool.wake.notify_one();
                }
            }
        }
        for ((queue, group), held, rules) in handed_back {
            if let Err(err) = self
                .queues
                .release(&queue, &group, &self.consumer, &held, &rules)
                .await
            {
                tracing::warn!(queue, group, error = %err, "could not hand jobs back; they return after their timeout");
            }
        }
    }

    /// A job was added to `queue` here: its pools look now.
    pub fn added(&self, queue: &str) {
        for ((pool_queue, _), pool) in self.lock().iter() {
            if pool_queue == queue {
                pool.wake.notify_one();
            }
        }
    }

    /// Room for jobs in the pool, or None when it has no workers left (it is removed then).
    fn room(&self, key: &PoolKey) -> Option<(usize, QueueRules)> {
        let mut pools = self.lock();
        let pool = pools.get(key)?;
        if pool.workers.is_empty() {
            pools.remove(key);
            return None;
        }
        let room = pool
            .workers
            .iter()
            .map(|w| w.prefetch.saturating_sub(w.holding.len()))
            .sum();
        Some((room, pool.rules.clone()))
    }

    /// Gives claimed jobs to the workers with the most room; what cannot be given (the
    /// workers left meanwhile) is returned, to be handed back.
    fn hand_out(&self, key: &PoolKey, jobs: Vec<Job>) -> Vec<MessageId> {
        let mut pools = self.lock();
        let Some(pool) = pools.get_mut(key) else {
            return jobs.into_iter().map(|job| job.id).collect();
        };
        let mut unplaced = Vec::new();
        for job in jobs {
            // Given again after its time ran out: the worker that had it has it no longer.
            for worker in &mut pool.workers {
                worker.holding.remove(&job.id);
            }
            let worker = pool
                .workers
                .iter_mut()
                .filter(|w| w.holding.len() < w.prefetch)
                .max_by_key(|w| w.prefetch - w.holding.len());
            let Some(worker) = worker else {
                unplaced.push(job.id);
                continue;
            };
            let frame = encode(&ServerMsg::Job {
                channel: key.0.clone(),
                group: key.1.clone(),
                id: job.id.to_string(),
                data: job.data,
                attempt: job.attempt,
            });
            if worker.outbox.send(frame) {
                worker.holding.insert(job.id, job.attempt);
            } else {
                unplaced.push(job.id);
            }
        }
        unplaced
    }

    /// The pool's task: claims while its workers have room, until it has no workers.
    async fn feed(self: Arc<Self>, key: PoolKey, wake: Arc<Notify>) {
        let (queue, group) = (&key.0, &key.1);
        while let Some((room, rules)) = self.room(&key) {
            let mut claimed = 0;
            if room > 0 {
                match self
                    .queues
                    .claim(queue, group, &self.consumer, room, &rules)
                    .await
                {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        let unplaced = self.hand_out(&key, jobs);
                        if !unplaced.is_empty() {
                            if let Err(err) = self
                                .queues
                                .release(queue, group, &self.consumer, &unplaced, &rules)
                                .await
                            {
                                tracing::warn!(queue, group, error = %err, "could not hand jobs back");
                            }
                        }
                    }
                    Err(err) => tracing::warn!(queue, group, error = %err, "could not claim jobs"),
                }
            }
            // More may be waiting right away when the claim filled the room.
            if claimed == 0 || claimed < room {
                let _ = tokio::time::timeout(QUEUE_POLL, wake.notified()).await;
            }
        }
    }
}

impl Node {
    /// Adds a job to `queue` (a channel of a queue namespace); its id.
    pub async fn enqueue(
        &self,
        queue: &str,
        data: &serde_json::Value,
        rules: &QueueRules,
    ) -> EngineResult<MessageId> {
        let id = self.engine.queues.enqueue(queue, data, rules).await?;
        self.workers.added(queue);
        self.hub.metrics().publications.increment(1);
        Ok(id)
    }

    /// The connection becomes a worker of `group` on `queue` (again: with a new prefetch),
    /// unless its user's workers would ask for more unfinished jobs than allowed.
    pub fn work(
        &self,
        conn: ConnectionId,
        worker: WorkerOf<'_>,
        queue: &str,
        group: &str,
        rules: QueueRules,
    ) -> Result<(), TooManyJobs> {
        let key = (queue.to_string(), group.to_string());
        self.workers.add(key, conn, worker, rules)
    }

    /// The worker finished job `id`: false when it does not hold it.
    pub async fn job_done(
        &self,
        conn: ConnectionId,
        queue: &str,
        group: &str,
        id: MessageId,
    ) -> EngineResult<bool> {
        let key = (queue.to_string(), group.to_string());
        self.workers.done(&key, conn, id).await
    }

    /// The connection ends: its jobs are handed back to its groups.
    pub async fn stop_working(&self, conn: ConnectionId) {
        self.workers.remove(conn).await;
    }

    /// Up to `count` jobs for a worker outside this instance's pools (the HTTP API), as
    /// `consumer`; its jobs return after their timeout unless it says they are done.
    pub async fn claim_jobs(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        count: usize,
        rules: &QueueRules,
    ) -> EngineResult<Vec<Job>> {
        self.engine
            .queues
            .claim(queue, group, consumer, count, rules)
            .await
    }

    /// Acknowledges a job for a worker outside this instance's pools: false when it is not
    /// pending with `holder`.
    pub async fn ack_job(
        &self,
        queue: &str,
        group: &str,
        id: MessageId,
        holder: Holder<'_>,
    ) -> EngineResult<bool> {
        let acked = self.engine.queues.ack(queue, group, id, holder).await?;
        if let Some(pool) = self
            .workers
            .lock()
            .get(&(queue.to_string(), group.to_string()))
        {
            pool.wake.notify_one();
        }
        Ok(acked)
    }
}

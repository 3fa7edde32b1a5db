//! The instance's one pub/sub connection, owned by one task, and the guarantee that what it
//! misses is never lost silently.
//!
//! Subscriptions follow the instance's local rooms: a request to "sync" a room makes the task
//! subscribe when the room is wanted ([`LocalDelivery::is_wanted`]) and is not subscribed, or
//! unsubscribe when it is not wanted and is. Because the task reads that state when it handles
//! the request, joins and leaves that race each other always end in the right state. The
//! commands are sent without waiting for their answers ([`super::subscriptions`]): one room's
//! slow or failed subscription holds up no other room, and fails only its own requests.
//!
//! A delivery is an [`Envelope`]: the frame is handed to [`LocalDelivery`] as is, once per
//! instance, skipping the origin connection when it is one of ours. Chat messages carry their
//! id, and the local side drops any it was already given.
//!
//! Whenever the subscription may have missed something the task *catches up* before it
//! delivers anything newer: after a reconnect (the connection failed, or the probe found it
//! wedged) it subscribes every wanted room again and, per room, reads the Stream after the
//! newest message the room's members have ([`LocalDelivery::catch_up_from`]) and delivers
//! what is missing, in order. When that cannot be exact (more than the resume window missed,
//! history trimmed past it, or the log no longer holds the position because Redis lost its
//! data) the room's members are told to resume ([`LocalDelivery::resync`]): never nothing.
//!
//! The *liveness probe* checks the path end to end: every `probe_interval` the task publishes
//! a numbered probe on its own channel through the command connection and expects it back on
//! the subscriber. A probe not back within `probe_timeout` marks the instance unhealthy
//! (`/health` 503 with the reason), drops the connection and reconnects (then catches up).
//! The mark is cleared by the next probe that comes back.
//!
//! In a Redis Cluster the session subscribes with `SSUBSCRIBE` ([`super::pubsub`]). A node's
//! connection dropping, or a slot moving to another node (Redis ends its channels'
//! subscriptions), replaces the session exactly like a lost connection: subscribe everything
//! again where the cluster says it lives now, then catch up. The probe travels through the
//! node that owns the probe channel's slot; the other nodes' connections are watched by
//! their disconnections.
//!
//! The task also listens, always, on the control channel: `session-ended:<id>` closes the
//! local sockets of a session that was ended on any instance. Orders sent while the
//! connection was down are caught up after reconnecting, from the ended sessions' tombstones.

use super::channels::read_kept_since;
use super::commands::Commands;
use super::evacuation;
use super::pubsub::{Event, Session, Source};
use super::subscriptions::Subscriptions;
use super::{read_since, Keys};
use crate::engine::{
    CatchUpFrom, EngineError, EngineResult, LocalDelivery, Position, Resume, SessionId,
};
use crate::wire::{channel_of, encode, publication, skip_for, Envelope};
use app::protocol::ServerMsg;
use app::validate::MessageId;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant, Sleep};

/// Sync requests waiting for the task; joins beyond this wait for room in the queue.
const REQUEST_QUEUE: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Control message: a session ended (followed by its id).
pub const SESSION_ENDED: &str = "session-ended:";
/// How long an ended session's tombstone is kept: pub/sub outages shorter than this miss no
/// sign-out.
pub const ENDED_TOMBSTONE: Duration = Duration::from_secs(600);

/// What the task talks to.
pub struct Link {
    pub source: Source,
    /// The engine's command connection: probes and catch-up reads go through it.
    pub commands: Commands,
    pub keys: Keys,
    pub server_id: String,
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// Most messages one room's catch-up delivers; past it the room resyncs.
    pub resume_max: usize,
    /// Longest connecting and subscribing may take before the attempt counts as failed.
    pub setup_timeout: Duration,
}

struct Sync {
    room: String,
    done: oneshot::Sender<EngineResult<()>>,
}

/// What `/health` shows of the pub/sub path.
#[derive(Default)]
struct Status {
    connected: AtomicBool,
    // Written by the task when a probe is missed and cleared when one comes back; read by
    // `/health`. Never held across an await.
    problem: Mutex<Option<String>>,
    reconnects: AtomicU64,
    probes_missed: AtomicU64,
    caught_up: AtomicU64,
    resyncs: AtomicU64,
}

impl Status {
    fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }
    fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl evacuation::PathHealth for Status {
    fn path_works(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.problem().is_none()
    }
}

pub struct Subscriber {
    requests: mpsc::Sender<Sync>,
    status: Arc<Status>,
}

impl Subscriber {
    pub fn start(link: Link, settings: Settings, delivery: Arc<dyn LocalDelivery>) -> Self {
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
        let status = Arc::new(Status::default());
        let task = Task {
            control: link.keys.control(),
            probe_channel: link.keys.probe(&link.server_id),
            link,
            settings,
            delivery,
            queue,
            status: status.clone(),
            probe_seq: 0,
        };
        let health: Arc<dyn evacuation::PathHealth> = status.clone();
        evacuation::watch(
            Arc::downgrade(&health),
            task.link.commands.clone(),
            task.delivery.clone(),
            settings.probe_interval,
        );
        tokio::spawn(task.run());
        Subscriber { requests, status }
    }

    /// Brings the room's subscription in line with the local rooms, and waits until it is.
    pub async fn sync(&self, room: &str) -> EngineResult<()> {
        let (done, result) = oneshot::channel();
        let request = Sync {
            room: room.to_string(),
            done,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| EngineError::Unavailable("subscriber stopped".into()))?;
        result
            .await
            .unwrap_or_else(|_| Err(EngineError::Unavailable("subscriber stopped".into())))
    }

    /// Ok while the pub/sub path delivers; else why not.
    pub fn health(&self) -> Result<(), String> {
        if let Some(problem) = self.status.problem() {
            return Err(problem);
        }
        if !self.status.connected.load(Ordering::Relaxed) {
            return Err("redis pub/sub connection is down".into());
        }
        Ok(())
    }

    pub fn stats(&self) -> serde_json::Value {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "reconnects": count(&self.status.reconnects),
            "probesMissed": count(&self.status.probes_missed),
            "caughtUp": count(&self.status.caught_up),
            "resyncs": count(&self.status.resyncs),
        })
    }
}

/// Why a connection's life ended.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("pub/sub stream ended")]
    Ended,
    #[error("connecting or subscribing took longer than {0:?}")]
    SetupTimedOut(Duration),
    #[error("probe {0} not received within {1:?}: the connection is wedged")]
    Wedged(u64, Duration),
    #[error("{0}")]
    Gap(&'static str),
    #[error("redis ended the subscription to {0} (its slot moved)")]
    Moved(String),
}

struct Task {
    link: Link,
    settings: Settings,
    /// `P:control`: cluster-wide orders.
    control: String,
    /// `P:probe:{sid}`: this instance's liveness probes.
    probe_channel: String,
    delivery: Arc<dyn LocalDelivery>,
    queue: mpsc::Receiver<Sync>,
    status: Arc<Status>,
    probe_seq: u64,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut reconnecting = false;
        loop {
            match self.connection(reconnecting).await {
                Ok(()) => return, // every Subscriber handle is gone: the engine was dropped
                Err(err) => {
                    if reconnecting {
                        self.status.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    reconnecting = true;
                    // A connection that was up starts the backoff over; failed attempts grow it.
                    if self.status.connected.swap(false, Ordering::Relaxed) {
                        backoff = BACKOFF_MIN;
                    }
                    tracing::warn!(error = %err, retry_in = ?backoff, "redis pub/sub connection lost");
                    if matches!(err, Lost::Wedged(..)) {
                        // A wedged connection is replaced at once; it said nothing about Redis.
                        backoff = BACKOFF_MIN;
                        continue;
                    }
                }
            }
            // While disconnected, joins are answered at once rather than left hanging.
            let deadline = Instant::now() + backoff;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    request = self.queue.recv() => match request {
                        Some(request) => {
                            let _ = request.done.send(Err(EngineError::Unavailable("redis pub/sub is reconnecting".into())));
                        }
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: subscribe what is wanted, catch up, then serve deliveries,
    /// sync requests and probes until the connection fails (`Err`) or the engine is gone
    /// (`Ok`).
    async fn connection(&mut self, reconnecting: bool) -> Result<(), Lost> {
        let setup_timeout = self.settings.setup_timeout;
        let rooms = self.delivery.wanted_rooms();
        let setup = async {
            let mut session = Session::open(&self.link.source).await?;
            session
                .subscribe(&[self.control.clone(), self.probe_channel.clone()])
                .await?;
            let channels: Vec<String> = rooms.iter().map(|r| self.link.keys.channel(r)).collect();
            session.subscribe(&channels).await?;
            Ok::<_, redis::RedisError>(session)
        };
        let mut session = timeout(setup_timeout, setup)
            .await
            .map_err(|_| Lost::SetupTimedOut(setup_timeout))??;
        let mut subscriptions = Subscriptions::new(session.commander(), setup_timeout, &rooms);
        // Subscribed first, then read: whatever was published in between arrives live too,
        // and the local side drops it as already given.
        if reconnecting {
            for room in &rooms {
                self.catch_up(room).await?;
            }
        }
        self.status.connected.store(true, Ordering::Relaxed);
        tracing::info!(rooms = subscriptions.len(), "redis pub/sub connected");
        if reconnecting {
            self.link.metrics.pubsub_reconnects.increment(1);
            let (commands, keys, delivery) = (
                self.link.commands.clone(),
                self.link.keys.clone(),
                self.delivery.clone(),
            );
            tokio::spawn(async move {
                if let Err(err) = close_missed_sessions(commands, keys, delivery).await {
                    tracing::warn!(error = %err, "could not check for sign-outs missed while disconnected");
                }
            });
        }
        // The first probe goes out at once, so a mark from a wedge clears as soon as the new
        // connection proves itself.
        let mut next_probe = tokio::time::interval(self.settings.probe_interval);
        next_probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The number of the probe in flight, and when it must be back.
        let mut in_flight: Option<u64> = None;
        let probe_deadline = tokio::time::sleep(self.settings.probe_timeout);
        tokio::pin!(probe_deadline);
        loop {
            tokio::select! {
                event = session.next() => match event {
                    Some(Event::Message(message)) => self.receive(&message, &mut in_flight),
                    Some(Event::Gap(why)) => return Err(Lost::Gap(why)),
                    // A slot moved (migration, failover). Subscribing again on this session
                    // could reach the old owner, now a replica, through the session's stale
                    // slot map; a new session asks the cluster where slots are now, and
                    // catches every room up.
                    Some(Event::Dropped(channel)) if self.still_wanted(&mut subscriptions, &channel) => {
                        return Err(Lost::Moved(channel));
                    }
                    Some(Event::Dropped(_)) => {}
                    None => return Err(Lost::Ended),
                },
                request = self.queue.recv() => {
                    let Some(request) = request else { return Ok(()) };
                    let wanted = self.delivery.is_wanted(&request.room);
                    let channel = self.link.keys.channel(&request.room);
                    subscriptions.sync(request.room, channel, wanted, request.done).await;
                }
                done = subscriptions.next_done() => subscriptions.finish(done),
                _ = next_probe.tick(), if in_flight.is_none() => {
                    in_flight = Some(self.send_probe(probe_deadline.as_mut()));
                }
                () = &mut probe_deadline, if in_flight.is_some() => {
                    let seq = in_flight.take().unwrap_or_default();
                    let timeout = self.settings.probe_timeout;
                    self.status.probes_missed.fetch_add(1, Ordering::Relaxed);
                    self.link.metrics.pubsub_probe_failures.increment(1);
                    self.status.set_problem(Some(format!(
                        "redis pub/sub probe not received within {} ms; replacing the connection",
                        timeout.as_millis()
                    )));
                    return Err(Lost::Wedged(seq, timeout));
                }
            }
        }
    }

    /// Publishes the next probe through the command connection (in its own task, so a slow
    /// Redis never stalls deliveries) and sets the deadline by which it must be back.
    fn send_probe(&mut self, deadline: Pin<&mut Sleep>) -> u64 {
        self.probe_seq += 1;
        let seq = self.probe_seq;
        let mut commands = self.link.commands.clone();
        let channel = self.probe_channel.clone();
        tokio::spawn(async move {
            if let Err(err) = commands.publish_on(&channel, seq).await {
                tracing::debug!(error = %err, "could not publish a pub/sub probe");
            }
        });
        deadline.reset(Instant::now() + self.settings.probe_timeout);
        seq
    }

    /// Whether a subscription Redis ended matters: a room still subscribed (not the
    /// confirmation of our own unsubscribe), or one of the instance's own channels.
    fn still_wanted(&self, subscriptions: &mut Subscriptions, channel: &str) -> bool {
        match self.link.keys.room_of_channel(channel) {
            Some(room) => subscriptions.dropped_unexpectedly(room),
            None => channel == self.control || channel == self.probe_channel,
        }
    }

    /// Delivers, in order, what the room's members missed while the subscription was not
    /// delivering, or has them resync when that cannot be exact.
    async fn catch_up(&mut self, room: &str) -> EngineResult<()> {
        if let Some(name) = channel_of(room) {
            return self.catch_up_channel(room, name).await;
        }
        let from = match self.delivery.catch_up_from(room) {
            CatchUpFrom::Nothing => return Ok(()),
            CatchUpFrom::Start => MessageId { ms: 0, seq: 0 },
            CatchUpFrom::After(id) => id,
        };
        // No epoch: the log proves the position (the message is in it, or it is the start of
        // a log that lost nothing), which a log Redis made anew after losing its data never
        // does.
        let position = Position {
            epoch: None,
            id: from,
        };
        let keys = &self.link.keys;
        let mut commands = self.link.commands.clone();
        let read = read_since(
            &mut commands,
            keys,
            room,
            &position,
            self.settings.resume_max,
        )
        .await?;
        match read.resume {
            Resume::Recovered(messages) => {
                let mut delivered = 0u64;
                for (message, origin) in messages.into_iter().zip(read.origins) {
                    let Ok(id) = MessageId::parse(&message.id) else {
                        continue;
                    };
                    let skip = skip_for(origin.as_deref(), &self.link.server_id);
                    let frame = encode(&ServerMsg::Message(message));
                    if self.delivery.deliver(room, &frame, Some(id), skip) > 0 {
                        delivered += 1;
                    }
                }
                if delivered > 0 {
                    tracing::info!(room, messages = delivered, "caught up after a pub/sub gap");
                    self.status
                        .caught_up
                        .fetch_add(delivered, Ordering::Relaxed);
                }
            }
            Resume::Lost => {
                self.status.resyncs.fetch_add(1, Ordering::Relaxed);
                self.delivery.resync(room);
            }
        }
        Ok(())
    }

    /// A channel's catch-up: as a room's, from the channel's kept publications. A channel
    /// that keeps nothing has nothing to catch up, unless its subscribers were given
    /// publications from a history that is gone since: they resync.
    async fn catch_up_channel(&mut self, key: &str, name: &str) -> EngineResult<()> {
        let from = match self.delivery.catch_up_from(key) {
            CatchUpFrom::Nothing => return Ok(()),
            CatchUpFrom::Start => None,
            CatchUpFrom::After(id) => Some(id),
        };
        let position = Position {
            epoch: None,
            id: from.unwrap_or(MessageId { ms: 0, seq: 0 }),
        };
        let mut commands = self.link.commands.clone();
        let read = read_kept_since(
            &mut commands,
            &self.link.keys,
            key,
            &position,
            self.settings.resume_max,
        )
        .await?;
        match read.found {
            Resume::Recovered(kept) => {
                let mut delivered = 0u64;
                for kept in kept {
                    let frame = publication(name, &kept.data, Some(kept.offset));
                    if self.delivery.deliver(key, &frame, Some(kept.offset), None) > 0 {
                        delivered += 1;
                    }
                }
                if delivered > 0 {
                    tracing::info!(
                        channel = name,
                        publications = delivered,
                        "caught up after a pub/sub gap"
                    );
                    self.status
                        .caught_up
                        .fetch_add(delivered, Ordering::Relaxed);
                }
            }
            Resume::Lost => {
                self.status.resyncs.fetch_add(1, Ordering::Relaxed);
                self.delivery.resync(key);
            }
        }
        Ok(())
    }

    fn receive(&self, message: &redis::Msg, in_flight: &mut Option<u64>) {
        let channel = message.get_channel_name();
        if channel == self.control {
            return self.obey(message.get_payload_bytes());
        }
        if channel == self.probe_channel {
            let seq: Option<u64> = message.get_payload().ok();
            if in_flight.is_some() && *in_flight == seq {
                *in_flight = None;
                if self.status.problem().is_some() {
                    tracing::info!("redis pub/sub probe received again: healthy");
                    self.status.set_problem(None);
                }
            }
            return;
        }
        let Some(room) = self.link.keys.room_of_channel(channel) else {
            return;
        };
        match Envelope::decode(message.get_payload_bytes()) {
            Ok(Envelope {
                to: Some(user),
                frame,
                ..
            }) => {
                self.delivery.deliver_to_user(room, user, &frame);
            }
            Ok(envelope) => {
                let skip = envelope.skip_on(&self.link.server_id);
                self.delivery
                    .deliver(room, &envelope.frame, envelope.message, skip);
            }
            Err(err) => {
                tracing::warn!(room, error = %err, "dropping an unreadable pub/sub payload")
            }
        }
    }

    fn obey(&self, order: &[u8]) {
        let order = String::from_utf8_lossy(order);
        match order.strip_prefix(SESSION_ENDED) {
            Some(id) => {
                let Some(id) = SessionId::from_hex(id) else {
                    return tracing::warn!(%order, "ignoring a malformed control message");
                };
                let closed = self.delivery.close_session(&id);
                if closed > 0 {
                    tracing::info!(
                        connections = closed,
                        "closed the sockets of an ended session"
                    );
                }
            }
            None => tracing::warn!(%order, "ignoring an unknown control message"),
        }
    }
}

/// Closes local sockets of sessions ended while the pub/sub connection was down (their
/// tombstones say so). After Redis lost its data there are no tombstones, and no socket is
/// closed for that reason alone.
async fn close_missed_sessions(
    mut commands: Commands,
    keys: Keys,
    delivery: Arc<dyn LocalDelivery>,
) -> redis::RedisResult<()> {
    let sessions = delivery.session_ids();
    if sessions.is_empty() {
        return Ok(());
    }
    // MGET: in a cluster the crate splits it by slot.
    let tombstones: Vec<String> = sessions.iter().map(|id| keys.ended(id)).collect();
    let ended: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&tombstones)
        .query_async(&mut commands)
        .await?;
    for (id, _) in sessions
        .iter()
        .zip(ended)
        .filter(|(_, ended)| ended.is_some())
    {
        let closed = delivery.close_session(id);
        tracing::info!(
            connections = closed,
            "closed the sockets of a session ended while disconnected"
        );
    }
    Ok(())
}

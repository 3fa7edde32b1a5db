//! Which rooms the pub/sub session is subscribed to, kept in line with the instance's local
//! rooms without ever making the subscriber task wait for Redis.
//!
//! Each sync request is decided at once: when the room is wanted and not subscribed, a
//! `SUBSCRIBE` is sent; when it is subscribed and no longer wanted, an `UNSUBSCRIBE`; and
//! the request is answered when the room has no command in flight any more. Commands go out
//! in the order they are decided (each is sent by its first poll, here) and may be in flight
//! together, while the task goes on delivering messages and answering other rooms' requests.
//!
//! Why: the task used to wait for each command's reply, and then for a read of the room's
//! epoch, before it looked at the next request. A client cycling subscriptions to unique
//! channel names (from many connections) kept every other first join waiting behind a queue
//! of round trips. And a command that failed (a channel this instance may not subscribe to,
//! a cluster node that does not answer) tore down the whole session, with a reconnect and a
//! catch-up of every room; now it fails only the requests that were waiting for it.

use super::pubsub::Commander;
use crate::engine::{EngineError, EngineResult};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::oneshot;

type Reply = oneshot::Sender<EngineResult<()>>;

/// What a command that finished did: its room, and whether it worked.
pub struct Done {
    room: String,
    subscribe: bool,
    result: redis::RedisResult<()>,
}

type InFlight = Pin<Box<dyn Future<Output = Done> + Send>>;

/// The session's subscriptions (rooms, by name) and the commands on their way.
pub struct Subscriptions {
    commander: Commander,
    /// How long a command may take: then it counts as failed.
    timeout: Duration,
    /// Rooms whose last command sent was `SUBSCRIBE` (as they will be once it is done).
    subscribed: HashSet<String>,
    /// Commands sent and not yet answered, per room.
    pending: HashMap<String, u32>,
    /// `UNSUBSCRIBE`s whose confirmation a cluster has not pushed yet, per room: that push
    /// is no slot moving away. (One Redis reports no dropped subscriptions: nothing kept.)
    unsubscribing: HashMap<String, u32>,
    /// Whether Redis confirms an `UNSUBSCRIBE` with a push the session reports (a cluster's
    /// `sunsubscribe`).
    confirms_unsubscribe: bool,
    /// Requests answered when their room has no command in flight.
    waiting: HashMap<String, Vec<Reply>>,
    in_flight: FuturesUnordered<InFlight>,
}

impl Subscriptions {
    /// The session's state after it subscribed `rooms` while it was set up.
    pub fn new(commander: Commander, timeout: Duration, rooms: &[String]) -> Self {
        Subscriptions {
            confirms_unsubscribe: matches!(commander, Commander::Cluster(_)),
            commander,
            timeout,
            subscribed: rooms.iter().cloned().collect(),
            pending: HashMap::new(),
            unsubscribing: HashMap::new(),
            waiting: HashMap::new(),
            in_flight: FuturesUnordered::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.subscribed.len()
    }

    /// Whether Redis ending `room`'s subscription is news: not the confirmation of an
    /// `UNSUBSCRIBE` of ours.
    pub fn dropped_unexpectedly(&mut self, room: &str) -> bool {
        if let Some(count) = self.unsubscribing.get_mut(room) {
            *count -= 1;
            if *count == 0 {
                self.unsubscribing.remove(room);
            }
            return false;
        }
        self.subscribed.contains(room)
    }

    /// Brings `room` in line with `wanted`, sending a command if needed, and answers `reply`
    /// once the room has no command in flight.
    pub async fn sync(&mut self, room: String, channel: String, wanted: bool, reply: Reply) {
        if wanted != self.subscribed.contains(&room) {
            if wanted {
                self.subscribed.insert(room.clone());
            } else {
                self.subscribed.remove(&room);
                if self.confirms_unsubscribe {
                    *self.unsubscribing.entry(room.clone()).or_default() += 1;
                }
            }
            self.send(room.clone(), channel, wanted).await;
        }
        if self.pending.contains_key(&room) {
            self.waiting.entry(room).or_default().push(reply);
        } else {
            let _ = reply.send(Ok(()));
        }
    }

    /// Sends the command now (its first poll sends it, so commands leave in the order they
    /// are decided) and keeps it until it is answered.
    async fn send(&mut self, room: String, channel: String, subscribe: bool) {
        *self.pending.entry(room.clone()).or_default() += 1;
        let commander = self.commander.clone();
        let limit = self.timeout;
        let mut command: InFlight = Box::pin(async move {
            let sent = async {
                if subscribe {
                    commander.subscribe(channel).await
                } else {
                    commander.unsubscribe(channel).await
                }
            };
            let result = match tokio::time::timeout(limit, sent).await {
                Ok(result) => result,
                Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {limit:?}"),
                ))),
            };
            Done {
                room,
                subscribe,
                result,
            }
        });
        match futures::poll!(command.as_mut()) {
            std::task::Poll::Ready(done) => self.finish(done),
            std::task::Poll::Pending => self.in_flight.push(command),
        }
    }

    /// The next command to be answered; pending for ever while none is in flight (a
    /// `select!` arm).
    pub async fn next_done(&mut self) -> Done {
        match self.in_flight.next().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }

    /// A command was answered: the room's waiting requests are answered once it has none
    /// in flight. A failed `SUBSCRIBE` leaves the room unsubscribed (a later request sends
    /// it again) and fails those requests; the session goes on.
    pub fn finish(&mut self, done: Done) {
        let Done {
            room,
            subscribe,
            result,
        } = done;
        let left = match self.pending.get_mut(&room) {
            Some(count) => {
                *count = count.saturating_sub(1);
                *count
            }
            None => 0,
        };
        if let Err(err) = &result {
            tracing::warn!(room, subscribe, error = %err, "a pub/sub subscription change failed");
            if subscribe {
                self.subscribed.remove(&room);
            }
        }
        if left > 0 {
            return;
        }
        self.pending.remove(&room);
        for reply in self.waiting.remove(&room).unwrap_or_default() {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(err) => Err(EngineError::Unavailable(format!(
                    "could not subscribe to the room's channel: {err}"
                ))),
            };
            let _ = reply.send(answer);
        }
    }
}

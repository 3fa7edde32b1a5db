//! Who came and who went, announced after a grace (`--presence-grace-ms`).
//!
//! Presence itself (who is in a room or channel now, the lists in answers and the HTTP API)
//! changes at once; only the events that tell others about it wait. A change is announced
//! when it has lasted the grace: a join followed by a leave within it (a page reload, a
//! flaky network, a client cycling join and leave) announces nothing, and neither does a
//! leave followed by a join. Before, 2,000 join/leave pairs from one guest gave every member
//! of the room 4,002 events.
//!
//! The bookkeeping is this instance's: a change here cancels the opposite change still
//! pending here. A user who leaves on one instance and comes back on another within the
//! grace is announced as left and joined again; clients treat both events as updates of a
//! set, so a repeated one changes nothing. Announcements still pending when the instance
//! shuts down go out at once ([`Announcements::flush`]).

use crate::engine::Broker;
use crate::wire::{ConnectionId, Frame};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What changed about a user in a room or channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Joined,
    Left,
}

struct Pending {
    change: Change,
    event: Frame,
    /// The connection that caused it, which is not told about itself.
    origin: Option<ConnectionId>,
    /// Which of the changes of this (room, user) it is: the timer of a cancelled one finds a
    /// newer number, or nothing, and publishes nothing.
    number: u64,
}

type Key = (String, String);

/// The changes waiting for their grace to pass.
pub struct Announcements {
    grace: Duration,
    broker: Arc<dyn Broker>,
    // std Mutex: map operations only, never held across an await.
    pending: Mutex<(HashMap<Key, Pending>, u64)>,
}

impl Announcements {
    pub fn new(grace: Duration, broker: Arc<dyn Broker>) -> Arc<Self> {
        Arc::new(Announcements {
            grace,
            broker,
            pending: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (HashMap<Key, Pending>, u64)> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `user` joined or left `key` (a room, or a channel's hub key): announced with `event`
    /// once the grace has passed, unless the opposite change comes first.
    pub async fn changed(
        self: &Arc<Self>,
        key: &str,
        user: &str,
        change: Change,
        event: Frame,
        origin: Option<ConnectionId>,
    ) {
        if self.grace.is_zero() {
            return self.publish(key, event, origin).await;
        }
        let id = (key.to_string(), user.to_string());
        let number = {
            let mut guard = self.lock();
            let (pending, next) = &mut *guard;
            if let Some(earlier) = pending.get(&id) {
                if earlier.change != change {
                    // Back within the grace: as if nothing happened.
                    pending.remove(&id);
                    return;
                }
            }
            *next += 1;
            pending.insert(
                id.clone(),
                Pending {
                    change,
                    event,
                    origin,
                    number: *next,
                },
            );
            *next
        };
        let announcements = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(announcements.grace).await;
            let due = {
                let mut guard = announcements.lock();
                match guard.0.get(&id) {
                    Some(pending) if pending.number == number => guard.0.remove(&id),
                    _ => None,
                }
            };
            if let Some(due) = due {
                announcements.publish(&id.0, due.event, due.origin).await;
            }
        });
    }

    /// Publishes every pending announcement now (the instance is shutting down).
    pub async fn flush(&self) {
        let pending: Vec<(Key, Pending)> = self.lock().0.drain().collect();
        for ((key, _), pending) in pending {
            self.publish(&key, pending.event, pending.origin).await;
        }
    }

    async fn publish(&self, key: &str, event: Frame, origin: Option<ConnectionId>) {
        if let Err(err) = self.broker.publish(key, event, origin).await {
            tracing::warn!(room = key, error = %err, "could not announce a presence change");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineResult;
    use async_trait::async_trait;

    /// Remembers what was published.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait]
    impl Broker for Recorder {
        async fn publish(
            &self,
            _: &str,
            frame: Frame,
            _: Option<ConnectionId>,
        ) -> EngineResult<()> {
            self.0.lock().unwrap().push(frame.to_string());
            Ok(())
        }
        async fn publish_to_user(&self, _: &str, _: &str, _: Frame) -> EngineResult<()> {
            Ok(())
        }
        async fn subscribe(&self, _: &str) -> EngineResult<()> {
            Ok(())
        }
        async fn unsubscribe(&self, _: &str) -> EngineResult<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_undone_within_the_grace_announces_nothing() {
        let recorder = Arc::new(Recorder::default());
        let announcements = Announcements::new(Duration::from_secs(1), recorder.clone());
        let frame = |text: &str| Frame::from(text.to_string());
        announcements
            .changed("r", "u", Change::Joined, frame("joined"), None)
            .await;
        announcements
            .changed("r", "u", Change::Left, frame("left"), None)
            .await;
        announcements
            .changed("r", "v", Change::Joined, frame("v joined"), None)
            .await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(*recorder.0.lock().unwrap(), ["v joined"]);
        announcements
            .changed("r", "v", Change::Left, frame("v left"), None)
            .await;
        announcements.flush().await;
        assert_eq!(*recorder.0.lock().unwrap(), ["v joined", "v left"]);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(recorder.0.lock().unwrap().len(), 2, "flushed once");
    }
}

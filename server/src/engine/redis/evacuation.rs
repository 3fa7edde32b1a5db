//! When the pub/sub path stays broken, this instance's clients are sent elsewhere.
//!
//! The subscriber replaces a lost or wedged pub/sub connection at once and catches every room
//! up, and `/health` says 503 meanwhile (so a load balancer stops sending new clients). But
//! the clients already here hear nothing for as long as it lasts: when every replacement is
//! wedged too (a broken proxy in the way, a network blackhole towards one node), that is for
//! ever. So once the path has been broken for [`EVACUATE_AFTER_PROBES`] probe intervals
//! while Redis itself answered commands (other instances, with a working path, can
//! deliver), the local members of every room and channel are closed with 4004
//! (`close::UNHEALTHY`): they reconnect (to another instance, as the load balancer now
//! prefers) and resume from where they were. Members who join while it lasts are sent on
//! the same way. When Redis itself does not answer, every instance is in the same state and
//! closing clients would only move them around: sends are refused (`unavailable`) instead.

use super::commands::Commands;
use crate::engine::LocalDelivery;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Probe intervals the pub/sub path may stay broken before local clients are sent away.
pub const EVACUATE_AFTER_PROBES: u32 = 2;

/// What the watch needs to know: whether the path works now ([`super::subscriber`]'s
/// status, gone when the engine is).
pub trait PathHealth: Send + Sync {
    fn path_works(&self) -> bool;
}

/// Watches the path every half probe interval until the engine is gone.
pub fn watch(
    health: Weak<dyn PathHealth>,
    mut commands: Commands,
    delivery: Arc<dyn LocalDelivery>,
    probe_interval: Duration,
) {
    tokio::spawn(async move {
        let bound = probe_interval * EVACUATE_AFTER_PROBES;
        let mut tick = tokio::time::interval((probe_interval / 2).max(Duration::from_millis(25)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut broken_since: Option<Instant> = None;
        loop {
            tick.tick().await;
            let Some(health) = health.upgrade() else {
                return;
            };
            if health.path_works() {
                broken_since = None;
                continue;
            }
            // The time counts only while Redis answers: an outage of Redis itself is every
            // instance's, and moving clients around would not help.
            let redis_answers = redis::cmd("PING")
                .query_async::<String>(&mut commands)
                .await
                .is_ok();
            if !redis_answers {
                broken_since = None;
                continue;
            }
            let since = *broken_since.get_or_insert_with(Instant::now);
            if since.elapsed() < bound {
                continue;
            }
            let rooms = delivery.wanted_rooms();
            if rooms.is_empty() {
                continue;
            }
            tracing::warn!(
                rooms = rooms.len(),
                broken_for = ?since.elapsed(),
                "the pub/sub path has been broken too long: sending this instance's clients elsewhere"
            );
            for room in rooms {
                delivery.evacuate(&room);
            }
        }
    });
}

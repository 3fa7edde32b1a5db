//! The live dashboard's feed: every instance publishes its figures ([`crate::stats`]) once
//! a second on [`STATS_CHANNEL`], where operators' pages (and anything else an operator
//! signs in) add them up.

use crate::state::AppState;
use crate::stats::STATS_CHANNEL;
use std::time::Duration;

/// Publishes this instance's figures every second until the task is dropped.
pub async fn publish_every_second(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let hub = state.hub();
        let second = hub.stats().take_second();
        let health = state.engine().lifecycle.health().await;
        let data = serde_json::json!({
            "serverId": state.server_id(),
            "engine": state.engine().kind,
            "connections": hub.connection_count(),
            "rooms": hub.room_count(),
            "messagesPerSec": second.messages,
            "deliveriesPerSec": second.deliveries,
            "p99Ms": second.p99_ms,
            "healthy": health.is_ok(),
            "problem": health.err(),
        });
        if let Err(err) = state.node().publish(STATS_CHANNEL, data, None).await {
            tracing::debug!(error = %err, "could not publish the dashboard's figures");
        }
    }
}

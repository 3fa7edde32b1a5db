//! The room index in a cluster: which rooms have history, and each one's newest message id
//! (the room directory reads it).
//!
//! On one Redis the post script records the newest id in the same step. In a cluster the
//! index is one key in its own slot, and a script may only touch its room's slot; writing
//! the index with every post would also send every message of every room to the one node
//! that holds it. So each instance notes what it posted and writes the index once a second,
//! many rooms in one command, never moving an id back. The directory may be a second behind
//! (or, after an instance crash, one message behind until the room's next post); the rooms
//! themselves, their history and their deliveries are not affected.

use super::{scripts, RedisEngine};
use app::validate::MessageId;
use std::sync::Arc;
use std::time::Duration;

/// How often noted ids are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Notes that `id` was posted to `room`; written with the next flush.
pub fn note(engine: &RedisEngine, room: &str, id: MessageId) {
    let mut pending = engine
        .room_index
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let newest = pending.entry(room.to_string()).or_insert(id);
    if id > *newest {
        *newest = id;
    }
}

/// Writes the noted ids every [`FLUSH_EVERY`] while the engine lives; what fails to be
/// written is kept for the next try.
pub fn start(engine: Arc<RedisEngine>) {
    let weak = Arc::downgrade(&engine);
    drop(engine);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(FLUSH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(engine) = weak.upgrade() else { return };
            let batch: Vec<(String, MessageId)> = std::mem::take(
                &mut *engine
                    .room_index
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            )
            .into_iter()
            .collect();
            if batch.is_empty() {
                continue;
            }
            let mut script = scripts::ROOM_INDEX.prepare_invoke();
            script.key(engine.keys.rooms());
            for (room, id) in &batch {
                script.arg(room).arg(id.to_string());
            }
            if let Err(err) = script.invoke_async::<i64>(&mut engine.conn()).await {
                tracing::warn!(error = %err, rooms = batch.len(), "could not write the room index; retrying");
                for (room, id) in batch {
                    note(&engine, &room, id);
                }
            }
        }
    });
}

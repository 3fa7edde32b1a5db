//! The room directory (the home page, `GET /api/rooms`): rooms with people or history,
//! busiest first, then most recently active.
//!
//! It is read on every visit to the home page, so its cost must not grow with the visits or
//! with the rooms: it is computed at most once per [`FRESH_FOR`] per instance (concurrent
//! requests wait for the one computation and share it), each computation reads at most
//! [`ROOMS_READ`] rooms of each kind in a fixed number of round trips (see the engines'
//! `room_counts` and `rooms`), and the list holds at most [`ROOMS_LISTED`]. Before, every
//! request read every active room's members one round trip after another.
//!
//! Past [`ROOMS_READ`] rooms of a kind, the directory is made from a sample of them (any,
//! not the busiest): a deployment that large wants a search, not a list.

use crate::engine::{Engine, EngineResult};
use app::protocol::RoomSummary;
use app::validate::MessageId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a computed directory is served.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Most rooms with people, and most rooms with history, read per computation.
pub const ROOMS_READ: usize = 10_000;
/// Most rooms listed.
pub const ROOMS_LISTED: usize = 100;

pub struct Directory {
    engine: Engine,
    // A tokio Mutex, held across the computation on purpose: whoever comes while it runs
    // waits for its result instead of starting another.
    cached: Mutex<Option<(Instant, Arc<Vec<RoomSummary>>)>>,
}

impl Directory {
    pub fn new(engine: Engine) -> Self {
        Directory {
            engine,
            cached: Mutex::new(None),
        }
    }

    /// The directory, at most [`FRESH_FOR`] old.
    pub async fn rooms(&self) -> EngineResult<Arc<Vec<RoomSummary>>> {
        let mut cached = self.cached.lock().await;
        if let Some((at, rooms)) = cached.as_ref() {
            if at.elapsed() < FRESH_FOR {
                return Ok(rooms.clone());
            }
        }
        let rooms = Arc::new(self.compute().await?);
        *cached = Some((Instant::now(), rooms.clone()));
        Ok(rooms)
    }

    async fn compute(&self) -> EngineResult<Vec<RoomSummary>> {
        let engine = &self.engine;
        let mut rooms: HashMap<String, RoomSummary> = HashMap::new();
        for (room_id, last) in engine.history.rooms(ROOMS_READ).await? {
            rooms.insert(
                room_id.clone(),
                RoomSummary {
                    room_id,
                    members: 0,
                    last_message_id: Some(last),
                },
            );
        }
        // Channels with presence are counted under their hub key (`#name`): not rooms.
        let counts = engine.presence.room_counts(ROOMS_READ).await?;
        let counts = counts
            .into_iter()
            .filter(|(key, _)| crate::wire::channel_of(key).is_none());
        for (room_id, count) in counts {
            rooms
                .entry(room_id.clone())
                .or_insert_with(|| RoomSummary {
                    room_id,
                    members: 0,
                    last_message_id: None,
                })
                .members = count;
        }
        let mut rooms: Vec<RoomSummary> = rooms.into_values().collect();
        // Busiest first, then most recently active, then by name.
        rooms.sort_by(|a, b| {
            b.members
                .cmp(&a.members)
                .then_with(|| {
                    let a_last = a.last_message_id.as_deref().unwrap_or("");
                    let b_last = b.last_message_id.as_deref().unwrap_or("");
                    MessageId::compare(b_last, a_last)
                })
                .then_with(|| a.room_id.cmp(&b.room_id))
        });
        rooms.truncate(ROOMS_LISTED);
        Ok(rooms)
    }
}

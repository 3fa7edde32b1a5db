//! Channels: real-time data that is not chat (a dashboard's numbers, a job's progress), on
//! the same connections and the same engine as rooms.
//!
//! A channel is carried exactly like a room: its subscribers are the local members of a hub
//! entry, the instance subscribes the engine's pub/sub when the first one arrives and
//! unsubscribes after the last leaves, and a publication is serialized once and handed to
//! every subscriber as the same bytes. So everything that holds for a room's delivery holds
//! here too: bounded queues, per-instance fan-out, the subscriber's catch-up and probe, and
//! the placement of "past one Redis" (a channel lands on a shard or cluster slot by its key).
//!
//! What a room has and a channel does not (yet): history, presence, typing, read positions.
//! Who may subscribe and publish is the namespaces' business ([`crate::namespaces`]), checked
//! before the node is asked.

use super::Node;
use crate::engine::EngineResult;
use crate::hub::Outbox;
use crate::wire::{encode, ConnectionId};
use app::protocol::{ErrorCode, ServerMsg, User};
use app::validate::Invalid;

/// Publication data within `max` bytes of JSON.
pub fn check_data(data: &serde_json::Value, max: usize) -> Result<(), Invalid> {
    let size = json_len(data);
    if size > max {
        return Err(Invalid::new(
            ErrorCode::DataTooLarge,
            format!("the data is {size} bytes of JSON; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// The length of `data` as JSON, counted as it is written (nothing is allocated: the frame
/// is serialized for real only once, when it is published).
fn json_len(data: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, data) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The hub and engine key of a channel. Room ids never hold `#`, so the two never meet.
pub fn channel_key(channel: &str) -> String {
    format!("#{channel}")
}

impl Node {
    /// Subscribes the connection to `channel` and queues the `subscribed` answer; the
    /// publications that follow reach it after the answer. With `since`, the answer says the
    /// publications after it cannot be had (no history is kept).
    pub async fn subscribe_channel(
        &self,
        conn: ConnectionId,
        outbox: &Outbox,
        user: &User,
        channel: &str,
        since: bool,
    ) -> EngineResult<()> {
        let key = channel_key(channel);
        if self.hub.join(&key, conn, &user.id, outbox) {
            if let Err(err) = self.engine.broker.subscribe(&key).await {
                self.hub.leave(&key, conn);
                return Err(err);
            }
        }
        let answer = encode(&ServerMsg::Subscribed {
            channel: channel.to_string(),
            recovered: since.then_some(false),
        });
        self.hub.admit(&key, conn, answer, None);
        Ok(())
    }

    /// Ends the connection's subscription; the last local subscriber unsubscribes the instance.
    pub async fn unsubscribe_channel(&self, conn: ConnectionId, channel: &str) -> EngineResult<()> {
        let key = channel_key(channel);
        if self.hub.leave(&key, conn) {
            self.engine.broker.unsubscribe(&key).await?;
        }
        Ok(())
    }

    /// Delivers `data` to every subscriber of `channel` on every instance (the publisher too,
    /// when it is one).
    pub async fn publish(&self, channel: &str, data: serde_json::Value) -> EngineResult<()> {
        let publication = encode(&ServerMsg::Publication {
            channel: channel.to_string(),
            data,
            offset: None,
        });
        self.engine
            .broker
            .publish(&channel_key(channel), publication, None)
            .await
    }
}

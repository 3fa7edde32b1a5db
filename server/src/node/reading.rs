//! Where each user stands in their rooms: the list they follow (their sidebar), their read
//! positions, and the unread and mention counts that follow from them.
//!
//! Joining a room follows it; the first time, everything already in the room counts as read
//! (as when joining a channel in Slack). A read position only moves forward, and never past
//! the room's newest message (a position in the future would hide messages not written yet).
//! When it moves, every connection of the user in that room, on any instance, is told with
//! the new counts, so their other tabs and devices clear the same badge.
//!
//! Counts are computed from the stored messages after the position, at most
//! [`UNREAD_COUNT_MAX`] of them, with the one mention rule of [`app::mention`]; `upto` names
//! the newest message counted, so a client that also gets that message live counts it once.

use super::Node;
use crate::engine::{EngineResult, Follow};
use crate::wire::encode;
use app::protocol::{ReadState, RoomEntry, ServerMsg, User, UNREAD_COUNT_MAX};
use app::validate::MessageId;
use futures::{stream, StreamExt, TryStreamExt};

/// How many rooms' counts [`Node::rooms_of`] reads at once.
const READ_STATES_AT_ONCE: usize = 16;

impl Node {
    /// Puts `room` on the user's list (if there is space) and says where they stand in it;
    /// `newest` is the room's newest message now. None when the list is full.
    pub(super) async fn follow(
        &self,
        user: &User,
        room: &str,
        newest: Option<MessageId>,
    ) -> EngineResult<Option<ReadState>> {
        let keep = user.guest.then_some(self.settings.guest_rooms_ttl);
        let follow = self
            .engine
            .reading
            .follow(&user.id, room, newest, self.settings.max_rooms, keep)
            .await?;
        match follow {
            Follow::Reading(position) => Ok(Some(self.read_state(user, room, position).await?)),
            Follow::ListFull => Ok(None),
        }
    }

    /// The counts after `position` in `room`, for `user`.
    async fn read_state(
        &self,
        user: &User,
        room: &str,
        position: Option<MessageId>,
    ) -> EngineResult<ReadState> {
        let max = UNREAD_COUNT_MAX as usize;
        let after = self.engine.history.after(room, position, max).await?;
        let mut read = ReadState {
            last_read: position.map(|id| id.to_string()),
            upto: after.last().map(|message| message.id.clone()),
            ..ReadState::default()
        };
        for message in after.iter().filter(|m| m.user_id != user.id) {
            read.unread += 1;
            if app::mention::mentions(&message.content, &user.name) {
                read.mentions += 1;
            }
        }
        if after.len() == max {
            // More may follow: "at least this many" is shown as the cap.
            read.unread = UNREAD_COUNT_MAX;
        }
        Ok(read)
    }

    /// The reader has seen `room` up to `id`: moves their position forward (at most to the
    /// newest message) and tells all their connections in the room. Nothing happens for a
    /// room not on their list or with no messages.
    pub async fn mark_read(&self, user: &User, room: &str, id: MessageId) -> EngineResult<()> {
        let newest = self.engine.history.page(room, None, 1).await?;
        let Some(newest) = newest
            .messages
            .last()
            .and_then(|message| MessageId::parse(&message.id).ok())
        else {
            return Ok(());
        };
        let reading = &self.engine.reading;
        let Some(position) = reading.mark_read(&user.id, room, id.min(newest)).await? else {
            return Ok(());
        };
        let read = self.read_state(user, room, Some(position)).await?;
        let event = ServerMsg::Read {
            room_id: room.to_string(),
            read,
        };
        self.engine
            .broker
            .publish_to_user(room, &user.id, encode(&event))
            .await
    }

    /// The user's rooms in the order they came to them, each with where they stand. The
    /// rooms' counts are read [`READ_STATES_AT_ONCE`] at a time: over Redis they share one
    /// connection, so a long list costs a few round trips, not one per room.
    pub async fn rooms_of(&self, user: &User) -> EngineResult<Vec<RoomEntry>> {
        let followed = self.engine.reading.followed(&user.id).await?;
        stream::iter(followed)
            .map(|(room, position)| async move {
                let read = self.read_state(user, &room, position).await?;
                Ok(RoomEntry {
                    room_id: room,
                    read,
                })
            })
            .buffered(READ_STATES_AT_ONCE)
            .try_collect()
            .await
    }

    /// Where the user stands in one room of their list (None: not on it).
    pub async fn room_read_state(
        &self,
        user: &User,
        room: &str,
    ) -> EngineResult<Option<ReadState>> {
        let followed = self.engine.reading.followed(&user.id).await?;
        match followed.into_iter().find(|(followed, _)| followed == room) {
            Some((_, position)) => Ok(Some(self.read_state(user, room, position).await?)),
            None => Ok(None),
        }
    }

    /// Takes the room off the user's list (their connections leave it on their own).
    pub async fn unfollow(&self, user: &User, room: &str) -> EngineResult<()> {
        self.engine.reading.unfollow(&user.id, room).await
    }
}

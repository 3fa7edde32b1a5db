//! The node: the one owner of room membership and delivery on this instance (after
//! centrifuge's `Node`). The WebSocket session speaks the protocol and calls the node; the
//! node drives the [`Hub`] (local members) and the [`Engine`] (what instances share).
//!
//! What happens on join, in order:
//! 1. the connection enters the room's local members, *held*: live events for it wait;
//! 2. the first local member subscribes the instance to the room;
//! 3. presence registers the connection, and a user new to the room is announced (once the
//!    grace has passed, see [`announcements`]);
//! 4. the history is read (the newest page, or what came after `since`), with the epoch;
//! 5. the room goes on the user's list, and their read position is read ([`reading`]);
//! 6. [`Hub::admit`] queues the `room_history` answer, then the held events newer than it.
//!
//! So a message posted while a connection joins reaches it exactly once: in its history or
//! after it, never both. A join that fails part-way is undone, so a connection is either in
//! a room or not (and, undone within the grace, it announced nothing).

mod announcements;
pub mod answers;
mod channels;
pub use channels::{check_data, SubscribeRequest};
mod reading;
mod workers;
pub use workers::{TooManyJobs, WorkerOf, PREFETCH_MAX};

use crate::engine::{Draft, Engine, EngineResult, Position, Posted, Resume};
use crate::hub::{Hub, Outbox};
use crate::wire::{encode, ConnectionId, Frame};
use announcements::Change;
use app::protocol::{ChatMessage, ServerMsg, User};
use app::validate::MessageId;
use std::sync::Arc;
use std::time::Duration;

/// What the node needs of the configuration.
#[derive(Clone, Copy, Debug)]
pub struct NodeSettings {
    /// Messages on join and per history page.
    pub history_page: usize,
    /// Most messages a rejoin with `since` is given.
    pub resume_max: usize,
    /// Most rooms on a user's list (as many as one connection may join).
    pub max_rooms: usize,
    /// Largest answer to a join or subscribe, in bytes of JSON ([`answers`]).
    pub max_answer_bytes: usize,
    /// How long a join or leave must last before it is announced ([`announcements`]).
    pub presence_grace: Duration,
    /// Most unfinished jobs one user's workers may ask for on this instance.
    pub max_jobs_per_user: usize,
    /// How long a guest's room list and read positions outlive its last join (its session).
    pub guest_rooms_ttl: Duration,
}

pub struct Node {
    hub: Arc<Hub>,
    engine: Engine,
    settings: NodeSettings,
    workers: Arc<workers::Workers>,
    announcements: Arc<announcements::Announcements>,
}

/// A connection asking to join a room.
pub struct JoinRequest<'a> {
    pub conn: ConnectionId,
    pub outbox: &'a Outbox,
    pub user: &'a User,
    pub room: &'a str,
    /// Already in the room on this connection: joining again, to resume.
    pub rejoin: bool,
    pub since: Option<Position>,
}

/// A join's history answer, before it is encoded.
struct Answer {
    messages: Vec<ChatMessage>,
    has_more: bool,
    recovered: Option<bool>,
    epoch: String,
    /// The newest message the joiner has once it read this answer.
    floor: Option<MessageId>,
}

impl Node {
    /// `server_id`: this instance's consumer name in worker groups.
    pub fn new(hub: Arc<Hub>, engine: Engine, settings: NodeSettings, server_id: &str) -> Self {
        Node {
            workers: workers::Workers::new(
                engine.queues.clone(),
                server_id.to_string(),
                settings.max_jobs_per_user,
            ),
            announcements: announcements::Announcements::new(
                settings.presence_grace,
                engine.broker.clone(),
            ),
            hub,
            engine,
            settings,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// A connection signed in as `user`: it is present (online).
    pub async fn connect(&self, conn: ConnectionId, user: &User) -> EngineResult<()> {
        self.engine.presence.connect(conn, user).await
    }

    /// A connection ended; its rooms were left first.
    pub async fn disconnect(&self, conn: ConnectionId) -> EngineResult<()> {
        self.engine.presence.disconnect(conn).await
    }

    /// Joins `room` (or joins it again, `rejoin`, to resume) and queues the `room_history`
    /// answer; see the module docs for the steps. On failure the connection is not in the
    /// room (a rejoin that fails leaves it).
    pub async fn join(&self, request: JoinRequest<'_>) -> EngineResult<()> {
        let (conn, user, room) = (request.conn, request.user, request.room);
        match self.enter(request).await {
            Ok(()) => Ok(()),
            Err(err) => {
                if let Err(cleanup) = self.leave(conn, Some(user), room).await {
                    tracing::warn!(room, error = %cleanup, "could not undo a failed join");
                }
                Err(err)
            }
        }
    }

    async fn enter(&self, request: JoinRequest<'_>) -> EngineResult<()> {
        let JoinRequest {
            conn,
            outbox,
            user,
            room,
            rejoin,
            since,
        } = request;
        let engine = &self.engine;
        if self.hub.join(room, conn, &user.id, outbox) {
            engine.broker.subscribe(room).await?;
        }
        if !rejoin && engine.presence.join(room, conn, user).await? {
            let joined = ServerMsg::UserJoined {
                room_id: room.to_string(),
                user_id: user.id.clone(),
                name: user.name.clone(),
                timestamp: crate::engine::now_ms(),
            };
            self.announcements
                .changed(room, &user.id, Change::Joined, encode(&joined), Some(conn))
                .await;
        }
        let answer = self.history(room, since).await?;
        let metrics = self.hub.metrics();
        match answer.recovered {
            Some(true) => metrics.resumes_recovered.increment(1),
            Some(false) => metrics.resumes_not_recovered.increment(1),
            None => {}
        }
        let newest = answer.floor;
        let read = self.follow(user, room, newest).await?;
        let mut members = engine.presence.members(room).await?;
        let budget = answers::members_budget(self.settings.max_answer_bytes);
        let members_total = answers::cut_members(&mut members, budget);
        let frame = encode(&ServerMsg::RoomHistory {
            room_id: room.to_string(),
            messages: answer.messages,
            has_more: answer.has_more,
            recovered: answer.recovered,
            members,
            members_total,
            epoch: answer.epoch,
            read,
        });
        self.hub.admit(room, conn, frame, answer.floor);
        metrics.joins.increment(1);
        Ok(())
    }

    /// The history a joiner is given: exactly what came after `since` if that can be had
    /// (and fits an answer), else the newest page that fits (`recovered: false` when `since`
    /// was given).
    async fn history(&self, room: &str, since: Option<Position>) -> EngineResult<Answer> {
        let history = &self.engine.history;
        let budget = answers::items_budget(self.settings.max_answer_bytes);
        if let Some(since) = &since {
            let resumed = history.since(room, since, self.settings.resume_max).await?;
            if let Resume::Recovered(messages) = answers::fitting(resumed, budget) {
                // The epoch matched (or none was given): it is the room's.
                let floor = newest(&messages).or(Some(since.id));
                let epoch = match &since.epoch {
                    Some(epoch) => epoch.clone(),
                    None => history.page(room, None, 0).await?.epoch,
                };
                return Ok(Answer {
                    messages,
                    has_more: false,
                    recovered: Some(true),
                    epoch,
                    floor,
                });
            }
        }
        let mut page = history.page(room, None, self.settings.history_page).await?;
        let cut = answers::keep_newest_that_fit(&mut page.messages, budget);
        Ok(Answer {
            floor: newest(&page.messages),
            messages: page.messages,
            has_more: page.has_more || cut,
            recovered: since.map(|_| false),
            epoch: page.epoch,
        })
    }

    /// Leaves `room`: the last local member unsubscribes the instance; a user with no other
    /// connection there is announced as gone (`user` is None for a connection that never
    /// signed in). Returns whether the user left the room altogether.
    pub async fn leave(
        &self,
        conn: ConnectionId,
        user: Option<&User>,
        room: &str,
    ) -> EngineResult<bool> {
        let engine = &self.engine;
        if self.hub.leave(room, conn) {
            engine.broker.unsubscribe(room).await?;
        }
        let Some(user) = user else { return Ok(false) };
        if !engine.presence.leave(room, conn, user).await? {
            return Ok(false);
        }
        let left = ServerMsg::UserLeft {
            room_id: room.to_string(),
            user_id: user.id.clone(),
            name: user.name.clone(),
            timestamp: crate::engine::now_ms(),
        };
        self.announcements
            .changed(room, &user.id, Change::Left, encode(&left), None)
            .await;
        Ok(true)
    }

    /// Announces at once the joins and leaves still waiting for their grace (shutdown).
    pub async fn flush_announcements(&self) {
        self.announcements.flush().await;
    }

    /// Stores and delivers a message (or finds the original of a retry).
    pub async fn post(&self, draft: Draft, origin: Option<ConnectionId>) -> EngineResult<Posted> {
        let posted = self.engine.history.post(draft, origin).await?;
        if !posted.duplicate {
            self.hub.metrics().messages_posted.increment(1);
            self.hub.stats().posted();
        }
        Ok(posted)
    }

    /// Passes an ephemeral room event (typing) to the room's other members everywhere.
    pub async fn signal(&self, room: &str, event: Frame, origin: ConnectionId) -> EngineResult<()> {
        self.engine.broker.publish(room, event, Some(origin)).await
    }
}

fn newest(messages: &[ChatMessage]) -> Option<MessageId> {
    messages
        .last()
        .and_then(|message| MessageId::parse(&message.id).ok())
}

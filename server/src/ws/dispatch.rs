//! What a connection's requests do: the protocol's state machine for one socket.
//!
//! Every client mistake is answered with an `error` event carrying a stable code, and the
//! connection lives on; a client making too many of them in a short time is closed (4501).

use crate::engine::{now_ms, Draft, EngineError, Resume};
use crate::hub::{encode, ConnectionId, Outbox};
use crate::state::AppState;
use app::protocol::{close, decode_client_msg, ClientMsg, ErrorCode, ServerMsg, User};
use app::validate::{self, Invalid, MessageId};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// The window over which protocol errors are counted.
const ERROR_WINDOW: Duration = Duration::from_secs(5);

pub struct Dispatch {
    state: AppState,
    id: ConnectionId,
    outbox: Outbox,
    user: Option<User>,
    rooms: HashSet<String>,
    /// When this connection last forwarded `typing: true`, per room (server-side throttle).
    typing_forwarded: HashMap<String, Instant>,
    errors_window_start: Instant,
    errors_in_window: u32,
}

/// A refusal: the error event to send.
struct Refusal {
    code: ErrorCode,
    error: String,
}

impl From<Invalid> for Refusal {
    fn from(invalid: Invalid) -> Self {
        Refusal {
            code: invalid.code,
            error: invalid.reason,
        }
    }
}

impl From<EngineError> for Refusal {
    fn from(err: EngineError) -> Self {
        tracing::warn!(error = %err, "engine error while serving a client");
        Refusal {
            code: ErrorCode::Unavailable,
            error: "the chat service is unavailable, try again shortly".into(),
        }
    }
}

fn refuse(code: ErrorCode, error: impl Into<String>) -> Refusal {
    Refusal {
        code,
        error: error.into(),
    }
}

impl Dispatch {
    pub fn new(state: AppState, id: ConnectionId, outbox: Outbox) -> Self {
        Dispatch {
            state,
            id,
            outbox,
            user: None,
            rooms: HashSet::new(),
            typing_forwarded: HashMap::new(),
            errors_window_start: Instant::now(),
            errors_in_window: 0,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// Greets the client; a user known from the upgrade (cookie or bearer) is signed in at once.
    pub async fn start(&mut self, user: Option<User>) {
        self.send(&ServerMsg::Connected {
            connection_id: format!("{}-{}", self.state.server_id(), self.id.0),
            server_id: self.state.server_id().to_string(),
        });
        if let Some(user) = user {
            if let Err(refusal) = self.sign_in(user).await {
                self.refuse(refusal, None, None);
            }
        }
    }

    /// Leaves every room (announcing departures) and drops the connection from presence.
    pub async fn finish(&mut self) {
        let rooms: Vec<String> = self.rooms.iter().cloned().collect();
        for room in rooms {
            if let Err(refusal) = self.leave_room(&room).await {
                tracing::warn!(
                    room,
                    error = refusal.error,
                    "could not leave room on disconnect"
                );
            }
        }
        if self.user.is_some() {
            if let Err(err) = self.state.engine().presence.disconnect(self.id).await {
                tracing::warn!(error = %err, "could not remove connection from presence");
            }
        }
        self.state.hub().unregister(self.id);
    }

    pub fn binary_frame(&mut self) {
        self.refuse(
            refuse(
                ErrorCode::InvalidMessage,
                "binary frames are not supported; send JSON text",
            ),
            None,
            None,
        );
    }

    pub async fn handle_text(&mut self, text: &str) {
        let msg = match decode_client_msg(text) {
            Ok(msg) => msg,
            Err(err) => return self.refuse(refuse(err.code, err.detail), None, None),
        };
        let (room, client_msg_id) = match &msg {
            ClientMsg::Join { room_id, .. }
            | ClientMsg::Leave { room_id }
            | ClientMsg::Typing { room_id, .. } => (Some(room_id.clone()), None),
            ClientMsg::Message {
                room_id,
                client_msg_id,
                ..
            } => (Some(room_id.clone()), client_msg_id.clone()),
            ClientMsg::Auth { .. } | ClientMsg::Ping => (None, None),
        };
        if let Err(refusal) = self.handle(msg).await {
            self.refuse(refusal, room, client_msg_id);
        }
    }

    async fn handle(&mut self, msg: ClientMsg) -> Result<(), Refusal> {
        match msg {
            ClientMsg::Ping => {
                self.send(&ServerMsg::Pong);
                Ok(())
            }
            ClientMsg::Auth { token } => self.auth(&token).await,
            ClientMsg::Join { room_id, since } => {
                let user = self.user()?;
                self.join(user, &room_id, since.as_deref()).await
            }
            ClientMsg::Leave { room_id } => {
                self.user()?;
                let room = self.joined_room(&room_id)?;
                self.leave_room(&room).await
            }
            ClientMsg::Message {
                room_id,
                content,
                client_msg_id,
            } => {
                let user = self.user()?;
                let room = self.joined_room(&room_id)?;
                self.post(user, room, &content, client_msg_id).await
            }
            ClientMsg::Typing { room_id, is_typing } => {
                let user = self.user()?;
                let room = self.joined_room(&room_id)?;
                self.typing(user, room, is_typing).await
            }
        }
    }

    fn user(&self) -> Result<User, Refusal> {
        self.user.clone().ok_or_else(|| {
            refuse(
                ErrorCode::NotAuthenticated,
                "authenticate first: send {\"type\":\"auth\",\"token\":...}",
            )
        })
    }

    /// The room, if valid and joined on this connection.
    fn joined_room(&self, room_id: &str) -> Result<String, Refusal> {
        let room = validate::room_id(room_id)?;
        if !self.rooms.contains(room) {
            return Err(refuse(
                ErrorCode::NotInRoom,
                format!("join room “{room}” first"),
            ));
        }
        Ok(room.to_string())
    }

    async fn auth(&mut self, token: &str) -> Result<(), Refusal> {
        let Some(user) = self.state.engine().sessions.resolve(token).await? else {
            tracing::info!(connection = self.id.0, "auth with an unknown token");
            return Err(refuse(
                ErrorCode::InvalidToken,
                "unknown or expired session token",
            ));
        };
        match &self.user {
            Some(current) if current.id == user.id => {
                self.send_authenticated(&user);
                Ok(())
            }
            Some(_) => Err(refuse(
                ErrorCode::InvalidToken,
                "this connection is signed in as someone else; open a new connection",
            )),
            None => self.sign_in(user).await,
        }
    }

    async fn sign_in(&mut self, user: User) -> Result<(), Refusal> {
        self.state.engine().presence.connect(self.id, &user).await?;
        self.send_authenticated(&user);
        self.user = Some(user);
        Ok(())
    }

    fn send_authenticated(&self, user: &User) {
        self.send(&ServerMsg::Authenticated {
            user_id: user.id.clone(),
            name: user.name.clone(),
            guest: user.guest,
        });
    }

    async fn join(
        &mut self,
        user: User,
        room_id: &str,
        since: Option<&str>,
    ) -> Result<(), Refusal> {
        let room = validate::room_id(room_id)?.to_string();
        let since = since.map(MessageId::parse).transpose()?;
        let state = self.state.clone();
        let config = state.config();
        if !self.rooms.contains(&room) {
            if self.rooms.len() >= config.max_rooms_per_connection {
                return Err(refuse(
                    ErrorCode::TooManyRooms,
                    format!(
                        "a connection may join at most {} rooms",
                        config.max_rooms_per_connection
                    ),
                ));
            }
            self.enter_room(&user, &room).await?;
        }
        let engine = state.engine();
        let (messages, has_more, recovered) = match since {
            Some(since) => match engine
                .history
                .since(&room, since, config.resume_max)
                .await?
            {
                Resume::Recovered(messages) => (messages, false, Some(true)),
                Resume::Lost => {
                    let page = engine
                        .history
                        .page(&room, None, config.history_page)
                        .await?;
                    (page.messages, page.has_more, Some(false))
                }
            },
            None => {
                let page = engine
                    .history
                    .page(&room, None, config.history_page)
                    .await?;
                (page.messages, page.has_more, None)
            }
        };
        let members = engine.presence.members(&room).await?;
        self.send(&ServerMsg::RoomHistory {
            room_id: room,
            messages,
            has_more,
            recovered,
            members,
        });
        Ok(())
    }

    /// Subscribes (first local member), registers presence and announces a new member.
    async fn enter_room(&mut self, user: &User, room: &str) -> Result<(), Refusal> {
        let engine = self.state.engine();
        let hub = self.state.hub();
        if hub.join(room, self.id, &self.outbox) {
            if let Err(err) = engine.broker.subscribe(room).await {
                hub.leave(room, self.id);
                return Err(err.into());
            }
        }
        self.rooms.insert(room.to_string());
        if engine.presence.join(room, self.id, user).await? {
            let joined = ServerMsg::UserJoined {
                room_id: room.to_string(),
                user_id: user.id.clone(),
                name: user.name.clone(),
                timestamp: now_ms(),
            };
            engine
                .broker
                .publish(room, encode(&joined), Some(self.id))
                .await?;
        }
        Ok(())
    }

    /// Leaves a joined room: unsubscribes (last local member) and announces a departure.
    async fn leave_room(&mut self, room: &str) -> Result<(), Refusal> {
        self.rooms.remove(room);
        self.typing_forwarded.remove(room);
        let engine = self.state.engine();
        if self.state.hub().leave(room, self.id) {
            engine.broker.unsubscribe(room).await?;
        }
        let Some(user) = self.user.clone() else {
            return Ok(());
        };
        if engine.presence.leave(room, self.id, &user).await? {
            let left = ServerMsg::UserLeft {
                room_id: room.to_string(),
                user_id: user.id,
                name: user.name,
                timestamp: now_ms(),
            };
            engine.broker.publish(room, encode(&left), None).await?;
        }
        Ok(())
    }

    async fn post(
        &mut self,
        user: User,
        room: String,
        content: &str,
        client_msg_id: Option<String>,
    ) -> Result<(), Refusal> {
        let content =
            validate::content(content, self.state.config().max_content_bytes)?.to_string();
        if let Some(id) = &client_msg_id {
            validate::client_msg_id(id)?;
        }
        // Sending ends typing, as the recipients will see by the message itself.
        self.typing_forwarded.remove(&room);
        let draft = Draft {
            room_id: room,
            user,
            content,
            client_msg_id,
        };
        let message = self
            .state
            .engine()
            .history
            .post(draft, Some(self.id))
            .await?;
        self.send(&ServerMsg::Ack {
            client_msg_id: message.client_msg_id,
            id: message.id,
            room_id: message.room_id,
            timestamp: message.timestamp,
        });
        Ok(())
    }

    /// Forwards typing state; `true` at most once per throttle interval per room.
    async fn typing(&mut self, user: User, room: String, is_typing: bool) -> Result<(), Refusal> {
        let now = Instant::now();
        if is_typing {
            let throttle = self.state.config().typing_throttle();
            if self
                .typing_forwarded
                .get(&room)
                .is_some_and(|last| now.duration_since(*last) < throttle)
            {
                return Ok(());
            }
            self.typing_forwarded.insert(room.clone(), now);
        } else {
            self.typing_forwarded.remove(&room);
        }
        let event = ServerMsg::Typing {
            room_id: room.clone(),
            user_id: user.id,
            name: user.name,
            is_typing,
        };
        self.state
            .engine()
            .broker
            .publish(&room, encode(&event), Some(self.id))
            .await?;
        Ok(())
    }

    /// Sends an error event and counts it against the protocol error budget.
    fn refuse(&mut self, refusal: Refusal, room_id: Option<String>, client_msg_id: Option<String>) {
        let blame_client = refusal.code != ErrorCode::Unavailable;
        self.send(&ServerMsg::Error {
            code: refusal.code,
            error: refusal.error,
            room_id,
            client_msg_id,
        });
        if blame_client && self.count_protocol_error() {
            tracing::info!(connection = self.id.0, "too many protocol errors; closing");
            self.outbox
                .kick(close::PROTOCOL_ERRORS, "too many protocol errors");
        }
    }

    /// True when the budget is exceeded.
    fn count_protocol_error(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.errors_window_start) > ERROR_WINDOW {
            self.errors_window_start = now;
            self.errors_in_window = 0;
        }
        self.errors_in_window += 1;
        self.errors_in_window > self.state.config().max_protocol_errors
    }

    fn send(&self, msg: &ServerMsg) {
        self.outbox.send(encode(msg));
    }
}

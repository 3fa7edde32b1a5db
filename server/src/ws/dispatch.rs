//! What a connection's requests do: the protocol's state machine for one socket.
//!
//! Every client mistake is answered with an `error` event carrying a stable code, and the
//! connection lives on; a client making too many of them in a short time is closed (4501).

use super::Admission;
use crate::engine::{Draft, EngineError, Position, SessionId};
use crate::hub::Outbox;
use crate::limits::{AnonymousRefused, AnonymousSlot, Budget, ConnectionSlot, Limited, Rate};
use crate::node::{check_data, JoinRequest, SubscribeRequest, TooManyJobs, WorkerOf, PREFETCH_MAX};
use crate::state::AppState;
use crate::stats::STATS_CHANNEL;
use crate::wire::{encode, ConnectionId};
use app::backend::Backend;
use app::protocol::{close, decode_client_msg, ClientMsg, ErrorCode, ServerMsg, User};
use app::validate::{self, Invalid, MessageId};
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// The window over which protocol errors are counted.
const ERROR_WINDOW: Duration = Duration::from_secs(5);

pub struct Dispatch {
    state: AppState,
    id: ConnectionId,
    outbox: Outbox,
    user: Option<User>,
    /// This connection's place in the user's connection limit, held while signed in.
    slot: Option<ConnectionSlot>,
    /// Its place in the caps on connections without a session, held until it signs in.
    anonymous: Option<AnonymousSlot>,
    rooms: HashSet<String>,
    /// Channels subscribed on this connection ([`crate::node`]'s channels).
    channels: HashSet<String>,
    /// The worker groups this connection works in: (queue, group).
    working: HashSet<(String, String)>,
    errors_window_start: Instant,
    errors_in_window: u32,
    /// This connection's budget of membership requests (the user's is in [`UserLimits`]).
    ///
    /// [`UserLimits`]: crate::limits::UserLimits
    membership: Budget,
}

/// A refusal: the error event to send.
struct Refusal {
    code: ErrorCode,
    error: String,
    retry_after_ms: Option<u64>,
    /// Close the connection after telling the client (code, reason): terminal refusals.
    closes: Option<(u16, &'static str)>,
}

impl From<Invalid> for Refusal {
    fn from(invalid: Invalid) -> Self {
        refuse(invalid.code, invalid.reason)
    }
}

impl From<Limited> for Refusal {
    fn from(limited: Limited) -> Self {
        let ms = limited.retry_after.as_millis().max(1) as u64;
        Refusal {
            retry_after_ms: Some(ms),
            ..refuse(
                ErrorCode::RateLimited,
                format!("too fast: try again in {ms} ms"),
            )
        }
    }
}

impl From<EngineError> for Refusal {
    fn from(err: EngineError) -> Self {
        tracing::warn!(error = %err, "engine error while serving a client");
        refuse(
            ErrorCode::Unavailable,
            "the chat service is unavailable, try again shortly",
        )
    }
}

/// What a refused request was about, repeated in the error so a client can match it.
#[derive(Default)]
struct About {
    room_id: Option<String>,
    channel: Option<String>,
    client_msg_id: Option<String>,
}

impl About {
    fn room(room_id: &str) -> Self {
        About {
            room_id: Some(room_id.to_string()),
            ..About::default()
        }
    }
}

/// Requests that change what a connection receives or where a user stands: they spend the
/// membership budget.
fn is_membership(msg: &ClientMsg) -> bool {
    matches!(
        msg,
        ClientMsg::Join { .. }
            | ClientMsg::Leave { .. }
            | ClientMsg::Read { .. }
            | ClientMsg::Subscribe { .. }
            | ClientMsg::Unsubscribe { .. }
            | ClientMsg::Work { .. }
    )
}

fn refuse(code: ErrorCode, error: impl Into<String>) -> Refusal {
    Refusal {
        code,
        error: error.into(),
        retry_after_ms: None,
        closes: None,
    }
}

impl Dispatch {
    pub fn new(state: AppState, id: ConnectionId, outbox: Outbox) -> Self {
        Dispatch {
            state: state.clone(),
            id,
            outbox,
            user: None,
            slot: None,
            anonymous: None,
            rooms: HashSet::new(),
            channels: HashSet::new(),
            working: HashSet::new(),
            errors_window_start: Instant::now(),
            errors_in_window: 0,
            membership: Budget::new(Rate {
                per_sec: state.config().membership_rate,
                burst: state.config().membership_burst,
            }),
        }
    }

    /// Signed in, or subscribed to a channel open to anyone: the connection may stay.
    pub fn is_admitted(&self) -> bool {
        self.user.is_some() || !self.channels.is_empty()
    }

    /// Who a connection that did not sign in is on a channel open to anyone: nobody in
    /// particular (never in presence), unique per connection.
    fn anonymous(&self) -> User {
        User {
            id: format!("anonymous/{}/{}", self.state.server_id(), self.id.0),
            name: "anonymous".into(),
            guest: true,
        }
    }

    /// Greets the client; a user known from the upgrade (cookie or bearer) is signed in at
    /// once, and a connection without a session that found no anonymous slot is told why and
    /// closed.
    pub async fn start(&mut self, admission: Admission) {
        self.send(&ServerMsg::Connected {
            connection_id: format!("{}-{}", self.state.server_id(), self.id.0),
            server_id: self.state.server_id().to_string(),
        });
        match admission {
            Admission::SignedIn(session, user) => {
                if let Err(refusal) = self.sign_in(session, user).await {
                    self.refuse(refusal, About::default());
                }
            }
            Admission::Anonymous(Ok(slot)) => self.anonymous = Some(slot),
            Admission::Anonymous(Err(refused)) => {
                let why = match refused {
                    AnonymousRefused::FromAddress(max) => format!(
                        "{max} connections without a session are open from your address already: sign in first, or close one"
                    ),
                    AnonymousRefused::InTotal(max) => format!(
                        "this server holds {max} connections without a session already: sign in first"
                    ),
                };
                tracing::warn!(
                    connection = self.id.0,
                    why,
                    "connection without a session refused"
                );
                let refusal = Refusal {
                    closes: Some((
                        close::TOO_MANY_ANONYMOUS,
                        "too many connections without a session",
                    )),
                    ..refuse(ErrorCode::TooManyConnections, why)
                };
                self.refuse(refusal, About::default());
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
        for channel in std::mem::take(&mut self.channels) {
            let features = self.state.namespaces().features(&channel);
            if let Err(err) = self
                .state
                .node()
                .unsubscribe_channel(self.id, self.user.as_ref(), &channel, features)
                .await
            {
                tracing::warn!(channel, error = %err, "could not unsubscribe on disconnect");
            }
        }
        if !std::mem::take(&mut self.working).is_empty() {
            self.state.node().stop_working(self.id).await;
        }
        if self.user.is_some() {
            if let Err(err) = self.state.node().disconnect(self.id).await {
                tracing::warn!(error = %err, "could not remove connection from presence");
            }
        }
        self.slot = None;
        self.anonymous = None;
        self.state.hub().unregister(self.id);
    }

    pub fn binary_frame(&mut self) {
        self.refuse(
            refuse(
                ErrorCode::InvalidMessage,
                "binary frames are not supported; send JSON text",
            ),
            About::default(),
        );
    }

    pub async fn handle_text(&mut self, text: &str) {
        let msg = match decode_client_msg(text) {
            Ok(msg) => msg,
            Err(err) => return self.refuse(refuse(err.code, err.detail), About::default()),
        };
        let about = match &msg {
            ClientMsg::Join { room_id, .. }
            | ClientMsg::Leave { room_id }
            | ClientMsg::Read { room_id, .. }
            | ClientMsg::Typing { room_id, .. } => About::room(room_id),
            ClientMsg::Message {
                room_id,
                client_msg_id,
                ..
            } => About {
                client_msg_id: client_msg_id.clone(),
                ..About::room(room_id)
            },
            ClientMsg::Subscribe { channel, .. }
            | ClientMsg::Unsubscribe { channel }
            | ClientMsg::Publish { channel, .. }
            | ClientMsg::Work { channel, .. }
            | ClientMsg::Done { channel, .. } => About {
                channel: Some(channel.clone()),
                ..About::default()
            },
            ClientMsg::Auth { .. } | ClientMsg::Ping => About::default(),
        };
        if let Err(refusal) = self.handle(msg).await {
            self.refuse(refusal, about);
        }
    }

    async fn handle(&mut self, msg: ClientMsg) -> Result<(), Refusal> {
        if is_membership(&msg) {
            self.spend_membership()?;
        }
        match msg {
            ClientMsg::Ping => {
                self.send(&ServerMsg::Pong);
                Ok(())
            }
            ClientMsg::Auth { token } => self.auth(&token).await,
            ClientMsg::Join {
                room_id,
                since,
                epoch,
            } => {
                let user = self.user()?;
                self.join(user, &room_id, since.as_deref(), epoch).await
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
            ClientMsg::Read { room_id, id } => {
                let user = self.user()?;
                let room = self.joined_room(&room_id)?;
                let id = MessageId::parse(&id)?;
                Ok(self.state.node().mark_read(&user, &room, id).await?)
            }
            ClientMsg::Subscribe {
                channel,
                since,
                epoch,
            } => {
                let user = match self.user() {
                    Ok(user) => user,
                    Err(_) if self.state.namespaces().open_to_anyone(&channel) => self.anonymous(),
                    Err(refusal) => return Err(refusal),
                };
                let since = since
                    .as_deref()
                    .map(MessageId::parse_offset)
                    .transpose()?
                    .map(|id| Position { epoch, id });
                self.subscribe(user, &channel, since).await
            }
            ClientMsg::Unsubscribe { channel } => {
                let user = self.user.clone();
                let channel = validate::channel(&channel)?;
                if !self.channels.remove(channel) {
                    return Err(refuse(
                        ErrorCode::NotSubscribed,
                        format!("subscribe to “{channel}” first"),
                    ));
                }
                let features = self.state.namespaces().features(channel);
                self.state
                    .node()
                    .unsubscribe_channel(self.id, user.as_ref(), channel, features)
                    .await?;
                self.send(&ServerMsg::Unsubscribed {
                    channel: channel.to_string(),
                });
                Ok(())
            }
            ClientMsg::Publish { channel, data } => {
                let user = self.user()?;
                self.publish(user, &channel, data).await
            }
            ClientMsg::Work {
                channel,
                group,
                prefetch,
            } => {
                let user = self.user()?;
                self.work(user, &channel, &group, prefetch.unwrap_or(1))
            }
            ClientMsg::Done { channel, group, id } => {
                let user = self.user()?;
                let (channel, _) = self.state.namespaces().may_work(&channel, &group, &user)?;
                let id = MessageId::parse(&id).map_err(|_| {
                    refuse(
                        ErrorCode::InvalidMessage,
                        format!("“{}” is not a job id", validate::truncate(&id)),
                    )
                })?;
                if !self
                    .state
                    .node()
                    .job_done(self.id, channel, &group, id)
                    .await?
                {
                    return Err(refuse(
                        ErrorCode::UnknownJob,
                        format!("this connection holds no job “{id}” of {group}"),
                    ));
                }
                self.send(&ServerMsg::Done {
                    channel: channel.to_string(),
                    group,
                    id: id.to_string(),
                });
                Ok(())
            }
        }
    }

    async fn subscribe(
        &mut self,
        user: User,
        channel: &str,
        since: Option<Position>,
    ) -> Result<(), Refusal> {
        // The dashboard's channel is Confab's own: operators only, whatever the namespaces say.
        let channel = if channel == STATS_CHANNEL {
            if !self.state.is_operator(&user) {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!("only operators may subscribe to “{STATS_CHANNEL}”"),
                ));
            }
            STATS_CHANNEL
        } else {
            self.state.namespaces().may_subscribe(channel, &user)?
        };
        let limit = self.state.config().max_rooms_per_connection;
        let taken = self.rooms.len() + self.channels.len() + self.working.len();
        if !self.channels.contains(channel) && taken >= limit {
            return Err(refuse(
                ErrorCode::TooManyRooms,
                format!("a connection may join at most {limit} rooms and channels"),
            ));
        }
        let again = self.channels.contains(channel);
        let mut features = self.state.namespaces().features(channel);
        if self.user.is_none() {
            // Nobody in particular: not counted in presence, never announced.
            features.presence = false;
            features.join_leave = false;
        }
        let subscribed = self
            .state
            .node()
            .subscribe_channel(SubscribeRequest {
                conn: self.id,
                outbox: &self.outbox,
                user: &user,
                channel,
                since,
                features,
                again,
            })
            .await;
        match subscribed {
            Ok(()) => {
                self.channels.insert(channel.to_string());
                Ok(())
            }
            // A subscription that fails is undone: also one that was there before.
            Err(err) => {
                self.channels.remove(channel);
                Err(err.into())
            }
        }
    }

    /// Becomes a worker of `group` on the queue `channel`.
    fn work(
        &mut self,
        user: User,
        channel: &str,
        group: &str,
        prefetch: u32,
    ) -> Result<(), Refusal> {
        let (channel, rules) = self.state.namespaces().may_work(channel, group, &user)?;
        if !(1..=PREFETCH_MAX).contains(&prefetch) {
            return Err(refuse(
                ErrorCode::InvalidMessage,
                format!("prefetch is 1 to {PREFETCH_MAX} jobs"),
            ));
        }
        let key = (channel.to_string(), group.to_string());
        let limit = self.state.config().max_rooms_per_connection;
        if !self.working.contains(&key)
            && self.rooms.len() + self.channels.len() + self.working.len() >= limit
        {
            return Err(refuse(
                ErrorCode::TooManyRooms,
                format!("a connection may join at most {limit} rooms, channels and worker groups"),
            ));
        }
        let worker = WorkerOf {
            outbox: &self.outbox,
            user: &user.id,
            prefetch,
        };
        self.state
            .node()
            .work(self.id, worker, channel, group, rules)
            .map_err(|TooManyJobs { max }| {
                refuse(
                    ErrorCode::TooManyJobs,
                    format!("your workers may hold at most {max} unfinished jobs together (their prefetch)"),
                )
            })?;
        self.working.insert(key);
        self.send(&ServerMsg::Working {
            channel: channel.to_string(),
            group: group.to_string(),
        });
        Ok(())
    }

    async fn publish(
        &mut self,
        user: User,
        channel: &str,
        data: serde_json::Value,
    ) -> Result<(), Refusal> {
        let channel = self.state.namespaces().may_publish(channel, &user)?;
        check_data(&data, self.state.config().max_publication_bytes)?;
        let namespaces = self.state.namespaces();
        match namespaces.publish_rate(channel) {
            Some((namespace, rate)) => self.state.limits().publish(&user.id, namespace, rate)?,
            None => self.state.limits().send(&user.id, channel)?,
        }
        if let Some(rules) = namespaces.queue(channel) {
            self.state.node().enqueue(channel, &data, &rules).await?;
            return Ok(());
        }
        let keep = namespaces.features(channel).keep;
        self.state.node().publish(channel, data, keep).await?;
        Ok(())
    }

    /// Takes a token from the connection's membership budget and the user's: joining and
    /// leaving costs every member of the room a presence change, and subscribing the
    /// instance's pub/sub a round trip, so neither is free.
    fn spend_membership(&mut self) -> Result<(), Refusal> {
        self.membership.take()?;
        if let Some(user) = &self.user {
            self.state.limits().membership(&user.id)?;
        }
        Ok(())
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
        let Some((session, user)) = self.state.auth().resolve(token).await? else {
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
            None => self.sign_in(session, user).await,
        }
    }

    async fn sign_in(&mut self, session: SessionId, user: User) -> Result<(), Refusal> {
        let limits = self.state.limits();
        let Some(slot) = limits.connect(&user.id) else {
            tracing::info!(user = user.id, "connection refused: too many connections");
            let message = format!(
                "you have {} connections open already; close one first",
                limits.max_connections()
            );
            return Err(Refusal {
                closes: Some((close::TOO_MANY_CONNECTIONS, "too many connections")),
                ..refuse(ErrorCode::TooManyConnections, message)
            });
        };
        self.state.node().connect(self.id, &user).await?;
        self.state.hub().set_session(self.id, session);
        self.send_authenticated(&user);
        self.user = Some(user);
        self.slot = Some(slot);
        self.anonymous = None;
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
        epoch: Option<String>,
    ) -> Result<(), Refusal> {
        let room = validate::room_id(room_id)?.to_string();
        let since = since
            .map(MessageId::parse)
            .transpose()?
            .map(|id| Position { epoch, id });
        let rejoin = self.rooms.contains(&room);
        let limit = self.state.config().max_rooms_per_connection;
        if !rejoin && self.rooms.len() >= limit {
            return Err(refuse(
                ErrorCode::TooManyRooms,
                format!("a connection may join at most {limit} rooms"),
            ));
        }
        let joined = self
            .state
            .node()
            .join(JoinRequest {
                conn: self.id,
                outbox: &self.outbox,
                user: &user,
                room: &room,
                rejoin,
                since,
            })
            .await;
        match joined {
            Ok(()) => {
                self.rooms.insert(room);
                Ok(())
            }
            Err(err) => {
                self.rooms.remove(&room);
                Err(err.into())
            }
        }
    }

    /// Leaves a joined room, announcing a departure.
    async fn leave_room(&mut self, room: &str) -> Result<(), Refusal> {
        self.rooms.remove(room);
        let user = self.user.clone();
        if self
            .state
            .node()
            .leave(self.id, user.as_ref(), room)
            .await?
        {
            if let Some(user) = user {
                self.state.limits().left_room(&user.id, room);
            }
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
        self.state.limits().send(&user.id, &room)?;
        let draft = Draft {
            room_id: room,
            user,
            content,
            client_msg_id,
        };
        let message = self.state.node().post(draft, Some(self.id)).await?.message;
        self.send(&ServerMsg::Ack {
            client_msg_id: message.client_msg_id,
            id: message.id,
            room_id: message.room_id,
            timestamp: message.timestamp,
        });
        Ok(())
    }

    /// Forwards typing state within the user's typing rate; `true` at most once per throttle
    /// interval per user and room.
    async fn typing(&mut self, user: User, room: String, is_typing: bool) -> Result<(), Refusal> {
        if !self.state.limits().typing(&user.id, &room, is_typing)? {
            return Ok(());
        }
        let event = ServerMsg::Typing {
            room_id: room.clone(),
            user_id: user.id,
            name: user.name,
            is_typing,
        };
        self.state
            .node()
            .signal(&room, encode(&event), self.id)
            .await?;
        Ok(())
    }

    /// Sends an error event, then closes the connection if the refusal is terminal, or else
    /// counts it against the protocol error budget. (The writer sends what is queued before
    /// the close frame, so the client reads why.)
    fn refuse(&mut self, refusal: Refusal, about: About) {
        let blame_client = refusal.code != ErrorCode::Unavailable;
        self.state
            .node()
            .hub()
            .metrics()
            .refused(refusal.code.as_str());
        tracing::debug!(connection = self.id.0, code = %refusal.code, error = refusal.error, "request refused");
        self.send(&ServerMsg::Error {
            code: refusal.code,
            error: refusal.error,
            room_id: about.room_id,
            channel: about.channel,
            client_msg_id: about.client_msg_id,
            retry_after_ms: refusal.retry_after_ms,
        });
        if let Some((code, reason)) = refusal.closes {
            self.outbox.kick(code, reason);
        } else if blame_client && self.count_protocol_error() {
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

//! The WebSocket wire protocol: JSON text frames with a `type` tag and camelCase fields.
//!
//! Defined once here and used by the server (to decode requests and encode events) and by
//! the browser (the other way round). It stays compatible with the classic "Redis pub/sub
//! chat" articles' protocol: their client works once it sends a real token in `auth`.
//!
//! Client → server: [`ClientMsg`]. Server → client: [`ServerMsg`]. Errors carry a stable
//! machine [`ErrorCode`] and a human sentence; abuse closes the socket with a [`close`] code.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A signed-in person, as the server knows them. Never taken from the client's word.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    /// Guests chose a display name only; they have no account.
    pub guest: bool,
}

/// Whether a user id is a guest's (guests' ids are `g-` and random hex; accounts' are not).
pub fn is_guest_id(user_id: &str) -> bool {
    user_id.starts_with("g-")
}

/// One stored chat message. `id` orders messages within a room and is a resume position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: String,
    pub room_id: String,
    pub user_id: String,
    pub name: String,
    pub content: String,
    /// Milliseconds since the Unix epoch, assigned by the server.
    pub timestamp: u64,
    /// The instance that accepted the message.
    pub server_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

/// Someone present in a room (or online at all): one entry per user, however many tabs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: String,
    pub name: String,
}

/// A room as listed on the home page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    pub room_id: String,
    /// People present now.
    pub members: usize,
    /// Id of the newest message, if the room has any history.
    pub last_message_id: Option<String>,
}

/// A page of history, oldest first. `has_more` says whether older messages exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub room_id: String,
    pub messages: Vec<ChatMessage>,
    pub has_more: bool,
    /// The room's history epoch: it changes when the store lost the room's data, so a
    /// position kept from before cannot be resumed (send it back with `join`).
    #[serde(default)]
    pub epoch: String,
}

/// Where a reader stands in a room: how far they read, and what is unread after that.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    /// The newest message the reader has seen (none: nothing in the room yet when they came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read: Option<String>,
    /// Messages by others after `last_read`, at most [`UNREAD_COUNT_MAX`] (shown as "99+").
    pub unread: u32,
    /// Of those, the ones that mention the reader by `@name`.
    pub mentions: u32,
    /// The newest message these counts include: a live message at or before it is in them
    /// already, so a client that gets both counts it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<String>,
}

/// Unread counts stop here: past it, the number is no longer useful, only "many".
pub const UNREAD_COUNT_MAX: u32 = 100;

/// A room in the reader's room list (the sidebar), with where they stand in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomEntry {
    pub room_id: String,
    pub read: ReadState,
}

/// Requests a client sends. Unknown fields (such as the articles' `userId` in `auth`) are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ClientMsg {
    /// Present a session token (from `POST /api/session`). Browsers are authenticated by cookie.
    Auth {
        token: String,
    },
    /// Start receiving a room. With `since` (a message id) the answer holds exactly what came
    /// after it; with `epoch` too (from `room_history`), a history that lost its data since is
    /// answered `recovered: false`, never `true`.
    Join {
        room_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    Leave {
        room_id: String,
    },
    Message {
        room_id: String,
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
    },
    Typing {
        room_id: String,
        is_typing: bool,
    },
    /// The reader has seen the room up to message `id`: the read position moves forward to
    /// it (never back), and every connection of the user is told (`read`).
    Read {
        room_id: String,
        id: String,
    },
    Ping,
    /// Start receiving a channel's publications (any real-time data, not chat). With `since`
    /// (the `offset` of the last publication received) and `epoch` (from `subscribed`), the
    /// answer holds exactly what came after it (`recovered: true`) or says it cannot be had
    /// (`recovered: false`, with the newest instead); channels without history never can.
    Subscribe {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    /// Sends `data` (any JSON value) to every subscriber of the channel, on every instance;
    /// in a queue namespace, adds it as a job for the channel's worker groups.
    Publish {
        channel: String,
        data: serde_json::Value,
    },
    /// Become a worker of `group` on the queue `channel`: its jobs are pushed as `job`, at most
    /// `prefetch` (default 1) unfinished at a time; each goes to one worker of the group.
    Work {
        channel: String,
        group: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefetch: Option<u32>,
    },
    /// A job of this connection's is finished: it is acknowledged and never given again.
    Done {
        channel: String,
        group: String,
        id: String,
    },
}

/// A publication from a channel's history, in a `subscribed` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptPublication {
    pub data: serde_json::Value,
    pub offset: String,
}

/// Events the server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMsg {
    Connected {
        connection_id: String,
        server_id: String,
    },
    Authenticated {
        user_id: String,
        name: String,
        guest: bool,
    },
    /// The answer to `join`: the newest messages (oldest first), or with `since`, those after it.
    RoomHistory {
        room_id: String,
        messages: Vec<ChatMessage>,
        /// Whether older messages exist before `messages`.
        has_more: bool,
        /// With `since`: true when `messages` are exactly what came after it; false when history
        /// was trimmed past it or too much was missed, and `messages` are the newest instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// Who is here (one entry per user, by name); cut to fit the answer in a very full room.
        members: Vec<Member>,
        /// How many are here, when `members` was cut to fit the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members_total: Option<usize>,
        /// The room's history epoch: keep it with the position, send it back on `join`.
        #[serde(default)]
        epoch: String,
        /// Where the signed-in reader stands in the room (the room is now in their list).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read: Option<ReadState>,
    },
    Message(ChatMessage),
    /// The reader's own read position in a room moved (on this connection, another tab or
    /// another device): only ever sent to that user's connections.
    Read {
        room_id: String,
        read: ReadState,
    },
    /// Confirms a sent message to its sender: it is stored and on its way to the room.
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        id: String,
        room_id: String,
        timestamp: u64,
    },
    UserJoined {
        room_id: String,
        user_id: String,
        name: String,
        timestamp: u64,
    },
    UserLeft {
        room_id: String,
        user_id: String,
        name: String,
        timestamp: u64,
    },
    Typing {
        room_id: String,
        user_id: String,
        name: String,
        is_typing: bool,
    },
    /// The answer to `subscribe`: live publications follow it. In a namespace that keeps
    /// history, it holds the newest kept publications (oldest first), or with `since` the
    /// ones after it, and the history's `epoch`. `recovered` answers a `since`.
    Subscribed {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        publications: Vec<KeptPublication>,
        /// Who is subscribed now (one entry per user), where the namespace tracks presence;
        /// cut to fit the answer in a very full channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presence: Option<Vec<Member>>,
        /// How many are subscribed, when `presence` was cut to fit the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presence_total: Option<usize>,
    },
    /// A user subscribed to a channel (their first connection there), where the namespace
    /// announces joins and leaves.
    Joined {
        channel: String,
        user_id: String,
        name: String,
    },
    /// A user's last connection left a channel.
    Left {
        channel: String,
        user_id: String,
        name: String,
    },
    /// The answer to `work`: jobs follow.
    Working {
        channel: String,
        group: String,
    },
    /// A job for this worker. `attempt` counts its deliveries (more than 1: an earlier worker
    /// did not finish it in time); `id` is the same every time, for deduplication.
    Job {
        channel: String,
        group: String,
        id: String,
        data: serde_json::Value,
        attempt: u32,
    },
    /// The answer to `done`: the job is acknowledged.
    Done {
        channel: String,
        group: String,
        id: String,
    },
    Unsubscribed {
        channel: String,
    },
    /// Data published to a channel. `offset` is its place in the channel's history, for
    /// channels that keep one.
    Publication {
        channel: String,
        data: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<String>,
    },
    Error {
        code: ErrorCode,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_id: Option<String>,
        /// The channel a refused `subscribe`, `unsubscribe` or `publish` named.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        /// With `rate_limited`: milliseconds until the request would be accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    Pong,
}

impl ServerMsg {
    /// An error event about no room or message in particular.
    pub fn error(code: ErrorCode, error: impl Into<String>) -> Self {
        ServerMsg::Error {
            code,
            error: error.into(),
            room_id: None,
            channel: None,
            client_msg_id: None,
            retry_after_ms: None,
        }
    }
}

/// Stable machine-readable error codes. The human `error` text may change; these do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON.
    InvalidJson,
    /// The `type` is missing or not one this server knows.
    UnknownType,
    /// A field is missing or has the wrong type.
    InvalidMessage,
    /// The request needs a session: send `auth` first.
    NotAuthenticated,
    /// The token is unknown or expired.
    InvalidToken,
    /// The room id breaks the rules (1–64 of `a-z 0-9 - _`, starting with a letter or digit).
    InvalidRoom,
    /// The room was not joined on this connection.
    NotInRoom,
    /// This connection joined as many rooms as it may.
    TooManyRooms,
    /// The content is empty once trimmed.
    EmptyContent,
    /// The content is longer than the configured limit.
    ContentTooLong,
    /// The content holds control characters other than newline and tab.
    InvalidContent,
    /// `clientMsgId` is longer than 64 characters.
    InvalidClientMsgId,
    /// `since` (or the `id` of a `read`) is not a message id.
    InvalidSince,
    /// The engine (e.g. Redis) cannot serve this now; retry later. Nothing was stored.
    Unavailable,
    /// Too many requests: wait `retryAfterMs` (WebSocket) or `Retry-After` seconds (HTTP).
    RateLimited,
    /// The username breaks the rules (3–32 of `A-Z a-z 0-9 _ -`, starting with a letter or digit).
    InvalidUsername,
    /// The password breaks the rules (8–128 characters, not the username).
    InvalidPassword,
    /// The username (in any letter case) belongs to a registered account.
    UsernameTaken,
    /// Sign-in failed: no such user, or the wrong password (deliberately not told apart).
    InvalidCredentials,
    /// The user has as many open connections as allowed.
    TooManyConnections,
    /// A browser request from a page of another origin (CSRF, cross-site WebSocket hijacking).
    ForbiddenOrigin,
    /// The channel name breaks the rules (1–128 of `A-Z a-z 0-9 _ - . : @ =`; a `:` ends its
    /// namespace).
    InvalidChannel,
    /// The channel's namespace is not one this server knows.
    UnknownNamespace,
    /// The channel was not subscribed on this connection.
    NotSubscribed,
    /// The published data is larger than the configured limit.
    DataTooLarge,
    /// The server API was called without a valid API key.
    InvalidApiKey,
    /// The channel's namespace does not allow this (subscribe to another user's channel,
    /// publish where only the server may).
    Forbidden,
    /// `work` or `done` on a channel whose namespace is no queue.
    NotAQueue,
    /// `done` for a job this connection does not hold (never given, finished, or given to
    /// another worker after its time ran out).
    UnknownJob,
    /// `work` (or a claim) in a group the queue's namespace does not list.
    UnknownGroup,
    /// `work` asking for more unfinished jobs than the user may hold (`--max-jobs-per-user`).
    TooManyJobs,
}

impl ErrorCode {
    /// Every code, in declaration order (a test checks it against serde's list).
    pub const ALL: [ErrorCode; 31] = [
        ErrorCode::InvalidJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidMessage,
        ErrorCode::NotAuthenticated,
        ErrorCode::InvalidToken,
        ErrorCode::InvalidRoom,
        ErrorCode::NotInRoom,
        ErrorCode::TooManyRooms,
        ErrorCode::EmptyContent,
        ErrorCode::ContentTooLong,
        ErrorCode::InvalidContent,
        ErrorCode::InvalidClientMsgId,
        ErrorCode::InvalidSince,
        ErrorCode::Unavailable,
        ErrorCode::RateLimited,
        ErrorCode::InvalidUsername,
        ErrorCode::InvalidPassword,
        ErrorCode::UsernameTaken,
        ErrorCode::InvalidCredentials,
        ErrorCode::TooManyConnections,
        ErrorCode::ForbiddenOrigin,
        ErrorCode::InvalidChannel,
        ErrorCode::UnknownNamespace,
        ErrorCode::NotSubscribed,
        ErrorCode::DataTooLarge,
        ErrorCode::InvalidApiKey,
        ErrorCode::Forbidden,
        ErrorCode::NotAQueue,
        ErrorCode::UnknownJob,
        ErrorCode::UnknownGroup,
        ErrorCode::TooManyJobs,
    ];

    /// The code named `text` (its [`ErrorCode::as_str`]), if it is one.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::EmptyContent => "empty_content",
            ErrorCode::ContentTooLong => "content_too_long",
            ErrorCode::InvalidContent => "invalid_content",
            ErrorCode::InvalidClientMsgId => "invalid_client_msg_id",
            ErrorCode::InvalidSince => "invalid_since",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidUsername => "invalid_username",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ForbiddenOrigin => "forbidden_origin",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::UnknownNamespace => "unknown_namespace",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::DataTooLarge => "data_too_large",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotAQueue => "not_a_queue",
            ErrorCode::UnknownJob => "unknown_job",
            ErrorCode::UnknownGroup => "unknown_group",
            ErrorCode::TooManyJobs => "too_many_jobs",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be decoded into a [`ClientMsg`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub detail: String,
}

/// Decodes one client frame, telling malformed JSON, unknown types and bad fields apart.
///
/// The common case costs one parse; only a failure parses again to classify it.
pub fn decode_client_msg(text: &str) -> Result<ClientMsg, DecodeError> {
    let err = match serde_json::from_str::<ClientMsg>(text) {
        Ok(msg) => return Ok(msg),
        Err(err) => err,
    };
    if err.is_syntax() || err.is_eof() {
        return Err(DecodeError {
            code: ErrorCode::InvalidJson,
            detail: "the frame is not valid JSON".into(),
        });
    }
    #[derive(Deserialize)]
    struct Tagged<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    const KNOWN: [&str; 12] = [
        "auth",
        "join",
        "leave",
        "message",
        "typing",
        "read",
        "ping",
        "subscribe",
        "unsubscribe",
        "publish",
        "work",
        "done",
    ];
    match serde_json::from_str::<Tagged>(text) {
        Ok(Tagged { kind: Some(kind) }) if KNOWN.contains(&kind.as_ref()) => Err(DecodeError {
            code: ErrorCode::InvalidMessage,
            detail: format!("bad `{kind}` request: {}", strip_position(&err.to_string())),
        }),
        Ok(Tagged { kind: Some(kind) }) => Err(DecodeError {
            code: ErrorCode::UnknownType,
            detail: format!("unknown message type `{}`", truncate(&kind, 32)),
        }),
        Ok(Tagged { kind: None }) => Err(DecodeError {
            code: ErrorCode::UnknownType,
            detail: "the message has no `type` field".into(),
        }),
        Err(_) => Err(DecodeError {
            code: ErrorCode::InvalidMessage,
            detail: "the message must be a JSON object with a string `type`".into(),
        }),
    }
}

/// serde_json appends " at line 1 column 42": useless to a client, so it is cut.
fn strip_position(text: &str) -> &str {
    text.find(" at line ").map_or(text, |at| &text[..at])
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// WebSocket close codes. 4000–4499: transient, the client reconnects (with backoff).
/// 4500–4999: terminal, the client must not reconnect without a change (new session, smaller
/// frames). Standard codes are used where they fit (RFC 6455 §7.4).
pub mod close {
    /// Invalid UTF-8 in a text frame.
    pub const INVALID_UTF8: u16 = 1007;
    /// A frame or message larger than the configured limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server failed to send something it should have (a bug, logged at warn): reconnect.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server is shutting down or restarting: reconnect (to any instance).
    pub const SHUTDOWN: u16 = 4000;
    /// The connection could not keep up with its outbound queue: reconnect.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// No pong (or any frame) within the ping timeout: reconnect.
    pub const NO_PONG: u16 = 4002;
    /// This instance missed room messages it cannot deliver in order (its pub/sub link was
    /// down longer than the resume window, or the store lost its data): reconnect and
    /// resume with `since` + `epoch`, which says exactly what can be recovered.
    pub const RESYNC: u16 = 4003;
    /// This instance cannot deliver right now (its link to the other instances has been
    /// broken too long): reconnect, to another instance, and resume with `since` + `epoch`.
    pub const UNHEALTHY: u16 = 4004;
    /// No successful `auth` within the auth timeout. Terminal: get a session first.
    pub const AUTH_TIMEOUT: u16 = 4500;
    /// Too many protocol errors (including refused sends while rate limited) in a short
    /// time. Terminal: the client is broken or flooding.
    pub const PROTOCOL_ERRORS: u16 = 4501;
    /// The user already has as many connections as allowed. Terminal: close another first.
    pub const TOO_MANY_CONNECTIONS: u16 = 4502;
    /// The session was ended (signed out or expired, on any instance). Terminal: sign in again.
    pub const SESSION_ENDED: u16 = 4503;
    /// Too many connections without a session from this address (or on this instance).
    /// Terminal: sign in first, or close other connections.
    pub const TOO_MANY_ANONYMOUS: u16 = 4504;

    /// Whether a client should reconnect after this close code.
    pub fn should_reconnect(code: u16) -> bool {
        !(4500..=4999).contains(&code) && code != MESSAGE_TOO_BIG && code != INVALID_UTF8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_client_message() {
        let cases = [
            (
                r#"{"type":"auth","token":"t","userId":"ignored"}"#,
                ClientMsg::Auth { token: "t".into() },
            ),
            (
                r#"{"type":"join","roomId":"general"}"#,
                ClientMsg::Join {
                    room_id: "general".into(),
                    since: None,
                    epoch: None,
                },
            ),
            (
                r#"{"type":"join","roomId":"general","since":"5-0"}"#,
                ClientMsg::Join {
                    room_id: "general".into(),
                    since: Some("5-0".into()),
                    epoch: None,
                },
            ),
            (
                r#"{"type":"join","roomId":"general","since":"5-0","epoch":"e1"}"#,
                ClientMsg::Join {
                    room_id: "general".into(),
                    since: Some("5-0".into()),
                    epoch: Some("e1".into()),
                },
            ),
            (
                r#"{"type":"leave","roomId":"a"}"#,
                ClientMsg::Leave {
                    room_id: "a".into(),
                },
            ),
            (
                r#"{"type":"message","roomId":"a","content":"hi","clientMsgId":"c1"}"#,
                ClientMsg::Message {
                    room_id: "a".into(),
                    content: "hi".into(),
                    client_msg_id: Some("c1".into()),
                },
            ),
            (
                r#"{"type":"typing","roomId":"a","isTyping":true}"#,
                ClientMsg::Typing {
                    room_id: "a".into(),
                    is_typing: true,
                },
            ),
            (r#"{"type":"ping"}"#, ClientMsg::Ping),
        ];
        for (text, expected) in cases {
            assert_eq!(decode_client_msg(text), Ok(expected.clone()), "{text}");
            // And the browser's encoding decodes to the same thing.
            let round = serde_json::to_string(&expected).unwrap();
            assert_eq!(decode_client_msg(&round), Ok(expected));
        }
    }

    #[test]
    fn classifies_bad_frames() {
        let code = |text: &str| decode_client_msg(text).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::InvalidJson);
        assert_eq!(code(""), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"roomId":"a"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::InvalidMessage);
        for every in [
            "auth",
            "leave",
            "message",
            "read",
            "subscribe",
            "unsubscribe",
            "publish",
        ] {
            let text = format!(r#"{{"type":"{every}"}}"#);
            assert_eq!(code(&text), ErrorCode::InvalidMessage, "{text}");
        }
        assert_eq!(
            code(r#"{"type":"work","channel":"jobs:x"}"#),
            ErrorCode::InvalidMessage,
            "a work without its group"
        );
        assert_eq!(
            code(r#"{"type":"done","channel":"jobs:x","group":"g","id":1}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"typing","roomId":"a","isTyping":"yes"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::InvalidMessage);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(code("42"), ErrorCode::InvalidMessage);
    }

    #[test]
    fn missing_field_is_named_without_position() {
        let err = decode_client_msg(r#"{"type":"message","roomId":"a"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidMessage);
        assert!(err.detail.contains("content"), "{}", err.detail);
        assert!(!err.detail.contains("line"), "{}", err.detail);
    }

    #[test]
    fn server_events_use_the_articles_shape() {
        let msg = ServerMsg::Message(ChatMessage {
            id: "1-0".into(),
            room_id: "r".into(),
            user_id: "u".into(),
            name: "Ana".into(),
            content: "<b>hi</b>".into(),
            timestamp: 7,
            server_id: "s".into(),
            client_msg_id: None,
        });
        let json: serde_json::Value = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["roomId"], "r");
        assert_eq!(json["userId"], "u");
        assert_eq!(json["serverId"], "s");
        assert!(json.get("clientMsgId").is_none());

        let err = serde_json::to_value(ServerMsg::error(ErrorCode::NotInRoom, "x")).unwrap();
        assert_eq!(
            err,
            serde_json::json!({"type":"error","code":"not_in_room","error":"x"})
        );
        assert_eq!(
            serde_json::to_value(ServerMsg::Pong).unwrap(),
            serde_json::json!({"type":"pong"})
        );
    }

    #[test]
    fn error_code_strings_match_serde() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn close_codes_split_reconnect_from_terminal() {
        assert!(close::should_reconnect(close::SHUTDOWN));
        assert!(close::should_reconnect(close::SLOW_CONSUMER));
        assert!(close::should_reconnect(close::RESYNC));
        assert!(close::should_reconnect(1006));
        assert!(!close::should_reconnect(close::AUTH_TIMEOUT));
        assert!(!close::should_reconnect(close::MESSAGE_TOO_BIG));
    }
}

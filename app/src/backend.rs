//! What server functions need from the server (ssr only).
//!
//! The `server` crate depends on this crate, not the other way round, so server functions
//! reach the engine through this trait, provided as Leptos context ([`SharedBackend`]). The
//! server's HTTP endpoints use the same trait, so both read the same data.

use crate::protocol::{ChatMessage, HistoryPage, Member, ReadState, RoomEntry, RoomSummary, User};
use crate::validate::Invalid;
use async_trait::async_trait;
use http::HeaderMap;
use std::sync::Arc;

/// Name of the HttpOnly session cookie.
pub const SESSION_COOKIE: &str = "confab_session";

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The request was refused; the code says why (bad input, taken name, wrong password),
    /// the text says what to do.
    #[error("{0}")]
    Invalid(Invalid),
    /// Too many attempts: try again after this many seconds.
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The engine cannot serve now (details are logged by the server, not returned).
    #[error("the chat service is unavailable, try again shortly")]
    Unavailable,
}

impl BackendError {
    /// The HTTP status a refusal answers with (the JSON API and the server functions alike):
    /// a client's mistake is a 4xx, never a 500.
    pub fn status(&self) -> http::StatusCode {
        use crate::protocol::ErrorCode;
        match self {
            BackendError::Invalid(invalid) => match invalid.code {
                ErrorCode::InvalidCredentials | ErrorCode::NotAuthenticated => {
                    http::StatusCode::UNAUTHORIZED
                }
                ErrorCode::UsernameTaken => http::StatusCode::CONFLICT,
                _ => http::StatusCode::BAD_REQUEST,
            },
            BackendError::RateLimited { .. } => http::StatusCode::TOO_MANY_REQUESTS,
            BackendError::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<Invalid> for BackendError {
    fn from(invalid: Invalid) -> Self {
        BackendError::Invalid(invalid)
    }
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The user behind a session token, if it is valid.
    async fn user_for_token(&self, token: &str) -> Result<Option<User>, BackendError>;
    /// Starts a guest session under a display name: the token and the user.
    async fn create_guest(
        &self,
        name: &str,
        client: &Client,
    ) -> Result<(String, User), BackendError>;
    /// Creates an account and signs it in: the token and the user.
    async fn register(
        &self,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Result<(String, User), BackendError>;
    /// Signs in to an account: the token and the user.
    async fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Result<(String, User), BackendError>;
    /// Ends a session.
    async fn end_session(&self, token: &str) -> Result<(), BackendError>;
    /// A page of a room's history, oldest first, older than `before` (or the newest), within
    /// the client address's rate of history reads.
    async fn history_page(
        &self,
        room: &str,
        before: Option<&str>,
        client: &Client,
    ) -> Result<HistoryPage, BackendError>;
    /// Who is present in a room.
    async fn members(&self, room: &str) -> Result<Vec<Member>, BackendError>;
    /// Rooms with history or people present, busiest first.
    async fn rooms(&self) -> Result<Vec<RoomSummary>, BackendError>;
    /// The rooms on the user's list (their sidebar), in order, with unread counts.
    async fn rooms_of(&self, user: &User) -> Result<Vec<RoomEntry>, BackendError>;
    /// Where the user stands in a room on their list (None: not on it).
    async fn room_read_state(
        &self,
        user: &User,
        room: &str,
    ) -> Result<Option<ReadState>, BackendError>;
    /// Posts a message without a live connection (the composer's form without JavaScript),
    /// within the user's send rate.
    async fn post_message(
        &self,
        user: &User,
        room: &str,
        content: &str,
    ) -> Result<ChatMessage, BackendError>;
    /// Whether the user may see the live dashboard (a registered account named in
    /// `--operators`).
    fn is_operator(&self, user: &User) -> bool;
    /// The longest message accepted, in bytes of UTF-8 (`--max-content-bytes`).
    fn max_content_bytes(&self) -> usize;
    /// Takes a room off the user's list.
    async fn unfollow(&self, user: &User, room: &str) -> Result<(), BackendError>;
    /// The `Set-Cookie` value that stores `token` in the browser (`Secure` when the client
    /// came over HTTPS).
    fn session_cookie(&self, token: &str, client: &Client) -> String;
    /// The `Set-Cookie` value that removes the session cookie.
    fn clear_session_cookie(&self) -> String;
}

pub type SharedBackend = Arc<dyn Backend>;

/// Who made a request, as far as rate limits and cookies care. The server works it out once
/// per request (peer address, or a configured proxy header) and stores it in the request's
/// extensions, where HTTP handlers and server functions read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    /// The client's IP address, when known.
    pub ip: Option<std::net::IpAddr>,
    /// Whether the client reached us over HTTPS (directly or through a proxy saying so).
    pub https: bool,
}

impl Client {
    /// The key of per-address limits.
    pub fn address_key(&self) -> String {
        match self.ip {
            Some(ip) => ip.to_string(),
            None => "unknown".into(),
        }
    }
}

/// The session token of a request: the session cookie, or an `Authorization: Bearer` header.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty());
    if let Some(token) = bearer {
        return Some(token.to_string());
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_the_token_in_cookies_or_bearer() {
        let mut headers = HeaderMap::new();
        assert_eq!(session_token(&headers), None);
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; confab_session=abc; b=2"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc"));
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("xyz"));
        let mut empty = HeaderMap::new();
        empty.insert(
            http::header::COOKIE,
            HeaderValue::from_static("confab_session="),
        );
        assert_eq!(session_token(&empty), None);
    }
}

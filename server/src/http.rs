//! The JSON HTTP API: sessions for programs, health, and the articles' presence endpoints.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /api/session `{"name"}` | a guest session: `{"token","user"}` and the session cookie |
//! | POST | /api/accounts `{"username","password"}` | 201: a new account, signed in, as above |
//! | POST | /api/login `{"username","password"}` | an account signed in, as above |
//! | GET | /api/session | `{"user"}` of the cookie or bearer token, else 401 |
//! | DELETE | /api/session | ends the session, clears the cookie |
//! | POST | /api/publish `{"channel","data"}` or `{"publications":[...]}` | with an API key: `{"published"}` |
//! | GET | /health | status, connections, rooms, serverId, engine |
//! | GET | /api/online-users | `{"count","users"}` |
//! | GET | /api/rooms | `{"rooms"}` with member counts |
//! | GET | /api/rooms/{room}/members | `{"roomId","members"}` |
//! | GET | /api/rooms/{room}/messages?before= | a page of history, oldest first |
//! | GET | /open?room= | the home page's room form without JavaScript: a redirect |
//!
//! Every failure is a 4xx/5xx with `{"code","error"}`; internals are never returned.
//! 401 `invalid_credentials`, 409 `username_taken`, 429 `rate_limited` with `Retry-After`,
//! 403 `forbidden_origin` (see [`crate::guard`]).

use crate::auth::Creator;
use crate::state::AppState;
use app::backend::{session_token, Backend, BackendError, Client};
use app::protocol::ErrorCode;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

/// The one error type of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code.as_str(), message)
    }
}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::Invalid(ref invalid) => {
                ApiError::new(err.status(), invalid.code.as_str(), invalid.reason.clone())
            }
            BackendError::RateLimited { retry_after_secs } => ApiError {
                retry_after_secs: Some(retry_after_secs),
                ..ApiError::new(
                    err.status(),
                    ErrorCode::RateLimited.as_str(),
                    err.to_string(),
                )
            },
            BackendError::Unavailable => ApiError::new(
                err.status(),
                ErrorCode::Unavailable.as_str(),
                err.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"code": self.code, "error": self.message})),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// Parses a JSON body, answering a clear 400 (not axum's plain-text rejection) when it is bad.
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        let message = err.to_string();
        let message = message.split(" at line ").next().unwrap_or_default();
        ApiError::bad_request(ErrorCode::InvalidJson, format!("bad JSON body: {message}"))
    })
}

#[derive(Deserialize)]
struct NewSession {
    name: String,
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// The answer to every successful sign-in: the token for programs, the cookie for browsers.
fn signed_in(
    state: &AppState,
    client: &Client,
    status: StatusCode,
    (token, user): (String, app::protocol::User),
) -> Response {
    let cookie = state.session_cookie(&token, client);
    (
        status,
        [(header::SET_COOKIE, cookie)],
        Json(json!({"token": token, "user": user})),
    )
        .into_response()
}

pub async fn create_session(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    body: Bytes,
) -> ApiResult {
    let request: NewSession = parse_body(&body)?;
    let signed = state.create_guest(&request.name, &client).await?;
    tracing::debug!(
        user = signed.1.id,
        name = signed.1.name,
        "guest session created"
    );
    Ok(signed_in(&state, &client, StatusCode::OK, signed))
}

/// Registers an account. With an API key (`confab account create`) the server's
/// administrator registers the usernames `--operators` reserves.
pub async fn register(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    // Only `X-API-Key` here: a client may send its session token as a bearer anywhere.
    let creator = match headers.get("x-api-key") {
        Some(_) => {
            let key = api_key_name(&state, &headers)?;
            tracing::info!(key, "an account created with an API key");
            Creator::Operator
        }
        None => Creator::Visitor,
    };
    let request: Credentials = parse_body(&body)?;
    let signed = state
        .auth()
        .register(&request.username, &request.password, &client, creator)
        .await?;
    Ok(signed_in(&state, &client, StatusCode::CREATED, signed))
}

pub async fn login(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    body: Bytes,
) -> ApiResult {
    let request: Credentials = parse_body(&body)?;
    let signed = Backend::sign_in(&state, &request.username, &request.password, &client).await?;
    Ok(signed_in(&state, &client, StatusCode::OK, signed))
}

pub async fn current_session(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let user = match session_token(&headers) {
        Some(token) => state.user_for_token(&token).await?,
        None => None,
    };
    match user {
        Some(user) => Ok(Json(json!({"user": user})).into_response()),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::NotAuthenticated.as_str(),
            "no valid session",
        )),
    }
}

pub async fn end_session(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    if let Some(token) = session_token(&headers) {
        state.end_session(&token).await?;
    }
    Ok((
        [(header::SET_COOKIE, state.clear_session_cookie())],
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

/// 200 with `"status":"ok"` when the engine can serve; 503 with `"status":"unavailable"` and
/// the reason (e.g. Redis unreachable, pub/sub down) when it cannot.
pub async fn health(State(state): State<AppState>) -> Response {
    let engine = state.engine().lifecycle.health().await;
    let status = if engine.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if engine.is_ok() { "ok" } else { "unavailable" },
        "reason": engine.err(),
        "connections": state.hub().connection_count(),
        "outboundBytes": state.hub().queued_bytes(),
        "rooms": state.hub().room_count(),
        "serverId": state.server_id(),
        "engine": state.engine().kind,
        "pubsub": state.engine().lifecycle.stats(),
    });
    (status, Json(body)).into_response()
}

pub async fn online_users(State(state): State<AppState>) -> ApiResult {
    let users = state
        .engine()
        .presence
        .online()
        .await
        .map_err(BackendError::from)?;
    Ok(Json(json!({"count": users.len(), "users": users})).into_response())
}

pub async fn rooms(State(state): State<AppState>) -> ApiResult {
    Ok(Json(json!({"rooms": state.rooms().await?})).into_response())
}

pub async fn room_members(State(state): State<AppState>, Path(room): Path<String>) -> ApiResult {
    let members = state.members(&room).await?;
    Ok(Json(json!({"roomId": room, "members": members})).into_response())
}

#[derive(Deserialize)]
pub struct PageQuery {
    before: Option<String>,
}

pub async fn room_messages(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    Path(room): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult {
    let page = state
        .history_page(&room, query.before.as_deref(), &client)
        .await?;
    Ok(Json(page).into_response())
}

#[derive(Deserialize)]
pub struct OpenRoom {
    room: Option<String>,
}

/// The home page's "open a room" form without JavaScript: to the room, or back home.
pub async fn open_room(Query(query): Query<OpenRoom>) -> Response {
    match app::validate::room_name_to_id(query.room.as_deref().unwrap_or_default()) {
        Ok(room) => axum::response::Redirect::to(&format!("/rooms/{room}")).into_response(),
        Err(_) => axum::response::Redirect::to("/").into_response(),
    }
}

pub async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

/// One publication of `POST /api/publish`.
#[derive(Deserialize)]
struct Publication {
    channel: String,
    data: serde_json::Value,
}

/// `{"channel","data"}`, or `{"publications": [{"channel","data"}, ...]}` (at most
/// [`PUBLISH_BATCH_MAX`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    publications: Option<Vec<Publication>>,
}

/// Most publications in one batch request.
pub const PUBLISH_BATCH_MAX: usize = 100;

/// The name of the valid API key the request presents, or 401 `invalid_api_key`.
pub fn api_key_name(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let unauthorized = |message: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidApiKey.as_str(),
            message,
        )
    };
    if !state.api_keys().configured() {
        return Err(unauthorized(
            "no API keys are configured on this server (--api-keys-file)",
        ));
    }
    let Some(key) = presented_key(headers) else {
        return Err(unauthorized(
            "send the API key as `Authorization: Bearer <key>`",
        ));
    };
    state
        .api_keys()
        .verify(key)
        .ok_or_else(|| unauthorized("unknown or revoked API key"))
}

/// The API key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// The server API: a backend publishes to channels with an API key, without a WebSocket.
/// Every publication is checked before any is sent; `{"published": n}` answers.
pub async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let name = api_key_name(&state, &headers)?;
    let request: PublishBody = parse_body(&body)?;
    let publications = match request {
        PublishBody {
            channel: Some(channel),
            data: Some(data),
            publications: None,
        } => vec![Publication { channel, data }],
        PublishBody {
            channel: None,
            data: None,
            publications: Some(batch),
        } if (1..=PUBLISH_BATCH_MAX).contains(&batch.len()) => batch,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidMessage,
                format!("send {{\"channel\", \"data\"}} or {{\"publications\": [...]}} with 1 to {PUBLISH_BATCH_MAX} of them"),
            ))
        }
    };
    let max = state.config().max_publication_bytes;
    for publication in &publications {
        let invalid =
            |invalid: app::validate::Invalid| ApiError::bad_request(invalid.code, invalid.reason);
        state
            .namespaces()
            .may_publish_as_server(&publication.channel)
            .map_err(invalid)?;
        crate::node::check_data(&publication.data, max).map_err(invalid)?;
    }
    let total = publications.len();
    let mut offsets = Vec::with_capacity(total);
    for (published, publication) in publications.into_iter().enumerate() {
        let namespaces = state.namespaces();
        let sent = match namespaces.queue(&publication.channel) {
            Some(rules) => state
                .node()
                .enqueue(&publication.channel, &publication.data, &rules)
                .await
                .map(Some),
            None => {
                let keep = namespaces.features(&publication.channel).keep;
                state
                    .node()
                    .publish(&publication.channel, publication.data, keep)
                    .await
            }
        };
        match sent {
            Ok(offset) => offsets.push(offset.map(|id| id.to_string())),
            Err(err) => {
                tracing::warn!(error = %err, key = name, "publish failed");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable.as_str(),
                    format!("the service is unavailable: {published} of {total} published"),
                ));
            }
        }
    }
    tracing::debug!(
        key = name,
        publications = total,
        "published through the server API"
    );
    Ok(Json(json!({"published": total, "offsets": offsets})).into_response())
}

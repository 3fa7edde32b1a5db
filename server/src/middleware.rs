//! The axum layers every request passes: who the client is, the cross-origin check (the
//! rules are in [`crate::guard`]), and the security headers every response carries.

use crate::guard::client_of;
use crate::http::ApiError;
use crate::state::AppState;
use app::protocol::ErrorCode;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// Refuses cross-origin state-changing requests (HTTP API and server functions) with 403.
pub async fn csrf(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state
        .origins()
        .check_request(request.method(), request.headers())
    {
        Ok(()) => next.run(request).await,
        Err(why) => {
            tracing::warn!(path = %request.uri().path(), why, "cross-origin request refused");
            forbidden_origin()
        }
    }
}

pub fn forbidden_origin() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::ForbiddenOrigin.as_str(),
        "this request must come from the chat's own pages",
    )
    .into_response()
}

/// Works out the [`Client`] once per request and stores it in the request's extensions.
pub async fn identify_client(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let client = client_of(
        state.config().client_ip_header.as_deref(),
        request.headers(),
        peer,
    );
    request.extensions_mut().insert(client);
    next.run(request).await
}

/// What a response that is no page may do in a browser: nothing (JSON, files, errors). Pages
/// send their own policy, with the nonce of their inline scripts (`app::page_security_policy`).
const DEFAULT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the security headers to every response: a Content-Security-Policy (unless the page
/// sent its own), no framing by other sites, no content-type sniffing, and only the origin
/// as referrer to other sites (a room's path stays private).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, DEFAULT_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Where the server functions live (`#[server(prefix = "/fn")]` in `app::api`).
pub const SERVER_FN_PREFIX: &str = "/fn/";

/// Longest server-function error body read back to classify it.
const SERVER_FN_ERROR_BYTES: usize = 16 * 1024;

/// A server function answers a request it cannot decode (missing or mistyped arguments, a
/// JSON body where a form is expected) with 500 and `Args|…` or `Deserialization|…` as text:
/// a client's mistake told as the server's fault. This turns those into 400 with the JSON
/// error every other endpoint sends. Server functions' own refusals already carry their
/// 4xx status (`app::api`), and our pages never send malformed arguments.
pub async fn server_fn_errors(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with(SERVER_FN_PREFIX) {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, SERVER_FN_ERROR_BYTES).await else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable.as_str(),
            "the request could not be completed",
        )
        .into_response();
    };
    let text = String::from_utf8_lossy(&bytes);
    match text
        .strip_prefix("Args|")
        .or_else(|| text.strip_prefix("Deserialization|"))
    {
        Some(why) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidMessage.as_str(),
            format!("bad request to a server function: {why}"),
        )
        .into_response(),
        None => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

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

/// HTTPS only, for a year (what browsers' preload lists ask of a site; subdomains are left
/// to their own servers).
const HSTS: &str = "max-age=31536000";

/// What a response that is no page may do in a browser: nothing (JSON, files, errors).
const DEFAULT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// The nonce of a page's inline scripts, made for each request here. Leptos is given it as
/// the page's [`Nonce`](leptos::nonce::Nonce) (see `lib.rs`), and the page's policy names it.
///
/// Why here and not in the page: a header the page set through Leptos's `ResponseOptions`
/// was, now and then, missing from the response (a signed-in page after a form post went
/// out with the default policy, which blocks the app's own script: the page never
/// hydrated). The response's policy is this layer's alone, so it cannot go missing.
#[derive(Clone)]
pub struct PageNonce(pub std::sync::Arc<str>);

/// Adds the security headers to every response: a Content-Security-Policy (a page's allows
/// the app's own scripts, WebAssembly and WebSocket; anything else's allows nothing), no
/// framing by other sites, no content-type sniffing, only the origin as referrer to other
/// sites (a room's path stays private), and over HTTPS, Strict-Transport-Security.
pub async fn security_headers(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = leptos::nonce::Nonce::new();
    request
        .extensions_mut()
        .insert(PageNonce(nonce.as_inner().clone()));
    // Served over HTTPS (said so, or through a proxy saying so): browsers are told to use
    // nothing else, so the Secure session cookie is never offered to a downgraded page.
    let https = state.config().secure_cookies
        || request
            .extensions()
            .get::<app::backend::Client>()
            .is_some_and(|client| client.https);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let page_policy = html
        .then(|| {
            let watching = std::env::var_os("LEPTOS_WATCH").is_some();
            let reload = watching.then_some(state.leptos().reload_port);
            HeaderValue::from_str(&app::page_security_policy(&nonce, reload)).ok()
        })
        .flatten();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        page_policy.unwrap_or(HeaderValue::from_static(DEFAULT_POLICY)),
    );
    let defaults = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    // Pages are always revalidated: they name the current assets and carry the user's data.
    if html {
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-cache"));
    }
    response
}

/// A refusal the router or a body limit answered without a body (405 for a wrong method,
/// 413 for a body too large, ...) gets the JSON error every other refusal carries; its other
/// headers (`Allow`) stay.
pub async fn bare_refusals(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !status.is_client_error() || response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    let (code, error) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this path does not take that method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is too large"),
        StatusCode::URI_TOO_LONG => ("too_large", "the address is too long"),
        StatusCode::NOT_FOUND => ("not_found", "nothing here"),
        _ => ("bad_request", "the request is malformed"),
    };
    let (parts, _) = response.into_parts();
    let mut json = ApiError::new(status, code, error).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH {
            json.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    json
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
    if let Some(form) = PlainForm::of(&request) {
        let response = next.run(request).await;
        return form.answer(response).await;
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

/// A form posted by a page without JavaScript (it accepts HTML and came from one of our
/// pages): answered with a redirect, never with the server function's raw reply. Success goes
/// back to the page, or to its `next` (after signing in: where the reader came from); a
/// refusal goes back to the page with `?error=<code>&form=<which>`, which the form shows in
/// its own words (`app::server_call::refusal_text`).
struct PlainForm {
    /// The page the form is on: path and query of the Referer (our own origin only), or `/`.
    page: String,
    /// The server function's name: the form the error belongs to.
    function: String,
}

impl PlainForm {
    fn of(request: &Request) -> Option<PlainForm> {
        let accepts_html = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
        // Back to the page the form is on when it is one of ours; else home: never to a
        // page of another site, nor to a path that leaves this one (`//elsewhere`).
        let host = request.headers().get(header::HOST)?.to_str().ok()?;
        let page = request
            .headers()
            .get(header::REFERER)
            .and_then(|referer| referer.to_str().ok())
            .and_then(|referer| crate::guard::same_origin_path(referer, host))
            .unwrap_or_else(|| "/".to_string());
        let function = request
            .uri()
            .path()
            .strip_prefix(SERVER_FN_PREFIX)?
            .to_string();
        accepts_html.then_some(PlainForm { page, function })
    }

    async fn answer(self, response: Response) -> Response {
        let (path, query) = self.page.split_once('?').unwrap_or((&self.page, ""));
        let params = crate::guard::query_pairs(query);
        // What the server function set (the session cookie of a sign-in) goes along.
        let cookies: Vec<HeaderValue> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        let target = if response.status().is_success() || response.status().is_redirection() {
            let next = params
                .iter()
                .find(|(k, _)| k == "next")
                .and_then(|(_, next)| crate::guard::local_path(next));
            match next {
                Some(next) => next,
                None => crate::guard::with_query(path, &params, &[]),
            }
        } else {
            // The refusal's code, never its text: the page shows its own words for a code,
            // so a link cannot make one of our pages say anything.
            let code = response
                .headers()
                .get(app::server_call::REFUSAL_CODE_HEADER)
                .and_then(|code| code.to_str().ok())
                .and_then(app::protocol::ErrorCode::parse)
                .map_or("failed", |code| code.as_str());
            crate::guard::with_query(path, &params, &[("error", code), ("form", &self.function)])
        };
        let mut redirect = StatusCode::SEE_OTHER.into_response();
        let headers = redirect.headers_mut();
        if let Ok(location) = HeaderValue::from_str(&target) {
            headers.insert(header::LOCATION, location);
        }
        for cookie in cookies {
            headers.append(header::SET_COOKIE, cookie);
        }
        redirect
    }
}

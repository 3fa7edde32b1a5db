//! The `/ws` endpoint: one [`connection`] task pair per socket, requests handled by [`dispatch`].
//!
//! A browser is authenticated by its session cookie on the upgrade request; a program by
//! `Authorization: Bearer` on the upgrade or by the token in an `auth` message. Until it
//! signs in, a connection holds a slot of the caps on connections without a session (per
//! client address and in total); one that finds none is told why and closed (4504). An upgrade
//! from a page of a foreign origin is refused with 403 before anything else happens
//! (cross-site WebSocket hijacking, see [`crate::guard`]).

mod batching;
mod connection;
mod dispatch;
mod handshake;

use crate::engine::SessionId;
use crate::limits::{AnonymousRefused, AnonymousSlot};
use crate::state::AppState;
use app::backend::{session_token, Client};
use app::protocol::User;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use handshake::Upgrade;
use tungstenite::protocol::WebSocketConfig;

/// Bytes tungstenite allocates per socket for reading (at once) and buffers for writing.
/// Small, because most sockets are idle and client frames are small; larger frames still
/// work (the buffer grows for them).
const SOCKET_BUFFER_BYTES: usize = 1024;

/// How a new connection starts: signed in from the upgrade (cookie or bearer), or without a
/// session, holding (or refused) a slot of the anonymous caps.
pub enum Admission {
    SignedIn(SessionId, User),
    Anonymous(Result<AnonymousSlot, AnonymousRefused>),
}

pub async fn upgrade(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    if let Err(why) = state.origins().check_upgrade(&headers) {
        tracing::warn!(why, "WebSocket upgrade refused");
        return crate::middleware::forbidden_origin();
    }
    let session = match session_token(&headers) {
        Some(token) => match state.auth().resolve(&token).await {
            Ok(session) => session,
            Err(err) => {
                tracing::warn!(error = %err, "session lookup failed on upgrade");
                None
            }
        },
        None => None,
    };
    let admission = match session {
        Some((session, user)) => Admission::SignedIn(session, user),
        None => Admission::Anonymous(state.anonymous().take(&client.address_key())),
    };
    let config = state.config();
    let max_frame = config.max_frame_bytes;
    let socket_config = WebSocketConfig::default()
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        // The outbound queue bounds what waits to be written; this bounds what tungstenite
        // holds while a frame is written: the largest frame the server sends (every answer
        // is cut to fit it, see `node::answers`) plus what it buffers before writing.
        .max_write_buffer_size(crate::node::answers::write_buffer_bytes(
            config.max_answer_bytes,
            SOCKET_BUFFER_BYTES,
        ));
    ws.on_upgrade(socket_config, move |socket| {
        connection::run(socket, state, admission)
    })
}

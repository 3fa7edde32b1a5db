//! Sessions that end while their sockets are open close those sockets.
//!
//! Signing out closes a session's sockets on every instance at once (the engine's control
//! channel). A session can also end without anyone signing out: it expires (idle past
//! `--session-ttl-secs`, or older than `--session-max-age-secs`), or it is removed from the
//! store by an operator or lost with it. Every `--session-check-secs` each instance checks
//! the sessions its connections are signed in with, and closes the sockets of every session
//! that is no longer valid with 4503 (`session ended`), as a sign-out would. A check is a use:
//! a session with an open connection does not expire for idleness, only at its maximum age.

use crate::state::AppState;
use app::protocol::close;

/// Checks the local connections' sessions every `--session-check-secs`, until dropped.
pub async fn close_ended_sessions(state: AppState) {
    let mut tick = tokio::time::interval(state.config().session_check());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for session in state.hub().session_ids() {
            match state.auth().check(session).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let closed = state.hub().close_session_with(
                        &session,
                        close::SESSION_ENDED,
                        "session expired",
                    );
                    tracing::info!(
                        connections = closed,
                        "closed the sockets of a session that ended"
                    );
                }
                // The store cannot say: nothing is closed on its account.
                Err(err) => {
                    tracing::warn!(error = %err, "could not check the open connections' sessions");
                    break;
                }
            }
        }
    }
}

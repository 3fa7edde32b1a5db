//! The instance's shared state, handed to every handler and connection, and the
//! [`Backend`] that server functions and HTTP endpoints read through.

use crate::config::Config;
use crate::engine::Engine;
use crate::hub::Hub;
use app::backend::{Backend, BackendError, SESSION_COOKIE};
use app::protocol::{HistoryPage, Member, RoomSummary, User};
use app::validate::{self, MessageId};
use async_trait::async_trait;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::collections::HashMap;
use std::sync::Arc;

/// How long the session cookie lives in the browser.
const COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    config: Config,
    server_id: String,
    engine: Engine,
    hub: Arc<Hub>,
    leptos: LeptosOptions,
}

impl AppState {
    pub fn new(
        config: Config,
        server_id: String,
        engine: Engine,
        hub: Arc<Hub>,
        leptos: LeptosOptions,
    ) -> Self {
        AppState(Arc::new(Shared {
            config,
            server_id,
            engine,
            hub,
            leptos,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }
    pub fn server_id(&self) -> &str {
        &self.0.server_id
    }
    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }
    pub fn hub(&self) -> &Arc<Hub> {
        &self.0.hub
    }
    pub fn leptos(&self) -> &LeptosOptions {
        &self.0.leptos
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.0.leptos.clone()
    }
}

#[async_trait]
impl Backend for AppState {
    async fn user_for_token(&self, token: &str) -> Result<Option<User>, BackendError> {
        Ok(self.engine().sessions.resolve(token).await?)
    }

    async fn create_guest(&self, name: &str) -> Result<(String, User), BackendError> {
        let name = validate::display_name(name)?;
        Ok(self.engine().sessions.create_guest(&name).await?)
    }

    async fn end_session(&self, token: &str) -> Result<(), BackendError> {
        Ok(self.engine().sessions.end(token).await?)
    }

    async fn history_page(
        &self,
        room: &str,
        before: Option<&str>,
    ) -> Result<HistoryPage, BackendError> {
        let room = validate::room_id(room)?;
        let before = before.map(MessageId::parse).transpose()?;
        let limit = self.config().history_page;
        Ok(self.engine().history.page(room, before, limit).await?)
    }

    async fn members(&self, room: &str) -> Result<Vec<Member>, BackendError> {
        let room = validate::room_id(room)?;
        Ok(self.engine().presence.members(room).await?)
    }

    async fn rooms(&self) -> Result<Vec<RoomSummary>, BackendError> {
        let engine = self.engine();
        let mut rooms: HashMap<String, RoomSummary> = HashMap::new();
        for (room_id, last) in engine.history.rooms().await? {
            rooms.insert(
                room_id.clone(),
                RoomSummary {
                    room_id,
                    members: 0,
                    last_message_id: Some(last),
                },
            );
        }
        for (room_id, count) in engine.presence.room_counts().await? {
            rooms
                .entry(room_id.clone())
                .or_insert_with(|| RoomSummary {
                    room_id,
                    members: 0,
                    last_message_id: None,
                })
                .members = count;
        }
        let mut rooms: Vec<RoomSummary> = rooms.into_values().collect();
        // Busiest first, then most recently active, then by name.
        rooms.sort_by(|a, b| {
            b.members
                .cmp(&a.members)
                .then_with(|| {
                    let a_last = a.last_message_id.as_deref().unwrap_or("");
                    let b_last = b.last_message_id.as_deref().unwrap_or("");
                    MessageId::compare(b_last, a_last)
                })
                .then_with(|| a.room_id.cmp(&b.room_id))
        });
        Ok(rooms)
    }

    fn session_cookie(&self, token: &str) -> String {
        let secure = if self.config().secure_cookies {
            "; Secure"
        } else {
            ""
        };
        format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_SECS}{secure}")
    }

    fn clear_session_cookie(&self) -> String {
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
    }
}

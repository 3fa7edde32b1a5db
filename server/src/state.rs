//! The instance's shared state, handed to every handler and connection, and the
//! [`Backend`] that server functions and HTTP endpoints read through.

use crate::api_keys::ApiKeys;
use crate::auth::{Auth, SignedIn};
use crate::config::Config;
use crate::engine::Engine;
use crate::guard::OriginPolicy;
use crate::hub::Hub;
use crate::limits::{PerAddress, Rate, UserLimits, UserRates};
use crate::namespaces::Namespaces;
use crate::node::Node;
use app::backend::{Backend, BackendError, Client, SESSION_COOKIE};
use app::protocol::{ChatMessage, HistoryPage, Member, ReadState, RoomEntry, RoomSummary, User};
use app::validate::{self, MessageId};
use async_trait::async_trait;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    config: Config,
    server_id: String,
    engine: Engine,
    node: Node,
    leptos: LeptosOptions,
    auth: Auth,
    limits: Arc<UserLimits>,
    /// History pages read over HTTP, per client address.
    history_reads: PerAddress,
    origins: OriginPolicy,
    api_keys: ApiKeys,
    namespaces: Namespaces,
}

/// What the state holds beyond the core parts: the server API's keys and the channels' rules.
pub struct Extras {
    pub api_keys: ApiKeys,
    pub namespaces: Namespaces,
}

impl AppState {
    pub fn new(
        config: Config,
        server_id: String,
        engine: Engine,
        node: Node,
        leptos: LeptosOptions,
        extras: Extras,
    ) -> Self {
        let auth = Auth::new(&config, engine.clone());
        let rate = |per_sec, burst| Rate { per_sec, burst };
        let rates = UserRates {
            sends: rate(config.send_rate, config.send_burst),
            typing: rate(config.typing_rate, config.typing_burst),
            membership: rate(config.user_membership_rate, config.user_membership_burst),
        };
        let limits = Arc::new(UserLimits::new(
            rates,
            config.typing_throttle(),
            config.max_connections_per_user,
        ));
        let history_reads = PerAddress::new(Rate {
            per_sec: config.history_rate,
            burst: config.history_burst,
        });
        let origins = OriginPolicy::new(&config.allowed_origins);
        AppState(Arc::new(Shared {
            config,
            server_id,
            engine,
            node,
            leptos,
            auth,
            limits,
            history_reads,
            origins,
            api_keys: extras.api_keys,
            namespaces: extras.namespaces,
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
        self.0.node.hub()
    }
    pub fn node(&self) -> &Node {
        &self.0.node
    }
    pub fn leptos(&self) -> &LeptosOptions {
        &self.0.leptos
    }
    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }
    pub fn limits(&self) -> &Arc<UserLimits> {
        &self.0.limits
    }
    pub fn origins(&self) -> &OriginPolicy {
        &self.0.origins
    }
    pub fn api_keys(&self) -> &ApiKeys {
        &self.0.api_keys
    }
    pub fn namespaces(&self) -> &Namespaces {
        &self.0.namespaces
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
        Ok(self.auth().resolve(token).await?.map(|(_, user)| user))
    }

    async fn create_guest(&self, name: &str, client: &Client) -> Result<SignedIn, BackendError> {
        self.auth().guest(name, client).await
    }

    async fn register(
        &self,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Result<SignedIn, BackendError> {
        self.auth().register(username, password, client).await
    }

    async fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Result<SignedIn, BackendError> {
        self.auth().sign_in(username, password, client).await
    }

    async fn end_session(&self, token: &str) -> Result<(), BackendError> {
        Ok(self.auth().sign_out(token).await?)
    }

    async fn history_page(
        &self,
        room: &str,
        before: Option<&str>,
        client: &Client,
    ) -> Result<HistoryPage, BackendError> {
        let room = validate::room_id(room)?;
        let before = before.map(MessageId::parse_before).transpose()?;
        self.0
            .history_reads
            .take(&client.address_key())
            .map_err(|limited| BackendError::RateLimited {
                retry_after_secs: limited.retry_after.as_secs_f64().ceil().max(1.0) as u64,
            })?;
        let limit = self.config().history_page;
        Ok(self.engine().history.page(room, before, limit).await?)
    }

    async fn rooms_of(&self, user: &User) -> Result<Vec<RoomEntry>, BackendError> {
        Ok(self.node().rooms_of(user).await?)
    }

    async fn room_read_state(
        &self,
        user: &User,
        room: &str,
    ) -> Result<Option<ReadState>, BackendError> {
        let room = validate::room_id(room)?;
        Ok(self.node().room_read_state(user, room).await?)
    }

    async fn post_message(
        &self,
        user: &User,
        room: &str,
        content: &str,
    ) -> Result<ChatMessage, BackendError> {
        let config = self.config();
        let room = validate::room_id(room)?;
        let content = validate::content(content, config.max_content_bytes)?;
        // Form posts have no connection (whose send rate holds them back): the same burst
        // and rate as a shared fixed window, the burst per burst/rate seconds.
        if config.send_rate > 0.0 {
            let window =
                Duration::from_secs_f64((f64::from(config.send_burst) / config.send_rate).max(1.0));
            let count = self
                .engine()
                .counters
                .hit(&format!("form-post:{}", user.id), window)
                .await?;
            if count.count > u64::from(config.send_burst) {
                return Err(BackendError::RateLimited {
                    retry_after_secs: count.resets_in.as_secs_f64().ceil().max(1.0) as u64,
                });
            }
        }
        let draft = crate::engine::Draft {
            room_id: room.to_string(),
            user: user.clone(),
            content: content.to_string(),
            client_msg_id: None,
        };
        Ok(self.node().post(draft, None).await?.message)
    }

    fn max_content_bytes(&self) -> usize {
        self.config().max_content_bytes
    }

    fn is_operator(&self, user: &User) -> bool {
        !user.guest
            && self
                .config()
                .operators
                .iter()
                .any(|name| name.trim().eq_ignore_ascii_case(&user.name))
    }

    async fn unfollow(&self, user: &User, room: &str) -> Result<(), BackendError> {
        let room = validate::room_id(room)?;
        Ok(self.node().unfollow(user, room).await?)
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
        // Channels with presence are counted under their hub key (`#name`): not rooms.
        let room_counts = engine.presence.room_counts().await?;
        let room_counts = room_counts
            .into_iter()
            .filter(|(key, _)| crate::wire::channel_of(key).is_none());
        for (room_id, count) in room_counts {
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

    fn session_cookie(&self, token: &str, client: &Client) -> String {
        let secure = if self.config().secure_cookies || client.https {
            "; Secure"
        } else {
            ""
        };
        // The browser may keep it as long as the session can live; the server decides
        // whether the session is still valid (idle expiry, sign-out).
        let max_age = self.config().session_max_age_secs;
        format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        )
    }

    fn clear_session_cookie(&self) -> String {
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
    }
}

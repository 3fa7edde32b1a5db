//! The instance's shared state, handed to every handler and connection, and the
//! [`Backend`] that server functions and HTTP endpoints read through.

use crate::api_keys::ApiKeys;
use crate::auth::{Auth, Creator, SignedIn};
use crate::config::Config;
use crate::directory::Directory;
use crate::engine::Engine;
use crate::guard::OriginPolicy;
use crate::hub::Hub;
use crate::limits::{Anonymous, PerAddress, Rate, UserLimits, UserRates};
use crate::namespaces::Namespaces;
use crate::node::Node;
use app::backend::{Backend, BackendError, Client, SESSION_COOKIE};
use app::protocol::{ChatMessage, HistoryPage, Member, ReadState, RoomEntry, RoomSummary, User};
use app::validate::{self, MessageId};
use async_trait::async_trait;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
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
    /// WebSocket connections without a session, per client address and in total.
    anonymous: Arc<Anonymous>,
    /// The room directory, computed at most once a second.
    directory: Directory,
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
        let anonymous = Anonymous::new(
            config.max_anonymous_per_address,
            config.max_anonymous_connections,
        );
        let directory = Directory::new(engine.clone());
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
            anonymous,
            directory,
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
    /// The caps on connections without a session.
    pub fn anonymous(&self) -> &Arc<Anonymous> {
        &self.0.anonymous
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
        self.auth()
            .register(username, password, client, Creator::Visitor)
            .await
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
        Ok(self.0.directory.rooms().await?.as_ref().clone())
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

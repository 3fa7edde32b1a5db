//! Confab's server: an axum app that renders the Leptos UI, serves the JSON API, and runs a
//! WebSocket session per client on top of an [`engine`].
//!
//! # Layout
//! - [`config`]: the clap [`Config`](config::Config), also read from the environment.
//! - [`wire`]: encoded events, connection ids, the pub/sub envelope (imports nothing of ours).
//! - [`engine`]: the Broker / History / ChannelHistory / Queues / Presence / Sessions /
//!   Accounts / Counters traits, with
//!   a memory and a Redis implementation (one Redis or a Redis Cluster), the router over
//!   Redis shards, and `LocalDelivery`, what an engine needs of the instance (the hub
//!   implements it).
//! - [`auth`]: accounts, passwords, session tokens and expiry, attempt limits.
//! - [`limits`]: per-user message and typing rates, connections per user.
//! - [`guard`]: client address, and the Origin rules against CSRF and WebSocket hijacking;
//!   [`middleware`]: the axum layers that apply them.
//! - [`hub`]: this instance's local rooms → connections; delivers each message once per
//!   connection. [`outbox`]: a connection's outbound queue, bounded in frames and bytes.
//! - [`node`]: the one owner of membership and delivery: join, leave, post, typing, the
//!   channels' subscribe, unsubscribe and publish (history, presence), and the worker pools.
//! - [`namespaces`]: who may subscribe and publish on which channels, and what each keeps;
//!   [`api_keys`]: the keys of the server API.
//! - [`ws`]: the `/ws` endpoint; a reader and a writer task per connection, and the protocol.
//!
//! Dependencies run one way (each imports only those before it): wire, engine, hub, node,
//! state, then ws and http (config, guard, auth and limits are leaves beside them).
//! - [`assets`]: the built site's files, fingerprinted, precompressed and cached.
//! - [`http`]: the JSON API (`/api/...`, `/api/publish`, `/health`) and its one error type;
//!   [`jobs_api`]: workers over HTTP (`/api/jobs/claim`, `/api/jobs/done`).
//! - [`directory`]: the room directory (home page, `/api/rooms`), bounded and cached.
//! - [`stats`]: what each instance counts for the live dashboard (a leaf the hub writes to);
//!   [`dashboard`]: the task that publishes it once a second.
//! - [`metrics`]: Prometheus metrics on their own listener.
//! - [`session_watch`]: closes the sockets of sessions that expired or were removed.
//! - [`cli`]: the binary's tools besides serving (`confab publish`, `confab api-key new`).
//! - [`state`]: the shared state, and the `Backend` that server functions read through.
//!
//! [`start`] binds and serves; [`Running::shutdown`] (or SIGTERM / Ctrl-C in `main`) stops
//! accepting, closes every socket with 4000 ("reconnect") and waits for connections to end.

pub mod api_keys;
pub mod assets;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod directory;
pub mod engine;
pub mod guard;
pub mod http;
pub mod hub;
pub mod jobs_api;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod namespaces;
pub mod node;
pub mod outbox;
pub mod pages;
pub mod session_watch;
pub mod state;
pub mod stats;
pub mod wire;
pub mod ws;

use crate::config::Config;
use crate::config::RedisMode;
use crate::engine::memory::{MemoryConfig, MemoryEngine};
use crate::engine::redis::{redacted, RedisConfig, RedisEngine};
use crate::engine::shards::{ShardDelivery, ShardedEngine};
use crate::engine::Engine;
use crate::engine::LocalDelivery;
use crate::hub::Hub;
use crate::node::{Node, NodeSettings};
use crate::state::{AppState, Extras};
use app::backend::SharedBackend;
use app::protocol::close;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post};
use axum::serve::ListenerExt;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::{provide_context, use_context};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Builds the instance's state: the engine chosen by the configuration (Redis when a URL is
/// given, else memory), and the hub. Must run inside the tokio runtime (engines spawn tasks).
pub fn build_state(config: Config) -> Result<AppState, StartError> {
    config.validate().map_err(StartError::Config)?;
    node::answers::check_limits(&node::answers::AnswerSettings {
        max_answer_bytes: config.max_answer_bytes,
        outbound_queue_bytes: config.outbound_queue_bytes,
        history_page: config.history_page,
        max_content_bytes: config.max_content_bytes,
        max_publication_bytes: config.max_publication_bytes,
    })
    .map_err(StartError::Config)?;
    let server_id = config
        .server_id
        .clone()
        .unwrap_or_else(|| engine::new_token()[..8].to_string());
    let metrics = Arc::new(match config.metrics_addr {
        Some(_) => metrics::Metrics::on(),
        None => metrics::Metrics::off(),
    });
    let queue = hub::QueueLimits {
        frames: config.outbound_queue,
        bytes: config.outbound_queue_bytes,
    };
    let hub = Arc::new(Hub::with_metrics(queue, metrics.clone()));
    let namespaces = namespaces::Namespaces::load(config.namespaces_file.as_deref())
        .map_err(|err| StartError::Config(format!("--namespaces-file: {err}")))?;
    let channel_leaves = Arc::new(namespaces.announcing_leaves());
    let topology = config.redis_topology().map_err(StartError::Config)?;
    let engine = match topology {
        Some((mode, urls)) => {
            let redis_config = |urls: &[String], home: bool| RedisConfig {
                urls: urls.to_vec(),
                cluster: mode == RedisMode::Cluster,
                prefix: config.redis_prefix.clone(),
                server_id: server_id.clone(),
                history_max: config.history_max,
                lease_ttl: Duration::from_secs(config.presence_lease_secs),
                lease_refresh: Duration::from_secs(config.presence_refresh_secs),
                command_timeout: Duration::from_millis(config.redis_timeout_ms),
                idempotency_window: config.idempotency_window(),
                resume_max: config.resume_max,
                probe_interval: config.probe_interval(),
                probe_timeout: config.probe_timeout(),
                home,
                metrics: metrics.clone(),
                channel_leaves: channel_leaves.clone(),
            };
            let start = |urls: &[String], home: bool, delivery: Arc<dyn LocalDelivery>| {
                RedisEngine::start(redis_config(urls, home), delivery).map_err(|err| {
                    let urls: Vec<String> = urls.iter().map(|url| redacted(url)).collect();
                    StartError::Config(format!("REDIS_URL {}: {err}", urls.join(",")))
                })
            };
            match mode {
                RedisMode::Standalone => Engine::redis(start(&urls, true, hub.clone())?),
                RedisMode::Cluster => Engine::cluster(start(&urls, true, hub.clone())?),
                RedisMode::Shards => {
                    let count = urls.len();
                    let shards = urls
                        .iter()
                        .enumerate()
                        .map(|(index, url)| {
                            let delivery = ShardDelivery::new(hub.clone(), index, count);
                            start(std::slice::from_ref(url), index == 0, Arc::new(delivery))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Engine::sharded(ShardedEngine::new(shards))
                }
            }
        }
        None => Engine::memory(MemoryEngine::new(
            MemoryConfig {
                server_id: server_id.clone(),
                history_max: config.history_max,
                idempotency_window: config.idempotency_window(),
            },
            hub.clone(),
        )),
    };
    let node = Node::new(
        hub,
        engine.clone(),
        NodeSettings {
            history_page: config.history_page,
            resume_max: config.resume_max,
            max_rooms: config.max_rooms_per_connection,
            max_answer_bytes: config.max_answer_bytes,
            presence_grace: Duration::from_millis(config.presence_grace_ms),
            max_jobs_per_user: config.max_jobs_per_user,
            guest_rooms_ttl: std::time::Duration::from_secs(config.session_max_age_secs),
        },
        &server_id,
    );
    let leptos = LeptosOptions::builder()
        .output_name("confab")
        .site_root(config.site_root.as_str())
        .site_pkg_dir("pkg")
        .hash_files(assets::fingerprinted_build())
        .build();
    let api_keys = api_keys::ApiKeys::load(config.api_keys_file.clone().map(Into::into))
        .map_err(|err| StartError::Config(format!("--api-keys-file: {err}")))?;
    Ok(AppState::new(
        config,
        server_id,
        engine,
        node,
        leptos,
        Extras {
            api_keys,
            namespaces,
        },
    ))
}

/// The whole HTTP surface: pages, server functions, JSON API, WebSocket and static files.
pub fn app(state: AppState) -> Router {
    let backend: SharedBackend = Arc::new(state.clone());
    // Every page gets the backend, and the nonce the security headers name in its policy.
    let context = move || {
        provide_context(backend.clone());
        let nonce = use_context::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<middleware::PageNonce>().cloned());
        if let Some(middleware::PageNonce(nonce)) = nonce {
            provide_context(leptos::nonce::Nonce::from_value(nonce));
        }
    };
    let leptos = state.leptos().clone();
    let api = Router::new()
        .route(
            "/api/session",
            get(http::current_session)
                .post(http::create_session)
                .delete(http::end_session),
        )
        .route("/api/accounts", post(http::register))
        .route("/api/publish", post(http::publish))
        .route("/api/jobs/claim", post(jobs_api::claim))
        .route("/api/jobs/done", post(jobs_api::done))
        .route("/api/login", post(http::login))
        .route("/api/online-users", get(http::online_users))
        .route("/api/rooms", get(http::rooms))
        .route("/api/rooms/{room}/members", get(http::room_members))
        .route("/api/rooms/{room}/messages", get(http::room_messages))
        .route("/api/{*rest}", any(http::api_not_found))
        .route("/fn/{*rest}", any(http::api_not_found))
        .route("/health", get(http::health))
        .route("/open", get(http::open_room))
        .method_not_allowed_fallback(http::method_not_allowed);
    Router::new()
        .route("/ws", get(ws::upgrade))
        .merge(api)
        .merge(assets::pkg_routes(&leptos.site_root, &leptos.site_pkg_dir))
        .merge(pages::routes(&state, context))
        .layer(from_fn_with_state(state.clone(), middleware::csrf))
        .layer(axum::middleware::from_fn(middleware::server_fn_errors))
        .layer(axum::middleware::from_fn(middleware::bare_refusals))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::identify_client,
        ))
        // Pages and JSON compressed on the fly; precompressed assets pass through as they are.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A server that is serving.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when metrics are on.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Graceful shutdown: stop accepting, close every socket with 4000, wait for them to
    /// end (at most the configured grace), then return.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until the server stops.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|err| Err(std::io::Error::other(err)))
    }

    /// A handle that triggers [`Running::shutdown`] from elsewhere (e.g. a signal handler).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Binds to the configured address and serves until stopped.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let addr = format!("{}:{}", config.host, config.port);
    let metrics_addr = config.metrics_addr.clone();
    let state = build_state(config)?;
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let (stop, mut stopped) = watch::channel(false);
    let metrics_addr = match metrics_addr {
        Some(metrics_addr) => Some(serve_metrics(&state, &metrics_addr, stop.subscribe()).await?),
        None => None,
    };
    let router = app(state.clone());
    let serve_state = state.clone();
    let figures = tokio::spawn(dashboard::publish_every_second(state.clone()));
    let sessions = tokio::spawn(session_watch::close_ended_sessions(state.clone()));
    let task = tokio::spawn(async move {
        let mut drained = stopped.clone();
        // Chat frames are small and latency-bound: send them at once (no Nagle delay).
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        let served = tokio::spawn(async move { serve.await });
        let _ = drained.wait_for(|stop| *stop).await;
        figures.abort();
        sessions.abort();
        drain(&serve_state).await;
        served
            .await
            .unwrap_or_else(|err| Err(std::io::Error::other(err)))
    });
    warn_if_site_missing(state.leptos());
    tracing::info!(%addr, server_id = state.server_id(), engine = state.engine().kind, "listening");
    Ok(Running {
        addr,
        metrics_addr,
        state,
        stop,
        task,
    })
}

/// Serves `/metrics` on its own address until `stopped`.
async fn serve_metrics(
    state: &AppState,
    addr: &str,
    mut stopped: watch::Receiver<bool>,
) -> Result<SocketAddr, StartError> {
    let bind_error = |source| StartError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let metrics = state.node().hub().metrics().clone();
    let router = metrics::router(metrics.clone());
    let mut upkeep_stopped = stopped.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(metrics::UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = every.tick() => metrics.upkeep(),
                _ = upkeep_stopped.wait_for(|stop| *stop) => return,
            }
        }
    });
    tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        if let Err(err) = serve.await {
            tracing::warn!(error = %err, "the metrics listener failed");
        }
    });
    tracing::info!(addr = %bound, "metrics on /metrics");
    Ok(bound)
}

/// Pages still render without the built site, but unstyled and without live updates: say so.
fn warn_if_site_missing(leptos: &LeptosOptions) {
    let pkg = std::path::Path::new(&*leptos.site_root).join(&*leptos.site_pkg_dir);
    if !has_wasm_bundle(&pkg, &leptos.output_name) {
        tracing::warn!(
            path = %pkg.display(),
            "the built site is missing: build it with `make release` (what `make run` serves) or \
             `make build`, and start confab from the repository root, or set LEPTOS_SITE_ROOT"
        );
    }
}

/// Whether `pkg` holds the WASM bundle, named `<name>.wasm`, or `<name>.<hash>.wasm` in the
/// optimized build, which fingerprints its assets.
fn has_wasm_bundle(pkg: &std::path::Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(pkg) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        file.strip_prefix(name).is_some_and(|rest| {
            rest == ".wasm"
                || rest
                    .strip_prefix('.')
                    .and_then(|rest| rest.strip_suffix(".wasm"))
                    .is_some_and(|hash| {
                        !hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit())
                    })
        })
    })
}

/// Tells every client to reconnect elsewhere and waits for the sockets to close.
async fn drain(state: &AppState) {
    let hub = state.hub();
    tracing::info!(
        connections = hub.connection_count(),
        "shutting down: closing connections"
    );
    hub.close_all(close::SHUTDOWN, "server shutting down");
    let deadline = tokio::time::Instant::now() + state.config().shutdown_grace();
    while hub.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::info!(remaining = hub.connection_count(), "connections drained");
    state.node().flush_announcements().await;
    state.engine().lifecycle.shutdown().await;
}

#[cfg(test)]
mod site_tests {
    use super::has_wasm_bundle;

    #[test]
    fn finds_the_bundle_plain_or_fingerprinted() {
        let dir = std::env::temp_dir().join(format!("confab-site-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!has_wasm_bundle(&dir, "confab"), "no directory");
        std::fs::create_dir_all(&dir).unwrap();
        for other in [
            "confab.js",
            "confab.wasm.br",
            "other.wasm",
            "confab.x-y.wasm",
        ] {
            std::fs::write(dir.join(other), b"").unwrap();
        }
        assert!(!has_wasm_bundle(&dir, "confab"), "only other files");
        std::fs::write(dir.join("confab.d1c40bb4864db37a.wasm"), b"").unwrap();
        assert!(
            has_wasm_bundle(&dir, "confab"),
            "fingerprinted (make release)"
        );
        std::fs::remove_file(dir.join("confab.d1c40bb4864db37a.wasm")).unwrap();
        std::fs::write(dir.join("confab.wasm"), b"").unwrap();
        assert!(has_wasm_bundle(&dir, "confab"), "plain (make build)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

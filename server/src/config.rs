//! Configuration: one clap struct, every option also read from the environment.
//! `confab --help` lists them with their defaults; the README repeats the table.

use clap::Parser;
use std::time::Duration;

#[derive(Parser, Clone, Debug)]
#[command(
    name = "confab",
    version,
    about = "Confab: a real-time chat server and web app"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Redis for running many instances together: one URL, or several separated by commas
    /// (shards, or a cluster's seed nodes; see `--redis-mode`). Unset: the in-process memory
    /// engine.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// How the Redis URLs are used: `standalone` (one Redis; the default for one URL),
    /// `shards` (independent Redis servers, each room on one of them by a consistent hash;
    /// the default for several URLs) or `cluster` (a Redis Cluster; the URLs are seed nodes).
    #[arg(long, env = "CONFAB_REDIS_MODE", value_enum)]
    pub redis_mode: Option<RedisMode>,

    /// Prefix of every Redis key and channel (several deployments can share one Redis).
    #[arg(long, env = "CONFAB_REDIS_PREFIX", default_value = "confab")]
    pub redis_prefix: String,

    /// Milliseconds a Redis command may take before the request is answered `unavailable`.
    #[arg(long, env = "CONFAB_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,

    /// Seconds an instance's presence lease lives without renewal (Redis engine): after a
    /// crash, its users vanish from presence within this time.
    #[arg(long, env = "CONFAB_PRESENCE_LEASE_SECS", default_value_t = 20)]
    pub presence_lease_secs: u64,

    /// Seconds between lease renewals and checks for dead instances.
    #[arg(long, env = "CONFAB_PRESENCE_REFRESH_SECS", default_value_t = 5)]
    pub presence_refresh_secs: u64,

    /// Milliseconds a join or leave must last before others are told (`user_joined`,
    /// `user_left`, `joined`, `left`): a join and a leave within it announce nothing
    /// (0: announce at once). Who is present changes at once either way.
    #[arg(long, env = "CONFAB_PRESENCE_GRACE_MS", default_value_t = 1500)]
    pub presence_grace_ms: u64,

    /// Seconds a session lives without being used (sliding: each use pushes it back, at most
    /// once per quarter of this time). The memory engine forgets sessions on exit.
    #[arg(long, env = "CONFAB_SESSION_TTL_SECS", default_value_t = 14 * 24 * 3600)]
    pub session_ttl_secs: u64,

    /// Seconds a session lives at most, however often it is used (then sign in again).
    #[arg(long, env = "CONFAB_SESSION_MAX_AGE_SECS", default_value_t = 90 * 24 * 3600)]
    pub session_max_age_secs: u64,

    /// Seconds between checks of the sessions open connections are signed in with: the
    /// sockets of one that expired or was removed are closed (4503). A check is a use (at
    /// most half of --session-ttl-secs, so an open connection's session never idles out).
    #[arg(long, env = "CONFAB_SESSION_CHECK_SECS", default_value_t = 60)]
    pub session_check_secs: u64,

    /// Argon2id memory cost per password hash, KiB (OWASP: 19456 with 2 iterations).
    #[arg(long, env = "CONFAB_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations (time cost).
    #[arg(long, env = "CONFAB_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,

    /// Argon2id lanes (parallelism).
    #[arg(long, env = "CONFAB_ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,

    /// Password hashes computed at once (each takes the memory cost); more wait their turn.
    #[arg(long, env = "CONFAB_MAX_CONCURRENT_HASHES", default_value_t = 4)]
    pub max_concurrent_hashes: usize,

    /// Password checks that may wait for the hasher beyond those running; past it a sign-in
    /// or registration is refused with `rate_limited` (429) instead of waiting.
    #[arg(long, env = "CONFAB_MAX_QUEUED_HASHES", default_value_t = 32)]
    pub max_queued_hashes: usize,

    /// Chat messages per second a user may send, sustained (token bucket; 0: no limit).
    #[arg(long, env = "CONFAB_SEND_RATE", default_value_t = 1.0)]
    pub send_rate: f64,

    /// Chat messages a user may send in a burst above the sustained rate.
    #[arg(long, env = "CONFAB_SEND_BURST", default_value_t = 5)]
    pub send_burst: u32,

    /// Typing events per second a user may send, sustained (0: no limit).
    #[arg(long, env = "CONFAB_TYPING_RATE", default_value_t = 2.0)]
    pub typing_rate: f64,

    /// Typing events a user may send in a burst.
    #[arg(long, env = "CONFAB_TYPING_BURST", default_value_t = 6)]
    pub typing_burst: u32,

    /// Membership requests (join, leave, subscribe, unsubscribe, read, work) per second one
    /// connection may make, sustained (token bucket; 0: no limit). Past it: `rate_limited`,
    /// counted toward 4501.
    #[arg(long, env = "CONFAB_MEMBERSHIP_RATE", default_value_t = 20.0)]
    pub membership_rate: f64,

    /// Membership requests one connection may make in a burst (a browser joins every room on
    /// its list at once: at least --max-rooms-per-connection).
    #[arg(long, env = "CONFAB_MEMBERSHIP_BURST", default_value_t = 200)]
    pub membership_burst: u32,

    /// Membership requests per second of all of one user's connections on an instance.
    #[arg(long, env = "CONFAB_USER_MEMBERSHIP_RATE", default_value_t = 40.0)]
    pub user_membership_rate: f64,

    /// Membership requests all of one user's connections on an instance may make in a burst.
    #[arg(long, env = "CONFAB_USER_MEMBERSHIP_BURST", default_value_t = 400)]
    pub user_membership_burst: u32,

    /// Unfinished jobs one user's workers may hold on one instance (the sum of their
    /// `prefetch`, over every queue and group): past it `work` is `too_many_jobs`.
    #[arg(long, env = "CONFAB_MAX_JOBS_PER_USER", default_value_t = 100)]
    pub max_jobs_per_user: usize,

    /// WebSocket connections without a session (not signed in, or subscribed to channels
    /// open to anyone) one client address may hold on one instance (0: no limit). Past it
    /// the connection is told why and closed with 4504.
    #[arg(long, env = "CONFAB_MAX_ANONYMOUS_PER_ADDRESS", default_value_t = 32)]
    pub max_anonymous_per_address: usize,

    /// WebSocket connections without a session one instance holds in all (0: no limit).
    #[arg(
        long,
        env = "CONFAB_MAX_ANONYMOUS_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_anonymous_connections: usize,

    /// WebSocket connections one user may hold on one instance.
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS_PER_USER", default_value_t = 16)]
    pub max_connections_per_user: usize,

    /// Window of the attempt limits below, in seconds.
    #[arg(long, env = "CONFAB_ATTEMPT_WINDOW_SECS", default_value_t = 900)]
    pub attempt_window_secs: u64,

    /// Failed sign-ins per username per window; then sign-in to it is refused until the
    /// window ends (0: no limit).
    #[arg(long, env = "CONFAB_LOGIN_FAILURES_PER_USER", default_value_t = 10)]
    pub login_failures_per_user: u64,

    /// Failed sign-ins per client address per window (0: no limit).
    #[arg(long, env = "CONFAB_LOGIN_FAILURES_PER_ADDRESS", default_value_t = 50)]
    pub login_failures_per_address: u64,

    /// Accounts created per client address per window (0: no limit).
    #[arg(long, env = "CONFAB_REGISTRATIONS_PER_ADDRESS", default_value_t = 20)]
    pub registrations_per_address: u64,

    /// Guest sessions started per client address per window (0: no limit).
    #[arg(long, env = "CONFAB_GUESTS_PER_ADDRESS", default_value_t = 200)]
    pub guests_per_address: u64,

    /// History pages a client address may read over HTTP per second, sustained (the JSON
    /// API, room pages and scrolling back; token bucket; 0: no limit).
    #[arg(long, env = "CONFAB_HISTORY_RATE", default_value_t = 20.0)]
    pub history_rate: f64,

    /// History pages a client address may read in a burst.
    #[arg(long, env = "CONFAB_HISTORY_BURST", default_value_t = 100)]
    pub history_burst: u32,

    /// Usernames of the registered accounts that may see the live dashboard (`/dashboard`)
    /// and subscribe to its channel. Comma separated; none: nobody.
    #[arg(long, env = "CONFAB_OPERATORS", value_delimiter = ',')]
    pub operators: Vec<String>,

    /// Origins (e.g. `https://chat.example.com`) allowed besides the server's own, for
    /// WebSocket upgrades and state-changing requests from browsers. Comma separated.
    #[arg(long, env = "CONFAB_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Header holding the client's address when behind a reverse proxy (e.g.
    /// `X-Forwarded-For`: its last entry is used; `X-Forwarded-Proto: https` is then trusted
    /// too). Unset: the TCP peer's address.
    #[arg(long, env = "CONFAB_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,

    /// File of API keys for the server API (`POST /api/publish`): lines `NAME SHA256-HEX`
    /// (`confab api-key new NAME` makes one). Read again when it changes. Unset: no keys.
    #[arg(long, env = "CONFAB_API_KEYS_FILE")]
    pub api_keys_file: Option<String>,

    /// JSON file of channel namespaces and who may subscribe and publish in each (README,
    /// "Channels"). Unset: channels without a namespace are open to signed-in clients, and
    /// no other namespace exists.
    #[arg(long, env = "CONFAB_NAMESPACES_FILE")]
    pub namespaces_file: Option<String>,

    /// Where Prometheus metrics are served (`GET /metrics`), e.g. `127.0.0.1:9100`. Unset: no
    /// metrics are kept. Keep it off the public interface: it is not authenticated.
    #[arg(long, env = "CONFAB_METRICS_ADDR")]
    pub metrics_addr: Option<String>,

    /// Where the built site (pkg/ with the WASM, JS and CSS) lives.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,

    /// Log filter (tracing EnvFilter syntax, e.g. "info,server=debug").
    #[arg(long, env = "CONFAB_LOG", default_value = "info")]
    pub log: String,

    /// How log lines are written: `text` for people, `json` (one object per line) for log
    /// shippers.
    #[arg(long, env = "CONFAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Tokio worker threads (0: one per CPU core). Fewer threads mean fewer cross-thread
    /// wake-ups per delivery when several instances share a machine.
    #[arg(long, env = "CONFAB_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// This instance's id in messages and /health (default: random).
    #[arg(long, env = "CONFAB_SERVER_ID")]
    pub server_id: Option<String>,

    /// Largest WebSocket frame or message a client may send, in bytes; larger ones close
    /// the connection with 1009.
    #[arg(long, env = "CONFAB_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Longest chat message, in bytes of UTF-8.
    #[arg(long, env = "CONFAB_MAX_CONTENT_BYTES", default_value_t = 4096)]
    pub max_content_bytes: usize,

    /// Largest `data` of a channel publication, in bytes of JSON (a frame larger than
    /// `--max-frame-bytes` is refused before it is read, whatever this says).
    #[arg(long, env = "CONFAB_MAX_PUBLICATION_BYTES", default_value_t = 16 * 1024)]
    pub max_publication_bytes: usize,

    /// Frames queued per connection before it is closed as a slow consumer (4001).
    #[arg(long, env = "CONFAB_OUTBOUND_QUEUE", default_value_t = 256)]
    pub outbound_queue: usize,

    /// Bytes queued per connection before it is closed as a slow consumer (4001): live
    /// events past it close it; the answers to its own requests wait until the queue is
    /// half empty (Centrifugo: 1 MiB).
    #[arg(long, env = "CONFAB_OUTBOUND_QUEUE_BYTES", default_value_t = 1024 * 1024)]
    pub outbound_queue_bytes: usize,

    /// Largest answer the server builds (a join's history, a subscribe's kept publications
    /// and who is here, a resume), in bytes: fewer messages past it (`hasMore`, or
    /// `recovered: false` for a resume). At most half of --outbound-queue-bytes, and at
    /// least a page of --history-page messages of --max-content-bytes (checked at start).
    #[arg(long, env = "CONFAB_MAX_ANSWER_BYTES", default_value_t = 512 * 1024)]
    pub max_answer_bytes: usize,

    /// Seconds a write to a client may take before the connection is closed.
    #[arg(long, env = "CONFAB_WRITE_TIMEOUT_SECS", default_value_t = 10)]
    pub write_timeout_secs: u64,

    /// Frames per second above which a connection is busy: its frames then wait a little and
    /// go out together, in fewer writes. 0 = never.
    #[arg(long, env = "CONFAB_BUSY_FRAMES_PER_SEC", default_value_t = 120)]
    pub busy_frames_per_sec: u32,

    /// Milliseconds a connection receiving twice the busy rate holds its frames to write them
    /// together; the hold grows in proportion to how far the rate is above the busy rate.
    /// 0 = never.
    #[arg(long, env = "CONFAB_BUSY_WRITE_DELAY_MS", default_value_t = 9)]
    pub busy_write_delay_ms: u32,

    /// The longest hold of a busy connection's frames, however busy, in milliseconds.
    #[arg(long, env = "CONFAB_BUSY_WRITE_MAX_DELAY_MS", default_value_t = 20)]
    pub busy_write_max_delay_ms: u32,

    /// Seconds between server pings.
    #[arg(long, env = "CONFAB_PING_INTERVAL_SECS", default_value_t = 25)]
    pub ping_interval_secs: u64,

    /// Seconds after a ping without any frame from the client before it is closed (4002).
    #[arg(long, env = "CONFAB_PONG_TIMEOUT_SECS", default_value_t = 8)]
    pub pong_timeout_secs: u64,

    /// Seconds an unauthenticated socket may stay open (then closed with 4500).
    #[arg(long, env = "CONFAB_AUTH_TIMEOUT_SECS", default_value_t = 10)]
    pub auth_timeout_secs: u64,

    /// Rooms one connection may join at once.
    #[arg(long, env = "CONFAB_MAX_ROOMS_PER_CONNECTION", default_value_t = 128)]
    pub max_rooms_per_connection: usize,

    /// Protocol errors a connection may make within 5 s before it is closed (4501).
    #[arg(long, env = "CONFAB_MAX_PROTOCOL_ERRORS", default_value_t = 20)]
    pub max_protocol_errors: u32,

    /// Messages kept per room; older ones are trimmed.
    #[arg(long, env = "CONFAB_HISTORY_MAX", default_value_t = 10_000)]
    pub history_max: usize,

    /// Messages sent on join and per history page.
    #[arg(long, env = "CONFAB_HISTORY_PAGE", default_value_t = 50)]
    pub history_page: usize,

    /// Most messages a rejoin with `since` is given; past that it gets `recovered: false`.
    #[arg(long, env = "CONFAB_RESUME_MAX", default_value_t = 300)]
    pub resume_max: usize,

    /// Seconds a `clientMsgId` is remembered per user and room: a retry within it is answered
    /// with the original `ack` and stores nothing (at least 300, as the design promises).
    #[arg(long, env = "CONFAB_IDEMPOTENCY_WINDOW_SECS", default_value_t = 300)]
    pub idempotency_window_secs: u64,

    /// Milliseconds between probes of the Redis pub/sub path (publish, expect it back).
    #[arg(long, env = "CONFAB_PUBSUB_PROBE_INTERVAL_MS", default_value_t = 2000)]
    pub pubsub_probe_interval_ms: u64,

    /// Milliseconds a probe may take; then the instance is unhealthy, replaces its pub/sub
    /// connection and catches up. A wedge is detected within interval + timeout.
    #[arg(long, env = "CONFAB_PUBSUB_PROBE_TIMEOUT_MS", default_value_t = 5000)]
    pub pubsub_probe_timeout_ms: u64,

    /// Milliseconds between forwarded `typing: true` events per user and room.
    #[arg(long, env = "CONFAB_TYPING_THROTTLE_MS", default_value_t = 1000)]
    pub typing_throttle_ms: u64,

    /// Milliseconds a closing connection keeps reading (and discarding) what the client still
    /// sends after the close frame, so the close and the errors before it reach a client that
    /// is still sending (RFC 6455 §7.1.1) instead of a reset.
    #[arg(long, env = "CONFAB_CLOSE_LINGER_MS", default_value_t = 2000)]
    pub close_linger_ms: u64,

    /// Seconds to wait for connections to close on shutdown.
    #[arg(long, env = "CONFAB_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Mark the session cookie `Secure` (set when served over HTTPS).
    #[arg(long, env = "CONFAB_SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,
}

impl Config {
    /// The defaults, as if no flag or variable were given (for tests and embedding).
    pub fn defaults() -> Self {
        Config::parse_from(["confab"])
    }

    /// Checks values clap cannot check alone.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max-frame-bytes", self.max_frame_bytes),
            ("max-content-bytes", self.max_content_bytes),
            ("max-publication-bytes", self.max_publication_bytes),
            ("outbound-queue", self.outbound_queue),
            ("outbound-queue-bytes", self.outbound_queue_bytes),
            ("max-answer-bytes", self.max_answer_bytes),
            ("max-rooms-per-connection", self.max_rooms_per_connection),
            ("max-jobs-per-user", self.max_jobs_per_user),
            ("history-max", self.history_max),
            ("history-page", self.history_page),
            ("resume-max", self.resume_max),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("--{name} must be at least 1"));
        }
        for (name, secs) in [
            ("write-timeout-secs", self.write_timeout_secs),
            ("ping-interval-secs", self.ping_interval_secs),
            ("pong-timeout-secs", self.pong_timeout_secs),
            ("auth-timeout-secs", self.auth_timeout_secs),
            ("session-check-secs", self.session_check_secs),
        ] {
            if secs == 0 {
                return Err(format!("--{name} must be at least 1"));
            }
        }
        if self.busy_write_delay_ms > 1000 {
            return Err("--busy-write-delay-ms must be at most 1000".into());
        }
        if !(1..=1000).contains(&self.busy_write_max_delay_ms) {
            return Err("--busy-write-max-delay-ms must be between 1 and 1000".into());
        }
        if self.presence_refresh_secs == 0
            || self.presence_refresh_secs * 2 > self.presence_lease_secs
        {
            return Err("--presence-refresh-secs must be at least 1 and at most half of --presence-lease-secs".into());
        }
        self.redis_topology()?;
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return Err("--redis-prefix must be non-empty and without spaces".into());
        }
        if let Some(id) = &self.server_id {
            let ok = !id.is_empty()
                && id.len() <= 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err("--server-id must be 1–32 of A-Z a-z 0-9 - _".into());
            }
        }
        if self.session_ttl_secs == 0 || self.session_max_age_secs < self.session_ttl_secs {
            return Err(
                "--session-ttl-secs must be at least 1 and at most --session-max-age-secs".into(),
            );
        }

        if argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .is_err()
        {
            return Err("--argon2-memory-kib/--argon2-iterations/--argon2-parallelism are not valid Argon2 parameters (memory ≥ 8 × parallelism, iterations ≥ 1)".into());
        }
        if self.max_concurrent_hashes == 0 || self.max_connections_per_user == 0 {
            return Err(
                "--max-concurrent-hashes and --max-connections-per-user must be at least 1".into(),
            );
        }
        for (name, rate, burst) in [
            ("send", self.send_rate, self.send_burst),
            ("typing", self.typing_rate, self.typing_burst),
            ("history", self.history_rate, self.history_burst),
            ("membership", self.membership_rate, self.membership_burst),
            (
                "user-membership",
                self.user_membership_rate,
                self.user_membership_burst,
            ),
        ] {
            if !rate.is_finite() || rate < 0.0 || (rate > 0.0 && burst == 0) {
                return Err(format!(
                    "--{name}-rate must be 0 (no limit) or positive, with --{name}-burst at least 1"
                ));
            }
        }
        if self.attempt_window_secs == 0 {
            return Err("--attempt-window-secs must be at least 1".into());
        }
        if self.presence_grace_ms > 60_000 {
            return Err("--presence-grace-ms must be at most 60000".into());
        }
        if self.close_linger_ms > 60_000 {
            return Err("--close-linger-ms must be at most 60000".into());
        }
        if self.idempotency_window_secs < 300 {
            return Err("--idempotency-window-secs must be at least 300 (5 minutes)".into());
        }
        for (name, ms) in [
            ("pubsub-probe-interval-ms", self.pubsub_probe_interval_ms),
            ("pubsub-probe-timeout-ms", self.pubsub_probe_timeout_ms),
        ] {
            if !(50..=600_000).contains(&ms) {
                return Err(format!("--{name} must be between 50 and 600000"));
            }
        }
        if let Some(bad) = self
            .operators
            .iter()
            .find(|name| app::validate::username(name).is_err())
        {
            return Err(format!(
                "--operators: “{bad}” is not a username (3–32 of A-Z a-z 0-9 _ -)"
            ));
        }
        for origin in &self.allowed_origins {
            if crate::guard::normalize_origin(origin).is_none() {
                return Err(format!(
                    "--allowed-origins: “{origin}” is not an origin like https://chat.example.com"
                ));
            }
        }
        if self.max_content_bytes > self.max_frame_bytes {
            return Err("--max-content-bytes cannot exceed --max-frame-bytes".into());
        }
        Ok(())
    }

    /// How Redis is used, and its URLs in the order given (a shard's place in the list is its
    /// identity: the consistent hash maps a room to a place). None: the memory engine.
    pub fn redis_topology(&self) -> Result<Option<(RedisMode, Vec<String>)>, String> {
        let Some(list) = &self.redis_url else {
            return match self.redis_mode {
                Some(_) => Err("--redis-mode needs --redis-url (REDIS_URL)".into()),
                None => Ok(None),
            };
        };
        let urls: Vec<String> = list.split(',').map(|url| url.trim().to_string()).collect();
        if urls.iter().any(String::is_empty) {
            return Err("--redis-url: an empty entry in the comma-separated list".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = urls.iter().find(|url| !seen.insert(url.as_str())) {
            return Err(format!(
                "--redis-url lists {} twice",
                crate::engine::redis::redacted(twice)
            ));
        }
        let mode = self.redis_mode.unwrap_or(if urls.len() == 1 {
            RedisMode::Standalone
        } else {
            RedisMode::Shards
        });
        if mode == RedisMode::Standalone && urls.len() > 1 {
            return Err(format!(
                "--redis-mode standalone takes one URL, --redis-url lists {} (use --redis-mode shards or cluster)",
                urls.len()
            ));
        }
        Ok(Some((mode, urls)))
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_secs(self.pong_timeout_secs)
    }
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.auth_timeout_secs)
    }
    pub fn typing_throttle(&self) -> Duration {
        Duration::from_millis(self.typing_throttle_ms)
    }
    pub fn close_linger(&self) -> Duration {
        Duration::from_millis(self.close_linger_ms)
    }
    pub fn idempotency_window(&self) -> Duration {
        Duration::from_secs(self.idempotency_window_secs)
    }
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.pubsub_probe_interval_ms)
    }
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.pubsub_probe_timeout_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
    /// How often open connections' sessions are checked: `--session-check-secs`, and at
    /// most half the idle lifetime, so a check keeps an open connection's session alive.
    pub fn session_check(&self) -> Duration {
        Duration::from_secs(self.session_check_secs)
            .min(Duration::from_secs(self.session_ttl_secs) / 2)
    }
    pub fn attempt_window(&self) -> Duration {
        Duration::from_secs(self.attempt_window_secs)
    }
}

/// How the Redis URLs are used (`--redis-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisMode {
    /// One Redis holds everything.
    Standalone,
    /// Independent Redis servers; each room lives on one, chosen by a consistent hash.
    Shards,
    /// A Redis Cluster (≥ 7.0); the URLs are seed nodes.
    Cluster,
}

/// The shape of log lines (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's configuration table, row by row: (flag, environment variable).
    fn documented() -> Vec<(String, String)> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("the README");
        let table = readme
            .split("## Configuration")
            .nth(1)
            .expect("a Configuration section");
        table
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let flag = cells.get(1)?.strip_prefix("`--")?.strip_suffix('`')?;
                let env = cells.get(2)?.trim_matches('`');
                Some((flag.to_string(), env.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_readme_documents_every_flag_and_no_other() {
        use clap::CommandFactory;
        let command = Config::command();
        let flags: Vec<(String, String)> = command
            .get_arguments()
            .filter_map(|arg| {
                let flag = arg.get_long()?.to_string();
                let env = arg.get_env()?.to_string_lossy().into_owned();
                Some((flag, env))
            })
            .collect();
        let documented = documented();
        for flag in &flags {
            assert!(
                documented.contains(flag),
                "--{} ({}) is not in the README's table",
                flag.0,
                flag.1
            );
        }
        for row in &documented {
            assert!(
                flags.contains(row),
                "the README documents --{} ({}), which is no flag",
                row.0,
                row.1
            );
        }
    }

    #[test]
    fn defaults_match_the_design() {
        let config = Config::defaults();
        assert_eq!(config.port, 3000);
        assert_eq!(config.max_frame_bytes, 65536);
        assert_eq!(config.max_content_bytes, 4096);
        assert_eq!(config.max_rooms_per_connection, 128);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn rejects_zero_limits() {
        let config = Config::parse_from(["confab", "--outbound-queue", "0"]);
        assert_eq!(
            config.validate().unwrap_err(),
            "--outbound-queue must be at least 1"
        );
        let config = Config::parse_from(["confab", "--max-content-bytes", "100000"]);
        assert!(config.validate().is_err());
    }

    #[test]
    fn delivery_settings_keep_their_promises() {
        let defaults = Config::defaults();
        assert_eq!(defaults.idempotency_window(), Duration::from_secs(300));
        assert!(
            defaults.probe_interval() + defaults.probe_timeout() <= Duration::from_secs(10),
            "a wedge is noticed within 10 s at the defaults"
        );
        assert_eq!(defaults.close_linger(), Duration::from_secs(2));
        for (args, error) in [
            (
                ["confab", "--idempotency-window-secs", "299"],
                "--idempotency-window-secs must be at least 300 (5 minutes)",
            ),
            (
                ["confab", "--pubsub-probe-interval-ms", "10"],
                "--pubsub-probe-interval-ms must be between 50 and 600000",
            ),
            (
                ["confab", "--pubsub-probe-timeout-ms", "700000"],
                "--pubsub-probe-timeout-ms must be between 50 and 600000",
            ),
            (
                ["confab", "--close-linger-ms", "60001"],
                "--close-linger-ms must be at most 60000",
            ),
        ] {
            assert_eq!(Config::parse_from(args).validate().unwrap_err(), error);
        }
    }

    #[test]
    fn write_batching_is_bounded_and_can_be_turned_off() {
        let config = Config::parse_from(["confab", "--busy-write-delay-ms", "1001"]);
        assert_eq!(
            config.validate().unwrap_err(),
            "--busy-write-delay-ms must be at most 1000"
        );
        for args in [
            ["confab", "--busy-write-max-delay-ms", "0"],
            ["confab", "--busy-write-max-delay-ms", "1001"],
        ] {
            assert_eq!(
                Config::parse_from(args).validate().unwrap_err(),
                "--busy-write-max-delay-ms must be between 1 and 1000"
            );
        }
        for off in [
            ["confab", "--busy-write-delay-ms", "0"],
            ["confab", "--busy-frames-per-sec", "0"],
        ] {
            assert_eq!(Config::parse_from(off).validate(), Ok(()), "{off:?}");
        }
    }

    #[test]
    fn redis_urls_choose_their_mode() {
        let topology = |args: &[&str]| {
            Config::parse_from(std::iter::once("confab").chain(args.iter().copied()))
                .redis_topology()
        };
        assert_eq!(topology(&[]), Ok(None));
        assert_eq!(
            topology(&["--redis-url", "redis://a:1"]),
            Ok(Some((
                RedisMode::Standalone,
                vec!["redis://a:1".to_string()]
            )))
        );
        assert_eq!(
            topology(&["--redis-url", "redis://a:1, redis://b:2"]),
            Ok(Some((
                RedisMode::Shards,
                vec!["redis://a:1".to_string(), "redis://b:2".to_string()]
            )))
        );
        assert_eq!(
            topology(&["--redis-url", "redis://a:1", "--redis-mode", "shards"])
                .unwrap()
                .unwrap()
                .0,
            RedisMode::Shards
        );
        assert_eq!(
            topology(&[
                "--redis-url",
                "redis://a:1,redis://b:2",
                "--redis-mode",
                "cluster"
            ])
            .unwrap()
            .unwrap()
            .0,
            RedisMode::Cluster
        );
        for (args, error) in [
            (
                &["--redis-url", "redis://a:1,redis://b:2", "--redis-mode", "standalone"][..],
                "--redis-mode standalone takes one URL, --redis-url lists 2 (use --redis-mode shards or cluster)",
            ),
            (
                &["--redis-url", "redis://a:1,,redis://b:2"],
                "--redis-url: an empty entry in the comma-separated list",
            ),
            (
                &["--redis-url", "redis://:secret@a:1,redis://:secret@a:1"],
                "--redis-url lists redis://a:1 twice",
            ),
            (&["--redis-mode", "shards"], "--redis-mode needs --redis-url (REDIS_URL)"),
        ] {
            assert_eq!(topology(args).unwrap_err(), error, "{args:?}");
        }
    }

    #[test]
    fn rejects_bad_security_settings() {
        for args in [
            &["--allowed-origins", "chat.example.com"][..],
            &["--allowed-origins", "https://ok.example,null"],
            &["--argon2-memory-kib", "1"],
            &["--argon2-iterations", "0"],
            &["--session-ttl-secs", "100", "--session-max-age-secs", "50"],
            &["--typing-rate", "2", "--typing-burst", "0"],
            &["--max-connections-per-user", "0"],
            &["--attempt-window-secs", "0"],
        ] {
            let config = Config::parse_from(std::iter::once("confab").chain(args.iter().copied()));
            assert!(config.validate().is_err(), "{args:?} should be refused");
        }
        // Clap itself refuses a negative rate given as a separate word; with `=` it reaches us.
        for args in [
            ["confab", "--send-rate=-1"],
            ["confab", "--typing-rate=NaN"],
        ] {
            assert!(Config::parse_from(args).validate().is_err(), "{args:?}");
        }
        let config = Config::parse_from([
            "confab",
            "--allowed-origins",
            "https://a.example,http://b.example:8080",
            "--send-rate",
            "0",
        ]);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.allowed_origins.len(), 2);
    }
}

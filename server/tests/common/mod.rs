//! Test fixtures: a real server on 127.0.0.1:0, WebSocket clients, and a small HTTP client.
#![allow(dead_code)] // each test file uses a different part

pub mod cluster;
pub mod proxy;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use server::config::Config;
use server::Running;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The in-process servers' warnings and errors (`CONFAB_TEST_LOG` to choose others, e.g.
/// `server=debug`) go to the test's captured output: a failing test shows what its servers
/// saw, such as the engine error behind a 503. The test writer prints through the test's
/// own captured output, which the threads a test starts inherit, so lines land with the
/// test whose servers wrote them.
fn capture_server_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("CONFAB_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

/// How long a test waits for an expected event.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    running: Option<Running>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server with the default configuration changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        capture_server_logs();
        let mut config = Config::defaults();
        config.host = "127.0.0.1".into();
        config.port = 0;
        config.redis_url = None;
        config.log = "warn".into();
        // Most tests send in bursts, and expect presence events in the order things happen;
        // the limits and the presence grace have their own tests (abuse.rs).
        config.send_rate = 0.0;
        config.typing_rate = 0.0;
        config.membership_rate = 0.0;
        config.user_membership_rate = 0.0;
        config.presence_grace_ms = 0;
        adjust(&mut config);
        let running = server::start(config).await.expect("server starts");
        TestServer {
            addr: running.addr,
            running: Some(running),
        }
    }

    pub async fn shutdown(mut self) {
        let running = self.running.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), running.shutdown())
            .await
            .expect("shutdown finishes in time")
            .expect("shutdown is clean");
    }

    /// Where `/metrics` is served (metrics on).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.running
            .as_ref()
            .and_then(|running| running.metrics_addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Until `/health` answers 200, as a load balancer's readiness check waits before it
    /// sends an instance traffic: the engine connects lazily, and on a loaded machine a Redis
    /// Cluster client's first connections (every node, the slot map) can outlast the tests'
    /// short command timeout.
    pub async fn until_ready(&self) {
        eventually(
            Duration::from_secs(10),
            "the instance ready (/health 200)",
            || async { self.http("GET", "/health", None, &[]).await.status == 200 },
        )
        .await;
    }

    /// A new guest session: (token, user id).
    pub async fn guest(&self, name: &str) -> (String, String) {
        let response = self
            .http("POST", "/api/session", Some(json!({ "name": name })), &[])
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        let body = response.json();
        (
            body["token"].as_str().unwrap().to_string(),
            body["user"]["id"].as_str().unwrap().to_string(),
        )
    }

    /// A WebSocket client, signed in with a fresh guest session under `name`.
    pub async fn client(&self, name: &str) -> Client {
        let (token, user_id) = self.guest(name).await;
        let client = Client::signed_in(&self.ws_url(), &token).await;
        assert_eq!(client.user_id, user_id);
        client
    }

    /// Another connection (tab) of an existing client's user.
    pub async fn second_tab(&self, of: &Client) -> Client {
        Client::signed_in(&self.ws_url(), &of.token).await
    }

    /// POST /api/accounts.
    pub async fn register(&self, username: &str, password: &str) -> HttpResponse {
        let body = json!({"username": username, "password": password});
        self.http("POST", "/api/accounts", Some(body), &[]).await
    }

    /// POST /api/login.
    pub async fn login(&self, username: &str, password: &str) -> HttpResponse {
        let body = json!({"username": username, "password": password});
        self.http("POST", "/api/login", Some(body), &[]).await
    }

    /// GET /api/session with the token as bearer.
    pub async fn whoami(&self, token: &str) -> HttpResponse {
        let bearer = format!("Bearer {token}");
        self.http("GET", "/api/session", None, &[("Authorization", &bearer)])
            .await
    }

    /// DELETE /api/session with the token as bearer: signs out.
    pub async fn sign_out(&self, token: &str) -> HttpResponse {
        let bearer = format!("Bearer {token}");
        self.http(
            "DELETE",
            "/api/session",
            None,
            &[("Authorization", &bearer)],
        )
        .await
    }

    /// Every stored message of `room`, oldest first, paging back through the HTTP API.
    pub async fn all_messages(&self, room: &str) -> Vec<Value> {
        let mut stored = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let path = match &before {
                Some(id) => format!("/api/rooms/{room}/messages?before={id}"),
                None => format!("/api/rooms/{room}/messages"),
            };
            let page = self.http("GET", &path, None, &[]).await.json();
            let messages = page["messages"]
                .as_array()
                .unwrap_or_else(|| panic!("not a page: {page}"))
                .clone();
            before = messages
                .first()
                .map(|m| m["id"].as_str().unwrap().to_string());
            stored.splice(0..0, messages);
            if page["hasMore"] != true {
                return stored;
            }
        }
    }

    pub async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        http_request(
            self.addr,
            method,
            path,
            body.map(|b| b.to_string()),
            headers,
        )
        .await
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

/// A minimal HTTP/1.1 request with `Connection: close`, raw body allowed.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let lower = head.to_ascii_lowercase();
    // A compressed body is binary: kept as it came (tests look at its headers only).
    let body = if lower.contains("transfer-encoding: chunked")
        && !lower.contains("content-encoding: gzip")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        head: head.to_string(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub socket: Socket,
    pub user_id: String,
    pub token: String,
}

impl Client {
    /// Connects without signing in; `headers` go on the upgrade request.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Client {
        let mut request = url.into_client_request().expect("request");
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connects");
        Client {
            socket,
            user_id: String::new(),
            token: String::new(),
        }
    }

    /// Connects and signs in with `token`, over a socket whose receive buffer is small
    /// (4 KiB): a client that stops reading then holds little in the kernel, and what the
    /// server cannot write waits in the server.
    pub async fn slow_reader(url: &str, token: &str) -> Client {
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let tcp = tokio::net::TcpSocket::new_v4().unwrap();
        tcp.set_recv_buffer_size(4096).unwrap();
        let stream = tcp.connect(addr).await.expect("tcp connects");
        let (socket, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("websocket connects");
        let client = Client {
            socket,
            user_id: String::new(),
            token: String::new(),
        };
        client.authenticated(token).await
    }

    /// Connects and signs in with `token` through the `auth` message.
    pub async fn signed_in(url: &str, token: &str) -> Client {
        Client::connect(url, &[]).await.authenticated(token).await
    }

    /// A connection just opened, signed in with `token` through the `auth` message.
    async fn authenticated(mut self, token: &str) -> Client {
        self.expect("connected").await;
        self.send(json!({"type": "auth", "token": token})).await;
        let authed = self.expect("authenticated").await;
        self.user_id = authed["userId"].as_str().expect("userId").to_string();
        self.token = token.to_string();
        self
    }

    pub async fn send(&mut self, value: Value) {
        self.send_raw(Message::text(value.to_string())).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(Message::text(text.to_string())).await;
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next JSON event (pings skipped); panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        serde_json::from_str(&self.recv_text().await).expect("JSON event")
    }

    /// The next text frame exactly as the server wrote it (pings skipped).
    pub async fn recv_text(&mut self) -> String {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("an event in time")
                .expect("socket open")
                .expect("socket ok");
            match frame {
                Message::Text(text) => return text.to_string(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next event of type `kind`, exactly as the server wrote it, skipping others.
    pub async fn recv_until(&mut self, kind: &str) -> String {
        loop {
            let text = self.recv_text().await;
            let event: Value = serde_json::from_str(&text).expect("JSON event");
            if event["type"] == kind {
                return text;
            }
        }
    }

    /// The next event of type `kind`, skipping others (e.g. presence noise).
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let event = self.recv().await;
            if event["type"] == kind {
                return event;
            }
        }
    }

    /// The next event, which must be an error with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let event = self.recv().await;
        assert_eq!(event["type"], "error", "expected error {code}, got {event}");
        assert_eq!(event["code"], code, "{event}");
        assert!(
            event["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{event}"
        );
        event
    }

    /// Asserts that nothing but pings arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Waits for the server's close frame: (code, reason).
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("close in time");
            match frame {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => {
                    return (u16::from(CloseCode::Status), String::new())
                }
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Sends a ping request and expects the pong: proof the connection is alive.
    pub async fn assert_alive(&mut self) {
        self.send(json!({"type": "ping"})).await;
        assert_eq!(self.expect("pong").await["type"], "pong");
    }

    /// Joins a room and returns the `room_history` answer.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join", "roomId": room})).await;
        let history = self.expect("room_history").await;
        assert_eq!(history["roomId"], room);
        history
    }

    /// Sends a message until it is acknowledged, sending it again with the same
    /// `clientMsgId` after every `unavailable` (Redis away, a slot moving), as a client does.
    /// Returns the ack.
    pub async fn say_until_acked(&mut self, room: &str, content: &str, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never acknowledged"
            );
            self.send(
                json!({"type": "message", "roomId": room, "content": content, "clientMsgId": id}),
            )
            .await;
            loop {
                let event = self.recv().await;
                match event["type"].as_str() {
                    Some("ack") if event["clientMsgId"] == id => return event,
                    Some("error") if event["clientMsgId"] == id => {
                        assert_eq!(event["code"], "unavailable", "{event}");
                        break;
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a message and returns its ack.
    pub async fn say(&mut self, room: &str, content: &str, client_msg_id: &str) -> Value {
        self.send(json!({"type": "message", "roomId": room, "content": content, "clientMsgId": client_msg_id}))
            .await;
        let ack = self.expect("ack").await;
        assert_eq!(ack["clientMsgId"], client_msg_id);
        ack
    }
}

/// `field` of every object in the JSON array `list`, as strings.
pub fn fields(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|item| {
            item[field]
                .as_str()
                .unwrap_or_else(|| panic!("no {field} in {item}"))
                .to_string()
        })
        .collect()
}

/// A real `redis-server` (Debian's binary) on a free loopback port, without persistence
/// (or with AOF, [`RedisServer::start_durable`]). Stopped when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
    /// With AOF: its own directory, kept across restarts.
    durable: Option<tempdir::Dir>,
}

pub mod tempdir {
    /// A directory under the system's temp dir, removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A free loopback port (the OS picks it; the listener is closed again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let mut redis = RedisServer {
            port: free_port(),
            child: None,
            durable: None,
        };
        redis.launch().await;
        redis
    }

    /// Redis with AOF and `appendfsync always`: an acknowledged write survives a SIGKILL.
    pub async fn start_durable() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("confab-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = RedisServer {
            port,
            child: None,
            durable: Some(tempdir::Dir(dir)),
        };
        redis.launch().await;
        redis
    }

    /// Sends one command (RESP) and returns the first line of the reply.
    pub async fn command(&self, args: &[&str]) -> String {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("redis");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).await.expect("a reply");
            reply.push(byte[0]);
        }
        String::from_utf8_lossy(&reply).trim_end().to_string()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) {
        let port = self.port.to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        match &self.durable {
            Some(dir) => args.extend([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                dir.0.to_str().unwrap(),
            ]),
            None => args.extend(["--appendonly", "no"]),
        }
        let child = std::process::Command::new("redis-server")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..100 {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await {
                let _ = stream.write_all(b"PING\r\n").await;
                let mut reply = [0u8; 7];
                if stream.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n" {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills Redis (SIGKILL): without persistence everything in it is lost, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A file in the system's temp dir (key files, namespace files), removed when dropped.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn with(text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "confab-test-{}-{}",
            std::process::id(),
            server::engine::new_token()
        ));
        let file = TempFile(path);
        file.write(text);
        file
    }

    pub fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }

    pub fn path(&self) -> String {
        self.0.to_str().unwrap().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whatever instances can be pointed at: its `REDIS_URL` and `--redis-mode`.
pub trait RedisTarget {
    fn url(&self) -> String;
    /// None: the default for the URL list.
    fn mode(&self) -> Option<server::config::RedisMode> {
        None
    }
}

impl RedisTarget for RedisServer {
    fn url(&self) -> String {
        RedisServer::url(self)
    }
}

/// A Redis deployment multi-instance tests run on (one Redis, shards, a cluster) and the
/// faults they inflict on all of it.
#[allow(async_fn_in_trait)] // test code: never spawned, so futures need not be Send
pub trait Deployment: RedisTarget {
    /// Kills every Redis process (SIGKILL).
    fn kill(&mut self);
    /// Every Redis process again on its port, empty, as after a crash without persistence.
    async fn restart(&mut self);
    /// Drops every pub/sub connection on every process (`CLIENT KILL TYPE pubsub`); returns
    /// how many were dropped.
    async fn kill_pubsub_connections(&self) -> usize;
}

/// One Redis, or several independent ones as shards.
pub struct Redises {
    pub servers: Vec<RedisServer>,
}

impl Redises {
    pub async fn standalone() -> Self {
        Redises::shards(1).await
    }

    /// `count` servers; with more than one, instances use them as shards (the default mode
    /// for a list of URLs).
    pub async fn shards(count: usize) -> Self {
        let mut servers = Vec::new();
        for _ in 0..count {
            servers.push(RedisServer::start().await);
        }
        Redises { servers }
    }
}

impl RedisTarget for Redises {
    fn url(&self) -> String {
        let urls: Vec<String> = self.servers.iter().map(RedisServer::url).collect();
        urls.join(",")
    }
}

impl Deployment for Redises {
    fn kill(&mut self) {
        self.servers.iter_mut().for_each(RedisServer::kill);
    }

    async fn restart(&mut self) {
        for server in &mut self.servers {
            server.restart().await;
        }
    }

    async fn kill_pubsub_connections(&self) -> usize {
        let mut killed = 0;
        for server in &self.servers {
            let reply = server.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
            killed += reply.trim_start_matches(':').parse::<usize>().unwrap_or(0);
        }
        killed
    }
}

/// A server instance using `redis`, with short presence leases for tests, once it is ready.
pub async fn redis_instance(redis: &impl RedisTarget, prefix: &str) -> TestServer {
    redis_instance_with(redis, prefix, |_| {}).await
}

/// [`redis_instance`] with more of the configuration changed by `adjust`.
pub async fn redis_instance_with(
    redis: &impl RedisTarget,
    prefix: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let server = redis_instance_in(&redis.url(), redis.mode(), prefix, adjust).await;
    server.until_ready().await;
    server
}

/// Two instances sharing `redis`, both configured by `adjust`: what every cross-instance
/// test starts with.
pub async fn two_redis_instances_with(
    redis: &impl RedisTarget,
    prefix: &str,
    adjust: impl Fn(&mut Config),
) -> (TestServer, TestServer) {
    let a = redis_instance_with(redis, prefix, &adjust).await;
    let b = redis_instance_with(redis, prefix, &adjust).await;
    (a, b)
}

/// A server instance using the Redis at `url` (e.g. through a proxy).
pub async fn redis_instance_at(url: &str, prefix: &str) -> TestServer {
    redis_instance_in(url, None, prefix, |_| {}).await
}

/// [`redis_instance_at`] with more of the configuration changed by `adjust`.
pub async fn redis_instance_at_with(
    url: &str,
    prefix: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    redis_instance_in(url, None, prefix, adjust).await
}

async fn redis_instance_in(
    url: &str,
    mode: Option<server::config::RedisMode>,
    prefix: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let url = url.to_string();
    let prefix = prefix.to_string();
    TestServer::start_with(move |c| {
        c.redis_url = Some(url);
        c.redis_mode = mode;
        c.redis_prefix = prefix;
        c.presence_lease_secs = 2;
        c.presence_refresh_secs = 1;
        c.redis_timeout_ms = 500;
        adjust(c);
    })
    .await
}

/// Polls `check` every 100 ms until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {limit:?}: {what}");
}

/// The real binary on a free port against `redis` (one Redis), with short presence leases and
/// `env` on top, once it listens: an instance a test can kill with SIGKILL. Its port too.
pub async fn spawn_instance(
    redis: &impl RedisTarget,
    prefix: &str,
    env: &[(&str, String)],
) -> (std::process::Child, u16) {
    let port = free_port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_confab"));
    command
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("REDIS_URL", redis.url())
        .env("CONFAB_REDIS_PREFIX", prefix)
        .env("CONFAB_PRESENCE_LEASE_SECS", "2")
        .env("CONFAB_PRESENCE_REFRESH_SECS", "1")
        .env("CONFAB_LOG", "warn")
        .env("CONFAB_PRESENCE_GRACE_MS", "0");
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().expect("confab starts");
    eventually(
        Duration::from_secs(20),
        "the instance listening",
        || async { TcpStream::connect(("127.0.0.1", port)).await.is_ok() },
    )
    .await;
    (child, port)
}

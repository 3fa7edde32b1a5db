//! The browser's live connection to a room (hydrate only).
//!
//! One task per open room page owns the WebSocket. It joins with the id of the newest message
//! it has (so a reconnect gets exactly what was missed), resends our unconfirmed messages that
//! the recovered history does not contain, and reconnects after a transient close with
//! exponential backoff (1–16 s) and full jitter. A guest whose session vanished (a restarted
//! single instance) gets a new guest session under the same name.

use crate::chat::{ChatLog, ConnStatus, Pending, TYPING_TTL_MS};
use crate::protocol::{close, ClientMsg, ErrorCode, ServerMsg, User};
use futures::channel::mpsc;
use futures::{future, stream, SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use leptos::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests waiting for the socket; sends beyond this fail visibly instead of piling up.
const OUTGOING_QUEUE: usize = 64;
/// While typing, `typing: true` is re-sent this often, keeping receivers' indication alive.
const TYPING_REFRESH_MS: f64 = 2_000.0;
/// After this long without a keystroke, `typing: false` is sent.
const TYPING_IDLE: Duration = Duration::from_millis(3_000);
/// Longest wait between reconnect attempts.
const BACKOFF_CAP_SECS: u32 = 16;

enum Outgoing {
    Message(Pending),
    Typing(bool),
}

#[derive(Default)]
struct TypingState {
    last_true_ms: f64,
    idle_timer: Option<TimeoutHandle>,
}

/// The handle a room page keeps: send messages and typing, stop on leaving.
pub struct Live {
    tx: mpsc::Sender<Outgoing>,
    stopped: Arc<AtomicBool>,
    log: RwSignal<ChatLog>,
    // Only touched from the browser's single thread; the Mutex is there to make Live Sync.
    typing: Arc<Mutex<TypingState>>,
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

fn new_client_msg_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = (js_sys::Math::random() * 1e12) as u64;
    format!("c{random:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl Live {
    pub fn start(room_id: String, log: RwSignal<ChatLog>, status: RwSignal<ConnStatus>) -> Live {
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        let stopped = Arc::new(AtomicBool::new(false));
        let link = Link {
            room_id,
            log,
            status,
            retry: tx.clone(),
            retry_scheduled: Arc::default(),
        };
        leptos::task::spawn_local(run(link, rx, stopped.clone()));
        Live {
            tx,
            stopped,
            log,
            typing: Arc::default(),
        }
    }

    /// Shows the message at once (pending) and sends it; the ack confirms it.
    pub fn send_message(&self, content: String) {
        let pending = self
            .log
            .try_update(|log| log.queue(new_client_msg_id(), content));
        // Kept before it is even sent: a reload from here on loses nothing.
        self.log.with_untracked(crate::kept::save);
        if let Some(pending) = pending.filter(|p| !p.held) {
            if self
                .tx
                .clone()
                .try_send(Outgoing::Message(pending.clone()))
                .is_err()
            {
                // Not lost: still pending, and sent after the next (re)join.
                leptos::logging::warn!(
                    "outgoing queue full; {} waits for reconnect",
                    pending.client_msg_id
                );
            }
        }
        // The message ends the typing indication on the receivers' side; no `false` needed.
        // `last_true_ms` stays: typing again right away is announced within the usual 2 s,
        // which keeps a quick sender inside the server's typing rate.
        let mut typing = self.typing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(timer) = typing.idle_timer.take() {
            timer.clear();
        }
    }

    /// Called on every keystroke: throttled `typing: true`, then `false` once idle.
    pub fn typed(&self) {
        let mut typing = self.typing.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        if now - typing.last_true_ms >= TYPING_REFRESH_MS {
            typing.last_true_ms = now;
            let _ = self.tx.clone().try_send(Outgoing::Typing(true));
        }
        if let Some(timer) = typing.idle_timer.take() {
            timer.clear();
        }
        let tx = self.tx.clone();
        let state = self.typing.clone();
        typing.idle_timer = set_timeout_with_handle(
            move || {
                let _ = tx.clone().try_send(Outgoing::Typing(false));
                state.lock().unwrap_or_else(|p| p.into_inner()).last_true_ms = 0.0;
            },
            TYPING_IDLE,
        )
        .ok();
    }

    /// Closes the connection for good (the page is left).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.tx.clone().close_channel();
    }
}

/// What the connection task works with.
struct Link {
    room_id: String,
    log: RwSignal<ChatLog>,
    status: RwSignal<ConnStatus>,
    /// Sends rate-limited messages again once the server's hint has passed.
    retry: mpsc::Sender<Outgoing>,
    retry_scheduled: Arc<AtomicBool>,
}

/// How one connection attempt ended.
enum Outcome {
    Stopped,
    /// Closed or failed; `joined` says whether it got as far as the room's history.
    Dropped {
        joined: bool,
    },
    Terminal(String),
    SessionLost,
}

async fn run(link: Link, mut rx: mpsc::Receiver<Outgoing>, stopped: Arc<AtomicBool>) {
    let (log, status) = (link.log, link.status);
    let mut attempt: u32 = 0;
    while !stopped.load(Ordering::Relaxed) {
        status.set(ConnStatus::Connecting);
        let outcome = match WebSocket::open(&socket_url()) {
            Ok(socket) => connection(&link, socket, &mut rx).await,
            Err(_) => Outcome::Dropped { joined: false },
        };
        match outcome {
            Outcome::Stopped => return,
            Outcome::Terminal(reason) => {
                status.set(ConnStatus::Offline(reason));
                return;
            }
            Outcome::SessionLost => match renew_guest_session(log).await {
                Ok(()) => {
                    attempt = 0;
                    continue;
                }
                Err(reason) => {
                    status.set(ConnStatus::Offline(reason));
                    return;
                }
            },
            Outcome::Dropped { joined } => {
                if joined {
                    attempt = 0;
                }
            }
        }
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        attempt += 1;
        let delay = backoff(attempt);
        status.set(ConnStatus::Reconnecting {
            seconds: delay.as_secs_f64().ceil() as u32,
        });
        gloo_timers::future::sleep(delay).await;
    }
}

/// Full jitter over an exponential cap: 1, 2, 4, 8, then 16 s; never under half a second.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = f64::from(BACKOFF_CAP_SECS.min(1 << attempt.saturating_sub(1).min(4)) * 1000);
    Duration::from_millis((500.0 + js_sys::Math::random() * (cap_ms - 500.0).max(0.0)) as u64)
}

fn socket_url() -> String {
    let location = window().location();
    let secure = location.protocol().is_ok_and(|p| p == "https:");
    let host = location.host().unwrap_or_default();
    format!("{}://{host}/ws", if secure { "wss" } else { "ws" })
}

enum Event {
    Incoming(Result<Message, WebSocketError>),
    SocketEnded,
    Outgoing(Outgoing),
    Stop,
}

async fn connection(link: &Link, socket: WebSocket, rx: &mut mpsc::Receiver<Outgoing>) -> Outcome {
    let (room_id, log, status) = (link.room_id.as_str(), link.log, link.status);
    let (mut write, read) = socket.split();
    // Whatever queued up while offline: messages are resent from `pending` after the join,
    // and stale typing is dropped.
    while rx.try_recv().is_ok() {}

    let (since, epoch) = log.with_untracked(|log| (log.resume_id(), log.epoch()));
    let join = ClientMsg::Join {
        room_id: room_id.to_string(),
        since,
        epoch,
    };
    if send(&mut write, &join).await.is_err() {
        return Outcome::Dropped { joined: false };
    }
    let mut joined = false;
    let incoming = read
        .map(Event::Incoming)
        .chain(stream::once(future::ready(Event::SocketEnded)));
    let outgoing = rx
        .by_ref()
        .map(Event::Outgoing)
        .chain(stream::once(future::ready(Event::Stop)));
    let mut events = stream::select(incoming, outgoing);
    while let Some(event) = events.next().await {
        let request = match event {
            Event::Stop => return Outcome::Stopped,
            Event::SocketEnded => break,
            Event::Outgoing(_) if !joined => continue,
            Event::Outgoing(Outgoing::Message(pending)) => Some(message_request(room_id, pending)),
            Event::Outgoing(Outgoing::Typing(is_typing)) => Some(ClientMsg::Typing {
                room_id: room_id.to_string(),
                is_typing,
            }),
            Event::Incoming(Ok(Message::Text(text))) => {
                let Ok(event) = serde_json::from_str::<ServerMsg>(&text) else {
                    continue;
                };
                match &event {
                    ServerMsg::Error {
                        code: ErrorCode::NotAuthenticated | ErrorCode::InvalidToken,
                        ..
                    } if !joined => return Outcome::SessionLost,
                    ServerMsg::RoomHistory { .. } => {
                        joined = true;
                        status.set(ConnStatus::Online);
                    }
                    ServerMsg::Typing { .. } => schedule_typing_prune(log),
                    ServerMsg::Error {
                        code: ErrorCode::RateLimited,
                        client_msg_id: Some(_),
                        retry_after_ms,
                        ..
                    } => schedule_retry(link, *retry_after_ms),
                    _ => {}
                }
                let (resend, unconfirmed_changed) = log
                    .try_update(|log| {
                        let before = log.to_persist();
                        let resend = log.apply(event, now_ms());
                        (resend, log.to_persist() != before)
                    })
                    .unwrap_or_default();
                if unconfirmed_changed {
                    log.with_untracked(crate::kept::save);
                }
                for pending in resend {
                    if send(&mut write, &message_request(room_id, pending))
                        .await
                        .is_err()
                    {
                        return Outcome::Dropped { joined };
                    }
                }
                None
            }
            Event::Incoming(Ok(Message::Bytes(_))) => None,
            Event::Incoming(Err(WebSocketError::ConnectionClose(close_event))) => {
                if close::should_reconnect(close_event.code) {
                    break;
                }
                let reason = if close_event.code == close::SESSION_ENDED {
                    "you were signed out; sign in again to chat".to_string()
                } else if close_event.reason.is_empty() {
                    format!("closed by the server ({})", close_event.code)
                } else {
                    close_event.reason
                };
                return Outcome::Terminal(reason);
            }
            Event::Incoming(Err(_)) => break,
        };
        if let Some(request) = request {
            if send(&mut write, &request).await.is_err() {
                break;
            }
        }
    }
    Outcome::Dropped { joined }
}

fn message_request(room_id: &str, pending: Pending) -> ClientMsg {
    ClientMsg::Message {
        room_id: room_id.to_string(),
        content: pending.content,
        client_msg_id: Some(pending.client_msg_id),
    }
}

async fn send(
    write: &mut futures::stream::SplitSink<WebSocket, Message>,
    request: &ClientMsg,
) -> Result<(), WebSocketError> {
    let text = serde_json::to_string(request).expect("client requests always serialize");
    write.send(Message::Text(text)).await
}

/// After the server's hint (1 s without one), sends the messages held by the rate limit
/// again, in the order they were written. One timer at a time: later refusals while one is
/// set only add to what it releases.
fn schedule_retry(link: &Link, retry_after_ms: Option<u64>) {
    if link.retry_scheduled.swap(true, Ordering::Relaxed) {
        return;
    }
    let (log, scheduled, mut retry) = (link.log, link.retry_scheduled.clone(), link.retry.clone());
    set_timeout(
        move || {
            scheduled.store(false, Ordering::Relaxed);
            for pending in log.try_update(ChatLog::release_held).unwrap_or_default() {
                // A full queue is fine: it stays pending and goes out after a reconnect.
                let _ = retry.try_send(Outgoing::Message(pending));
            }
        },
        Duration::from_millis(retry_after_ms.unwrap_or(1_000).clamp(50, 60_000)),
    );
}

fn schedule_typing_prune(log: RwSignal<ChatLog>) {
    set_timeout(
        move || log.update(|log| log.prune_typing(now_ms())),
        Duration::from_millis(TYPING_TTL_MS as u64 + 100),
    );
}

/// A guest whose session is gone (e.g. the single instance restarted) continues under the
/// same name with a new guest session; the cookie is replaced by the response.
async fn renew_guest_session(log: RwSignal<ChatLog>) -> Result<(), String> {
    let lost = || "your session ended; reload the page to sign in again".to_string();
    let me = log.with_untracked(|log| log.me.clone()).ok_or_else(lost)?;
    if !me.guest {
        return Err(lost());
    }
    #[derive(serde::Deserialize)]
    struct Created {
        user: User,
    }
    let response = gloo_net::http::Request::post("/api/session")
        .json(&serde_json::json!({ "name": me.name }))
        .map_err(|_| lost())?
        .send()
        .await
        .map_err(|_| lost())?;
    if !response.ok() {
        return Err(lost());
    }
    let created: Created = response.json().await.map_err(|_| lost())?;
    log.update(|log| log.me = Some(created.user));
    Ok(())
}

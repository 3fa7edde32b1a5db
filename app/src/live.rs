//! The browser's live connection (hydrate only): one WebSocket for every room of the
//! reader's list.
//!
//! It joins each room with where it stands there (the open room's newest message, or a
//! background room's newest seen), so a reconnect gets exactly what was missed; resends our
//! unconfirmed messages that the recovered history does not contain; feeds every event to the
//! room list (unread and mention counts) and to the open room's log; and reconnects after a
//! transient close with exponential backoff (1–16 s) and full jitter. A guest whose session
//! vanished (a restarted single instance) gets a new guest session under the same name; a
//! session ended elsewhere (signed out in another tab) tells the workspace, which loads the
//! page again as signed out.

use crate::chat::{ChatLog, ConnStatus, Pending, TYPING_TTL_MS};
use crate::protocol::{close, ClientMsg, ErrorCode, ServerMsg};
use crate::workspace::Workspace;
use futures::channel::mpsc;
use futures::{future, stream, SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use leptos::prelude::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests waiting for the socket; sends beyond this fail visibly instead of piling up.
const OUTGOING_QUEUE: usize = 256;
/// While typing, `typing: true` is re-sent this often, keeping receivers' indication alive.
const TYPING_REFRESH_MS: f64 = 2_000.0;
/// After this long without a keystroke, `typing: false` is sent.
const TYPING_IDLE: Duration = Duration::from_millis(3_000);
/// How long a new socket may take to say who we are before it is replaced.
const GREETING_TIMEOUT: Duration = Duration::from_secs(4);
/// Longest wait between reconnect attempts.
const BACKOFF_CAP_SECS: u32 = 16;

enum Outgoing {
    /// Join (or rejoin, to resume) a room.
    Join(String),
    Leave(String),
    Message(String, Pending),
    Typing(String, bool),
    Read(String, String),
}

#[derive(Default)]
struct TypingState {
    room: String,
    last_true_ms: f64,
    idle_timer: Option<TimeoutHandle>,
}

/// The workspace's handle on the connection.
pub struct Live {
    tx: mpsc::Sender<Outgoing>,
    /// Cuts the wait before the next reconnect attempt short.
    wake: mpsc::Sender<()>,
    stopped: Arc<AtomicBool>,
    workspace: Workspace,
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
    pub fn start(workspace: Workspace) -> Live {
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        let (wake, woken) = mpsc::channel(1);
        let stopped = Arc::new(AtomicBool::new(false));
        let link = Link {
            workspace,
            retry: tx.clone(),
            retry_scheduled: Arc::default(),
        };
        leptos::task::spawn_local(run(link, rx, woken, stopped.clone()));
        Live {
            tx,
            wake,
            stopped,
            workspace,
            typing: Arc::default(),
        }
    }

    fn request(&self, request: Outgoing) -> bool {
        self.tx.clone().try_send(request).is_ok()
    }

    /// Joins a room (again, if joined: the open room's log then gets what it lacks).
    pub fn join(&self, room_id: &str) {
        self.request(Outgoing::Join(room_id.to_string()));
    }

    /// Leaves a room for good (it was taken off the list).
    pub fn leave(&self, room_id: &str) {
        self.request(Outgoing::Leave(room_id.to_string()));
    }

    /// Tells the server the reader has seen the room up to `id`.
    pub fn read(&self, room_id: &str, id: &str) {
        self.request(Outgoing::Read(room_id.to_string(), id.to_string()));
    }

    /// Shows the message at once (pending) and sends it; the ack confirms it.
    pub fn send_message(&self, room_id: &str, content: String) {
        let Some(log) = self.workspace.log(room_id) else {
            return;
        };
        let pending = log.try_update(|log| log.queue(new_client_msg_id(), content));
        // Kept before it is even sent: a reload from here on loses nothing.
        log.with_untracked(crate::kept::save);
        if let Some(pending) = pending.filter(|p| !p.held) {
            let id = pending.client_msg_id.clone();
            if !self.request(Outgoing::Message(room_id.to_string(), pending)) {
                // Not lost: still pending, and sent after the next (re)join.
                leptos::logging::warn!("outgoing queue full; {id} waits for reconnect");
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

    /// Sends a refused message again, as it was.
    pub fn retry(&self, room_id: &str, client_msg_id: &str) {
        let Some(log) = self.workspace.log(room_id) else {
            return;
        };
        if let Some(pending) = log.try_update(|log| log.retry(client_msg_id)).flatten() {
            log.with_untracked(crate::kept::save);
            self.request(Outgoing::Message(room_id.to_string(), pending));
        }
    }

    /// Gives up on a refused message.
    pub fn discard(&self, room_id: &str, client_msg_id: &str) {
        if let Some(log) = self.workspace.log(room_id) {
            log.update(|log| log.discard(client_msg_id));
            log.with_untracked(crate::kept::save);
        }
    }

    /// Called on every keystroke: throttled `typing: true`, then `false` once idle.
    pub fn typed(&self, room_id: &str) {
        let mut typing = self.typing.lock().unwrap_or_else(|p| p.into_inner());
        if typing.room != room_id {
            typing.room = room_id.to_string();
            typing.last_true_ms = 0.0;
        }
        let now = now_ms();
        if now - typing.last_true_ms >= TYPING_REFRESH_MS {
            typing.last_true_ms = now;
            self.request(Outgoing::Typing(room_id.to_string(), true));
        }
        if let Some(timer) = typing.idle_timer.take() {
            timer.clear();
        }
        let tx = self.tx.clone();
        let state = self.typing.clone();
        let room = room_id.to_string();
        typing.idle_timer = set_timeout_with_handle(
            move || {
                let _ = tx.clone().try_send(Outgoing::Typing(room, false));
                state.lock().unwrap_or_else(|p| p.into_inner()).last_true_ms = 0.0;
            },
            TYPING_IDLE,
        )
        .ok();
    }

    /// Reconnects at once instead of waiting out the backoff.
    pub fn reconnect_now(&self) {
        let _ = self.wake.clone().try_send(());
    }

    /// Closes the connection for good (signed out, or the page is gone).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.tx.clone().close_channel();
    }
}

/// What the connection task works with.
struct Link {
    workspace: Workspace,
    /// Sends rate-limited messages again once the server's hint has passed.
    retry: mpsc::Sender<Outgoing>,
    retry_scheduled: Arc<AtomicBool>,
}

/// How one connection attempt ended.
enum Outcome {
    Stopped,
    /// Closed or failed; `signed_in` says whether it got as far as being signed in.
    Dropped {
        signed_in: bool,
    },
    Terminal(String),
    SessionEnded,
    SessionLost,
}

async fn run(
    link: Link,
    mut rx: mpsc::Receiver<Outgoing>,
    mut woken: mpsc::Receiver<()>,
    stopped: Arc<AtomicBool>,
) {
    let status = link.workspace.status;
    let mut attempt: u32 = 0;
    while !stopped.load(Ordering::Relaxed) {
        status.set(ConnStatus::Connecting);
        let outcome = match WebSocket::open(&socket_url()) {
            Ok(socket) => connection(&link, socket, &mut rx).await,
            Err(_) => Outcome::Dropped { signed_in: false },
        };
        match outcome {
            Outcome::Stopped => return,
            Outcome::Terminal(reason) => {
                status.set(ConnStatus::Offline(reason));
                return;
            }
            Outcome::SessionEnded => {
                status.set(ConnStatus::Offline(
                    "you were signed out; sign in again to chat".into(),
                ));
                link.workspace.session_ended.update(|n| *n += 1);
                return;
            }
            Outcome::SessionLost => match renew_guest_session(link.workspace).await {
                Ok(()) => {
                    attempt = 0;
                    continue;
                }
                Err(reason) => {
                    status.set(ConnStatus::Offline(reason));
                    link.workspace.session_ended.update(|n| *n += 1);
                    return;
                }
            },
            Outcome::Dropped { signed_in } => {
                if signed_in {
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
        // Waits out the backoff, unless the reader asks to reconnect now.
        while woken.try_recv().is_ok() {}
        future::select(Box::pin(gloo_timers::future::sleep(delay)), woken.next()).await;
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

type Writer = futures::stream::SplitSink<WebSocket, Message>;

/// The join of a room, from where this tab stands in it.
fn join_request(workspace: Workspace, room_id: &str) -> ClientMsg {
    let (since, epoch) = match workspace.log(room_id) {
        Some(log) => log.with_untracked(|log| (log.resume_id(), log.epoch())),
        None => workspace.rooms.with_untracked(|rooms| {
            rooms
                .get(room_id)
                .map(|room| (room.newest.clone(), room.epoch.clone()))
                .unwrap_or_default()
        }),
    };
    let epoch = since.is_some().then_some(epoch).flatten();
    ClientMsg::Join {
        room_id: room_id.to_string(),
        since,
        epoch,
    }
}

/// Every room this tab wants: the list's and the open ones.
fn wanted_rooms(workspace: Workspace) -> Vec<String> {
    let mut rooms = workspace.rooms.with_untracked(|rooms| rooms.ids());
    workspace.open.with_value(|open| {
        for room in open.keys() {
            if !rooms.contains(room) {
                rooms.push(room.clone());
            }
        }
    });
    rooms
}

async fn connection(link: &Link, socket: WebSocket, rx: &mut mpsc::Receiver<Outgoing>) -> Outcome {
    let workspace = link.workspace;
    let (mut write, read) = socket.split();
    // Whatever queued up while offline: joins are redone below, messages are resent from
    // `pending` after each join, stale typing and reads are dropped.
    while rx.try_recv().is_ok() {}
    // A socket that never opens, or opens but never tells who we are (nor answers the ping),
    // is given up on and replaced, instead of showing "Connecting…" for ever. The deadline
    // covers the opening handshake too: sending waits for the socket to open, and a
    // handshake the browser holds back (or a server that accepted the TCP connection but
    // never answers the upgrade) would otherwise wait without end.
    let mut greeting = Box::pin(gloo_timers::future::sleep(GREETING_TIMEOUT));
    // Signed in by cookie, the server says `authenticated` before it answers this ping; a
    // `pong` first means the session is gone.
    let ping = Box::pin(send(&mut write, &ClientMsg::Ping));
    match future::select(ping, greeting.as_mut()).await {
        future::Either::Left((Ok(()), _)) => {}
        future::Either::Left((Err(_), _)) => return Outcome::Dropped { signed_in: false },
        future::Either::Right(((), _)) => {
            leptos::logging::warn!("the socket did not open in time; reconnecting");
            return Outcome::Dropped { signed_in: false };
        }
    }
    let mut signed_in = false;
    let mut joined: HashSet<String> = HashSet::new();
    let incoming = read
        .map(Event::Incoming)
        .chain(stream::once(future::ready(Event::SocketEnded)));
    let outgoing = rx
        .by_ref()
        .map(Event::Outgoing)
        .chain(stream::once(future::ready(Event::Stop)));
    let mut events = stream::select(incoming, outgoing);
    loop {
        let event = if signed_in {
            events.next().await
        } else {
            match future::select(events.next(), greeting.as_mut()).await {
                future::Either::Left((event, _)) => event,
                future::Either::Right(((), _)) => {
                    leptos::logging::warn!("no greeting from the server; reconnecting");
                    break;
                }
            }
        };
        let Some(event) = event else { break };
        let requests = match event {
            Event::Stop => return Outcome::Stopped,
            Event::SocketEnded => break,
            Event::Outgoing(_) if !signed_in => continue,
            Event::Outgoing(request) => outgoing_request(workspace, &mut joined, request),
            Event::Incoming(Ok(Message::Text(text))) => {
                let Ok(event) = crate::server_events::decode(&text) else {
                    continue;
                };
                match &event {
                    ServerMsg::Authenticated { .. } => {
                        signed_in = true;
                        workspace.status.set(ConnStatus::Online);
                        let joins = wanted_rooms(workspace)
                            .iter()
                            .map(|room| join_request(workspace, room))
                            .collect::<Vec<_>>();
                        for join in joins {
                            if send(&mut write, &join).await.is_err() {
                                return Outcome::Dropped { signed_in };
                            }
                        }
                        continue;
                    }
                    ServerMsg::Pong if !signed_in => return Outcome::SessionLost,
                    ServerMsg::Error {
                        code: ErrorCode::NotAuthenticated | ErrorCode::InvalidToken,
                        ..
                    } if !signed_in => return Outcome::SessionLost,
                    ServerMsg::RoomHistory { room_id, .. } => {
                        joined.insert(room_id.clone());
                        workspace.joined(room_id);
                    }
                    ServerMsg::Error {
                        code: ErrorCode::RateLimited,
                        client_msg_id: Some(_),
                        retry_after_ms,
                        room_id: Some(room_id),
                        ..
                    } => schedule_retry(link, room_id, *retry_after_ms),
                    _ => {}
                }
                incoming_event(workspace, event)
            }
            Event::Incoming(Ok(Message::Bytes(_))) => Vec::new(),
            Event::Incoming(Err(WebSocketError::ConnectionClose(close_event))) => {
                if close::should_reconnect(close_event.code) {
                    break;
                }
                if close_event.code == close::SESSION_ENDED {
                    return Outcome::SessionEnded;
                }
                let reason = if close_event.reason.is_empty() {
                    format!("closed by the server ({})", close_event.code)
                } else {
                    close_event.reason
                };
                return Outcome::Terminal(reason);
            }
            Event::Incoming(Err(_)) => break,
        };
        for request in requests {
            if send(&mut write, &request).await.is_err() {
                return Outcome::Dropped { signed_in };
            }
        }
    }
    Outcome::Dropped { signed_in }
}

/// What a request from the page sends, given the rooms joined on this connection (a request
/// for a room not joined yet waits: its join's answer resends what is pending).
fn outgoing_request(
    workspace: Workspace,
    joined: &mut HashSet<String>,
    request: Outgoing,
) -> Vec<ClientMsg> {
    let request = match request {
        Outgoing::Join(room) => Some(join_request(workspace, &room)),
        Outgoing::Leave(room) => joined
            .remove(&room)
            .then_some(ClientMsg::Leave { room_id: room }),
        Outgoing::Message(room, pending) if joined.contains(&room) => {
            Some(message_request(&room, pending))
        }
        Outgoing::Typing(room, is_typing) if joined.contains(&room) => Some(ClientMsg::Typing {
            room_id: room,
            is_typing,
        }),
        Outgoing::Read(room, id) if joined.contains(&room) => {
            Some(ClientMsg::Read { room_id: room, id })
        }
        Outgoing::Message(..) | Outgoing::Typing(..) | Outgoing::Read(..) => None,
    };
    request.into_iter().collect()
}

/// Feeds a server event to the room list and to the open room it concerns; returns what to
/// send again (our messages a join's history did not contain).
fn incoming_event(workspace: Workspace, event: ServerMsg) -> Vec<ClientMsg> {
    if let Some(me) = workspace.me.get_untracked() {
        let mentioned = workspace
            .rooms
            .try_update(|rooms| rooms.apply(&event, &me))
            .flatten();
        if let Some(mentioned) = mentioned {
            crate::notify::mention(&mentioned);
        }
    }
    let room = event_room(&event);
    let logs: Vec<RwSignal<ChatLog>> = match room {
        Some(room) => workspace.log(room).into_iter().collect(),
        // About no room in particular (a refused request): every open room shows it.
        None => workspace
            .open
            .with_value(|open| open.values().copied().collect()),
    };
    let mut resend = Vec::new();
    for log in logs {
        if matches!(event, ServerMsg::Typing { .. }) {
            schedule_typing_prune(log);
        }
        let (again, unconfirmed_changed) = log
            .try_update(|log| {
                let before = log.to_persist();
                let again = log.apply(event.clone(), now_ms());
                (again, log.to_persist() != before)
            })
            .unwrap_or_default();
        if unconfirmed_changed {
            log.with_untracked(crate::kept::save);
        }
        let room_id = log.with_untracked(|log| log.room_id.clone());
        resend.extend(
            again
                .into_iter()
                .map(|pending| message_request(&room_id, pending)),
        );
    }
    resend
}

/// The room an event is about, if any.
fn event_room(event: &ServerMsg) -> Option<&str> {
    match event {
        ServerMsg::RoomHistory { room_id, .. }
        | ServerMsg::Ack { room_id, .. }
        | ServerMsg::UserJoined { room_id, .. }
        | ServerMsg::UserLeft { room_id, .. }
        | ServerMsg::Typing { room_id, .. }
        | ServerMsg::Read { room_id, .. } => Some(room_id),
        ServerMsg::Message(message) => Some(&message.room_id),
        ServerMsg::Error { room_id, .. } => room_id.as_deref(),
        _ => None,
    }
}

fn message_request(room_id: &str, pending: Pending) -> ClientMsg {
    ClientMsg::Message {
        room_id: room_id.to_string(),
        content: pending.content,
        client_msg_id: Some(pending.client_msg_id),
    }
}

async fn send(write: &mut Writer, request: &ClientMsg) -> Result<(), WebSocketError> {
    let text = serde_json::to_string(request).expect("client requests always serialize");
    write.send(Message::Text(text)).await
}

/// After the server's hint (1 s without one), sends the messages held by the rate limit
/// again, in the order they were written. One timer at a time: later refusals while one is
/// set only add to what it releases.
fn schedule_retry(link: &Link, room_id: &str, retry_after_ms: Option<u64>) {
    let Some(log) = link.workspace.log(room_id) else {
        return;
    };
    if link.retry_scheduled.swap(true, Ordering::Relaxed) {
        return;
    }
    let (scheduled, mut retry) = (link.retry_scheduled.clone(), link.retry.clone());
    let room = room_id.to_string();
    set_timeout(
        move || {
            scheduled.store(false, Ordering::Relaxed);
            for pending in log.try_update(ChatLog::release_held).unwrap_or_default() {
                // A full queue is fine: it stays pending and goes out after a reconnect.
                let _ = retry.try_send(Outgoing::Message(room.clone(), pending));
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
async fn renew_guest_session(workspace: Workspace) -> Result<(), String> {
    let lost = || "your session ended; sign in again to chat".to_string();
    let me = workspace.me.get_untracked().ok_or_else(lost)?;
    if !me.guest {
        return Err(lost());
    }
    let user = crate::server_call::run(crate::api::StartGuestSession { name: me.name })
        .await
        .map_err(|_| lost())?;
    // The open rooms' logs and the workspace carry the new identity (the live connection is
    // kept: the workspace's user id changes, so it is restarted with the new session).
    workspace.open.with_value(|open| {
        for log in open.values() {
            log.update(|log| log.me = Some(user.clone()));
        }
    });
    workspace.me.set(Some(user));
    Ok(())
}

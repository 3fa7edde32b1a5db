//! The room page's state and how server events change it. Plain data with no browser or
//! reactive parts, so the rules (ordering, de-duplication, acks, resume, typing expiry) are
//! tested natively; the page keeps one [`ChatLog`] in a signal.

use crate::api::RoomSnapshot;
use crate::protocol::{ChatMessage, ErrorCode, Member, ServerMsg, User};
use crate::validate::MessageId;
use std::cmp::Ordering;

/// How long a "typing" indication lasts without being renewed.
pub const TYPING_TTL_MS: f64 = 5_000.0;

/// A message of ours that the server has not confirmed yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub client_msg_id: String,
    pub content: String,
    /// Set when the server refused it: why.
    pub error: Option<String>,
    /// Waiting out the sender's rate limit: sent again, in order, when it has passed.
    pub held: bool,
}

/// Someone typing, until `until_ms` (browser clock).
#[derive(Clone, Debug, PartialEq)]
pub struct Typist {
    pub user_id: String,
    pub name: String,
    pub until_ms: f64,
}

/// The state of the live connection, as shown to the person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnStatus {
    Connecting,
    Online,
    /// Waiting before the next attempt.
    Reconnecting {
        seconds: u32,
    },
    /// Given up (terminal close): why.
    Offline(String),
    /// Nobody is signed in (never, or the session ended): no connection.
    SignedOut,
}

impl ConnStatus {
    pub fn label(&self) -> String {
        match self {
            ConnStatus::Connecting => "Connecting…".into(),
            ConnStatus::Online => "Live".into(),
            ConnStatus::Reconnecting { seconds } => format!("Reconnecting in {seconds} s…"),
            ConnStatus::Offline(why) => format!("Offline: {why}"),
            ConnStatus::SignedOut => "Signed out".into(),
        }
    }

    pub fn css_class(&self) -> &'static str {
        match self {
            ConnStatus::Online => "status online",
            ConnStatus::Offline(_) | ConnStatus::SignedOut => "status offline",
            _ => "status waiting",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatLog {
    pub room_id: String,
    pub me: Option<User>,
    /// Confirmed messages, ordered by id, no duplicates.
    pub messages: Vec<ChatMessage>,
    /// Whether older messages exist on the server.
    pub has_more: bool,
    pub pending: Vec<Pending>,
    pub members: Vec<Member>,
    pub typing: Vec<Typist>,
    /// The last problem worth showing that belongs to no message.
    pub notice: Option<String>,
    /// Set while a message waits because we sent too fast; cleared by the next ack.
    pub slow_down: Option<String>,
    /// The newest id received in room order (history and broadcasts): where a reconnect
    /// resumes. Acks do not move it: an ack can overtake an earlier message still on its
    /// way, and resuming after our own message would skip that one.
    streamed: Option<String>,
    /// The epoch of the history `streamed` belongs to: sent back with it on a rejoin, so a
    /// store that lost its data since answers `recovered: false`.
    epoch: String,
    /// People here beyond `members`, when the server cut the list to fit its answer.
    members_beyond: usize,
}

fn by_id(a: &ChatMessage, b: &ChatMessage) -> Ordering {
    MessageId::compare(&a.id, &b.id)
}

impl ChatLog {
    pub fn from_snapshot(snapshot: RoomSnapshot) -> Self {
        let mut log = ChatLog {
            room_id: snapshot.page.room_id,
            me: snapshot.me,
            has_more: snapshot.page.has_more,
            members: snapshot.members,
            epoch: snapshot.page.epoch,
            ..ChatLog::default()
        };
        for message in snapshot.page.messages {
            log.insert_streamed(message);
        }
        log
    }

    /// The resume position: the newest message received in room order (see `streamed`).
    pub fn resume_id(&self) -> Option<String> {
        self.streamed.clone()
    }

    /// The epoch of the history the resume position is in (empty before any history).
    pub fn epoch(&self) -> Option<String> {
        (!self.epoch.is_empty()).then(|| self.epoch.clone())
    }

    /// How many people are here (the list may hold fewer, in a very full room).
    pub fn member_count(&self) -> usize {
        self.members.len() + self.members_beyond
    }

    pub fn oldest_id(&self) -> Option<String> {
        self.messages.first().map(|m| m.id.clone())
    }

    /// Adds a confirmed message in id order, ignoring one already present.
    pub fn insert(&mut self, message: ChatMessage) {
        match self.messages.last() {
            Some(last) if by_id(last, &message) == Ordering::Less => self.messages.push(message),
            None => self.messages.push(message),
            Some(_) => {
                if let Err(at) = self.messages.binary_search_by(|m| by_id(m, &message)) {
                    self.messages.insert(at, message);
                }
            }
        }
    }

    /// Adds a message that came in room order, moving the resume position past it.
    fn insert_streamed(&mut self, message: ChatMessage) {
        let newer = self
            .streamed
            .as_deref()
            .is_none_or(|streamed| MessageId::compare(streamed, &message.id) == Ordering::Less);
        if newer {
            self.streamed = Some(message.id.clone());
        }
        self.insert(message);
    }

    /// Adds an older page (scroll-back).
    pub fn add_older(&mut self, messages: Vec<ChatMessage>, has_more: bool) {
        for message in messages {
            self.insert(message);
        }
        self.has_more = has_more;
    }

    /// A message typed here, shown at once and sent (unless earlier ones are held by the rate
    /// limit: then it is held too, so messages keep their order); confirmed later by the ack.
    pub fn queue(&mut self, client_msg_id: String, content: String) -> Pending {
        let pending = Pending {
            client_msg_id,
            content,
            error: None,
            held: self.pending.iter().any(|p| p.held),
        };
        self.pending.push(pending.clone());
        pending
    }

    /// Our messages still waiting for the server's confirmation (and not refused), as
    /// `(clientMsgId, content)`: what the page keeps in browser storage so that a reload does
    /// not lose them.
    pub fn to_persist(&self) -> Vec<(String, String)> {
        self.pending
            .iter()
            .filter(|p| p.error.is_none())
            .map(|p| (p.client_msg_id.clone(), p.content.clone()))
            .collect()
    }

    /// Puts back messages kept across a reload, in their order, unless already pending or
    /// already stored (by their `clientMsgId`). They go out again, with their original
    /// `clientMsgId`, after the next join: the server answers a message it already stored
    /// with the original ack instead of storing it twice.
    pub fn restore_pending(&mut self, kept: Vec<(String, String)>) {
        let me = self.me.as_ref().map(|me| me.id.clone());
        for (client_msg_id, content) in kept {
            let stored = self.messages.iter().any(|m| {
                Some(&m.user_id) == me.as_ref()
                    && m.client_msg_id.as_deref() == Some(client_msg_id.as_str())
            });
            let pending = self
                .pending
                .iter()
                .any(|p| p.client_msg_id == client_msg_id);
            if !stored && !pending {
                self.pending.push(Pending {
                    client_msg_id,
                    content,
                    error: None,
                    held: false,
                });
            }
        }
    }

    /// A refused message, to be sent again as it was (same `clientMsgId`: if it was stored
    /// after all, the server answers with the original).
    pub fn retry(&mut self, client_msg_id: &str) -> Option<Pending> {
        let pending = self
            .pending
            .iter_mut()
            .find(|p| p.client_msg_id == client_msg_id && p.error.is_some())?;
        pending.error = None;
        pending.held = false;
        Some(pending.clone())
    }

    /// Gives up on a refused message.
    pub fn discard(&mut self, client_msg_id: &str) {
        self.pending
            .retain(|p| p.client_msg_id != client_msg_id || p.error.is_none());
    }

    /// The held messages, in the order they were written, released to be sent again.
    pub fn release_held(&mut self) -> Vec<Pending> {
        let mut released = Vec::new();
        for pending in self.pending.iter_mut().filter(|p| p.held) {
            pending.held = false;
            released.push(pending.clone());
        }
        released
    }

    /// Applies one server event. Returns the pending messages to send again, which only an
    /// answer to `join` (after a reconnect) produces: those not found in the recovered history.
    pub fn apply(&mut self, event: ServerMsg, now_ms: f64) -> Vec<Pending> {
        match event {
            ServerMsg::RoomHistory {
                room_id,
                messages,
                has_more,
                recovered,
                members,
                members_total,
                epoch,
                ..
            } if room_id == self.room_id => {
                self.epoch = epoch;
                self.members_beyond =
                    members_total.map_or(0, |total| total.saturating_sub(members.len()));
                if recovered == Some(false) {
                    // A gap we cannot fill: show the newest history instead of a hole.
                    self.messages.clear();
                    self.streamed = None;
                    self.has_more = has_more;
                    self.notice =
                        Some("Some messages were missed while offline; showing the latest.".into());
                } else if self.messages.is_empty() {
                    self.has_more = has_more;
                }
                for message in messages {
                    self.insert_streamed(message);
                }
                self.members = members;
                return self.unconfirmed();
            }
            ServerMsg::Message(message) if message.room_id == self.room_id => {
                self.typing.retain(|t| t.user_id != message.user_id);
                self.insert_streamed(message);
            }
            ServerMsg::Ack {
                client_msg_id: Some(client_msg_id),
                id,
                room_id,
                timestamp,
            } if room_id == self.room_id => {
                self.slow_down = None;
                if let Some(at) = self
                    .pending
                    .iter()
                    .position(|p| p.client_msg_id == client_msg_id)
                {
                    let pending = self.pending.remove(at);
                    if let Some(me) = &self.me {
                        self.insert(ChatMessage {
                            id,
                            room_id,
                            user_id: me.id.clone(),
                            name: me.name.clone(),
                            content: pending.content,
                            timestamp,
                            server_id: String::new(),
                            client_msg_id: Some(client_msg_id),
                        });
                    }
                }
            }
            ServerMsg::UserJoined {
                room_id,
                user_id,
                name,
                ..
            } if room_id == self.room_id && !self.is_member(&user_id) => {
                self.members.push(Member { user_id, name });
                self.members
                    .sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.user_id.cmp(&b.user_id)));
            }
            ServerMsg::UserLeft {
                room_id, user_id, ..
            } if room_id == self.room_id => {
                self.members.retain(|m| m.user_id != user_id);
                self.typing.retain(|t| t.user_id != user_id);
            }
            ServerMsg::Typing {
                room_id,
                user_id,
                name,
                is_typing,
            } if room_id == self.room_id => {
                self.typing.retain(|t| t.user_id != user_id);
                if is_typing && self.me.as_ref().is_none_or(|me| me.id != user_id) {
                    self.typing.push(Typist {
                        user_id,
                        name,
                        until_ms: now_ms + TYPING_TTL_MS,
                    });
                }
            }
            // Sent too fast: it stays pending (no error) and goes out again after the server's
            // hint (the live connection schedules that), or after a reconnect.
            ServerMsg::Error {
                code: ErrorCode::RateLimited,
                client_msg_id: Some(client_msg_id),
                retry_after_ms,
                ..
            } => {
                // It and every later message wait, and go out again in order.
                if let Some(at) = self
                    .pending
                    .iter()
                    .position(|p| p.client_msg_id == client_msg_id)
                {
                    for pending in &mut self.pending[at..] {
                        pending.held = pending.error.is_none();
                    }
                }
                let wait = retry_after_ms.unwrap_or(1_000) as f64 / 1_000.0;
                self.slow_down = Some(format!(
                    "You are sending fast: your message goes out in {wait:.1} s."
                ));
            }
            ServerMsg::Error {
                client_msg_id: Some(client_msg_id),
                error,
                ..
            } => {
                if let Some(pending) = self
                    .pending
                    .iter_mut()
                    .find(|p| p.client_msg_id == client_msg_id)
                {
                    pending.error = Some(error);
                }
            }
            // A refused typing event: ephemeral, nothing to tell the reader.
            ServerMsg::Error {
                code: ErrorCode::RateLimited,
                ..
            } => {}
            ServerMsg::Error { error, .. } => self.notice = Some(error),
            _ => {}
        }
        Vec::new()
    }

    fn is_member(&self, user_id: &str) -> bool {
        self.members.iter().any(|m| m.user_id == user_id)
    }

    /// Pending messages not yet stored: those whose id does not appear among our messages.
    fn unconfirmed(&mut self) -> Vec<Pending> {
        let me = self.me.as_ref().map(|me| me.id.as_str());
        let stored: Vec<String> = self
            .messages
            .iter()
            .filter(|m| Some(m.user_id.as_str()) == me)
            .filter_map(|m| m.client_msg_id.clone())
            .collect();
        self.pending.retain(|p| !stored.contains(&p.client_msg_id));
        for pending in &mut self.pending {
            pending.held = false;
        }
        self.pending
            .iter()
            .filter(|p| p.error.is_none())
            .cloned()
            .collect()
    }

    /// Drops typing indications that expired.
    pub fn prune_typing(&mut self, now_ms: f64) {
        self.typing.retain(|t| t.until_ms > now_ms);
    }

    /// "Ana is typing…", "Ana and Ben are typing…", "3 people are typing…".
    pub fn typing_line(&self) -> Option<String> {
        match self.typing.as_slice() {
            [] => None,
            [one] => Some(format!("{} is typing…", one.name)),
            [a, b] => Some(format!("{} and {} are typing…", a.name, b.name)),
            many => Some(format!("{} people are typing…", many.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::HistoryPage;

    fn msg(id: &str, user: &str, cid: Option<&str>) -> ChatMessage {
        ChatMessage {
            id: id.into(),
            room_id: "r".into(),
            user_id: user.into(),
            name: user.to_uppercase(),
            content: format!("m{id}"),
            timestamp: 1,
            server_id: "s".into(),
            client_msg_id: cid.map(Into::into),
        }
    }

    fn log() -> ChatLog {
        ChatLog::from_snapshot(RoomSnapshot {
            page: HistoryPage {
                room_id: "r".into(),
                messages: vec![msg("1-0", "b", None), msg("2-0", "b", None)],
                has_more: true,
                epoch: "e1".into(),
            },
            members: vec![],
            me: Some(User {
                id: "me".into(),
                name: "Me".into(),
                guest: true,
            }),
            read: None,
            max_content_bytes: 4096,
        })
    }

    fn history(messages: Vec<ChatMessage>, recovered: Option<bool>) -> ServerMsg {
        ServerMsg::RoomHistory {
            room_id: "r".into(),
            messages,
            has_more: false,
            recovered,
            members: vec![Member {
                user_id: "b".into(),
                name: "B".into(),
            }],
            members_total: None,
            epoch: "e1".into(),
            read: None,
        }
    }

    /// The server's confirmation of our message `client_msg_id`, stored as `id`.
    fn ack(client_msg_id: &str, id: &str) -> ServerMsg {
        ServerMsg::Ack {
            client_msg_id: Some(client_msg_id.into()),
            id: id.into(),
            room_id: "r".into(),
            timestamp: 5,
        }
    }

    fn ids(log: &ChatLog) -> Vec<&str> {
        log.messages.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn live_messages_are_ordered_and_deduplicated() {
        let mut log = log();
        log.apply(ServerMsg::Message(msg("3-0", "b", None)), 0.0);
        log.apply(ServerMsg::Message(msg("2-0", "b", None)), 0.0);
        log.apply(ServerMsg::Message(msg("2-5", "b", None)), 0.0);
        assert_eq!(ids(&log), ["1-0", "2-0", "2-5", "3-0"]);
        let mut other_room = msg("9-0", "b", None);
        other_room.room_id = "elsewhere".into();
        log.apply(ServerMsg::Message(other_room), 0.0);
        assert_eq!(log.messages.len(), 4);
    }

    #[test]
    fn ack_confirms_a_pending_message() {
        let mut log = log();
        log.queue("c1".into(), "hello".into());
        log.apply(ack("c1", "5-0"), 0.0);
        assert!(log.pending.is_empty());
        assert_eq!(log.messages.last().unwrap().content, "hello");
        assert_eq!(log.messages.last().unwrap().user_id, "me");
    }

    #[test]
    fn an_ack_that_overtakes_an_earlier_message_does_not_move_the_resume_position() {
        let mut log = log();
        assert_eq!(log.resume_id().as_deref(), Some("2-0"));
        log.queue("c1".into(), "mine".into());
        log.apply(ack("c1", "4-0"), 0.0);
        // 3-0, someone else's, is still on its way: a reconnect now must ask for it.
        assert_eq!(log.resume_id().as_deref(), Some("2-0"));
        log.apply(ServerMsg::Message(msg("3-0", "b", None)), 0.0);
        assert_eq!(log.resume_id().as_deref(), Some("3-0"));
        // The resumed history repeats our own message: shown once, and the position moves on.
        log.apply(history(vec![msg("4-0", "me", Some("c1"))], Some(true)), 0.0);
        assert_eq!(ids(&log), ["1-0", "2-0", "3-0", "4-0"]);
        assert_eq!(log.resume_id().as_deref(), Some("4-0"));
        // Scroll-back is older than the position and leaves it alone.
        log.add_older(vec![msg("0-5", "b", None)], false);
        assert_eq!(log.resume_id().as_deref(), Some("4-0"));
    }

    #[test]
    fn an_unrecoverable_gap_resumes_from_the_history_that_replaced_it() {
        let mut log = log();
        log.apply(history(vec![msg("90-0", "b", None)], Some(false)), 0.0);
        assert_eq!(log.resume_id().as_deref(), Some("90-0"));
        log.apply(history(vec![], Some(false)), 0.0);
        assert_eq!(log.resume_id(), None);
    }

    #[test]
    fn unconfirmed_messages_survive_a_reload_and_are_sent_again_once() {
        let mut before = log();
        before.queue("kept".into(), "hello".into());
        before.queue("refused".into(), "x".into());
        before.apply(
            ServerMsg::Error {
                code: ErrorCode::ContentTooLong,
                error: "too long".into(),
                room_id: Some("r".into()),
                channel: None,
                client_msg_id: Some("refused".into()),
                retry_after_ms: None,
            },
            0.0,
        );
        let kept = before.to_persist();
        assert_eq!(
            kept,
            [("kept".to_string(), "hello".to_string())],
            "refused ones stay behind"
        );

        // After the reload: shown as pending again, and sent after the join.
        let mut after = log();
        after.restore_pending(kept.clone());
        after.restore_pending(kept.clone());
        assert_eq!(after.pending.len(), 1, "restored once");
        let resend = after.apply(history(vec![], Some(true)), 0.0);
        assert_eq!(resend.len(), 1);
        assert_eq!(
            resend[0].client_msg_id, "kept",
            "with its original clientMsgId"
        );

        // A message the server already stored (its ack was lost) is not restored at all.
        let mut stored = log();
        stored.apply(
            history(vec![msg("3-0", "me", Some("kept"))], Some(true)),
            0.0,
        );
        stored.restore_pending(kept);
        assert!(stored.pending.is_empty());
    }

    #[test]
    fn the_epoch_travels_with_the_resume_position() {
        let mut log = log();
        assert_eq!(
            log.epoch().as_deref(),
            Some("e1"),
            "from the server-rendered page"
        );
        let mut replaced = history(vec![msg("7-0", "b", None)], Some(false));
        if let ServerMsg::RoomHistory { epoch, .. } = &mut replaced {
            *epoch = "e2".into();
        }
        log.apply(replaced, 0.0);
        assert_eq!(
            log.epoch().as_deref(),
            Some("e2"),
            "a new history, a new epoch"
        );
        assert_eq!(log.resume_id().as_deref(), Some("7-0"));
    }

    #[test]
    fn a_member_list_cut_by_the_server_still_counts_everyone() {
        let mut log = log();
        let mut cut = history(Vec::new(), None);
        if let ServerMsg::RoomHistory { members_total, .. } = &mut cut {
            *members_total = Some(900);
        }
        log.apply(cut, 0.0);
        assert_eq!(log.members.len(), 1);
        assert_eq!(log.member_count(), 900);
        log.apply(history(Vec::new(), None), 0.0);
        assert_eq!(log.member_count(), 1, "a whole list again");
    }

    #[test]
    fn resume_resends_only_what_was_not_stored() {
        let mut log = log();
        log.queue("stored".into(), "a".into());
        log.queue("lost".into(), "b".into());
        let resend = log.apply(
            history(vec![msg("3-0", "me", Some("stored"))], Some(true)),
            0.0,
        );
        assert_eq!(resend.len(), 1);
        assert_eq!(resend[0].client_msg_id, "lost");
        assert_eq!(ids(&log), ["1-0", "2-0", "3-0"]);
        assert_eq!(log.members.len(), 1);
    }

    #[test]
    fn unrecoverable_gap_replaces_history() {
        let mut log = log();
        log.apply(history(vec![msg("90-0", "b", None)], Some(false)), 0.0);
        assert_eq!(ids(&log), ["90-0"]);
        assert!(log.notice.is_some());
    }

    #[test]
    fn rate_limited_message_stays_pending() {
        let mut log = log();
        log.queue("c1".into(), "x".into());
        let limited = ServerMsg::Error {
            code: crate::protocol::ErrorCode::RateLimited,
            error: "too fast: try again in 800 ms".into(),
            room_id: Some("r".into()),
            channel: None,
            client_msg_id: Some("c1".into()),
            retry_after_ms: Some(800),
        };
        log.queue("c2".into(), "y".into());
        log.apply(limited, 0.0);
        assert_eq!(log.pending[0].error, None);
        assert!(
            log.pending.iter().all(|p| p.held),
            "later messages wait too"
        );
        assert!(
            log.queue("c3".into(), "z".into()).held,
            "and new ones, to keep the order"
        );
        let released: Vec<String> = log
            .release_held()
            .into_iter()
            .map(|p| p.client_msg_id)
            .collect();
        assert_eq!(released, ["c1", "c2", "c3"]);
        assert!(log.release_held().is_empty());
        assert!(log
            .slow_down
            .as_deref()
            .is_some_and(|n| n.contains("0.8 s")));
        // Still unconfirmed: sent again after a reconnect.
        assert_eq!(log.apply(history(vec![], Some(true)), 0.0).len(), 3);
        // The ack of the retry clears the warning.
        log.apply(ack("c1", "5-0"), 0.0);
        assert_eq!(log.pending.len(), 2, "c2 and c3 still wait for their acks");
        assert_eq!(log.slow_down, None);
    }

    #[test]
    fn refused_message_keeps_its_error() {
        let mut log = log();
        log.queue("c1".into(), "x".into());
        let refusal = ServerMsg::Error {
            code: crate::protocol::ErrorCode::ContentTooLong,
            error: "too long".into(),
            room_id: Some("r".into()),
            channel: None,
            client_msg_id: Some("c1".into()),
            retry_after_ms: None,
        };
        log.apply(refusal, 0.0);
        assert_eq!(log.pending[0].error.as_deref(), Some("too long"));
        // A refused message is not sent again on reconnect.
        assert!(log.apply(history(vec![], Some(true)), 0.0).is_empty());
        // The reader retries it as it was, or gives up on it.
        assert_eq!(log.retry("c1").map(|p| p.content), Some("x".into()));
        assert_eq!(log.retry("c1"), None, "only a refused message is retried");
        log.discard("c1");
        assert_eq!(
            log.pending.len(),
            1,
            "a message on its way is not discarded"
        );
        log.pending[0].error = Some("refused again".into());
        log.discard("c1");
        assert!(log.pending.is_empty());
    }

    #[test]
    fn typing_expires_and_clears_on_message() {
        let mut log = log();
        let typing = |user: &str, on: bool| ServerMsg::Typing {
            room_id: "r".into(),
            user_id: user.into(),
            name: user.to_uppercase(),
            is_typing: on,
        };
        log.apply(typing("b", true), 1000.0);
        log.apply(typing("c", true), 1000.0);
        log.apply(typing("me", true), 1000.0);
        assert_eq!(log.typing_line().as_deref(), Some("B and C are typing…"));
        log.apply(ServerMsg::Message(msg("7-0", "b", None)), 1100.0);
        assert_eq!(log.typing_line().as_deref(), Some("C is typing…"));
        log.prune_typing(1000.0 + TYPING_TTL_MS + 1.0);
        assert_eq!(log.typing_line(), None);
    }

    #[test]
    fn members_follow_joins_and_leaves() {
        let mut log = log();
        let joined = |user: &str| ServerMsg::UserJoined {
            room_id: "r".into(),
            user_id: user.into(),
            name: user.to_uppercase(),
            timestamp: 0,
        };
        log.apply(joined("zed"), 0.0);
        log.apply(joined("amy"), 0.0);
        log.apply(joined("amy"), 0.0);
        assert_eq!(
            log.members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["AMY", "ZED"]
        );
        log.apply(
            ServerMsg::UserLeft {
                room_id: "r".into(),
                user_id: "amy".into(),
                name: "AMY".into(),
                timestamp: 0,
            },
            0.0,
        );
        assert_eq!(log.members.len(), 1);
    }
}

//! The rules both engines apply alike, written once: how a stored message is assembled, where
//! a page and a resume are cut, how members are ordered. Each engine only stores and fetches;
//! a client must not be able to tell them apart.

use super::{Draft, Position, Resume};
use app::protocol::{ChatMessage, HistoryPage, Member};
use app::validate::MessageId;
use serde::{Deserialize, Serialize};

/// A message without the id and timestamp that its position in the room's log gives it:
/// what the Redis engine stores as JSON, and what both engines assemble messages from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageBody {
    pub room_id: String,
    pub user_id: String,
    pub name: String,
    pub content: String,
    pub server_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

impl MessageBody {
    pub fn from_draft(draft: Draft, server_id: &str) -> Self {
        MessageBody {
            room_id: draft.room_id,
            user_id: draft.user.id,
            name: draft.user.name,
            content: draft.content,
            server_id: server_id.to_string(),
            client_msg_id: draft.client_msg_id,
        }
    }

    /// The message at `id`; its timestamp is the id's milliseconds.
    pub fn into_message(self, id: MessageId) -> ChatMessage {
        ChatMessage {
            id: id.to_string(),
            room_id: self.room_id,
            user_id: self.user_id,
            name: self.name,
            content: self.content,
            timestamp: id.ms,
            server_id: self.server_id,
            client_msg_id: self.client_msg_id,
        }
    }
}

/// The id after `last` at `now` (ms): the shape and order Redis gives stream entries
/// (`<ms>-<seq>`, never backwards, also when the clock is).
pub fn next_id(last: Option<MessageId>, now: u64) -> MessageId {
    match last {
        Some(last) if now <= last.ms => MessageId {
            ms: last.ms,
            seq: last.seq + 1,
        },
        _ => MessageId { ms: now, seq: 0 },
    }
}

/// A page from up to `limit + 1` messages, newest first: the newest `limit`, oldest first,
/// and whether older ones exist.
pub fn page(
    room_id: &str,
    mut newest_first: Vec<ChatMessage>,
    limit: usize,
    epoch: String,
) -> HistoryPage {
    let has_more = newest_first.len() > limit;
    newest_first.truncate(limit);
    newest_first.reverse();
    HistoryPage {
        room_id: room_id.to_string(),
        messages: newest_first,
        has_more,
        epoch,
    }
}

/// Whether a reader at `after` can be given exactly what it missed.
///
/// `epoch`: the room's epoch now. `resumable_from`: the oldest position from which the log
/// still holds everything after it, once it was trimmed (the memory engine knows the newest
/// trimmed id; Redis only its first retained one, which is one message stricter).
/// `newer`: the messages after `after`, oldest first, at most `max + 1`.
pub fn resume<T>(
    after: &Position,
    epoch: &str,
    resumable_from: Option<MessageId>,
    newer: Vec<T>,
    max: usize,
) -> Resume<T> {
    let other_epoch = after.epoch.as_deref().is_some_and(|theirs| theirs != epoch);
    let trimmed_past = resumable_from.is_some_and(|oldest| after.id < oldest);
    if other_epoch || trimmed_past || newer.len() > max {
        Resume::Lost
    } else {
        Resume::Recovered(newer)
    }
}

/// Whether a subscriber at `after` can be given exactly the channel publications it missed:
/// as [`resume`], and never from an offset the history did not give: one newer than its
/// newest, or any but the start (`0-0`) of a history that holds nothing (`newest` none: it
/// expired, or was never written). Both mean the position is from another incarnation.
pub fn kept_resume<T>(
    after: &Position,
    epoch: &str,
    newest: Option<MessageId>,
    resumable_from: Option<MessageId>,
    newer: Vec<T>,
    max: usize,
) -> Resume<T> {
    let given = match newest {
        Some(newest) => after.id <= newest,
        None => after.id == MessageId { ms: 0, seq: 0 },
    };
    if given {
        resume(after, epoch, resumable_from, newer, max)
    } else {
        Resume::Lost
    }
}

/// Members as every reader sees them: by name, then by id (two guests may share a name).
pub fn sort_members(members: &mut [Member]) {
    members.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.user_id.cmp(&b.user_id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> ChatMessage {
        MessageBody {
            room_id: "r".into(),
            user_id: "u".into(),
            name: "Ana".into(),
            content: id.into(),
            server_id: "s".into(),
            client_msg_id: None,
        }
        .into_message(MessageId::parse(id).unwrap())
    }

    fn at(epoch: Option<&str>, id: &str) -> Position {
        Position {
            epoch: epoch.map(str::to_string),
            id: MessageId::parse(id).unwrap(),
        }
    }

    #[test]
    fn a_page_is_the_newest_oldest_first_and_says_if_there_is_more() {
        let page = page(
            "r",
            vec![message("3-0"), message("2-0"), message("1-0")],
            2,
            "e".into(),
        );
        let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["2-0", "3-0"]);
        assert!(page.has_more);
        assert_eq!(page.epoch, "e");
    }

    #[test]
    fn a_channel_resume_needs_a_history_that_gave_the_offset() {
        let newer = vec![5u8];
        let at_4 = at(Some("e"), "4-0");
        let newest = Some(MessageId { ms: 5, seq: 0 });
        assert_eq!(
            kept_resume(&at_4, "e", newest, None, newer.clone(), 1),
            Resume::Recovered(newer.clone())
        );
        assert_eq!(
            kept_resume(&at_4, "e", None, None, Vec::<u8>::new(), 1),
            Resume::Lost,
            "an empty history"
        );
        assert_eq!(
            kept_resume(&at(Some("e"), "0-0"), "e", None, None, Vec::<u8>::new(), 1),
            Resume::Recovered(Vec::new()),
            "from the start of an empty history, nothing was missed"
        );
        let older_newest = Some(MessageId { ms: 3, seq: 0 });
        assert_eq!(
            kept_resume(&at_4, "e", older_newest, None, Vec::<u8>::new(), 1),
            Resume::Lost,
            "an offset this history never gave"
        );
        assert_eq!(
            kept_resume(&at(Some("old"), "4-0"), "e", newest, None, newer, 1),
            Resume::Lost,
            "another epoch"
        );
    }

    #[test]
    fn a_resume_is_exact_or_lost() {
        let newer = vec![message("5-0")];
        let recovered = Resume::Recovered(newer.clone());
        assert_eq!(
            resume(&at(Some("e"), "4-0"), "e", None, newer.clone(), 1),
            recovered
        );
        assert_eq!(
            resume(&at(None, "4-0"), "e", None, newer.clone(), 1),
            recovered
        );
        assert_eq!(
            resume(&at(Some("old"), "4-0"), "e", None, newer.clone(), 1),
            Resume::Lost,
            "another epoch"
        );
        let trimmed = Some(MessageId { ms: 4, seq: 1 });
        assert_eq!(
            resume(&at(None, "4-0"), "e", trimmed, newer.clone(), 1),
            Resume::Lost,
            "trimmed past it"
        );
        let exactly_at_the_cut = Some(MessageId { ms: 4, seq: 0 });
        assert_eq!(
            resume(&at(None, "4-0"), "e", exactly_at_the_cut, newer.clone(), 1),
            recovered
        );
        assert_eq!(
            resume(&at(None, "4-0"), "e", None, newer, 0),
            Resume::Lost,
            "over the window"
        );
    }
}

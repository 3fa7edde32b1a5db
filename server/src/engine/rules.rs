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

/// What a log says about a reader's position, for [`resume`].
#[derive(Clone, Copy, Debug)]
pub struct LogAt<'a> {
    /// The log's epoch now (empty while it was never written).
    pub epoch: &'a str,
    /// The oldest position from which the log still holds everything after it, once it was
    /// trimmed (the memory engine knows the newest trimmed id; Redis only its first retained
    /// one, which is one message stricter). None: it never lost an entry.
    pub resumable_from: Option<MessageId>,
    /// The position's own entry is in the log.
    pub found: bool,
}

/// Whether a reader at `after` can be given exactly what it missed. `newer`: the entries
/// after `after`, oldest first, at most `max + 1`.
///
/// A position is proven by its epoch (the one the reader was given with it, compared with
/// the log's), or, given without one (the articles' protocol, any simple client, or a
/// reader who came when the log was empty), by the log itself: the position's entry is
/// still in it, or it is the start of a log that never lost an entry. Anything else, say
/// after the store lost its data and started a new log, is never "recovered".
pub fn resume<T>(after: &Position, log: &LogAt, newer: Vec<T>, max: usize) -> Resume<T> {
    let start = MessageId { ms: 0, seq: 0 };
    let proven = match after.epoch.as_deref().filter(|epoch| !epoch.is_empty()) {
        Some(theirs) => theirs == log.epoch,
        None => log.found || (after.id == start && log.resumable_from.is_none()),
    };
    let trimmed_past = log.resumable_from.is_some_and(|oldest| after.id < oldest);
    if !proven || trimmed_past || newer.len() > max {
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
    log: &LogAt,
    newest: Option<MessageId>,
    newer: Vec<T>,
    max: usize,
) -> Resume<T> {
    let given = match newest {
        Some(newest) => after.id <= newest,
        None => after.id == MessageId { ms: 0, seq: 0 },
    };
    if given {
        resume(after, log, newer, max)
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

    fn log<'a>(epoch: &'a str, resumable_from: Option<&str>, found: bool) -> LogAt<'a> {
        LogAt {
            epoch,
            resumable_from: resumable_from.map(|id| MessageId::parse(id).unwrap()),
            found,
        }
    }

    #[test]
    fn a_channel_resume_needs_a_history_that_gave_the_offset() {
        let newer = vec![5u8];
        let at_4 = at(Some("e"), "4-0");
        let newest = Some(MessageId { ms: 5, seq: 0 });
        let e = log("e", None, true);
        assert_eq!(
            kept_resume(&at_4, &e, newest, newer.clone(), 1),
            Resume::Recovered(newer.clone())
        );
        assert_eq!(
            kept_resume(&at_4, &e, None, Vec::<u8>::new(), 1),
            Resume::Lost,
            "an empty history"
        );
        assert_eq!(
            kept_resume(&at(Some("e"), "0-0"), &e, None, Vec::<u8>::new(), 1),
            Resume::Recovered(Vec::new()),
            "from the start of an empty history, nothing was missed"
        );
        let older_newest = Some(MessageId { ms: 3, seq: 0 });
        assert_eq!(
            kept_resume(&at_4, &e, older_newest, Vec::<u8>::new(), 1),
            Resume::Lost,
            "an offset this history never gave"
        );
        assert_eq!(
            kept_resume(&at(Some("old"), "4-0"), &e, newest, newer, 1),
            Resume::Lost,
            "another epoch"
        );
    }

    #[test]
    fn a_resume_is_exact_or_lost() {
        let newer = vec![message("5-0")];
        let recovered = Resume::Recovered(newer.clone());
        let e = log("e", None, false);
        assert_eq!(
            resume(&at(Some("e"), "4-0"), &e, newer.clone(), 1),
            recovered
        );
        assert_eq!(
            resume(&at(Some("old"), "4-0"), &e, newer.clone(), 1),
            Resume::Lost,
            "another epoch"
        );
        assert_eq!(
            resume(
                &at(Some("e"), "4-0"),
                &log("", None, true),
                newer.clone(),
                1
            ),
            Resume::Lost,
            "the log is gone (no epoch now)"
        );
        assert_eq!(
            resume(
                &at(None, "4-0"),
                &log("e", Some("4-1"), true),
                newer.clone(),
                1
            ),
            Resume::Lost,
            "trimmed past it"
        );
        assert_eq!(
            resume(
                &at(Some("e"), "4-0"),
                &log("e", Some("4-0"), false),
                newer.clone(),
                1
            ),
            recovered,
            "exactly at the cut"
        );
        assert_eq!(
            resume(&at(Some("e"), "4-0"), &e, newer, 0),
            Resume::Lost,
            "over the window"
        );
    }

    #[test]
    fn a_position_without_an_epoch_is_proven_by_the_log_alone() {
        let newer = vec![message("5-0")];
        let recovered = Resume::Recovered(newer.clone());
        for no_epoch in [None, Some("")] {
            let at_4 = at(no_epoch, "4-0");
            assert_eq!(
                resume(&at_4, &log("e", None, true), newer.clone(), 1),
                recovered
            );
            assert_eq!(
                resume(&at_4, &log("new", None, false), newer.clone(), 1),
                Resume::Lost,
                "its message is not in this log: the store lost its data since"
            );
            let start = at(no_epoch, "0-0");
            assert_eq!(
                resume(&start, &log("e", None, false), newer.clone(), 1),
                recovered,
                "from the start of a log that lost nothing"
            );
            assert_eq!(
                resume(&start, &log("e", Some("2-0"), false), newer.clone(), 1),
                Resume::Lost,
                "from the start of a trimmed log"
            );
        }
    }
}

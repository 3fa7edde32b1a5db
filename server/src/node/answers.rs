//! Answers that fit: what the server builds in reply to a request (a join's `room_history`, a
//! subscribe's `subscribed`, a resume) is cut to `--max-answer-bytes`, so every frame it
//! queues can be written.
//!
//! Why: a frame larger than the socket's write buffer can never be written, and the
//! connection ended with nothing said (a 1006). Four guests posting long messages of quotes
//! (JSON escaping doubles each) made a room's history larger than that, and everyone who
//! joined the room lost their whole connection, in every room, in a reconnect loop. The
//! write buffer is now sized from the same bound ([`write_buffer_bytes`]), and every answer
//! stays within it:
//! - who is here takes at most an eighth of the answer ([`members_budget`]); past it the
//!   list is cut (first by name) and the total says how many there are;
//! - messages (or kept publications) take what is left: the newest that fit, `hasMore`
//!   saying that older ones exist;
//! - a resume whose messages do not all fit is answered as one that missed too much:
//!   `recovered: false` with the newest that fit.
//!
//! Start-up refuses a configuration in which a page of `--history-page` messages of
//! `--max-content-bytes` (escaped as badly as JSON can) would not fit, or in which one
//! publication or job could not ([`check_limits`]): a page is never cut at the defaults,
//! and no single message, publication or job is ever too large to be sent.

use crate::engine::Resume;
use crate::wire::{encode, json_len, publication};
use app::protocol::{ChatMessage, Member, ServerMsg};
use app::validate::{CLIENT_MSG_ID_MAX, NAME_MAX, ROOM_ID_MAX};
use serde::Serialize;

/// What an answer holds besides its lists (type, room or channel, epoch, read state, flags),
/// with room to spare: the lists get the rest.
pub const SKELETON_BYTES: usize = 2 * 1024;

/// The share of an answer that the list of who is here may take.
pub fn members_budget(max_answer_bytes: usize) -> usize {
    max_answer_bytes / 8
}

/// The share of an answer its messages or publications may take.
pub fn items_budget(max_answer_bytes: usize) -> usize {
    max_answer_bytes.saturating_sub(members_budget(max_answer_bytes) + SKELETON_BYTES)
}

/// What tungstenite may buffer while a frame is written: the largest frame plus the bytes
/// it buffers before writing (its `write_buffer_size`) and a frame header.
pub fn write_buffer_bytes(max_answer_bytes: usize, socket_buffer_bytes: usize) -> usize {
    max_answer_bytes + socket_buffer_bytes + 64
}

/// Cuts `members` (sorted by name) to what fits `budget` bytes of JSON; returns the total
/// when it cut any, for the answer's `membersTotal` / `presenceTotal`.
pub fn cut_members(members: &mut Vec<Member>, budget: usize) -> Option<usize> {
    let total = members.len();
    let mut used = 2; // []
    let keep = members
        .iter()
        .take_while(|member| {
            used += json_len(*member) + 1;
            used <= budget
        })
        .count();
    (keep < total).then(|| {
        members.truncate(keep);
        total
    })
}

/// Keeps the newest of `items` (oldest first) whose JSON fits `budget` bytes; true when
/// older ones were left out.
pub fn keep_newest_that_fit<T: Serialize>(items: &mut Vec<T>, budget: usize) -> bool {
    let mut used = 2; // []
    let fitting = items
        .iter()
        .rev()
        .take_while(|item| {
            used += json_len(*item) + 1;
            used <= budget
        })
        .count();
    let cut = items.len() - fitting;
    items.drain(..cut);
    cut > 0
}

/// Whether all of `items` fit `budget` bytes of JSON.
pub fn all_fit<T: Serialize>(items: &[T], budget: usize) -> bool {
    2 + items.iter().map(|item| json_len(item) + 1).sum::<usize>() <= budget
}

/// `resume` if all it recovered fits `budget` bytes of JSON (one answer), else
/// [`Resume::Lost`]: what cannot be given in one answer is answered as too much missed.
pub fn fitting<T: Serialize>(resume: Resume<T>, budget: usize) -> Resume<T> {
    match resume {
        Resume::Recovered(items) if !all_fit(&items, budget) => Resume::Lost,
        other => other,
    }
}

/// The largest chat message `max_content_bytes` allows, as JSON: every character a quote
/// (escaped to two), the longest name, room id and `clientMsgId`, likewise escaped.
fn worst_message(max_content_bytes: usize) -> ChatMessage {
    ChatMessage {
        id: format!("{}-{}", u64::MAX, u64::MAX),
        room_id: "r".repeat(ROOM_ID_MAX),
        user_id: format!("anonymous/{}/{}", "s".repeat(32), u64::MAX),
        name: "\u{1F600}".repeat(NAME_MAX),
        content: "\"".repeat(max_content_bytes),
        timestamp: u64::MAX,
        server_id: "s".repeat(32),
        client_msg_id: Some("\"".repeat(CLIENT_MSG_ID_MAX)),
    }
}

/// The limits answers depend on, as configured.
pub struct AnswerSettings {
    pub max_answer_bytes: usize,
    pub outbound_queue_bytes: usize,
    pub history_page: usize,
    pub max_content_bytes: usize,
    pub max_publication_bytes: usize,
}

/// Refuses limits under which an answer or a single event could not be sent; see the
/// module docs.
pub fn check_limits(settings: &AnswerSettings) -> Result<(), String> {
    let max = settings.max_answer_bytes;
    if max * 2 > settings.outbound_queue_bytes {
        return Err(format!(
            "--max-answer-bytes ({max}) must be at most half of --outbound-queue-bytes ({}): an answer and what is queued with it must fit the queue",
            settings.outbound_queue_bytes
        ));
    }
    let message = json_len(&worst_message(settings.max_content_bytes)) + 1;
    let page = settings.history_page.saturating_mul(message) + 2;
    if page > items_budget(max) {
        return Err(format!(
            "a page of --history-page {} messages of --max-content-bytes {} can take {page} bytes of JSON; with --max-answer-bytes {max} only {} are left for messages: raise --max-answer-bytes (and --outbound-queue-bytes) or lower the others",
            settings.history_page,
            settings.max_content_bytes,
            items_budget(max)
        ));
    }
    let data = serde_json::Value::String("x".repeat(settings.max_publication_bytes));
    let job = encode(&ServerMsg::Job {
        channel: "c".repeat(app::validate::CHANNEL_MAX),
        group: "g".repeat(app::validate::CHANNEL_MAX),
        id: format!("{}-{}", u64::MAX, u64::MAX),
        data: data.clone(),
        attempt: u32::MAX,
    })
    .len();
    let channel = "c".repeat(app::validate::CHANNEL_MAX);
    let published = publication(
        &channel,
        &data,
        Some(app::validate::MessageId {
            ms: u64::MAX,
            seq: u64::MAX,
        }),
    )
    .len();
    let largest = job.max(published);
    if largest > items_budget(max) {
        return Err(format!(
            "a publication or job of --max-publication-bytes {} takes up to {largest} bytes; --max-answer-bytes {max} leaves {} for one: raise --max-answer-bytes or lower --max-publication-bytes",
            settings.max_publication_bytes,
            items_budget(max)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> Member {
        Member {
            user_id: format!("g-{name}"),
            name: name.into(),
        }
    }

    #[test]
    fn the_newest_that_fit_are_kept() {
        let mut items: Vec<String> = (0..10).map(|n| format!("{n:08}")).collect();
        // Each is 10 bytes of JSON and a comma: 2 + 3 × 11 = 35.
        assert!(keep_newest_that_fit(&mut items, 35));
        assert_eq!(items, ["00000007", "00000008", "00000009"]);
        assert!(!keep_newest_that_fit(&mut items, 35), "they fit now");
        assert!(all_fit(&items, 35) && !all_fit(&items, 34));
        assert!(keep_newest_that_fit(&mut items, 1));
        assert!(items.is_empty());
    }

    #[test]
    fn members_are_cut_with_the_total_kept() {
        let mut members = vec![member("Ana"), member("Ben"), member("Cy")];
        let one = json_len(&members[0]) + 1 + 2;
        assert_eq!(cut_members(&mut members, one), Some(3));
        assert_eq!(members, [member("Ana")]);
        assert_eq!(cut_members(&mut members, one), None);
    }

    #[test]
    fn the_defaults_fit_and_tight_limits_are_refused() {
        let defaults = crate::config::Config::defaults();
        let settings = |max_answer_bytes: usize| AnswerSettings {
            max_answer_bytes,
            outbound_queue_bytes: defaults.outbound_queue_bytes,
            history_page: defaults.history_page,
            max_content_bytes: defaults.max_content_bytes,
            max_publication_bytes: defaults.max_publication_bytes,
        };
        assert_eq!(check_limits(&settings(defaults.max_answer_bytes)), Ok(()));
        let refused = check_limits(&settings(256 * 1024)).unwrap_err();
        assert!(refused.contains("--history-page 50"), "{refused}");
        let refused = check_limits(&AnswerSettings {
            outbound_queue_bytes: defaults.max_answer_bytes,
            ..settings(defaults.max_answer_bytes)
        })
        .unwrap_err();
        assert!(refused.contains("at most half"), "{refused}");
    }

    #[test]
    fn a_worst_message_is_about_twice_its_content() {
        let size = json_len(&worst_message(4096));
        assert!((8192..9000).contains(&size), "{size}");
    }
}

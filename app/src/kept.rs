//! Unconfirmed messages kept in the browser's storage (hydrate only), so that a reload, a
//! crash or a closed tab loses nothing that was typed and sent but not yet confirmed. The
//! page restores them on load and they go out again with their original `clientMsgId`; the
//! server answers one it already stored with the original ack. Keyed by user and room: one
//! person's messages are never sent as another's.
//!
//! Saved synchronously where the unconfirmed set changes (a message queued, an ack or a
//! refusal applied), not from a reactive effect: an effect runs a tick later, and a reload
//! in between would lose the message.

use crate::chat::ChatLog;

fn key(log: &ChatLog) -> Option<String> {
    let me = log.me.as_ref()?;
    Some(format!("confab:pending:{}:{}", me.id, log.room_id))
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// What was kept for this user and room (nothing when storage is unavailable or unreadable).
pub fn load(log: &ChatLog) -> Vec<(String, String)> {
    let (Some(key), Some(storage)) = (key(log), storage()) else {
        return Vec::new();
    };
    storage
        .get_item(&key)
        .ok()
        .flatten()
        .and_then(|json| crate::page_json::decode(json.as_bytes()).ok())
        .unwrap_or_default()
}

/// Keeps the log's unconfirmed messages (or forgets them when there are none).
pub fn save(log: &ChatLog) {
    let (Some(key), Some(storage)) = (key(log), storage()) else {
        return;
    };
    let kept = log.to_persist();
    let written = if kept.is_empty() {
        storage.remove_item(&key)
    } else {
        let json = serde_json::to_string(&kept).expect("pairs of strings serialize");
        storage.set_item(&key, &json)
    };
    if written.is_err() {
        leptos::logging::warn!("could not keep unconfirmed messages in browser storage");
    }
}

/// The draft of the composer, per user and room: typed text is never lost to a reload.
fn draft_key(log: &ChatLog) -> Option<String> {
    let me = log.me.as_ref()?;
    Some(format!("confab:draft:{}:{}", me.id, log.room_id))
}

pub fn load_draft(log: &ChatLog) -> Option<String> {
    let (key, storage) = (draft_key(log)?, storage()?);
    storage
        .get_item(&key)
        .ok()
        .flatten()
        .filter(|d| !d.is_empty())
}

pub fn save_draft(log: &ChatLog, draft: &str) {
    let (Some(key), Some(storage)) = (draft_key(log), storage()) else {
        return;
    };
    let _ = if draft.is_empty() {
        storage.remove_item(&key)
    } else {
        storage.set_item(&key, draft)
    };
}

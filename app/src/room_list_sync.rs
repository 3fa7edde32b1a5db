//! Keeps the room list the same in all of the reader's tabs and devices (hydrate only).
//!
//! The server holds the list (see `node::reading`); a tab that joins or leaves a room
//! changes it there. The other tabs learn of it in two ways, both cheap and neither needing
//! a channel per user on the server: tabs of the same browser at once, through a
//! `localStorage` key that the changing tab writes (browsers fire `storage` in every other
//! tab of the origin); other devices when the reader comes back to them (the window gains
//! focus or the page becomes visible, at most every 15 s), which is when a stale list would
//! be seen. Either way
//! the workspace loads the list again and joins or leaves what changed.

use leptos::prelude::*;

const KEY: &str = "confab:rooms-changed";

/// This tab changed the reader's room list: tells the other tabs of this browser.
pub fn announce() {
    let Some(storage) = web_sys::window().and_then(|window| window.local_storage().ok().flatten())
    else {
        return;
    };
    // A new value each time: `storage` fires only when the value changes.
    let _ = storage.set_item(KEY, &(js_sys::Date::now() as u64).to_string());
}

/// Coming back to the tab loads the list again at most this often: switching windows back
/// and forth should not cost the server a list read each time.
const COME_BACK_INTERVAL_MS: f64 = 15_000.0;

/// Bumps `changed` whenever the list may have changed elsewhere.
pub fn listen(changed: RwSignal<usize>) {
    let bump = move || changed.update(|n| *n += 1);
    let last_come_back = StoredValue::new(js_sys::Date::now());
    let came_back = move || {
        let now = js_sys::Date::now();
        if now - last_come_back.get_value() >= COME_BACK_INTERVAL_MS {
            last_come_back.set_value(now);
            bump();
        }
    };
    let handles = [
        window_event_listener(leptos::ev::storage, move |event| {
            if event.key().as_deref() == Some(KEY) {
                bump();
            }
        }),
        window_event_listener(leptos::ev::focus, move |_| came_back()),
        window_event_listener(leptos::ev::visibilitychange, move |_| {
            let visible = web_sys::window()
                .and_then(|window| window.document())
                .is_some_and(|document| !document.hidden());
            if visible {
                came_back();
            }
        }),
    ];
    on_cleanup(move || handles.into_iter().for_each(|handle| handle.remove()));
}

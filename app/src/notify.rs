//! Browser notifications for mentions (hydrate only): shown while the tab is hidden, and only
//! after the reader allowed them (the sidebar offers the switch; browsers require a click).

use crate::unread::Mentioned;
use web_sys::{Notification, NotificationOptions, NotificationPermission};

/// Whether the reader can still be asked (neither allowed nor refused yet).
pub fn can_ask() -> bool {
    supported() && Notification::permission() == NotificationPermission::Default
}

fn supported() -> bool {
    js_sys::Reflect::has(&js_sys::global(), &"Notification".into()).unwrap_or(false)
}

/// Asks for permission; `done` runs once the reader answered.
pub fn ask(done: impl FnOnce() + 'static) {
    if !supported() {
        return;
    }
    let Ok(answer) = Notification::request_permission() else {
        return;
    };
    leptos::task::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(answer).await;
        done();
    });
}

/// A mention of the reader arrived: a notification, if the tab is hidden and they allowed it.
pub fn mention(mentioned: &Mentioned) {
    let hidden = web_sys::window()
        .and_then(|window| window.document())
        .is_some_and(|document| document.hidden());
    if !hidden || !supported() || Notification::permission() != NotificationPermission::Granted {
        return;
    }
    let options = NotificationOptions::new();
    let body: String = mentioned.content.chars().take(140).collect();
    options.set_body(&body);
    options.set_tag(&format!("confab-{}", mentioned.room_id));
    let title = format!("{} in #{}", mentioned.by, mentioned.room_id);
    let _ = Notification::new_with_options(&title, &options);
}

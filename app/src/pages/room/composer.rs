//! The composer: Enter sends, Shift+Enter adds a line, and `@` completes the names of the
//! room's members (arrow keys choose, Enter or Tab takes one, Escape closes the list).
//!
//! The draft is never lost: what was typed before the page hydrated is kept, and the draft
//! is stored per user and room, so a reload brings it back. Near the length limit a counter
//! shows what is left; past it the message is not sent.

use crate::api::PostMessage;
use crate::chat::ChatLog;
use crate::mention::{name_matches, typing_mention};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;

/// Most names the completion list shows.
const SUGGESTIONS_MAX: usize = 6;

#[component]
pub fn Composer(
    log: RwSignal<ChatLog>,
    /// Sends the text (non-empty once trimmed).
    on_send: Callback<String>,
    /// Called on every keystroke (typing indication).
    on_typed: Callback<()>,
    /// The longest message the server accepts, in bytes.
    max_bytes: usize,
) -> impl IntoView {
    let draft = RwSignal::new(initial_draft(log));
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        draft.with(|text| log.with_untracked(|log| crate::kept::save_draft(log, text)))
    });
    let used = move || draft.with(String::len);
    let counter = move || {
        let used = used();
        (used * 10 >= max_bytes * 9).then(|| {
            if used > max_bytes {
                (true, format!("{} bytes too long", used - max_bytes))
            } else {
                (false, format!("{} left", max_bytes - used))
            }
        })
    };
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    // The partial name after `@` at the caret, and which suggestion is chosen.
    let partial = RwSignal::new(None::<String>);
    let chosen = RwSignal::new(0usize);
    let suggestions = Memo::new(move |_| {
        let Some(partial) = partial.get() else {
            return Vec::new();
        };
        log.with(|log| {
            let me = log.me.as_ref().map(|me| me.id.as_str());
            let mut names: Vec<String> = Vec::new();
            let people = log
                .members
                .iter()
                .map(|m| (m.user_id.as_str(), m.name.as_str()))
                .chain(
                    log.messages
                        .iter()
                        .rev()
                        .map(|m| (m.user_id.as_str(), m.name.as_str())),
                );
            for (user_id, name) in people {
                if Some(user_id) != me
                    && name_matches(name, &partial)
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_string());
                }
                if names.len() == SUGGESTIONS_MAX {
                    break;
                }
            }
            names
        })
    });
    let caret_text = move || {
        let area = textarea.get_untracked()?;
        let text = area.value();
        let caret = area.selection_start().ok().flatten()? as usize;
        // The caret counts UTF-16 units; the text before it, in chars, is what we need.
        let before: String = char_indices_utf16(&text, caret);
        Some((text, before))
    };
    let update_partial = move || {
        let found = caret_text().and_then(|(_, before)| typing_mention(&before).map(String::from));
        if found != partial.get_untracked() {
            chosen.set(0);
        }
        partial.set(found);
    };
    let complete = move |name: String| {
        let Some((text, before)) = caret_text() else {
            return;
        };
        let Some(at) = before.rfind('@') else {
            return;
        };
        let after = &text[before.len()..];
        let completed = format!("{}@{name} ", &before[..at]);
        let caret = completed.encode_utf16().count() as u32;
        draft.set(format!("{completed}{after}"));
        partial.set(None);
        if let Some(area) = textarea.get_untracked() {
            area.set_value(&draft.get_untracked());
            let _ = area.set_selection_range(caret, caret);
            let _ = area.focus();
        }
    };
    let send = move || {
        let text = draft.get_untracked();
        if text.trim().is_empty() || text.trim().len() > max_bytes {
            return;
        }
        draft.set(String::new());
        partial.set(None);
        on_send.run(text);
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        let names = suggestions.get_untracked();
        if !names.is_empty() {
            let last = names.len() - 1;
            match ev.key().as_str() {
                "ArrowDown" => {
                    ev.prevent_default();
                    chosen.update(|i| *i = if *i >= last { 0 } else { *i + 1 });
                    return;
                }
                "ArrowUp" => {
                    ev.prevent_default();
                    chosen.update(|i| *i = if *i == 0 { last } else { *i - 1 });
                    return;
                }
                "Enter" | "Tab" if !ev.shift_key() => {
                    ev.prevent_default();
                    complete(names[chosen.get_untracked().min(last)].clone());
                    return;
                }
                "Escape" => {
                    ev.prevent_default();
                    partial.set(None);
                    return;
                }
                _ => {}
            }
        }
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        }
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send();
    };
    // Entering a room puts the caret in the composer.
    Effect::new(move |_| {
        if let Some(area) = textarea.get() {
            let _ = area.focus();
        }
    });
    let refused = crate::components::refusal_in_url::<PostMessage>();
    let room = log.with_untracked(|log| log.room_id.clone());
    view! {
        // Without JavaScript the form posts to the server (which redirects back here); with
        // it, the page sends over its live connection instead.
        <form class="composer" method="post" action=PostMessage::PATH on:submit=on_submit>
            <input type="hidden" name="room" value=room/>
            {move || refused().map(|why| view! { <p class="form-error" role="alert">"Not sent: " {why}</p> })}
            <div class="composer-field">
                {move || {
                    let names = suggestions.get();
                    (!names.is_empty()).then(|| view! {
                        <ul class="suggestions" role="listbox" id="mention-suggestions" aria-label="People to mention" data-testid="mention-suggestions">
                            {names.into_iter().enumerate().map(|(i, name)| {
                                let take = name.clone();
                                view! {
                                    <li
                                        role="option"
                                        aria-selected=move || (chosen.get() == i).to_string()
                                        class:chosen=move || chosen.get() == i
                                        on:mousedown=move |ev| {
                                            ev.prevent_default();
                                            complete(take.clone());
                                        }
                                    >"@" {name}</li>
                                }
                            }).collect_view()}
                        </ul>
                    })
                }}
                <textarea
                    node_ref=textarea
                    name="content"
                    aria-label="Message"
                    aria-autocomplete="list"
                    aria-controls=move || (!suggestions.get().is_empty()).then_some("mention-suggestions")
                    placeholder=move || log.with(|log| format!("Message #{}", log.room_id))
                    aria-describedby="composer-hint"
                    rows="2"
                    prop:value=move || draft.get()
                    on:input=move |ev| {
                        draft.set(event_target_value(&ev));
                        update_partial();
                        on_typed.run(());
                    }
                    on:click=move |_| update_partial()
                    on:keydown=on_keydown
                ></textarea>
            </div>
            <button type="submit" aria-disabled=move || (used() > max_bytes).then_some("true")>"Send"</button>
            <p id="composer-hint" class="hint composer-hint">
                "Enter sends · Shift+Enter adds a line · @ mentions someone"
                {move || counter().map(|(over, text)| view! {
                    <span class="counter" class:over=over data-testid="counter" aria-live="polite">{text}</span>
                })}
            </p>
        </form>
    }
}

/// The draft to start with: what was typed before the page hydrated, else the stored one.
fn initial_draft(log: RwSignal<ChatLog>) -> String {
    #[cfg(feature = "hydrate")]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        use wasm_bindgen::JsCast;
        // Only the first composer hydrates server-rendered HTML; later ones (client-side
        // navigation) must not pick up another room's textarea.
        static HYDRATED: AtomicBool = AtomicBool::new(false);
        let first = !HYDRATED.swap(true, Ordering::Relaxed);
        let typed = first
            .then(document)
            .and_then(|document| document.query_selector(".composer textarea").ok().flatten())
            .and_then(|area| area.dyn_into::<web_sys::HtmlTextAreaElement>().ok())
            .map(|area| area.value())
            .filter(|typed| !typed.is_empty());
        if let Some(typed) = typed {
            return typed;
        }
        if let Some(kept) = log.with_untracked(crate::kept::load_draft) {
            return kept;
        }
    }
    let _ = log;
    String::new()
}

/// The text before a caret given in UTF-16 units (as the DOM counts).
fn char_indices_utf16(text: &str, caret_utf16: usize) -> String {
    let mut units = 0;
    text.chars()
        .take_while(|c| {
            units += c.len_utf16();
            units <= caret_utf16
        })
        .collect()
}

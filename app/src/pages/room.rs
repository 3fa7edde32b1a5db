//! A room: its history rendered on the server (readable without JavaScript), then, once
//! hydrated, live messages, the composer, typing, members and the connection state.

use crate::api::{error_text, load_room, older_messages, RoomSnapshot};
use crate::chat::{ChatLog, ConnStatus, Pending};
use crate::components::{NameForm, Session};
use crate::protocol::ChatMessage;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[component]
pub fn RoomPage() -> impl IntoView {
    let session = Session::expect();
    let params = use_params_map();
    let room = move || params.read().get("room").unwrap_or_default();
    let snapshot = Resource::new(
        move || (room(), session.version()),
        |(room, _)| load_room(room),
    );
    view! {
        <Title text=move || format!("#{} · Confab", room())/>
        <Suspense fallback=|| view! { <p class="muted">"Loading the room…"</p> }>
            {move || Suspend::new(async move {
                match snapshot.await {
                    Ok(snapshot) => view! { <RoomView snapshot/> }.into_any(),
                    Err(err) => view! {
                        <section class="card">
                            <h1>"This room cannot be opened"</h1>
                            <p class="form-error" role="alert">{error_text(&err)}</p>
                            <p><a href="/">"Back to the rooms"</a></p>
                        </section>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn RoomView(snapshot: RoomSnapshot) -> impl IntoView {
    let room_id = snapshot.page.room_id.clone();
    let signed_in = snapshot.me.is_some();
    let log = RwSignal::new(ChatLog::from_snapshot(snapshot));
    let status = RwSignal::new(ConnStatus::Connecting);
    // Times render in UTC on the server and switch to the reader's time zone once hydrated.
    let local_times = RwSignal::new(false);

    #[cfg(feature = "hydrate")]
    let link = {
        let link = StoredValue::new(None::<crate::live::Live>);
        let room_id = room_id.clone();
        Effect::new(move |_| {
            local_times.set(true);
            if signed_in && link.with_value(Option::is_none) {
                // Messages sent before a reload but never confirmed go out again first (the
                // live connection keeps the stored copy up to date from here on).
                let kept = log.with_untracked(crate::kept::load);
                log.update(|log| log.restore_pending(kept));
                link.set_value(Some(crate::live::Live::start(room_id.clone(), log, status)));
            }
        });
        on_cleanup(move || link.with_value(|live| live.iter().for_each(crate::live::Live::stop)));
        link
    };

    // The scroll position is the reader's: new messages keep the view at the bottom only when
    // the reader is there (or just sent one); otherwise they are counted behind a
    // "N new messages" button, and older messages load above without moving the view.
    let list = NodeRef::<leptos::html::Ol>::new();
    let at_bottom = RwSignal::new(true);
    let unseen = RwSignal::new(0usize);
    let scroll_to_bottom = move || {
        at_bottom.set(true);
        unseen.set(0);
        // In the next frame: effects may run before the new message is in the list.
        #[cfg(feature = "hydrate")]
        request_animation_frame(move || {
            if let Some(list) = list.get_untracked() {
                list.set_scroll_top(list.scroll_height());
            }
        });
    };
    Effect::new(move |previous: Option<(usize, usize, Option<String>)>| {
        let now = log.with(|log| {
            let newest = log.messages.last().map(|m| m.id.clone());
            (log.messages.len(), log.pending.len(), newest)
        });
        match &previous {
            // First render: start at the newest message.
            None => scroll_to_bottom(),
            Some((count, pending, newest)) => {
                let sent = now.1 > *pending;
                let arrived = now.2 != *newest;
                if sent || (arrived && at_bottom.get_untracked()) {
                    scroll_to_bottom();
                } else if arrived {
                    unseen.update(|n| *n += now.0.saturating_sub(*count).max(1));
                }
            }
        }
        now
    });
    // Only the reader scrolling up leaves the bottom: growing content and our own scrolling
    // down fire scroll events too, sometimes after more messages arrived, and must not.
    let last_top = StoredValue::new(0);
    let on_scroll = move |_| {
        if let Some(list) = list.get_untracked() {
            let top = list.scroll_top();
            let gap = list.scroll_height() - top - list.client_height();
            if gap < 40 {
                at_bottom.set(true);
                unseen.set(0);
            } else if top < last_top.get_value() {
                at_bottom.set(false);
            }
            last_top.set_value(top);
        }
    };

    let draft = RwSignal::new(String::new());
    let send = move || {
        let text = draft.get_untracked();
        if text.trim().is_empty() {
            return;
        }
        draft.set(String::new());
        #[cfg(feature = "hydrate")]
        link.with_value(|live| {
            if let Some(live) = live {
                live.send_message(text);
            }
        });
    };
    let on_input = move |ev: leptos::ev::Event| {
        draft.set(event_target_value(&ev));
        #[cfg(feature = "hydrate")]
        link.with_value(|live| {
            if let Some(live) = live {
                live.typed();
            }
        });
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        }
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send();
    };

    let older_error = RwSignal::new(None::<String>);
    let load_older = {
        let room_id = room_id.clone();
        move |_| {
            let room_id = room_id.clone();
            let before = log.with_untracked(ChatLog::oldest_id);
            leptos::task::spawn_local(async move {
                match older_messages(room_id, before).await {
                    Ok(page) => {
                        // Keep the reader's place: what was on screen stays where it was.
                        let height = list.get_untracked().map(|l| l.scroll_height());
                        log.update(|log| log.add_older(page.messages, page.has_more));
                        #[cfg(feature = "hydrate")]
                        if let Some(height) = height {
                            request_animation_frame(move || {
                                if let Some(list) = list.get_untracked() {
                                    let grown = list.scroll_height() - height;
                                    list.set_scroll_top(list.scroll_top() + grown);
                                }
                            });
                        }
                        #[cfg(not(feature = "hydrate"))]
                        let _ = height;
                    }
                    Err(err) => older_error.set(Some(error_text(&err))),
                }
            });
        }
    };

    view! {
        <div class="room">
            <section class="chat card">
                <header class="room-head">
                    <h1>"#" {room_id.clone()}</h1>
                    <span class=move || status.with(ConnStatus::css_class) data-testid="status">
                        {move || status.with(ConnStatus::label)}
                    </span>
                </header>
                <noscript><p class="muted">"Live updates and sending need JavaScript; this is the latest history."</p></noscript>
                {move || log.with(|log| log.slow_down.clone().or_else(|| log.notice.clone())).map(|text| view! {
                    <p class="notice" role="status">{text}</p>
                })}
                <div class="timeline">
                <ol class="messages" data-testid="messages" node_ref=list on:scroll=on_scroll>
                    {move || log.with(|log| log.has_more).then(|| view! {
                        <li class="older">
                            <button type="button" class="link" on:click=load_older.clone()>"Load older messages"</button>
                            {move || older_error.get().map(|text| view! { <span class="form-error">{text}</span> })}
                        </li>
                    })}
                    <For
                        each=move || log.with(|log| log.messages.clone())
                        key=|message| message.id.clone()
                        children=move |message| {
                            let mine = log.with_untracked(|log| log.me.as_ref().is_some_and(|me| me.id == message.user_id));
                            view! { <MessageItem message mine local_times/> }
                        }
                    />
                    <For
                        each=move || log.with(|log| log.pending.clone())
                        key=|pending| (pending.client_msg_id.clone(), pending.error.clone())
                        children=move |pending| view! { <PendingItem pending/> }
                    />
                </ol>
                {move || (unseen.get() > 0).then(|| {
                    let n = unseen.get();
                    let label = if n == 1 { "1 new message ↓".to_string() } else { format!("{n} new messages ↓") };
                    view! {
                        <button type="button" class="new-messages" data-testid="new-messages"
                            on:click=move |_| scroll_to_bottom()>{label}</button>
                    }
                })}
                </div>
                <p class="typing" aria-live="polite" data-testid="typing">
                    {move || log.with(ChatLog::typing_line)}
                </p>
                {if signed_in {
                    view! {
                        <form class="composer" on:submit=on_submit>
                            <textarea
                                aria-label="Message"
                                placeholder="Write a message — Enter sends, Shift+Enter adds a line"
                                rows="2"
                                prop:value=move || draft.get()
                                on:input=on_input
                                on:keydown=on_keydown
                            ></textarea>
                            <button type="submit">"Send"</button>
                        </form>
                    }.into_any()
                } else {
                    view! {
                        <NameForm label="Choose a display name to join the conversation"/>
                        <p class="muted">"Or " <a href="/signin">"sign in"</a> " with your account."</p>
                    }.into_any()
                }}
            </section>
            <aside class="members card">
                <h2>"Here now " <span class="count">{move || log.with(|log| log.members.len())}</span></h2>
                <ul data-testid="members">
                    <For
                        each=move || log.with(|log| log.members.clone())
                        key=|member| member.user_id.clone()
                        children=move |member| view! { <li><span class="dot"></span>{member.name}</li> }
                    />
                </ul>
            </aside>
        </div>
    }
}

#[component]
fn MessageItem(message: ChatMessage, mine: bool, local_times: RwSignal<bool>) -> impl IntoView {
    let timestamp = message.timestamp;
    view! {
        <li class="message" class:mine=mine data-id=message.id.clone()>
            <div class="meta">
                <span class="author">{message.name}</span>
                <time>{move || clock(timestamp, local_times.get())}</time>
            </div>
            // Always a text node: markup in messages is shown, never interpreted.
            <p class="content">{message.content}</p>
        </li>
    }
}

#[component]
fn PendingItem(pending: Pending) -> impl IntoView {
    let failed = pending.error.is_some();
    view! {
        <li class="message mine pending" class:failed=failed>
            <div class="meta">
                <span class="author">"You"</span>
                <span class="state">{pending.error.map_or_else(|| "sending…".to_string(), |e| format!("not sent: {e}"))}</span>
            </div>
            <p class="content">{pending.content}</p>
        </li>
    }
}

/// "14:05": in UTC on the server, in the reader's zone in the browser.
fn clock(timestamp_ms: u64, local: bool) -> String {
    #[cfg(feature = "hydrate")]
    if local {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(timestamp_ms as f64));
        return format!("{:02}:{:02}", date.get_hours(), date.get_minutes());
    }
    let _ = local;
    let minutes_of_day = (timestamp_ms / 60_000) % (24 * 60);
    format!("{:02}:{:02}", minutes_of_day / 60, minutes_of_day % 60)
}

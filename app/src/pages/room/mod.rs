//! A room: its history rendered on the server (readable without JavaScript), then, once
//! hydrated, live messages, the composer, typing, members and the connection state.
//!
//! The room's events come over the workspace's one connection (which keeps the room joined
//! in the background when the page is left). The reader's read position moves when they
//! have seen messages: the tab visible and focused, the messages on screen. Opening the room
//! shows a divider before the first message that was unread then.

mod composer;
mod content;
mod time;

use crate::api::{error_text, LoadRoom, OlderMessages, RoomSnapshot};
use crate::chat::{ChatLog, ConnStatus, Pending};
use crate::components::{NameForm, Session};
use crate::protocol::{is_guest_id, ChatMessage};
use crate::routing::{room_of, Location};
use crate::server_call::run;
use crate::validate::MessageId;
use crate::workspace::Workspace;
use composer::Composer;
use content::MessageContent;
use leptos::prelude::*;
use std::cmp::Ordering;
use time::{LocalTime, GROUP_WITHIN_MS};

#[component]
pub fn RoomPage() -> impl IntoView {
    let session = Session::expect();
    let location = Location::expect();
    let room = Memo::new(move |_| location.path.with(|path| room_of(path).unwrap_or_default()));
    let snapshot = crate::api::page_data(
        move || (room.get(), session.version()),
        |(room, _)| run(LoadRoom { room }),
    );
    view! {
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
    let workspace = Workspace::expect();
    let status = workspace.status;
    let first_unread = first_unread(&snapshot);
    let max_bytes = snapshot.max_content_bytes;
    let log = RwSignal::new(ChatLog::from_snapshot(snapshot));
    // Times render in UTC on the server and switch to the reader's time zone once hydrated.
    let local_times = RwSignal::new(false);

    #[cfg(feature = "hydrate")]
    {
        let opening = room_id.clone();
        Effect::new(move |opened: Option<bool>| {
            local_times.set(true);
            if signed_in && opened != Some(true) {
                // Messages sent before a reload but never confirmed go out again first (the
                // live connection keeps the stored copy up to date from here on).
                let kept = log.with_untracked(crate::kept::load);
                log.update(|log| log.restore_pending(kept));
                workspace.open_room(&opening, log);
            }
            signed_in
        });
        let room_id = room_id.clone();
        on_cleanup(move || workspace.close_room(&room_id, log));
    }

    // The scroll position is the reader's: new messages keep the view at the bottom only when
    // the reader is there (or just sent one); otherwise they are counted behind a
    // "N new messages" button, and older messages load above without moving the view.
    let list = NodeRef::<leptos::html::Ol>::new();
    let at_bottom = RwSignal::new(true);
    let unseen = RwSignal::new(0usize);
    // What a screen reader announces (politely): messages from others as they arrive.
    let announced = RwSignal::new(Vec::<String>::new());
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
                if arrived {
                    announce_arrivals(log, newest.as_deref(), announced);
                }
            }
        }
        now
    });
    let older_error = RwSignal::new(None::<String>);
    let loading_older = RwSignal::new(false);
    let load_older = {
        let room_id = room_id.clone();
        Callback::new(move |()| {
            if loading_older.get_untracked() || !log.with_untracked(|log| log.has_more) {
                return;
            }
            loading_older.set(true);
            let room_id = room_id.clone();
            let before = log.with_untracked(ChatLog::oldest_id);
            leptos::task::spawn_local(async move {
                let page = run(OlderMessages {
                    room: room_id,
                    before,
                })
                .await;
                loading_older.set(false);
                match page {
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
        })
    };

    // Only the reader scrolling up leaves the bottom: growing content and our own scrolling
    // down fire scroll events too, sometimes after more messages arrived, and must not.
    let last_top = StoredValue::new(0);
    // Counts the reader's scrolling, so what comes on screen can be marked read.
    let scrolled = RwSignal::new(0u32);
    let on_scroll = move |_| {
        scrolled.update(|n| *n = n.wrapping_add(1));
        if let Some(list) = list.get_untracked() {
            let top = list.scroll_top();
            let gap = list.scroll_height() - top - list.client_height();
            if gap < 40 {
                at_bottom.set(true);
                unseen.set(0);
            } else if top < last_top.get_value() {
                if top < 120 {
                    load_older.run(());
                }
                at_bottom.set(false);
            }
            last_top.set_value(top);
        }
    };

    let on_send = {
        let room_id = room_id.clone();
        Callback::new(move |text: String| {
            #[cfg(feature = "hydrate")]
            workspace.with_live(|live| live.send_message(&room_id, text));
            #[cfg(not(feature = "hydrate"))]
            let _ = (&room_id, text);
        })
    };
    let on_typed = {
        let room_id = room_id.clone();
        Callback::new(move |()| {
            #[cfg(feature = "hydrate")]
            workspace.with_live(|live| live.typed(&room_id));
            #[cfg(not(feature = "hydrate"))]
            let _ = &room_id;
        })
    };
    #[cfg(feature = "hydrate")]
    read_marking::start(room_id.clone(), workspace, log, list, at_bottom, scrolled);

    view! {
        <div class="room">
            <section class="chat card">
                <header class="room-head">
                    <h1>"#" {room_id.clone()}</h1>
                    {first_unread.is_some().then(|| view! {
                        <button type="button" class="link jump" data-testid="jump-unread"
                            on:click=move |_| jump_to_first_unread()>"Jump to first unread"</button>
                    })}
                    <span class=move || status.with(ConnStatus::css_class) data-testid="status" aria-live="polite">
                        {move || status.with(ConnStatus::label)}
                    </span>
                    {move || status.with(|s| matches!(s, ConnStatus::Reconnecting { .. })).then(|| view! {
                        <button type="button" class="link" data-testid="reconnect-now" on:click=move |_| {
                            #[cfg(feature = "hydrate")]
                            workspace.with_live(crate::live::Live::reconnect_now);
                        }>"Reconnect now"</button>
                    })}
                </header>
                <noscript><p class="muted">"Live updates and sending need JavaScript; this is the latest history."</p></noscript>

                <div class="timeline">
                // Over the timeline's top edge, so that showing it moves nothing.
                <p class="notice" role="status" class:shown=move || log.with(|log| log.slow_down.is_some() || log.notice.is_some())>
                    {move || log.with(|log| log.slow_down.clone().or_else(|| log.notice.clone()))}
                </p>
                <div class="visually-hidden" aria-live="polite" data-testid="announcer">
                    {move || announced.get().into_iter().map(|text| view! { <p>{text}</p> }).collect_view()}
                </div>
                <ol class="messages" data-testid="messages" node_ref=list on:scroll=on_scroll>
                    {move || log.with(|log| log.has_more).then(|| view! {
                        <li class="older">
                            <button type="button" class="link" on:click=move |_| load_older.run(())>
                                {move || if loading_older.get() { "Loading older messages…" } else { "Load older messages" }}
                            </button>
                            {move || older_error.get().map(|text| view! { <span class="form-error">{text}</span> })}
                        </li>
                    })}
                    <For
                        each=move || log.with(|log| log.messages.clone())
                        key=|message| message.id.clone()
                        children=move |message| {
                            let previous = previous_of(log, message.id.clone());
                            let me = log.with_untracked(|log| log.me.clone());
                            let mine = me.as_ref().is_some_and(|me| me.id == message.user_id);
                            let divider = first_unread.as_deref() == Some(message.id.as_str());
                            let my_name = me.map(|me| me.name).filter(|_| !mine);
                            view! { <MessageItem message previous mine my_name divider local_times/> }
                        }
                    />
                    <For
                        each=move || log.with(|log| log.pending.clone())
                        key=|pending| (pending.client_msg_id.clone(), pending.error.clone())
                        children=move |pending| view! { <PendingItem pending room_id=room_id.clone()/> }
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
                    view! { <Composer log on_send on_typed max_bytes/> }.into_any()
                } else {
                    view! {
                        <NameForm label="Choose a display name to join the conversation"/>
                        <p class="muted">"Or " <a href="/signin">"sign in"</a> " with your account."</p>
                    }.into_any()
                }}
            </section>
            <MemberList log status/>
        </div>
    }
}

/// Who is here, with a guest marker (presence is also said in words: "Here now").
#[component]
fn MemberList(log: RwSignal<ChatLog>, status: RwSignal<ConnStatus>) -> impl IntoView {
    // While this tab is not connected, who is here is not known: the list says so.
    let offline = move || status.with(|status| *status != ConnStatus::Online);
    view! {
        <aside class="members card" class:offline=offline>
                <h2>
                    {move || if offline() { "Last seen here " } else { "Here now " }}
                    <span class="count">{move || log.with(ChatLog::member_count)}</span>
                </h2>
                {move || offline().then(|| view! {
                    <p class="muted" data-testid="members-offline">"You are offline: this may be out of date."</p>
                })}
                <ul data-testid="members">
                    <For
                        each=move || log.with(|log| log.members.clone())
                        key=|member| member.user_id.clone()
                        children=move |member| view! {
                            <li>
                                <span class="dot" aria-hidden="true"></span>
                                {member.name}
                                {is_guest_id(&member.user_id).then(|| view! { <span class="tag">"guest"</span> })}
                            </li>
                        }
                    />
                </ul>
            </aside>
    }
    .into_any()
}

/// Adds the messages by others after `before` (the newest before the change) to what a
/// screen reader announces; the last few only.
fn announce_arrivals(
    log: RwSignal<ChatLog>,
    before: Option<&str>,
    announced: RwSignal<Vec<String>>,
) {
    let fresh: Vec<String> = log.with_untracked(|log| {
        let me = log.me.as_ref().map(|me| me.id.as_str());
        log.messages
            .iter()
            .filter(|m| before.is_none_or(|b| MessageId::compare(&m.id, b) == Ordering::Greater))
            .filter(|m| Some(m.user_id.as_str()) != me)
            .map(|m| {
                format!(
                    "{}: {}",
                    m.name,
                    m.content.chars().take(300).collect::<String>()
                )
            })
            .collect()
    });
    if !fresh.is_empty() {
        announced.update(|list| {
            list.extend(fresh);
            let excess = list.len().saturating_sub(3);
            list.drain(..excess);
        });
    }
}

/// The author and time of the message before `id` in the log (kept current as older
/// messages load above it).
fn previous_of(log: RwSignal<ChatLog>, id: String) -> Memo<Option<(String, u64)>> {
    Memo::new(move |_| {
        log.with(|log| {
            let at = log
                .messages
                .binary_search_by(|m| MessageId::compare(&m.id, &id))
                .ok()?;
            let previous = log.messages.get(at.checked_sub(1)?)?;
            Some((previous.user_id.clone(), previous.timestamp))
        })
    })
}

/// One of eight author colours, the same for a person everywhere (by their user id).
fn author_colour(user_id: &str) -> &'static str {
    const CLASSES: [&str; 8] = [
        "author c0",
        "author c1",
        "author c2",
        "author c3",
        "author c4",
        "author c5",
        "author c6",
        "author c7",
    ];
    let hash = user_id.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    CLASSES[hash as usize % CLASSES.len()]
}

#[component]
fn MessageItem(
    message: ChatMessage,
    /// The author and time of the message above.
    previous: Memo<Option<(String, u64)>>,
    mine: bool,
    /// The reader's name, when the message is someone else's: mentions of it stand out.
    my_name: Option<String>,
    /// The first message that was unread when the room opened: a divider goes above it.
    divider: bool,
    local_times: RwSignal<bool>,
) -> impl IntoView {
    let timestamp = message.timestamp;
    let guest = is_guest_id(&message.user_id);
    let mentions_me = my_name
        .as_deref()
        .is_some_and(|name| crate::mention::mentions(&message.content, name));
    let when = move || LocalTime::of(timestamp, local_times.get());
    // A new day starts above this message: a separator with the date.
    let new_day = move || {
        previous.with(|previous| {
            previous.as_ref().is_none_or(|(_, before)| {
                !LocalTime::of(*before, local_times.get()).same_day(&when())
            })
        })
    };
    // By the same author shortly after the one above: shown without name and time.
    let author = message.user_id.clone();
    let grouped = move || {
        !divider
            && !new_day()
            && previous.with(|previous| {
                previous.as_ref().is_some_and(|(user, before)| {
                    *user == author && timestamp.saturating_sub(*before) < GROUP_WITHIN_MS
                })
            })
    };
    view! {
        {move || new_day().then(|| view! {
            <li class="day-separator" data-testid="day-separator">
                <span>{when().date()}</span>
            </li>
        })}
        {divider.then(|| view! {
            <li class="unread-divider" id="first-unread" data-testid="unread-divider">
                <span>"New"</span>
            </li>
        })}
        <li class="message" class:mine=mine class:mentions-me=mentions_me class:grouped=grouped data-id=message.id.clone()>
            <div class="meta">
                <span class=author_colour(&message.user_id)>{message.name}</span>
                {mine.then(|| view! { <span class="tag you">"you"</span> })}
                {guest.then(|| view! { <span class="tag">"guest"</span> })}
                <time
                    datetime=move || when().iso()
                    title=move || format!("{} at {}", when().date(), when().clock())
                >{move || when().clock()}</time>
            </div>
            <div class="content"><MessageContent content=message.content my_name/></div>
        </li>
    }
    .into_any()
}

/// A message of ours on its way, or refused: then with why, and Retry and Discard.
#[component]
fn PendingItem(pending: Pending, room_id: String) -> impl IntoView {
    let failed = pending.error.is_some();
    let workspace = Workspace::expect();
    let id = pending.client_msg_id.clone();
    let (retry_room, retry_id) = (room_id.clone(), id.clone());
    let retry = move |_| {
        #[cfg(feature = "hydrate")]
        workspace.with_live(|live| live.retry(&retry_room, &retry_id));
        #[cfg(not(feature = "hydrate"))]
        let _ = (&retry_room, &retry_id, workspace);
    };
    let discard = move |_| {
        #[cfg(feature = "hydrate")]
        workspace.with_live(|live| live.discard(&room_id, &id));
        #[cfg(not(feature = "hydrate"))]
        let _ = (&room_id, &id);
    };
    view! {
        <li class="message mine pending" class:failed=failed data-testid="pending">
            <div class="meta">
                <span class="author">"You"</span>
                <span class="state">{pending.error.clone().map_or_else(|| "sending…".to_string(), |e| format!("not sent: {e}"))}</span>
            </div>
            <div class="content"><p>{pending.content}</p></div>
            {failed.then(|| view! {
                <div class="actions">
                    <button type="button" class="link" on:click=retry>"Retry"</button>
                    <button type="button" class="link" on:click=discard>"Discard"</button>
                </div>
            })}
        </li>
    }
    .into_any()
}

/// The first message by someone else after the reader's read position, as the page opened.
fn first_unread(snapshot: &RoomSnapshot) -> Option<String> {
    let last_read = snapshot.read.as_ref()?.last_read.clone();
    let me = snapshot.me.as_ref()?;
    snapshot
        .page
        .messages
        .iter()
        .find(|m| {
            m.user_id != me.id
                && last_read
                    .as_deref()
                    .is_none_or(|read| MessageId::compare(&m.id, read) == Ordering::Greater)
        })
        .map(|m| m.id.clone())
}

/// Scrolls the unread divider into view.
fn jump_to_first_unread() {
    #[cfg(feature = "hydrate")]
    if let Some(divider) = document().get_element_by_id("first-unread") {
        let options = web_sys::ScrollIntoViewOptions::new();
        options.set_block(web_sys::ScrollLogicalPosition::Start);
        divider.scroll_into_view_with_scroll_into_view_options(&options);
    }
}

/// Moving the reader's read position (hydrate only).
#[cfg(feature = "hydrate")]
mod read_marking {
    use crate::chat::ChatLog;
    use crate::workspace::Workspace;
    use leptos::prelude::*;
    use wasm_bindgen::JsCast;

    /// Whether the reader can see the page: the tab visible and the window focused.
    fn page_seen() -> bool {
        let document = document();
        !document.hidden() && document.has_focus().unwrap_or(false)
    }

    /// The newest message whose bottom is on screen in the list.
    fn newest_on_screen(list: &web_sys::HtmlElement) -> Option<String> {
        let bottom = list.get_bounding_client_rect().bottom();
        let items = list.query_selector_all("li.message[data-id]").ok()?;
        (0..items.length()).rev().find_map(|i| {
            let item = items.item(i)?.dyn_into::<web_sys::Element>().ok()?;
            (item.get_bounding_client_rect().bottom() <= bottom + 2.0)
                .then(|| item.get_attribute("data-id"))
                .flatten()
        })
    }

    pub fn start(
        room_id: String,
        workspace: Workspace,
        log: RwSignal<ChatLog>,
        list: NodeRef<leptos::html::Ol>,
        at_bottom: RwSignal<bool>,
        scrolled: RwSignal<u32>,
    ) {
        let seen = RwSignal::new(page_seen());
        let handles = [
            window_event_listener(leptos::ev::focus, move |_| seen.set(page_seen())),
            window_event_listener(leptos::ev::blur, move |_| seen.set(page_seen())),
            window_event_listener(leptos::ev::visibilitychange, move |_| seen.set(page_seen())),
        ];
        on_cleanup(move || handles.into_iter().for_each(|h| h.remove()));
        Effect::new(move |_| {
            // Whenever messages arrive, the reader comes back, or scrolls.
            log.with(|log| log.messages.len());
            at_bottom.track();
            scrolled.track();
            if !seen.get() {
                return;
            }
            let Some(list) = list.get() else { return };
            let room_id = room_id.clone();
            // After layout: the newest message may only just have been added. Checked again
            // then: the reader may have left meanwhile, and what arrived after is unseen.
            request_animation_frame(move || {
                if !page_seen() {
                    return;
                }
                let Some(id) = newest_on_screen(&list) else {
                    return;
                };
                if workspace
                    .rooms
                    .with_untracked(|rooms| rooms.would_advance(&room_id, &id))
                {
                    workspace.with_live(|live| live.read(&room_id, &id));
                }
            });
        });
    }
}

//! Home: choose a display name, see the rooms with how many people are in each, open one.

use crate::api::{error_text, list_rooms};
use crate::components::{NameForm, Session};
use crate::validate::room_name_to_id;
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

/// How often the room list refreshes itself in the browser.
const ROOMS_REFRESH_MS: u64 = 5_000;

#[component]
pub fn HomePage() -> impl IntoView {
    let session = Session::expect();
    let refresh = RwSignal::new(0u32);
    let rooms = Resource::new(move || refresh.get(), |_| list_rooms());
    Effect::new(move |_| {
        let handle = set_interval_with_handle(
            move || refresh.update(|n| *n = n.wrapping_add(1)),
            std::time::Duration::from_millis(ROOMS_REFRESH_MS),
        );
        on_cleanup(move || {
            if let Ok(handle) = handle {
                handle.clear();
            }
        });
    });

    view! {
        <section class="card hero">
            <h1>"Talk in real time."</h1>
            <p class="lede">"Pick a name, open a room, and everyone in it sees your messages as you send them."</p>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match session.user.await {
                        Ok(Some(user)) => view! {
                            <p class="signed-in">"You chat as " <strong>{user.name}</strong> "."</p>
                        }.into_any(),
                        _ => view! {
                            <NameForm label="Choose a display name"/>
                            <p class="muted">"Or " <a href="/signin">"sign in or create an account"</a> " to keep your name."</p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="card">
            <h2>"Open a room"</h2>
            <OpenRoomForm/>
        </section>
        <section class="card">
            <h2>"Rooms"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading rooms…"</p> }>
                {move || Suspend::new(async move {
                    match rooms.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="muted">"No rooms yet. Open one above and it will appear here."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="room-list">
                                {list.into_iter().map(|room| {
                                    let href = format!("/rooms/{}", room.room_id);
                                    let people = match room.members {
                                        1 => "1 person here".to_string(),
                                        n => format!("{n} people here"),
                                    };
                                    view! {
                                        <li>
                                            <a href=href>"#" {room.room_id}</a>
                                            <span class="count" class:active={room.members > 0}>{people}</span>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(err) => view! { <p class="form-error">{error_text(&err)}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// Turns a typed name into a room id and goes there, or says what is wrong with it.
#[component]
fn OpenRoomForm() -> impl IntoView {
    let typed = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let navigate = use_navigate();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match room_name_to_id(&typed.get_untracked()) {
            Ok(id) => {
                error.set(None);
                navigate(&format!("/rooms/{id}"), Default::default());
            }
            Err(invalid) => error.set(Some(invalid.reason)),
        }
    };
    view! {
        <form class="open-room" method="get" action="/open" on:submit=on_submit>
            <label for="room-input">"Room name"</label>
            <div class="row">
                <input
                    id="room-input"
                    name="room"
                    placeholder="e.g. general or Book Club"
                    maxlength="64"
                    prop:value=move || typed.get()
                    on:input=move |ev| {
                        typed.set(event_target_value(&ev));
                        error.set(None);
                    }
                />
                <button type="submit">"Open"</button>
            </div>
            {move || error.get().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
        </form>
    }
}

//! Home: choose a display name, see the rooms with how many people are in each, open one.

use crate::api::{error_text, ListRooms};
use crate::components::{NameForm, OpenRoomForm, Session};
use crate::server_call::run;
use leptos::prelude::*;

/// How often the room list refreshes itself in the browser.
const ROOMS_REFRESH_MS: u64 = 5_000;

#[component]
pub fn HomePage() -> impl IntoView {
    let session = Session::expect();
    let refresh = RwSignal::new(0u32);
    let rooms = crate::api::page_data(move || refresh.get(), |_| run(ListRooms {}));
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
            <OpenRoomForm input_id="room-input" label="Room name" button="Open"/>
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

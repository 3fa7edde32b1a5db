//! The sidebar: the reader's rooms with unread counts and mention badges, live while they are
//! in another room; joining or creating a room; leaving one; switching on notifications.
//! On a phone it is a drawer behind the "Rooms" button of the top bar.
//!
//! It is rendered on the server (the list is in the first response) and loads the same data
//! while hydrating, which also starts the live connection (see [`Workspace`]).

use crate::api::{LeaveRoom, MyRooms};
use crate::components::{OpenRoomForm, Session};
use crate::routing::Location;
use crate::server_call::run;
use crate::workspace::Workspace;
use leptos::prelude::*;

/// Whether the drawer is open (phones); provided by `App` next to the workspace.
#[derive(Clone, Copy)]
pub struct Drawer(pub RwSignal<bool>);

#[component]
pub fn Sidebar() -> impl IntoView {
    let session = Session::expect();
    let workspace = Workspace::expect();
    // Loaded again when someone signs in or out, and when the list may have changed in
    // another tab or on another device.
    let rooms = crate::api::page_data(
        move || (session.version(), workspace.list_changed.get()),
        |_| run(MyRooms {}),
    );
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let user = session.user.await.ok().flatten();
                let entries = rooms.await.unwrap_or_default();
                let signed_in = user.is_some();
                workspace.load(user, entries);
                signed_in.then(|| view! { <RoomNav/> })
            })}
        </Transition>
    }
}

#[component]
fn RoomNav() -> impl IntoView {
    let workspace = Workspace::expect();
    let Drawer(drawer) = expect_context::<Drawer>();
    let location = Location::expect();
    // Following a link closes the drawer (phones).
    Effect::new(move |_| {
        location.path.track();
        drawer.set(false);
    });
    keyboard_shortcuts(workspace);
    view! {
        <nav id="sidebar" class="sidebar card" class:open=move || drawer.get() aria-label="Your rooms" data-testid="sidebar">
            <h2>"Your rooms"</h2>
            {move || workspace.rooms.with(|rooms| rooms.rooms.is_empty()).then(|| view! {
                <p class="muted">"Rooms you open appear here."</p>
            })}
            <ul class="room-nav">
                <For
                    each=move || workspace.rooms.with(|rooms| rooms.ids())
                    key=|room_id| room_id.clone()
                    children=move |room_id| view! { <RoomLink room_id/> }
                />
            </ul>
            <OpenRoomForm input_id="sidebar-room-input" label="Join or create a room" button="Join"/>
            <NotificationSwitch/>
            <p class="hint shortcuts">"Alt+↑/↓ rooms · Alt+Shift+↑/↓ unread rooms · Alt+J first unread"</p>
        </nav>
    }
}

#[component]
fn RoomLink(room_id: String) -> impl IntoView {
    let workspace = Workspace::expect();
    let location = Location::expect();
    let href = format!("/rooms/{room_id}");
    let current = {
        let room_id = room_id.clone();
        move || {
            location
                .path
                .with(|path| crate::routing::room_of(path).as_ref() == Some(&room_id))
        }
    };
    let badge = {
        let room_id = room_id.clone();
        move || {
            workspace.rooms.with(|rooms| {
                rooms
                    .get(&room_id)
                    .map(|room| (room.unread, room.unread_label(), room.mentions))
            })
        }
    };
    let unread = badge.clone();
    let mentions = badge.clone();
    let leave = {
        let room_id = room_id.clone();
        let current = current.clone();
        move |_| {
            let room_id = room_id.clone();
            let was_current = current();
            leptos::task::spawn_local(async move {
                if run(LeaveRoom {
                    room: room_id.clone(),
                })
                .await
                .is_ok()
                {
                    workspace.left(&room_id);
                    if was_current {
                        location.navigate("/");
                    }
                }
            });
        }
    };
    let label = format!("Leave #{room_id}");
    let is_current = current.clone();
    view! {
        <li class:current=current.clone() class:unread=move || unread().is_some_and(|(n, _, _)| n > 0)>
            <a href=href aria-current=move || is_current().then_some("page") data-room=room_id.clone()>
                <span class="room-name">"#" {room_id.clone()}</span>
                {move || mentions().filter(|(_, _, m)| *m > 0).map(|(_, _, m)| view! {
                    <span class="badge mention" data-testid="mention-badge" title="Mentions of you">
                        "@" {m}
                        <span class="visually-hidden">{if m == 1 { " mention" } else { " mentions" }}</span>
                    </span>
                })}
                {move || badge().filter(|(n, _, _)| *n > 0).map(|(_, text, _)| view! {
                    <span class="badge unread" data-testid="unread-badge">
                        {text}<span class="visually-hidden">" unread"</span>
                    </span>
                })}
            </a>
            <button type="button" class="leave" title=label.clone() aria-label=label on:click=leave>"×"</button>
        </li>
    }
}

/// Alt+↑/↓: the previous or next room; Alt+Shift+↑/↓: the previous or next room with unread
/// messages; Alt+J: the first unread message of this room. (Physical keys, so that layouts
/// where Alt types a character work too.)
fn keyboard_shortcuts(workspace: Workspace) {
    let location = Location::expect();
    let handle = window_event_listener(leptos::ev::keydown, move |ev| {
        if !ev.alt_key() || ev.ctrl_key() || ev.meta_key() {
            return;
        }
        let forward = match ev.code().as_str() {
            "ArrowDown" => true,
            "ArrowUp" => false,
            "KeyJ" => {
                ev.prevent_default();
                jump_to_first_unread();
                return;
            }
            _ => return,
        };
        let current = location
            .path
            .with_untracked(|path| crate::routing::room_of(path));
        let target = workspace
            .rooms
            .with_untracked(|rooms| rooms.neighbour(current.as_deref(), forward, ev.shift_key()));
        if let Some(room) = target {
            ev.prevent_default();
            location.navigate(&format!("/rooms/{room}"));
        }
    });
    on_cleanup(move || handle.remove());
}

fn jump_to_first_unread() {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(button) = document()
            .query_selector("[data-testid=jump-unread]")
            .ok()
            .flatten()
            .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
        {
            button.click();
        }
    }
}

/// "Notify me of mentions": asks the browser once; hidden when already answered.
#[component]
fn NotificationSwitch() -> impl IntoView {
    let askable = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| askable.set(crate::notify::can_ask()));
    let ask = move |_| {
        #[cfg(feature = "hydrate")]
        crate::notify::ask(move || askable.set(crate::notify::can_ask()));
    };
    view! {
        {move || askable.get().then(|| view! {
            <button type="button" class="link notify" on:click=ask>"Notify me when I am mentioned"</button>
        })}
    }
}

//! The reader's workspace: their room list with unread and mention counts, the connection
//! state, the rooms open on screen, and (in the browser) the one live connection that carries
//! every room of the list. Provided once by `App`; the sidebar, the room page and the tab
//! title read it.
//!
//! On the server it is filled from the page's data, so the sidebar is in the first response;
//! in the browser the same data is loaded during hydration and the live connection keeps it
//! current from then on.

use crate::chat::{ChatLog, ConnStatus};
use crate::protocol::{RoomEntry, User};
use crate::unread::RoomList;
use leptos::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Copy)]
pub struct Workspace {
    pub rooms: RwSignal<RoomList>,
    pub status: RwSignal<ConnStatus>,
    /// Who the workspace belongs to (none: nobody is signed in).
    pub me: RwSignal<Option<User>>,
    /// The rooms shown on screen, by id: live events for them go to their log too.
    pub(crate) open: StoredValue<HashMap<String, RwSignal<ChatLog>>>,
    /// Bumped when the server ended our session (signed out elsewhere): what depends on who
    /// is signed in loads again.
    pub session_ended: RwSignal<usize>,
    #[cfg(feature = "hydrate")]
    live: StoredValue<Option<crate::live::Live>, LocalStorage>,
}

impl Workspace {
    /// `session_ended`: the session's signal for "the server ended it" ([`Session`]).
    ///
    /// [`Session`]: crate::components::Session
    pub fn provide(session_ended: RwSignal<usize>) -> Self {
        let workspace = Workspace {
            rooms: RwSignal::new(RoomList::default()),
            status: RwSignal::new(ConnStatus::Connecting),
            me: RwSignal::new(None),
            open: StoredValue::new(HashMap::new()),
            session_ended,
            #[cfg(feature = "hydrate")]
            live: StoredValue::new_local(None),
        };
        provide_context(workspace);
        #[cfg(feature = "hydrate")]
        workspace.follow_the_signed_in_user();
        workspace
    }

    pub fn expect() -> Self {
        expect_context::<Workspace>()
    }

    /// The page's data arrived: who is signed in and their rooms.
    pub fn load(&self, me: Option<User>, rooms: Vec<RoomEntry>) {
        let same_user = self.me.with_untracked(|current| {
            current.as_ref().map(|u| &u.id) == me.as_ref().map(|u| &u.id)
        });
        if !same_user {
            self.me.set(me);
        }
        let fresh = RoomList::new(rooms);
        if self
            .rooms
            .with_untracked(|rooms| rooms.ids() != fresh.ids())
            || !same_user
        {
            self.rooms.set(fresh);
        }
    }

    /// A room page opened: its log receives the room's live events from now on.
    pub fn open_room(&self, room_id: &str, log: RwSignal<ChatLog>) {
        self.open.update_value(|open| {
            open.insert(room_id.to_string(), log);
        });
        if self.me.with_untracked(Option::is_some) {
            self.rooms.update(|rooms| rooms.add(room_id));
        }
        #[cfg(feature = "hydrate")]
        self.with_live(|live| live.join(room_id));
    }

    /// The room page closed (the room stays joined, in the background).
    pub fn close_room(&self, room_id: &str, log: RwSignal<ChatLog>) {
        self.open.update_value(|open| {
            if open.get(room_id) == Some(&log) {
                open.remove(room_id);
            }
        });
    }

    /// The log of an open room.
    #[cfg(feature = "hydrate")]
    pub(crate) fn log(&self, room_id: &str) -> Option<RwSignal<ChatLog>> {
        self.open.with_value(|open| open.get(room_id).copied())
    }

    #[cfg(feature = "hydrate")]
    pub(crate) fn with_live(&self, f: impl FnOnce(&crate::live::Live)) {
        self.live.with_value(|live| {
            if let Some(live) = live {
                f(live);
            }
        });
    }

    /// Starts the live connection for whoever is signed in, and stops it when they sign out
    /// (or another person signs in).
    #[cfg(feature = "hydrate")]
    fn follow_the_signed_in_user(self) {
        Effect::new(move |previous: Option<Option<String>>| {
            let user = self.me.with(|me| me.as_ref().map(|me| me.id.clone()));
            if previous.as_ref() != Some(&user) {
                self.live.update_value(|live| {
                    if let Some(live) = live.take() {
                        live.stop();
                    }
                    if user.is_some() {
                        *live = Some(crate::live::Live::start(self));
                    } else {
                        self.status.set(ConnStatus::SignedOut);
                    }
                });
            }
            user
        });
        on_cleanup(move || self.with_live(crate::live::Live::stop));
    }
}

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
use std::collections::{HashMap, HashSet};

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
    /// Bumped when the list may have changed in another tab or on another device: the
    /// sidebar loads it again ([`crate::room_list_sync`]).
    pub list_changed: RwSignal<usize>,
    /// Rooms this tab just put on the list: the other tabs are told once the server has
    /// followed them (their join was answered).
    announce: StoredValue<HashSet<String>>,
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
            list_changed: RwSignal::new(0),
            announce: StoredValue::new(HashSet::new()),
            #[cfg(feature = "hydrate")]
            live: StoredValue::new_local(None),
        };
        provide_context(workspace);
        #[cfg(feature = "hydrate")]
        {
            workspace.follow_the_signed_in_user();
            crate::room_list_sync::listen(workspace.list_changed);
        }
        workspace
    }

    pub fn expect() -> Self {
        expect_context::<Workspace>()
    }

    /// The page's data arrived: who is signed in and their rooms. For the same reader, the
    /// list is merged (rooms kept keep their live counts) and the live connection joins the
    /// rooms added elsewhere and leaves the ones left elsewhere, unless one is open here.
    pub fn load(&self, me: Option<User>, rooms: Vec<RoomEntry>) {
        let same_user = self.me.with_untracked(|current| {
            current.as_ref().map(|u| &u.id) == me.as_ref().map(|u| &u.id)
        });
        if !same_user {
            self.me.set(me);
            self.rooms.set(RoomList::new(rooms));
            return;
        }
        let unchanged = self.rooms.with_untracked(|list| {
            list.rooms
                .iter()
                .map(|room| &room.room_id)
                .eq(rooms.iter().map(|entry| &entry.room_id))
        });
        if unchanged {
            return;
        }
        let Some((added, removed)) = self.rooms.try_update(|list| list.merge(rooms)) else {
            return;
        };
        #[cfg(feature = "hydrate")]
        self.with_live(|live| {
            added.iter().for_each(|room| live.join(room));
            removed
                .iter()
                .filter(|room| self.log(room).is_none())
                .for_each(|room| live.leave(room));
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = (added, removed);
    }

    /// A room page opened: its log receives the room's live events from now on.
    pub fn open_room(&self, room_id: &str, log: RwSignal<ChatLog>) {
        self.open.update_value(|open| {
            open.insert(room_id.to_string(), log);
        });
        if self.me.with_untracked(Option::is_some)
            && self.rooms.try_update(|rooms| rooms.add(room_id)) == Some(true)
        {
            self.announce.update_value(|announce| {
                announce.insert(room_id.to_string());
            });
        }
        #[cfg(feature = "hydrate")]
        self.with_live(|live| live.join(room_id));
    }

    /// The server answered our join of `room_id`: if this tab just put it on the list, the
    /// other tabs are told now that the server lists it too.
    #[cfg(feature = "hydrate")]
    pub(crate) fn joined(&self, room_id: &str) {
        let mut first_join = false;
        self.announce
            .update_value(|announce| first_join = announce.remove(room_id));
        if first_join {
            crate::room_list_sync::announce();
        }
    }

    /// The reader took a room off their list here: the live connection leaves it and the
    /// other tabs are told.
    pub(crate) fn left(&self, room_id: &str) {
        self.rooms.update(|rooms| rooms.remove(room_id));
        #[cfg(feature = "hydrate")]
        {
            self.with_live(|live| live.leave(room_id));
            crate::room_list_sync::announce();
        }
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

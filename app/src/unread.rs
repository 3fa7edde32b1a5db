//! The reader's room list as the sidebar shows it: each room with its unread and mention
//! counts, kept current by the live connection. Plain data, tested natively.
//!
//! The server is the authority: a `room_history` or `read` event brings counts it computed
//! from the stored messages after the reader's position, up to a message (`upto`). Messages
//! that arrive live after that are counted here. A `read` event may have been computed before
//! a message that this tab has already counted: the room remembers the live messages it
//! counted recently, so it adds back the ones newer than the server's `upto` instead of
//! losing them.

use crate::mention::mentions;
use crate::protocol::{ChatMessage, ReadState, RoomEntry, ServerMsg, User, UNREAD_COUNT_MAX};
use crate::validate::MessageId;
use std::cmp::Ordering;

/// Live messages a room remembers for recounting (more than a screenful arriving between a
/// read and its answer is not worth more memory).
const RECENT_MAX: usize = 200;

/// One room of the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomBadge {
    pub room_id: String,
    pub unread: u32,
    pub mentions: u32,
    /// The reader's read position (none: from the room's start).
    pub last_read: Option<String>,
    /// The newest message the counts include.
    upto: Option<String>,
    /// Live messages counted here, newest last: (id, by someone else, mentions the reader).
    recent: Vec<(String, bool, bool)>,
    /// The newest message seen in the room, and the epoch of its history: where a background
    /// room resumes after a reconnect.
    pub newest: Option<String>,
    pub epoch: Option<String>,
}

/// What a live event meant for the reader, for notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mentioned {
    pub room_id: String,
    pub by: String,
    pub content: String,
}

fn newer(id: &str, than: Option<&str>) -> bool {
    than.is_none_or(|than| MessageId::compare(id, than) == Ordering::Greater)
}

impl RoomBadge {
    pub fn new(room_id: String, read: ReadState) -> Self {
        let mut badge = RoomBadge {
            room_id,
            ..RoomBadge::default()
        };
        badge.set(read);
        badge
    }

    /// The unread count as shown: "99+" past the cap.
    pub fn unread_label(&self) -> String {
        if self.unread >= UNREAD_COUNT_MAX {
            format!("{}+", UNREAD_COUNT_MAX - 1)
        } else {
            self.unread.to_string()
        }
    }

    /// Takes the server's counts, then adds the live messages it had not counted.
    fn set(&mut self, read: ReadState) {
        self.unread = read.unread;
        self.mentions = read.mentions;
        self.last_read = read.last_read;
        self.upto = read.upto.or_else(|| self.last_read.clone());
        if let Some(upto) = &self.upto {
            self.see(upto.clone());
        }
        let (upto, last_read) = (self.upto.clone(), self.last_read.clone());
        for (id, by_other, mentioned) in &self.recent {
            if newer(id, upto.as_deref()) && newer(id, last_read.as_deref()) {
                self.unread = (self.unread + u32::from(*by_other)).min(UNREAD_COUNT_MAX);
                self.mentions += u32::from(*mentioned);
                self.upto = Some(id.clone());
            }
        }
    }

    fn see(&mut self, id: String) {
        if newer(&id, self.newest.as_deref()) {
            self.newest = Some(id);
        }
    }

    /// A message arrived: counted unless the counts include it already. Returns whether it
    /// is news that mentions the reader.
    fn count(&mut self, message: &ChatMessage, me: &User) -> bool {
        self.see(message.id.clone());
        if !newer(&message.id, self.upto.as_deref())
            || !newer(&message.id, self.last_read.as_deref())
        {
            return false;
        }
        let by_other = message.user_id != me.id;
        let mentioned = by_other && mentions(&message.content, &me.name);
        self.upto = Some(message.id.clone());
        self.unread = (self.unread + u32::from(by_other)).min(UNREAD_COUNT_MAX);
        self.mentions += u32::from(mentioned);
        self.recent.push((message.id.clone(), by_other, mentioned));
        if self.recent.len() > RECENT_MAX {
            self.recent.remove(0);
        }
        mentioned
    }
}

/// The reader's rooms, in the order they came to them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomList {
    pub rooms: Vec<RoomBadge>,
}

impl RoomList {
    pub fn new(entries: Vec<RoomEntry>) -> Self {
        RoomList {
            rooms: entries
                .into_iter()
                .map(|entry| RoomBadge::new(entry.room_id, entry.read))
                .collect(),
        }
    }

    pub fn get(&self, room_id: &str) -> Option<&RoomBadge> {
        self.rooms.iter().find(|room| room.room_id == room_id)
    }

    fn get_mut(&mut self, room_id: &str) -> Option<&mut RoomBadge> {
        self.rooms.iter_mut().find(|room| room.room_id == room_id)
    }

    pub fn contains(&self, room_id: &str) -> bool {
        self.get(room_id).is_some()
    }

    pub fn ids(&self) -> Vec<String> {
        self.rooms.iter().map(|room| room.room_id.clone()).collect()
    }

    /// Adds a room at the end (a room already listed stays where it is). True when it was
    /// not listed.
    pub fn add(&mut self, room_id: &str) -> bool {
        if self.contains(room_id) {
            return false;
        }
        self.rooms.push(RoomBadge {
            room_id: room_id.to_string(),
            ..RoomBadge::default()
        });
        true
    }

    /// Takes the server's list (after another tab or device joined or left rooms): rooms
    /// still listed keep what this tab counted live, new ones come with the server's counts,
    /// the order is the server's. Returns the rooms added and the rooms removed.
    pub fn merge(&mut self, entries: Vec<RoomEntry>) -> (Vec<String>, Vec<String>) {
        let mut added = Vec::new();
        let mut merged = Vec::with_capacity(entries.len());
        for entry in entries {
            match self
                .rooms
                .iter()
                .position(|room| room.room_id == entry.room_id)
            {
                Some(index) => merged.push(self.rooms.swap_remove(index)),
                None => {
                    added.push(entry.room_id.clone());
                    merged.push(RoomBadge::new(entry.room_id, entry.read));
                }
            }
        }
        let removed = std::mem::replace(&mut self.rooms, merged);
        (
            added,
            removed.into_iter().map(|room| room.room_id).collect(),
        )
    }

    pub fn remove(&mut self, room_id: &str) {
        self.rooms.retain(|room| room.room_id != room_id);
    }

    /// Unread messages in every room, for the tab title.
    pub fn total_unread(&self) -> u32 {
        self.rooms.iter().map(|room| room.unread).sum()
    }

    /// Applies a server event. Returns a mention of the reader that just arrived.
    pub fn apply(&mut self, event: &ServerMsg, me: &User) -> Option<Mentioned> {
        match event {
            ServerMsg::RoomHistory {
                room_id,
                messages,
                epoch,
                read: Some(read),
                ..
            } => {
                self.add(room_id);
                let room = self.get_mut(room_id)?;
                room.epoch = Some(epoch.clone());
                room.set(read.clone());
                for message in messages {
                    room.see(message.id.clone());
                }
                None
            }
            ServerMsg::Message(message) => {
                let room = self.get_mut(&message.room_id)?;
                room.count(message, me).then(|| Mentioned {
                    room_id: message.room_id.clone(),
                    by: message.name.clone(),
                    content: message.content.clone(),
                })
            }
            ServerMsg::Ack { room_id, id, .. } => {
                if let Some(room) = self.get_mut(room_id) {
                    room.see(id.clone());
                }
                None
            }
            ServerMsg::Read { room_id, read } => {
                let room = self.get_mut(room_id)?;
                // An answer to an older position (reads from two tabs crossing) changes nothing.
                let stale = match (&read.last_read, &room.last_read) {
                    (Some(new), Some(old)) => MessageId::compare(new, old) == Ordering::Less,
                    (None, Some(_)) => true,
                    _ => false,
                };
                if !stale {
                    room.set(read.clone());
                }
                None
            }
            _ => None,
        }
    }

    /// The room before or after `current` in the list (wrapping around), or the first one;
    /// with `unread_only`, the nearest one with unread messages (keyboard navigation).
    pub fn neighbour(
        &self,
        current: Option<&str>,
        forward: bool,
        unread_only: bool,
    ) -> Option<String> {
        let count = self.rooms.len();
        let at = current.and_then(|current| self.rooms.iter().position(|r| r.room_id == current));
        (1..=count)
            .map(|step| match (at, forward) {
                (Some(at), true) => (at + step) % count,
                (Some(at), false) => (at + count - step % count) % count,
                (None, true) => step - 1,
                (None, false) => count - step,
            })
            .map(|i| &self.rooms[i])
            .find(|room| {
                Some(room.room_id.as_str()) != current && (!unread_only || room.unread > 0)
            })
            .map(|room| room.room_id.clone())
    }

    /// Whether reading up to `id` in the room would move the reader's position.
    pub fn would_advance(&self, room_id: &str, id: &str) -> bool {
        self.get(room_id)
            .is_some_and(|room| newer(id, room.last_read.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> User {
        User {
            id: "u-ana".into(),
            name: "Ana".into(),
            guest: false,
        }
    }

    fn message(id: &str, by: &str, content: &str) -> ServerMsg {
        ServerMsg::Message(ChatMessage {
            id: id.into(),
            room_id: "r".into(),
            user_id: format!("u-{}", by.to_lowercase()),
            name: by.into(),
            content: content.into(),
            timestamp: 1,
            server_id: "s".into(),
            client_msg_id: None,
        })
    }

    fn read(last_read: &str, unread: u32, mentions: u32, upto: &str) -> ReadState {
        ReadState {
            last_read: Some(last_read.into()),
            unread,
            mentions,
            upto: Some(upto.into()),
        }
    }

    fn list() -> RoomList {
        RoomList::new(vec![RoomEntry {
            room_id: "r".into(),
            read: read("5-0", 2, 1, "7-0"),
        }])
    }

    #[test]
    fn live_messages_after_the_counted_ones_are_added_once() {
        let mut list = list();
        // Counted by the server already.
        assert_eq!(list.apply(&message("7-0", "Bo", "@ana hi"), &me()), None);
        assert_eq!(list.get("r").unwrap().unread, 2);
        let mention = list.apply(&message("8-0", "Bo", "@Ana look"), &me());
        assert_eq!(mention.map(|m| m.by), Some("Bo".into()));
        list.apply(&message("9-0", "Ana", "mine, @Ana"), &me());
        let room = list.get("r").unwrap();
        assert_eq!((room.unread, room.mentions), (3, 2));
        assert_eq!(room.newest.as_deref(), Some("9-0"));
    }

    #[test]
    fn a_read_computed_before_a_live_message_keeps_counting_it() {
        let mut list = list();
        list.apply(&message("8-0", "Bo", "@ana"), &me());
        // Another tab read up to 7-0; the server counted nothing after it yet.
        list.apply(
            &ServerMsg::Read {
                room_id: "r".into(),
                read: read("7-0", 0, 0, "7-0"),
            },
            &me(),
        );
        let room = list.get("r").unwrap();
        assert_eq!((room.unread, room.mentions), (1, 1));
        // Then everything is read.
        list.apply(
            &ServerMsg::Read {
                room_id: "r".into(),
                read: read("8-0", 0, 0, "8-0"),
            },
            &me(),
        );
        let room = list.get("r").unwrap();
        assert_eq!((room.unread, room.mentions), (0, 0));
        // A late answer to an older read changes nothing.
        list.apply(
            &ServerMsg::Read {
                room_id: "r".into(),
                read: read("6-0", 3, 0, "8-0"),
            },
            &me(),
        );
        assert_eq!(list.get("r").unwrap().unread, 0);
        assert!(!list.would_advance("r", "8-0"));
        assert!(list.would_advance("r", "8-1"));
    }

    #[test]
    fn counts_stop_at_the_cap_and_show_as_many() {
        let mut list = RoomList::new(vec![RoomEntry {
            room_id: "r".into(),
            read: read("1-0", UNREAD_COUNT_MAX - 1, 0, "2-0"),
        }]);
        list.apply(&message("3-0", "Bo", "x"), &me());
        list.apply(&message("4-0", "Bo", "x"), &me());
        assert_eq!(list.get("r").unwrap().unread, UNREAD_COUNT_MAX);
        assert_eq!(list.get("r").unwrap().unread_label(), "99+");
        assert_eq!(list.total_unread(), UNREAD_COUNT_MAX);
    }

    #[test]
    fn keyboard_navigation_moves_through_the_list_and_to_unread_rooms() {
        let mut list = RoomList::default();
        for room in ["a", "b", "c", "d"] {
            list.add(room);
        }
        list.rooms[3].unread = 2;
        let next =
            |current: Option<&str>, forward, unread| list.neighbour(current, forward, unread);
        assert_eq!(next(Some("a"), true, false).as_deref(), Some("b"));
        assert_eq!(next(Some("a"), false, false).as_deref(), Some("d"));
        assert_eq!(next(Some("d"), true, false).as_deref(), Some("a"));
        assert_eq!(next(None, true, false).as_deref(), Some("a"));
        assert_eq!(next(Some("a"), true, true).as_deref(), Some("d"));
        assert_eq!(
            next(Some("d"), true, true),
            None,
            "no other room has unread messages"
        );
        assert_eq!(RoomList::default().neighbour(None, true, false), None);
    }

    #[test]
    fn joining_a_room_adds_it_with_the_servers_counts() {
        let mut list = RoomList::default();
        list.apply(
            &ServerMsg::RoomHistory {
                room_id: "new".into(),
                messages: vec![],
                has_more: false,
                recovered: None,
                members: vec![],
                members_total: None,
                epoch: "e".into(),
                read: Some(ReadState::default()),
            },
            &me(),
        );
        assert_eq!(list.ids(), ["new"]);
        assert_eq!(list.get("new").unwrap().epoch.as_deref(), Some("e"));
        list.remove("new");
        assert!(list.rooms.is_empty());
    }

    fn entry(room_id: &str, read: ReadState) -> RoomEntry {
        RoomEntry {
            room_id: room_id.into(),
            read,
        }
    }

    #[test]
    fn merging_the_servers_list_keeps_live_counts_and_reports_changes() {
        let mut list = RoomList::new(vec![
            entry("a", ReadState::default()),
            entry("b", ReadState::default()),
        ]);
        let ServerMsg::Message(mut in_a) = message("0001-0", "Bo", "hi") else {
            unreachable!()
        };
        in_a.room_id = "a".into();
        list.apply(&ServerMsg::Message(in_a), &me());
        let counted_here = list.get("a").cloned().expect("room a");
        assert_eq!(counted_here.unread, 1);

        // Another tab left "b" and joined "c"; the server's (older) counts for "a" say 0.
        let (added, removed) = list.merge(vec![
            entry("c", read("0009-0", 4, 1, "0013-0")),
            entry("a", ReadState::default()),
        ]);
        assert_eq!(added, vec!["c".to_string()]);
        assert_eq!(removed, vec!["b".to_string()]);
        assert_eq!(list.ids(), vec!["c".to_string(), "a".to_string()]);
        assert_eq!(list.get("a"), Some(&counted_here));
        let c = list.get("c").expect("room c");
        assert_eq!((c.unread, c.mentions), (4, 1));

        let (added, removed) = list.merge(vec![
            entry("c", ReadState::default()),
            entry("a", ReadState::default()),
        ]);
        assert!(added.is_empty() && removed.is_empty());
    }
}

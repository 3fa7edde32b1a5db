//! Key and channel names, all under one prefix (`--redis-prefix`).
//!
//! In a Redis Cluster, keys a script or transaction touches together must hash to one slot.
//! There every key of a room carries the room as a *hash tag* (`P:room:{general}:log`), every
//! key of a user the user (`P:user:{u}:rooms`), and a session's record and tombstone the
//! session id, so one room's post (append, publish, dedupe) stays one atomic script on one
//! node. On one Redis or on shards the names stay as they always were (no braces), so
//! existing deployments keep their data.

use crate::engine::SessionId;

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    /// Braces around the part that must decide the slot (cluster mode).
    tagged: bool,
}

impl Keys {
    pub fn new(prefix: &str, tagged: bool) -> Self {
        Keys {
            prefix: prefix.to_string(),
            tagged,
        }
    }

    /// `name`, as a hash tag when slots matter.
    fn tag<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        if self.tagged {
            format!("{{{name}}}").into()
        } else {
            name.into()
        }
    }

    fn room(&self, room: &str, what: &str) -> String {
        format!("{}:room:{}:{what}", self.prefix, self.tag(room))
    }

    pub fn log(&self, room: &str) -> String {
        self.room(room, "log")
    }
    pub fn channel(&self, room: &str) -> String {
        self.room(room, "ch")
    }
    pub fn epoch(&self, room: &str) -> String {
        self.room(room, "epoch")
    }
    pub fn sent(&self, room: &str, user_id: &str, client_msg_id: &str) -> String {
        self.room(room, &format!("sent:{user_id}:{client_msg_id}"))
    }
    pub fn members(&self, room: &str) -> String {
        self.room(room, "members")
    }
    /// The room a room channel belongs to (None for any other channel).
    pub fn room_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let room = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":room:")?
            .strip_suffix(":ch")?;
        if self.tagged {
            room.strip_prefix('{')?.strip_suffix('}')
        } else {
            Some(room)
        }
    }
    pub fn probe(&self, sid: &str) -> String {
        format!("{}:probe:{sid}", self.prefix)
    }
    pub fn online(&self) -> String {
        format!("{}:online", self.prefix)
    }
    pub fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }
    pub fn active_rooms(&self) -> String {
        format!("{}:active-rooms", self.prefix)
    }
    pub fn lease(&self, sid: &str) -> String {
        format!("{}:instance:{sid}", self.prefix)
    }
    pub fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }
    pub fn instance_rooms(&self, sid: &str) -> String {
        format!("{}:instance:{sid}:rooms", self.prefix)
    }
    pub fn session(&self, id: &SessionId) -> String {
        format!("{}:session:{}", self.prefix, self.tag(&id.to_string()))
    }
    pub fn ended(&self, id: &SessionId) -> String {
        format!("{}:ended:{}", self.prefix, self.tag(&id.to_string()))
    }
    pub fn account(&self, key: &str) -> String {
        format!("{}:account:{key}", self.prefix)
    }
    pub fn counter(&self, key: &str) -> String {
        format!("{}:count:{key}", self.prefix)
    }
    pub fn user_rooms(&self, user: &str) -> String {
        format!("{}:user:{}:rooms", self.prefix, self.tag(user))
    }
    pub fn user_read(&self, user: &str) -> String {
        format!("{}:user:{}:read", self.prefix, self.tag(user))
    }
    pub fn control(&self) -> String {
        format!("{}:control", self.prefix)
    }
    /// A work queue's jobs (a Stream with a consumer group per worker group).
    pub fn queue(&self, queue: &str) -> String {
        format!("{}:queue:{}:jobs", self.prefix, self.tag(queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_as_they_were() {
        let keys = Keys::new("confab", false);
        assert_eq!(keys.log("general"), "confab:room:general:log");
        assert_eq!(keys.user_read("u1"), "confab:user:u1:read");
        assert_eq!(
            keys.room_of_channel("confab:room:general:ch"),
            Some("general")
        );
        assert_eq!(keys.room_of_channel("confab:control"), None);
    }

    #[test]
    fn a_rooms_keys_share_one_hash_tag_in_a_cluster() {
        let keys = Keys::new("confab", true);
        assert_eq!(keys.log("general"), "confab:room:{general}:log");
        assert_eq!(
            keys.sent("general", "u1", "c1"),
            "confab:room:{general}:sent:u1:c1"
        );
        assert_eq!(keys.channel("general"), "confab:room:{general}:ch");
        assert_eq!(
            keys.room_of_channel("confab:room:{general}:ch"),
            Some("general")
        );
        assert_eq!(keys.user_rooms("u1"), "confab:user:{u1}:rooms");
        let id = SessionId([7; 32]);
        assert!(keys.session(&id).ends_with(&format!("{{{id}}}")));
        assert!(keys.ended(&id).ends_with(&format!("{{{id}}}")));
    }
}

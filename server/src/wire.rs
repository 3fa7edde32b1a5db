//! What travels between the parts of an instance and between instances: encoded server
//! events ([`Frame`]), connection ids, and the pub/sub [`Envelope`].
//!
//! A leaf: it imports nothing of this crate, so the engines, the hub and the node can all
//! speak it without depending on each other.

use app::protocol::ServerMsg;
use app::validate::MessageId;

/// An encoded server event: cheap to clone, shared by all recipients.
pub type Frame = tungstenite::Utf8Bytes;

/// Encodes a server event once, for any number of recipients.
pub fn encode(msg: &ServerMsg) -> Frame {
    Frame::from(serde_json::to_string(msg).expect("server events always serialize"))
}

/// The length of `value` as JSON, counted as it is written (nothing is allocated): how
/// answers are cut to what a connection can be sent, and how publication data is measured.
pub fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The hub and engine key of a channel. Room ids never hold `#`, so the two never meet.
pub fn channel_key(channel: &str) -> String {
    format!("#{channel}")
}

/// The channel a hub key names, if it names one (not a room).
pub fn channel_of(key: &str) -> Option<&str> {
    key.strip_prefix('#')
}

/// A channel's namespace: the part of its name before the first `:` (none: `""`). The
/// namespaces' rules are looked up by it.
pub fn namespace_of(channel: &str) -> &str {
    channel
        .split_once(':')
        .map_or("", |(namespace, _)| namespace)
}

/// A publication as its subscribers receive it: `{"type":"publication","channel",...}`.
/// Borrowed, so publishing does not copy the data to encode it once.
#[derive(serde::Serialize)]
#[serde(tag = "type", rename = "publication")]
struct PublicationFrame<'a> {
    channel: &'a str,
    data: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<String>,
}

/// Encodes a publication (with its offset in history, when kept), as
/// [`ServerMsg::Publication`] does.
pub fn publication(channel: &str, data: &serde_json::Value, offset: Option<MessageId>) -> Frame {
    let frame = PublicationFrame {
        channel,
        data,
        offset: offset.map(|id| id.to_string()),
    };
    Frame::from(serde_json::to_string(&frame).expect("publications always serialize"))
}

/// A publication's frame cut where its offset goes, for a store that assigns the offset
/// while it publishes (the Redis script): `prefix + offset + suffix` is the frame.
pub fn publication_around_offset(channel: &str, data: &serde_json::Value) -> (String, String) {
    let mut prefix = publication(channel, data, None).to_string();
    // The offset is the last field: drop the closing brace and open it.
    prefix.pop();
    prefix.push_str(r#","offset":""#);
    (prefix, "\"}".to_string())
}

/// A connection's id, unique within this instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// A room event on its way to the instances that have members in the room.
///
/// On the wire (Redis pub/sub) it is one line of head and then the encoded event, so a
/// receiving instance forwards the event's bytes to its members without decoding them:
///
/// ```text
/// <origin> <message id>\n{"type":"message",...}
/// ```
///
/// `origin` is the sending connection (`server/n`, skipped when delivering) or `-`;
/// `message id` is the stored id of a chat message or `-` for other events (typing, joins).
/// An event for one user's connections only (their read position) adds that user's id:
/// `- - <user id>\n{...}`.
/// The Redis post script writes the same head around the id it assigns
/// ([`Envelope::message_head`]), so both sides of the format are in this file.
///
/// The previous format, `<origin>\n{...}` without an id, is still read, so instances of the
/// two versions keep delivering each other's events during a rolling upgrade (its messages
/// carry no id, so they skip the once-only check, as they did before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// `server/n` of the connection that caused the event (borrowed: a receiving instance
    /// reads it straight from the payload, once per event, without allocating).
    pub origin: Option<&'a str>,
    /// The id of the chat message this event carries.
    pub message: Option<MessageId>,
    /// The only user whose connections get the event (none: every member of the room).
    pub to: Option<&'a str>,
    pub frame: Frame,
}

/// Why a pub/sub payload could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("no envelope head")]
    NoHead,
    #[error("malformed envelope head")]
    BadHead,
    #[error("the event is not UTF-8")]
    NotUtf8,
}

/// The `server/n` key of a connection, as other instances see it.
pub fn origin_key(server_id: &str, conn: ConnectionId) -> String {
    format!("{server_id}/{}", conn.0)
}

/// The connection to skip when delivering on `server_id` an event caused by `origin`
/// (`server/n`): the origin itself, if it is one of ours.
pub fn skip_for(origin: Option<&str>, server_id: &str) -> Option<ConnectionId> {
    let (sid, n) = origin?.split_once('/')?;
    (sid == server_id)
        .then(|| n.parse().ok().map(ConnectionId))
        .flatten()
}

impl<'a> Envelope<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let origin = self.origin.unwrap_or("-");
        let id = self
            .message
            .map_or_else(|| "-".to_string(), |id| id.to_string());
        let to = self.to.unwrap_or("");
        let mut payload =
            Vec::with_capacity(origin.len() + id.len() + to.len() + 3 + self.frame.len());
        payload.extend_from_slice(origin.as_bytes());
        payload.push(b' ');
        payload.extend_from_slice(id.as_bytes());
        if self.to.is_some() {
            payload.push(b' ');
            payload.extend_from_slice(to.as_bytes());
        }
        payload.push(b'\n');
        payload.extend_from_slice(self.frame.as_bytes());
        payload
    }

    /// The head before a message id, as the post script needs it: `<origin> `.
    pub fn message_head(origin: Option<&str>) -> String {
        format!("{} ", origin.unwrap_or("-"))
    }

    pub fn decode(payload: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        let split = payload
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(EnvelopeError::NoHead)?;
        let head = std::str::from_utf8(&payload[..split]).map_err(|_| EnvelopeError::BadHead)?;
        let mut parts = head.splitn(3, ' ');
        let origin = parts.next().unwrap_or("-");
        let id = parts.next().unwrap_or("-");
        let to = match parts.next() {
            Some("") => return Err(EnvelopeError::BadHead),
            to => to,
        };
        let origin = (origin != "-").then_some(origin);
        let message = match id {
            "-" => None,
            id => Some(MessageId::parse(id).map_err(|_| EnvelopeError::BadHead)?),
        };
        let frame =
            Frame::try_from(payload[split + 1..].to_vec()).map_err(|_| EnvelopeError::NotUtf8)?;
        Ok(Envelope {
            origin,
            message,
            to,
            frame,
        })
    }

    /// The connection to skip when delivering on `server_id`: the origin, if it is ours.
    pub fn skip_on(&self, server_id: &str) -> Option<ConnectionId> {
        skip_for(self.origin, server_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips_with_and_without_origin_and_id() {
        for (origin, message, to) in [
            (Some("s1/7"), Some(MessageId { ms: 5, seq: 2 }), None),
            (None, None, None),
            (None, None, Some("u-42")),
        ] {
            let envelope = Envelope {
                origin,
                message,
                to,
                frame: Frame::from(r#"{"type":"pong"}"#),
            };
            assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope));
        }
    }

    #[test]
    fn the_post_script_head_decodes_as_an_envelope() {
        let payload = format!(
            "{}{}\n{}",
            Envelope::message_head(Some("s1/3")),
            "17-4",
            r#"{"type":"message"}"#
        );
        let envelope = Envelope::decode(payload.as_bytes()).unwrap();
        assert_eq!(envelope.message, Some(MessageId { ms: 17, seq: 4 }));
        assert_eq!(envelope.skip_on("s1"), Some(ConnectionId(3)));
        assert_eq!(envelope.skip_on("s2"), None);
    }

    #[test]
    fn the_previous_format_is_still_read_during_a_rolling_upgrade() {
        let envelope = Envelope::decode(b"s1/4\n{\"type\":\"typing\"}").unwrap();
        assert_eq!(envelope.skip_on("s1"), Some(ConnectionId(4)));
        assert_eq!(envelope.message, None);
        assert_eq!(Envelope::decode(b"-\n{}").unwrap().origin, None);
    }

    #[test]
    fn a_publication_frame_is_the_protocols_with_or_without_offset() {
        let data = serde_json::json!({"cpu": 0.5, "tags": ["a", "\"b\""]});
        let id = MessageId { ms: 17, seq: 4 };
        let event = |offset: Option<String>| ServerMsg::Publication {
            channel: "stats:eu".into(),
            data: data.clone(),
            offset,
        };
        assert_eq!(publication("stats:eu", &data, None), encode(&event(None)));
        let with_offset = encode(&event(Some(id.to_string())));
        assert_eq!(publication("stats:eu", &data, Some(id)), with_offset);
        let (prefix, suffix) = publication_around_offset("stats:eu", &data);
        assert_eq!(format!("{prefix}{id}{suffix}"), with_offset.as_str());
        assert_eq!(channel_of(&channel_key("stats:eu")), Some("stats:eu"));
        assert_eq!(channel_of("general"), None);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        assert_eq!(Envelope::decode(b"no head"), Err(EnvelopeError::NoHead));
        assert_eq!(Envelope::decode(b"\xff -\n{}"), Err(EnvelopeError::BadHead));
        assert_eq!(Envelope::decode(b"- x-y\n{}"), Err(EnvelopeError::BadHead));
        assert_eq!(Envelope::decode(b"- -\n\xff"), Err(EnvelopeError::NotUtf8));
        assert_eq!(Envelope::decode(b"- - \n{}"), Err(EnvelopeError::BadHead));
    }
}

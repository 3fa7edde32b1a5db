//! Reading the server's events in the browser: [`decode`] turns a text frame into a
//! [`ServerMsg`], exactly as `serde_json::from_str::<ServerMsg>` would.
//!
//! Why not serde's derived decoder: `ServerMsg` is internally tagged (`{"type": …}`), and for
//! such enums serde first copies the whole frame into its generic `Content` tree, then reads
//! each of the nineteen variants back out of it through code instantiated for every field type
//! (and a second copy of each variant for frames written as arrays). In the browser that was
//! the largest single piece of the app, in the WASM every page downloads; this decoder took
//! 72 KB off the optimized WASM, 10 KB with Brotli (366,803 → 356,617 bytes). Here the frame is parsed into a JSON `Value` (whose
//! decoder the WASM needs anyway, for publications' data) and each variant's fields are read
//! by name through a handful of small helpers; the nested structs (`ChatMessage`, `Member`,
//! `ReadState`, publications) still use their derived decoders.
//!
//! One difference, on purpose: serde also accepts an event written as a JSON array (the tag
//! first), which no server sends; here an event must be an object.
//!
//! The wire format stays defined once, by the serde attributes in [`crate::protocol`]: the
//! tests below encode every variant with serde and decode it here, and feed both decoders
//! the same malformed frames, so a field renamed there and not here fails them. The server,
//! which only ever encodes these events, keeps serde's decoder for its own tests and tools.

use crate::protocol::{ErrorCode, ServerMsg};
use serde::de::{DeserializeOwned, Error as _};
use serde_json::{Map, Value};

/// Decodes one server event. Unknown fields are ignored; an unknown `type`, a missing field
/// or a field of the wrong type is an error, as with serde's decoder.
pub fn decode(text: &str) -> Result<ServerMsg, serde_json::Error> {
    let Value::Object(map) = crate::page_json::parse(text.as_bytes())? else {
        return Err(serde_json::Error::custom("an event is a JSON object"));
    };
    let mut f = Fields(map);
    let kind = f.string("type")?;
    Ok(match kind.as_str() {
        "connected" => ServerMsg::Connected {
            connection_id: f.string("connectionId")?,
            server_id: f.string("serverId")?,
        },
        "authenticated" => ServerMsg::Authenticated {
            user_id: f.string("userId")?,
            name: f.string("name")?,
            guest: f.bool("guest")?,
        },
        "room_history" => ServerMsg::RoomHistory {
            room_id: f.string("roomId")?,
            messages: f.parse("messages")?,
            has_more: f.bool("hasMore")?,
            recovered: f.opt_bool("recovered")?,
            members: f.parse("members")?,
            members_total: f.opt_parse("membersTotal")?,
            epoch: f.string_or_default("epoch")?,
            read: f.opt_parse("read")?,
        },
        // A newtype variant: the message's own fields sit next to `type`.
        "message" => ServerMsg::Message(serde_json::from_value(Value::Object(f.0))?),
        "read" => ServerMsg::Read {
            room_id: f.string("roomId")?,
            read: f.parse("read")?,
        },
        "ack" => ServerMsg::Ack {
            client_msg_id: f.opt_string("clientMsgId")?,
            id: f.string("id")?,
            room_id: f.string("roomId")?,
            timestamp: f.u64("timestamp")?,
        },
        "user_joined" => ServerMsg::UserJoined {
            room_id: f.string("roomId")?,
            user_id: f.string("userId")?,
            name: f.string("name")?,
            timestamp: f.u64("timestamp")?,
        },
        "user_left" => ServerMsg::UserLeft {
            room_id: f.string("roomId")?,
            user_id: f.string("userId")?,
            name: f.string("name")?,
            timestamp: f.u64("timestamp")?,
        },
        "typing" => ServerMsg::Typing {
            room_id: f.string("roomId")?,
            user_id: f.string("userId")?,
            name: f.string("name")?,
            is_typing: f.bool("isTyping")?,
        },
        "subscribed" => ServerMsg::Subscribed {
            channel: f.string("channel")?,
            recovered: f.opt_bool("recovered")?,
            epoch: f.opt_string("epoch")?,
            publications: f.parse_or_default("publications")?,
            presence: f.opt_parse("presence")?,
            presence_total: f.opt_parse("presenceTotal")?,
        },
        "joined" => ServerMsg::Joined {
            channel: f.string("channel")?,
            user_id: f.string("userId")?,
            name: f.string("name")?,
        },
        "left" => ServerMsg::Left {
            channel: f.string("channel")?,
            user_id: f.string("userId")?,
            name: f.string("name")?,
        },
        "working" => ServerMsg::Working {
            channel: f.string("channel")?,
            group: f.string("group")?,
        },
        "job" => ServerMsg::Job {
            channel: f.string("channel")?,
            group: f.string("group")?,
            id: f.string("id")?,
            data: f.value("data")?,
            attempt: f.u32("attempt")?,
        },
        "done" => ServerMsg::Done {
            channel: f.string("channel")?,
            group: f.string("group")?,
            id: f.string("id")?,
        },
        "unsubscribed" => ServerMsg::Unsubscribed {
            channel: f.string("channel")?,
        },
        "publication" => ServerMsg::Publication {
            channel: f.string("channel")?,
            data: f.value("data")?,
            offset: f.opt_string("offset")?,
        },
        "error" => ServerMsg::Error {
            code: error_code(&f.string("code")?)?,
            error: f.string("error")?,
            room_id: f.opt_string("roomId")?,
            channel: f.opt_string("channel")?,
            client_msg_id: f.opt_string("clientMsgId")?,
            retry_after_ms: f.opt_u64("retryAfterMs")?,
        },
        "pong" => ServerMsg::Pong,
        other => {
            return Err(serde_json::Error::custom(format!(
                "unknown event type `{other}`"
            )))
        }
    })
}

fn error_code(name: &str) -> Result<ErrorCode, serde_json::Error> {
    ErrorCode::ALL
        .into_iter()
        .find(|code| code.as_str() == name)
        .ok_or_else(|| serde_json::Error::custom(format!("unknown error code `{name}`")))
}

/// An event's fields, taken out by name as the variant is built.
struct Fields(Map<String, Value>);

impl Fields {
    /// A field that may be absent; `null` counts as absent, as serde reads it into `Option`.
    fn optional(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key).filter(|value| !value.is_null())
    }

    fn value(&mut self, key: &str) -> Result<Value, serde_json::Error> {
        self.0.remove(key).ok_or_else(|| missing(key))
    }

    fn string(&mut self, key: &str) -> Result<String, serde_json::Error> {
        match self.value(key)? {
            Value::String(s) => Ok(s),
            _ => Err(wrong(key, "a string")),
        }
    }

    fn opt_string(&mut self, key: &str) -> Result<Option<String>, serde_json::Error> {
        match self.optional(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(wrong(key, "a string")),
        }
    }

    /// A field serde fills with its default when absent (`#[serde(default)]`): absent is the
    /// default, but `null` is no string.
    fn string_or_default(&mut self, key: &str) -> Result<String, serde_json::Error> {
        if self.0.contains_key(key) {
            self.string(key)
        } else {
            Ok(String::new())
        }
    }

    fn bool(&mut self, key: &str) -> Result<bool, serde_json::Error> {
        self.value(key)?
            .as_bool()
            .ok_or_else(|| wrong(key, "true or false"))
    }

    fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, serde_json::Error> {
        self.optional(key)
            .map(|value| value.as_bool().ok_or_else(|| wrong(key, "true or false")))
            .transpose()
    }

    fn u64(&mut self, key: &str) -> Result<u64, serde_json::Error> {
        self.value(key)?
            .as_u64()
            .ok_or_else(|| wrong(key, "a whole number"))
    }

    fn opt_u64(&mut self, key: &str) -> Result<Option<u64>, serde_json::Error> {
        self.optional(key)
            .map(|value| value.as_u64().ok_or_else(|| wrong(key, "a whole number")))
            .transpose()
    }

    fn u32(&mut self, key: &str) -> Result<u32, serde_json::Error> {
        u32::try_from(self.u64(key)?).map_err(|_| wrong(key, "a whole number below 2^32"))
    }

    /// A nested struct or list, through its derived decoder.
    fn parse<T: DeserializeOwned>(&mut self, key: &str) -> Result<T, serde_json::Error> {
        serde_json::from_value(self.value(key)?)
    }

    /// A nested struct or list that is its default when absent (`#[serde(default)]`).
    fn parse_or_default<T: DeserializeOwned + Default>(
        &mut self,
        key: &str,
    ) -> Result<T, serde_json::Error> {
        if self.0.contains_key(key) {
            self.parse(key)
        } else {
            Ok(T::default())
        }
    }

    fn opt_parse<T: DeserializeOwned>(
        &mut self,
        key: &str,
    ) -> Result<Option<T>, serde_json::Error> {
        self.optional(key).map(serde_json::from_value).transpose()
    }
}

fn missing(key: &str) -> serde_json::Error {
    serde_json::Error::custom(format!("missing field `{key}`"))
}

fn wrong(key: &str, expected: &str) -> serde_json::Error {
    serde_json::Error::custom(format!("`{key}` must be {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ChatMessage, KeptPublication, Member, ReadState};
    use serde_json::json;

    fn message(client_msg_id: Option<&str>) -> ChatMessage {
        ChatMessage {
            id: "1700000000000-0".into(),
            room_id: "general".into(),
            user_id: "g-1".into(),
            name: "Ana".into(),
            content: "hi **there**".into(),
            timestamp: 1_700_000_000_000,
            server_id: "s1".into(),
            client_msg_id: client_msg_id.map(Into::into),
        }
    }

    fn member(name: &str) -> Member {
        Member {
            user_id: format!("u-{name}"),
            name: name.into(),
        }
    }

    /// Every variant, once with each optional field set and once without.
    fn every_event() -> Vec<ServerMsg> {
        let read = ReadState {
            last_read: Some("1-0".into()),
            unread: 3,
            mentions: 1,
            upto: Some("4-0".into()),
        };
        let mut events = vec![
            ServerMsg::Connected {
                connection_id: "c1".into(),
                server_id: "s1".into(),
            },
            ServerMsg::Authenticated {
                user_id: "g-1".into(),
                name: "Ana".into(),
                guest: true,
            },
            ServerMsg::Message(message(Some("m1"))),
            ServerMsg::Message(message(None)),
            ServerMsg::Read {
                room_id: "general".into(),
                read: ReadState::default(),
            },
            ServerMsg::Read {
                room_id: "general".into(),
                read: read.clone(),
            },
            ServerMsg::UserJoined {
                room_id: "general".into(),
                user_id: "u1".into(),
                name: "Bo".into(),
                timestamp: 5,
            },
            ServerMsg::UserLeft {
                room_id: "general".into(),
                user_id: "u1".into(),
                name: "Bo".into(),
                timestamp: u64::MAX,
            },
            ServerMsg::Typing {
                room_id: "general".into(),
                user_id: "u1".into(),
                name: "Bo".into(),
                is_typing: false,
            },
            ServerMsg::Joined {
                channel: "live:1".into(),
                user_id: "u1".into(),
                name: "Bo".into(),
            },
            ServerMsg::Left {
                channel: "live:1".into(),
                user_id: "u1".into(),
                name: "Bo".into(),
            },
            ServerMsg::Working {
                channel: "jobs:a".into(),
                group: "thumbs".into(),
            },
            ServerMsg::Job {
                channel: "jobs:a".into(),
                group: "thumbs".into(),
                id: "9-0".into(),
                data: json!({"nested": [1, "two", null]}),
                attempt: 2,
            },
            ServerMsg::Done {
                channel: "jobs:a".into(),
                group: "thumbs".into(),
                id: "9-0".into(),
            },
            ServerMsg::Unsubscribed {
                channel: "live:1".into(),
            },
            ServerMsg::Publication {
                channel: "live:1".into(),
                data: json!(null),
                offset: None,
            },
            ServerMsg::Publication {
                channel: "live:1".into(),
                data: json!("text"),
                offset: Some("3-0".into()),
            },
            ServerMsg::Pong,
        ];
        for (recovered, with_read) in [(None, false), (Some(true), true), (Some(false), false)] {
            events.push(ServerMsg::RoomHistory {
                room_id: "general".into(),
                messages: vec![message(None), message(Some("m2"))],
                has_more: with_read,
                recovered,
                members: vec![member("Ana"), member("Bo")],
                members_total: with_read.then_some(3),
                epoch: if with_read {
                    "e1".into()
                } else {
                    String::new()
                },
                read: with_read.then(|| read.clone()),
            });
            events.push(ServerMsg::Ack {
                client_msg_id: with_read.then(|| "m1".into()),
                id: "2-0".into(),
                room_id: "general".into(),
                timestamp: 7,
            });
            events.push(ServerMsg::Subscribed {
                channel: "live:1".into(),
                recovered,
                epoch: with_read.then(|| "e2".into()),
                publications: if with_read {
                    vec![KeptPublication {
                        data: json!({"a": 1}),
                        offset: "1-0".into(),
                    }]
                } else {
                    Vec::new()
                },
                presence: with_read.then(|| vec![member("Ana")]),
                presence_total: with_read.then_some(2),
            });
        }
        for code in ErrorCode::ALL {
            events.push(ServerMsg::error(code, format!("about {code}")));
        }
        events.push(ServerMsg::Error {
            code: ErrorCode::RateLimited,
            error: "slow down".into(),
            room_id: Some("general".into()),
            channel: Some("live:1".into()),
            client_msg_id: Some("m1".into()),
            retry_after_ms: Some(1500),
        });
        events
    }

    #[test]
    fn decodes_every_event_serde_encodes() {
        for event in every_event() {
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(decode(&text).unwrap(), event, "{text}");
        }
    }

    #[test]
    fn every_variant_is_covered_by_the_samples() {
        let covered = every_event()
            .iter()
            .map(|event| {
                serde_json::to_value(event).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<std::collections::BTreeSet<_>>();
        // serde's own list of the tags it accepts, read off its error for an unknown one.
        let err = serde_json::from_str::<ServerMsg>(r#"{"type":"?"}"#)
            .unwrap_err()
            .to_string();
        let expected = err
            .split('`')
            .skip(3)
            .step_by(2)
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>();
        assert!(
            expected.contains("connected") && expected.contains("pong"),
            "{err}"
        );
        assert_eq!(covered, expected);
    }

    #[test]
    fn error_code_list_is_complete() {
        let err = serde_json::from_str::<ErrorCode>(r#""?""#)
            .unwrap_err()
            .to_string();
        let serde_names = err.split('`').skip(3).step_by(2).collect::<Vec<_>>();
        let ours = ErrorCode::ALL
            .iter()
            .map(|code| code.as_str())
            .collect::<Vec<_>>();
        assert_eq!(ours, serde_names);
    }

    /// Frames both decoders must take or refuse alike: missing, null, mistyped and extra fields.
    #[test]
    fn agrees_with_serde_on_odd_frames() {
        let frames = [
            r#"{"type":"pong","extra":1}"#,
            r#"{"type":"connected","connectionId":"c","serverId":"s","userId":"ignored"}"#,
            r#"{"type":"connected","connectionId":"c"}"#,
            r#"{"type":"connected","connectionId":null,"serverId":"s"}"#,
            r#"{"type":"connected","connectionId":5,"serverId":"s"}"#,
            r#"{"type":"ack","id":"1-0","roomId":"r","timestamp":1,"clientMsgId":null}"#,
            r#"{"type":"ack","id":"1-0","roomId":"r","timestamp":-1}"#,
            r#"{"type":"ack","id":"1-0","roomId":"r","timestamp":1.5}"#,
            r#"{"type":"ack","id":"1-0","roomId":"r","timestamp":"1"}"#,
            r#"{"type":"room_history","roomId":"r","messages":[],"hasMore":false,"members":[]}"#,
            r#"{"type":"room_history","roomId":"r","messages":[],"hasMore":false}"#,
            r#"{"type":"room_history","roomId":"r","messages":[{}],"hasMore":false,"members":[]}"#,
            r#"{"type":"room_history","roomId":"r","messages":[],"hasMore":"no","members":[]}"#,
            r#"{"type":"room_history","roomId":"r","messages":[],"hasMore":false,"members":[],"read":null,"recovered":null}"#,
            r#"{"type":"room_history","roomId":"r","messages":[],"hasMore":false,"members":[],"epoch":null}"#,
            r#"{"type":"room_history","roomId":"r","messages":[],"hasMore":false,"members":[],"epoch":7}"#,
            r#"{"type":"subscribed","channel":"c"}"#,
            r#"{"type":"subscribed","channel":"c","presence":null,"epoch":null}"#,
            r#"{"type":"subscribed","channel":"c","publications":[{"data":1}]}"#,
            r#"{"type":"subscribed","channel":"c","publications":null}"#,
            r#"{"type":"subscribed","channel":"c","publications":[],"recovered":"yes"}"#,
            r#"{"type":"job","channel":"c","group":"g","id":"1","data":null,"attempt":1}"#,
            r#"{"type":"job","channel":"c","group":"g","id":"1","attempt":1}"#,
            r#"{"type":"job","channel":"c","group":"g","id":"1","data":1,"attempt":4294967296}"#,
            r#"{"type":"publication","channel":"c","data":{"x":[]}}"#,
            r#"{"type":"error","code":"not_in_room","error":"x"}"#,
            r#"{"type":"error","code":"no_such_code","error":"x"}"#,
            r#"{"type":"error","code":"rate_limited","error":"x","retryAfterMs":null}"#,
            r#"{"type":"message","id":"1","roomId":"r","userId":"u","name":"n","content":"c","timestamp":1,"serverId":"s"}"#,
            r#"{"type":"message","id":"1","roomId":"r"}"#,
            r#"{"type":"read","roomId":"r","read":{"unread":1,"mentions":0}}"#,
            r#"{"type":"read","roomId":"r","read":{"unread":1}}"#,
            r#"{"type":"nope"}"#,
            r#"{"roomId":"r"}"#,
            r#"{"type":null}"#,
            r#""pong""#,
            r#"{"type":"pong""#,
            "",
        ];
        for frame in frames {
            let theirs = serde_json::from_str::<ServerMsg>(frame).ok();
            let ours = decode(frame).ok();
            assert_eq!(ours, theirs, "{frame}");
        }
    }
}

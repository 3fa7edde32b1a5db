//! How page data travels as JSON: the server functions' responses and the `Resource`s the
//! server renders into the page both use [`PageJson`], and the browser reads both with
//! [`decode`] (answers through `server_call`, resources through Leptos's codec).
//!
//! Why not the defaults: Leptos decodes a resource from a `&str` and `server_fn` decodes a
//! response from bytes, and serde compiles a decoder per input type, so every page type
//! (a room's history, the room list, the user) had two decoders in the browser's WASM, and
//! the live events' types a third (they are read through `serde_json::Value`, see
//! `server_events`). Here every one of them is read the same way, into a `Value` first and
//! then into its type: one decoder per type, whichever way it came. Pages are decoded once
//! per load, so the extra step costs nothing anyone could notice.

use leptos::server::codee;
use leptos::server_fn::codec::Post;
use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON for page data, as a server function's output encoding and as a resource's codec.
pub struct PageJson;

/// The server functions' output: JSON in the body of the POST's response.
pub type PageOutput = Post<PageJson>;

/// Reads JSON the one way the browser reads every page type (see the module docs).
pub fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_value(parse(json)?)
}

/// The one JSON parser the browser's page data and live events go through.
pub fn parse(json: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_slice(json)
}

impl ContentType for PageJson {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for PageJson {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for PageJson {
    type Error = serde_json::Error;

    fn encode(value: &T) -> Result<Bytes, serde_json::Error> {
        serde_json::to_vec(value).map(Bytes::from)
    }
}

/// `#[server]` wants an output encoding that decodes too (for the client it generates, which
/// the browser does not use: `server_call` reads answers with [`decode`]).
impl<T: DeserializeOwned> Decodes<T> for PageJson {
    type Error = serde_json::Error;

    fn decode(json: Bytes) -> Result<T, serde_json::Error> {
        decode(&json)
    }
}

impl<T: Serialize> codee::Encoder<T> for PageJson {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> codee::Decoder<T> for PageJson {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(json: &str) -> Result<T, serde_json::Error> {
        decode(json.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RoomSnapshot;
    use crate::protocol::{ChatMessage, HistoryPage, Member, User};

    fn snapshot() -> RoomSnapshot {
        RoomSnapshot {
            page: HistoryPage {
                room_id: "general".into(),
                messages: vec![ChatMessage {
                    id: "1700000000000-0".into(),
                    room_id: "general".into(),
                    user_id: "g-ana".into(),
                    name: "Ana".into(),
                    content: "hi \"there\" \u{1F600}".into(),
                    timestamp: 1_700_000_000_000,
                    server_id: "s1".into(),
                    client_msg_id: Some("c1".into()),
                }],
                has_more: true,
                epoch: "e1".into(),
            },
            members: vec![Member {
                user_id: "g-ana".into(),
                name: "Ana".into(),
            }],
            me: Some(User {
                id: "g-ana".into(),
                name: "Ana".into(),
                guest: true,
            }),
            read: None,
            max_content_bytes: 4000,
        }
    }

    #[test]
    fn both_ways_give_back_what_serde_encoded() {
        let value = snapshot();
        let bytes = <PageJson as Encodes<RoomSnapshot>>::encode(&value).unwrap();
        let text = <PageJson as codee::Encoder<RoomSnapshot>>::encode(&value).unwrap();
        assert_eq!(bytes.as_ref(), text.as_bytes());
        assert_eq!(
            <PageJson as Decodes<RoomSnapshot>>::decode(bytes).unwrap(),
            value
        );
        assert_eq!(
            <PageJson as codee::Decoder<RoomSnapshot>>::decode(&text).unwrap(),
            value
        );
    }

    #[test]
    fn refuses_what_serde_refuses() {
        for (json, why) in [
            ("", "empty"),
            ("{\"page\":", "cut short"),
            ("[1,2]", "not an object"),
            (
                "{\"members\":[],\"me\":null,\"read\":null,\"max_content_bytes\":1}",
                "no page",
            ),
        ] {
            assert!(
                decode::<RoomSnapshot>(json.as_bytes()).is_err(),
                "{why}: {json}"
            );
            assert!(
                serde_json::from_str::<RoomSnapshot>(json).is_err(),
                "{why}: {json}"
            );
        }
        let wrong_type = serde_json::to_string(&snapshot()).unwrap().replace(
            "\"max_content_bytes\":4000",
            "\"max_content_bytes\":\"4000\"",
        );
        assert!(decode::<RoomSnapshot>(wrong_type.as_bytes()).is_err());
    }
}

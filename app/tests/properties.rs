//! Property tests: the protocol decoder and every validator take arbitrary input without
//! panicking, and whatever they accept obeys the documented rules.

use app::protocol::{decode_client_msg, ErrorCode};
use app::validate::{self, MessageId};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A frame that looks like a request: a known or unknown `type` and known field names with
/// values of any type.
fn request_like() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("auth"),
        Just("join"),
        Just("leave"),
        Just("message"),
        Just("typing"),
        Just("ping"),
        Just("dance"),
        Just(""),
    ];
    let field = prop_oneof![
        Just("token"),
        Just("roomId"),
        Just("since"),
        Just("content"),
        Just("clientMsgId"),
        Just("isTyping"),
        Just("userId"),
        Just("type"),
    ];
    (kind, prop::collection::vec((field, any_json()), 0..6)).prop_map(|(kind, fields)| {
        let mut object = serde_json::Map::new();
        object.insert("type".into(), json!(kind));
        for (name, value) in fields {
            object.insert(name.to_string(), value);
        }
        Value::Object(object).to_string()
    })
}

const DECODE_CODES: [ErrorCode; 3] = [
    ErrorCode::InvalidJson,
    ErrorCode::UnknownType,
    ErrorCode::InvalidMessage,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_decoder_takes_any_text(bytes in any::<Vec<u8>>()) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(err) = decode_client_msg(&text) {
            prop_assert!(DECODE_CODES.contains(&err.code));
            prop_assert!(!err.detail.is_empty());
        }
    }

    #[test]
    fn the_decoder_takes_any_json(value in any_json()) {
        if let Err(err) = decode_client_msg(&value.to_string()) {
            prop_assert!(DECODE_CODES.contains(&err.code));
        }
    }

    #[test]
    fn the_decoder_takes_request_like_frames(frame in request_like()) {
        if let Err(err) = decode_client_msg(&frame) {
            prop_assert!(DECODE_CODES.contains(&err.code));
            prop_assert!(err.detail.chars().count() < 400, "details stay short: {}", err.detail);
        }
    }

    #[test]
    fn accepted_content_obeys_the_rules(
        text in "\\PC{0,20}[\\x00-\\x1f\\u{7f}-\\u{9f} \\t\\n]{0,3}\\PC{0,20}",
        max in 1usize..64,
    ) {
        if let Ok(clean) = validate::content(&text, max) {
            prop_assert!(!clean.is_empty());
            prop_assert_eq!(clean, clean.trim());
            prop_assert!(clean.len() <= max);
            prop_assert!(clean.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
            prop_assert!(text.contains(clean));
        }
    }

    #[test]
    fn accepted_usernames_obey_the_rules(name in "\\PC{0,40}|[A-Za-z0-9_ -]{0,40}") {
        if let Ok(clean) = validate::username(&name) {
            let length = clean.chars().count();
            prop_assert!((3..=32).contains(&length));
            prop_assert!(clean.starts_with(|c: char| c.is_ascii_alphanumeric()));
            prop_assert!(clean.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            // Unique in any case: every casing has the same key and is just as valid.
            let upper = clean.to_uppercase();
            prop_assert!(validate::username(&upper).is_ok());
            prop_assert_eq!(validate::username_key(&upper), validate::username_key(&clean));
        }
    }

    #[test]
    fn accepted_names_and_passwords_obey_the_rules(text in "\\PC{0,140}|[\\x00-\\x7f]{0,40}") {
        if let Ok(name) = validate::display_name(&text) {
            prop_assert_eq!(name.trim(), name.as_str());
            prop_assert!((1..=32).contains(&name.chars().count()));
            prop_assert!(!name.chars().any(char::is_control));
        }
        if let Ok(password) = validate::password(&text, "someone") {
            prop_assert!((8..=128).contains(&password.chars().count()));
        }
    }

    #[test]
    fn accepted_room_ids_obey_the_rules(text in "\\PC{0,70}|[a-zA-Z0-9 _-]{0,70}") {
        if let Ok(id) = validate::room_id(&text) {
            prop_assert!((1..=64).contains(&id.len()));
            prop_assert!(id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
        }
        if let Ok(id) = validate::room_name_to_id(&text) {
            prop_assert!(validate::room_id(&id).is_ok());
        }
    }

    #[test]
    fn message_ids_round_trip(ms in any::<u64>(), seq in any::<u64>(), text in "\\PC{0,30}") {
        let id = MessageId { ms, seq };
        let in_range = ms <= MessageId::MAX_PART && seq <= MessageId::MAX_PART;
        prop_assert_eq!(MessageId::parse(&id.to_string()).is_ok(), in_range);
        let id = MessageId { ms: ms % (MessageId::MAX_PART + 1), seq: seq % (MessageId::MAX_PART + 1) };
        prop_assert_eq!(MessageId::parse(&id.to_string()), Ok(id));
        if let Ok(parsed) = MessageId::parse(&text) {
            prop_assert_eq!(MessageId::parse(&parsed.to_string()), Ok(parsed));
        }
    }
}

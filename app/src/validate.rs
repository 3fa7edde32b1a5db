//! Validation rules shared by the server (the authority) and the browser (early feedback).
//!
//! Each check returns the cleaned value or a [`Invalid`] with a stable code and a sentence a
//! person can act on.

use crate::protocol::ErrorCode;
use std::cmp::Ordering;
use std::fmt;

/// Longest room id, in characters.
pub const ROOM_ID_MAX: usize = 64;
/// Longest display name, in characters.
pub const NAME_MAX: usize = 32;
/// Longest `clientMsgId`, in bytes.
pub const CLIENT_MSG_ID_MAX: usize = 64;
/// Shortest and longest username, in characters.
pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
/// Shortest and longest password, in characters (NIST SP 800-63B: at least 8, allow 64+).
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// A failed check: what code to send and what to tell the person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub code: ErrorCode,
    pub reason: String,
}

impl Invalid {
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Invalid {
            code,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Room ids: 1–64 chars of `a-z 0-9 - _`, starting with a letter or digit.
pub fn room_id(id: &str) -> Result<&str, Invalid> {
    let bad = |why: &str| {
        Err(Invalid::new(
            ErrorCode::InvalidRoom,
            format!("invalid room id: {why}"),
        ))
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > ROOM_ID_MAX {
        return bad("it is longer than 64 characters");
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return bad("it must start with a letter or digit");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return bad("use only lowercase letters, digits, - and _");
    }
    Ok(id)
}

/// Longest channel name.
pub const CHANNEL_MAX: usize = 128;

/// Channel names: 1–128 of `A-Z a-z 0-9 _ - . : @ =`. The part before the first `:` is
/// the channel's namespace (none without a `:`).
pub fn channel(name: &str) -> Result<&str, Invalid> {
    let bad = |why: &str| {
        Err(Invalid::new(
            ErrorCode::InvalidChannel,
            format!("invalid channel name: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > CHANNEL_MAX {
        return bad("it is longer than 128 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.:@=".contains(&b))
    {
        return bad("use only letters, digits and _ - . : @ =");
    }
    Ok(name)
}

/// Turns what a person typed ("Book Club!") into a room id ("book-club") when that is
/// unambiguous, then validates it.
pub fn room_name_to_id(typed: &str) -> Result<String, Invalid> {
    let mut id = String::with_capacity(typed.len());
    for c in typed.trim().chars() {
        match c {
            'A'..='Z' => id.push(c.to_ascii_lowercase()),
            'a'..='z' | '0'..='9' | '-' | '_' => id.push(c),
            ' ' => id.push('-'),
            _ => {
                return Err(Invalid::new(
                    ErrorCode::InvalidRoom,
                    format!(
                        "“{c}” cannot be part of a room name: use letters, digits, spaces, - and _"
                    ),
                ))
            }
        }
    }
    room_id(&id)?;
    Ok(id)
}

/// Display names: trimmed, 1–32 characters, no control characters.
pub fn display_name(name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    let bad = |why: &str| Err(Invalid::new(ErrorCode::InvalidMessage, why.to_string()));
    if name.is_empty() {
        return bad("choose a name");
    }
    if name.chars().count() > NAME_MAX {
        return bad("a name has at most 32 characters");
    }
    if name.chars().any(char::is_control) {
        return bad("a name cannot hold control characters");
    }
    Ok(name.to_string())
}

/// Usernames of accounts: 3–32 of `A-Z a-z 0-9 _ -`, starting with a letter or digit.
/// ASCII only, so that no two accounts look alike (no homoglyphs); unique in any letter
/// case ([`username_key`]). Surrounding spaces are trimmed; the case typed is kept for display.
pub fn username(name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    let bad = |why: &str| Err(Invalid::new(ErrorCode::InvalidUsername, why.to_string()));
    let length = name.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&length) {
        return bad("a username has 3 to 32 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("a username starts with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("a username holds only letters A–Z, digits, _ and -");
    }
    Ok(name.to_string())
}

/// The form under which a username is unique: "Ana" and "ANA" are one account.
pub fn username_key(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// Passwords: 8–128 characters, anything printable or not, but not the username itself.
/// Not trimmed: every character counts.
pub fn password<'a>(password: &'a str, username: &str) -> Result<&'a str, Invalid> {
    let bad = |why: &str| Err(Invalid::new(ErrorCode::InvalidPassword, why.to_string()));
    let length = password.chars().count();
    if length < PASSWORD_MIN {
        return bad("a password has at least 8 characters");
    }
    if length > PASSWORD_MAX {
        return bad("a password has at most 128 characters");
    }
    if password.eq_ignore_ascii_case(username.trim()) {
        return bad("the password cannot be the username");
    }
    Ok(password)
}

/// Chat content: trimmed, non-empty, at most `max_bytes` of UTF-8, and no control characters
/// other than newline and tab (so nothing can corrupt a terminal or hide text).
pub fn content(text: &str, max_bytes: usize) -> Result<&str, Invalid> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Invalid::new(
            ErrorCode::EmptyContent,
            "the message is empty",
        ));
    }
    if text.len() > max_bytes {
        return Err(Invalid::new(
            ErrorCode::ContentTooLong,
            format!(
                "the message is {} bytes long; the limit is {max_bytes}",
                text.len()
            ),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Invalid::new(
            ErrorCode::InvalidContent,
            "the message holds control characters (only newline and tab are allowed)",
        ));
    }
    Ok(text)
}

/// A client's own id for a send, echoed in the ack: at most 64 bytes, printable ASCII.
pub fn client_msg_id(id: &str) -> Result<&str, Invalid> {
    if id.is_empty() || id.len() > CLIENT_MSG_ID_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid::new(
            ErrorCode::InvalidClientMsgId,
            "clientMsgId must be 1–64 printable ASCII characters",
        ));
    }
    Ok(id)
}

/// A message id: `<milliseconds>-<sequence>`, the same shape as a Redis stream id, ordered
/// first by time and then by sequence within a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    pub ms: u64,
    pub seq: u64,
}

impl MessageId {
    /// The largest part of an id (milliseconds or sequence) a client may name: 2^53 − 1, the
    /// largest integer JavaScript holds exactly, and far past any id a store gives (the
    /// milliseconds are the year 287,000). Larger ones are refused: a store cannot read after
    /// `u64::MAX-u64::MAX`, and such a position was never given.
    pub const MAX_PART: u64 = (1 << 53) - 1;

    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid::new(
                ErrorCode::InvalidSince,
                format!("“{}” is not a message id", truncate(text)),
            )
        };
        let (ms, seq) = text.split_once('-').ok_or_else(bad)?;
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                s.parse::<u64>()
                    .ok()
                    .filter(|part| *part <= MessageId::MAX_PART)
            }
        };
        Ok(MessageId {
            ms: number(ms).ok_or_else(bad)?,
            seq: number(seq).ok_or_else(bad)?,
        })
    }

    /// A page's `before`: a message id after the very first (`0-0`: nothing is older).
    pub fn parse_before(text: &str) -> Result<Self, Invalid> {
        let id = MessageId::parse(text)?;
        if id == (MessageId { ms: 0, seq: 0 }) {
            return Err(Invalid::new(
                ErrorCode::InvalidSince,
                "nothing is older than 0-0: `before` names a message id",
            ));
        }
        Ok(id)
    }

    /// A channel publication's offset (the same shape as a message id).
    pub fn parse_offset(text: &str) -> Result<Self, Invalid> {
        MessageId::parse(text).map_err(|_| {
            Invalid::new(
                ErrorCode::InvalidSince,
                format!("“{}” is not a publication offset", truncate(text)),
            )
        })
    }

    /// Orders two id strings; unparsable ones sort first so they never hide real messages.
    pub fn compare(a: &str, b: &str) -> Ordering {
        match (MessageId::parse(a), MessageId::parse(b)) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            (Err(_), Ok(_)) => Ordering::Less,
            (Ok(_), Err(_)) => Ordering::Greater,
            (Err(_), Err(_)) => a.cmp(b),
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// At most the first 40 characters of `text`: how refusals quote what they refuse.
pub fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids() {
        for ok in ["a", "general", "0day", "team_7-x", &"r".repeat(64)] {
            assert_eq!(room_id(ok), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "_x",
            "Upper",
            "with space",
            "é",
            "a/b",
            &"r".repeat(65),
            "a\u{0}",
        ] {
            assert_eq!(
                room_id(bad).unwrap_err().code,
                ErrorCode::InvalidRoom,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn typed_room_names_become_ids() {
        assert_eq!(room_name_to_id("  Book Club ").unwrap(), "book-club");
        assert_eq!(room_name_to_id("rust_2024").unwrap(), "rust_2024");
        assert!(room_name_to_id("café").unwrap_err().reason.contains("é"));
        assert!(room_name_to_id("   ").is_err());
        assert!(room_name_to_id("-lead").is_err());
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("  Ana ").unwrap(), "Ana");
        assert_eq!(display_name(&"é".repeat(32)).unwrap().chars().count(), 32);
        assert!(display_name("").is_err());
        assert!(display_name(&"x".repeat(33)).is_err());
        assert!(display_name("a\u{7}b").is_err());
    }

    #[test]
    fn usernames() {
        assert_eq!(username("  Ana_1 ").unwrap(), "Ana_1");
        assert_eq!(username(&"a".repeat(32)).unwrap().len(), 32);
        for bad in [
            "ab",
            "",
            &"a".repeat(33),
            "_ana",
            "-ana",
            "an a",
            "anä",
            "an.a",
            "a\u{0}b",
        ] {
            assert_eq!(
                username(bad).unwrap_err().code,
                ErrorCode::InvalidUsername,
                "{bad:?}"
            );
        }
        assert_eq!(username_key(" AnA "), "ana");
    }

    #[test]
    fn passwords() {
        assert!(password("correct horse", "ana").is_ok());
        assert!(password(&"é".repeat(128), "ana").is_ok());
        for (bad, user) in [
            ("short", "ana"),
            (&*"x".repeat(129), "ana"),
            ("Ana12345", "ana12345"),
        ] {
            assert_eq!(
                password(bad, user).unwrap_err().code,
                ErrorCode::InvalidPassword,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn contents() {
        assert_eq!(content("  hi\n\tthere  ", 100), Ok("hi\n\tthere"));
        assert_eq!(
            content(" \n ", 100).unwrap_err().code,
            ErrorCode::EmptyContent
        );
        assert_eq!(
            content("abcd", 3).unwrap_err().code,
            ErrorCode::ContentTooLong
        );
        assert_eq!(
            content("ééé", 5).unwrap_err().code,
            ErrorCode::ContentTooLong
        );
        assert_eq!(
            content("a\u{1b}[31m", 100).unwrap_err().code,
            ErrorCode::InvalidContent
        );
        assert_eq!(content("<script>x</script>", 100), Ok("<script>x</script>"));
    }

    #[test]
    fn client_msg_ids() {
        assert!(client_msg_id("c-1").is_ok());
        assert!(client_msg_id("").is_err());
        assert!(client_msg_id("a b").is_err());
        assert!(client_msg_id(&"x".repeat(65)).is_err());
    }

    #[test]
    fn message_ids_parse_and_order() {
        let id = MessageId::parse("1700000000000-3").unwrap();
        assert_eq!(
            id,
            MessageId {
                ms: 1_700_000_000_000,
                seq: 3
            }
        );
        assert_eq!(id.to_string(), "1700000000000-3");
        assert!(MessageId::parse("5-0").unwrap() < MessageId::parse("5-1").unwrap());
        assert!(MessageId::parse("5-9").unwrap() < MessageId::parse("6-0").unwrap());
        for bad in [
            "",
            "5",
            "-1",
            "1-",
            "a-1",
            "1-+2",
            "1-2-3",
            "99999999999999999999-0",
            "18446744073709551615-18446744073709551615",
            "9007199254740992-0",
            "0-9007199254740992",
        ] {
            assert_eq!(
                MessageId::parse(bad).unwrap_err().code,
                ErrorCode::InvalidSince,
                "{bad}"
            );
        }
        assert_eq!(MessageId::compare("10-0", "9-5"), Ordering::Greater);
        assert!(MessageId::parse("9007199254740991-9007199254740991").is_ok());
        assert_eq!(
            MessageId::parse_before("0-0").unwrap_err().code,
            ErrorCode::InvalidSince
        );
        assert!(MessageId::parse_before("0-1").is_ok());
    }
}

//! Session tokens and the ids they are stored under.
//!
//! A token is 256 random bits in hex, handed to the client once. The engine stores the
//! session under the token's SHA-256 ([`SessionId`]): whoever reads the store (a Redis dump,
//! a replica) learns no token that would sign them in. A plain hash is enough here, unlike
//! for passwords: the token has 256 bits of entropy, so there is nothing to guess.

use crate::engine::SessionId;
use sha2::{Digest, Sha256};

/// Length of a token: 32 bytes in hex.
pub const TOKEN_HEX_LEN: usize = 64;

/// A fresh token and the id its session is stored under.
pub fn new_session_token() -> (String, SessionId) {
    let token = crate::engine::new_token();
    let id = hash(&token);
    (token, id)
}

/// The id of a token's session, or None when the text cannot be a token (wrong length or
/// characters): such tokens are refused without a lookup.
pub fn session_id(token: &str) -> Option<SessionId> {
    let well_formed = token.len() == TOKEN_HEX_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then(|| hash(token))
}

fn hash(token: &str) -> SessionId {
    let digest = Sha256::digest(token.as_bytes());
    SessionId(digest.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_stored_hashed() {
        let (token, id) = new_session_token();
        assert_eq!(token.len(), TOKEN_HEX_LEN);
        assert_eq!(session_id(&token), Some(id));
        assert_ne!(id.to_string(), token, "the stored id is not the token");
        assert_eq!(SessionId::from_hex(&id.to_string()), Some(id));
        assert_eq!(SessionId::from_hex("xyz"), None);
        let (other, _) = new_session_token();
        assert_ne!(token, other);
        for bad in ["", "abc", &"g".repeat(64), &"A".repeat(64), &"a".repeat(65)] {
            assert_eq!(session_id(bad), None, "{bad}");
        }
    }
}

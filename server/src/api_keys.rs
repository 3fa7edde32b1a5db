//! API keys: how a backend proves it may use the server API (`POST /api/publish`) without a
//! user's session.
//!
//! Keys live in a file the operator keeps (`--api-keys-file`), one per line: a name and the
//! SHA-256 of the key in hex (`confab api-key new NAME` makes a key and prints its line).
//! Only hashes are at rest, so a copy of the file cannot be used to publish. Several keys can
//! be active at once (one per backend, or an old and a new one while rotating); deleting a
//! line revokes that key: the file is read again when it changes, within two seconds,
//! without a restart. A file that cannot be read or parsed at start stops the start; one
//! that turns bad later is ignored (the keys read last stay in force) and logged.

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How often the file's modification time is looked at (on use, at most this often).
const RECHECK: Duration = Duration::from_secs(2);
/// The prefix of every key this server makes, so a key is recognisable in a leak scan.
pub const KEY_PREFIX: &str = "cfk_";

/// A named key hash.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    name: String,
    hash: [u8; 32],
}

struct Loaded {
    entries: Vec<Entry>,
    modified: Option<SystemTime>,
    checked: Instant,
}

pub struct ApiKeys {
    file: Option<PathBuf>,
    // Guards the loaded entries; held only to read or swap them, never across an await.
    loaded: Mutex<Loaded>,
}

/// A new key: `cfk_` and 256 random bits in hex.
pub fn new_key() -> String {
    format!("{KEY_PREFIX}{}", crate::engine::new_token())
}

/// The file line for a key: its name and hash.
pub fn file_line(name: &str, key: &str) -> String {
    // The same 64-hex-digit form as a session id (also a SHA-256 of a token).
    format!("{name} {}", crate::engine::SessionId(hash(key)))
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The entries of a key file; an error names the line.
fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, digest] = fields.as_slice() else {
            return Err(format!("line {}: expected `NAME SHA256-HEX`", number + 1));
        };
        let Some(hash) = crate::engine::SessionId::from_hex(digest) else {
            return Err(format!(
                "line {}: `{}` is not 64 hex digits (the SHA-256 of the key)",
                number + 1,
                digest.chars().take(70).collect::<String>()
            ));
        };
        entries.push(Entry {
            name: name.to_string(),
            hash: hash.0,
        });
    }
    Ok(entries)
}

fn read(file: &PathBuf) -> Result<(Vec<Entry>, Option<SystemTime>), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|err| format!("cannot read {}: {err}", file.display()))?;
    let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok();
    let entries = parse(&text).map_err(|err| format!("{}: {err}", file.display()))?;
    Ok((entries, modified))
}

impl ApiKeys {
    /// Reads the file (none: no key is accepted).
    pub fn load(file: Option<PathBuf>) -> Result<Self, String> {
        let (entries, modified) = match &file {
            Some(path) => read(path)?,
            None => (Vec::new(), None),
        };
        Ok(ApiKeys {
            file,
            loaded: Mutex::new(Loaded {
                entries,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    pub fn configured(&self) -> bool {
        self.file.is_some()
    }

    /// The name of the key `presented` is, if it is one of the file's (compared in constant
    /// time per entry).
    pub fn verify(&self, presented: &str) -> Option<String> {
        self.reload_if_changed();
        let presented = hash(presented);
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for entry in &loaded.entries {
            let differs = entry
                .hash
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if differs == 0 && found.is_none() {
                found = Some(entry.name.clone());
            }
        }
        found
    }

    fn reload_if_changed(&self) {
        let Some(file) = &self.file else { return };
        {
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if loaded.checked.elapsed() < RECHECK {
                return;
            }
            loaded.checked = Instant::now();
            let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok();
            if modified.is_some() && modified == loaded.modified {
                return;
            }
        }
        if !file.exists() {
            // Deleting the file is how an operator revokes every key at once: keeping the
            // keys read last would leave them valid with no file to say so.
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if !loaded.entries.is_empty() {
                tracing::warn!(file = %file.display(), "the API key file is gone: every key is revoked");
            }
            loaded.entries.clear();
            loaded.modified = None;
            return;
        }
        match read(file) {
            Ok((entries, modified)) => {
                let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
                tracing::info!(keys = entries.len(), "API keys read again");
                loaded.entries = entries;
                loaded.modified = modified;
            }
            Err(err) => {
                tracing::warn!(error = %err, "API key file unreadable; keeping the keys read last")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_keys_line_verifies_it_and_nothing_else() {
        let key = new_key();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == 68);
        let entries = parse(&format!("# backends\n{}\n\n", file_line("billing", &key))).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "billing");
        assert_eq!(entries[0].hash, hash(&key));
        assert_ne!(entries[0].hash, hash(&new_key()));
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse("ok 00\n").unwrap_err(),
            "line 1: `00` is not 64 hex digits (the SHA-256 of the key)"
        );
        assert_eq!(
            parse("# c\nonly-a-name\n").unwrap_err(),
            "line 2: expected `NAME SHA256-HEX`"
        );
    }
}

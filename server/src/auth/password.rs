//! Password hashing: Argon2id with a random 16-byte salt per password, stored as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), so parameters can be raised later and
//! old hashes still verify with the parameters they were made with.
//!
//! Hashing is deliberately slow and memory-hungry, so it runs on the blocking thread pool and
//! at most `--max-concurrent-hashes` at once (a flood of sign-ins queues instead of eating
//! the machine's memory). Sign-in to an unknown user verifies against a dummy hash, so the
//! answer takes as long as for a wrong password and does not reveal which usernames exist.

use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use std::sync::Arc;
use tokio::sync::{OnceCell, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    // Bounds concurrent hashes: each holds `memory_kib` of RAM for tens of milliseconds.
    permits: Arc<Semaphore>,
    dummy: Arc<OnceCell<String>>,
}

impl Passwords {
    /// Parameters as validated by the configuration.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32, concurrent: usize) -> Self {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .expect("argon2 parameters are validated with the configuration");
        Passwords {
            params,
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            dummy: Arc::default(),
        }
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let params = self.params.clone();
        let password = password.to_string();
        self.blocking(move || {
            use rand::Rng;
            let salt_bytes: [u8; 16] = rand::rng().random();
            let salt = SaltString::encode_b64(&salt_bytes)
                .map_err(|err| PasswordError::Hashing(err.to_string()))?;
            Self::argon2(params)
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|err| PasswordError::Hashing(err.to_string()))
        })
        .await
    }

    /// Whether `password` matches the stored PHC string (None: an unknown user, checked
    /// against a dummy hash so that it takes the same time).
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let (stored, known) = match stored {
            Some(stored) => (stored.to_string(), true),
            None => match self.dummy().await {
                Some(dummy) => (dummy, false),
                None => return false,
            },
        };
        let password = password.to_string();
        let matched = self
            .blocking(move || {
                let parsed = PasswordHash::new(&stored)
                    .map_err(|err| PasswordError::Hashing(err.to_string()))?;
                // The parameters come from the stored string, not from `self.params`.
                Ok(Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok())
            })
            .await;
        match matched {
            Ok(matched) => matched && known,
            Err(err) => {
                tracing::error!(error = %err, "a stored password hash cannot be read");
                false
            }
        }
    }

    async fn dummy(&self) -> Option<String> {
        self.dummy
            .get_or_try_init(|| self.hash("confab dummy password, never matches"))
            .await
            .ok()
            .cloned()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Hashing("hasher closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|err| PasswordError::Hashing(err.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_carry_their_parameters() {
        // Small parameters: this tests the wiring, not the cost.
        let passwords = Passwords::new(64, 1, 1, 2);
        let hash = passwords.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(passwords.verify("correct horse", Some(&hash)).await);
        assert!(!passwords.verify("correct hors", Some(&hash)).await);
        assert!(!passwords.verify("correct horse", None).await);
        assert!(!passwords.verify("x", Some("not a phc string")).await);
        let again = passwords.hash("correct horse").await.unwrap();
        assert_ne!(hash, again, "each hash has its own salt");
        // A hash made with other parameters still verifies.
        let stronger = Passwords::new(128, 2, 1, 1);
        assert!(stronger.verify("correct horse", Some(&hash)).await);
    }
}

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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OnceCell, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// As many hashes are running and waiting as allowed: try again shortly.
    #[error("too many password checks waiting")]
    Busy,
}

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    // Bounds concurrent hashes: each holds `memory_kib` of RAM for tens of milliseconds.
    permits: Arc<Semaphore>,
    /// Hashes running or waiting for a permit, and how many may: a flood of sign-ins is
    /// refused past it rather than queued without end.
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    dummy: Arc<OnceCell<String>>,
}

/// Counts a hash in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Passwords {
    /// Parameters as validated by the configuration; `concurrent` hashes run at once and
    /// `queued` more may wait.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        concurrent: usize,
        queued: usize,
    ) -> Self {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .expect("argon2 parameters are validated with the configuration");
        Passwords {
            params,
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            in_flight: Arc::default(),
            max_in_flight: concurrent.max(1) + queued,
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
    /// against a dummy hash so that it takes the same time). [`PasswordError::Busy`] when
    /// as many checks are waiting as allowed.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<bool, PasswordError> {
        let (stored, known) = match stored {
            Some(stored) => (stored.to_string(), true),
            None => match self.dummy().await {
                Ok(dummy) => (dummy, false),
                Err(PasswordError::Busy) => return Err(PasswordError::Busy),
                Err(_) => return Ok(false),
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
            Ok(matched) => Ok(matched && known),
            Err(PasswordError::Busy) => Err(PasswordError::Busy),
            Err(err) => {
                tracing::error!(error = %err, "a stored password hash cannot be read");
                Ok(false)
            }
        }
    }

    async fn dummy(&self) -> Result<String, PasswordError> {
        self.dummy
            .get_or_try_init(|| self.hash("confab dummy password, never matches"))
            .await
            .cloned()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let in_flight = InFlight(self.in_flight.clone());
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            return Err(PasswordError::Busy);
        }
        let _in_flight = in_flight;
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
        let passwords = Passwords::new(64, 1, 1, 2, 4);
        let hash = passwords.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        let verify = |password: &'static str, stored: Option<String>| {
            let passwords = passwords.clone();
            async move { passwords.verify(password, stored.as_deref()).await.unwrap() }
        };
        assert!(verify("correct horse", Some(hash.clone())).await);
        assert!(!verify("correct hors", Some(hash.clone())).await);
        assert!(!verify("correct horse", None).await);
        assert!(!verify("x", Some("not a phc string".into())).await);
        let again = passwords.hash("correct horse").await.unwrap();
        assert_ne!(hash, again, "each hash has its own salt");
        // A hash made with other parameters still verifies.
        let stronger = Passwords::new(128, 2, 1, 1, 4);
        assert!(stronger.verify("correct horse", Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_past_the_queue_are_refused_not_queued() {
        // Expensive enough to overlap: one runs, one waits, the rest are refused.
        let passwords = Passwords::new(8 * 1024, 3, 1, 1, 1);
        let checks = (0..6).map(|_| {
            let passwords = passwords.clone();
            tokio::spawn(async move { passwords.hash("correct horse").await })
        });
        let results = futures::future::join_all(checks).await;
        let busy = results
            .iter()
            .filter(|result| matches!(result, Ok(Err(PasswordError::Busy))))
            .count();
        assert!(busy >= 1, "some were refused");
        assert!(busy <= 4, "one ran and one waited");
    }
}

//! Identity: guest sessions, accounts (register, sign in), session expiry and sign-out, and
//! the limits on attempts. Engines only store; the rules are here, the same for both.
//!
//! Sessions expire after `--session-ttl-secs` without use (each use pushes the expiry back,
//! written at most once per quarter of that time) and after `--session-max-age-secs` in any
//! case. Ending a session closes its WebSockets on every instance.
//!
//! Attempt limits are fixed windows of `--attempt-window-secs`, counted in the engine (so in
//! Redis they hold for the whole cluster): failed sign-ins per username and per address
//! (counted before the password is checked, given back when it was right), accounts and
//! guest sessions created per address.

mod password;
pub mod tokens;

use crate::config::Config;
use crate::engine::{now_ms, AccountRecord, Engine, EngineError, SessionId, SessionRecord};
use app::backend::{BackendError, Client};
use app::protocol::{ErrorCode, User};
use app::validate::{self, Invalid};
use password::Passwords;
use std::time::Duration;

/// The rules of identity, shared by the HTTP API, server functions and WebSockets.
pub struct Auth {
    engine: Engine,
    passwords: Passwords,
    idle_ttl: Duration,
    max_age: Duration,
    window: Duration,
    failures_per_user: u64,
    failures_per_address: u64,
    registrations_per_address: u64,
    guests_per_address: u64,
    /// The operators' usernames (`--operators`), as keys: reserved for accounts made by the
    /// server's own administrator ([`Creator::Operator`]).
    operators: Vec<String>,
}

/// Who is creating an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creator {
    /// Anyone, through the registration form or `POST /api/accounts`.
    Visitor,
    /// The server's administrator, with an API key (`confab account create`): the only way
    /// to register a username named in `--operators`.
    Operator,
}

/// What a successful sign-in (of any kind) gives: the token for the client and the user.
pub type SignedIn = (String, User);

impl Auth {
    pub fn new(config: &Config, engine: Engine) -> Self {
        Auth {
            engine,
            passwords: Passwords::new(
                config.argon2_memory_kib,
                config.argon2_iterations,
                config.argon2_parallelism,
                config.max_concurrent_hashes,
                config.max_queued_hashes,
            ),
            idle_ttl: Duration::from_secs(config.session_ttl_secs),
            max_age: Duration::from_secs(config.session_max_age_secs),
            window: config.attempt_window(),
            failures_per_user: config.login_failures_per_user,
            failures_per_address: config.login_failures_per_address,
            registrations_per_address: config.registrations_per_address,
            guests_per_address: config.guests_per_address,
            operators: config
                .operators
                .iter()
                .map(|name| validate::username_key(name))
                .collect(),
        }
    }

    /// A guest session under a display name. A guest cannot take a registered username.
    pub async fn guest(&self, name: &str, client: &Client) -> Result<SignedIn, BackendError> {
        let name = validate::display_name(name)?;
        if validate::username(&name).is_ok() {
            let key = validate::username_key(&name);
            if self.operators.contains(&key) {
                return Err(taken(
                    "that name belongs to an operator of this server: pick another",
                ));
            }
            if self.engine.accounts.find_account(&key).await?.is_some() {
                tracing::info!(name, "guest refused: the name is a registered username");
                return Err(taken(
                    "that name belongs to a registered user: sign in, or pick another name",
                ));
            }
        }
        self.spend("guest", client, self.guests_per_address).await?;
        let user = User {
            id: format!("g-{}", &crate::engine::new_token()[..16]),
            name,
            guest: true,
        };
        self.start_session(user).await
    }

    /// Creates an account and signs it in. A username named in `--operators` is refused
    /// to visitors (whoever registered it first would be an operator).
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        client: &Client,
        creator: Creator,
    ) -> Result<SignedIn, BackendError> {
        let username = validate::username(username)?;
        validate::password(password, &username)?;
        let key = validate::username_key(&username);
        if creator == Creator::Visitor && self.operators.contains(&key) {
            tracing::warn!(username, "registration refused: an operator's username");
            return Err(taken(
                "that username is reserved for an operator of this server",
            ));
        }
        if self.engine.accounts.find_account(&key).await?.is_some() {
            tracing::info!(username, "registration refused: username taken");
            return Err(taken("that username is taken"));
        }
        self.spend("register", client, self.registrations_per_address)
            .await?;
        let password_hash = self.passwords.hash(password).await.map_err(hash_failed)?;
        let account = AccountRecord {
            user_id: format!("u-{}", &crate::engine::new_token()[..16]),
            username: username.clone(),
            password_hash,
            created_ms: now_ms(),
        };
        // The check above answers most duplicates early; this one decides races.
        if !self.engine.accounts.create_account(&key, &account).await? {
            tracing::info!(username, "registration refused: username taken (race)");
            return Err(taken("that username is taken"));
        }
        tracing::info!(username, user = account.user_id, "account registered");
        self.start_session(registered_user(&account)).await
    }

    /// Signs in with a username and password. Wrong password and unknown user get the same
    /// answer, in the same time.
    ///
    /// Every attempt is counted before the password is checked (per address, and per
    /// username when it is one), so parallel attempts cannot all pass a limit that is only
    /// checked; one refused by a limit, or that succeeds, gives its counts back: only wrong
    /// passwords stay counted. A username that breaks the
    /// rules never becomes a counter's key or a log field. Checks wait for the hasher in a
    /// bounded queue: past it, `rate_limited`.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Result<SignedIn, BackendError> {
        let username = validate::username(username).ok();
        let key = username.as_deref().map(validate::username_key);
        let mut counted = vec![(
            format!("login-addr:{}", client.address_key()),
            self.failures_per_address,
        )];
        if let Some(key) = &key {
            counted.push((format!("login-user:{key}"), self.failures_per_user));
        }
        counted.retain(|(_, limit)| *limit > 0);
        for (taken, (counter, limit)) in counted.iter().enumerate() {
            let seen = self.engine.counters.hit(counter, self.window).await?;
            if seen.count > *limit {
                tracing::warn!(
                    counter,
                    attempts = seen.count,
                    "sign-in refused: too many failures"
                );
                // Refused before any check: this attempt counts against nothing.
                for (counter, _) in &counted[..=taken] {
                    self.engine.counters.undo(counter).await?;
                }
                return Err(rate_limited(seen.resets_in));
            }
        }
        let account = match &key {
            Some(key) => self.engine.accounts.find_account(key).await?,
            None => None,
        };
        let stored = account.as_ref().map(|a| a.password_hash.as_str());
        if !self
            .passwords
            .verify(password, stored)
            .await
            .map_err(hash_failed)?
        {
            tracing::info!(
                username = key.as_deref().unwrap_or("(not a username)"),
                address = client.address_key(),
                known = account.is_some(),
                "sign-in refused: wrong username or password"
            );
            return Err(
                Invalid::new(ErrorCode::InvalidCredentials, "wrong username or password").into(),
            );
        }
        for (counter, _) in &counted {
            self.engine.counters.undo(counter).await?;
        }
        let account = account.expect("only a known account can match");
        tracing::info!(username = account.username, "signed in");
        self.start_session(registered_user(&account)).await
    }

    /// The session and user of a token, if valid; refreshes the expiry when due.
    pub async fn resolve(&self, token: &str) -> Result<Option<(SessionId, User)>, EngineError> {
        let Some(id) = tokens::session_id(token) else {
            return Ok(None);
        };
        Ok(self.check(id).await?.map(|user| (id, user)))
    }

    /// The user of session `id` if it is valid: not ended, not idle past its time, not past
    /// its maximum age. Being checked counts as a use (an open connection is one): the idle
    /// expiry is pushed back when due.
    pub async fn check(&self, id: SessionId) -> Result<Option<User>, EngineError> {
        let sessions = &self.engine.sessions;
        let Some(mut record) = sessions.get_session(&id).await? else {
            return Ok(None);
        };
        let now = now_ms();
        let max_age_ms = self.max_age.as_millis() as u64;
        let ends_ms = record.created_ms.saturating_add(max_age_ms);
        if now >= ends_ms {
            tracing::info!(user = record.user.id, "session reached its maximum age");
            sessions.end_session(&id).await?;
            return Ok(None);
        }
        let idle_ms = self.idle_ttl.as_millis() as u64;
        if now.saturating_sub(record.refreshed_ms) >= idle_ms / 4 {
            record.refreshed_ms = now;
            let ttl = Duration::from_millis(idle_ms.min(ends_ms - now));
            sessions.put_session(&id, &record, ttl).await?;
        }
        Ok(Some(record.user))
    }

    /// Ends the token's session everywhere (its sockets on every instance close).
    pub async fn sign_out(&self, token: &str) -> Result<(), EngineError> {
        if let Some(id) = tokens::session_id(token) {
            self.engine.sessions.end_session(&id).await?;
        }
        Ok(())
    }

    async fn start_session(&self, user: User) -> Result<SignedIn, BackendError> {
        let (token, id) = tokens::new_session_token();
        let now = now_ms();
        let record = SessionRecord {
            user: user.clone(),
            created_ms: now,
            refreshed_ms: now,
        };
        self.engine
            .sessions
            .put_session(&id, &record, self.idle_ttl.min(self.max_age))
            .await?;
        Ok((token, user))
    }

    /// Counts one attempt of `what` from the client's address; refused past `limit`.
    async fn spend(&self, what: &str, client: &Client, limit: u64) -> Result<(), BackendError> {
        if limit == 0 {
            return Ok(());
        }
        let key = format!("{what}-addr:{}", client.address_key());
        let count = self.engine.counters.hit(&key, self.window).await?;
        if count.count > limit {
            tracing::warn!(
                key,
                attempts = count.count,
                "refused: too many attempts from one address"
            );
            return Err(rate_limited(count.resets_in));
        }
        Ok(())
    }
}

fn registered_user(account: &AccountRecord) -> User {
    User {
        id: account.user_id.clone(),
        name: account.username.clone(),
        guest: false,
    }
}

/// A hash that could not be made: the hasher's queue is full (try again shortly), or it
/// failed (logged here).
fn hash_failed(err: password::PasswordError) -> BackendError {
    match err {
        password::PasswordError::Busy => {
            tracing::warn!("password check refused: the hashing queue is full");
            BackendError::RateLimited {
                retry_after_secs: 1,
            }
        }
        err => {
            tracing::error!(error = %err, "password hashing failed");
            BackendError::Unavailable
        }
    }
}

fn taken(reason: &str) -> BackendError {
    Invalid::new(ErrorCode::UsernameTaken, reason).into()
}

fn rate_limited(resets_in: Duration) -> BackendError {
    BackendError::RateLimited {
        retry_after_secs: resets_in.as_secs_f64().ceil().max(1.0) as u64,
    }
}

//! Identity: guest sessions, accounts (register, sign in), session expiry and sign-out, and
//! the limits on attempts. Engines only store; the rules are here, the same for both.
//!
//! Sessions expire after `--session-ttl-secs` without use (each use pushes the expiry back,
//! written at most once per quarter of that time) and after `--session-max-age-secs` in any
//! case. Ending a session closes its WebSockets on every instance.
//!
//! Attempt limits are fixed windows of `--attempt-window-secs`, counted in the engine (so in
//! Redis they hold for the whole cluster): failed sign-ins per username and per address,
//! accounts and guest sessions created per address.

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
            ),
            idle_ttl: Duration::from_secs(config.session_ttl_secs),
            max_age: Duration::from_secs(config.session_max_age_secs),
            window: config.attempt_window(),
            failures_per_user: config.login_failures_per_user,
            failures_per_address: config.login_failures_per_address,
            registrations_per_address: config.registrations_per_address,
            guests_per_address: config.guests_per_address,
        }
    }

    /// A guest session under a display name. A guest cannot take a registered username.
    pub async fn guest(&self, name: &str, client: &Client) -> Result<SignedIn, BackendError> {
        let name = validate::display_name(name)?;
        if validate::username(&name).is_ok() {
            let key = validate::username_key(&name);
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

    /// Creates an account and signs it in.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Result<SignedIn, BackendError> {
        let username = validate::username(username)?;
        validate::password(password, &username)?;
        let key = validate::username_key(&username);
        if self.engine.accounts.find_account(&key).await?.is_some() {
            tracing::info!(username, "registration refused: username taken");
            return Err(taken("that username is taken"));
        }
        self.spend("register", client, self.registrations_per_address)
            .await?;
        let password_hash = self.passwords.hash(password).await.map_err(|err| {
            tracing::error!(error = %err, "registration failed");
            BackendError::Unavailable
        })?;
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
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: &Client,
    ) -> Result<SignedIn, BackendError> {
        let key = validate::username_key(username);
        let user_key = format!("login-user:{key}");
        let address_key = format!("login-addr:{}", client.address_key());
        for (counter, limit) in [
            (&user_key, self.failures_per_user),
            (&address_key, self.failures_per_address),
        ] {
            let seen = self.engine.counters.peek(counter).await?;
            if limit > 0 && seen.count >= limit {
                tracing::warn!(
                    counter,
                    failures = seen.count,
                    "sign-in refused: too many failures"
                );
                return Err(rate_limited(seen.resets_in));
            }
        }
        let account = match validate::username(username) {
            Ok(_) => self.engine.accounts.find_account(&key).await?,
            Err(_) => None,
        };
        let stored = account.as_ref().map(|a| a.password_hash.as_str());
        if !self.passwords.verify(password, stored).await {
            for counter in [&user_key, &address_key] {
                self.engine.counters.hit(counter, self.window).await?;
            }
            tracing::info!(
                username = key,
                address = client.address_key(),
                known = account.is_some(),
                "sign-in refused: wrong username or password"
            );
            return Err(
                Invalid::new(ErrorCode::InvalidCredentials, "wrong username or password").into(),
            );
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
        Ok(Some((id, record.user)))
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

fn taken(reason: &str) -> BackendError {
    Invalid::new(ErrorCode::UsernameTaken, reason).into()
}

fn rate_limited(resets_in: Duration) -> BackendError {
    BackendError::RateLimited {
        retry_after_secs: resets_in.as_secs_f64().ceil().max(1.0) as u64,
    }
}

//! Per-user limits on this instance: chat messages, typing events and channel publications
//! in namespaces with a rate of their own (token buckets), open connections, and the typing
//! throttle per room; and per client address ([`PerAddress`]): history reads over HTTP.
//!
//! A user's state lives while they have a connection here, and a little longer: an entry
//! whose buckets are not yet full again is kept (and swept later), so reconnecting does not
//! buy a fresh burst. Limits are per instance; behind a load balancer that spreads one
//! user's connections, the cluster-wide rate is at most the instances × the rate.
//!
//! Every connected user has an entry, so it is small: a connection count, and the rate state
//! only once the user sent something.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Entries without connections are swept after this many connects.
const SWEEP_EVERY: u32 = 256;

/// A rate: `per_sec` sustained, `burst` at once. `per_sec == 0` means no limit.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: u32,
}

/// The classic token bucket: holds up to `burst` tokens, refilled at `per_sec`.
#[derive(Clone, Debug)]
struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn full(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(rate.burst),
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(f64::from(rate.burst));
        self.updated = now;
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        if rate.per_sec <= 0.0 {
            return Ok(());
        }
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate.per_sec))
        }
    }

    fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        rate.per_sec <= 0.0 || {
            self.refill(rate, now);
            self.tokens >= f64::from(rate.burst)
        }
    }
}

struct UserState {
    connections: u32,
    rates: Option<Box<Rates>>,
}

struct Rates {
    sends: TokenBucket,
    typing: TokenBucket,
    /// Joins, leaves, subscriptions and read positions, across the user's connections.
    membership: TokenBucket,
    /// When `typing: true` was last forwarded, per room.
    typing_forwarded: HashMap<String, Instant>,
    /// Channel publications, per namespace with a rate of its own.
    publishes: HashMap<String, (Rate, TokenBucket)>,
}

impl UserState {
    /// The rate state, created full on first use.
    fn rates(&mut self, rates: UserRates, now: Instant) -> &mut Rates {
        self.rates.get_or_insert_with(|| {
            Box::new(Rates {
                sends: TokenBucket::full(rates.sends, now),
                typing: TokenBucket::full(rates.typing, now),
                membership: TokenBucket::full(rates.membership, now),
                typing_forwarded: HashMap::new(),
                publishes: HashMap::new(),
            })
        })
    }

    /// Whether forgetting the entry loses nothing: no connection, and buckets full again.
    fn is_idle(&mut self, limits: UserRates, now: Instant) -> bool {
        self.connections == 0
            && self.rates.as_mut().is_none_or(|rates| {
                rates.sends.is_full(limits.sends, now)
                    && rates.typing.is_full(limits.typing, now)
                    && rates.membership.is_full(limits.membership, now)
                    && rates
                        .publishes
                        .values_mut()
                        .all(|(rate, bucket)| bucket.is_full(*rate, now))
            })
    }
}

/// What a refused request is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

/// A user's rates on this instance.
#[derive(Clone, Copy, Debug)]
pub struct UserRates {
    /// Chat messages (and publications in namespaces without a rate of their own).
    pub sends: Rate,
    pub typing: Rate,
    /// Joins, leaves, subscriptions and read positions, across the user's connections.
    pub membership: Rate,
}

/// A budget of one connection's own (its membership requests): no lock, the connection's
/// task alone spends it.
pub struct Budget {
    rate: Rate,
    bucket: TokenBucket,
}

impl Budget {
    pub fn new(rate: Rate) -> Self {
        Budget {
            rate,
            bucket: TokenBucket::full(rate, Instant::now()),
        }
    }

    /// Spends one token, or says how long until one is there.
    pub fn take(&mut self) -> Result<(), Limited> {
        self.bucket
            .take(self.rate, Instant::now())
            .map_err(|retry_after| Limited { retry_after })
    }
}

/// The per-user limits of this instance.
pub struct UserLimits {
    rates: UserRates,
    typing_throttle: Duration,
    max_connections: usize,
    // std Mutex: each use is a map lookup and arithmetic, never held across an await.
    users: Mutex<Users>,
}

#[derive(Default)]
struct Users {
    by_id: HashMap<Arc<str>, UserState>,
    connects_since_sweep: u32,
}

/// A held connection slot; dropping it frees the slot.
pub struct ConnectionSlot {
    limits: Arc<UserLimits>,
    /// The map's key, shared.
    user_id: Arc<str>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let now = Instant::now();
        let rates = self.limits.rates;
        let mut users = self.limits.lock();
        let Some(state) = users.by_id.get_mut(&self.user_id) else {
            return;
        };
        state.connections = state.connections.saturating_sub(1);
        if state.is_idle(rates, now) {
            users.by_id.remove(&self.user_id);
        }
    }
}

impl UserLimits {
    pub fn new(rates: UserRates, typing_throttle: Duration, max_connections: usize) -> Self {
        UserLimits {
            rates,
            typing_throttle,
            max_connections,
            users: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Users> {
        // Each update is a counter or a single map operation: still consistent after a panic.
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a connection slot for the user, or None when they hold the maximum.
    pub fn connect(self: &Arc<Self>, user_id: &str) -> Option<ConnectionSlot> {
        let now = Instant::now();
        let rates = self.rates;
        let mut users = self.lock();
        users.connects_since_sweep += 1;
        if users.connects_since_sweep >= SWEEP_EVERY {
            users.connects_since_sweep = 0;
            users.by_id.retain(|_, state| !state.is_idle(rates, now));
        }
        let key: Arc<str> = match users.by_id.get_key_value(user_id) {
            Some((key, _)) => key.clone(),
            None => Arc::from(user_id),
        };
        let state = users.by_id.entry(key.clone()).or_insert(UserState {
            connections: 0,
            rates: None,
        });
        if state.connections as usize >= self.max_connections {
            return None;
        }
        state.connections += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            user_id: key,
        })
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Spends one chat message of the user's budget.
    pub fn send(&self, user_id: &str, room: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let mut users = self.lock();
        let Some(state) = users.by_id.get_mut(user_id) else {
            return Ok(()); // no connection holds a slot: nothing to send through
        };
        let rates = state.rates(self.rates, now);
        rates
            .sends
            .take(self.rates.sends, now)
            .map_err(|retry_after| Limited { retry_after })?;
        // Sending ends typing, as the recipients will see by the message itself.
        rates.typing_forwarded.remove(room);
        Ok(())
    }

    /// Spends one membership request (join, leave, subscribe, unsubscribe, read, work) of
    /// the user's budget, shared by their connections here.
    pub fn membership(&self, user_id: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let mut users = self.lock();
        let Some(state) = users.by_id.get_mut(user_id) else {
            return Ok(());
        };
        let rates = state.rates(self.rates, now);
        rates
            .membership
            .take(self.rates.membership, now)
            .map_err(|retry_after| Limited { retry_after })
    }

    /// Spends one channel publication of the user's budget in `namespace`, which has a rate
    /// of its own.
    pub fn publish(&self, user_id: &str, namespace: &str, rate: Rate) -> Result<(), Limited> {
        let now = Instant::now();
        let mut users = self.lock();
        let Some(state) = users.by_id.get_mut(user_id) else {
            return Ok(());
        };
        let rates = state.rates(self.rates, now);
        let (_, bucket) = rates
            .publishes
            .entry(namespace.to_string())
            .or_insert_with(|| (rate, TokenBucket::full(rate, now)));
        bucket
            .take(rate, now)
            .map_err(|retry_after| Limited { retry_after })
    }

    /// Spends one typing event; Ok(true) when it should be forwarded: `typing: true` at most
    /// once per throttle interval per room (across the user's tabs), `false` always.
    pub fn typing(&self, user_id: &str, room: &str, is_typing: bool) -> Result<bool, Limited> {
        let now = Instant::now();
        let mut users = self.lock();
        let Some(state) = users.by_id.get_mut(user_id) else {
            return Ok(false);
        };
        let rates = state.rates(self.rates, now);
        rates
            .typing
            .take(self.rates.typing, now)
            .map_err(|retry_after| Limited { retry_after })?;
        if !is_typing {
            rates.typing_forwarded.remove(room);
            return Ok(true);
        }
        let throttled = rates
            .typing_forwarded
            .get(room)
            .is_some_and(|last| now.duration_since(*last) < self.typing_throttle);
        if !throttled {
            rates.typing_forwarded.insert(room.to_string(), now);
        }
        Ok(!throttled)
    }

    /// Forgets a room's typing state (the user's last connection there left).
    pub fn left_room(&self, user_id: &str, room: &str) {
        let mut users = self.lock();
        let rates = users
            .by_id
            .get_mut(user_id)
            .and_then(|state| state.rates.as_mut());
        if let Some(rates) = rates {
            rates.typing_forwarded.remove(room);
        }
    }
}

/// Connections that have not signed in (including subscribers of channels open to anyone),
/// counted per client address and in total on this instance: each such connection costs a
/// socket and a task while proving nothing about who holds it.
pub struct Anonymous {
    per_address: usize,
    total: usize,
    // std Mutex: a counter per address, never held across an await.
    counts: Mutex<(HashMap<String, usize>, usize)>,
}

/// A held anonymous slot; dropping it (the connection signed in, or ended) frees it.
pub struct AnonymousSlot {
    anonymous: Arc<Anonymous>,
    address: String,
}

/// Why an anonymous connection was refused: which cap it met.
#[derive(Debug, PartialEq, Eq)]
pub enum AnonymousRefused {
    FromAddress(usize),
    InTotal(usize),
}

impl Anonymous {
    /// `per_address` and `total`: 0 is no limit.
    pub fn new(per_address: usize, total: usize) -> Arc<Self> {
        Arc::new(Anonymous {
            per_address,
            total,
            counts: Mutex::default(),
        })
    }

    /// A slot for a connection from `address`, or which cap it met.
    pub fn take(self: &Arc<Self>, address: &str) -> Result<AnonymousSlot, AnonymousRefused> {
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (by_address, total) = &mut *guard;
        if self.total > 0 && *total >= self.total {
            return Err(AnonymousRefused::InTotal(self.total));
        }
        let here = by_address.entry(address.to_string()).or_default();
        if self.per_address > 0 && *here >= self.per_address {
            return Err(AnonymousRefused::FromAddress(self.per_address));
        }
        *here += 1;
        *total += 1;
        Ok(AnonymousSlot {
            anonymous: self.clone(),
            address: address.to_string(),
        })
    }
}

impl Drop for AnonymousSlot {
    fn drop(&mut self) {
        let mut guard = self
            .anonymous
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (by_address, total) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(here) = by_address.get_mut(&self.address) {
            *here -= 1;
            if *here == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

/// A token bucket per client address (history reads over HTTP), kept in this process:
/// counting in the engine would make every read a write. An address whose bucket is full
/// again is forgotten by a sweep now and then, so the map holds recent readers only.
pub struct PerAddress {
    rate: Rate,
    // std Mutex: a map lookup and arithmetic, never held across an await.
    buckets: Mutex<(HashMap<String, TokenBucket>, u32)>,
}

impl PerAddress {
    pub fn new(rate: Rate) -> Self {
        PerAddress {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Spends one token of `address`'s budget.
    pub fn take(&self, address: &str) -> Result<(), Limited> {
        if self.rate.per_sec <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let rate = self.rate;
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (buckets, inserts) = &mut *guard;
        if !buckets.contains_key(address) {
            *inserts += 1;
            if *inserts >= SWEEP_EVERY {
                *inserts = 0;
                buckets.retain(|_, bucket| !bucket.is_full(rate, now));
            }
        }
        buckets
            .entry(address.to_string())
            .or_insert_with(|| TokenBucket::full(rate, now))
            .take(rate, now)
            .map_err(|retry_after| Limited { retry_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(sends: Rate, max_connections: usize) -> Arc<UserLimits> {
        let plenty = Rate {
            per_sec: 100.0,
            burst: 100,
        };
        let rates = UserRates {
            sends,
            typing: plenty,
            membership: Rate {
                per_sec: 1.0,
                burst: 2,
            },
        };
        Arc::new(UserLimits::new(
            rates,
            Duration::from_millis(1000),
            max_connections,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn membership_requests_are_budgeted_per_user_and_per_connection() {
        let limits = limits(
            Rate {
                per_sec: 1.0,
                burst: 1,
            },
            4,
        );
        let _slot = limits.connect("u").unwrap();
        assert!(limits.membership("u").is_ok() && limits.membership("u").is_ok());
        assert!(
            limits.membership("u").is_err(),
            "the user's budget is spent"
        );
        let mut connection = Budget::new(Rate {
            per_sec: 2.0,
            burst: 1,
        });
        assert!(connection.take().is_ok());
        let refused = connection.take().unwrap_err();
        assert!(refused.retry_after <= Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(connection.take().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_a_burst_then_the_rate() {
        let limits = limits(
            Rate {
                per_sec: 2.0,
                burst: 3,
            },
            4,
        );
        let _slot = limits.connect("u").unwrap();
        for _ in 0..3 {
            assert!(limits.send("u", "r").is_ok());
        }
        let refused = limits.send("u", "r").unwrap_err();
        assert!(
            refused.retry_after > Duration::from_millis(400)
                && refused.retry_after <= Duration::from_millis(500)
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limits.send("u", "r").is_ok());
        assert!(limits.send("u", "r").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_namespace_rate_is_its_own_budget() {
        let limits = limits(
            Rate {
                per_sec: 1.0,
                burst: 1,
            },
            4,
        );
        let _slot = limits.connect("u").unwrap();
        let ticks = Rate {
            per_sec: 10.0,
            burst: 2,
        };
        for _ in 0..2 {
            assert!(limits.publish("u", "ticks", ticks).is_ok());
        }
        let refused = limits.publish("u", "ticks", ticks).unwrap_err();
        assert!(refused.retry_after <= Duration::from_millis(100));
        // Chat and other namespaces keep their own budgets.
        assert!(limits.send("u", "r").is_ok());
        assert!(limits.publish("u", "other", ticks).is_ok());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limits.publish("u", "ticks", ticks).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn connections_are_counted_and_reconnecting_buys_no_burst() {
        let limits = limits(
            Rate {
                per_sec: 1.0,
                burst: 1,
            },
            2,
        );
        let a = limits.connect("u").unwrap();
        let b = limits.connect("u").unwrap();
        assert!(limits.connect("u").is_none());
        assert!(limits.connect("other").is_some());
        assert!(limits.send("u", "r").is_ok());
        drop(a);
        drop(b);
        let _again = limits.connect("u").unwrap();
        assert!(
            limits.send("u", "r").is_err(),
            "the spent token is remembered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn typing_true_is_throttled_per_room() {
        let limits = limits(
            Rate {
                per_sec: 1.0,
                burst: 1,
            },
            2,
        );
        let _slot = limits.connect("u").unwrap();
        assert_eq!(limits.typing("u", "r", true), Ok(true));
        assert_eq!(limits.typing("u", "r", true), Ok(false));
        assert_eq!(limits.typing("u", "s", true), Ok(true));
        assert_eq!(limits.typing("u", "r", false), Ok(true));
        assert_eq!(
            limits.typing("u", "r", true),
            Ok(true),
            "stopping resets the throttle"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_address_has_its_own_bucket() {
        let reads = PerAddress::new(Rate {
            per_sec: 1.0,
            burst: 2,
        });
        assert!(reads.take("10.0.0.1").is_ok() && reads.take("10.0.0.1").is_ok());
        let refused = reads.take("10.0.0.1").unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert!(reads.take("10.0.0.2").is_ok(), "another address");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(reads.take("10.0.0.1").is_ok());
    }

    #[test]
    fn anonymous_connections_are_capped_per_address_and_in_total() {
        let anonymous = Anonymous::new(2, 3);
        let a1 = anonymous.take("a").unwrap();
        let _a2 = anonymous.take("a").unwrap();
        assert_eq!(
            anonymous.take("a").err(),
            Some(AnonymousRefused::FromAddress(2))
        );
        let _b1 = anonymous.take("b").unwrap();
        assert_eq!(
            anonymous.take("c").err(),
            Some(AnonymousRefused::InTotal(3))
        );
        drop(a1);
        assert!(anonymous.take("c").is_ok(), "a slot freed is a slot free");
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let limits = limits(
            Rate {
                per_sec: 0.0,
                burst: 0,
            },
            1,
        );
        let _slot = limits.connect("u").unwrap();
        for _ in 0..1000 {
            assert!(limits.send("u", "r").is_ok());
        }
    }
}

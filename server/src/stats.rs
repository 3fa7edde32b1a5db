//! What the live dashboard shows of this instance, counted on the hot paths with plain
//! atomics (the Prometheus metrics may be off). A leaf: the hub counts here, and
//! the `dashboard` module publishes the figures once a second on [`STATS_CHANNEL`].
//!
//! Latency is a message's age when the hub queues it for its readers: the time from the
//! post (its id's milliseconds, given by the store) to this instance's fan-out, which is what
//! the instance and Redis add; the last hop (the socket write) is the client's network.

use std::sync::atomic::{AtomicU64, Ordering};

/// The channel every instance publishes its figures on, once a second. Only operators may
/// subscribe (see `--operators`); the namespace `confab` is Confab's own.
pub const STATS_CHANNEL: &str = "confab:stats";
/// Upper bounds of the latency buckets, in ms; the last one also takes everything slower.
const BUCKETS_MS: [u64; 12] = [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1_000, 5_000];

#[derive(Default)]
pub struct Stats {
    messages: AtomicU64,
    deliveries: AtomicU64,
    latency: [AtomicU64; BUCKETS_MS.len()],
}

/// One second's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Second {
    pub messages: u64,
    pub deliveries: u64,
    /// The 99th percentile of the second's delivery latencies, as its bucket's upper bound
    /// (none: nothing delivered).
    pub p99_ms: Option<u64>,
}

impl Stats {
    /// A message was stored and published through this instance.
    pub fn posted(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// A room event was queued for `readers` local readers; a message's age is recorded.
    pub fn delivered(&self, readers: usize, age_ms: Option<u64>) {
        if readers == 0 {
            return;
        }
        self.deliveries.fetch_add(readers as u64, Ordering::Relaxed);
        if let Some(age) = age_ms {
            let bucket = BUCKETS_MS
                .iter()
                .position(|&upper| age <= upper)
                .unwrap_or(BUCKETS_MS.len() - 1);
            self.latency[bucket].fetch_add(readers as u64, Ordering::Relaxed);
        }
    }

    /// The figures since the last call, which starts the next second.
    pub fn take_second(&self) -> Second {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|bucket| bucket.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let p99_ms = (total > 0).then(|| {
            let rank = (total * 99).div_ceil(100);
            let mut seen = 0;
            let at = counts
                .iter()
                .position(|count| {
                    seen += count;
                    seen >= rank
                })
                .unwrap_or(counts.len() - 1);
            BUCKETS_MS[at]
        });
        Second {
            messages: self.messages.swap(0, Ordering::Relaxed),
            deliveries: self.deliveries.swap(0, Ordering::Relaxed),
            p99_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_counts_and_takes_the_99th_percentile() {
        let stats = Stats::default();
        stats.posted();
        stats.delivered(98, Some(1));
        stats.delivered(2, Some(40));
        stats.delivered(0, Some(9_000));
        let second = stats.take_second();
        assert_eq!((second.messages, second.deliveries), (1, 100));
        assert_eq!(second.p99_ms, Some(50));
        stats.delivered(1, Some(60_000));
        assert_eq!(
            stats.take_second().p99_ms,
            Some(5_000),
            "slower than every bucket"
        );
        assert_eq!(
            stats.take_second().p99_ms,
            None,
            "a new second starts empty"
        );
    }
}

//! When a connection's frames go out: at once, or held briefly to share one write.
//!
//! Each write to a socket is a system call plus the kernel's TCP work for one packet, and on a
//! busy server those writes are most of its CPU. A connection that receives a firehose (more
//! than `busy_frames_per_sec`, far beyond what a person reads) gains nothing from getting
//! each frame a few milliseconds sooner, so its frames wait a little and go out together —
//! the trade Centrifugo offers as `client.write_delay`. A connection below that rate, which is
//! every person in an ordinary chat, gets every frame written the moment it is queued.
//!
//! The hold adapts to the rate, as a network card's interrupt moderation does: it grows in
//! proportion to how far the rate is above the busy rate (`delay_ms` at twice it, twice that
//! at three times it) up to `max_delay_ms`. The busier a connection, the more frames each
//! millisecond of hold gathers into one write and the less any one frame's wait matters; and
//! a connection just over the busy rate is held for next to nothing, so crossing it is no
//! cliff.
//!
//! The rate is judged per window of [`WINDOW_MS`]: the frames counted in one window decide
//! how the next is treated, so a connection is batched only after a full window of heavy
//! traffic and goes back to immediate writes after a quiet one. While frames are held, new
//! ones wait in the connection's bounded queue; once it is more than half full the writer is
//! asked to write at once ([`Outbox::send`](crate::hub::Outbox::send)), so a long delay never
//! turns a client that keeps up into a slow consumer.

use crate::config::Config;

/// How long a stretch of traffic is counted before it decides whether a connection is busy.
pub const WINDOW_MS: u64 = 100;

/// Above which rate, and for how long, frames are held.
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    /// Frames per second above which a connection counts as busy; 0 turns batching off.
    pub busy_frames_per_sec: u32,
    /// The hold at twice the busy rate, in milliseconds; 0 turns batching off.
    pub delay_ms: u32,
    /// The longest hold, however busy the connection.
    pub max_delay_ms: u32,
}

impl BatchPolicy {
    pub fn from_config(config: &Config) -> Self {
        BatchPolicy {
            busy_frames_per_sec: config.busy_frames_per_sec,
            delay_ms: config.busy_write_delay_ms,
            max_delay_ms: config.busy_write_max_delay_ms,
        }
    }

    /// The hold, in milliseconds, for a connection that received `frames` in `elapsed_ms`
    /// (at least one window): 0 at or below the busy rate, then in proportion to the excess.
    fn hold_ms(&self, frames: u32, elapsed_ms: u64) -> u32 {
        if self.busy_frames_per_sec == 0 {
            return 0;
        }
        // Both rates as frames per `elapsed_ms` seconds, to stay in integers.
        let received = u64::from(frames) * 1000;
        let busy = u64::from(self.busy_frames_per_sec) * elapsed_ms;
        let excess = received.saturating_sub(busy);
        let hold = u64::from(self.delay_ms) * excess / busy;
        hold.min(u64::from(self.max_delay_ms)) as u32
    }
}

/// One connection's traffic count, on the connection's own millisecond clock. Small (16
/// bytes): it lives in every connection's writer, idle or not.
#[derive(Default)]
pub struct Batching {
    window_start_ms: u64,
    frames_in_window: u32,
    /// How long frames taken in this window are held; 0 = written at once.
    hold_ms: u32,
}

impl Batching {
    /// Counts frames that were written without a decision (those that arrived while held).
    pub fn count(&mut self, frames: u32) {
        self.frames_in_window = self.frames_in_window.saturating_add(frames);
    }

    /// Counts `frames` just taken from the queue at `now_ms` and says how many milliseconds
    /// to hold them before writing (0: write them now).
    pub fn hold(&mut self, policy: BatchPolicy, now_ms: u64, frames: u32) -> u32 {
        let elapsed_ms = now_ms.saturating_sub(self.window_start_ms);
        if elapsed_ms >= WINDOW_MS {
            // A long quiet gap spreads the count over the whole gap: a connection that was
            // idle for a minute is not busy because of one burst before it.
            self.hold_ms = policy.hold_ms(self.frames_in_window, elapsed_ms);
            self.window_start_ms = now_ms;
            self.frames_in_window = 0;
        }
        self.count(frames);
        self.hold_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round numbers, so the arithmetic below can be checked by eye (the defaults are tested
    /// on their own).
    const POLICY: BatchPolicy = BatchPolicy {
        busy_frames_per_sec: 100,
        delay_ms: 8,
        max_delay_ms: 20,
    };

    /// Feeds one frame every `gap_us` microseconds until `end_ms`, returning how many were
    /// held.
    fn run(batching: &mut Batching, policy: BatchPolicy, gap_us: u64, end_ms: u64) -> usize {
        (0..end_ms * 1000)
            .step_by(gap_us as usize)
            .filter(|us| batching.hold(policy, us / 1000, 1) > 0)
            .count()
    }

    /// The hold under `policy` after one window of `frames_per_sec`.
    fn hold_under(policy: BatchPolicy, frames_per_sec: u64) -> u32 {
        let mut batching = Batching::default();
        run(&mut batching, policy, 1_000_000 / frames_per_sec, WINDOW_MS);
        batching.hold(policy, WINDOW_MS, 1)
    }

    fn hold_at(frames_per_sec: u64) -> u32 {
        hold_under(POLICY, frames_per_sec)
    }

    #[test]
    fn an_ordinary_connection_is_written_at_once() {
        let mut batching = Batching::default();
        // 50 frames/s for 2 s: half the busy rate.
        assert_eq!(run(&mut batching, POLICY, 20_000, 2000), 0);
    }

    #[test]
    fn a_firehose_is_held_after_one_window_and_released_after_a_quiet_one() {
        let mut batching = Batching::default();
        // 1,000 frames/s for 1 s: the first window is written at once, every later frame held.
        assert_eq!(run(&mut batching, POLICY, 1000, 1000), 900);
        assert_eq!(batching.hold(POLICY, 1000, 1), POLICY.max_delay_ms);
        // After a quiet second the next frame goes out at once.
        assert_eq!(batching.hold(POLICY, 2000, 1), 0);
    }

    #[test]
    fn the_hold_grows_with_the_rate_up_to_the_maximum() {
        // Just over the busy rate: well under a millisecond, so not held at all.
        assert_eq!(hold_at(105), 0);
        assert_eq!(hold_at(150), 4);
        assert_eq!(hold_at(200), 8, "twice the busy rate: the configured delay");
        assert_eq!(hold_at(300), 16);
        assert_eq!(hold_at(1000), 20, "at most the maximum");
    }

    #[test]
    fn the_defaults_hold_what_the_readme_says() {
        let defaults = BatchPolicy::from_config(&Config::defaults());
        assert_eq!(
            hold_under(defaults, 40),
            0,
            "20 msg/s in a room of two senders"
        );
        assert_eq!(hold_under(defaults, 160), 3, "80 msg/s");
        assert_eq!(hold_under(defaults, 400), 20, "200 msg/s");
    }

    #[test]
    fn a_burst_after_a_long_silence_is_not_a_firehose() {
        let mut batching = Batching::default();
        // 50 frames in one go, then nothing for 10 s: 5 frames/s over the window.
        batching.hold(POLICY, 0, 50);
        assert_eq!(batching.hold(POLICY, 10_000, 1), 0);
    }

    #[test]
    fn frames_written_while_held_count_toward_the_rate() {
        let mut batching = Batching::default();
        // 100 frames/s taken one by one, plus 200/s that arrived while held: 300/s in all.
        for ms in (0..100).step_by(10) {
            batching.hold(POLICY, ms, 1);
            batching.count(2);
        }
        assert_eq!(batching.hold(POLICY, 100, 1), 16);
    }

    #[test]
    fn batching_can_be_turned_off() {
        for policy in [
            BatchPolicy {
                busy_frames_per_sec: 0,
                ..POLICY
            },
            BatchPolicy {
                delay_ms: 0,
                ..POLICY
            },
        ] {
            let mut batching = Batching::default();
            assert_eq!(run(&mut batching, policy, 100, 1000), 0);
        }
    }
}

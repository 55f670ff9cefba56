//! A token bucket: an allowance that refills at a steady rate, up to a size.
//!
//! Three limits spend one: [`flood`](crate::flood) on the lines of one
//! client, [`throttle`](crate::throttle) on the connections of one address,
//! [`udp_guard`](crate::udp_guard) on the replies and bytes sent to one
//! source. The rate and the size are not kept in it: every allowance of one
//! table shares them, and a table holds thousands, so the owner keeps them
//! once and passes them in. An allowance is its tokens and the instant they
//! were counted at, nothing more.
//!
//! Time only adds tokens when [`Allowance::refill`] is called; what is
//! there is what the last refill counted. So a caller refills to `now`,
//! then checks or takes.

use std::time::{Duration, Instant};

/// What may be spent now, and since when that is counted.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    /// What may be spent now (fractional while refilling, at most the size
    /// the owner passes to [`refill`](Self::refill)).
    tokens: f64,
    /// When `tokens` was last brought up to date: the refill counts from
    /// here.
    last: Instant,
}

impl Allowance {
    /// An allowance holding `size`, counted from `now`.
    pub fn full(size: f64, now: Instant) -> Allowance {
        Allowance {
            tokens: size,
            last: now,
        }
    }

    /// Adds what `rate` a second has earned since the last refill, up to
    /// `size`, as of `now`. A `now` before the last refill adds nothing.
    pub fn refill(&mut self, now: Instant, rate: f64, size: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(size);
        self.last = now;
    }

    /// Whether `n` may be spent, as of the last refill.
    pub fn holds(&self, n: f64) -> bool {
        self.tokens >= n
    }

    /// Spends `n` if it [`holds`](Self::holds) them; `false` spends
    /// nothing.
    #[must_use]
    pub fn take(&mut self, n: f64) -> bool {
        if self.holds(n) {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// How long after the last refill `n` are there at `rate` a second:
    /// zero if they are there now, [`Duration::MAX`] if they never come
    /// (rate 0). The size is not checked: `n` above it never comes either.
    pub fn until(&self, n: f64, rate: f64) -> Duration {
        if self.holds(n) {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64((n - self.tokens) / rate).unwrap_or(Duration::MAX)
    }

    /// Whether a refill at `now` would fill it to `size`, without
    /// refilling: a full allowance is as good as a new one, so a table can
    /// forget it.
    pub fn full_by(&self, now: Instant, rate: f64, size: f64) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate >= size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full allowance gives its size at once, then nothing until it
    /// refills.
    #[test]
    fn take_spends_what_is_there() {
        let t = Instant::now();
        let mut allowance = Allowance::full(3.0, t);
        assert!((0..3).all(|_| allowance.take(1.0)));
        assert!(!allowance.take(1.0));
        assert!(!allowance.holds(1.0));
        allowance.refill(t + Duration::from_millis(100), 10.0, 3.0);
        assert!(allowance.take(1.0));
        assert!(!allowance.take(1.0));
    }

    /// A take larger than what is there spends nothing.
    #[test]
    fn a_short_take_spends_nothing() {
        let t = Instant::now();
        let mut allowance = Allowance::full(100.0, t);
        assert!(!allowance.take(101.0));
        assert!(allowance.take(100.0));
    }

    /// Refilling stops at the size; a `now` before the last refill adds
    /// nothing.
    #[test]
    fn refill_is_capped_and_never_goes_back() {
        let t = Instant::now() + Duration::from_secs(10);
        let mut allowance = Allowance::full(2.0, t);
        assert!(allowance.take(2.0));
        allowance.refill(t - Duration::from_secs(5), 10.0, 2.0);
        assert!(!allowance.holds(1.0));
        allowance.refill(t + Duration::from_secs(60), 10.0, 2.0);
        assert!(allowance.holds(2.0));
        assert!(!allowance.holds(2.5));
    }

    /// The wait is for what is missing at the rate; none when it is there,
    /// forever at rate 0.
    #[test]
    fn until_counts_what_is_missing() {
        let t = Instant::now();
        let mut allowance = Allowance::full(1.0, t);
        assert_eq!(allowance.until(1.0, 4.0), Duration::ZERO);
        assert!(allowance.take(1.0));
        let wait = allowance.until(1.0, 4.0);
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-9, "{wait:?}");
        assert_eq!(allowance.until(1.0, 0.0), Duration::MAX);
    }

    /// `full_by` looks ahead without refilling.
    #[test]
    fn full_by_looks_ahead() {
        let t = Instant::now();
        let mut allowance = Allowance::full(10.0, t);
        assert!(allowance.full_by(t, 10.0, 10.0));
        assert!(allowance.take(5.0));
        assert!(!allowance.full_by(t + Duration::from_millis(400), 10.0, 10.0));
        assert!(allowance.full_by(t + Duration::from_millis(500), 10.0, 10.0));
        assert!(!allowance.holds(6.0), "it did not refill");
    }
}

//! Connect throttling: a token bucket per address on new connections,
//! checked on the accept thread before a connection is registered or takes
//! a worker.
//!
//! A client that connects and closes in a loop sends no line, so flood
//! control never sees it, yet every connection that gets in costs the room a
//! join and a leave notice. One address may open `--connect-burst`
//! connections at once, then `--connect-rate` per second; past that each new
//! one is refused with a `! ` line. Loopback is exempt unless
//! `--limit-loopback`, like the per-address cap.
//!
//! The table of buckets is bounded: a bucket that has refilled is the same
//! as no bucket, so full ones are swept out (every [`SWEEP_INTERVAL`], and
//! whenever the table is full), and the table never holds more than
//! [`MAX_ADDRESSES`]. An address that finds it full of recently active
//! addresses shares one overflow bucket with every other such address: under
//! a spray from many addresses, newcomers together get one address's
//! allowance, and memory stays flat. Only the accept thread uses it, so it
//! needs no lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::allowance::Allowance;

/// Most addresses tracked at once. An entry is about 56 bytes (address,
/// tokens, time, flag) plus the hash table's overhead, so the table stays
/// under about 2 MB.
pub const MAX_ADDRESSES: usize = 16_384;

/// How often full buckets are swept out of the table, so an idle server
/// returns to an empty one.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Least time between two sweeps forced by a full table: under a spray of
/// new addresses a sweep that freed nothing is not repeated per accept.
pub const MIN_SWEEP_GAP: Duration = Duration::from_secs(1);

/// What to do with a new connection.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the address's allowance.
    Admit,
    /// Over it: refuse. `first` is true for the first refusal since the
    /// address was last admitted, so the log says it once per episode.
    Throttled {
        /// First refusal of this episode.
        first: bool,
    },
}

/// One address's allowance.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// New connections the address may open now, refilled at
    /// `--connect-rate` up to `--connect-burst`.
    allowance: Allowance,
    /// Refused since it was last admitted (for the log).
    refusing: bool,
}

/// Token buckets on new connections, one per address.
#[derive(Debug)]
pub struct ConnectThrottle {
    /// Tokens per second (`--connect-rate`); 0 = throttle off.
    rate: f64,
    /// Most tokens a bucket holds (`--connect-burst`).
    burst: f64,
    /// `--limit-loopback`: throttle loopback addresses too.
    limit_loopback: bool,
    /// At most [`MAX_ADDRESSES`] entries.
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by every address that found the table full.
    overflow: Bucket,
    /// When full buckets were last swept out.
    last_sweep: Instant,
}

impl ConnectThrottle {
    /// An empty table: `burst` connections at once, then `rate` per second.
    pub fn new(rate: u32, burst: u32, limit_loopback: bool) -> ConnectThrottle {
        let now = Instant::now();
        let burst = f64::from(burst.max(1));
        ConnectThrottle {
            rate: f64::from(rate),
            burst,
            limit_loopback,
            buckets: HashMap::new(),
            overflow: Bucket::new(burst, now),
            last_sweep: now,
        }
    }

    /// Judges a new connection from `ip` arriving at `now`, and takes its
    /// token if it is admitted.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let ip = ip.to_canonical();
        if self.rate == 0.0 || (ip.is_loopback() && !self.limit_loopback) {
            return Verdict::Admit;
        }
        let since_sweep = now.saturating_duration_since(self.last_sweep);
        let full = self.buckets.len() >= MAX_ADDRESSES;
        if since_sweep >= SWEEP_INTERVAL || (full && since_sweep >= MIN_SWEEP_GAP) {
            self.sweep(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = if self.buckets.len() < MAX_ADDRESSES || self.buckets.contains_key(&ip) {
            self.buckets.entry(ip).or_insert(Bucket::new(burst, now))
        } else {
            &mut self.overflow
        };
        bucket.allowance.refill(now, rate, burst);
        if bucket.allowance.take(1.0) {
            bucket.refusing = false;
            Verdict::Admit
        } else {
            let first = !bucket.refusing;
            bucket.refusing = true;
            Verdict::Throttled { first }
        }
    }

    /// Drops every bucket that has refilled: it would be created full anyway.
    fn sweep(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, bucket| {
            bucket.allowance.refill(now, rate, burst);
            !bucket.allowance.full_by(now, rate, burst)
        });
        self.buckets
            .shrink_to(MAX_ADDRESSES.min(self.buckets.len() * 2));
        self.last_sweep = now;
    }

    /// Addresses tracked now (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

impl Bucket {
    /// A full bucket for an address not refused yet.
    fn new(burst: f64, now: Instant) -> Bucket {
        Bucket {
            allowance: Allowance::full(burst, now),
            refusing: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    /// The burst goes through at once, the next is refused (said once per
    /// episode), and one more is let in per 1/rate.
    #[test]
    fn burst_then_rate() {
        let mut throttle = ConnectThrottle::new(5, 3, false);
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.check(addr(1), t), Verdict::Admit);
        }
        assert_eq!(
            throttle.check(addr(1), t),
            Verdict::Throttled { first: true }
        );
        assert_eq!(
            throttle.check(addr(1), t),
            Verdict::Throttled { first: false }
        );
        assert_eq!(throttle.check(addr(2), t), Verdict::Admit, "per address");
        let later = t + Duration::from_millis(200);
        assert_eq!(throttle.check(addr(1), later), Verdict::Admit);
        assert_eq!(
            throttle.check(addr(1), later),
            Verdict::Throttled { first: true }
        );
    }

    /// Loopback is exempt unless `--limit-loopback`; rate 0 is off.
    #[test]
    fn loopback_and_zero_rate_are_exempt() {
        let t = Instant::now();
        let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
        let mut exempt = ConnectThrottle::new(5, 1, false);
        assert!((0..100).all(|_| exempt.check(local, t) == Verdict::Admit));
        let mut limited = ConnectThrottle::new(5, 1, true);
        assert_eq!(limited.check(local, t), Verdict::Admit);
        assert_ne!(limited.check(local, t), Verdict::Admit);
        let mut off = ConnectThrottle::new(0, 1, true);
        assert!((0..100).all(|_| off.check(addr(1), t) == Verdict::Admit));
        assert_eq!(off.tracked(), 0);
    }

    /// The table never passes [`MAX_ADDRESSES`]: past it, new addresses
    /// share the overflow bucket; once buckets have refilled they are swept
    /// out and the table empties.
    #[test]
    fn the_table_is_bounded_and_swept() {
        let mut throttle = ConnectThrottle::new(5, 2, false);
        let t = Instant::now();
        for n in 0..MAX_ADDRESSES as u32 {
            assert_eq!(throttle.check(addr(n), t), Verdict::Admit);
        }
        assert_eq!(throttle.tracked(), MAX_ADDRESSES);
        let newcomers: Vec<Verdict> = (0..5)
            .map(|n| throttle.check(addr(1_000_000 + n), t))
            .collect();
        assert_eq!(throttle.tracked(), MAX_ADDRESSES, "bounded");
        assert_eq!(
            newcomers,
            [
                Verdict::Admit,
                Verdict::Admit,
                Verdict::Throttled { first: true },
                Verdict::Throttled { first: false },
                Verdict::Throttled { first: false },
            ],
            "newcomers share one bucket"
        );
        // Each bucket lost one token of two: refilled after 0.2 s, swept at
        // the next check once SWEEP_INTERVAL has passed.
        let later = t + SWEEP_INTERVAL;
        assert_eq!(throttle.check(addr(0x00ff_fff0), later), Verdict::Admit);
        assert_eq!(throttle.tracked(), 1, "only the newest bucket is left");
    }
}

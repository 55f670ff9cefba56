//! Flood control: a token bucket on the lines one client sends.
//!
//! A client over its rate is not dropped and loses nothing: its reader just
//! waits before handling the next line. While it waits nobody reads its
//! socket, so its kernel buffers fill and TCP pushes back on the sender. The
//! rest of the room never sees the flood, so nobody's queue fills because of
//! one paste.

use std::time::{Duration, Instant};

use crate::allowance::Allowance;
use crate::shutdown::{Shutdown, Waited};

/// `--rate-limit` lines per second after a `--burst`.
#[derive(Debug)]
pub struct TokenBucket {
    /// Tokens added per second; 0 = no limit.
    rate: f64,
    /// Most tokens held: how many lines may come at once.
    burst: f64,
    /// Lines that may be handled now, refilled at `rate` up to `burst`.
    allowance: Allowance,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate),
            burst,
            allowance: Allowance::full(burst, Instant::now()),
        }
    }

    /// How long to wait before one more line may be handled; takes its
    /// token if it may be handled now.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        if self.rate == 0.0 {
            return None;
        }
        self.allowance.refill(now, self.rate, self.burst);
        if self.allowance.take(1.0) {
            None
        } else {
            Some(self.allowance.until(1.0, self.rate))
        }
    }

    /// Takes a token if one is there now; `false` means [`wait`](Self::wait).
    pub fn try_take(&mut self) -> bool {
        self.take(Instant::now()).is_none()
    }

    /// Waits until a line may be handled; [`Waited::ShuttingDown`] if
    /// shutdown began while waiting.
    pub fn wait(&mut self, shutdown: &Shutdown) -> Waited {
        while let Some(wait) = self.take(Instant::now()) {
            if shutdown.pause(wait) == Waited::ShuttingDown {
                return Waited::ShuttingDown;
            }
        }
        Waited::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The burst goes through at once; the next line waits 1/rate.
    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3);
        bucket.allowance = Allowance::full(bucket.burst, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), None);
        }
        let wait = bucket.take(start).expect("bucket is empty");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(bucket.take(start + Duration::from_millis(100)), None);
    }

    /// Rate 0 never waits.
    #[test]
    fn zero_rate_is_off() {
        let mut bucket = TokenBucket::new(0, 1);
        let now = Instant::now();
        assert!((0..10_000).all(|_| bucket.take(now).is_none()));
    }

    /// A wait with a token there is done at once; one that shutdown cuts
    /// short says so.
    #[test]
    fn wait_ends_on_shutdown() {
        let shutdown = Shutdown::new();
        let mut bucket = TokenBucket::new(1, 1);
        assert_eq!(bucket.wait(&shutdown), Waited::Done);
        assert!(shutdown.trigger());
        assert_eq!(bucket.wait(&shutdown), Waited::ShuttingDown);
    }
}

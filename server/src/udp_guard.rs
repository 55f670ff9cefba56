//! Which UDP datagrams get a reply (SPEC "Limits": UDP).
//!
//! UDP senders are not verified: a datagram can name any source. One whose
//! source is the server's own socket would make it answer itself forever;
//! one whose source is a second echo server sets the two bouncing. So:
//!
//! - a datagram from one of the server's own sockets (our port, and an
//!   address of this host: loopback, the address it was sent to, or an
//!   interface's address at start) gets no reply;
//! - replies to one source address (IP and port) are a token bucket:
//!   `--udp-rate` per second, as many at once. Two servers bounced by a
//!   spoofed datagram then trade at most `--udp-rate` datagrams a second,
//!   which costs next to nothing, while everyone else is answered as usual.
//!
//! Memory: at most [`MAX_PEERS`] buckets (about 64 bytes each). Buckets idle
//! long enough to be full again are forgotten first; with every bucket in
//! use within the last second, a new address gets no reply until one frees.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Source addresses whose reply rate is tracked at once.
pub const MAX_PEERS: usize = 4096;

/// Datagrams left unanswered are logged as a count at most this often.
pub const WITHHELD_LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether a datagram gets a reply.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Reply,
    /// It came from our own socket: never answered.
    Own,
    /// Its source had its share of replies this second.
    OverRate,
}

/// One source address's reply allowance.
#[derive(Clone, Copy)]
struct Bucket {
    /// Replies it may still get now (up to the rate).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// The reply policy of one UDP socket.
pub struct Guard {
    /// Our socket's port.
    port: u16,
    /// This host's addresses at start (interfaces), besides loopback.
    own: Vec<IpAddr>,
    /// Replies per second to one source, and the bucket's size.
    rate: f64,
    /// Allowance per source address.
    buckets: HashMap<SocketAddr, Bucket>,
    /// Datagrams left unanswered since the last log line: own, over rate.
    withheld: (u64, u64),
    /// When the last count was logged.
    logged: Option<Instant>,
}

impl Guard {
    /// A guard for a socket bound to `local`, allowing `rate` replies a
    /// second to each source.
    pub fn new(local: SocketAddr, rate: u32) -> Guard {
        let mut own: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
            .map(|addrs| {
                addrs
                    .filter_map(|ifa| {
                        let addr = ifa.address?;
                        if let Some(v4) = addr.as_sockaddr_in() {
                            Some(IpAddr::V4(v4.ip()))
                        } else {
                            addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        own.push(local.ip());
        Guard {
            port: local.port(),
            own,
            rate: f64::from(rate.max(1)),
            buckets: HashMap::new(),
            withheld: (0, 0),
            logged: None,
        }
    }

    /// Whether to answer a datagram from `peer` that was sent to `to` (when
    /// the kernel said), at `now`.
    pub fn check(&mut self, peer: SocketAddr, to: Option<IpAddr>, now: Instant) -> Verdict {
        let verdict = if self.is_own(peer, to) {
            Verdict::Own
        } else if self.take(peer, now) {
            Verdict::Reply
        } else {
            Verdict::OverRate
        };
        match verdict {
            Verdict::Reply => {}
            Verdict::Own => self.withheld.0 += 1,
            Verdict::OverRate => self.withheld.1 += 1,
        }
        verdict
    }

    /// The count of unanswered datagrams to log now, if there are any and
    /// the last such line is [`WITHHELD_LOG_EVERY`] old.
    pub fn report(&mut self, now: Instant) -> Option<(u64, u64)> {
        if self.withheld == (0, 0)
            || self
                .logged
                .is_some_and(|at| now.duration_since(at) < WITHHELD_LOG_EVERY)
        {
            return None;
        }
        self.logged = Some(now);
        Some(std::mem::take(&mut self.withheld))
    }

    /// Our port, from this host.
    fn is_own(&self, peer: SocketAddr, to: Option<IpAddr>) -> bool {
        let ip = peer.ip().to_canonical();
        peer.port() == self.port
            && (ip.is_loopback()
                || ip.is_unspecified()
                || to.is_some_and(|to| to.to_canonical() == ip)
                || self.own.iter().any(|own| own.to_canonical() == ip))
    }

    /// Takes one reply from `peer`'s bucket; `false` if it is empty.
    fn take(&mut self, peer: SocketAddr, now: Instant) -> bool {
        let rate = self.rate;
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= MAX_PEERS {
            // Forget buckets that have refilled: they are as good as new.
            self.buckets
                .retain(|_, b| now.duration_since(b.at).as_secs_f64() * rate + b.tokens < rate);
            if self.buckets.len() >= MAX_PEERS {
                return false;
            }
        }
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("literal")
    }

    /// Our own port from a local address is never answered; the same port
    /// from elsewhere, or another port from here, is.
    #[test]
    fn own_socket_is_not_answered() {
        let mut guard = Guard::new(addr("127.0.0.1:5000"), 100);
        let now = Instant::now();
        assert_eq!(guard.check(addr("127.0.0.1:5000"), None, now), Verdict::Own);
        assert_eq!(guard.check(addr("127.0.0.9:5000"), None, now), Verdict::Own);
        assert_eq!(
            guard.check(addr("[::ffff:127.0.0.1]:5000"), None, now),
            Verdict::Own
        );
        assert_eq!(
            guard.check(
                addr("192.0.2.7:5000"),
                Some("192.0.2.7".parse().unwrap()),
                now
            ),
            Verdict::Own
        );
        assert_eq!(
            guard.check(addr("127.0.0.1:5001"), None, now),
            Verdict::Reply
        );
        assert_eq!(
            guard.check(addr("192.0.2.7:5000"), None, now),
            Verdict::Reply
        );
        assert_eq!(guard.report(now), Some((4, 0)));
        assert_eq!(guard.report(now), None);
    }

    /// A source gets `rate` replies at once, then `rate` a second; another
    /// source is not affected.
    #[test]
    fn replies_per_source_are_rate_limited() {
        let mut guard = Guard::new(addr("127.0.0.1:5000"), 10);
        let t0 = Instant::now();
        let a = addr("127.0.0.1:6000");
        let b = addr("127.0.0.1:6001");
        let answered = (0..50)
            .filter(|_| guard.check(a, None, t0) == Verdict::Reply)
            .count();
        assert_eq!(answered, 10);
        assert_eq!(guard.check(b, None, t0), Verdict::Reply);
        let later = t0 + Duration::from_millis(500);
        let answered = (0..50)
            .filter(|_| guard.check(a, None, later) == Verdict::Reply)
            .count();
        assert_eq!(answered, 5);
    }

    /// The table of sources is bounded; refilled buckets make room.
    #[test]
    fn the_table_is_bounded() {
        let mut guard = Guard::new(addr("127.0.0.1:5000"), 10);
        let t0 = Instant::now();
        for port in 0..MAX_PEERS as u16 {
            let peer = SocketAddr::from(([10, 0, 0, 1], port));
            assert_eq!(guard.check(peer, None, t0), Verdict::Reply);
        }
        let extra = addr("10.0.0.2:1");
        assert_eq!(guard.check(extra, None, t0), Verdict::OverRate);
        assert_eq!(
            guard.check(extra, None, t0 + Duration::from_secs(1)),
            Verdict::Reply
        );
        assert!(guard.buckets.len() <= MAX_PEERS);
    }
}

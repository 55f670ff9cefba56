//! Which UDP datagrams get a reply (SPEC "Limits": UDP).
//!
//! UDP senders are not verified: a datagram can name any source. One whose
//! source is the server's own socket would make it answer itself forever;
//! one whose source is a second echo server sets the two bouncing; one whose
//! source is a victim's address turns the server into an amplifier (ten
//! bytes in, up to 64 KB of file out). So:
//!
//! - a datagram from our own port, from any address, gets no reply: it is
//!   ourselves, or another server like us (the default 2000 to 2000 pair);
//! - nor does one from a well-known port whose service answers anything
//!   ([`SERVICE_PORTS`]: echo 7, daytime 13, chargen 19, time 37): those
//!   would answer our reply, and chargen's reply to each datagram is a
//!   datagram of its own, so a spoofed pair would bounce forever;
//! - replies to one source (IP and port) are a token bucket: `--udp-rate`
//!   per second, as many at once;
//! - on top, replies to one IP address, whatever the port (a spoofer can
//!   rotate ports), are capped at [`IP_RATE_FACTOR`] times `--udp-rate` a
//!   second and [`IP_BYTES`] bytes a second (as many at once).
//!
//! Memory: at most [`MAX_PEERS`] source buckets and as many address buckets
//! (about 64 bytes each). Buckets idle long enough to be full again are
//! forgotten first, in a sweep that runs at most every [`SWEEP_EVERY`]; with
//! every place taken, a new source gets no reply until one frees.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::allowance::Allowance;

/// Source addresses (IP and port), and IP addresses, tracked at once.
pub const MAX_PEERS: usize = 4096;

/// Datagrams left unanswered are logged as a count at most this often.
pub const WITHHELD_LOG_EVERY: Duration = Duration::from_secs(10);

/// A count of unanswered datagrams is logged no sooner than this after the
/// first datagram it counts, so a burst is one count, not its first
/// datagram alone (a line at that first datagram said `1 over
/// --udp-rate` for a burst of hundreds).
pub const WITHHELD_GATHER: Duration = Duration::from_secs(1);

/// Source ports never answered: services that answer any datagram (RFC
/// 862 echo, 867 daytime, 864 chargen, 868 time), so a datagram spoofed
/// from one would bounce between it and us.
pub const SERVICE_PORTS: [u16; 4] = [7, 13, 19, 37];

/// Replies a second to one IP address, all ports together, as a multiple of
/// `--udp-rate`: a spoofer rotating source ports gets this many, not
/// `--udp-rate` times [`MAX_PEERS`].
pub const IP_RATE_FACTOR: u32 = 4;

/// Reply bytes a second to one IP address, all ports together (as many at
/// once): bounds what a spoofed victim receives when small requests name
/// large files.
pub const IP_BYTES: u64 = 256 * 1024;

/// A full table is swept for refilled buckets at most this often, so a
/// flood of new sources does not scan it once per datagram.
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Whether a datagram gets a reply.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Reply,
    /// It came from our own port: never answered.
    Own,
    /// It came from a [`SERVICE_PORTS`] port: never answered.
    Service,
    /// Its source had its share of replies this second.
    OverRate,
    /// Its IP address had its share of replies or bytes this second.
    OverIp,
}

/// Datagrams left unanswered since the last report, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Withheld {
    /// From our own port.
    pub own: u64,
    /// From a service port.
    pub service: u64,
    /// Over `--udp-rate` for their source.
    pub over_rate: u64,
    /// Over the per-address cap (replies or bytes).
    pub over_ip: u64,
}

/// One IP address's allowances: replies and bytes, each holding at most
/// what it earns in a second.
#[derive(Clone, Copy)]
struct Address {
    /// Replies to all its ports together: one host cannot multiply its
    /// allowance by sending from many ports.
    replies: Allowance,
    /// Reply bytes to it: a big reply spends more than a small one.
    bytes: Allowance,
}

/// The reply policy of one UDP socket.
pub struct Guard {
    /// Our socket's port.
    port: u16,
    /// Replies per second to one source, and the bucket's size.
    rate: f64,
    /// Replies per second to one IP address.
    ip_rate: f64,
    /// Reply bytes per second to one IP address.
    ip_bytes: f64,
    /// Allowance per source address, `rate` a second and as many at once.
    sources: HashMap<SocketAddr, Allowance>,
    /// Allowances per IP address.
    addresses: HashMap<IpAddr, Address>,
    /// When a full table was last swept.
    swept: Option<Instant>,
    /// Sweeps so far (for the tests).
    sweeps: u64,
    /// Datagrams left unanswered since the last log line.
    withheld: Withheld,
    /// When the first datagram in `withheld` came (`None` while it is
    /// empty).
    since: Option<Instant>,
    /// When the last count was logged.
    logged: Option<Instant>,
}

impl Guard {
    /// A guard for a socket bound to `local`, allowing `rate` replies a
    /// second to each source.
    pub fn new(local: SocketAddr, rate: u32) -> Guard {
        let rate = rate.max(1);
        Guard {
            port: local.port(),
            rate: f64::from(rate),
            ip_rate: f64::from(rate.saturating_mul(IP_RATE_FACTOR)),
            ip_bytes: IP_BYTES as f64,
            sources: HashMap::new(),
            addresses: HashMap::new(),
            swept: None,
            sweeps: 0,
            withheld: Withheld::default(),
            since: None,
            logged: None,
        }
    }

    /// Whether to answer a datagram from `peer` at `now` (spending one
    /// reply of its allowances if so). The reply's size is checked after,
    /// with [`Guard::spend_bytes`].
    pub fn check(&mut self, peer: SocketAddr, now: Instant) -> Verdict {
        let verdict = if peer.port() == self.port {
            Verdict::Own
        } else if SERVICE_PORTS.contains(&peer.port()) {
            Verdict::Service
        } else {
            self.take(peer, now)
        };
        self.count(verdict, now);
        verdict
    }

    /// Whether a reply of `len` bytes to `peer` fits its address's byte
    /// allowance now (spending it if so); `false` counts as
    /// [`Verdict::OverIp`].
    pub fn spend_bytes(&mut self, peer: SocketAddr, len: usize, now: Instant) -> bool {
        let ip_bytes = self.ip_bytes;
        let Some(address) = self.addresses.get_mut(&peer.ip().to_canonical()) else {
            return true;
        };
        address.bytes.refill(now, ip_bytes, ip_bytes);
        if address.bytes.take(len as f64) {
            true
        } else {
            self.count(Verdict::OverIp, now);
            false
        }
    }

    /// When the unanswered datagrams counted so far are to be logged:
    /// [`WITHHELD_GATHER`] after the first of them, and no sooner than
    /// [`WITHHELD_LOG_EVERY`] after the last such line. `None` when there
    /// are none.
    pub fn due(&self) -> Option<Instant> {
        let since = self.since?;
        let gathered = since + WITHHELD_GATHER;
        Some(match self.logged {
            Some(at) => gathered.max(at + WITHHELD_LOG_EVERY),
            None => gathered,
        })
    }

    /// The count of unanswered datagrams to log now, if it is
    /// [`due`](Guard::due).
    pub fn report(&mut self, now: Instant) -> Option<Withheld> {
        if self.due().is_some_and(|due| due <= now) {
            self.logged = Some(now);
            self.pending()
        } else {
            None
        }
    }

    /// The count of unanswered datagrams not logged yet, due or not (for
    /// the last line, at the stop).
    pub fn pending(&mut self) -> Option<Withheld> {
        self.since = None;
        Some(std::mem::take(&mut self.withheld)).filter(|w| *w != Withheld::default())
    }

    fn count(&mut self, verdict: Verdict, now: Instant) {
        let w = &mut self.withheld;
        match verdict {
            Verdict::Reply => return,
            Verdict::Own => w.own += 1,
            Verdict::Service => w.service += 1,
            Verdict::OverRate => w.over_rate += 1,
            Verdict::OverIp => w.over_ip += 1,
        }
        self.since.get_or_insert(now);
    }

    /// Takes one reply from `peer`'s bucket and one from its address's.
    fn take(&mut self, peer: SocketAddr, now: Instant) -> Verdict {
        let ip = peer.ip().to_canonical();
        let new = !self.sources.contains_key(&peer) || !self.addresses.contains_key(&ip);
        if new && (self.sources.len() >= MAX_PEERS || self.addresses.len() >= MAX_PEERS) {
            self.sweep(now);
            if (!self.sources.contains_key(&peer) && self.sources.len() >= MAX_PEERS)
                || (!self.addresses.contains_key(&ip) && self.addresses.len() >= MAX_PEERS)
            {
                return Verdict::OverRate;
            }
        }
        let (rate, ip_rate, ip_bytes) = (self.rate, self.ip_rate, self.ip_bytes);
        let full = |size| Allowance::full(size, now);
        let source = self.sources.entry(peer).or_insert(full(rate));
        source.refill(now, rate, rate);
        if !source.holds(1.0) {
            return Verdict::OverRate;
        }
        let address = self.addresses.entry(ip).or_insert(Address {
            replies: full(ip_rate),
            bytes: full(ip_bytes),
        });
        address.replies.refill(now, ip_rate, ip_rate);
        if !address.replies.take(1.0) {
            return Verdict::OverIp;
        }
        // The source held one reply above, and nothing has spent it since.
        let taken = source.take(1.0);
        debug_assert!(taken);
        Verdict::Reply
    }

    /// Forgets buckets that are full again (as good as new), at most once
    /// per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|at| now.duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        self.sweeps += 1;
        let (rate, ip_rate, ip_bytes) = (self.rate, self.ip_rate, self.ip_bytes);
        forget_full(&mut self.sources, |s| s.full_by(now, rate, rate));
        forget_full(&mut self.addresses, |a| {
            a.replies.full_by(now, ip_rate, ip_rate) && a.bytes.full_by(now, ip_bytes, ip_bytes)
        });
    }
}

/// Drops the entries of `table` that `full` says are as good as new.
fn forget_full<K: Hash + Eq, V>(table: &mut HashMap<K, V>, full: impl Fn(&V) -> bool) {
    table.retain(|_, v| !full(v));
}

#[cfg(test)]
mod tests;

//! Wrong passwords per address, and lockouts: how many tries an address
//! has left, bounded by [`MAX_TRACKED`] addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{LOCKOUT, LOCKOUT_TRIES, LOCKOUT_WINDOW, MAX_TRACKED};

/// What one more wrong try did to its address.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Strike {
    /// Counted; the address may go on.
    Counted,
    /// The address is now locked out for [`LOCKOUT`].
    LockedOut,
}

/// What [`Failures::judge`] made of one try.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Judged {
    /// The right password.
    Right,
    /// A wrong one, counted.
    Wrong(Strike),
    /// Not judged: the address is locked out for this much longer.
    Locked(Duration),
}

/// Wrong tries per address, and lockouts; bounded by [`MAX_TRACKED`].
#[derive(Default)]
pub struct Failures {
    /// Each address's record, at most [`MAX_TRACKED`] of them.
    by_ip: Mutex<HashMap<IpAddr, Record>>,
}

struct Record {
    /// When its recent wrong tries were made, oldest first; at most
    /// [`LOCKOUT_TRIES`].
    tries: Vec<Instant>,
    /// Refused at accept until then.
    locked_until: Option<Instant>,
}

impl Record {
    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }

    fn stale(&self, now: Instant) -> bool {
        !self.locked(now)
            && self
                .tries
                .last()
                .is_none_or(|&t| now.saturating_duration_since(t) >= LOCKOUT_WINDOW)
    }
}

impl Failures {
    /// How long `ip` is still locked out, if it is.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let by_ip = self.by_ip.lock();
        let until = by_ip.get(&ip.to_canonical())?.locked_until?;
        (until > now).then(|| left_of(until, now))
    }

    /// Counts a wrong try from `ip` at `now`.
    pub fn strike(&self, ip: IpAddr, now: Instant) -> Strike {
        strike_in(&mut self.by_ip.lock(), ip.to_canonical(), now)
    }

    /// Judges one try from `ip` at `now` with `right` (the compare), and
    /// counts it if wrong, all under the lock: so however many connections
    /// of one address try at once, at most [`LOCKOUT_TRIES`] of its tries
    /// are judged before it is locked out, and none while it is.
    pub fn judge(&self, ip: IpAddr, now: Instant, right: impl FnOnce() -> bool) -> Judged {
        let ip = ip.to_canonical();
        let mut by_ip = self.by_ip.lock();
        if let Some(until) = by_ip.get(&ip).and_then(|r| r.locked_until) {
            if until > now {
                return Judged::Locked(left_of(until, now));
            }
        }
        if right() {
            Judged::Right
        } else {
            Judged::Wrong(strike_in(&mut by_ip, ip, now))
        }
    }

    /// Addresses remembered now (for tests).
    pub fn tracked(&self) -> usize {
        self.by_ip.lock().len()
    }
}

/// What is left of a lockout ending at `until`, seen at `now`: never more
/// than [`LOCKOUT`], even seen from an instant taken just before it began
/// (a connection accepted then).
fn left_of(until: Instant, now: Instant) -> Duration {
    (until - now).min(LOCKOUT)
}

/// Counts a wrong try from `ip` (canonical) at `now`, under the lock.
fn strike_in(by_ip: &mut HashMap<IpAddr, Record>, ip: IpAddr, now: Instant) -> Strike {
    if !by_ip.contains_key(&ip) && by_ip.len() >= MAX_TRACKED {
        make_room(by_ip, now);
        if by_ip.len() >= MAX_TRACKED {
            // Every remembered address is locked out: this one goes
            // uncounted (its connections still have 3 tries each).
            return Strike::Counted;
        }
    }
    let record = by_ip.entry(ip).or_insert_with(|| Record {
        // Never more than this: no growth past the stated bound.
        tries: Vec::with_capacity(LOCKOUT_TRIES),
        locked_until: None,
    });
    record
        .tries
        .retain(|&t| now.saturating_duration_since(t) < LOCKOUT_WINDOW);
    record.tries.push(now);
    if record.tries.len() >= LOCKOUT_TRIES {
        record.tries.clear();
        record.locked_until = Some(now + LOCKOUT);
        Strike::LockedOut
    } else {
        Strike::Counted
    }
}

/// Forgets stale records; if none is stale, the unlocked one whose last
/// try is oldest.
fn make_room(by_ip: &mut HashMap<IpAddr, Record>, now: Instant) {
    by_ip.retain(|_, record| !record.stale(now));
    if by_ip.len() < MAX_TRACKED {
        return;
    }
    let oldest = by_ip
        .iter()
        .filter(|(_, record)| !record.locked(now))
        .min_by_key(|(_, record)| record.tries.last().copied())
        .map(|(&ip, _)| ip);
    if let Some(ip) = oldest {
        by_ip.remove(&ip);
    }
}

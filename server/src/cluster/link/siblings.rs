//! What the links of one server share: their connection count, and
//! whether Redis is known to be hung.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{ALIVE_WITHIN, HUNG_FOR};

/// Shared by the links of one server: how many connections they have made
/// in all, and whether Redis is known to be hung. A link waiting out its
/// back-off tries again at once when a sibling got through, so the writer
/// is not left refusing lines for seconds after the reader saw Redis come
/// back.
#[derive(Clone)]
pub struct Siblings {
    /// Connections made by all the links sharing it.
    pub(super) connects: Arc<AtomicU64>,
    /// Until when (ms after `origin`; 0: not) Redis counts as hung: set
    /// for [`HUNG_FOR`] when a link timed out waiting for it (a hung
    /// Redis, or one that no longer answers in time), cleared by the next
    /// reply any link gets. Meanwhile a [`Link::quick`](super::Link::quick) link fails at once
    /// instead of waiting for a reply timeout of its own: a Redis that did
    /// not answer one connection will not answer another either.
    hung_until: Arc<AtomicU64>,
    /// When (ms after `origin`) a link last had a reply: a timeout soon
    /// after one is this connection's trouble (held, or a slow command),
    /// not a hung Redis ([`ALIVE_WITHIN`]).
    last_reply: Arc<AtomicU64>,
    /// What `hung_until` and `last_reply` count from.
    origin: Instant,
}

impl Default for Siblings {
    fn default() -> Self {
        Siblings {
            connects: Arc::default(),
            hung_until: Arc::default(),
            last_reply: Arc::default(),
            origin: Instant::now(),
        }
    }
}

impl Siblings {
    /// Now, in ms after `origin` (at least 1, so 0 means "not hung").
    pub(super) fn now_ms(&self) -> u64 {
        (self.origin.elapsed().as_millis() as u64).max(1)
    }

    /// Whether a link timed out less than [`HUNG_FOR`] ago and none got a
    /// reply since.
    pub(super) fn hung(&self) -> bool {
        self.now_ms() < self.hung_until.load(Ordering::Acquire)
    }

    /// A link timed out waiting for Redis: Redis counts as hung unless a
    /// link had a reply within [`ALIVE_WITHIN`]. Returns whether it does.
    pub(super) fn timed_out(&self) -> bool {
        let now = self.now_ms();
        let last = self.last_reply.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < ALIVE_WITHIN.as_millis() as u64 {
            return false;
        }
        let until = now + HUNG_FOR.as_millis() as u64;
        self.hung_until.store(until, Ordering::Release);
        true
    }

    /// A reply arrived: Redis answers.
    pub(super) fn answered(&self) {
        let now = self.now_ms();
        if self.last_reply.load(Ordering::Relaxed) != now {
            self.last_reply.store(now, Ordering::Release);
        }
        if self.hung_until.load(Ordering::Relaxed) != 0 {
            self.hung_until.store(0, Ordering::Release);
        }
    }
}

//! Connecting a [`Link`]: a new connection with its timeouts, the scripts
//! and the epoch; and what losing one does to the next attempt (the
//! back-off).

use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::{Connection, RedisError, RedisResult};

use super::super::keys;
use super::{brief, Failure, Link, BACKOFF_FIRST, BACKOFF_MAX, CONNECT_TIMEOUT, IO_TIMEOUT};
use crate::log;

impl Link {
    /// Makes sure the connection a command is about to use is alive, if a
    /// sibling connected anew since it last proved so ([`Link::rechecked`]
    /// links only).
    ///
    /// A connection that sat idle meanwhile may be dead: Redis may have
    /// restarted, and only a command sent on it would find out, too late
    /// for a line (its fate unsure: refused though it surely never
    /// arrived). So such a connection is checked first with a `PING`,
    /// which risks nothing; one found closed is replaced at once. One that
    /// times out fails the command as [`Failure::Lost`], as the command's
    /// own timeout would have. (Not part of [`Link::connect`]: waiting for
    /// the link to come up is not a command, and must not swallow the
    /// failure its owner is to see.)
    pub(super) fn recheck(&mut self) -> Result<(), Failure> {
        let Some(conn) = self.conn.as_mut().filter(|_| self.rechecked) else {
            return Ok(());
        };
        let count = self.siblings.connects.load(Ordering::Acquire);
        if count == self.checked {
            return Ok(());
        }
        match redis::cmd("PING").query::<String>(conn) {
            Ok(_) => {
                self.checked = count;
                Ok(())
            }
            // A hung Redis would not answer a new connection either.
            Err(e) if e.is_timeout() => {
                self.lose(&e);
                Err(Failure::Lost)
            }
            // Closed: dropped, and replaced at once (`lose`).
            Err(e) => {
                self.lose(&e);
                self.connect()
            }
        }
    }

    /// Connects now if there is no connection and the back-off allows.
    pub(super) fn connect(&mut self) -> Result<(), Failure> {
        if self.conn.is_some() {
            return Ok(());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Failure::Down);
        }
        let siblings = self.siblings.connects.load(Ordering::Acquire);
        if Instant::now() < self.retry_at && siblings == self.siblings_seen {
            return Err(Failure::Down);
        }
        match self.open() {
            Ok((conn, epoch)) => {
                if self.logged_down {
                    log!("redis {}: {} link back", self.url, self.name);
                }
                self.conn = Some(conn);
                self.checked = self.siblings.connects.fetch_add(1, Ordering::AcqRel) + 1;
                self.siblings.answered();
                self.epoch = Some(epoch);
                self.connects += 1;
                self.backoff = BACKOFF_FIRST;
                self.logged_down = false;
                Ok(())
            }
            Err(e) => {
                self.siblings_seen = siblings;
                self.lose(&e);
                Err(Failure::Down)
            }
        }
    }

    /// A new connection with its timeouts set, the scripts loaded and the
    /// epoch read (set first if this Redis has none: it is new or empty).
    fn open(&self) -> RedisResult<(Connection, String)> {
        let mut conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(self.read_timeout))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        for script in keys::scripts() {
            script.load(&mut conn)?;
        }
        let fresh = new_epoch();
        let (epoch,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(keys::epoch())
            .arg(&fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(keys::epoch())
            .query(&mut conn)?;
        Ok((conn, epoch))
    }

    /// Forgets the connection after `e` and schedules the next attempt: at
    /// once after a connection that worked (one dropped connection is not
    /// an outage), then with the back-off doubling.
    pub(super) fn lose(&mut self, e: &RedisError) {
        self.lost_to_hang = e.is_timeout() && self.siblings.timed_out();
        if self.conn.take().is_some() {
            self.lost_to_timeout = e.is_timeout();
            self.retry_at = Instant::now();
            return;
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        if !self.logged_down {
            self.logged_down = true;
            log!(
                "redis {}: {} link down ({}); retrying with back-off",
                self.url,
                self.name,
                brief(e)
            );
        }
    }
}

/// A new epoch value: unique enough that two empty starts of Redis never
/// share one (time in ns and the process id).
fn new_epoch() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

//! One connection to Redis and the only reconnect loop of the cluster.
//!
//! The redis crate's synchronous connections do not reconnect by
//! themselves. Each cluster thread (writer, reader, presence, and the
//! commands of the session threads) owns one [`Link`]; every command goes
//! through [`Link::run`], which connects when there is no connection, drops
//! the connection on any failure that is not Redis's own error reply, and
//! spaces the attempts with a doubling back-off ([`BACKOFF_FIRST`] up to
//! [`BACKOFF_MAX`]). So the failures it handles, each with a test in
//! `cluster/tests/links.rs`, are: Redis never there, Redis killed mid-run, Redis
//! restarted empty (a new epoch: see [`Link::epoch`]).
//!
//! Every new connection loads the cluster's Lua scripts and reads (or sets)
//! the epoch before anything else runs on it.
//!
//! Connecting (and losing a connection) is `link/connecting.rs`; the start
//! check (`check`), `link/start.rs`; what the links of one server share,
//! `link/siblings.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, ErrorKind, RedisError, RedisResult};

use super::url::RedisUrl;
use crate::shutdown::{Shutdown, Waited};

mod connecting;
mod replies;
mod siblings;
mod start;

pub use replies::Replies;
pub use siblings::Siblings;
pub use start::check;

/// How long connecting (TCP and handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one ordinary command (or one pipelined batch) may take before
/// the link counts as lost.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The first pause after a failed attempt; doubled on each further failure.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(50);

/// The longest pause between two attempts: how soon a server notices that
/// Redis is back, at worst.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How often a link waiting out its back-off ([`Link::wait_up`]) looks
/// whether a sibling link got through meanwhile, to connect at once.
pub const SIBLING_CHECK: Duration = Duration::from_millis(100);

/// How long after a link timed out waiting for Redis the [`Link::quick`]
/// links fail at once (unless a reply comes first): then one of their
/// callers tries again, at the cost of one reply timeout, while the others
/// go on failing at once. The cluster's own threads keep trying meanwhile
/// and end it as soon as Redis answers.
pub const HUNG_FOR: Duration = IO_TIMEOUT;

/// A link that times out less than this after some link of its server had
/// a reply does not take Redis for hung (a live Redis answers the reader at
/// least every `READ_BLOCK`, 500 ms): its own connection was in trouble,
/// and a command that may run twice is tried again on a fresh one. A
/// timeout always comes at least [`IO_TIMEOUT`] after its command was
/// sent, so a Redis that stopped answering is not taken for alive unless a
/// command was already waiting a second for its reply when it stopped.
pub const ALIVE_WITHIN: Duration = Duration::from_secs(1);

/// The oldest Redis the cluster runs on (XADD MAXLEN ~ with the stream
/// commands it uses, and `SET ... PX` semantics as in 6.2).
pub const MIN_VERSION: (u32, u32) = (6, 2);

/// Why a command did not run, or may not have.
#[must_use]
#[derive(Debug)]
pub enum Failure {
    /// No connection, and none could be made now: the command was not sent,
    /// so it certainly had no effect.
    Down,
    /// The connection broke (or timed out) with the command sent: it may or
    /// may not have taken effect.
    Lost,
    /// Redis answered with an error; the link is fine.
    Refused(RedisError),
}

/// The Redis of one server's links: its URL and the [`Siblings`] count they
/// share. Every thread of the cluster makes its link from this.
#[derive(Clone)]
pub struct Endpoint {
    /// Where Redis is.
    pub url: RedisUrl,
    /// Shared by every link made from this endpoint (and its clones).
    siblings: Siblings,
    /// Set by [`Endpoint::close`] (the server stopping): no link connects
    /// any more, so nothing waits for a hung Redis past that point.
    closed: Arc<AtomicBool>,
}

impl Endpoint {
    /// The endpoint of a new server: its links share one [`Siblings`].
    pub fn new(url: RedisUrl) -> Endpoint {
        Endpoint {
            url,
            siblings: Siblings::default(),
            closed: Arc::default(),
        }
    }

    /// A new link to this Redis for thread `name`.
    pub fn link(&self, name: &'static str, read_timeout: Duration) -> Link {
        let mut link = Link::new(&self.url, name, read_timeout, &self.siblings);
        link.closed = Arc::clone(&self.closed);
        link
    }

    /// The server is stopping: from now on its links fail at once instead
    /// of connecting (a command already sent still waits for its reply, at
    /// most the link's read timeout).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// A connection to Redis that comes back by itself.
pub struct Link {
    /// The connection count shared with this server's other links.
    siblings: Siblings,
    /// Its value when this link last failed to connect.
    siblings_seen: u64,
    /// Which thread owns it, for log lines.
    name: &'static str,
    /// What to connect to.
    client: redis::Client,
    /// For log lines (no password).
    url: RedisUrl,
    /// The live connection; `None` while down.
    conn: Option<Connection>,
    /// The siblings' connection count when `conn` last proved alive (it
    /// was made, or answered a `PING`): while it has not moved, no sibling
    /// had to connect anew, and `conn` is trusted without a check.
    checked: u64,
    /// The read timeout set on each new connection (longer than a blocking
    /// XREAD for the reader).
    read_timeout: Duration,
    /// The pause after the next failure.
    backoff: Duration,
    /// No attempt before this instant (the back-off in force).
    retry_at: Instant,
    /// The epoch of the Redis this link last reached.
    epoch: Option<String>,
    /// How many connections this link has made: a change tells its owner
    /// that the connection is new (resubscribe, reload what it kept).
    connects: u64,
    /// Whether the current outage was logged (one line per outage).
    logged_down: bool,
    /// Whether the last connection lost was lost to a timeout (Redis may
    /// still read what was sent on it) rather than closed (it will not).
    lost_to_timeout: bool,
    /// Whether that timeout found Redis hung (no reply to any link within
    /// [`ALIVE_WITHIN`]): then nothing is tried again.
    lost_to_hang: bool,
    /// Its endpoint's [`Endpoint::close`]: set, it never connects again.
    closed: Arc<AtomicBool>,
    /// Set by [`Link::rechecked`]: a connection that sat idle while a
    /// sibling connected anew is checked before a command uses it.
    rechecked: bool,
    /// Set by [`Link::quick`]: while a sibling knows Redis hung, fail at
    /// once rather than wait for a reply (for the questions a client waits
    /// for; the cluster's own threads keep trying and find Redis back).
    quick: bool,
}

impl Link {
    /// A link that connects on first use. `read_timeout` bounds every reply
    /// (at least [`IO_TIMEOUT`]).
    pub fn new(
        url: &RedisUrl,
        name: &'static str,
        read_timeout: Duration,
        siblings: &Siblings,
    ) -> Link {
        Link {
            siblings: siblings.clone(),
            siblings_seen: 0,
            name,
            // The URL was checked by `RedisUrl::parse`, with this same call.
            client: redis::Client::open(url.as_str()).expect("a checked URL opens"),
            url: url.clone(),
            conn: None,
            checked: 0,
            read_timeout: read_timeout.max(IO_TIMEOUT),
            backoff: BACKOFF_FIRST,
            retry_at: Instant::now(),
            epoch: None,
            connects: 0,
            logged_down: false,
            lost_to_timeout: false,
            lost_to_hang: false,
            closed: Arc::default(),
            rechecked: false,
            quick: false,
        }
    }

    /// Makes this a link for questions a client waits for (connecting,
    /// `/nick`, `/who`, a room's history): while Redis is known to be hung
    /// (a sibling, or this link, timed out less than [`HUNG_FOR`] ago and
    /// no link has had a reply since) its commands fail at once with
    /// [`Failure::Down`], so the callers queued behind one timeout do not
    /// each wait another.
    #[must_use]
    pub fn quick(mut self) -> Link {
        self.quick = true;
        self
    }

    /// Makes this a link whose idle connection is checked (`PING`) before
    /// a command uses it when a sibling had to connect anew meanwhile, and
    /// replaced at once if found closed: for the writer, whose connection
    /// sits idle through an outage (lines are refused at once meanwhile),
    /// so that the first line after Redis came back is not sent on a dead
    /// connection and refused as unsure. Not for a link whose owner must
    /// see each new connection before it runs a command on it (the
    /// reader, which resumes its cursors in [`Link::connects`]' light).
    #[must_use]
    pub fn rechecked(mut self) -> Link {
        self.rechecked = true;
        self
    }

    /// Runs `op` on the connection, connecting first if there is none and
    /// the back-off allows. Never sleeps: when down it fails at once.
    ///
    /// # Errors
    /// [`Failure::Down`], [`Failure::Lost`] or [`Failure::Refused`].
    pub fn run<T>(
        &mut self,
        op: impl FnOnce(&mut Replies<'_>) -> RedisResult<T>,
    ) -> Result<T, Failure> {
        if self.quick && self.siblings.hung() {
            return Err(Failure::Down);
        }
        self.connect()?;
        self.recheck()?;
        let conn = self.conn.as_mut().ok_or(Failure::Down)?;
        match op(&mut Replies(conn, self.epoch.as_deref())) {
            Ok(value) => {
                self.siblings.answered();
                Ok(value)
            }
            Err(e) if is_reply(&e) => {
                self.siblings.answered();
                Err(Failure::Refused(e))
            }
            Err(e) => {
                self.lose(&e);
                Err(Failure::Lost)
            }
        }
    }

    /// Like [`Link::run`], for a command that may safely run twice (a read,
    /// a claim of one's own name, a set to the same value, a numbered inbox
    /// request: [`super::keys::INBOX_PUT`]): on [`Failure::Lost`] to a closed
    /// connection it is tried once more, on a fresh one. So a connection
    /// Redis closed while it sat idle (`CLIENT KILL`, its idle timeout, a
    /// Redis restart) does not cost the first command after it. Not after
    /// a timeout that found Redis hung (no link had a reply within
    /// [`ALIVE_WITHIN`]): a Redis that does not answer will not answer a
    /// fresh connection either, and the caller would wait twice.
    ///
    /// # Errors
    /// As [`Link::run`], from the second try if there was one.
    pub fn run_idempotent<T>(
        &mut self,
        mut op: impl FnMut(&mut Replies<'_>) -> RedisResult<T>,
    ) -> Result<T, Failure> {
        match self.run(&mut op) {
            Err(Failure::Lost) if !self.lost_to_hang => self.run(op),
            other => other,
        }
    }

    /// Waits (with back-off, waking at once on shutdown) until connected.
    /// [`Waited::ShuttingDown`] if shutdown began first. A sibling link
    /// that got through ends the back-off: within [`SIBLING_CHECK`], this
    /// one tries at once (the reader, which tells the rooms Redis is back,
    /// waited out up to [`BACKOFF_MAX`] after presence had reconnected,
    /// its server refusing lines meanwhile: a review).
    pub fn wait_up(&mut self, shutdown: &Shutdown) -> Waited {
        loop {
            if shutdown.is_triggered() {
                return Waited::ShuttingDown;
            }
            if self.connect().is_ok() {
                return Waited::Done;
            }
            let pause = self
                .retry_at
                .saturating_duration_since(Instant::now())
                .min(SIBLING_CHECK);
            if shutdown.pause(pause.max(Duration::from_millis(1))) == Waited::ShuttingDown {
                return Waited::ShuttingDown;
            }
        }
    }

    /// Whether a connection is open now.
    pub fn is_up(&self) -> bool {
        self.conn.is_some()
    }

    /// How many connections this link has made so far.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// The epoch of the Redis last reached; a new value means Redis lost
    /// everything in between.
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// Whether the last [`Failure::Lost`] was a timeout: what was sent on
    /// that connection may still reach Redis and be applied. Otherwise the
    /// connection was closed (by Redis, or a Redis that died): nothing more
    /// sent on it will be applied.
    pub fn lost_to_timeout(&self) -> bool {
        self.lost_to_timeout
    }
}

/// Whether `e` is Redis's own error reply (the connection is still in step)
/// rather than a broken or timed-out connection.
fn is_reply(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// A Redis error in one short line.
pub fn brief(e: &RedisError) -> String {
    let text = e.to_string();
    let text = text.lines().next().unwrap_or_default();
    match text.find(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text.to_string(),
    }
}

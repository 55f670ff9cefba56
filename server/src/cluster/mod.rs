//! The cluster (`--redis URL`, SPEC "Several servers, one set of rooms"):
//! the only code of the server that talks to Redis.
//!
//! Several chat-servers share one Redis and so one set of rooms:
//!
//! - Each room's log is a Redis Stream ([`keys::log`]), trimmed to about
//!   [`LogConfig::max_len`] entries. The stream's order is the room's order
//!   for every client on every server: a server delivers its own clients'
//!   lines from the stream too, never locally first.
//! - The [`writer`] appends every line over one connection per server (a
//!   Lua script numbers it and XADDs it in one step), pipelining whatever
//!   is queued so one round trip carries many lines; the thread that
//!   relayed a line sends it itself when no one else is sending, the
//!   writer thread otherwise. A line it cannot append is handed back as
//!   refused: the sender gets a `! ` line, nothing is queued for later.
//! - One [`reader`] thread per server reads every stream that has local
//!   members with one blocking XREAD, and hands each entry to the
//!   [`Sink`] once per server (the rooms fan it out to their members). After
//!   a lost link it resumes from the last entry it delivered; a gap in the
//!   entries' numbers, or a new epoch (Redis restarted empty), is reported
//!   as [`Missed`] so the clients are told. A room first watched while
//!   the link is lost is read from the moment of the watch, on Redis's
//!   clock as the reader last saw it.
//! - [`presence`]: a heartbeat key with a TTL per server and its members
//!   under it; a lock key decides which survivor announces a lost server's
//!   members (once) and frees their names. [`names`]: names unique across
//!   servers ignoring case (SET NX) and `guest-N` from one INCR counter.
//!   [`shared_bans`]: the console's bans kept in Redis too, applied by
//!   each server when it registers (so one that missed a `/ban` gets it).
//! - [`link`]: the connection and the reconnect loop with back-off, in one
//!   place, used by every thread above.
//!
//! How the rooms run on it, without knowing: [`room_log`] is the second
//! implementation of the rooms' `Log` seam (and [`shared_names`] of their
//! `Names`), [`bridge`] turns what the threads above hand over into calls
//! of the rooms (and the rooms' calls into Redis entries), and [`node`]
//! starts and stops one server's side of it all.
//!
//! Lock order: the cluster's threads call the [`Sink`] holding none of
//! their own locks; the bridge's `adopting` and `outage`, and the names'
//! `ban_order`, are held across calls of the rooms, above every lock of
//! theirs (the order is written once, in `rooms/mod.rs`).

pub mod bridge;
pub mod keys;
pub mod link;
pub mod names;
pub mod node;
pub mod presence;
pub mod reader;
pub mod room_log;
pub mod shared_bans;
pub mod shared_names;
pub mod spelling;
pub mod tail;
pub mod url;
pub mod writer;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use link::check;
pub use node::Node;
pub use url::RedisUrl;

/// Now by this server's wall clock, in ms since the Unix epoch (0 for a
/// clock set before it): when a member entered its room, when a ban or an
/// inbox request was made, a line's first sending (compared with Redis's
/// clock by [`keys::APPEND`]).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Entries a room's log keeps, about (XADD MAXLEN ~): what history and a
/// reader that lost its link can get back. Worst case in Redis per room:
/// this many lines of up to `--max-line` bytes.
pub const LOG_MAX_LEN: u64 = 10_000;

/// A room's log (and its counter) expires this long after its last line,
/// so rooms nobody uses any more do not fill Redis.
pub const LOG_IDLE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// An opaque handle the caller gives with each line or watch, handed back
/// with what happened to it (which client to tell).
pub type Token = u64;

/// How the logs in Redis are bounded.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// About how many entries each room's log keeps (MAXLEN ~).
    pub max_len: u64,
    /// How long a log with no new line is kept.
    pub idle_ttl: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_len: LOG_MAX_LEN,
            idle_ttl: LOG_IDLE_TTL,
        }
    }
}

/// A line to append to a room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The room's key (its name, lowercase).
    pub room: String,
    /// Who sent it (a name, or the server's console).
    pub from: String,
    /// What it is (chat line, notice ...), as the rooms define it.
    pub kind: String,
    /// Its text.
    pub text: String,
    /// When the rooms offered it: a notice the log refuses late (Redis
    /// hung) reaches only the members that were in the room by then.
    pub at: Instant,
}

/// One entry of a room's log, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its Redis Stream id: where a reader resumes.
    pub id: String,
    /// Its number in the room's log (1, 2, ...): a gap is a count of lines
    /// missed.
    pub n: u64,
    /// The id the writer gave it (`server:counter`), to find it again.
    pub uid: String,
    /// Who sent it.
    pub from: String,
    /// What it is.
    pub kind: String,
    /// Its text.
    pub text: String,
}

impl Entry {
    /// Reads an entry from a stream reply; `None` if a field is missing (a
    /// key some other program wrote: skipped, logged by the caller).
    fn from_stream(id: &redis::streams::StreamId) -> Option<Entry> {
        Some(Entry {
            id: id.id.clone(),
            n: id.get::<String>("n")?.parse().ok()?,
            uid: id.get("uid")?,
            from: id.get("from")?,
            kind: id.get("kind")?,
            text: id.get("text")?,
        })
    }
}

/// What another server asks of this one, through its inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Send `line` (a private message) to local client `client`.
    Tell {
        /// The client's id here.
        client: u64,
        /// The whole line, formatted.
        line: String,
    },
    /// Kick the local client called `name` (the console of another server).
    Kick {
        /// Its name.
        name: String,
        /// Why, if the operator said.
        reason: Option<String>,
    },
    /// Run a console command another server's operator typed (`/ban ...`,
    /// `/unban ...`), so it holds on every server.
    Console {
        /// The command line.
        line: String,
        /// What its server did to the shared ban list with it, if it did
        /// ([`shared_bans::Shared`]): checked before it is applied, so a
        /// command overtaken by a later one is not applied after it.
        shared: Option<shared_bans::Shared>,
    },
}

impl Request {
    /// Reads a request from an inbox entry; `None` if it is not one.
    fn from_stream(id: &redis::streams::StreamId) -> Option<Request> {
        match id.get::<String>("kind")?.as_str() {
            "tell" => Some(Request::Tell {
                client: id.get::<String>("client")?.parse().ok()?,
                line: id.get("line")?,
            }),
            "kick" => Some(Request::Kick {
                name: id.get("name")?,
                reason: id.get::<String>("reason").filter(|r| !r.is_empty()),
            }),
            "console" => Some(Request::Console {
                line: id.get("line")?,
                shared: id
                    .get::<String>("shared")
                    .and_then(|v| shared_bans::Shared::from_field(&v)),
            }),
            _ => None,
        }
    }
}

/// What a reader could not deliver.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// This many lines were trimmed from the log before they were read.
    Lines(u64),
    /// Lines were trimmed from the log before they were read, and how many
    /// is not known: the room was entered while this server was cut off
    /// from Redis, and the log no longer holds the entry just before that
    /// moment (`reader/reading/since.rs`); at most `at_most` (every line gone from
    /// the log).
    Trimmed {
        /// Every line gone from the log, some before the room was entered.
        at_most: u64,
    },
    /// Redis restarted empty: the log before now is gone, and any line it
    /// took after the last one delivered with it: at least `unseen` of
    /// those (what this server's writer knows the log took past what its
    /// reader delivered; 0: none known, there may be some).
    LogLost {
        /// A lower bound of the lines lost before anyone here saw them.
        unseen: u64,
    },
    /// Redis came back with an older copy of its data (restarted from a
    /// snapshot taken before it went away): the room's log went back from
    /// line `from` to line `to` (those were delivered here but are gone
    /// from the log), and it numbers new lines from `to + 1` again.
    RolledBack {
        /// The last line delivered here.
        from: u64,
        /// The log's last line now.
        to: u64,
    },
}

/// Why the writer refused a line: what its sender can be told honestly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Redis did not take it, and never will: no one sees it.
    NotTaken,
    /// Redis stopped answering after it was sent and was still away at
    /// [`writer::UNSURE_DEADLINE`]: it can no longer be applied (too old
    /// for the append script), but it may have been just before the stall,
    /// only its reply lost.
    Unsure,
    /// It was sent to a Redis that has since restarted empty, its reply
    /// lost: it is not sent again (it may have been applied and read
    /// before the restart, and would be seen twice), nor known lost.
    Restarted,
}

/// Where the cluster's threads hand what they have for the local clients:
/// the rooms implement it. Called from the cluster's threads, in log order
/// per room.
pub trait Sink: Send + Sync + 'static {
    /// The writer could not append this line (or cannot know whether it
    /// did, [`Refusal`]): tell its sender with a `! `.
    fn refused(&self, token: Token, line: &Line, why: Refusal);
    /// The next entries of `room`'s log (in its order), for every local
    /// member.
    fn deliver(&self, room: &str, entries: Vec<Entry>);
    /// How many chat lines of history room `room` keeps: asked when the
    /// reader starts reading a room with no history loaded (its first
    /// local member arrived while Redis was away), so that the room's
    /// history here is the log's, as on every other server
    /// ([`Sink::history`]). 0: none wanted.
    fn history_wanted(&self, _room: &str) -> usize {
        0
    }
    /// Room `room`'s history as its log holds it up to `end`, where the
    /// reader starts reading it (oldest first), for whoever enters it
    /// next: asked for by [`Sink::history_wanted`].
    fn history(&self, _room: &str, _end: &reader::Position, _lines: Vec<Entry>) {}
    /// The reader could not deliver some of `room`'s lines.
    fn missed(&self, room: &str, missed: Missed);
    /// The reader lost (`false`) or regained (`true`) its link to Redis.
    fn link(&self, up: bool);
    /// The reader reads the Redis of `epoch` from now on: the first it
    /// reached, or one found restarted empty (a new epoch). Told before
    /// anything else about that Redis (before [`Missed::LogLost`]), so
    /// whatever counted in the lost logs, rooms read here or not, goes.
    fn epoch(&self, epoch: &str);
    /// Another server asks something of this one.
    fn request(&self, request: Request);
    /// Every room this server keeps a history for, with the number of the
    /// last entry of the current Redis's log delivered here (its floor;
    /// rooms at 0 left out) and how many tails were loaded into it. The
    /// reader checks those it does not read against their logs too when
    /// it reconnects: one gone back past its floor is told to
    /// [`Sink::kept_went_back`].
    fn kept(&self) -> Vec<(String, (u64, u64))> {
        Vec::new()
    }
    /// Room `room`, kept here for its history only (its log not read),
    /// has its log gone back to entry `to`, its floor and loads read at
    /// `seen` ([`Sink::kept`]): no one here to tell; its floor and history
    /// go back, unless a member entering loaded the log meanwhile.
    fn kept_went_back(&self, _room: &str, _seen: (u64, u64), _to: u64) {}
}

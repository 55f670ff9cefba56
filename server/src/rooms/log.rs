//! The seam between the rooms and where a room's lines are ordered: the
//! room's log.
//!
//! A room is an ordered log with members. Members receive what their
//! room's log accepted, in the log's order. Everything a room shows goes
//! through its log: chat lines, `/me`, join, leave and rename notices, the
//! console's `<server>` lines. So a log's order is the room's one order, and
//! the history and the transcript see the same lines as the members.
//!
//! Two implementations slot in here, without the relay
//! ([`super::Rooms`]), the rooms or the write side knowing which one runs:
//!
//! - [`super::embedded::Embedded`], the default: one process is the whole
//!   cluster, so the room's lock already orders its lines. `append` answers
//!   [`Appended::Deliver`] and the caller delivers the batch at once, under
//!   the same room lock.
//! - [`crate::cluster::room_log::RedisLog`], with `--redis`: one Redis
//!   Stream per room, shared by every server of the cluster.
//!
//! # What an implementation must provide
//!
//! 1. **Append may be asynchronous.** A Redis log accepts a batch with
//!    `XADD` and answers [`Appended::Later`]; its own reader thread then
//!    reads the stream and hands every entry, in stream order, to
//!    [`super::Rooms::deliver`], to the members on this server, the
//!    sender's own server included (never "locally first"). Each
//!    [`Batch`] says who sent it ([`Origin`]: server and client), so
//!    delivery skips the sender whichever path it came by.
//! 2. **Append can fail** ([`Unreachable`]): nothing was accepted and
//!    nothing will be delivered through the log; the relay answers the
//!    sender with one `! ` line per refused line.
//! 3. **Notices are log entries too**: join, leave and rename notices and
//!    the console's lines are appended like chat lines (their [`Origin`]
//!    names the client they are about, or none for the console). One the
//!    log refuses is delivered by the rooms to this server's members of
//!    the room at once (the other servers cannot be told): a cut-off room
//!    still hears who came, went or was renamed here.
//! 4. **History comes from the log, atomically with delivery.**
//!    [`RoomLog::history`] is read under the room's lock when a member
//!    enters, and [`RoomLog::delivered`] is called under that same lock for
//!    every batch delivered. So what is replayed and the first live line
//!    have no gap and no duplicate: the history is exactly what was
//!    delivered before the member was added. The embedded log keeps the last
//!    `--history` chat lines in a ring; a Redis log seeds that ring from the
//!    stream's tail (`XREVRANGE`) when it starts reading the stream (see 5)
//!    and delivers from the entry after it. Which of the entries it reads
//!    back are new for the room (neither delivered nor in a history it
//!    loaded) it decides under that lock too, in the call that delivers
//!    them ([`super::Rooms::deliver_picked`]): decided before the lock is
//!    taken, a member entering in between would get them in its history
//!    and again live.
//! 5. **The log is told which rooms have local members**
//!    ([`Log::watch`]), so a Redis reader reads only those streams (one
//!    read per room per server, never per client).
//!
//! Locking: every [`RoomLog`] method is called with its room's lock held,
//! so it must not block: no network round trip (a Redis log queues its
//! lines to its writer thread). [`Log::watch`] is called under the
//! directory lock and that room's lock, so what it needs from far away (a
//! Redis log's tail) is loaded beforehand by [`Log::prepare`], with no lock
//! held. The other [`Log`] methods that may wait for the network (`who`,
//! `everyone`, `whisper`, `kick`, `announce_elsewhere`, `prepare`) are
//! called with no lock held, as is `settled`. Neither may call back into [`super::Rooms`]
//! from inside (that would take the locks again); delivery comes from the
//! log's own thread, holding no lock.
//!
//! Also for a second implementation: [`Batch::from`] carries the server id
//! ([`Log::server`]) so that delivery skips the sender on its own server
//! only; client ids are `guest-N` numbers, unique across servers when
//! [`super::names::Names`] is shared. The transcript and the console's
//! display are fed by delivery, so they see each room in the log's order
//! on every server.

use std::any::Any;
use std::sync::Arc;

use crate::rooms::ClientId;

/// Which server of a cluster; the embedded log is server 0.
pub type ServerId = u64;

/// Who put a batch in the log: delivery skips that client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The server the sender is connected to.
    pub server: ServerId,
    /// The client that sent it, or the client a notice is about (who
    /// learns of it another way); `None` for the console.
    pub client: Option<ClientId>,
}

/// Lines for one room from one origin, in order: a client's paste costs
/// one append and one room lock, not one per line.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Who sent it.
    pub from: Origin,
    /// The lines, formatted once and shared by every recipient.
    pub lines: Vec<Arc<str>>,
}

/// What became of an append.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Accepted and in order now: the caller delivers it at once, under the
    /// lock it holds (the embedded log).
    Deliver,
    /// Accepted: the log delivers it later through
    /// [`super::Rooms::deliver`] (a Redis log, from its reader thread).
    Later,
}

/// The log did not accept the batch (Redis unreachable): nothing of it
/// will be delivered.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable;

/// Where rooms' logs come from: one per server.
pub trait Log: Send + Sync {
    /// This server's id in [`Origin`]s.
    fn server(&self) -> ServerId;

    /// The log of room `key` (its lower-case name), made when the room is
    /// first needed; dropped when the server forgets the room.
    fn open(&self, key: &str) -> Box<dyn RoomLog>;

    /// Room `key` has local members now (`true`), or no longer (`false`).
    /// Called under the directory and the room's lock: must not block
    /// (the one exception, a stale tail loaded again, is bounded in the
    /// lock order's notes, `rooms/mod.rs`). `prepared` is what
    /// [`Log::prepare`] loaded for it beforehand (with `local`), if
    /// anything; an implementation that finds it stale loads again.
    fn watch(&self, key: &str, local: bool, prepared: Option<Prepared>);

    /// Room `key` got its first local member, who named it `spelling` (the
    /// creator's, as [`Log::prepare`] found it, or the member's own). Called
    /// under the directory and the room's lock: must not block.
    fn named(&self, _key: &str, _spelling: &str) {}

    /// Client `client` is no longer listed as `name` in its room (it left
    /// it), and the notice that says so is appended next.
    /// Called under the room's lock: must not block. A cluster takes it
    /// out of the members list in order with that notice, so that a
    /// `/who` asked on seeing it, on any server, agrees.
    fn unlisted(&self, _client: ClientId, _name: &str) {}

    /// Client `client` entered a room (connected, or `/join`), and the
    /// rooms hold no lock now: a cluster files it there (one round trip),
    /// so `/who` anywhere lists it by the time it can ask.
    fn settled(&self, _client: ClientId) {}

    /// Loads, with no lock held, what room `key`'s first local member will
    /// need ([`Log::watch`]): a Redis log's tail, and the room's name as
    /// the servers sharing the log show it (the creator's spelling, taken
    /// as `spelling`, the mover's, if the room has members on none of
    /// them). `None`: nothing to load.
    /// Room `key`'s history as its log holds it now, read with no lock
    /// held, for a room with no local member, whose own history may be
    /// stale (a cluster's: no one here read its log meanwhile); `None`:
    /// the room's own history is the log's (in process), or it cannot be
    /// read now.
    fn peek(&self, _key: &str) -> Option<Vec<Arc<str>>> {
        None
    }

    fn prepare(&self, _key: &str, _spelling: &str) -> Option<Prepared> {
        None
    }

    /// Called by the thread that relayed lines its room's log took as
    /// [`Appended::Later`], once it holds no lock: a log that sends them
    /// on from a thread of its own may send them from the caller's instead
    /// (no hand-over to wait for). Never waits for another thread; may
    /// wait for the log's own I/O (a cluster: one round trip to Redis, at
    /// most its reply timeout).
    fn flush(&self) {}

    // Across servers (a cluster's log; the embedded log keeps these
    // defaults: this server is the whole world).

    /// The members of room `key` on every server, in order of entering;
    /// `None`: only this server's are known.
    fn who(&self, _key: &str) -> Option<Vec<String>> {
        None
    }

    /// Every room with members on any server (`#lobby` first), each named
    /// as the servers show it (no `#`; its key is that in lower case), with
    /// its members in order of entering; `None`: only this server's are
    /// known.
    fn everyone(&self) -> Option<Vec<(String, Vec<String>)>> {
        None
    }

    /// How many members room `key` has on the other servers, as last
    /// known (a cluster's count is refreshed every heartbeat): what the
    /// `N online` of a join or leave notice adds to this server's. Called
    /// under the room's lock: never asks far away.
    fn elsewhere(&self, _key: &str) -> usize {
        0
    }

    /// The rooms (by key) that have members on other servers, as last
    /// known (the same count as [`Log::elsewhere`]'s), whether or not they
    /// have members here too: with this server's own, they are the rooms
    /// `--max-rooms` counts. Called under the directory lock: never asks
    /// far away.
    fn busy_elsewhere(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the log takes lines now: while it does not (Redis
    /// unreachable), private messages are refused like chat lines.
    fn reachable(&self) -> bool {
        true
    }

    /// Hands a private message (`line`, formatted) to `to` on another
    /// server.
    fn whisper(&self, _to: &str, _line: &str) -> Far {
        Far::NoOne
    }

    /// Kicks `name` on another server: handed to its server, no one
    /// there has it, or not (or not surely) handed over.
    fn kick(&self, _name: &str, _reason: Option<&str>) -> Far {
        Far::NoOne
    }

    /// Appends `line` (the console's) to every room that has members on
    /// another server and none here (`here`: the rooms this server told
    /// already).
    ///
    /// # Errors
    /// [`Unreachable`] when the other servers could not be asked or told.
    fn announce_elsewhere(&self, _line: &str, _here: &[String]) -> Result<(), Unreachable> {
        Ok(())
    }
}

/// What became of a private message for a client on another server
/// ([`Log::whisper`]).
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Far {
    /// Handed to its server (the recipient's name as registered).
    Sent(String),
    /// No one elsewhere has that name.
    NoOne,
    /// The other servers could not be asked (Redis failed during the
    /// lookup, or before the hand-over was sent): not sent, like a chat
    /// line refused.
    Unreachable,
    /// Handed over, its reply lost (Redis stopped answering): it may have
    /// reached its server; it never will later (answered once no late
    /// copy of it can be applied).
    Unsure,
}

/// What [`Log::prepare`] loaded: the room's spelling, and what the rooms
/// only hand back to [`Log::watch`].
pub struct Prepared {
    /// The room's name (no `#`) as its creator spelled it, where the log
    /// knows it (a log shared with other servers): the room is shown so
    /// here too.
    pub spelling: Option<String>,
    /// Opaque to the rooms.
    pub loaded: Box<dyn Any + Send>,
}

/// One room's log, owned by the room and called under its lock.
pub trait RoomLog: Send {
    /// Appends `batch` at the end of the log.
    ///
    /// # Errors
    /// [`Unreachable`] when the log cannot take it now.
    fn append(&mut self, batch: &Batch) -> Result<Appended, Unreachable>;

    /// `batch` was delivered to the room's members (or is old history being
    /// loaded): keep what history needs of it.
    fn delivered(&mut self, batch: &Batch);

    /// The room's history, oldest first, into `out`: what an entering
    /// member is shown before any live line.
    fn history(&self, out: &mut Vec<Arc<str>>);
}

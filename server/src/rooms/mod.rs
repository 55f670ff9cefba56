//! The rooms: who is connected, under which name, in which room, and the
//! relay between them.
//!
//! A room ([`room::Room`]) is an ordered log ([`log`]) with members.
//! Relaying a client's lines takes that one room's lock: rooms never wait
//! for each other. The directory (who is where, the names they hold, the
//! room table) has a lock of its own, taken to connect, move, rename,
//! whisper and remove, never to relay nor to deliver what an asynchronous
//! log read back ([`Rooms::deliver`] finds its room in the index, a map
//! behind a short lock of its own).
//!
//! # Lock order (the one place it is written)
//!
//! 1. The names lock ([`Names`], which may be Redis): taken alone, never
//!    with any lock below held, and held across its round trips. A name is
//!    claimed (and a guest number taken) before the directory is locked,
//!    and checked again under it; a name given back under the directory
//!    lock is only listed there, and released when the directory guard
//!    (`Dir`) drops, after the lock is released.
//! 2. The directory, then one room, then a client's queue (and what
//!    [`crate::write`] takes after it: [its part](crate::write#locks)). At
//!    most one room lock is held at a time: a move releases the old room
//!    before it locks the new one. Nothing takes them the other way; the
//!    relay and delivery take a room and queues only.
//! 3. The index (room key -> room): a leaf, held only to look up or
//!    change an entry. In a cluster, the bridge's `feeds` map, then a
//!    feed's own lock, are taken under a room's lock too (the reader picks
//!    what is new for the room by its feed), as leaves below it: nothing
//!    holding them takes a lock of the rooms' (`cluster/bridge.rs`). And the
//!    names' `remembered` (what presence last read of the other servers'
//!    members, `cluster/presence/remembered.rs`), a leaf taken under the
//!    names lock by a claim, and by presence with nothing else held.
//! 4. Above all of these, in a cluster: the bridge's `adopting` (held
//!    while it applies the cluster's shared ban list: bans saved to
//!    `--bans`, clients evicted, their names released) and `outage` (held
//!    while it tells a client that the server is cut off, which may remove
//!    it as too slow), and the names' `ban_order` (held while a console's
//!    `/ban` or `/unban`, typed here or passed on, is applied here with its
//!    step in the shared ban list: clients evicted, one round trip on the
//!    names link). Each is taken with no lock of the rooms' held, and
//!    the rooms never take them; none is held with another of them; each
//!    waits for whatever the calls made under it wait for (a file's write,
//!    a name given back to Redis, the shared list's answer).
//!
//! Where the network may be waited for (a Redis log or names): only with
//! no lock of these held, in [`Names`], [`log::Log::prepare`] and the
//! cluster-wide queries of [`log::Log`]. A [`log::RoomLog`] is called under
//! its room's lock and [`log::Log::watch`] under the directory's, and
//! neither may block, with one exception: the Redis log's `watch` loads a
//! room's tail under both locks when the one loaded beforehand is stale or
//! missing (the room's last local member left between that load and the
//! locks: rare), on a link that fails at once while Redis is known to be
//! away or counts as hung: a wait of at most one reply timeout
//! (`IO_TIMEOUT`, 2 s), and only as Redis starts to hang
//! (`cluster/room_log.rs`). Nothing else under the directory or
//! a room lock writes to a socket, logs or sleeps.
//!
//! # One removal path
//!
//! Every way out (quit, end of stream, error, kick, ban, too slow,
//! shutdown) goes through [`Rooms::remove`]: the client's [`Ticket`] is
//! settled under its room's lock (from then on nothing it sends is
//! relayed), its name is freed, its queue ended with the right last line,
//! and its room told (except at shutdown, when everyone gets the shutdown
//! notice instead).
//!
//! # Files
//!
//! This file: the directory and the lock guard. `delivering.rs`: lines
//! into rooms (`relay`, `deliver`, `announce`, notices through the
//! log). `answers.rs`: what the rooms answer the sessions.
//! `private.rs`: `/nick`, `/msg` and a word for one client. `listing.rs`:
//! `/who`, `/rooms`. `moving.rs`: entering and leaving
//! rooms and a room's life in the table. `removal.rs`: the removal path.
//! `room.rs`: one room and its delivery. `log.rs`: the seam to where a
//! room's lines are ordered; `embedded.rs` its in-process side. `names.rs`:
//! name claims and guest numbers. `fanout.rs`: the display and the
//! transcript beside the members' queues.

mod answers;
mod delivering;
pub mod embedded;
mod fanout;
mod listing;
pub mod log;
mod moving;
pub mod names;
mod private;
mod removal;
mod room;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_common::room::LOBBY;
use parking_lot::{Mutex, MutexGuard};

pub use answers::{Closing, Entered, Moved, Relayed, Renamed, Whisper, Who};
pub use fanout::Fanout;
pub use removal::Kicked;
pub use room::{Room, Ticket};

use crate::write::Peer;
use log::{Log, Origin};
use names::Names;

/// How long a leaving client's queued lines may take to go out: its queue
/// drains for at most this long (cut to the shutdown deadline) before the
/// socket is closed. Not [`crate::linger::LINGER`], the bound on reading
/// and dropping a closing connection's unread input.
pub const LEAVE_DRAIN: Duration = Duration::from_secs(2);

/// A client's number for its whole connection: the N of its `guest-N`.
pub type ClientId = u64;

/// One connected client, as the directory sees it.
struct Client {
    /// Its name now: what `/msg`, `/kick` and leave notices go by.
    name: String,
    /// Its queue and socket: for private messages and removal.
    peer: Arc<Peer>,
    /// Shared with its session and its room's member entry.
    ticket: Arc<Ticket>,
    /// The room it is in.
    room: Arc<Room>,
    /// Where it connects from (IPv4 as IPv4), for `/ban`; `None` if the
    /// socket could not say (it already failed).
    ip: Option<IpAddr>,
}

/// What the directory lock guards.
struct Directory {
    /// Everyone connected, by id.
    clients: HashMap<ClientId, Client>,
    /// The names this server's clients hold (lower case): who `/msg`,
    /// `/kick` and `/ban` find here without asking [`Names`].
    held: HashMap<String, ClientId>,
    /// Names given back under this lock, released through [`Names`] once
    /// it is released ([`Dir`]'s drop).
    released: Vec<(String, ClientId)>,
    /// Every room the server knows: with members, or empty with history.
    rooms: HashMap<String, Arc<Room>>,
    /// Rooms other than `#lobby` with members here (`#lobby` always
    /// counts; a cluster's log adds those with members only elsewhere).
    busy: usize,
    /// Empty rooms kept for their history, emptied longest ago first.
    emptied: VecDeque<String>,
    /// Set by shutdown: no joins, no leave notices.
    closing: bool,
}

/// The rooms, their members, and the relay between them.
pub struct Rooms {
    /// Who is where, and the room table: second in the lock order, after
    /// the names lock, before any room's.
    dir: Mutex<Directory>,
    /// Name claims and guest numbers, unique server-wide (cluster-wide on
    /// Redis): the names lock, first in the lock order.
    names: Mutex<Box<dyn Names>>,
    /// The directory's room table again, for delivery: an asynchronous
    /// log's reader never waits for the directory.
    index: Mutex<HashMap<String, Arc<Room>>>,
    /// Members' queues, display, transcript.
    fan: Fanout,
    /// Where rooms' lines are ordered.
    log: Box<dyn Log>,
    /// `--max-rooms`.
    max_rooms: usize,
    /// For the shutdown notice's delivery deadline.
    shutdown: Arc<crate::shutdown::Shutdown>,
    /// Lines accepted from clients and relayed (for the summary).
    relayed: AtomicU64,
    /// Clients the shutdown took out (the summary's `N online at the
    /// end`): counted in the removal path, so one whose session noticed the
    /// shutdown before [`Rooms::shutdown`] ran (a reader paced by flood
    /// control wakes on it) counts like the rest.
    stopped: AtomicU64,
}

impl Rooms {
    /// No one connected yet; `#lobby` exists.
    pub fn new(
        fan: Fanout,
        log: Box<dyn Log>,
        names: Box<dyn Names>,
        max_rooms: usize,
        shutdown: Arc<crate::shutdown::Shutdown>,
    ) -> Rooms {
        let lobby = Arc::new(Room::new(LOBBY, log.open(LOBBY)));
        let mut rooms = HashMap::new();
        rooms.insert(LOBBY.to_string(), lobby);
        Rooms {
            names: Mutex::new(names),
            index: Mutex::new(rooms.clone()),
            dir: Mutex::new(Directory {
                clients: HashMap::new(),
                held: HashMap::new(),
                released: Vec::new(),
                rooms,
                busy: 0,
                emptied: VecDeque::new(),
                closing: false,
            }),
            fan,
            log,
            max_rooms: max_rooms.max(1),
            shutdown,
            relayed: AtomicU64::new(0),
            stopped: AtomicU64::new(0),
        }
    }

    /// Clients connected now.
    pub fn online(&self) -> usize {
        self.dir.lock().clients.len()
    }

    /// Clients that were online when the server stopped: those the
    /// shutdown disconnected, whichever noticed it first. Complete once
    /// [`Rooms::shutdown`] has returned.
    pub fn stopped(&self) -> u64 {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Lines relayed since start.
    pub fn relayed(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }

    /// The sinks (for the transcript's summary).
    pub fn fanout(&self) -> &Fanout {
        &self.fan
    }

    /// Locks the directory; names given back meanwhile are released when
    /// the guard drops, after the lock.
    fn lock_dir(&self) -> Dir<'_> {
        Dir {
            guard: Some(self.dir.lock()),
            names: &self.names,
        }
    }

    fn origin(&self, client: Option<ClientId>) -> Origin {
        Origin {
            server: self.log.server(),
            client,
        }
    }
}

/// Gives `name` back for client `id` (directory locked): no one here
/// finds it any more, and [`Names`] releases it once the lock is released.
fn free(dir: &mut Directory, name: &str, id: ClientId) {
    let key = name.to_ascii_lowercase();
    if dir.held.get(&key) == Some(&id) {
        dir.held.remove(&key);
    }
    dir.released.push((name.to_string(), id));
}

/// The directory, locked: on drop it releases the lock first, then the
/// names given back under it (the names lock comes first in the lock
/// order, and a release may be a round trip to Redis).
struct Dir<'a> {
    /// `None` only while dropping.
    guard: Option<MutexGuard<'a, Directory>>,
    /// Where the names go back.
    names: &'a Mutex<Box<dyn Names>>,
}

impl Deref for Dir<'_> {
    type Target = Directory;
    fn deref(&self) -> &Directory {
        self.guard.as_deref().expect("locked until dropped")
    }
}

impl DerefMut for Dir<'_> {
    fn deref_mut(&mut self) -> &mut Directory {
        self.guard.as_deref_mut().expect("locked until dropped")
    }
}

impl Drop for Dir<'_> {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        let released = std::mem::take(&mut guard.released);
        drop(guard);
        if !released.is_empty() {
            let mut names = self.names.lock();
            for (name, id) in released {
                names.release(&name, id);
            }
        }
    }
}

#[cfg(test)]
mod tests;

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
//!    ([`Dir`]) drops, after the lock is released.
//! 2. The directory, then one room, then a client's queue (and what
//!    [`crate::write`] takes after it: [its part](crate::write#locks)). At
//!    most one room lock is held at a time: a move releases the old room
//!    before it locks the new one. Nothing takes them the other way; the
//!    relay and delivery take a room and queues only.
//! 3. The index (room key -> room): a leaf, held only to look up or
//!    change an entry.
//!
//! Where the network may be waited for (a Redis log or names): only with
//! no lock of these held, in [`Names`], [`log::Log::prepare`] and the
//! cluster-wide queries of [`log::Log`]. A [`log::RoomLog`] is called under
//! its room's lock and [`log::Log::watch`] under the directory's, and
//! neither may block. Nothing under the directory or a room lock writes to
//! a socket, logs or sleeps.
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
//! This file: the directory and the relay (`relay`, `deliver`, `announce`,
//! `rename`, `whisper`, the queries). `moving.rs`: entering and leaving
//! rooms and a room's life in the table. `removal.rs`: the removal path.
//! `room.rs`: one room and its delivery. `log.rs`: the seam to where a
//! room's lines are ordered; `embedded.rs` its in-process side. `names.rs`:
//! name claims and guest numbers. `fanout.rs`: the display and the
//! transcript beside the members' queues.

pub mod embedded;
mod fanout;
pub mod log;
mod moving;
pub mod names;
mod removal;
mod room;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_common::protocol;
use chat_common::room::LOBBY;
use parking_lot::{Mutex, MutexGuard};

pub use fanout::Fanout;
pub use removal::Kicked;
pub use room::{Room, Ticket};

use crate::leave::Leave;
use crate::write::{Peer, Pushed, Wake};
use log::{Appended, Batch, Log, Origin};
use names::Names;
use removal::too_slow;
use room::RoomInner;

/// How long a leaving client's queued lines may take to go out.
pub const LINGER: Duration = Duration::from_secs(2);

/// A client's number for its whole connection: the N of its `guest-N`.
pub type ClientId = u64;

/// Shutdown has begun: no one enters any more.
#[derive(Debug, PartialEq, Eq)]
pub struct Closing;

/// A client that just connected, in `#lobby`.
pub struct Entered {
    /// Its queue and socket.
    pub peer: Arc<Peer>,
    /// `guest-N`.
    pub name: String,
    /// Settled when it is removed.
    pub ticket: Arc<Ticket>,
    /// `#lobby`.
    pub room: Arc<Room>,
}

/// A room's name as shown and its members in order of entering.
pub type Who = (Arc<str>, Vec<String>);

/// What became of a client's lines.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    /// Accepted by the room's log.
    Done,
    /// The client was removed meanwhile: nothing was relayed.
    Gone,
    /// The log refused them (unreachable): the sender gets one `! ` line
    /// for each of this many lines.
    Refused(usize),
}

/// What became of a `/nick`.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Renamed {
    /// Renamed; the old name.
    Done(String),
    /// Someone connected already has that name (any case).
    Taken,
    /// The client was removed meanwhile.
    Gone,
}

/// What became of a `/msg`.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Whisper {
    /// Queued for the recipient (its name as registered).
    Delivered(String),
    /// No one by that name is connected.
    NoOne,
    /// The recipient's queue was full: it was dropped as too slow, and the
    /// message with it.
    Dropped(String),
    /// The sender was removed meanwhile.
    Gone,
    /// The log is cut off (Redis unreachable, known before or found on
    /// the way): refused, like a chat line.
    CutOff,
}

/// What became of a `/join`.
#[must_use]
pub enum Moved {
    /// In the new room now.
    To(Arc<Room>),
    /// Already in that room (its name as shown).
    Already(Arc<str>),
    /// `--max-rooms` rooms have members already.
    Full(usize),
    /// The client was removed meanwhile.
    Gone,
}

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
    /// Rooms other than `#lobby` with members (`#lobby` always counts).
    busy: usize,
    /// Empty rooms kept for their history, emptied longest ago first.
    emptied: VecDeque<String>,
    /// Set by shutdown: no joins, no leave notices.
    closing: bool,
}

/// The rooms, their members, and the relay between them.
pub struct Rooms {
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
        }
    }

    /// Relays `lines` from client `from` in `room`, in order, under that
    /// room's lock only. Empties `lines`. Nothing is relayed once the
    /// client was removed ([`Ticket`]).
    pub fn relay(
        &self,
        room: &Room,
        ticket: &Ticket,
        from: ClientId,
        lines: &mut Vec<String>,
    ) -> Relayed {
        if lines.is_empty() {
            return Relayed::Done;
        }
        let batch = Batch {
            from: self.origin(Some(from)),
            lines: lines.drain(..).map(Arc::from).collect(),
        };
        let mut slow = Vec::new();
        {
            let mut inner = room.inner.lock();
            if ticket.fate().is_some() {
                return Relayed::Gone;
            }
            match inner.log.append(&batch) {
                Ok(Appended::Deliver) => {
                    inner.deliver(&self.fan, self.log.server(), &batch, Wake::Now, &mut slow);
                }
                Ok(Appended::Later) => {}
                Err(log::Unreachable) => return Relayed::Refused(batch.lines.len()),
            }
        }
        self.relayed
            .fetch_add(batch.lines.len() as u64, Ordering::Relaxed);
        self.remove_all(slow);
        Relayed::Done
    }

    /// Delivers a batch that room `key`'s log accepted earlier
    /// ([`Appended::Later`]): the entry point of an asynchronous log's
    /// reader. The embedded log never calls it.
    pub fn deliver(&self, key: &str, batch: &Batch) {
        let Some(room) = self.index.lock().get(key).cloned() else {
            return;
        };
        let mut slow = Vec::new();
        room.inner
            .lock()
            .deliver(&self.fan, self.log.server(), batch, Wake::Now, &mut slow);
        self.remove_all(slow);
    }

    /// Sends `line` to every room with members, and `#lobby` (the console
    /// speaking). While the log is cut off (Redis away) the rooms here
    /// still get it, and the answer says the other servers did not
    /// ([`log::Unreachable`]), so the console can tell its operator.
    ///
    /// # Errors
    /// [`log::Unreachable`] when some server other than this one was not
    /// told.
    pub fn announce(&self, line: &str) -> Result<(), log::Unreachable> {
        let rooms: Vec<Arc<Room>> = {
            let dir = self.dir.lock();
            dir.rooms
                .values()
                .filter(|r| r.key == LOBBY || !r.inner.lock().members.is_empty())
                .cloned()
                .collect()
        };
        let here: Vec<String> = rooms.iter().map(|r| r.key.clone()).collect();
        let mut told = self.log.announce_elsewhere(line, &here);
        let line: Arc<str> = line.into();
        for room in rooms {
            let batch = Batch {
                from: self.origin(None),
                lines: vec![Arc::clone(&line)],
            };
            let mut slow = Vec::new();
            let taken = self.offer(&mut room.inner.lock(), &batch, Wake::Now, &mut slow);
            told = told.and(taken);
            self.remove_all(slow);
        }
        told
    }

    /// Renames client `id` to `new` and tells its room. `new` must already
    /// have passed [`name::check`]. The name is claimed before the
    /// directory is locked (it may take a round trip to Redis).
    pub fn rename(&self, id: ClientId, new: &str) -> Renamed {
        let gone = self
            .dir
            .lock()
            .clients
            .get(&id)
            .is_none_or(|c| c.ticket.fate().is_some());
        if gone {
            return Renamed::Gone;
        }
        if self.names.lock().claim(new, id).is_err() {
            return Renamed::Taken;
        }
        let mut dir = self.lock_dir();
        let Some(client) = dir.clients.get(&id).filter(|c| c.ticket.fate().is_none()) else {
            dir.released.push((new.to_string(), id));
            return Renamed::Gone;
        };
        let (room, old, ticket) = (
            Arc::clone(&client.room),
            client.name.clone(),
            Arc::clone(&client.ticket),
        );
        let mut slow = Vec::new();
        {
            let mut inner = room.inner.lock();
            if ticket.fate().is_some() {
                drop(inner);
                dir.released.push((new.to_string(), id));
                return Renamed::Gone;
            }
            if let Some(pos) = inner.position(id) {
                inner.members[pos].name = new.to_string();
            }
            let batch = Batch {
                from: self.origin(Some(id)),
                lines: vec![protocol::notice(&format!("{old} is now known as {new}")).into()],
            };
            self.append(&mut inner, &batch, Wake::Now, &mut slow);
        }
        if !old.eq_ignore_ascii_case(new) {
            free(&mut dir, &old, id);
        }
        dir.held.insert(new.to_ascii_lowercase(), id);
        if let Some(client) = dir.clients.get_mut(&id) {
            client.name = new.to_string();
        }
        ticket.renamed(new);
        self.remove_locked(&mut dir, too_slow(slow));
        Renamed::Done(old)
    }

    /// Delivers a private message from client `from` to the client named
    /// `to` (any case), in whatever room: on another server of a cluster
    /// through the log, with no lock held.
    pub fn whisper(&self, from: ClientId, to: &str, text: &str) -> Whisper {
        let mut dir = self.lock_dir();
        let Some(sender) = dir.clients.get(&from).filter(|c| c.ticket.fate().is_none()) else {
            return Whisper::Gone;
        };
        if !self.log.reachable() {
            return Whisper::CutOff;
        }
        let line: Arc<str> = protocol::private_from(&sender.name, text).into();
        let Some(target) = dir.held.get(&to.to_ascii_lowercase()).copied() else {
            drop(dir);
            return match self.log.whisper(to, &line) {
                log::Far::Sent(name) => Whisper::Delivered(name),
                log::Far::NoOne => Whisper::NoOne,
                log::Far::Unreachable => Whisper::CutOff,
            };
        };
        let Some(recipient) = dir
            .clients
            .get(&target)
            .filter(|c| c.ticket.fate().is_none())
        else {
            return Whisper::NoOne;
        };
        let name = recipient.name.clone();
        if self.fan.writers.push(&recipient.peer, &line) == Pushed::TooSlow {
            self.remove_locked(&mut dir, vec![(target, Leave::TooSlow)]);
            return Whisper::Dropped(name);
        }
        Whisper::Delivered(name)
    }

    /// Sends `line` to client `id` alone: an asynchronous log's word about
    /// that client (a line refused after all, a private message from
    /// another server). Does nothing if it left.
    pub fn tell(&self, id: ClientId, line: &str) {
        let mut dir = self.lock_dir();
        let Some(client) = dir.clients.get(&id).filter(|c| c.ticket.fate().is_none()) else {
            return;
        };
        if self.fan.writers.push(&client.peer, &line.into()) == Pushed::TooSlow {
            self.remove_locked(&mut dir, vec![(id, Leave::TooSlow)]);
        }
    }

    /// The client named `name` (any case) and the address it connects from.
    pub fn address_of(&self, name: &str) -> Option<(String, IpAddr)> {
        let dir = self.dir.lock();
        let client = dir.clients.get(dir.held.get(&name.to_ascii_lowercase())?)?;
        Some((client.name.clone(), client.ip?))
    }

    /// The members of `room` in order of entering.
    pub fn who(&self, room: &Room) -> Who {
        if let Some(names) = self.log.who(&room.key) {
            return (room.name(), names);
        }
        let inner = room.inner.lock();
        let names = inner.members.iter().map(|m| m.name.clone()).collect();
        (Arc::clone(&inner.name), names)
    }

    /// Every room with members (`#lobby` first, then by name), with its
    /// members in order of entering.
    pub fn everyone(&self) -> Vec<Who> {
        if let Some(all) = self.log.everyone() {
            let dir = self.dir.lock();
            return all
                .into_iter()
                .map(|(key, names)| {
                    let name = dir
                        .rooms
                        .get(&key)
                        .map_or_else(|| format!("#{key}").into(), |r| r.name());
                    (name, names)
                })
                .collect();
        }
        let rooms: Vec<Arc<Room>> = self.dir.lock().rooms.values().cloned().collect();
        let mut all: Vec<(String, Who)> = rooms
            .iter()
            .map(|room| (room.key.clone(), self.who(room)))
            .filter(|(key, (_, names))| key == LOBBY || !names.is_empty())
            .collect();
        all.sort_by(|a, b| (a.0 != LOBBY, &a.0).cmp(&(b.0 != LOBBY, &b.0)));
        all.into_iter().map(|(_, who)| who).collect()
    }

    /// Clients connected now.
    pub fn online(&self) -> usize {
        self.dir.lock().clients.len()
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

    /// Appends `batch` (a notice, or the console's line: never a client's
    /// chat line, which [`Rooms::relay`] refuses instead) to the room's log
    /// and delivers it if the log says so. One the log cannot take now
    /// ([`log::Unreachable`]: Redis away) is delivered at once to this
    /// server's members of the room, in place of the log: the other
    /// servers cannot be told (their `/who` catches up once the log is
    /// back), but the room here still hears who came, went or was renamed.
    fn append(&self, inner: &mut RoomInner, batch: &Batch, wake: Wake, slow: &mut Vec<ClientId>) {
        let _ = self.offer(inner, batch, wake, slow);
    }

    /// [`Rooms::append`], saying whether the log took `batch`
    /// ([`log::Unreachable`]: delivered here only).
    fn offer(
        &self,
        inner: &mut RoomInner,
        batch: &Batch,
        wake: Wake,
        slow: &mut Vec<ClientId>,
    ) -> Result<(), log::Unreachable> {
        let taken = match inner.log.append(batch) {
            Ok(Appended::Later) => return Ok(()),
            Ok(Appended::Deliver) => Ok(()),
            Err(log::Unreachable) => Err(log::Unreachable),
        };
        inner.deliver(&self.fan, self.log.server(), batch, wake, slow);
        taken
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

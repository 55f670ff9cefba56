//! The rooms: who is connected, under which name, in which room, and the
//! relay between them.
//!
//! A room ([`room::Room`]) is an ordered log ([`log`]) with members.
//! Relaying a client's lines takes that one room's lock: rooms never wait
//! for each other. The directory (names, who is where, the room table) has
//! a lock of its own, taken to connect, move, rename, whisper and remove,
//! never to relay.
//!
//! # Lock order (the one place it is written)
//!
//! directory, then one room, then a client's queue (and what
//! [`crate::write`] takes after it). At most one room lock is held
//! at a time: a move releases the old room before it locks the new one.
//! Nothing takes them the other way; the relay takes a room and queues
//! only. A [`log::RoomLog`] is called under its room's lock, a [`log::Log`]
//! under the directory's. Nothing under any of these locks writes to a
//! socket, logs or sleeps.
//!
//! # One removal path
//!
//! Every way out (quit, end of stream, error, kick, too slow, shutdown)
//! goes through [`Rooms::remove`]: the client's [`Ticket`] is settled under
//! its room's lock (from then on nothing it sends is relayed), its name is
//! freed, its queue ended with the right last line, and its room told
//! (except at shutdown, when everyone gets the shutdown notice instead).

pub mod embedded;
mod fanout;
pub mod log;
pub mod names;
mod room;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_common::room::{self as room_name, LOBBY};
use chat_common::{name, protocol};
use parking_lot::Mutex;

pub use fanout::Fanout;
pub use room::{Room, Ticket};

use crate::leave::Leave;
use crate::shutdown;
use crate::write::{Peer, Pushed, Wake};
use log::{Appended, Batch, Log, Origin};
use names::Names;
use room::{Member, RoomInner};

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
    /// Name claims and guest numbers: unique server-wide.
    names: Box<dyn Names>,
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
            dir: Mutex::new(Directory {
                clients: HashMap::new(),
                names,
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

    /// Loads old history into room `name` (from the transcript at start):
    /// the room is known, empty, and replays these lines to whoever enters.
    pub fn seed(&self, name: &str, lines: Vec<Arc<str>>) {
        let mut dir = self.dir.lock();
        let room = self.room_for(&mut dir, name);
        room.inner.lock().log.delivered(&Batch {
            from: self.origin(None),
            lines,
        });
        self.park(&mut dir, &room);
    }

    /// Adds a client as `guest-N` to `#lobby`: it gets the welcome and the
    /// room's history first, the room a join notice.
    ///
    /// # Errors
    /// [`Closing`] once shutdown has begun.
    pub fn enter(&self, stream: Arc<TcpStream>) -> Result<Entered, Closing> {
        let ip = stream.peer_addr().ok().map(|a| a.ip().to_canonical());
        let mut dir = self.dir.lock();
        if dir.closing {
            return Err(Closing);
        }
        let id = dir.names.next_guest();
        let peer = self.fan.writers.peer(id, stream);
        let name = name::guest(id);
        let ticket = Arc::new(Ticket::default());
        let lobby = Arc::clone(&dir.rooms[LOBBY]);
        // A number never given before: its guest name is free.
        let _ = dir.names.claim(&name, id);
        dir.clients.insert(
            id,
            Client {
                name: name.clone(),
                peer: Arc::clone(&peer),
                ticket: Arc::clone(&ticket),
                room: Arc::clone(&lobby),
                ip,
            },
        );
        let slow = self.add_member(
            &mut dir,
            &lobby,
            None,
            (id, &name, &peer, &ticket),
            |room, n| {
                format!("welcome, {name}! you are in {room} ({n} online); type /help for commands")
            },
        );
        self.remove_locked(&mut dir, too_slow(slow));
        Ok(Entered {
            peer,
            name,
            ticket,
            room: lobby,
        })
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
        let Some(room) = self.dir.lock().rooms.get(key).cloned() else {
            return;
        };
        let mut slow = Vec::new();
        room.inner
            .lock()
            .deliver(&self.fan, self.log.server(), batch, Wake::Now, &mut slow);
        self.remove_all(slow);
    }

    /// Sends `line` to every room with members, and `#lobby` (the console
    /// speaking).
    pub fn announce(&self, line: &str) {
        let rooms: Vec<Arc<Room>> = {
            let dir = self.dir.lock();
            dir.rooms
                .values()
                .filter(|r| r.key == LOBBY || !r.inner.lock().members.is_empty())
                .cloned()
                .collect()
        };
        let line: Arc<str> = line.into();
        for room in rooms {
            let batch = Batch {
                from: self.origin(None),
                lines: vec![Arc::clone(&line)],
            };
            let mut slow = Vec::new();
            self.append(&mut room.inner.lock(), &batch, Wake::Now, &mut slow);
            self.remove_all(slow);
        }
    }

    /// Renames client `id` to `new` and tells its room. `new` must already
    /// have passed [`name::check`].
    pub fn rename(&self, id: ClientId, new: &str) -> Renamed {
        let mut dir = self.dir.lock();
        let Some(client) = dir.clients.get(&id) else {
            return Renamed::Gone;
        };
        if client.ticket.fate().is_some() {
            return Renamed::Gone;
        }
        let (room, old, ticket) = (
            Arc::clone(&client.room),
            client.name.clone(),
            Arc::clone(&client.ticket),
        );
        if dir.names.claim(new, id).is_err() {
            return Renamed::Taken;
        }
        let mut slow = Vec::new();
        {
            let mut inner = room.inner.lock();
            if ticket.fate().is_some() {
                drop(inner);
                dir.names.release(new, id);
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
            dir.names.release(&old, id);
        }
        if let Some(client) = dir.clients.get_mut(&id) {
            client.name = new.to_string();
        }
        self.remove_locked(&mut dir, too_slow(slow));
        Renamed::Done(old)
    }

    /// Delivers a private message from client `from` to the client named
    /// `to` (any case), in whatever room.
    pub fn whisper(&self, from: ClientId, to: &str, text: &str) -> Whisper {
        let mut dir = self.dir.lock();
        let Some(sender) = dir.clients.get(&from).filter(|c| c.ticket.fate().is_none()) else {
            return Whisper::Gone;
        };
        let line: Arc<str> = protocol::private_from(&sender.name, text).into();
        let Some(target) = dir.names.holder(to) else {
            return Whisper::NoOne;
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

    /// Moves client `id` to room `name` (already checked), creating it when
    /// no room of that name has members.
    pub fn move_to(&self, id: ClientId, name: &str) -> Moved {
        let mut dir = self.dir.lock();
        let Some(client) = dir.clients.get(&id).filter(|c| c.ticket.fate().is_none()) else {
            return Moved::Gone;
        };
        let key = room_name::key(name);
        let old = Arc::clone(&client.room);
        if old.key == key {
            return Moved::Already(old.name());
        }
        let (peer, ticket, me) = (
            Arc::clone(&client.peer),
            Arc::clone(&client.ticket),
            client.name.clone(),
        );
        let target_busy = key == LOBBY
            || dir
                .rooms
                .get(&key)
                .is_some_and(|r| !r.inner.lock().members.is_empty());
        let frees_one = old.key != LOBBY && old.inner.lock().members.len() == 1;
        if !target_busy && !frees_one && dir.busy + 1 >= self.max_rooms {
            return Moved::Full(self.max_rooms);
        }
        // The new room first: emptying the old one may forget the room
        // emptied longest ago, which must not be the one being entered.
        let room = self.room_for(&mut dir, name);
        let mut slow = Vec::new();
        // Out of the old room (its lock released before the new one's).
        {
            let mut inner = old.inner.lock();
            if ticket.fate().is_some() {
                drop(inner);
                self.park(&mut dir, &room);
                return Moved::Gone;
            }
            if let Some(pos) = inner.position(id) {
                inner.members.remove(pos);
            }
            let batch = Batch {
                from: self.origin(Some(id)),
                lines: vec![protocol::notice(&format!(
                    "{me} left for #{name} ({} online)",
                    inner.members.len()
                ))
                .into()],
            };
            self.append(&mut inner, &batch, Wake::Later, &mut slow);
            if inner.members.is_empty() {
                drop(inner);
                self.emptied(&mut dir, &old);
            }
        }
        if let Some(client) = dir.clients.get_mut(&id) {
            client.room = Arc::clone(&room);
        }
        slow.extend(self.add_member(
            &mut dir,
            &room,
            Some(name),
            (id, &me, &peer, &ticket),
            |room, n| format!("you are now in {room} ({n} online)"),
        ));
        self.remove_locked(&mut dir, too_slow(slow));
        Moved::To(room)
    }

    /// Disconnects the client named `name` on the operator's word. Returns
    /// whether someone by that name was connected.
    pub fn kick(&self, name: &str, reason: Option<String>) -> bool {
        let mut dir = self.dir.lock();
        let Some(id) = dir.names.holder(name) else {
            return false;
        };
        self.remove_locked(&mut dir, vec![(id, Leave::Kicked(reason))]);
        true
    }

    /// The client named `name` (any case) and the address it connects from.
    pub fn address_of(&self, name: &str) -> Option<(String, IpAddr)> {
        let dir = self.dir.lock();
        let client = dir.clients.get(&dir.names.holder(name)?)?;
        Some((client.name.clone(), client.ip?))
    }

    /// Disconnects every client whose address satisfies `pred` (`/ban`),
    /// through the one removal path: each is told `! disconnected: REASON`
    /// and its room sees it leave. Returns their names.
    pub fn evict_where(&self, pred: impl Fn(IpAddr) -> bool, reason: &Leave) -> Vec<String> {
        let mut dir = self.dir.lock();
        let mut hit: Vec<(ClientId, String)> = dir
            .clients
            .iter()
            .filter(|(_, c)| c.ip.is_some_and(&pred))
            .map(|(&id, c)| (id, c.name.clone()))
            .collect();
        hit.sort_unstable();
        let work = hit.iter().map(|(id, _)| (*id, reason.clone())).collect();
        self.remove_locked(&mut dir, work);
        hit.into_iter().map(|(_, name)| name).collect()
    }

    /// Takes client `id` out: the one removal path (see the module docs).
    /// Does nothing if it is already out. The reason that counts is the
    /// first one given: see [`Ticket::fate`].
    pub fn remove(&self, id: ClientId, reason: Leave) {
        let mut dir = self.dir.lock();
        self.remove_locked(&mut dir, vec![(id, reason)]);
    }

    /// Starts shutdown: no more joins; every client gets `* server shutting
    /// down` after what is already queued.
    pub fn shutdown(&self) {
        let mut dir = self.dir.lock();
        dir.closing = true;
        let mut ids: Vec<ClientId> = dir.clients.keys().copied().collect();
        ids.sort_unstable();
        self.remove_locked(
            &mut dir,
            ids.into_iter().map(|id| (id, Leave::Shutdown)).collect(),
        );
        self.fan
            .show_plain(&protocol::notice("server shutting down").into());
    }

    /// The members of `room` in order of entering.
    pub fn who(&self, room: &Room) -> Who {
        let inner = room.inner.lock();
        let names = inner.members.iter().map(|m| m.name.clone()).collect();
        (Arc::clone(&inner.name), names)
    }

    /// Every room with members (`#lobby` first, then by name), with its
    /// members in order of entering.
    pub fn everyone(&self) -> Vec<Who> {
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

    fn origin(&self, client: Option<ClientId>) -> Origin {
        Origin {
            server: self.log.server(),
            client,
        }
    }

    /// Appends `batch` to the room's log and delivers it if the log says
    /// so. A notice the log refuses is lost for this room: the log's own
    /// error handling tells the members they are cut off.
    fn append(&self, inner: &mut RoomInner, batch: &Batch, wake: Wake, slow: &mut Vec<ClientId>) {
        if let Ok(Appended::Deliver) = inner.log.append(batch) {
            inner.deliver(&self.fan, self.log.server(), batch, wake, slow);
        }
    }

    /// Adds a member to `room` (directory lock held): it gets `answer`,
    /// then the room's history, before any live line; the room gets a
    /// join notice. Returns who was found too slow.
    fn add_member(
        &self,
        dir: &mut Directory,
        room: &Arc<Room>,
        spelling: Option<&str>,
        (id, name, peer, ticket): (ClientId, &str, &Arc<Peer>, &Arc<Ticket>),
        answer: impl FnOnce(&str, usize) -> String,
    ) -> Vec<ClientId> {
        let mut inner = room.inner.lock();
        if inner.members.is_empty() {
            self.log.watch(&room.key, true);
            if room.key != LOBBY {
                dir.busy += 1;
                if let Some(spelling) = spelling {
                    // Whoever creates a room names it.
                    inner.name = format!("#{spelling}").into();
                    inner.label = format!("#{spelling} ").into();
                }
            }
        }
        let online = inner.members.len() + 1;
        let mut lines: Vec<Arc<str>> = vec![protocol::notice(&answer(&inner.name, online)).into()];
        let mut history = Vec::new();
        inner.log.history(&mut history);
        if !history.is_empty() {
            lines.push(
                protocol::notice(&format!("last {} lines of {}:", history.len(), inner.name))
                    .into(),
            );
            lines.extend(history);
        }
        let mut own = false;
        if self.fan.writers.push_all(peer, &lines, Wake::Now) == Pushed::TooSlow {
            // Its own replies piled up: too slow like any other.
            ticket.settle(Leave::TooSlow);
            own = true;
        }
        let batch = Batch {
            from: self.origin(Some(id)),
            lines: vec![protocol::notice(&format!("{name} joined ({online} online)")).into()],
        };
        let mut slow = Vec::new();
        self.append(&mut inner, &batch, Wake::Later, &mut slow);
        inner.members.push(Member {
            id,
            name: name.to_string(),
            peer: Arc::clone(peer),
            ticket: Arc::clone(ticket),
        });
        if own {
            slow.push(id);
        }
        slow
    }

    /// The room called `name` (any case), made if the server does not know
    /// it, and taken out of the forgetting line.
    fn room_for(&self, dir: &mut Directory, name: &str) -> Arc<Room> {
        let key = room_name::key(name);
        if let Some(pos) = dir.emptied.iter().position(|k| *k == key) {
            dir.emptied.remove(pos);
        }
        match dir.rooms.get(&key) {
            Some(room) => Arc::clone(room),
            None => {
                let room = Arc::new(Room::new(name, self.log.open(&key)));
                dir.rooms.insert(key, Arc::clone(&room));
                room
            }
        }
    }

    /// `room` just lost its last member: it leaves `/rooms`, and its
    /// history is kept for at most `--max-rooms` empty rooms.
    fn emptied(&self, dir: &mut Directory, room: &Room) {
        self.log.watch(&room.key, false);
        if room.key == LOBBY {
            return;
        }
        dir.busy -= 1;
        dir.emptied.push_back(room.key.clone());
        self.forget_old(dir);
    }

    /// Puts `room`, looked up for a move that did not happen, back in the
    /// forgetting line if it is empty, so the table stays bounded.
    fn park(&self, dir: &mut Directory, room: &Room) {
        if room.key != LOBBY
            && room.inner.lock().members.is_empty()
            && !dir.emptied.contains(&room.key)
        {
            dir.emptied.push_back(room.key.clone());
            self.forget_old(dir);
        }
    }

    /// Forgets the rooms left empty longest ago, past `--max-rooms` of them.
    fn forget_old(&self, dir: &mut Directory) {
        while dir.emptied.len() > self.max_rooms {
            if let Some(key) = dir.emptied.pop_front() {
                dir.rooms.remove(&key);
            }
        }
    }

    /// [`Rooms::remove`] for a work list, with the directory locked: the
    /// leave notices may find more slow members, who join the list (a work
    /// list, not recursion, so a cascade cannot overflow a small stack).
    fn remove_all(&self, slow: Vec<ClientId>) {
        if !slow.is_empty() {
            let mut dir = self.dir.lock();
            self.remove_locked(&mut dir, too_slow(slow));
        }
    }

    fn remove_locked(&self, dir: &mut Directory, work: Vec<(ClientId, Leave)>) {
        let mut work: VecDeque<(ClientId, Leave)> = work.into();
        while let Some((id, reason)) = work.pop_front() {
            let Some(client) = dir.clients.remove(&id) else {
                continue;
            };
            dir.names.release(&client.name, id);
            let room = client.room;
            let mut slow = Vec::new();
            let mut inner = room.inner.lock();
            let fate = client.ticket.settle(reason).clone();
            if let Some(pos) = inner.position(id) {
                inner.members.remove(pos);
            }
            self.end(&client.peer, &fate);
            if !dir.closing && fate != Leave::Shutdown {
                let batch = Batch {
                    from: self.origin(Some(id)),
                    lines: vec![protocol::notice(&format!("{} left ({fate})", client.name)).into()],
                };
                self.append(&mut inner, &batch, Wake::Later, &mut slow);
            }
            let empty = inner.members.is_empty();
            drop(inner);
            if empty {
                self.emptied(dir, &room);
            }
            work.extend(slow.into_iter().map(|id| (id, Leave::TooSlow)));
        }
    }

    /// Ends a removed client's queue with the last line its fate calls
    /// for: too slow at once (what it did not read is dropped), the others
    /// after what is queued.
    fn end(&self, peer: &Arc<Peer>, fate: &Leave) {
        let writers = &self.fan.writers;
        let linger = Instant::now() + LINGER;
        match fate {
            Leave::TooSlow => {
                peer.note_cause(fate.to_string());
                writers.abort(peer, Some(protocol::error("disconnected: too slow").into()));
                let _ = peer.stream.shutdown(Shutdown::Read);
            }
            Leave::Kicked(_) | Leave::Banned(_) => {
                peer.note_cause(fate.to_string());
                let last = protocol::error(&format!("disconnected: {fate}")).into();
                writers.drain(peer, Some(&last), linger);
                let _ = peer.stream.shutdown(Shutdown::Read);
            }
            Leave::Shutdown => {
                peer.note_cause(fate.to_string());
                let deadline = self
                    .shutdown
                    .deadline()
                    .unwrap_or_else(|| Instant::now() + shutdown::GRACE);
                let last = protocol::notice("server shutting down").into();
                writers.drain(peer, Some(&last), deadline);
            }
            _ => writers.drain(peer, None, linger),
        }
    }
}

/// A work list of members found too slow.
fn too_slow(ids: Vec<ClientId>) -> Vec<(ClientId, Leave)> {
    ids.into_iter().map(|id| (id, Leave::TooSlow)).collect()
}

#[cfg(test)]
mod tests;

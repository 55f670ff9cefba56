//! Entering and leaving rooms: connecting (`#lobby`), `/join`, and the
//! life of a room in the table: made when first needed, in `/rooms` while
//! it has members, kept for its history when emptied, forgotten when
//! `--max-rooms` empty rooms are kept already (the one emptied longest ago
//! first).
//!
//! Everything here runs under the directory lock (see the lock order in
//! [`super`]), but for what may wait for the network, done before it is
//! taken: a new client's guest number and name ([`super::Names`]), and the
//! history of a room about to get its first member here
//! ([`Log::prepare`](super::log::Log::prepare)). Entering a room takes that room's lock for the
//! welcome, the history and the join notice together, so nothing is missed
//! or doubled between the replayed history and the first live line.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use chat_common::protocol;
use chat_common::room::{self as room_name, LOBBY};

use super::log::{Batch, Prepared};
use super::names::Guest;
use super::removal::too_slow;
use super::room::{Member, RoomInner};
use super::{Client, ClientId, Closing, Directory, Entered, Moved, Room, Rooms, Ticket};
use crate::leave::Leave;
use crate::write::{Peer, Pushed, Wake};

impl Rooms {
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
        if self.dir.lock().closing {
            return Err(Closing);
        }
        // Before the directory lock (a round trip each on Redis).
        let Guest { id, name } = self.names.lock().next_guest();
        // Shutdown may have begun while Redis was asked: no more asking.
        let prepared = if self.dir.lock().closing {
            None
        } else {
            self.prepare(LOBBY, LOBBY)
        };
        let mut dir = self.lock_dir();
        if dir.closing {
            dir.released.push((name, id));
            return Err(Closing);
        }
        let peer = self.fan.writers.peer(id, stream);
        let ticket = Arc::new(Ticket::default());
        let lobby = Arc::clone(&dir.rooms[LOBBY]);
        dir.held.insert(name.to_ascii_lowercase(), id);
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
            (None, prepared),
            (id, &name, &peer, &ticket),
            |room, n| protocol::welcome(&name, room, n),
        );
        self.remove_locked(&mut dir, too_slow(slow));
        drop(dir);
        self.log.settled(id);
        Ok(Entered {
            peer,
            name,
            ticket,
            room: lobby,
        })
    }

    /// What a client that shut its side before a word is shown: the
    /// welcome and `#lobby`'s history, under a guest name given back at
    /// once. It does not enter the room, which hears nothing of it: to the
    /// server it looks like a port scan or a health check that closed
    /// (the same end of stream, until something is sent), whose joins and
    /// leaves would be noise for everyone; yet `ncat HOST PORT
    /// </dev/null` gets what a client that stays would see first.
    ///
    /// # Errors
    /// [`Closing`] once shutdown has begun.
    pub fn glimpse(&self) -> Result<Vec<Arc<str>>, Closing> {
        if self.dir.lock().closing {
            return Err(Closing);
        }
        // Before the directory lock (a round trip each on Redis): a name,
        // and the history of a lobby with no member here (a cluster's is
        // not read while it has none: its own may be stale).
        let Guest { id, name } = self.names.lock().next_guest();
        let lobby = self.index.lock().get(LOBBY).cloned();
        let peeked = if lobby.is_some_and(|r| !r.inner.lock().members.is_empty()) {
            None
        } else {
            self.log.peek(LOBBY)
        };
        let mut dir = self.lock_dir();
        // Given back as the guard drops, after the lock.
        dir.released.push((name.clone(), id));
        if dir.closing {
            return Err(Closing);
        }
        let lobby = Arc::clone(&dir.rooms[LOBBY]);
        let inner = lobby.inner.lock();
        let online = inner.members.len() + 1 + self.log.elsewhere(LOBBY);
        let welcome = protocol::welcome(&name, &inner.name, online);
        Ok(match peeked {
            Some(history) if inner.members.is_empty() => with_history(&inner, welcome, history),
            _ => greeting(&inner, welcome),
        })
    }

    /// Moves client `id` to room `name` (already checked), creating it when
    /// no room of that name has members.
    pub fn move_to(&self, id: ClientId, name: &str) -> Moved {
        let moved = self.move_locked(id, name);
        if matches!(moved, Moved::To(_)) {
            self.log.settled(id);
        }
        moved
    }

    /// [`Rooms::move_to`] but for filing the move with the log.
    fn move_locked(&self, id: ClientId, name: &str) -> Moved {
        let key = room_name::key(name);
        let prepared = self.prepare(&key, name);
        // Its creator's spelling, where the log knows it (a room with
        // members on another server of a cluster), else the mover's.
        let spelling = prepared
            .as_ref()
            .and_then(|p| p.spelling.clone())
            .unwrap_or_else(|| name.to_string());
        let mut dir = self.lock_dir();
        let Some(client) = dir.clients.get(&id).filter(|c| c.ticket.fate().is_none()) else {
            return Moved::Gone;
        };
        let old = Arc::clone(&client.room);
        if old.key == key {
            return Moved::Already(old.name());
        }
        let (peer, ticket, me) = (
            Arc::clone(&client.peer),
            Arc::clone(&client.ticket),
            client.name.clone(),
        );
        let target_here = key == LOBBY || has_members(&dir, &key);
        // A room with members on another server exists already: entering
        // it creates none. Leaving one empties it only if it has none
        // there either.
        let target_busy = target_here || self.log.elsewhere(&key) > 0;
        let frees_one = old.key != LOBBY
            && old.inner.lock().members.len() == 1
            && self.log.elsewhere(&old.key) == 0;
        if !target_busy && !frees_one && self.busy(&dir) + 1 >= self.max_rooms {
            return Moved::Full(self.max_rooms);
        }
        // The new room first: emptying the old one may forget the room
        // emptied longest ago, which must not be the one being entered.
        let room = self.room_for(&mut dir, &spelling);
        // As the room will be shown: in its creator's spelling while it has
        // members (`#lobby` always), else the mover's, who creates it.
        let shown = if target_here {
            room.name()
        } else {
            format!("#{spelling}").into()
        };
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
            self.log.unlisted(id, &me);
            let batch = Batch {
                from: self.origin(Some(id)),
                lines: vec![protocol::notice(&format!(
                    "{me} left for {shown} ({} online)",
                    inner.members.len() + self.log.elsewhere(&old.key)
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
            (Some(&spelling), prepared),
            (id, &me, &peer, &ticket),
            protocol::moved,
        ));
        self.remove_locked(&mut dir, too_slow(slow));
        Moved::To(room)
    }

    /// Rooms other than `#lobby` with members (`#lobby` always counts):
    /// this server's, and those with members only on other servers as the
    /// log last counted them (a cluster: its last heartbeat, about a
    /// second old; two servers creating rooms within it may each take the
    /// last place).
    fn busy(&self, dir: &Directory) -> usize {
        let elsewhere = self
            .log
            .busy_elsewhere()
            .iter()
            .filter(|key| key.as_str() != LOBBY && !has_members(dir, key))
            .count();
        dir.busy + elsewhere
    }

    /// What room `key`'s first local member will need from the log, loaded
    /// with no lock held, `spelling` being how the mover typed it; `None`
    /// if the room has members here already.
    fn prepare(&self, key: &str, spelling: &str) -> Option<Prepared> {
        let room = self.index.lock().get(key).cloned();
        if room.is_some_and(|r| !r.inner.lock().members.is_empty()) {
            return None;
        }
        self.log.prepare(key, spelling)
    }

    /// Adds a member to `room` (directory lock held): it gets `answer` (its
    /// whole line, from the room's name and head count), then the room's
    /// history, before any live line; the room gets a
    /// join notice. Returns who was found too slow. `spelling`: the name
    /// the room gets if this member creates it; `prepared`: what the log
    /// loaded for a first member beforehand.
    pub(super) fn add_member(
        &self,
        dir: &mut Directory,
        room: &Arc<Room>,
        (spelling, prepared): (Option<&str>, Option<Prepared>),
        (id, name, peer, ticket): (ClientId, &str, &Arc<Peer>, &Arc<Ticket>),
        answer: impl FnOnce(&str, usize) -> String,
    ) -> Vec<ClientId> {
        let mut inner = room.inner.lock();
        if inner.members.is_empty() {
            self.log.watch(&room.key, true, prepared);
            if room.key != LOBBY {
                dir.busy += 1;
                if let Some(spelling) = spelling {
                    // Whoever creates a room names it.
                    inner.name = format!("#{spelling}").into();
                    inner.label = format!("#{spelling} ").into();
                    self.log.named(&room.key, spelling);
                }
            }
        }
        let online = inner.members.len() + 1 + self.log.elsewhere(&room.key);
        let lines = greeting(&inner, answer(&inner.name, online));
        let mut own = false;
        // The replay is the server's backlog, not the client's: it does not
        // count against the queue's limits (`--history` may exceed them).
        if self.fan.writers.push_replay(peer, &lines) == Pushed::TooSlow {
            // Its own replies piled up: too slow like any other.
            ticket.settle(Leave::TooSlow);
            own = true;
        }
        let batch = Batch {
            from: self.origin(Some(id)),
            lines: vec![protocol::joined(name, online).into()],
        };
        let mut slow = Vec::new();
        self.append(&mut inner, &batch, Wake::Later, &mut slow);
        inner.members.push(Member {
            id,
            name: name.to_string(),
            peer: Arc::clone(peer),
            ticket: Arc::clone(ticket),
            since: Instant::now(),
        });
        if own {
            slow.push(id);
        }
        slow
    }

    /// The room called `name` (any case), made if the server does not know
    /// it, and taken out of the forgetting line.
    pub(super) fn room_for(&self, dir: &mut Directory, name: &str) -> Arc<Room> {
        let key = room_name::key(name);
        if let Some(pos) = dir.emptied.iter().position(|k| *k == key) {
            dir.emptied.remove(pos);
        }
        match dir.rooms.get(&key) {
            Some(room) => Arc::clone(room),
            None => {
                let room = Arc::new(Room::new(name, self.log.open(&key)));
                self.index.lock().insert(key.clone(), Arc::clone(&room));
                dir.rooms.insert(key, Arc::clone(&room));
                room
            }
        }
    }

    /// `room` just lost its last member: it leaves `/rooms`, and its
    /// history is kept for at most `--max-rooms` empty rooms.
    pub(super) fn emptied(&self, dir: &mut Directory, room: &Room) {
        self.log.watch(&room.key, false, None);
        if room.key == LOBBY {
            return;
        }
        dir.busy -= 1;
        self.keep_or_forget(dir, room);
    }

    /// Puts `room`, looked up for a move that did not happen, back in the
    /// forgetting line if it is empty, so the table stays bounded.
    pub(super) fn park(&self, dir: &mut Directory, room: &Room) {
        if room.key != LOBBY
            && room.inner.lock().members.is_empty()
            && !dir.emptied.contains(&room.key)
        {
            self.keep_or_forget(dir, room);
        }
    }

    /// An empty `room` (not `#lobby`) is kept for its history, in the
    /// forgetting line; one with no history is forgotten at once: it has
    /// nothing to keep, and in the line it pushed out a room that had
    /// (review: with `--max-rooms 2`, visiting two rooms that never held a
    /// line forgot a third one's history).
    fn keep_or_forget(&self, dir: &mut Directory, room: &Room) {
        let mut history = Vec::new();
        room.inner.lock().log.history(&mut history);
        if history.is_empty() {
            self.index.lock().remove(&room.key);
            dir.rooms.remove(&room.key);
        } else {
            dir.emptied.push_back(room.key.clone());
            self.forget_old(dir);
        }
    }

    /// Forgets the rooms left empty longest ago, past `--max-rooms` of them.
    pub(super) fn forget_old(&self, dir: &mut Directory) {
        while dir.emptied.len() > self.max_rooms {
            if let Some(key) = dir.emptied.pop_front() {
                self.index.lock().remove(&key);
                dir.rooms.remove(&key);
            }
        }
    }
}

/// Whether room `key` has members on this server (directory lock held).
fn has_members(dir: &Directory, key: &str) -> bool {
    dir.rooms
        .get(key)
        .is_some_and(|r| !r.inner.lock().members.is_empty())
}

/// What a member entering `inner`'s room is sent first: `answer` (its
/// welcome, or the reply to its `/join`), then the room's history.
fn greeting(inner: &RoomInner, answer: String) -> Vec<Arc<str>> {
    let mut history = Vec::new();
    inner.log.history(&mut history);
    with_history(inner, answer, history)
}

/// `answer`, then `history` under its heading.
fn with_history(inner: &RoomInner, answer: String, history: Vec<Arc<str>>) -> Vec<Arc<str>> {
    let mut lines: Vec<Arc<str>> = vec![answer.into()];
    if !history.is_empty() {
        lines.push(protocol::history_heading(history.len(), &inner.name).into());
        lines.extend(history);
    }
    lines
}

//! What concerns one client by name: `/nick` (renaming), `/msg` (a
//! private message, here or on another server) and a word from the log
//! for one client (`tell`).

use std::sync::Arc;

use chat_common::protocol;

use super::log::{self, Batch};
use super::names::NameRefused;
use super::removal::too_slow;
use super::{free, ClientId, Renamed, Rooms, Whisper};
use crate::leave::Leave;
use crate::write::{Pushed, Wake};

impl Rooms {
    /// Renames client `id` to `new` and tells its room. `new` must already
    /// have passed [`chat_common::name::check`]. The name is claimed before the
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
        match self.names.lock().claim(new, id) {
            Ok(()) => {}
            Err(NameRefused::Taken) => return Renamed::Taken,
            Err(NameRefused::Unknown) => return Renamed::Unknown,
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
                lines: vec![protocol::renamed(&old, new).into()],
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
                log::Far::Unsure => Whisper::Unsure,
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
}

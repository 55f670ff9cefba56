//! The listings: `/who` of a room, `/rooms` of every room, and a client's
//! address by name (for `/ban NAME`). A cluster's log answers for every
//! server; otherwise the directory and the rooms here do.

use std::net::IpAddr;
use std::sync::Arc;

use chat_common::room::{self as room_name, LOBBY};

use super::{Room, Rooms, Who};

impl Rooms {
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
                .map(|(spelled, names)| {
                    // As this server's members see it while it has some
                    // here, else as the log spells it.
                    let name = dir
                        .rooms
                        .get(&room_name::key(&spelled))
                        .filter(|r| !r.inner.lock().members.is_empty())
                        .map_or_else(|| format!("#{spelled}").into(), |r| r.name());
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
}

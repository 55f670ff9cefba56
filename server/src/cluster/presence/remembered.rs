//! Servers lost with Redis's data: a server that died (or stopped while
//! Redis was away, so its leave could not be announced) around the time
//! Redis restarted empty left nothing in the new Redis to reap, and its
//! clients would vanish from `/who` without a word.
//!
//! So each server remembers the other servers' members as its last beat
//! read them ([`Remembered::read`]). When it finds Redis restarted empty
//! (a new epoch), what it remembers of the old one is awaited: each server
//! seen listed in the new Redis (it registered again, or another survivor
//! listed it again) is dropped; one still absent [`HEARTBEAT_TTL`] after
//! this server found the new Redis (a live server registers again at its
//! first beat that reaches it) is listed again with its remembered
//! members and no heartbeat ([`keys::RELIST`], atomically, only if the new
//! Redis knows nothing of it). The reap that follows is the one for any
//! server whose heartbeat expired: one survivor holds the lock, each
//! member is announced once ([`keys::REAP_MEMBER`]) and noted in
//! [`keys::reaped`], so a second survivor's try lists it no more, and a
//! server alive after all announces its members back when it registers.
//!
//! While a server is awaited, its remembered members' names are too: a
//! client of this server claiming one of them (`/nick`, any case) is
//! refused as for a taken name ([`Remembered::awaits`]), so the server
//! that held it claims it again first, at its registration, and its
//! client keeps it (a review: a `/nick alice` sent the moment Redis was
//! back won the name, and Alice, on a server not yet registered again,
//! was renamed a guest). The claim reads the epoch of the Redis it is
//! about to claim in, and the first of it and presence to find a new one
//! makes what was seen awaited; so a client's claim that reaches the new
//! Redis before this server's presence does is checked all the same.
//! Shared by presence and the names link (`names.rs`) behind one lock, a
//! leaf: taken under the names link's lock, and by presence alone (never
//! across a round trip).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use redis::Script;

use super::super::keys;
use super::super::link::Failure;
use super::{Presence, HEARTBEAT_TTL};
use crate::log;

/// The most members of other servers a server remembers, in what its last
/// beat read and again in what it awaits from an earlier Redis: about 130
/// bytes each, so at most about 17 MB for the two. Past it, the members
/// of further servers are not remembered (logged), and those servers, if
/// lost with Redis's data, are not announced gone.
pub const MAX_REMEMBERED: usize = 65_536;

/// One server's members as read: (name, [`keys::member_value`]).
type Listing = Vec<(String, String)>;

/// What this server remembers of the others, across a Redis that lost it.
#[derive(Default)]
pub struct Remembered {
    /// The epoch of the Redis that [`Remembered::seen`] was read from
    /// (`None` before the first read).
    epoch: Option<String>,
    /// Each other listed server's members, as this server's last beat read
    /// them; replaced at each beat.
    seen: HashMap<String, Listing>,
    /// The servers of an earlier Redis (restarted empty since) not yet
    /// found in the new one, with their members as last seen there.
    awaited: HashMap<String, Listing>,
    /// The names of the members of [`Remembered::awaited`], lower case:
    /// refused to this server's clients meanwhile ([`Remembered::awaits`]).
    /// Built again whenever a server is added or dropped there (rare), so a
    /// claim looks one name up, never a scan.
    names: HashSet<String>,
    /// When this server found the Redis they are awaited in.
    since: Option<Instant>,
    /// Whether the last read passed [`MAX_REMEMBERED`] (logged once, until
    /// a read fits again).
    full: bool,
}

impl Remembered {
    /// This server reached Redis in `epoch`: a new one (Redis restarted
    /// empty) makes what it saw in the old one awaited, from now.
    pub(super) fn reached(&mut self, epoch: Option<&str>) {
        let Some(epoch) = epoch else { return };
        if self.epoch.as_deref() == Some(epoch) {
            return;
        }
        if self.epoch.is_some() {
            // A server seen in the old Redis replaces what an earlier one
            // (also restarted empty since) had of it.
            let seen = std::mem::take(&mut self.seen);
            self.awaited.retain(|server, _| !seen.contains_key(server));
            let mut held: usize = self.awaited.values().map(Vec::len).sum();
            for (server, members) in seen {
                if held + members.len() > MAX_REMEMBERED {
                    log!("redis: {MAX_REMEMBERED} members of other servers awaited already; those of {server} are not");
                    continue;
                }
                held += members.len();
                self.awaited.insert(server, members);
            }
            self.since = Some(Instant::now());
            self.index();
        }
        self.epoch = Some(epoch.to_string());
    }

    /// Whether `lower` (a name in lower case) is the name of a member of a
    /// server awaited in the Redis of `epoch` (the one a claim is about to
    /// be made in; a new one makes what was seen awaited now, if presence
    /// has not found it yet): that server claims it again when it
    /// registers, and no client of this one takes it meanwhile.
    pub fn awaits(&mut self, epoch: Option<&str>, lower: &str) -> bool {
        self.reached(epoch);
        self.names.contains(lower)
    }

    /// Builds [`Remembered::names`] again from what is awaited.
    fn index(&mut self) {
        self.names = self
            .awaited
            .values()
            .flatten()
            .map(|(name, _)| name.to_lowercase())
            .collect();
    }

    /// A beat read `listings` (each listed server and its members) from
    /// Redis in `epoch`: kept as what this server saw last.
    pub(super) fn read(&mut self, epoch: Option<&str>, listings: Vec<(String, Listing)>) {
        self.reached(epoch);
        self.seen.clear();
        let mut held = 0;
        let mut over = false;
        for (server, members) in listings {
            if members.is_empty() {
                continue;
            }
            if held + members.len() > MAX_REMEMBERED {
                over = true;
                continue;
            }
            held += members.len();
            self.seen.insert(server, members);
        }
        if over && !self.full {
            log!("redis: more than {MAX_REMEMBERED} members on the other servers; the rest are not remembered, should Redis restart empty");
        }
        self.full = over;
    }

    /// The servers listed in Redis now: none of them is awaited any more
    /// (each registered again, or another survivor listed it again).
    pub(super) fn listed(&mut self, servers: &[String]) {
        let before = self.awaited.len();
        self.awaited.retain(|server, _| {
            let listed = servers.contains(server);
            if listed {
                log!(
                    "redis: server {server}, awaited since Redis restarted empty, is listed there"
                );
            }
            !listed
        });
        if self.awaited.len() != before {
            self.index();
        }
    }

    /// The servers awaited for [`HEARTBEAT_TTL`] since this server found
    /// the new Redis, with their members: to be listed again. A copy, so
    /// that the lock is not held across the round trip.
    fn due(&self) -> Vec<(String, Listing)> {
        match self.since {
            Some(since) if since.elapsed() >= HEARTBEAT_TTL => self
                .awaited
                .iter()
                .map(|(server, members)| (server.clone(), members.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `servers` were listed again (or found known there): no longer
    /// awaited, nor their members' names.
    fn relisted(&mut self, servers: &[String]) {
        for server in servers {
            self.awaited.remove(server);
        }
        if self.awaited.is_empty() {
            self.since = None;
        }
        self.index();
    }
}

impl Presence {
    /// Lists again each server awaited past its time ([`Remembered::due`],
    /// [`keys::RELIST`]) and forgets them. Returns those it listed: no
    /// heartbeat, members as remembered, so this beat's reap announces them.
    pub(super) fn relist_due(&mut self) -> Result<Vec<String>, Failure> {
        let due = self.remembered.lock().due();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let relist = Script::new(keys::RELIST);
        let listed: Vec<i64> = self.link.run(|conn| {
            let mut pipe = redis::pipe();
            for (server, members) in &due {
                pipe.cmd("EVALSHA")
                    .arg(relist.get_hash())
                    .arg(4)
                    .arg(keys::servers())
                    .arg(keys::alive(server))
                    .arg(keys::members(server))
                    .arg(keys::reaped(server))
                    .arg(server.as_str());
                for (name, value) in members.iter() {
                    pipe.arg(name).arg(value);
                }
            }
            pipe.query(conn)
        })?;
        let mut relisted = Vec::new();
        for ((server, members), listed) in due.iter().zip(listed) {
            if listed == 1 {
                log!(
                    "redis: server {server} did not register again within {HEARTBEAT_TTL:?} of Redis restarting empty; listed again with its {}, to announce them gone",
                    chat_common::protocol::count(members.len() as u64, "member")
                );
                relisted.push(server.clone());
            } else {
                log!("redis: server {server}, awaited since Redis restarted empty, is known there already");
            }
        }
        let due: Vec<String> = due.into_iter().map(|(server, _)| server).collect();
        self.remembered.lock().relisted(&due);
        Ok(relisted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member listing of `names`, values as filed.
    fn listing(names: &[&str]) -> Listing {
        names
            .iter()
            .map(|name| (name.to_string(), keys::member_value("lobby", 1, 1)))
            .collect()
    }

    /// A name seen on another server is refused in a new epoch (any
    /// case), even before presence found that epoch itself, and free
    /// again once its server is listed there; never in the epoch it was
    /// seen in.
    #[test]
    fn seen_names_are_awaited_in_a_new_epoch_until_their_server_is_listed() {
        let mut remembered = Remembered::default();
        remembered.read(Some("e1"), vec![("a".into(), listing(&["Alice", "Bob"]))]);
        assert!(!remembered.awaits(Some("e1"), "alice"), "held, not awaited");
        assert!(remembered.awaits(Some("e2"), "alice"));
        assert!(remembered.awaits(Some("e2"), "bob"));
        assert!(!remembered.awaits(Some("e2"), "carol"));
        // Presence finds the new epoch after the claim did: no change.
        remembered.reached(Some("e2"));
        assert!(remembered.awaits(Some("e2"), "alice"));
        remembered.listed(&["b".to_string()]);
        assert!(remembered.awaits(Some("e2"), "alice"));
        remembered.listed(&["a".to_string()]);
        assert!(!remembered.awaits(Some("e2"), "alice"));
        assert!(!remembered.awaits(Some("e2"), "bob"));
    }

    /// Relisting a server (past its time) frees its names here too.
    #[test]
    fn relisted_servers_names_are_not_awaited() {
        let mut remembered = Remembered::default();
        remembered.read(Some("e1"), vec![("a".into(), listing(&["Alice"]))]);
        assert!(remembered.awaits(Some("e2"), "alice"));
        remembered.relisted(&["a".to_string()]);
        assert!(!remembered.awaits(Some("e2"), "alice"));
        assert!(remembered.since.is_none());
    }
}

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

use std::collections::HashMap;
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
pub(super) struct Remembered {
    /// The epoch of the Redis that [`Remembered::seen`] was read from
    /// (`None` before the first read).
    epoch: Option<String>,
    /// Each other listed server's members, as this server's last beat read
    /// them; replaced at each beat.
    seen: HashMap<String, Listing>,
    /// The servers of an earlier Redis (restarted empty since) not yet
    /// found in the new one, with their members as last seen there.
    awaited: HashMap<String, Listing>,
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
        }
        self.epoch = Some(epoch.to_string());
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
        self.awaited.retain(|server, _| {
            let listed = servers.contains(server);
            if listed {
                log!(
                    "redis: server {server}, awaited since Redis restarted empty, is listed there"
                );
            }
            !listed
        });
    }

    /// The servers awaited for [`HEARTBEAT_TTL`] since this server found
    /// the new Redis, with their members: to be listed again.
    fn due(&self) -> Vec<(&String, &Listing)> {
        match self.since {
            Some(since) if since.elapsed() >= HEARTBEAT_TTL => self.awaited.iter().collect(),
            _ => Vec::new(),
        }
    }
}

impl Presence {
    /// Lists again each server awaited past its time ([`Remembered::due`],
    /// [`keys::RELIST`]) and forgets them. Returns those it listed: no
    /// heartbeat, members as remembered, so this beat's reap announces them.
    pub(super) fn relist_due(&mut self) -> Result<Vec<String>, Failure> {
        let due = self.remembered.due();
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
        for ((server, members), listed) in due.into_iter().zip(listed) {
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
        self.remembered.awaited.clear();
        self.remembered.since = None;
        Ok(relisted)
    }
}

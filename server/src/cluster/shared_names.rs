//! Names on Redis: the second implementation of
//! [`crate::rooms::names::Names`] (the first is `LocalNames`).
//!
//! A name is claimed with `SET NX` for `SERVER:CLIENT`, so it is unique
//! across the servers ignoring case; `guest-N` numbers come from one
//! `INCR`, so none is given twice. Each claim also files the client among
//! this server's members (name -> room), which a survivor announces if
//! this server is lost.
//!
//! The rooms' trait has no word for "Redis is away": a claim that cannot
//! be asked is refused as taken (logged), and a guest number that cannot be
//! asked comes from this server's own fallback range ([`FALLBACK_BASE`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::bridge::Bridge;
use super::names::{Claim, Names as RedisNames};
use crate::log;
use crate::rooms::names::{NameTaken, Names};
use crate::rooms::ClientId;

/// Guest numbers given while Redis cannot be asked start here, plus a
/// million times (server id mod 1000): far above what INCR reaches, and
/// apart for each server.
pub const FALLBACK_BASE: u64 = 1_000_000_000_000;

/// [`Names`] shared through Redis.
pub struct SharedNames {
    /// Claims, releases and guest numbers in Redis.
    redis: Arc<RedisNames>,
    /// Where this server's clients are filed (name, room), for presence.
    bridge: Arc<Bridge>,
    /// Names held by this server's clients (lower case), for `holder`.
    held: HashMap<String, ClientId>,
    /// Guest numbers given from the fallback range so far.
    fallback: u64,
}

impl SharedNames {
    /// Names for the server behind `bridge`.
    pub fn new(redis: Arc<RedisNames>, bridge: Arc<Bridge>) -> SharedNames {
        SharedNames {
            redis,
            bridge,
            held: HashMap::new(),
            fallback: 0,
        }
    }
}

impl Names for SharedNames {
    fn next_guest(&mut self) -> ClientId {
        match self.redis.next_guest() {
            Ok(n) => {
                self.bridge
                    .highest_guest
                    .fetch_max(n, std::sync::atomic::Ordering::Relaxed);
                n
            }
            Err(e) => {
                self.fallback += 1;
                if self.fallback.is_power_of_two() {
                    log!(
                        "redis: no guest number from Redis ({e:?}); {} taken from this server's own range so far",
                        self.fallback
                    );
                }
                FALLBACK_BASE + (self.bridge.server % 1000) * 1_000_000 + self.fallback
            }
        }
    }

    fn claim(&mut self, name: &str, id: ClientId) -> Result<(), NameTaken> {
        match self.redis.claim(name, id) {
            Ok(Claim::Claimed) => {}
            Ok(Claim::InUse) => return Err(NameTaken),
            Err(e) => {
                log!("redis: cannot claim a name ({e:?}); refused");
                return Err(NameTaken);
            }
        }
        self.held.insert(name.to_ascii_lowercase(), id);
        let room = {
            let mut members = self.bridge.members.lock();
            let whereabouts = members.entry(id).or_default();
            whereabouts.name = name.to_string();
            whereabouts
                .room
                .clone()
                .map(|room| (room, whereabouts.entered))
        };
        // A rename keeps its place in `/who`: the time it entered the room.
        if let Some((room, entered)) = room {
            if let Err(e) = self.redis.member(name, Some((&room, entered))) {
                log!("redis: cannot file {name} as a member ({e:?})");
            }
        }
        Ok(())
    }

    fn release(&mut self, name: &str, id: ClientId) {
        let key = name.to_ascii_lowercase();
        if self.held.get(&key) != Some(&id) {
            return;
        }
        self.held.remove(&key);
        {
            let mut members = self.bridge.members.lock();
            if members
                .get(&id)
                .is_some_and(|w| w.name.eq_ignore_ascii_case(name))
            {
                members.remove(&id);
            }
        }
        if self.bridge.is_stopping() {
            // Stopping: presence freed every name of this server at once.
            return;
        }
        if let Err(e) = self
            .redis
            .release(name, id)
            .and_then(|()| self.redis.member(name, None))
        {
            log!("redis: cannot free the name {name} ({e:?}); it is freed when this server stops or is lost");
        }
    }

    fn holder(&self, name: &str) -> Option<ClientId> {
        self.held.get(&name.to_ascii_lowercase()).copied()
    }
}

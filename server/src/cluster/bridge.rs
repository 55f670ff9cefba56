//! The bridge between the cluster's threads and the rooms: what the
//! reader, the writer and presence hand over ([`Sink`](super::Sink), [`Local`](super::presence::Local)) becomes
//! calls of [`crate::rooms::Rooms`], and what the rooms do becomes Redis
//! entries ([`super::room_log`], [`super::shared_names`]).
//!
//! It is the only place that knows both sides; the rooms see a
//! [`crate::rooms::log::Log`] and a [`crate::rooms::names::Names`] and
//! nothing of Redis.
//!
//! What other servers ask through the inbox is served in
//! `bridge/requests.rs`; what presence asks of this server's members in
//! `bridge/local.rs`; a room's history ring and delivery floor in
//! `bridge/feed.rs`; telling the clients that this server is cut off in
//! `bridge/outage.rs`; what the reader and the writer hand over (the
//! [`Sink`](super::Sink)) in `bridge/sink.rs`; the cluster's shared ban
//! list applied to this server's in `bridge/bans.rs`.
//!
//! Lock order: the bridge's own mutexes are leaves, but two: `feeds`,
//! under which a feed's ring and `epoch` are taken; and `outage`, held
//! across [`crate::rooms::Rooms::tell`] (the directory, then a
//! client's queue) and taken only with no lock of the rooms' held, from
//! the reader's thread or [`Bridge::settled`]. The reader calls into the
//! rooms (which take the directory, then a room) holding none of them;
//! what it picks under a room's lock takes `feeds` alone, briefly (to
//! check the run's feed is still the room's), then the feed's own lock
//! ([`Feed::fresh`]); `feeds` is never held while a room's lock is taken.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use super::keys;
use super::names::Names;
use super::now_ms;
use super::Entry;
use crate::rooms::log::{Batch, Origin, ServerId};
use crate::rooms::ClientId;
use crate::Context;

mod bans;
mod feed;
mod local;
mod outage;
mod requests;
mod sink;

pub use feed::Feed;
pub use requests::ban_by_address;

/// Where a local client is, for presence.
#[derive(Debug, Clone, Default)]
pub struct Whereabouts {
    /// Its name (as claimed).
    pub name: String,
    /// Its room's key, once it entered one.
    pub room: Option<String>,
    /// When it entered that room (ms since the epoch).
    pub entered: u64,
    /// The last outage (its number) it was told is cutting this server
    /// off: each client is told once an outage.
    pub told: u64,
}

/// The state the cluster's threads and the rooms' seams share.
pub struct Bridge {
    /// This server's id in the rooms' [`Origin`]s and in Redis.
    pub server: ServerId,
    /// `--history`: the chat lines each room keeps.
    history: usize,
    /// For filing a member's room when it changes.
    names: Arc<Names>,
    /// The server, once built (the rooms live in it).
    ctx: OnceLock<Weak<Context>>,
    /// Whether the reader's link to Redis is up: while down, lines are
    /// refused at once.
    up: AtomicBool,
    /// The number of the outage this server is in (1, 2, ...), `None`
    /// while the link is up: who was told of it is in each client's
    /// [`Whereabouts::told`]. Held across the telling (`bridge/outage.rs`).
    outage: Mutex<Option<u64>>,
    /// Outages so far: the next one's number.
    outages: AtomicU64,
    /// Set when the server stops: nothing more is delivered locally.
    stopping: AtomicBool,
    /// Every room's feed, by key, while the server knows the room (read
    /// or only kept for its history).
    pub feeds: Mutex<HashMap<String, Arc<Feed>>>,
    /// The epoch of the Redis the reader reads (`None` before it first
    /// reached one): the log a feed opened now counts in. Taken only with
    /// `feeds` locked, so a feed is opened either before a change (and
    /// emptied with the others) or after it.
    epoch: Mutex<Option<String>>,
    /// Rooms with local members (told when the link comes back).
    pub local: Mutex<HashSet<String>>,
    /// The spelling of each room with local members, as the cluster shows
    /// it (`spelling.rs`), where known: kept alive by presence.
    pub spellings: Mutex<HashMap<String, String>>,
    /// Local clients: name and room.
    pub members: Mutex<HashMap<ClientId, Whereabouts>>,
    /// The highest guest number Redis gave this server, or the shared
    /// counter stood at when presence last looked: no number at or below
    /// it is given again, and after Redis came back empty its counter is
    /// raised past it.
    pub highest_guest: AtomicU64,
    /// The tag of this server's fallback guest names (`guest-TAG.N`),
    /// taken from Redis at start: after Redis came back empty its counter
    /// is raised past it too.
    pub guest_tag: u64,
    /// Members of each room (by key) on the other servers, as presence
    /// last counted them (every heartbeat): the rest of a notice's
    /// `N online`.
    others: Mutex<HashMap<String, usize>>,
    /// Held while the shared ban list is applied here
    /// ([`Bridge::adopt_bans`]): by the start and by presence, one at a
    /// time. Not a leaf: held across the rooms' calls (above their locks,
    /// `rooms/mod.rs`).
    adopting: Mutex<()>,
    /// Tests only: called with a room's key when a run of its entries was
    /// read and is about to be delivered, no lock held, so a test can hold
    /// the reader there while a member enters the room.
    #[cfg(test)]
    pub(super) before_delivery: Mutex<Option<tests::DeliveryHook>>,
}

impl Bridge {
    /// A bridge for server `server` (its fallback guest names tagged
    /// `guest_tag`, `history` chat lines kept per room), not yet attached
    /// to its rooms.
    pub fn new(server: ServerId, guest_tag: u64, history: usize, names: Arc<Names>) -> Bridge {
        Bridge {
            server,
            history,
            guest_tag,
            names,
            ctx: OnceLock::new(),
            up: AtomicBool::new(true),
            outage: Mutex::new(None),
            outages: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            feeds: Mutex::new(HashMap::new()),
            epoch: Mutex::new(None),
            local: Mutex::new(HashSet::new()),
            spellings: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
            highest_guest: AtomicU64::new(0),
            others: Mutex::new(HashMap::new()),
            adopting: Mutex::new(()),
            #[cfg(test)]
            before_delivery: Mutex::new(None),
        }
    }

    /// Attaches the bridge to the server whose rooms it feeds.
    pub fn attach(&self, ctx: &Arc<Context>) {
        let _ = self.ctx.set(Arc::downgrade(ctx));
    }

    /// Local client `client` put a line in room `room` (its join notice
    /// first): if that is a new room for it, it is noted, to be filed in
    /// Redis by [`Bridge::settled`] once the rooms released their locks,
    /// and its name and members-list value are returned, for the writer
    /// to file it ahead of the join notice. Called under the room's lock:
    /// never waits for Redis.
    pub fn entered(&self, client: ClientId, room: &str) -> Option<(String, String)> {
        let mut members = self.members.lock();
        let w = members.get_mut(&client)?;
        if w.room.as_deref() == Some(room) {
            return None;
        }
        w.room = Some(room.to_string());
        w.entered = now_ms();
        (!w.name.is_empty()).then(|| {
            let value = keys::member_value(room, w.entered, client);
            (w.name.clone(), value)
        })
    }

    /// How local client `client` is filed in the members list now (its
    /// [`keys::member_value`]): `None` if in no room.
    pub fn filed_as(&self, client: ClientId) -> Option<String> {
        let members = self.members.lock();
        let w = members.get(&client)?;
        Some(keys::member_value(w.room.as_deref()?, w.entered, client))
    }

    /// Local client `client` entered a room (connected, or `/join`ed), and
    /// the rooms hold no lock: told that this server is cut off if it is
    /// and was not told yet (`bridge/outage.rs`), then filed in its room.
    pub fn settled(&self, client: ClientId) {
        self.tell_cut_off(client);
        self.file(client);
    }

    /// Files local client `client` in its room now (one `HSET`), with no
    /// lock of the rooms held. A client
    /// that left or was renamed meanwhile is taken out again: whichever of
    /// this and its release runs last, the list ends right.
    fn file(&self, client: ClientId) {
        let Some(w) = self.members.lock().get(&client).cloned() else {
            return;
        };
        let Some(room) = w.room.as_deref() else {
            return;
        };
        if let Err(e) = self.names.member(&w.name, Some((room, w.entered, client))) {
            crate::log!("redis: cannot file {} in #{room} ({e:?})", w.name);
            return;
        }
        let still = self
            .members
            .lock()
            .get(&client)
            .is_some_and(|now| now.name == w.name);
        if !still {
            let _ = self.names.member(&w.name, None);
        }
    }

    /// Opens room `key`'s feed (its history ring and delivery floor),
    /// counting in the log the reader reads now.
    pub fn open(&self, key: &str) -> Arc<Feed> {
        let mut feeds = self.feeds.lock();
        let feed = Arc::new(Feed::new(self.epoch.lock().as_deref()));
        feeds.insert(key.to_string(), Arc::clone(&feed));
        feed
    }

    /// Members of room `key` on the other servers, as last counted.
    pub fn elsewhere(&self, key: &str) -> usize {
        self.others.lock().get(key).copied().unwrap_or(0)
    }

    /// The rooms (by key) with members on the other servers, as last
    /// counted.
    pub fn busy_elsewhere(&self) -> Vec<String> {
        self.others
            .lock()
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Whether Redis is reachable (as far as the reader knows).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// From now on nothing is delivered locally (the server is stopping).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether the server is stopping (its names were freed already).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The `from` field of an entry: `SERVER:CLIENT`, `SERVER:-` for none.
    pub fn origin_field(origin: Origin) -> String {
        match origin.client {
            Some(client) => format!("{}:{client}", origin.server),
            None => format!("{}:-", origin.server),
        }
    }

    /// The [`Origin`] an entry's `from` field names; an entry some other
    /// writer made (a lost server's leave) comes from no one.
    fn origin_of(from: &str) -> Origin {
        let (server, client) = from.split_once(':').unwrap_or(("0", "-"));
        Origin {
            server: server.parse().unwrap_or(0),
            client: client.parse().ok(),
        }
    }

    fn rooms(&self) -> Option<Arc<Context>> {
        if self.stopping.load(Ordering::Acquire) {
            return None;
        }
        self.ctx.get()?.upgrade()
    }

    /// Hands one line to room `key`'s local members only (a notice about
    /// this server's link, never in the log).
    fn local_notice(&self, ctx: &Context, key: &str, line: &str) {
        let batch = Batch {
            from: Origin {
                server: self.server,
                client: None,
            },
            lines: vec![line.into()],
        };
        ctx.rooms.deliver(key, &batch);
    }

    /// Delivers `run` (entries of one origin, in the log's order) to room
    /// `key` as one batch: those new for the room, picked under its lock
    /// by the room's feed as it is then ([`Feed::fresh`]), so a member
    /// entering meanwhile gets each either in its history or live, never
    /// both.
    fn deliver_run(&self, ctx: &Context, key: &str, run: Vec<Entry>) {
        let Some(first) = run.first() else {
            return;
        };
        let from = Bridge::origin_of(&first.from);
        #[cfg(test)]
        self.about_to_deliver(key);
        ctx.rooms.deliver_picked(key, || {
            // The room's feed now, not the one when the run was read: a
            // room forgotten (emptied with no history) and made anew has
            // another, whose floor is where its own tail ended. Picked by
            // the old one, a run the new tail held was shown twice, in the
            // history and live (a review); dropped, one past an older tail
            // would be lost (the next review).
            let feed = self.feeds.lock().get(key).cloned()?;
            let fresh = feed.fresh(run);
            (!fresh.is_empty()).then(|| Batch {
                from,
                lines: fresh.into_iter().map(|e| e.text.into()).collect(),
            })
        });
    }
}

#[cfg(test)]
mod tests;

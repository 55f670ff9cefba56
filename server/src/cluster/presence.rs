//! Presence: which servers live, who is on each, and who announces the
//! members of a server that died.
//!
//! Each server refreshes a heartbeat key with a TTL ([`HEARTBEAT_TTL`])
//! every [`HEARTBEAT_EVERY`]; its members (name -> room) are a hash beside
//! it, kept by [`super::names::Names`]. The same thread looks at the other
//! registered servers: one whose heartbeat expired is lost. The survivor
//! that takes its lock key ([`keys::TAKE_LOCK`], [`REAP_LOCK_TTL`]; its
//! holder takes it again, so a reap that failed half way goes on at the
//! next beat) announces each of
//! its members as left ([`LOST_KIND`]) in the member's room log and frees
//! its name, one member per [`keys::REAP_MEMBER`] call (pipelined,
//! [`REAP_CHUNK`] to a round trip), which does it only if the member is
//! still listed: even two survivors racing past an expired lock announce
//! each member once. Then the lost server's keys go (its member list, wake
//! and inbox streams).
//!
//! So a server killed with `kill -9` is announced within
//! `HEARTBEAT_TTL + HEARTBEAT_EVERY` (6 s), inside SPEC's 10 s. The
//! heartbeat's TTL is relative (`PX`): a beat held up in a stopped Redis
//! (or a stalled network) and run when it resumes lasts a whole TTL from
//! then, so every server, whose later beats wait for a new connection,
//! stays alive through the reconnection; the price is that a server killed
//! while Redis was stopped is announced up to a TTL after Redis resumed
//! (docs/CLUSTER.md, Known limits). An absolute end (`PXAT`) was tried and
//! taken back: a Redis hung for 6 s then found every heartbeat gone, and
//! live servers took each other for lost (a review), and it made the time
//! to announce a death depend on the servers' clocks.
//!
//! After Redis came back empty (a new epoch), or when this server finds it
//! was taken for lost (cut off from Redis longer than the heartbeat lasts:
//! the others have announced its clients gone), or that Redis came back
//! from an older copy of its data (its heartbeat key holds an earlier beat
//! than Redis took: the epoch and the listing survive, but what its
//! clients did since the copy is gone), the thread registers this server
//! again from scratch: heartbeat, members, their names (unless taken
//! meanwhile; names the old copy shows held by its clients under names
//! they no longer have are freed), and the guest counter raised past every
//! number this server gave.
//! Each registration also reads the cluster's shared ban list and applies
//! what this server does not hold ([`Local::shared_bans`],
//! `shared_bans.rs`): bans typed while it was not listed reach it then.
//! Before that, at every beat that reaches Redis, the bans this server's
//! console lifted while Redis did not answer are taken out of that list
//! ([`Local::lift_unlifted`]), so its registration does not bring them
//! back here.
//!
//! A client named while Redis could not be asked (a fallback guest name,
//! `shared_names`) is held on this server only: at the next beat that
//! reaches Redis the thread claims its members' names there too, so a
//! `/msg` from another server finds it (a name taken elsewhere meanwhile
//! is given up for a fresh guest name).
//!
//! A name given back while Redis could not be asked (its client left or
//! was renamed) is remembered by `names`: at the next beat that reaches
//! Redis the thread frees it (if that client still holds it) before it
//! files the members again without the leaver (`names/unfreed.rs`).
//!
//! A server lost around the time Redis restarted empty (killed, or stopped
//! while Redis was away) left nothing in the new Redis to reap: the others
//! remember its members from their last beats and, should it not register
//! again within [`HEARTBEAT_TTL`], list it again for the reap to announce
//! them (`presence/remembered.rs`).
//!
//! Filing the members and claiming their names again is
//! `presence/filing.rs`; reaping lost servers is `presence/reaping.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::link::{Endpoint, Failure, Link, IO_TIMEOUT};
use super::names::Names;
use super::{keys, LogConfig};
use crate::log;
use crate::shutdown::{Shutdown, Waited};

mod filing;
mod reaping;
mod remembered;

pub use remembered::{Remembered, MAX_REMEMBERED};

/// How often a server refreshes its heartbeat and looks for lost servers.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// How long a heartbeat lasts: a server silent this long is lost.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5);

/// How long a server's last heartbeat number is kept (`chat:beat:ID`, a
/// number: one small key per server started in that time, deleted at a
/// graceful stop): Redis back from a copy of its data up to this old is
/// found to have gone back. The room logs' idle expiry, `LOG_IDLE_TTL`.
pub const BEAT_TTL: Duration = super::LOG_IDLE_TTL;

/// How long one survivor holds the right to announce a lost server past
/// its last step: it takes the lock again at each beat until the reap is
/// done, and refreshes it with each chunk of members. Should it die
/// meanwhile, another takes over this long after.
pub const REAP_LOCK_TTL: Duration = Duration::from_secs(3);

/// How long the names of a lost server's members announced as gone are
/// kept for it to announce them back, should it come back (cut off from
/// Redis, or frozen, not dead).
pub const REAPED_TTL: Duration = Duration::from_secs(3600);

/// Members announced per pipeline when a server is reaped (or leaves):
/// one round trip each, this server's heartbeat refreshed before each.
pub const REAP_CHUNK: usize = 256;

/// The kind of the log entry announcing a lost server's member.
pub const LOST_KIND: &str = "lost";

/// The kind of the log entry announcing a member of a server that stopped.
pub const STOPPED_KIND: &str = "stopped";

/// The kind of the log entry announcing a member of a server taken for
/// lost that registered again: back after its leave was announced.
pub const BACK_KIND: &str = "back";

/// One local member, as registered in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name as shown.
    pub name: String,
    /// The key of the room it is in.
    pub room: String,
    /// Its client id on this server.
    pub client: u64,
    /// When it entered its room (ms since the epoch).
    pub entered: u64,
}

impl Member {
    /// Its value in this server's members list ([`keys::member_value`]).
    pub fn filed(&self) -> String {
        keys::member_value(&self.room, self.entered, self.client)
    }
}

/// Why this server, claiming its members' names again, found one held by
/// a client of another server: what the member is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameLost {
    /// This server was cut off from Redis long enough to be taken for
    /// lost, and its names freed.
    CutOff,
    /// Redis restarted empty, and the name was claimed there before this
    /// server registered again (one claimed in the last beat before the
    /// restart, which the other servers did not remember as held).
    RedisEmptied,
}

/// What this server has, for registering again after Redis lost it, and
/// how its rooms word a leave.
pub trait Local: Send + Sync + 'static {
    /// Every local member.
    fn members(&self) -> Vec<Member>;
    /// The line a room shows when `name` left for `reason` (`server lost`).
    fn left(&self, name: &str, reason: &str) -> String;
    /// The highest `guest-N` number this server gave, or saw the shared
    /// counter at ([`Local::counter_seen`]).
    fn highest_guest(&self) -> u64;
    /// The shared guest counter as a beat found it: every number up to it
    /// was given by some server. Kept as this server's floor, so that after
    /// Redis restarted empty it gives none of them again, not even before
    /// the server that gave them registered again.
    fn counter_seen(&self, _counter: u64) {}
    /// The tag of this server's fallback guest names (`guest-TAG.N`).
    fn guest_tag(&self) -> u64;
    /// How many members each room (by key) has on the other servers now.
    fn others(&self, counts: HashMap<String, usize>);
    /// Local client `client`'s name `name` was taken by a client of another
    /// server while this one was unlisted (`why`): it gets a new `guest-N`,
    /// and is told. Returns `false` if it could not be renamed (no new name
    /// to be had): the names are claimed again at the next beat
    /// ([`Local::claim_failed`]), which finds this one lost again.
    fn name_lost(&self, client: u64, name: &str, why: NameLost) -> bool;
    /// Whether filing a member (or its removal) failed since the last
    /// call: the members are then filed again at the next beat.
    fn unfiled(&self) -> bool;
    /// Filing them all again failed: try again at the next beat.
    fn file_failed(&self);
    /// Whether a client was named without Redis (a fallback guest name)
    /// since the last call: its name is then claimed at this beat.
    fn unclaimed(&self) -> bool;
    /// Claiming the names failed: try again at the next beat.
    fn claim_failed(&self);
    /// The link this server's clients claim, release and file their names
    /// on: presence holds it while it files them all again, so none of
    /// theirs lands in between ([`None`]: a server with no such link, as in
    /// tests; presence uses its own).
    fn names(&self) -> Option<Arc<Names>> {
        None
    }
    /// Frees the names this server's clients gave back while Redis could
    /// not be asked (if each is still its client's), keeping those it
    /// could not free for the next call.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    fn free_unfreed(&self) -> Result<(), Failure>;
    /// Takes out of the cluster's shared ban list the bans this server
    /// lifted while Redis could not be asked (each unless banned anew
    /// since), keeping those it could not for the next call
    /// (`shared_bans.rs`).
    ///
    /// # Errors
    /// When Redis cannot be asked.
    fn lift_unlifted(&self) -> Result<(), Failure> {
        Ok(())
    }
    /// The rooms with local members whose spelling the cluster shows
    /// (key, spelling): kept alive at every beat (`spelling.rs`).
    fn spellings(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The cluster's shared ban list as read when this server registered
    /// (prefix -> ban line, `shared_bans.rs`): every live ban not held
    /// here yet is applied. Returns the entries found expired, to be
    /// taken out; `None` if the server cannot apply them yet (not
    /// attached to its rooms): asked again at the next beat.
    fn shared_bans(&self, _shared: &[(String, String)]) -> Option<Vec<(String, String)>> {
        Some(Vec::new())
    }
    /// How a member announced as lost is announced back (a `* ` line).
    fn back(&self, name: &str) -> String {
        chat_common::protocol::notice(&format!("{name} is back (server reconnected)"))
    }
}

/// A heartbeat's replies: the heartbeat and the beat number it replaced,
/// whether the server was added to the list, the shared guest counter,
/// whether members of it were announced gone, whether a reap lock is held
/// on it.
type Heartbeat = (Option<String>, Option<String>, i64, Option<u64>, bool, bool);

/// The presence thread's state.
pub struct Presence {
    /// Presence's own connection.
    link: Link,
    /// This server's id: its heartbeat, members and reap keys.
    server_id: String,
    /// How the logs it appends leave lines to are bounded.
    config: LogConfig,
    /// This server's members, for registering again and wording a leave.
    local: Arc<dyn Local>,
    /// The epoch this server registered in; `None` before the first time.
    registered: Option<String>,
    /// Found Redis restarted empty (a new epoch) since it last registered:
    /// a name lost at the registration that follows was lost to that
    /// ([`NameLost::RedisEmptied`]).
    emptied: bool,
    /// Registered, not yet found whether the others had taken this server
    /// for lost and announced its members gone (to announce them back).
    back_pending: bool,
    /// Registered, the shared ban list not yet read and applied since
    /// (`shared_bans.rs`): tried at every beat until it is.
    bans_pending: bool,
    /// The other servers' members as last read, and those of a Redis that
    /// restarted empty awaited in the new one: shared with the names link
    /// ([`Names::remembered`]), whose claims refuse the awaited names.
    remembered: Arc<Mutex<Remembered>>,
    /// The number of this server's last heartbeat sent (each beat's is one
    /// more): the value of its heartbeat key, so that a heartbeat that
    /// finds an earlier one there knows Redis went back.
    beats: u64,
    /// The number of the last heartbeat Redis answered (so took): a
    /// heartbeat key found lower than this came from an older copy of
    /// Redis's data.
    taken: u64,
    /// No server is taken for lost before this: a Redis that lost this
    /// server's own heartbeat while it was listed (expired in an outage
    /// longer than [`HEARTBEAT_TTL`], Redis back from a copy of its data,
    /// or emptied) lost the others' too, for no fault of theirs, and they
    /// are given a whole [`HEARTBEAT_TTL`] to beat again first. A dropped
    /// connection or a short stall loses nothing and delays nothing (a
    /// review: counting a 2 s gap between answered beats as an outage put
    /// a `kill -9` announcement past 10 s after one dropped connection).
    reap_from: Instant,
}

impl Presence {
    /// Starts the presence thread of `server_id`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(
        endpoint: &Endpoint,
        server_id: &str,
        config: LogConfig,
        local: Arc<dyn Local>,
        shutdown: Arc<Shutdown>,
    ) -> std::io::Result<thread::JoinHandle<()>> {
        let remembered = local
            .names()
            .map_or_else(Arc::default, |names| names.remembered());
        let mut presence = Presence {
            link: endpoint.link("presence", IO_TIMEOUT),
            server_id: server_id.to_string(),
            config,
            local,
            registered: None,
            emptied: false,
            back_pending: false,
            bans_pending: false,
            remembered,
            beats: 0,
            taken: 0,
            reap_from: Instant::now(),
        };
        // Listed before the server takes its first client: a console's
        // `/ban` typed elsewhere at once, or a `/who`, already finds it
        // (the thread's first beat then registers its members). Redis
        // away now: the thread's beats list it when it is back.
        let _ = presence.heartbeat();
        thread::Builder::new()
            .name("redis-presence".into())
            .spawn(move || loop {
                if let Err(Failure::Refused(e)) = presence.beat() {
                    log!("redis presence: {}", super::link::brief(&e));
                }
                if shutdown.pause(HEARTBEAT_EVERY) == Waited::ShuttingDown {
                    presence.leave();
                    return;
                }
            })
    }

    /// One heartbeat: register again if Redis is new, refresh the TTL,
    /// announce the servers found lost.
    fn beat(&mut self) -> Result<(), Failure> {
        let unlisted = self.heartbeat()?;
        // A new epoch: what this server saw of the others is awaited in it.
        self.remembered.lock().reached(self.link.epoch());
        // Names given back while Redis was away are freed first, before
        // their leavers are unlisted by a refile (or a registration): a
        // stop or a reaper frees the names of listed members only.
        self.local.free_unfreed()?;
        // Bans lifted here while Redis was away are taken out of the
        // shared list before a registration reads it.
        self.local.lift_unlifted()?;
        // Not listed any more: Redis is new or lost everything, or the
        // others took this server for lost (cut off from Redis longer than
        // the heartbeat lasts) and announced its clients gone; or Redis
        // went back to an older copy of its data. Either way its clients
        // are still here: register them again.
        if self.registered.is_some() && self.registered.as_deref() != self.link.epoch() {
            self.emptied = true;
        }
        if unlisted || self.registered.as_deref() != self.link.epoch() {
            // Noted again only once it succeeds: a registration that fails
            // (the link dropping right after this heartbeat listed the
            // server) is tried at every beat until one does.
            self.registered = None;
            self.register()?;
            self.back_pending = true;
            self.bans_pending = true;
        } else {
            if self.local.unfiled() {
                if let Err(e) = self.refile() {
                    self.local.file_failed();
                    return Err(e);
                }
            }
            if self.local.unclaimed() {
                if let Err(e) = self.claim_names() {
                    self.local.claim_failed();
                    return Err(e);
                }
            }
        }
        // Bans typed while it was not registered (down, not yet started,
        // taken for lost, or Redis restarted empty) are applied now.
        if self.bans_pending {
            self.adopt_bans()?;
        }
        // Its members the others announced as gone (if they took it for
        // lost) are announced back, at every beat until it succeeds.
        if self.back_pending {
            self.announce_back()?;
            self.back_pending = false;
        }
        let listed = self.reap_lost()?;
        self.count_others(&listed)?;
        super::spelling::keep(&mut self.link, &self.local.spellings())
    }

    /// Refreshes this server's heartbeat and lists it among the servers,
    /// and notes the shared guest counter. Returns whether its members
    /// must be registered again: it was not listed, or a reaper announced
    /// some of them gone and stopped half way, finding it alive again
    /// before it unlisted it (members announced gone, no reap lock held
    /// on it any more), or Redis went back ([`Presence::went_back`]).
    fn heartbeat(&mut self) -> Result<bool, Failure> {
        let me = self.server_id.clone();
        self.beats += 1;
        let beat = self.beats;
        let (alive, held, added, counter, reaped, locked): Heartbeat = self.link.run(|conn| {
            redis::pipe()
                .cmd("SET")
                .arg(keys::alive(&me))
                .arg(beat)
                .arg("PX")
                .arg(HEARTBEAT_TTL.as_millis() as u64)
                .arg("GET")
                // The number again, in a key that outlives the heartbeat
                // (`BEAT_TTL`): a copy of Redis's data taken more than
                // a heartbeat before it went down holds no heartbeat,
                // but this (a review: a snapshot 7 s old went unseen).
                .cmd("SET")
                .arg(keys::beat(&me))
                .arg(beat)
                .arg("PX")
                .arg(BEAT_TTL.as_millis() as u64)
                .arg("GET")
                .cmd("SADD")
                .arg(keys::servers())
                .arg(&me)
                .cmd("GET")
                .arg(keys::guest())
                .cmd("EXISTS")
                .arg(keys::reaped(&me))
                .cmd("EXISTS")
                .arg(keys::reap(&me))
                .query(conn)
        })?;
        let held: Option<u64> = held.and_then(|held| held.parse().ok());
        let went_back = self.went_back(held);
        // Redis lost this server's heartbeat (expired in an outage, back
        // from an older copy of its data, or emptied): it lost the others'
        // too, for no fault of theirs, and they are given time to beat
        // again.
        if self.taken > 0 && (alive.is_none() || held.is_none_or(|held| held < self.taken)) {
            self.reap_from = Instant::now() + HEARTBEAT_TTL;
        }
        self.taken = beat;
        if let Some(counter) = counter {
            self.local.counter_seen(counter);
        }
        Ok(added == 1 || (reaped && !locked) || went_back)
    }

    /// Whether the beat `held` that this heartbeat replaced (`None`: the
    /// key was gone, expired or lost with Redis's data: the listing says
    /// the rest) shows that Redis lost some of what this server wrote:
    /// lower than the last beat Redis answered, it came back from an older
    /// copy of its data (a snapshot, an AOF behind), with the same epoch
    /// and this server still listed, but its members and names as they
    /// were then. Higher, a beat whose reply was lost landed, and what it
    /// replaced is not known: registering again costs one pipeline, so it
    /// is done then too.
    fn went_back(&self, held: Option<u64>) -> bool {
        match held {
            Some(held) if held < self.taken => {
                log!(
                    "redis: Redis came back with an older copy of its data (this server's heartbeat went back from beat {} to {held}); registering its clients again",
                    self.taken
                );
                true
            }
            Some(held) => held > self.taken,
            None => false,
        }
    }

    /// Reads the shared ban list and applies it here
    /// ([`Local::shared_bans`]), taking out the entries found expired;
    /// pending until the server could apply it.
    fn adopt_bans(&mut self) -> Result<(), Failure> {
        let shared = super::shared_bans::read(&mut self.link)?;
        let Some(expired) = self.local.shared_bans(&shared) else {
            return Ok(());
        };
        self.bans_pending = false;
        super::shared_bans::forget(&mut self.link, &expired)
    }

    /// Counts the members of the other live servers by room, for the
    /// `N online` of this server's notices, and remembers every listed
    /// server's members (should Redis restart empty, `remembered.rs`):
    /// one pipelined `HGETALL` per listed server, every beat. `listed`:
    /// each other listed server, and whether its heartbeat is alive.
    fn count_others(&mut self, listed: &[(String, bool)]) -> Result<(), Failure> {
        if listed.is_empty() {
            self.remembered.lock().read(self.link.epoch(), Vec::new());
            self.local.others(HashMap::new());
            return Ok(());
        }
        let read: Vec<Vec<(String, String)>> = self.link.run(|conn| {
            let mut pipe = redis::pipe();
            for (server, _) in listed {
                pipe.cmd("HGETALL").arg(keys::members(server));
            }
            pipe.query(conn)
        })?;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for ((_, alive), members) in listed.iter().zip(&read) {
            if !alive {
                continue;
            }
            for (_, value) in members {
                let (room, _) = keys::parse_member(value);
                *counts.entry(room.to_string()).or_default() += 1;
            }
        }
        let listings = listed.iter().map(|(server, _)| server.clone()).zip(read);
        self.remembered
            .lock()
            .read(self.link.epoch(), listings.collect());
        self.local.others(counts);
        Ok(())
    }

    /// A graceful stop: announces this server's members as left (their
    /// rooms on the other servers see it at once), frees their names and
    /// unregisters, so the others need not wait for the heartbeat to
    /// expire. Best effort: if Redis is away, the others reap it later.
    fn leave(&mut self) {
        let me = self.server_id.clone();
        // Names given back while Redis was away: their members are not
        // listed any more, and the reap below frees listed members' only.
        let _ = self.local.free_unfreed();
        // Bans lifted here while Redis was away: the others must not
        // find them in the shared list when they register.
        let _ = self.local.lift_unlifted();
        if let Err(e) = self.reap(&me, STOPPED_KIND, "server stopped") {
            log!("redis presence: could not unregister ({e:?}); the others will see this server lost");
        }
        let _ = self.link.run(|conn| {
            redis::cmd("DEL")
                .arg(keys::alive(&me))
                .arg(keys::beat(&me))
                .arg(keys::wake(&me))
                .arg(keys::reaped(&me))
                .exec(conn)
        });
    }
}

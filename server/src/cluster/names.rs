//! Names and the directory across the cluster: one name per client in all
//! servers ignoring case (a Lua claim over `SET NX`), `guest-N` numbers
//! from one shared counter, the members list (name -> room and when it
//! entered) that `/who` and `/rooms` read and presence announces if this
//! server is lost, and each server's inbox for a private message or a kick
//! meant for one of its clients.
//!
//! These are questions a client waits for (`/nick`, connecting, `/who`),
//! so they run on the asking thread over one shared [`Link`], held only for
//! the round trip. When Redis is down they fail at once with
//! [`Failure::Down`]: the caller refuses or answers from what it has. So
//! they do while Redis is known to be hung (the link is
//! [`Link::quick`]): one caller waits out one reply timeout, those queued
//! behind it do not wait another each. Each may run twice harmlessly, so
//! each is tried again once on a fresh connection when its connection
//! turns out closed ([`Link::run_idempotent`]; not after a timeout); a
//! guest number lost that way is only skipped.
//! An inbox request is made safe to run twice by its number: this server
//! numbers its requests in the order it sends them, and the script that
//! puts one in an inbox ([`keys::INBOX_PUT`]) skips a number at or below
//! this server's mark, so a `/msg` sent again, or a late copy of it from a
//! broken connection, is served once. It also carries when it was first
//! sent, and the script skips it once `writer::STALE_AFTER` has passed by
//! Redis's clock (as a chat line, see `writer`): a request held up in a
//! stalled Redis never lands after its sender was told it was not sent.
//! One whose reply was lost ([`Unsent::Unsure`]) is answered only
//! `writer::UNSURE_DEADLINE` after it was first sent, when no copy of it can be
//! put any more.
//!
//! Requests through another server's inbox are `names/inbox.rs`; giving a
//! name back, and remembering one that could not be (Redis away) until
//! presence frees it, `names/unfreed.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use redis::Script;

use super::keys;
use super::link::{Endpoint, Failure, Link, IO_TIMEOUT};
use super::presence::Remembered;
use super::shared_bans::Unlifted;

mod inbox;
mod unfreed;

pub use inbox::Unsent;
pub use unfreed::MAX_UNFREED;

/// Entries a server's inbox keeps, about (MAXLEN ~): it is read at once,
/// so this only bounds what piles up for a server that died.
pub const INBOX_MAX_LEN: u64 = 1000;

/// How long Redis keeps a server's inbox mark ([`keys::inbox_mark`]) after
/// its last request: far longer than a copy of a request can linger on a
/// broken connection (a paused Redis) before Redis reads it. One small key
/// per server that sent a request within it.
pub const INBOX_MARK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What [`keys::INBOX_PUT`] returns for a request past `writer::STALE_AFTER`.
const STALE: i64 = -1;

/// The answer to [`Names::claim`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The name is this holder's now (or was already), on every server.
    Claimed,
    /// Another client, on some server, holds it (ignoring case).
    InUse,
}

/// A client anywhere in the cluster, as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The server it is on.
    pub server: String,
    /// Its name.
    pub name: String,
    /// Its room's key.
    pub room: String,
    /// When it entered the room (ms since the epoch).
    pub entered: u64,
}

/// Who holds a name, as the name's key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The server its client is on.
    pub server: String,
    /// Its client id there.
    pub client: u64,
    /// The name as it spelled it.
    pub name: String,
}

/// Names, guest numbers and the directory, shared by every server.
pub struct Names {
    /// The link for these short commands, one round trip at a time.
    link: Mutex<Link>,
    /// This server's id: the first part of every holder it writes.
    server_id: String,
    /// Set when filing a member (or removing one) failed: presence files
    /// them all again at its next beat.
    unfiled: AtomicBool,
    /// Set when a local client was named without Redis (a fallback guest
    /// name): presence claims its members' names at its next beat, so a
    /// `/msg` from another server finds it.
    unclaimed: AtomicBool,
    /// Names a release could not free (Redis away), lower case, with the
    /// local client that gave each back: presence frees them at its next
    /// beat that reaches Redis (`names/unfreed.rs`). At most
    /// [`MAX_UNFREED`]; changed only under the link's lock.
    unfreed: Mutex<Vec<(String, u64)>>,
    /// Lifts of a shared ban whose prefix could not be taken out of the
    /// cluster's shared ban list (Redis away): presence takes each out at
    /// its next beat that reaches Redis (`shared_bans.rs`). At most
    /// `MAX_UNLIFTED`.
    pub(super) unlifted: Unlifted,
    /// The number of this server's last inbox request: taken under the
    /// link's lock, so the requests reach Redis in the order of their
    /// numbers, and a request is sent again only before any later one.
    requests: AtomicU64,
    /// Held while a console's `/ban` or `/unban` is applied here with its
    /// step in the shared ban list, typed here (the put or the lift) or
    /// passed on (the check that the list still says so): so on each
    /// server the two happen in the list's order ([`Names::ban_order`]).
    /// Above the rooms' locks and the link's (`rooms/mod.rs`).
    ban_order: Mutex<()>,
    /// The other servers' members as presence last read them, and those
    /// awaited since Redis restarted empty: a claim refuses an awaited
    /// name (`presence/remembered.rs`). Shared with presence; a leaf,
    /// taken under the link's lock.
    remembered: Arc<Mutex<Remembered>>,
}

/// A turn at applying a console's `/ban` or `/unban` with its step in the
/// shared ban list ([`Names::ban_order`]): held until dropped.
#[must_use]
pub struct BanTurn<'a> {
    /// The turn itself.
    _held: MutexGuard<'a, ()>,
}

impl Names {
    /// Names for server `server_id` (connects on first use).
    pub fn new(endpoint: &Endpoint, server_id: &str) -> Names {
        Names {
            link: Mutex::new(endpoint.link("names", IO_TIMEOUT).quick()),
            server_id: server_id.to_string(),
            unfiled: AtomicBool::new(false),
            unclaimed: AtomicBool::new(false),
            unfreed: Mutex::new(Vec::new()),
            unlifted: Unlifted::default(),
            requests: AtomicU64::new(0),
            ban_order: Mutex::new(()),
            remembered: Arc::default(),
        }
    }

    /// What this server remembers of the others' members, for presence to
    /// keep (`presence/remembered.rs`).
    pub fn remembered(&self) -> Arc<Mutex<Remembered>> {
        Arc::clone(&self.remembered)
    }

    /// Taken across a console's `/ban` or `/unban` applied here and its
    /// step in the shared ban list (`shared_bans.rs`), typed here or passed
    /// on, and let go before it is passed on: a passed-on command checked
    /// against the list and applied in between this server's own apply and
    /// put would leave this server the other way from the list (a review:
    /// two `/ban`s of one prefix typed at once with different ends; each
    /// server held the other's).
    pub fn ban_order(&self) -> BanTurn<'_> {
        BanTurn {
            _held: self.ban_order.lock(),
        }
    }

    /// Runs `f` on the names link, holding it: a claim, release or filing
    /// of this server's clients waits meanwhile, and reaches Redis after
    /// (presence files them all again this way).
    pub fn holding<T>(&self, f: impl FnOnce(&mut Link) -> T) -> T {
        f(&mut self.link.lock())
    }

    /// Claims `name` for local client `client` (a client may claim its own
    /// name again in another case). A name held, before Redis restarted
    /// empty, by a client of a server not yet registered again is in use
    /// ([`Remembered::awaits`]): that server claims it again first.
    ///
    /// # Errors
    /// When Redis cannot be asked (the name is then not claimed).
    pub fn claim(&self, name: &str, client: u64) -> Result<Claim, Failure> {
        let script = Script::new(keys::CLAIM);
        let lower = name.to_lowercase();
        let mut link = self.link.lock();
        let claimed: i64 = link.run_idempotent(|conn| {
            // The epoch of the Redis this connection reaches (read when it
            // was opened): the claim below lands in that one, even before
            // presence has found it new.
            if self.remembered.lock().awaits(conn.epoch(), &lower) {
                return Ok(0);
            }
            redis::cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1)
                .arg(keys::name(&lower))
                .arg(keys::holder(&self.server_id, client, name))
                .arg(keys::holder_prefix(&self.server_id, client))
                .query(conn)
        })?;
        if claimed != 1 {
            return Ok(Claim::InUse);
        }
        // Its own again (a rename back to a name whose release failed):
        // not to be freed by presence. Under the link's lock, so presence
        // frees it either before this claim or not at all.
        self.unfreed
            .lock()
            .retain(|(unfreed, by)| !(*by == client && *unfreed == lower));
        Ok(Claim::Claimed)
    }

    /// Records that local member `name` (client `client`) is in room
    /// `room`, which it entered at `entered` (ms since the epoch: see
    /// [`super::now_ms`]), given as `(room, entered, client)`; `None`: it left.
    /// For `/who` and for presence.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn member(&self, name: &str, room: Option<(&str, u64, u64)>) -> Result<(), Failure> {
        let filed = self.file(name, room);
        if filed.is_err() {
            self.unfiled.store(true, Ordering::Release);
        }
        filed
    }

    /// Whether a filing failed since the last call (and clears it).
    pub fn take_unfiled(&self) -> bool {
        self.unfiled.swap(false, Ordering::AcqRel)
    }

    /// Marks the members as needing filing again.
    pub fn set_unfiled(&self) {
        self.unfiled.store(true, Ordering::Release);
    }

    /// Whether a client was named without Redis since the last call (and
    /// clears it).
    pub fn take_unclaimed(&self) -> bool {
        self.unclaimed.swap(false, Ordering::AcqRel)
    }

    /// Marks the members' names as needing claiming in Redis.
    pub fn set_unclaimed(&self) {
        self.unclaimed.store(true, Ordering::Release);
    }

    /// One filing or removal, as [`Names::member`].
    fn file(&self, name: &str, room: Option<(&str, u64, u64)>) -> Result<(), Failure> {
        let key = keys::members(&self.server_id);
        self.link.lock().run_idempotent(|conn| match room {
            Some((room, entered, client)) => redis::cmd("HSET")
                .arg(&key)
                .arg(name)
                .arg(keys::member_value(room, entered, client))
                .exec(conn),
            None => redis::cmd("HDEL").arg(&key).arg(name).exec(conn),
        })
    }

    /// The next `guest-N` number, never given before by any server of this
    /// Redis, and above `floor`: the highest this server gave, so a counter
    /// that went back cannot give one of its clients' numbers again.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn next_guest(&self, floor: u64) -> Result<u64, Failure> {
        let script = Script::new(keys::NEXT_GUEST);
        self.link.lock().run_idempotent(|conn| {
            redis::cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1)
                .arg(keys::guest())
                .arg(floor)
                .query(conn)
        })
    }

    /// A tag never given before by this Redis, for this server's fallback
    /// guest names (`guest-TAG.N`, see `shared_names`).
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn guest_tag(&self) -> Result<u64, Failure> {
        self.link
            .lock()
            .run(|conn| redis::cmd("INCR").arg(keys::guest_tags()).query(conn))
    }

    /// Who holds `name` (any case), anywhere.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn holder(&self, name: &str) -> Result<Option<Holder>, Failure> {
        let value: Option<String> = self.link.lock().run_idempotent(|conn| {
            redis::cmd("GET")
                .arg(keys::name(&name.to_lowercase()))
                .query(conn)
        })?;
        Ok(value
            .as_deref()
            .and_then(keys::parse_holder)
            .map(|(server, client, name)| Holder {
                server: server.to_string(),
                client,
                name: name.to_string(),
            }))
    }

    /// Every client of every registered server, in the order they entered
    /// their rooms.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn everyone(&self) -> Result<Vec<Listed>, Failure> {
        let mut link = self.link.lock();
        let servers: Vec<String> =
            link.run_idempotent(|conn| redis::cmd("SMEMBERS").arg(keys::servers()).query(conn))?;
        let hashes: Vec<Vec<(String, String)>> = link.run_idempotent(|conn| {
            let mut pipe = redis::pipe();
            for server in &servers {
                pipe.cmd("HGETALL").arg(keys::members(server));
            }
            pipe.query(conn)
        })?;
        let mut all: Vec<Listed> = servers
            .iter()
            .zip(hashes)
            .flat_map(|(server, members)| {
                members.into_iter().map(move |(name, value)| {
                    let (room, entered) = keys::parse_member(&value);
                    Listed {
                        server: server.clone(),
                        name,
                        room: room.to_string(),
                        entered,
                    }
                })
            })
            .collect();
        all.sort_by(|a, b| (a.entered, &a.name).cmp(&(b.entered, &b.name)));
        Ok(all)
    }
}

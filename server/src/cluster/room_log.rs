//! The room log on Redis: the second implementation of
//! [`crate::rooms::log::Log`] (the first is the embedded one).
//!
//! - `append` queues each line of the batch to the [`Writer`] (one stream
//!   entry per line) and answers [`Appended::Later`]: the line reaches the
//!   members, the sender's own server included, when the [`Reader`] reads
//!   it back from the stream. While Redis is unreachable it answers
//!   [`Unreachable`] at once, so the sender gets a `! ` line per line (and
//!   a notice is delivered to this server's members only, by the rooms).
//! - A room gets its first local member ([`Log::watch`]): the history ring
//!   is loaded from the stream's tail (the last `--history` chat lines,
//!   [`tail`], loaded beforehand with no lock held by [`Log::prepare`]) and
//!   the reader reads the stream from right after it. Installed under the
//!   room's lock, before the member is shown the history, so the
//!   history and the first live line neither overlap nor leave a gap. A
//!   reader still reading the room from before may be delivering some of
//!   the entries the tail holds: it picks what is new for the room (past
//!   the feed's floor, which the load raised) under the room's lock too
//!   ([`Feed::fresh`]), so each entry reaches the member once, in its
//!   history or live. Redis away then: no history is loaded (the ring is
//!   what this server had), and the reader reads the stream from the
//!   moment of the watch once Redis is back, so no line the log took
//!   after the member entered is missed (`reader/reading/since.rs`).
//! - Its last local member leaves: the reader stops reading the stream.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use chat_common::room::LOBBY;

use super::bridge::{Bridge, Feed};
use super::link::{Endpoint, Link, IO_TIMEOUT};
use super::names::{Names, Unsent};
use super::reader::Reader;
use super::spelling;
use super::tail::tail;
use super::writer::{Queued, Writer};
use super::Line;
use crate::log;
use crate::rooms::log::{Appended, Batch, Far, Log, Prepared, RoomLog, ServerId, Unreachable};
use crate::rooms::ClientId;

/// The kind of every entry the rooms append (presence adds `lost` and
/// `stopped` leaves).
pub const LINE_KIND: &str = "line";

/// The [`Log`] of one server of a cluster.
pub struct RedisLog {
    /// What this server's rooms and the cluster's threads share.
    bridge: Arc<Bridge>,
    /// The directory: `/who`, `/rooms`, `/msg` and `/kick` across servers.
    names: Arc<Names>,
    /// This server's id as written in Redis.
    server_id: String,
    /// Appends lines (each room's log holds a clone).
    writer: Writer,
    /// Told which rooms to read.
    reader: Reader,
    /// For loading a room's history when it gets its first local member
    /// ([`Log::prepare`], with no lock held).
    link: Mutex<Link>,
    /// `--history`.
    history: usize,
}

impl RedisLog {
    /// The log of the server behind `bridge`.
    pub fn new(
        endpoint: &Endpoint,
        (bridge, names): (Arc<Bridge>, Arc<Names>),
        writer: Writer,
        reader: Reader,
        history: usize,
    ) -> RedisLog {
        RedisLog {
            server_id: bridge.server.to_string(),
            bridge,
            names,
            writer,
            reader,
            link: Mutex::new(endpoint.link("history", IO_TIMEOUT).quick()),
            history,
        }
    }
}

/// A room's history and where its log ends, as [`tail`] read them.
type Tail = (Vec<super::Entry>, super::reader::Position);

impl RedisLog {
    /// Reads room `key`'s tail: its last `--history` chat lines.
    fn load(&self, key: &str) -> Result<Tail, super::link::Failure> {
        tail(&mut self.link.lock(), key, self.history, |e| {
            e.text.starts_with('<')
        })
    }
}

impl Log for RedisLog {
    fn server(&self) -> ServerId {
        self.bridge.server
    }

    fn open(&self, key: &str) -> Box<dyn RoomLog> {
        let feed = self.bridge.open(key);
        Box::new(RedisRoomLog {
            key: key.to_string(),
            feed,
            keep: self.history,
            writer: self.writer.clone(),
            bridge: Arc::clone(&self.bridge),
        })
    }

    fn watch(&self, key: &str, local: bool, prepared: Option<Prepared>) {
        if !local {
            self.bridge.spellings.lock().remove(key);
            self.bridge.local.lock().remove(key);
            self.reader.unwatch(key);
            return;
        }
        self.bridge.local.lock().insert(key.to_string());
        let Some(feed) = self.bridge.feeds.lock().get(key).cloned() else {
            return;
        };
        let loaded = match prepared.and_then(|p| p.loaded.downcast::<Tail>().ok()) {
            // Loaded before the locks were taken, and nothing newer was
            // delivered here since: the reader goes on from its end, so
            // what was appended meanwhile arrives as live lines.
            Some(tail) if !feed.past(&tail.1) => Ok(*tail),
            // Redis known to be away: not asked under the locks (a cut
            // network would hold them for a reply's timeout).
            _ if !self.bridge.is_up() => Err(super::link::Failure::Down),
            // None, or stale (the room had members here meanwhile): load
            // now, under the locks (rare).
            _ => self.load(key),
        };
        match loaded {
            Ok((history, from)) => {
                feed.load(&from, history.into_iter().map(|e| (e.n, Arc::from(e.text))));
                self.reader.watch(key, Some(from));
            }
            Err(e) => {
                // Redis away: the room is read from this moment (on
                // Redis's clock) once it is back; the history is what this
                // server had.
                log!("redis: no history for #{key} ({e:?})");
                self.reader.watch(key, None);
            }
        }
    }

    fn named(&self, key: &str, spelling: &str) {
        // Named so here now: in Redis too, unless it is named there already
        // (Redis away: presence names it at its first beat once back).
        self.writer.spell(key, spelling);
        self.bridge
            .spellings
            .lock()
            .insert(key.to_string(), spelling.to_string());
    }

    fn unlisted(&self, client: ClientId, name: &str) {
        if let Some(value) = self.bridge.filed_as(client) {
            self.writer.unfile(name, value);
        }
    }

    fn peek(&self, key: &str) -> Option<Vec<Arc<str>>> {
        if !self.bridge.is_up() {
            return None;
        }
        let (history, _) = self.load(key).ok()?;
        Some(history.into_iter().map(|e| Arc::from(e.text)).collect())
    }

    fn prepare(&self, key: &str, spelling: &str) -> Option<Prepared> {
        if !self.bridge.is_up() {
            return None;
        }
        let tail = self.load(key).ok()?;
        let spelling = if key == LOBBY {
            None
        } else {
            spelling::held(&mut self.link.lock(), key, spelling).ok()
        };
        Some(Prepared {
            spelling,
            loaded: Box::new(tail),
        })
    }

    fn flush(&self) {
        self.writer.send_queued();
    }

    fn elsewhere(&self, key: &str) -> usize {
        self.bridge.elsewhere(key)
    }

    fn busy_elsewhere(&self) -> Vec<String> {
        self.bridge.busy_elsewhere()
    }

    fn settled(&self, client: ClientId) {
        self.bridge.settled(client);
    }

    fn reachable(&self) -> bool {
        self.bridge.is_up()
    }

    fn who(&self, key: &str) -> Option<Vec<String>> {
        let all = self.names.everyone().ok()?;
        Some(
            all.into_iter()
                .filter(|l| l.room == key)
                .map(|l| l.name)
                .collect(),
        )
    }

    fn everyone(&self) -> Option<Vec<(String, Vec<String>)>> {
        let all = self.names.everyone().ok()?;
        let mut rooms: Vec<(String, Vec<String>)> = vec![(LOBBY.to_string(), Vec::new())];
        for listed in all {
            match rooms.iter_mut().find(|(key, _)| *key == listed.room) {
                Some((_, names)) => names.push(listed.name),
                None => rooms.push((listed.room, vec![listed.name])),
            }
        }
        rooms[1..].sort_by(|a, b| a.0.cmp(&b.0));
        // Each as the cluster spells it (`/rooms` is asked with no lock
        // held; the keys stand if Redis cannot say).
        let keys: Vec<String> = rooms[1..].iter().map(|(key, _)| key.clone()).collect();
        if let Ok(spelled) = spelling::spelled(&mut self.link.lock(), &keys) {
            for ((name, _), spelled) in rooms[1..].iter_mut().zip(spelled) {
                *name = spelled;
            }
        }
        Some(rooms)
    }

    fn whisper(&self, to: &str, line: &str) -> Far {
        let holder = match self.names.holder(to) {
            Ok(Some(holder)) if holder.server != self.server_id => holder,
            Ok(_) => return Far::NoOne,
            Err(_) => return Far::Unreachable,
        };
        match self.names.tell(&holder.server, holder.client, line) {
            Ok(()) => Far::Sent(holder.name),
            Err(Unsent::Unsure) => Far::Unsure,
            Err(Unsent::NotSent(_) | Unsent::Stale) => Far::Unreachable,
        }
    }

    fn announce_elsewhere(&self, line: &str, here: &[String]) -> Result<(), Unreachable> {
        if !self.bridge.is_up() {
            return Err(Unreachable);
        }
        let all = self.names.everyone().map_err(|_| Unreachable)?;
        let mut rooms: Vec<String> = all
            .into_iter()
            .map(|l| l.room)
            .filter(|room| !here.contains(room))
            .collect();
        rooms.sort();
        rooms.dedup();
        let from = Bridge::origin_field(crate::rooms::log::Origin {
            server: self.bridge.server,
            client: None,
        });
        let mut told = Ok(());
        for room in rooms {
            let line = Line {
                room,
                from: from.clone(),
                kind: LINE_KIND.to_string(),
                text: line.to_string(),
                at: Instant::now(),
            };
            if self.writer.append_all(0, std::iter::once(line)) == Queued::Refused {
                told = Err(Unreachable);
            }
        }
        told
    }

    fn kick(&self, name: &str, reason: Option<&str>) -> Far {
        let holder = match self.names.holder(name) {
            Ok(Some(holder)) if holder.server != self.server_id => holder,
            Ok(_) => return Far::NoOne,
            Err(_) => return Far::Unreachable,
        };
        match self.names.kick(&holder.server, &holder.name, reason) {
            Ok(()) => Far::Sent(holder.name),
            Err(Unsent::Unsure) => Far::Unsure,
            Err(Unsent::NotSent(_) | Unsent::Stale) => Far::Unreachable,
        }
    }
}

/// One room's log on Redis.
struct RedisRoomLog {
    /// The room's key.
    key: String,
    /// Its history ring and delivery floor, shared with the bridge.
    feed: Arc<Feed>,
    /// `--history`.
    keep: usize,
    /// Appends its lines.
    writer: Writer,
    /// Whether Redis is up (lines are refused at once while it is not),
    /// and where its members are filed.
    bridge: Arc<Bridge>,
}

impl RoomLog for RedisRoomLog {
    fn append(&mut self, batch: &Batch) -> Result<Appended, Unreachable> {
        // Noted even when refused: a client that `/join`s while Redis is
        // away is in the new room here (its join notice delivered here
        // only), and presence files it there once Redis is back.
        let moved = batch
            .from
            .client
            .and_then(|client| Some((client, self.bridge.entered(client, &self.key)?)));
        if !self.bridge.is_up() {
            return Err(Unreachable);
        }
        // Filed in its new room ahead of its join notice, while it holds
        // its name (the names link files it too, once the rooms hold no
        // lock: `Bridge::settled`).
        if let Some((client, (name, value))) = moved {
            self.writer.file(&name, value, client);
        }
        let from = Bridge::origin_field(batch.from);
        let token = batch.from.client.unwrap_or(0);
        let at = Instant::now();
        let lines = batch.lines.iter().map(|text| Line {
            room: self.key.clone(),
            from: from.clone(),
            kind: LINE_KIND.to_string(),
            text: text.to_string(),
            at,
        });
        match self.writer.append_all(token, lines) {
            Queued::Queued => Ok(Appended::Later),
            Queued::Refused => Err(Unreachable),
        }
    }

    fn delivered(&mut self, batch: &Batch) {
        self.feed.delivered(batch, self.keep);
    }

    fn history(&self, out: &mut Vec<Arc<str>>) {
        self.feed.history(out);
    }
}

impl Drop for RedisRoomLog {
    fn drop(&mut self) {
        let mut feeds = self.bridge.feeds.lock();
        if feeds
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.feed))
        {
            feeds.remove(&self.key);
        }
    }
}

//! One room: its members in order of entering, and its log.
//!
//! Relaying a line = append it to the room's log and push it to the room's
//! members, under this room's lock only: rooms never wait for each other,
//! and each room keeps one total order. A push only moves a pointer into a
//! queue, so nothing under this lock writes to a socket, logs or blocks.
//!
//! A member whose queue is full is marked too slow on the spot (its
//! [`Ticket`] settled, its queue aborted, its reader woken) and skipped from
//! then on; the caller then takes it out through the one removal path,
//! [`super::Rooms::remove`], once this lock is released.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;

use super::fanout::Fanout;
use super::log::{Batch, RoomLog};
use super::removal::cut_off;
use super::ClientId;
use crate::leave::Leave;
use crate::write::{Peer, Pushed, Wake};

/// Whether a client is still in the room, shared by its session, the
/// directory and its room.
#[derive(Debug, Default)]
pub struct Ticket {
    /// Why it was removed; set once, under the lock of the room it is in,
    /// by whoever removes it first. Set means nothing more it sends is
    /// relayed (SPEC: once removed, nothing more reaches anyone).
    fate: OnceLock<Leave>,
    /// A name the rooms gave the client without its asking (a cluster's
    /// name clash), until its session takes it: set, the flag says so
    /// without a lock.
    renamed: Mutex<Option<String>>,
    /// Whether `renamed` holds a name.
    has_renamed: AtomicBool,
}

impl Ticket {
    /// The client's name is `name` now, whoever asked: its session picks
    /// it up before it formats its next line.
    pub(super) fn renamed(&self, name: &str) {
        *self.renamed.lock() = Some(name.to_string());
        self.has_renamed.store(true, Ordering::Release);
    }

    /// The name given since the last call, if any.
    pub fn take_renamed(&self) -> Option<String> {
        // A load first: the common case (nothing) writes nothing.
        if !self.has_renamed.load(Ordering::Acquire)
            || !self.has_renamed.swap(false, Ordering::AcqRel)
        {
            return None;
        }
        self.renamed.lock().take()
    }

    /// Why the client was removed, once it was.
    pub fn fate(&self) -> Option<&Leave> {
        self.fate.get()
    }

    /// Settles the client's fate (the first reason given wins) and returns
    /// it. Called under the room's lock.
    pub(super) fn settle(&self, reason: Leave) -> &Leave {
        self.fate.get_or_init(|| reason)
    }
}

/// One member, as its room sees it.
pub(super) struct Member {
    /// Its number: how delivery recognises the sender to skip.
    pub id: ClientId,
    /// Its name now (renames update it), for `/who`.
    pub name: String,
    /// Its queue and socket.
    pub peer: Arc<Peer>,
    /// Settled when it is removed.
    pub ticket: Arc<Ticket>,
    /// When it entered the room.
    pub since: Instant,
}

/// A room, shared by the directory and its members' sessions.
pub struct Room {
    /// Its name in lower case: the directory's key.
    pub key: String,
    /// Members, name and log: what relaying in this room locks, and
    /// nothing else does.
    pub(super) inner: Mutex<RoomInner>,
}

/// What the room's lock guards.
pub(super) struct RoomInner {
    /// `#name` in the spelling of whoever created it.
    pub name: Arc<str>,
    /// `#name ` (with the space): what the console shows before each line.
    pub label: Arc<str>,
    /// In order of entering (removal keeps the order).
    pub members: Vec<Member>,
    /// Where the room's lines are ordered and its history kept.
    pub log: Box<dyn RoomLog>,
}

impl Room {
    /// An empty room named `#name`.
    pub(super) fn new(name: &str, log: Box<dyn RoomLog>) -> Room {
        Room {
            key: chat_common::room::key(name),
            inner: Mutex::new(RoomInner {
                name: format!("#{name}").into(),
                label: format!("#{name} ").into(),
                members: Vec::new(),
                log,
            }),
        }
    }

    /// `#name`, as shown.
    pub fn name(&self) -> Arc<str> {
        Arc::clone(&self.inner.lock().name)
    }
}

impl RoomInner {
    /// Delivers a batch the log accepted: to every member but its sender,
    /// to the history, the console and the transcript. Members found too
    /// slow are marked and listed in `slow` for removal.
    pub fn deliver(
        &mut self,
        fan: &Fanout,
        server: u64,
        batch: &Batch,
        wake: Wake,
        slow: &mut Vec<ClientId>,
    ) {
        self.deliver_where(fan, server, batch, wake, slow, |_| true);
    }

    /// [`RoomInner::deliver`] to the members `to` picks only.
    pub fn deliver_where(
        &mut self,
        fan: &Fanout,
        server: u64,
        batch: &Batch,
        wake: Wake,
        slow: &mut Vec<ClientId>,
        to: impl Fn(&Member) -> bool,
    ) {
        let skip = (batch.from.server == server)
            .then_some(batch.from.client)
            .flatten();
        for member in &self.members {
            // A member marked too slow and not yet removed has an aborted
            // queue, which drops what is pushed: no need to look at its
            // ticket (one more cache line per member per batch).
            if Some(member.id) == skip || !to(member) {
                continue;
            }
            if fan.push(&member.peer, &batch.lines, wake) == Pushed::TooSlow {
                mark_too_slow(fan, member);
                slow.push(member.id);
            }
        }
        self.log.delivered(batch);
        fan.record(&self.name, &self.label, &batch.lines, wake);
    }

    /// The position of member `id`.
    pub fn position(&self, id: ClientId) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }
}

/// A member's queue is full: it is out from now on, and ends the way every
/// too-slow client does ([`cut_off`]).
fn mark_too_slow(fan: &Fanout, member: &Member) {
    member.ticket.settle(Leave::TooSlow);
    cut_off(&fan.writers, &member.peer);
}

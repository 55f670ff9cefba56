//! Leaving the server: the one removal path and the ways into it (quit,
//! end of stream, error, kick, ban, too slow, shutdown).
//!
//! A removal settles the client's [`Ticket`](super::Ticket) under its
//! room's lock (from then on nothing it sent is relayed), frees its name,
//! ends its queue with the last line its fate calls for, and tells its room
//! (not at shutdown: everyone gets the shutdown notice instead). A leave
//! notice may find more members too slow; they join a work list, not a
//! recursion, so a cascade cannot overflow a small worker stack.

use std::collections::VecDeque;
use std::net::{IpAddr, Shutdown};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chat_common::protocol;

use super::log::{self, Batch};
use super::{ClientId, Directory, Rooms, LEAVE_DRAIN};
use crate::leave::Leave;
use crate::shutdown;
use crate::write::{Peer, Wake, Writers};

impl Rooms {
    /// Disconnects the client named `name` (here or, in a cluster, on
    /// another server) on the operator's word.
    pub fn kick(&self, name: &str, reason: Option<String>) -> Kicked {
        let mut dir = self.lock_dir();
        let Some(id) = dir.held.get(&name.to_ascii_lowercase()).copied() else {
            drop(dir);
            // Maybe someone on another server of a cluster has it (asked
            // with no lock held).
            return match self.log.kick(name, reason.as_deref()) {
                log::Far::Sent(name) => Kicked::PassedOn(name),
                log::Far::NoOne => Kicked::NoOne,
                log::Far::Unreachable => Kicked::CutOff,
                log::Far::Unsure => Kicked::Unsure,
            };
        };
        let held = dir
            .clients
            .get(&id)
            .map_or_else(|| name.to_string(), |c| c.name.clone());
        self.remove_locked(&mut dir, vec![(id, Leave::Kicked(reason))]);
        Kicked::Done(held)
    }

    /// Disconnects every client whose address satisfies `pred` (`/ban`),
    /// through the one removal path: each is told `! disconnected: REASON`
    /// and its room sees it leave. Returns their names.
    pub fn evict_where(&self, pred: impl Fn(IpAddr) -> bool, reason: &Leave) -> Vec<String> {
        let mut dir = self.lock_dir();
        let mut hit: Vec<(ClientId, String)> = dir
            .clients
            .iter()
            .filter(|(_, c)| c.ip.is_some_and(&pred))
            .map(|(&id, c)| (id, c.name.clone()))
            .collect();
        hit.sort_unstable();
        let work = hit.iter().map(|(id, _)| (*id, reason.clone())).collect();
        self.remove_locked(&mut dir, work);
        hit.into_iter().map(|(_, name)| name).collect()
    }

    /// Takes client `id` out: the one removal path (see the module docs).
    /// Does nothing if it is already out. The reason that counts is the
    /// first one given: see [`Ticket::fate`](super::Ticket::fate).
    pub fn remove(&self, id: ClientId, reason: Leave) {
        let mut dir = self.lock_dir();
        self.remove_locked(&mut dir, vec![(id, reason)]);
    }

    /// Starts shutdown: no more joins; every client gets `* server shutting
    /// down` after what is already queued.
    pub fn shutdown(&self) {
        let mut dir = self.lock_dir();
        dir.closing = true;
        let mut ids: Vec<ClientId> = dir.clients.keys().copied().collect();
        ids.sort_unstable();
        self.remove_locked(
            &mut dir,
            ids.into_iter().map(|id| (id, Leave::Shutdown)).collect(),
        );
        // No one takes a name any more: nothing to give back (a cluster
        // freed them all already), and so nothing waits for the names lock
        // (a client still connecting may hold it, waiting for Redis).
        dir.released.clear();
        self.fan.show_plain(&protocol::shutting_down().into());
    }

    /// [`Rooms::remove`] for a work list, with the directory locked: the
    /// leave notices may find more slow members, who join the list (a work
    /// list, not recursion, so a cascade cannot overflow a small stack).
    pub(super) fn remove_all(&self, slow: Vec<ClientId>) {
        if !slow.is_empty() {
            let mut dir = self.lock_dir();
            self.remove_locked(&mut dir, too_slow(slow));
        }
    }

    pub(super) fn remove_locked(&self, dir: &mut Directory, work: Vec<(ClientId, Leave)>) {
        let mut work: VecDeque<(ClientId, Leave)> = work.into();
        while let Some((id, reason)) = work.pop_front() {
            let Some(client) = dir.clients.remove(&id) else {
                continue;
            };
            let room = client.room;
            let mut slow = Vec::new();
            let mut inner = room.inner.lock();
            let fate = client.ticket.settle(reason).clone();
            if fate == Leave::Shutdown {
                // Its name is kept, as when the rooms take everyone out
                // (`Rooms::shutdown`): the stop frees them all, and a
                // cluster's announces every client still listed under
                // this server as leaving, so one unlisted here first
                // would never be seen to leave.
                self.stopped.fetch_add(1, Ordering::Relaxed);
            } else {
                super::free(dir, &client.name, id);
            }
            if let Some(pos) = inner.position(id) {
                inner.members.remove(pos);
            }
            self.end(&client.peer, &fate);
            if !dir.closing && fate != Leave::Shutdown {
                self.log.unlisted(id, &client.name);
                let batch = Batch {
                    from: self.origin(Some(id)),
                    lines: vec![protocol::left(&client.name, &fate.to_string()).into()],
                };
                self.append(&mut inner, &batch, Wake::Later, &mut slow);
            }
            let empty = inner.members.is_empty();
            drop(inner);
            if empty {
                self.emptied(dir, &room);
            }
            work.extend(slow.into_iter().map(|id| (id, Leave::TooSlow)));
        }
    }

    /// Ends a removed client's queue with the last line its fate calls
    /// for: too slow at once (what it did not read is dropped), the others
    /// after what is queued.
    pub(super) fn end(&self, peer: &Arc<Peer>, fate: &Leave) {
        let writers = &self.fan.writers;
        let drain_until = Instant::now() + LEAVE_DRAIN;
        match fate {
            Leave::TooSlow => cut_off(writers, peer),
            Leave::Kicked(_) | Leave::Banned(_) => {
                peer.note_cause(fate.to_string());
                let last = protocol::error(&format!("disconnected: {fate}")).into();
                writers.drain(peer, Some(&last), drain_until);
                let _ = peer.stream.shutdown(Shutdown::Read);
            }
            Leave::Shutdown => {
                peer.note_cause(fate.to_string());
                let deadline = self
                    .shutdown
                    .deadline()
                    .unwrap_or_else(|| Instant::now() + shutdown::GRACE);
                let last = protocol::shutting_down().into();
                writers.drain(peer, Some(&last), deadline);
            }
            _ => writers.drain(peer, None, drain_until),
        }
    }
}

/// What became of a `/kick`.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Kicked {
    /// The client, by this spelling of its name, was disconnected (or was
    /// already leaving).
    Done(String),
    /// The client, by this spelling of its name, is on another server of
    /// the cluster, which was asked to disconnect it (through its inbox).
    PassedOn(String),
    /// No one by that name is connected.
    NoOne,
    /// Someone elsewhere may have it, but the other servers could not be
    /// asked (Redis unreachable): not passed on.
    CutOff,
    /// Passed on to the server holding the name, its reply lost (Redis
    /// stopped answering): it may have been done; it never will be later.
    Unsure,
}

/// The too-slow ending, wherever a client is found too slow (a push under a
/// room's lock, or the removal path): its outbox is aborted (what it did
/// not read is dropped, bar the reason) and its reader woken. Never blocks.
pub(super) fn cut_off(writers: &Writers, peer: &Arc<Peer>) {
    peer.note_cause(Leave::TooSlow.to_string());
    writers.abort(peer, Some(protocol::error("disconnected: too slow").into()));
    let _ = peer.stream.shutdown(Shutdown::Read);
}

/// A work list of members found too slow.
pub(super) fn too_slow(ids: Vec<ClientId>) -> Vec<(ClientId, Leave)> {
    ids.into_iter().map(|id| (id, Leave::TooSlow)).collect()
}

//! Telling this server's clients that it is cut off from the others (SPEC:
//! "each client of an affected server is told once, with a `* ` line, that
//! the room is cut off"): every client in a room when the reader's link
//! goes down, and every client that enters a room (connects, or `/join`s)
//! while it stays down, right after its welcome or its `/join` answer.
//! Each is told once an outage, whichever of the two comes first.
//!
//! Each client is told on its own ([`crate::rooms::Rooms::tell`]), not
//! through its room: who was told is then known exactly, with no race
//! between a room's notice and a client entering it. Both paths hold no
//! lock of the rooms' (the reader's thread; [`Bridge::settled`], once the
//! rooms released theirs). They hold the bridge's `outage` lock across
//! the telling, so the link coming back (which takes it first) never
//! overtakes a notice: `* ... connected ... again` comes after it.
//! Nothing takes `outage` under a lock of the rooms', and nothing a tell
//! runs (the directory, a queue, a too-slow client's removal) takes it.

use std::sync::atomic::Ordering;

use chat_common::protocol;

use super::Bridge;
use crate::rooms::ClientId;

/// What a client of a server cut off from Redis is told, once an outage.
pub const CUT_OFF: &str =
    "this room is cut off from the other servers (Redis unreachable); lines are refused until it is back";

impl Bridge {
    /// The reader's link went down: a new outage, of which every local
    /// client in a room is told now. One that enters a room later is told
    /// by [`Bridge::settled`].
    pub(super) fn cut_off(&self) {
        let number = self.outages.fetch_add(1, Ordering::Relaxed) + 1;
        *self.outage.lock() = Some(number);
        // Listed after the outage began: a client missing here entered its
        // room after this, so its `settled` finds the outage.
        let clients: Vec<ClientId> = self
            .members
            .lock()
            .iter()
            .filter(|(_, w)| w.room.is_some())
            .map(|(&client, _)| client)
            .collect();
        for client in clients {
            self.tell_cut_off(client);
        }
    }

    /// The reader's link is back: the outage is over. Waits for a notice
    /// being told, so none comes after the one saying the link is back.
    pub(super) fn back(&self) {
        *self.outage.lock() = None;
        self.up.store(true, Ordering::Release);
    }

    /// Tells `client` that this server is cut off, if it is and `client`
    /// was not told of this outage yet.
    pub(super) fn tell_cut_off(&self, client: ClientId) {
        let outage = self.outage.lock();
        let Some(number) = *outage else {
            return;
        };
        let first = self
            .members
            .lock()
            .get_mut(&client)
            .is_some_and(|w| std::mem::replace(&mut w.told, number) != number);
        if !first {
            return;
        }
        if let Some(ctx) = self.rooms() {
            ctx.rooms.tell(client, &protocol::notice(CUT_OFF));
        }
        drop(outage);
    }
}

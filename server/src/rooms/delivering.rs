//! Lines into rooms: a client's chat lines ([`Rooms::relay`]), what an
//! asynchronous log read back ([`Rooms::deliver_picked`]), the console's
//! line to every room ([`Rooms::announce`]), and notices, each through
//! the room's log and delivered under the room's lock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chat_common::room::LOBBY;

use super::log::{self, Appended, Batch};
use super::room::RoomInner;
use super::{ClientId, Relayed, Room, Rooms, Ticket};
use crate::write::Wake;

impl Rooms {
    /// Relays `lines` from client `from` in `room`, in order, under that
    /// room's lock only. Empties `lines`. Nothing is relayed once the
    /// client was removed ([`Ticket`]).
    pub fn relay(
        &self,
        room: &Room,
        ticket: &Ticket,
        from: ClientId,
        lines: &mut Vec<String>,
    ) -> Relayed {
        if lines.is_empty() {
            return Relayed::Done;
        }
        let batch = Batch {
            from: self.origin(Some(from)),
            lines: lines.drain(..).map(Arc::from).collect(),
        };
        let mut slow = Vec::new();
        let later = {
            let mut inner = room.inner.lock();
            if ticket.fate().is_some() {
                return Relayed::Gone;
            }
            match inner.log.append(&batch) {
                Ok(Appended::Deliver) => {
                    inner.deliver(&self.fan, self.log.server(), &batch, Wake::Now, &mut slow);
                    false
                }
                Ok(Appended::Later) => true,
                Err(log::Unreachable) => return Relayed::Refused(batch.lines.len()),
            }
        };
        if later {
            self.log.flush();
        }
        self.relayed
            .fetch_add(batch.lines.len() as u64, Ordering::Relaxed);
        self.remove_all(slow);
        Relayed::Done
    }

    /// Delivers `batch` to room `key` as it is, nothing to pick (an
    /// asynchronous log's notice; what its reader read back goes through
    /// [`Rooms::deliver_picked`]). The embedded log never calls it.
    pub fn deliver(&self, key: &str, batch: &Batch) {
        self.deliver_picked(key, || Some(batch.clone()));
    }

    /// Delivers `batch` to the members of room `key` that entered it by
    /// `at`, not to those who came since: a notice the log refused late.
    pub fn deliver_to_members_by(&self, key: &str, batch: &Batch, at: Instant) {
        let Some(room) = self.index.lock().get(key).cloned() else {
            return;
        };
        let mut slow = Vec::new();
        let mut inner = room.inner.lock();
        let server = self.log.server();
        let to = |m: &super::room::Member| m.since <= at;
        inner.deliver_where(&self.fan, server, batch, Wake::Now, &mut slow, to);
        drop(inner);
        self.remove_all(slow);
    }

    /// Delivers to room `key` what `pick` makes of what its log read back
    /// (`None`: nothing), `pick` running under the room's lock: a log that
    /// decides there which of its entries are new for the room decides it
    /// atomically with delivering them and with a member's entering (its
    /// history, loaded under the same lock by [`log::Log::watch`]), so no
    /// entry reaches a member both in its history and live. Like a
    /// [`log::RoomLog`] method, `pick` must not block nor call the rooms.
    pub fn deliver_picked(&self, key: &str, pick: impl FnOnce() -> Option<Batch>) {
        let Some(room) = self.index.lock().get(key).cloned() else {
            return;
        };
        let mut slow = Vec::new();
        let mut inner = room.inner.lock();
        if let Some(batch) = pick() {
            inner.deliver(&self.fan, self.log.server(), &batch, Wake::Now, &mut slow);
        }
        drop(inner);
        self.remove_all(slow);
    }

    /// Sends `line` to every room with members, and `#lobby` (the console
    /// speaking). While the log is cut off (Redis away) the rooms here
    /// still get it, and the answer says the other servers did not
    /// ([`log::Unreachable`]), so the console can tell its operator.
    ///
    /// # Errors
    /// [`log::Unreachable`] when some server other than this one was not
    /// told.
    pub fn announce(&self, line: &str) -> Result<(), log::Unreachable> {
        let rooms: Vec<Arc<Room>> = {
            let dir = self.dir.lock();
            dir.rooms
                .values()
                .filter(|r| r.key == LOBBY || !r.inner.lock().members.is_empty())
                .cloned()
                .collect()
        };
        let here: Vec<String> = rooms.iter().map(|r| r.key.clone()).collect();
        let mut told = self.log.announce_elsewhere(line, &here);
        let line: Arc<str> = line.into();
        for room in rooms {
            let batch = Batch {
                from: self.origin(None),
                lines: vec![Arc::clone(&line)],
            };
            let mut slow = Vec::new();
            let taken = self.offer(&mut room.inner.lock(), &batch, Wake::Now, &mut slow);
            told = told.and(taken);
            self.remove_all(slow);
        }
        told
    }

    /// Appends `batch` (a notice, or the console's line: never a client's
    /// chat line, which [`Rooms::relay`] refuses instead) to the room's log
    /// and delivers it if the log says so. One the log cannot take now
    /// ([`log::Unreachable`]: Redis away) is delivered at once to this
    /// server's members of the room, in place of the log: the other
    /// servers cannot be told (their `/who` catches up once the log is
    /// back), but the room here still hears who came, went or was renamed.
    pub(super) fn append(
        &self,
        inner: &mut RoomInner,
        batch: &Batch,
        wake: Wake,
        slow: &mut Vec<ClientId>,
    ) {
        let _ = self.offer(inner, batch, wake, slow);
    }

    /// [`Rooms::append`], saying whether the log took `batch`
    /// ([`log::Unreachable`]: delivered here only).
    fn offer(
        &self,
        inner: &mut RoomInner,
        batch: &Batch,
        wake: Wake,
        slow: &mut Vec<ClientId>,
    ) -> Result<(), log::Unreachable> {
        let taken = match inner.log.append(batch) {
            Ok(Appended::Later) => return Ok(()),
            Ok(Appended::Deliver) => Ok(()),
            Err(log::Unreachable) => Err(log::Unreachable),
        };
        inner.deliver(&self.fan, self.log.server(), batch, wake, slow);
        taken
    }
}

//! What a room's log keeps on this server ([`Feed`]): how far delivery has
//! gone, and the history ring, each line with its number in the room's
//! log, so that when the log loses lines (Redis restarted empty, or from
//! an older snapshot) the ring loses exactly those too and every server
//! replays the same history (SPEC: "history is the room's, whichever
//! server a client is on").
//!
//! Numbers count in one Redis's log: the feed notes which (its epoch).
//! When the reader finds Redis restarted empty (a new epoch), every feed
//! of another one is emptied, the rooms it no longer reads (no member
//! here, kept for their history) as well as those it reads: otherwise a
//! room kept for its history replayed the lost lines to a member entering
//! while Redis was away again, and its floor, a number of the lost log,
//! hid as many lines of the new one when a member came back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cluster::reader::Position;
use crate::cluster::Entry;
use crate::rooms::log::Batch;

/// What a room's log keeps on this server: the history ring and how far
/// delivery has gone. Shared by the room's [`crate::rooms::log::RoomLog`]
/// (which fills the ring under the room's lock) and the bridge (which
/// delivers, and rewinds both when the log lost lines).
pub struct Feed {
    /// The number of the last entry delivered to the room (or loaded as its
    /// history): an entry at or below it is not delivered again. Raised
    /// under the room's lock only, in the same hold as what it stands for:
    /// a batch's delivery ([`Feed::fresh`], just before; while the batch
    /// is delivered it is its last entry, which is how the ring numbers
    /// the batch's lines) or a history's load ([`Feed::load`]). Changed
    /// with `ring` locked when the epoch changes.
    pub floor: AtomicU64,
    /// The history ring and the epoch its numbers (and the floor) count in.
    ring: Mutex<Ring>,
}

/// The history ring, and whose log numbered it.
#[derive(Default)]
struct Ring {
    /// The epoch of the Redis whose log numbered the lines and the floor;
    /// `None`: none yet (a feed opened before the reader first reached
    /// Redis; its lines, if any, are from a transcript, not a log).
    epoch: Option<String>,
    /// Tails loaded so far ([`Feed::load`]).
    loads: u64,
    /// The last `--history` chat lines, oldest first, each with its number
    /// in the log. A line delivered here only, never in the log (the
    /// console's while cut off), has the number of the entry before it.
    lines: VecDeque<(u64, Arc<str>)>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new(None)
    }
}

impl Feed {
    /// Nothing delivered, no history, numbered in the log of `epoch` (the
    /// Redis the reader reads now; `None` before it first reached one).
    pub fn new(epoch: Option<&str>) -> Feed {
        Feed {
            floor: AtomicU64::new(0),
            ring: Mutex::new(Ring {
                epoch: epoch.map(str::to_string),
                loads: 0,
                lines: VecDeque::new(),
            }),
        }
    }

    /// Whether a tail read up to `end` is to be read again: this room had
    /// lines delivered past it here since, from the same log; or the feed
    /// counts in another log (a tail read just before Redis restarted
    /// empty, the reader already on the new one: its lines and numbers are
    /// of the lost log; or the other way round, and reading it again is
    /// one round trip more).
    pub fn past(&self, end: &Position) -> bool {
        let ring = self.ring.lock();
        match ring.epoch.as_deref() {
            Some(epoch) if epoch == end.epoch => self.floor.load(Ordering::Acquire) > end.n,
            Some(_) => true,
            None => false,
        }
    }

    /// The history as the log's tail holds it (number and text, oldest
    /// first), in place of what the ring held; the tail ends at `end`,
    /// where the floor goes. Called under the room's lock (a member
    /// entering), with a tail not stale ([`Feed::past`]): it ends at or
    /// past every entry delivered here, unless the log went back (Redis
    /// from an older copy, the log expired while idle), and then the
    /// floor goes back with it, or new lines numbered up to it would be
    /// taken for lines delivered already. A feed that counted in another
    /// log (Redis restarted empty before the reader found it) counts in
    /// this one from now on.
    pub fn load(&self, end: &Position, lines: impl IntoIterator<Item = (u64, Arc<str>)>) {
        let mut ring = self.ring.lock();
        ring.loads += 1;
        ring.lines.clear();
        ring.lines.extend(lines);
        if ring.epoch.as_deref() == Some(end.epoch.as_str()) {
            self.floor.store(end.n, Ordering::Release);
        } else {
            self.floor.store(end.n, Ordering::Release);
            ring.epoch = Some(end.epoch.clone());
        }
    }

    /// The entries of `run` (one origin's, read from the log, in its
    /// order) that are new for the room, the floor raised to its last.
    /// Called under the room's lock, in the same hold that delivers them
    /// ([`crate::rooms::Rooms::deliver_picked`]): a member entering, whose
    /// history is loaded under that lock too, gets each entry either in
    /// its history or live, and the ring keeps it once.
    pub fn fresh(&self, run: Vec<Entry>) -> Vec<Entry> {
        let Some(last) = run.last().map(|e| e.n) else {
            return run;
        };
        let before = self.floor.fetch_max(last, Ordering::AcqRel);
        run.into_iter().filter(|e| e.n > before).collect()
    }

    /// `batch` was delivered to the room (called under its lock): its chat
    /// lines join the history, which keeps the last `keep`. Its lines are
    /// the log's entries up to the floor, the last one at the floor.
    pub fn delivered(&self, batch: &Batch, keep: usize) {
        if keep == 0 {
            return;
        }
        let last = self.floor.load(Ordering::Acquire);
        let count = batch.lines.len() as u64;
        let mut ring = self.ring.lock();
        for (i, line) in (0..).zip(&batch.lines) {
            if !line.starts_with('<') {
                continue;
            }
            if ring.lines.len() >= keep {
                ring.lines.pop_front();
            }
            ring.lines
                .push_back((last.saturating_sub(count - 1 - i), Arc::clone(line)));
        }
    }

    /// The history, oldest first, into `out`.
    pub fn history(&self, out: &mut Vec<Arc<str>>) {
        out.extend(
            self.ring
                .lock()
                .lines
                .iter()
                .map(|(_, line)| Arc::clone(line)),
        );
    }

    /// The reader reads the Redis of `epoch` from now on: if the feed
    /// counted in another's log, that log is gone ([`Feed::lost`]), read
    /// here or not. One that counted in none yet counts in this one.
    pub fn reading(&self, epoch: &str) {
        let mut ring = self.ring.lock();
        match ring.epoch.as_deref() {
            Some(e) if e == epoch => {}
            Some(_) => self.clear(&mut ring, epoch),
            None => ring.epoch = Some(epoch.to_string()),
        }
    }

    /// The log lost every line (Redis restarted empty; its log now is that
    /// of `epoch`): so does the history, and the log numbers its entries
    /// from 1 again. A feed that counts in that log already (emptied when
    /// the reader first read it, or loaded from its tail since, by a
    /// member entering the room) keeps what it has.
    pub fn lost(&self, epoch: &str) {
        let mut ring = self.ring.lock();
        if ring.epoch.as_deref() != Some(epoch) {
            self.clear(&mut ring, epoch);
        }
    }

    /// No history, nothing delivered, of the log of `epoch`.
    fn clear(&self, ring: &mut Ring, epoch: &str) {
        ring.lines.clear();
        ring.epoch = Some(epoch.to_string());
        self.floor.store(0, Ordering::Release);
    }

    /// The floor and how many tails were loaded so far ([`Feed::load`]),
    /// if the feed counts in the log of `epoch`.
    pub fn floor_in(&self, epoch: &str) -> Option<(u64, u64)> {
        let ring = self.ring.lock();
        (ring.epoch.as_deref() == Some(epoch))
            .then(|| (self.floor.load(Ordering::Acquire), ring.loads))
    }

    /// A room kept here for its history only was found with its log gone
    /// back to entry `to`, its floor and loads read at `seen` just before
    /// ([`Feed::floor_in`]): as [`Feed::rolled_back`], unless either
    /// changed since (a member entering loaded the log's tail meanwhile,
    /// which set the floor from the log as it is now, new lines included;
    /// the count of loads tells even a tail that ended where the old floor
    /// stood). Returns whether it applied.
    pub fn rolled_back_from(&self, seen: (u64, u64), to: u64) -> bool {
        let mut ring = self.ring.lock();
        let (floor, loads) = seen;
        if ring.loads != loads
            || self
                .floor
                .compare_exchange(floor, to, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        ring.lines.retain(|(n, _)| *n <= to);
        true
    }

    /// The log went back to entry `to` (Redis came back from an older
    /// snapshot): the lines past it leave the history, and the log numbers
    /// its entries from `to + 1` again.
    pub fn rolled_back(&self, to: u64) {
        self.ring.lock().lines.retain(|(n, _)| *n <= to);
        self.floor.store(to, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;

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
mod tests {
    use super::*;
    use crate::rooms::log::Origin;

    /// Delivers `lines` as one batch read from the log, its last entry
    /// numbered `last`.
    fn deliver(feed: &Feed, last: u64, lines: &[&str]) {
        feed.floor.fetch_max(last, Ordering::AcqRel);
        let batch = Batch {
            from: Origin {
                server: 1,
                client: Some(1),
            },
            lines: lines.iter().map(|l| Arc::from(*l)).collect(),
        };
        feed.delivered(&batch, 3);
    }

    fn history(feed: &Feed) -> Vec<String> {
        let mut out = Vec::new();
        feed.history(&mut out);
        out.iter().map(|l| l.to_string()).collect()
    }

    /// Each chat line is numbered as in the log, a batch's lines counting
    /// back from its last; a rollback drops exactly those past its point,
    /// and the ring keeps its bound.
    #[test]
    fn a_rollback_drops_exactly_the_lines_past_it() {
        let feed = Feed::new(Some("e1"));
        deliver(&feed, 2, &["* a joined", "<a> 2"]);
        deliver(&feed, 5, &["<a> 3", "<a> 4", "<a> 5"]);
        assert_eq!(history(&feed), ["<a> 3", "<a> 4", "<a> 5"]);
        feed.rolled_back(3);
        assert_eq!(history(&feed), ["<a> 3"]);
        assert_eq!(feed.floor.load(Ordering::Acquire), 3);
        deliver(&feed, 4, &["<a> 4 again"]);
        assert_eq!(history(&feed), ["<a> 3", "<a> 4 again"]);
    }

    /// The log lost: no history, numbers from 1 again; a tail loaded
    /// replaces what the ring held.
    #[test]
    fn a_lost_log_leaves_no_history() {
        let feed = Feed::new(Some("e1"));
        deliver(&feed, 7, &["<a> 7"]);
        feed.lost("e2");
        assert!(history(&feed).is_empty());
        assert_eq!(feed.floor.load(Ordering::Acquire), 0);
        feed.load(&end("e2", 9), [(9, Arc::from("<b> 9"))]);
        feed.rolled_back(8);
        assert!(history(&feed).is_empty());
    }

    /// An entry of `from`, numbered `n`, saying `text`.
    fn entry(n: u64, text: &str) -> Entry {
        Entry {
            id: format!("{n}-0"),
            n,
            uid: "x".into(),
            from: "1:9".into(),
            kind: "line".into(),
            text: text.into(),
        }
    }

    /// A run read from the log, part of it loaded as a member's history
    /// meanwhile: only the rest is new, and the floor stands at the run's
    /// end; a run loaded whole is not new at all.
    #[test]
    fn a_run_yields_only_what_the_history_loaded_does_not_hold() {
        let feed = Feed::new(Some("e1"));
        feed.load(&end("e1", 4), [(4, Arc::from("<a> 4"))]);
        let fresh = feed.fresh((3..=6).map(|n| entry(n, &format!("<a> {n}"))).collect());
        let texts: Vec<&str> = fresh.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["<a> 5", "<a> 6"]);
        assert_eq!(feed.floor.load(Ordering::Acquire), 6);
        assert!(feed.fresh(vec![entry(6, "<a> 6")]).is_empty());
        assert_eq!(feed.floor.load(Ordering::Acquire), 6);
    }

    /// Where a tail read from the log of `epoch` ends.
    fn end(epoch: &str, n: u64) -> Position {
        Position {
            id: format!("{n}-0"),
            n,
            epoch: epoch.into(),
        }
    }

    /// A new Redis read from now on empties a feed of another one's log,
    /// history and floor, whether its room was read or only kept; keeps one
    /// of the same; and a feed of no log yet just counts in it.
    #[test]
    fn a_feed_of_another_redis_is_emptied_when_the_reader_reads_a_new_one() {
        let kept = Feed::new(Some("e1"));
        deliver(&kept, 7, &["<a> 7"]);
        kept.reading("e1");
        assert_eq!(history(&kept), ["<a> 7"]);
        kept.reading("e2");
        assert!(history(&kept).is_empty());
        assert_eq!(kept.floor.load(Ordering::Acquire), 0);

        let seeded = Feed::new(None);
        deliver(&seeded, 0, &["<a> seeded"]);
        seeded.reading("e1");
        assert_eq!(history(&seeded), ["<a> seeded"]);
        seeded.reading("e2");
        assert!(history(&seeded).is_empty());
    }

    /// A tail of the same log that ends below the floor is read again
    /// (lines were delivered past it here since); loaded, it sets the
    /// floor (the log went back). A tail of another log (Redis restarted
    /// empty, not yet found by the reader) sets it too, and the feed
    /// counts in that log from then on.
    #[test]
    fn a_tail_of_another_log_sets_the_floor() {
        let feed = Feed::new(Some("e1"));
        deliver(&feed, 7, &["<a> 7"]);
        assert!(feed.past(&end("e1", 5)));
        assert!(!feed.past(&end("e1", 7)));
        assert!(feed.past(&end("e2", 5)), "read again");
        feed.load(&end("e1", 5), [(5, Arc::from("<a> 5"))]);
        assert_eq!(feed.floor.load(Ordering::Acquire), 5);
        feed.load(&end("e2", 2), [(2, Arc::from("<b> 2"))]);
        assert_eq!(feed.floor.load(Ordering::Acquire), 2);
        assert_eq!(history(&feed), ["<b> 2"]);
        feed.reading("e2");
        assert_eq!(history(&feed), ["<b> 2"]);
    }

    /// Defect (review, a code path): a tail read just before Redis
    /// restarted empty, the reader already on the new Redis, was taken
    /// (its epoch differed from the feed's, which the staleness check did
    /// not compare): the ring got the lost log's lines and the floor its
    /// numbers, which hid as many lines of the new log. Now it is read
    /// again.
    #[test]
    fn a_tail_of_a_lost_log_is_read_again() {
        let feed = Feed::new(Some("e1"));
        deliver(&feed, 7, &["<a> 7"]);
        feed.reading("e2");
        assert!(feed.past(&end("e1", 9)));
        assert!(!feed.past(&end("e2", 0)));
    }

    /// Defect (review, a code path): the reader's "log lost" for a room
    /// whose history a member entering had loaded from the new log already
    /// emptied it again, and its floor: that server's history of the room
    /// then differed from the others'. Now a feed of the new log keeps it.
    #[test]
    fn a_history_loaded_from_the_new_log_outlives_the_lost_notice() {
        let feed = Feed::new(Some("e1"));
        deliver(&feed, 7, &["<a> 7"]);
        feed.reading("e2");
        feed.load(&end("e2", 3), [(3, Arc::from("<b> 3"))]);
        feed.lost("e2");
        assert_eq!(history(&feed), ["<b> 3"]);
        assert_eq!(feed.floor.load(Ordering::Acquire), 3);
    }

    /// Defect (review): a tail loaded below the floor, by a member
    /// entering a room whose log went back (Redis from an older copy, or
    /// the log expired idle), kept the old floor: the new lines numbered
    /// up to it were taken for lines delivered already. Now the floor goes
    /// to the tail's end.
    #[test]
    fn a_tail_below_the_floor_sets_it() {
        let feed = Feed::new(Some("e1"));
        deliver(&feed, 10, &["<a> 10"]);
        feed.load(&end("e1", 7), [(7, Arc::from("<b> 7"))]);
        assert_eq!(feed.floor.load(Ordering::Acquire), 7);
    }

    /// Defect (review, an interleaving): the reader found a kept room's
    /// log gone back (floor 10, log at 5), a member entering meanwhile
    /// loaded the log as it is now (new lines 6 and 7), and the reader's
    /// rollback to 5 then dropped 6 and 7 from this server's history. Now
    /// a rollback read before the floor moved is not applied.
    #[test]
    fn a_kept_rooms_rollback_read_before_a_member_entered_is_skipped() {
        let feed = Feed::new(Some("e1"));
        deliver(&feed, 10, &["<a> 10"]);
        let seen = feed.floor_in("e1").unwrap();
        assert_eq!(seen.0, 10);
        feed.load(
            &end("e1", 7),
            [(6, Arc::from("<b> 6")), (7, Arc::from("<b> 7"))],
        );
        assert!(!feed.rolled_back_from(seen, 5));
        assert_eq!(history(&feed), ["<b> 6", "<b> 7"]);
        assert_eq!(feed.floor.load(Ordering::Acquire), 7);
        // Even when the tail loaded ends where the old floor stood.
        let seen = feed.floor_in("e1").unwrap();
        feed.load(&end("e1", 7), [(7, Arc::from("<c> 7"))]);
        assert!(!feed.rolled_back_from(seen, 5));
        assert_eq!(history(&feed), ["<c> 7"]);
        let seen = feed.floor_in("e1").unwrap();
        assert!(feed.rolled_back_from(seen, 6));
        assert!(history(&feed).is_empty());
        assert_eq!(feed.floor.load(Ordering::Acquire), 6);
    }
}

//! What a room's log keeps on this server ([`Feed`]): how far delivery has
//! gone, and the history ring, each line with its number in the room's
//! log, so that when the log loses lines (Redis restarted empty, or from
//! an older snapshot) the ring loses exactly those too and every server
//! replays the same history (SPEC: "history is the room's, whichever
//! server a client is on").

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::rooms::log::Batch;

/// What a room's log keeps on this server: the history ring and how far
/// delivery has gone. Shared by the room's [`crate::rooms::log::RoomLog`]
/// (which fills the ring under the room's lock) and the bridge (which
/// delivers, and rewinds both when the log lost lines).
pub struct Feed {
    /// The number of the last entry delivered to the room (or loaded as its
    /// history): an entry at or below it is not delivered again. While a
    /// batch read from the log is delivered, it is that batch's last entry
    /// ([`super::Bridge`]'s `deliver` raises it just before), which is how
    /// the ring numbers the batch's lines.
    pub floor: AtomicU64,
    /// The last `--history` chat lines, oldest first, each with its number
    /// in the log. A line delivered here only, never in the log (the
    /// console's while cut off), has the number of the entry before it.
    ring: Mutex<VecDeque<(u64, Arc<str>)>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    /// Nothing delivered, no history.
    pub fn new() -> Feed {
        Feed {
            floor: AtomicU64::new(0),
            ring: Mutex::new(VecDeque::new()),
        }
    }

    /// The history as the log's tail holds it (number and text, oldest
    /// first), in place of what the ring held.
    pub fn load(&self, lines: impl IntoIterator<Item = (u64, Arc<str>)>) {
        let mut ring = self.ring.lock();
        ring.clear();
        ring.extend(lines);
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
            if ring.len() >= keep {
                ring.pop_front();
            }
            ring.push_back((last.saturating_sub(count - 1 - i), Arc::clone(line)));
        }
    }

    /// The history, oldest first, into `out`.
    pub fn history(&self, out: &mut Vec<Arc<str>>) {
        out.extend(self.ring.lock().iter().map(|(_, line)| Arc::clone(line)));
    }

    /// The log lost every line (Redis restarted empty): so does the
    /// history, and the log numbers its entries from 1 again.
    pub fn lost(&self) {
        self.ring.lock().clear();
        self.floor.store(0, Ordering::Release);
    }

    /// The log went back to entry `to` (Redis came back from an older
    /// snapshot): the lines past it leave the history, and the log numbers
    /// its entries from `to + 1` again.
    pub fn rolled_back(&self, to: u64) {
        self.ring.lock().retain(|(n, _)| *n <= to);
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
        let feed = Feed::new();
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
        let feed = Feed::new();
        deliver(&feed, 7, &["<a> 7"]);
        feed.lost();
        assert!(history(&feed).is_empty());
        assert_eq!(feed.floor.load(Ordering::Acquire), 0);
        feed.load([(9, Arc::from("<b> 9"))]);
        feed.rolled_back(8);
        assert!(history(&feed).is_empty());
    }
}

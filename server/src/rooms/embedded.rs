//! The default room log: in-process, ordered by the room's lock.
//!
//! With one server there is nothing to order but the room's own lock, so
//! an append is accepted at once and delivered by the caller under that
//! lock ([`Appended::Deliver`]). History is a ring of the last `--history`
//! chat lines (lines starting with `<`), shared `Arc<str>`s that are also in
//! the members' queues: keeping them costs a pointer each, and the ring
//! never allocates once full.

use std::collections::VecDeque;
use std::sync::Arc;

use super::log::{Appended, Batch, Log, Prepared, RoomLog, ServerId, Unreachable};

/// The in-process [`Log`].
pub struct Embedded {
    /// `--history`: chat lines kept per room.
    history: usize,
}

impl Embedded {
    /// Logs that keep the last `history` chat lines of each room.
    pub fn new(history: usize) -> Embedded {
        Embedded { history }
    }
}

impl Log for Embedded {
    fn server(&self) -> ServerId {
        0
    }

    fn open(&self, _key: &str) -> Box<dyn RoomLog> {
        Box::new(Ring {
            lines: VecDeque::new(),
            keep: self.history,
        })
    }

    fn watch(&self, _key: &str, _local: bool, _prepared: Option<Prepared>) {}
}

/// One room's history ring.
struct Ring {
    /// The last chat lines delivered, oldest first.
    lines: VecDeque<Arc<str>>,
    /// At most this many lines.
    keep: usize,
}

impl RoomLog for Ring {
    fn append(&mut self, _batch: &Batch) -> Result<Appended, Unreachable> {
        Ok(Appended::Deliver)
    }

    fn delivered(&mut self, batch: &Batch) {
        if self.keep == 0 {
            return;
        }
        for line in batch.lines.iter().filter(|line| line.starts_with('<')) {
            if self.lines.len() == self.keep {
                self.lines.pop_front();
            }
            self.lines.push_back(Arc::clone(line));
        }
    }

    fn history(&self, out: &mut Vec<Arc<str>>) {
        out.extend(self.lines.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::log::Origin;

    fn batch(lines: &[&str]) -> Batch {
        Batch {
            from: Origin {
                server: 0,
                client: None,
            },
            lines: lines.iter().map(|l| Arc::from(*l)).collect(),
        }
    }

    /// The ring keeps the last N chat lines and no notices.
    #[test]
    fn keeps_last_chat_lines() {
        let mut ring = Embedded::new(2).open("lobby");
        ring.delivered(&batch(&["<a> 1\n", "* a joined\n", "<a> 2\n", "<b> 3\n"]));
        let mut out = Vec::new();
        ring.history(&mut out);
        let out: Vec<&str> = out.iter().map(|l| &**l).collect();
        assert_eq!(out, ["<a> 2\n", "<b> 3\n"]);
    }

    /// `--history 0` keeps nothing.
    #[test]
    fn zero_keeps_nothing() {
        let mut ring = Embedded::new(0).open("lobby");
        ring.delivered(&batch(&["<a> 1\n"]));
        let mut out = Vec::new();
        ring.history(&mut out);
        assert!(out.is_empty());
    }
}

//! The console's view of the rooms: one more queue, filled by each room
//! under its lock in the same order as its members', drained by the
//! console's display thread (`console::spawn_display`) instead of a socket.
//!
//! So no room writes to stdout under its lock, and a stdout
//! nobody reads (a full pipe) costs the room nothing: the display just loses
//! lines once its queue is full.

use std::sync::Arc;
use std::time::Instant;

use super::queue::{After, Queue, Taken};
use super::quiet::{self, Wake};
use super::Writers;

/// What [`Display::wait`] put in the batch.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// Lines to show (maybe none); more will come.
    More,
    /// The display was closed: show these and stop.
    Last,
}

/// A handle on the display's queue; cheap to clone.
#[derive(Clone)]
pub struct Display {
    /// The lines waiting to be shown: the display thread drains it.
    queue: Arc<Queue>,
    /// For the notice thread, which wakes the display for quiet lines.
    writers: Writers,
}

impl Display {
    pub(super) fn new(queue: Arc<Queue>, writers: Writers) -> Display {
        Display { queue, writers }
    }

    /// Queues a public line for stdout, now or with the next quiet wake-up.
    /// A display that cannot keep up loses lines rather than slowing the
    /// room.
    pub fn show(&self, line: &Arc<str>, wake: Wake) {
        match wake {
            // A thread-owned queue is notified, never scheduled.
            Wake::Now => {
                let _ = self.queue.push_all(std::slice::from_ref(line));
            }
            Wake::Later => quiet::show(self.writers.shared(), &self.queue, line),
        }
    }

    /// Queues pieces of one line for stdout now, together or not at all
    /// (the rooms show a line after its room's label without formatting a
    /// new string per line). A display that cannot keep up loses them
    /// rather than slowing the room.
    pub fn show_now(&self, pieces: &[Arc<str>]) {
        let _ = self.queue.push_all(pieces);
    }

    /// For the display thread: waits for lines and moves them into `batch`.
    pub fn wait(&self, batch: &mut Vec<Arc<str>>) -> Batch {
        match self.queue.take_wait(batch, None) {
            Taken::Batch(After::Close) => Batch::Last,
            Taken::Batch(After::More) | Taken::Idle => Batch::More,
        }
    }

    /// Closes the display at shutdown: what is queued still goes out, until
    /// `deadline`.
    pub fn close(&self, deadline: Instant) {
        let _ = self.queue.drain(None, deadline);
    }
}

//! Where a delivered line goes: the members' queues (through the write
//! side), the console's display, and the transcript.
//!
//! Everything here is called under a room's lock and never blocks: a push
//! only moves a pointer into a queue, the display is a queue that drops
//! lines when full, the transcript a bounded channel that counts what it
//! drops.

use std::sync::Arc;

use crate::transcript::Transcript;
use crate::write::{Display, Peer, Pushed, Wake, Writers};

/// The sinks shared by every room.
pub struct Fanout {
    /// Who writes the lines pushed into the members' queues.
    pub writers: Writers,
    /// The server console's view of the rooms (stdout), unless `--quiet`.
    pub display: Option<Display>,
    /// `--transcript`, if given.
    pub transcript: Option<Transcript>,
}

impl Fanout {
    /// Sinks for the rooms.
    pub fn new(
        writers: Writers,
        display: Option<Display>,
        transcript: Option<Transcript>,
    ) -> Fanout {
        Fanout {
            writers,
            display,
            transcript,
        }
    }

    /// Pushes `lines` to one member, waking its writer now or later.
    pub fn push(&self, peer: &Arc<Peer>, lines: &[Arc<str>], wake: Wake) -> Pushed {
        self.writers.push_all(peer, lines, wake)
    }

    /// Shows the lines of room `room` (`#name`) on the console, each after
    /// the room's `label` (`#name `), and writes them to the transcript.
    /// A chat line costs the display no new string: the label and the line
    /// are queued side by side. Notices, which may wait for a quiet
    /// wake-up, are formatted whole.
    pub fn record(&self, room: &Arc<str>, label: &Arc<str>, lines: &[Arc<str>], wake: Wake) {
        if let Some(display) = &self.display {
            for line in lines {
                match wake {
                    Wake::Now => display.show_now(&[Arc::clone(label), Arc::clone(line)]),
                    Wake::Later => display.show(&format!("{label}{line}").into(), wake),
                }
            }
        }
        if let Some(transcript) = &self.transcript {
            transcript.record(room, lines);
        }
    }

    /// Shows a line that belongs to no room (the shutdown notice).
    pub fn show_plain(&self, line: &Arc<str>) {
        if let Some(display) = &self.display {
            display.show(line, Wake::Now);
        }
    }
}

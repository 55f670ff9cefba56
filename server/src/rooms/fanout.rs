//! Where a delivered line goes besides the members' queues: the console's
//! display, the transcript, and the quiet-notice wake-ups.
//!
//! Everything here is called under a room's lock and never blocks: the
//! display is an outbox that drops lines when full, the transcript a
//! bounded channel that counts what it drops, a quiet wake-up a token in a
//! channel of one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::outbox::{Full, Outbox};
use crate::transcript::Transcript;
use crate::writer::{Peer, Writers};

/// When a pushed line's writer is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// At once: chat lines, which must not wait.
    Now,
    /// At the next quiet wake-up: join and leave notices. In a storm of
    /// joins every client would otherwise be woken (one context switch and
    /// one `write`) once per join: n joins, n * n wake-ups.
    Later,
}

/// The sinks shared by every room.
pub struct Fanout {
    /// Who writes the lines pushed into the members' outboxes.
    pub writers: Writers,
    /// The server console's view of the rooms (stdout), unless `--quiet`.
    pub display: Option<Arc<Outbox>>,
    /// `--transcript`, if given.
    pub transcript: Option<Transcript>,
    /// Some outbox holds quietly pushed notices: see [`Wake::Later`].
    quiet_pending: AtomicBool,
    /// Holds a token when `quiet_pending` went up, or at shutdown: what the
    /// notice thread blocks on, so an idle server never wakes it.
    quiet_ready: (Sender<()>, Receiver<()>),
}

impl Fanout {
    /// Sinks for the rooms.
    pub fn new(
        writers: Writers,
        display: Option<Arc<Outbox>>,
        transcript: Option<Transcript>,
    ) -> Fanout {
        Fanout {
            writers,
            display,
            transcript,
            quiet_pending: AtomicBool::new(false),
            quiet_ready: crossbeam_channel::bounded(1),
        }
    }

    /// Pushes `lines` to one member, waking its writer now or later.
    pub fn push(&self, peer: &Arc<Peer>, lines: &[Arc<str>], wake: Wake) -> Result<(), Full> {
        match wake {
            Wake::Now => self.writers.push_all(peer, lines),
            Wake::Later => {
                for line in lines {
                    if peer.outbox.push_quiet(line)? {
                        self.writers.signal(peer);
                    }
                }
                self.note_quiet();
                Ok(())
            }
        }
    }

    /// Shows the lines of room `room` (`#name`) on the console and writes
    /// them to the transcript.
    pub fn record(&self, room: &Arc<str>, lines: &[Arc<str>], wake: Wake) {
        if let Some(display) = &self.display {
            for line in lines {
                self.show(display, format!("{room} {line}").into(), wake);
            }
        }
        if let Some(transcript) = &self.transcript {
            transcript.record(room, lines);
        }
    }

    /// Shows a line that belongs to no room (the shutdown notice).
    pub fn show_plain(&self, line: &Arc<str>) {
        if let Some(display) = &self.display {
            self.show(display, Arc::clone(line), Wake::Now);
        }
    }

    /// A display that cannot keep up loses lines rather than slowing the
    /// room.
    fn show(&self, display: &Outbox, line: Arc<str>, wake: Wake) {
        let _ = match wake {
            Wake::Now => display.push(&line).map(drop),
            Wake::Later => display.push_quiet(&line).map(|half_full| {
                if half_full {
                    display.signal();
                }
            }),
        };
    }

    /// Some outbox got a quiet notice: make sure the notice thread wakes.
    fn note_quiet(&self) {
        if !self.quiet_pending.swap(true, Ordering::AcqRel) {
            // Full means a token already waits: the thread will come.
            let _ = self.quiet_ready.0.try_send(());
        }
    }

    /// Wakes the notice thread for good (shutdown).
    pub fn wake_notice_thread(&self) {
        let _ = self.quiet_ready.0.try_send(());
    }

    /// Blocks until quiet notices wait (or the server stops): the notice
    /// thread's idle state.
    pub fn wait_quiet(&self) {
        let _ = self.quiet_ready.1.recv();
    }

    /// Takes the pending flag: `true` if quiet notices wait to be woken.
    pub fn take_quiet(&self) -> bool {
        self.quiet_pending.swap(false, Ordering::AcqRel)
    }

    /// Wakes the display's writer for its quiet lines.
    pub fn signal_display(&self) {
        if let Some(display) = &self.display {
            display.signal();
        }
    }
}

/// How long join and leave notices may wait for a wake-up: short in a small
/// room (10 ms), longer in a big one (20 us per client, at most 250 ms), so
/// waking everyone never costs more than about 50,000 wake-ups a second.
pub fn wake_interval(online: usize) -> Duration {
    let scaled = Duration::from_micros(20).saturating_mul(online.try_into().unwrap_or(u32::MAX));
    scaled.clamp(Duration::from_millis(10), Duration::from_millis(250))
}

//! The write side: each client's queue of outgoing lines, and whoever
//! drains it.
//!
//! The rooms push lines through [`Writers`] and learn what became of them
//! ([`Pushed`]); everything else is private here:
//!
//! - `peer.rs`: [`Peer`], a client as the write side sees it (its queue, its
//!   socket, why it is leaving).
//! - `queue.rs`: the bounded queue and its state machine: who drains it now
//!   (nobody, a flusher, a thread of its own), how it ends, how full is full.
//! - `flusher.rs`: [`Writers`] and the flusher threads, which send a
//!   client's batch in one gathering `sendmsg` without ever blocking.
//! - `slow.rs`: a thread of its own for a client whose socket is full.
//! - `quiet.rs`: join and leave notices, pushed without a wake-up and sent
//!   in bulk by the notice thread.
//! - `display.rs`: the console's stdout, one more queue.
//! - `socket.rs`: the sends themselves.
//!
//! # Locks
//!
//! The order of every lock of the relay, the rooms' and these, is stated
//! once, in [the rooms' lock order](crate::rooms#lock-order-the-one-place-it-is-written):
//! the directory, then one room, then a client's queue. What follows is
//! the write side's part of it, stated here only (the files of `write/`
//! link here):
//!
//! - A queue's lock (`Queue::state`) is taken by every push, drain and
//!   abort, under a room's lock or the directory's (the rooms then hold
//!   at most one room's): they come first, the queue last. Nothing in
//!   `write/` takes a room's lock or the directory's, so nothing takes them
//!   the other way.
//! - The writers (flushers, a slow client's thread, the display thread)
//!   take a queue's lock alone, briefly, to take a batch or look up, and
//!   never hold it across a write.
//! - The notice list's lock (`quiet::Notices`) nests in nothing of ours: a
//!   quiet push lets go of the queue before it lists the queue (the
//!   rooms' locks may be held), and the notice thread takes the list,
//!   lets go, then takes each queue.
//! - A peer's cause, the list of slow clients' threads and the thread
//!   handles are leaves: nothing else of `write/` is held while they are
//!   (a cause may be noted under a room's lock).
//! - Handing a client to the flushers is a send on an unbounded channel,
//!   after the queue's lock is let go: it never blocks.

mod display;
mod flusher;
mod peer;
mod queue;
mod quiet;
mod slow;
mod socket;

pub use display::{Batch, Display};
pub use flusher::{flushers_for, Pushed, Writers};
pub use peer::Peer;
pub use queue::{Limits, LAG_ALLOWANCE};
pub use quiet::Wake;
pub use socket::{send_aside, write_polling, WRITE_POLL};

/// Stack of a write-side thread (flusher, slow client, notices): it only
/// moves bytes.
pub const WRITER_STACK: usize = 64 * 1024;

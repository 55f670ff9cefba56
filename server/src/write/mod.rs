//! The write side: each client's queue of outgoing lines, and whoever
//! drains it.
//!
//! The registry pushes lines through [`Writers`] and learns what became of
//! them ([`Pushed`]); everything else is private here:
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
//! Lock order: registry, then a queue, then the notice list. Nothing here
//! holds a lock across a write.

mod display;
mod flusher;
mod peer;
mod queue;
mod quiet;
mod slow;
mod socket;

pub use display::{Batch, Display};
pub use flusher::{flushers_for, Pushed, Writers, TURN};
pub use peer::Peer;
pub use queue::{Limits, BATCH_BYTES, BATCH_LINES, LAG_ALLOWANCE};
pub use quiet::{wake_interval, Wake, QUIET_LINES};
pub use slow::THREAD_IDLE;
pub use socket::{send_aside, write_polling, WRITE_POLL};

/// Stack of a write-side thread (flusher, slow client, notices): it only
/// moves bytes.
pub const WRITER_STACK: usize = 64 * 1024;

//! What the rooms answer a session: what became of its lines, its
//! `/nick`, its `/msg`, its `/join`, and what entering gives it.

use std::sync::Arc;

use super::{Room, Ticket};
use crate::write::Peer;

/// Shutdown has begun: no one enters any more.
#[derive(Debug, PartialEq, Eq)]
pub struct Closing;

/// A client that just connected, in `#lobby`.
pub struct Entered {
    /// Its queue and socket.
    pub peer: Arc<Peer>,
    /// `guest-N`.
    pub name: String,
    /// Settled when it is removed.
    pub ticket: Arc<Ticket>,
    /// `#lobby`.
    pub room: Arc<Room>,
}

/// A room's name as shown and its members in order of entering.
pub type Who = (Arc<str>, Vec<String>);

/// What became of a client's lines.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    /// Accepted by the room's log.
    Done,
    /// The client was removed meanwhile: nothing was relayed.
    Gone,
    /// The log refused them (unreachable): the sender gets one `! ` line
    /// for each of this many lines.
    Refused(usize),
}

/// What became of a `/nick`.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Renamed {
    /// Renamed; the old name.
    Done(String),
    /// Someone connected already has that name (any case).
    Taken,
    /// Whether someone has it cannot be known now (a cluster cut off from
    /// Redis): not renamed.
    Unknown,
    /// The client was removed meanwhile.
    Gone,
}

/// What became of a `/msg`.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Whisper {
    /// Queued for the recipient (its name as registered).
    Delivered(String),
    /// No one by that name is connected.
    NoOne,
    /// The recipient's queue was full: it was dropped as too slow, and the
    /// message with it.
    Dropped(String),
    /// The sender was removed meanwhile.
    Gone,
    /// The log is cut off (Redis unreachable, known before or found on
    /// the way): refused, like a chat line; nothing was sent.
    CutOff,
    /// Handed to the recipient's server, the reply lost (Redis stopped
    /// answering): it may have arrived, and never will later.
    Unsure,
}

/// What became of a `/join`.
#[must_use]
pub enum Moved {
    /// In the new room now.
    To(Arc<Room>),
    /// Already in that room (its name as shown).
    Already(Arc<str>),
    /// `--max-rooms` rooms have members already.
    Full(usize),
    /// The client was removed meanwhile.
    Gone,
}

//! Why a client left the room, in the words the others see:
//! `* NAME left (REASON)`, and `! disconnected: REASON` to the client itself
//! when the server ends it.

use std::fmt;

/// Why a client left; `Display` is the reason shown to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leave {
    /// `/quit [REASON]` or `EXIT`.
    Quit(Option<String>),
    /// The client closed its side.
    Closed,
    /// The connection failed (reset, timeout).
    Error(String),
    /// Its queue filled up: it was not reading.
    TooSlow,
    /// The server operator's `/kick`.
    Kicked(Option<String>),
    /// The server operator's `/ban` (of its name or its address).
    Banned(Option<String>),
    /// The server is stopping.
    Shutdown,
    /// The session failed inside the server (a bug): reported, not hidden.
    Internal,
}

impl fmt::Display for Leave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leave::Quit(None) => f.write_str("quit"),
            Leave::Quit(Some(reason)) => write!(f, "quit: {reason}"),
            Leave::Closed => f.write_str("connection closed"),
            Leave::Error(e) => f.write_str(e),
            Leave::TooSlow => f.write_str("too slow"),
            Leave::Kicked(None) => f.write_str("kicked"),
            Leave::Kicked(Some(reason)) => write!(f, "kicked: {reason}"),
            Leave::Banned(None) => f.write_str("banned"),
            Leave::Banned(Some(reason)) => write!(f, "banned: {reason}"),
            Leave::Shutdown => f.write_str("server shutting down"),
            Leave::Internal => f.write_str("internal error"),
        }
    }
}

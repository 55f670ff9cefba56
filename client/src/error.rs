//! The one line a user sees when the session fails, and plain words for
//! socket errors.
//!
//! The client never shows a panic or a `Debug` dump: every network failure
//! becomes a [`Failure`], a single line that names the server (`host:port`)
//! and says what went wrong the way a person would say it. `main` prints it
//! and exits 1.

use std::fmt;
use std::io::{self, ErrorKind};

/// The client's result: `Err` is the single diagnostic line to print.
pub type Result<T> = std::result::Result<T, Failure>;

/// A session that ended in a network error; its text is one line, without
/// the `chat-client: ` prefix that `main` adds.
#[derive(Debug)]
pub struct Failure(String);

impl Failure {
    /// A failure described by `message` (one line, no trailing newline).
    pub fn new(message: impl Into<String>) -> Failure {
        Failure(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `err` means to someone at the client, in a few plain words: the
/// common socket errors get a sentence of their own; anything else is the
/// operating system's message in [`chat_common::plain`]'s words.
pub fn words(err: &io::Error) -> String {
    let words = match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused (nothing is listening on that port)",
        ErrorKind::ConnectionReset => "connection reset by the server",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timed out (no answer from the server)",
        ErrorKind::BrokenPipe => "the server is no longer reading (broken pipe)",
        ErrorKind::NotConnected => "not connected",
        ErrorKind::AddrNotAvailable => "that address is not available from this machine",
        _ => return chat_common::plain::plain(err),
    };
    words.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_is_said_plainly() {
        let err = io::Error::from(ErrorKind::ConnectionRefused);
        assert!(words(&err).starts_with("connection refused"));
    }

    #[test]
    fn os_errors_lose_their_number() {
        // EHOSTUNREACH on Linux; the kind has no stable name before Rust 1.83.
        let err = io::Error::from_raw_os_error(113);
        let said = words(&err);
        assert!(!said.contains("os error"), "{said}");
        assert!(said.starts_with(char::is_lowercase), "{said}");
    }
}

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

/// The line for a failed write to our stdout. Its own words, not
/// [`words`]': those are about the server, and a broken pipe here means
/// whatever reads our output (`| head`) has gone, not the server.
pub fn stdout_failure(err: &io::Error) -> Failure {
    let why = match err.kind() {
        ErrorKind::BrokenPipe => "nothing is reading it (broken pipe)".to_string(),
        _ => chat_common::plain::plain(err),
    };
    Failure::new(format!("cannot print to stdout: {why}"))
}

/// What a socket error `err` means to someone at the client, in a few
/// plain words: the common socket errors get a sentence of their own;
/// anything else is the operating system's message in
/// [`chat_common::plain`]'s words. Not for stdout: see [`stdout_failure`].
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

    /// A closed stdout is said to be ours, never the server's.
    #[test]
    fn a_closed_stdout_is_not_blamed_on_the_server() {
        let err = io::Error::from(ErrorKind::BrokenPipe);
        let said = stdout_failure(&err).to_string();
        assert_eq!(
            said,
            "cannot print to stdout: nothing is reading it (broken pipe)"
        );
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

//! Bounded framing: a byte stream in, whole lines out.
//!
//! TODO(common helper): implement; see the docs on each item for the contract.

use std::io::{self, Read};

/// Default longest line, in bytes, terminator excluded (SPEC: `--max-line`).
pub const DEFAULT_MAX_LINE: usize = 2048;

/// One framed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line: LF removed, a CR right before it removed, telnet
    /// sequences removed (when enabled), invalid UTF-8 replaced by U+FFFD.
    Text(String),
    /// A line longer than the limit was seen. It is reported once, as soon as
    /// the limit is passed (not at its LF), and its bytes are skipped up to and
    /// including the next LF without being buffered.
    TooLong,
}

/// Reads lines from `R` with memory bounded by `max_line` whatever the input.
pub struct LineReader<R> {
    inner: R,
    max_line: usize,
    telnet: Option<crate::telnet::TelnetFilter>,
}

impl<R: Read> LineReader<R> {
    /// A reader for lines of at most `max_line` bytes (terminator excluded).
    /// Allocates nothing until the first read.
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            max_line,
            telnet: None,
        }
    }

    /// Also strips telnet IAC sequences from the raw bytes before framing.
    pub fn with_telnet(mut self) -> Self {
        self.telnet = Some(crate::telnet::TelnetFilter::new());
        self
    }

    /// The next line, `Ok(None)` at end of stream. Data left without LF at end
    /// of stream is returned as a last line. Blank lines are returned (as
    /// empty text); ignoring them is the caller's policy.
    ///
    /// # Errors
    /// An I/O error from the inner reader (`Interrupted` is retried).
    pub fn read_line(&mut self) -> io::Result<Option<Line>> {
        let _ = (&mut self.inner, self.max_line);
        todo!()
    }

    /// The inner reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

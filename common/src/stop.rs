//! The stop line: the one line that ends a session.
//!
//! The labs end a connection with a word alone on a line (`EXIT`, or the
//! ELEN lab's `stop`). The chat server's parser, the client's writer and the
//! echo, upper and file services all decide it here, so they cannot drift:
//! the line must be exactly the word, no leading or trailing spaces, case
//! included; a CR before its LF is allowed.
//!
//! [`StopLine`] finds it in an unframed byte stream (echo and upper modes)
//! without delaying anything else: a byte is passed on at once unless it
//! belongs to a line that, so far, could still become the stop line. Those
//! bytes (at most the word and a CR) wait for the byte that decides.

/// The default stop line, and the word the client and the chat server take
/// as "leave".
pub const EXIT: &str = "EXIT";

/// `line` without its line end: one LF, then one CR before it, if there.
/// Every reader strips a line end here, once: stripping a CR twice would
/// make `EXIT\r\r` the stop line in one place and text in another.
pub fn without_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether `line` (with or without its LF or CR LF) is exactly `word`.
/// An empty `word` matches nothing: the stop line is off.
pub fn is_stop_line(line: &[u8], word: &[u8]) -> bool {
    !word.is_empty() && without_line_end(line) == word
}

/// Whether `line` (with or without its LF or CR LF) is `EXIT` alone.
pub fn is_exit(line: &[u8]) -> bool {
    is_stop_line(line, EXIT.as_bytes())
}

/// What [`StopLine::feed`] found.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// No stop line yet: go on reading.
    Go,
    /// The stop line ended here: everything before it was passed on, the
    /// line itself and anything after it were not.
    Stop,
}

/// Finds the stop line in a stream of bytes, passing everything else on at
/// once. Memory: the word, plus at most its length and a CR held back.
#[derive(Debug, Clone)]
pub struct StopLine {
    /// The stop word; empty = off.
    word: Box<[u8]>,
    /// The bytes of the current line so far, while they are a prefix of
    /// `word` followed by an optional CR; they wait for the deciding byte.
    held: Vec<u8>,
    /// Whether the current line may still be the stop line: true at the
    /// start of a line, false once a byte ruled it out (until the next LF).
    candidate: bool,
}

impl StopLine {
    /// A matcher for `word` (`""` = never stops).
    pub fn new(word: &str) -> StopLine {
        StopLine {
            word: word.as_bytes().into(),
            held: Vec::with_capacity(word.len() + 1),
            candidate: !word.is_empty(),
        }
    }

    /// The bytes held back now (a partial line that may still be the stop
    /// line).
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Scans `input`, appending to `out` every byte that is decided not to
    /// be part of the stop line (held bytes of an earlier call included,
    /// once decided). After [`Scan::Stop`] the rest of `input` is ignored.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Scan {
        if self.word.is_empty() {
            out.extend_from_slice(input);
            return Scan::Go;
        }
        let mut rest = input;
        while !rest.is_empty() {
            if !self.candidate {
                // Pass the rest of this line through in one copy.
                match rest.iter().position(|&b| b == b'\n') {
                    Some(lf) => {
                        out.extend_from_slice(&rest[..=lf]);
                        rest = &rest[lf + 1..];
                        self.candidate = true;
                    }
                    None => {
                        out.extend_from_slice(rest);
                        return Scan::Go;
                    }
                }
                continue;
            }
            let byte = rest[0];
            rest = &rest[1..];
            let word_done =
                self.held.len() >= self.word.len() && self.held[..self.word.len()] == *self.word;
            if word_done && byte == b'\n' {
                self.held.clear();
                return Scan::Stop;
            }
            let still = if word_done {
                byte == b'\r' && self.held.len() == self.word.len()
            } else {
                self.word.get(self.held.len()) == Some(&byte)
            };
            if still {
                self.held.push(byte);
            } else {
                out.append(&mut self.held);
                out.push(byte);
                // An LF that ruled the line out also ends it.
                self.candidate = byte == b'\n';
            }
        }
        Scan::Go
    }

    /// The end of the stream: a held line that is exactly the word (the
    /// client closed right after it) is the stop line; anything else held
    /// goes to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Scan {
        if !self.word.is_empty() && is_stop_line(&self.held, &self.word) {
            self.held.clear();
            return Scan::Stop;
        }
        out.append(&mut self.held);
        Scan::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` in turn; returns what was passed on and whether it
    /// stopped (and after which chunk).
    fn run(word: &str, chunks: &[&[u8]]) -> (Vec<u8>, Option<usize>) {
        let mut stop = StopLine::new(word);
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            if stop.feed(chunk, &mut out) == Scan::Stop {
                return (out, Some(i));
            }
        }
        (out, None)
    }

    /// Whole lines: the stop line ends it, what came before is passed on.
    #[test]
    fn exit_alone_stops() {
        assert_eq!(run("EXIT", &[b"EXIT\n"]), (vec![], Some(0)));
        assert_eq!(
            run("EXIT", &[b"hi\nEXIT\nafter\n"]),
            (b"hi\n".to_vec(), Some(0))
        );
        assert_eq!(run("EXIT", &[b"EXIT\r\n"]), (vec![], Some(0)));
    }

    /// Split anywhere, one byte at a time included.
    #[test]
    fn exit_split_across_reads() {
        assert_eq!(run("EXIT", &[b"EX", b"IT", b"\n"]), (vec![], Some(2)));
        assert_eq!(
            run("EXIT", &[b"a\nE", b"X", b"I", b"T", b"\r", b"\n"]),
            (b"a\n".to_vec(), Some(5))
        );
    }

    /// Near misses are passed on whole, in order.
    #[test]
    fn near_misses_are_echoed() {
        for line in [
            &b"EXITED\n"[..],
            b" EXIT\n",
            b"exit\n",
            b"EXIT \n",
            b"EXIT\r\r\n",
            b"EEXIT\n",
            b"\n",
        ] {
            assert_eq!(run("EXIT", &[line]), (line.to_vec(), None), "{line:?}");
            let bytes: Vec<&[u8]> = line.chunks(1).collect();
            assert_eq!(run("EXIT", &bytes), (line.to_vec(), None), "{line:?}");
        }
        // A near miss then the real one on the next line.
        assert_eq!(
            run("EXIT", &[b"EXITED\nEXIT\n"]),
            (b"EXITED\n".to_vec(), Some(0))
        );
        // The stop word in the middle of a line is text.
        assert_eq!(
            run("EXIT", &[b"say EXIT\n"]),
            (b"say EXIT\n".to_vec(), None)
        );
    }

    /// Only bytes that could still be the stop line wait.
    #[test]
    fn only_a_possible_stop_line_waits() {
        let mut stop = StopLine::new("EXIT");
        let mut out = Vec::new();
        assert_eq!(stop.feed(b"hello", &mut out), Scan::Go);
        assert_eq!(out, b"hello");
        assert_eq!(stop.feed(b"\nEX", &mut out), Scan::Go);
        assert_eq!(out, b"hello\n");
        assert_eq!(stop.held(), b"EX");
        assert_eq!(stop.feed(b"O", &mut out), Scan::Go);
        assert_eq!(out, b"hello\nEXO");
        assert!(stop.held().is_empty());
    }

    /// Another word, and no word at all.
    #[test]
    fn other_words_and_off() {
        assert_eq!(run("stop", &[b"stop\n"]), (vec![], Some(0)));
        assert_eq!(run("stop", &[b"EXIT\n"]), (b"EXIT\n".to_vec(), None));
        assert_eq!(run("", &[b"EXIT\n", b"\n"]), (b"EXIT\n\n".to_vec(), None));
    }

    /// End of stream: a held stop word is the stop line, anything else
    /// held is passed on.
    #[test]
    fn end_of_stream() {
        let mut stop = StopLine::new("EXIT");
        let mut out = Vec::new();
        assert_eq!(stop.feed(b"EXIT", &mut out), Scan::Go);
        assert_eq!(stop.finish(&mut out), Scan::Stop);
        assert!(out.is_empty());
        let mut stop = StopLine::new("EXIT");
        assert_eq!(stop.feed(b"EXI", &mut out), Scan::Go);
        assert_eq!(stop.finish(&mut out), Scan::Go);
        assert_eq!(out, b"EXI");
    }

    /// The one-line check used by the chat parser and the client.
    #[test]
    fn whole_line_check() {
        assert!(is_exit(b"EXIT"));
        assert!(is_exit(b"EXIT\n"));
        assert!(is_exit(b"EXIT\r\n"));
        assert!(!is_exit(b" EXIT\n"));
        assert!(!is_exit(b"EXIT now\n"));
        assert!(!is_exit(b"exit\n"));
        assert!(!is_stop_line(b"", b""));
        assert!(!is_stop_line(b"\n", b""));
    }

    /// One CR comes off, never two: `EXIT\r\r` is text for every reader.
    #[test]
    fn one_cr_only() {
        assert_eq!(without_line_end(b"EXIT\r\r\n"), b"EXIT\r");
        assert_eq!(without_line_end(b"EXIT\r\r"), b"EXIT\r");
        assert_eq!(without_line_end(b"EXIT\r\n"), b"EXIT");
        assert_eq!(without_line_end(b"EXIT\n\n"), b"EXIT\n");
        assert!(!is_exit(b"EXIT\r\r\n"));
        assert!(!is_exit(b"EXIT\r\r"));
    }
}

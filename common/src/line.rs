//! Bounded framing: a byte stream in, whole lines out.
//!
//! TCP delivers bytes, not lines: one read may hold half a line or a hundred
//! lines, and a client may send a gigabyte without a single LF. The server
//! must handle each line whole and still keep memory per connection bounded,
//! so [`LineReader`] owns one fixed buffer, just big enough for the longest
//! acceptable line with its CR LF, and never grows it. A line that cannot fit
//! is reported as [`Line::TooLong`] the moment that is certain, and the rest
//! of it is skipped as it streams past.
//!
//! The reader is generic over [`Read`] so that the framing rules are tested
//! here, without sockets, by feeding bytes cut at arbitrary points.

use std::io::{self, ErrorKind, Read};

use crate::telnet::TelnetFilter;

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

/// Where a [`LineReader`] sends the telnet answers it owes the peer.
type Reply = Box<dyn FnMut(&[u8]) + Send>;

/// Reads lines from `R` with memory bounded by `max_line` whatever the input.
///
/// After an error from the inner reader (for example `WouldBlock` or
/// `TimedOut` from a socket with a read timeout, used to poll for shutdown)
/// nothing is lost: calling [`read_line`](Self::read_line) again resumes
/// where it stopped.
pub struct LineReader<R> {
    /// The byte source; owned so the reader can be dropped with its
    /// connection.
    inner: R,
    /// Longest line accepted, terminator excluded.
    max_line: usize,
    /// Present when the peer may speak telnet; applied to raw bytes as they
    /// arrive, before any framing.
    telnet: Option<TelnetFilter>,
    /// Where the telnet filter's answers go, as soon as a read produced
    /// them (not at the next line: telnet's timing mark must be answered
    /// while its user waits).
    reply: Option<Reply>,
    /// Exactly `max_line + 2` bytes (a full line plus CR LF) once the first
    /// read happens, empty before that so an idle or refused connection costs
    /// nothing. Never resized after that: this is the memory bound.
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out, in `buf`.
    start: usize,
    /// End of the bytes read so far, in `buf`.
    end: usize,
    /// True after `TooLong` was returned and until the LF that ends that
    /// line: bytes are dropped as they arrive instead of buffered.
    discarding: bool,
    /// The inner reader returned end of stream; every later call is `None`.
    eof: bool,
}

impl<R: Read> LineReader<R> {
    /// A reader for lines of at most `max_line` bytes (terminator excluded).
    /// Allocates nothing until the first read.
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            max_line,
            telnet: None,
            reply: None,
            buf: Vec::new(),
            start: 0,
            end: 0,
            discarding: false,
            eof: false,
        }
    }

    /// Also strips telnet IAC sequences from the raw bytes before framing.
    pub fn with_telnet(mut self) -> Self {
        self.telnet = Some(TelnetFilter::new());
        self
    }

    /// Strips telnet sequences, and hands the answers owed to the client
    /// (refusals of its option requests) to `reply` as soon as they arise.
    pub fn with_telnet_replies(mut self, reply: impl FnMut(&[u8]) + Send + 'static) -> Self {
        self.telnet = Some(TelnetFilter::new());
        self.reply = Some(Box::new(reply));
        self
    }

    /// The next line, `Ok(None)` at end of stream. Data left without LF at end
    /// of stream is returned as a last line (a CR at its very end is dropped
    /// too, as it would have been before an LF). Blank lines are returned (as
    /// empty text); ignoring them is the caller's policy.
    ///
    /// # Errors
    /// An I/O error from the inner reader (`Interrupted` is retried).
    pub fn read_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.take_buffered() {
                return Ok(Some(line));
            }
            if self.eof {
                return Ok(self.take_rest());
            }
            self.fill()?;
        }
    }

    /// Whether a whole line is already buffered, so that the next
    /// [`read_line`](Self::read_line) returns without reading. `false` when
    /// unsure: a caller that batches work per read flushes on `false`.
    pub fn has_line(&self) -> bool {
        !self.discarding && self.buf[self.start..self.end].contains(&b'\n')
    }

    /// The inner reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes held for buffering: 0 before the first read, `max_line + 2`
    /// after, whatever the input. For tests and memory accounting.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// A line that can be handed out from what is already buffered, if any;
    /// also switches to discarding once the pending bytes are certainly too
    /// long.
    fn take_buffered(&mut self) -> Option<Line> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let lf = pending.iter().position(|&b| b == b'\n');
            if self.discarding {
                match lf {
                    Some(i) => {
                        self.start += i + 1;
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        self.start = 0;
                        self.end = 0;
                        return None;
                    }
                }
            }
            if let Some(i) = lf {
                let line = strip_cr(&pending[..i]);
                let result = if line.len() > self.max_line {
                    Line::TooLong
                } else {
                    Line::Text(String::from_utf8_lossy(line).into_owned())
                };
                self.start += i + 1;
                return Some(result);
            }
            if self.certainly_too_long(pending) {
                self.discarding = true;
                self.start = 0;
                self.end = 0;
                return Some(Line::TooLong);
            }
            return None;
        }
    }

    /// Whether bytes without LF can no longer become an acceptable line: more
    /// than `max_line` of them, unless the one past the limit is a CR that an
    /// LF may still follow. Reporting at exactly this point (and not when the
    /// buffer happens to be full) is what makes the output independent of how
    /// the input was cut.
    fn certainly_too_long(&self, pending: &[u8]) -> bool {
        match pending.len().checked_sub(self.max_line) {
            None | Some(0) => false,
            Some(1) => pending.last() != Some(&b'\r'),
            Some(_) => true,
        }
    }

    /// At end of stream: the bytes left without LF, as a last line.
    fn take_rest(&mut self) -> Option<Line> {
        if self.discarding || self.start == self.end {
            self.discarding = false;
            self.start = 0;
            self.end = 0;
            return None;
        }
        // `certainly_too_long` ran on these bytes, so without a final CR they
        // fit the limit.
        let line = String::from_utf8_lossy(strip_cr(&self.buf[self.start..self.end])).into_owned();
        self.start = 0;
        self.end = 0;
        Some(Line::Text(line))
    }

    /// Reads once into the free tail of the buffer, filtering telnet
    /// sequences out of the new bytes. Sets `eof` on end of stream.
    fn fill(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            self.buf = vec![0; self.max_line.saturating_add(2)];
        }
        if self.start > 0 {
            // Moving the pending part of a line (never more than `max_line +
            // 1` bytes) to the front gives the read the whole free tail.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    let fresh = &mut self.buf[self.end..self.end + n];
                    let kept = match &mut self.telnet {
                        Some(filter) => {
                            let kept = filter.filter(fresh);
                            let replies = filter.take_replies();
                            if let (false, Some(reply)) = (replies.is_empty(), &mut self.reply) {
                                reply(&replies);
                            }
                            kept
                        }
                        None => n,
                    };
                    self.end += kept;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The line without a CR at its end.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reader that hands out its data in pre-chosen chunk sizes (cycling),
    /// as TCP might, and can inject errors.
    struct Chunked {
        data: Vec<u8>,
        pos: usize,
        sizes: Vec<usize>,
        turn: usize,
    }

    impl Chunked {
        fn new(data: &[u8], sizes: &[usize]) -> Self {
            Chunked {
                data: data.to_vec(),
                pos: 0,
                sizes: sizes.to_vec(),
                turn: 0,
            }
        }
    }

    impl Read for Chunked {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.turn % self.sizes.len()];
            self.turn += 1;
            let n = size.min(out.len()).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn all_lines<R: Read>(mut reader: LineReader<R>) -> Vec<Line> {
        let mut lines = Vec::new();
        while let Some(line) = reader.read_line().unwrap() {
            lines.push(line);
        }
        // End of stream stays end of stream.
        assert_eq!(reader.read_line().unwrap(), None);
        lines
    }

    fn lines(data: &[u8], max_line: usize) -> Vec<Line> {
        all_lines(LineReader::new(data, max_line))
    }

    fn text(s: &str) -> Line {
        Line::Text(s.to_string())
    }

    /// LF ends a line; a CR just before it is dropped, other CRs are kept.
    #[test]
    fn lf_and_crlf_end_lines() {
        assert_eq!(
            lines(b"a\nb\r\nc\rd\n", 10),
            [text("a"), text("b"), text("c\rd")]
        );
    }

    /// Empty lines come back as empty text.
    #[test]
    fn blank_lines_are_returned() {
        assert_eq!(lines(b"\n\r\n\n", 10), [text(""), text(""), text("")]);
    }

    /// Data without LF at end of stream is a last line.
    #[test]
    fn unterminated_last_line() {
        assert_eq!(lines(b"a\nbc", 10), [text("a"), text("bc")]);
        assert_eq!(lines(b"a\nbc\r", 10), [text("a"), text("bc")]);
        assert_eq!(lines(b"", 10), []);
    }

    /// Invalid UTF-8 becomes U+FFFD, never an error.
    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            lines(b"a\xffb\xc3\n\xc3\xa9\n", 10),
            [text("a\u{fffd}b\u{fffd}"), text("é")]
        );
    }

    /// A line of exactly `max_line` bytes passes; one more byte does not.
    #[test]
    fn limit_is_exact() {
        assert_eq!(lines(b"abcd\nabcd\r\n", 4), [text("abcd"), text("abcd")]);
        assert_eq!(lines(b"abcde\nok\n", 4), [Line::TooLong, text("ok")]);
        assert_eq!(lines(b"abcd\r\r\nok\n", 4), [Line::TooLong, text("ok")]);
    }

    /// A long line is reported once, before its LF has even arrived, and the
    /// line after it is read normally.
    #[test]
    fn too_long_is_reported_early_and_once() {
        let mut reader = LineReader::new(Chunked::new(b"abcdefghij", &[3]), 4);
        assert_eq!(reader.read_line().unwrap(), Some(Line::TooLong));
        assert!(reader.get_ref().pos < 10);
        let data = b"abcdefghijklmnop\nnext\n";
        assert_eq!(
            all_lines(LineReader::new(Chunked::new(data, &[3]), 4)),
            [Line::TooLong, text("next")]
        );
    }

    /// A too-long line cut off by end of stream gives no extra last line.
    #[test]
    fn too_long_then_eof() {
        assert_eq!(lines(b"ok\nabcdefgh", 4), [text("ok"), Line::TooLong]);
    }

    /// A zero limit still allows empty lines.
    #[test]
    fn zero_limit() {
        assert_eq!(lines(b"\n\r\na\n", 0), [text(""), text(""), Line::TooLong]);
    }

    /// Nothing is allocated before the first read.
    #[test]
    fn new_allocates_nothing() {
        let reader = LineReader::new(&b"a\n"[..], DEFAULT_MAX_LINE);
        assert_eq!(reader.buffer_capacity(), 0);
    }

    /// With telnet on, IAC sequences vanish even when split across reads.
    #[test]
    fn telnet_sequences_are_removed() {
        let data = b"he\xff\xfb\x01llo\xff\xf4\r\n\xff\xff\n";
        for size in 1..data.len() {
            let reader = LineReader::new(Chunked::new(data, &[size]), 10).with_telnet();
            assert_eq!(all_lines(reader), [text("hello"), text("\u{fffd}")]);
        }
    }

    /// With telnet on, CR NUL is a CR (kept inside a line, dropped before
    /// its LF like any CR), even when split across reads; and a
    /// subnegotiation that is never closed mutes at most
    /// `MAX_SUBNEGOTIATION` bytes, then lines come through again.
    #[test]
    fn telnet_cr_nul_and_unclosed_subnegotiation() {
        let data = b"a\r\0b\r\0\nc\n";
        for size in 1..data.len() {
            let reader = LineReader::new(Chunked::new(data, &[size]), 10).with_telnet();
            assert_eq!(all_lines(reader), [text("a\rb"), text("c")]);
        }
        let mut data = vec![0xff, 0xfa, 24];
        for i in 0..100 {
            data.extend(format!("line {i:02}\n").as_bytes());
        }
        let reader = LineReader::new(Chunked::new(&data, &[64]), 10).with_telnet();
        let got = all_lines(reader);
        assert_eq!(got.last(), Some(&text("line 99")));
        let muted = usize::from(crate::telnet::MAX_SUBNEGOTIATION) / 8;
        assert!(
            (100 - muted - 1..=100 - muted + 1).contains(&got.len()),
            "{got:?}"
        );
    }

    /// A read that only held telnet commands is not end of stream.
    #[test]
    fn telnet_only_read_is_not_eof() {
        let data = b"\xff\xfd\x03hi\n";
        let reader = LineReader::new(Chunked::new(data, &[3, 10]), 10).with_telnet();
        assert_eq!(all_lines(reader), [text("hi")]);
    }

    /// `has_line` says whether the next line is already buffered (so a
    /// caller may batch), and never promises one that is not.
    #[test]
    fn has_line_tells_what_is_buffered() {
        let mut r = LineReader::new(&b"a\nb\nc"[..], 16);
        assert!(!r.has_line(), "nothing read yet");
        assert_eq!(r.read_line().unwrap(), Some(Line::Text("a".into())));
        assert!(r.has_line(), "b is in the same read");
        assert_eq!(r.read_line().unwrap(), Some(Line::Text("b".into())));
        assert!(!r.has_line(), "c has no LF yet");
        assert_eq!(r.read_line().unwrap(), Some(Line::Text("c".into())));
    }

    /// `Interrupted` is retried; other errors are returned, and reading can
    /// go on after them without losing bytes.
    #[test]
    fn errors() {
        struct Flaky(Vec<io::Result<Vec<u8>>>);
        impl Read for Flaky {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Ok(0);
                }
                let bytes = self.0.remove(0)?;
                out[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
        }
        let mut reader = LineReader::new(
            Flaky(vec![
                Ok(b"ab".to_vec()),
                Err(ErrorKind::Interrupted.into()),
                Ok(b"c\nd".to_vec()),
                Err(ErrorKind::WouldBlock.into()),
                Ok(b"e\n".to_vec()),
            ]),
            10,
        );
        assert_eq!(reader.read_line().unwrap(), Some(text("abc")));
        let err = reader.read_line().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
        assert_eq!(reader.read_line().unwrap(), Some(text("de")));
        assert_eq!(reader.read_line().unwrap(), None);
    }

    /// Bytes of an endless line are produced on the fly, so the test itself
    /// holds no big buffer either.
    struct Endless {
        left: usize,
        tail: &'static [u8],
    }

    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.left > 0 {
                let n = self.left.min(out.len());
                out[..n].fill(b'x');
                self.left -= n;
                return Ok(n);
            }
            let n = self.tail.len().min(out.len());
            out[..n].copy_from_slice(&self.tail[..n]);
            self.tail = &self.tail[n..];
            Ok(n)
        }
    }

    /// 30 MB without LF never grows the buffer past `max_line + 2`.
    #[test]
    fn memory_stays_bounded() {
        let source = Endless {
            left: 30 << 20,
            tail: b"\nhello\n",
        };
        let mut reader = LineReader::new(source, DEFAULT_MAX_LINE);
        let mut seen = Vec::new();
        while let Some(line) = reader.read_line().unwrap() {
            assert!(reader.buffer_capacity() <= DEFAULT_MAX_LINE + 2);
            seen.push(line);
        }
        assert_eq!(seen, [Line::TooLong, text("hello")]);
        assert_eq!(reader.buffer_capacity(), DEFAULT_MAX_LINE + 2);
    }

    /// The framing rules, applied to the whole input at once.
    fn model(data: &[u8], max_line: usize) -> Vec<Line> {
        let mut out = Vec::new();
        let mut parts: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let last = parts.pop().unwrap_or_default();
        for part in parts {
            let part = strip_cr(part);
            if part.len() > max_line {
                out.push(Line::TooLong);
            } else {
                out.push(Line::Text(String::from_utf8_lossy(part).into_owned()));
            }
        }
        if !last.is_empty() {
            let last = strip_cr(last);
            if last.len() > max_line {
                out.push(Line::TooLong);
            } else {
                out.push(Line::Text(String::from_utf8_lossy(last).into_owned()));
            }
        }
        out
    }

    fn stream() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                4 => Just(b'a'),
                2 => Just(b'\n'),
                2 => Just(b'\r'),
                1 => Just(0xc3u8),
                1 => Just(0xa9u8),
                1 => Just(0xffu8),
                1 => Just(0xfbu8),
                1 => Just(0u8),
            ],
            0..80,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// However the stream is cut, the lines are the same as when it is
        /// read whole, and they follow the framing rules.
        #[test]
        fn cutting_does_not_change_lines(
            data in stream(),
            sizes in proptest::collection::vec(1usize..12, 1..8),
            max_line in 0usize..8,
        ) {
            let whole = lines(&data, max_line);
            prop_assert_eq!(&whole, &model(&data, max_line));
            let cut = all_lines(LineReader::new(Chunked::new(&data, &sizes), max_line));
            prop_assert_eq!(cut, whole);
        }

        /// The same with telnet filtering on: the result is the framing of
        /// the filtered stream.
        #[test]
        fn cutting_does_not_change_lines_with_telnet(
            data in stream(),
            sizes in proptest::collection::vec(1usize..12, 1..8),
            max_line in 0usize..8,
        ) {
            let mut filtered = data.clone();
            let n = TelnetFilter::new().filter(&mut filtered);
            filtered.truncate(n);
            let expected = model(&filtered, max_line);
            let whole = all_lines(LineReader::new(&data[..], max_line).with_telnet());
            prop_assert_eq!(&whole, &expected);
            let reader = LineReader::new(Chunked::new(&data, &sizes), max_line).with_telnet();
            prop_assert_eq!(all_lines(reader), expected);
        }
    }
}

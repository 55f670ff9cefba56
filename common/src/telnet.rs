//! Removing telnet command sequences (RFC 854) from a byte stream.
//!
//! `telnet HOST PORT` is one of the clients the chat must work with, and a
//! telnet client mixes commands into the data: option negotiation when it
//! connects, `IAC IP` when its user presses the interrupt key, and so on.
//! Every command starts with IAC (0xFF), a byte that never occurs in UTF-8, so
//! removing the sequences before decoding cannot damage text.
//!
//! The filter works in place on each chunk as it is read, keeping its state
//! between chunks, because TCP may split a three-byte sequence anywhere and
//! the line framer must not buffer raw bytes just to find out.
//!
//! A subnegotiation (`IAC SB ... IAC SE`) is bounded: at most
//! [`MAX_SUBNEGOTIATION`] bytes before its `IAC SE`, or it is abandoned and
//! what follows is data again, so a client that never closes one is not
//! muted for good. A NUL right after a CR is dropped: CR NUL is how telnet's
//! network virtual terminal sends a bare CR (RFC 854).
//!
//! It also says no to every option the client asks for (`DO x` gets
//! `WONT x`, `WILL x` gets `DONT x`), the minimal correct server of RFC 854.
//! That answer matters: when its user presses Ctrl+C, telnet sends
//! `IAC IP IAC DO TIMING-MARK` and then throws away everything it receives
//! until the server answers the timing mark. A server that stays silent
//! leaves that user seeing nothing ever again.

/// Telnet command byte values used here (RFC 854 and RFC 855).
const IAC: u8 = 255;
/// Start of subnegotiation: everything up to `IAC SE` belongs to it.
const SB: u8 = 250;
/// End of subnegotiation.
const SE: u8 = 240;
/// WILL, WONT, DO and DONT (251..=254) each take one option byte.
const WILL: u8 = 251;
/// See [`WILL`].
const WONT: u8 = 252;
/// See [`WILL`].
const DO: u8 = 253;
/// See [`WILL`].
const DONT: u8 = 254;

/// Carriage return: CR NUL is a bare CR (RFC 854), so the NUL is dropped.
const CR: u8 = b'\r';
/// See [`CR`].
const NUL: u8 = 0;

/// Most bytes a subnegotiation may hold before its `IAC SE` (an escaped
/// `IAC IAC` counts two). Real ones (terminal type, window size) are a few
/// dozen bytes; past this one is abandoned and reading goes on as data.
pub const MAX_SUBNEGOTIATION: u16 = 512;

/// Most reply bytes held between two calls to [`TelnetFilter::take_replies`]:
/// a client that floods requests gets some answers, not our memory.
const MAX_REPLIES: usize = 3 * 64;

/// Where the filter is inside a command sequence.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Ordinary data: bytes are kept.
    #[default]
    Data,
    /// Just after IAC: the next byte is the command.
    Iac,
    /// After `IAC WILL/WONT/DO/DONT` (the verb kept): the next byte is the
    /// option, dropped.
    Option(u8),
    /// Inside `IAC SB ...`, this many bytes in: dropped until `IAC SE`, or
    /// until [`MAX_SUBNEGOTIATION`] is passed.
    Sub(u16),
    /// IAC inside a subnegotiation (bytes before it counted): SE ends it,
    /// anything else stays inside.
    SubIac(u16),
}

/// A streaming filter: state is kept across calls, so a sequence split
/// between two reads is still removed whole.
#[derive(Debug, Default, Clone)]
pub struct TelnetFilter {
    /// Survives between calls, so that a sequence split across reads is
    /// recognised; reset only by dropping the filter with its connection.
    state: State,
    /// Answers to send back to the client (refusals), at most
    /// [`MAX_REPLIES`] bytes until taken.
    replies: Vec<u8>,
    /// The last data byte kept was a CR: a NUL now is the second half of
    /// telnet's CR NUL and is dropped. Survives between calls like `state`.
    after_cr: bool,
}

/// The subnegotiation state after `more` bytes on top of `n`, or data
/// again once that passes [`MAX_SUBNEGOTIATION`].
fn sub_after(n: u16, more: u16) -> State {
    match n.checked_add(more) {
        Some(total) if total <= MAX_SUBNEGOTIATION => State::Sub(total),
        _ => State::Data,
    }
}

impl TelnetFilter {
    /// A filter in the data state.
    pub fn new() -> Self {
        TelnetFilter::default()
    }

    /// Removes telnet sequences from `buf` in place and returns the new
    /// length of the data kept at the front of `buf`. `IAC IAC` is a literal
    /// 0xFF byte (kept, it decodes to U+FFFD); `IAC WILL/WONT/DO/DONT x`,
    /// `IAC SB ... IAC SE` and every other command `IAC x` (x from 240) are
    /// dropped. An IAC followed by a byte that is no command (below 240) is
    /// dropped alone, the byte kept as data.
    ///
    /// A subnegotiation swallows at most [`MAX_SUBNEGOTIATION`] bytes: the
    /// byte that would pass the bound ends it (dropped too), and reading goes
    /// on as data. It costs no memory either way (nothing is buffered). A NUL
    /// right after a kept CR is dropped (telnet's CR NUL is a CR).
    pub fn filter(&mut self, buf: &mut [u8]) -> usize {
        let mut kept = 0;
        for i in 0..buf.len() {
            let byte = buf[i];
            if self.state == State::Iac && byte < SE {
                // No telnet command follows: the IAC was a stray 0xFF
                // (a Latin-1 `ÿ` typed into nc), dropped alone. This byte
                // is data: a LF still ends its line (it was dropped as
                // the command, and two lines became one).
                self.state = State::Data;
            }
            let (next, keep) = match (self.state, byte) {
                (State::Data, IAC) => (State::Iac, false),
                (State::Data, NUL) if self.after_cr => {
                    // The NUL of CR NUL is spent: a second NUL is data.
                    self.after_cr = false;
                    (State::Data, false)
                }
                (State::Data, _) => (State::Data, true),
                (State::Iac, IAC) => (State::Data, true),
                (State::Iac, SB) => (State::Sub(0), false),
                (State::Iac, WILL..=DONT) => (State::Option(byte), false),
                (State::Option(verb), option) => {
                    self.refuse(verb, option);
                    (State::Data, false)
                }
                (State::Iac, _) => (State::Data, false),
                (State::Sub(n), IAC) => (State::SubIac(n), false),
                (State::Sub(n), _) => (sub_after(n, 1), false),
                (State::SubIac(_), SE) => (State::Data, false),
                (State::SubIac(n), _) => (sub_after(n, 2), false),
            };
            self.state = next;
            if keep {
                buf[kept] = byte;
                kept += 1;
                self.after_cr = byte == CR;
            }
        }
        kept
    }

    /// Queues the refusal of a request: `DO x` -> `WONT x`, `WILL x` ->
    /// `DONT x`. `WONT` and `DONT` ask for what is already so: no answer
    /// (RFC 854), which is also what keeps two peers from looping.
    fn refuse(&mut self, verb: u8, option: u8) {
        let answer = match verb {
            DO => WONT,
            WILL => DONT,
            _ => return,
        };
        if self.replies.len() < MAX_REPLIES {
            self.replies.extend_from_slice(&[IAC, answer, option]);
        }
    }

    /// The answers owed to the client since the last call (empty if none).
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(filter: &mut TelnetFilter, bytes: &[u8]) -> Vec<u8> {
        let mut buf = bytes.to_vec();
        let n = filter.filter(&mut buf);
        buf.truncate(n);
        buf
    }

    fn once(bytes: &[u8]) -> Vec<u8> {
        run(&mut TelnetFilter::new(), bytes)
    }

    /// Plain text, including UTF-8, goes through untouched.
    #[test]
    fn data_is_kept() {
        assert_eq!(once("héllo\r\n".as_bytes()), "héllo\r\n".as_bytes());
        assert_eq!(once(b""), b"");
    }

    /// Option negotiation (what telnet sends on connect) is removed.
    #[test]
    fn negotiation_is_dropped() {
        assert_eq!(once(&[IAC, 253, 1, b'a', IAC, 251, 3, b'b']), b"ab");
        assert_eq!(once(&[IAC, 252, IAC, b'x']), b"x");
        assert_eq!(once(&[IAC, 254, 34]), b"");
    }

    /// Requests are refused: DO gets WONT, WILL gets DONT, and WONT/DONT get
    /// nothing; the telnet interrupt key's timing mark is answered, even
    /// when the sequence is split between reads.
    #[test]
    fn requests_are_refused() {
        let mut filter = TelnetFilter::new();
        assert_eq!(run(&mut filter, &[b'a', IAC, 244, IAC, DO]), b"a");
        assert_eq!(filter.take_replies(), b"");
        assert_eq!(
            run(&mut filter, &[6, IAC, WILL, 1, IAC, WONT, 3, IAC, DONT, 5]),
            b""
        );
        assert_eq!(filter.take_replies(), [IAC, WONT, 6, IAC, DONT, 1]);
        assert_eq!(filter.take_replies(), b"", "taken once");
        let flood: Vec<u8> = [IAC, DO, 1].repeat(1000);
        run(&mut filter, &flood);
        assert_eq!(filter.take_replies().len(), MAX_REPLIES, "bounded");
    }

    /// The interrupt key (`IAC IP`) and other two-byte commands vanish.
    #[test]
    fn two_byte_commands_are_dropped() {
        assert_eq!(once(&[b'a', IAC, 244, b'b', IAC, 241, b'c']), b"abc");
    }

    /// Review: an IAC followed by a byte that is no telnet command (a
    /// Latin-1 `ÿ` at the end of a line typed into nc) dropped that byte as
    /// its command, a LF included: two lines became one, and `EXIT` chat
    /// text. The stray IAC alone is dropped, even split from its byte.
    #[test]
    fn a_stray_iac_drops_itself_only() {
        assert_eq!(once(b"first \xff\nsecond\n"), b"first \nsecond\n");
        assert_eq!(once(b"EXIT\xff\nx\xff\xff\n"), b"EXIT\nx\xff\n");
        assert_eq!(once(&[b'a', IAC, b'b', IAC, 0, b'c']), b"ab\0c");
        let mut filter = TelnetFilter::new();
        assert_eq!(run(&mut filter, b"line\xff"), b"line");
        assert_eq!(run(&mut filter, b"\nnext"), b"\nnext");
    }

    /// `IAC IAC` is one literal 0xFF data byte.
    #[test]
    fn escaped_iac_is_kept_once() {
        assert_eq!(once(&[b'a', IAC, IAC, b'b']), &[b'a', IAC, b'b']);
        assert_eq!(once(&[IAC, IAC, IAC, IAC]), &[IAC, IAC]);
    }

    /// A subnegotiation, including an escaped IAC inside it, is removed.
    #[test]
    fn subnegotiation_is_dropped() {
        let bytes = [b'a', IAC, SB, 24, 0, b'x', IAC, IAC, b'y', IAC, SE, b'b'];
        assert_eq!(once(&bytes), b"ab");
    }

    /// A subnegotiation of exactly [`MAX_SUBNEGOTIATION`] bytes is removed
    /// whole; one that goes on past it is abandoned there, and the bytes
    /// after the bound are data again, however the input is cut.
    #[test]
    fn subnegotiation_is_bounded() {
        let max = usize::from(MAX_SUBNEGOTIATION);
        let mut exact = vec![IAC, SB];
        exact.extend(std::iter::repeat_n(b'x', max));
        exact.extend([IAC, SE, b'o', b'k']);
        assert_eq!(once(&exact), b"ok");

        let mut endless = vec![IAC, SB];
        endless.extend(std::iter::repeat_n(b'x', max + 1));
        endless.extend(b"hello");
        assert_eq!(once(&endless), b"hello");
        let mut filter = TelnetFilter::new();
        let mut kept = Vec::new();
        for chunk in endless.chunks(7) {
            kept.extend(run(&mut filter, chunk));
        }
        assert_eq!(kept, b"hello");

        // Escaped IACs count two bytes each towards the bound.
        let mut escaped = vec![IAC, SB];
        escaped.extend([IAC, IAC].repeat(max / 2));
        escaped.extend([b'z', b'!']);
        assert_eq!(once(&escaped), b"!");
    }

    /// CR NUL is a CR; a NUL elsewhere, or a second one, is data.
    #[test]
    fn cr_nul_is_a_cr() {
        assert_eq!(once(b"a\r\0b\r\n"), b"a\rb\r\n");
        assert_eq!(once(b"\0a\0\r\0\0"), b"\0a\0\r\0");
        let mut filter = TelnetFilter::new();
        assert_eq!(run(&mut filter, b"a\r"), b"a\r");
        assert_eq!(run(&mut filter, b"\0b"), b"b", "split between reads");
    }

    /// A sequence split between two reads is still removed whole.
    #[test]
    fn state_survives_between_calls() {
        let mut filter = TelnetFilter::new();
        assert_eq!(run(&mut filter, &[b'a', IAC]), b"a");
        assert_eq!(run(&mut filter, &[WILL]), b"");
        assert_eq!(run(&mut filter, &[1, b'b', IAC, SB]), b"b");
        assert_eq!(run(&mut filter, &[b'z', IAC]), b"");
        assert_eq!(run(&mut filter, &[SE, b'c']), b"c");
    }

    proptest! {
        /// Cutting the input anywhere never changes what is kept.
        #[test]
        fn chunking_does_not_matter(
            bytes in proptest::collection::vec(
                prop_oneof![Just(IAC), Just(SB), Just(SE), Just(WILL), Just(DONT), Just(244u8), Just(CR), Just(NUL), any::<u8>()],
                0..64,
            ),
            cut in 0usize..64,
        ) {
            let cut = cut.min(bytes.len());
            let mut filter = TelnetFilter::new();
            let mut split = run(&mut filter, &bytes[..cut]);
            split.extend(run(&mut filter, &bytes[cut..]));
            prop_assert_eq!(split, once(&bytes));
        }
    }
}

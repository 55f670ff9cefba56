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

/// Telnet command byte values used here (RFC 854 and RFC 855).
const IAC: u8 = 255;
/// Start of subnegotiation: everything up to `IAC SE` belongs to it.
const SB: u8 = 250;
/// End of subnegotiation.
const SE: u8 = 240;
/// WILL, WONT, DO and DONT (251..=254) each take one option byte.
const WILL: u8 = 251;
/// See [`WILL`].
const DONT: u8 = 254;

/// Where the filter is inside a command sequence.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Ordinary data: bytes are kept.
    #[default]
    Data,
    /// Just after IAC: the next byte is the command.
    Iac,
    /// After `IAC WILL/WONT/DO/DONT`: the next byte is the option, dropped.
    Option,
    /// Inside `IAC SB ...`: dropped until `IAC SE`.
    Sub,
    /// IAC inside a subnegotiation: SE ends it, anything else stays inside.
    SubIac,
}

/// A streaming filter: state is kept across calls, so a sequence split
/// between two reads is still removed whole.
#[derive(Debug, Default, Clone)]
pub struct TelnetFilter {
    /// Survives between calls, so that a sequence split across reads is
    /// recognised; reset only by dropping the filter with its connection.
    state: State,
}

impl TelnetFilter {
    /// A filter in the data state.
    pub fn new() -> Self {
        TelnetFilter::default()
    }

    /// Removes telnet sequences from `buf` in place and returns the new
    /// length of the data kept at the front of `buf`. `IAC IAC` is a literal
    /// 0xFF byte (kept, it decodes to U+FFFD); `IAC WILL/WONT/DO/DONT x`,
    /// `IAC SB ... IAC SE` and every other `IAC x` are dropped.
    ///
    /// A subnegotiation that never ends swallows everything after it; that
    /// costs no memory (nothing is buffered), and a client that sends one is
    /// not speaking telnet's grammar anyway.
    pub fn filter(&mut self, buf: &mut [u8]) -> usize {
        let mut kept = 0;
        for i in 0..buf.len() {
            let byte = buf[i];
            let (next, keep) = match (self.state, byte) {
                (State::Data, IAC) => (State::Iac, false),
                (State::Data, _) => (State::Data, true),
                (State::Iac, IAC) => (State::Data, true),
                (State::Iac, SB) => (State::Sub, false),
                (State::Iac, WILL..=DONT) => (State::Option, false),
                (State::Iac, _) | (State::Option, _) => (State::Data, false),
                (State::Sub, IAC) => (State::SubIac, false),
                (State::Sub, _) => (State::Sub, false),
                (State::SubIac, SE) => (State::Data, false),
                (State::SubIac, _) => (State::Sub, false),
            };
            self.state = next;
            if keep {
                buf[kept] = byte;
                kept += 1;
            }
        }
        kept
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

    /// The interrupt key (`IAC IP`) and other two-byte commands vanish.
    #[test]
    fn two_byte_commands_are_dropped() {
        assert_eq!(once(&[b'a', IAC, 244, b'b', IAC, 241, b'c']), b"abc");
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
                prop_oneof![Just(IAC), Just(SB), Just(SE), Just(WILL), Just(DONT), Just(244u8), any::<u8>()],
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

//! The token every benchmark line carries: `~B|sender|seq|t_ns~`.
//!
//! Servers decorate lines differently: chat-server prefixes every line with
//! `<guest-N> `, ncat prefixes every *read* with `<userN> ` (so a second line
//! of the same read has no prefix, and a line split across two reads gets a
//! prefix in its middle). The receiver therefore looks for the token anywhere
//! in a line; a token cut in two by a prefix no longer parses and the line
//! counts as garbled (and, since its identity is gone, as lost).

/// Opens a marker. Chosen so that no server notice can contain it.
pub const OPEN: &[u8] = b"~B|";

/// One parsed marker: who sent the line, its number, when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Index of the sending client among the senders (0-based).
    pub sender: usize,
    /// Per-sender sequence number, counting up from 0.
    pub seq: u64,
    /// Send time in nanoseconds since the generator's epoch (monotonic clock).
    pub t_ns: u64,
}

/// What a line holds, as far as the benchmark is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No marker at all: a notice, a welcome, a join line.
    None,
    /// A marker that parses.
    Marker(Marker),
    /// The opening of a marker whose rest does not parse.
    Garbled,
}

/// Appends one benchmark line of `len` bytes (newline included, at least the
/// marker's own length) to `out`.
pub fn write_line(out: &mut Vec<u8>, m: Marker, len: usize) {
    let start = out.len();
    out.extend_from_slice(OPEN);
    push_num(out, m.sender as u64);
    out.push(b'|');
    push_num(out, m.seq);
    out.push(b'|');
    push_num(out, m.t_ns);
    out.extend_from_slice(b"~ ");
    let body = out.len() - start;
    let pad = len.saturating_sub(body + 1);
    out.resize(out.len() + pad, b'x');
    out.push(b'\n');
}

fn push_num(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Looks for a marker anywhere in `line`.
pub fn find(line: &[u8], finder: &memchr::memmem::Finder<'_>) -> Found {
    let Some(at) = finder.find(line) else {
        return Found::None;
    };
    let rest = &line[at + OPEN.len()..];
    match parse(rest) {
        Some(m) => Found::Marker(m),
        None => Found::Garbled,
    }
}

fn parse(rest: &[u8]) -> Option<Marker> {
    let (sender, rest) = number(rest, b'|')?;
    let (seq, rest) = number(rest, b'|')?;
    let (t_ns, _) = number(rest, b'~')?;
    Some(Marker {
        sender: usize::try_from(sender).ok()?,
        seq,
        t_ns,
    })
}

/// Parses decimal digits up to `end`; `None` on anything else.
fn number(s: &[u8], end: u8) -> Option<(u64, &[u8])> {
    let stop = s.iter().position(|&b| b == end)?;
    if stop == 0 || stop > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &s[..stop] {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((n, &s[stop + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finder() -> memchr::memmem::Finder<'static> {
        memchr::memmem::Finder::new(OPEN)
    }

    #[test]
    fn round_trip_with_prefix_and_padding() {
        let m = Marker {
            sender: 7,
            seq: 12345,
            t_ns: 987_654_321,
        };
        let mut out = b"<guest-3> ".to_vec();
        write_line(&mut out, m, 64);
        assert_eq!(out.len(), 10 + 64);
        assert_eq!(*out.last().unwrap(), b'\n');
        assert_eq!(find(&out[..out.len() - 1], &finder()), Found::Marker(m));
    }

    #[test]
    fn short_len_still_holds_the_whole_marker() {
        let m = Marker {
            sender: 0,
            seq: 0,
            t_ns: 0,
        };
        let mut out = Vec::new();
        write_line(&mut out, m, 1);
        assert_eq!(out, b"~B|0|0|0~ \n");
    }

    #[test]
    fn split_marker_is_garbled() {
        assert_eq!(find(b"~B|3|12<user4> 3|45~", &finder()), Found::Garbled);
        assert_eq!(find(b"~B|3|12", &finder()), Found::Garbled);
        assert_eq!(find(b"* guest-4 joined (3 online)", &finder()), Found::None);
    }
}

//! `--udp`: each line typed is one datagram; the reply is printed.
//!
//! This is the UDP client of the labs (Kurose and Ross's `UDPClient`): no
//! connection, no framing, one request and at most one reply. Datagrams get
//! lost, so a reply that does not come within `--timeout` is a note on
//! stderr, not an error, and the next line goes out as usual.
//!
//! Each line goes out from a socket of its own (a fresh local port), so the
//! kernel hands a reply only to the socket of the line it answers: a reply
//! that comes after its line's timeout can never be read as the answer to
//! a later line, whenever it arrives. [`crate::late`] keeps the sockets of
//! lines that timed out and shows their late replies, marked as late.
//!
//! Each socket is `connect`ed to the server so the kernel drops datagrams
//! from anyone else and reports an ICMP "port unreachable" as a refusal,
//! which is how we move on to the host's next address (`localhost` may be
//! `::1` first while the server listens on IPv4 only).

use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use chat_common::datagram::MAX_DATAGRAM;

use crate::address::{summarize, Target};
use crate::args::Options;
use crate::error::{stdout_failure, words, Failure, Result};
use crate::late::{same_peer, Late};
use crate::tcp::secs;

/// A reply buffer one byte larger than any datagram we accept, so a
/// too-long reply is noticed rather than silently cut.
const REPLY_BUF: usize = 65_536;

/// Sends each stdin line as a datagram and prints the reply, until end of
/// stdin or `EXIT`; late replies that arrived by then are shown last.
///
/// # Errors
///
/// A name that does not resolve, no address we can send to, or a network
/// error other than a lost or refused datagram.
pub fn run(options: &Options) -> Result<()> {
    let addrs = options.target.resolve()?;
    let mut link = Link::open(&options.target, addrs, options.timeout)?;
    let mut input = io::stdin().lock();
    let mut line = Vec::with_capacity(MAX_LINE_READ);
    let mut reply = vec![0u8; REPLY_BUF];
    let mut number = 0u64;
    // A stdin that fails to read (a vanished terminal) has ended too.
    while let Ok(read) = read_line(&mut input, &mut line) {
        let payload = match read {
            Line::End => break,
            Line::Whole => chat_common::stop::without_line_end(&line),
            Line::TooLong(len) => {
                number += 1;
                link.late.drain(&mut reply);
                note(&too_long_note(number, len));
                continue;
            }
        };
        number += 1;
        if payload == chat_common::stop::EXIT.as_bytes() {
            break;
        }
        link.exchange(number, payload, &mut reply)?;
    }
    link.late.drain(&mut reply);
    Ok(())
}

/// Most bytes of one stdin line held at once: the largest datagram, and
/// room for its CR LF. A longer line cannot be sent anyway, so the rest of
/// it is skipped without being kept, and memory does not grow with the
/// length of a line (`head -c 400M /dev/zero | chat-client --udp ...`).
pub const MAX_LINE_READ: usize = MAX_DATAGRAM + 2;

/// What [`read_line`] found.
#[must_use]
enum Line {
    /// The end of stdin: no byte was left.
    End,
    /// A whole line is in the buffer, with its LF (none on a last line).
    Whole,
    /// A line over [`MAX_LINE_READ`] bytes, skipped up to and including its
    /// LF; its length without the line end, as [`without_line_end`] counts.
    ///
    /// [`without_line_end`]: chat_common::stop::without_line_end
    TooLong(u64),
}

/// Reads the next stdin line into `line` if it fits in [`MAX_LINE_READ`]
/// bytes; else skips it, reading a buffer at a time, and gives its length.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Line> {
    line.clear();
    let n = input
        .by_ref()
        .take(MAX_LINE_READ as u64)
        .read_until(b'\n', line)?;
    if n == 0 {
        return Ok(Line::End);
    }
    if line.last() == Some(&b'\n') || n < MAX_LINE_READ {
        return Ok(Line::Whole);
    }
    let mut len = n as u64;
    // The last byte before the LF (or the end): a CR there is line end too.
    let mut last = line.last().copied();
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buf.is_empty() {
            break;
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(at) => {
                if at > 0 {
                    last = Some(buf[at - 1]);
                }
                len += at as u64;
                input.consume(at + 1);
                break;
            }
            None => {
                let skipped = buf.len();
                last = buf.last().copied();
                len += skipped as u64;
                input.consume(skipped);
            }
        }
    }
    Ok(Line::TooLong(len - u64::from(last == Some(b'\r'))))
}

/// The note for a line that is not sent because no datagram can hold it.
fn too_long_note(number: u64, len: u64) -> String {
    format!(
        "line {number} not sent: {len} bytes do not fit in one datagram (at most {MAX_DATAGRAM})"
    )
}

/// Where the datagrams go, and the lines still waiting for a late reply.
struct Link<'a> {
    /// The server as the user named it, for notes and errors.
    target: &'a Target,
    /// Every address of the target; the ones before `current` refused.
    addrs: Vec<SocketAddr>,
    /// Which of `addrs` each line is sent to.
    current: usize,
    /// How long to wait for each reply.
    timeout: Duration,
    /// The sockets of lines that got no reply in time.
    late: Late,
}

impl<'a> Link<'a> {
    /// A link to the first address we can open a socket to.
    fn open(target: &'a Target, addrs: Vec<SocketAddr>, timeout: Duration) -> Result<Link<'a>> {
        let mut attempts = Vec::new();
        for (current, addr) in addrs.iter().enumerate() {
            // Each line opens its own socket; this one only proves we can.
            match socket_to(*addr) {
                Ok(_) => {
                    return Ok(Link {
                        target,
                        addrs,
                        current,
                        timeout,
                        late: Late::new(timeout),
                    })
                }
                Err(err) => attempts.push((*addr, words(&err))),
            }
        }
        Err(Failure::new(format!(
            "cannot send to {target} over UDP: {}",
            summarize(&attempts)
        )))
    }

    /// Moves to the next address that takes a socket; false if none is left.
    fn advance(&mut self) -> bool {
        while self.current + 1 < self.addrs.len() {
            self.current += 1;
            if socket_to(self.addrs[self.current]).is_ok() {
                return true;
            }
        }
        false
    }

    /// Shows the late replies that arrived, then sends line `number` from a
    /// new socket and prints its reply, or a note saying why none came.
    fn exchange(&mut self, number: u64, payload: &[u8], reply: &mut [u8]) -> Result<()> {
        let target = self.target;
        self.late.drain(reply);
        if payload.len() > MAX_DATAGRAM {
            note(&too_long_note(number, payload.len() as u64));
            return Ok(());
        }
        loop {
            let server = self.addrs[self.current];
            let socket = socket_to(server)
                .map_err(|err| Failure::new(format!("cannot send to {target}: {}", words(&err))))?;
            let received = match socket.send(payload) {
                Ok(_) => receive(&socket, server, self.timeout, reply),
                // Rare on a new socket (no earlier ICMP error is pending), but a
                // refusal here means what it means after the wait.
                Err(err) if err.kind() == ErrorKind::ConnectionRefused => Err(err),
                Err(err) => {
                    return Err(Failure::new(format!(
                        "cannot send to {target}: {}",
                        words(&err)
                    )))
                }
            };
            match received {
                Ok(Some(n)) => return print(&reply[..n]),
                Ok(None) => {
                    note(&format!(
                        "no reply to line {number} from {target} within {}: the datagram or its reply may be lost",
                        secs(self.timeout)
                    ));
                    self.late.watch(number, socket, server);
                    return Ok(());
                }
                Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                    if self.advance() {
                        continue;
                    }
                    note(&refused_note(number, target));
                    return Ok(());
                }
                Err(err) => {
                    return Err(Failure::new(format!(
                        "no reply from {target}: {}",
                        words(&err)
                    )))
                }
            }
        }
    }
}

/// Waits at most `timeout` for the server's datagram on `socket`; `None`
/// when none came. A datagram from anyone else (one queued before the
/// socket was connected) is skipped, not taken for the reply. `timeout` is
/// `--timeout`, at most [`MAX_TIMEOUT_SECS`], so its deadline is an
/// `Instant` far from overflow.
///
/// [`MAX_TIMEOUT_SECS`]: crate::args::MAX_TIMEOUT_SECS
fn receive(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
    buf: &mut [u8],
) -> io::Result<Option<usize>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(buf) {
            Ok((n, from)) if same_peer(from, server) => return Ok(Some(n)),
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(None)
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Prints one reply on stdout, as a line of its own.
fn print(reply: &[u8]) -> Result<()> {
    let mut stdout = io::stdout().lock();
    let end: &[u8] = if reply.last() == Some(&b'\n') {
        b""
    } else {
        b"\n"
    };
    stdout
        .write_all(reply)
        .and_then(|()| stdout.write_all(end))
        .and_then(|()| stdout.flush())
        .map_err(|err| stdout_failure(&err))
}

/// A socket of the right family on a fresh local port, connected to `addr`.
fn socket_to(addr: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    Ok(socket)
}

/// The note for a datagram the server's host turned away.
fn refused_note(number: u64, target: &Target) -> String {
    format!(
        "no reply to line {number} from {target}: the datagram was refused (nothing is listening on that UDP port)"
    )
}

/// One line on stderr that does not end the session.
fn note(text: &str) {
    eprintln!("chat-client: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    /// A line too long for a datagram is skipped up to its LF, through a
    /// buffer smaller than the line, and counted without its CR LF; the
    /// lines around it read as usual.
    #[test]
    fn a_too_long_line_is_skipped_and_counted() {
        let mut input = b"short\n".to_vec();
        input.extend(vec![b'x'; MAX_LINE_READ + 5]);
        input.extend(b"\r\nnext\n".iter());
        input.extend(vec![b'y'; MAX_LINE_READ]);
        let mut input = BufReader::with_capacity(7, Cursor::new(input));
        let mut line = Vec::new();
        let mut read = || match read_line(&mut input, &mut line).unwrap() {
            Line::End => "end".to_string(),
            Line::Whole => String::from_utf8(line.clone()).unwrap(),
            Line::TooLong(len) => format!("too long: {len}"),
        };
        assert_eq!(read(), "short\n");
        assert_eq!(read(), format!("too long: {}", MAX_LINE_READ + 5));
        assert_eq!(read(), "next\n");
        assert_eq!(read(), format!("too long: {MAX_LINE_READ}"));
        assert_eq!(read(), "end");
    }

    /// The longest line that fits, with its CR LF, is read whole.
    #[test]
    fn the_longest_datagram_line_is_whole() {
        let mut input = vec![b'x'; MAX_DATAGRAM];
        input.extend(b"\r\n".iter());
        let mut input = Cursor::new(input);
        let mut line = Vec::new();
        assert!(matches!(read_line(&mut input, &mut line), Ok(Line::Whole)));
        assert_eq!(
            chat_common::stop::without_line_end(&line).len(),
            MAX_DATAGRAM
        );
    }
}

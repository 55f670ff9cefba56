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

use std::io::{self, BufRead, ErrorKind, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use chat_common::datagram::MAX_DATAGRAM;

use crate::address::{summarize, Target};
use crate::args::Options;
use crate::error::{words, Failure, Result};
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
    let mut line = Vec::new();
    let mut reply = vec![0u8; REPLY_BUF];
    let mut number = 0u64;
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        number += 1;
        let payload = chat_common::stop::without_line_end(&line);
        if payload == chat_common::stop::EXIT.as_bytes() {
            break;
        }
        link.exchange(number, payload, &mut reply)?;
    }
    link.late.drain(&mut reply);
    Ok(())
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
            note(&format!(
                "line {number} not sent: {} bytes do not fit in one datagram (at most {MAX_DATAGRAM})",
                payload.len()
            ));
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
/// socket was connected) is skipped, not taken for the reply.
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
        .map_err(|err| Failure::new(format!("cannot print to stdout: {}", words(&err))))
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

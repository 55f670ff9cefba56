//! `--udp`: each line typed is one datagram; the reply is printed.
//!
//! This is the UDP client of the labs (Kurose and Ross's `UDPClient`): no
//! connection, no framing, one request and at most one reply. Datagrams get
//! lost, so a reply that does not come within `--timeout` is a note on
//! stderr, not an error, and the next line goes out as usual. The socket is
//! `connect`ed to the server so the kernel drops datagrams from anyone else
//! and reports an ICMP "port unreachable" as a refusal, which is how we move
//! on to the host's next address (`localhost` may be `::1` first while the
//! server listens on IPv4 only).

use std::io::{self, BufRead, ErrorKind, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use chat_common::datagram::MAX_DATAGRAM;

use crate::address::{summarize, Target};
use crate::args::Options;
use crate::error::{words, Failure, Result};
use crate::tcp::secs;

/// A reply buffer one byte larger than any datagram we accept, so a
/// too-long reply is noticed rather than silently cut.
const REPLY_BUF: usize = 65_536;

/// Sends each stdin line as a datagram and prints the reply, until end of
/// stdin or `EXIT`.
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
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
        let payload = chat_common::stop::without_line_end(&line);
        if payload == chat_common::stop::EXIT.as_bytes() {
            return Ok(());
        }
        link.exchange(payload, &mut reply)?;
    }
}

/// A UDP socket connected to one of the target's addresses.
struct Link<'a> {
    /// The server as the user named it, for notes and errors.
    target: &'a Target,
    /// Every address of the target; the ones before `current` refused.
    addrs: Vec<SocketAddr>,
    /// Which of `addrs` the socket is connected to.
    current: usize,
    /// Connected to `addrs[current]`, with the reply timeout set.
    socket: UdpSocket,
    /// How long to wait for each reply.
    timeout: Duration,
}

impl<'a> Link<'a> {
    /// A socket connected to the first address we can send to.
    fn open(target: &'a Target, addrs: Vec<SocketAddr>, timeout: Duration) -> Result<Link<'a>> {
        let mut attempts = Vec::new();
        for (current, addr) in addrs.iter().enumerate() {
            match socket_to(*addr, timeout) {
                Ok(socket) => {
                    return Ok(Link {
                        target,
                        addrs,
                        current,
                        socket,
                        timeout,
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
            if let Ok(socket) = socket_to(self.addrs[self.current], self.timeout) {
                self.socket = socket;
                return true;
            }
        }
        false
    }

    /// Sends one datagram and prints its reply, or a note saying why none
    /// came.
    fn exchange(&mut self, payload: &[u8], reply: &mut [u8]) -> Result<()> {
        let target = self.target;
        if payload.len() > MAX_DATAGRAM {
            note(&format!(
                "line not sent: {} bytes do not fit in one datagram (at most {MAX_DATAGRAM})",
                payload.len()
            ));
            return Ok(());
        }
        loop {
            if let Err(err) = self.socket.send(payload) {
                // A refusal reported by an earlier datagram's ICMP shows up here.
                if err.kind() == ErrorKind::ConnectionRefused {
                    if self.advance() {
                        continue;
                    }
                    note(&refused(target));
                    return Ok(());
                }
                return Err(Failure::new(format!(
                    "cannot send to {target}: {}",
                    words(&err)
                )));
            }
            match self.socket.recv(reply) {
                Ok(n) => {
                    let mut out = reply[..n].to_vec();
                    if out.last() != Some(&b'\n') {
                        out.push(b'\n');
                    }
                    let mut stdout = io::stdout().lock();
                    return stdout
                        .write_all(&out)
                        .and_then(|()| stdout.flush())
                        .map_err(|err| {
                            Failure::new(format!("cannot print to stdout: {}", words(&err)))
                        });
                }
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    note(&format!(
                        "no reply from {target} within {}: the datagram or its reply may be lost",
                        secs(self.timeout)
                    ));
                    return Ok(());
                }
                Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                    if self.advance() {
                        continue;
                    }
                    note(&refused(target));
                    return Ok(());
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
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

/// A socket of the right family, connected to `addr`, waiting at most
/// `timeout` for each reply.
fn socket_to(addr: SocketAddr, timeout: Duration) -> io::Result<UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(timeout))?;
    Ok(socket)
}

/// The note for a datagram the server's host turned away.
fn refused(target: &Target) -> String {
    format!(
        "no reply from {target}: the datagram was refused (nothing is listening on that UDP port)"
    )
}

/// One line on stderr that does not end the session.
fn note(text: &str) {
    eprintln!("chat-client: {text}");
}

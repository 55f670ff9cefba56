//! Clients that act as other hosts: each binds a source address in
//! 127.0.0.0/8 (all of it is loopback on Linux) before it connects, so the
//! server sees distinct addresses for its per-address limits.
//!
//! Every read has a timeout; a failure message says what was seen.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::TIMEOUT;

/// `127.0.0.n`: the address of test host `n`.
pub fn host(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A TCP connection to `server` from `source` (any port).
///
/// # Panics
/// When binding or connecting fails within [`TIMEOUT`].
pub fn connect_from(server: SocketAddr, source: Ipv4Addr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    socket
        .connect_timeout(&server.into(), TIMEOUT)
        .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
    stream
}

/// A line-reading client from a chosen source address.
pub struct HostClient {
    reader: BufReader<TcpStream>,
}

impl HostClient {
    /// Connects from `source` without reading anything.
    pub fn connect(server: SocketAddr, source: Ipv4Addr) -> HostClient {
        HostClient {
            reader: BufReader::new(connect_from(server, source)),
        }
    }

    /// Sends bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("write to server");
    }

    /// Sends `line` and a LF.
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// The next line (without LF) within `timeout`; `None` on timeout, end
    /// of stream or reset. Invalid UTF-8 is shown as U+FFFD.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<String> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set timeout");
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => Some(
                String::from_utf8_lossy(&buf)
                    .trim_end_matches('\n')
                    .to_string(),
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::ConnectionReset
                ) =>
            {
                None
            }
            Err(e) => panic!("read from server: {e}"),
        }
    }

    /// The next line, failing the test if none comes within [`TIMEOUT`].
    pub fn recv(&mut self) -> String {
        self.try_recv(TIMEOUT)
            .unwrap_or_else(|| panic!("no line from server within {TIMEOUT:?}"))
    }

    /// Reads lines until one satisfies `pred` (within [`TIMEOUT`]); returns
    /// every line read, the match last.
    pub fn recv_until(&mut self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_recv(left) {
                Some(line) => {
                    let done = pred(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                None => panic!("no matching line; saw {seen:?}"),
            }
        }
    }

    /// Every line that arrives until none has come for `quiet` (or
    /// `within` has passed in all).
    pub fn drain(&mut self, quiet: Duration, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.try_recv(quiet.min(deadline.saturating_duration_since(Instant::now()))) {
                Some(line) => seen.push(line),
                None => break,
            }
        }
        seen
    }

    /// The underlying stream.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }
}

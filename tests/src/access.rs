//! Helpers for the moderation and access tests (`tests/tests/access.rs`):
//! connections from chosen loopback addresses, so one machine can play many
//! hosts (every 127.x.y.z is its own address to the server), and scratch
//! directories for ban lists and password files.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::TIMEOUT;

/// `127.0.0.N` (or any `127.a.b.c`): the address a test host speaks from.
pub fn loopback(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

/// A connection to the server from a chosen source address; every read
/// has a timeout.
pub struct Host {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Host {
    /// Connects to `server` from `source` (port chosen by the kernel).
    pub fn connect(server: SocketAddr, source: IpAddr) -> Host {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(server),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .unwrap_or_else(|e| panic!("bind to {source}: {e}"));
        socket
            .connect_timeout(&server.into(), TIMEOUT)
            .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        Host {
            writer: stream.try_clone().expect("clone"),
            reader: BufReader::new(stream),
        }
    }

    /// Connects and reads the password prompt, then sends `/pass password`
    /// and reads the welcome; returns the client's name.
    pub fn pass(server: SocketAddr, source: IpAddr, password: &str) -> (Host, String) {
        let mut host = Host::connect(server, source);
        let ask = host.recv();
        assert!(ask.starts_with("* ") && ask.contains("/pass"), "{ask:?}");
        host.send(&format!("/pass {password}"));
        let welcome = host.recv();
        let name = crate::welcome_name(&welcome)
            .unwrap_or_else(|| panic!("not a welcome: {welcome:?}"))
            .to_string();
        (host, name)
    }

    /// Connects and reads the welcome; returns the client's name.
    pub fn join(server: SocketAddr, source: IpAddr) -> (Host, String) {
        let mut host = Host::connect(server, source);
        let welcome = host.recv();
        let name = crate::welcome_name(&welcome)
            .unwrap_or_else(|| panic!("not a welcome from {source}: {welcome:?}"))
            .to_string();
        (host, name)
    }

    /// Sends `line` and a LF.
    pub fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to server");
    }

    /// The next line (without LF); fails the test if none comes in time.
    pub fn recv(&mut self) -> String {
        self.try_recv(TIMEOUT)
            .unwrap_or_else(|| panic!("no line from the server within {TIMEOUT:?}"))
    }

    /// The next line within `timeout`; `None` on timeout, end of stream or
    /// reset.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<String> {
        let stream = self.reader.get_ref();
        stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => Some(
                String::from_utf8_lossy(&buf)
                    .trim_end_matches('\n')
                    .to_string(),
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read from server: {e}"),
        }
    }

    /// Reads until one line satisfies `pred`; returns every line read.
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

    /// Reads to end of stream; returns the lines on the way. Fails the test
    /// if the server keeps the connection open past [`TIMEOUT`].
    pub fn recv_to_eof(&mut self) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "connection still open; saw {seen:?}");
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .expect("timeout");
            let mut buf = Vec::new();
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => return seen,
                Ok(_) => seen.push(String::from_utf8_lossy(&buf).trim_end().to_string()),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return seen,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read from server: {e}; saw {seen:?}"),
            }
        }
    }

    /// Asserts that nothing arrives for `quiet`.
    pub fn assert_silent(&mut self, quiet: Duration) {
        if let Some(line) = self.try_recv(quiet) {
            panic!("expected silence, got {line:?}");
        }
    }
}

/// A scratch directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chat-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A file in it, written with `text`; returns its path as a string.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write scratch file");
        path.to_str().expect("UTF-8 temp path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

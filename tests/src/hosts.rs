//! Clients that act as other hosts: each binds a source address before it
//! connects (all of 127.0.0.0/8 is loopback on Linux, and every 127.x.y.z
//! is its own address to the server; `::1` for IPv6), so one machine plays
//! many hosts for the per-address limits, bans and lockouts.
//!
//! A [`Host`] is a [`Client`] (every read has a timeout, a line cut by a
//! timeout is kept for the next read) that knows how to connect from an
//! address, join, and give the password. Scratch folders for ban lists and
//! password files are [`crate::labs::Scratch`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::{welcome_name, Client, TIMEOUT};

/// `127.a.b.c`: the address a test host speaks from.
pub fn loopback(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

/// A TCP connection to `server` from `source` (any port; IPv4 or IPv6, of
/// `server`'s family), with a read timeout of [`TIMEOUT`].
///
/// # Panics
/// When binding or connecting fails within [`TIMEOUT`].
pub fn connect_from(server: SocketAddr, source: IpAddr) -> TcpStream {
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
    stream.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
    stream
}

/// A client connected from a chosen source address: everything a
/// [`Client`] does (`send`, `send_raw`, `recv`, `try_recv`, `recv_until`,
/// `recv_to_eof`, `assert_silent`), and [`Host::drain`].
pub struct Host {
    client: Client,
}

impl Host {
    /// Connects from `source` without reading anything.
    pub fn connect(server: SocketAddr, source: IpAddr) -> Host {
        Host {
            client: Client::from_stream(connect_from(server, source)),
        }
    }

    /// Connects from `source` and reads the welcome; returns the client and
    /// its name.
    pub fn join(server: SocketAddr, source: IpAddr) -> (Host, String) {
        let mut host = Host::connect(server, source);
        let name = host.welcomed(source);
        (host, name)
    }

    /// Connects from `source`, reads the password prompt, sends `/pass
    /// password` and reads the welcome; returns the client and its name.
    pub fn pass(server: SocketAddr, source: IpAddr, password: &str) -> (Host, String) {
        let mut host = Host::connect(server, source);
        let ask = host.recv();
        assert!(ask.starts_with("* ") && ask.contains("/pass"), "{ask:?}");
        host.send(&format!("/pass {password}"));
        let name = host.welcomed(source);
        (host, name)
    }

    fn welcomed(&mut self, source: IpAddr) -> String {
        let welcome = self.recv();
        welcome_name(&welcome)
            .unwrap_or_else(|| panic!("not a welcome from {source}: {welcome:?}"))
            .to_string()
    }

    /// Every line that arrives until none has come for `quiet` (or
    /// `within` has passed in all).
    pub fn drain(&mut self, quiet: Duration, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return seen;
            }
            match self.try_recv(quiet.min(left)) {
                Some(line) => seen.push(line),
                None => return seen,
            }
        }
    }
}

impl Deref for Host {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Host {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

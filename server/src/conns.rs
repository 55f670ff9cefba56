//! Every live TCP connection, whatever the mode: the per-address cap, and
//! the handles shutdown and `/ban` use to wake readers blocked in `read`.
//!
//! A connection is registered on the accept thread before it is handed to
//! the pool, and unregistered when its [`Tracked`] guard drops (served,
//! refused, or never started because the server stopped). So the per-address
//! count covers waiting connections too, and [`Connections::close_all`] and
//! [`Connections::close_where`] reach every socket that a worker may still
//! read from: one waiting in the pool's line (its watcher then drops it,
//! and its [`crate::unserved::Unserved`] guard tells it why), one at the
//! password prompt (which then sees end of stream), one in the room.
//!
//! Each socket is one `Arc<TcpStream>`: the reader, the writer and this table
//! share one descriptor, so 10,000 clients cost 10,000 descriptors, not
//! 30,000.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use parking_lot::Mutex;

/// Live connections and per-address counts.
pub struct Connections {
    /// The table and the counts, under one short lock: never held across
    /// I/O (a `/ban` copies the streams out before shutting them).
    inner: Mutex<Inner>,
    /// `--max-per-ip`; 0 = no cap.
    max_per_ip: u32,
    /// `--limit-loopback`: apply the cap to loopback addresses too.
    limit_loopback: bool,
}

#[derive(Default)]
struct Inner {
    /// By descriptor: unique among live connections, since each entry holds
    /// its socket open until its [`Tracked`] guard removes it. So a worker
    /// that has only the stream can find its entry ([`Connections::entered`]).
    live: HashMap<RawFd, Live>,
    /// Live connections per address, for `--max-per-ip`; an address
    /// leaves the map with its last connection.
    per_ip: HashMap<IpAddr, u32>,
    /// Most connections open at once since start.
    peak: usize,
}

/// One live connection.
struct Live {
    /// Its socket, so `/ban`, a lockout and the shutdown can shut its read
    /// side whoever holds it (the pool, a worker).
    stream: Arc<TcpStream>,
    /// Its peer's address (IPv4 as IPv4), for [`Connections::close_where`].
    ip: IpAddr,
    /// How far it got, so a lockout closes those still outside only.
    stage: Stage,
}

/// How far a connection got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for a worker, at the password prompt, or served in a mode
    /// with no room (echo, upper, file).
    Outside,
    /// Past the ban and the password: a chat client in (or joining) the room.
    Entered,
}

/// Refusal: this address already holds `--max-per-ip` connections.
#[derive(Debug)]
pub struct TooMany(pub u32);

impl Connections {
    /// An empty table.
    pub fn new(max_per_ip: u32, limit_loopback: bool) -> Arc<Connections> {
        Arc::new(Connections {
            inner: Mutex::new(Inner::default()),
            max_per_ip,
            limit_loopback,
        })
    }

    /// Registers a new connection from `ip`.
    ///
    /// # Errors
    /// [`TooMany`] when `ip` is at its cap.
    pub fn admit(self: &Arc<Self>, stream: Arc<TcpStream>, ip: IpAddr) -> Result<Tracked, TooMany> {
        // On a dual-stack (`::`) listener an IPv4 client arrives as
        // `::ffff:a.b.c.d`: count it, and judge loopback, as IPv4.
        let ip = ip.to_canonical();
        let capped = self.max_per_ip > 0 && (self.limit_loopback || !ip.is_loopback());
        let mut inner = self.inner.lock();
        let count = inner.per_ip.entry(ip).or_insert(0);
        if capped && *count >= self.max_per_ip {
            return Err(TooMany(self.max_per_ip));
        }
        *count += 1;
        let fd = stream.as_raw_fd();
        inner.live.insert(
            fd,
            Live {
                stream,
                ip,
                stage: Stage::Outside,
            },
        );
        inner.peak = inner.peak.max(inner.live.len());
        Ok(Tracked {
            table: Arc::clone(self),
            fd,
            ip,
        })
    }

    /// Marks the connection on `stream` as past the access checks
    /// ([`Stage::Entered`]).
    pub fn entered(&self, stream: &TcpStream) {
        if let Some(live) = self.inner.lock().live.get_mut(&stream.as_raw_fd()) {
            live.stage = Stage::Entered;
        }
    }

    /// Wakes every reader: a `read` blocked on any connection returns end of
    /// stream. Writing still works, so queued lines can still go out.
    pub fn close_all(&self) {
        self.close_where(|_, _| true);
    }

    /// Wakes the reader of every connection whose address and stage satisfy
    /// `pred` (`/ban`, a password lockout), as [`Connections::close_all`]
    /// does for all: a `read` returns end of stream, writing still works,
    /// so the reader can still say why. Returns how many.
    pub fn close_where(&self, pred: impl Fn(IpAddr, Stage) -> bool) -> usize {
        let streams: Vec<_> = self
            .inner
            .lock()
            .live
            .values()
            .filter(|live| pred(live.ip, live.stage))
            .map(|live| Arc::clone(&live.stream))
            .collect();
        for stream in &streams {
            let _ = stream.shutdown(Shutdown::Read);
        }
        streams.len()
    }

    /// Most connections open at once since start.
    pub fn peak(&self) -> usize {
        self.inner.lock().peak
    }
}

/// A registered connection; unregisters on drop, on every path.
pub struct Tracked {
    /// The table it is registered in, to unregister from on drop.
    table: Arc<Connections>,
    /// Its key in the table: unique while this guard lives, since the
    /// entry holds the socket open.
    fd: RawFd,
    /// Its address's count to take one from on drop.
    ip: IpAddr,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut inner = self.table.inner.lock();
        inner.live.remove(&self.fd);
        if let Some(count) = inner.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                inner.per_ip.remove(&self.ip);
            }
        }
    }
}

//! Every live TCP connection, whatever the mode: the per-address cap, and
//! the handles shutdown uses to wake readers blocked in `read`.
//!
//! A connection is registered on the accept thread before it is handed to
//! the pool, and unregistered when its [`Tracked`] guard drops (served,
//! refused, or never started because the server stopped). So the per-address
//! count covers waiting connections too, and [`Connections::close_all`] reaches
//! every socket that a worker may still read from.
//!
//! Each socket is one `Arc<TcpStream>`: the reader, the writer and this table
//! share one descriptor, so 10,000 clients cost 10,000 descriptors, not
//! 30,000.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::Arc;

use parking_lot::Mutex;

/// Live connections and per-address counts.
pub struct Connections {
    inner: Mutex<Inner>,
    /// `--max-per-ip`; 0 = no cap.
    max_per_ip: u32,
    /// `--limit-loopback`: apply the cap to loopback addresses too.
    limit_loopback: bool,
}

#[derive(Default)]
struct Inner {
    live: HashMap<u64, Arc<TcpStream>>,
    per_ip: HashMap<IpAddr, u32>,
    next_id: u64,
    /// Most connections open at once since start.
    peak: usize,
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
        inner.next_id += 1;
        let id = inner.next_id;
        inner.live.insert(id, stream);
        inner.peak = inner.peak.max(inner.live.len());
        Ok(Tracked {
            table: Arc::clone(self),
            id,
            ip,
        })
    }

    /// Wakes every reader: a `read` blocked on any connection returns end of
    /// stream. Writing still works, so queued lines can still go out.
    pub fn close_all(&self) {
        let streams: Vec<_> = self.inner.lock().live.values().cloned().collect();
        for stream in streams {
            let _ = stream.shutdown(Shutdown::Read);
        }
    }

    /// Most connections open at once since start.
    pub fn peak(&self) -> usize {
        self.inner.lock().peak
    }
}

/// A registered connection; unregisters on drop, on every path.
pub struct Tracked {
    table: Arc<Connections>,
    id: u64,
    ip: IpAddr,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut inner = self.table.inner.lock();
        inner.live.remove(&self.id);
        if let Some(count) = inner.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                inner.per_ip.remove(&self.ip);
            }
        }
    }
}

//! A TCP proxy on a free loopback port between one chat server and its
//! Redis, that a test cuts and heals: the server alone is cut off from
//! Redis (its connections closed, new ones closed at once), while Redis
//! keeps its data and serves the other servers. Nothing sent through a
//! cut connection reaches Redis later.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// The proxy; its threads end, and its connections close, on drop.
pub struct Proxy {
    /// Where it listens.
    addr: SocketAddr,
    /// Set while cut: a new connection is closed as soon as accepted.
    cut: Arc<AtomicBool>,
    /// Set on drop: the accept loop ends at its next connection.
    stopped: Arc<AtomicBool>,
    /// Both ends of every connection passed on, for a cut to close them.
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// A proxy to `to`, passing connections through until [`Proxy::cut`].
    pub fn start(to: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on port 0");
        let addr = listener.local_addr().expect("the proxy's address");
        let proxy = Proxy {
            addr,
            cut: Arc::default(),
            stopped: Arc::default(),
            open: Arc::default(),
        };
        let (cut, stopped, open) = (
            Arc::clone(&proxy.cut),
            Arc::clone(&proxy.stopped),
            Arc::clone(&proxy.open),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                // Checked under the lock a cut takes: a connection is
                // either closed here or listed for the cut to close.
                let mut listed = open.lock().unwrap();
                if cut.load(Ordering::Acquire) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(to) else {
                    continue;
                };
                for stream in [&client, &upstream] {
                    listed.push(stream.try_clone().expect("clone a proxied stream"));
                }
                drop(listed);
                pipe(
                    client.try_clone().expect("clone"),
                    upstream.try_clone().expect("clone"),
                );
                pipe(upstream, client);
            }
        });
        proxy
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `--redis` URL that goes through the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Cuts every connection through it now (an end of stream at both
    /// ends; what was sent and not yet passed on is dropped), and closes
    /// each new one at once until [`Proxy::heal`].
    pub fn cut(&self) {
        let mut open = self.open.lock().unwrap();
        self.cut.store(true, Ordering::Release);
        for stream in open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// New connections pass through again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        self.cut();
        // Wakes the accept loop, which then sees it is stopped.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` on a thread until either end closes, then closes
/// both directions of both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

//! A TCP proxy between a link and Redis that the tests cut, hold and
//! release: a connection broken or stalled on demand.

use super::*;

/// A TCP proxy between a writer and Redis that can hold what the writer
/// sends on its open connections (a cut whose bytes TCP still retransmits),
/// refuse new connections meanwhile, and deliver the held bytes late.
pub(super) struct Proxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    /// New connections are refused while set.
    holding: bool,
    /// Connections refused so far.
    refused: usize,
    /// Redis's replies are dropped, and their connection closed, while set.
    eating: bool,
    /// Every connection passed on.
    conns: Vec<Arc<Mutex<Piped>>>,
}

struct Piped {
    /// To Redis.
    upstream: std::net::TcpStream,
    /// What the client sent while held: `None` while passing through.
    held: Option<Vec<u8>>,
    /// Every byte Redis answered on it.
    replies: Vec<u8>,
}

impl Proxy {
    pub(super) fn start(to: std::net::SocketAddr) -> Proxy {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut state = shared.lock();
                if state.holding {
                    state.refused += 1;
                    continue;
                }
                let upstream = std::net::TcpStream::connect(to).unwrap();
                let mut from_redis = upstream.try_clone().unwrap();
                let mut to_client = client.try_clone().unwrap();
                let piped = Arc::new(Mutex::new(Piped {
                    upstream,
                    held: None,
                    replies: Vec::new(),
                }));
                state.conns.push(Arc::clone(&piped));
                let up = Arc::clone(&piped);
                let eating = Arc::clone(&shared);
                thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = client.read(&mut buf) {
                        let mut p = up.lock();
                        match &mut p.held {
                            Some(held) => held.extend_from_slice(&buf[..n]),
                            None => {
                                if p.upstream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
                thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = from_redis.read(&mut buf) {
                        if eating.lock().eating {
                            let _ = to_client.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        piped.lock().replies.extend_from_slice(&buf[..n]);
                        let _ = to_client.write_all(&buf[..n]);
                    }
                });
            }
        });
        Proxy { port, state }
    }

    pub(super) fn url(&self) -> RedisUrl {
        RedisUrl::parse(&format!("redis://127.0.0.1:{}", self.port)).unwrap()
    }

    /// The cut: open connections' bytes are held, new ones refused.
    pub(super) fn hold(&self) {
        let mut state = self.state.lock();
        state.holding = true;
        for conn in &state.conns {
            conn.lock().held.get_or_insert_with(Vec::new);
        }
    }

    /// The network fails just after a request got through: Redis's next
    /// replies are dropped and their connections closed (an end of
    /// stream, not a timeout), and new connections refused.
    pub(super) fn eat_replies(&self) {
        let mut state = self.state.lock();
        state.holding = true;
        state.eating = true;
    }

    /// New connections pass again (the held ones stay held).
    pub(super) fn heal(&self) {
        self.state.lock().holding = false;
    }

    /// How many bytes are held.
    pub(super) fn held(&self) -> usize {
        let state = self.state.lock();
        state
            .conns
            .iter()
            .map(|c| c.lock().held.as_ref().map_or(0, Vec::len))
            .sum()
    }

    /// How many connections were refused while holding.
    pub(super) fn refused(&self) -> usize {
        self.state.lock().refused
    }

    /// The held bytes reach Redis, late, followed by a PING on the same
    /// connection; returns once Redis answered that PING (so it has applied
    /// all of them).
    pub(super) fn deliver_late(&self) {
        use std::io::Write;
        let conns = self.state.lock().conns.clone();
        for conn in conns {
            let mut p = conn.lock();
            let Some(mut held) = p.held.take() else {
                continue;
            };
            if held.is_empty() {
                continue;
            }
            held.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            p.replies.clear();
            p.upstream.write_all(&held).unwrap();
            drop(p);
            let deadline = Instant::now() + DEADLINE;
            while !conn.lock().replies.ends_with(b"+PONG\r\n") {
                assert!(Instant::now() < deadline, "the late bytes never answered");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

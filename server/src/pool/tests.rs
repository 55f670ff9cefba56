//! Unit tests of the worker pool.

use super::*;
use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc;

/// A connected loopback pair: (our side, the server's side).
fn pair() -> (TcpStream, Arc<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (served, _) = listener.accept().expect("accept");
    (client, Arc::new(served))
}

/// Sends on `tx` when dropped: tells whether a job was dropped unrun.
struct Dropped(mpsc::Sender<&'static str>);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.send("dropped");
    }
}

/// A pool of one worker, kept busy until the returned sender is
/// dropped (with the busy job's open connection).
fn busy_pool() -> (Pool, (mpsc::Sender<()>, TcpStream)) {
    let mut pool = Pool::new(1, 2);
    let (release, wait) = mpsc::channel::<()>();
    let (peer, busy) = pair();
    let ticket = pool.reserve().expect("a worker");
    assert_eq!(ticket.waiting(), None);
    pool.execute(
        ticket,
        Box::new(move || {
            let _ = wait.recv();
        }),
        busy,
    );
    (pool, (release, peer))
}

/// A waiting connection whose peer closes is dropped unrun within a
/// second, and its place in line is free again.
#[test]
fn a_waiter_that_closes_leaves_the_line() {
    let (mut pool, release) = busy_pool();
    let (client, served) = pair();
    let (tx, rx) = mpsc::channel();
    let ticket = pool.reserve().expect("a place in line");
    assert_eq!(ticket.waiting(), Some(1));
    let guard = Dropped(tx.clone());
    pool.execute(
        ticket,
        Box::new(move || {
            let _guard = guard;
            let _ = tx.send("ran");
        }),
        served,
    );
    let closed = Instant::now();
    drop(client);
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok("dropped"));
    assert!(closed.elapsed() < Duration::from_secs(1));
    let again = pool.reserve().expect("a place in line");
    assert_eq!(again.waiting(), Some(1), "its place was given back");
    drop(again);
    drop(release);
    drop(pool);
    assert!(rx.try_recv().is_err(), "it never ran");
}

/// A waiting connection that sent a line and half-closed has not given
/// up: it keeps its place and is served when the worker frees.
#[test]
fn a_waiter_that_half_closed_after_sending_is_served() {
    let (mut pool, release) = busy_pool();
    let (mut client, served) = pair();
    client.write_all(b"last words\n").expect("write");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let (tx, rx) = mpsc::channel();
    let ticket = pool.reserve().expect("a place in line");
    pool.execute(
        ticket,
        Box::new(move || {
            let _ = tx.send("ran");
        }),
        served,
    );
    assert!(
        rx.recv_timeout(WATCH_INTERVAL * 4).is_err(),
        "still waiting, not dropped"
    );
    drop(release);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("ran"));
}

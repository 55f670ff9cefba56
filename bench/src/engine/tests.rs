//! The engine's reads against a server of the test's own.

use super::*;
use std::net::TcpListener;

/// An engine with one client (a stalled one if `stalled`), connected
/// to a server of the test's own and ready (welcomed), and that
/// server's end of the connection.
fn one_client(stalled: bool) -> (Engine, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let shape = Shape {
        clients: usize::from(!stalled),
        senders: 0,
        stalled: usize::from(stalled),
        rooms: 0,
        order: false,
    };
    let mut engine = Engine::new(&[listener.local_addr().unwrap()], shape).unwrap();
    engine.open().unwrap();
    let (mut server, _) = listener.accept().unwrap();
    server.write_all(b"* welcome, guest-1!\n").unwrap();
    engine.connect_all(Duration::from_secs(5)).unwrap();
    (engine, server)
}

/// A socket emptied by a short read (the engine does not read again to
/// see it would block) still reports what comes later: more lines, and
/// the server closing it.
#[test]
fn a_short_read_still_sees_what_comes_later() {
    let (mut engine, mut server) = one_client(false);
    assert_eq!(engine.held(), 1);
    let before = engine.last_rx;
    server.write_all(b"* guest-2 joined\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.last_rx == before {
        assert!(Instant::now() < deadline, "the second line was never read");
        engine.pump(Duration::from_millis(50)).unwrap();
    }
    drop(server);
    while engine.held() == 1 {
        assert!(Instant::now() < deadline, "the close was never seen");
        engine.pump(Duration::from_millis(50)).unwrap();
    }
}

/// A stalled client let its edges pass unread; its last read (at the
/// end of a run) goes on past the lines to the server's close. It
/// stopped at the first short read before, and (e) counted no stalled
/// client dropped.
#[test]
fn a_stalled_clients_last_read_finds_the_close_behind_its_lines() {
    let (mut engine, mut server) = one_client(true);
    server.write_all(&[b'x'; 1000]).unwrap();
    drop(server);
    // Until the engine has had (and, stalled, not read) the event.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !engine
        .batch
        .iter()
        .any(|&(i, readable, _)| i == 0 && readable)
    {
        assert!(Instant::now() < deadline, "no event for the lines");
        engine.pump(Duration::from_millis(50)).unwrap();
    }
    // And until the close is behind them in the socket: the event may
    // come for the lines alone, the close a moment later (seen under
    // load), and the one read below must find it there.
    let port = engine.clients[0].stream.local_addr().unwrap().port();
    while !close_received(port) {
        assert!(Instant::now() < deadline, "the close never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(engine.held(), 1);
    engine.read_stalled = true;
    engine.read(0);
    assert_eq!(engine.held(), 0, "the close behind the lines was not read");
}

/// Whether the loopback socket bound to local `port` has had its peer's
/// close (state CLOSE_WAIT in /proc/net/tcp).
fn close_received(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields
            .get(1)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        local_port == Some(port) && fields.get(3) == Some(&"08")
    })
}

/// The helper above: a socket whose peer closed is seen so, an open one
/// is not.
#[test]
fn close_received_sees_a_peer_close() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let port = client.local_addr().unwrap().port();
    assert!(!close_received(port));
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !close_received(port) {
        assert!(Instant::now() < deadline, "a close never seen");
        std::thread::sleep(Duration::from_millis(5));
    }
}

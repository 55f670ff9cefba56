//! Self-tests of the test helpers (tests/src): a helper that loses bytes
//! lets a broken server pass. These talk to a fake server on a local
//! listener, so they pin the helper's behaviour, not the chat server's.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use chat_tests::Client;

/// A short wait that a partial line outlasts.
const SHORT: Duration = Duration::from_millis(200);

/// A client connected to a fake server; the server's end of the socket.
fn pair() -> (Client, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = Client::connect(listener.local_addr().expect("addr"));
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// Bytes of a line read before a timeout are kept: the next call returns
/// the whole line, not its tail.
#[test]
fn try_recv_keeps_a_partial_line_across_a_timeout() {
    let (mut client, mut server) = pair();
    server.write_all(b"par").expect("send");
    assert_eq!(client.try_recv(SHORT), None);
    server.write_all(b"tial\nnext\n").expect("send");
    assert_eq!(client.try_recv(SHORT).as_deref(), Some("partial"));
    assert_eq!(client.recv(), "next");
}

/// `assert_silent` fails when part of a line arrived, even with no LF.
#[test]
#[should_panic(expected = "part of a line")]
fn assert_silent_sees_a_partial_line() {
    let (mut client, mut server) = pair();
    server.write_all(b"no newline yet").expect("send");
    client.assert_silent(SHORT);
}

/// `assert_silent` passes when nothing at all arrives.
#[test]
fn assert_silent_passes_on_silence() {
    let (mut client, _server) = pair();
    client.assert_silent(SHORT);
}

/// `recv_to_eof` returns a partial line kept from an earlier timeout.
#[test]
fn recv_to_eof_includes_a_kept_partial_line() {
    let (mut client, mut server) = pair();
    server.write_all(b"half").expect("send");
    assert_eq!(client.try_recv(SHORT), None);
    server.write_all(b" line\nlast\n").expect("send");
    drop(server);
    assert_eq!(client.recv_to_eof(), vec!["half line", "last"]);
}

/// A zero timeout (what `recv_until` passes once its deadline is past) is
/// "nothing yet", not a panic on `set_read_timeout(Some(0))`; a line that
/// is already there is still returned.
#[test]
fn try_recv_with_no_time_left_does_not_panic() {
    let (mut client, mut server) = pair();
    assert_eq!(client.try_recv(Duration::ZERO), None);
    server.write_all(b"ready\n").expect("send");
    assert_eq!(client.try_recv(SHORT), Some("ready".to_string()));
    server.write_all(b"there\n").expect("send");
    let deadline = std::time::Instant::now() + chat_tests::TIMEOUT;
    let mut got = None;
    while got.is_none() && std::time::Instant::now() < deadline {
        got = client.try_recv(Duration::ZERO);
    }
    assert_eq!(got.as_deref(), Some("there"));
}

/// `run_server_to_exit` returns the real exit code and all of stderr: a bad
/// flag (exit 2, clap's error) and `--version` (exit 0, nothing on stderr)
/// come back apart, so a test comparing them cannot pass by accident.
#[test]
fn run_server_to_exit_returns_the_code_and_stderr() {
    let (code, stderr) = chat_tests::run_server_to_exit(&["--no-such-flag"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr:?}");
    let (code, stderr) = chat_tests::run_server_to_exit(&["--version"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

/// `connect_small` really shrinks the receive buffer (the kernel doubles
/// what is asked for, and may round it up a little, never to its default).
#[test]
fn connect_small_sets_a_small_receive_buffer() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let stream = chat_tests::labs::connect_small_raw(listener.local_addr().expect("addr"));
    let size = socket2::SockRef::from(&stream)
        .recv_buffer_size()
        .expect("SO_RCVBUF");
    assert!(size <= 16 * 1024, "receive buffer {size} bytes");
    assert_eq!(
        stream.read_timeout().expect("timeout"),
        Some(chat_tests::TIMEOUT)
    );
}

/// `assert_silent` fails when the server closed the connection: a client
/// that was disconnected hears nothing, but it is not a silent client.
#[test]
#[should_panic(expected = "closed the connection")]
fn assert_silent_fails_on_a_closed_connection() {
    let (mut client, server) = pair();
    drop(server);
    client.assert_silent(SHORT);
}

/// A stream with a short read timeout, and the server's end.
fn timed_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let (server, _) = listener.accept().expect("accept");
    (stream, server)
}

/// `read_lines_until` keeps the part of a line read before a timeout (the
/// stream's read timeout is short) and tells of it, hands out whole lines
/// without their LF, and returns at end of stream.
#[test]
fn read_lines_until_joins_a_line_split_by_a_timeout() {
    use chat_tests::Heard;
    use std::sync::atomic::AtomicBool;
    let (stream, mut server) = timed_pair();
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let reader =
            s.spawn(|| chat_tests::read_lines_until(stream, &stop, |h| tx.send(h).is_ok()));
        server.write_all(b"par").expect("send");
        // A read timeout passes before the rest comes: told, not handed out.
        assert_eq!(rx.recv_timeout(chat_tests::TIMEOUT), Ok(Heard::Partial(3)));
        server.write_all(b"tial\nnext\n").expect("send");
        assert_eq!(next_line(&rx), "partial");
        assert_eq!(next_line(&rx), "next");
        drop(server);
        reader.join().expect("reader").expect("end of stream is Ok");
    });
}

/// The next whole line `read_lines_until` handed out, within the timeout.
fn next_line(rx: &std::sync::mpsc::Receiver<chat_tests::Heard>) -> String {
    let deadline = std::time::Instant::now() + chat_tests::TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left).expect("a line in time") {
            chat_tests::Heard::Line(line) => return line,
            chat_tests::Heard::Partial(_) => {}
        }
    }
}

/// `read_lines_until` fails when the stream ends inside a line, whether
/// the line's start came in an earlier read or with the close.
#[test]
fn read_lines_until_fails_on_a_last_line_without_its_lf() {
    use std::sync::atomic::AtomicBool;
    for wait_between in [false, true] {
        let (stream, mut server) = timed_pair();
        let stop = AtomicBool::new(false);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let reader =
                s.spawn(|| chat_tests::read_lines_until(stream, &stop, |h| tx.send(h).is_ok()));
            server.write_all(b"whole\n! bye, no LF").expect("send");
            assert_eq!(next_line(&rx), "whole");
            if wait_between {
                let told = rx.recv_timeout(chat_tests::TIMEOUT);
                assert_eq!(told, Ok(chat_tests::Heard::Partial(12)));
            }
            drop(server);
            let err = reader.join().expect("reader").expect_err("not a clean end");
            assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
            assert!(err.to_string().contains("! bye, no LF"), "{err}");
        });
    }
}

/// `read_lines_until` returns once `stop` is set, at its next timeout
/// (waited for with a deadline: a helper that ignored it would read on).
#[test]
fn read_lines_until_returns_when_told_to_stop() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (stream, _server) = timed_pair();
    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = std::sync::mpsc::channel();
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        let _ = done.send(chat_tests::read_lines_until(stream, &flag, |_| true).is_ok());
    });
    assert!(
        finished.recv_timeout(SHORT).is_err(),
        "returned before stop"
    );
    stop.store(true, Ordering::Relaxed);
    assert_eq!(finished.recv_timeout(chat_tests::TIMEOUT), Ok(true));
}

/// `labs::assert_quiet` passes on silence and fails on a byte or on a
/// closed connection.
#[test]
fn assert_quiet_passes_on_silence_only() {
    use chat_tests::labs::{assert_quiet, connect_raw};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut stream = connect_raw(listener.local_addr().expect("addr"));
    let (mut server, _) = listener.accept().expect("accept");
    assert_quiet(&mut stream, SHORT);
    server.write_all(b"x").expect("send");
    let spoke = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_quiet(&mut stream, SHORT);
    }));
    assert!(spoke.is_err(), "a byte was taken for silence");
    drop(server);
    let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_quiet(&mut stream, SHORT);
    }));
    assert!(closed.is_err(), "a closed connection was taken for silence");
}

/// `labs::read_line` takes one line, LF included, and nothing after it.
#[test]
fn read_line_stops_at_the_first_lf() {
    use chat_tests::labs::{connect_raw, read_len, read_line};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut stream = connect_raw(listener.local_addr().expect("addr"));
    let (mut server, _) = listener.accept().expect("accept");
    server.write_all(b"one\ntwo").expect("send");
    assert_eq!(read_line(&mut stream), b"one\n");
    assert_eq!(read_len(&mut stream, 3), b"two");
}

/// `Host::drain` returns every line that came, once none has come for
/// `quiet`, and keeps none back.
#[test]
fn drain_returns_every_line_then_stops_on_quiet() {
    use chat_tests::hosts::{loopback, Host};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut host = Host::connect(listener.local_addr().expect("addr"), loopback(0, 0, 1));
    let (mut server, _) = listener.accept().expect("accept");
    server.write_all(b"a\nb\nc\n").expect("send");
    let started = std::time::Instant::now();
    assert_eq!(host.drain(SHORT, chat_tests::TIMEOUT), ["a", "b", "c"]);
    assert!(
        started.elapsed() < chat_tests::TIMEOUT,
        "waited for `within`"
    );
    server.write_all(b"d\n").expect("send");
    assert_eq!(host.recv(), "d");
}

/// `welcome_name` takes the name from a welcome line, whatever follows
/// it, and nothing from any other line.
#[test]
fn welcome_name_reads_only_welcome_lines() {
    use chat_tests::welcome_name;
    assert_eq!(
        welcome_name("* welcome, guest-3! you are in #lobby (2 online); type /help for commands"),
        Some("guest-3")
    );
    assert_eq!(
        welcome_name("* welcome, guest-a1.4! you are in #lobby (1 online)"),
        Some("guest-a1.4")
    );
    assert_eq!(welcome_name("* guest-3 joined (2 online)"), None);
    assert_eq!(welcome_name("<bob> * welcome, alice!"), None);
}

/// A connection through `proxy`, its reads bounded.
fn through(proxy: &chat_tests::proxy::Proxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
}

/// Whether `stream` is at its end (or reset): a read returns no bytes or
/// fails with something other than its timeout.
fn ended(stream: &mut TcpStream) -> bool {
    use std::io::{ErrorKind, Read};
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Sends `line` through `stream` and reads it back from the echo behind.
fn echoed(stream: &mut TcpStream, line: &[u8]) -> Vec<u8> {
    use std::io::Read;
    stream.write_all(line).expect("send through the proxy");
    let mut back = vec![0u8; line.len()];
    stream
        .read_exact(&mut back)
        .expect("the echo through the proxy");
    back
}

/// The Redis proxy (`tests/src/proxy.rs`) passes bytes both ways; a cut
/// ends every connection through it and closes a new one at once; after a
/// heal new connections pass again.
#[test]
fn the_proxy_passes_bytes_cuts_and_heals() {
    let upstream = TcpListener::bind("127.0.0.1:0").expect("bind");
    let to = upstream.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in upstream.incoming().flatten() {
            std::thread::spawn(move || {
                let mut back = stream.try_clone().expect("clone");
                let _ = std::io::copy(&mut &stream, &mut back);
            });
        }
    });
    let proxy = chat_tests::proxy::Proxy::start(to);
    let mut before = through(&proxy);
    assert_eq!(echoed(&mut before, b"ping\n"), b"ping\n");
    proxy.cut();
    assert!(ended(&mut before), "a cut ends a connection through it");
    let mut during = through(&proxy);
    assert!(ended(&mut during), "a connection made while cut is closed");
    proxy.heal();
    let mut after = through(&proxy);
    assert_eq!(echoed(&mut after, b"again\n"), b"again\n");
}

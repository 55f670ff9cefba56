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

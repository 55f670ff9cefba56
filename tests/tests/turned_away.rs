//! A connection the server accepted but had not served yet (it waits for a
//! worker) and then turns away is told why before it is closed: banned
//! (SPEC "Moderation and access": every client from a banned address is
//! disconnected with a `! ` line saying so), or the server stopping (SPEC
//! "Ctrl+C": every chat client is told). `/ban` and shutdown shut the read
//! side of every such socket; the pool used to take that for the client
//! giving up and drop it without a word (end of stream, no line), which is
//! what `ban_by_name_reaches_every_server` met once in CI: a connection
//! accepted just before the ban came in from the other server.
//!
//! Each test fills the only worker (`--workers 1`) with one client so the
//! next one waits in line, where the race is no longer a race.

use std::time::{Duration, Instant};

use chat_tests::hosts::{loopback, Host};
use chat_tests::Server;

/// How soon a waiting connection must hear of a ban: the pool's watcher
/// looks at waiting sockets every 250 ms; generous for a loaded machine.
const TOLD_WITHIN: Duration = Duration::from_secs(3);

/// Types `line` on the console and waits for the stdout line containing
/// `answer`.
fn console(server: &mut Server, line: &str, answer: &str) {
    server.console(line);
    server.stdout_until(|l| l.contains(answer));
}

/// A chat client waiting for the only worker when its address is banned
/// is told it is banned (after its "please wait" line), then closed, and
/// its place in line is free again; the client being served is untouched.
#[test]
fn a_ban_tells_a_client_waiting_for_a_worker() {
    let mut server = Server::start(&["--workers", "1"]);
    let addr = server.addr();
    let (mut served, _) = Host::join(addr, loopback(0, 0, 60));
    let mut waiting = Host::connect(addr, loopback(0, 0, 61));
    let wait = waiting.recv();
    assert!(wait.contains("number 1 in line"), "{wait:?}");

    let banned = Instant::now();
    console(&mut server, "/ban 127.0.0.61 scram", "* banned 127.0.0.61");
    let lines = waiting.recv_to_eof();
    assert_eq!(
        lines,
        ["! you are banned from this server: scram"],
        "stderr:\n{}",
        server.stderr()
    );
    let took = banned.elapsed();
    assert!(took < TOLD_WITHIN, "told after {took:?}");
    assert_logged_turned_away(
        &server,
        "127.0.0.61",
        "you are banned from this server: scram",
    );
    server.stderr_until("scram; 1 connection closed in all");

    // Its place is free: the next one is first in line again.
    let mut next = Host::connect(addr, loopback(0, 0, 62));
    let wait = next.recv();
    assert!(wait.contains("number 1 in line"), "{wait:?}");
    served.send("/who");
    let who = served.recv();
    assert!(who.starts_with("* 1 in #lobby"), "{who:?}");
}

/// The log says a waiting connection from `ip` was turned away for
/// `why`, and not that it closed (it did not: the server shut it).
fn assert_logged_turned_away(server: &Server, ip: &str, why: &str) {
    server.stderr_until(&format!("turned away while waiting for a worker: {why}"));
    let stderr = server.stderr();
    let about: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(&format!(" {ip}:")))
        .collect();
    assert!(
        about
            .iter()
            .any(|l| l.ends_with(&format!("turned away while waiting for a worker: {why}"))),
        "stderr:\n{stderr}"
    );
    assert!(
        !about.iter().any(|l| l.contains("closed or shut")),
        "logged as closed by its client:\n{stderr}"
    );
}

/// A chat client waiting for the only worker when the server stops is
/// told `* server shutting down`, as every chat client is, and the log
/// says it was turned away (not that it closed).
#[test]
fn shutdown_tells_a_client_waiting_for_a_worker() {
    let mut server = Server::start(&["--workers", "1"]);
    let addr = server.addr();
    let (mut served, _) = Host::join(addr, loopback(0, 0, 65));
    let mut waiting = Host::connect(addr, loopback(0, 0, 66));
    let wait = waiting.recv();
    assert!(wait.contains("number 1 in line"), "{wait:?}");
    server.signal("TERM");
    assert_eq!(served.recv_to_eof(), ["* server shutting down"]);
    assert_eq!(
        waiting.recv_to_eof(),
        ["* server shutting down"],
        "stderr:\n{}",
        server.stderr()
    );
    server.wait_exit(TOLD_WITHIN);
    assert_logged_turned_away(&server, "127.0.0.66", "server shutting down");
}

/// In echo mode too, a connection waiting for the only worker when the
/// server stops is logged as turned away (it has no line to be told).
#[test]
fn shutdown_logs_a_lab_connection_waiting_for_a_worker_as_turned_away() {
    let mut server = Server::start(&["--mode", "echo", "--workers", "1"]);
    let addr = server.addr();
    let mut served = Host::connect(addr, loopback(0, 0, 67));
    served.send("hello");
    assert_eq!(served.recv(), "hello");
    let mut waiting = Host::connect(addr, loopback(0, 0, 68));
    let wait = waiting.recv();
    assert!(wait.contains("number 1 in line"), "{wait:?}");
    server.signal("TERM");
    server.wait_exit(TOLD_WITHIN);
    assert_logged_turned_away(&server, "127.0.0.68", "server shutting down");
}

//! A line in flight when Redis stops answering (`--redis URL`, issue 11):
//! its sender is answered at the writer's deadline while Redis is still
//! stopped, and the line never appears later. Real binaries and a real
//! redis-server on a free loopback port.

use std::time::{Duration, Instant};

use chat_tests::redis::Redis;
use chat_tests::{signal, Client, Server};

/// The writer's `UNSURE_DEADLINE` (server/src/cluster/writer.rs) and a
/// margin for its connection attempts to the stopped Redis to time out
/// (`IO_TIMEOUT`, 2 s, each) and for a loaded machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(5 + 6);

/// What the sender of a line that may or may not have been sent is told.
const NOT_SURE: &str = "! not sure your line was sent (Redis stopped answering";

/// Joins a client and reads past its welcome and the lobby's history (a
/// `/who` answer listing it is the marker).
fn joined(server: &Server) -> Client {
    let (mut client, name) = server.join();
    client.send("/who");
    client.recv_until(|line| {
        line.starts_with("* ") && line.contains(&name) && line.contains("#lobby")
    });
    client
}

/// Redis stopped (SIGSTOP) just after a line went out to it: the sender
/// gets its `! not sure ...` within the deadline and margin, Redis still
/// stopped; once Redis resumes (and runs what it had been sent), a later
/// line arrives at another client and the stopped one never does.
#[test]
fn a_line_sent_to_a_stopped_redis_is_answered_in_time_and_never_shows_up() {
    let redis = Redis::start();
    let server = Server::start(&["--redis", &redis.url(), "--rate-limit", "0"]);
    let mut alice = joined(&server);
    let mut bob = joined(&server);
    alice.send("warm");
    bob.recv_until(|l| l.ends_with(" warm"));

    let pid = redis.pid().expect("redis running");
    signal(pid, "STOP");
    let sent = Instant::now();
    alice.send("in flight");
    let mut seen = Vec::new();
    let answered = loop {
        let left = ANSWER_WITHIN.saturating_sub(sent.elapsed());
        match alice.try_recv(left) {
            Some(line) if line.starts_with(NOT_SURE) && line.ends_with("> in flight") => {
                break sent.elapsed();
            }
            Some(line) => seen.push(line),
            None => {
                signal(pid, "CONT");
                panic!("no answer within {ANSWER_WITHIN:?} while Redis was stopped; saw {seen:?}");
            }
        }
    };
    signal(pid, "CONT");
    eprintln!("answered after {answered:?}");

    // Redis runs what it was sent before the stop; a later line comes
    // after it. Sent again while the server's link comes back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut bob_saw = Vec::new();
    'later: loop {
        assert!(
            Instant::now() < deadline,
            "\"later\" never arrived; bob saw {bob_saw:?}"
        );
        alice.send("later");
        let wait = Instant::now() + Duration::from_secs(1);
        while let Some(line) = bob.try_recv(wait.saturating_duration_since(Instant::now())) {
            let done = line.ends_with(" later");
            bob_saw.push(line);
            if done {
                break 'later;
            }
        }
    }
    // Redis ran the stopped pipeline before "later" (it had it first).
    assert!(
        !bob_saw.iter().any(|l| l.ends_with("> in flight")),
        "the refused line showed up: {bob_saw:?}"
    );
}

//! A line in flight when Redis stops answering (`--redis URL`, issue 11):
//! its sender is answered at the writer's deadline while Redis is still
//! stopped, and the line never appears later. Real binaries and a real
//! redis-server on a free loopback port.

use std::time::{Duration, Instant};

use chat_tests::cluster::joined;
use chat_tests::redis::Redis;
use chat_tests::{signal, Client, Server};

/// The writer's `UNSURE_DEADLINE` (server/src/cluster/writer.rs) and a
/// margin for its connection attempts to the stopped Redis to time out
/// (`IO_TIMEOUT`, 2 s, each) and for a loaded machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(5 + 6);

/// What the sender of a line that may or may not have been sent is told.
const NOT_SURE: &str = "! not sure your line was sent (Redis stopped answering";

/// Tries at most this often to have a line go out to the stopped Redis:
/// one said while the writer still waits for the previous line's reply
/// is refused at once as never sent, rightly, and proves nothing here.
const ATTEMPTS: usize = 3;

/// Has `alice` say `text` until `bob` got it (lines are refused while the
/// server's link comes back); what bob received goes to `bob_saw`.
fn say_until_heard(alice: &mut Client, bob: &mut Client, text: &str, bob_saw: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "{text:?} never arrived; bob saw {bob_saw:?}"
        );
        alice.send(text);
        let wait = Instant::now() + Duration::from_secs(1);
        while let Some(line) = bob.try_recv(wait.saturating_duration_since(Instant::now())) {
            let done = line.ends_with(&format!("> {text}"));
            bob_saw.push(line);
            if done {
                return;
            }
        }
    }
}

/// Redis stopped (SIGSTOP) just after a line went out to it: the sender
/// gets its `! not sure ...` within the deadline and margin, Redis still
/// stopped; once Redis resumes (and runs what it had been sent), a later
/// line arrives at another client and the stopped one never does.
#[test]
fn a_line_sent_to_a_stopped_redis_is_answered_in_time_and_never_shows_up() {
    let redis = Redis::start();
    let server = Server::start(&["--redis", &redis.url(), "--rate-limit", "0"]);
    let mut alice = joined(&server).0;
    let mut bob = joined(&server).0;
    let mut bob_saw = Vec::new();
    say_until_heard(&mut alice, &mut bob, "warm", &mut bob_saw);
    let pid = redis.pid().expect("redis running");
    let mut answered = None;
    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        let text = format!("in flight {attempt}");
        signal(pid, "STOP");
        let sent = Instant::now();
        alice.send(&text);
        loop {
            let left = ANSWER_WITHIN.saturating_sub(sent.elapsed());
            match alice.try_recv(left) {
                Some(line)
                    if line.starts_with(NOT_SURE) && line.ends_with(&format!("> {text}")) =>
                {
                    answered = Some(sent.elapsed());
                    break;
                }
                // Never sent: queued behind the previous line's reply.
                Some(line) if line.starts_with("! ") && line.ends_with(&format!("> {text}")) => {
                    seen.push(line);
                    break;
                }
                Some(line) => seen.push(line),
                None => {
                    signal(pid, "CONT");
                    panic!(
                        "no answer within {ANSWER_WITHIN:?} while Redis was stopped; saw {seen:?}"
                    );
                }
            }
        }
        signal(pid, "CONT");
        // Redis runs what it was sent before the stop; a later line comes
        // after it.
        say_until_heard(
            &mut alice,
            &mut bob,
            &format!("later {attempt}"),
            &mut bob_saw,
        );
        if answered.is_some() {
            break;
        }
    }
    let answered =
        answered.unwrap_or_else(|| panic!("no line went out in {ATTEMPTS} tries: {seen:?}"));
    eprintln!("answered after {answered:?}");
    assert!(
        !bob_saw.iter().any(|l| l.contains("> in flight")),
        "a refused line showed up: {bob_saw:?}"
    );
}

//! What the cluster tests (`tests/cluster*.rs`) share: chat-servers on one
//! Redis, a client read past its welcome, and a listing asked until it
//! answers.

use std::time::{Duration, Instant};

use crate::redis::Redis;
use crate::{Client, Server, TIMEOUT};

/// Starts `n` chat-servers sharing `redis`, flood control off.
pub fn servers(redis: &Redis, n: usize) -> Vec<Server> {
    (0..n)
        .map(|_| Server::start(&["--redis", &redis.url(), "--rate-limit", "0"]))
        .collect()
}

/// Joins a client and reads past its welcome and the lobby's history (its
/// own join notice is not sent to it); returns it with its name. A `/who`
/// answer listing it is the marker: it answers the asker only, after
/// whatever came before.
pub fn joined(server: &Server) -> (Client, String) {
    let (mut client, name) = server.join();
    client.send("/who");
    client.recv_until(|line| {
        line.starts_with("* ") && line.contains(&name) && line.contains("#lobby")
    });
    (client, name)
}

/// How long [`ask_until`] waits for a matching answer before asking again.
pub const ASK_AGAIN: Duration = Duration::from_millis(200);

/// Asks `command` (a listing: `/who`, `/rooms`) again every [`ASK_AGAIN`]
/// until an answer equals `want`, within [`TIMEOUT`]. The cluster's
/// listings are read from Redis, where a client that just left may still
/// be filed for a moment, and presence files members again at its next
/// beat.
///
/// # Panics
/// When no answer equals `want` by then, listing what came.
pub fn ask_until(client: &mut Client, command: &str, want: &str) {
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    loop {
        client.send(command);
        let asked = Instant::now();
        while asked.elapsed() < ASK_AGAIN {
            match client.try_recv(ASK_AGAIN.saturating_sub(asked.elapsed())) {
                Some(line) if line == want => return,
                Some(line) => seen.push(line),
                None => break,
            }
        }
        assert!(
            Instant::now() < deadline,
            "{command} never answered {want:?}; saw {seen:?}"
        );
    }
}

/// Sends `/msg TO TEXT` from `client` again every [`ASK_AGAIN`] while the
/// answer is a `! ` line (Redis just back: the link may still count it as
/// hung, presence may not have registered the name yet), until it is told
/// the message went, within `within`. Returns how many `! ` answers it
/// had, and the last.
///
/// # Panics
/// When it is not told so by then.
pub fn msg_until_sent(
    client: &mut Client,
    to: &str,
    text: &str,
    within: Duration,
) -> (usize, Option<String>) {
    let deadline = Instant::now() + within;
    let sent = format!("[to {to}] {text}");
    let (mut refused, mut last_refusal) = (0, None);
    loop {
        client.send(&format!("/msg {to} {text}"));
        let answer = client.recv_until(|l| l == sent || l.starts_with("! "));
        match answer.last() {
            Some(last) if *last == sent => return (refused, last_refusal),
            Some(last) => {
                refused += 1;
                last_refusal = Some(last.clone());
            }
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "/msg {to} never went; {refused} answers, the last {last_refusal:?}"
        );
        std::thread::sleep(ASK_AGAIN);
    }
}

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
/// beat. Before it returns it reads the answers to its other asks still
/// on their way (each within [`TIMEOUT`]), so none of them, stale by then,
/// is taken later for the answer to a new ask. Other lines read meanwhile
/// are dropped.
///
/// # Panics
/// When no answer equals `want` by then, listing what came; when an ask
/// is still unanswered [`TIMEOUT`] after the match, or the connection
/// ends first; when `command` is not `/who` or `/rooms`.
pub fn ask_until(client: &mut Client, command: &str, want: &str) {
    assert!(
        matches!(command, "/who" | "/rooms"),
        "ask_until knows the answers to /who and /rooms, not {command}"
    );
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    let mut unanswered = 0_usize;
    loop {
        client.send(command);
        unanswered += 1;
        let asked = Instant::now();
        while asked.elapsed() < ASK_AGAIN {
            match client.try_recv(ASK_AGAIN.saturating_sub(asked.elapsed())) {
                Some(line) => {
                    if answers(command, &line) {
                        unanswered = unanswered.saturating_sub(1);
                    }
                    if line == want {
                        return read_answers(client, command, unanswered, seen);
                    }
                    seen.push(line);
                }
                None => break,
            }
        }
        assert!(
            Instant::now() < deadline,
            "{command} never answered {want:?}; saw {seen:?}"
        );
    }
}

/// Reads the answers to `command` still owed, `unanswered` of them, within
/// [`TIMEOUT`]; `seen` is what came before, for the panic's message.
fn read_answers(client: &mut Client, command: &str, mut unanswered: usize, mut seen: Vec<String>) {
    let deadline = Instant::now() + TIMEOUT;
    while unanswered > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = client.try_recv(left) else {
            panic!("{unanswered} of the {command} asks never answered; saw {seen:?}");
        };
        if answers(command, &line) {
            unanswered -= 1;
        }
        seen.push(line);
    }
}

/// Whether `line` has the shape of an answer to `command`: `* 2 in
/// #lobby: a, b` (`* 0 in #lobby`) to `/who`, `* 2 rooms: #lobby (1),
/// #games (1)` to `/rooms`; nothing to any other command.
fn answers(command: &str, line: &str) -> bool {
    let Some((count, rest)) = line
        .strip_prefix("* ")
        .and_then(|line| line.split_once(' '))
    else {
        return false;
    };
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match command {
        "/who" => rest.starts_with("in #"),
        "/rooms" => rest.starts_with("room: ") || rest.starts_with("rooms: "),
        _ => false,
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

//! A cluster server cut off from Redis (`--redis URL`, issue 11): the
//! room's log refuses every line, yet join, leave and rename notices still
//! reach the room's members on the same server (SPEC: "Join, leave and
//! rename notices reach the whole room"), and the other servers' `/rooms`
//! catches up once Redis is back; a room entered meanwhile gets the lines
//! its log took meanwhile once Redis is back. Real binaries, a real
//! redis-server.

use std::thread;
use std::time::{Duration, Instant};

use chat_tests::cluster::{ask_until, joined};
use chat_tests::redis::Redis;
use chat_tests::{Client, Server, TIMEOUT};

/// A server on `redis`, flood control off.
fn server(redis: &Redis) -> Server {
    Server::start(&["--redis", &redis.url(), "--rate-limit", "0"])
}

/// Reads until the `* ` line "cut off" arrives.
fn cut_off(client: &mut Client) {
    client.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
}

/// Defect: with Redis unreachable, a new connection, a `/join`, a `/nick`
/// and a `/quit` gave no notice at all, even to members of the same room
/// on the same server (the log refused the notice and it was dropped).
/// Now each reaches this server's members; chat lines stay refused; the
/// console's `<server>` line reaches this server's rooms and the console
/// says the others were not told. And a
/// `/join` made while cut off is where the other servers list the client
/// once Redis is back.
#[test]
fn notices_reach_the_room_on_this_server_while_cut_off() {
    let mut redis = Redis::start();
    let mut srv = server(&redis);
    let (mut a, _) = joined(&srv);
    let (mut b, b_name) = joined(&srv);
    let (mut m, m_name) = joined(&srv);
    a.recv_until(|l| l.starts_with(&format!("* {m_name} joined")));
    b.recv_until(|l| l.starts_with(&format!("* {m_name} joined")));

    redis.kill();
    for member in [&mut a, &mut b, &mut m] {
        cut_off(member);
    }

    // A new connection: the members see it join.
    let (mut c, c_name) = srv.join();
    for member in [&mut a, &mut b] {
        member.recv_until(|l| l.starts_with(&format!("* {c_name} joined")));
    }
    // Chat lines stay refused: one `! ` each, never shown to the others.
    a.send("refused while cut off");
    let refused = a.recv_until(|l| l.starts_with("! "));
    assert_eq!(
        refused.last().unwrap(),
        "! the room is cut off: line not sent"
    );

    // The console's line: this server's rooms get it, and the console is
    // told the other servers did not.
    srv.console("hello from the console");
    for member in [&mut a, &mut b] {
        member.recv_until(|l| l == "<server> hello from the console");
    }
    srv.stdout_until(|l| l.starts_with("! said to this server's rooms only"));

    // A rename: no server can be asked whether the name is free, so it is
    // refused, saying so. Defect (a user's walk through the README):
    // the refusal said the name was taken, when no one had it.
    b.send("/nick Bea");
    let answer = b.recv_until(|l| l.starts_with("! ") || l.contains("now known as"));
    assert_eq!(
        answer.last().unwrap(),
        "! the room is cut off: name not changed",
        "{answer:?}"
    );
    b.send("/who");
    let who = b.recv_until(|l| l.contains(" in #lobby: "));
    assert!(who.last().unwrap().contains(&b_name), "{who:?}");

    // A move: the room left sees it go.
    m.send("/join #games");
    m.recv_until(|l| l.starts_with("* you are now in #games"));
    for member in [&mut a, &mut b] {
        member.recv_until(|l| l.starts_with(&format!("* {m_name} left for #games")));
    }

    // A quit: the others see it leave.
    c.send("/quit");
    c.recv_to_eof();
    for member in [&mut a, &mut b] {
        let seen = member.recv_until(|l| l == format!("* {c_name} left (quit)"));
        assert!(
            !seen.iter().any(|l| l.contains("refused while cut off")),
            "a refused line never reaches anyone: {seen:?}"
        );
    }

    // Redis back (empty): the other servers catch up through presence. A
    // second server's `/rooms` reads Redis: a, b and its own client in
    // #lobby, m in #games (where it moved while cut off).
    redis.restart();
    a.recv_until(|l| l.starts_with("* ") && l.contains("again"));
    let other = server(&redis);
    let (mut d, _) = joined(&other);
    ask_until(&mut d, "/rooms", "* 2 rooms: #lobby (3), #games (1)");
}

/// Defect: a client that connected while its server was cut off got its
/// welcome and a `! ` for each line, never the `* ... cut off` notice
/// (it went only to the rooms' members when the link went down); it was
/// told later that the server was connected again. Now a client that
/// enters a room while cut off is told right after its welcome (or its
/// `/join` answer), and no one is told twice for one outage.
#[test]
fn a_client_arriving_while_cut_off_is_told_once() {
    let mut redis = Redis::start();
    let srv = server(&redis);
    let (mut a, _) = joined(&srv);
    redis.kill();
    cut_off(&mut a);

    // Arrives during the outage: the notice comes right after its welcome
    // (the lobby has no history to replay).
    let (mut n, _) = srv.join();
    let told = n.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    assert_eq!(told.len(), 1, "right after the welcome: {told:?}");
    // A `/join` while cut off, by the newcomer and by a client told when
    // the link went down: answered, not told again.
    for client in [&mut n, &mut a] {
        client.send("/join #games");
        client.recv_until(|l| l.starts_with("* you are now in #games"));
    }
    // A newcomer that `/join`s before it read anything: told once too.
    let (mut m, _) = srv.join();
    m.send("/join #games");

    redis.restart();
    for (who, client) in [("n", &mut n), ("a", &mut a), ("m", &mut m)] {
        let seen = client.recv_until(|l| l.starts_with("* ") && l.contains("again"));
        let notices = seen
            .iter()
            .filter(|l| l.starts_with("* ") && l.contains("cut off"))
            .count();
        let expected = usize::from(who == "m");
        assert_eq!(notices, expected, "{who} told once in all: {seen:?}");
    }
}

/// Defect: a room entered on a server cut off from Redis (its first
/// member there) was read, once Redis was back, from where its log stood
/// then: the lines the log took meanwhile from the other servers never
/// arrived, and no `! ` line said so (while a room that had members here
/// before the cut got them all). Now they arrive after `* connected ...
/// again`, in order, once each. The server is cut off alone: its Redis
/// user switched off and its connections closed, the other server fine.
///
/// Defect too: that server loaded no history for the room, then or once
/// Redis was back, so a newcomer there was replayed only the lines that
/// arrived after, while one on the other server got the room's history
/// (SPEC: "history is the room's, whichever server a client is on"). Now
/// the reader, as it starts reading the room, loads the log's history up
/// to where it starts.
#[test]
fn a_room_entered_while_cut_off_gets_the_lines_sent_meanwhile() {
    let redis = Redis::start();
    redis.command(&["ACL", "SETUSER", "bee", "on", ">pw", "~*", "&*", "+@all"]);
    let bee_url = redis.url().replace("redis://", "redis://bee:pw@");
    let near = server(&redis);
    let far = Server::start(&["--redis", &bee_url, "--rate-limit", "0"]);
    let (mut y, y_name) = joined(&near);
    let (mut x, _) = joined(&far);
    y.send("/join #games");
    y.recv_until(|l| l.starts_with("* you are now in #games"));
    y.send("before");
    log_took(&redis, &format!("<{y_name}> before"));

    redis.command(&["ACL", "SETUSER", "bee", "off"]);
    redis.command(&["CLIENT", "KILL", "USER", "bee"]);
    cut_off(&mut x);
    x.send("/join #games");
    x.recv_until(|l| l.starts_with("* you are now in #games"));
    for i in 1..=3 {
        y.send(&format!("while cut off {i}"));
    }
    // The log took them (the other server is fine).
    log_took(&redis, &format!("<{y_name}> while cut off 3"));

    redis.command(&["ACL", "SETUSER", "bee", "on"]);
    let mut seen = x.recv_until(|l| l.starts_with("* ") && l.contains("again"));
    y.send("after");
    seen.extend(x.recv_until(|l| l == format!("<{y_name}> after")));
    // "before", appended a moment before the join, may come too: the
    // moment is put on Redis's clock to the millisecond, and early rather
    // than late (`reader/reading/since.rs`).
    let before = format!("<{y_name}> before");
    let lines: Vec<&String> = seen
        .iter()
        .filter(|l| l.starts_with(&format!("<{y_name}> ")) || l.starts_with("! "))
        .filter(|l| **l != before)
        .collect();
    let want: Vec<String> = [
        "while cut off 1",
        "while cut off 2",
        "while cut off 3",
        "after",
    ]
    .iter()
    .map(|t| format!("<{y_name}> {t}"))
    .collect();
    assert_eq!(lines, want.iter().collect::<Vec<_>>(), "saw {seen:?}");

    // A newcomer on either server is replayed the room's history.
    for srv in [&far, &near] {
        let (mut z, _) = joined(srv);
        z.send("/join #games");
        let shown = z.recv_until(|l| l == format!("<{y_name}> after"));
        let history: Vec<&String> = shown.iter().filter(|l| l.starts_with('<')).collect();
        let mut all = vec![before.clone()];
        all.extend(want.iter().cloned());
        assert_eq!(history, all.iter().collect::<Vec<_>>(), "{shown:?}");
    }
}

/// Waits until the last entry of `#games`'s log is `line`.
fn log_took(redis: &Redis, line: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !redis
        .query(&["XREVRANGE", "chat:log:games", "+", "-", "COUNT", "1"])
        .iter()
        .any(|f| f.starts_with(line))
    {
        assert!(Instant::now() < deadline, "the log never took {line:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

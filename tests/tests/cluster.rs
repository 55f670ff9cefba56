//! Several servers sharing rooms through Redis (`--redis URL`, issue 11),
//! with the real binaries and a real redis-server started by each test on a
//! free loopback port (persistence off).

use std::thread;
use std::time::{Duration, Instant};

use chat_tests::cluster::{ask_until, joined, servers};
use chat_tests::redis::{run_server_to_exit, Redis};
use chat_tests::{Client, Server, TIMEOUT};

/// Reads until a line equal to `want` arrives.
fn expect(client: &mut Client, want: &str) -> Vec<String> {
    client.recv_until(|line| line == want)
}

/// The log's number (`n`) of the first entry in `fields` (an `XRANGE` or
/// `XREVRANGE` reply, flattened).
fn entry_number(fields: &[String]) -> u64 {
    let at = fields
        .iter()
        .position(|f| f == "n")
        .unwrap_or_else(|| panic!("no n field in {fields:?}"));
    fields[at + 1]
        .parse()
        .unwrap_or_else(|_| panic!("n is not a number in {fields:?}"))
}

/// Redis absent at start: one line on stderr naming it, exit 1, and no
/// address line (the server never looked like it was running).
#[test]
fn redis_absent_at_start_is_one_line_and_exit_1() {
    let mut redis = Redis::start();
    let url = redis.url();
    redis.kill();
    let (code, stderr) =
        run_server_to_exit(&["--bind", "127.0.0.1", "--port", "0", "--redis", &url]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
    assert!(
        stderr.contains(&url["redis://".len()..]),
        "names the address:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A Redis that refuses us (a password is required and the URL has none,
/// or a wrong one): one line, exit 1, the password never shown.
#[test]
fn redis_refusing_at_start_is_one_line_and_exit_1() {
    let redis = Redis::start_with(&["--requirepass", "sesame"]);
    for url in [
        redis.url(),
        redis.url().replace("redis://", "redis://:wrong-pass@"),
    ] {
        let (code, stderr) =
            run_server_to_exit(&["--bind", "127.0.0.1", "--port", "0", "--redis", &url]);
        assert_eq!(code, Some(1), "stderr:\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
        assert!(!stderr.contains("wrong-pass"), "{stderr}");
    }
}

/// A value that is not a `redis://HOST[:PORT][/DB]` URL is a usage error
/// (clap's message, exit 2), before anything touches the network.
#[test]
fn bad_redis_url_is_exit_2() {
    for bad in [
        "localhost:6379",
        "http://127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:notaport",
        "redis://127.0.0.1:6379/db",
    ] {
        let (code, stderr) = run_server_to_exit(&["--port", "0", "--redis", bad]);
        assert_eq!(code, Some(2), "{bad}: stderr:\n{stderr}");
        assert!(stderr.contains("--redis"), "{bad}: {stderr}");
    }
}

/// `--redis` is for chat rooms: with echo or upper mode it is a usage
/// error.
#[test]
fn redis_with_a_lab_mode_is_exit_2() {
    let (code, stderr) = run_server_to_exit(&[
        "--port",
        "0",
        "--mode",
        "echo",
        "--redis",
        "redis://127.0.0.1:1",
    ]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
}

/// A line said on one server reaches the room's members on every server
/// (3 servers), the sender not getting it back.
#[test]
fn relay_across_three_servers() {
    let redis = Redis::start();
    let servers = servers(&redis, 3);
    let mut clients: Vec<(Client, String)> = servers.iter().map(joined).collect();
    let sender = clients[0].1.clone();
    clients[0].0.send("hello from the first server");
    let want = format!("<{sender}> hello from the first server");
    for (client, _) in clients.iter_mut().skip(1) {
        expect(client, &want);
    }
    clients[0].0.send("/who");
    let seen = clients[0]
        .0
        .recv_until(|l| l.starts_with("* ") && l.contains("#lobby"));
    assert!(
        !seen.contains(&want),
        "the sender does not get its line back: {seen:?}"
    );
}

/// Six readers on three servers, a sender on each: every reader sees all
/// the lines, in one and the same order.
#[test]
fn one_order_at_six_readers_on_three_servers() {
    let redis = Redis::start();
    let servers = servers(&redis, 3);
    let mut readers: Vec<(Client, String)> = (0..6).map(|i| joined(&servers[i % 3])).collect();
    let mut senders: Vec<(Client, String)> = servers.iter().map(joined).collect();
    const LINES: usize = 200;
    let handles: Vec<_> = senders
        .iter_mut()
        .enumerate()
        .map(|(s, (client, _))| {
            let mut client = client.try_clone();
            thread::spawn(move || {
                for i in 0..LINES {
                    client.send(&format!("s{s} line {i}"));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let mut orders = Vec::new();
    for (reader, _) in &mut readers {
        let mut got = Vec::new();
        let deadline = Instant::now() + TIMEOUT * 3;
        while got.len() < 3 * LINES {
            assert!(Instant::now() < deadline, "only {} lines", got.len());
            let line = reader.recv();
            if let Some(rest) = line.strip_prefix('<') {
                if let Some((_, text)) = rest.split_once("> ") {
                    got.push(text.to_string());
                }
            }
        }
        orders.push(got);
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "one order for everyone");
    }
    for s in 0..3 {
        let mine: Vec<&String> = orders[0]
            .iter()
            .filter(|t| t.starts_with(&format!("s{s} ")))
            .collect();
        let want: Vec<String> = (0..LINES).map(|i| format!("s{s} line {i}")).collect();
        assert_eq!(
            mine.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            want,
            "each sender's order kept, nothing lost"
        );
    }
    drop(senders);
}

/// Names are unique across servers, ignoring case.
#[test]
fn name_clash_across_servers() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, _) = joined(&servers[0]);
    let (mut b, _) = joined(&servers[1]);
    a.send("/nick Alice");
    a.recv_until(|l| l.contains("now known as Alice"));
    b.send("/nick ALICE");
    let seen = b.recv_until(|l| l.starts_with("! "));
    assert_eq!(
        seen.last().unwrap(),
        "! name \"ALICE\" is taken",
        "{seen:?}"
    );
    a.send("/quit");
    a.recv_to_eof();
    // Freed once its holder left: the other server may take it now.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        b.send("/nick ALICE");
        let line = b.recv_until(|l| l.starts_with("! ") || l.contains("now known as ALICE"));
        if line.last().unwrap().contains("now known as ALICE") {
            break;
        }
        assert!(Instant::now() < deadline, "never freed: {line:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// History is the room's, whichever server wrote it: a client entering on
/// another server gets the lines said on the first.
#[test]
fn history_across_servers() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, name) = joined(&servers[0]);
    let (mut watcher, _) = joined(&servers[0]);
    for i in 0..3 {
        a.send(&format!("old line {i}"));
    }
    expect(&mut watcher, &format!("<{name}> old line 2"));
    let (mut b, _) = servers[1].join();
    let seen = b.recv_until(|l| l == format!("<{name}> old line 2"));
    assert!(
        seen.iter()
            .any(|l| l.starts_with("* last 3 lines of #lobby")),
        "{seen:?}"
    );
    assert_eq!(
        seen[seen.len() - 3..],
        [
            format!("<{name}> old line 0"),
            format!("<{name}> old line 1"),
            format!("<{name}> old line 2")
        ]
    );
}

/// Each accepted line is one entry of the room's stream.
#[test]
fn each_accepted_line_is_one_stream_entry() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, name) = joined(&servers[0]);
    let (mut b, _) = joined(&servers[1]);
    for i in 0..50 {
        a.send(&format!("counted {i}"));
    }
    expect(&mut b, &format!("<{name}> counted 49"));
    let fields = redis.query(&["XRANGE", "chat:log:lobby", "-", "+"]);
    let lines: Vec<&String> = fields
        .iter()
        .filter(|f| f.starts_with(&format!("<{name}> counted ")))
        .collect();
    let want: Vec<String> = (0..50).map(|i| format!("<{name}> counted {i}\n")).collect();
    assert_eq!(
        lines,
        want.iter().collect::<Vec<_>>(),
        "one entry per line, in order"
    );
}

/// A server killed with `kill -9`: within 10 s the others announce its
/// client's leave, once (not once per surviving server), and its name is
/// free again.
#[test]
fn kill_9_of_a_server_is_announced_once_and_frees_names() {
    let redis = Redis::start();
    let servers = servers(&redis, 3);
    let (mut victim, _) = joined(&servers[0]);
    victim.send("/nick Victim");
    victim.recv_until(|l| l.contains("now known as Victim"));
    let (mut w1, _) = joined(&servers[1]);
    let (mut w2, _) = joined(&servers[2]);
    let killed = Instant::now();
    servers[0].signal("KILL");
    for watcher in [&mut w1, &mut w2] {
        watcher.recv_until(|l| l == "* Victim left (server lost)");
    }
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "took {:?}",
        killed.elapsed()
    );
    w1.send("/nick victim");
    w1.recv_until(|l| l.contains("now known as victim"));
    // Once: one entry in the room's log, and no second one at a watcher by
    // the time its own rename came back.
    let fields = redis.query(&["XRANGE", "chat:log:lobby", "-", "+"]);
    let leaves = fields
        .iter()
        .filter(|f| f.starts_with("* Victim left"))
        .count();
    assert_eq!(leaves, 1, "{fields:?}");
    let seen = w2.recv_until(|l| l.contains("now known as victim"));
    assert!(
        !seen.iter().any(|l| l.starts_with("* Victim left")),
        "{seen:?}"
    );
}

/// A graceful stop of one server: its clients are told, and the other
/// servers' clients see them leave within 3 s.
#[test]
fn graceful_stop_of_one_server() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let (mut leaving, name) = joined(&servers[0]);
    let (mut staying, _) = joined(&servers[1]);
    let stopped = Instant::now();
    servers[0].signal("TERM");
    let last = leaving.recv_to_eof();
    assert!(
        last.iter().any(|l| l == "* server shutting down"),
        "{last:?}"
    );
    staying.recv_until(|l| l == format!("* {name} left (server stopped)"));
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "took {:?}",
        stopped.elapsed()
    );
    let status = servers[0].wait_exit(TIMEOUT);
    assert!(status.success(), "stderr:\n{}", servers[0].stderr());
}

/// Redis killed, then restarted (empty) on the same port: clients are told
/// once that they are cut off, lines meanwhile are refused with a `! ` each
/// and never show up later, the clients are told when it is back and that
/// the log was lost, and the room goes on across the servers.
#[test]
fn redis_killed_and_restarted() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, name) = joined(&servers[0]);
    let (mut b, _) = joined(&servers[1]);
    a.send("before");
    expect(&mut b, &format!("<{name}> before"));

    redis.kill();
    // Everything a and b read from here to the `connected ... again`
    // notice: the cut-off notice must be in it exactly once.
    let mut outage_a = a.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    let mut outage_b = b.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    for i in 0..3 {
        a.send(&format!("during {i}"));
        let refused = a.recv();
        assert!(refused.starts_with("! "), "{refused:?}");
        outage_a.push(refused);
    }
    a.send("/msg somebody psst");
    let refused = a.recv();
    assert!(
        refused.starts_with("! ") && refused.contains("private message"),
        "{refused:?}"
    );
    outage_a.push(refused);
    a.send("/help");
    outage_a.extend(a.recv_until(|l| l.contains("/nick")));

    redis.restart();
    let back = a.recv_until(|l| l.starts_with("* ") && l.contains("again"));
    outage_a.extend(back.iter().cloned());
    outage_b.extend(b.recv_until(|l| l.starts_with("* ") && l.contains("again")));
    for (who, outage) in [("a", &outage_a), ("b", &outage_b)] {
        assert_eq!(
            outage
                .iter()
                .filter(|l| l.starts_with("* ") && l.contains("cut off"))
                .count(),
            1,
            "{who} told once that it is cut off: {outage:?}"
        );
    }
    assert!(
        back.iter()
            .any(|l| l.starts_with("! ") && l.contains("restarted empty")),
        "told the log was lost: {back:?}; stderr:\n{}",
        servers[0].stderr()
    );
    // Lines flow again: each "after" line is either refused to a (`! `)
    // or seen by b (the first is seen: `cluster_restart.rs`).
    let deadline = Instant::now() + TIMEOUT;
    let mut i = 0;
    let mut seen = Vec::new();
    a.send(&format!("after {i}"));
    loop {
        assert!(Instant::now() < deadline, "never accepted again: {seen:?}");
        if let Some(line) = b.try_recv(Duration::from_millis(50)) {
            let accepted = line == format!("<{name}> after {i}");
            seen.push(line);
            if accepted {
                break;
            }
        }
        if let Some(line) = a.try_recv(Duration::from_millis(50)) {
            // One line in flight at a time: a refusal is this one's.
            let refusal = line.contains("not sent") || line.contains(&format!("after {i}"));
            if line.starts_with("! ") && refusal {
                i += 1;
                a.send(&format!("after {i}"));
            }
        }
    }
    // A refused line never shows up: not in the room's log, and not at b
    // up to a line a sends after the first accepted one.
    a.send("marker");
    seen.extend(b.recv_until(|l| l == format!("<{name}> marker")));
    assert!(
        !seen.iter().any(|l| l.contains("during")),
        "a refused line never shows up: {seen:?}"
    );
    let log = redis.query(&["XRANGE", "chat:log:lobby", "-", "+"]);
    assert!(
        log.iter().any(|f| f.contains("marker")),
        "the log is read: {log:?}"
    );
    assert!(
        !log.iter().any(|f| f.contains("during")),
        "a refused line is never in the log: {log:?}"
    );
}

/// `/who`, `/rooms`, `/msg` and the console's `/kick` reach across the
/// servers.
#[test]
fn who_rooms_msg_and_kick_across_servers() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let (mut a, _) = joined(&servers[0]);
    a.send("/nick ann");
    a.recv_until(|l| l.contains("now known as ann"));
    let (mut b, _) = joined(&servers[1]);
    b.send("/nick bea");
    b.recv_until(|l| l.contains("now known as bea"));
    let (mut c, _) = joined(&servers[1]);
    c.send("/nick cy");
    c.recv_until(|l| l.contains("now known as cy"));
    c.send("/join games");
    c.recv_until(|l| l.starts_with("* you are now in #games"));

    ask_until(&mut a, "/who", "* 2 in #lobby: ann, bea");
    // A rename keeps its place: in the order they entered the room.
    a.send("/nick ann2");
    a.recv_until(|l| l.contains("now known as ann2"));
    ask_until(&mut b, "/who", "* 2 in #lobby: ann2, bea");
    ask_until(&mut a, "/rooms", "* 2 rooms: #lobby (2), #games (1)");

    a.send("/msg CY psst");
    a.recv_until(|l| l == "[to cy] psst");
    c.recv_until(|l| l == "[from ann2] psst");
    a.send("/msg nobody hello?");
    a.recv_until(|l| l.starts_with("! ") && l.contains("nobody"));

    // Typed in another case: the console names it as it is spelt, and
    // says where it went (it printed nothing on stdout for a client of
    // another server, a review found).
    servers[0].console("/kick CY flooding");
    servers[0].stdout_until(|l| l == "* cy is on another server, which was asked to kick it");
    let last = c.recv_to_eof();
    assert!(
        last.iter()
            .any(|l| l.starts_with("! ") && l.contains("flooding")),
        "{last:?}"
    );
    ask_until(&mut b, "/rooms", "* 1 room: #lobby (2)");
}

/// The console's `<server>` lines reach every server: a room whose members
/// are all on other servers gets them too.
#[test]
fn console_lines_reach_every_server() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let (mut lobby, _) = joined(&servers[1]);
    let (mut gamer, _) = joined(&servers[1]);
    gamer.send("/join games");
    gamer.recv_until(|l| l.starts_with("* you are now in #games"));
    // The console sends to the rooms Redis lists members in: the gamer's
    // move is filed just after its answer (CLUSTER.md, Known limits).
    let (mut watcher, _) = joined(&servers[0]);
    ask_until(&mut watcher, "/rooms", "* 2 rooms: #lobby (2), #games (1)");
    servers[0].console("hello all");
    lobby.recv_until(|l| l == "<server> hello all");
    gamer.recv_until(|l| l == "<server> hello all");
}

/// Every server's links to Redis cut at once while lines flow (Redis
/// itself fine, as in a network cut): each line is either delivered once, in order, or refused
/// to its sender with a `! ` line; none is lost silently, none doubled.
#[test]
fn links_cut_while_lines_flow_resume_without_gap_or_double() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, name) = joined(&servers[0]);
    let (mut b, _) = joined(&servers[1]);
    const LINES: usize = 300;
    let mut writer = a.try_clone();
    let (go_on, resume) = std::sync::mpsc::channel::<()>();
    let sending = thread::spawn(move || {
        for i in 0..LINES {
            if i == LINES / 2 {
                // The second half only once the links are cut.
                resume.recv().unwrap();
            }
            writer.send(&format!("cut {i}"));
        }
    });
    // Mid-flow: lines of the first half are arriving at b (so the
    // writer's connection carries them), then the links are cut, and the
    // second half is sent onto connections that are now dead: the first
    // of them is in flight on a broken connection for certain.
    let early = b.recv_until(|l| l == format!("<{name}> cut 0"));
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    go_on.send(()).unwrap();
    sending.join().unwrap();
    // Each line ends up delivered to b or refused to a with a `! `: wait
    // until all of them are accounted for (a line lost silently never is).
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = early;
    let mut refused = Vec::new();
    let prefix = format!("<{name}> cut ");
    let delivered = |seen: &[String]| seen.iter().filter(|l| l.starts_with(&prefix)).count();
    while delivered(&seen) + refused.len() < LINES {
        assert!(
            Instant::now() < deadline,
            "every line delivered or refused: {} delivered, {} refused; stderr:\n{}",
            delivered(&seen),
            refused.len(),
            servers[0].stderr()
        );
        // a is asked only while b is quiet: a sender does not get its own
        // lines back, so waiting on a after each of b's lines took 20 ms
        // or more per line (300 lines: 6 s unloaded, past the deadline on
        // a loaded machine, with every line waiting in b's socket).
        if let Some(line) = b.try_recv(Duration::from_millis(20)) {
            seen.push(line);
        } else if let Some(line) = a.try_recv(Duration::from_millis(20)) {
            refused.extend(refusal(&line));
        }
    }
    // Then one more line: nothing refused or delivered shows up before it.
    a.send("last");
    seen.extend(b.recv_until(|l| l == format!("<{name}> last")));
    let got: Vec<usize> = seen
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice: {got:?}"
    );
    a.send("/who");
    let rest = a.recv_until(|l| l.starts_with("* ") && l.contains(" in #lobby: "));
    refused.extend(rest.iter().filter_map(|l| refusal(l)));
    assert_eq!(
        got.len() + refused.len(),
        LINES,
        "every line delivered or refused once: {} delivered, {refused:?} refused",
        got.len()
    );
    let both: Vec<&usize> = refused
        .iter()
        .flatten()
        .filter(|n| got.contains(n))
        .collect();
    assert!(both.is_empty(), "delivered and refused: {both:?}");
}

/// Whether `line` tells its sender a line was not sent: `Some` of the
/// `cut N` line's N when it names it (a refusal by the writer quotes the
/// line; one at once, while the room is cut off, does not).
fn refusal(line: &str) -> Option<Option<usize>> {
    let refused = ["not sent", "not delivered", "not sure your line was sent"];
    if !line.starts_with("! ") || !refused.iter().any(|r| line.contains(r)) {
        return None;
    }
    Some(line.rsplit_once(": cut ").and_then(|(_, n)| n.parse().ok()))
}

/// One server cut off from Redis (its Redis user switched off and its
/// connections closed) while the room goes on elsewhere past what the log
/// keeps: when it is back, its clients are told exactly how many lines
/// they missed, then get the rest in order.
#[test]
fn lines_trimmed_while_cut_off_are_counted() {
    let redis = Redis::start();
    redis.command(&["ACL", "SETUSER", "bee", "on", ">pw", "~*", "&*", "+@all"]);
    let bee_url = redis.url().replace("redis://", "redis://bee:pw@");
    let a_server = Server::start(&[
        "--redis",
        &redis.url(),
        "--rate-limit",
        "0",
        "--redis-log-len",
        "100",
    ]);
    let b_server = Server::start(&[
        "--redis",
        &bee_url,
        "--rate-limit",
        "0",
        "--redis-log-len",
        "100",
    ]);
    let (mut a, name) = joined(&a_server);
    let (mut b, _) = joined(&b_server);
    // Each server's writer puts its client's join notice in the log on its
    // own time, maybe after a line sent later from the other server: both
    // are in before "before" is sent, so no entry follows "before" that
    // b's reader may not have read when b is cut off.
    let deadline = Instant::now() + TIMEOUT;
    while redis
        .query(&["XRANGE", "chat:log:lobby", "-", "+"])
        .iter()
        .filter(|f| f.contains(" joined ("))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the join notices never reached the log"
        );
        thread::sleep(Duration::from_millis(20));
    }
    a.send("before");
    expect(&mut b, &format!("<{name}> before"));
    // The log's number of "before", the last entry b read: what it misses
    // is counted from there (entries other than a's lines, such as the
    // join notices, are trimmed too).
    let last = redis.query(&["XREVRANGE", "chat:log:lobby", "+", "-", "COUNT", "1"]);
    assert!(
        last.contains(&format!("<{name}> before\n")),
        "nothing after \"before\": {last:?}"
    );
    let read_up_to = entry_number(&last);

    redis.command(&["ACL", "SETUSER", "bee", "off"]);
    redis.command(&["CLIENT", "KILL", "USER", "bee"]);
    b.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    const LINES: usize = 500;
    for i in 0..LINES {
        a.send(&format!("while away {i}"));
    }
    // Wait until the log took the last of them.
    let last = format!("<{name}> while away {}\n", LINES - 1);
    let deadline = Instant::now() + TIMEOUT;
    while !redis
        .query(&["XREVRANGE", "chat:log:lobby", "+", "-", "COUNT", "1"])
        .contains(&last)
    {
        assert!(Instant::now() < deadline, "the log never took them");
        thread::sleep(Duration::from_millis(20));
    }
    // Trimmed past "before" while b was cut off. More may go before b
    // reads again: the other server, taking b's client for lost once the
    // cut passes the heartbeat's 5 s, adds entries, and the log is trimmed
    // again. What it holds now numbers every line b can still get.
    let log = redis.query(&["XRANGE", "chat:log:lobby", "-", "+"]);
    assert!(entry_number(&log) > read_up_to + 1, "the log was trimmed");
    let first_kept = number_of(
        log.iter()
            .find(|f| f.contains("while away"))
            .expect("a line kept"),
    );
    redis.command(&["ACL", "SETUSER", "bee", "on"]);

    let seen = b.recv_until(|l| l == format!("<{name}> while away {}", LINES - 1));
    let at = seen
        .iter()
        .position(|l| l.starts_with("! ") && l.contains("missed"))
        .unwrap_or_else(|| panic!("no missed-lines notice: {seen:?}"));
    let missed: u64 = seen[at]
        .split_once("missed ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {}", seen[at]));
    // What b got: the lines from the first the log still held, each once,
    // in order, all after the notice.
    let got: Vec<u64> = seen
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("while away"))
        .map(|(i, l)| {
            assert!(i > at, "{l} before the notice: {seen:?}");
            number_of(l)
        })
        .collect();
    let first_got = got[0];
    assert!(first_got >= first_kept, "a line trimmed came: {first_got}");
    assert_eq!(got, (first_got..LINES as u64).collect::<Vec<_>>());
    // The count told is what b did not get of the log between "before" and
    // the first line it got: the lines before `first_got`, and the other
    // entries among them (the other server's notice of b's client lost,
    // say), as the log numbers them. Only such a notice kept just before
    // `first_got` makes it less (b's server skips those, uncounted): in
    // the usual run there is none and the count must be `first_got`.
    let gap = number_in(&log, &format!("<{name}> while away {first_got}")) - read_up_to - 1;
    assert!(
        (first_got..=gap).contains(&missed),
        "{} (the first line b got: {first_got}; entries between it and \"before\": {gap})",
        seen[at]
    );
}

/// The log's number (`n`) of the entry whose text is `text`, in `log` (an
/// `XRANGE` reply, flattened: each entry's `n` comes before its `text`).
fn number_in(log: &[String], text: &str) -> u64 {
    let mut n = None;
    for (field, value) in log.iter().zip(&log[1..]) {
        if field == "n" {
            n = value.parse().ok();
        } else if field == "text" && value.trim_end() == text {
            return n.unwrap_or_else(|| panic!("{text:?} has no n"));
        }
    }
    panic!("{text:?} not in the log: {log:?}");
}

/// The N of a `<name> while away N` line (or of the log's field holding
/// one).
fn number_of(line: &str) -> u64 {
    line.trim_end()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

/// The console's `/ban` reaches every server: a client of another server
/// from the banned address is disconnected, and that server refuses the
/// address from then on; `/unban` lifts it there too.
#[test]
fn ban_and_unban_across_servers() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let source = chat_tests::hosts::loopback(0, 0, 9);
    let (mut banned, _) = chat_tests::hosts::Host::join(servers[1].addr(), source);
    servers[0].console("/ban 127.0.0.9 spam");
    // Passed on to server 1: listed since it started, before any client
    // (it was once listed only by its first heartbeat, which under load
    // could come after this `/ban`: never passed on, never closed).
    let passed = servers[0].stdout_until(|l| l.contains("passed on to the"));
    assert_eq!(passed, "* passed on to the 1 other server", "{passed}");
    let last = banned.recv_to_eof();
    assert!(
        last.iter()
            .any(|l| l.starts_with("! ") && l.contains("banned")),
        "{last:?}"
    );
    let mut again = chat_tests::hosts::Host::connect(servers[1].addr(), source);
    let refused = again.recv_to_eof();
    assert!(
        refused
            .iter()
            .any(|l| l.starts_with("! ") && l.contains("banned")),
        "{refused:?}"
    );
    servers[0].console("/unban 127.0.0.9");
    let passed = servers[0].stdout_until(|l| l.contains("passed on to the"));
    assert!(passed.contains("to the 1 other"), "{passed}");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut host = chat_tests::hosts::Host::connect(servers[1].addr(), source);
        let first = host.recv();
        if first.starts_with("* welcome") {
            break;
        }
        assert!(Instant::now() < deadline, "never lifted: {first:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Redis closes every connection while they sit idle (`CLIENT KILL`, as
/// a timeout or a failover does), Redis itself fine: the first `/nick`
/// afterwards is not refused as taken, and the first `/who` still lists
/// the other server's clients.
#[test]
fn first_commands_after_redis_closed_idle_connections_work() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, _) = joined(&servers[0]);
    let (mut b, bname) = joined(&servers[1]);
    // Idle: b's join notice went through.
    a.recv_until(|l| l.starts_with(&format!("* {bname} joined")));
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    b.send("/nick zed");
    let seen = b.recv_until(|l| l.contains("now known as zed") || l.starts_with("! "));
    assert!(
        seen.iter().any(|l| l.contains("now known as zed")),
        "{seen:?}; stderr:\n{}",
        servers[1].stderr()
    );
    a.send("/who");
    let seen = a.recv_until(|l| l.starts_with("* ") && l.contains(" in #lobby: "));
    assert!(
        seen.last().unwrap().contains("zed"),
        "the other server's client listed: {seen:?}"
    );
}

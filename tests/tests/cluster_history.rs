//! A room's history across the servers of a cluster (`--redis URL`) once
//! Redis lost lines: restarted empty, or from an older snapshot. SPEC:
//! "history is the room's, whichever server a client is on", so what a
//! newcomer is replayed follows the room's log in Redis on every server,
//! also on the one that had the lines in memory. Real binaries, a real
//! redis-server.

use chat_tests::cluster::{joined, servers};
use chat_tests::redis::Redis;
use chat_tests::{Client, Server};

/// Connects a newcomer to `server` and returns what it is shown from its
/// welcome up to its own `/who` answer: the welcome and the history
/// replayed (the `/who` answer comes after whatever came before).
fn newcomer(server: &Server) -> (Client, Vec<String>) {
    let (mut client, name) = server.join();
    client.send("/who");
    let shown = client.recv_until(|line| {
        line.starts_with("* ") && line.contains(&name) && line.contains("#lobby")
    });
    (client, shown)
}

/// The replayed chat lines in what a newcomer was shown: the N after its
/// `* last N line(s) of #room:` header. A line arriving live right after
/// them is no part of it (seen in CI: a line whose reply was lost as
/// Redis came back from an older copy, sent again by its writer).
fn history(shown: &[String]) -> Vec<&str> {
    let Some(at) = shown.iter().position(|l| l.starts_with("* last ")) else {
        return Vec::new();
    };
    let count: usize = shown[at]
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {:?}", shown[at]));
    shown[at + 1..]
        .iter()
        .take(count)
        .map(String::as_str)
        .collect()
}

/// The helper above: the header's count of lines after it, no more.
#[test]
fn history_is_the_lines_the_header_counts() {
    let shown: Vec<String> = [
        "* welcome",
        "* last 1 line of #lobby:",
        "<a> old",
        "<a> live",
        "* 2 in #lobby: a, b",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(history(&shown), ["<a> old"]);
    assert!(history(&shown[..1]).is_empty());
}

/// Defect: after Redis restarted empty, a newcomer on the server that had
/// the room open was replayed `<x> old line`, which the log had lost (the
/// bridge reset its delivery floor but not its history ring), while a
/// newcomer on another server got no history. Now both get the room's
/// history as the log holds it: none.
#[test]
fn history_is_the_same_on_every_server_after_redis_restarted_empty() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut x, x_name) = joined(&servers[0]);
    let (mut y, _) = joined(&servers[0]);
    x.send("old line");
    y.recv_until(|l| l == format!("<{x_name}> old line"));
    let (mut other, before) = newcomer(&servers[1]);
    assert_eq!(
        history(&before),
        [format!("<{x_name}> old line")],
        "the other server replays the line while the log holds it"
    );

    redis.kill();
    redis.restart();
    // Told once the history lost what the log lost; on both servers, so
    // neither is still cut off when the newcomers come (one entering
    // while cut off is replayed what its server had).
    for member in [&mut y, &mut other] {
        member.recv_until(|l| l.starts_with("! ") && l.contains("restarted empty"));
    }

    for server in &servers {
        let (_, shown) = newcomer(server);
        assert!(
            history(&shown).is_empty(),
            "a newcomer on {} is replayed nothing the log lost: {shown:?}",
            server.addr()
        );
    }
}

/// Defect: after Redis came back from an older snapshot, the notice said
/// the lines past it "are gone from its log and history", yet the server
/// that had delivered them still replayed them to a newcomer. Now exactly
/// those are dropped: a line the snapshot holds is still replayed.
#[test]
fn lines_rolled_back_are_not_replayed_and_the_rest_is() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 1);
    let (mut x, x_name) = joined(&servers[0]);
    let (mut y, _) = joined(&servers[0]);
    x.send("kept line");
    y.recv_until(|l| l == format!("<{x_name}> kept line"));
    // The snapshot Redis comes back with: `kept line` and both clients'
    // names and guest numbers are in it.
    assert_eq!(redis.command(&["SAVE"]), "+OK");
    x.send("rolled back 1");
    x.send("rolled back 2");
    y.recv_until(|l| l == format!("<{x_name}> rolled back 2"));

    redis.restart();
    let told = y.recv_until(|l| l.starts_with("! ") && l.contains("older copy"));
    assert!(
        told.last()
            .unwrap()
            .contains("gone from its log and history"),
        "{told:?}"
    );

    let (_, shown) = newcomer(&servers[0]);
    assert_eq!(
        history(&shown),
        [format!("<{x_name}> kept line")],
        "replayed: what the log holds, not the lines rolled back; shown {shown:?}"
    );
}

/// Sends `/join ROOM` then `/who` from `client` (named `name`) and returns
/// what it is shown after the join's answer up to the `/who` answer: the
/// history replayed, any notice about the link.
fn join_room(client: &mut Client, name: &str, room: &str) -> Vec<String> {
    client.send(&format!("/join {room}"));
    client.recv_until(|l| l.starts_with(&format!("* you are now in #{room}")));
    client.send("/who");
    client.recv_until(|l| {
        l.starts_with("* ") && l.contains(name) && l.contains(&format!(" in #{room}: "))
    })
}

/// Has `x` (named `x_name`) say two lines in turn, each waited for at
/// `y` (both in the same room of one server). The second was appended
/// after the reply that delivered the first, so an XREAD begun after it
/// read it: the reader had served, before that XREAD, every watch and
/// unwatch asked before the first line was sent (a room just left is no
/// longer read), and had noted Redis's clock (its first XREAD on a
/// connection asks `TIME` with it).
fn two_lines(x: &mut Client, x_name: &str, y: &mut Client) {
    for text in ["one", "two"] {
        x.send(text);
        y.recv_until(|l| l == format!("<{x_name}> {text}"));
    }
}

/// Kills Redis and waits until `x`'s server says it is cut off, then
/// starts Redis again and waits until it says it is connected again (its
/// reader then reads the new Redis, and lines are taken again).
fn outage(redis: &mut Redis, x: &mut Client) {
    redis.kill();
    x.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    redis.restart();
    x.recv_until(|l| l.starts_with("* connected"));
}

/// Puts `x` and `w` (of one server) in `#kept`, has `x` say `lines` there,
/// then takes both back to `#lobby`: `#kept` has no member on that server
/// any more, which keeps it for its history and no longer reads its log.
fn kept_for_its_history(
    (x, x_name): (&mut Client, &str),
    (w, w_name): (&mut Client, &str),
    lines: &[&str],
) {
    join_room(x, x_name, "kept");
    join_room(w, w_name, "kept");
    for line in lines {
        x.send(line);
    }
    let last = lines.last().expect("a line");
    w.recv_until(|l| l == format!("<{x_name}> {last}"));
    join_room(x, x_name, "lobby");
    join_room(w, w_name, "lobby");
    two_lines(x, x_name, w);
}

/// A newcomer to `#kept` on each of `servers` is replayed nothing (the
/// log lost it all).
fn no_history_of_kept(servers: &[Server]) {
    for server in servers {
        let (mut z, z_name) = joined(server);
        let shown = join_room(&mut z, &z_name, "kept");
        assert!(
            history(&shown).is_empty(),
            "a newcomer to #kept on {} is replayed nothing the log lost: {shown:?}",
            server.addr()
        );
    }
}

/// A room kept only for its history whose first member comes back while
/// the server is cut off from Redis, Redis then back empty: the member is
/// replayed what the server had, then told the log is gone, and the ring
/// is emptied before that, so a newcomer on any server is replayed
/// nothing the log lost. (Already so: the room is read from the moment
/// of the join, and the reader's note of Redis's clock is from the lost
/// Redis, `reader/reading/since.rs`; a regression test.)
#[test]
fn a_room_reentered_while_cut_off_loses_its_history_with_a_log_restarted_empty() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut x, x_name) = joined(&servers[0]);
    let (mut w, w_name) = joined(&servers[0]);
    kept_for_its_history((&mut x, &x_name), (&mut w, &w_name), &["old line"]);

    redis.kill();
    x.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    let shown = join_room(&mut x, &x_name, "kept");
    assert_eq!(
        history(&shown),
        [format!("<{x_name}> old line")],
        "replayed what this server had: {shown:?}"
    );

    redis.restart();
    x.recv_until(|l| l.starts_with("! ") && l.contains("restarted empty"));
    no_history_of_kept(&servers);
}

/// Defect: a room kept only for its history when Redis restarted empty
/// kept its history ring (its log was not read, so it was not told). Its
/// first member coming back while the server was cut off (later, Redis
/// away again) was replayed the lines the log had lost, and kept them
/// once Redis was back with no word of it (its log read from the join on,
/// the reader's clock already of the new Redis): every newcomer on that
/// server was replayed them, none on another server. Now the ring of
/// every room the server keeps is emptied when Redis is found restarted
/// empty, read or not.
#[test]
fn a_room_kept_for_its_history_loses_it_when_redis_restarted_empty() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut x, x_name) = joined(&servers[0]);
    let (mut w, w_name) = joined(&servers[0]);
    kept_for_its_history((&mut x, &x_name), (&mut w, &w_name), &["old line"]);

    // Redis restarted empty: the reader reads it (and notes its clock).
    outage(&mut redis, &mut x);
    two_lines(&mut x, &x_name, &mut w);
    // Redis will come back with what it holds now: the new, empty log.
    assert_eq!(redis.command(&["SAVE"]), "+OK");
    redis.kill();
    x.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    let shown = join_room(&mut x, &x_name, "kept");
    assert!(
        history(&shown).is_empty(),
        "the first member back while cut off is replayed nothing the log lost: {shown:?}"
    );

    redis.restart();
    x.recv_until(|l| l.starts_with("* connected"));
    no_history_of_kept(&servers);
}

/// Defect: a room kept only for its history when Redis restarted empty
/// kept its delivery floor, the number of the last line of the lost log
/// delivered here. When its first member came back (Redis up), the new
/// log's lines numbered up to that floor were taken for lines delivered
/// already: that server's members never got them, with no `! ` line (the
/// first 7 of these 10). Now the floor goes with the log.
#[test]
fn a_room_kept_for_its_history_gets_every_new_line_after_redis_restarted_empty() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 1);
    let (mut x, x_name) = joined(&servers[0]);
    let (mut w, w_name) = joined(&servers[0]);
    let old: Vec<String> = (1..=5).map(|i| format!("old line {i}")).collect();
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    kept_for_its_history((&mut x, &x_name), (&mut w, &w_name), &old);

    outage(&mut redis, &mut x);
    join_room(&mut x, &x_name, "kept");
    join_room(&mut w, &w_name, "kept");
    let new: Vec<String> = (1..=10).map(|i| format!("new line {i}")).collect();
    for line in &new {
        w.send(line);
    }
    let last = format!("<{w_name}> new line 10");
    let got = x.recv_until(|l| l == last);
    let said: Vec<&str> = got
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("<{w_name}> ")))
        .collect();
    assert_eq!(said, new, "every new line, in order; got {got:?}");
}

/// Defect: a room kept only for its history when Redis came back from an
/// older copy of its data kept its delivery floor, the number of the
/// last line delivered here, past the log's end now (its log was not
/// read, so no one checked it). When its first member came back, the new
/// lines numbered up to that floor were taken for lines delivered
/// already: that server's members never got them, with no `! ` line.
/// Now the server checks the rooms it keeps too when it reconnects: the
/// floor and the history go back with the log.
#[test]
fn a_room_kept_for_its_history_gets_every_new_line_after_redis_went_back() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 1);
    let (mut x, x_name) = joined(&servers[0]);
    let (mut w, w_name) = joined(&servers[0]);
    kept_past_a_snapshot(&redis, (&mut x, &x_name), (&mut w, &w_name));

    redis.restart();
    x.recv_until(|l| l.starts_with("! ") && l.contains("older copy"));
    let shown = join_room(&mut x, &x_name, "kept");
    assert_eq!(
        history(&shown),
        [format!("<{x_name}> old line 1")],
        "replayed what the log holds: {shown:?}"
    );
    join_room(&mut w, &w_name, "kept");
    let new: Vec<String> = (1..=6).map(|i| format!("new line {i}")).collect();
    for line in &new {
        w.send(line);
    }
    let last = format!("<{w_name}> new line 6");
    let got = x.recv_until(|l| l == last);
    let said: Vec<&str> = got
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("<{w_name}> ")))
        .collect();
    assert_eq!(said, new, "every new line, in order; got {got:?}");
}

/// Has `x` say `old line 1` to 5 in `#kept` (with `w`), Redis's copy
/// saved after the first, then takes both back to `#lobby`: `#kept` is
/// kept for its history (5 lines), not read, and Redis restarted now
/// comes back with 1 line in its log.
fn kept_past_a_snapshot(
    redis: &Redis,
    (x, x_name): (&mut Client, &str),
    (w, w_name): (&mut Client, &str),
) {
    join_room(x, x_name, "kept");
    join_room(w, w_name, "kept");
    x.send("old line 1");
    w.recv_until(|l| l == format!("<{x_name}> old line 1"));
    assert_eq!(redis.command(&["SAVE"]), "+OK");
    for i in 2..=5 {
        x.send(&format!("old line {i}"));
    }
    w.recv_until(|l| l == format!("<{x_name}> old line 5"));
    join_room(x, x_name, "lobby");
    join_room(w, w_name, "lobby");
    two_lines(x, x_name, w);
}

/// A member entering a kept room while its server is cut off is replayed
/// the 5 lines the server had; Redis then comes back from a copy with 1:
/// the member is told that lines it was shown are gone (`! ... older
/// copy`). A first version of the kept rooms' check (the room's watch not
/// served yet, so it counted as kept) trimmed its history and told no one
/// (found by a review).
#[test]
fn a_member_entering_while_cut_off_is_told_of_the_rollback() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 1);
    let (mut x, x_name) = joined(&servers[0]);
    let (mut w, w_name) = joined(&servers[0]);
    kept_past_a_snapshot(&redis, (&mut x, &x_name), (&mut w, &w_name));
    redis.kill();
    x.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    let shown = join_room(&mut x, &x_name, "kept");
    assert_eq!(history(&shown).len(), 5, "{shown:?}");
    redis.restart();
    let got = x.recv_until(|l| l.starts_with("* ") && l.contains("again"));
    assert!(
        got.iter()
            .any(|l| l.starts_with("! ") && l.contains("older copy")),
        "not told: {got:?}"
    );
    let (mut z, z_name) = joined(&servers[0]);
    let shown = join_room(&mut z, &z_name, "kept");
    assert_eq!(
        history(&shown),
        [format!("<{x_name}> old line 1")],
        "a newcomer is replayed what the log holds: {shown:?}"
    );
}

/// A client that shuts its side before a word, on a server whose
/// `#lobby` has no member: shown the room's history from its log in
/// Redis, as one that stays would be (a review: it got the welcome alone,
/// the server's own copy of a lobby it does not read being empty).
#[test]
fn a_client_that_shuts_its_side_at_once_gets_the_history_from_the_log() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, name) = joined(&servers[0]);
    a.send("said on the first server");
    // In the log before the glimpse on the other server.
    let deadline = std::time::Instant::now() + chat_tests::TIMEOUT;
    while !redis
        .query(&["XREVRANGE", "chat:log:lobby", "+", "-", "COUNT", "1"])
        .iter()
        .any(|f| f.contains("said on the first server"))
    {
        assert!(std::time::Instant::now() < deadline, "never in the log");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stream = std::net::TcpStream::connect(servers[1].addr()).expect("connect");
    stream
        .set_read_timeout(Some(chat_tests::TIMEOUT))
        .expect("timeout");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shut our side");
    let lines = Client::from_stream(stream).recv_to_eof();
    assert!(
        lines.contains(&format!("<{name}> said on the first server")),
        "{lines:?}"
    );
}

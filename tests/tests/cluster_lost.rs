//! A server taken for lost while it still runs (frozen, or cut off from
//! Redis, past its heartbeat's 5 s): the other servers see its clients
//! leave, then, once it registers again, see each come back; its own
//! clients, who never left, see neither. And a server lost as Redis
//! restarted empty (killed, or stopped while Redis was away): the others
//! announce its clients' leave once. Real binaries and a real
//! redis-server.

use std::thread;
use std::time::{Duration, Instant};

use chat_tests::cluster::{ask_until, joined, servers, ASK_AGAIN};
use chat_tests::redis::Redis;
use chat_tests::{signal, Client, Server, TIMEOUT};

/// Two servers with a client each in the lobby, the first frozen
/// (`SIGSTOP`) until the other's client saw its client leave as lost
/// ([`frozen_past_its_heartbeat`]).
struct Frozen {
    servers: Vec<Server>,
    /// The frozen server's client, and its name.
    victim: Client,
    v: String,
    /// The other server's client, and its name.
    watcher: Client,
    w: String,
}

/// Starts two servers on `redis`, joins a client to each, and freezes the
/// first until the second's client hears `left (server lost)`.
fn frozen_past_its_heartbeat(redis: &Redis) -> Frozen {
    let servers = servers(redis, 2);
    let (mut victim, v) = joined(&servers[0]);
    let (mut watcher, w) = joined(&servers[1]);
    victim.recv_until(|l| l.starts_with(&format!("* {w} joined")));
    servers[0].signal("STOP");
    watcher.recv_until(|l| l == format!("* {v} left (server lost)"));
    Frozen {
        servers,
        victim,
        v,
        watcher,
        w,
    }
}

/// Defect (review): a server frozen past its heartbeat came back without
/// a word: the others saw its clients leave, then their lines with no
/// return, and its own clients were told each of them had left, oneself
/// included.
#[test]
fn a_server_taken_for_lost_announces_its_clients_back() {
    let redis = Redis::start();
    let Frozen {
        servers,
        mut victim,
        v,
        mut watcher,
        w,
    } = frozen_past_its_heartbeat(&redis);
    servers[0].signal("CONT");
    watcher.recv_until(|l| l == format!("* {v} is back (server reconnected)"));
    watcher.send("welcome back");
    let seen = victim.recv_until(|l| l == format!("<{w}> welcome back"));
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with(&format!("* {v} left")) || l.contains(" is back ")),
        "{seen:?}"
    );
    victim.send("still here");
    watcher.recv_until(|l| l == format!("<{v}> still here"));
}

/// Defect (review): a client that renamed itself while its server was
/// frozen (its `/nick` read once the server ran again) was never
/// announced back: the others saw it leave, then its rename, and `/who`
/// listed it with no return. The members announced gone are noted by
/// client id now, and it comes back by its new name.
///
/// Once the server runs, its connection reads the `/nick` and its
/// presence beats again in either order, and the rename can be relayed
/// before the beat announces the return (Known limits in CLUSTER.md). So
/// the watcher sees `frank` come back; or the old name come back and then
/// be renamed; or the rename and then `frank` come back. It is announced
/// back in each, by the name it has then, and nobody else is.
#[test]
fn a_client_renamed_while_its_server_was_frozen_is_announced_back() {
    let redis = Redis::start();
    let Frozen {
        servers,
        mut victim,
        v,
        mut watcher,
        w,
    } = frozen_past_its_heartbeat(&redis);
    // Read by the server once it runs again.
    victim.send("/nick frank");
    servers[0].signal("CONT");
    let back_as_frank = "* frank is back (server reconnected)";
    let back_as_v = format!("* {v} is back (server reconnected)");
    let renamed = format!("* {v} is now known as frank");
    let mut seen = watcher.recv_until(|l| l == back_as_frank || l == back_as_v || l == renamed);
    if seen.last() == Some(&back_as_v) {
        seen.extend(watcher.recv_until(|l| l == renamed));
    } else if seen.last() == Some(&renamed) {
        seen.extend(watcher.recv_until(|l| l == back_as_frank));
    }
    victim.recv_until(|l| l.contains("frank"));
    watcher.send("welcome back");
    victim.recv_until(|l| l == format!("<{w}> welcome back"));
    // Everything the room saw up to a line of frank's, after it all.
    victim.send("all told");
    seen.extend(watcher.recv_until(|l| l == "<frank> all told"));
    let backs: Vec<&String> = seen.iter().filter(|l| l.contains(" is back ")).collect();
    assert_eq!(backs.len(), 1, "{seen:?}");
}

/// Waits until a client joining `server` is told at least `want` are
/// online in the lobby: its presence's last beat counted (and so read and
/// remembered) the other servers' members. Each probe quits at once.
fn counted(server: &Server, want: usize) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut probe = server.connect();
        let welcome = probe.recv();
        probe.send("/quit");
        let online = welcome
            .split_once(" (")
            .and_then(|(_, rest)| rest.split_once(" online)"))
            .and_then(|(n, _)| n.parse::<usize>().ok());
        if online.is_some_and(|n| n >= want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {want} online: {welcome:?}"
        );
        thread::sleep(ASK_AGAIN);
    }
}

/// The id of the server whose client holds `name` (from its name key).
fn server_of(redis: &Redis, name: &str) -> String {
    let holder = redis.query(&["GET", &format!("chat:name:{}", name.to_lowercase())]);
    let holder = holder.first().expect("the name is held");
    holder
        .split(':')
        .next()
        .expect("SERVER:CLIENT:Name")
        .to_string()
}

/// Servers 1 and 2 survive what `lose` does to server 0 and Redis (Redis
/// back empty at the end): each of their clients sees the lost client's
/// leave once, neither survivor's clients are taken for lost, and the
/// name is free.
fn lost_with_redis(lose: impl FnOnce(&mut Redis, &mut Server)) {
    let mut redis = Redis::start();
    let mut servers = servers(&redis, 3);
    let (mut victim, _) = joined(&servers[0]);
    // A name a client may take (not a guest's), to take it again after;
    // filed before the others join, so every count with one of them in
    // it read it.
    let v = "Alice".to_string();
    victim.send(&format!("/nick {v}"));
    ask_until(&mut victim, "/who", &format!("* 1 in #lobby: {v}"));
    let (mut b, bn) = joined(&servers[1]);
    let (mut c, cn) = joined(&servers[2]);
    b.recv_until(|l| l.starts_with(&format!("* {cn} joined")));
    let lost = server_of(&redis, &v);
    // Each survivor's last beat read the victim and another client that
    // joined after it was renamed (the other survivor's, or a probe).
    counted(&servers[1], 4);
    counted(&servers[2], 4);

    lose(&mut redis, &mut servers[0]);
    let left = format!("* {v} left (server lost)");
    let mut seen_b = b.recv_until(|l| l == left);
    let mut seen_c = c.recv_until(|l| l == left);
    // Both survivors are done with it: one listed it again (and reaped
    // it), the other found it listed or reaped already.
    let deadline = Instant::now() + TIMEOUT;
    for survivor in &servers[1..] {
        while !survivor
            .stderr()
            .contains(&format!("server {lost} did not register again"))
            && !survivor
                .stderr()
                .contains(&format!("server {lost}, awaited"))
        {
            assert!(Instant::now() < deadline, "{}", survivor.stderr());
            thread::sleep(ASK_AGAIN);
        }
    }
    b.send("after");
    seen_c.extend(c.recv_until(|l| l == format!("<{bn}> after")));
    c.send("after too");
    seen_b.extend(b.recv_until(|l| l == format!("<{cn}> after too")));
    for seen in [&seen_b, &seen_c] {
        assert_eq!(seen.iter().filter(|l| **l == left).count(), 1, "{seen:?}");
        assert!(
            !seen.iter().any(|l| l.starts_with(&format!("* {bn} left"))
                || l.starts_with(&format!("* {cn} left"))),
            "{seen:?}"
        );
    }
    let log = redis.query(&["XRANGE", "chat:log:lobby", "-", "+"]);
    let stored = format!("{left}\n");
    assert_eq!(log.iter().filter(|f| **f == stored).count(), 1, "{log:?}");
    ask_until(&mut b, "/who", &format!("* 2 in #lobby: {bn}, {cn}"));
    // The name is free: a survivor's client takes it (in another case).
    b.send("/nick alice");
    b.recv_until(|l| l == "* you are now known as alice");
}

/// Defect (review, 5 of 5 runs): a server killed (`kill -9`) a moment
/// before Redis restarted empty was never announced gone: the new Redis
/// knew nothing of it to reap, and its clients only dropped out of
/// `/who`. Now the survivors, remembering it from their last beats,
/// announce its client once, `left (server lost)`, its name free.
#[test]
fn a_server_killed_as_redis_restarts_empty_is_announced_lost() {
    lost_with_redis(|redis, victim| {
        victim.signal("KILL");
        victim.wait_exit(TIMEOUT);
        redis.restart();
    });
}

/// A server stopped (Ctrl+C) while Redis is away cannot announce its
/// clients' leave; Redis then back empty, the survivors announce it as
/// for any server they lost track of: `left (server lost)`.
#[test]
fn a_server_stopped_while_redis_is_away_is_announced_lost_when_it_is_back_empty() {
    lost_with_redis(|redis, victim| {
        redis.kill();
        victim.signal("INT");
        victim.wait_exit(TIMEOUT);
        redis.restart();
    });
}

/// Review: heartbeats that ended at an absolute time (`PXAT`, tried so a
/// server killed while Redis was stopped would be announced sooner) were
/// all gone when a Redis hung for 6 s resumed, and the live servers took
/// each other for lost: a false `left (server lost)`, then `is back`, in
/// every room (3 runs of 3). With a relative TTL the beat held in the
/// stopped Redis lasts a whole TTL from its run, past the reconnection.
/// Watched for 4 s after both clients heard Redis was back (the false
/// reap came about 1 s after the resume). A guard of the property: with
/// `PXAT` put back, this harness did not show the false reap in 4 tries
/// (6 and 8 s), where the review's, its stop at another phase of the
/// beats, did in 3 of 3.
#[test]
fn a_redis_hung_for_6_s_takes_no_live_server_for_lost() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, _) = joined(&servers[0]);
    let (mut b, bn) = joined(&servers[1]);
    a.recv_until(|l| l.starts_with(&format!("* {bn} joined")));
    let pid = redis.pid().expect("redis runs");
    signal(pid, "STOP");
    // The hang itself, not a wait for an effect.
    thread::sleep(Duration::from_secs(6));
    signal(pid, "CONT");
    let back = |l: &str| l.starts_with("* connected to the other servers again");
    let mut seen = a.recv_until(back);
    seen.extend(b.recv_until(back));
    let until = Instant::now() + Duration::from_secs(4);
    for client in [&mut a, &mut b] {
        while let Some(line) = client.try_recv(until.saturating_duration_since(Instant::now())) {
            seen.push(line);
        }
    }
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("(server lost)") || l.contains("(server reconnected)")),
        "a live server was taken for lost: {seen:?}; stderr:\n{}\n{}",
        servers[0].stderr(),
        servers[1].stderr()
    );
}

/// Defect (a review, 5 of 5): a connection Redis dropped (`CLIENT KILL`)
/// 4 s after a `kill -9`, Redis fine all along, pushed the announcement
/// past SPEC's 10 s (10.1 to 11.0 s): the survivor took the 2 s between
/// its answered beats for an outage and waited a heartbeat's TTL before
/// taking anyone for lost. Only a Redis that lost the survivor's own
/// heartbeat makes it wait now; a dropped connection loses nothing. The
/// drop comes half a second before the victim's heartbeat expires (so the
/// survivor cannot have reaped it yet), and the leave must come within
/// 3 s of that expiry (a beat, a beat lost to the drop, and delivery),
/// where the wait put it 5.5 s or more after.
#[test]
fn a_dropped_connection_does_not_delay_a_kill_9_past_10_s() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let (_kept, victim) = joined(&servers[0]);
    let (mut watcher, w) = joined(&servers[1]);
    ask_until(
        &mut watcher,
        "/who",
        &format!("* 2 in #lobby: {victim}, {w}"),
    );
    let heartbeat = format!("chat:alive:{}", server_of(&redis, &victim));
    servers[0].signal("KILL");
    let killed = Instant::now();
    let left: u64 = redis.query(&["PTTL", &heartbeat])[0]
        .parse()
        .expect("the victim's heartbeat TTL");
    let expiry = killed + Duration::from_millis(left);
    // The scenario's moment, not a wait for an effect.
    thread::sleep(
        expiry
            .saturating_duration_since(Instant::now())
            .saturating_sub(Duration::from_millis(500)),
    );
    let dropped = redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(dropped.starts_with(':') && dropped != ":0", "{dropped}");
    watcher.recv_until(|l| l == format!("* {victim} left (server lost)"));
    let (after_kill, after_expiry) = (killed.elapsed(), expiry.elapsed());
    assert!(
        after_kill < Duration::from_secs(10) && after_expiry < Duration::from_secs(3),
        "announced {after_kill:?} after the kill, {after_expiry:?} after its heartbeat expired; stderr:\n{}",
        servers[1].stderr()
    );
    servers.remove(0);
}

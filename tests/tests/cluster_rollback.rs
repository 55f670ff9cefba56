//! Redis back from an older copy of its data (a snapshot: `SAVE`, then
//! `kill -9` and a restart that loads it) under running servers: the
//! epoch is the same, each server is still listed, but what its clients
//! did after the snapshot is gone from Redis. SPEC: names are unique
//! across the servers, `/who` and `/rooms` reach every server, and a dead
//! server's clients' leave is announced within 10 s, once. Real binaries,
//! a real redis-server whose private `--dir` holds the snapshot.

use std::thread;
use std::time::{Duration, Instant};

use chat_tests::cluster::{ask_until, joined, servers};
use chat_tests::redis::Redis;
use chat_tests::TIMEOUT;

/// The heartbeat key of the server whose members list files `name`.
fn heartbeat_of(redis: &Redis, name: &str) -> String {
    let lists = redis.query(&["KEYS", "chat:members:*"]);
    let list = lists
        .iter()
        .find(|list| redis.query(&["HEXISTS", list, name]) == ["1"])
        .unwrap_or_else(|| panic!("{name} filed in none of {lists:?}"));
    list.replacen("chat:members:", "chat:alive:", 1)
}

/// Waits until `key` (a heartbeat) is refreshed once, within [`TIMEOUT`]:
/// its TTL goes up between two samples.
fn beat_once(redis: &Redis, key: &str) {
    let ttl = || -> i64 {
        redis.query(&["PTTL", key])[0]
            .parse()
            .unwrap_or_else(|_| panic!("PTTL {key}"))
    };
    let deadline = Instant::now() + TIMEOUT;
    let mut last = ttl();
    loop {
        assert!(Instant::now() < deadline, "{key} never refreshed");
        thread::sleep(Duration::from_millis(20));
        let now = ttl();
        if now > last {
            return;
        }
        last = now;
    }
}

/// Defect (a review): after Redis came back from a snapshot, a client
/// renamed since (`carol`) was still filed and held under its old guest
/// name, so another server's client took `carol` too; one that arrived
/// since (`erin`) and a `/join #side` made since were missing from `/who`
/// on the other server, `erin` could be taken, and when the server was
/// then killed its clients' leave was announced in the wrong room (erin's
/// never). Now the server sees its heartbeat went back and registers
/// again: members filed as they are, names claimed, stale ones freed.
#[test]
fn redis_back_from_an_older_copy_gets_names_and_members_as_they_are() {
    let mut redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let (mut x, x_name) = joined(&servers[0]);
    let (mut y, y_name) = joined(&servers[0]);
    let (mut v, v_name) = joined(&servers[0]);
    let (mut w, w_name) = joined(&servers[1]);
    ask_until(
        &mut w,
        "/who",
        &format!("* 4 in #lobby: {x_name}, {y_name}, {v_name}, {w_name}"),
    );
    let heartbeat = heartbeat_of(&redis, &x_name);
    // The snapshot Redis comes back with: x and y in the lobby, under
    // their guest names.
    assert_eq!(redis.command(&["SAVE"]), "+OK");
    v.send("/quit");
    v.recv_to_eof();
    x.send("/nick carol");
    x.recv_until(|l| l.contains("now known as carol"));
    y.send("/join #side");
    y.recv_until(|l| l.contains("#side"));
    let (mut erin, _) = joined(&servers[0]);
    erin.send("/nick erin");
    erin.recv_until(|l| l.contains("now known as erin"));
    erin.send("/join #side");
    erin.recv_until(|l| l.contains("#side"));
    ask_until(&mut w, "/who", &format!("* 2 in #lobby: carol, {w_name}"));
    ask_until(&mut erin, "/who", &format!("* 2 in #side: {y_name}, erin"));
    // Its server beat since: the heartbeat the snapshot holds is behind.
    beat_once(&redis, &heartbeat);

    redis.restart();
    let (mut z, z_name) = joined(&servers[1]);
    z.send("/join #side");
    z.recv_until(|l| l.contains("#side"));
    // The other server lists them as they are, not as the snapshot had them.
    ask_until(&mut w, "/who", &format!("* 2 in #lobby: carol, {w_name}"));
    ask_until(
        &mut z,
        "/who",
        &format!("* 3 in #side: {y_name}, erin, {z_name}"),
    );
    // Their names are held, and those given up since the snapshot (by a
    // rename, by leaving) are freed (in a round trip of their own, after
    // the registration's).
    w.send("/nick carol");
    w.recv_until(|l| l == "! name \"carol\" is taken");
    z.send("/nick erin");
    z.recv_until(|l| l == "! name \"erin\" is taken");
    for gone in [&x_name, &v_name] {
        until_gone(&redis, &format!("chat:name:{}", gone.to_lowercase()));
    }
    let key = format!("chat:name:{}", y_name.to_lowercase());
    assert_eq!(redis.query(&["EXISTS", &key]), ["1"], "{key} freed");

    // Killed, each client's leave is announced in its room as it is now.
    servers[0].signal("KILL");
    w.recv_until(|l| l == "* carol left (server lost)");
    let mut left: Vec<String> = (0..2)
        .filter_map(|_| z.recv_until(|l| l.ends_with(" left (server lost)")).pop())
        .collect();
    left.sort();
    let mut want = [
        "* erin left (server lost)".to_string(),
        format!("* {y_name} left (server lost)"),
    ];
    want.sort();
    assert_eq!(left, want);
    servers.remove(0);
}

/// Waits, within [`TIMEOUT`], until `key` exists in `redis`.
fn until_exists(redis: &Redis, key: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while redis.query(&["EXISTS", key]) != ["1"] {
        assert!(Instant::now() < deadline, "{key} never came back");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits, within [`TIMEOUT`], until `key` no longer exists in `redis`.
fn until_gone(redis: &Redis, key: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while redis.query(&["EXISTS", key]) != ["0"] {
        assert!(Instant::now() < deadline, "{key} still held");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Defects (a review, 3 of 3 each): a snapshot older than the heartbeat
/// (5 s: Redis loads it with the heartbeat expired) went unseen, so a
/// client renamed since stayed held in Redis under its old name, and the
/// name it gave up could be taken twice; and a name passed from one
/// client to another of the same server since the snapshot was taken
/// from its new holder at the registration (the copy showed it held by
/// the old one, freed only after the claim failed): the holder was
/// renamed a guest, and the name left to no one. Now the beat number is
/// kept in a key that outlives the heartbeat, and a claim refused by a
/// stale entry of the server's own is made again once it is freed.
#[test]
fn an_older_copy_than_the_heartbeat_is_seen_and_a_name_passed_on_stays_its_holders() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut x, _) = joined(&servers[0]);
    let (mut y, y_name) = joined(&servers[0]);
    let (mut w, w_name) = joined(&servers[1]);
    x.send("/nick carol");
    x.recv_until(|l| l.contains("now known as carol"));
    ask_until(
        &mut w,
        "/who",
        &format!("* 3 in #lobby: carol, {y_name}, {w_name}"),
    );
    let heartbeat = heartbeat_of(&redis, "carol");
    let ttl: u64 = redis.query(&["PTTL", &heartbeat])[0]
        .parse()
        .expect("a heartbeat's TTL");
    // The snapshot: carol is x's.
    assert_eq!(redis.command(&["SAVE"]), "+OK");
    let saved = Instant::now();
    x.send("/nick dave");
    x.recv_until(|l| l.contains("now known as dave"));
    y.send("/nick carol");
    y.recv_until(|l| l.contains("now known as carol"));
    ask_until(
        &mut w,
        "/who",
        &format!("* 3 in #lobby: dave, carol, {w_name}"),
    );
    // The copy is to be loaded with its heartbeat expired: it must be
    // older than the TTL the heartbeat had when it was taken.
    let age = Duration::from_millis(ttl + 300);
    thread::sleep(age.saturating_sub(saved.elapsed()));

    // The other server is held still until this one has registered and
    // beaten once more: the copy has no heartbeat of it either, and it is
    // not to be taken for lost for that (before, the first server to beat
    // announced the other's clients lost, then back).
    servers[1].signal("STOP");
    redis.restart();
    assert_eq!(
        redis.query(&["EXISTS", &heartbeat]),
        ["0"],
        "the copy still held the heartbeat: not old enough"
    );
    // `dave` was claimed after the copy: only a registration brings it back.
    until_exists(&redis, "chat:name:dave");
    beat_once(&redis, &heartbeat);
    servers[1].signal("CONT");
    let holder = redis.query(&["GET", "chat:name:carol"]);
    assert!(
        holder.len() == 1 && holder[0].ends_with(":carol"),
        "carol held by {holder:?}"
    );
    w.send("/nick carol");
    w.recv_until(|l| l == "! name \"carol\" is taken");
    // Neither of them was renamed.
    for (client, name) in [(&mut x, "dave"), (&mut y, "carol")] {
        client.send("/who");
        let seen = client.recv_until(|l| l.starts_with("* 3 in #lobby:"));
        assert!(
            seen.iter().all(|l| !l.contains("you are guest")),
            "{name} renamed: {seen:?}"
        );
        assert!(
            seen.iter().all(|l| !l.contains("(server lost)")),
            "{name} saw a live server taken for lost: {seen:?}"
        );
        assert_eq!(
            seen.last().unwrap(),
            &format!("* 3 in #lobby: dave, carol, {w_name}")
        );
    }
    assert!(
        !servers[0].stderr().contains("lost; announced"),
        "{}",
        servers[0].stderr()
    );
}

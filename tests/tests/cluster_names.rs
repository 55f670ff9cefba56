//! Names across servers (`--redis`) at their edges: guest numbers when
//! Redis's counter went back (restarted empty, or from an older copy of its
//! data: a new client must never get the number, its id on the server, of
//! a client still connected), and a name changed only in case.

use std::thread;
use std::time::{Duration, Instant};

use chat_tests::cluster::{ask_until, joined, servers};
use chat_tests::redis::Redis;
use chat_tests::TIMEOUT;

/// The counter set back under a running server: the next client is a
/// new guest, not a second `guest-1` that would share the first one's
/// id (its lines skipped for the first, private messages crossed, both
/// dropped when one quits).
#[test]
fn a_counter_gone_back_never_gives_a_connected_clients_number() {
    let redis = Redis::start();
    let servers = servers(&redis, 1);
    let (mut x, x_name) = joined(&servers[0]);
    // As Redis restored from a copy taken before x connected.
    redis.query(&["SET", "chat:guest", "0"]);
    let (mut z, z_name) = servers[0].join();
    assert_ne!(z_name, x_name, "a second client named {x_name}");
    // Each sees the other's line: two ids, not one.
    z.send("from z");
    x.recv_until(|l| l == format!("<{z_name}> from z"));
    x.send("from x");
    z.recv_until(|l| l == format!("<{x_name}> from x"));
    // z leaving does not take x with it.
    z.send("/quit");
    x.recv_until(|l| l.starts_with(&format!("* {z_name} left")));
    // x is still connected, and alone in the room.
    x.send("/who");
    x.recv_until(|l| l == format!("* 1 in #lobby: {x_name}"));
}

/// Redis emptied (as when it restarts without persistence) while server A
/// has `guest-1` and `guest-2` and server B has no client yet: B's next
/// newcomer must not be named `guest-1` again before A registered its
/// clients anew (the counter is back at 0, and B gave no number itself).
/// B's presence notes the shared counter every beat, and gives no number
/// at or below it.
#[test]
fn a_server_gives_no_number_another_gave_after_redis_came_back_empty() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (_x, x_name) = joined(&servers[0]);
    let (_y, y_name) = joined(&servers[0]);
    // Both servers finished a beat begun since: B's presence has read the
    // counter at 2 and noted it. One rise of B's TTL would only show Redis
    // ran that beat's pipeline, not that B had read the reply yet; a
    // second rise shows the first beat done (see [`two_beats_of`]). B's
    // key is not told from A's, so both are waited on.
    let alive = redis.query(&["KEYS", "chat:alive:*"]);
    assert_eq!(alive.len(), 2, "{alive:?}");
    for key in &alive {
        two_beats_of(&redis, key);
    }
    redis.query(&["FLUSHALL"]);
    let (_z, z_name) = servers[1].join();
    assert!(
        z_name != x_name && z_name != y_name,
        "{z_name} given again (A has {x_name} and {y_name})"
    );
}

/// A client that changes only the case of its name is listed once, in its
/// new spelling, on every server, and not at all once it left: the
/// members list is keyed by the exact spelling, and the old one stayed
/// there (a ghost in `/who`, `/rooms` and `N online`, announced as leaving
/// when its server stopped).
#[test]
fn a_name_changed_only_in_case_is_listed_once() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut x, _) = joined(&servers[0]);
    let (mut y, y_name) = joined(&servers[1]);
    x.send("/nick Bob");
    x.recv_until(|l| l.contains("now known as Bob"));
    x.send("/nick BOB");
    x.recv_until(|l| l.contains("now known as BOB"));
    ask_until(&mut y, "/who", &format!("* 2 in #lobby: BOB, {y_name}"));
    ask_until(&mut y, "/rooms", "* 1 room: #lobby (2)");
    x.send("/quit");
    y.recv_until(|l| l.starts_with("* BOB left"));
    ask_until(&mut y, "/who", &format!("* 1 in #lobby: {y_name}"));
}

/// Waits until the server whose heartbeat key is `key` has finished a
/// beat begun after this call: the key's TTL goes up twice (a beat
/// refreshes it first; the second rise shows the first beat, and what it
/// read of the others' members, done).
fn two_beats_of(redis: &Redis, key: &str) {
    let ttl = || -> i64 {
        redis.query(&["PTTL", key])[0]
            .parse()
            .unwrap_or_else(|_| panic!("PTTL {key}"))
    };
    let mut last = ttl();
    let mut rises = 0;
    let deadline = Instant::now() + TIMEOUT;
    while rises < 2 {
        assert!(Instant::now() < deadline, "{key} never beat twice");
        thread::sleep(Duration::from_millis(20));
        let now = ttl();
        if now > last {
            rises += 1;
        }
        last = now;
    }
}

/// Defect (review, 8 of 8 runs): Alice on server A; Redis killed and
/// restarted empty on the same port. A client of server B sent
/// `/nick alice` the moment it was told `connected ... again` and got
/// it, before A's next beat claimed its members' names again; Alice,
/// who did nothing, was renamed a guest. Now B, remembering Alice from
/// its last beat, refuses the name until A is listed again (or taken for
/// lost): the `/nick` is answered as for a taken name, and Alice keeps it.
#[test]
fn a_name_held_before_redis_restarted_empty_stays_its_holders() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut alice, _) = joined(&servers[0]);
    alice.send("/nick Alice");
    alice.recv_until(|l| l == "* you are now known as Alice");
    let (mut b, b_name) = joined(&servers[1]);
    alice.recv_until(|l| l.starts_with(&format!("* {b_name} joined")));
    // B's presence has read A's members (Alice among them) since.
    let alive = redis.query(&["KEYS", "chat:alive:*"]);
    assert_eq!(alive.len(), 2, "{alive:?}");
    for key in &alive {
        two_beats_of(&redis, key);
    }

    redis.kill();
    redis.restart();
    b.recv_until(|l| l.starts_with("* connected to the other servers again"));
    b.send("/nick alice");
    let answer = b.recv_until(|l| l.starts_with("! ") || l.contains("known as"));
    let answer = answer.last().expect("an answer");
    assert!(
        answer.starts_with("! ") && answer.contains("alice"),
        "B took Alice's name: {answer}; stderr:\n{}",
        servers[1].stderr()
    );

    // A claims its member's name again at its next beat.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let holder = redis.query(&["GET", "chat:name:alice"]);
        if holder.iter().any(|h| h.ends_with(":Alice")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never claimed Alice again: {holder:?}; stderr:\n{}",
            servers[0].stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Alice was not renamed: told nothing of a name taken before her
    // `/who` answer, and her line carries her name.
    alice.send("/who");
    let seen =
        alice.recv_until(|l| l.starts_with("* ") && l.contains("#lobby") && l.contains("Alice"));
    assert!(
        !seen.iter().any(|l| l.contains("took the name")),
        "Alice was renamed: {seen:?}"
    );
    alice.send("still Alice");
    b.recv_until(|l| l == "<Alice> still Alice");
}

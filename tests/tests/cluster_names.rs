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
    // Both servers beat since (each refreshed its heartbeat key): B has
    // seen the counter at 2.
    let ttl = |key: &str| -> i64 {
        redis.query(&["PTTL", key])[0]
            .parse()
            .unwrap_or_else(|_| panic!("PTTL {key}"))
    };
    let alive = redis.query(&["KEYS", "chat:alive:*"]);
    assert_eq!(alive.len(), 2, "{alive:?}");
    // A beat shows as a key's TTL going up between two samples. Comparing
    // with the first sample alone is not enough: read in the very
    // millisecond of a beat, it is the full TTL, which no later read beats.
    let mut last: Vec<i64> = alive.iter().map(|k| ttl(k)).collect();
    let mut beat = vec![false; alive.len()];
    let deadline = Instant::now() + TIMEOUT;
    while beat.contains(&false) {
        assert!(Instant::now() < deadline, "a server never beat");
        thread::sleep(Duration::from_millis(20));
        for ((key, last), beat) in alive.iter().zip(&mut last).zip(&mut beat) {
            let now = ttl(key);
            *beat |= now > *last;
            *last = now;
        }
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

//! Names across servers (`--redis`) at their edges: guest numbers when
//! Redis's counter went back (restarted empty, or from an older copy of its
//! data: a new client must never get the number, its id on the server, of
//! a client still connected), and a name changed only in case.

use std::time::Duration;

use chat_tests::cluster::{ask_until, joined, servers};
use chat_tests::redis::Redis;

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
    x.send("/who");
    assert!(
        x.try_recv(Duration::from_secs(5)).is_some(),
        "x still connected"
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

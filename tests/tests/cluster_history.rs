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

/// The replayed chat lines in what a newcomer was shown.
fn history(shown: &[String]) -> Vec<&str> {
    shown
        .iter()
        .filter(|l| l.starts_with('<'))
        .map(String::as_str)
        .collect()
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
    let (_, before) = newcomer(&servers[1]);
    assert_eq!(
        history(&before),
        [format!("<{x_name}> old line")],
        "the other server replays the line while the log holds it"
    );

    redis.kill();
    redis.restart();
    // Told once the history lost what the log lost.
    y.recv_until(|l| l.starts_with("! ") && l.contains("restarted empty"));

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

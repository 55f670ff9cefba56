//! A name given back while Redis is away (`--redis`): a client that quits
//! during a short outage must be unlisted and its name free again once
//! Redis is back, on every server. Its server could neither free the name
//! key nor take it out of the members list then, and nothing tried again:
//! the leaver stayed in `/who` and `N online`, and its name was held for
//! no one until its server stopped.

use std::thread;
use std::time::{Duration, Instant};

use chat_tests::cluster::{ask_until, joined, servers};
use chat_tests::redis::Redis;
use chat_tests::TIMEOUT;

/// Redis keeps its data across a kill (AOF, each write synced), so it comes
/// back with the same epoch: nothing is registered again from scratch.
const PERSISTENT: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

/// alice (server A) quits while Redis is down; once it is back, both
/// servers' `/who` and `/rooms` leave her out, her name key is gone, and a
/// client of server B takes her name.
#[test]
fn a_client_that_quit_while_redis_was_away_is_gone_once_it_is_back() {
    let mut redis = Redis::start_with(&PERSISTENT);
    let servers = servers(&redis, 2);
    let (mut alice, _) = joined(&servers[0]);
    let (mut w, w_name) = joined(&servers[0]);
    let (mut y, y_name) = joined(&servers[1]);
    alice.send("/nick alice");
    alice.recv_until(|l| l.contains("now known as alice"));
    let everyone = format!("* 3 in #lobby: alice, {w_name}, {y_name}");
    ask_until(&mut y, "/who", &everyone);
    let epoch = redis.query(&["GET", "chat:epoch"]);

    redis.kill();
    alice.send("/quit");
    alice.recv_to_eof();
    // Its server tried to give the name back, and could not.
    servers[0].stderr_until("cannot free the name alice");
    redis.restart();
    assert_eq!(
        redis.query(&["GET", "chat:epoch"]),
        epoch,
        "Redis came back with its data"
    );

    let rest = format!("* 2 in #lobby: {w_name}, {y_name}");
    ask_until(&mut y, "/who", &rest);
    ask_until(&mut w, "/who", &rest);
    ask_until(&mut y, "/rooms", "* 1 room: #lobby (2)");
    let deadline = Instant::now() + TIMEOUT;
    while redis.query(&["EXISTS", "chat:name:alice"]) != ["0"] {
        assert!(
            Instant::now() < deadline,
            "alice's name is still set in Redis"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let (mut z, _) = joined(&servers[1]);
    z.send("/nick alice");
    let answer = z.recv_until(|l| l.contains("now known as alice") || l.starts_with("! "));
    assert!(
        answer
            .last()
            .is_some_and(|l| l.contains("now known as alice")),
        "alice's name is still held: {answer:?}"
    );
}

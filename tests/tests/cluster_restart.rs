//! After Redis came back (`--redis`): the first line is sent, not refused.
//! A server's writer connection sat idle through the outage (lines were
//! refused at once while Redis was away), so nothing had found it dead:
//! the first line sent on it was lost with it, and refused as unsure.

use chat_tests::cluster::{joined, servers};
use chat_tests::redis::Redis;

/// Redis killed and restarted (empty) on the same port: once told
/// `connected ... again`, a client's first line reaches the other server.
#[test]
fn the_first_line_after_redis_came_back_is_sent() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, name) = joined(&servers[0]);
    let (mut b, _) = joined(&servers[1]);
    a.send("before");
    b.recv_until(|l| l == format!("<{name}> before"));

    redis.kill();
    a.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    redis.restart();
    a.recv_until(|l| l.starts_with("* ") && l.contains("again"));
    b.recv_until(|l| l.starts_with("* ") && l.contains("again"));

    a.send("first after");
    let seen = b.recv_until(|l| l == format!("<{name}> first after"));
    assert!(!seen.iter().any(|l| l.contains("before")), "{seen:?}");
}

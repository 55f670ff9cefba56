//! A server taken for lost while it still runs (frozen, or cut off from
//! Redis, past its heartbeat's 5 s): the other servers see its clients
//! leave, then, once it registers again, see each come back; its own
//! clients, who never left, see neither. Real binaries and a real
//! redis-server.

use chat_tests::cluster::{joined, servers};
use chat_tests::redis::Redis;

/// Defect (review): a server frozen past its heartbeat came back without
/// a word: the others saw its clients leave, then their lines with no
/// return, and its own clients were told each of them had left, oneself
/// included.
#[test]
fn a_server_taken_for_lost_announces_its_clients_back() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut victim, v) = joined(&servers[0]);
    let (mut watcher, w) = joined(&servers[1]);
    victim.recv_until(|l| l.starts_with(&format!("* {w} joined")));
    servers[0].signal("STOP");
    watcher.recv_until(|l| l == format!("* {v} left (server lost)"));
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

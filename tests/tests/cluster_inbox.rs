//! What one server asks of another through its inbox in Redis (`/msg` to a
//! client elsewhere, the console's `/kick`, `/ban`, `/unban`): sent again
//! when Redis closed the connection it went out on, and served once
//! however many copies reach the inbox. Real binaries and a real
//! redis-server on a free loopback port.

use std::thread;
use std::time::{Duration, Instant};

use chat_tests::cluster::servers;
use chat_tests::redis::Redis;
use chat_tests::{Client, Server, TIMEOUT};

/// Joins a client named `name` and reads past its welcome, the lobby's
/// history and its rename (a `/who` answer listing it is the marker).
fn named(server: &Server, name: &str) -> Client {
    let (mut client, _) = server.join();
    client.send(&format!("/nick {name}"));
    client.recv_until(|l| l.contains(&format!("now known as {name}")));
    client.send("/who");
    client.recv_until(|l| l.starts_with("* ") && l.contains(name) && l.contains("#lobby"));
    client
}

/// ann (on `servers[0]`) sent `/msg bea psst`: she is told it went, with
/// no `! ` line, and bea (on `servers[1]`) got it exactly once (a second
/// message is the marker: the first arrived before it).
fn psst_went_once(ann: &mut Client, bea: &mut Client, servers: &[Server]) {
    let seen = ann.recv_until(|l| l == "[to bea] psst" || l.starts_with("! "));
    assert_eq!(
        seen.last().map(String::as_str),
        Some("[to bea] psst"),
        "{seen:?}; stderr:\n{}",
        servers[0].stderr()
    );
    ann.send("/msg bea marker");
    ann.recv_until(|l| l == "[to bea] marker");
    let seen = bea.recv_until(|l| l == "[from ann] marker");
    let copies = seen.iter().filter(|l| *l == "[from ann] psst").count();
    assert_eq!(copies, 1, "{seen:?}; stderr:\n{}", servers[1].stderr());
}

/// Runs `send` (a `/msg` or a console command that goes through another
/// server's inbox) with Redis holding back every write (`CLIENT PAUSE
/// WRITE`), waits until the inbox request is held in Redis, then has Redis
/// close every connection of the servers (`CLIENT KILL`) and lets writes
/// through again: the request's connection is closed under it, unapplied,
/// as when Redis closes a connection (its `timeout`, a failover) just as
/// a request goes out on it.
fn close_under_the_request(redis: &Redis, send: impl FnOnce()) {
    redis.command(&["CLIENT", "PAUSE", "20000", "WRITE"]);
    send();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let clients = redis.query(&["CLIENT", "LIST"]).concat();
        // An inbox request is an EVALSHA (an XADD before it was numbered),
        // held (`b`) by the pause; nothing else of the servers sends one
        // while no line is said.
        let held = clients.lines().any(|c| {
            (c.contains(" cmd=evalsha ") || c.contains(" cmd=xadd "))
                && c.split_whitespace()
                    .any(|f| f.starts_with("flags=") && f.contains('b'))
        });
        if held {
            break;
        }
        if Instant::now() > deadline {
            redis.command(&["CLIENT", "UNPAUSE"]);
            panic!("the inbox request never reached Redis:\n{clients}");
        }
        thread::sleep(Duration::from_millis(5));
    }
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    redis.command(&["CLIENT", "UNPAUSE"]);
}

/// Redis closes every connection of the servers while they sit idle
/// (`CLIENT KILL`, as its `timeout` or a failover would): the first `/msg`
/// to a client on the other server afterwards arrives once, and its sender
/// is told it went, with no `! ` line.
#[test]
fn first_msg_after_redis_closed_idle_connections_arrives_once() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let mut ann = named(&servers[0], "ann");
    let mut bea = named(&servers[1], "bea");
    ann.recv_until(|l| l.starts_with("* bea joined") || l.contains("now known as bea"));

    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    ann.send("/msg bea psst");
    psst_went_once(&mut ann, &mut bea, &servers);
}

/// Redis closes the connection a `/msg` to a client on another server went
/// out on, before it ran: the request is sent again on a new connection,
/// arrives once, and its sender is told it went, with no `! ` line.
#[test]
fn a_msg_whose_connection_redis_closed_is_sent_again_and_arrives_once() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let mut ann = named(&servers[0], "ann");
    let mut bea = named(&servers[1], "bea");
    close_under_the_request(&redis, || ann.send("/msg bea psst"));
    psst_went_once(&mut ann, &mut bea, &servers);
}

/// The same for the console's `/kick` of a client on another server: the
/// request is sent again, and the client is kicked.
#[test]
fn a_console_kick_whose_connection_redis_closed_is_sent_again() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    // A client of its own, so the kicking server's names link is connected
    // (a first connection would wait for the pause to end).
    let _ann = named(&servers[0], "ann");
    let mut bea = named(&servers[1], "bea");
    let console = &mut servers[0];
    close_under_the_request(&redis, || console.console("/kick bea spamming"));
    let last = bea.recv_to_eof();
    assert!(
        last.iter()
            .any(|l| l.starts_with("! ") && l.contains("spamming")),
        "{last:?}; stderr:\n{}",
        servers[0].stderr()
    );
    servers[0].stderr_until("console kicked bea");
}

/// Redis stops answering (`SIGSTOP`) just as a `/msg` to a client on
/// another server looks that client up: the sender is told the message
/// was not sent because the servers could not be reached, not that no one
/// by that name is online (bea is).
#[test]
fn a_msg_that_cannot_reach_the_other_servers_says_so() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let mut ann = named(&servers[0], "ann");
    let _bea = named(&servers[1], "bea");
    let pid = redis.pid().expect("redis running");
    chat_tests::signal(pid, "STOP");
    ann.send("/msg bea psst");
    let answer = ann.recv_until(|l| l.starts_with("! ") || l == "[to bea] psst");
    chat_tests::signal(pid, "CONT");
    let last = answer.last().expect("an answer").clone();
    assert!(
        last.starts_with("! ") && last.contains("not sent") && !last.contains("no one called"),
        "{answer:?}"
    );
}

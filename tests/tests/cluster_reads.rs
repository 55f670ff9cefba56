//! What a cluster server asks of Redis per line (`--redis URL`, issue 11):
//! one read per server per line, never one per client (SPEC: "each server
//! reads each room's log once for all its clients"). Counted with Redis's
//! own `INFO commandstats`. Real binaries, a real redis-server.

use std::time::{Duration, Instant};

use chat_tests::redis::Redis;
use chat_tests::{Client, Server};

/// Clients in the room, all on one server.
const CLIENTS: usize = 20;

/// Lines sent, one at a time.
const LINES: usize = 50;

/// How long the server's reader blocks in one `XREAD` when nothing comes
/// (`READ_BLOCK` in server/src/cluster/reader.rs): an idle reader asks
/// about this often.
const READ_BLOCK: Duration = Duration::from_millis(500);

/// Reads allowed besides two per line and the idle ones: the reader's
/// wake-ups at the start (rooms watched, inbox) and timing noise.
const MARGIN: u64 = 10;

/// `XREAD` calls Redis has served since it started.
fn xreads(redis: &Redis) -> u64 {
    let info = redis.query(&["INFO", "commandstats"]).concat();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_xread:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("calls is a number"))
}

/// Each line is read from Redis once by the server, then fanned out to its
/// clients. The lines go one at a time, each waited for at every client
/// before the next is sent, so no read can carry two of them: a server
/// reading once per client would make at least `LINES x (CLIENTS - 1)`
/// (950) `XREAD` calls, one reading once per line makes about `LINES`
/// (50) plus one per `READ_BLOCK` it sat idle. The bound below (twice the
/// lines, plus the idle reads, plus a margin) sits far under the first,
/// so this fails for a reader per client, or one that reads a line more
/// than about twice.
#[test]
fn one_read_per_server_per_line_never_one_per_client() {
    let redis = Redis::start();
    let server = Server::start(&["--redis", &redis.url(), "--rate-limit", "0"]);
    let mut clients: Vec<(Client, String)> = (0..CLIENTS).map(|_| server.join()).collect();
    // Everyone in: the last join notice reached the first client, and
    // each client's own `/who` came back (its history read past).
    let last = clients[CLIENTS - 1].1.clone();
    clients[0]
        .0
        .recv_until(|l| l.starts_with(&format!("* {last} joined")));
    for (client, name) in &mut clients {
        client.send("/who");
        client.recv_until(|l| l.starts_with("* ") && l.contains(name.as_str()));
    }

    let before = xreads(&redis);
    let started = Instant::now();
    let sender = clients[0].1.clone();
    for i in 0..LINES {
        clients[0].0.send(&format!("counted {i}"));
        let want = format!("<{sender}> counted {i}");
        for (client, _) in &mut clients[1..] {
            client.recv_until(|l| l == want);
        }
    }
    let reads = xreads(&redis) - before;
    let idle = (started.elapsed().as_millis() / READ_BLOCK.as_millis()) as u64;
    let bound = 2 * LINES as u64 + idle + MARGIN;
    assert!(
        reads <= bound,
        "{reads} XREAD calls for {LINES} lines to {CLIENTS} clients (bound {bound}; one per client would be {})",
        LINES * (CLIENTS - 1)
    );
    // And the reads did happen: every line came through the log.
    assert!(reads >= LINES as u64 / 2, "only {reads} XREAD calls");
}

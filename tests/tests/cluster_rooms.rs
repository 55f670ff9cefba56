//! The cluster's seam with the rooms (`--redis URL`): no room waits for
//! another while Redis is asked something, a hung Redis does not hold up a
//! stop, and what the console and the notices say holds cluster-wide.
//! Real binaries and a real redis-server on a free loopback port.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::cluster::{ask_until, joined, servers, ASK_AGAIN};
use chat_tests::proxy::Proxy;
use chat_tests::redis::Redis;
use chat_tests::{signal, Client, Server, TIMEOUT};

/// Fills room `room`'s log in Redis with `count` notices (no chat line), so
/// loading its history reads back as far as it may.
fn fill_log(redis: &Redis, room: &str, count: usize) {
    let script = "for i = 1, tonumber(ARGV[1]) do \
        redis.call('XADD', KEYS[1], '*', 'n', i, 'uid', 'fill:' .. i, 'from', '0:-', \
        'kind', 'line', 'text', '* somebody joined (1 online)\\n') end \
        redis.call('SET', KEYS[2], ARGV[1]) return 1";
    let log = format!("chat:log:{room}");
    let seq = format!("chat:seq:{room}");
    let count = count.to_string();
    let reply = redis.command(&["EVAL", script, "2", &log, &seq, &count]);
    assert_eq!(reply, ":1", "filling the log");
}

/// A join into a room whose log holds 10,000 notices (its history is read
/// back from Redis, up to 40 round trips) does not hold up the delivery of
/// a `#lobby` line from another server: rooms do not wait for each other.
/// Shown by order, not by a latency bound (a loaded machine stalls a line
/// for half a second now and then): while each join into #big is under
/// way, from its `/join` to its answer, several #lobby lines go all the way
/// from one server to the other. Had the lobby waited for the join, none
/// could (measured: about 450 ms a join, a #lobby line every 20 ms).
#[test]
fn a_join_into_a_big_room_does_not_delay_other_rooms() {
    /// #lobby lines that must go round within each join into #big, at
    /// least, and within the four joins in all (a line stalled for a
    /// third of a second on a loaded machine may leave one join with one).
    const DURING_EACH_JOIN: usize = 1;
    const DURING_THE_JOINS: usize = 12;
    let redis = Redis::start();
    fill_log(&redis, "big", 10_000);
    let servers = servers(&redis, 2);
    let (mut watcher, _) = joined(&servers[0]);
    let (mut speaker, _) = joined(&servers[1]);
    let (mut joiner, _) = joined(&servers[0]);
    // Warm up: the lobby works across.
    speaker.send("hello");
    watcher.recv_until(|l| l.ends_with("> hello"));

    let done = Arc::new(AtomicBool::new(false));
    let mover = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            // Each join finds #big without members here: its history is
            // loaded again. Returns when each was asked and answered.
            let mut joins = Vec::new();
            for _ in 0..4 {
                let asked = Instant::now();
                joiner.send("/join big");
                joiner.recv_until(|l| l.starts_with("* you are now in #big"));
                joins.push((asked, Instant::now()));
                joiner.send("/join lobby");
                joiner.recv_until(|l| l.starts_with("* you are now in #lobby"));
            }
            done.store(true, Ordering::Release);
            joins
        })
    };
    // Each #lobby line: when it was sent, and when it arrived.
    let mut pings = Vec::new();
    let deadline = Instant::now() + TIMEOUT * 3;
    while !done.load(Ordering::Acquire) && Instant::now() < deadline && pings.len() < 6000 {
        let at = Instant::now();
        speaker.send(&format!("ping {}", pings.len()));
        let want = format!("> ping {}", pings.len());
        watcher.recv_until(|l| l.ends_with(&want));
        pings.push((at, Instant::now()));
        // A line every 10 ms or so, not a flood.
        thread::sleep(Duration::from_millis(10));
    }
    let joins = mover.join().expect("the mover");
    assert!(done.load(Ordering::Acquire), "the joins never finished");
    let mut in_all = 0;
    for (i, &(asked, answered)) in joins.iter().enumerate() {
        let during = pings
            .iter()
            .filter(|&&(sent, arrived)| sent >= asked && arrived <= answered)
            .count();
        in_all += during;
        assert!(
            during >= DURING_EACH_JOIN,
            "join {i} into #big took {:?} and only {during} #lobby lines went round meanwhile \
             ({} lines in all, the slowest took {:?})",
            answered - asked,
            pings.len(),
            pings.iter().map(|&(s, a)| a - s).max().unwrap_or_default()
        );
    }
    assert!(
        in_all >= DURING_THE_JOINS,
        "only {in_all} #lobby lines went round during the four joins into #big"
    );
}

/// Redis hung (SIGSTOP) with clients connected and one connecting: Ctrl+C
/// still stops the server within 2 s, exit 0.
#[test]
fn ctrl_c_with_redis_hung_stops_within_2_s() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 1);
    let (mut client, _) = joined(&servers[0]);
    let pid = redis.pid().expect("redis running");
    signal(pid, "STOP");
    client.send("anyone?");
    // A client that connects now waits for Redis (its guest number): once
    // a second worker thread serves it, the first thing that worker does
    // is ask Redis. That is the last outside sign; the moment its request
    // (or the writer's for "anyone?") blocks on the hung Redis has none,
    // and a Ctrl+C just before it must stop in time all the same.
    let _late = servers[0].connect();
    let deadline = Instant::now() + TIMEOUT;
    while servers[0].threads_named("worker-") < 2 {
        assert!(Instant::now() < deadline, "the late client got no worker");
        thread::sleep(Duration::from_millis(5));
    }
    let asked = Instant::now();
    servers[0].signal("INT");
    let status = servers[0].wait_exit(TIMEOUT);
    let took = asked.elapsed();
    signal(pid, "CONT");
    assert!(status.success(), "stderr:\n{}", servers[0].stderr());
    assert!(
        took < Duration::from_secs(2),
        "stopped in {took:?}; stderr:\n{}",
        servers[0].stderr()
    );
}

/// `/ban NAME` typed on one server's console, for a client on another
/// server: that client is disconnected, and its address is banned on every
/// server, the one the console belongs to included.
#[test]
fn ban_by_name_reaches_every_server() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let source = chat_tests::hosts::loopback(0, 0, 9);
    let (mut banned, name) = chat_tests::hosts::Host::join(servers[1].addr(), source);
    // Listed cluster-wide before the other console names it.
    let (mut asker, _) = joined(&servers[0]);
    asker.send("/who");
    asker.recv_until(|l| l.starts_with("* ") && l.contains(&name));
    servers[0].console(&format!("/ban {name} spam"));
    let last = banned.recv_to_eof();
    assert!(
        last.iter()
            .any(|l| l.starts_with("! ") && l.contains("banned")),
        "{last:?}"
    );
    // The console's own server refuses that address too, once the ban
    // came back by address.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut host = chat_tests::hosts::Host::connect(servers[0].addr(), source);
        let first = host.recv();
        if first.starts_with("! ") && first.contains("banned") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never banned on the console's server: {first:?}; stderr:\n{}",
            servers[0].stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a connection from `source` to `server` is turned away as banned
/// (its first line), or welcomed.
fn refused(server: &Server, source: std::net::IpAddr) -> bool {
    let mut host = chat_tests::hosts::Host::connect(server.addr(), source);
    let first = host.recv();
    if first.starts_with("* welcome") {
        return false;
    }
    assert!(
        first.starts_with("! ") && first.contains("banned"),
        "{first:?}"
    );
    true
}

/// Waits until every server in `servers` refuses (`banned`) or welcomes
/// connections from `source`.
fn until_all(servers: &[Server], source: std::net::IpAddr, banned: bool) {
    let deadline = Instant::now() + TIMEOUT;
    for (i, server) in servers.iter().enumerate() {
        while refused(server, source) != banned {
            assert!(
                Instant::now() < deadline,
                "server {i} never {}; stderr:\n{}",
                if banned { "banned it" } else { "let it in" },
                server.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Review: `/ban NAME` typed on the console of the server its client is
/// on reached the others as `/ban /ban ADDRESS` (refused there), while the
/// console said it was passed on: the address got in through every other
/// server.
#[test]
fn ban_by_name_on_its_clients_server_reaches_every_server() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let source = chat_tests::hosts::loopback(0, 0, 10);
    let (mut banned, name) = chat_tests::hosts::Host::join(servers[1].addr(), source);
    servers[1].console(&format!("/ban {name} 10m spam"));
    let last = banned.recv_to_eof();
    assert!(last.iter().any(|l| l.contains("banned: spam")), "{last:?}");
    until_all(&servers, source, true);
}

/// Two servers: a client of the second, from `source`, listed on the
/// first, banned by name (and `rest`: duration, reason) on the console of
/// `servers[console]`; returns its name once both servers refuse `source`.
fn banned_by_name(
    servers: &mut [Server],
    console: usize,
    source: std::net::IpAddr,
    rest: &str,
) -> String {
    let (mut banned, name) = chat_tests::hosts::Host::join(servers[1].addr(), source);
    let (mut asker, _) = joined(&servers[0]);
    // Listed cluster-wide before a console of the other server names it.
    asker.send("/who");
    asker.recv_until(|l| l.starts_with("* ") && l.contains(&name));
    servers[console].console(&format!("/ban {name}{rest}"));
    banned.recv_to_eof();
    until_all(servers, source, true);
    name
}

/// Review: `/unban NAME` lifted the ban only where a ban by that name was
/// held (the server its client was on); the others, told of it by
/// address, kept refusing the address for good (and saved it in their
/// `--bans`). Typed on either console, it lifts the ban everywhere now. And
/// a console whose server does not have the client says so, not that no
/// one by that name is online (before it said both that and "passed on").
#[test]
fn unban_by_name_lifts_the_ban_on_every_server() {
    for (ban_on, unban_on) in [(0, 0), (1, 0), (1, 1)] {
        let redis = Redis::start();
        let mut servers = servers(&redis, 2);
        let source = chat_tests::hosts::loopback(0, 0, 11);
        let name = banned_by_name(&mut servers, ban_on, source, "");
        if ban_on == 0 {
            // Not "! no one called NAME is online": it is, elsewhere.
            let said =
                format!("* no one called {name} on this server: the other servers are asked");
            servers[0].stdout_until(|l| l == said);
        }
        servers[unban_on].console(&format!("/unban {name}"));
        until_all(&servers, source, false);
    }
}

/// Starts a chat-server on `redis`, flood control off, with `extra` flags.
fn server_with(redis: &Redis, extra: &[&str]) -> Server {
    server_at(&redis.url(), extra)
}

/// Starts a chat-server on the Redis at `url` (a [`Proxy`]'s), flood
/// control off, with `extra` flags.
fn server_at(url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--redis", url, "--rate-limit", "0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Review: bans were each server's own, kept in step only by passing each
/// `/ban` on as typed: a server started after the ban never had it, and
/// let the address in. Started later, it refuses it from its first
/// connection (it applies the cluster's shared ban list before it
/// accepts).
#[test]
fn a_server_started_after_a_ban_refuses_the_address() {
    let redis = Redis::start();
    let mut first = server_with(&redis, &[]);
    let source = chat_tests::hosts::loopback(0, 0, 20);
    first.console(&format!("/ban {source} flood"));
    first.stdout_until(|l| l.starts_with(&format!("* banned {source}")));
    a_server_started_now_refuses(&redis, source);
}

/// An entry of the shared ban list that is not UTF-8 (put there by
/// something else than a chat-server) made the whole read fail: a server
/// started after logged `cannot read the shared ban list at start (Lost)`,
/// and never applied any of it, the live ban beside it included. It is
/// skipped, in one line, and the rest applied.
#[test]
fn a_shared_ban_entry_that_is_not_utf8_is_skipped_and_the_rest_applied() {
    let redis = Redis::start();
    let mut first = server_with(&redis, &[]);
    let source = chat_tests::hosts::loopback(0, 0, 34);
    first.console(&format!("/ban {source}"));
    first.stdout_until(|l| l.starts_with(&format!("* banned {source}")));
    redis.command(&[
        "EVAL",
        "return redis.call('HSET', KEYS[1], ARGV[1], string.char(255, 254))",
        "1",
        "chat:bans",
        "192.0.2.77",
    ]);
    let later = server_with(&redis, &[]);
    assert!(
        refused(&later, source),
        "welcomed; stderr:\n{}",
        later.stderr()
    );
    later.stderr_until("redis: shared ban list: 1 ban not UTF-8 (prefix or value), skipped");
}

/// A server started on `redis` now refuses `source` from its first
/// connection.
fn a_server_started_now_refuses(redis: &Redis, source: std::net::IpAddr) {
    let later = server_with(redis, &[]);
    assert!(
        refused(&later, source),
        "welcomed; stderr:\n{}",
        later.stderr()
    );
}

/// The same for `/ban NAME` typed on one server's console for a client on
/// another: the client's server puts the address in the shared list, and a
/// server started after refuses it at once.
#[test]
fn a_server_started_after_a_ban_by_name_refuses_the_address() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let source = chat_tests::hosts::loopback(0, 0, 21);
    banned_by_name(&mut servers, 0, source, " spam");
    a_server_started_now_refuses(&redis, source);
}

/// A server stopped while a ban was typed on another's console gets it
/// when it starts again, with its own `--bans` file (saved there too) or
/// without one; and a ban lifted meanwhile is not applied.
#[test]
fn a_server_stopped_while_a_ban_was_typed_gets_it_back() {
    for with_file in [true, false] {
        let redis = Redis::start();
        let dir = chat_tests::rooms::TempDir::new("cluster-bans");
        let files = [dir.join("a.bans"), dir.join("b.bans")];
        let files = files.each_ref().map(|f| f.to_str().expect("UTF-8 path"));
        let flags = |i: usize| {
            if with_file {
                vec!["--bans", files[i]]
            } else {
                Vec::new()
            }
        };
        let mut a = server_with(&redis, &flags(0));
        let mut b = server_with(&redis, &flags(1));
        let (source, lifted) = (
            chat_tests::hosts::loopback(0, 0, 22),
            chat_tests::hosts::loopback(0, 0, 23),
        );
        assert!(!refused(&b, source));
        b.signal("INT");
        assert!(b.wait_exit(TIMEOUT).success());
        a.console(&format!("/ban {source} 1h flood"));
        a.stdout_until(|l| l.starts_with(&format!("* banned {source}")));
        a.console(&format!("/ban {lifted}"));
        a.stdout_until(|l| l.starts_with(&format!("* banned {lifted}")));
        a.console(&format!("/unban {lifted}"));
        a.stdout_until(|l| l.starts_with(&format!("* lifted the ban on {lifted}")));
        let b = server_with(&redis, &flags(1));
        assert!(
            refused(&b, source),
            "welcomed (--bans: {with_file}); stderr:\n{}",
            b.stderr()
        );
        assert!(!refused(&b, lifted), "stderr:\n{}", b.stderr());
        if with_file {
            let saved = std::fs::read_to_string(files[1]).expect("b's --bans");
            assert!(
                saved.lines().any(|l| l.starts_with(&format!("{source} "))),
                "{saved}"
            );
        }
    }
}

/// A server frozen past its heartbeat while a ban was typed (the others
/// took it for lost and unlisted it, so it was not asked) applies the ban
/// when it registers again, as presence finds it unlisted.
#[test]
fn a_server_taken_for_lost_while_a_ban_was_typed_gets_it_when_back() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let source = chat_tests::hosts::loopback(0, 0, 24);
    let (mut watcher, _) = joined(&servers[0]);
    let (_victim, v) = joined(&servers[1]);
    servers[1].signal("STOP");
    watcher.recv_until(|l| l == format!("* {v} left (server lost)"));
    // Unlisted (the reap's last step), so the ban is not passed on to it.
    let deadline = Instant::now() + TIMEOUT;
    while redis.query(&["SMEMBERS", "chat:servers"]).len() > 1 {
        assert!(Instant::now() < deadline, "the frozen server stays listed");
        thread::sleep(Duration::from_millis(20));
    }
    servers[0].console(&format!("/ban {source} flood"));
    servers[0].stdout_until(|l| l == "* passed on to the 0 other servers");
    servers[1].signal("CONT");
    until_all(&servers[1..], source, true);
}

/// `N online` in a welcome, a join and a leave notice counts the room's
/// members on every server (as of the last heartbeat, about a second), not
/// only the writer's.
#[test]
fn online_counts_the_whole_cluster() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (_a1, _) = joined(&servers[0]);
    let (_a2, _) = joined(&servers[0]);
    let (mut watcher, _) = joined(&servers[0]);
    // Three on the first server: a newcomer on the second is the fourth,
    // once the second server counted them (a heartbeat).
    let deadline = Instant::now() + TIMEOUT;
    let (mut b1, _) = loop {
        let (client, welcome) = {
            let mut client = servers[1].connect();
            let welcome = client.recv();
            (client, welcome)
        };
        if welcome.contains("(4 online)") {
            let name = chat_tests::welcome_name(&welcome)
                .expect("a welcome")
                .to_string();
            break (client, name);
        }
        assert!(
            Instant::now() < deadline,
            "never counted the other server's members: {welcome:?}"
        );
        drop(client);
        thread::sleep(Duration::from_millis(100));
    };
    // Its move out says 3 are left behind in #lobby, all elsewhere.
    b1.send("/join games");
    let seen = watcher.recv_until(|l| l.contains(" left for #games"));
    let last = seen.last().expect("a line");
    assert!(
        last.ends_with("(3 online)"),
        "the three on the first server: {last:?}"
    );
}

/// Clients a large server has at its graceful stop.
const LARGE: usize = 500;

/// A graceful stop of a server with 500 clients: every one of their leaves
/// reaches the other server's clients within 3 s of the signal.
#[test]
fn graceful_stop_of_a_large_server_is_seen_within_3_s() {
    chat_tests::raise_fd_limit(LARGE as u64 + 200);
    let redis = Redis::start();
    let workers = (LARGE + 100).to_string();
    let mut servers: Vec<Server> = (0..2)
        .map(|_| {
            Server::start(&[
                "--redis",
                &redis.url(),
                "--rate-limit",
                "0",
                "--workers",
                &workers,
            ])
        })
        .collect();
    let (mut watcher, _) = joined(&servers[1]);
    let mut clients: Vec<Client> = (0..LARGE).map(|_| servers[0].join().0).collect();
    // Every one listed cluster-wide (filed in Redis) before the stop.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = redis
            .query(&["SMEMBERS", "chat:servers"])
            .iter()
            .fold(0, |n, id| {
                n + redis.command(&["HLEN", &format!("chat:members:{id}")])[1..]
                    .parse::<usize>()
                    .unwrap_or(0)
            });
        if n == LARGE + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} members listed");
        thread::sleep(Duration::from_millis(50));
    }
    let stopped = Instant::now();
    servers[0].signal("TERM");
    let mut left = 0;
    while left < LARGE {
        let line = watcher
            .try_recv(Duration::from_secs(3).saturating_sub(stopped.elapsed()))
            .unwrap_or_else(|| {
                panic!(
                    "{left} of {LARGE} leaves within {:?}; stderr:\n{}",
                    stopped.elapsed(),
                    servers[0].stderr()
                )
            });
        if line.ends_with(" left (server stopped)") {
            left += 1;
        }
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "took {:?}",
        stopped.elapsed()
    );
    for client in &mut clients {
        client.recv_to_eof();
    }
    assert!(servers[0].wait_exit(TIMEOUT).success());
}

/// A server killed with `kill -9`: once its clients are announced gone,
/// its keys are gone from Redis too (members, wake and inbox streams).
#[test]
fn a_lost_server_leaves_no_keys_behind() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut victim, victim_name) = joined(&servers[0]);
    let (mut watcher, _) = joined(&servers[1]);
    let victim_id = redis
        .query(&["SMEMBERS", "chat:servers"])
        .into_iter()
        .find(|id| {
            redis
                .query(&["HKEYS", &format!("chat:members:{id}")])
                .contains(&victim_name)
        })
        .expect("the victim's server is listed");
    // Its inbox exists: a private message went through it.
    watcher.send(&format!("/msg {victim_name} hi"));
    victim.recv_until(|l| l.contains("hi"));
    let keys = [
        format!("chat:members:{victim_id}"),
        format!("chat:wake:{victim_id}"),
        format!("chat:inbox:{victim_id}"),
    ];
    let exists = |redis: &Redis| {
        let mut args = vec!["EXISTS"];
        args.extend(keys.iter().map(String::as_str));
        redis.command(&args)
    };
    // The wake stream is written by the victim's writer thread, in its own
    // time (best effort): seen once under load to lag the /msg.
    let deadline = Instant::now() + TIMEOUT;
    while exists(&redis) != ":3" {
        assert!(
            Instant::now() < deadline,
            "all three there before: {}",
            exists(&redis)
        );
        thread::sleep(Duration::from_millis(20));
    }
    servers[0].signal("KILL");
    watcher.recv_until(|l| l == format!("* {victim_name} left (server lost)"));
    let deadline = Instant::now() + TIMEOUT;
    while exists(&redis) != ":0" {
        assert!(Instant::now() < deadline, "left behind: {}", exists(&redis));
        thread::sleep(Duration::from_millis(50));
    }
}

/// A server cut off from Redis long enough to be taken for lost: its
/// client's name is freed and taken by a client of another server. When it
/// is back and registers again, its own client gives the name up (a fresh
/// `guest-N`, and is told), so no two clients hold one name.
#[test]
fn a_name_taken_while_cut_off_is_given_up_on_return() {
    let redis = Redis::start();
    redis.command(&["ACL", "SETUSER", "bee", "on", ">pw", "~*", "&*", "+@all"]);
    let bee_url = redis.url().replace("redis://", "redis://bee:pw@");
    let a_server = Server::start(&["--redis", &bee_url, "--rate-limit", "0"]);
    let b_server = Server::start(&["--redis", &redis.url(), "--rate-limit", "0"]);
    let (mut a, _) = joined(&a_server);
    a.send("/nick Bob");
    a.recv_until(|l| l == "* you are now known as Bob");
    let (mut b, _) = joined(&b_server);
    let (mut taker, _) = joined(&b_server);

    redis.command(&["ACL", "SETUSER", "bee", "off"]);
    redis.command(&["CLIENT", "KILL", "USER", "bee"]);
    b.recv_until(|l| l == "* Bob left (server lost)");
    taker.send("/nick bob");
    taker.recv_until(|l| l == "* you are now known as bob");

    redis.command(&["ACL", "SETUSER", "bee", "on"]);
    // Told by presence, which registers the server again, and by the
    // reader, which lets lines through again: each reconnects on its own,
    // so either comes first.
    let deadline = Instant::now() + TIMEOUT;
    let (mut told, mut connected) = (None, false);
    while told.is_none() || !connected {
        match a.try_recv(deadline.saturating_duration_since(Instant::now())) {
            Some(l) if l.starts_with("! ") && l.contains("took the name Bob") => told = Some(l),
            Some(l) if l.starts_with("* connected to the other servers again") => connected = true,
            Some(_) => {}
            None => panic!(
                "never told (connected: {connected}, {told:?}); stderr:\n{}",
                a_server.stderr()
            ),
        }
    }
    let told = told.expect("told");
    assert!(told.contains("you are guest-"), "{told}");
    // The name stays the other server's client's.
    let holder = redis.query(&["GET", "chat:name:bob"]);
    assert!(
        holder.iter().any(|h| h.ends_with(":bob")),
        "held by the taker: {holder:?}"
    );
    a.send("/nick Bob");
    a.recv_until(|l| l.starts_with("! ") && l.contains("taken"));
    // Its lines carry its new name.
    let fresh = told
        .rsplit("you are ")
        .next()
        .and_then(|rest| rest.strip_suffix(" now"))
        .expect("the new name")
        .to_string();
    a.send("hello again");
    b.recv_until(|l| l == format!("<{fresh}> hello again"));
}

/// A room is shown in its creator's spelling on every server. Defect (a
/// user's walk through the README): a room created as `#Games` on one
/// server was `#GAMES` on another for whoever entered it there as
/// `/join GAMES` (each server kept its own spelling).
#[test]
fn a_room_is_shown_in_its_creators_spelling_on_every_server() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, a_name) = joined(&servers[0]);
    let (mut b, b_name) = joined(&servers[1]);
    a.send("/join Games");
    a.recv_until(|l| l.starts_with("* you are now in #Games ("));
    // Listed so on the other server too, where it has no member.
    ask_until(&mut b, "/rooms", "* 2 rooms: #lobby (1), #Games (1)");
    b.send("/join GAMES");
    let moved = b.recv_until(|l| l.starts_with("* you are now in "));
    assert!(
        moved
            .last()
            .unwrap()
            .starts_with("* you are now in #Games ("),
        "{moved:?}"
    );
    ask_until(
        &mut b,
        "/who",
        &format!("* 2 in #Games: {a_name}, {b_name}"),
    );
    a.recv_until(|l| l.starts_with(&format!("* {b_name} joined")));
}

/// Defect (review): a `/join` refused for `--max-rooms` named the room in
/// Redis all the same, and a client creating it on another server within
/// 5 s was shown the refused mover's spelling. A refused `/join` names
/// nothing.
#[test]
fn a_refused_join_names_no_room() {
    let redis = Redis::start();
    let full = Server::start(&["--redis", &redis.url(), "--max-rooms", "1"]);
    let other = Server::start(&["--redis", &redis.url()]);
    let (mut refused, _) = joined(&full);
    refused.send("/join GAMES");
    refused.recv_until(|l| l.starts_with("! ") && l.contains("rooms"));
    let (mut creator, _) = joined(&other);
    creator.send("/join games");
    let moved = creator.recv_until(|l| l.starts_with("* you are now in "));
    assert!(
        moved
            .last()
            .unwrap()
            .starts_with("* you are now in #games ("),
        "{moved:?}"
    );
}

/// Defect (review): a room created while its server was cut off from Redis
/// was never named in Redis: the other servers listed it in lower case,
/// and whoever entered it there named it again. Now its server names it
/// once Redis is back (presence, at its first beat).
#[test]
fn a_room_created_while_cut_off_is_named_once_redis_is_back() {
    let mut redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut a, _) = joined(&servers[0]);
    let (mut b, _) = joined(&servers[1]);
    redis.kill();
    a.recv_until(|l| l.starts_with("* ") && l.contains("cut off"));
    a.send("/join Xy");
    a.recv_until(|l| l.starts_with("* you are now in #Xy"));
    redis.restart();
    a.recv_until(|l| l.contains("connected to the other servers again"));
    ask_until(&mut b, "/rooms", "* 2 rooms: #lobby (1), #Xy (1)");
    b.send("/join xY");
    let moved = b.recv_until(|l| l.starts_with("* you are now in "));
    assert!(
        moved.last().unwrap().starts_with("* you are now in #Xy ("),
        "{moved:?}"
    );
}

/// The `! ` line of a `/join` refused for `--max-rooms` `max`.
fn too_many_rooms(max: usize) -> String {
    format!("! too many rooms ({max} at most have people in them): stay here or join one in /rooms")
}

/// Sends `/join room`; returns the answer: `* you are now in ...` (a
/// move) or a `! ` line (refused).
fn join_answer(client: &mut Client, room: &str) -> String {
    client.send(&format!("/join {room}"));
    client
        .recv_until(|l| l.starts_with("* you are now in ") || l.starts_with("! "))
        .pop()
        .expect("recv_until returns the match")
}

/// `/join room` again every [`ASK_AGAIN`] until it is refused, within
/// [`TIMEOUT`] (a server learns of the other servers' rooms at its next
/// heartbeat, about a second): a move made before that is undone with
/// `/join back`. Returns the refusal.
///
/// # Panics
/// When it is never refused by then.
fn refused_once_counted(client: &mut Client, room: &str, back: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = join_answer(client, room);
        if answer.starts_with("! ") {
            return answer;
        }
        let undone = join_answer(client, back);
        assert!(undone.starts_with("* you are now in "), "{undone:?}");
        assert!(
            Instant::now() < deadline,
            "/join {room} was never refused; last {answer:?}"
        );
        thread::sleep(ASK_AGAIN);
    }
}

/// `/join room` again every [`ASK_AGAIN`] while it is refused with
/// `refusal` (its server has not counted the room's members on the other
/// servers yet), until it moves, within [`TIMEOUT`]. Returns the move's
/// answer.
///
/// # Panics
/// When it is answered anything else, or still refused by then.
fn moved_once_counted(client: &mut Client, room: &str, refusal: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = join_answer(client, room);
        if answer.starts_with("* you are now in ") {
            return answer;
        }
        assert_eq!(answer, refusal);
        assert!(
            Instant::now() < deadline,
            "/join {room} was still refused: {answer:?}"
        );
        thread::sleep(ASK_AGAIN);
    }
}

/// Defect (review): `--max-rooms` was counted per server. Two servers
/// with `--max-rooms 2`: a room created on one counts on the other (its
/// next heartbeat), so a `/join` there that would make a third is
/// refused, and the cluster holds two rooms with members; a `/join` of
/// the room the other server holds creates nothing and goes in.
#[test]
fn max_rooms_counts_the_rooms_of_every_server() {
    let redis = Redis::start();
    let start = || {
        Server::start(&[
            "--redis",
            &redis.url(),
            "--rate-limit",
            "0",
            "--max-rooms",
            "2",
        ])
    };
    let (a, b) = (start(), start());
    let (mut alice, _) = joined(&a);
    let (mut bob, _) = joined(&b);
    assert_eq!(
        join_answer(&mut alice, "x"),
        "* you are now in #x (1 online)"
    );
    // Before b's next beat it does not know of #x: a move then is undone.
    let refused = refused_once_counted(&mut bob, "y", "lobby");
    assert_eq!(refused, too_many_rooms(2));
    ask_until(&mut bob, "/rooms", "* 2 rooms: #lobby (1), #x (1)");
    // b counted #x (it refused #y for it): entering it creates nothing.
    assert_eq!(join_answer(&mut bob, "x"), "* you are now in #x (2 online)");
}

/// The review's repro, with a first server that allows three rooms:
/// `#x` there and `#y` on a second server that allows two. A client of
/// the second, at its limit with `#y`, may enter `#x` (it has members on
/// the first: it was refused as if it created one more), and a `/join`
/// that would make a fourth room is refused on both servers once each
/// counted the other's room: each applies its own `--max-rooms` to the
/// joins it serves, counting every server's rooms.
#[test]
fn a_join_of_a_room_with_members_elsewhere_creates_none() {
    let redis = Redis::start();
    let start = |max: &str| {
        Server::start(&[
            "--redis",
            &redis.url(),
            "--rate-limit",
            "0",
            "--max-rooms",
            max,
        ])
    };
    let (a, b) = (start("3"), start("2"));
    let (mut alice, _) = joined(&a);
    let (mut carol, _) = joined(&a);
    let (mut bob, _) = joined(&b);
    let (mut bea, _) = joined(&b);
    let (mut dan, _) = joined(&b);
    // b knows of no other room yet, a is allowed three: both go in.
    assert_eq!(join_answer(&mut bob, "y"), "* you are now in #y (1 online)");
    assert_eq!(
        join_answer(&mut alice, "x"),
        "* you are now in #x (1 online)"
    );
    ask_until(&mut bea, "/rooms", "* 3 rooms: #lobby (3), #x (1), #y (1)");
    let moved = moved_once_counted(&mut bea, "x", &too_many_rooms(2));
    assert_eq!(moved, "* you are now in #x (2 online)");
    // b: #x and #y here, its limit.
    assert_eq!(join_answer(&mut dan, "z"), too_many_rooms(2));
    // a: #x here and #y on b, with #lobby its limit, once it counted #y.
    let refused = refused_once_counted(&mut carol, "z", "lobby");
    assert_eq!(refused, too_many_rooms(3));
    ask_until(&mut dan, "/rooms", "* 3 rooms: #lobby (2), #x (2), #y (1)");
}

/// Review: a ban lifted on a console while Redis could not be told stayed
/// in the cluster's shared ban list, to come back on that very server
/// once it registered again (after the others took it for lost), and the
/// console said nothing of it. It says so now (that server no longer
/// applies it again: `an_unban_typed_while_cut_off_is_not_undone_when_the_server_is_back`);
/// and a ban it could not put there likewise.
#[test]
fn the_console_says_when_the_shared_ban_list_was_not_told() {
    let mut redis = Redis::start();
    let mut server = server_with(&redis, &[]);
    server.console("/ban 10.7.0.1 1h spam");
    server.stdout_until(|l| l.starts_with("* banned 10.7.0.1"));
    redis.kill();
    server.console("/unban 10.7.0.1");
    server.stdout_until(|l| {
        l.starts_with(
            "! maybe not taken out of the cluster's shared ban list (Redis did not answer)",
        )
    });
    server.console("/ban 10.7.0.2");
    server.stdout_until(|l| {
        l.starts_with("! maybe not put in the cluster's shared ban list (Redis did not answer)")
    });
}

/// Review: a ban lifted on the console of a server cut off from Redis
/// stayed in the cluster's shared ban list, and came back on that very
/// server when it registered again (the others had taken it for lost):
/// the operator's `/unban` was undone. Now the server takes it out of the
/// list once Redis answers, and does not apply it again meanwhile; while a
/// ban lifted the same way and typed anew on another server after the
/// lift holds there all the same.
#[test]
fn an_unban_typed_while_cut_off_is_not_undone_when_the_server_is_back() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.addr());
    let mut servers = [server_at(&proxy.url(), &[]), server_with(&redis, &[])];
    let (lifted, again) = (
        chat_tests::hosts::loopback(0, 0, 30),
        chat_tests::hosts::loopback(0, 0, 31),
    );
    let (_victim, v) = joined(&servers[0]);
    let (mut watcher, _) = joined(&servers[1]);
    for source in [lifted, again] {
        servers[0].console(&format!("/ban {source}"));
        servers[0].stdout_until(|l| l.starts_with(&format!("* banned {source}")));
    }
    proxy.cut();
    for source in [lifted, again] {
        servers[0].console(&format!("/unban {source}"));
        servers[0].stdout_until(|l| {
            l.starts_with(
                "! maybe not taken out of the cluster's shared ban list (Redis did not answer)",
            )
        });
    }
    // Taken for lost: unlisted (the reap's last step), to register again.
    watcher.recv_until(|l| l == format!("* {v} left (server lost)"));
    let deadline = Instant::now() + TIMEOUT;
    while redis.query(&["SMEMBERS", "chat:servers"]).len() > 1 {
        assert!(Instant::now() < deadline, "the cut-off server stays listed");
        thread::sleep(Duration::from_millis(20));
    }
    // Typed anew after the lift, where Redis answers (that server was
    // not told of the lift: it held the ban still).
    servers[1].console(&format!("/ban {again}"));
    servers[1].stdout_until(|l| l.starts_with(&format!("* ban replaced: {again}")));
    proxy.heal();
    // Announced back in the beat that registered it, after it read the
    // shared ban list.
    watcher.recv_until(|l| l == format!("* {v} is back (server reconnected)"));
    assert!(
        !refused(&servers[0], lifted),
        "the lifted ban came back; stderr:\n{}",
        servers[0].stderr()
    );
    assert!(
        refused(&servers[0], again),
        "stderr:\n{}",
        servers[0].stderr()
    );
    let listed =
        |source: std::net::IpAddr| redis.command(&["HEXISTS", "chat:bans", &source.to_string()]);
    assert_eq!(listed(lifted), ":0", "the lift was not taken out");
    assert_eq!(listed(again), ":1", "the ban typed anew was taken out");
}

/// A `/ban` passed on to a server and read there only after its console
/// lifted the prefix was applied after the lift: the ban came back on that
/// server alone, the others and the shared list without it (here the
/// request waits in the inbox of a server cut off from Redis, where the
/// lift is typed; the same when the reader is merely behind the console).
/// A passed-on ban now carries the time it was put in the shared list,
/// and is applied only if the list still holds it and this server did not
/// lift it later.
#[test]
fn a_ban_passed_on_and_read_after_a_lift_there_is_not_applied() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.addr());
    let mut servers = [server_at(&proxy.url(), &[]), server_with(&redis, &[])];
    let source = chat_tests::hosts::loopback(0, 0, 33);
    servers[1].console(&format!("/ban {source}"));
    servers[1].stdout_until(|l| l.starts_with("* passed on to the 1 other server"));
    servers[0].stderr_until(&format!(
        "another server's console: /ban {source}: * banned"
    ));
    proxy.cut();
    // Banned anew where Redis answers: passed on into the cut-off
    // server's inbox, where it waits.
    servers[1].console(&format!("/ban {source} 1h"));
    servers[1].stdout_until(|l| l.starts_with("* passed on to the 1 other server"));
    // Lifted where the request waits, after it was typed.
    servers[0].console(&format!("/unban {source}"));
    servers[0].stdout_until(|l| {
        l.starts_with(
            "! maybe not taken out of the cluster's shared ban list (Redis did not answer)",
        )
    });
    proxy.heal();
    servers[0].stderr_until(&format!("another server's console: /ban {source} 1h: "));
    assert!(
        !refused(&servers[0], source),
        "the ban read after the lift was applied; stderr:\n{}",
        servers[0].stderr()
    );
    assert!(servers[0].stderr().contains(&format!(
        "another server's console: /ban {source} 1h: * not applied: lifted since it was typed"
    )));
    // The lift, retried once Redis answers, takes the shared ban out.
    let deadline = Instant::now() + TIMEOUT;
    while redis.command(&["HEXISTS", "chat:bans", &source.to_string()]) != ":0" {
        assert!(Instant::now() < deadline, "the lift was never taken out");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(!refused(&servers[0], source), "{}", servers[0].stderr());
}

/// Review: a `/ban` and an `/unban` of one address typed on two consoles
/// at the same moment left the servers disagreeing for good: each applied
/// its own command, then the other's, and so ended the other way round
/// (5 runs of 5: the banning server let the address in, the lifting one
/// refused it, the third either way, the shared list either way). Each
/// passed-on command now says what it did to the shared list, and is
/// applied only if the list still says so: the list, where the two meet
/// in one order, decides for every server. Both orders of typing.
#[test]
fn a_ban_and_an_unban_typed_at_once_on_two_consoles_end_the_same_everywhere() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 3);
    for (round, first) in [(35_u8, "/ban"), (36, "/unban")] {
        let source = chat_tests::hosts::loopback(0, 0, round);
        let second = if first == "/ban" { "/unban" } else { "/ban" };
        if first == "/unban" {
            // Banned everywhere first, for the lift to lift something.
            servers[0].console(&format!("/ban {source}"));
            until_all(&servers, source, true);
        }
        let passed_on = |server: &Server, command: &str| {
            let text = format!("another server's console: {command} {source}:");
            server.stderr().matches(&text).count()
        };
        let before: Vec<[usize; 2]> = servers
            .iter()
            .map(|s| [passed_on(s, first), passed_on(s, second)])
            .collect();
        servers[0].console(&format!("{first} {source}"));
        servers[1].console(&format!("{second} {source}"));
        // Every server has served both: its own, and the other's passed on.
        let deadline = Instant::now() + TIMEOUT;
        for (i, server) in servers.iter().enumerate() {
            for (typed_on, command) in [(0, first), (1, second)] {
                let k = usize::from(command == second);
                while typed_on != i && passed_on(server, command) <= before[i][k] {
                    assert!(
                        Instant::now() < deadline,
                        "server {i} never served {command}; stderr:\n{}",
                        server.stderr()
                    );
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let listed = redis.command(&["HEXISTS", "chat:bans", &source.to_string()]) == ":1";
        for (i, server) in servers.iter().enumerate() {
            assert_eq!(
                refused(server, source),
                listed,
                "{first} then {second}: server {i} disagrees with the shared list; stderr:\n{}",
                server.stderr()
            );
        }
    }
}

/// Two `/ban`s of one address with different ends and reasons, typed on
/// two consoles at once, each ended held as the other's on its own server
/// (a known limit: the passed-on one replaced the own). The shared list
/// decides here too: every server holds the ban it holds. (A first
/// version told the two puts apart by their ms: put in the same ms, both
/// passed; each passed-on ban now carries its whole value.)
#[test]
fn two_bans_typed_at_once_on_two_consoles_end_the_same_everywhere() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    for round in 0..3_u8 {
        let source = chat_tests::hosts::loopback(0, 0, 40 + round);
        let passed_on = |server: &Server| {
            let text = format!("another server's console: /ban {source} ");
            server.stderr().matches(&text).count()
        };
        let before: Vec<usize> = servers.iter().map(passed_on).collect();
        servers[0].console(&format!("/ban {source} 1h first"));
        servers[1].console(&format!("/ban {source} 2h second"));
        let deadline = Instant::now() + TIMEOUT;
        for (i, server) in servers.iter().enumerate() {
            while passed_on(server) <= before[i] {
                assert!(Instant::now() < deadline, "{}", server.stderr());
                thread::sleep(Duration::from_millis(10));
            }
        }
        let listed = redis.query(&["HGET", "chat:bans", &source.to_string()]);
        let reason = listed[0].rsplit(' ').next().expect("a reason").to_string();
        for (i, server) in servers.iter_mut().enumerate() {
            server.console("/bans");
            let held = server.stdout_until(|l| l.starts_with(&format!("*   {source},")));
            assert!(
                held.ends_with(&format!(": {reason}")),
                "round {round}: server {i} holds {held:?}, the list {listed:?}; stderr:\n{}",
                server.stderr()
            );
        }
    }
}

/// Review: an `/unban` that reached Redis as it was typed compared clocks
/// with the `/ban` (the time kept in the shared list's value) and kept a
/// ban whose server's clock was ahead of its own, silently: a server that
/// registered later applied the lifted ban. It takes out whatever is
/// there now.
#[test]
fn an_unban_takes_the_shared_ban_out_whatever_the_banning_clock_said() {
    let redis = Redis::start();
    let mut servers = servers(&redis, 2);
    let source = chat_tests::hosts::loopback(0, 0, 32);
    servers[0].console(&format!("/ban {source}"));
    servers[0].stdout_until(|l| l.starts_with(&format!("* banned {source}")));
    // Passed on to the other server too, before it lifts it (read later,
    // the passed-on ban would be applied after its lift).
    let deadline = Instant::now() + TIMEOUT;
    while !servers[1]
        .stderr()
        .contains(&format!("another server's console: /ban {source}"))
    {
        assert!(Instant::now() < deadline, "never passed on");
        thread::sleep(Duration::from_millis(20));
    }
    // The banning server's clock a minute ahead of the lifting one's.
    let fields = redis.query(&["HKEYS", "chat:bans"]);
    assert_eq!(fields.len(), 1, "{fields:?}");
    let field = fields[0].clone();
    let value = redis.query(&["HGET", "chat:bans", &field]);
    let (ms, line) = value[0].split_once(' ').expect("time and line");
    let ahead = ms.parse::<u64>().expect("a time in ms") + 60_000;
    redis.command(&["HSET", "chat:bans", &field, &format!("{ahead} {line}")]);
    servers[1].console(&format!("/unban {source}"));
    until_all(&servers, source, false);
    assert_eq!(redis.query(&["HEXISTS", "chat:bans", &field]), ["0"]);
    let later = server_with(&redis, &[]);
    assert!(
        !refused(&later, source),
        "the lifted ban came back; stderr:\n{}",
        later.stderr()
    );
}

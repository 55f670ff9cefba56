//! The link: reconnecting, epochs, the start check, timeouts.

use super::*;
use crate::shutdown::Waited;

/// The link, Redis never there: every command fails at once with `Down`
/// (no hang, no panic), attempts are spaced by the back-off, and the link
/// connects by itself once Redis appears on that port.
#[test]
fn link_redis_never_there_then_appears() {
    let mut redis = Redis::start();
    redis.kill();
    let mut link = link(&redis);
    let started = Instant::now();
    assert!(matches!(
        link.run(|c| redis::cmd("PING").query::<String>(c)),
        Err(Failure::Down)
    ));
    assert!(matches!(
        link.run(|c| redis::cmd("PING").query::<String>(c)),
        Err(Failure::Down)
    ));
    assert!(started.elapsed() < Duration::from_secs(2), "failing fast");
    assert!(!link.is_up());

    redis.restart();
    let shutdown = Shutdown::new();
    let waited = Instant::now();
    assert_eq!(link.wait_up(&shutdown), Waited::Done);
    assert!(waited.elapsed() <= BACKOFF_MAX + Duration::from_secs(2));
    assert_eq!(
        link.run(|c| redis::cmd("PING").query::<String>(c)).unwrap(),
        "PONG"
    );
}

/// A link waiting out its back-off connects within [`SIBLING_CHECK`] of a
/// sibling getting through, not at its next attempt (up to
/// [`BACKOFF_MAX`] later). Defect (review): the reader waited that out
/// after presence had reconnected, and its server refused lines
/// meanwhile ("the room is cut off").
#[test]
fn a_link_waiting_out_its_back_off_connects_once_a_sibling_did() {
    let mut redis = Redis::start();
    redis.kill();
    let endpoint = endpoint(&redis);
    let mut waiting = endpoint.link("reader", IO_TIMEOUT);
    let shutdown = Arc::new(Shutdown::new());
    let (up, came_up) = std::sync::mpsc::channel();
    let stop = Arc::clone(&shutdown);
    let started = Instant::now();
    let waiter = thread::spawn(move || {
        let waited = waiting.wait_up(&stop);
        let _ = up.send((waited, Instant::now()));
    });
    // Down long enough for the waiting link's back-off to pass a second
    // (attempts at 0, 0.05, 0.15, 0.35, 0.75, 1.55, then 3.15 s): Redis
    // is back just after its attempt at 1.55 s, so its own next attempt
    // is more than a second away.
    thread::sleep(Duration::from_millis(1700));
    redis.restart();
    let mut sibling = endpoint.link("presence", IO_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sibling
        .run(|c| redis::cmd("PING").query::<String>(c))
        .is_err()
    {
        assert!(Instant::now() < deadline, "the sibling never connected");
        thread::sleep(Duration::from_millis(10));
    }
    let through = Instant::now();
    let answer = came_up.recv_timeout(BACKOFF_MAX * 3);
    shutdown.trigger();
    waiter.join().expect("the waiting thread");
    let (waited, at) = answer.expect("wait_up returned");
    assert_eq!(waited, Waited::Done);
    // Only a sibling through well before the waiting link's own next
    // attempt (3.15 s) tells anything: that attempt would then come more
    // than twice the bound below after it.
    assert!(
        through < started + Duration::from_millis(2500),
        "Redis took {:?} to restart: too late to tell",
        through - started
    );
    // (It may connect a moment before the sibling's PING is answered.)
    let after = at.saturating_duration_since(through);
    assert!(
        after <= SIBLING_CHECK * 3,
        "connected {after:?} after its sibling"
    );
}

/// The link, Redis killed mid-run: the next command fails (`Lost` or
/// `Down`), and after a restart on the same port the link reconnects, with a
/// new epoch (Redis came back empty) and the scripts loaded again.
#[test]
fn link_redis_killed_mid_run_and_restarted_empty() {
    let mut redis = Redis::start();
    let mut link = link(&redis);
    assert_eq!(
        link.run(|c| redis::cmd("PING").query::<String>(c)).unwrap(),
        "PONG"
    );
    let first_epoch = link.epoch().unwrap().to_string();
    assert_eq!(link.connects(), 1);

    redis.kill();
    assert!(matches!(
        link.run(|c| redis::cmd("PING").query::<String>(c)),
        Err(Failure::Lost | Failure::Down)
    ));
    assert!(!link.is_up());

    redis.restart();
    assert_eq!(link.wait_up(&Shutdown::new()), Waited::Done);
    assert_eq!(link.connects(), 2);
    assert_ne!(
        link.epoch().unwrap(),
        first_epoch,
        "an empty Redis is a new epoch"
    );
    let hash = redis::Script::new(super::super::keys::APPEND)
        .get_hash()
        .to_string();
    let loaded: Vec<bool> = link
        .run(|c| redis::cmd("SCRIPT").arg("EXISTS").arg(&hash).query(c))
        .unwrap();
    assert_eq!(loaded, [true], "scripts loaded on the new connection");
}

/// The link keeps the epoch across a reconnection to the same Redis (its
/// connection killed, Redis not): nothing was lost.
#[test]
fn link_same_redis_same_epoch() {
    let redis = Redis::start();
    let mut link = link(&redis);
    assert_eq!(link.wait_up(&Shutdown::new()), Waited::Done);
    let epoch = link.epoch().unwrap().to_string();
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    let _ = link.run(|c| redis::cmd("PING").query::<String>(c));
    assert_eq!(link.wait_up(&Shutdown::new()), Waited::Done);
    assert_eq!(link.epoch().unwrap(), epoch);
}

/// The start check: a Redis that answers passes; nothing on the port, a
/// password refused, each give one line naming the address.
#[test]
fn start_check_reachable_unreachable_refusing() {
    let mut redis = Redis::start();
    assert_eq!(check(&url(&redis)), Ok(()));
    redis.kill();
    let err = check(&url(&redis)).unwrap_err();
    assert!(err.contains("cannot use Redis at 127.0.0.1:"), "{err}");
    assert!(!err.contains('\n'));

    let locked = Redis::start_with(&["--requirepass", "sesame"]);
    let err = check(&url(&locked)).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    let wrong = RedisUrl::parse(&locked.url().replace("redis://", "redis://:nope@")).unwrap();
    let err = check(&wrong).unwrap_err();
    assert!(!err.contains("nope"), "the password is never shown: {err}");
    let right = RedisUrl::parse(&locked.url().replace("redis://", "redis://:sesame@")).unwrap();
    assert_eq!(check(&right), Ok(()));
}

/// Something else on the port (an SSH, HTTP or SMTP server answering with
/// its banner): one line that says it is not Redis, not the reply
/// parser's lines of byte numbers.
#[test]
fn start_check_of_a_service_that_is_not_redis_is_one_line() {
    use std::io::{Read, Write};
    for banner in [
        &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        b"220 mail ESMTP ready\r\n",
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let _ = stream.write_all(banner);
            let mut sink = [0u8; 1024];
            while let Ok(1..) = stream.read(&mut sink) {}
        });
        let url = RedisUrl::parse(&format!("redis://{addr}")).unwrap();
        let err = check(&url).unwrap_err();
        serving.join().unwrap();
        assert!(!err.contains('\n'), "{err:?}");
        assert!(
            err.contains(&format!("cannot use Redis at {addr}")),
            "{err}"
        );
        assert!(err.contains("not in the Redis protocol"), "{err}");
    }
}

/// Redis closed every connection while they sat idle (`CLIENT KILL`, as a
/// timeout or a failover does): the first claim, lookup, filing and
/// history read afterwards each succeed (tried again on a fresh
/// connection), rather than failing once.
#[test]
fn the_first_command_after_redis_closed_an_idle_connection_succeeds() {
    let redis = Redis::start();
    let names = Names::new(&endpoint(&redis), "a");
    redis.command(&["SADD", "chat:servers", "a"]);
    assert_eq!(names.claim("zed", 1).unwrap(), Claim::Claimed);
    let kill = || redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    kill();
    assert_eq!(names.claim("Zed", 1).unwrap(), Claim::Claimed);
    kill();
    names.member("Zed", Some(("lobby", 1, 1))).unwrap();
    kill();
    assert_eq!(names.holder("zed").unwrap().unwrap().name, "Zed");
    kill();
    let all = names.everyone().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let mut link = link(&redis);
    tail(&mut link, "lobby", 1, |_| true).unwrap();
    kill();
    tail(&mut link, "lobby", 1, |_| true).unwrap();
}

/// Redis stops answering (its connections held): one link's timeout makes
/// the quick links of the same server fail at once, with no timeout of
/// their own, until some link gets a reply; and a command that timed out
/// is not tried again on a fresh connection (one timeout, not two).
#[test]
fn a_timeout_makes_quick_links_fail_at_once_until_a_reply() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.addr());
    let endpoint = Endpoint::new(proxy.url());
    let mut slow = endpoint.link("slow", IO_TIMEOUT);
    let mut quick = endpoint.link("quick", IO_TIMEOUT).quick();
    ping(&mut slow).unwrap();
    ping(&mut quick).unwrap();
    proxy.hold();
    assert!(matches!(ping(&mut slow), Err(Failure::Lost)));
    assert!(slow.lost_to_timeout());
    let asked = Instant::now();
    assert!(matches!(ping(&mut quick), Err(Failure::Down)));
    assert!(asked.elapsed() < Duration::from_millis(500), "{asked:?}");

    // New connections pass again; the quick link's own is still held.
    proxy.heal();
    let deadline = Instant::now() + DEADLINE;
    while ping(&mut slow).is_err() {
        assert!(Instant::now() < deadline, "the slow link never came back");
        thread::sleep(Duration::from_millis(20));
    }
    let asked = Instant::now();
    assert!(matches!(ping(&mut quick), Err(Failure::Lost)));
    assert!(
        asked.elapsed() < IO_TIMEOUT + Duration::from_secs(1),
        "tried again after the timeout: {:?}",
        asked.elapsed()
    );
    assert!(matches!(ping(&mut quick), Err(Failure::Down)), "hung now");
    ping(&mut slow).unwrap();
    assert_eq!(ping(&mut quick).unwrap(), "PONG", "a reply ended it");
}

/// One connection held while Redis answers the server's other links: its
/// timeout is that connection's trouble, not a hung Redis, so the command
/// is tried again on a fresh connection (and works), and the quick links
/// do not start failing at once.
#[test]
fn a_timeout_while_redis_answers_other_links_is_tried_again() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let redis = Redis::start();
    let proxy = Proxy::start(redis.addr());
    let endpoint = Endpoint::new(proxy.url());
    let mut held = endpoint.link("held", IO_TIMEOUT).quick();
    ping(&mut held).unwrap();
    proxy.hold();
    proxy.heal();
    // Another link of the server, on a new connection, gets replies.
    let done = Arc::new(AtomicBool::new(false));
    let pinger = {
        let mut other = endpoint.link("other", IO_TIMEOUT);
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let deadline = Instant::now() + DEADLINE;
            while !done.load(Ordering::Acquire) && Instant::now() < deadline {
                let _ = ping(&mut other);
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let asked = Instant::now();
    let answer = ping(&mut held);
    done.store(true, Ordering::Release);
    pinger.join().unwrap();
    assert_eq!(answer.unwrap(), "PONG", "tried again on a fresh connection");
    assert!(asked.elapsed() >= IO_TIMEOUT, "the first try timed out");
    let mut quick = endpoint.link("quick", IO_TIMEOUT).quick();
    assert_eq!(ping(&mut quick).unwrap(), "PONG", "not taken for hung");
}

/// Defect: a pipeline to a Redis that stopped answering failed after one
/// reply timeout per command (the redis crate's connection reads every
/// reply even after one timed out): the reader's `XREAD` with `TIME` took
/// two timeouts, a writer's batch one per line. Now the first reply that
/// does not come ends it.
#[test]
fn a_pipeline_to_a_hung_redis_fails_within_one_timeout() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.addr());
    let mut link = Endpoint::new(proxy.url()).link("writer", IO_TIMEOUT);
    ping(&mut link).unwrap();
    proxy.hold();
    let asked = Instant::now();
    let sent: Result<Vec<String>, Failure> = link.run(|conn| {
        let mut pipe = redis::pipe();
        for _ in 0..4 {
            pipe.cmd("PING");
        }
        pipe.query(conn)
    });
    let took = asked.elapsed();
    assert!(matches!(sent, Err(Failure::Lost)), "{sent:?}");
    assert!(link.lost_to_timeout());
    assert!(took < IO_TIMEOUT * 2, "{took:?} for 4 commands");
}

/// A pipeline through [`super::super::link::Replies`] gives what the crate's own
/// connection gives: every reply in order (an error reply among them as a
/// value, with `ignore_errors`), the ignored left out, and a transaction's
/// replies once it ran.
#[test]
fn pipelines_answer_as_the_crates_own_connection() {
    let redis = Redis::start();
    let mut link = link(&redis);
    let (a, b): (String, i64) = link
        .run(|conn| {
            redis::pipe()
                .cmd("SET")
                .arg("k")
                .arg("v")
                .ignore()
                .cmd("GET")
                .arg("k")
                .cmd("INCR")
                .arg("n")
                .query(conn)
        })
        .unwrap();
    assert_eq!((a.as_str(), b), ("v", 1));
    let (n,): (i64,) = link
        .run(|conn| {
            redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg("n")
                .ignore()
                .cmd("INCR")
                .arg("n")
                .query(conn)
        })
        .unwrap();
    assert_eq!(n, 3);
    let replies: Vec<redis::Value> = link
        .run(|conn| {
            redis::pipe()
                .ignore_errors()
                .cmd("INCR")
                .arg("k")
                .cmd("GET")
                .arg("k")
                .query(conn)
        })
        .unwrap();
    assert!(
        matches!(replies[0], redis::Value::ServerError(_)),
        "{replies:?}"
    );
    assert_eq!(replies[1], redis::Value::BulkString(b"v".to_vec()));
    // A transaction refused while queuing fails as a whole.
    let refused: Result<(i64,), Failure> = link.run(|conn| {
        redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg("n")
            .cmd("NO-SUCH-COMMAND")
            .query(conn)
    });
    assert!(matches!(refused, Err(Failure::Refused(_))), "{refused:?}");
    assert_eq!(redis.query(&["GET", "n"]), ["3"], "nothing of it ran");
}

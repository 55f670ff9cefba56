//! Presence: heartbeats, lost servers, registering again, filing members.
//! Names and guest numbers: `names.rs`.

use super::*;

/// A server that dies without a word (its heartbeat expires): exactly one
/// of the survivors announces each of its members once in the member's
/// room, and their names are free again.
#[test]
fn a_lost_server_is_announced_once_and_its_names_freed() {
    let redis = Redis::start();
    let dead = Names::new(&endpoint(&redis), "dead");
    assert_eq!(dead.claim("carol", 1).unwrap(), Claim::Claimed);
    assert_eq!(dead.claim("dave", 2).unwrap(), Claim::Claimed);
    dead.member("carol", Some(("lobby", 1, 1))).unwrap();
    dead.member("dave", Some(("games", 2, 2))).unwrap();
    redis.command(&["SADD", "chat:servers", "dead"]);
    redis.command(&["SET", "chat:alive:dead", "1", "PX", "200"]);

    let shutdown = Arc::new(Shutdown::new());
    let survivors: Vec<_> = ["s1", "s2", "s3"]
        .iter()
        .map(|id| survivor(&redis, id, &shutdown))
        .collect();
    let deadline = Instant::now() + HEARTBEAT_TTL + HEARTBEAT_EVERY * 3;
    while redis.query(&["EXISTS", "chat:name:dave"]) != ["0"] {
        assert!(Instant::now() < deadline, "dave never freed");
        thread::sleep(Duration::from_millis(20));
    }
    // The reap is over once the lost server is no longer registered.
    while redis.query(&["SISMEMBER", "chat:servers", "dead"]) != ["0"] {
        assert!(Instant::now() < deadline, "dead never unregistered");
        thread::sleep(Duration::from_millis(20));
    }
    // Then every survivor beats once more (its heartbeat set after the
    // reap ended: its TTL left exceeds what it would be if set before),
    // so one that would (wrongly) announce again has had its chance.
    let reaped = Instant::now();
    let deadline = reaped + HEARTBEAT_EVERY * 3;
    for id in ["s1", "s2", "s3"] {
        let key = format!("chat:alive:{id}");
        loop {
            let left: i128 = redis.query(&["PTTL", &key])[0].parse().unwrap();
            let if_before =
                HEARTBEAT_TTL.as_millis() as i128 - reaped.elapsed().as_millis() as i128;
            if left > if_before {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never beat again");
            thread::sleep(Duration::from_millis(20));
        }
    }
    let lobby = redis.query(&["XRANGE", "chat:log:lobby", "-", "+"]);
    let games = redis.query(&["XRANGE", "chat:log:games", "-", "+"]);
    assert_eq!(
        lobby.iter().filter(|f| *f == LOST_KIND).count(),
        1,
        "{lobby:?}"
    );
    assert_eq!(
        games.iter().filter(|f| *f == LOST_KIND).count(),
        1,
        "{games:?}"
    );
    assert!(
        lobby.contains(&"* carol left (server lost)\n".to_string()),
        "{lobby:?}"
    );
    assert_eq!(redis.query(&["EXISTS", "chat:name:carol"]), ["0"]);
    assert_eq!(redis.query(&["SISMEMBER", "chat:servers", "dead"]), ["0"]);
    let names = Names::new(&endpoint(&redis), "s1");
    assert_eq!(names.claim("Carol", 9).unwrap(), Claim::Claimed);

    shutdown.trigger();
    for s in survivors {
        joined(s);
    }
    assert_eq!(
        redis.query(&["SCARD", "chat:servers"]),
        ["0"],
        "a graceful stop unregisters"
    );
}

/// Defect (review): a survivor that took a lost server's reap lock and
/// then failed (its link dropped mid-reap) could not take its own lock
/// again, nor could anyone else, until it expired 10 s later: the lost
/// server's clients were announced about 15 s after its death, past
/// SPEC's 10 s. Now the holder takes its own lock again at its next beat.
#[test]
fn a_reaper_that_failed_takes_its_own_lock_again() {
    let redis = Redis::start();
    let dead = Names::new(&endpoint(&redis), "dead");
    assert_eq!(dead.claim("carol", 1).unwrap(), Claim::Claimed);
    dead.member("carol", Some(("lobby", 1, 1))).unwrap();
    redis.command(&["SADD", "chat:servers", "dead"]);
    // As if s1 took the lock at its last beat and failed right after.
    redis.command(&["SET", "chat:reap:dead", "s1", "PX", "10000"]);
    let shutdown = Arc::new(Shutdown::new());
    let started = Instant::now();
    let s1 = survivor(&redis, "s1", &shutdown);
    let deadline = started + HEARTBEAT_EVERY * 3;
    while redis.query(&["EXISTS", "chat:name:carol"]) != ["0"] {
        assert!(
            Instant::now() < deadline,
            "carol not freed within {:?}",
            HEARTBEAT_EVERY * 3
        );
        thread::sleep(Duration::from_millis(20));
    }
    let lobby = redis.query(&["XRANGE", "chat:log:lobby", "-", "+"]);
    assert_eq!(lobby.iter().filter(|f| *f == LOST_KIND).count(), 1);
    shutdown.trigger();
    joined(s1);
}

/// A server is listed among the servers before it takes a client: a
/// console's `/ban` typed on another server right after this one started
/// (`ban_and_unban_across_servers`), or a `/who`, must find it. Listed by
/// the presence thread's first beat only, it could miss them under load.
#[test]
fn presence_lists_the_server_before_start_returns() {
    let redis = Redis::start();
    let shutdown = Arc::new(Shutdown::new());
    let presence = survivor(&redis, "a", &shutdown);
    assert_eq!(redis.query(&["SISMEMBER", "chat:servers", "a"]), ["1"]);
    assert_eq!(redis.query(&["EXISTS", "chat:alive:a"]), ["1"]);
    shutdown.trigger();
    joined(presence);
}

/// After Redis came back empty, presence registers the server again: its
/// members' names are taken again and the guest counter is past every
/// number it gave.
#[test]
fn presence_registers_again_after_redis_came_back_empty() {
    let mut redis = Redis::start();
    let shutdown = Arc::new(Shutdown::new());
    let presence = Presence::start(
        &endpoint(&redis),
        "a",
        LogConfig::default(),
        Arc::new(Members(
            vec![Member {
                name: "Erin".into(),
                room: "lobby".into(),
                client: 5,
                entered: 7,
            }],
            41,
        )),
        shutdown.clone(),
    )
    .unwrap();
    let wait_for = |redis: &Redis| {
        let deadline = Instant::now() + DEADLINE;
        while redis.query(&["GET", "chat:name:erin"]) != ["a:5:Erin"] {
            assert!(Instant::now() < deadline, "never registered");
            thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(&redis);
    redis.restart();
    wait_for(&redis);
    assert_eq!(
        redis.query(&["HGET", "chat:members:a", "Erin"]),
        ["lobby\t7\t5"]
    );
    let names = Names::new(&endpoint(&redis), "b");
    assert_eq!(names.next_guest(0).unwrap(), 42);
    assert_eq!(
        names.guest_tag().unwrap(),
        42,
        "the tag counter is raised too"
    );
    shutdown.trigger();
    joined(presence);
    assert_eq!(
        redis.query(&["EXISTS", "chat:name:erin"]),
        ["0"],
        "freed on a graceful stop"
    );
}

/// A member whose filing was lost (its `HSET` failed on a broken
/// connection) is filed again by presence within a few beats, and one
/// listed but no longer here is dropped.
#[test]
fn presence_files_every_member_again_each_beat() {
    let redis = Redis::start();
    let shutdown = Arc::new(Shutdown::new());
    let presence = Presence::start(
        &endpoint(&redis),
        "a",
        LogConfig::default(),
        Arc::new(Members(
            vec![Member {
                name: "Gus".into(),
                room: "games".into(),
                client: 2,
                entered: 5,
            }],
            0,
        )),
        shutdown.clone(),
    )
    .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while redis.query(&["HGET", "chat:members:a", "Gus"]) != ["games\t5\t2"] {
        assert!(Instant::now() < deadline, "never filed");
        thread::sleep(Duration::from_millis(20));
    }
    redis.command(&["HDEL", "chat:members:a", "Gus"]);
    redis.command(&["HSET", "chat:members:a", "Ghost", "lobby\t1"]);
    let deadline = Instant::now() + HEARTBEAT_EVERY * 5;
    while redis.query(&["HGETALL", "chat:members:a"]) != ["Gus", "games\t5\t2"] {
        assert!(
            Instant::now() < deadline,
            "not filed again: {:?}",
            redis.query(&["HGETALL", "chat:members:a"])
        );
        thread::sleep(Duration::from_millis(20));
    }
    shutdown.trigger();
    joined(presence);
}

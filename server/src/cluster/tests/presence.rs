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
    dead.member("carol", Some(("lobby", 1))).unwrap();
    dead.member("dave", Some(("games", 2))).unwrap();
    redis.command(&["SADD", "chat:servers", "dead"]);
    redis.command(&["SET", "chat:alive:dead", "1", "PX", "200"]);

    let shutdown = Arc::new(Shutdown::new());
    let survivors: Vec<_> = ["s1", "s2", "s3"]
        .iter()
        .map(|id| {
            Presence::start(
                &endpoint(&redis),
                id,
                LogConfig::default(),
                Arc::new(Members(Vec::new(), 0)),
                shutdown.clone(),
            )
            .unwrap()
        })
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
    dead.member("carol", Some(("lobby", 1))).unwrap();
    redis.command(&["SADD", "chat:servers", "dead"]);
    // As if s1 took the lock at its last beat and failed right after.
    redis.command(&["SET", "chat:reap:dead", "s1", "PX", "10000"]);
    let shutdown = Arc::new(Shutdown::new());
    let started = Instant::now();
    let s1 = Presence::start(
        &endpoint(&redis),
        "s1",
        LogConfig::default(),
        Arc::new(Members(Vec::new(), 0)),
        shutdown.clone(),
    )
    .unwrap();
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
    let presence = Presence::start(
        &endpoint(&redis),
        "a",
        LogConfig::default(),
        Arc::new(Members(Vec::new(), 0)),
        shutdown.clone(),
    )
    .unwrap();
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
        ["lobby\t7"]
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

/// A server the others took for lost (cut off longer than its heartbeat,
/// its registration reaped) registers its clients again at its next beat.
#[test]
fn a_server_taken_for_lost_registers_again() {
    let redis = Redis::start();
    let shutdown = Arc::new(Shutdown::new());
    let presence = Presence::start(
        &endpoint(&redis),
        "a",
        LogConfig::default(),
        Arc::new(Members(
            vec![Member {
                name: "Finn".into(),
                room: "lobby".into(),
                client: 3,
                entered: 9,
            }],
            0,
        )),
        shutdown.clone(),
    )
    .unwrap();
    let registered = |redis: &Redis| {
        let deadline = Instant::now() + DEADLINE;
        while redis.query(&["GET", "chat:name:finn"]) != ["a:3:Finn"] {
            assert!(Instant::now() < deadline, "never registered");
            thread::sleep(Duration::from_millis(20));
        }
    };
    registered(&redis);
    let backs = |redis: &Redis| {
        redis
            .query(&["XRANGE", "chat:log:lobby", "-", "+"])
            .into_iter()
            .filter(|f| f.starts_with("* Finn is back"))
            .count()
    };
    assert_eq!(backs(&redis), 0, "its first registration is no return");
    // The lobby's log holds something else for a moment: the first try
    // to announce Finn back fails (after counting a line).
    redis.command(&["SET", "chat:log:lobby", "not a stream"]);
    // What a survivor's reap leaves behind.
    redis.command(&["SREM", "chat:servers", "a"]);
    redis.command(&["DEL", "chat:members:a", "chat:name:finn"]);
    redis.command(&["SADD", "chat:reaped:a", "Finn"]);
    registered(&redis);
    assert_eq!(
        redis.query(&["HGET", "chat:members:a", "Finn"]),
        ["lobby\t9"]
    );
    let deadline = Instant::now() + DEADLINE;
    while redis.query(&["GET", "chat:seq:lobby"]) != ["1"] {
        assert!(
            Instant::now() < deadline,
            "never tried to announce Finn back"
        );
        thread::sleep(Duration::from_millis(20));
    }
    redis.command(&["DEL", "chat:log:lobby"]);
    // Defect (review): its members, announced as gone, came back without
    // a word: the others saw their lines after their leave. Now each is
    // announced back, once, tried again at the next beat when it fails
    // (a second review: a failed try was never made again).
    let deadline = Instant::now() + DEADLINE;
    while backs(&redis) == 0 {
        assert!(Instant::now() < deadline, "Finn never announced back");
        thread::sleep(Duration::from_millis(20));
    }
    shutdown.trigger();
    joined(presence);
    assert_eq!(backs(&redis), 1);
}

/// Defect (review): a server taken for lost while it was cut off read,
/// once back, the leave notices of its own members and showed them to
/// its clients (each told it had left itself). A server skips presence's
/// notices about its own members; the others get them.
#[test]
fn a_servers_own_members_do_not_see_their_lost_and_back_notices() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a", LogConfig::default());
    let b = Node::start(&redis, "b", LogConfig::default());
    a.watch("lobby");
    b.watch("lobby");
    // As a reaper, then server b back, would append them.
    for (n, kind, text) in [
        ("1", "lost", "* Finn left (server lost)\n"),
        ("2", "back", "* Finn is back (server reconnected)\n"),
    ] {
        let uid = format!("{kind}:b:Finn");
        let entry = [
            "XADD",
            "chat:log:lobby",
            "*",
            "n",
            n,
            "uid",
            &uid,
            "from",
            "Finn",
            "kind",
            kind,
            "text",
            text,
        ];
        assert!(redis.command(&entry).starts_with('$'));
        redis.command(&["SET", "chat:seq:lobby", n]);
    }
    let _ = a.say("lobby", "after");
    let seen = |node: &Node| {
        let events = node.sink.until("after", |e| {
            Recorder::delivered(e, "lobby").contains(&"after".to_string())
        });
        (Recorder::delivered(&events, "lobby"), events)
    };
    let (at_a, _) = seen(&a);
    assert_eq!(
        at_a,
        [
            "* Finn left (server lost)\n",
            "* Finn is back (server reconnected)\n",
            "after"
        ]
    );
    let (at_b, events) = seen(&b);
    assert_eq!(at_b, ["after"]);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Missed(..))),
        "{events:?}"
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
    while redis.query(&["HGET", "chat:members:a", "Gus"]) != ["games\t5"] {
        assert!(Instant::now() < deadline, "never filed");
        thread::sleep(Duration::from_millis(20));
    }
    redis.command(&["HDEL", "chat:members:a", "Gus"]);
    redis.command(&["HSET", "chat:members:a", "Ghost", "lobby\t1"]);
    let deadline = Instant::now() + HEARTBEAT_EVERY * 5;
    while redis.query(&["HGETALL", "chat:members:a"]) != ["Gus", "games\t5"] {
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

/// Defect (review): a reaper whose link failed after a chunk of members
/// (each announced gone, its name freed) and before it unlisted the lost
/// server, which was back by the reaper's next beat (so the reap was not
/// finished), left that server listed: it never registered again, and
/// its members stayed announced gone, unlisted, their names free for
/// anyone. Now a server finding members of its announced gone, with no
/// reap lock held on it, registers again and announces them back.
#[test]
fn a_server_back_during_a_half_finished_reap_registers_again() {
    let redis = Redis::start();
    let shutdown = Arc::new(Shutdown::new());
    let presence = Presence::start(
        &endpoint(&redis),
        "a",
        LogConfig::default(),
        Arc::new(Members(
            vec![Member {
                name: "Finn".into(),
                room: "lobby".into(),
                client: 3,
                entered: 9,
            }],
            0,
        )),
        shutdown.clone(),
    )
    .unwrap();
    let named = |redis: &Redis| redis.query(&["GET", "chat:name:finn"]) == ["a:3:Finn"];
    let deadline = Instant::now() + DEADLINE;
    while !named(&redis) {
        assert!(Instant::now() < deadline, "never registered");
        thread::sleep(Duration::from_millis(20));
    }
    // What one chunk of a reap leaves: the member announced gone, its
    // entry and name gone, the server still listed; the lock expired.
    redis.command(&["HDEL", "chat:members:a", "Finn"]);
    redis.command(&["DEL", "chat:name:finn"]);
    redis.command(&["SADD", "chat:reaped:a", "Finn"]);
    let backs = |redis: &Redis| {
        redis
            .query(&["XRANGE", "chat:log:lobby", "-", "+"])
            .into_iter()
            .filter(|f| f.starts_with("* Finn is back"))
            .count()
    };
    let deadline = Instant::now() + DEADLINE;
    while !(named(&redis) && backs(&redis) == 1) {
        assert!(
            Instant::now() < deadline,
            "name {:?}, {} back notices",
            redis.query(&["GET", "chat:name:finn"]),
            backs(&redis)
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        redis.query(&["HGET", "chat:members:a", "Finn"]),
        ["lobby\t9"]
    );
    shutdown.trigger();
    joined(presence);
    assert_eq!(backs(&redis), 1, "once");
}

/// A local whose first try to give a lost name up fails (no new name to
/// be had), the next ones succeed; it notes when the names are to be
/// claimed again.
#[derive(Default)]
struct GivesUpLate {
    tries: std::sync::atomic::AtomicUsize,
    unclaimed: std::sync::atomic::AtomicBool,
}

impl Local for GivesUpLate {
    fn members(&self) -> Vec<Member> {
        vec![Member {
            name: "Finn".into(),
            room: "lobby".into(),
            client: 3,
            entered: 9,
        }]
    }
    fn left(&self, name: &str, reason: &str) -> String {
        chat_common::protocol::notice(&format!("{name} left ({reason})"))
    }
    fn highest_guest(&self) -> u64 {
        0
    }
    fn guest_tag(&self) -> u64 {
        0
    }
    fn others(&self, _counts: std::collections::HashMap<String, usize>) {}
    fn name_lost(&self, _client: u64, _name: &str) -> bool {
        self.tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0
    }
    fn unfiled(&self) -> bool {
        false
    }
    fn file_failed(&self) {}
    fn unclaimed(&self) -> bool {
        self.unclaimed
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }
    fn claim_failed(&self) {
        self.unclaimed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    fn free_unfreed(&self) -> Result<(), Failure> {
        Ok(())
    }
}

/// Defect (review): a server back after being taken for lost, whose
/// client's name another server's client had taken, gave it up once; if
/// that failed (no new name to be had) it was never tried again, two
/// clients held the name for good, and the first was even announced back
/// under it. Now a failed give-up is tried at the next beat, and a member
/// whose name is held elsewhere is not announced back.
#[test]
fn a_name_not_given_up_is_tried_again_and_not_announced_back() {
    let redis = Redis::start();
    let local = Arc::new(GivesUpLate::default());
    let (shutdown, presence) = presence_of_a(
        &redis,
        local.clone(),
        &["GET", "chat:name:finn"],
        &["a:3:Finn"],
    );
    // Taken for lost (reaped) while b's client 9 took the name.
    redis.command(&["SREM", "chat:servers", "a"]);
    redis.command(&["DEL", "chat:members:a"]);
    redis.command(&["SET", "chat:name:finn", "b:9:finn"]);
    redis.command(&["SADD", "chat:reaped:a", "Finn"]);
    let deadline = Instant::now() + DEADLINE;
    while local.tries.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "a failed give-up never tried again"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The back notices were settled by then (same beat as the first try).
    while redis.query(&["EXISTS", "chat:reaped:a"]) != ["0"] {
        assert!(Instant::now() < deadline, "the back notices never settled");
        thread::sleep(Duration::from_millis(20));
    }
    shutdown.trigger();
    joined(presence);
    let lobby = redis.query(&["XRANGE", "chat:log:lobby", "-", "+"]);
    assert!(
        !lobby.iter().any(|f| f.starts_with("* Finn is back")),
        "{lobby:?}"
    );
    assert_eq!(redis.query(&["GET", "chat:name:finn"]), ["b:9:finn"]);
}

/// Defect (review): a server taken for lost, registered again, whose
/// "back" notices had not gone out yet (its link dropped) when it was
/// taken for lost a second time: its members were announced gone twice,
/// with no return between. Now a member still noted as announced gone is
/// not announced again; its name is freed all the same.
#[test]
fn a_member_not_yet_announced_back_is_not_announced_gone_again() {
    let redis = Redis::start();
    redis.command(&["SADD", "chat:servers", "a"]);
    redis.command(&["HSET", "chat:members:a", "Finn", "lobby\t9"]);
    redis.command(&["SET", "chat:name:finn", "a:3:Finn"]);
    redis.command(&["SADD", "chat:reaped:a", "Finn"]);
    let shutdown = Arc::new(Shutdown::new());
    let s1 = Presence::start(
        &endpoint(&redis),
        "s1",
        LogConfig::default(),
        Arc::new(Members(Vec::new(), 0)),
        shutdown.clone(),
    )
    .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while redis.query(&["SISMEMBER", "chat:servers", "a"]) != ["0"] {
        assert!(Instant::now() < deadline, "a never reaped");
        thread::sleep(Duration::from_millis(20));
    }
    shutdown.trigger();
    joined(s1);
    assert_eq!(redis.query(&["XLEN", "chat:log:lobby"]), ["0"]);
    assert_eq!(redis.query(&["EXISTS", "chat:name:finn"]), ["0"], "freed");
}

/// Defect (review): a lost server back before its reap ended was unlisted
/// by the reap's last step all the same; killed then, before its next
/// beat listed it again, it was never reaped (its names held for good).
/// The last step now leaves a server whose heartbeat is back listed,
/// except a stopping server's own.
#[test]
fn a_reap_does_not_unlist_a_server_back_meanwhile() {
    let redis = Redis::start();
    let unlist = |check: &str| {
        redis.command(&[
            "EVAL",
            crate::cluster::keys::UNLIST,
            "5",
            "chat:servers",
            "chat:alive:a",
            "chat:members:a",
            "chat:wake:a",
            "chat:inbox:a",
            "a",
            check,
        ])
    };
    redis.command(&["SADD", "chat:servers", "a"]);
    redis.command(&["HSET", "chat:members:a", "Gil", "lobby\t9"]);
    redis.command(&["SET", "chat:alive:a", "1", "PX", "5000"]);
    assert_eq!(unlist("1"), ":0");
    assert_eq!(redis.query(&["SISMEMBER", "chat:servers", "a"]), ["1"]);
    assert_eq!(redis.query(&["EXISTS", "chat:members:a"]), ["1"]);
    assert_eq!(unlist("0"), ":1", "a stopping server's own");
    redis.command(&["SADD", "chat:servers", "a"]);
    redis.command(&["DEL", "chat:alive:a"]);
    assert_eq!(unlist("1"), ":1");
    assert_eq!(redis.query(&["SISMEMBER", "chat:servers", "a"]), ["0"]);
}

//! A server taken for lost while it still runs (cut off from Redis, or
//! frozen, past its heartbeat) and back: registered again, its members
//! announced back once (never twice gone, never back under a name another
//! client holds), its own clients shown neither notice, and a reap that
//! stopped half way or raced its return mended.

use super::*;

/// How many notices of Finn's return the lobby's log holds.
fn finn_backs(redis: &Redis) -> usize {
    redis
        .query(&["XRANGE", "chat:log:lobby", "-", "+"])
        .into_iter()
        .filter(|f| f.starts_with("* Finn is back"))
        .count()
}

/// Presence of server "a" whose one client, Finn (client 3), is in the
/// lobby, once its first beat registered him.
fn finn_on_a(redis: &Redis) -> (Arc<Shutdown>, thread::JoinHandle<()>) {
    let finn = Member {
        name: "Finn".into(),
        room: "lobby".into(),
        client: 3,
        entered: 9,
    };
    presence_of_a(
        redis,
        Arc::new(Members(vec![finn], 0)),
        &["GET", "chat:name:finn"],
        &["a:3:Finn"],
    )
}

/// A server the others took for lost (cut off longer than its heartbeat,
/// its registration reaped) registers its clients again at its next beat.
#[test]
fn a_server_taken_for_lost_registers_again() {
    let redis = Redis::start();
    let (shutdown, presence) = finn_on_a(&redis);
    let registered = |redis: &Redis| {
        let deadline = Instant::now() + DEADLINE;
        while redis.query(&["GET", "chat:name:finn"]) != ["a:3:Finn"] {
            assert!(Instant::now() < deadline, "never registered");
            thread::sleep(Duration::from_millis(20));
        }
    };
    registered(&redis);
    assert_eq!(finn_backs(&redis), 0, "its first registration is no return");
    // The lobby's log holds something else for a moment: the first try
    // to announce Finn back fails (after counting a line).
    redis.command(&["SET", "chat:log:lobby", "not a stream"]);
    // What a survivor's reap leaves behind.
    redis.command(&["SREM", "chat:servers", "a"]);
    redis.command(&["DEL", "chat:members:a", "chat:name:finn"]);
    redis.command(&["SADD", "chat:reaped:a", "3"]);
    registered(&redis);
    assert_eq!(
        redis.query(&["HGET", "chat:members:a", "Finn"]),
        ["lobby\t9\t3"]
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
    while finn_backs(&redis) == 0 {
        assert!(Instant::now() < deadline, "Finn never announced back");
        thread::sleep(Duration::from_millis(20));
    }
    shutdown.trigger();
    joined(presence);
    assert_eq!(finn_backs(&redis), 1);
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
    let (shutdown, presence) = finn_on_a(&redis);
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
    redis.command(&["SADD", "chat:reaped:a", "3"]);
    let deadline = Instant::now() + DEADLINE;
    while !(named(&redis) && finn_backs(&redis) == 1) {
        assert!(
            Instant::now() < deadline,
            "name {:?}, {} back notices",
            redis.query(&["GET", "chat:name:finn"]),
            finn_backs(&redis)
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        redis.query(&["HGET", "chat:members:a", "Finn"]),
        ["lobby\t9\t3"]
    );
    shutdown.trigger();
    joined(presence);
    assert_eq!(finn_backs(&redis), 1, "once");
}

/// A local whose first try to give a lost name up fails (no new name to
/// be had), the next ones succeed; it notes when the names are to be
/// claimed again.
#[derive(Default)]
struct GivesUpLate {
    tries: std::sync::atomic::AtomicUsize,
    unclaimed: std::sync::atomic::AtomicBool,
}

impl Stub for GivesUpLate {
    fn members(&self) -> Vec<Member> {
        vec![Member {
            name: "Finn".into(),
            room: "lobby".into(),
            client: 3,
            entered: 9,
        }]
    }
    fn name_lost(&self, _client: u64, _name: &str, _why: NameLost) -> bool {
        self.tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0
    }
    fn unclaimed(&self) -> bool {
        self.unclaimed
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }
    fn claim_failed(&self) {
        self.unclaimed
            .store(true, std::sync::atomic::Ordering::SeqCst);
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
    redis.command(&["SADD", "chat:reaped:a", "3"]);
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
    redis.command(&["HSET", "chat:members:a", "Finn", "lobby\t9\t3"]);
    redis.command(&["SET", "chat:name:finn", "a:3:Finn"]);
    redis.command(&["SADD", "chat:reaped:a", "3"]);
    let shutdown = Arc::new(Shutdown::new());
    let s1 = survivor(&redis, "s1", &shutdown);
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
            "6",
            "chat:servers",
            "chat:alive:a",
            "chat:members:a",
            "chat:wake:a",
            "chat:inbox:a",
            "chat:beat:a",
            "a",
            check,
        ])
    };
    redis.command(&["SADD", "chat:servers", "a"]);
    redis.command(&["HSET", "chat:members:a", "Gil", "lobby\t9"]);
    redis.command(&["SET", "chat:alive:a", "1", "PX", "5000"]);
    redis.command(&["SET", "chat:beat:a", "1"]);
    assert_eq!(unlist("1"), ":0");
    assert_eq!(redis.query(&["EXISTS", "chat:beat:a"]), ["1"]);
    assert_eq!(redis.query(&["SISMEMBER", "chat:servers", "a"]), ["1"]);
    assert_eq!(redis.query(&["EXISTS", "chat:members:a"]), ["1"]);
    assert_eq!(unlist("0"), ":1", "a stopping server's own");
    redis.command(&["SADD", "chat:servers", "a"]);
    redis.command(&["DEL", "chat:alive:a"]);
    redis.command(&["SET", "chat:beat:a", "1"]);
    assert_eq!(unlist("1"), ":1");
    assert_eq!(redis.query(&["SISMEMBER", "chat:servers", "a"]), ["0"]);
    assert_eq!(
        redis.query(&["EXISTS", "chat:beat:a"]),
        ["0"],
        "its beat number"
    );
}

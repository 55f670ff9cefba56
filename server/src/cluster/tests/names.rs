//! Names across servers: unique ignoring case, guest numbers never
//! repeated, fallback guest names while Redis is away, and presence
//! claiming the names given meanwhile.

use super::*;

/// Names are unique across servers ignoring case, freed on release, and
/// guest numbers never repeat.
#[test]
fn names_unique_ignoring_case_and_guests_never_repeat() {
    let redis = Redis::start();
    let a = Names::new(&endpoint(&redis), "a");
    let b = Names::new(&endpoint(&redis), "b");
    assert_eq!(a.claim("Alice", 1).unwrap(), Claim::Claimed);
    assert_eq!(
        a.claim("alice", 1).unwrap(),
        Claim::Claimed,
        "its own again"
    );
    assert_eq!(a.claim("alice", 2).unwrap(), Claim::InUse, "another client");
    assert_eq!(b.claim("alice", 1).unwrap(), Claim::InUse);
    assert_eq!(b.claim("ALICE", 3).unwrap(), Claim::InUse);
    b.release("alice", 1).unwrap();
    assert_eq!(
        b.claim("alice", 1).unwrap(),
        Claim::InUse,
        "b cannot free a's name"
    );
    a.release("Alice", 1).unwrap();
    assert_eq!(b.claim("alice", 1).unwrap(), Claim::Claimed);

    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        assert!(seen.insert(a.next_guest(0).unwrap()));
        assert!(seen.insert(b.next_guest(0).unwrap()));
    }
}

/// A counter that went back (Redis restarted empty, or from an older copy
/// of its data) never gives a number at or below the asking server's
/// floor, and goes on from above it.
#[test]
fn guest_numbers_stay_above_the_servers_floor() {
    let redis = Redis::start();
    let names = Names::new(&endpoint(&redis), "a");
    assert_eq!(names.next_guest(0).unwrap(), 1);
    assert_eq!(names.next_guest(0).unwrap(), 2);
    redis.query(&["SET", "chat:guest", "0"]);
    assert_eq!(names.next_guest(2).unwrap(), 3, "above the floor");
    assert_eq!(names.next_guest(0).unwrap(), 4, "the counter was raised");
}

/// Names fail at once (no hang) when Redis is away.
#[test]
fn names_fail_fast_when_redis_is_down() {
    let mut redis = Redis::start();
    let names = Names::new(&endpoint(&redis), "a");
    redis.kill();
    let started = Instant::now();
    assert!(names.claim("bob", 1).is_err());
    assert!(names.next_guest(0).is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Redis away: two servers name their new clients from their own tags
/// (`guest-TAG.N`), never the same name, each at most MAX_NAME long and
/// held at once without asking Redis; the highest number Redis gave (what
/// the shared counter is raised past on a register) stays where it was.
#[test]
fn fallback_guests_are_named_from_each_servers_tag() {
    use super::super::bridge::Bridge;
    use super::super::shared_names::SharedNames;
    use crate::rooms::names::Names as RoomNames;
    use std::sync::atomic::Ordering;

    let mut redis = Redis::start();
    let mut servers: Vec<(Arc<Bridge>, SharedNames)> = ["a", "b"]
        .iter()
        .map(|id| {
            let names = Arc::new(Names::new(&endpoint(&redis), id));
            let tag = names.guest_tag().unwrap();
            let bridge = Arc::new(Bridge::new(1, tag, Arc::clone(&names)));
            let shared = SharedNames::new(names, Arc::clone(&bridge));
            (bridge, shared)
        })
        .collect();
    assert_ne!(servers[0].0.guest_tag, servers[1].0.guest_tag);
    let counted = servers[0].1.next_guest();
    assert_eq!(counted.name, format!("guest-{}", counted.id));
    redis.kill();
    let mut seen = std::collections::HashSet::new();
    for (bridge, shared) in &mut servers {
        for _ in 0..3 {
            let guest = shared.next_guest();
            assert!(guest.name.len() <= chat_common::name::MAX_NAME);
            assert!(
                guest
                    .name
                    .starts_with(&format!("guest-{}.", bridge.guest_tag)),
                "{guest:?}"
            );
            assert!(seen.insert(guest.name.clone()), "{guest:?} twice");
            assert_eq!(shared.claim(&guest.name, guest.id), Ok(()));
            assert_eq!(shared.holder(&guest.name), Some(guest.id));
        }
    }
    assert_eq!(
        servers[0].0.highest_guest.load(Ordering::Relaxed),
        counted.id
    );
}

/// A guest number Redis gave whose name cannot then be claimed there
/// (Redis failed between the two round trips: here an error reply; or
/// another server's client holds it): the new client is named from this
/// server's own range instead, held here, filed among the members and
/// left for presence to claim, never left with a name no one holds (which
/// `/msg`, presence and the cut-off notice would not know). A guest whose
/// name was claimed is held from the start.
#[test]
fn a_guest_whose_name_cannot_be_claimed_is_named_from_the_servers_range() {
    use super::super::bridge::Bridge;
    use super::super::shared_names::SharedNames;
    use crate::rooms::names::Names as RoomNames;

    let redis = Redis::start();
    let names = Arc::new(Names::new(&endpoint(&redis), "a"));
    let tag = names.guest_tag().unwrap();
    let bridge = Arc::new(Bridge::new(1, tag, Arc::clone(&names)));
    let mut shared = SharedNames::new(Arc::clone(&names), Arc::clone(&bridge));
    let first = shared.next_guest();
    assert_eq!(first.name, format!("guest-{}", first.id));
    assert_eq!(shared.holder(&first.name), Some(first.id), "held at once");
    assert!(bridge.members.lock().contains_key(&first.id));
    assert!(!names.take_unclaimed());
    // The next number's name cannot be set (a list where a string
    // belongs), the one after it is another server's client's.
    redis.command(&["RPUSH", &format!("chat:name:guest-{}", first.id + 1), "x"]);
    redis.command(&[
        "SET",
        &format!("chat:name:guest-{}", first.id + 2),
        &format!("b:9:guest-{}", first.id + 2),
    ]);
    for _ in 0..2 {
        let guest = shared.next_guest();
        assert!(
            guest.name.starts_with(&format!("guest-{tag}.")),
            "{guest:?}"
        );
        assert_eq!(shared.holder(&guest.name), Some(guest.id));
        assert_eq!(
            bridge.members.lock().get(&guest.id).map(|w| w.name.clone()),
            Some(guest.name.clone())
        );
        assert!(names.take_unclaimed(), "left for presence to claim");
    }
    let next = shared.next_guest();
    assert_eq!(next.name, format!("guest-{}", first.id + 3), "{next:?}");
    assert_eq!(shared.holder(&next.name), Some(next.id));
}

/// A server whose clients' names may not be held in Redis (named while
/// Redis could not be asked): [`Local::unclaimed`] as the test sets it,
/// and the names given up recorded.
struct Unclaimed {
    /// Its members.
    members: Vec<Member>,
    /// What `unclaimed` answers (and clears).
    flag: std::sync::atomic::AtomicBool,
    /// The names given up ([`Local::name_lost`]).
    lost: Mutex<Vec<String>>,
}

impl Local for Unclaimed {
    fn members(&self) -> Vec<Member> {
        self.members.clone()
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
    fn name_lost(&self, _client: u64, name: &str) {
        self.lost.lock().push(name.to_string());
    }
    fn unfiled(&self) -> bool {
        false
    }
    fn file_failed(&self) {}
    fn unclaimed(&self) -> bool {
        self.flag.swap(false, std::sync::atomic::Ordering::AcqRel)
    }
    fn claim_failed(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// A client named while Redis could not be asked (its name held on its
/// server only): at the next beat presence claims its name in Redis, and
/// one another client took meanwhile is given up.
#[test]
fn presence_claims_the_names_not_held_in_redis() {
    let redis = Redis::start();
    let shutdown = Arc::new(Shutdown::new());
    let member = |name: &str, client| Member {
        name: name.into(),
        room: "lobby".into(),
        client,
        entered: client,
    };
    let local = Arc::new(Unclaimed {
        members: vec![member("guest-1.1", 1), member("Bob", 2)],
        flag: Default::default(),
        lost: Mutex::new(Vec::new()),
    });
    let presence = Presence::start(
        &endpoint(&redis),
        "a",
        LogConfig::default(),
        local.clone(),
        shutdown.clone(),
    )
    .unwrap();
    // Registered (its first beat claims every name): then one name is
    // not held, another held by a client of another server.
    let deadline = Instant::now() + DEADLINE;
    while redis.query(&["GET", "chat:name:bob"]) != ["a:2:Bob"] {
        assert!(Instant::now() < deadline, "never registered");
        thread::sleep(Duration::from_millis(20));
    }
    redis.command(&["DEL", "chat:name:guest-1.1"]);
    redis.command(&["SET", "chat:name:bob", "b:9:bob"]);
    local.flag.store(true, std::sync::atomic::Ordering::Release);
    let deadline = Instant::now() + HEARTBEAT_EVERY * 5;
    while redis.query(&["GET", "chat:name:guest-1.1"]) != ["a:1:guest-1.1"]
        || local.lost.lock().is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "not claimed: {:?}, lost {:?}",
            redis.query(&["GET", "chat:name:guest-1.1"]),
            local.lost.lock()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(*local.lost.lock(), ["Bob"], "given up");
    assert_eq!(redis.query(&["GET", "chat:name:bob"]), ["b:9:bob"], "kept");
    shutdown.trigger();
    joined(presence);
}

//! Names across servers: unique ignoring case, guest numbers never
//! repeated, fallback guest names while Redis is away. Presence claiming
//! the names given meanwhile, and filing members again: `filing.rs`.

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
            let bridge = Arc::new(Bridge::new(1, tag, 0, Arc::clone(&names)));
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
    let bridge = Arc::new(Bridge::new(1, tag, 0, Arc::clone(&names)));
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

/// Names given back while Redis is away (killed; back with its data, AOF):
/// each release fails, the members are marked for filing again, and each
/// name is remembered; once Redis answers, presence's call frees those
/// their clients still hold, and only those: one another server's client
/// took meanwhile stays its, and one its client claimed again (renamed
/// back to it) stays that client's.
#[test]
fn names_given_back_while_redis_is_away_are_freed_once_it_answers() {
    use super::super::bridge::Bridge;
    use super::super::shared_names::SharedNames;
    use crate::rooms::names::Names as RoomNames;

    let mut redis = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let names = Arc::new(Names::new(&endpoint(&redis), "a"));
    let bridge = Arc::new(Bridge::new(1, 1, 0, Arc::clone(&names)));
    let mut shared = SharedNames::new(Arc::clone(&names), Arc::clone(&bridge));
    for (name, id) in [("alice", 1), ("bob", 2), ("Carol", 3)] {
        assert_eq!(shared.claim(name, id), Ok(()));
    }
    assert!(!names.take_unfiled());
    redis.kill();
    for (name, id) in [("alice", 1), ("bob", 2), ("Carol", 3)] {
        shared.release(name, id);
    }
    assert!(names.take_unfiled(), "the leavers are to be unlisted");
    assert_eq!(names.unfreed(), 3);
    redis.restart();
    assert_eq!(redis.query(&["GET", "chat:name:alice"]), ["a:1:alice"]);
    // Client 3 is Carol again, once the names link is back; bob is another
    // server's client's (this one was taken for lost, say).
    let deadline = Instant::now() + DEADLINE;
    while shared.claim("Carol", 3).is_err() {
        assert!(Instant::now() < deadline, "the names link never came back");
        thread::sleep(Duration::from_millis(20));
    }
    redis.command(&["SET", "chat:name:bob", "b:9:bob"]);
    assert_eq!(names.unfreed(), 2, "Carol is not to be freed");
    names.free_unfreed().expect("Redis answers");
    assert_eq!(names.unfreed(), 0);
    assert_eq!(redis.query(&["EXISTS", "chat:name:alice"]), ["0"]);
    assert_eq!(redis.query(&["GET", "chat:name:bob"]), ["b:9:bob"]);
    assert_eq!(redis.query(&["GET", "chat:name:carol"]), ["a:3:Carol"]);
}

/// Redis never there: at most [`MAX_UNFREED`] names are remembered, and a
/// call that cannot reach Redis keeps them all.
#[test]
fn names_remembered_for_freeing_are_bounded() {
    use super::super::names::MAX_UNFREED;

    let mut redis = Redis::start();
    let names = Names::new(&endpoint(&redis), "a");
    redis.kill();
    for client in 0..MAX_UNFREED as u64 + 5 {
        assert!(names.release(&format!("n{client}"), client).is_err());
    }
    assert_eq!(names.unfreed(), MAX_UNFREED);
    assert!(names.free_unfreed().is_err());
    assert_eq!(names.unfreed(), MAX_UNFREED, "kept for the next beat");
}

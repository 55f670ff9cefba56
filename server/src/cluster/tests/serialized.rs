//! Presence's filings and a client's own, on one link: while presence
//! files every member again, a client's own filing or removal waits and
//! lands after, so it is never undone (a second review found that one
//! change mended after the pipeline still left the next one racing it).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::*;

/// How long a `members()` call waits for the client call it starts: long
/// enough that an unheld names link serves it first, as a client's call
/// racing presence would be.
const CLIENT_CALL_WAIT: Duration = Duration::from_millis(300);

/// A client's own call on the names link.
type Call = Box<dyn FnOnce(&Names) + Send>;

/// A server whose next `members()` calls each start one client call on
/// the names link (on a thread of its own, in order), wait for it up to
/// [`CLIENT_CALL_WAIT`], and answer the members as they are then.
struct Clients {
    /// The link presence holds while it files.
    names: Arc<Names>,
    /// The answers of the next calls, each with its client call.
    script: Mutex<VecDeque<(Vec<Member>, Call)>>,
    /// The answer once the script is used up.
    now: Vec<Member>,
    /// The client calls' thread.
    calls: Mutex<mpsc::Sender<(Call, mpsc::Sender<()>)>>,
    /// What `unfiled` answers (and clears).
    unfiled: AtomicBool,
    /// Calls of `unfiled`: one a beat.
    beats: AtomicUsize,
    /// Calls of `highest_guest`: one a registration.
    registrations: AtomicUsize,
}

impl Clients {
    fn start(redis: &Redis, now: Vec<Member>) -> Arc<Clients> {
        let names = Arc::new(Names::new(&endpoint(redis), "a"));
        let (tx, rx) = mpsc::channel::<(Call, mpsc::Sender<()>)>();
        let on = Arc::clone(&names);
        thread::spawn(move || {
            for (call, done) in rx {
                call(&on);
                let _ = done.send(());
            }
        });
        Arc::new(Clients {
            names,
            script: Mutex::new(VecDeque::new()),
            now,
            calls: Mutex::new(tx),
            unfiled: AtomicBool::new(false),
            beats: AtomicUsize::new(0),
            registrations: AtomicUsize::new(0),
        })
    }

    /// Waits until the beat running now (if any) and two more are over.
    fn beats(&self) {
        let seen = self.beats.load(Ordering::Acquire);
        let deadline = Instant::now() + HEARTBEAT_EVERY * 6;
        while self.beats.load(Ordering::Acquire) < seen + 3 {
            assert!(Instant::now() < deadline, "no beats");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Stub for Clients {
    fn members(&self) -> Vec<Member> {
        let Some((answer, call)) = self.script.lock().pop_front() else {
            return self.now.clone();
        };
        let (done, finished) = mpsc::channel();
        self.calls
            .lock()
            .send((call, done))
            .expect("the calls thread");
        let _ = finished.recv_timeout(CLIENT_CALL_WAIT);
        answer
    }
    fn highest_guest(&self) -> u64 {
        self.registrations.fetch_add(1, Ordering::AcqRel);
        0
    }
    fn name_lost(&self, _client: u64, name: &str, _why: NameLost) -> bool {
        panic!("{name} given up");
    }
    fn unfiled(&self) -> bool {
        self.beats.fetch_add(1, Ordering::AcqRel);
        self.unfiled.swap(false, Ordering::AcqRel)
    }
    fn names(&self) -> Option<Arc<Names>> {
        Some(Arc::clone(&self.names))
    }
}

/// Member `name`, client `client`, in `room`.
fn member(name: &str, room: &str, client: u64) -> Member {
    Member {
        name: name.into(),
        room: room.into(),
        client,
        entered: client,
    }
}

/// Dave connects while his server files every member again (his own
/// filing sent as the snapshot is taken, without him), and quits right
/// after the mending step read the members (with him): his own filing and
/// removal now land after presence's, and he is not listed. Before, they
/// landed first: the pipeline's `DEL` took his filing out, the mending
/// filed him again after his removal, and he stayed in `/who` (and would
/// be announced as leaving again if his server died).
#[test]
fn a_member_who_arrived_and_left_while_his_server_files_again_is_not_listed() {
    let redis = Redis::start();
    let carol = member("Carol", "lobby", 2);
    let dave = member("Dave", "lobby", 3);
    let local = Clients::start(&redis, vec![carol.clone()]);
    let (shutdown, presence) = presence_of_a(
        &redis,
        local.clone(),
        &["HKEYS", "chat:members:a"],
        &["Carol"],
    );
    *local.script.lock() = VecDeque::from([
        (
            vec![carol.clone()],
            Box::new(|names: &Names| names.member("Dave", Some(("lobby", 3, 3))).unwrap()) as Call,
        ),
        (
            vec![carol.clone(), dave],
            Box::new(|names: &Names| names.member("Dave", None).unwrap()) as Call,
        ),
    ]);
    local.unfiled.store(true, Ordering::Release);
    local.beats();
    assert!(local.script.lock().is_empty(), "never filed again");
    assert_eq!(redis.query(&["HKEYS", "chat:members:a"]), ["Carol"]);
    shutdown.trigger();
    joined(presence);
}

/// Alice renamed to bob and back to alice while her server files every
/// member again: her own claims and releases land after presence's, and
/// she keeps `alice`, listed under it. Before, the second rename landed
/// between the mending step's reading of the members (bob) and its
/// pipeline, which freed `alice` for anyone and listed her as bob.
#[test]
fn a_member_renamed_twice_while_her_server_files_again_keeps_her_name() {
    let redis = Redis::start();
    let alice = member("alice", "lobby", 2);
    let bob = member("bob", "lobby", 2);
    let local = Clients::start(&redis, vec![alice.clone()]);
    let (shutdown, presence) = presence_of_a(
        &redis,
        local.clone(),
        &["GET", "chat:name:alice"],
        &["a:2:alice"],
    );
    // What `/nick NAME` sends: the new name claimed and filed, the old
    // one freed and taken out.
    let rename = |from: &'static str, to: &'static str| -> Call {
        Box::new(move |names: &Names| {
            assert_eq!(names.claim(to, 2).unwrap(), Claim::Claimed);
            names.member(to, Some(("lobby", 2, 2))).unwrap();
            names.release(from, 2).unwrap();
            names.member(from, None).unwrap();
        })
    };
    *local.script.lock() = VecDeque::from([
        (vec![alice.clone()], rename("alice", "bob")),
        (vec![bob], rename("bob", "alice")),
    ]);
    local.unfiled.store(true, Ordering::Release);
    local.beats();
    assert!(local.script.lock().is_empty(), "never filed again");
    assert_eq!(
        (
            redis.query(&["GET", "chat:name:alice"]),
            redis.query(&["EXISTS", "chat:name:bob"]),
            redis.query(&["HKEYS", "chat:members:a"]),
        ),
        (
            vec!["a:2:alice".to_string()],
            vec!["0".to_string()],
            vec!["alice".to_string()]
        )
    );
    shutdown.trigger();
    joined(presence);
}

/// Redis restarted empty: the server registers again at its first beat
/// that finds it, on the names link, whose connection sat idle and died
/// with the old Redis. Before, that first try failed on the dead
/// connection and only the next beat registered it: a second more with
/// its clients unlisted and their names free for anyone (review). Now the
/// pipeline is tried once more on a fresh connection, and one
/// registration does it.
#[test]
fn a_registration_on_a_names_link_idle_across_a_restart_takes_one_try() {
    let mut redis = Redis::start();
    let carol = member("carol", "lobby", 2);
    let local = Clients::start(&redis, vec![carol]);
    // A client connected once: the names link has a connection.
    assert_eq!(local.names.claim("carol", 2).unwrap(), Claim::Claimed);
    let (shutdown, presence) = presence_of_a(
        &redis,
        local.clone(),
        &["HKEYS", "chat:members:a"],
        &["carol"],
    );
    let before = local.registrations.load(Ordering::Acquire);
    redis.restart();
    let deadline = Instant::now() + DEADLINE;
    while redis.query(&["HKEYS", "chat:members:a"]) != ["carol"] {
        assert!(Instant::now() < deadline, "never registered again");
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        local.registrations.load(Ordering::Acquire) - before,
        1,
        "registrations after the restart"
    );
    shutdown.trigger();
    joined(presence);
}

/// Alice renames herself frank just as her server, taken for lost and
/// registered again, announces its members back: the rename's claim and
/// release wait for the names link, which presence holds from reading the
/// members to the announcement, and she is announced back as `alice`, the
/// name she still holds then (her rename follows). Before, the rename
/// landed between the two, freeing `alice` first: the script found the
/// name no longer hers and dropped her from the set, and she was never
/// announced back (a review).
#[test]
fn a_member_renamed_as_her_server_announces_its_members_back_is_announced() {
    let redis = Redis::start();
    let alice = member("alice", "lobby", 2);
    let local = Clients::start(&redis, vec![member("frank", "lobby", 2)]);
    let noop = || -> Call { Box::new(|_: &Names| {}) };
    // A registration reads the members four times: its snapshot, its
    // freeing of stale names, its mending, and its check of names to give
    // up.
    let registration = || (0..4).map(|_| (vec![alice.clone()], noop()));
    *local.script.lock() = registration().collect();
    let (shutdown, presence) = presence_of_a(
        &redis,
        local.clone(),
        &["HKEYS", "chat:members:a"],
        &["alice"],
    );
    local.beats();
    assert!(local.script.lock().is_empty(), "registered");
    // Announcing the members back reads them a fifth time: the rename
    // starts as it does.
    let mut script: VecDeque<(Vec<Member>, Call)> = registration().collect();
    script.push_back((
        vec![alice.clone()],
        Box::new(|names: &Names| {
            assert_eq!(names.claim("frank", 2).unwrap(), Claim::Claimed);
            names.member("frank", Some(("lobby", 2, 2))).unwrap();
            names.release("alice", 2).unwrap();
            names.member("alice", None).unwrap();
        }),
    ));
    *local.script.lock() = script;
    // What a reaper leaves: alice announced gone, the server unlisted.
    redis.query(&["SADD", "chat:reaped:a", "2"]);
    redis.query(&["SREM", "chat:servers", "a"]);
    let deadline = Instant::now() + DEADLINE;
    // Announced (the set taken out), then renamed (after presence let go
    // of the names link).
    while !local.script.lock().is_empty()
        || redis.query(&["EXISTS", "chat:reaped:a"]) != ["0"]
        || redis.query(&["GET", "chat:name:frank"]) != ["a:2:frank"]
    {
        assert!(
            Instant::now() < deadline,
            "never announced back, or renamed"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let log = redis.query(&["XRANGE", "chat:log:lobby", "-", "+"]);
    let backs: Vec<&String> = log
        .iter()
        .filter(|f| f.ends_with(" is back (server reconnected)\n"))
        .collect();
    assert_eq!(backs, ["* alice is back (server reconnected)\n"], "{log:?}");
    shutdown.trigger();
    joined(presence);
}

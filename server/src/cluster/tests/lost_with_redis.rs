//! A server lost around the time Redis restarted empty (killed, or stopped
//! while Redis was away): the survivors remember its members from their
//! last beats and announce them gone once, while a server that registers
//! again is left alone.

use std::collections::HashMap;

use super::*;

/// A server's members that never change nor need filing again (so a
/// test's own entries in its list stay until it registers again), with
/// the instants of its beats' counts of the others: a beat that counted
/// has read (and remembered) the other servers' members.
struct Counting {
    members: Vec<Member>,
    /// Each count of the others: when, and members by room.
    counts: Mutex<Vec<(Instant, HashMap<String, usize>)>>,
}

impl Counting {
    fn new(members: Vec<Member>) -> Arc<Counting> {
        Arc::new(Counting {
            members,
            counts: Mutex::new(Vec::new()),
        })
    }

    /// Waits until a beat counted `want` members of the others in `room`.
    fn counted(&self, room: &str, want: usize) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some((_, last)) = self.counts.lock().last() {
                if last.get(room).copied().unwrap_or(0) == want {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "never counted {want} in {room}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The instant of its first count after `after`, waited for.
    fn first_count_after(&self, after: Instant) -> Instant {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some((at, _)) = self.counts.lock().iter().find(|(at, _)| *at > after) {
                return *at;
            }
            assert!(Instant::now() < deadline, "never counted again");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until two beats counted after `after`: the second began after
    /// the first ended, so a beat began and looked for lost servers after
    /// `after`.
    fn beat_after(&self, after: Instant) {
        let deadline = after + DEADLINE;
        while self
            .counts
            .lock()
            .iter()
            .filter(|(at, _)| *at > after)
            .count()
            < 2
        {
            assert!(Instant::now() < deadline, "never beat twice after");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Stub for Counting {
    fn members(&self) -> Vec<Member> {
        self.members.clone()
    }
    fn others(&self, counts: HashMap<String, usize>) {
        self.counts.lock().push((Instant::now(), counts));
    }
}

/// The log entries of `room` in Redis whose kind is [`LOST_KIND`], by text.
fn lost_in(redis: &Redis, room: &str) -> Vec<String> {
    let fields = redis.query(&["XRANGE", &format!("chat:log:{room}"), "-", "+"]);
    fields
        .windows(4)
        .filter(|w| w[0] == "kind" && w[1] == LOST_KIND && w[2] == "text")
        .map(|w| w[3].clone())
        .collect()
}

/// Defect (review): a server killed as Redis restarted empty left nothing
/// in the new Redis to reap: its clients were never announced gone (they
/// only dropped out of `/who`). Now two survivors that saw it before
/// announce its member once between them, its name free, while a server
/// alive that registers again is not announced (nor listed again with a
/// member it had before, since gone).
#[test]
fn a_server_lost_with_redis_data_is_announced_once_by_the_survivors() {
    let mut redis = Redis::start();
    // Server "dead": carol in the lobby, its heartbeat alive for the
    // survivors to see it, until Redis restarts empty.
    let dead = Names::new(&endpoint(&redis), "dead");
    assert_eq!(dead.claim("carol", 1).unwrap(), Claim::Claimed);
    dead.member("carol", Some(("lobby", 1, 1))).unwrap();
    redis.command(&["SADD", "chat:servers", "dead"]);
    redis.command(&["SET", "chat:alive:dead", "1", "PX", "60000"]);
    // Server "a", alive: Finn, and Gone listed still (he left since, as
    // far as the survivors can tell from their last beat).
    let finn = Member {
        name: "Finn".into(),
        room: "lobby".into(),
        client: 3,
        entered: 9,
    };
    let (a_stop, a) = presence_of_a(
        &redis,
        Counting::new(vec![finn]),
        &["GET", "chat:name:finn"],
        &["a:3:Finn"],
    );
    redis.command(&["HSET", "chat:members:a", "Gone", "lobby\t2"]);

    let shutdown = Arc::new(Shutdown::new());
    let watchers: Vec<Arc<Counting>> = (0..2).map(|_| Counting::new(Vec::new())).collect();
    let survivors: Vec<_> = ["s1", "s2"]
        .iter()
        .zip(&watchers)
        .map(|(id, local)| {
            Presence::start(
                &endpoint(&redis),
                id,
                LogConfig::default(),
                local.clone(),
                shutdown.clone(),
            )
            .unwrap()
        })
        .collect();
    // Each survivor read carol, Finn and Gone.
    for watcher in &watchers {
        watcher.counted("lobby", 3);
    }

    redis.restart();
    let restarted = Instant::now();
    let deadline = restarted + HEARTBEAT_TTL + DEADLINE;
    while lost_in(&redis, "lobby").is_empty() {
        assert!(Instant::now() < deadline, "carol never announced gone");
        thread::sleep(Duration::from_millis(20));
    }
    // Each survivor found the new Redis by its first count after the
    // restart; once it beat twice more past the heartbeat's life from
    // then, it has listed again (or found listed) what it awaited.
    for watcher in &watchers {
        let found = watcher.first_count_after(restarted);
        watcher.beat_after(found + HEARTBEAT_TTL);
    }
    assert_eq!(
        lost_in(&redis, "lobby"),
        ["* carol left (server lost)\n"],
        "once, and no member of a live server"
    );
    assert_eq!(redis.query(&["EXISTS", "chat:name:carol"]), ["0"]);
    assert_eq!(redis.query(&["SISMEMBER", "chat:servers", "dead"]), ["0"]);
    assert_eq!(
        redis.query(&["HGETALL", "chat:members:a"]),
        ["Finn", "lobby\t9\t3"],
        "server a keeps what it filed"
    );
    assert_eq!(redis.query(&["GET", "chat:name:finn"]), ["a:3:Finn"]);

    shutdown.trigger();
    for s in survivors {
        joined(s);
    }
    a_stop.trigger();
    joined(a);
}

//! The cluster's primitives against a real `redis-server` (started by the
//! test, on a free loopback port, persistence off): the link's failures one
//! by one, the writer, the reader, presence and names.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::redis::Redis;
use parking_lot::{Condvar, Mutex};

use super::link::{check, Endpoint, Failure, Link, Siblings, BACKOFF_MAX, IO_TIMEOUT};
use super::names::{Claim, Names};
use super::presence::{Local, Member, Presence, HEARTBEAT_EVERY, HEARTBEAT_TTL, LOST_KIND};
use super::reader::Reader;
use super::tail::tail;
use super::writer::{Queued, Writer};
use super::{Entry, Line, LogConfig, Missed, RedisUrl, Refusal, Request, Sink, Token};
use crate::shutdown::Shutdown;

/// The longest any event here may take.
const DEADLINE: Duration = Duration::from_secs(10);

fn url(redis: &Redis) -> RedisUrl {
    RedisUrl::parse(&redis.url()).expect("the helper's URL parses")
}

/// The endpoint of one new "server" on `redis`.
fn endpoint(redis: &Redis) -> Endpoint {
    Endpoint::new(url(redis))
}

/// A lone link (no siblings) to `redis`.
fn link(redis: &Redis) -> Link {
    link_to(&url(redis))
}

fn link_to(url: &RedisUrl) -> Link {
    Link::new(url, "test", IO_TIMEOUT, &Siblings::default())
}

/// What the cluster threads told the test.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Refused(Token, String),
    Deliver(String, u64, String),
    Missed(String, Missed),
    Link(bool),
    Request(Request),
}

/// A sink that records every event, for assertions with a deadline.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Condvar,
    /// Why each line refused was, by its text, in order.
    why: Mutex<Vec<(String, Refusal)>>,
}

impl Recorder {
    /// Waits until `pred` holds for the events so far; returns them.
    fn until(&self, what: &str, pred: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + DEADLINE;
        let mut events = self.events.lock();
        while !pred(&events) {
            assert!(
                !self.changed.wait_until(&mut events, deadline).timed_out() || pred(&events),
                "never {what}; events: {:?}",
                *events
            );
        }
        events.clone()
    }

    fn push(&self, event: Event) {
        self.events.lock().push(event);
        self.changed.notify_all();
    }

    /// The texts delivered for `room`, in order.
    fn delivered(events: &[Event], room: &str) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Deliver(r, _, text) if r == room => Some(text.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Sink for Recorder {
    fn refused(&self, token: Token, line: &Line, why: Refusal) {
        self.why.lock().push((line.text.clone(), why));
        self.push(Event::Refused(token, line.text.clone()));
    }
    fn deliver(&self, room: &str, entries: Vec<Entry>) {
        for entry in entries {
            self.push(Event::Deliver(room.into(), entry.n, entry.text));
        }
    }
    fn missed(&self, room: &str, missed: Missed) {
        self.push(Event::Missed(room.into(), missed));
    }
    fn link(&self, up: bool) {
        self.push(Event::Link(up));
    }
    fn request(&self, request: Request) {
        self.push(Event::Request(request));
    }
}

/// A writer and a reader of one server, stopped on drop.
struct Node {
    url: RedisUrl,
    writer: Writer,
    reader: Reader,
    sink: Arc<Recorder>,
    shutdown: Arc<Shutdown>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Node {
    fn start(redis: &Redis, id: &str, config: LogConfig) -> Node {
        let sink = Arc::new(Recorder::default());
        let shutdown = Arc::new(Shutdown::new());
        let endpoint = endpoint(redis);
        let (writer, w) =
            Writer::start(&endpoint, id, config, sink.clone(), shutdown.clone()).unwrap();
        let (reader, r) = Reader::start(
            &endpoint,
            id,
            writer.clone(),
            sink.clone(),
            shutdown.clone(),
        )
        .unwrap();
        Node {
            url: url(redis),
            writer,
            reader,
            sink,
            shutdown,
            threads: vec![w, r],
        }
    }

    fn say(&self, room: &str, text: &str) -> Queued {
        self.writer.append(
            7,
            Line {
                room: room.into(),
                from: "alice".into(),
                kind: "chat".into(),
                text: text.into(),
            },
        )
    }

    /// Waits until the writer knows the fate of every line it sent. A line
    /// can be delivered (the reader saw it in the log) before its reply
    /// reached the writer, which under load can take longer than
    /// `IO_TIMEOUT`: the line is then unsure for a while, and a line said
    /// meanwhile is refused (it would queue behind it). A test that breaks
    /// the link after a delivered line and then counts on the next one
    /// being sent waits for this first.
    fn settled(&self) {
        let deadline = Instant::now() + DEADLINE;
        while self.writer.unsettled() != 0 {
            assert!(Instant::now() < deadline, "the writer never settled");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts reading `room` from its end now: every line appended after
    /// this call is delivered.
    fn watch(&self, room: &str) {
        let mut link = link_to(&self.url);
        let (_, from) = tail(&mut link, room, 0, |_| false).unwrap();
        self.reader.watch(room, Some(from));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.trigger();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

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
    assert!(link.wait_up(&shutdown));
    assert!(waited.elapsed() <= BACKOFF_MAX + Duration::from_secs(2));
    assert_eq!(
        link.run(|c| redis::cmd("PING").query::<String>(c)).unwrap(),
        "PONG"
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
    assert!(link.wait_up(&Shutdown::new()));
    assert_eq!(link.connects(), 2);
    assert_ne!(
        link.epoch().unwrap(),
        first_epoch,
        "an empty Redis is a new epoch"
    );
    let hash = redis::Script::new(super::keys::APPEND)
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
    assert!(link.wait_up(&Shutdown::new()));
    let epoch = link.epoch().unwrap().to_string();
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    let _ = link.run(|c| redis::cmd("PING").query::<String>(c));
    assert!(link.wait_up(&Shutdown::new()));
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

/// Writer and reader: every line appended is one stream entry, delivered
/// once, in order, numbered 1.. without gaps, and under load the writer
/// carries many lines per round trip.
#[test]
fn lines_are_one_entry_each_in_order_and_batched() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    const LINES: usize = 2000;
    for i in 0..LINES {
        assert_eq!(node.say("lobby", &format!("line {i}")), Queued::Queued);
    }
    let events = node.sink.until("all delivered", |events| {
        Recorder::delivered(events, "lobby").len() >= LINES
    });
    let texts = Recorder::delivered(&events, "lobby");
    let want: Vec<String> = (0..LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, want);
    let numbers: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Deliver(_, n, _) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(numbers, (1..=LINES as u64).collect::<Vec<_>>());
    assert_eq!(
        redis.query(&["XLEN", "chat:log:lobby"]),
        [LINES.to_string()]
    );
    let trips = node.writer.round_trips();
    assert!(
        trips < LINES as u64 / 4,
        "{trips} round trips for {LINES} lines: not batched"
    );
}

/// Two servers' writers into one room: both readers see the same order.
#[test]
fn two_servers_one_order() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a", LogConfig::default());
    let b = Node::start(&redis, "b", LogConfig::default());
    a.watch("lobby");
    b.watch("lobby");
    for i in 0..300 {
        let _ = a.say("lobby", &format!("a{i}"));
        let _ = b.say("lobby", &format!("b{i}"));
    }
    let seen_a = a.sink.until("a has 600", |e| {
        Recorder::delivered(e, "lobby").len() >= 600
    });
    let seen_b = b.sink.until("b has 600", |e| {
        Recorder::delivered(e, "lobby").len() >= 600
    });
    assert_eq!(
        Recorder::delivered(&seen_a, "lobby"),
        Recorder::delivered(&seen_b, "lobby")
    );
}

/// History is the log's tail: the last lines that pass the filter, oldest
/// first, looking back past other entries, and reading goes on right after
/// the log's last entry, so history and live lines neither overlap nor
/// leave a gap.
#[test]
fn history_is_the_logs_tail_and_reading_goes_on_after_it() {
    let redis = Redis::start();
    let writer_node = Node::start(&redis, "w", LogConfig::default());
    writer_node.watch("games");
    for i in 0..600 {
        let _ = writer_node.say("games", &format!("g{i}"));
    }
    writer_node.sink.until("600 lines", |e| {
        Recorder::delivered(e, "games").len() >= 600
    });

    let mut link = link(&redis);
    let (history, from) = tail(&mut link, "games", 3, |e| e.text.ends_with('0')).unwrap();
    let texts: Vec<&str> = history.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["g570", "g580", "g590"]);
    assert_eq!(from.n, 600);
    let (far, _) = tail(&mut link, "games", 2, |e| e.text == "g3" || e.text == "g1").unwrap();
    assert_eq!(far.len(), 2, "found across pages");
    assert_eq!(far[0].text, "g1");

    let other = Node::start(&redis, "o", LogConfig::default());
    let _ = writer_node.say("games", "g600");
    writer_node.sink.until("g600 written", |e| {
        Recorder::delivered(e, "games").len() >= 601
    });
    other.reader.watch("games", Some(from));
    other
        .sink
        .until("g600 only", |e| Recorder::delivered(e, "games") == ["g600"]);
}

/// The reader resumes after its connection is cut (Redis itself fine):
/// every line the log took meanwhile arrives, in order, none twice, and
/// none of the lines refused to their sender shows up.
#[test]
fn reader_resumes_after_a_cut_without_gap_or_double() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    let other = Node::start(&redis, "b", LogConfig::default());
    node.watch("lobby");
    let mut sent = vec!["before".to_string()];
    let _ = other.say("lobby", "before");
    node.sink
        .until("before", |e| Recorder::delivered(e, "lobby").len() == 1);
    for round in 0..3 {
        redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
        for i in 0..50 {
            let text = format!("r{round}-{i}");
            let _ = other.say("lobby", &text);
            sent.push(text);
        }
    }
    // A last line, sent once the link is surely back: when it arrives,
    // everything before it has been settled (delivered or refused).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let _ = other.say("lobby", "last");
        let events = node.sink.events.lock().clone();
        if Recorder::delivered(&events, "lobby").contains(&"last".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "never back: {events:?}");
        thread::sleep(Duration::from_millis(100));
    }
    let refused: Vec<String> = other
        .sink
        .events
        .lock()
        .iter()
        .filter_map(|e| match e {
            Event::Refused(_, text) => Some(text.clone()),
            _ => None,
        })
        .collect();
    let events = node.sink.events.lock().clone();
    let delivered = Recorder::delivered(&events, "lobby");
    let first_last = delivered.iter().position(|t| t == "last").unwrap();
    let want: Vec<String> = sent.into_iter().filter(|t| !refused.contains(t)).collect();
    assert_eq!(delivered[..first_last], want[..]);
    assert!(!events.iter().any(|e| matches!(e, Event::Missed(..))));
}

/// Lines trimmed from the log before the reader read them are counted:
/// the reader reports exactly how many it missed.
#[test]
fn trimmed_lines_are_counted() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "first");
    node.sink
        .until("first", |e| Recorder::delivered(e, "lobby").len() == 1);
    // 300 lines and a trim to the last 10, in one atomic step: the reader
    // (blocked in XREAD) sees only what is left.
    let script = "for i = 1, 300 do \
        local n = redis.call('INCR', KEYS[2]) \
        redis.call('XADD', KEYS[1], '*', 'n', n, 'uid', 'x', 'from', 'bob', 'kind', 'chat', 'text', 'x' .. i) \
        end \
        redis.call('XTRIM', KEYS[1], 'MAXLEN', 10) return 1";
    redis.command(&["EVAL", script, "2", "chat:log:lobby", "chat:seq:lobby"]);
    let events = node.sink.until("the last of them", |e| {
        Recorder::delivered(e, "lobby").last().map(String::as_str) == Some("x300")
    });
    assert!(events.contains(&Event::Missed("lobby".into(), Missed::Lines(290))));
    assert_eq!(Recorder::delivered(&events, "lobby").len(), 11);
}

/// Redis killed and restarted empty: the reader says the link went down
/// and came back, reports the room's log lost, then delivers the new log
/// from its first line. Lines sent while Redis is down are refused.
#[test]
fn redis_restarted_empty_is_reported_and_lines_refused_meanwhile() {
    let mut redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "one");
    node.sink
        .until("one", |e| Recorder::delivered(e, "lobby").len() == 1);
    node.settled();

    redis.kill();
    node.sink
        .until("link down", |e| e.contains(&Event::Link(false)));
    let _ = node.say("lobby", "while down");
    node.sink.until("refused", |e| {
        e.contains(&Event::Refused(7, "while down".into()))
    });

    redis.restart();
    node.sink
        .until("link up", |e| e.contains(&Event::Link(true)));
    let events = node.sink.until("log lost", |e| {
        e.iter()
            .any(|e| matches!(e, Event::Missed(r, Missed::LogLost { .. }) if r == "lobby"))
    });
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Link(_)))
            .count(),
        2,
        "told once down, once up: {events:?}"
    );
    let _ = node.say("lobby", "two");
    let events = node.sink.until("two delivered or refused", |e| {
        Recorder::delivered(e, "lobby").len() == 2 || e.contains(&Event::Refused(7, "two".into()))
    });
    assert!(
        events.contains(&Event::Deliver("lobby".into(), 1, "two".into())),
        "the writer is back with the reader: {events:?}"
    );
    assert!(!Recorder::delivered(&events, "lobby").contains(&"while down".to_string()));
}

/// What a test "server" has locally, for presence.
struct Members(Vec<Member>, u64);

impl Local for Members {
    fn members(&self) -> Vec<Member> {
        self.0.clone()
    }
    fn left(&self, name: &str, reason: &str) -> String {
        chat_common::protocol::notice(&format!("{name} left ({reason})"))
    }
    fn highest_guest(&self) -> u64 {
        self.1
    }
    fn guest_tag(&self) -> u64 {
        self.1
    }
    fn others(&self, _counts: std::collections::HashMap<String, usize>) {}
    fn name_lost(&self, _client: u64, _name: &str) {}
    fn unfiled(&self) -> bool {
        true
    }
    fn file_failed(&self) {}
}

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
        assert!(seen.insert(a.next_guest().unwrap()));
        assert!(seen.insert(b.next_guest().unwrap()));
    }
}

/// Names fail at once (no hang) when Redis is away.
#[test]
fn names_fail_fast_when_redis_is_down() {
    let mut redis = Redis::start();
    let names = Names::new(&endpoint(&redis), "a");
    redis.kill();
    let started = Instant::now();
    assert!(names.claim("bob", 1).is_err());
    assert!(names.next_guest().is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

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
        s.join().unwrap();
    }
    assert_eq!(
        redis.query(&["SCARD", "chat:servers"]),
        ["0"],
        "a graceful stop unregisters"
    );
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
    presence.join().unwrap();
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
    assert_eq!(names.next_guest().unwrap(), 42);
    assert_eq!(
        names.guest_tag().unwrap(),
        42,
        "the tag counter is raised too"
    );
    shutdown.trigger();
    presence.join().unwrap();
    assert_eq!(
        redis.query(&["EXISTS", "chat:name:erin"]),
        ["0"],
        "freed on a graceful stop"
    );
}

/// A line sent on a connection that had died (its reply lost): the writer
/// finds it is not in the log and sends it again, so it arrives once and
/// its sender is not told it was refused.
#[test]
fn a_line_lost_on_a_dead_connection_is_sent_again_once() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "first");
    node.sink
        .until("first", |e| Recorder::delivered(e, "lobby").len() == 1);
    node.settled();
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    let _ = node.say("lobby", "second");
    node.sink.until("second", |e| {
        Recorder::delivered(e, "lobby").len() == 2
            || e.iter().any(|e| matches!(e, Event::Refused(..)))
    });
    // Only once "second" is settled: sent earlier, it could be refused
    // for queueing behind an unsettled line.
    let _ = node.say("lobby", "third");
    let events = node.sink.until("third", |e| {
        Recorder::delivered(e, "lobby").last().map(String::as_str) == Some("third")
    });
    assert_eq!(
        Recorder::delivered(&events, "lobby"),
        ["first", "second", "third"]
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Refused(..))),
        "{events:?}"
    );
}

/// The directory: who holds a name (with its spelling), everyone listed in
/// the order they entered, and a request put in another server's inbox
/// reaches that server's reader.
#[test]
fn directory_and_inbox_across_servers() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    let a = Names::new(&endpoint(&redis), "a");
    let b = Names::new(&endpoint(&redis), "b");
    redis.command(&["SADD", "chat:servers", "a", "b"]);
    assert_eq!(a.claim("Alice", 4).unwrap(), Claim::Claimed);
    assert_eq!(a.claim("ALICE", 4).unwrap(), Claim::Claimed, "re-spelled");
    a.member("ALICE", Some(("lobby", 1))).unwrap();
    assert_eq!(b.claim("bob", 1).unwrap(), Claim::Claimed);
    b.member("bob", Some(("lobby", 2))).unwrap();
    let holder = b.holder("alice").unwrap().expect("held");
    assert_eq!(
        (holder.server.as_str(), holder.client, holder.name.as_str()),
        ("a", 4, "ALICE")
    );
    assert_eq!(b.holder("nobody").unwrap(), None);
    let all = b.everyone().unwrap();
    let names: Vec<(&str, &str)> = all
        .iter()
        .map(|l| (l.name.as_str(), l.server.as_str()))
        .collect();
    assert_eq!(names, [("ALICE", "a"), ("bob", "b")]);

    b.tell("a", 4, "[from bob] hi\n").unwrap();
    b.kick("a", "ALICE", Some("spam")).unwrap();
    assert_eq!(
        b.broadcast_console("/ban 192.0.2.1").unwrap(),
        1,
        "a only, not b itself"
    );
    node.sink.until("both requests", |e| {
        e.contains(&Event::Request(Request::Tell {
            client: 4,
            line: "[from bob] hi\n".into(),
        })) && e.contains(&Event::Request(Request::Kick {
            name: "ALICE".into(),
            reason: Some("spam".into()),
        })) && e.contains(&Event::Request(Request::Console {
            line: "/ban 192.0.2.1".into(),
        }))
    });
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
    // What a survivor's reap leaves behind.
    redis.command(&["SREM", "chat:servers", "a"]);
    redis.command(&["DEL", "chat:members:a", "chat:name:finn"]);
    registered(&redis);
    assert_eq!(
        redis.query(&["HGET", "chat:members:a", "Finn"]),
        ["lobby\t9"]
    );
    shutdown.trigger();
    presence.join().unwrap();
}

/// A TCP proxy between a writer and Redis that can hold what the writer
/// sends on its open connections (a cut whose bytes TCP still retransmits),
/// refuse new connections meanwhile, and deliver the held bytes late.
struct Proxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    /// New connections are refused while set.
    holding: bool,
    /// Connections refused so far.
    refused: usize,
    /// Every connection passed on.
    conns: Vec<Arc<Mutex<Piped>>>,
}

struct Piped {
    /// To Redis.
    upstream: std::net::TcpStream,
    /// What the client sent while held: `None` while passing through.
    held: Option<Vec<u8>>,
    /// Every byte Redis answered on it.
    replies: Vec<u8>,
}

impl Proxy {
    fn start(to: std::net::SocketAddr) -> Proxy {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut state = shared.lock();
                if state.holding {
                    state.refused += 1;
                    continue;
                }
                let upstream = std::net::TcpStream::connect(to).unwrap();
                let mut from_redis = upstream.try_clone().unwrap();
                let mut to_client = client.try_clone().unwrap();
                let piped = Arc::new(Mutex::new(Piped {
                    upstream,
                    held: None,
                    replies: Vec::new(),
                }));
                state.conns.push(Arc::clone(&piped));
                let up = Arc::clone(&piped);
                thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = client.read(&mut buf) {
                        let mut p = up.lock();
                        match &mut p.held {
                            Some(held) => held.extend_from_slice(&buf[..n]),
                            None => {
                                if p.upstream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
                thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = from_redis.read(&mut buf) {
                        piped.lock().replies.extend_from_slice(&buf[..n]);
                        let _ = to_client.write_all(&buf[..n]);
                    }
                });
            }
        });
        Proxy { port, state }
    }

    fn url(&self) -> RedisUrl {
        RedisUrl::parse(&format!("redis://127.0.0.1:{}", self.port)).unwrap()
    }

    /// The cut: open connections' bytes are held, new ones refused.
    fn hold(&self) {
        let mut state = self.state.lock();
        state.holding = true;
        for conn in &state.conns {
            conn.lock().held.get_or_insert_with(Vec::new);
        }
    }

    /// New connections pass again (the held ones stay held).
    fn heal(&self) {
        self.state.lock().holding = false;
    }

    /// How many bytes are held.
    fn held(&self) -> usize {
        let state = self.state.lock();
        state
            .conns
            .iter()
            .map(|c| c.lock().held.as_ref().map_or(0, Vec::len))
            .sum()
    }

    /// How many connections were refused while holding.
    fn refused(&self) -> usize {
        self.state.lock().refused
    }

    /// The held bytes reach Redis, late, followed by a PING on the same
    /// connection; returns once Redis answered that PING (so it has applied
    /// all of them).
    fn deliver_late(&self) {
        use std::io::Write;
        let conns = self.state.lock().conns.clone();
        for conn in conns {
            let mut p = conn.lock();
            let Some(mut held) = p.held.take() else {
                continue;
            };
            if held.is_empty() {
                continue;
            }
            held.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            p.replies.clear();
            p.upstream.write_all(&held).unwrap();
            drop(p);
            let deadline = Instant::now() + DEADLINE;
            while !conn.lock().replies.ends_with(b"+PONG\r\n") {
                assert!(Instant::now() < deadline, "the late bytes never answered");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// How a line ended, from its sender's side and the room's.
fn fate(sender: &[Event], room: &[Event], text: &str) -> (bool, usize) {
    let refused = sender
        .iter()
        .any(|e| matches!(e, Event::Refused(_, t) if t == text));
    let delivered = Recorder::delivered(room, "lobby")
        .iter()
        .filter(|t| *t == text)
        .count();
    (refused, delivered)
}

/// A cut that holds a line's pipeline and delivers it late, after the
/// writer gave up on its reply and sent the line again on a new
/// connection: the line is in the log once (the late copy is skipped by
/// its uid), and its sender is not told it was refused if it was not.
#[test]
fn a_line_held_in_a_cut_and_delivered_late_is_not_doubled() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.addr());
    let sink = Arc::new(Recorder::default());
    let shutdown = Arc::new(Shutdown::new());
    let (writer, w) = Writer::start(
        &Endpoint::new(proxy.url()),
        "a",
        LogConfig::default(),
        sink.clone(),
        shutdown.clone(),
    )
    .unwrap();
    let watcher = Node::start(&redis, "b", LogConfig::default());
    watcher.watch("lobby");
    let say = |text: &str| {
        writer.append(
            7,
            Line {
                room: "lobby".into(),
                from: "alice".into(),
                kind: "chat".into(),
                text: text.into(),
            },
        )
    };
    let _ = say("one");
    watcher
        .sink
        .until("one", |e| Recorder::delivered(e, "lobby") == ["one"]);
    proxy.hold();
    let _ = say("two");
    // The writer gave up on the held connection and tried a new one.
    let deadline = Instant::now() + DEADLINE;
    while proxy.refused() == 0 {
        assert!(Instant::now() < deadline, "the writer never reconnected");
        thread::sleep(Duration::from_millis(10));
    }
    proxy.heal();
    let events = watcher.sink.until("two settled", |e| {
        Recorder::delivered(e, "lobby").len() == 2
            || sink
                .events
                .lock()
                .iter()
                .any(|e| matches!(e, Event::Refused(..)))
    });
    let _ = events;
    proxy.deliver_late();
    let _ = say("three");
    let events = watcher.sink.until("three", |e| {
        Recorder::delivered(e, "lobby").last().map(String::as_str) == Some("three")
    });
    let (refused, delivered) = fate(&sink.events.lock(), &events, "two");
    assert!(
        (refused && delivered == 0) || (!refused && delivered == 1),
        "refused: {refused}, delivered {delivered} times: {events:?}"
    );
    shutdown.trigger();
    drop(writer);
    let _ = w.join();
}

/// Why `text` was refused, if it was.
fn why(sink: &Recorder, text: &str) -> Option<Refusal> {
    sink.why
        .lock()
        .iter()
        .find(|(t, _)| t == text)
        .map(|(_, why)| *why)
}

/// The texts in `room`'s log in Redis, read there (not by a reader).
fn in_log(redis: &Redis, room: &str) -> Vec<String> {
    let mut link = link(redis);
    let entries: redis::streams::StreamRangeReply = link
        .run(|c| {
            redis::cmd("XRANGE")
                .arg(super::keys::log(room))
                .arg("-")
                .arg("+")
                .query(c)
        })
        .unwrap();
    entries
        .ids
        .iter()
        .map(|id| id.get::<String>("text").unwrap_or_default())
        .collect()
}

/// Says `text` (with `say`) until `reader` has it delivered: the writer
/// may refuse it while its link comes back. Returns the reader's events.
fn say_until_delivered(say: impl Fn(&str) -> Queued, reader: &Recorder, text: &str) -> Vec<Event> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let _ = say(text);
        let wait = Instant::now() + Duration::from_millis(500);
        while Instant::now() < wait {
            let events = reader.events.lock().clone();
            if Recorder::delivered(&events, "lobby").contains(&text.to_string()) {
                return events;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let events = reader.events.lock().clone();
        assert!(
            Instant::now() < deadline,
            "{text:?} never delivered: {events:?}"
        );
    }
}

/// Waits, while Redis is stopped (SIGSTOP, `pid`), until `text` is refused
/// by `within` after `since`; resumes Redis (SIGCONT) and panics if not.
fn refused_while_stopped(node: &Node, pid: u32, text: &str, since: Instant, within: Duration) {
    loop {
        let events = node.sink.events.lock().clone();
        if fate(&events, &events, text).0 {
            return;
        }
        if since.elapsed() > within {
            chat_tests::signal(pid, "CONT");
            panic!("{text:?} not answered within {within:?} while Redis was stopped: {events:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Redis stopped (SIGSTOP) with a line's pipeline on its way: its sender
/// is answered by `UNSURE_DEADLINE` and a margin (a connection attempt
/// timing out) while Redis is still stopped, with a `!` that says it may
/// not have been sent; and once Redis resumes and runs that pipeline, the
/// line is not applied (too old for the append script): it never shows up,
/// neither in the log nor at a reader.
///
/// The line must have gone out on a live connection for that: one the
/// writer could not send is refused at once, rightly, as never sent. So
/// the test stops Redis only once "one" is settled, and checks that
/// "paused" went out.
#[test]
fn a_line_sent_to_a_stopped_redis_is_answered_at_its_deadline_and_never_appears() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "one");
    node.sink
        .until("one", |e| Recorder::delivered(e, "lobby") == ["one"]);
    node.settled();
    let pid = redis.pid().expect("running");
    chat_tests::signal(pid, "STOP");
    let sent = Instant::now();
    let _ = node.say("lobby", "paused");
    // It went out: its fate is unknown, Redis may have run it.
    let deadline = Instant::now() + DEADLINE;
    while node.writer.unsettled() != 1 {
        let events = node.sink.events.lock().clone();
        if Instant::now() >= deadline || fate(&events, &events, "paused").0 {
            chat_tests::signal(pid, "CONT");
            panic!("\"paused\" never sent: {events:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
    let within = super::writer::UNSURE_DEADLINE + IO_TIMEOUT * 3;
    refused_while_stopped(&node, pid, "paused", sent, within);
    let answered = sent.elapsed();
    chat_tests::signal(pid, "CONT");
    assert!(
        answered >= super::writer::UNSURE_DEADLINE,
        "answered after {answered:?}, before its deadline"
    );
    assert_eq!(why(&node.sink, "paused"), Some(Refusal::Unsure));
    // Redis resumed: the stopped pipeline is run by the time later lines
    // are delivered.
    say_until_delivered(|t| node.say("lobby", t), &node.sink, "later");
    let log = in_log(&redis, "lobby");
    assert_eq!(log.first().map(String::as_str), Some("one"), "{log:?}");
    assert!(!log.contains(&"paused".to_string()), "in the log: {log:?}");
    let events = node.sink.events.lock().clone();
    assert_eq!(fate(&events, &events, "paused"), (true, 0), "{events:?}");
}

/// A cut holds a line's pipeline past its deadline, refusing every new
/// connection (so the writer cannot fence it off): its sender is answered
/// at the deadline, `not sure`; then the held pipeline reaches Redis and
/// is run (its `PING` answered after it), late, and is skipped as stale:
/// the line is in no log and reaches no reader.
#[test]
fn a_line_held_in_a_cut_past_its_deadline_is_refused_and_its_late_copy_skipped() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.addr());
    let sink = Arc::new(Recorder::default());
    let shutdown = Arc::new(Shutdown::new());
    let (writer, w) = Writer::start(
        &Endpoint::new(proxy.url()),
        "a",
        LogConfig::default(),
        sink.clone(),
        shutdown.clone(),
    )
    .unwrap();
    let watcher = Node::start(&redis, "b", LogConfig::default());
    watcher.watch("lobby");
    let say = |text: &str| {
        writer.append(
            7,
            Line {
                room: "lobby".into(),
                from: "alice".into(),
                kind: "chat".into(),
                text: text.into(),
            },
        )
    };
    let _ = say("one");
    watcher
        .sink
        .until("one", |e| Recorder::delivered(e, "lobby") == ["one"]);
    let deadline = Instant::now() + DEADLINE;
    while writer.unsettled() != 0 {
        assert!(Instant::now() < deadline, "the writer never settled");
        thread::sleep(Duration::from_millis(10));
    }
    proxy.hold();
    let _ = say("two");
    sink.until("two refused", |e| fate(e, e, "two").0);
    assert!(proxy.held() > 0, "its pipeline is held");
    assert_eq!(why(&sink, "two"), Some(Refusal::Unsure));
    proxy.deliver_late();
    proxy.heal();
    let events = say_until_delivered(say, &watcher.sink, "three");
    assert_eq!(fate(&[], &events, "two"), (false, 0), "{events:?}");
    let log = in_log(&redis, "lobby");
    assert!(!log.contains(&"two".to_string()), "in the log: {log:?}");
    shutdown.trigger();
    drop(writer);
    let _ = w.join();
}

/// The append script, called directly: a line first sent longer ago than
/// `STALE_AFTER` (by Redis's clock) is skipped, `{'', -1, now}`, leaving
/// the log, the counter and the mark as they were; a fresh one is applied;
/// a copy of an applied line is skipped by the mark however old.
#[test]
fn the_append_script_skips_a_line_older_than_the_bound() {
    use redis::Value;
    let redis = Redis::start();
    let mut link = link(&redis);
    let hash = redis::Script::new(super::keys::APPEND)
        .get_hash()
        .to_string();
    let stale_ms = super::writer::STALE_AFTER.as_millis() as u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut append = |counter: u64, sent_ms: u64| -> Vec<Value> {
        link.run(|c| {
            redis::cmd("EVALSHA")
                .arg(&hash)
                .arg(3)
                .arg(super::keys::log("lobby"))
                .arg(super::keys::seq("lobby"))
                .arg(super::keys::hw("a"))
                .arg(100)
                .arg(60_000)
                .arg(format!("a:{counter}"))
                .arg("alice")
                .arg("chat")
                .arg(format!("line {counter}"))
                .arg(counter)
                .arg(sent_ms)
                .arg(stale_ms)
                .query(c)
        })
        .unwrap()
    };
    let old = append(1, now_ms - stale_ms - 1_000);
    assert_eq!(old.get(1), Some(&Value::Int(-1)), "{old:?}");
    match old.get(2) {
        Some(Value::Int(t)) => assert!(
            (*t - now_ms as i64).abs() < 60_000,
            "Redis's clock in ms: {old:?}"
        ),
        other => panic!("no clock in {other:?}"),
    }
    assert_eq!(redis.query(&["XLEN", "chat:log:lobby"]), ["0"]);
    assert_eq!(
        redis.query(&["EXISTS", "chat:seq:lobby", "chat:hw:a"]),
        ["0"]
    );
    let fresh = append(2, now_ms);
    assert_eq!(fresh.get(1), Some(&Value::Int(1)), "{fresh:?}");
    let again = append(2, now_ms - stale_ms - 1_000);
    assert_eq!(
        again.get(1),
        Some(&Value::Int(0)),
        "applied already: {again:?}"
    );
    assert_eq!(in_log(&redis, "lobby"), ["line 2"]);
}

/// Redis stopped with a line on its way, then killed and restarted empty
/// within the line's deadline: the line is not sent again into the new
/// Redis (had the old one run it and a reader had it, it would be seen
/// twice); its sender is told it may not have been sent.
#[test]
fn an_unsure_line_is_not_sent_again_into_a_redis_restarted_empty() {
    let mut redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "one");
    node.sink
        .until("one", |e| Recorder::delivered(e, "lobby") == ["one"]);
    node.settled();
    let pid = redis.pid().expect("running");
    chat_tests::signal(pid, "STOP");
    let _ = node.say("lobby", "two");
    let deadline = Instant::now() + DEADLINE;
    while node.writer.unsettled() != 1 {
        let events = node.sink.events.lock().clone();
        assert!(
            Instant::now() < deadline && !fate(&events, &events, "two").0,
            "\"two\" never sent: {events:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    redis.restart();
    node.sink.until("two refused", |e| fate(e, e, "two").0);
    assert_eq!(why(&node.sink, "two"), Some(Refusal::Restarted));
    let events = say_until_delivered(|t| node.say("lobby", t), &node.sink, "three");
    assert_eq!(fate(&events, &events, "two"), (true, 0), "{events:?}");
    let log = in_log(&redis, "lobby");
    assert!(!log.contains(&"two".to_string()), "sent again: {log:?}");
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
    names.member("Zed", Some(("lobby", 1))).unwrap();
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

/// Redis killed and started again from a snapshot taken 8 lines earlier
/// (its epoch survives, its room counter goes back): the reader says the
/// log went back, and the next lines, numbered again from the snapshot's
/// counter, are delivered, not skipped as if already seen.
#[test]
fn redis_back_from_an_older_snapshot_loses_no_new_line() {
    let mut redis = Redis::start();
    let a = Node::start(&redis, "a", LogConfig::default());
    let b = Node::start(&redis, "b", LogConfig::default());
    b.watch("lobby");
    for i in 0..3 {
        let _ = a.say("lobby", &format!("pre {i}"));
    }
    b.sink
        .until("pre", |e| Recorder::delivered(e, "lobby").len() == 3);
    assert_eq!(redis.command(&["SAVE"]), "+OK");
    for i in 0..8 {
        let _ = a.say("lobby", &format!("post {i}"));
    }
    b.sink
        .until("post", |e| Recorder::delivered(e, "lobby").len() == 11);
    redis.restart();
    assert_eq!(
        redis.query(&["GET", "chat:seq:lobby"]),
        ["3"],
        "the snapshot was loaded"
    );
    b.sink.until("b back", |e| e.contains(&Event::Link(true)));
    // a's writer is back once a line of it is in the log (not once b
    // shows one: b skipping lines is what this test looks for).
    let deadline = Instant::now() + DEADLINE;
    let in_log = |redis: &Redis| {
        redis
            .query(&["XRANGE", "chat:log:lobby", "-", "+"])
            .iter()
            .filter(|f| *f == "probe")
            .count()
    };
    while in_log(&redis) == 0 {
        let _ = a.say("lobby", "probe");
        assert!(Instant::now() < deadline, "a never back");
        thread::sleep(Duration::from_millis(100));
    }
    for i in 0..8 {
        let _ = a.say("lobby", &format!("after {i}"));
    }
    let events = b.sink.until("after 7", |e| {
        Recorder::delivered(e, "lobby").contains(&"after 7".to_string())
            || a.sink
                .events
                .lock()
                .iter()
                .any(|e| matches!(e, Event::Refused(..)))
    });
    let after: Vec<String> = Recorder::delivered(&events, "lobby")
        .into_iter()
        .filter(|t| t.starts_with("after"))
        .collect();
    assert_eq!(
        after,
        (0..8).map(|i| format!("after {i}")).collect::<Vec<_>>()
    );
    let probes = Recorder::delivered(&events, "lobby")
        .iter()
        .filter(|t| *t == "probe")
        .count();
    assert_eq!(
        probes,
        in_log(&redis),
        "every probe the log took, delivered"
    );
    assert!(
        events.contains(&Event::Missed(
            "lobby".into(),
            Missed::RolledBack { from: 11, to: 3 }
        )),
        "{events:?}"
    );
}

/// Redis restarted empty while this server's writer had lines taken that
/// its reader had not delivered yet (its link held up): the clients are
/// told at least how many lines they missed.
#[test]
fn redis_restarted_empty_says_at_least_how_many_lines_went_unseen() {
    let mut redis = Redis::start();
    let proxy = Proxy::start(redis.addr());
    let sink = Arc::new(Recorder::default());
    let shutdown = Arc::new(Shutdown::new());
    let (writer, w) = Writer::start(
        &endpoint(&redis),
        "a",
        LogConfig::default(),
        sink.clone(),
        shutdown.clone(),
    )
    .unwrap();
    let (reader, r) = Reader::start(
        &Endpoint::new(proxy.url()),
        "a",
        writer.clone(),
        sink.clone(),
        shutdown.clone(),
    )
    .unwrap();
    let (_, from) = tail(&mut link(&redis), "lobby", 0, |_| false).unwrap();
    reader.watch("lobby", Some(from));
    let say = |text: &str| {
        writer.append(
            7,
            Line {
                room: "lobby".into(),
                from: "alice".into(),
                kind: "chat".into(),
                text: text.into(),
            },
        )
    };
    let _ = say("seen");
    sink.until("seen", |e| Recorder::delivered(e, "lobby") == ["seen"]);
    // Its reply in too: else the lines below could be refused behind it.
    let deadline = Instant::now() + DEADLINE;
    while writer.unsettled() != 0 {
        assert!(Instant::now() < deadline, "\"seen\" never settled");
        thread::sleep(Duration::from_millis(10));
    }
    proxy.hold();
    // The reader's XREAD under way when the cut began ends with a wake
    // entry; its next one is held: it reads nothing more.
    redis.command(&["XADD", "chat:wake:a", "*", "w", "1"]);
    let deadline = Instant::now() + DEADLINE;
    while proxy.held() == 0 {
        assert!(Instant::now() < deadline, "the reader never read again");
        thread::sleep(Duration::from_millis(10));
    }
    for i in 0..5 {
        let _ = say(&format!("unseen {i}"));
    }
    let deadline = Instant::now() + DEADLINE;
    while writer.written().lock().get("lobby").map(|w| w.1) != Some(6) {
        assert!(Instant::now() < deadline, "the writer never heard back");
        thread::sleep(Duration::from_millis(10));
    }
    redis.restart();
    proxy.heal();
    let events = sink.until("told", |e| {
        e.iter()
            .any(|e| matches!(e, Event::Missed(_, Missed::LogLost { .. })))
    });
    assert!(
        events.contains(&Event::Missed(
            "lobby".into(),
            Missed::LogLost { unseen: 5 }
        )),
        "{events:?}"
    );
    assert!(!Recorder::delivered(&events, "lobby")
        .iter()
        .any(|t| t.starts_with("unseen")));
    shutdown.trigger();
    drop((writer, reader));
    let _ = (w.join(), r.join());
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
    presence.join().unwrap();
}

/// While Redis is down, rooms joined and left over and over queue one
/// control per room, not one per join (memory bounded by the rooms), and
/// when it is back the room last joined is read; one read takes at most
/// the read budget in all, however many rooms.
#[test]
fn reader_controls_are_one_per_room_and_reads_share_one_budget() {
    use super::reader::{read_count, READ_BUDGET};
    let mut redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("warm");
    let _ = node.say("warm", "up");
    node.sink
        .until("up", |e| Recorder::delivered(e, "warm") == ["up"]);
    redis.kill();
    node.sink
        .until("link down", |e| e.contains(&Event::Link(false)));
    for i in 0..10_000 {
        let room = ["lobby", "games", "music"][i % 3];
        node.reader.watch(room, None);
        node.reader.unwatch(room);
    }
    node.reader.watch("lobby", None);
    assert!(node.reader.pending() <= 3, "{}", node.reader.pending());
    redis.restart();
    node.sink
        .until("link up", |e| e.contains(&Event::Link(true)));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let _ = node.say("lobby", "hello");
        let events = node.sink.events.lock().clone();
        if Recorder::delivered(&events, "lobby").contains(&"hello".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "lobby never read: {events:?}");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read_count(2), READ_BUDGET / 2);
    assert!(read_count(258) * 258 <= READ_BUDGET);
    assert_eq!(read_count(100_000), 1);
}

/// Redis restarted empty while this server's reader was cut off before it
/// had read anything of a room, and after this server's writer had put a
/// line in that room's log: the log is still reported lost, with that line
/// counted. (A reader's cursor still at the log's start does not mean it
/// missed nothing; on a loaded machine a reader can be that far behind.)
/// The reader alone is cut off by disabling its Redis user.
#[test]
fn restarted_empty_counts_lines_the_reader_never_read() {
    let mut redis = Redis::start_with(&["--user", "bee", "on", ">pw", "~*", "&*", "+@all"]);
    let sink = Arc::new(Recorder::default());
    let shutdown = Arc::new(Shutdown::new());
    let bee = RedisUrl::parse(&redis.url().replace("redis://", "redis://bee:pw@")).unwrap();
    let (writer, w) = Writer::start(
        &endpoint(&redis),
        "a",
        LogConfig::default(),
        sink.clone(),
        shutdown.clone(),
    )
    .unwrap();
    let (reader, r) = Reader::start(
        &Endpoint::new(bee),
        "a",
        writer.clone(),
        sink.clone(),
        shutdown.clone(),
    )
    .unwrap();
    let (_, from) = tail(&mut link(&redis), "lobby", 0, |_| false).unwrap();
    reader.watch("lobby", Some(from));
    let deadline = Instant::now() + DEADLINE;
    while reader.pending() != 0 {
        assert!(Instant::now() < deadline, "the watch was never served");
        thread::sleep(Duration::from_millis(10));
    }
    redis.command(&["ACL", "SETUSER", "bee", "off"]);
    redis.command(&["CLIENT", "KILL", "USER", "bee"]);
    sink.until("reader down", |e| e.contains(&Event::Link(false)));
    let _ = writer.append(
        7,
        Line {
            room: "lobby".into(),
            from: "alice".into(),
            kind: "chat".into(),
            text: "unread".into(),
        },
    );
    while writer.written().lock().get("lobby").map(|(_, n)| *n) != Some(1) {
        assert!(Instant::now() < deadline, "the log never took it");
        thread::sleep(Duration::from_millis(10));
    }

    redis.restart();
    let events = sink.until("log lost", |e| {
        e.iter()
            .any(|e| matches!(e, Event::Missed(r, Missed::LogLost { .. }) if r == "lobby"))
    });
    assert!(
        events.contains(&Event::Missed(
            "lobby".into(),
            Missed::LogLost { unseen: 1 }
        )),
        "{events:?}"
    );
    assert!(Recorder::delivered(&events, "lobby").is_empty());
    shutdown.trigger();
    for thread in [w, r] {
        let _ = thread.join();
    }
}

/// The requests of `events` that tell local client 4 something, in order.
fn told(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Request(Request::Tell { client: 4, line }) => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// Redis closed the names link's connection while it sat idle: the first
/// inbox request afterwards (a `/msg`, a kick, a console command) is sent
/// again on a fresh connection, and served once.
#[test]
fn the_first_inbox_request_after_redis_closed_an_idle_connection_is_served_once() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    let b = Names::new(&endpoint(&redis), "b");
    b.tell("a", 4, "one").unwrap();
    node.sink.until("one", |e| told(e) == ["one"]);
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    b.tell("a", 4, "two").unwrap();
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    b.kick("a", "ALICE", None).unwrap();
    b.tell("a", 4, "three").unwrap();
    let events = node.sink.until("three", |e| told(e).len() >= 3);
    assert_eq!(told(&events), ["one", "two", "three"], "{events:?}");
    let kicks = events
        .iter()
        .filter(|e| matches!(e, Event::Request(Request::Kick { .. })))
        .count();
    assert_eq!(kicks, 1, "{events:?}");
}

/// An inbox request whose connection was held (its reply never came): it
/// is not sent again after the timeout (a hung Redis would not answer a
/// new connection either), the sender is told it may not have gone, and
/// the held copy, reaching Redis late, is served once. The next request
/// goes out on a new connection once the link no longer counts Redis as
/// hung ([`super::link::HUNG_FOR`]).
#[test]
fn an_inbox_request_sent_twice_is_served_once() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.addr());
    let node = Node::start(&redis, "a", LogConfig::default());
    let b = Names::new(&Endpoint::new(proxy.url()), "b");
    b.tell("a", 4, "one").unwrap();
    node.sink.until("one", |e| told(e) == ["one"]);
    // The names link's connection is held; new connections pass.
    proxy.hold();
    proxy.heal();
    let started = Instant::now();
    assert!(matches!(b.tell("a", 4, "psst"), Err(Failure::Lost)));
    assert!(
        started.elapsed() < IO_TIMEOUT + Duration::from_secs(1),
        "one timeout, no second try: {:?}",
        started.elapsed()
    );
    assert!(proxy.held() > 0, "the first copy went out on the held link");
    proxy.deliver_late();
    let deadline = Instant::now() + DEADLINE;
    while let Err(e) = b.tell("a", 4, "marker") {
        assert!(matches!(e, Failure::Down), "{e:?}");
        assert!(Instant::now() < deadline, "the names link never came back");
        thread::sleep(Duration::from_millis(50));
    }
    let events = node
        .sink
        .until("marker", |e| told(e).contains(&"marker".into()));
    assert_eq!(told(&events), ["one", "psst", "marker"], "{events:?}");

    // The other order: the first copy was put, its reply lost, and the
    // request sent again: skipped. So is a request older than the mark.
    let put = |number: u64, text: &str| -> i64 {
        let reply = redis.query(&[
            "EVAL",
            super::keys::INBOX_PUT,
            "2",
            "chat:inbox:a",
            "chat:inbox-hw:c",
            &number.to_string(),
            "1000",
            "60000",
            "kind",
            "tell",
            "client",
            "4",
            "line",
            text,
        ]);
        reply[0].parse().unwrap()
    };
    assert_eq!(put(5, "five"), 1);
    assert_eq!(put(5, "five"), 0, "the same request again");
    assert_eq!(put(3, "three"), 0, "an older request, late");
    assert_eq!(put(6, "end"), 1);
    let events = node.sink.until("end", |e| told(e).contains(&"end".into()));
    assert_eq!(
        told(&events),
        ["one", "psst", "marker", "five", "end"],
        "{events:?}"
    );
}

/// A PING on `link`.
fn ping(link: &mut Link) -> Result<String, Failure> {
    link.run_idempotent(|conn| redis::cmd("PING").query(conn))
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

/// Redis away: two servers name their new clients from their own tags
/// (`guest-TAG.N`), never the same name, each at most MAX_NAME long and
/// held at once without asking Redis; the highest number Redis gave (what
/// the shared counter is raised past on a register) stays where it was.
#[test]
fn fallback_guests_are_named_from_each_servers_tag() {
    use super::bridge::Bridge;
    use super::shared_names::SharedNames;
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

//! The cluster's primitives against a real `redis-server` (started by the
//! test, on a free loopback port, persistence off): the link's failures one
//! by one, the writer, the reader, presence and names.
//!
//! This file: what the tests share (a recording sink, a node of writer,
//! reader and presence, helpers). One file per subject: `links.rs`,
//! `logs.rs`, `restarts.rs`, `unsure.rs`, `presence.rs`, `returns.rs` (a
//! server taken for lost and back), `names.rs`, `spelling.rs`, `inbox.rs`,
//! `since.rs`, `filing.rs`, `serialized.rs`, `reentry.rs` (a whole server
//! in this process), `lost_with_redis.rs` (a server lost as Redis
//! restarted empty); `proxy.rs` is the cuttable TCP proxy.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::redis::Redis;
use parking_lot::{Condvar, Mutex};

use super::link::{
    check, Endpoint, Failure, Link, Siblings, BACKOFF_MAX, IO_TIMEOUT, SIBLING_CHECK,
};
use super::names::{Claim, Names, Unsent};
use super::presence::{
    Local, Member, NameLost, Presence, HEARTBEAT_EVERY, HEARTBEAT_TTL, LOST_KIND,
};
use super::reader::Reader;
use super::tail::tail;
use super::writer::{Queued, Writer};
use super::{Entry, Line, LogConfig, Missed, RedisUrl, Refusal, Request, Sink, Token};
use crate::shutdown::Shutdown;

mod filing;
mod inbox;
mod proxy;
mod restarts;
mod returns;
mod serialized;

use self::proxy::Proxy;
mod links;
mod logs;
mod lost_with_redis;
mod names;
mod presence;
mod reentry;
mod since;
mod spelling;
mod unsure;

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
    /// A room kept for its history found gone back ([`Sink::kept_went_back`]):
    /// the room, its floor seen, and where its log is now.
    KeptWentBack(String, u64, u64),
}

/// A sink that records every event, for assertions with a deadline.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Condvar,
    /// Why each line refused was, by its text, in order.
    why: Mutex<Vec<(String, Refusal)>>,
    /// What [`Sink::kept`] answers: rooms kept here for their history.
    kept: Mutex<Vec<(String, (u64, u64))>>,
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
    fn epoch(&self, _epoch: &str) {}
    fn request(&self, request: Request) {
        self.push(Event::Request(request));
    }
    fn kept(&self) -> Vec<(String, (u64, u64))> {
        self.kept.lock().clone()
    }
    fn kept_went_back(&self, room: &str, seen: (u64, u64), to: u64) {
        self.push(Event::KeptWentBack(room.into(), seen.0, to));
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
        Node::start_at(url(redis), id, config)
    }

    /// A node on `url` (another Redis user, a proxy).
    fn start_at(url: RedisUrl, id: &str, config: LogConfig) -> Node {
        let sink = Arc::new(Recorder::default());
        let shutdown = Arc::new(Shutdown::new());
        let endpoint = Endpoint::new(url.clone());
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
            url,
            writer,
            reader,
            sink,
            shutdown,
            threads: vec![w, r],
        }
    }

    fn say(&self, room: &str, text: &str) -> Queued {
        self.writer.append(7, alice(room, text))
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
        // A test already failing is not failed again (a panic in a drop
        // while unwinding aborts): its threads are left to the process.
        if !thread::panicking() {
            for thread in self.threads.drain(..) {
                joined(thread);
            }
        }
    }
}

/// Joins a cluster thread told to stop: fails the test if it does not end
/// within [`DEADLINE`] or if it panicked (with its own panic), so a thread
/// that died on the way is not taken for one that stopped.
fn joined(thread: thread::JoinHandle<()>) {
    let name = thread.thread().name().unwrap_or("unnamed").to_string();
    let deadline = Instant::now() + DEADLINE;
    while !thread.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the {name} thread did not stop within {DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    if let Err(panic) = thread.join() {
        eprintln!("the {name} thread panicked");
        std::panic::resume_unwind(panic);
    }
}

/// Starts presence for server "a" with `local`, and waits until `redis`
/// answers `query` with `want` (what its first beat registers).
fn presence_of_a(
    redis: &Redis,
    local: Arc<dyn Local>,
    query: &[&str],
    want: &[&str],
) -> (Arc<Shutdown>, thread::JoinHandle<()>) {
    let shutdown = Arc::new(Shutdown::new());
    let presence = Presence::start(
        &endpoint(redis),
        "a",
        LogConfig::default(),
        local,
        shutdown.clone(),
    )
    .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while redis.query(query) != want {
        assert!(Instant::now() < deadline, "never registered: {query:?}");
        thread::sleep(Duration::from_millis(20));
    }
    (shutdown, presence)
}

/// Presence of server `id` on `redis` with no member of its own (a
/// survivor, for the reaping tests), stopped by `shutdown`.
fn survivor(redis: &Redis, id: &str, shutdown: &Arc<Shutdown>) -> thread::JoinHandle<()> {
    Presence::start(
        &endpoint(redis),
        id,
        LogConfig::default(),
        Arc::new(Members(Vec::new(), 0)),
        shutdown.clone(),
    )
    .unwrap()
}

/// A test "server"'s side of presence: [`Local`] with the answers most
/// tests want as defaults, so each test server writes only what it
/// changes. Every type that has it is a [`Local`].
trait Stub: Send + Sync + 'static {
    /// [`Local::members`].
    fn members(&self) -> Vec<Member>;
    /// [`Local::highest_guest`]: none given.
    fn highest_guest(&self) -> u64 {
        0
    }
    /// [`Local::guest_tag`].
    fn guest_tag(&self) -> u64 {
        0
    }
    /// [`Local::others`]: not noted.
    fn others(&self, _counts: std::collections::HashMap<String, usize>) {}
    /// [`Local::name_lost`]: given up.
    fn name_lost(&self, _client: u64, _name: &str, _why: NameLost) -> bool {
        true
    }
    /// [`Local::unfiled`]: filed.
    fn unfiled(&self) -> bool {
        false
    }
    /// [`Local::unclaimed`]: claimed.
    fn unclaimed(&self) -> bool {
        false
    }
    /// [`Local::claim_failed`]: not noted.
    fn claim_failed(&self) {}
    /// [`Local::names`]: presence uses its own link.
    fn names(&self) -> Option<Arc<Names>> {
        None
    }
}

impl<T: Stub> Local for T {
    fn members(&self) -> Vec<Member> {
        Stub::members(self)
    }
    fn left(&self, name: &str, reason: &str) -> String {
        chat_common::protocol::notice(&format!("{name} left ({reason})"))
    }
    fn highest_guest(&self) -> u64 {
        Stub::highest_guest(self)
    }
    fn guest_tag(&self) -> u64 {
        Stub::guest_tag(self)
    }
    fn others(&self, counts: std::collections::HashMap<String, usize>) {
        Stub::others(self, counts);
    }
    fn name_lost(&self, client: u64, name: &str, why: NameLost) -> bool {
        Stub::name_lost(self, client, name, why)
    }
    fn unfiled(&self) -> bool {
        Stub::unfiled(self)
    }
    fn file_failed(&self) {}
    fn unclaimed(&self) -> bool {
        Stub::unclaimed(self)
    }
    fn claim_failed(&self) {
        Stub::claim_failed(self);
    }
    fn names(&self) -> Option<Arc<Names>> {
        Stub::names(self)
    }
    fn free_unfreed(&self) -> Result<(), Failure> {
        Ok(())
    }
}

/// What a test "server" has locally, for presence: its members, and its
/// highest guest number (also its guest tag). Files them at every beat.
struct Members(Vec<Member>, u64);

impl Stub for Members {
    fn members(&self) -> Vec<Member> {
        self.0.clone()
    }
    fn highest_guest(&self) -> u64 {
        self.1
    }
    fn guest_tag(&self) -> u64 {
        self.1
    }
    fn unfiled(&self) -> bool {
        true
    }
}

/// A chat line of alice's for `room` (the tests append it as client 7).
fn alice(room: &str, text: &str) -> Line {
    Line {
        room: room.into(),
        from: "alice".into(),
        kind: "chat".into(),
        text: text.into(),
        at: Instant::now(),
    }
}

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

/// A PING on `link`.
fn ping(link: &mut Link) -> Result<String, Failure> {
    link.run_idempotent(|conn| redis::cmd("PING").query(conn))
}

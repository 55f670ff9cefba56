//! A room re-entered while the reader is still delivering what it read of
//! it: a whole server run in this process (its clients over TCP), the
//! reader held by the bridge's test hook right after it read a run of the
//! room's entries and before it hands them to the room, while a client
//! leaves the room and comes back (its history loaded from the log's tail,
//! which holds that run already).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use clap::Parser;

use super::*;
use crate::{Config, Context, Server};

/// A chat server on `redis`, run in this process; stopped on drop.
struct Running {
    addr: SocketAddr,
    ctx: Arc<Context>,
    thread: Option<thread::JoinHandle<String>>,
}

impl Running {
    fn start(redis: &Redis) -> Running {
        let url = redis.url();
        let config = Config::parse_from([
            "chat-server",
            "--quiet",
            "--bind",
            "127.0.0.1",
            "--redis",
            &url,
        ]);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let addr = listener.local_addr().expect("a bound address");
        let server = Server::new(config, listener, None).expect("a server on the test's Redis");
        let ctx = server.context();
        let thread = thread::spawn(move || server.run());
        Running {
            addr,
            ctx,
            thread: Some(thread),
        }
    }

    /// Holds the reader, once, at the next run of `room`'s entries it is
    /// about to deliver (no lock held), until the gate is released.
    fn hold(&self, room: &'static str) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        let held = Arc::clone(&gate);
        let bridge = self.ctx.cluster.as_ref().expect("a cluster").bridge();
        *bridge.before_delivery.lock() = Some(Arc::new(move |key: &str| {
            if key == room {
                held.hold();
            }
        }));
        gate
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ctx.stop();
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + DEADLINE;
            while !thread.is_finished() {
                if Instant::now() > deadline {
                    // A test failing already is not failed again.
                    assert!(
                        thread::panicking(),
                        "the server did not stop within {DEADLINE:?}"
                    );
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
            let _ = thread.join();
        }
    }
}

/// Where the reader is held: once, until released (or [`DEADLINE`], so a
/// failing test never leaves it held).
#[derive(Default)]
struct Gate {
    /// Held once already; released.
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    /// On the reader's thread: holds it the first time only.
    fn hold(&self) {
        let mut state = self.state.lock();
        if state.0 {
            return;
        }
        state.0 = true;
        self.changed.notify_all();
        let deadline = Instant::now() + DEADLINE;
        while !state.1 && !self.changed.wait_until(&mut state, deadline).timed_out() {}
    }

    /// Waits until the reader is held.
    fn wait_held(&self) {
        let deadline = Instant::now() + DEADLINE;
        let mut state = self.state.lock();
        while !state.0 {
            assert!(
                !self.changed.wait_until(&mut state, deadline).timed_out() || state.0,
                "the reader never came to deliver the run"
            );
        }
    }

    fn release(&self) {
        self.state.lock().1 = true;
        self.changed.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release();
    }
}

/// A chat client of the server, every read bounded.
struct Client {
    stream: TcpStream,
    lines: BufReader<TcpStream>,
}

impl Client {
    /// Connects and reads the welcome.
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("read timeout");
        let lines = BufReader::new(stream.try_clone().expect("clone"));
        let mut client = Client { stream, lines };
        client.until("* welcome, ");
        client
    }

    fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    /// The lines read up to the first that starts with `want` (included),
    /// without their line ends.
    fn until(&mut self, want: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.lines.read_line(&mut line).expect("a line in time");
            assert!(n > 0, "end of stream before {want:?}; saw {seen:?}");
            seen.push(line.trim_end().to_string());
            if line.starts_with(want) {
                return seen;
            }
        }
    }
}

/// Appends `<bob> TEXT` to `room`'s log as a client of another server.
fn say(redis: &Redis, room: &str, text: &str) {
    let script = "local n = redis.call('INCR', KEYS[2]) \
        redis.call('XADD', KEYS[1], '*', 'n', n, 'uid', 'x', 'from', '1:9', 'kind', 'line', 'text', ARGV[1]) \
        return n";
    let (log, seq) = (super::super::keys::log(room), super::super::keys::seq(room));
    let line = format!("<bob> {text}\n");
    redis.command(&["EVAL", script, "2", &log, &seq, &line]);
}

/// The chat lines among `lines`.
fn chat(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.starts_with('<'))
        .map(String::as_str)
        .collect()
}

/// The defect: the reader raised the room's floor past a run it had read,
/// then took the room's lock to deliver it; a client that re-entered the
/// room in between got the run in its history (the log's tail held it),
/// then again live, and the history ring kept it twice (wrongly
/// numbered), replayed so to whoever entered next. Now what is new for the
/// room is decided under its lock, atomically with delivering it and with
/// a member's history: each line once, to both.
#[test]
fn a_room_reentered_while_the_reader_delivers_it_shows_each_line_once() {
    let redis = Redis::start();
    let server = Running::start(&redis);
    let mut alice = Client::connect(server.addr);
    alice.send("/join games");
    alice.until("* you are now in #games");
    say(&redis, "games", "warm");
    alice.until("<bob> warm");

    let gate = server.hold("games");
    say(&redis, "games", "x1");
    gate.wait_held();
    // The reader holds x1, read, not yet delivered: alice leaves (the
    // reader does not serve the unwatch meanwhile) and comes back.
    alice.send("/join lobby");
    alice.until("* you are now in #lobby");
    alice.send("/join games");
    let mut seen = alice.until("* you are now in #games");
    gate.release();
    say(&redis, "games", "x2");
    seen.extend(alice.until("<bob> x2"));
    assert_eq!(
        chat(&seen),
        ["<bob> warm", "<bob> x1", "<bob> x2"],
        "history, then live lines, each once: {seen:?}"
    );

    // The ring holds each line once too.
    let mut carol = Client::connect(server.addr);
    carol.send("/join games");
    carol.until("* you are now in #games");
    let history = carol.until("<bob> x2");
    assert_eq!(
        history,
        [
            "* last 3 lines of #games:",
            "<bob> warm",
            "<bob> x1",
            "<bob> x2"
        ]
    );
}

/// Review: a room that empties with no history is forgotten at once, and
/// entered again it is a new room with a new feed. The reader, holding a
/// run of the room's first lines read before that (the old feed), handed
/// it to the new room: the member got it in its history (the log's tail)
/// and again live. A run is delivered only through the feed it was read
/// for; one for a feed since replaced is dropped (the new one's tail holds
/// it, or the reader reads it again).
#[test]
fn a_forgotten_room_entered_again_gets_no_run_read_for_the_old_one() {
    let redis = Redis::start();
    let server = Running::start(&redis);
    let mut alice = Client::connect(server.addr);
    alice.send("/join fresh");
    alice.until("* you are now in #fresh");

    let gate = server.hold("fresh");
    say(&redis, "fresh", "x1");
    gate.wait_held();
    // The room's first line, read, not yet delivered: its ring is empty,
    // so leaving forgets the room; coming back makes it anew.
    alice.send("/join lobby");
    alice.until("* you are now in #lobby");
    alice.send("/join fresh");
    let mut seen = alice.until("* you are now in #fresh");
    gate.release();
    say(&redis, "fresh", "x2");
    seen.extend(alice.until("<bob> x2"));
    assert_eq!(
        chat(&seen),
        ["<bob> x1", "<bob> x2"],
        "history, then live lines, each once: {seen:?}"
    );
}

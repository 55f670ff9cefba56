//! Hostile clients and overload (issue 6), against the real `chat-server`:
//! a flooder, a line that never ends, thousands of idle connections, a
//! reader that stalls, connection storms, running out of descriptors, the
//! per-address cap, resets, half-closes and clients that say nothing.
//!
//! Memory and descriptors are read from `/proc/<pid>/status` and
//! `/proc/<pid>/fd`; every wait is on a condition with a deadline, every read
//! has a timeout, and every load loop is bounded in count and in time.
#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::{bin, read_lines_until, welcome_name, Heard, Server, TIMEOUT};
use socket2::SockRef;

/// How often a reader thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// A client whose lines are read on a thread of their own and time-stamped
/// as they arrive, so a test can both write a flood and measure latency.
struct Peer {
    /// The name from the welcome line.
    name: String,
    /// The socket, for writing (the reader thread has a clone).
    writer: TcpStream,
    /// What the reader thread heard, as it arrives; disconnected once the
    /// server closed.
    lines: Receiver<(Instant, Event)>,
    /// Tells the reader thread to stop (set on drop).
    stop: Arc<AtomicBool>,
}

impl Peer {
    /// Connects and reads the welcome line (after the notice that it waits
    /// for a worker, if every worker is busy).
    fn join(addr: SocketAddr) -> Peer {
        let mut peer = Peer::connect(addr);
        let mut welcome = peer.next(TIMEOUT).expect("a welcome line");
        if welcome.starts_with("* all ") && welcome.ends_with("please wait") {
            welcome = peer.next(TIMEOUT).expect("a welcome line after waiting");
        }
        peer.name = welcome_name(&welcome)
            .unwrap_or_else(|| panic!("not a welcome line: {welcome:?}"))
            .to_string();
        peer
    }

    /// Connects without reading anything.
    fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to server");
        stream.set_read_timeout(Some(POLL)).expect("set timeout");
        stream
            .set_write_timeout(Some(TIMEOUT))
            .expect("set timeout");
        let reader = stream.try_clone().expect("clone stream");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, lines) = mpsc::channel();
        let flag = Arc::clone(&stop);
        thread::spawn(move || read_lines(reader, &tx, &flag));
        Peer {
            name: String::new(),
            writer: stream,
            lines,
            stop,
        }
    }

    /// Sends `line` and a LF.
    fn send(&self, line: &str) {
        (&self.writer)
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to server");
    }

    /// The next line within `timeout`, with its arrival time; `None` on
    /// timeout or end of stream (half a line is waited past; a read error
    /// fails the test).
    fn next_timed(&self, timeout: Duration) -> Option<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left).ok()? {
                (at, Event::Heard(Heard::Line(line))) => return Some((at, line)),
                (_, Event::Heard(Heard::Partial(_))) => {}
                (_, Event::Failed(why)) => panic!("{}: {why}", self.name),
            }
        }
    }

    /// The next line within `timeout`.
    fn next(&self, timeout: Duration) -> Option<String> {
        self.next_timed(timeout).map(|(_, line)| line)
    }

    /// The next line, which must be `want`.
    fn expect_line(&self, want: &str) {
        match self.next(TIMEOUT) {
            Some(line) => assert_eq!(line, want, "{} got the wrong line", self.name),
            None => panic!("{} got no line; wanted {want:?}", self.name),
        }
    }

    /// Reads until a line satisfies `pred`; returns every line read, the
    /// match last.
    fn expect(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(line) => {
                    let done = pred(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                None => panic!("{}: no matching line; saw {seen:?}", self.name),
            }
        }
    }

    /// Asserts nothing arrives for `quiet`, not even half a line, and the
    /// connection stays open (a peer the server hung up on hears nothing
    /// too).
    fn expect_silent(&self, quiet: Duration) {
        match self.lines.recv_timeout(quiet) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok((_, heard)) => panic!("{}: expected silence, got {heard:?}", self.name),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: expected silence, but the connection closed", self.name)
            }
        }
    }

    /// Reads until the server closes the connection cleanly (a reset or a
    /// last line without its LF fails); returns the lines.
    fn expect_eof(&self) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((_, Event::Heard(Heard::Line(line)))) => seen.push(line),
                Ok((_, Event::Heard(Heard::Partial(_)))) => {}
                Ok((_, Event::Failed(why))) => {
                    panic!("{}: not a clean close: {why}; saw {seen:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => return seen,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: connection not closed; saw {seen:?}", self.name)
                }
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

/// What a peer's reader thread passes on.
#[derive(Debug)]
enum Event {
    Heard(Heard),
    /// The read error that ended it (a reset, a last line without its LF).
    Failed(String),
}

/// A peer's reader thread: what it hears to `tx` until end of stream, an
/// error (passed on too), or `stop`.
fn read_lines(stream: TcpStream, tx: &mpsc::Sender<(Instant, Event)>, stop: &AtomicBool) {
    let heard = read_lines_until(stream, stop, |heard| {
        tx.send((Instant::now(), Event::Heard(heard))).is_ok()
    });
    if let Err(e) = heard {
        let _ = tx.send((Instant::now(), Event::Failed(e.to_string())));
    }
}

/// Waits up to `within` for `cond`, polling; fails with `what` and the
/// server's stderr.
fn wait_for(server: &Server, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; server stderr:\n{}",
            tail(&server.stderr())
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the server's descriptor count to come back to within `slack`
/// of `baseline`; returns the count.
fn fds_back(server: &Server, baseline: usize, slack: usize) -> usize {
    let mut now = 0;
    wait_for(server, "descriptors to be closed", TIMEOUT * 3, || {
        now = server.open_fds();
        now <= baseline + slack
    });
    now
}

/// The last lines of a (possibly huge) log, for failure messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The log without the lines that contain `noise`.
fn without(log: &str, noise: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|line| !line.contains(noise)).collect();
    lines.join("\n")
}

/// Closes `stream` with an RST instead of a FIN (SO_LINGER 0). It must be
/// the socket's only handle, or the close is not the last one.
fn reset(stream: TcpStream) {
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    drop(stream);
}

/// A `Peer` connected to a fake server, and the fake server's end.
fn fake_peer() -> (Peer, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = Peer::connect(listener.local_addr().expect("addr"));
    let (server, _) = listener.accept().expect("accept");
    (peer, server)
}

/// `Peer::expect_silent` fails on half a line (no LF yet), not only on a
/// whole one.
#[test]
#[should_panic(expected = "expected silence, got")]
fn expect_silent_fails_on_half_a_line() {
    let (peer, mut server) = fake_peer();
    server.write_all(b"half a line, no LF").expect("send");
    peer.expect_silent(Duration::from_secs(2));
}

/// `Peer::expect_eof` passes on a clean close, with the lines before it.
#[test]
fn expect_eof_returns_the_lines_before_a_clean_close() {
    let (peer, mut server) = fake_peer();
    server.write_all(b"! bye\n").expect("send");
    drop(server);
    assert_eq!(peer.expect_eof(), ["! bye"]);
}

/// `Peer::expect_eof` fails on a last line without its LF, even when the
/// close comes a read timeout after it.
#[test]
#[should_panic(expected = "the stream ended inside a line")]
fn expect_eof_fails_on_a_last_line_without_its_lf() {
    let (peer, mut server) = fake_peer();
    server.write_all(b"! too many connections").expect("send");
    thread::sleep(POLL * 2);
    drop(server);
    peer.expect_eof();
}

/// `Peer::expect_eof` fails on a reset: it is not the server closing.
#[test]
#[should_panic(expected = "not a clean close")]
fn expect_eof_fails_on_a_reset() {
    let (peer, mut server) = fake_peer();
    server.write_all(b"! bye\n").expect("send");
    reset(server);
    peer.expect_eof();
}

/// The default `--rate-limit` and `--burst` (SPEC).
const RATE: u64 = 50;
const BURST: u64 = 100;

/// The sequence number of a flood line `<name> flood NNNNN ...`.
fn flood_seq(line: &str, from: &str) -> Option<u64> {
    let rest = line.strip_prefix(&format!("<{from}> flood "))?;
    rest.get(..5)?.parse().ok()
}

/// One client writes as fast as it can for 3 s under the default limits.
/// Two others, meanwhile, get a line across to each other within 1 s; the
/// flooder is paced (its lines reach the room at about `--rate-limit`), not
/// dropped, and every line it wrote arrives, in order, later.
#[test]
fn flooder_is_paced_not_dropped_and_the_room_does_not_feel_it() {
    const FLOOD_FOR: Duration = Duration::from_secs(3);
    const MAX_LINES: u64 = 5_000;
    let server = Server::start(&[]);
    let flooder = Peer::join(server.addr());
    let a = Peer::join(server.addr());
    let b = Peer::join(server.addr());
    a.expect_line(&format!("* {} joined (3 online)", b.name));
    flooder.expect_line(&format!("* {} joined (2 online)", a.name));
    flooder.expect_line(&format!("* {} joined (3 online)", b.name));

    // A small send buffer keeps the backlog TCP holds for the flooder (and
    // so the time its lines take to drain) short.
    let out = flooder.writer.try_clone().expect("clone");
    SockRef::from(&out)
        .set_send_buffer_size(8 * 1024)
        .expect("SO_SNDBUF");
    let pad = "x".repeat(900);
    let writer = thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0;
        while start.elapsed() < FLOOD_FOR && sent < MAX_LINES {
            if (&out)
                .write_all(format!("flood {sent:05} {pad}\n").as_bytes())
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        (sent, start.elapsed())
    });

    // Lines a and b see, sorted into the flood and everything else.
    let mut floods: [Vec<(Instant, u64)>; 2] = [Vec::new(), Vec::new()];
    let mut others: [Vec<(Instant, String)>; 2] = [Vec::new(), Vec::new()];
    let watch = |i: usize,
                 peer: &Peer,
                 floods: &mut [Vec<(Instant, u64)>; 2],
                 others: &mut [Vec<(Instant, String)>; 2],
                 timeout: Duration|
     -> bool {
        match peer.next_timed(timeout) {
            Some((at, line)) => {
                match flood_seq(&line, &flooder.name) {
                    Some(seq) => floods[i].push((at, seq)),
                    None => others[i].push((at, line)),
                }
                true
            }
            None => false,
        }
    };
    // Once the burst is spent, the flooder is being held back.
    let deadline = Instant::now() + TIMEOUT;
    while floods[1].len() < (BURST + 10) as usize {
        assert!(Instant::now() < deadline, "flood did not reach b");
        watch(1, &b, &mut floods, &mut others, TIMEOUT);
    }
    let sent_a = Instant::now();
    a.send("ping from a");
    let sent_b = Instant::now();
    b.send("ping from b");
    let (sent, flood_time) = writer.join().expect("flood writer");
    assert!(
        flood_time >= FLOOD_FOR,
        "the flood writer failed after {sent} lines in {flood_time:?}"
    );
    // Everything the flooder wrote is due at about RATE lines a second.
    let drain = Duration::from_secs(sent / RATE + 10);
    for (i, peer) in [&a, &b].into_iter().enumerate() {
        let deadline = Instant::now() + drain;
        while floods[i].last().map(|&(_, seq)| seq + 1) != Some(sent) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                watch(i, peer, &mut floods, &mut others, left),
                "{} got {} of {sent} flood lines; others: {:?}",
                peer.name,
                floods[i].len(),
                others[i]
            );
        }
    }

    for (i, peer) in [&a, &b].into_iter().enumerate() {
        let seqs = floods[i].iter().map(|&(_, seq)| seq);
        assert!(
            seqs.eq(0..sent),
            "{}: flood lines lost or out of order",
            peer.name
        );
    }
    let ping_a = format!("<{}> ping from a", a.name);
    let ping_b = format!("<{}> ping from b", b.name);
    let latency = |i: usize, want: &str, sent_at: Instant| -> Duration {
        let (at, _) = others[i]
            .iter()
            .find(|(_, line)| line == want)
            .unwrap_or_else(|| panic!("{want:?} never arrived; saw {:?}", others[i]));
        at.duration_since(sent_at)
    };
    let a_to_b = latency(1, &ping_a, sent_a);
    let b_to_a = latency(0, &ping_b, sent_b);
    eprintln!("flood: {sent} lines written in {flood_time:?}; a->b {a_to_b:?}, b->a {b_to_a:?}");
    // Queued behind the flood, a ping would take seconds; a loaded machine
    // may add a few hundred ms on its own.
    assert!(a_to_b < Duration::from_secs(3), "a->b took {a_to_b:?}");
    assert!(b_to_a < Duration::from_secs(3), "b->a took {b_to_a:?}");
    for seen in &others {
        assert_eq!(seen.len(), 1, "unexpected lines: {seen:?}");
    }
    // Paced: after the burst, about RATE lines a second reached the room.
    let first = floods[1][0].0;
    let last = floods[1].last().expect("flood lines").0;
    let paced = Duration::from_secs_f64((sent - BURST) as f64 / RATE as f64 * 0.8);
    assert!(
        last.duration_since(first) >= paced,
        "{sent} lines relayed in {:?}: not rate limited",
        last.duration_since(first)
    );

    // The flooder was never dropped: it got the pings and can still talk.
    let mut got: Vec<String> = (0..2)
        .map(|_| flooder.next(TIMEOUT).expect("ping"))
        .collect();
    got.sort();
    let mut want = vec![ping_a, ping_b];
    want.sort();
    assert_eq!(got, want);
    flooder.send("still here");
    a.expect_line(&format!("<{}> still here", flooder.name));
}

/// Connects with a bare socket and reads exactly the welcome line, byte by
/// byte, so nothing past it is buffered and the socket has no clone: the
/// test decides how it ends (FIN, RST, half-close).
fn raw_join(addr: SocketAddr) -> (TcpStream, String) {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to server");
    stream.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("set timeout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match (&stream).read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("no welcome line ({other:?}); got {line:?}"),
        }
    }
    let line = String::from_utf8_lossy(&line).trim_end().to_string();
    let name = welcome_name(&line)
        .unwrap_or_else(|| panic!("not a welcome line: {line:?}"))
        .to_string();
    (stream, name)
}

/// The most the server's peak RSS may grow while one client sends 30 MB
/// without a newline: its line buffer is `--max-line` + 2 bytes, whatever
/// arrives.
const LONG_LINE_BUDGET_KB: u64 = 2 * 1024;

/// A client sends 30 MB with no newline: it is one too-long line (one error
/// to its sender), reading goes on at the next LF, and the server's peak
/// RSS stays within [`LONG_LINE_BUDGET_KB`] of where it started.
#[test]
fn thirty_megabytes_without_a_newline_stay_within_budget() {
    const TOTAL: usize = 30 * 1024 * 1024;
    let server = Server::start(&[]);
    let sender = Peer::join(server.addr());
    let watcher = Peer::join(server.addr());
    sender.expect_line(&format!("* {} joined (2 online)", watcher.name));
    let rss_before = server.proc_status("VmRSS");

    let out = sender.writer.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            (&out).write_all(&chunk)?;
        }
        (&out).write_all(b"\nafter the long one\n")
    });
    writer.join().expect("writer").expect("server read 30 MB");
    watcher.expect_line(&format!("<{}> after the long one", sender.name));
    sender.expect_line("! line too long (over 2048 bytes): dropped");
    sender.expect_silent(Duration::from_millis(200));

    let peak = server.proc_status("VmHWM");
    eprintln!("30 MB line: VmRSS before {rss_before} kB, peak after {peak} kB");
    assert!(
        peak <= rss_before + LONG_LINE_BUDGET_KB,
        "peak RSS {peak} kB, from {rss_before} kB: over the {LONG_LINE_BUDGET_KB} kB budget"
    );
}

/// The most one idle chat client may cost in server RSS: the touched pages
/// of its reader's and writer's stacks, its line buffer, its (empty) queue
/// and its registry entry.
const IDLE_CLIENT_BUDGET_KB: u64 = 64;

/// 2,000 clients connect and then neither send nor read: each costs the
/// server at most [`IDLE_CLIENT_BUDGET_KB`] of RSS, and when they all go
/// its descriptor count comes back to where it started.
#[test]
fn two_thousand_idle_connections_stay_within_budget() {
    const CLIENTS: usize = 2_000;
    chat_tests::raise_fd_limit(CLIENTS as u64 + 200);
    // One worker a client: the default 1,024 would queue the rest.
    let server = Server::start(&["--workers", "2100"]);
    let watcher = Peer::join(server.addr());
    let fds_before = server.open_fds();
    let rss_before = server.proc_status("VmRSS");
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| TcpStream::connect_timeout(&server.addr(), TIMEOUT).expect("connect"))
        .collect();
    // The watcher hears every one of them join.
    let last = format!("({} online)", CLIENTS + 1);
    let deadline = Instant::now() + TIMEOUT * 3;
    let mut seen = 0;
    let mut previous = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match watcher.next(left) {
            Some(line) if line.ends_with(&last) => break,
            Some(line) => {
                seen += 1;
                previous = line;
            }
            None => panic!(
                "not every client joined: the watcher saw {seen} lines, the last {previous:?}; \
                 the log, but for joins:\n{}",
                tail(&without(&server.stderr(), " joined as "))
            ),
        }
    }
    let joined = started.elapsed();
    let rss = server.proc_status("VmRSS");
    let per_client = rss.saturating_sub(rss_before) * 1024 / CLIENTS as u64;
    eprintln!(
        "{CLIENTS} idle: joined in {joined:?}; VmRSS {rss_before} -> {rss} kB ({per_client} B each), {} threads, {} fds",
        server.proc_status("Threads"),
        server.open_fds()
    );
    assert!(
        rss <= rss_before + IDLE_CLIENT_BUDGET_KB * CLIENTS as u64,
        "VmRSS {rss} kB from {rss_before} kB: over {IDLE_CLIENT_BUDGET_KB} kB a client"
    );
    watcher.send("still served");
    drop(idle);
    let fds = fds_back(&server, fds_before, 0);
    eprintln!(
        "{CLIENTS} idle: all gone after {:?}, {fds} fds",
        started.elapsed()
    );
}

/// The most the server's peak RSS may grow because one client stopped
/// reading: its queue holds `--sendq` lines once its socket is full and its
/// writer's buffer at most as many again (each line up to `--max-line` plus
/// its name), plus slack for the allocator. (Lines queued before the server
/// noticed the full socket may add to the queue, up to four times
/// `--sendq` in all; the flusher notices at its next write, so in practice
/// they are few.)
const STALLED_BUDGET_KB: u64 = 2 * 1024 * (2048 + 32) / 1024 + 4 * 1024;

/// A client stops reading while another sends 2,000-byte lines as fast as
/// the server takes them (`--rate-limit 0`): the stalled one is dropped as
/// too slow once its queue is full, the others hear why and are not slowed,
/// and the server's peak RSS stays within [`STALLED_BUDGET_KB`].
#[test]
fn a_stalled_reader_is_dropped_within_budget() {
    const MAX_LINES: u64 = 20_000;
    let server = Server::start(&["--rate-limit", "0"]);
    let fds_before = server.open_fds();
    let (stalled, stalled_name) = raw_join(server.addr());
    let sender = Peer::join(server.addr());
    let reader = Peer::join(server.addr());
    sender.expect_line(&format!("* {} joined (3 online)", reader.name));
    let rss_before = server.proc_status("VmRSS");

    let out = sender.writer.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = Arc::clone(&stop);
    let pad = "y".repeat(2000);
    let started = Instant::now();
    let writer = thread::spawn(move || {
        let mut sent = 0;
        while !stop_writer.load(Ordering::Relaxed) && sent < MAX_LINES {
            if (&out)
                .write_all(format!("{sent:05} {pad}\n").as_bytes())
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        sent
    });
    let left = format!("* {stalled_name} left (too slow)");
    let deadline = Instant::now() + TIMEOUT * 2;
    let mut relayed = 0u64;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match reader.next(wait) {
            Some(line) if line == left => break,
            Some(line) if line.starts_with(&format!("<{}> ", sender.name)) => relayed += 1,
            Some(line) => panic!("reader got {line:?}"),
            None => panic!(
                "stalled client not dropped after {relayed} lines; stderr:\n{}",
                tail(&server.stderr())
            ),
        }
    }
    let dropped_after = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().expect("writer");
    let peak = server.proc_status("VmHWM");
    eprintln!(
        "stalled reader dropped after {relayed} lines in {dropped_after:?}; VmRSS {rss_before} kB, peak {peak} kB"
    );
    assert!(
        peak <= rss_before + STALLED_BUDGET_KB,
        "peak RSS {peak} kB from {rss_before} kB: over the {STALLED_BUDGET_KB} kB budget"
    );
    // The others were not held up: the reader gets every line that was sent.
    let deadline = Instant::now() + TIMEOUT;
    while relayed < sent {
        let wait = deadline.saturating_duration_since(Instant::now());
        match reader.next(wait) {
            Some(line) if line.starts_with(&format!("<{}> ", sender.name)) => relayed += 1,
            other => panic!("reader got {other:?} after {relayed} of {sent} lines"),
        }
    }
    // The stalled client's connection is closed (whatever the kernel still
    // held for it may be read first).
    stalled
        .set_read_timeout(Some(TIMEOUT))
        .expect("set timeout");
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        match (&stalled).read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("stalled client's connection not closed: {e}"),
        }
    }
    drop((stalled, sender, reader));
    fds_back(&server, fds_before, 0);
}

/// 2,000 connections opened and closed as fast as four threads can (some
/// send a line first, some reset): the server keeps serving, and its
/// descriptor count comes back to where it started.
#[test]
fn a_connection_storm_leaves_the_server_serving_and_leaks_nothing() {
    const STORM: usize = 2_000;
    const THREADS: usize = 4;
    chat_tests::raise_fd_limit(1024);
    let server = Server::start(&[]);
    let fds_before = server.open_fds();
    let addr = server.addr();
    let started = Instant::now();
    let storm: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..STORM / THREADS {
                    let Ok(stream) = TcpStream::connect_timeout(&addr, TIMEOUT) else {
                        continue;
                    };
                    match (i + t) % 4 {
                        0 => {
                            let _ = (&stream).write_all(b"hello and goodbye\n");
                        }
                        1 => reset(stream),
                        _ => {}
                    }
                }
            })
        })
        .collect();
    for thread in storm {
        thread.join().expect("storm thread");
    }
    let stormed = started.elapsed();
    // Accepted after every storm connection still in the listen backlog;
    // while the storm's sessions still fill every worker and the queue, a
    // newcomer is told the server is full, and tries again.
    let deadline = Instant::now() + TIMEOUT;
    let a = loop {
        let peer = Peer::connect(server.addr());
        match peer.next(TIMEOUT) {
            Some(line) if line == "! server full, try again later" && Instant::now() < deadline => {
            }
            Some(line) if welcome_name(&line).is_some() => break peer,
            Some(line) if line.starts_with("* all ") && line.ends_with("please wait") => {
                peer.expect(|line| welcome_name(line).is_some());
                break peer;
            }
            other => panic!("not served after the storm: {other:?}"),
        }
    };
    let fds = fds_back(&server, fds_before + 1, 0);
    eprintln!(
        "storm: {STORM} connections in {stormed:?}; fds back to {fds} (from {fds_before} + 1) after {:?}",
        started.elapsed()
    );
    let b = Peer::join(server.addr());
    a.expect(|line| line == format!("* {} joined (2 online)", b.name));
    b.send("after the storm");
    a.expect_line(&format!("<{}> after the storm", b.name));
    assert!(
        !server.stderr().contains("panicked"),
        "{}",
        tail(&server.stderr())
    );
}

/// `--max-per-ip 2 --limit-loopback`: the third connection from 127.0.0.1
/// gets one `! ` line and is closed, unseen by the room; once one of the
/// two leaves, a new one is let in.
#[test]
fn the_per_address_cap_answers_with_an_error_line() {
    let server = Server::start(&["--max-per-ip", "2", "--limit-loopback"]);
    let a = Peer::join(server.addr());
    let b = Peer::join(server.addr());
    a.expect_line(&format!("* {} joined (2 online)", b.name));
    let third = Peer::connect(server.addr());
    let lines = third.expect_eof();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("! ") && lines[0].contains("too many connections from 127.0.0.1"),
        "{lines:?}"
    );
    drop(b);
    a.expect(|line| line.ends_with(" left (connection closed)"));
    // The place is free once the server has finished with b.
    let deadline = Instant::now() + TIMEOUT;
    let c = loop {
        let c = Peer::connect(server.addr());
        match c.next(TIMEOUT) {
            Some(line) if welcome_name(&line).is_some() => break c,
            Some(line) if line.starts_with("! ") && Instant::now() < deadline => {}
            other => panic!("no place for a new client: {other:?}"),
        }
    };
    drop(c);
    a.expect(|line| line.ends_with("joined (2 online)"));
}

/// On a dual-stack listener (`--bind ::`) IPv4 clients arrive as
/// `::ffff:127.0.0.1`: they are still loopback, so exempt from the cap by
/// default, and counted as 127.0.0.1 with `--limit-loopback`.
#[test]
fn the_per_address_cap_sees_ipv4_on_a_dual_stack_listener_as_ipv4() {
    if !chat_tests::dual_stack() {
        eprintln!("no dual-stack IPv6 on this machine: skipped");
        return;
    }
    let start = |extra: &[&str]| {
        let mut cmd = Command::new(bin("chat-server"));
        cmd.args(["--bind", "::", "--port", "0", "--max-per-ip", "2"])
            .args(extra);
        Server::spawn(cmd)
    };
    let v4 = |server: &Server| SocketAddr::from(([127, 0, 0, 1], server.addr().port()));

    let exempt = start(&[]);
    let held: Vec<Peer> = (0..4).map(|_| Peer::join(v4(&exempt))).collect();
    assert_eq!(
        held.len(),
        4,
        "loopback over a dual-stack listener is exempt"
    );

    let capped = start(&["--limit-loopback"]);
    let _a = Peer::join(v4(&capped));
    let _b = Peer::join(v4(&capped));
    let lines = Peer::connect(v4(&capped)).expect_eof();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("too many connections from 127.0.0.1 "),
        "counted as IPv4: {lines:?}"
    );
}

/// Starts the server under a low `ulimit -n` (hard and soft, so it cannot
/// raise it) that leaves it `spare` descriptors beyond those it holds once
/// listening; returns the server and the limit. The server inherits
/// whatever descriptors its parent left open (a CI runner may leave
/// dozens), so the limit is counted from what a server started the same
/// way holds.
fn start_with_descriptors(spare: usize) -> (Server, usize) {
    let limit = Server::start(&[]).open_fds() + spare;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -Sn {limit} && ulimit -Hn {limit} && exec \"$0\" \"$@\""
        ))
        .arg(bin("chat-server"))
        .args(["--bind", "127.0.0.1", "--port", "0"]);
    let server = Server::spawn(cmd);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
        .expect("read /proc/pid/limits");
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    assert_eq!(
        open_files.split_whitespace().nth(3),
        Some(limit.to_string().as_str()),
        "the server raised its limit: {open_files}"
    );
    (server, limit)
}

/// Started under a low `ulimit -n` (hard and soft, so the server cannot
/// raise it; 57 descriptors beyond those it starts with), the server is
/// connected to past its descriptors: the accept loop logs and backs off
/// (doubling, not spinning), the clients already in keep chatting, and once
/// the extra connections close the server accepts again: the ones still
/// queued are served, then a new client.
#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    let (server, limit) = start_with_descriptors(57);
    let a = Peer::join(server.addr());
    let b = Peer::join(server.addr());
    a.expect_line(&format!("* {} joined (2 online)", b.name));
    let baseline = server.open_fds();

    // More connections than the server has descriptors left.
    let extra: Vec<TcpStream> = (0..limit)
        .map(|_| TcpStream::connect_timeout(&server.addr(), TIMEOUT).expect("connect"))
        .collect();
    let failures = || server.stderr().matches("accept failed").count();
    wait_for(&server, "an accept error in the log", TIMEOUT, || {
        failures() > 0
    });
    let failing_since = Instant::now();

    // The clients already in keep chatting.
    a.send("still here");
    b.expect(|line| line == format!("<{}> still here", a.name));
    b.send("me too");
    a.expect(|line| line == format!("<{}> me too", b.name));

    // It backs off, doubling: a few log lines, not thousands.
    wait_for(&server, "the back-off to reach 640 ms", TIMEOUT, || {
        server.stderr().contains("retrying in 640 ms")
    });
    let logged = failures();
    eprintln!(
        "descriptors: {logged} accept errors logged in {:?}",
        failing_since.elapsed()
    );
    assert!(
        logged <= 10,
        "accept errors logged {logged} times:\n{}",
        tail(&server.stderr())
    );
    assert!(
        server.stderr().contains("Too many open files"),
        "{}",
        tail(&server.stderr())
    );

    // The connections the server had no descriptor for are not left
    // hanging without a word: each failed accept spends the reserve
    // descriptor to tell the oldest waiting one it is busy.
    let busy = extra
        .iter()
        .filter(|stream| {
            stream
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut first = [0u8; 64];
            let n = (&**stream).read(&mut first).unwrap_or(0);
            first[..n].starts_with(b"! server busy")
        })
        .count();
    assert!(
        busy > 0,
        "no waiting connection was told the server is busy"
    );

    // They all close. Each one either was told it is busy or gets a worker
    // once the server has descriptors again, joins and leaves: wait until
    // the log accounts for every one of them, and until the last of their
    // descriptors is closed (a session logs its leave just before). Joining
    // before that would race the server's own accepts of the ones still
    // queued: with the descriptors full again for a moment, a failed accept
    // rightly tells the oldest waiting connection, which could be the new
    // client, that it is busy.
    drop(extra);
    wait_for(
        &server,
        "every extra connection to be answered",
        TIMEOUT * 2,
        || {
            let log = server.stderr();
            log.matches("refused: out of file descriptors").count() + log.matches(" left: ").count()
                >= limit
        },
    );
    fds_back(&server, baseline, 0);
    let c = Peer::join(server.addr());
    eprintln!(
        "descriptors: new client served {:?} after the first error",
        failing_since.elapsed()
    );
    c.send("hello again");
    a.expect(|line| line == format!("<{}> hello again", c.name));
    b.expect(|line| line == format!("<{}> hello again", c.name));
}

/// With every descriptor taken by clients and nobody waiting, a failed
/// `accept` keeps its reserve descriptor for a connection that does wait:
/// once a client leaves, the next one is served. (It used to block in an
/// `accept` with the reserve spent until the next connection came, and
/// tell that one the server was busy, however many descriptors had freed
/// up by then.)
#[test]
fn a_descriptor_freed_later_goes_to_the_next_client() {
    let (server, _) = start_with_descriptors(8);
    let failures = || server.stderr().matches("accept failed").count();

    // Clients join until the server has no descriptor left for one.
    let mut peers = Vec::new();
    loop {
        assert!(
            peers.len() < 32,
            "{} clients in and none refused",
            peers.len()
        );
        let peer = Peer::connect(server.addr());
        let first = peer.next(TIMEOUT).expect("a first line");
        if first.starts_with("! server busy") {
            break;
        }
        assert!(
            welcome_name(&first).is_some(),
            "not a welcome line: {first:?}"
        );
        peers.push(peer);
    }
    let full = server.open_fds();

    // The accept loop has failed again since, with nobody waiting.
    let failed = failures();
    wait_for(&server, "another accept error", TIMEOUT, || {
        failures() > failed
    });

    // One client leaves; its descriptor is closed.
    drop(peers.pop());
    wait_for(
        &server,
        "a client's descriptor to be closed",
        TIMEOUT,
        || server.open_fds() < full,
    );

    let next = Peer::connect(server.addr());
    let first = next.next(TIMEOUT).expect("a first line");
    assert!(
        welcome_name(&first).is_some(),
        "a descriptor is free, yet: {first:?}\n{}",
        tail(&server.stderr())
    );
}

/// A client that resets (SO_LINGER 0) in the middle of a line leaves with
/// `connection reset`, its half line not relayed; one that half-closes
/// after an unterminated line has that line relayed, leaves with
/// `connection closed` and still gets its end of stream; clients that
/// connect and send nothing stay until they close. Every descriptor comes
/// back.
#[test]
fn resets_half_closes_and_silent_clients_are_cleaned_up() {
    // No history: the silent client reads its welcome and nothing more, so
    // replayed lines left unread would make its close a reset.
    let server = Server::start(&["--history", "0"]);
    let watcher = Peer::join(server.addr());
    let fds_before = server.open_fds();

    let (torn, torn_name) = raw_join(server.addr());
    watcher.expect_line(&format!("* {torn_name} joined (2 online)"));
    (&torn).write_all(b"half a li").expect("write");
    reset(torn);
    watcher.expect_line(&format!("* {torn_name} left (connection reset)"));

    let (half, half_name) = raw_join(server.addr());
    watcher.expect_line(&format!("* {half_name} joined (2 online)"));
    (&half).write_all(b"last words").expect("write");
    half.shutdown(Shutdown::Write).expect("half-close");
    watcher.expect_line(&format!("<{half_name}> last words"));
    watcher.expect_line(&format!("* {half_name} left (connection closed)"));
    let mut rest = Vec::new();
    (&half)
        .read_to_end(&mut rest)
        .expect("end of stream for the half-closed client");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    drop(half);

    // Silent: reads its welcome, never says a word, is not dropped for it.
    let (silent, silent_name) = raw_join(server.addr());
    watcher.expect_line(&format!("* {silent_name} joined (2 online)"));
    watcher.expect_silent(Duration::from_millis(300));
    drop(silent);
    watcher.expect_line(&format!("* {silent_name} left (connection closed)"));
    // Mute: does not even read its welcome.
    let mute = TcpStream::connect_timeout(&server.addr(), TIMEOUT).expect("connect");
    let joined = watcher.next(TIMEOUT).expect("a join notice");
    let mute_name = joined
        .strip_prefix("* ")
        .and_then(|rest| rest.strip_suffix(" joined (2 online)"))
        .unwrap_or_else(|| panic!("not a join notice: {joined:?}"))
        .to_string();
    // Closing with its welcome unread makes the kernel send an RST.
    drop(mute);
    let left = watcher.next(TIMEOUT).expect("a leave notice");
    assert!(
        left == format!("* {mute_name} left (connection reset)")
            || left == format!("* {mute_name} left (connection closed)"),
        "{left:?}"
    );
    fds_back(&server, fds_before, 0);
    watcher.expect_silent(Duration::from_millis(100));
}

//! UDP against spoofed sources (SPEC "Limits": UDP; issue 14 defect 2): a
//! datagram that claims to come from the server's own socket gets no reply,
//! and replies to one source address are rate-limited (`--udp-rate`), so one
//! spoofed datagram cannot set an echo server (or two) spinning. The spoofed
//! datagrams come from a raw socket: these tests need root.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::labs::{cpu_seconds, send_spoofed};
use chat_tests::{Server, TIMEOUT};

/// How long CPU use is watched after the spoofed datagram.
const WATCH: Duration = Duration::from_secs(2);

/// The most CPU a server may use in [`WATCH`] while it is "idle": a
/// bouncing pair uses about all of a core (2 s), a guarded one a few ms.
const IDLE_CPU: f64 = 0.3;

/// An ordinary client: one datagram, its echo within [`TIMEOUT`].
fn echoed(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    socket.send_to(payload, addr).expect("send");
    let mut buf = [0u8; 1024];
    let (n, from) = socket.recv_from(&mut buf).expect("an echo");
    assert_eq!(from, addr);
    buf[..n].to_vec()
}

/// CPU seconds each of `pids` used during [`WATCH`].
fn cpu_during_watch(pids: &[u32]) -> Vec<f64> {
    let before: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
    thread::sleep(WATCH);
    pids.iter()
        .zip(before)
        .map(|(&p, b)| cpu_seconds(p) - b)
        .collect()
}

/// A datagram whose source is the server's own address and port gets no
/// reply: the server stays idle, says so in its log, and still answers an
/// ordinary client.
#[test]
fn a_datagram_from_our_own_address_is_not_answered() {
    let server = Server::start(&["--mode", "echo", "--udp"]);
    let addr = server.addr();
    assert_eq!(echoed(addr, b"before"), b"before");
    send_spoofed(addr.port(), addr, b"bounce");
    server.stderr_until(
        "left unanswered: 1 from our own port, 0 from service ports, 0 over --udp-rate",
    );
    let cpu = cpu_during_watch(&[server.pid()]);
    eprintln!(
        "self-addressed datagram: {:.3} s of CPU in {WATCH:?}",
        cpu[0]
    );
    assert!(
        cpu[0] < IDLE_CPU,
        "the server used {:.2} s of CPU in {WATCH:?}: it is answering itself",
        cpu[0]
    );
    assert_eq!(echoed(addr, b"after"), b"after");
}

/// Two echo servers, one spoofed datagram from the second to the first:
/// they may trade `--udp-rate` datagrams a second, not more, so both stay
/// near idle and both still answer ordinary clients. The second's rate is
/// huge so the first is the one that runs out, and says so (which of two
/// equal servers runs out first is timing).
#[test]
fn two_echo_servers_pointed_at_each_other_stay_idle() {
    let a = Server::start(&["--mode", "echo", "--udp"]);
    let b = Server::start(&["--mode", "echo", "--udp", "--udp-rate", "1000000"]);
    send_spoofed(b.addr().port(), a.addr(), b"ping-pong");
    // The bounce ran until the first server's allowance for the second ran
    // out (a bouncing pair without a guard never gets here).
    a.stderr_until("left unanswered: 0 from our own port, 0 from service ports, 1 over --udp-rate");
    let cpu = cpu_during_watch(&[a.pid(), b.pid()]);
    eprintln!(
        "bouncing pair: {:.3} s and {:.3} s of CPU in {WATCH:?}",
        cpu[0], cpu[1]
    );
    for (name, used) in [("first", cpu[0]), ("second", cpu[1])] {
        assert!(
            used < IDLE_CPU,
            "the {name} server used {used:.2} s of CPU in {WATCH:?}: they bounce at full speed"
        );
    }
    assert_eq!(echoed(a.addr(), b"to a"), b"to a");
    assert_eq!(echoed(b.addr(), b"to b"), b"to b");
}

/// A datagram from a service port that answers anything (here chargen, 19)
/// gets no reply: answering it would start a bounce. The test binds port
/// 19 itself (root), so it would see a reply.
#[test]
fn a_datagram_from_a_service_port_is_not_answered() {
    let server = Server::start(&["--mode", "echo", "--udp"]);
    let addr = server.addr();
    let chargen = UdpSocket::bind("127.0.0.1:19")
        .unwrap_or_else(|e| panic!("this test binds UDP port 19, which needs root: {e}"));
    chargen
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    chargen.send_to(b"chargen says hi", addr).expect("send");
    let mut buf = [0u8; 64];
    if let Ok((n, from)) = chargen.recv_from(&mut buf) {
        panic!(
            "{from} answered port 19: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    server.stderr_until("left unanswered: 0 from our own port, 1 from service ports");
    assert_eq!(echoed(addr, b"after"), b"after");
}

/// Many source ports on one address share one cap: 4 times `--udp-rate`
/// replies at once, then as many a second (a spoofer rotating ports would
/// otherwise get `--udp-rate` for each).
#[test]
fn rotating_source_ports_share_one_cap() {
    const PORTS: usize = 200;
    let server = Server::start(&["--mode", "echo", "--udp", "--udp-rate", "10"]);
    let sockets: Vec<UdpSocket> = (0..PORTS)
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.connect(server.addr()).expect("connect");
            socket.set_nonblocking(true).expect("nonblocking");
            socket
        })
        .collect();
    let started = Instant::now();
    for socket in &sockets {
        socket.send(b"x").expect("send");
    }
    // Count replies until none has come for QUIET.
    const QUIET: Duration = Duration::from_millis(500);
    let mut buf = [0u8; 16];
    let mut replies = 0;
    let mut last = Instant::now();
    while last.elapsed() < QUIET {
        assert!(started.elapsed() < TIMEOUT, "replies never stop");
        let got = sockets.iter().filter(|s| s.recv(&mut buf).is_ok()).count();
        if got > 0 {
            replies += got;
            last = Instant::now();
        } else {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let window = started.elapsed();
    let most = 40 + (window.as_secs_f64() * 40.0).ceil() as usize + 1;
    eprintln!("{PORTS} ports: {replies} replies within {window:?} (at most {most})");
    assert!(replies <= most, "{replies} replies, more than {most}");
    assert!(replies >= 30, "only {replies} replies");
    server.stderr_until("over the per-address cap");
}

/// One source gets `--udp-rate` replies at once and no more until the
/// bucket refills; another source is answered meanwhile.
#[test]
fn replies_to_one_source_are_rate_limited() {
    const SENT: usize = 300;
    let server = Server::start(&["--mode", "echo", "--udp", "--udp-rate", "100"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(server.addr()).expect("connect");
    let started = Instant::now();
    for i in 0..SENT {
        socket.send(format!("{i}").as_bytes()).expect("send");
    }
    let sending = started.elapsed();
    // Count the replies until none comes for a while.
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let mut replies = 0;
    let mut last_reply = started;
    while socket.recv(&mut buf).is_ok() {
        replies += 1;
        last_reply = Instant::now();
        assert!(started.elapsed() < TIMEOUT, "replies never stop");
    }
    // The bucket holds 100 and refills at 100 a second from the first
    // datagram the server handles to the last it answers, both within
    // this window (however the server was scheduled).
    let window = last_reply.duration_since(started);
    let most = 100 + (window.as_secs_f64() * 100.0).ceil() as usize + 1;
    eprintln!("{SENT} sent in {sending:?}: {replies} replies within {window:?} (at most {most})");
    assert!(replies <= most, "{replies} replies, more than {most}");
    assert!(
        replies >= 90,
        "only {replies} replies: the first 100 should all be answered"
    );
    assert_eq!(echoed(server.addr(), b"someone else"), b"someone else");
}

/// The number a `left unanswered` log line gives before `what`.
fn unanswered(line: &str, what: &str) -> Option<u64> {
    let (_, counts) = line.split_once("udp: left unanswered: ")?;
    let (before, _) = counts.split_once(what)?;
    before.rsplit(' ').find(|w| !w.is_empty())?.parse().ok()
}

/// Every datagram left unanswered is counted in the log: a burst from one
/// source over `--udp-rate` is logged as one count (not as its first
/// datagram alone), and a second burst, counted before the next line is
/// due, is logged at the stop, before the summary (always the last line).
/// At one reply a second, each burst is answered once, or twice at most.
/// Needs no root.
#[test]
fn every_unanswered_datagram_is_logged() {
    const FIRST: usize = 100;
    const SECOND: usize = 20;
    let mut server = Server::start(&["--mode", "echo", "--udp", "--udp-rate", "1"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(server.addr()).expect("connect");
    for _ in 0..FIRST {
        socket.send(b"x").expect("send");
    }
    server.stderr_until("over --udp-rate");
    for _ in 0..SECOND {
        socket.send(b"y").expect("send");
    }
    // Datagrams are handled in order: once this one is answered, both
    // bursts were handled before the stop.
    assert_eq!(echoed(server.addr(), b"probe"), b"probe");
    server.signal("INT");
    server.wait_exit(TIMEOUT);
    socket.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 16];
    let mut replies = 0;
    while socket.recv(&mut buf).is_ok() {
        replies += 1;
    }
    let stderr = server.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    let counted: u64 = lines
        .iter()
        .filter_map(|l| {
            Some(unanswered(l, " over --udp-rate")? + unanswered(l, " over the per-address cap")?)
        })
        .sum();
    assert_eq!(
        counted,
        (FIRST + SECOND - replies) as u64,
        "{replies} replies; stderr:\n{stderr}"
    );
    let counts = lines
        .iter()
        .filter(|l| l.contains("left unanswered"))
        .count();
    assert!(
        counts >= 2,
        "the second burst was logged with the first:\n{stderr}"
    );
    assert!(
        lines.last().is_some_and(|l| l.contains("stopped in")),
        "the summary is not last:\n{stderr}"
    );
}

//! A client's send queue: bounded in bytes as well as lines
//! (`--sendq-bytes`), and never too small for a paste to a reader that
//! reads at full speed (`--sendq` below `--burst`).

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::{raise_fd_limit, Client, Server, TIMEOUT};

/// Idle clients that make the room large, so a `/who` reply is big (about
/// 12 KB).
const IDLE: usize = 1000;

/// Clients that ask for `/who` and never read.
const ATTACKERS: usize = 20;

/// `/who` lines each attacker sends at once; the server reads them at
/// `--rate-limit` after `--burst`, so this is about 40 s of requests, far
/// more than it takes to fill a 1 MiB queue (and the kernel buffers before
/// it) with 12 KB replies.
const WHO_EACH: usize = 2000;

/// The most the server's RSS may grow during the attack: 20 queues of
/// 1 MiB (plus one reply each), and room for the allocator.
const GROWTH_KB: u64 = 48 * 1024;

/// 1,000 idle clients and 20 that send `/who` at the permitted rate and
/// never read: the 20 are dropped as too slow, and the server's RSS grows
/// by less than 48 MB meanwhile (`--sendq` alone let each queue hold 1,024
/// or more 12 KB replies: hundreds of MB).
#[test]
fn who_replies_nobody_reads_do_not_grow_the_server() {
    raise_fd_limit((IDLE + ATTACKERS) as u64 * 2 + 64);
    let server = Server::start(&["--workers", "1100", "--quiet"]);
    let (mut observer, _) = server.join();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect_timeout(&server.addr(), TIMEOUT).expect("connect"));
    }
    let everyone = format!("({} online)", IDLE + 1);
    wait_for_line(&mut observer, Duration::from_secs(60), |line| {
        line.ends_with(&everyone)
    });
    let base = server.proc_status("VmRSS");

    let who = "/who\n".repeat(WHO_EACH);
    let mut attackers = Vec::with_capacity(ATTACKERS);
    for _ in 0..ATTACKERS {
        let mut attacker = Client::connect_small(server.addr());
        attacker.send_raw(who.as_bytes());
        attackers.push(attacker);
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut dropped = 0;
    let mut peak = base;
    while dropped < ATTACKERS {
        peak = peak.max(server.proc_status("VmRSS"));
        assert!(
            peak - base < GROWTH_KB,
            "RSS grew by {} MB with {dropped} of {ATTACKERS} dropped (base {} MB)",
            (peak - base) / 1024,
            base / 1024
        );
        assert!(
            Instant::now() < deadline,
            "only {dropped} of {ATTACKERS} dropped as too slow; RSS grew by {} MB",
            (peak - base) / 1024
        );
        if let Some(line) = observer.try_recv(Duration::from_millis(100)) {
            if line.ends_with("left (too slow)") {
                dropped += 1;
            }
        }
    }
    eprintln!(
        "RSS base {} MB, peak growth {} MB",
        base / 1024,
        (peak - base) / 1024
    );
    drop(idle);
}

/// Reads lines until one satisfies `pred`, for up to `within`.
fn wait_for_line(client: &mut Client, within: Duration, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching line within {within:?}");
        if let Some(line) = client.try_recv(left.min(TIMEOUT)) {
            if pred(&line) {
                return;
            }
        }
    }
}

/// `--sendq 8`: a paste of 100 lines (within `--burst`) reaches all three
/// readers, who read at full speed; none is dropped as too slow (the
/// paste is relayed in batches of 64, past four times `--sendq`).
#[test]
fn a_paste_reaches_every_reader_with_a_small_sendq() {
    for sendq in ["8", "16"] {
        let server = Server::start(&["--sendq", sendq]);
        let (mut paster, _) = server.join();
        let mut readers: Vec<Client> = (0..3).map(|_| server.join().0).collect();
        // Everyone has seen everyone join: the paste is the next chat line.
        let online = "(4 online)";
        paster.recv_until(|line| line.ends_with(online));
        for (i, reader) in readers.iter_mut().enumerate() {
            if i < 2 {
                reader.recv_until(|line| line.ends_with(online));
            }
        }
        let paste: String = (0..100).map(|n| format!("line {n}\n")).collect();
        paster.send_raw(paste.as_bytes());
        let got: Vec<thread::JoinHandle<Vec<String>>> = readers
            .into_iter()
            .map(|mut reader| {
                thread::spawn(move || {
                    let mut chat = Vec::new();
                    while chat.len() < 100 {
                        let Some(line) = reader.try_recv(TIMEOUT) else {
                            break;
                        };
                        if line.starts_with('<') {
                            chat.push(line);
                        } else if line.starts_with('!') {
                            chat.push(line);
                            break;
                        }
                    }
                    chat
                })
            })
            .collect();
        for reader in got {
            let chat = reader.join().expect("reader thread");
            let want: Vec<String> = (0..100).map(|n| format!("<guest-1> line {n}")).collect();
            assert_eq!(
                chat,
                want,
                "--sendq {sendq}: a reader got {} lines; server log:\n{}",
                chat.len(),
                server.stderr()
            );
        }
    }
}

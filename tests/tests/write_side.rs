//! The write side against the real binary: a client that was kicked or left
//! does not hold the shutdown past its deadline, and `--help` describes
//! `--sendq-bytes` as the server counts it.

use std::io::Read;
use std::net::Shutdown;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::{bin, Server};

/// SPEC: the server is gone within 2 s of Ctrl+C or `/quit`.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

/// The server's own delivery deadline at shutdown (`shutdown::GRACE`, 1 s),
/// plus room for a writer's poll (100 ms) and a busy machine. A kicked
/// client's queue may otherwise drain for `LEAVE_DRAIN` (2 s) after the kick.
const STOPPED_WITHIN_MS: u64 = 1500;

/// Bytes of each line sent to the stalled client.
const BIG_LINE: usize = 500_000;

/// How many: 4 MB, far more than a 4 KiB receive window and the kernel's
/// send buffer take, so its writer is still blocked when the server stops.
const BIG_LINES: usize = 8;

/// How the stalled client reads.
#[derive(Clone, Copy)]
enum Reading {
    /// Not at all.
    Never,
    /// [`TRICKLE_BYTES`] every [`TRICKLE_EVERY`]: its socket takes a little
    /// in every writer's poll, so each blocking write returns short instead
    /// of timing out.
    Trickle,
}

/// Bytes the trickling client reads at a time.
const TRICKLE_BYTES: usize = 1024;

/// How often it reads them: 100 KB/s, 40 s for the 4 MB.
const TRICKLE_EVERY: Duration = Duration::from_millis(10);

/// Joins a talker and a small-buffered client that reads as `reading`
/// says, sends the latter 4 MB, kicks it once its writer is blocked, then
/// stops the server with the console's `/quit`. Returns how long the exit
/// took and the summary's `stopped in` milliseconds.
fn quit_after_kicking_a_stalled_client(reading: Reading) -> (Duration, u64) {
    let mut server = Server::start(&[
        "--max-line",
        "1048576",
        "--rate-limit",
        "0",
        "--sendq-bytes",
        "67108864",
    ]);
    let (mut talker, _) = server.join();
    let (stalled, stalled_name) = server.join_small();
    // The talker sees the stalled client join, so the relay below reaches
    // it.
    talker.recv_until(|line| line.contains(&format!("{stalled_name} joined")));
    let reader = match reading {
        Reading::Never => None,
        Reading::Trickle => {
            let mut stream = stalled.stream().try_clone().expect("clone stream");
            Some(thread::spawn(move || {
                let mut buf = [0; TRICKLE_BYTES];
                let until = Instant::now() + Duration::from_secs(20);
                // Until end of stream, an error, or 20 s.
                while Instant::now() < until && matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                    thread::sleep(TRICKLE_EVERY);
                }
            }))
        }
    };
    let big = "x".repeat(BIG_LINE);
    for _ in 0..BIG_LINES {
        talker.send(&big);
    }
    // Its socket is full: a writer thread of its own is blocked on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.threads_named("writer-") == 0 {
        assert!(Instant::now() < deadline, "no writer thread was started");
        thread::sleep(Duration::from_millis(10));
    }
    server.console(&format!("/kick {stalled_name}"));
    talker.recv_until(|line| line == format!("* {stalled_name} left (kicked)"));

    let started = Instant::now();
    server.console("/quit");
    let status = server.wait_exit(SHUTDOWN_LIMIT + Duration::from_secs(3));
    let took = started.elapsed();
    assert!(status.success(), "{status:?}; stderr:\n{}", server.stderr());
    let stderr = server.stderr();
    let stopped_ms: u64 = stderr
        .lines()
        .find_map(|line| line.split("stopped in ").nth(1))
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    // The server's kernel may still be sending it what was in the socket:
    // stop reading.
    let _ = stalled.stream().shutdown(Shutdown::Both);
    if let Some(reader) = reader {
        reader.join().expect("the trickling reader");
    }
    (took, stopped_ms)
}

/// A client that never reads is kicked with megabytes still queued for it
/// (its queue drains for up to 2 s), then the console says `/quit`: the
/// shutdown's 1 s deadline binds that queue too, so the server stops in
/// about 1 s. (Before the fix `Writers::stop` joined the kicked client's
/// writer until its own deadline: `stopped in` about 2,000 ms.)
#[test]
fn a_kicked_client_does_not_hold_the_shutdown() {
    let (took, stopped_ms) = quit_after_kicking_a_stalled_client(Reading::Never);
    assert!(
        stopped_ms < STOPPED_WITHIN_MS,
        "stopped in {stopped_ms} ms: the kicked client's drain outlived the shutdown deadline"
    );
    assert!(took < SHUTDOWN_LIMIT, "exit took {took:?}");
}

/// The same with a client that reads a trickle: every blocking write to it
/// returns short after the poll instead of failing, and its writer must
/// still look up and give up at the deadline. (Before the fix a short write
/// never asked, and the shutdown waited for the 4 MB to trickle out.)
#[test]
fn a_trickling_client_does_not_hold_the_shutdown() {
    let (took, stopped_ms) = quit_after_kicking_a_stalled_client(Reading::Trickle);
    assert!(
        stopped_ms < STOPPED_WITHIN_MS,
        "stopped in {stopped_ms} ms: the trickling client's writer never gave up"
    );
    assert!(took < SHUTDOWN_LIMIT, "exit took {took:?}");
}

/// `--help` says `--sendq-bytes` counts once the socket is full, like
/// `--sendq` (it said "socket full or not").
#[test]
fn help_describes_sendq_bytes_as_counted() {
    let out = Command::new(bin("chat-server"))
        .arg("--help")
        .output()
        .expect("run chat-server --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    // The flag's line and the lines after it, up to the next flag.
    let mut lines = help
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("--sendq-bytes"));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("--help lacks --sendq-bytes:\n{help}"));
    let rest = lines.take_while(|line| !line.trim_start().starts_with('-'));
    let entry = std::iter::once(first)
        .chain(rest)
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!entry.contains("socket full or not"), "{entry}");
    assert!(
        entry.contains("once its socket is full") && entry.contains("four times that"),
        "{entry}"
    );
}

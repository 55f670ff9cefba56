//! The write side against the real binary: a client that was kicked or left
//! does not hold the shutdown past its deadline, and `--help` describes
//! `--sendq-bytes` as the server counts it.

use std::process::Command;
use std::time::{Duration, Instant};

use chat_tests::{bin, Server};

/// SPEC: the server is gone within 2 s of Ctrl+C or `/quit`.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

/// The server's own delivery deadline at shutdown (`shutdown::GRACE`, 1 s),
/// plus room for a writer's poll (100 ms) and a busy machine. A kicked
/// client's queue may otherwise drain for `LINGER` (2 s) after the kick.
const STOPPED_WITHIN_MS: u64 = 1500;

/// Bytes of each line sent to the stalled client.
const BIG_LINE: usize = 500_000;

/// How many: 4 MB, far more than a 4 KiB receive window and the kernel's
/// send buffer take, so its writer is still blocked when the server stops.
const BIG_LINES: usize = 8;

/// A client that never reads is kicked with megabytes still queued for it
/// (its queue drains for up to 2 s), then the console says `/quit`: the
/// shutdown's 1 s deadline binds that queue too, so the server stops in
/// about 1 s. (Before the fix `Writers::stop` joined the kicked client's
/// writer until its own deadline: `stopped in` about 2,000 ms.)
#[test]
fn a_kicked_client_does_not_hold_the_shutdown() {
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
    let big = "x".repeat(BIG_LINE);
    for _ in 0..BIG_LINES {
        talker.send(&big);
    }
    // Its socket is full: a writer thread of its own is blocked on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.threads_named("writer-") == 0 {
        assert!(Instant::now() < deadline, "no writer thread was started");
        std::thread::sleep(Duration::from_millis(10));
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
    assert!(
        stopped_ms < STOPPED_WITHIN_MS,
        "stopped in {stopped_ms} ms: the kicked client's drain outlived the shutdown deadline"
    );
    assert!(took < SHUTDOWN_LIMIT, "exit took {took:?}");
    drop(stalled);
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

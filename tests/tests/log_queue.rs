//! Logging never blocks the server (issue 12): with a stderr pipe that
//! nobody reads, log lines queue up to a bound and are then dropped and
//! counted, and the room goes on relaying.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::{bin, raise_fd_limit, welcome_name, Captured, Client, TIMEOUT};

/// Idle clients connected first: their join and connect lines fill a 64 KiB
/// pipe many times over.
const IDLE: usize = 2_000;

/// The server process, killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `chat-server` on a loopback port with room for [`IDLE`] clients
/// and `args`, its stderr a pipe shrunk to one page (4 KiB) that the caller
/// reads, or not. Returns the server, its stderr and its stdout lines.
fn spawn_small_stderr(args: &[&str], stdin: Stdio) -> (Reaped, ChildStderr, Receiver<String>) {
    let mut child = Command::new(bin("chat-server"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--workers", "2100"])
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat-server");
    let (tx, stdout) = mpsc::channel();
    Captured::drain(child.stdout.take().expect("piped"), Some(tx));
    let stderr = child.stderr.take().expect("piped");
    nix::fcntl::fcntl(&stderr, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).expect("shrink the pipe");
    (Reaped(child), stderr, stdout)
}

/// The address on the server's first stdout line, within [`TIMEOUT`].
fn address(stdout: &Receiver<String>) -> SocketAddr {
    let first = stdout.recv_timeout(TIMEOUT).expect("the address line");
    first
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
}

/// [`IDLE`] connections to `addr`, held open by the caller.
fn connect_idle(addr: SocketAddr) -> Vec<TcpStream> {
    (0..IDLE)
        .map(|_| TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect"))
        .collect()
}

/// A server whose stderr is never read, 2,000 idle clients, then two more:
/// a line from one reaches the other. Once the test starts reading stderr,
/// the logger says how many lines it dropped.
#[test]
fn an_unread_stderr_does_not_stop_the_room() {
    raise_fd_limit(IDLE as u64 + 300);
    // Stderr held, never read until the end: the pipe fills and stays
    // full. At its smallest (one page) it holds a few dozen lines, so the
    // 2,000 joins overflow the server's log queue too.
    let (server, mut stderr, stdout) = spawn_small_stderr(&[], Stdio::piped());
    let addr = address(&stdout);

    let idle = connect_idle(addr);
    let mut alice = Client::connect(addr);
    alice.recv_until(|l| l.starts_with("* welcome"));
    let mut bob = Client::connect(addr);
    let welcome = bob.recv_until(|l| l.starts_with("* welcome"));
    let bob_name = welcome_name(welcome.last().expect("a line"))
        .expect("a name")
        .to_string();
    bob.send("still relayed");
    let want = format!("<{bob_name}> still relayed");
    alice.recv_until(|l| l == want);

    // Now read stderr: once the pipe drains, the count of dropped lines.
    let text = Arc::new(Mutex::new(String::new()));
    {
        let text = Arc::clone(&text);
        thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let deadline = Instant::now() + TIMEOUT;
    while !text
        .lock()
        .unwrap()
        .contains(" dropped while stderr was not being read")
    {
        assert!(
            Instant::now() < deadline,
            "no count of dropped log lines; stderr ends:\n{}",
            tail(&text.lock().unwrap())
        );
        thread::sleep(Duration::from_millis(10));
    }
    drop(idle);
    drop(server);
}

/// A server whose stderr is read slowly (a small pipe, a few hundred bytes
/// at a time), 2,000 echo clients, then Ctrl+C: it exits 0 within SPEC's
/// 2 s and its stderr ends with the summary, whatever was lost before it
/// (before the fix: exit 0, no summary).
#[test]
fn a_slowly_read_stderr_still_ends_with_the_summary() {
    /// Bytes read from stderr at a time, and the pause after each read.
    const SIP: usize = 256;
    const PAUSE: Duration = Duration::from_millis(5);
    raise_fd_limit(IDLE as u64 + 300);
    let (mut server, mut stderr, stdout) = spawn_small_stderr(&["--mode", "echo"], Stdio::null());
    let pid = server.0.id();
    let reader = thread::spawn(move || {
        let deadline = Instant::now() + 3 * TIMEOUT;
        let mut text = Vec::new();
        let mut buf = [0u8; SIP];
        while Instant::now() < deadline {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
            }
            thread::sleep(PAUSE);
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let addr = address(&stdout);
    let idle = connect_idle(addr);
    chat_tests::signal(pid, "INT");
    let signalled = Instant::now();
    let status = chat_tests::wait_timeout(&mut server.0, TIMEOUT).expect("the server did not exit");
    assert!(status.success(), "{status:?}");
    // SPEC: 2 s; the rest is slack for a loaded machine.
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "{:?}",
        signalled.elapsed()
    );
    let text = reader.join().expect("the stderr reader");
    let last = text.lines().last().unwrap_or("");
    assert!(
        last.contains("stopped in"),
        "stderr does not end with the summary; it ends:\n{}",
        tail(&text)
    );
    drop(idle);
}

/// The last lines of `text`, for a failure message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

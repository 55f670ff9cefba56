//! Support for the integration tests: start the real binaries, talk to them
//! with bounded waits, and clean up on drop.
//!
//! Every wait here has a deadline ([`TIMEOUT`] unless a test says otherwise)
//! and every read has a timeout, so a broken server fails a test instead of
//! hanging it. A failure message carries the server's stderr.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod hosts;
pub mod labs;
pub mod proxy;
pub mod redis;
pub mod rooms;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single expected event may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest read timeout a helper sets: `set_read_timeout(Some(0))`
/// fails with `InvalidInput`.
pub const MIN_WAIT: Duration = Duration::from_millis(1);

/// Path of a workspace binary (`chat-server`, `chat-client`), next to the
/// test executable's `deps/` folder. `make test` builds them first.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (make test does) first",
        path.display()
    );
    path
}

/// What [`read_lines_until`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A whole line, without its LF.
    Line(String),
    /// A read timed out with this many bytes of a line read and no LF yet
    /// (told at every such timeout, so silence can be told from half a line).
    Partial(usize),
}

/// Reads LF-terminated lines from `stream` (which should have a read
/// timeout) and hands each, without its LF, to `each`, until end of stream,
/// `each` returns `false`, or `stop` is found set after a read times out.
/// A timeout keeps what was read of a line so far, and tells `each` of it.
///
/// # Errors
/// The read error that ended it (not a timeout), or `UnexpectedEof` when
/// the stream ended inside a line (the bytes in the message): a last line
/// without its LF is never dropped in silence.
pub fn read_lines_until(
    stream: TcpStream,
    stop: &AtomicBool,
    mut each: impl FnMut(Heard) -> bool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) if buf.is_empty() => return Ok(()),
            Ok(_) if buf.last() != Some(&b'\n') => {
                let partial = String::from_utf8_lossy(&buf).into_owned();
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("the stream ended inside a line: {partial:?}"),
                ));
            }
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches('\n')
                    .to_string();
                buf.clear();
                if !each(Heard::Line(line)) {
                    return Ok(());
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !buf.is_empty() && !each(Heard::Partial(buf.len())) {
                    return Ok(());
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends a signal (`INT`, `TERM`, `KILL`, `STOP`, `CONT`) to a process we
/// started. In-process (`kill(2)`), so a timed shutdown does not also time
/// starting a `kill` program.
pub fn signal(pid: u32, sig: &str) {
    let signal: nix::sys::signal::Signal = format!("SIG{sig}")
        .parse()
        .unwrap_or_else(|e| panic!("signal {sig}: {e}"));
    let pid = i32::try_from(pid).expect("a pid fits in i32");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
}

/// Whether a socket bound to `::` also takes IPv4 (dual stack): false
/// without IPv6, or with `net.ipv6.bindv6only` set.
pub fn dual_stack() -> bool {
    let Ok(listener) = std::net::TcpListener::bind("[::]:0") else {
        return false;
    };
    let Ok(local) = listener.local_addr() else {
        return false;
    };
    let v4 = SocketAddr::from(([127, 0, 0, 1], local.port()));
    TcpStream::connect_timeout(&v4, TIMEOUT).is_ok()
}

/// Raises this test process's soft open-file limit to its hard limit, for
/// a test that holds thousands of sockets (as the server does for itself).
///
/// # Panics
/// With one clear line when the hard limit leaves fewer than `need`
/// descriptors, rather than a `connect` failing somewhere later.
pub fn raise_fd_limit(need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    assert!(
        hard >= need,
        "this test needs {need} open files and the hard limit is {hard}: raise it (ulimit -Hn)"
    );
}

/// Waits for `child` to exit, up to `timeout`; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `chat-server` with `args` until it exits (it must, within
/// [`TIMEOUT`]); returns its exit code and stderr.
pub fn run_server_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(bin("chat-server"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat-server");
    let stderr = Captured::drain(child.stderr.take().expect("piped"), None);
    let status = wait_timeout(&mut child, TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chat-server {args:?} did not exit");
    });
    assert!(stderr.wait_end(TIMEOUT), "stderr stayed open after exit");
    (status.code(), stderr.text())
}

/// Collects a child's output pipe on a thread, so the child never blocks on
/// a full pipe, and hands out what it has read so far.
#[derive(Clone, Default)]
pub struct Captured(Arc<(Mutex<String>, AtomicBool)>);

impl Captured {
    /// Starts draining `pipe`; each line is also sent to `lines` if given.
    pub fn drain(pipe: impl Read + Send + 'static, lines: Option<mpsc::Sender<String>>) -> Self {
        let captured = Captured::default();
        let sink = captured.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while let Ok(n) = reader.read_until(b'\n', &mut buf) {
                if n == 0 {
                    break;
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                sink.0 .0.lock().unwrap().push_str(&line);
                if let Some(tx) = &lines {
                    let _ = tx.send(line.trim_end_matches(['\n', '\r']).to_string());
                }
                buf.clear();
            }
            sink.0 .1.store(true, Ordering::Release);
        });
        captured
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.0 .0.lock().unwrap().clone()
    }

    /// Waits until the pipe's writer closed it (the child exited) and all
    /// of it was read; `false` if that takes longer than `timeout`.
    pub fn wait_end(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.0 .1.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

/// A running `chat-server`, killed and reaped on drop.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Captured,
}

impl Server {
    /// Starts `chat-server` on 127.0.0.1, port 0, with `args` added, and
    /// waits for the first stdout line naming the address.
    pub fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(bin("chat-server"));
        cmd.args(["--bind", "127.0.0.1", "--port", "0"]).args(args);
        Server::spawn(cmd)
    }

    /// Starts a prepared `chat-server` command (for a custom environment or
    /// `ulimit`) and waits for its address line.
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat-server");
        let (tx, stdout) = mpsc::channel();
        Captured::drain(child.stdout.take().expect("piped"), Some(tx));
        let stderr = Captured::drain(child.stderr.take().expect("piped"), None);
        let stdin = child.stdin.take();
        let first = match stdout.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server printed no address; stderr:\n{}", stderr.text());
            }
        };
        let addr = first
            .split_whitespace()
            .last()
            .and_then(|word| word.parse().ok())
            .unwrap_or_else(|| panic!("first stdout line names no address: {first:?}"));
        Server {
            child,
            addr,
            stdin,
            stdout,
            stderr,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits until the server's stderr contains `text`.
    pub fn stderr_until(&self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "stderr never said {text:?}:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Connects a new client.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Connects a client and reads its welcome line, returning its name.
    pub fn join(&self) -> (Client, String) {
        Self::welcomed(self.connect())
    }

    /// Joins a client that will stop reading, with a small receive buffer:
    /// see [`Client::connect_small`].
    pub fn join_small(&self) -> (Client, String) {
        Self::welcomed(Client::connect_small(self.addr))
    }

    fn welcomed(mut client: Client) -> (Client, String) {
        let welcome = client.recv();
        let name = welcome_name(&welcome)
            .unwrap_or_else(|| panic!("not a welcome line: {welcome:?}"))
            .to_string();
        (client, name)
    }

    /// Types a line on the server's console (its stdin).
    pub fn console(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to server console");
        stdin.flush().expect("flush server console");
    }

    /// Writes bytes exactly as given to the server's console (its stdin),
    /// for input that is not UTF-8.
    pub fn console_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).expect("write to server console");
        stdin.flush().expect("flush server console");
    }

    /// Closes the server's stdin.
    pub fn close_console(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stdout line (after the address line) matching `pred`.
    pub fn stdout_until(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no matching stdout line; stderr:\n{}", self.stderr())
                }
            }
        }
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Waits for the server to exit, failing the test after `timeout`.
    /// Then waits (up to [`TIMEOUT`]) until its stderr is read to the end,
    /// so [`Server::stderr`] holds its last words.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let status = match wait_timeout(&mut self.child, timeout) {
            Some(status) => status,
            None => panic!(
                "server still running after {timeout:?}; stderr:\n{}",
                self.stderr()
            ),
        };
        assert!(
            self.stderr.wait_end(TIMEOUT),
            "the server exited but its stderr stayed open; stderr:\n{}",
            self.stderr()
        );
        status
    }

    /// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`), or a count
    /// (`Threads`).
    pub fn proc_status(&self, field: &str) -> u64 {
        proc_status(self.pid(), field)
    }

    /// How many of the server's threads have a name starting with `prefix`
    /// (`writer-` threads exist only while a client's socket is full).
    pub fn threads_named(&self, prefix: &str) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .expect("read /proc/pid/task")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with(prefix))
            .count()
    }

    /// How many file descriptors the server has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/pid/fd")
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A numeric field of `/proc/<pid>/status` (kB for memory fields).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The `guest-N` (or other) name a welcome line gives, if it is one.
pub fn welcome_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("* welcome, ")?;
    let end = rest.find(['!', ' ', ','])?;
    Some(&rest[..end])
}

/// What one bounded read of a [`Client`] brought.
enum Next {
    /// A whole line, without its LF.
    Line(String),
    /// Nothing, or only part of a line (kept), within the timeout.
    Timeout,
    /// End of stream.
    Eof,
}

/// A test's TCP connection to the server; every read has a timeout.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Bytes of a line begun before a read timed out: the next read goes on
    /// from them, and [`Client::assert_silent`] sees them.
    partial: Vec<u8>,
}

impl Client {
    /// Connects to `addr` with read timeouts set.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to server");
        Client::with(stream)
    }

    /// Connects with a receive buffer of 4 KiB (set before the handshake,
    /// so the window stays small), for a client that stops reading: the
    /// kernel then holds little for it whatever the machine's TCP autotuning
    /// limits, and the server's queue for it fills sooner.
    pub fn connect_small(addr: SocketAddr) -> Client {
        Client::with(labs::connect_small_window(addr))
    }

    /// A client on a stream already connected (from a chosen source
    /// address, say: [`hosts`]); sets its read timeouts.
    pub fn from_stream(stream: TcpStream) -> Client {
        Client::with(stream)
    }

    fn with(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
        let writer = stream.try_clone().expect("clone stream");
        Client {
            reader: BufReader::new(stream),
            writer,
            partial: Vec::new(),
        }
    }

    /// Another handle on the same connection, for writing from a second
    /// thread while the first reads.
    pub fn try_clone(&self) -> Client {
        let stream = self.writer.try_clone().expect("clone stream");
        Client {
            writer: stream.try_clone().expect("clone stream"),
            reader: BufReader::new(stream),
            partial: Vec::new(),
        }
    }

    /// Sends `line` and a LF.
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Sends bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to server");
    }

    /// The next line (without LF), failing the test if none comes in time.
    pub fn recv(&mut self) -> String {
        match self.try_recv(TIMEOUT) {
            Some(line) => line,
            None => panic!("no line from server within {TIMEOUT:?}"),
        }
    }

    /// The next line within `timeout`, or `None` on timeout or EOF. Bytes
    /// of a line that has not ended by then are kept for the next call.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<String> {
        match self.next_line(timeout) {
            Next::Line(line) => Some(line),
            Next::Timeout | Next::Eof => None,
        }
    }

    /// What one read within `timeout` brings: a whole line, nothing yet
    /// (a partial line is kept), or end of stream.
    fn next_line(&mut self, timeout: Duration) -> Next {
        // A zero timeout is an error to `set_read_timeout`; past a caller's
        // deadline, wait the least there is instead.
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout.max(MIN_WAIT)))
            .expect("set timeout");
        let result = self.reader.read_until(b'\n', &mut self.partial);
        self.reader
            .get_ref()
            .set_read_timeout(Some(TIMEOUT))
            .expect("set timeout");
        match result {
            Ok(_) if self.partial.ends_with(b"\n") => {
                let mut buf = std::mem::take(&mut self.partial);
                buf.pop();
                Next::Line(String::from_utf8(buf).expect("server sends UTF-8"))
            }
            Ok(0) => Next::Eof,
            Ok(_) => panic!(
                "line without LF at end of stream: {:?}",
                String::from_utf8_lossy(&self.partial)
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Next::Timeout
            }
            Err(e) => panic!("read from server: {e}"),
        }
    }

    /// Reads lines until one satisfies `pred`; returns every line read,
    /// the match last.
    pub fn recv_until(&mut self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_recv(left) {
                Some(line) => {
                    let done = pred(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                None => panic!("no matching line; saw {seen:?}"),
            }
        }
    }

    /// Reads until end of stream, returning the lines read on the way;
    /// fails the test if the server keeps the connection open.
    pub fn recv_to_eof(&mut self) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(MIN_WAIT)))
                .expect("set timeout");
            let mut buf = std::mem::take(&mut self.partial);
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) if buf.is_empty() => return seen,
                Ok(0) => {
                    seen.push(String::from_utf8_lossy(&buf).trim_end().to_string());
                    return seen;
                }
                Ok(_) => seen.push(String::from_utf8_lossy(&buf).trim_end().to_string()),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return seen,
                Err(e) => panic!("connection not closed in time ({e}); saw {seen:?}"),
            }
        }
    }

    /// Asserts that nothing arrives for `quiet`: no line, no byte of an
    /// unfinished one, and no end of stream (a client the server hung up
    /// on hears nothing too, but it is not a silent connection).
    pub fn assert_silent(&mut self, quiet: Duration) {
        match self.next_line(quiet) {
            Next::Timeout => {}
            Next::Line(line) => panic!("expected silence, got {line:?}"),
            Next::Eof => panic!("expected silence, but the server closed the connection"),
        }
        assert!(
            self.partial.is_empty(),
            "expected silence, got part of a line: {:?}",
            String::from_utf8_lossy(&self.partial)
        );
    }

    /// Half-closes the connection: the server sees end of stream.
    pub fn shutdown_write(&self) {
        let _ = self.writer.shutdown(Shutdown::Write);
    }

    /// The underlying stream, for socket options.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }
}

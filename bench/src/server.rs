//! Starting and stopping the server under test: chat-server or ncat.
//!
//! Each workload gets a fresh server process, so peak RSS and CPU time belong
//! to that workload alone. The child is killed and reaped on drop.

use std::{
    ffi::OsString,
    fs::File,
    io::{self, BufRead, BufReader},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{sys::signal, unistd::Pid};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Which program is being measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// This project's server.
    ChatServer,
    /// `ncat -l --chat`, the reference.
    Ncat,
}

impl Kind {
    /// Name used in the table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ChatServer => "chat-server",
            Kind::Ncat => "ncat",
        }
    }
}

/// A server program to start once per workload.
#[derive(Debug, Clone)]
pub struct Target {
    /// Which program it is (decides its flags).
    pub kind: Kind,
    /// Path of the executable.
    pub bin: PathBuf,
}

/// A started server. Killed (SIGKILL) and reaped when dropped, unless it has
/// already been waited for.
pub struct Running {
    /// The child process; `None` once reaped.
    child: Option<Child>,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Its pid, for /proc and signals.
    pub pid: u32,
}

impl Target {
    /// Starts the server on a free loopback port, stderr to `log`; `extra`
    /// are chat-server flags beyond the common ones (ncat takes none).
    ///
    /// # Errors
    /// The program cannot be started, exits, or does not listen in time.
    pub fn start(&self, log: &Path, extra: &[OsString]) -> io::Result<Running> {
        let stderr = File::create(log)?;
        match self.kind {
            Kind::ChatServer => self.start_chat_server(stderr, extra),
            Kind::Ncat => self.start_ncat(stderr),
        }
    }

    fn start_chat_server(&self, stderr: File, extra: &[OsString]) -> io::Result<Running> {
        let mut child = Command::new(&self.bin)
            .args(["--port", "0", "--bind", "127.0.0.1", "--rate-limit", "0"])
            .args(["--workers", "12000", "--queue", "1000", "--quiet"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let pid = child.id();
        // Read the first line on a helper thread (bounded wait), which then
        // keeps draining stdout so the server never blocks on it.
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("server-stdout".into())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut first = String::new();
                let _ = tx.send(reader.read_line(&mut first).map(|_| first));
                let _ = io::copy(&mut reader, &mut io::sink());
            })?;
        let mut running = Running {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
        };
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| io::Error::other("chat-server printed no address in time"))??;
        running.addr = line
            .split_whitespace()
            .last()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no address in {line:?}")))?;
        Ok(running)
    }

    fn start_ncat(&self, stderr: File) -> io::Result<Running> {
        // ncat cannot be told to pick a port and say which: take a free one.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&self.bin)
            .args(["-l", "--chat", "--max-conns", "5000", "127.0.0.1"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        let mut running = Running {
            pid: child.id(),
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // No probe connection: ncat quits when a client is gone before
            // it has asked for the peer's name. Watch /proc/net/tcp instead.
            if listening(port)? {
                return Ok(running);
            }
            if let Some(st) = running.try_wait()? {
                return Err(io::Error::other(format!("ncat exited: {st}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("ncat did not listen in time"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Starts a throwaway `redis-server` for a cluster workload: a free
/// loopback port, persistence off, `dir` as its working folder, its log to
/// `log`. Waited for through /proc/net/tcp like ncat.
///
/// # Errors
/// redis-server is missing, exits, or does not listen in time.
pub fn start_redis(log: &Path, dir: &Path) -> io::Result<Running> {
    let stderr = File::create(log)?;
    let stdout = stderr.try_clone()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(REDIS_SERVER)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{REDIS_SERVER}: {e}")))?;
    let mut running = Running {
        pid: child.id(),
        child: Some(child),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if listening(port)? {
            return Ok(running);
        }
        if let Some(st) = running.try_wait()? {
            return Err(io::Error::other(format!("redis-server exited: {st}")));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other("redis-server did not listen in time"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The Redis server the cluster workloads start (Debian's package).
const REDIS_SERVER: &str = "redis-server";

/// Whether some socket listens on 127.0.0.1:`port` (per /proc/net/tcp).
fn listening(port: u16) -> io::Result<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let local = format!("0100007F:{port:04X}");
    Ok(table.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        // sl, local_address, rem_address, st (0A = LISTEN)
        f.nth(1) == Some(local.as_str()) && f.nth(1) == Some("0A")
    }))
}

impl Running {
    /// Sends SIGINT, as Ctrl+C would.
    ///
    /// # Errors
    /// The process is gone.
    pub fn interrupt(&self) -> io::Result<()> {
        let pid = i32::try_from(self.pid).map_err(io::Error::other)?;
        signal::kill(Pid::from_raw(pid), signal::Signal::SIGINT).map_err(io::Error::from)
    }

    /// Reaps the child if it has exited.
    ///
    /// # Errors
    /// `waitpid` failed.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => {
                let st = c.try_wait()?;
                if st.is_some() {
                    self.child = None;
                }
                Ok(st)
            }
            None => Ok(None),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

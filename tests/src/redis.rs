//! A real `redis-server` for the cluster tests: started on a free loopback
//! port with persistence off, killed (SIGKILL) and restarted on the same port
//! on demand, killed and reaped on drop.
//!
//! It never touches a system instance: its own port, its own empty working
//! directory, no config file, no RDB or AOF written (`--save ''
//! --appendonly no`), so a restart always comes back empty, like a Redis
//! that lost its memory.

use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{signal, wait_timeout, Captured, TIMEOUT};

/// How long a just-started redis-server may take to answer `PING`.
pub const START_DEADLINE: Duration = Duration::from_secs(10);

/// A `redis-server` child process on 127.0.0.1.
pub struct Redis {
    /// The running process; `None` between [`Redis::kill`] and
    /// [`Redis::restart`].
    child: Option<Child>,
    /// Its port, kept across restarts so the chat servers find it again.
    port: u16,
    /// Its working directory (empty: nothing is persisted), removed on drop.
    dir: PathBuf,
    /// Extra arguments (`--requirepass x`), given again on restart.
    extra: Vec<String>,
    /// Its log, for a failure message.
    log: Captured,
}

impl Redis {
    /// Starts a redis-server on a free loopback port and waits until it
    /// answers `PING`.
    ///
    /// # Panics
    /// With one clear line when `redis-server` is not installed (`.ci/run`
    /// installs it), or when it does not answer in time.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// Like [`Redis::start`], with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("chat-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create redis working directory");
        let mut redis = Redis {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: Captured::default(),
        };
        redis.restart();
        redis
    }

    /// The `--redis` URL the chat servers are given.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything redis-server logged so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Kills it with SIGKILL (no goodbye to its clients, nothing saved) and
    /// reaps it. Afterwards nothing listens on its port.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL");
            assert!(
                wait_timeout(&mut child, TIMEOUT).is_some(),
                "redis-server outlived SIGKILL"
            );
        }
    }

    /// Starts it again on the same port (empty), waiting until it answers.
    /// Kills the running one first, if any.
    ///
    /// # Panics
    /// When it does not answer within [`START_DEADLINE`].
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let mut child = match Command::new("redis-server")
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--protected-mode", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .args(&self.extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
            {
                Ok(child) => child,
                Err(e) => panic!(
                    "cannot start redis-server ({e}): install it (apt-get install redis-server; .ci/run does)"
                ),
            };
            self.log = Captured::drain(child.stdout.take().expect("piped"), None);
            Captured::drain(child.stderr.take().expect("piped"), None);
            if self.answers(&mut child, deadline) {
                self.child = Some(child);
                return;
            }
            // It exited (a just-freed port still held by the kernel is the
            // usual reason): try again until the deadline.
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {} within {START_DEADLINE:?}; its log:\n{}",
                self.port,
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `child` answers a `PING` (true), or exits or the deadline
    /// passes (false).
    fn answers(&self, child: &mut Child, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if let Ok(reply) = self.try_command(&["PING"]) {
                // A server with --requirepass answers NOAUTH: it is up.
                if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
                    return true;
                }
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Sends one command in RESP and returns the first line of its reply
    /// (`+OK`, `:3`, `$5` ...), for a test that pokes at Redis directly.
    ///
    /// # Panics
    /// When Redis does not answer.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Waits until a client's command named `cmd` (as `CLIENT LIST` names
    /// it: `evalsha`) is held by a `CLIENT PAUSE` (its flags have `b`),
    /// within [`TIMEOUT`].
    ///
    /// # Panics
    /// When none is by then (after lifting the pause), listing the clients.
    pub fn wait_held(&self, cmd: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let clients = self.query(&["CLIENT", "LIST"]).concat();
            let held = clients.lines().any(|c| {
                c.contains(&format!(" cmd={cmd} "))
                    && c.split_whitespace()
                        .any(|f| f.starts_with("flags=") && f.contains('b'))
            });
            if held {
                return;
            }
            if Instant::now() > deadline {
                self.command(&["CLIENT", "UNPAUSE"]);
                panic!("no {cmd} was ever held:\n{clients}");
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lifts a `CLIENT PAUSE` and, in the same read, keeps Redis busy for
    /// `busy` in a read-only script (`EVAL_RO`, which no pause holds): what
    /// the pause held runs only after it, before Redis reads anything sent
    /// since (a connection closed meanwhile included). So a held command
    /// runs `busy` late, as if Redis had stalled with it unread; its sender
    /// sees Redis stop answering meanwhile. `busy` must stay under Redis's
    /// `busy-reply-threshold` (5 s by default), past which it would answer
    /// others `BUSY`.
    pub fn resume_late(&self, busy: Duration) {
        let script = "local s = redis.call('TIME') \
            repeat local t = redis.call('TIME') \
            until (t[1] - s[1]) * 1000000 + (t[2] - s[2]) >= tonumber(ARGV[1]) \
            return 1";
        let micros = busy.as_micros().to_string();
        let stream = self.open().expect("redis");
        let mut writer = stream.try_clone().expect("clone");
        let mut both = encode(&["CLIENT", "UNPAUSE"]);
        both.extend(encode(&["EVAL_RO", script, "0", &micros]));
        writer.write_all(&both).expect("redis: resume");
        let mut reader = BufReader::new(stream);
        let mut out = Vec::new();
        read_value(&mut reader, &mut out).expect("redis: UNPAUSE");
        read_value(&mut reader, &mut out).expect("redis: the busy script");
        assert_eq!(out, ["OK", "1"], "unpause, then busy");
    }

    /// Sends one command and returns the whole reply, flattened: one string
    /// per bulk or simple value, in order (nested arrays flattened), for a
    /// test that reads a key or a stream.
    pub fn query(&self, args: &[&str]) -> Vec<String> {
        let stream = self
            .open()
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"));
        let mut writer = stream.try_clone().expect("clone");
        writer
            .write_all(&encode(args))
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"));
        let mut reader = BufReader::new(stream);
        let mut out = Vec::new();
        read_value(&mut reader, &mut out).unwrap_or_else(|e| panic!("redis {args:?}: {e}"));
        out
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let stream = self.open()?;
        let mut writer = stream.try_clone()?;
        writer.write_all(&encode(args))?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line.trim_end().to_string())
    }

    fn open(&self) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        Ok(stream)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster tests import it from here: the one in the crate root.
pub use crate::run_server_to_exit;

/// A loopback port nothing listens on right now, outside the kernel's
/// range for ephemeral ports. A test holds Redis down and restarts it on
/// the same port: meanwhile a port from that range may be given to any
/// new socket, a chat server's listener bound to port 0 or a link
/// reconnecting to Redis (which then connects to itself), and the
/// restarted Redis could not bind it.
fn free_port() -> u16 {
    let (low, high) = ephemeral_ports();
    let (from, to) = if low >= 11_000 {
        (10_000, u32::from(low))
    } else if high < 64_535 {
        (u32::from(high) + 1, 65_536)
    } else {
        // No room outside it: the kernel's pick, as a last resort.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        return listener.local_addr().expect("local addr").port();
    };
    let start = RandomState::new().hash_one(std::process::id());
    (0..1000u64)
        .map(|i| from + ((start + i * 7919) % u64::from(to - from)) as u32)
        .map(|port| u16::try_from(port).expect("a port number"))
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free loopback port outside the ephemeral range")
}

/// The kernel's range for ephemeral ports (Linux's default when it cannot
/// be read).
fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// One command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one RESP value, pushing every scalar in it to `out`. An error
/// reply is returned as `Err` so a test sees it.
fn read_value(reader: &mut impl BufRead, out: &mut Vec<String>) -> std::io::Result<()> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => out.push(rest.to_string()),
        "-" => return Err(std::io::Error::other(rest.to_string())),
        "$" => {
            let len: i64 = rest.parse().map_err(std::io::Error::other)?;
            if len >= 0 {
                let mut buf = vec![0; len as usize + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(len as usize);
                out.push(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        "*" => {
            let len: i64 = rest.parse().map_err(std::io::Error::other)?;
            for _ in 0..len.max(0) {
                read_value(reader, out)?;
            }
        }
        _ => return Err(std::io::Error::other(format!("not RESP: {line:?}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The helper's own contract: it answers, a key survives nothing (kill
    /// and restart come back empty on the same port), and drop reaps it.
    #[test]
    fn starts_kills_restarts_and_reaps() {
        let mut redis = Redis::start();
        assert_eq!(redis.command(&["SET", "k", "v"]), "+OK");
        assert_eq!(redis.query(&["GET", "k"]), ["v"]);
        let port = redis.addr().port();
        let first = redis.pid().expect("running");

        redis.kill();
        assert!(redis.pid().is_none());
        assert!(
            TcpStream::connect_timeout(&redis.addr(), Duration::from_secs(1)).is_err(),
            "nothing listens after kill"
        );
        assert!(
            !std::path::Path::new(&format!("/proc/{first}")).exists(),
            "the killed redis-server was reaped"
        );

        redis.restart();
        assert_eq!(redis.addr().port(), port, "same port after restart");
        assert_eq!(redis.query(&["EXISTS", "k"]), ["0"], "restarted empty");
        assert_eq!(redis.query(&["CONFIG", "GET", "save"]), ["save", ""]);
        assert_eq!(
            redis.query(&["CONFIG", "GET", "appendonly"]),
            ["appendonly", "no"]
        );

        let second = redis.pid().expect("running again");
        drop(redis);
        assert!(
            !std::path::Path::new(&format!("/proc/{second}")).exists(),
            "drop killed and reaped redis-server"
        );
    }

    /// Its port is outside the kernel's ephemeral range (no socket bound to
    /// port 0, no outgoing connection, can take it while it is down), and
    /// two at once get two ports.
    #[test]
    fn ports_are_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_ports();
        let (a, b) = (Redis::start(), Redis::start());
        let room_outside = low >= 11_000 || high < 64_535;
        for port in [a.addr().port(), b.addr().port()] {
            assert!(
                !room_outside || !(low..=high).contains(&port),
                "{port} in {low}-{high}"
            );
        }
        assert_ne!(a.addr().port(), b.addr().port());
    }

    /// `--requirepass` is passed on: PING without AUTH is refused.
    #[test]
    fn extra_arguments_reach_redis() {
        let redis = Redis::start_with(&["--requirepass", "sesame"]);
        assert!(redis.command(&["PING"]).starts_with("-NOAUTH"));
    }
}

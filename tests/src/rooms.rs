//! Helpers for the rooms, history and transcript tests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{Client, Server, TIMEOUT};

/// A fresh, empty folder under the system's temporary folder for one test,
/// removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `/tmp/chat-test-<pid>-<name>`, emptied.
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("chat-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        TempDir(path)
    }

    /// A path inside the folder.
    pub fn join(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Joins `n` clients to `server`, draining every join notice, and returns
/// them with their names.
pub fn join_n(server: &Server, n: usize) -> Vec<(Client, String)> {
    let mut clients: Vec<(Client, String)> = Vec::new();
    for _ in 0..n {
        let (client, name) = server.join();
        for (other, _) in clients.iter_mut() {
            other.recv_until(|l| l.starts_with(&format!("* {name} joined")));
        }
        clients.push((client, name));
    }
    clients
}

/// Sends `/join room` and reads up to the answer naming the room (history
/// lines, if any, follow it).
pub fn join_room(client: &mut Client, room: &str) -> String {
    client.send(&format!("/join {room}"));
    client
        .recv_until(|l| l.starts_with("* you are now in #"))
        .pop()
        .expect("recv_until returns the match")
}

/// Waits until `path` holds a line containing `text`; returns the file.
pub fn file_until(path: &std::path::Path, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let body = std::fs::read_to_string(path).unwrap_or_default();
        if body.lines().any(|l| l.contains(text)) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{} never held {text:?} within {within:?}; it holds:\n{body}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The default deadline, for callers that want it by name.
pub const WAIT: Duration = TIMEOUT;

/// A FIFO made in a test's folder, with its reading end held open by the
/// test (so the server's open for writing does not wait for a reader), and
/// read only when the test says so.
pub struct Fifo {
    /// The reading end; non-blocking until [`Fifo::read_to_end`].
    reader: std::fs::File,
}

impl Fifo {
    /// Makes a FIFO at `path` (mode 0600) and opens its reading end.
    pub fn new(path: &std::path::Path) -> Fifo {
        use nix::sys::stat::Mode;
        use std::os::unix::fs::OpenOptionsExt;
        nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .expect("open the FIFO for reading");
        Fifo { reader }
    }

    /// How many bytes the FIFO holds before a writer blocks.
    pub fn capacity(&self) -> usize {
        let size = nix::fcntl::fcntl(&self.reader, nix::fcntl::FcntlArg::F_GETPIPE_SZ)
            .expect("F_GETPIPE_SZ");
        usize::try_from(size).expect("a pipe size is positive")
    }

    /// Reads on a thread until every writer closed the FIFO (the server
    /// exited, or was killed when the test's `Server` dropped); the thread
    /// returns what it read.
    pub fn read_to_end(self) -> std::thread::JoinHandle<Vec<u8>> {
        use std::io::Read;
        let mut reader = self.reader;
        nix::fcntl::fcntl(
            &reader,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .expect("make the FIFO's reading end blocking");
        std::thread::spawn(move || {
            let mut body = Vec::new();
            reader.read_to_end(&mut body).expect("read the FIFO");
            body
        })
    }
}

/// The count in a server's summary line: `N lines missing from the
/// transcript` (`1 line`).
pub fn missing_from_transcript(stderr: &str) -> u64 {
    stderr
        .split(", ")
        .find_map(|part| {
            let part = part.trim();
            part.strip_suffix(" lines missing from the transcript")
                .or_else(|| part.strip_suffix(" line missing from the transcript"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of missing lines:\n{stderr}"))
}

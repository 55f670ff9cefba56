//! Support for the lab-mode tests (stop line, file mode, UDP guard, log
//! queue): raw byte streams with bounded reads, scratch folders, a spoofed
//! UDP sender and a process's CPU time.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::TIMEOUT;

/// A raw TCP connection whose reads and writes time out.
pub fn connect_raw(addr: SocketAddr) -> TcpStream {
    timed(TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to server"))
}

/// [`connect_raw`] with a 4 KiB receive buffer set before the handshake: a
/// client the server's replies wait for, so they sit in the server's send
/// buffer, not ours (what a reset throws away).
pub fn connect_small_raw(addr: SocketAddr) -> TcpStream {
    timed(connect_small_window(addr))
}

/// Connects to `addr` with a receive buffer of 4 KiB, set before the
/// handshake so the window stays small whatever the machine's TCP
/// autotuning limits. No timeouts are set: the caller sets its own.
pub fn connect_small_window(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), TIMEOUT)
        .expect("connect to server");
    socket.into()
}

/// Sets [`TIMEOUT`] on `stream`'s reads and writes.
fn timed(stream: TcpStream) -> TcpStream {
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    stream
}

/// Reads until end of stream within [`TIMEOUT`]; a reset fails the test
/// (unlike [`read_to_eof`]): it names how many bytes came first.
pub fn read_to_clean_eof(stream: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no end of stream after {} bytes",
            got.len()
        );
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("{e} after {} bytes", got.len()),
        }
    }
}

/// Reads exactly `len` bytes within [`TIMEOUT`], failing the test with what
/// did arrive otherwise.
pub fn read_len(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = vec![0; len];
    let mut have = 0;
    while have < len {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {have} of {len} bytes arrived: {:?}",
            String::from_utf8_lossy(&got[..have])
        );
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut got[have..]) {
            Ok(0) => panic!(
                "end of stream after {have} of {len} bytes: {:?}",
                String::from_utf8_lossy(&got[..have])
            ),
            Ok(n) => have += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {have} of {len} bytes: {e}"),
        }
    }
    got
}

/// Reads one LF-terminated line (LF included), byte by byte so nothing
/// after it is consumed.
pub fn read_line(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    while line.last() != Some(&b'\n') {
        line.extend(read_len(stream, 1));
    }
    line
}

/// Asserts that no byte arrives for `quiet` (and the stream stays open).
pub fn assert_quiet(stream: &mut TcpStream, quiet: Duration) {
    stream.set_read_timeout(Some(quiet)).expect("timeout");
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => panic!("the server closed the connection"),
        Ok(n) => panic!(
            "expected silence, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(e) => panic!("read failed: {e}"),
    }
}

/// Reads until the server closes, within [`TIMEOUT`]; returns every byte.
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the server did not close; got {:?}",
            String::from_utf8_lossy(&got)
        );
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "the server did not close ({e}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// Sets `path`'s mode, whatever the umask gave it.
fn open_to_all(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A fresh folder under the system's temp dir (mode 0755, as is everything
/// it creates in it, whatever the umask), removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates `chat-<tag>-<pid>-<n>` under the temp dir, empty.
    pub fn new(tag: &str) -> Scratch {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chat-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch folder");
        open_to_all(&dir, 0o755);
        Scratch(dir)
    }

    /// Creates `rel` and the folders on the way, each 0755 whatever the
    /// umask (a server run as another user must be able to search them).
    pub fn dir(&self, rel: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(&path).expect("mkdir");
        let mut at = path.as_path();
        while at != self.0 {
            open_to_all(at, 0o755);
            at = at.parent().expect("inside the scratch folder");
        }
        path
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `rel` (creating folders on the way); returns the path.
    pub fn file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = Path::new(rel).parent() {
            self.dir(parent.to_str().expect("UTF-8 name"));
        }
        std::fs::write(&path, bytes).expect("write scratch file");
        open_to_all(&path, 0o644);
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Clock ticks per second in `/proc/<pid>/stat` (Linux's `USER_HZ`, 100 on
/// every architecture it exports to user space).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/pid/stat");
    // The command name may hold spaces and parentheses: fields count from
    // after its closing parenthesis (field 3, the state, is index 0).
    let rest = &stat[stat.rfind(')').expect("comm in parentheses") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> f64 { fields[i].parse::<f64>().expect("a tick count") };
    (ticks(11) + ticks(12)) / USER_HZ
}

/// Sends one UDP datagram to `to` with `payload` whose source claims to be
/// port `from_port` of the address the kernel picks for `to` (127.0.0.1
/// over loopback): a raw socket, so this needs root (CAP_NET_RAW).
///
/// # Panics
/// With one line saying so when the raw socket cannot be opened.
pub fn send_spoofed(from_port: u16, to: SocketAddr, payload: &[u8]) {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).unwrap_or_else(|e| {
        panic!("this test spoofs a UDP source with a raw socket, which needs root: {e}")
    });
    let len = u16::try_from(8 + payload.len()).expect("a small datagram");
    let mut packet = Vec::with_capacity(usize::from(len));
    packet.extend_from_slice(&from_port.to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&len.to_be_bytes());
    // Checksum 0: "none", allowed over IPv4.
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    socket
        .send_to(&packet, &to.into())
        .expect("send the spoofed datagram");
}

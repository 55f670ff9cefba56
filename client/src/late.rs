//! Replies that come after their line's timeout: shown as late, never as
//! the answer to a later line.
//!
//! Each line goes out from a socket of its own (see [`crate::udp`]), so a
//! reply can only land on the socket of the line it answers. When a line
//! times out its socket is kept here, non-blocking, and before the next line
//! is sent (and at the end of input) whatever has arrived on the kept
//! sockets is printed as one note on stderr:
//!
//! ```text
//! chat-client: late reply to line 1 (it came after the 0.5s wait): "reply-to-one"
//! ```
//!
//! Stdout keeps holding only answers, each printed while its own line waits,
//! so a script reading it never sees a reply shifted onto the wrong line;
//! the person at the terminal still sees the late reply and which line it
//! answers, as `nc -u` would have shown it. At most [`MAX_WATCHED`] lines are
//! watched: a reply to an older one is dropped by the kernel, like a lost
//! one.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::tcp::secs;

/// Timed-out lines whose socket is kept for a late reply; the oldest is
/// closed when another times out. Eight sockets, a few KB of kernel memory.
pub const MAX_WATCHED: usize = 8;

/// Datagrams read from the kept sockets before one line is sent, at most:
/// one per watched line, and room for a few from elsewhere (ignored). What
/// is left waits for the next line; the kernel bounds the queue.
pub const MAX_DRAINED: usize = 2 * MAX_WATCHED;

/// Characters of a late reply shown in its note; a longer one is cut, and
/// the note gives its full size.
pub const SHOWN_CHARS: usize = 200;

/// The sockets of lines that timed out, oldest first.
pub struct Late {
    /// At most [`MAX_WATCHED`]; a socket is closed (dropped) once its late
    /// reply is shown, when it reports an error, or when it is the oldest
    /// and another line times out.
    watched: VecDeque<Watched>,
    /// How long each line waited, for the note.
    timeout: Duration,
}

/// One timed-out line's socket.
struct Watched {
    /// The line's number in the input, from 1, as the user counts lines.
    line: u64,
    /// Connected to `server`, non-blocking.
    socket: UdpSocket,
    /// The address the line was sent to; a datagram from anywhere else is
    /// not its reply.
    server: SocketAddr,
}

impl Late {
    /// Nothing watched yet; `timeout` is each line's wait.
    pub fn new(timeout: Duration) -> Late {
        Late {
            watched: VecDeque::with_capacity(MAX_WATCHED),
            timeout,
        }
    }

    /// Keeps the socket of `line`, which got no reply in time, for its late
    /// reply. A socket that cannot be made non-blocking is closed instead
    /// (its reply is then lost, as it may have been anyway).
    pub fn watch(&mut self, line: u64, socket: UdpSocket, server: SocketAddr) {
        if socket.set_nonblocking(true).is_err() {
            return;
        }
        if self.watched.len() == MAX_WATCHED {
            self.watched.pop_front();
        }
        self.watched.push_back(Watched {
            line,
            socket,
            server,
        });
    }

    /// Prints a note for each late reply that has arrived, oldest line
    /// first, reading at most [`MAX_DRAINED`] datagrams; never waits.
    pub fn drain(&mut self, buf: &mut [u8]) {
        let mut budget = MAX_DRAINED;
        let timeout = self.timeout;
        self.watched.retain(|watched| {
            while budget > 0 {
                budget -= 1;
                match watched.socket.recv_from(buf) {
                    Ok((n, from)) if same_peer(from, watched.server) => {
                        note_late(watched.line, timeout, &buf[..n]);
                        return false;
                    }
                    // Queued before the socket was connected: not a reply.
                    Ok(_) => {}
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(err) => return err.kind() == ErrorKind::WouldBlock,
                }
            }
            true
        });
    }
}

/// Whether a datagram from `from` comes from `server`: address and port
/// (the flow label and scope a received IPv6 address carries may differ).
pub fn same_peer(from: SocketAddr, server: SocketAddr) -> bool {
    from.ip() == server.ip() && from.port() == server.port()
}

/// The note for a late reply: one line, the reply quoted with its control
/// characters escaped, cut at [`SHOWN_CHARS`].
fn note_late(line: u64, timeout: Duration, reply: &[u8]) {
    eprintln!(
        "chat-client: late reply to line {line} (it came after the {} wait): {}",
        secs(timeout),
        shown(reply)
    );
}

/// `reply` as one quoted line: `"text"`, or `"text..." (N bytes in all)`
/// when longer than [`SHOWN_CHARS`] characters.
fn shown(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    let mut quoted = String::from("\"");
    for (count, ch) in text.chars().enumerate() {
        if count == SHOWN_CHARS {
            quoted.push_str(&format!("...\" ({} bytes in all)", reply.len()));
            return quoted;
        }
        quoted.extend(ch.escape_debug());
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_reply_is_shown_on_one_line() {
        assert_eq!(shown(b"reply-to-one"), "\"reply-to-one\"");
        assert_eq!(shown(b"a\nb\t\"c\"\n"), r#""a\nb\t\"c\"\n""#);
        assert_eq!(shown(b"\xffok"), "\"\u{fffd}ok\"");
        let long = vec![b'x'; SHOWN_CHARS + 1];
        let want = format!(
            "\"{}...\" ({} bytes in all)",
            "x".repeat(SHOWN_CHARS),
            SHOWN_CHARS + 1
        );
        assert_eq!(shown(&long), want);
        assert_eq!(shown(&long[..SHOWN_CHARS]).len(), SHOWN_CHARS + 2);
    }

    /// A datagram queued on a socket before it was connected is not taken
    /// for the server's late reply; the server's own is, and ends the watch.
    #[test]
    fn only_the_servers_datagram_is_a_late_reply() {
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to_client = client.local_addr().unwrap();
        stranger.send_to(b"not a reply", to_client).unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let mut late = Late::new(Duration::from_secs(1));
        late.watch(1, client, server.local_addr().unwrap());
        let mut buf = [0u8; 64];
        wait_for_a_datagram(&late.watched[0].socket);
        late.drain(&mut buf);
        assert_eq!(late.watched.len(), 1, "a stranger's datagram is no reply");
        server.send_to(b"late", to_client).unwrap();
        wait_for_a_datagram(&late.watched[0].socket);
        late.drain(&mut buf);
        assert!(late.watched.is_empty(), "the late reply ends the watch");
    }

    /// Blocks (for at most 5 s) until a datagram is queued on `socket`.
    fn wait_for_a_datagram(socket: &UdpSocket) {
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
            .peek_from(&mut [0u8; 64])
            .expect("a datagram in time");
        socket.set_nonblocking(true).unwrap();
    }

    #[test]
    fn at_most_max_watched_lines_are_kept() {
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut late = Late::new(Duration::from_secs(1));
        for line in 1..=(MAX_WATCHED as u64 + 3) {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            socket.connect(server.local_addr().unwrap()).unwrap();
            late.watch(line, socket, server.local_addr().unwrap());
        }
        assert_eq!(late.watched.len(), MAX_WATCHED);
        assert_eq!(late.watched.front().map(|w| w.line), Some(4));
        let mut buf = [0u8; 64];
        late.drain(&mut buf);
        assert_eq!(late.watched.len(), MAX_WATCHED, "nothing arrived");
    }
}

//! The lab services over UDP (`--udp`): one reply datagram per datagram.
//!
//! One thread serves the socket: UDP has no connections to hand out, and
//! each datagram is answered as soon as it is read. The socket's read
//! timeout ([`POLL`]) lets the thread notice shutdown.
//!
//! Each datagram is a message of its own: a character cut at its end is not
//! held for the next datagram (which may come from someone else), it goes
//! back as it was. Uppercasing can make a reply longer than the request
//! (`ΐ`, 2 bytes, becomes 6): a reply too long for one datagram is cut, at a
//! character boundary, to the largest that fits, because one short reply
//! is better than none to a textbook client waiting in `recvfrom` without a
//! timeout.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use chat_common::upper::Upcaser;

use crate::config::Mode;
use crate::log;
use crate::shutdown::Shutdown;

/// How often an idle UDP thread checks for shutdown.
pub const POLL: Duration = Duration::from_millis(50);

/// Largest UDP payload over IPv4 (65,535 - 8 - 20).
pub const MAX_DATAGRAM: usize = 65_507;

/// Largest UDP payload over IPv6 without jumbograms (65,535 - 8): the IPv6
/// payload length does not count the IPv6 header itself.
pub const MAX_DATAGRAM_V6: usize = 65_527;

/// Receive buffer: larger than any datagram, so none is silently cut.
const RECV_BUF: usize = 65_536;

/// Answers datagrams on `socket` until shutdown.
pub fn serve(socket: &UdpSocket, mode: Mode, shutdown: &Shutdown) {
    if let Err(e) = socket.set_read_timeout(Some(POLL)) {
        log!("udp: cannot set a read timeout ({e}); not serving UDP");
        return;
    }
    let mut buf = vec![0; RECV_BUF];
    let mut out = Vec::new();
    while !shutdown.is_triggered() {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // An ICMP error from an earlier reply, say: one peer's
                // problem, not the service's.
                log!("udp: {e}");
                continue;
            }
        };
        let mut reply = if mode == Mode::Upper {
            out.clear();
            let mut upper = Upcaser::new();
            upper.push(&buf[..n], &mut out);
            upper.finish(&mut out);
            &out[..]
        } else {
            &buf[..n]
        };
        let limit = max_payload(peer);
        if reply.len() > limit {
            let cut = char_boundary(reply, limit);
            log!(
                "udp: reply to {peer} is {} bytes, more than one datagram holds; sending the first {cut}",
                reply.len()
            );
            reply = &reply[..cut];
        }
        if let Err(e) = socket.send_to(reply, peer) {
            log!("udp: reply to {peer} failed: {e}");
        }
    }
}

/// The largest payload one datagram to `peer` can carry. An IPv4 peer on an
/// IPv6 socket (`::ffff:a.b.c.d`) travels over IPv4.
fn max_payload(peer: SocketAddr) -> usize {
    match peer {
        SocketAddr::V4(_) => MAX_DATAGRAM,
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => MAX_DATAGRAM,
        SocketAddr::V6(_) => MAX_DATAGRAM_V6,
    }
}

/// The largest `cut <= limit` (with `limit < bytes.len()`) that does not
/// split a UTF-8 character: never in front of a continuation byte, unless
/// there are more of them in a row than any character has (not UTF-8, so
/// there is no character to keep whole).
fn char_boundary(bytes: &[u8], limit: usize) -> usize {
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    (limit.saturating_sub(3)..=limit)
        .rev()
        .find(|&cut| !is_continuation(bytes[cut]))
        .unwrap_or(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cut moves back to the start of the character it would split.
    #[test]
    fn cuts_at_character_boundaries() {
        let text = "aΐ😀".as_bytes(); // 1 + 2 + 4 bytes
        assert_eq!(char_boundary(text, 1), 1);
        assert_eq!(char_boundary(text, 2), 1);
        assert_eq!(char_boundary(text, 3), 3);
        assert_eq!(char_boundary(text, 4), 3);
        assert_eq!(char_boundary(text, 6), 3);
        assert_eq!(char_boundary(b"\x80\x80\x80\x80\x80", 4), 4);
        assert_eq!(char_boundary(b"ab", 0), 0);
    }

    /// IPv4 peers, mapped or not, get the IPv4 limit.
    #[test]
    fn payload_limit_by_family() {
        let v4: SocketAddr = "127.0.0.1:9".parse().expect("literal");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse().expect("literal");
        let v6: SocketAddr = "[::1]:9".parse().expect("literal");
        assert_eq!(max_payload(v4), MAX_DATAGRAM);
        assert_eq!(max_payload(mapped), MAX_DATAGRAM);
        assert_eq!(max_payload(v6), MAX_DATAGRAM_V6);
    }
}

//! The lab services over UDP (`--udp`): one reply datagram per datagram.
//!
//! One thread serves the socket: UDP has no connections to hand out, and
//! each datagram is answered as soon as it is read. The thread blocks in
//! `recvmsg` with no timeout (but while a count of unanswered datagrams
//! waits to be logged: until it is due); at shutdown [`wake`] sends the
//! socket an empty datagram from itself, so an idle UDP service costs no
//! wake-ups. What is counted but not logged yet is logged at the stop.
//!
//! A reply leaves from the address its request was sent to. Bound to
//! `0.0.0.0` on a host with several addresses, the kernel would otherwise
//! pick the source by routing, and a client whose socket is connected to
//! the address it used (as `chat-client --udp` is) drops a reply from any
//! other. So the socket asks for each datagram's destination
//! (`IP_PKTINFO`, `IPV6_RECVPKTINFO`) and the reply names it as its source.
//! It asks before it is bound ([`bind`]): asked by the serving thread, once
//! the port was open and announced, the first datagrams were answered from
//! the address the kernel picked, and a connected client lost them.
//!
//! Each datagram is a message of its own: a character cut at its end is not
//! held for the next datagram (which may come from someone else), it goes
//! back as it was. Uppercasing can make a reply longer than the request
//! (`ΐ`, 2 bytes, becomes 6): a reply too long for one datagram is cut, at a
//! character boundary, to the largest that fits, because one short reply
//! is better than none to a textbook client waiting in `recvfrom` without a
//! timeout.
//!
//! In file mode a datagram names a file (a trailing LF or CR LF is not part
//! of the name) and the reply is its contents when they fit one datagram,
//! else a `! ` line. Which datagrams are answered at all (never from our
//! own port or a service port, at most `--udp-rate` a second to one source
//! and a capped rate and byte count to one address) is [`udp_guard`]'s
//! call.
//!
//! [`udp_guard`]: crate::udp_guard

use std::io::{self, ErrorKind, IoSlice, IoSliceMut, Read};
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use chat_common::protocol::error;
use chat_common::upper::Upcaser;
use nix::sys::socket::{
    self, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Mode;
use crate::files::{Found, Root};
use crate::listener::reachable;
use crate::log;
use crate::udp_guard::{Guard, Verdict, Withheld};
use crate::Context;

pub use chat_common::datagram::{MAX_DATAGRAM, MAX_DATAGRAM_V6};

/// Receive buffer: larger than any datagram, so none is silently cut.
const RECV_BUF: usize = 65_536;

/// Where a datagram was sent to, as the kernel reported it.
#[derive(Clone, Copy)]
enum Destination {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

/// The UDP socket at `local`, asking the kernel for each datagram's
/// destination from before it is bound, so the reply to the very first
/// datagram leaves from the address it was sent to. If it cannot ask, it
/// says so in one line and replies leave from the address the kernel picks.
///
/// # Errors
/// The socket cannot be made or bound (the port is taken).
pub fn bind(local: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = ask_for_destinations(&socket, local) {
        log!("udp: cannot learn where datagrams were sent ({e}); replies leave from the address the kernel picks");
    }
    socket.bind(&local.into())?;
    Ok(socket.into())
}

/// Answers datagrams on `socket` ([`bind`]) until shutdown (and the
/// [`wake`] after it).
pub fn serve(socket: &UdpSocket, ctx: &Context) {
    let (mode, shutdown) = (ctx.config.mode, &ctx.shutdown);
    let mut guard = match socket.local_addr() {
        Ok(local) => Guard::new(local, ctx.config.udp_rate),
        Err(e) => {
            log!("udp: {e}");
            return;
        }
    };
    let mut buf = vec![0; RECV_BUF];
    let mut control = nix::cmsg_space!(libc::in6_pktinfo);
    let mut out = Vec::new();
    // The read timeout set on the socket: until the unanswered count is
    // due, or none while nothing is counted.
    let mut armed = None;
    loop {
        let due = guard.due();
        if due != armed {
            let wait = due.map(|at| {
                at.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            });
            if let Err(e) = socket.set_read_timeout(wait) {
                log!("udp: {e}");
            }
            armed = due;
        }
        let received = receive(socket, &mut buf, &mut control);
        if shutdown.is_triggered() {
            // Counted, not logged yet: logged now, before the summary.
            if let Some(w) = guard.pending() {
                log_withheld(w);
            }
            return;
        }
        let (n, peer, to) = match received {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // The read timeout: the unanswered count is due.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                report(&mut guard, Instant::now());
                continue;
            }
            Err(e) => {
                // An ICMP error from an earlier reply, say: one peer's
                // problem, not the service's.
                log!("udp: {e}");
                continue;
            }
        };
        let now = Instant::now();
        let verdict = guard.check(peer, now);
        report(&mut guard, now);
        if verdict != Verdict::Reply {
            continue;
        }
        let limit = max_payload(peer);
        let mut reply = match (mode, &ctx.files) {
            (Mode::Upper, _) => {
                out.clear();
                let mut upper = Upcaser::new();
                upper.push(&buf[..n], &mut out);
                upper.finish(&mut out);
                &out[..]
            }
            (Mode::File, Some(root)) => {
                file_reply(root, &buf[..n], ctx.config.max_file, limit, &mut out);
                &out[..]
            }
            _ => &buf[..n],
        };
        if reply.len() > limit {
            let cut = char_boundary(reply, limit);
            log!(
                "udp: reply to {peer} is {} bytes, more than one datagram holds; sending the first {cut}",
                reply.len()
            );
            reply = &reply[..cut];
        }
        if !guard.spend_bytes(peer, reply.len(), now) {
            report(&mut guard, now);
            continue;
        }
        if let Err(e) = send_from(socket, reply, peer, to) {
            log!("udp: reply to {peer} failed: {e}");
        }
    }
}

/// Logs the count of unanswered datagrams, when [`Guard::report`] says it
/// is time.
fn report(guard: &mut Guard, now: Instant) {
    if let Some(w) = guard.report(now) {
        log_withheld(w);
    }
}

/// The line that counts unanswered datagrams.
fn log_withheld(w: Withheld) {
    log!(
        "udp: left unanswered: {} from our own port, {} from service ports, {} over --udp-rate, {} over the per-address cap",
        w.own,
        w.service,
        w.over_rate,
        w.over_ip
    );
}

/// The reply to a datagram naming a file: its contents if they fit in
/// `limit` bytes (and `--max-file`), else one `! ` line.
fn file_reply(root: &Root, request: &[u8], max_file: u64, limit: usize, out: &mut Vec<u8>) {
    out.clear();
    let name = chat_common::stop::without_line_end(request);
    let max = max_file.min(limit as u64);
    match root.lookup(name, max) {
        Ok(Found { file, size }) => {
            if let Err(e) = file.take(size).read_to_end(out) {
                out.clear();
                out.extend_from_slice(
                    error(&format!("cannot read that file: {}", log::plain(&e))).as_bytes(),
                );
            }
        }
        Err(refusal) => out.extend_from_slice(error(&refusal.to_string()).as_bytes()),
    }
}

/// Unblocks the thread in [`serve`] after shutdown was triggered: an empty
/// datagram from the socket to itself (over loopback when it is bound to
/// an unspecified address). `false` if none could be sent.
pub fn wake(socket: &UdpSocket) -> bool {
    let addrs = match socket.local_addr() {
        Ok(local) => reachable(local),
        Err(_) => Vec::new(),
    };
    addrs.iter().any(|addr| socket.send_to(&[], addr).is_ok())
}

/// Has the kernel report each datagram's destination address on `socket`,
/// to be bound at `local`.
fn ask_for_destinations(socket: &impl AsFd, local: SocketAddr) -> io::Result<()> {
    let asked = match local {
        SocketAddr::V4(_) => socket::setsockopt(socket, sockopt::Ipv4PacketInfo, &true),
        // On a dual-stack socket this covers IPv4 too, as `::ffff:a.b.c.d`.
        SocketAddr::V6(_) => socket::setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true),
    };
    asked.map_err(io::Error::from)
}

/// Reads one datagram into `buf`: its length, its sender and, when the
/// kernel said, its destination.
fn receive(
    socket: &UdpSocket,
    buf: &mut [u8],
    control: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<Destination>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(control),
        MsgFlags::empty(),
    )?;
    let peer = msg
        .address
        .as_ref()
        .and_then(std_address)
        .ok_or_else(|| io::Error::other("a datagram without a sender address"))?;
    let to = msg
        .cmsgs()
        .ok()
        .into_iter()
        .flatten()
        .find_map(|cmsg| match cmsg {
            ControlMessageOwned::Ipv4PacketInfo(info) => Some(Destination::V4(info)),
            ControlMessageOwned::Ipv6PacketInfo(info) => Some(Destination::V6(info)),
            _ => None,
        });
    Ok((msg.bytes, peer, to))
}

/// Sends `reply` to `peer` from the address the request went `to`. If the
/// kernel refuses that source (on a dual-stack socket an IPv4 request's
/// destination comes as it was, so a broadcast address), it picks one
/// itself, as for a plain `send_to`.
fn send_from(
    socket: &UdpSocket,
    reply: &[u8],
    peer: SocketAddr,
    to: Option<Destination>,
) -> io::Result<()> {
    let send = |cmsgs: &[ControlMessage]| {
        socket::sendmsg(
            socket.as_raw_fd(),
            &[IoSlice::new(reply)],
            cmsgs,
            MsgFlags::empty(),
            Some(&SockaddrStorage::from(peer)),
        )
    };
    let sent = match to {
        Some(Destination::V4(info)) => {
            // `ipi_spec_dst` is the local address the request reached (for
            // a broadcast, one of this host's own).
            let source = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: info.ipi_spec_dst,
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            send(&[ControlMessage::Ipv4PacketInfo(&source)])
        }
        Some(Destination::V6(info)) if !Ipv6Addr::from(info.ipi6_addr.s6_addr).is_multicast() => {
            send(&[ControlMessage::Ipv6PacketInfo(&info)])
        }
        Some(Destination::V6(_)) | None => send(&[]),
    };
    match sent {
        Err(_) if to.is_some() => send(&[]),
        other => other,
    }
    .map(drop)
    .map_err(io::Error::from)
}

/// The std form of a socket address from `recvmsg`.
fn std_address(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::from(*v4))
    } else {
        addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
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

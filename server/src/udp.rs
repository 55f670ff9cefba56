//! The lab services over UDP (`--udp`): one reply datagram per datagram.
//!
//! One thread serves the socket: UDP has no connections to hand out, and
//! each datagram is answered as soon as it is read. The socket's read
//! timeout ([`POLL`]) lets the thread notice shutdown.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::time::Duration;

use chat_common::upper::Upcaser;

use crate::config::Mode;
use crate::log;
use crate::shutdown::Shutdown;

/// How often an idle UDP thread checks for shutdown.
pub const POLL: Duration = Duration::from_millis(50);

/// Largest UDP payload over IPv4 (65,535 - 8 - 20); a larger buffer is never
/// needed.
pub const MAX_DATAGRAM: usize = 65_507;

/// Answers datagrams on `socket` until shutdown.
pub fn serve(socket: &UdpSocket, mode: Mode, shutdown: &Shutdown) {
    if let Err(e) = socket.set_read_timeout(Some(POLL)) {
        log!("udp: cannot set a read timeout ({e}); not serving UDP");
        return;
    }
    let mut buf = vec![0; MAX_DATAGRAM];
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
        let reply = if mode == Mode::Upper {
            out.clear();
            let mut upper = Upcaser::new();
            upper.push(&buf[..n], &mut out);
            upper.finish(&mut out);
            &out[..]
        } else {
            &buf[..n]
        };
        if let Err(e) = socket.send_to(reply, peer) {
            log!("udp: reply to {peer} failed: {e}");
        }
    }
}

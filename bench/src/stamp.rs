//! When bytes reached a client's socket, as opposed to when the generator
//! got round to reading them.
//!
//! The generator is one thread on the machine it measures: while it waits
//! for a core, lines sit read-ready in its sockets, and the latency taken
//! at the read counts that wait as the server's. Each client socket asks
//! the kernel for receive stamps (`SO_TIMESTAMPNS`), and every read carries
//! the arrival time of the last segment it took; the tally then also keeps
//! a latency taken at arrival. A read that took several segments stamps
//! all their lines with the last one's arrival: an upper bound, so the
//! arrival latency never flatters the server.
//!
//! The stamps are on the wall clock (`CLOCK_REALTIME`), the send times on
//! the monotonic one: what is kept is the difference, how long the bytes
//! waited before the read, taken on the wall clock at the read.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::time::TimeSpec;

/// Asks the kernel to stamp what arrives on `socket`.
///
/// # Errors
/// The socket refused the option.
pub fn enable(socket: &impl AsFd) -> io::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// Room for one stamp, for [`read`] to reuse.
pub fn buffer() -> Vec<u8> {
    nix::cmsg_space!(TimeSpec)
}

/// Reads into `buf` like `read(2)`: the bytes read, and how long the last
/// of them had waited in the socket. Zero when the read carried no stamp
/// (the kernel turns stamping on a moment after the first socket asks,
/// well before a workload's window) or the wall clock went back
/// meanwhile: the latency at arrival is then the one at the read.
///
/// # Errors
/// As `read(2)`.
pub fn read(
    socket: &impl AsFd,
    buf: &mut [u8],
    room: &mut Vec<u8>,
) -> io::Result<(usize, Duration)> {
    let mut iov = [IoSliceMut::new(buf)];
    let fd = socket.as_fd().as_raw_fd();
    let msg =
        recvmsg::<()>(fd, &mut iov, Some(room), MsgFlags::empty()).map_err(io::Error::from)?;
    let mut waited = Duration::ZERO;
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmTimestampns(at) = cmsg {
            waited = since(at);
        }
    }
    Ok((msg.bytes, waited))
}

/// How long ago, on the wall clock, `at` was.
fn since(at: TimeSpec) -> Duration {
    let at = Duration::from(at);
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(Duration::ZERO, |now| now.saturating_sub(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    /// A connected client (reads time out) and the server's end.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// A read carries how long its bytes waited: at least the time the
    /// test let them wait, at most the time since they were written.
    #[test]
    fn a_read_says_how_long_its_bytes_waited() {
        let (client, mut server) = pair();
        enable(&client).unwrap();
        let mut buf = [0u8; 64];
        let mut room = buffer();
        // The kernel turns stamping on for the whole machine a moment
        // after the first socket asks: until then reads carry none.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            server.write_all(b".").unwrap();
            let (n, waited) = read(&client, &mut buf, &mut room).unwrap();
            assert_eq!(n, 1);
            if waited > Duration::ZERO {
                break;
            }
            assert!(Instant::now() < deadline, "no read came with a stamp");
        }
        // On the wall clock, as the stamps are: the monotonic clock may
        // run apart from it (a virtual machine's wall clock is slewed),
        // and this bound failed by a fraction of a millisecond so once.
        let written = SystemTime::now();
        server.write_all(b"hello\n").unwrap();
        let pause = Duration::from_millis(50);
        std::thread::sleep(pause);
        let (n, waited) = read(&client, &mut buf, &mut room).unwrap();
        assert_eq!(&buf[..n], b"hello\n");
        // Half: a margin for the segment's own way through loopback.
        assert!(waited >= pause / 2, "waited {waited:?}, pause {pause:?}");
        let since = SystemTime::now()
            .duration_since(written)
            .unwrap_or_default();
        assert!(
            waited <= since,
            "waited {waited:?}, since written {since:?}"
        );
    }

    /// Without stamps asked for, a read says it waited nothing.
    #[test]
    fn a_read_without_stamps_waited_nothing() {
        let (client, mut server) = pair();
        server.write_all(b"x").unwrap();
        let mut buf = [0u8; 8];
        let (n, waited) = read(&client, &mut buf, &mut buffer()).unwrap();
        assert_eq!((n, waited), (1, Duration::ZERO));
    }
}

//! Binding the server's port: TCP, and with `--udp` UDP on the same
//! number.
//!
//! With `--port 0` the kernel picks a port free for TCP; the same number
//! may be taken for UDP by another program (a CI run saw `cannot listen
//! for UDP on 127.0.0.1:36769: address already in use` next to other
//! tests). Then the pair is tried again on another port the kernel picks,
//! at most [`PORT_TRIES`] times. A port given by the user is bound as
//! given, or the start fails.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

/// Ports the kernel picks for TCP that are tried for UDP too, with
/// `--port 0 --udp`, before the start gives up.
pub const PORT_TRIES: usize = 16;

/// Why the port could not be bound: the line `main` prints.
#[derive(Debug)]
pub enum BindError {
    /// TCP, at the address asked for.
    Tcp(SocketAddr, io::Error),
    /// UDP, at the address TCP was bound to.
    Udp(SocketAddr, io::Error),
}

/// Binds `addr` for TCP and, if `udp`, the same address and port for UDP
/// ([`crate::udp::bind`]).
///
/// # Errors
/// What could not be bound, and where.
pub fn bind(addr: SocketAddr, udp: bool) -> Result<(TcpListener, Option<UdpSocket>), BindError> {
    bind_with(addr, udp, crate::udp::bind)
}

/// [`bind`], with the UDP binding given (for tests).
fn bind_with(
    addr: SocketAddr,
    udp: bool,
    mut bind_udp: impl FnMut(SocketAddr) -> io::Result<UdpSocket>,
) -> Result<(TcpListener, Option<UdpSocket>), BindError> {
    let mut tries = 0;
    loop {
        let listener = TcpListener::bind(addr).map_err(|e| BindError::Tcp(addr, e))?;
        if !udp {
            return Ok((listener, None));
        }
        let local = listener.local_addr().map_err(|e| BindError::Tcp(addr, e))?;
        tries += 1;
        match bind_udp(local) {
            Ok(socket) => return Ok((listener, Some(socket))),
            // A port the kernel picked, free for TCP only: another one.
            Err(e)
                if addr.port() == 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && tries < PORT_TRIES => {}
            Err(e) => return Err(BindError::Udp(local, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// With port 0, a UDP port found taken makes the pair be tried again
    /// on another port, and the pair returned shares one number.
    #[test]
    fn port_0_tries_another_port_when_udp_is_taken() {
        let mut asked = Vec::new();
        let (listener, socket) = bind_with(loopback(0), true, |at| {
            asked.push(at.port());
            if asked.len() < 3 {
                Err(io::ErrorKind::AddrInUse.into())
            } else {
                UdpSocket::bind(at)
            }
        })
        .expect("bound on the third try");
        let (tcp, udp) = (
            listener.local_addr().unwrap(),
            socket.unwrap().local_addr().unwrap(),
        );
        assert_eq!(tcp.port(), udp.port());
        assert_eq!(asked.len(), 3);
        assert_eq!(*asked.last().unwrap(), tcp.port());
    }

    /// The real UDP binding, a port taken for UDP only: the pair lands on
    /// another number. (The kernel may pick the taken number first or not:
    /// either way the pair binds.)
    #[test]
    fn a_pair_binds_whatever_udp_ports_are_taken() {
        let taken: Vec<UdpSocket> = (0..64)
            .map(|_| UdpSocket::bind(loopback(0)).unwrap())
            .collect();
        for _ in 0..8 {
            let (listener, socket) = bind(loopback(0), true).expect("a free pair");
            let port = listener.local_addr().unwrap().port();
            assert_eq!(socket.unwrap().local_addr().unwrap().port(), port);
            assert!(taken.iter().all(|t| t.local_addr().unwrap().port() != port));
        }
    }

    /// Never more than `PORT_TRIES` ports, and a port given by the user is
    /// not changed: the start fails with the UDP error.
    #[test]
    fn tries_are_bounded_and_a_given_port_is_kept() {
        let mut tries = 0;
        let err = bind_with(loopback(0), true, |_| {
            tries += 1;
            Err(io::ErrorKind::AddrInUse.into())
        })
        .unwrap_err();
        assert!(matches!(err, BindError::Udp(..)), "{err:?}");
        assert_eq!(tries, PORT_TRIES);

        let free = TcpListener::bind(loopback(0))
            .unwrap()
            .local_addr()
            .unwrap();
        let mut tries = 0;
        let err = bind_with(free, true, |_| {
            tries += 1;
            Err(io::ErrorKind::AddrInUse.into())
        })
        .unwrap_err();
        assert!(
            matches!(err, BindError::Udp(at, _) if at.port() == free.port()),
            "{err:?}"
        );
        assert_eq!(tries, 1);
    }
}

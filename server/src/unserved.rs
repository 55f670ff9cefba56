//! A connection accepted but not yet served, and what it is told if it
//! never is.
//!
//! Between accept and a worker, the server can turn a connection away: a
//! `/ban` or a password lockout of its address, or the server stopping.
//! Each shuts the read side of the connections it means
//! ([`crate::conns::Connections::close_where`]) to wake whoever reads them;
//! a connection still waiting for a worker has no reader yet, and the
//! pool, seeing its socket shut, takes it for a client that gave up and
//! drops its job unrun ([`crate::pool`]). The job's [`Unserved`] guard,
//! dropped with it, then says why, as the accept loop would have: a ban's
//! `! ` line, or `* server shutting down` in chat mode. So no connection is
//! closed without a word for a reason of the server's, whatever stage it
//! was at (a client that really gave up is sent nothing: none of these
//! holds for it). The guard also writes the one log line for a connection
//! dropped unrun, turned away or gone, since only it knows which (the pool
//! logged every drop as a client that gave up, before the guard said it
//! was turned away).

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;

use chat_common::protocol;

use crate::config::Mode;
use crate::log;
use crate::Context;

/// Tells a connection why, if it is dropped before a worker took it.
/// Lives in the job the accept loop hands to the pool.
pub struct Unserved {
    /// The connection to tell; `None` once a worker took it (from then on
    /// its session says what is to be said).
    stream: Option<Arc<TcpStream>>,
    /// Its peer, for the ban check and the log.
    peer: SocketAddr,
    /// The ban list, the shutdown switch and the mode.
    ctx: Arc<Context>,
}

impl Unserved {
    /// A guard for `stream`, just admitted at accept.
    pub fn new(stream: Arc<TcpStream>, peer: SocketAddr, ctx: Arc<Context>) -> Unserved {
        Unserved {
            stream: Some(stream),
            peer,
            ctx,
        }
    }

    /// A worker took the connection: nothing to say here any more.
    pub fn served(mut self) {
        self.stream = None;
    }
}

impl Drop for Unserved {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if !turn_away(&stream, self.peer, &self.ctx) {
            log!(
                "{} closed or shut while waiting for a worker; its place is free",
                self.peer
            );
        }
    }
}

/// Turns away a connection that waited for a worker, if the server turns
/// it away now ([`turned_away`]; in the lab modes the stop has no line to
/// say), with the one log line saying why: whether its job was dropped
/// unrun ([`Unserved`]) or a worker took it as the stop began
/// (`serve_connection`). Returns whether it did.
#[must_use]
pub fn turn_away(stream: &TcpStream, peer: SocketAddr, ctx: &Context) -> bool {
    match turned_away(ctx, peer.ip()) {
        Some(line) => {
            log!(
                "{peer} turned away while waiting for a worker: {}",
                line[2..].trim_end()
            );
            crate::listener::refuse(stream, &line);
            true
        }
        None if ctx.shutdown.is_triggered() => {
            log!("{peer} turned away while waiting for a worker: server shutting down");
            true
        }
        None => false,
    }
}

/// The line a connection from `ip` that was admitted at accept but not
/// served is told now, if the server turns it away: the server is
/// stopping (chat mode only: the lab modes have no line to say), or `ip`
/// has been banned or locked out since.
pub fn turned_away(ctx: &Context, ip: IpAddr) -> Option<String> {
    if ctx.shutdown.is_triggered() {
        return (ctx.config.mode == Mode::Chat).then(protocol::shutting_down);
    }
    ctx.access.shut_out(ip)
}

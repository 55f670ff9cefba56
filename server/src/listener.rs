//! The accept loop, on the server's main thread.
//!
//! Each accepted socket first meets the early refusals, which cost it
//! nothing but one line: the ban and lockout check
//! ([`crate::access::Access::at_accept`]), then the per-address connect
//! throttle (`early_refusal`). Then it gets its socket options ([`tune`]:
//! TCP_NODELAY, so a chat line does not wait for a delayed ACK, and TCP
//! keepalive, so a peer that vanished is noticed), is checked against the
//! per-address cap, and is handed to the pool, or told why not. No
//! connection ever waits without a word: a connection that must wait for a
//! worker is told so, in every mode, and one past the queue hears
//! `! server full, try again later` before it is closed. Nor is one closed
//! without a word while it waits: banned meanwhile, or still waiting when
//! the server stops, it is told why ([`crate::unserved`]).
//!
//! The kernel holds up to [`LISTEN_BACKLOG`] connections for `accept`, so a
//! storm of connects does not overflow the queue while this thread waits
//! for a core.
//!
//! The loop survives accept errors (running out of descriptors, say): it
//! logs, backs off from [`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`], and goes
//! on. Out of descriptors, it spends one it kept in reserve to accept the
//! oldest waiting connection, if one waits, and tell it `! server busy`, so
//! even then no connection waits without a word. It ends when shutdown is
//! triggered; the trigger wakes a blocked `accept` with a short connection
//! to the listener itself.

use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_common::protocol;
use socket2::{SockRef, TcpKeepalive};

use crate::log;
use crate::pool::Pool;
use crate::shutdown::Waited;
use crate::throttle::{ConnectThrottle, Verdict};
use crate::unserved::Unserved;
use crate::Context;

/// First pause after an accept error.
pub const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between accept attempts while errors persist.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Connections the kernel may hold, handshake done, until `accept` takes
/// them. std's `bind` asks for 128, which a storm of connects fills in
/// milliseconds whenever this thread is off its core; past it the kernel
/// drops the SYN and the client waits 1 s (then 3 s) to retry. The kernel
/// caps it at `net.core.somaxconn` (4096 by default).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Idle time before the first keepalive probe on an accepted socket.
/// With [`KEEPALIVE_INTERVAL`] and [`KEEPALIVE_PROBES`], a peer that vanished
/// without a FIN or a reset is noticed after 120 + 4 x 15 = 180 s (SPEC:
/// about three minutes), and its worker and name are freed.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(120);
/// Time between unanswered keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Unanswered probes before the kernel gives up on the connection.
pub const KEEPALIVE_PROBES: u32 = 4;
/// Longest data sent may stay unacknowledged before the kernel gives up
/// (TCP_USER_TIMEOUT): keepalive probes only an idle connection, and a
/// vanished peer that is still sent lines would otherwise be retried for
/// about 15 minutes. It also bounds a zero window: since Linux 5.11 a peer
/// that keeps its receive window shut for this long is aborted, although it
/// answers the window probes, so a client that stopped reading with its
/// socket full leaves as timed out after 3 minutes (if `--sendq` has not
/// dropped it first). A reader that is slow but reads, opening its window
/// again within that time, is not affected.
pub const USER_TIMEOUT: Duration = Duration::from_secs(180);

/// Accepts until shutdown, handing connections to `pool`.
/// `spare` is a descriptor held in reserve (see [`reserve_descriptor`]),
/// opened before the server announced itself so its descriptor count is
/// stable from then on.
pub fn accept_loop(
    listener: &TcpListener,
    ctx: &Arc<Context>,
    pool: &mut Pool,
    mut spare: Option<std::fs::File>,
) {
    // Listening again on a listening socket only changes its backlog.
    if let Err(e) = SockRef::from(listener).listen(LISTEN_BACKLOG) {
        log!("cannot raise the listen backlog to {LISTEN_BACKLOG}: {e}");
    }
    let config = &ctx.config;
    let mut throttle = ConnectThrottle::new(
        config.connect_rate,
        config.connect_burst,
        config.limit_loopback,
    );
    let mut backoff = MIN_BACKOFF;
    // The refusals at accept not logged yet are counted when it stops.
    let _tally = ctx.access.refusals_counted();
    loop {
        let accepted = listener.accept();
        if ctx.shutdown.is_triggered() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                backoff = MIN_BACKOFF;
                admit(stream, peer, ctx, pool, &mut throttle);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                log!("accept failed: {e}; retrying in {} ms", backoff.as_millis());
                if is_out_of_descriptors(&e) && spare.take().is_some() {
                    // The descriptor just freed lets us take the oldest
                    // waiting connection and tell it why, instead of leaving
                    // it hanging in the kernel's queue without a word.
                    if let Some((stream, peer)) = accept_waiting(listener) {
                        log!("{peer} refused: out of file descriptors");
                        refuse(
                            &stream,
                            &protocol::error(
                                "server busy (out of file descriptors), try again later",
                            ),
                        );
                    }
                    spare = reserve_descriptor();
                }
                if ctx.shutdown.pause(backoff) == Waited::ShuttingDown {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The oldest connection in the kernel's queue, if one waits now. Out of
/// descriptors, `accept` fails even when nobody waits; a blocking `accept`
/// here would keep the reserve spent until the next connection came, then
/// turn that one away however many descriptors had freed up by then.
fn accept_waiting(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true).ok()?;
    let accepted = listener.accept();
    if let Err(e) = listener.set_nonblocking(false) {
        log!("cannot make the listener blocking again: {e}");
    }
    accepted.ok()
}

/// A descriptor held in reserve (on `/dev/null`) for the moment `accept`
/// fails for lack of descriptors.
pub fn reserve_descriptor() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// EMFILE (this process) or ENFILE (the whole system).
fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The per-address connect throttle, which turns a connection away at
/// accept before it is registered, takes a place in line or a worker, or is
/// announced: the line to tell it, or `None` to go on. It logs the first
/// refusal of each episode (until the address is admitted again), not every
/// one.
fn early_refusal(ip: IpAddr, throttle: &mut ConnectThrottle, ctx: &Context) -> Option<String> {
    let config = &ctx.config;
    if let Verdict::Throttled { first } = throttle.check(ip, Instant::now()) {
        if first {
            log!(
                "{ip} throttled: over {} new connections at once or {} per second; refusing its new connections until it slows down",
                config.connect_burst,
                config.connect_rate
            );
        }
        return Some(protocol::error(&format!(
            "too many new connections from {ip}, try again in a few seconds"
        )));
    }
    None
}

/// Sets the options every accepted socket needs: TCP_NODELAY, TCP
/// keepalive ([`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`],
/// [`KEEPALIVE_PROBES`]) and [`USER_TIMEOUT`].
///
/// # Errors
/// The first option the kernel refused.
pub fn tune(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = SockRef::from(stream);
    socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    socket.set_tcp_user_timeout(Some(USER_TIMEOUT))
}

/// Registers one connection and hands it to the pool, or refuses it.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: &Arc<Context>,
    pool: &mut Pool,
    throttle: &mut ConnectThrottle,
) {
    // An IPv4 client of a dual-stack listener is named as IPv4.
    let ip = peer.ip().to_canonical();
    // Banned or locked out: refused before it takes any slot, so a banned
    // flood costs an accept and a close, and never makes honest clients wait.
    if let crate::access::Admission::Refused(line) = ctx.access.at_accept(peer) {
        refuse(&stream, &line);
        return;
    }
    if let Some(line) = early_refusal(ip, throttle, ctx) {
        refuse(&stream, &line);
        return;
    }
    if let Err(e) = tune(&stream) {
        log!("{peer}: cannot set socket options: {e}");
    }
    let stream = Arc::new(stream);
    let tracked = match ctx.conns.admit(Arc::clone(&stream), ip) {
        Ok(tracked) => tracked,
        Err(too_many) => {
            log!(
                "{peer} refused: already {} from {}",
                protocol::count(too_many.0 as u64, "connection"),
                ip
            );
            refuse(
                &stream,
                &protocol::error(&format!(
                    "too many connections from {} (at most {}), try again later",
                    ip, too_many.0
                )),
            );
            return;
        }
    };
    let ticket = match pool.reserve() {
        Ok(ticket) => ticket,
        Err(_) => {
            log!("{peer} refused: server full");
            refuse(&stream, &protocol::error("server full, try again later"));
            return;
        }
    };
    if let Some(place) = ticket.waiting() {
        log!("{peer} waits for a worker (number {place} in line)");
        say(
            &stream,
            &protocol::notice(&format!(
                "{} taken; you are number {place} in line, please wait",
                match ctx.config.workers {
                    1 => "the one place is".to_string(),
                    n => format!("all {n} places are"),
                }
            )),
        );
    }
    ctx.stats_accepted();
    let ctx = Arc::clone(ctx);
    let watch = Arc::clone(&stream);
    // Tells it why if the job is dropped unrun because the server shut it
    // (a ban, a lockout, the shutdown) while it waited.
    let unserved = Unserved::new(Arc::clone(&stream), peer, Arc::clone(&ctx));
    pool.execute(
        ticket,
        Box::new(move || {
            // Unregisters when the job ends, or is dropped unrun.
            let _tracked = tracked;
            unserved.served();
            crate::serve_connection(stream, peer, &ctx);
        }),
        watch,
    );
}

/// Writes one line to a fresh connection without ever blocking: its send
/// buffer is empty, and if it is not, the line is not worth a stall.
fn say(stream: &TcpStream, line: &str) {
    if stream.set_nonblocking(true).is_ok() {
        let _ = (&*stream).write(line.as_bytes());
        let _ = stream.set_nonblocking(false);
    }
}

/// Tells a connection why it is turned away, then closes our side.
pub fn refuse(stream: &TcpStream, line: &str) {
    say(stream, line);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Rounds of connects [`wake`] tries (at every address of [`reachable`]),
/// pausing from [`MIN_BACKOFF`] doubling in between: a loopback connect
/// fails only while the listen queue is full, which a storm of connects
/// the accept loop still drains empties within those pauses.
pub const WAKE_TRIES: u32 = 5;

/// Longest one of [`wake`]'s connects may take: a loopback connect is
/// answered at once or not at all (its SYN dropped at a full queue).
pub const WAKE_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// Wakes an `accept` blocked on `listening` by connecting to it.
pub fn wake(listening: SocketAddr) {
    let addrs = reachable(listening);
    for attempt in 0..WAKE_TRIES {
        for addr in &addrs {
            if TcpStream::connect_timeout(addr, WAKE_CONNECT_TIMEOUT).is_ok() {
                return;
            }
        }
        std::thread::sleep(MIN_BACKOFF * 2u32.pow(attempt));
    }
    log!("could not wake the accept loop; it stops at the next connection");
}

/// Where this host reaches a socket bound to `local`, best first. An
/// unspecified address is reached over loopback: `0.0.0.0` at 127.0.0.1,
/// `::` at `::1` and then at `::ffff:127.0.0.1`, for a host with IPv6
/// switched off that still binds `::` for IPv4.
pub fn reachable(local: SocketAddr) -> Vec<SocketAddr> {
    let port = local.port();
    match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => vec![(Ipv4Addr::LOCALHOST, port).into()],
        IpAddr::V6(ip) if ip.is_unspecified() => vec![
            (Ipv6Addr::LOCALHOST, port).into(),
            (Ipv4Addr::LOCALHOST.to_ipv6_mapped(), port).into(),
        ],
        _ => vec![local],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted socket, tuned, has TCP_NODELAY, SO_KEEPALIVE with the
    /// intended idle time, interval and probe count, and the user timeout:
    /// read back from the kernel on a loopback pair.
    #[test]
    fn tune_sets_nodelay_keepalive_and_user_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let _client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        let socket = SockRef::from(&accepted);
        assert!(!socket.keepalive().expect("SO_KEEPALIVE"), "off by default");
        tune(&accepted).expect("tune");
        assert!(accepted.nodelay().expect("TCP_NODELAY"));
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            socket.keepalive_time().expect("TCP_KEEPIDLE"),
            KEEPALIVE_IDLE
        );
        assert_eq!(
            socket.keepalive_interval().expect("TCP_KEEPINTVL"),
            KEEPALIVE_INTERVAL
        );
        assert_eq!(
            socket.keepalive_retries().expect("TCP_KEEPCNT"),
            KEEPALIVE_PROBES
        );
        assert_eq!(
            socket.tcp_user_timeout().expect("TCP_USER_TIMEOUT"),
            Some(USER_TIMEOUT)
        );
        let noticed = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES;
        assert!(
            noticed <= Duration::from_secs(200),
            "about three minutes: {noticed:?}"
        );
    }
}

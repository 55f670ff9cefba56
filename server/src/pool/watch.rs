//! The pool's watcher: while connections wait for a worker, it polls
//! their sockets for the peer's hang-up and takes those that gave up out
//! of line (see the pool's docs).

use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::thread;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, MsgFlags};

use super::{Shared, State, WATCH_INTERVAL};
use crate::log;

/// The watcher's life: while connections wait, poll their sockets for the
/// peer's hang-up and take those that gave up out of line.
pub(super) fn watch(shared: &Shared) {
    loop {
        let watched: Vec<(u64, Arc<TcpStream>)> = {
            let mut state = shared.state.lock();
            loop {
                if state.closed {
                    return;
                }
                let watched = waiting(&state);
                if !watched.is_empty() {
                    break watched;
                }
                shared.waiting.wait(&mut state);
            }
        };
        let hung_up = hung_up(&watched);
        if hung_up.is_empty() {
            continue;
        }
        let mut gone = Vec::new();
        {
            let mut state = shared.state.lock();
            for id in hung_up {
                let Some(at) = state.line.iter().position(|w| w.id == id) else {
                    continue; // A worker took it meanwhile.
                };
                let stream = state.line[at].watch.as_deref().map(gave_up);
                if stream == Some(true) {
                    gone.extend(state.line.remove(at));
                    state.busy -= 1;
                } else {
                    // Half-closed after sending: it has lines to serve.
                    state.line[at].watch = None;
                }
            }
        }
        // Dropping a job closes its connection, frees its per-address
        // slot and logs why (its guards), outside the pool's lock.
        drop(gone);
    }
}

/// The connections in line that really wait (id, socket): not the first
/// ones, which idle workers take now. Those a worker looks at itself
/// (`serve_connection`), and one that shut its side before a word is
/// shown the welcome there; taken out of line here, a chat client's
/// `ncat HOST PORT </dev/null` got nothing when the watcher saw its end
/// of stream before an idle worker took its job. Idle workers are those
/// alive less those running a job (`busy` less the line and the places
/// reserved but not yet queued: counting a reserved place as running
/// took one idle worker too few, and the watcher dropped the job at the
/// head of the line about 4 times in 500 at `--workers`).
fn waiting(state: &State) -> Vec<(u64, Arc<TcpStream>)> {
    let running = state.busy.saturating_sub(state.line.len() + state.reserved);
    let idle = state.workers.saturating_sub(running);
    state
        .line
        .iter()
        .skip(idle)
        .filter_map(|w| Some((w.id, Arc::clone(w.watch.as_ref()?))))
        .collect()
}

/// Ids of the watched connections whose peer hung up (or that failed),
/// waiting at most [`WATCH_INTERVAL`] for one to.
fn hung_up(watched: &[(u64, Arc<TcpStream>)]) -> Vec<u64> {
    let mut fds: Vec<PollFd> = watched
        .iter()
        .map(|(_, stream)| PollFd::new(stream.as_fd(), rdhup()))
        .collect();
    let timeout = PollTimeout::try_from(WATCH_INTERVAL).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(0) => Vec::new(),
        Ok(_) => fds
            .iter()
            .zip(watched)
            // nix reads back only the flags it names (not POLLRDHUP):
            // `None` means an unnamed one, here POLLRDHUP, was reported.
            .filter(|(fd, _)| !fd.revents().is_some_and(|r| r.is_empty()))
            .map(|(_, (id, _))| *id)
            .collect(),
        Err(e) => {
            log!("cannot watch waiting connections: {e}");
            thread::sleep(WATCH_INTERVAL);
            Vec::new()
        }
    }
}

/// POLLRDHUP: the peer shut its side down (nix names no constant for it).
fn rdhup() -> PollFlags {
    PollFlags::from_bits_retain(libc::POLLRDHUP)
}

/// Whether the peer of a connection not yet served has gone: it closed with
/// nothing left to read, or the connection failed. A peer that half-closed
/// after sending data has not: its lines are still to be served.
pub fn gave_up(stream: &TcpStream) -> bool {
    let mut fds = [PollFd::new(stream.as_fd(), rdhup())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => false,
        Ok(_) => {
            let mut byte = [0u8; 1];
            // Nothing buffered (0) or an error (reset): gone.
            !matches!(
                recv(
                    stream.as_raw_fd(),
                    &mut byte,
                    MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
                ),
                Ok(n) if n > 0
            )
        }
        Err(_) => false,
    }
}

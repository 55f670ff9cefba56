//! One server's side of the cluster: starts the writer, reader and
//! presence threads, hands the rooms their [`Log`] and [`Names`], and stops
//! it all in the right order.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::bridge::Bridge;
use super::link::Endpoint;
use super::names::Names as RedisNames;
use super::presence::Presence;
use super::reader::Reader;
use super::room_log::RedisLog;
use super::shared_bans::Shared;
use super::shared_names::SharedNames;
use super::writer::Writer;
use super::{LogConfig, RedisUrl};
use crate::rooms::log::Log;
use crate::rooms::names::Names;
use crate::shutdown::Shutdown;
use crate::Context;

/// How long a graceful stop waits for presence to announce this server's
/// clients as gone (the rest of the cluster sees them leave).
pub const LEAVE_DEADLINE: Duration = Duration::from_millis(800);

/// What the rooms are built on in a cluster.
pub struct Seams {
    /// The rooms' logs, on Redis.
    pub log: Box<dyn Log>,
    /// Names and guest numbers, on Redis.
    pub names: Box<dyn Names>,
}

/// This server's cluster threads.
pub struct Node {
    /// Shared with the rooms' seams and the cluster's threads.
    bridge: Arc<Bridge>,
    /// For passing console commands on to the other servers.
    names: Arc<RedisNames>,
    /// Stops the cluster's threads (not the server's own switch: the
    /// cluster stops after the rooms are told).
    shutdown: Arc<Shutdown>,
    /// Waited for at the graceful stop (it announces the leaves); the
    /// writer and reader end by themselves.
    presence: parking_lot::Mutex<Option<thread::JoinHandle<()>>>,
    /// Closed at the end of the stop: no link connects again, so a client
    /// still asking Redis (a hung one) does not hold up the exit.
    endpoint: Endpoint,
}

/// A server id: unique enough among the servers of one Redis (time in ns
/// and the process id).
fn new_server_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 40)) & 0x7fff_ffff_ffff_ffff
}

impl Node {
    /// Starts the cluster side of a server on `url`, keeping `history`
    /// chat lines per room, each room's log trimmed to about `log_len`
    /// entries; returns it with the rooms' seams.
    ///
    /// # Errors
    /// When a thread cannot be spawned, or Redis gives no guest-name tag.
    pub fn start(url: &RedisUrl, history: usize, log_len: u64) -> std::io::Result<(Node, Seams)> {
        let endpoint = Endpoint::new(url.clone());
        let server = new_server_id();
        let id = server.to_string();
        let redis_names = Arc::new(RedisNames::new(&endpoint, &id));
        // Redis answered `check` a moment ago; if it does not now, the
        // start fails as if it had not.
        let guest_tag = redis_names.guest_tag().map_err(|e| {
            std::io::Error::other(format!(
                "cannot use Redis at {url}: no guest-name tag ({e:?})"
            ))
        })?;
        let bridge = Arc::new(Bridge::new(
            server,
            guest_tag,
            history,
            Arc::clone(&redis_names),
        ));
        let shutdown = Arc::new(Shutdown::new());
        let config = LogConfig {
            max_len: log_len,
            ..LogConfig::default()
        };
        let (writer, _) = Writer::start(
            &endpoint,
            &id,
            config,
            bridge.clone(),
            Arc::clone(&shutdown),
        )?;
        let (reader, _) = Reader::start(
            &endpoint,
            &id,
            writer.clone(),
            bridge.clone(),
            Arc::clone(&shutdown),
        )?;
        let presence = Presence::start(
            &endpoint,
            &id,
            config,
            bridge.clone(),
            Arc::clone(&shutdown),
        )?;
        let log = RedisLog::new(
            &endpoint,
            (Arc::clone(&bridge), Arc::clone(&redis_names)),
            writer,
            reader,
            history,
        );
        let names = SharedNames::new(Arc::clone(&redis_names), Arc::clone(&bridge));
        Ok((
            Node {
                bridge,
                names: Arc::clone(&redis_names),
                shutdown,
                presence: parking_lot::Mutex::new(Some(presence)),
                endpoint,
            },
            Seams {
                log: Box::new(log),
                names: Box::new(names),
            },
        ))
    }

    /// Passes a console command (`/ban ...`, `/unban ...`) on to every other
    /// server, so it holds cluster-wide, with what it did to the shared
    /// list, if anything ([`Node::share_ban`], [`Node::lift_ban`]);
    /// returns what to tell the operator.
    pub fn share_console(&self, line: &str, shared: Option<Shared>) -> String {
        crate::console::passed_on(self.names.broadcast_console(line, shared), "")
    }

    /// Puts `ban`, applied on this server by its console with a known
    /// address, in the cluster's shared list (`shared_bans.rs`), for a
    /// server that misses it as it is passed on. Returns what to pass on
    /// with it; a failure is logged and its line for the console returned.
    pub fn share_ban(&self, ban: &crate::bans::Ban) -> Result<Shared, String> {
        self.names.share_ban(ban)
    }

    /// Held across a console `/ban` or `/unban` applied here and its step
    /// in the shared list, let go before it is passed on
    /// ([`RedisNames::ban_order`]).
    pub fn ban_order(&self) -> super::names::BanTurn<'_> {
        self.names.ban_order()
    }

    /// Takes the ban of `target` (a prefix; a name is left alone: `None`)
    /// out of the cluster's shared list. Returns what to pass on with the
    /// `/unban`; a failure is logged and its line for the console returned.
    pub fn lift_ban(&self, target: &str) -> Result<Option<Shared>, String> {
        self.names.lift_ban(target)
    }

    /// The bridge, for tests that step in between its threads.
    #[cfg(test)]
    pub(super) fn bridge(&self) -> &Arc<Bridge> {
        &self.bridge
    }

    /// Connects the cluster to the server whose rooms it feeds, and
    /// applies the cluster's shared ban list (`shared_bans.rs`) before
    /// the server accepts anyone: a ban typed on another server before
    /// this one started holds here from its first connection. Redis not
    /// answering now: logged, and presence applies it once it does.
    pub fn attach(&self, ctx: &Arc<Context>) {
        self.bridge.attach(ctx);
        match self.names.shared_bans() {
            Ok(shared) => {
                let _ = self.bridge.adopt_bans(&shared);
            }
            Err(e) => crate::log!(
                "redis: cannot read the shared ban list at start ({e:?}); applied once Redis answers"
            ),
        }
    }

    /// The graceful stop, before the rooms tell their clients: nothing more
    /// is delivered here, this server's clients are announced as gone on
    /// the other servers and their names freed (waiting at most
    /// [`LEAVE_DEADLINE`]), and the cluster's threads end.
    pub fn stop(&self) {
        self.bridge.stop();
        self.shutdown.trigger();
        if let Some(presence) = self.presence.lock().take() {
            let _ = crate::shutdown::join_by(presence, Instant::now() + LEAVE_DEADLINE);
        }
        self.endpoint.close();
    }
}

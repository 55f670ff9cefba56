//! Names across the cluster: one name per client in all servers ignoring
//! case (`SET name NX`), and `guest-N` numbers from one shared counter.
//!
//! These are questions a client waits for (`/nick`, connecting), so they
//! run on the asking thread over one shared [`Link`], held only for the
//! round trip. When Redis is down they fail at once with
//! [`Failure::Down`]: the client is told, nothing waits.

use parking_lot::Mutex;
use redis::Script;

use super::keys;
use super::link::{Endpoint, Failure, Link, IO_TIMEOUT};

/// The answer to [`Names::claim`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The name is this client's now, on every server.
    Claimed,
    /// A client on some server holds it (ignoring case).
    InUse,
}

/// Names and guest numbers, shared by every server of the cluster.
pub struct Names {
    /// The link for these short commands, one round trip at a time.
    link: Mutex<Link>,
    /// This server's id: the value of every name key it holds.
    server_id: String,
}

impl Names {
    /// Names for server `server_id` (connects on first use).
    pub fn new(endpoint: &Endpoint, server_id: &str) -> Names {
        Names {
            link: Mutex::new(endpoint.link("names", IO_TIMEOUT)),
            server_id: server_id.to_string(),
        }
    }

    /// Claims `name` for a client of this server in `room`, and records it
    /// among this server's members (what a survivor announces if this
    /// server is lost).
    ///
    /// # Errors
    /// When Redis cannot be asked (the name is then not claimed).
    pub fn claim(&self, name: &str, room: &str) -> Result<Claim, Failure> {
        let key = keys::name(&name.to_lowercase());
        let mut link = self.link.lock();
        let claimed: bool = link.run(|conn| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&self.server_id)
                .arg("NX")
                .query::<Option<String>>(conn)
                .map(|ok| ok.is_some())
        })?;
        if !claimed {
            return Ok(Claim::InUse);
        }
        link.run(|conn| {
            redis::cmd("HSET")
                .arg(keys::members(&self.server_id))
                .arg(name)
                .arg(room)
                .exec(conn)
        })?;
        Ok(Claim::Claimed)
    }

    /// Records that `name` (held here) is now in `room`.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn moved(&self, name: &str, room: &str) -> Result<(), Failure> {
        self.link.lock().run(|conn| {
            redis::cmd("HSET")
                .arg(keys::members(&self.server_id))
                .arg(name)
                .arg(room)
                .exec(conn)
        })
    }

    /// Frees `name` if this server holds it, and forgets it as a member.
    ///
    /// # Errors
    /// When Redis cannot be asked (the name stays taken until this server
    /// re-registers or is reaped).
    pub fn release(&self, name: &str) -> Result<(), Failure> {
        let script = Script::new(keys::DELETE_IF);
        self.link.lock().run(|conn| {
            redis::pipe()
                .cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1)
                .arg(keys::name(&name.to_lowercase()))
                .arg(&self.server_id)
                .ignore()
                .cmd("HDEL")
                .arg(keys::members(&self.server_id))
                .arg(name)
                .ignore()
                .exec(conn)
        })
    }

    /// The next `guest-N` number, never given before by any server of this
    /// Redis.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn next_guest(&self) -> Result<u64, Failure> {
        self.link
            .lock()
            .run(|conn| redis::cmd("INCR").arg(keys::guest()).query(conn))
    }
}

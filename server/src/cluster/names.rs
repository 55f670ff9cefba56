//! Names across the cluster: one name per client in all servers ignoring
//! case (`SET name NX`), `guest-N` numbers from one shared counter, and
//! the members list presence announces if this server is lost.
//!
//! These are questions a client waits for (`/nick`, connecting), so they
//! run on the asking thread over one shared [`Link`], held only for the
//! round trip. When Redis is down they fail at once with
//! [`Failure::Down`]: the caller refuses, nothing waits.

use parking_lot::Mutex;
use redis::Script;

use super::keys;
use super::link::{Endpoint, Failure, Link, IO_TIMEOUT};

/// The answer to [`Names::claim`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The name is this holder's now (or was already), on every server.
    Claimed,
    /// Another client, on some server, holds it (ignoring case).
    InUse,
}

/// Names and guest numbers, shared by every server of the cluster.
pub struct Names {
    /// The link for these short commands, one round trip at a time.
    link: Mutex<Link>,
    /// This server's id: the first half of every holder it writes.
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

    /// Claims `name` for local client `client`.
    ///
    /// # Errors
    /// When Redis cannot be asked (the name is then not claimed).
    pub fn claim(&self, name: &str, client: u64) -> Result<Claim, Failure> {
        let key = keys::name(&name.to_lowercase());
        let holder = keys::holder(&self.server_id, client);
        let (set, now): (Option<String>, Option<String>) = self.link.lock().run(|conn| {
            redis::pipe()
                .cmd("SET")
                .arg(&key)
                .arg(&holder)
                .arg("NX")
                .cmd("GET")
                .arg(&key)
                .query(conn)
        })?;
        Ok(
            if set.is_some() || now.as_deref() == Some(holder.as_str()) {
                Claim::Claimed
            } else {
                Claim::InUse
            },
        )
    }

    /// Frees `name` if local client `client` holds it.
    ///
    /// # Errors
    /// When Redis cannot be asked (the name stays taken until this server
    /// stops or is reaped).
    pub fn release(&self, name: &str, client: u64) -> Result<(), Failure> {
        let script = Script::new(keys::DELETE_IF);
        self.link.lock().run(|conn| {
            redis::cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1)
                .arg(keys::name(&name.to_lowercase()))
                .arg(keys::holder(&self.server_id, client))
                .exec(conn)
        })
    }

    /// Records that local member `name` is in room `room` (`None`: it
    /// left), for presence to announce if this server is lost.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn member(&self, name: &str, room: Option<&str>) -> Result<(), Failure> {
        let key = keys::members(&self.server_id);
        self.link.lock().run(|conn| match room {
            Some(room) => redis::cmd("HSET").arg(&key).arg(name).arg(room).exec(conn),
            None => redis::cmd("HDEL").arg(&key).arg(name).exec(conn),
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

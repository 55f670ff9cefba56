//! Giving a name back, and the names that could not be given back.
//!
//! A client that leaves (or is renamed) while Redis is away cannot free
//! its name key: the release fails at once. Nothing in Redis would free it
//! later (the key has no TTL, and a stop or a reaper frees only the names
//! of listed members, while presence's refile unlists the leaver), so the
//! release remembers it, (name, client), and presence frees each at its
//! next beat that reaches Redis ([`Names::free_unfreed`]) with the same
//! [`keys::DELETE_IF`] and the client's holder prefix: a name that another
//! client took meanwhile (this server was reaped, or Redis restarted
//! empty) is untouched. Those it could not free wait for the next beat.
//!
//! A client that claims a remembered name again (renamed back to it) has
//! it taken off the list by [`Names::claim`]. Both that and the freeing
//! run under the names link's lock, so a name is freed either before the
//! claim (which then sets it anew) or not at all.

use redis::Script;

use super::super::keys;
use super::super::link::Failure;
use super::Names;
use crate::log;

/// Names a server remembers to free (their releases failed while Redis was
/// away) at most: this many clients leaving during one outage. Past it a
/// further one is not remembered (logged): its name stays taken in Redis,
/// held for no one, until Redis loses its data. Each is a short name and
/// a number; they are freed in one pipeline.
pub const MAX_UNFREED: usize = 10_000;

impl Names {
    /// Frees `name` if local client `client` holds it. When Redis cannot
    /// be asked, the name is remembered, to be freed by presence
    /// ([`Names::free_unfreed`]).
    ///
    /// # Errors
    /// When Redis cannot be asked (the name is then freed later, unless
    /// [`MAX_UNFREED`] are waiting already).
    pub fn release(&self, name: &str, client: u64) -> Result<(), Failure> {
        let script = Script::new(keys::DELETE_IF);
        let lower = name.to_lowercase();
        let mut link = self.link.lock();
        let released = link.run_idempotent(|conn| {
            redis::cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1)
                .arg(keys::name(&lower))
                .arg(keys::holder_prefix(&self.server_id, client))
                .exec(conn)
        });
        if released.is_err() {
            let mut unfreed = self.unfreed.lock();
            if unfreed.len() < MAX_UNFREED {
                unfreed.push((lower, client));
            } else {
                log!("redis: {MAX_UNFREED} names wait to be freed already; {name} stays taken in Redis");
            }
        }
        released
    }

    /// Frees every name a release could not (see [`Names::release`]), if
    /// the client that gave it back still holds it in Redis: at a beat of
    /// presence that reached Redis, in one pipeline. Those it could not
    /// free are kept for the next call.
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn free_unfreed(&self) -> Result<(), Failure> {
        // Most beats: nothing to free, and no wait behind a client's call
        // on the link (one added meanwhile is freed at the next beat).
        if self.unfreed.lock().is_empty() {
            return Ok(());
        }
        let mut link = self.link.lock();
        let unfreed = std::mem::take(&mut *self.unfreed.lock());
        if unfreed.is_empty() {
            return Ok(());
        }
        let script = Script::new(keys::DELETE_IF);
        let freed = link.run_idempotent(|conn| {
            let mut pipe = redis::pipe();
            for (name, client) in &unfreed {
                pipe.cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(1)
                    .arg(keys::name(name))
                    .arg(keys::holder_prefix(&self.server_id, *client))
                    .ignore();
            }
            pipe.exec(conn)
        });
        if freed.is_err() {
            // Nothing was added meanwhile: that takes the link's lock.
            *self.unfreed.lock() = unfreed;
        }
        freed
    }

    /// How many names wait to be freed.
    #[cfg(test)]
    pub fn unfreed(&self) -> usize {
        self.unfreed.lock().len()
    }
}

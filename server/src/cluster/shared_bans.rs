//! The cluster's shared ban list in Redis ([`keys::bans`]), so a server
//! that was not there when a ban was typed (down, starting later, or cut
//! off long enough to be taken for lost) still gets it.
//!
//! Each server keeps its own list (`--bans FILE`), and a console's `/ban`
//! and `/unban` are passed on to the others' inboxes as they are typed.
//! Beside that, the server that applies a console ban with a known address
//! (the console's own for an address or prefix; for a name, the server
//! whose client it is) puts it here, keyed by its prefix, its value the
//! ban's line in the `--bans` format (so it carries its end), before it
//! passes it on: a server that registers after the put reads it, one that
//! registered before is asked through its inbox. An `/unban` that lifts a
//! prefix (typed as one, or a name lifted as its address) takes it out.
//!
//! Whenever a server registers (at start, before it accepts; after Redis
//! restarted empty; after the others took it for lost), it reads the whole
//! list and applies each live ban it does not hold yet, as a passed-on ban
//! is applied (`bridge/bans.rs`); entries found expired are taken out (if
//! unchanged meanwhile). It never lifts a ban of its own because the list
//! lacks it: an `/unban` it missed leaves the ban in place there (the safe
//! direction; docs/CLUSTER.md, Known limits).
//!
//! Bound: [`MAX_BANS`] fields ([`keys::BAN_PUT`] puts no new prefix past
//! it; each server's own list holds no more live bans anyway), each at
//! most about 300 bytes: about 1.2 MiB in Redis at worst, read whole by a
//! registering server.
//!
//! Redis away: the ban or unban still holds on this server and is passed
//! on as before (or not, as the console is told); one line is logged.

use redis::Script;

use super::keys;
use super::link::{Failure, Link};
use super::names::Names;
use crate::bans::{Ban, Prefix, MAX_BANS};
use crate::log;

impl Names {
    /// Puts `ban`, applied on this server, in the shared list. Failure is
    /// logged, and returned as a line for the console: the ban holds here
    /// and is passed on regardless.
    pub fn share_ban(&self, ban: &Ban) -> Option<String> {
        let script = Script::new(keys::BAN_PUT);
        let field = ban.prefix.to_string();
        let put: Result<i64, Failure> = self.holding(|link| {
            link.run_idempotent(|conn| {
                redis::cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(1)
                    .arg(keys::bans())
                    .arg(&field)
                    .arg(ban.to_line())
                    .arg(MAX_BANS)
                    .query(conn)
            })
        });
        match put {
            Ok(1) => None,
            Ok(_) => {
                log!("redis: the shared ban list is full ({MAX_BANS} bans): {field} is banned here and passed on, but a server that misses it will not find it there");
                Some(format!("! not put in the cluster's shared ban list, which is full ({MAX_BANS} bans): a server that misses it as it is passed on will not have it"))
            }
            Err(e) => {
                // A reply lost (Redis hung) may still be a put that lands.
                log!("redis: cannot put the ban on {field} in the shared ban list ({e:?}): it holds here and is passed on; a server that misses it may not find it there");
                Some("! maybe not put in the cluster's shared ban list (Redis did not answer): a server that misses it as it is passed on may not have it".to_string())
            }
        }
    }

    /// Takes the ban of `target` out of the shared list, if `target` is a
    /// prefix (a name is lifted as its address, by the server holding a
    /// ban by that name). Failure is logged, and returned as a line for
    /// the console: the `/unban` holds here and is passed on regardless.
    pub fn lift_ban(&self, target: &str) -> Option<String> {
        let Ok(prefix) = Prefix::parse(target.trim()) else {
            return None;
        };
        let field = prefix.to_string();
        let lifted: Result<i64, Failure> = self.holding(|link| {
            link.run_idempotent(|conn| redis::cmd("HDEL").arg(keys::bans()).arg(&field).query(conn))
        });
        let e = lifted.err()?;
        log!("redis: cannot take the ban on {field} out of the shared ban list ({e:?}): a server that registers later may still apply it");
        Some("! maybe not taken out of the cluster's shared ban list (Redis did not answer): a server that registers later, this one too if the others take it for lost meanwhile, may apply it again; /unban it again once Redis answers".to_string())
    }

    /// The shared list as it is now, on the names link (read when the
    /// server starts, before it accepts).
    ///
    /// # Errors
    /// When Redis cannot be asked.
    pub fn shared_bans(&self) -> Result<Vec<(String, String)>, Failure> {
        self.holding(read)
    }
}

/// Every entry of the shared list: (prefix, ban line).
///
/// # Errors
/// When Redis cannot be asked.
pub fn read(link: &mut Link) -> Result<Vec<(String, String)>, Failure> {
    link.run_idempotent(|conn| redis::cmd("HGETALL").arg(keys::bans()).query(conn))
}

/// Takes `expired` entries (prefix, ban line as read) out of the shared
/// list, each only if it still holds that line (a new ban of the prefix
/// put meanwhile stays).
///
/// # Errors
/// When Redis cannot be asked.
pub fn forget(link: &mut Link, expired: &[(String, String)]) -> Result<(), Failure> {
    if expired.is_empty() {
        return Ok(());
    }
    let unfile = Script::new(keys::HDEL_IF);
    link.run_idempotent(|conn| {
        let mut pipe = redis::pipe();
        for (field, value) in expired {
            pipe.cmd("EVALSHA")
                .arg(unfile.get_hash())
                .arg(1)
                .arg(keys::bans())
                .arg(field)
                .arg(value)
                .ignore();
        }
        pipe.exec(conn)
    })
}

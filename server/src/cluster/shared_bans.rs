//! The cluster's shared ban list in Redis ([`keys::bans`]), so a server
//! that was not there when a ban was typed (down, starting later, or cut
//! off long enough to be taken for lost) still gets it.
//!
//! Each server keeps its own list (`--bans FILE`), and a console's `/ban`
//! and `/unban` are passed on to the others' inboxes as they are typed.
//! Beside that, the server that applies a console ban with a known address
//! (the console's own for an address or prefix; for a name, the server
//! whose client it is) puts it here, keyed by its prefix, its value the
//! time it applied it and the ban's line in the `--bans` format (so it
//! carries its end; [`keys::ban_value`]), before it passes it on: a server
//! that registers after the put reads it, one that registered before is
//! asked through its inbox. An `/unban` that lifts a prefix (typed as one,
//! or a name lifted as its address) takes it out (`HDEL`); one taken out
//! late, by presence after Redis did not answer, only if the ban there
//! was applied before the lift ([`keys::BAN_LIFT`]: a `/ban` of that
//! prefix typed since, on any server, stays).
//!
//! Whenever a server registers (at start, before it accepts; after Redis
//! restarted empty; after the others took it for lost), it reads the whole
//! list and applies each live ban it does not hold yet, as a passed-on ban
//! is applied (`bridge/bans.rs`); entries found expired are taken out (if
//! unchanged meanwhile). It never lifts a ban of its own because the list
//! lacks it: an `/unban` it missed leaves the ban in place there (the safe
//! direction; docs/CLUSTER.md, Known limits).
//!
//! A lift that could not take its prefix out (Redis did not answer) is
//! remembered ([`Unlifted`]): presence takes it out at its next beat that
//! reaches Redis, before it registers (`Names::lift_unlifted`), and until
//! then a registration of this server skips that prefix's shared ban
//! unless it was applied after the lift (`bridge/bans.rs`). So an `/unban`
//! typed here while Redis was away is never undone here by this server's
//! own registration, and a `/ban` of the prefix typed elsewhere after it
//! still reaches this server. Times are wall clocks, the putting server's
//! and the lifting one's (docs/CLUSTER.md, Known limits).
//!
//! Bound: [`MAX_BANS`] fields ([`keys::BAN_PUT`] puts no new prefix past
//! it; each server's own list holds no more live bans anyway), each at
//! most about 300 bytes: about 1.2 MiB in Redis at worst, read whole by a
//! registering server. [`MAX_UNLIFTED`] lifts remembered per server.
//!
//! Redis away: the ban or unban still holds on this server and is passed
//! on as before (or not, as the console is told); one line is logged.

use std::collections::HashMap;

use parking_lot::Mutex;
use redis::Script;

use super::keys;
use super::link::{Failure, Link};
use super::names::Names;
use super::now_ms;
use crate::bans::{Ban, Prefix, MAX_BANS};
use crate::log;

/// Lifts a server remembers at most while their prefixes could not be
/// taken out of the shared list (as many as it can hold bans). Each is a
/// prefix and a time, under 100 bytes: about 400 KiB at worst. Past it a
/// further lift is not remembered (logged, and the console told to lift it
/// again once Redis answers).
pub const MAX_UNLIFTED: usize = MAX_BANS;

/// This server's lifts whose prefixes are still to be taken out of the
/// shared list: prefix -> when the lift was typed (ms since the epoch).
/// Noted by [`Names::lift_ban`] when Redis did not answer, dropped once
/// presence took the prefix out ([`Names::lift_unlifted`]) or this
/// server's console banned the prefix again ([`Names::share_ban`]). A
/// leaf lock, held for no I/O.
#[derive(Default)]
pub struct Unlifted(Mutex<HashMap<String, u64>>);

impl Unlifted {
    /// Notes `field` lifted at `at`. Returns `false` when it could not be
    /// noted (at [`MAX_UNLIFTED`] already).
    fn note(&self, field: &str, at: u64) -> bool {
        let mut pending = self.0.lock();
        if pending.len() >= MAX_UNLIFTED && !pending.contains_key(field) {
            return false;
        }
        pending.insert(field.to_string(), at);
        true
    }

    /// Forgets the lift of `field` noted at `at`, unless it was noted
    /// again since.
    fn done(&self, field: &str, at: u64) {
        let mut pending = self.0.lock();
        if pending.get(field) == Some(&at) {
            pending.remove(field);
        }
    }
}

impl Names {
    /// Puts `ban`, applied on this server, in the shared list. Returns
    /// [`Shared::Put`] with the time it was put ([`keys::ban_value`]),
    /// passed on with the ban so a server that reads it late can tell it
    /// was lifted since ([`Names::still_stands`]). Failure is logged, and
    /// returned as a line for the console: the ban holds here and is
    /// passed on regardless (saying nothing of the list: then applied
    /// wherever it is read).
    pub fn share_ban(&self, ban: &Ban) -> Result<Shared, String> {
        let script = Script::new(keys::BAN_PUT);
        let field = ban.prefix.to_string();
        // Banned again here: an earlier lift of it still to be taken out
        // is void (taking out the shared ban would leave the list without
        // one this server holds).
        self.unlifted.0.lock().remove(&field);
        let at = now_ms();
        let value = keys::ban_value(at, &ban.to_line());
        let put: Result<i64, Failure> = self.holding(|link| {
            link.run_idempotent(|conn| {
                redis::cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(1)
                    .arg(keys::bans())
                    .arg(&field)
                    .arg(&value)
                    .arg(MAX_BANS)
                    .query(conn)
            })
        });
        match put {
            Ok(1) => Ok(Shared::Put(value)),
            Ok(_) => {
                log!("redis: the shared ban list is full ({MAX_BANS} bans): {field} is banned here and passed on, but a server that misses it will not find it there");
                Err(format!("! not put in the cluster's shared ban list, which is full ({MAX_BANS} bans): a server that misses it as it is passed on will not have it"))
            }
            Err(e) => {
                // A reply lost (Redis hung) may still be a put that lands.
                log!("redis: cannot put the ban on {field} in the shared ban list ({e:?}): it holds here and is passed on; a server that misses it may not find it there");
                Err("! maybe not put in the cluster's shared ban list (Redis did not answer): a server that misses it as it is passed on may not have it".to_string())
            }
        }
    }

    /// Whether a console's `/ban` or `/unban` of `prefix` that another
    /// server passed on, saying what it did to the shared list (`shared`),
    /// still stands as this server reads it, the shared list being the
    /// arbiter of which came last:
    ///
    /// - a ban put at `at` ([`Shared::Put`]) stands while the list still
    ///   holds that very ban (not lifted since by an `/unban` anywhere,
    ///   this server's console included, nor replaced by a later `/ban` of
    ///   the prefix, passed on by itself), and this server did not lift
    ///   the prefix after `at` while Redis did not answer;
    /// - a lift that took the prefix out ([`Shared::Lifted`]) stands while
    ///   the list holds no ban of it: one there now was put after the
    ///   lift, by a `/ban` typed since (passed on by itself).
    ///
    /// Read late (after a later command, here or anywhere), a passed-on
    /// command would otherwise be applied after it, and the servers would
    /// disagree for good. When the list cannot be read, it stands (as
    /// before the list was asked).
    pub fn still_stands(&self, prefix: &Prefix, shared: &Shared) -> Standing {
        let field = prefix.to_string();
        let lifted_here = self.unlifted.0.lock().get(&field).copied();
        let held: Result<Option<Vec<u8>>, Failure> = self.holding(|link| {
            link.run_idempotent(|conn| redis::cmd("HGET").arg(keys::bans()).arg(&field).query(conn))
        });
        let Ok(held) = held else {
            return Standing::Unchecked;
        };
        let held = held.map(|v| String::from_utf8_lossy(&v).into_owned());
        match shared {
            Shared::Put(put) => standing(held.as_deref(), put, lifted_here),
            Shared::Lifted if held.is_some() => Standing::Replaced,
            Shared::Lifted => Standing::Stands,
        }
    }

    /// Takes the ban of `target` out of the shared list, if `target` is a
    /// prefix (a name is lifted as its address, by the server holding a
    /// ban by that name: `Ok(None)`): whatever ban of it is there, as on
    /// this server (`HDEL`; no clock is compared: a ban put by a server
    /// whose clock is ahead was kept by a comparison, with no word to the
    /// console). Returns [`Shared::Lifted`], passed on with the `/unban`.
    /// When Redis does not answer, the lift is remembered ([`Unlifted`])
    /// and presence takes the prefix out once it does, unless banned anew
    /// since; the failure is logged, and returned as a line for the
    /// console: the `/unban` holds here and is passed on regardless
    /// (saying nothing of the list).
    pub fn lift_ban(&self, target: &str) -> Result<Option<Shared>, String> {
        let Ok(prefix) = Prefix::parse(target.trim()) else {
            return Ok(None);
        };
        let field = prefix.to_string();
        let at = now_ms();
        let lifted: Result<i64, Failure> = self.holding(|link| {
            link.run_idempotent(|conn| redis::cmd("HDEL").arg(keys::bans()).arg(&field).query(conn))
        });
        let Err(e) = lifted else {
            // An earlier lift of it still to be taken out: done too.
            self.unlifted.0.lock().remove(&field);
            return Ok(Some(Shared::Lifted));
        };
        if self.unlifted.note(&field, at) {
            log!("redis: cannot take the ban on {field} out of the shared ban list ({e:?}): taken out once Redis answers; a server that registers before may still apply it");
            return Err("! maybe not taken out of the cluster's shared ban list (Redis did not answer): this server takes it out once Redis answers, and does not apply it again meanwhile; another server that registers before that may".to_string());
        }
        log!("redis: cannot take the ban on {field} out of the shared ban list ({e:?}), and {MAX_UNLIFTED} lifts wait to be taken out already: a server that registers later may still apply it, this one too");
        Err(format!("! maybe not taken out of the cluster's shared ban list (Redis did not answer), and {MAX_UNLIFTED} lifts wait for it already: a server that registers later, this one too, may apply it again; /unban it again once Redis answers"))
    }

    /// Takes out of the shared list the prefixes of every lift that could
    /// not (see [`Names::lift_ban`]), each unless a ban of it applied after
    /// the lift is there: at a beat of presence that reached Redis, in one
    /// pipeline, before it registers this server. Those taken out (or
    /// found gone, or newer) are forgotten.
    ///
    /// # Errors
    /// When Redis cannot be asked (they are tried again at the next beat).
    pub fn lift_unlifted(&self) -> Result<(), Failure> {
        let pending: Vec<(String, u64)> = {
            let pending = self.unlifted.0.lock();
            pending.iter().map(|(f, &at)| (f.clone(), at)).collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let taken = self.holding(|link| lift(link, &pending))?;
        for (field, at) in &pending {
            self.unlifted.done(field, *at);
        }
        let kept = pending.len() as u64 - taken;
        log!(
            "redis: {} lifted while Redis did not answer taken out of the shared ban list{}",
            chat_common::protocol::count(taken, "ban"),
            if kept > 0 {
                format!(
                    "; {} kept there, banned again since (or gone already)",
                    chat_common::protocol::count(kept, "other")
                )
            } else {
                String::new()
            }
        );
        Ok(())
    }

    /// The lifts of this server still to be taken out of the shared list:
    /// prefix -> when lifted (ms). A registration skips their shared bans
    /// unless applied after the lift (`bridge/bans.rs`).
    pub fn unlifted(&self) -> HashMap<String, u64> {
        self.unlifted.0.lock().clone()
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

/// What a console's `/ban` or `/unban` did to the shared list, passed on
/// with it (the inbox request's `shared` field): the receiving server
/// checks the list still says so before it applies it
/// ([`Names::still_stands`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// The ban was put, as this value ([`keys::ban_value`]: its time and
    /// line, which tell that very ban from a later one of the prefix; two
    /// puts in the same ms by two servers' clocks are told apart by their
    /// lines, and two with the same line too are the same ban).
    Put(String),
    /// The prefix's ban was taken out.
    Lifted,
}

impl Shared {
    /// As the request's `shared` field holds it: `put VALUE` or `lifted`.
    pub fn to_field(&self) -> String {
        match self {
            Shared::Put(value) => format!("put {value}"),
            Shared::Lifted => "lifted".to_string(),
        }
    }

    /// Reads [`Shared::to_field`]'s value back; `None` for anything else.
    pub fn from_field(field: &str) -> Option<Shared> {
        match field.split_once(' ') {
            Some(("put", value)) if !value.is_empty() => Some(Shared::Put(value.to_string())),
            None if field == "lifted" => Some(Shared::Lifted),
            _ => None,
        }
    }
}

/// Whether a passed-on `/ban` or `/unban` still stands as the receiving
/// server reads it ([`Names::still_stands`]).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The shared list says what it did: apply it.
    Stands,
    /// The shared list could not be read: apply it (as before it was asked).
    Unchecked,
    /// A ban lifted since it was put (the shared list has no ban of the
    /// prefix, or this server lifted it later while Redis did not
    /// answer): skip.
    Lifted,
    /// A later command came after it (the list holds a later ban of the
    /// prefix, passed on by itself): skip this one.
    Replaced,
}

/// [`Standing`] of a ban put as value `put` ([`keys::ban_value`]), the
/// shared list holding `held` for its prefix (`None`: no ban), this server
/// having lifted the prefix at `lifted_here` (ms) while Redis did not
/// answer (`None`: not).
fn standing(held: Option<&str>, put: &str, lifted_here: Option<u64>) -> Standing {
    let (put_at, _) = keys::parse_ban_value(put);
    match held {
        None => Standing::Lifted,
        Some(_) if lifted_here.is_some_and(|lift| lift >= put_at) => Standing::Lifted,
        Some(held) if held == put => Standing::Stands,
        Some(_) => Standing::Replaced,
    }
}

/// Takes each of `lifts` (prefix, when lifted) out of the shared list
/// unless its ban there was applied after the lift ([`keys::BAN_LIFT`]),
/// in one pipeline. Returns how many were taken out.
///
/// # Errors
/// When Redis cannot be asked.
fn lift(link: &mut Link, lifts: &[(String, u64)]) -> Result<u64, Failure> {
    let script = Script::new(keys::BAN_LIFT);
    link.run_idempotent(|conn| {
        let mut pipe = redis::pipe();
        for (field, at) in lifts {
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1)
                .arg(keys::bans())
                .arg(field)
                .arg(at);
        }
        let taken: Vec<i64> = pipe.query(conn)?;
        Ok(taken.iter().filter(|&&t| t == 1).count() as u64)
    })
}

/// Every entry of the shared list: (prefix, value as put: [`keys::ban_value`]).
/// An entry that is not UTF-8 (written there by something else than a
/// chat-server) is skipped, and how many were is logged in one line: one
/// such entry made the whole read fail, so a server never applied the
/// list, at start or after.
///
/// # Errors
/// When Redis cannot be asked.
pub fn read(link: &mut Link) -> Result<Vec<(String, String)>, Failure> {
    let raw: Vec<(Vec<u8>, Vec<u8>)> =
        link.run_idempotent(|conn| redis::cmd("HGETALL").arg(keys::bans()).query(conn))?;
    let total = raw.len();
    let entries: Vec<(String, String)> = raw
        .into_iter()
        .filter_map(|(field, value)| {
            Some((
                String::from_utf8(field).ok()?,
                String::from_utf8(value).ok()?,
            ))
        })
        .collect();
    if entries.len() < total {
        log!(
            "redis: shared ban list: {} not UTF-8 (prefix or value), skipped",
            chat_common::protocol::count((total - entries.len()) as u64, "ban")
        );
    }
    Ok(entries)
}

/// Takes `expired` entries (prefix, value as read) out of the shared
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

#[cfg(test)]
mod tests {
    use super::{standing, Shared, Standing};

    /// A passed-on ban stands only while the shared list holds it as put
    /// and this server did not lift it later; a later ban of the prefix
    /// in the list replaces it; no ban there means lifted.
    #[test]
    fn a_passed_on_ban_stands_while_the_list_holds_it_as_put() {
        let put = "100 192.0.2.1 - - first";
        assert_eq!(standing(Some(put), put, None), Standing::Stands);
        assert_eq!(standing(Some(put), put, Some(99)), Standing::Stands);
        assert_eq!(standing(Some(put), put, Some(100)), Standing::Lifted);
        assert_eq!(standing(Some(put), put, Some(150)), Standing::Lifted);
        assert_eq!(standing(None, put, None), Standing::Lifted);
        assert_eq!(
            standing(Some("200 192.0.2.1 - - later"), put, None),
            Standing::Replaced
        );
        assert_eq!(
            standing(Some("50 192.0.2.1 - - earlier"), put, None),
            Standing::Replaced
        );
        // Put in the same ms by another server: told apart by its line.
        assert_eq!(
            standing(Some("100 192.0.2.1 - - second"), put, None),
            Standing::Replaced
        );
    }

    /// What a request carries reads back as it was; anything else, as
    /// nothing.
    #[test]
    fn shared_reads_back() {
        for shared in [
            Shared::Put("0 192.0.2.1 - -".to_string()),
            Shared::Put("1765000000123 192.0.2.0/24 2026-12-06T23:55:52Z - a reason".to_string()),
            Shared::Lifted,
        ] {
            assert_eq!(Shared::from_field(&shared.to_field()), Some(shared.clone()));
        }
        for junk in ["", "put", "put ", "lifted 1", "PUT 1"] {
            assert_eq!(Shared::from_field(junk), None, "{junk:?}");
        }
    }
}

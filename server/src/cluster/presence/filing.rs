//! Filing this server's members and claiming their names in Redis again:
//! after a filing failed, after a client was named without Redis, and
//! after Redis lost them (new, restarted empty, or back from an older copy
//! of its data).
//!
//! Each takes a snapshot of the members and sends a pipeline from it,
//! holding the names link all the while ([`Local::names`]): a client's own
//! claim, release or filing (which go on that link) waits, and reaches
//! Redis after the pipeline, never between the snapshot and it, where the
//! pipeline would undo it (a `DEL` of the members list, an old name
//! claimed again). A member whose change is in memory already but not yet
//! sent is mended right after the pipeline, still holding the link
//! ([`Filer::settle`]); its own call then lands after that too.
//!
//! The names link may have sat idle across a Redis restart: each pipeline
//! is tried once more on a fresh connection when its connection was found
//! closed (`run_idempotent`). All may run twice: a `DEL` and `HSET` of
//! the same members, claims of a client's own names, raises to a floor,
//! deletes that check what they delete.

use redis::Script;

use super::super::keys;
use super::super::link::{Failure, Link};
use super::{Local, Member, NameLost, Presence};

impl Presence {
    /// Runs `f` on the link filings go on: the names link when this
    /// server has one ([`Local::names`]), held for the whole of `f`; else
    /// presence's own (a test's server with no clients of its own).
    pub(super) fn holding_names<T>(&mut self, f: impl FnOnce(&mut Link) -> T) -> T {
        match self.local.names() {
            Some(names) => names.holding(f),
            None => f(&mut self.link),
        }
    }

    /// Runs `f` with a [`Filer`] on the link filings go on, held
    /// ([`Presence::holding_names`]).
    fn filing<T>(&mut self, f: impl FnOnce(&Filer<'_>, &mut Link) -> T) -> T {
        let local = std::sync::Arc::clone(&self.local);
        let me = self.server_id.clone();
        self.holding_names(|link| {
            let filer = Filer {
                local: &*local,
                me: &me,
            };
            f(&filer, link)
        })
    }

    /// Files every local member again ([`Filer::refile`]).
    pub(super) fn refile(&mut self) -> Result<(), Failure> {
        self.filing(|filer, link| filer.refile(link))
    }

    /// Claims every local member's name for it ([`Filer::claim_names`]);
    /// a name another client took meanwhile is given up for a fresh guest
    /// name ([`Local::name_lost`]).
    pub(super) fn claim_names(&mut self) -> Result<(), Failure> {
        let lost = self.filing(|filer, link| filer.claim_names(link))?;
        self.give_up(&lost, NameLost::CutOff);
        Ok(())
    }

    /// Registers this server in a Redis that does not have it
    /// ([`Filer::register`]); a name another client took meanwhile is
    /// given up for a fresh guest name.
    pub(super) fn register(&mut self) -> Result<(), Failure> {
        let floor = self.local.highest_guest();
        let tag = self.local.guest_tag();
        let lost = self.filing(|filer, link| filer.register(link, floor, tag))?;
        self.registered = self.link.epoch().map(str::to_string);
        let why = if std::mem::take(&mut self.emptied) {
            NameLost::RedisEmptied
        } else {
            NameLost::CutOff
        };
        self.give_up(&lost, why);
        Ok(())
    }

    /// Gives up each name of `lost` (claimed by another client) for a
    /// fresh guest name, if its member still has it. With the names link
    /// released: a fresh name is asked on it. One that cannot be given up
    /// now is tried again at the next beat: two clients never keep a name.
    fn give_up(&self, lost: &[Member], why: NameLost) {
        let now = self.local.members();
        for member in lost {
            if still_named(&now, member) && !self.local.name_lost(member.client, &member.name, why)
            {
                self.local.claim_failed();
            }
        }
    }
}

/// What a filing works with, while it holds its link.
struct Filer<'a> {
    /// This server's members.
    local: &'a dyn Local,
    /// This server's id.
    me: &'a str,
}

impl Filer<'_> {
    /// Files every local member again under this server, at the beat after
    /// a filing failed, in one atomic pipeline (MULTI: `DEL`, then one
    /// `HSET` of them all): a filing lost to a broken connection or Redis
    /// away for a moment is mended within a beat, so `/who` lists the
    /// member and a survivor announces its leave in the right room if this
    /// server dies; a member whose removal failed is dropped.
    fn refile(&self, link: &mut Link) -> Result<(), Failure> {
        let members = self.local.members();
        let key = keys::members(self.me);
        link.run_idempotent(|conn| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("DEL").arg(&key).ignore();
            if !members.is_empty() {
                pipe.cmd("HSET").arg(&key);
                for member in &members {
                    pipe.arg(&member.name).arg(member.filed());
                }
                pipe.ignore();
            }
            pipe.exec(conn)
        })?;
        self.settle(link, &members)
    }

    /// Claims every local member's name for it (the [`keys::CLAIM`] of
    /// `/nick`, pipelined; a name it holds already is only spelled again),
    /// at the beat after a client was named without Redis (a fallback guest
    /// name, held here only): so a `/msg` from another server finds it.
    /// Returns the members whose name another client holds.
    fn claim_names(&self, link: &mut Link) -> Result<Vec<Member>, Failure> {
        let members = self.local.members();
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let claim = Script::new(keys::CLAIM);
        let claimed: Vec<i64> = link.run_idempotent(|conn| {
            let mut pipe = redis::pipe();
            for member in &members {
                push_claim(&mut pipe, &claim, self.me, member);
            }
            pipe.query(conn)
        })?;
        self.settle(link, &members)?;
        Ok(lost(members, &claimed))
    }

    /// Writes this server's members, their names, its guest floor `floor`
    /// and its guest-name tag `tag` into a Redis that does not have them
    /// (new, restarted empty, or back from an older copy of its data).
    /// Returns the members whose name another client holds.
    ///
    /// The members list is replaced whole, in one `MULTI` (`/who`
    /// elsewhere never sees it half written). An older copy of Redis's
    /// data may hold names this server's clients no longer have (`guest-3`
    /// for a client since renamed `carol`, or one that left since), which
    /// nothing else would ever free: [`Filer::free_stale`].
    fn register(&self, link: &mut Link, floor: u64, tag: u64) -> Result<Vec<Member>, Failure> {
        let members = self.local.members();
        let me = self.me;
        let listed: Vec<(String, String)> =
            link.run_idempotent(|conn| redis::cmd("HGETALL").arg(keys::members(me)).query(conn))?;
        let raise = Script::new(keys::RAISE_TO);
        let claim = Script::new(keys::CLAIM);
        let claimed: Vec<i64> = link.run_idempotent(|conn| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("DEL").arg(keys::members(me)).ignore();
            for member in &members {
                pipe.cmd("HSET")
                    .arg(keys::members(me))
                    .arg(&member.name)
                    .arg(member.filed())
                    .ignore();
                // A client of another server may have taken the name in
                // the meantime (this server was taken for lost and its
                // names freed, or Redis was back and this server not yet).
                push_claim(&mut pipe, &claim, me, member);
            }
            pipe.cmd("EVALSHA")
                .arg(raise.get_hash())
                .arg(1)
                .arg(keys::guest())
                .arg(floor)
                .ignore();
            // No server starting later takes this server's tag again.
            pipe.cmd("EVALSHA")
                .arg(raise.get_hash())
                .arg(1)
                .arg(keys::guest_tags())
                .arg(tag)
                .ignore();
            pipe.query(conn)
        })?;
        let lost = lost(members.clone(), &claimed);
        let freed = self.free_stale(link, &listed)?;
        // A name refused only because the older copy still showed it held
        // by a client of this server that has another name now (freed just
        // above) is claimed again: its holder keeps it (a review: the
        // holder was renamed a guest, the name left to no one).
        let lost = if freed && !lost.is_empty() {
            self.claim_again(link, lost)?
        } else {
            lost
        };
        self.settle(link, &members)?;
        Ok(lost)
    }

    /// Claims the names of `refused` again (after stale names were freed):
    /// returns those still held by another client.
    fn claim_again(&self, link: &mut Link, refused: Vec<Member>) -> Result<Vec<Member>, Failure> {
        let claim = Script::new(keys::CLAIM);
        let claimed: Vec<i64> = link.run_idempotent(|conn| {
            let mut pipe = redis::pipe();
            for member in &refused {
                push_claim(&mut pipe, &claim, self.me, member);
            }
            pipe.query(conn)
        })?;
        Ok(lost(refused, &claimed))
    }

    /// Frees each name of `listed` (the members list as Redis had it
    /// before a registration replaced it) whose client does not have it
    /// now, or is gone, if that client still holds it
    /// ([`keys::DELETE_IF`]). Against the members as they are after the
    /// registration, not its snapshot: a rename whose claim and filing
    /// reached Redis before the snapshot had it keeps its new name. The
    /// list is the only place that names them, so a name the old copy
    /// held but had not listed yet (claimed in the moment before the
    /// copy, filed after) stays held (docs/CLUSTER.md, Known limits).
    /// Returns whether there were any to free.
    fn free_stale(&self, link: &mut Link, listed: &[(String, String)]) -> Result<bool, Failure> {
        let now = self.local.members();
        let stale: Vec<(&String, u64)> = listed
            .iter()
            .filter_map(|(name, value)| Some((name, keys::member_client(value)?)))
            .filter(|(name, client)| {
                !now.iter()
                    .any(|m| m.client == *client && m.name.eq_ignore_ascii_case(name))
            })
            .collect();
        if stale.is_empty() {
            return Ok(false);
        }
        let delete = Script::new(keys::DELETE_IF);
        link.run_idempotent(|conn| {
            let mut pipe = redis::pipe();
            for (name, client) in &stale {
                pipe.cmd("EVALSHA")
                    .arg(delete.get_hash())
                    .arg(1)
                    .arg(keys::name(&name.to_lowercase()))
                    .arg(keys::holder_prefix(self.me, *client))
                    .ignore();
            }
            pipe.exec(conn)
        })?;
        Ok(true)
    }

    /// Mends what a pipeline filed and claimed from `filed`, its snapshot
    /// of the members, for each member whose change was in memory but not
    /// yet sent when it ran (its own call waits for the link, and lands
    /// after this):
    /// - one that left or was renamed would stay listed in `/who` until
    ///   its own removal landed, or (renamed back meanwhile) keep a name
    ///   the snapshot claimed again: its old name is freed if this client
    ///   still holds it, and its entry in the members list taken out if it
    ///   is still the one filed (a member that has that exact name now
    ///   keeps it);
    /// - one that arrived, was renamed or moved to another room would be
    ///   missing from the list (the pipeline's `DEL`), or filed where it
    ///   was: it is filed as it is now.
    fn settle(&self, link: &mut Link, filed: &[Member]) -> Result<(), Failure> {
        let now = self.local.members();
        let gone: Vec<&Member> = filed
            .iter()
            .filter(|m| !now.iter().any(|n| n.client == m.client && n.name == m.name))
            .collect();
        let changed: Vec<&Member> = now.iter().filter(|n| !filed.contains(n)).collect();
        if gone.is_empty() && changed.is_empty() {
            return Ok(());
        }
        let me = self.me;
        let delete = Script::new(keys::DELETE_IF);
        let unfile = Script::new(keys::HDEL_IF);
        link.run_idempotent(|conn| {
            let mut pipe = redis::pipe();
            for member in &gone {
                if !still_named(&now, member) {
                    pipe.cmd("EVALSHA")
                        .arg(delete.get_hash())
                        .arg(1)
                        .arg(keys::name(&member.name.to_lowercase()))
                        .arg(keys::holder_prefix(me, member.client))
                        .ignore();
                }
                if !now.iter().any(|n| n.name == member.name) {
                    pipe.cmd("EVALSHA")
                        .arg(unfile.get_hash())
                        .arg(1)
                        .arg(keys::members(me))
                        .arg(&member.name)
                        .arg(member.filed())
                        .ignore();
                }
            }
            for member in &changed {
                pipe.cmd("HSET")
                    .arg(keys::members(me))
                    .arg(&member.name)
                    .arg(member.filed())
                    .ignore();
            }
            pipe.exec(conn)
        })
    }
}

/// The members of `filed` whose claim failed (`claimed` 0: another
/// client holds the name).
fn lost(filed: Vec<Member>, claimed: &[i64]) -> Vec<Member> {
    filed
        .into_iter()
        .zip(claimed)
        .filter(|(_, &claimed)| claimed == 0)
        .map(|(member, _)| member)
        .collect()
}

/// Whether `member` (of a snapshot) still has its name (any case) in the
/// members now.
fn still_named(now: &[Member], member: &Member) -> bool {
    now.iter()
        .any(|n| n.client == member.client && n.name.eq_ignore_ascii_case(&member.name))
}

/// Adds to `pipe` the claim ([`keys::CLAIM`], `claim`) of `member`'s name
/// for it, as a client of server `me`: its reply is 1 if the name is the
/// member's now.
fn push_claim(pipe: &mut redis::Pipeline, claim: &Script, me: &str, member: &Member) {
    pipe.cmd("EVALSHA")
        .arg(claim.get_hash())
        .arg(1)
        .arg(keys::name(&member.name.to_lowercase()))
        .arg(keys::holder(me, member.client, &member.name))
        .arg(keys::holder_prefix(me, member.client));
}

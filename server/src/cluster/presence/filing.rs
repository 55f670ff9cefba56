//! Filing this server's members and claiming their names in Redis again:
//! after a filing failed, after a client was named without Redis, and
//! after Redis lost them (new, or restarted empty). Each works from a
//! snapshot of the members taken before its pipeline; what it filed or
//! claimed wrongly for a member that changed meanwhile (arrived, left,
//! was renamed or moved) is mended right after, so a client racing a beat
//! is neither missing from `/who`, nor listed as a ghost or in the wrong
//! room, nor keeps a name from everyone.

use redis::Script;

use super::super::keys;
use super::super::link::Failure;
use super::{Member, Presence};

impl Presence {
    /// Files every local member again under this server, at the beat after
    /// a filing failed, in one atomic pipeline (MULTI: `DEL`, then one
    /// `HSET` of them all): a filing lost to a broken connection or Redis
    /// away for a moment is mended within a beat, so `/who` lists the
    /// member and a survivor announces its leave in the right room if this
    /// server dies; a member whose removal failed is dropped. A member that
    /// changed while it ran is filed as it is after ([`Presence::settle`]).
    pub(super) fn refile(&mut self) -> Result<(), Failure> {
        let members = self.local.members();
        let key = keys::members(&self.server_id);
        self.link.run(|conn| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("DEL").arg(&key).ignore();
            if !members.is_empty() {
                pipe.cmd("HSET").arg(&key);
                for member in &members {
                    pipe.arg(&member.name)
                        .arg(keys::member_value(&member.room, member.entered));
                }
                pipe.ignore();
            }
            pipe.exec(conn)
        })?;
        self.settle(&members)
    }

    /// Claims every local member's name for it (the [`keys::CLAIM`] of
    /// `/nick`, pipelined; a name it holds already is only spelled again),
    /// at the beat after a client was named without Redis (a fallback guest
    /// name, held here only): so a `/msg` from another server finds it. A
    /// name another client took meanwhile is given up for a fresh guest
    /// name ([`Local::name_lost`](super::Local::name_lost)). A member renamed while this ran may
    /// have had its old name claimed again: it is freed again after
    /// ([`Presence::settle`]).
    pub(super) fn claim_names(&mut self) -> Result<(), Failure> {
        let members = self.local.members();
        if members.is_empty() {
            return Ok(());
        }
        let me = self.server_id.clone();
        let claim = Script::new(keys::CLAIM);
        let claimed: Vec<i64> = self.link.run(|conn| {
            let mut pipe = redis::pipe();
            for member in &members {
                push_claim(&mut pipe, &claim, &me, member);
            }
            pipe.query(conn)
        })?;
        // Two clients must never hold one name: the one here gives it up.
        self.give_up_lost(&members, &claimed);
        self.settle(&members)
    }

    /// Writes this server's members, their names, its guest floor and its
    /// guest-name tag into a Redis that does not have them (new, or
    /// restarted empty). A member that changed while it ran is filed as it
    /// is after, its old name freed ([`Presence::settle`]).
    pub(super) fn register(&mut self) -> Result<(), Failure> {
        let members = self.local.members();
        let floor = self.local.highest_guest();
        let tag = self.local.guest_tag();
        let me = self.server_id.clone();
        let raise = Script::new(keys::RAISE_TO);
        let claim = Script::new(keys::CLAIM);
        let claimed: Vec<i64> = self.link.run(|conn| {
            let mut pipe = redis::pipe();
            pipe.cmd("DEL").arg(keys::members(&me)).ignore();
            for member in &members {
                pipe.cmd("HSET")
                    .arg(keys::members(&me))
                    .arg(&member.name)
                    .arg(keys::member_value(&member.room, member.entered))
                    .ignore();
                // A client of another server may have taken the name in
                // the meantime (this server was taken for lost and its
                // names freed, or Redis was back and this server not yet).
                push_claim(&mut pipe, &claim, &me, member);
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
        self.registered = self.link.epoch().map(str::to_string);
        // Two clients must never hold one name: the one here gives it up.
        self.give_up_lost(&members, &claimed);
        self.settle(&members)
    }

    /// Gives up, for a fresh guest name ([`Local::name_lost`](super::Local::name_lost)), each name
    /// of `filed` (a snapshot of the members) that a pipeline could not
    /// claim (`claimed` 0: another client holds it), if its member still
    /// has it.
    fn give_up_lost(&self, filed: &[Member], claimed: &[i64]) {
        let now = self.local.members();
        for (member, &claimed) in filed.iter().zip(claimed) {
            if claimed == 0 && still_named(&now, member) {
                self.local.name_lost(member.client, &member.name);
            }
        }
    }

    /// Mends what a pipeline filed and claimed from `filed`, a snapshot
    /// of the members taken before it, for each member that changed while
    /// it ran (that member's own filing, removal or rename could reach
    /// Redis first, and the pipeline then undid it):
    /// - one that left or was renamed would stay listed in `/who` (and be
    ///   announced as leaving again), or keep its old name from everyone,
    ///   until this server stops: its old name is freed if this client
    ///   still holds it, and its entry in the members list taken out if it
    ///   is still the one filed (a member that has that exact name now
    ///   keeps it);
    /// - one that arrived, was renamed or moved to another room would be
    ///   missing from the list (the pipeline's `DEL`), or filed where it
    ///   was: it is filed as it is now.
    ///
    /// One more change while this runs is filed by its own path, after.
    fn settle(&mut self, filed: &[Member]) -> Result<(), Failure> {
        let now = self.local.members();
        let gone: Vec<&Member> = filed
            .iter()
            .filter(|m| !now.iter().any(|n| n.client == m.client && n.name == m.name))
            .collect();
        let changed: Vec<&Member> = now.iter().filter(|n| !filed.contains(n)).collect();
        if gone.is_empty() && changed.is_empty() {
            return Ok(());
        }
        let me = self.server_id.clone();
        let delete = Script::new(keys::DELETE_IF);
        let unfile = Script::new(keys::HDEL_IF);
        self.link.run(|conn| {
            let mut pipe = redis::pipe();
            for member in &gone {
                if !still_named(&now, member) {
                    pipe.cmd("EVALSHA")
                        .arg(delete.get_hash())
                        .arg(1)
                        .arg(keys::name(&member.name.to_lowercase()))
                        .arg(keys::holder_prefix(&me, member.client))
                        .ignore();
                }
                if !now.iter().any(|n| n.name == member.name) {
                    pipe.cmd("EVALSHA")
                        .arg(unfile.get_hash())
                        .arg(1)
                        .arg(keys::members(&me))
                        .arg(&member.name)
                        .arg(keys::member_value(&member.room, member.entered))
                        .ignore();
                }
            }
            for member in &changed {
                pipe.cmd("HSET")
                    .arg(keys::members(&me))
                    .arg(&member.name)
                    .arg(keys::member_value(&member.room, member.entered))
                    .ignore();
            }
            pipe.exec(conn)
        })
    }
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

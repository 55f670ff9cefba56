//! Reaping lost servers: a registered server whose heartbeat expired has
//! its members announced as left, once, by whichever survivor takes its
//! reap lock, and its keys deleted.

use redis::Script;

use super::super::keys;
use super::super::link::Failure;
use std::collections::HashSet;
use std::time::Instant;

use super::{
    Member, Presence, BACK_KIND, HEARTBEAT_TTL, LOST_KIND, REAPED_TTL, REAP_CHUNK, REAP_LOCK_TTL,
};
use crate::log;

impl Presence {
    /// Finds the registered servers whose heartbeat expired and, for each
    /// whose lock this server takes, announces its members as left; first
    /// lists again those lost with Redis's data ([`Presence::relist_due`]).
    /// Returns the other servers listed, each with whether it is alive.
    pub(super) fn reap_lost(&mut self) -> Result<Vec<(String, bool)>, Failure> {
        let servers: Vec<String> = self
            .link
            .run(|conn| redis::cmd("SMEMBERS").arg(keys::servers()).query(conn))?;
        let me = self.server_id.clone();
        let mut others: Vec<String> = servers.into_iter().filter(|s| *s != me).collect();
        self.remembered.lock().listed(&others);
        others.extend(self.relist_due()?);
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let alive: Vec<bool> = self.link.run(|conn| {
            let mut pipe = redis::pipe();
            for other in &others {
                pipe.cmd("EXISTS").arg(keys::alive(other));
            }
            pipe.query(conn)
        })?;
        let mut listed = Vec::new();
        // Right after an outage, the others are given time to beat again.
        let waiting = Instant::now() < self.reap_from;
        for (other, alive) in others.into_iter().zip(alive) {
            listed.push((other.clone(), alive));
            if alive || waiting {
                continue;
            }
            let take = Script::new(keys::TAKE_LOCK);
            let locked: i64 = self.link.run(|conn| {
                redis::cmd("EVALSHA")
                    .arg(take.get_hash())
                    .arg(1)
                    .arg(keys::reap(&other))
                    .arg(&me)
                    .arg(REAP_LOCK_TTL.as_millis() as u64)
                    .query(conn)
            })?;
            if locked == 1 {
                let announced = self.reap(&other, LOST_KIND, "server lost")?;
                log!("redis: server {other} lost; announced {announced} of its clients as gone");
            }
        }
        Ok(listed)
    }

    /// This server registered (again): if the others had taken it for lost,
    /// each of its members they announced as gone ([`keys::reaped`]) and
    /// still here is announced back in its room, once
    /// ([`keys::BACK_MEMBER`]); then the rest are forgotten. This server's
    /// own members skip both notices (no one left for them).
    ///
    /// The members are read and announced holding the names link, as a
    /// filing is: a member's `/nick` claims its new name before the
    /// snapshot or after the announcement, and frees its old one after
    /// its rename in memory, so the name announced is still the member's
    /// in Redis when the script checks it. Before, a rename between the
    /// two freed the snapshot's name first, and the member was dropped
    /// from the set unannounced (a review).
    pub(super) fn announce_back(&mut self) -> Result<(), Failure> {
        let me = self.server_id.clone();
        let reaped: HashSet<String> = self
            .link
            .run(|conn| redis::cmd("SMEMBERS").arg(keys::reaped(&me)).query(conn))?;
        if reaped.is_empty() {
            return Ok(());
        }
        let local = std::sync::Arc::clone(&self.local);
        let config = self.config;
        let script = Script::new(keys::BACK_MEMBER);
        let announced: Vec<i64> = self.holding_names(|link| {
            // By client id: a member renamed meanwhile is announced back
            // by its new name.
            let members: Vec<Member> = local
                .members()
                .into_iter()
                .filter(|m| reaped.contains(&m.client.to_string()))
                .collect();
            // Run twice, it announces each member once: the script takes
            // the member out of the set with the append.
            link.run_idempotent(|conn| {
                let mut pipe = redis::pipe();
                for member in &members {
                    pipe.cmd("EVALSHA")
                        .arg(script.get_hash())
                        .arg(4)
                        .arg(keys::log(&member.room))
                        .arg(keys::seq(&member.room))
                        .arg(keys::reaped(&me))
                        .arg(keys::name(&member.name.to_lowercase()))
                        .arg(config.max_len)
                        .arg(config.idle_ttl.as_millis() as u64)
                        .arg(format!("{BACK_KIND}:{me}:{}", member.name))
                        .arg(&member.name)
                        .arg(BACK_KIND)
                        .arg(local.back(&member.name))
                        .arg(keys::holder_prefix(&me, member.client))
                        .arg(member.client);
                }
                pipe.query(conn)
            })
        })?;
        // Those not here any more (they left while it was cut off).
        self.link
            .run(|conn| redis::cmd("DEL").arg(keys::reaped(&me)).exec(conn))?;
        log!(
            "redis: this server was taken for lost; announced {} of its clients back",
            announced.iter().filter(|a| **a == 1).count()
        );
        Ok(())
    }

    /// Announces every member of server `other` as left (`kind`, for
    /// `reason`) once, frees their names, then forgets the server and its
    /// keys (members, wake and inbox streams). The members go in pipelines
    /// of [`REAP_CHUNK`], each led by a refresh of this server's own
    /// heartbeat, so reaping a big server costs a few round trips and never
    /// lets this one pass for lost meanwhile.
    pub(super) fn reap(&mut self, other: &str, kind: &str, reason: &str) -> Result<usize, Failure> {
        let members: Vec<(String, String)> = self
            .link
            .run(|conn| redis::cmd("HGETALL").arg(keys::members(other)).query(conn))?;
        let script = Script::new(keys::REAP_MEMBER);
        let me = self.server_id.clone();
        // The last beat's number again, never an older one: the next
        // heartbeat would take it for Redis gone back.
        let beat = self.beats;
        let mut announced = 0;
        for chunk in members.chunks(REAP_CHUNK) {
            let done: Vec<i64> = self.link.run(|conn| {
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(keys::alive(&me))
                    .arg(beat)
                    .arg("PX")
                    .arg(HEARTBEAT_TTL.as_millis() as u64)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(keys::reap(other))
                    .arg(REAP_LOCK_TTL.as_millis() as u64)
                    .ignore();
                for (name, value) in chunk {
                    let (room, _) = keys::parse_member(value);
                    pipe.cmd("EVALSHA")
                        .arg(script.get_hash())
                        .arg(5)
                        .arg(keys::members(other))
                        .arg(keys::name(&name.to_lowercase()))
                        .arg(keys::log(room))
                        .arg(keys::seq(room))
                        .arg(keys::reaped(other))
                        .arg(name)
                        .arg(format!("{other}:"))
                        .arg(self.config.max_len)
                        .arg(self.config.idle_ttl.as_millis() as u64)
                        .arg(format!("{kind}:{other}:{name}"))
                        .arg(kind)
                        .arg(self.local.left(name, reason))
                        .arg(REAPED_TTL.as_millis() as u64)
                        .arg(keys::reaped_entry(name, value));
                }
                pipe.query(conn)
            })?;
            announced += done.iter().filter(|d| **d == 1).count();
        }
        // A lost server back meanwhile stays listed (it registers again);
        // this one, stopping, goes whatever its heartbeat says.
        let unlist = Script::new(keys::UNLIST);
        let only_if_dead = if other == me { "0" } else { "1" };
        self.link.run(|conn| {
            redis::cmd("EVALSHA")
                .arg(unlist.get_hash())
                .arg(6)
                .arg(keys::servers())
                .arg(keys::alive(other))
                .arg(keys::members(other))
                .arg(keys::wake(other))
                .arg(keys::inbox(other))
                .arg(keys::beat(other))
                .arg(other)
                .arg(only_if_dead)
                .exec(conn)
        })?;
        Ok(announced)
    }
}

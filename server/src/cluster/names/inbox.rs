//! Requests to another server through its inbox in Redis: a private
//! message, a kick, a console's line; numbered, sent again on a fresh
//! connection, and put once and never late.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Instant;

use redis::Script;

use super::super::keys;
use super::super::link::Failure;
use super::super::now_ms;
use super::super::shared_bans::Shared;
use super::super::writer::{STALE_AFTER, UNSURE_DEADLINE};
use super::{Names, INBOX_MARK_TTL, INBOX_MAX_LEN, STALE};

/// Why an inbox request ([`Names::send`]) is not known to be in the inbox.
#[must_use]
#[derive(Debug)]
pub enum Unsent {
    /// Not put, and no copy of it ever will be: Redis could not be asked,
    /// or answered with an error.
    NotSent(Failure),
    /// Not put: Redis took it past [`STALE_AFTER`] (it was held up on the
    /// way), and no copy of it ever will be.
    Stale,
    /// Sent, and its reply lost (Redis stopped answering, the connection
    /// broke): it may have been put just before. No copy of it can be put
    /// any more: this answer comes [`UNSURE_DEADLINE`] after it was first
    /// sent, when any copy still on its way is stale.
    Unsure,
}

impl Names {
    /// Puts a request in server `server`'s inbox, once: `fields` (kind, and
    /// what that kind needs). Numbered, it is sent again on a fresh
    /// connection if its connection broke ([`crate::cluster::link::Link::run_idempotent`]):
    /// whichever copies reach Redis, the inbox takes one
    /// ([`keys::INBOX_PUT`]), and none past [`STALE_AFTER`] after the first
    /// was sent.
    ///
    /// # Errors
    /// [`Unsent`]: not put, or not known whether (then only once no copy
    /// can be put any more: this call waits until [`UNSURE_DEADLINE`] after
    /// the first sending, with no lock held).
    pub fn send(&self, server: &str, fields: &[(&str, &str)]) -> Result<(), Unsent> {
        let script = Script::new(keys::INBOX_PUT);
        let since = Instant::now();
        let sent_ms = now_ms();
        let mut tries = 0_u32;
        let put: Result<i64, Failure> = {
            let mut link = self.link.lock();
            let number = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
            let uid = format!("{}:{number}", self.server_id);
            link.run_idempotent(|conn| {
                tries += 1;
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(script.get_hash())
                    .arg(2)
                    .arg(keys::inbox(server))
                    .arg(keys::inbox_mark(&self.server_id))
                    .arg(number)
                    .arg(INBOX_MAX_LEN)
                    .arg(INBOX_MARK_TTL.as_millis() as u64)
                    .arg(sent_ms)
                    .arg(STALE_AFTER.as_millis() as u64)
                    .arg("uid")
                    .arg(&uid);
                for (field, value) in fields {
                    cmd.arg(*field).arg(*value);
                }
                cmd.query(conn)
            })
        };
        match put {
            Ok(STALE) => Err(Unsent::Stale),
            Ok(_) => Ok(()),
            // Its reply lost, or a copy went out before a try that failed
            // (even one that never sent it, finding no connection to be
            // had): wait until no copy of it can land, then say so. Only
            // Redis refusing the one copy sent means it was not put.
            Err(e)
                if matches!(e, Failure::Lost)
                    || tries >= 2
                    || (tries == 1 && !matches!(e, Failure::Refused(_))) =>
            {
                thread::sleep(UNSURE_DEADLINE.saturating_sub(since.elapsed()));
                Err(Unsent::Unsure)
            }
            Err(e) => Err(Unsent::NotSent(e)),
        }
    }

    /// Asks server `server` to send `line` to its client `client`.
    ///
    /// # Errors
    /// As [`Names::send`].
    pub fn tell(&self, server: &str, client: u64, line: &str) -> Result<(), Unsent> {
        self.send(
            server,
            &[
                ("kind", "tell"),
                ("client", &client.to_string()),
                ("line", line),
            ],
        )
    }

    /// Asks server `server` to kick its client `name`.
    ///
    /// # Errors
    /// As [`Names::send`].
    pub fn kick(&self, server: &str, name: &str, reason: Option<&str>) -> Result<(), Unsent> {
        self.send(
            server,
            &[
                ("kind", "kick"),
                ("name", name),
                ("reason", reason.unwrap_or("")),
            ],
        )
    }

    /// Asks every other registered server to run console command `line`,
    /// saying what it did to the shared ban list, if anything (`shared`:
    /// [`Names::share_ban`], [`Names::lift_ban`]). Returns how many were
    /// asked.
    ///
    /// # Errors
    /// When the servers could not be listed, or as [`Names::send`] for the
    /// first request not known to be put (the rest are not sent); with how
    /// many were asked before it.
    pub fn broadcast_console(
        &self,
        line: &str,
        shared: Option<Shared>,
    ) -> Result<usize, (usize, Unsent)> {
        let servers: Vec<String> = self
            .link
            .lock()
            .run_idempotent(|conn| redis::cmd("SMEMBERS").arg(keys::servers()).query(conn))
            .map_err(|e| (0, Unsent::NotSent(e)))?;
        let others: Vec<&String> = servers.iter().filter(|s| **s != self.server_id).collect();
        let shared = shared.as_ref().map(Shared::to_field);
        let mut fields = vec![("kind", "console"), ("line", line)];
        if let Some(shared) = &shared {
            fields.push(("shared", shared));
        }
        for (asked, server) in others.iter().enumerate() {
            self.send(server, &fields).map_err(|e| (asked, e))?;
        }
        Ok(others.len())
    }
}

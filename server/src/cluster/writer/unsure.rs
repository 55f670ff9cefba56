//! Lines whose fate is unknown (their batch's reply was lost): sent again
//! within [`UNSURE_DEADLINE`], fenced off and settled past it, refused
//! when Redis stays away or came back empty (see the parent module).

use std::time::Instant;

use super::super::{keys, Line, Refusal, Token};
use super::sending::WriterThread;
use super::{Job, Sent, UNSURE_DEADLINE};

/// A line sent in a batch whose reply was lost.
pub(super) struct Unsure {
    /// Whom to tell if it is refused in the end.
    pub(super) token: Token,
    /// The line, to send again or hand back.
    pub(super) line: Line,
    /// Its uid's counter (sent again with it, or compared with the
    /// high-water mark) and when it was first sent (settled after
    /// [`UNSURE_DEADLINE`]).
    pub(super) sent: Sent,
    /// The epoch of the Redis it was sent to: it is not sent again to a
    /// Redis restarted empty since.
    pub(super) epoch: Option<String>,
}

impl WriterThread {
    /// Settles the unsure lines. Past [`UNSURE_DEADLINE`] with Redis
    /// still away, they are refused as [`Refusal::Unsure`] (no copy can be
    /// applied any more: they are stale). Otherwise once the link is back:
    /// those sent to a Redis that restarted empty since are refused as
    /// [`Refusal::Restarted`], never sent again (a reader may have had them
    /// before the restart); the others are sent again with their uids
    /// within the deadline (applied once, whichever copy comes first), and
    /// past it fenced off, the mark they found saying which the log took.
    pub(super) fn settle_unsure(&mut self) {
        let Some(top) = self.unsure.iter().map(|u| u.sent.counter).max() else {
            return;
        };
        let now = Instant::now();
        let due = |u: &Unsure| now.duration_since(u.sent.since) >= UNSURE_DEADLINE;
        let overdue = self.unsure.iter().any(due);
        let applied: u64 = if overdue {
            let hw = keys::hw(&self.server_id);
            let ttl = self.config.idle_ttl.as_millis() as u64;
            let fence = self.fence.get_hash().to_string();
            match self.link.run(|conn| {
                redis::cmd("EVALSHA")
                    .arg(&fence)
                    .arg(1)
                    .arg(&hw)
                    .arg(top)
                    .arg(ttl)
                    .query(conn)
            }) {
                Ok(mark) => mark,
                Err(_) => {
                    self.refuse_due(now);
                    return;
                }
            }
        } else {
            // Connects if it can; the lines are sent again below.
            if self.link.run(|_| Ok(())).is_err() {
                // The attempt may have taken up to its timeout: a line
                // past its deadline by now is answered now, not after one
                // more attempt.
                self.refuse_due(Instant::now());
                return;
            }
            0
        };
        let epoch = self.link.epoch().map(str::to_string);
        for unsure in std::mem::take(&mut self.unsure) {
            if unsure.epoch != epoch {
                // Redis restarted empty since: whether it was applied (and
                // read) before cannot be known, and sending it again could
                // show it twice.
                self.sink
                    .refused(unsure.token, &unsure.line, Refusal::Restarted);
            } else if !overdue {
                self.retry
                    .push(Job::Retry(unsure.token, unsure.line, unsure.sent));
            } else if unsure.sent.counter > applied {
                // Fenced off: it can never be applied now.
                self.sink
                    .refused(unsure.token, &unsure.line, Refusal::NotTaken);
            }
        }
    }

    /// Redis away (stopped, dead, cut off): refuses as [`Refusal::Unsure`]
    /// every unsure line past its deadline at `now`. None can be applied
    /// any more (stale), but each may have been just before, its reply
    /// lost.
    pub(super) fn refuse_due(&mut self, now: Instant) {
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsure)
            .into_iter()
            .partition(|u| now.duration_since(u.sent.since) >= UNSURE_DEADLINE);
        self.unsure = wait;
        for unsure in due {
            self.sink
                .refused(unsure.token, &unsure.line, Refusal::Unsure);
        }
    }

    pub(super) fn refuse_unsure_all(&mut self) {
        for unsure in std::mem::take(&mut self.unsure) {
            self.sink
                .refused(unsure.token, &unsure.line, Refusal::Unsure);
        }
    }
}

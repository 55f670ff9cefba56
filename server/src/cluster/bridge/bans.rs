//! The cluster's shared ban list, applied to this server's own
//! (`shared_bans.rs`): each live ban it does not hold yet, as a ban passed
//! on through the inbox is applied.

use std::time::SystemTime;

use super::Bridge;
use crate::access::{self, Adopted};
use crate::Context;

impl Bridge {
    /// Applies every live ban of `shared` (the shared list as read: prefix
    /// -> ban line) that this server does not hold yet. Returns the
    /// entries found expired (to be taken out), or `None` when the server
    /// is not attached yet (or stopping): presence tries again at its next
    /// beat. One caller at a time, so two readings (the start's and
    /// presence's first registration) never apply one ban twice.
    pub fn adopt_bans(&self, shared: &[(String, String)]) -> Option<Vec<(String, String)>> {
        let ctx = self.rooms()?;
        let _alone = self.adopting.lock();
        Some(adopt_all(&ctx, shared))
    }
}

/// See [`Bridge::adopt_bans`].
fn adopt_all(ctx: &Context, shared: &[(String, String)]) -> Vec<(String, String)> {
    let now = SystemTime::now();
    let mut expired = Vec::new();
    let (mut applied, mut full) = (0_usize, 0_usize);
    for (field, line) in shared {
        let (bans, problems) = crate::bans::parse_file(line, now);
        if bans.is_empty() && problems.is_empty() {
            expired.push((field.clone(), line.clone()));
        }
        for problem in problems {
            crate::log!("redis: shared ban list, {field}: {problem}; skipped");
        }
        for ban in bans {
            match access::adopt(ctx, ban) {
                Adopted::Held => {}
                Adopted::Applied => applied += 1,
                Adopted::Full => full += 1,
            }
        }
    }
    if applied > 0 {
        crate::log!("redis: {applied} bans applied from the cluster's shared ban list");
    }
    if full > 0 {
        crate::log!(
            "redis: {full} bans of the cluster's shared ban list not applied: this server's list is full ({} bans)",
            crate::bans::MAX_BANS
        );
    }
    expired
}

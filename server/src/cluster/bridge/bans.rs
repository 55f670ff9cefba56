//! The cluster's shared ban list, applied to this server's own
//! (`shared_bans.rs`): each live ban it does not hold yet, as a ban passed
//! on through the inbox is applied; but not one this server's console
//! lifted while Redis did not answer, still to be taken out of the list,
//! unless it was applied after that lift (a `/ban` of the prefix typed
//! again since, anywhere).

use std::collections::HashMap;
use std::time::SystemTime;

use chat_common::protocol::count;

use super::Bridge;
use crate::access::{self, Adopted};
use crate::cluster::keys;
use crate::Context;

impl Bridge {
    /// Applies every live ban of `shared` (the shared list as read: prefix
    /// -> value, [`keys::ban_value`]) that this server does not hold yet
    /// and did not lift since it was applied. Returns the entries found
    /// expired (to be taken out), or `None` when the server is not
    /// attached yet (or stopping): presence tries again at its next beat.
    /// One caller at a time, so two readings (the start's and presence's
    /// first registration) never apply one ban twice.
    pub fn adopt_bans(&self, shared: &[(String, String)]) -> Option<Vec<(String, String)>> {
        let ctx = self.rooms()?;
        let _alone = self.adopting.lock();
        Some(adopt_all(&ctx, shared, &self.names.unlifted()))
    }
}

/// See [`Bridge::adopt_bans`]. `unlifted`: this server's lifts still to be
/// taken out of the shared list, prefix -> when lifted (ms).
fn adopt_all(
    ctx: &Context,
    shared: &[(String, String)],
    unlifted: &HashMap<String, u64>,
) -> Vec<(String, String)> {
    let now = SystemTime::now();
    let mut expired = Vec::new();
    let (mut applied, mut full, mut lifted) = (0_usize, 0_usize, 0_usize);
    for (field, value) in shared {
        let (applied_ms, line) = keys::parse_ban_value(value);
        if unlifted.get(field).is_some_and(|&at| applied_ms <= at) {
            lifted += 1;
            continue;
        }
        let (bans, problems) = crate::bans::parse_file(line, now);
        if bans.is_empty() && problems.is_empty() {
            expired.push((field.clone(), value.clone()));
        }
        for problem in problems {
            crate::log!("redis: shared ban list, {field}: {problem}");
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
        crate::log!(
            "redis: {} applied from the cluster's shared ban list",
            count(applied as u64, "ban")
        );
    }
    if lifted > 0 {
        crate::log!(
            "redis: {} of the cluster's shared ban list not applied: lifted here while Redis did not answer (taken out of it once it does)",
            count(lifted as u64, "ban")
        );
    }
    if full > 0 {
        crate::log!(
            "redis: {} of the cluster's shared ban list not applied: this server's list is full ({} bans)",
            count(full as u64, "ban"),
            crate::bans::MAX_BANS
        );
    }
    expired
}

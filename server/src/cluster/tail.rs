//! A room's history in its Redis log: the last chat lines, read back
//! from the log's end in pages, and where live reading starts after them.

use redis::streams::StreamRangeReply;

use super::link::{Failure, Link};
use super::reader::Position;
use super::{keys, Entry};

/// Entries read back from the end of a log per round trip, while looking
/// for history.
pub const TAIL_PAGE: usize = 256;

/// The most entries read back looking for history: a room of notices
/// with few chat lines does not make a first member wait for its whole log.
pub const TAIL_MAX: u64 = 10_000;

/// The last `want` entries of `room`'s log that `keep` accepts (oldest
/// first), looking back at most [`TAIL_MAX`] entries, and the
/// position of the log's last entry (where reading goes on).
///
/// # Errors
/// When Redis cannot be asked.
pub fn tail(
    link: &mut Link,
    room: &str,
    want: usize,
    keep: impl Fn(&Entry) -> bool,
) -> Result<(Vec<Entry>, Position), Failure> {
    tail_upto(link, room, "+", want, keep)
}

/// [`tail`] of the log as it was up to entry `upto` (an id, included;
/// `+`: its end).
///
/// # Errors
/// When Redis cannot be asked.
pub fn tail_upto(
    link: &mut Link,
    room: &str,
    upto: &str,
    want: usize,
    keep: impl Fn(&Entry) -> bool,
) -> Result<(Vec<Entry>, Position), Failure> {
    let key = keys::log(room);
    let mut kept = Vec::new();
    let mut end = upto.to_string();
    let mut last: Option<(String, u64)> = None;
    let mut seen = 0u64;
    loop {
        let page: StreamRangeReply = link.run_idempotent(|conn| {
            redis::cmd("XREVRANGE")
                .arg(&key)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(TAIL_PAGE)
                .query(conn)
        })?;
        let full = page.ids.len() == TAIL_PAGE;
        for id in &page.ids {
            // Pages after the first start at the previous page's last id,
            // which is excluded by its "(" prefix.
            let Some(entry) = Entry::from_stream(id) else {
                continue;
            };
            if last.is_none() {
                last = Some((entry.id.clone(), entry.n));
            }
            if kept.len() < want && keep(&entry) {
                kept.push(entry);
            }
        }
        seen += page.ids.len() as u64;
        match page.ids.last() {
            Some(id) if full && kept.len() < want && seen < TAIL_MAX => {
                end = format!("({}", id.id);
            }
            _ => break,
        }
    }
    kept.reverse();
    let epoch = link.epoch().unwrap_or_default().to_string();
    let (id, n) = last.unwrap_or_else(|| ("0-0".to_string(), 0));
    Ok((kept, Position { id, n, epoch }))
}

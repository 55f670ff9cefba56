//! The history reloaded at start from the transcript's tail: each room's
//! last chat lines, read from at most [`TAIL_BYTES`] at the end of FILE.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use chat_common::sanitize::sanitize;

use super::TAIL_BYTES;
use crate::log;

/// What a chat line holds besides its text: `<`, the name (at most
/// `MAX_NAME`), `> `, an action's `* ` and the LF. A line reloaded is at
/// most `3 x --max-line` (its text sanitised) plus this.
pub const LINE_FRAME: usize = chat_common::name::MAX_NAME + 8;

/// The history of each room found in the last [`TAIL_BYTES`] of FILE: for
/// each room (its name as written, without `#`), its last `keep` chat lines,
/// oldest first, each with its LF. At most `rooms` rooms, those written to
/// most recently. An unreadable file gives no history (logged).
///
/// The server wrote the file, but anyone may have since: each line is
/// sanitised again as a live line is (no control or bidi character
/// reaches a client raw) and cut to `max_bytes` with its LF, the bound of
/// a live one.
pub fn load_history(
    path: &Path,
    keep: usize,
    rooms: usize,
    max_bytes: usize,
) -> Vec<(String, Vec<Arc<str>>)> {
    if keep == 0 {
        return Vec::new();
    }
    let tail = match read_tail(path) {
        Ok(tail) => tail,
        Err(e) => {
            log!(
                "transcript {}: cannot read its history: {}",
                path.display(),
                log::plain(&e)
            );
            return Vec::new();
        }
    };
    let text = String::from_utf8_lossy(&tail);
    // room key -> (spelling, last line number, lines)
    let mut found: HashMap<String, (String, usize, VecDeque<Arc<str>>)> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let mut parts = line.splitn(3, ' ');
        let (Some(_time), Some(room), Some(said)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(room) = room.strip_prefix('#') else {
            continue;
        };
        if !said.starts_with('<') || chat_common::room::check(room).is_err() {
            continue;
        }
        let entry = found
            .entry(chat_common::room::key(room))
            .or_insert_with(|| (room.to_string(), 0, VecDeque::new()));
        entry.0 = room.to_string();
        entry.1 = n;
        if entry.2.len() == keep {
            entry.2.pop_front();
        }
        let said = sanitize(said);
        entry
            .2
            .push_back(format!("{}\n", cut(&said, max_bytes - 1)).into());
    }
    let mut rooms_found: Vec<_> = found.into_values().collect();
    rooms_found.sort_by_key(|(_, last, _)| *last);
    let skip = rooms_found.len().saturating_sub(rooms);
    rooms_found
        .into_iter()
        .skip(skip)
        .map(|(name, _, lines)| (name, lines.into()))
        .collect()
}

/// `text`, cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The last [`TAIL_BYTES`] of FILE, from the first whole line in them.
fn read_tail(path: &Path) -> std::io::Result<Vec<u8>> {
    // Not waiting for a FIFO's writer (nor becoming a device's terminal).
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        // A device (`/dev/full`) or a pipe has no history to read.
        return Ok(Vec::new());
    }
    let len = meta.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut tail)?;
    if start > 0 {
        // The first line is probably cut: skip it.
        let cut = tail
            .iter()
            .position(|&b| b == b'\n')
            .map_or(tail.len(), |i| i + 1);
        tail.drain(..cut);
    }
    Ok(tail)
}

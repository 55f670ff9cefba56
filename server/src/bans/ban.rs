//! One ban, its line in the `--bans` file, and the durations `/ban`
//! takes and `/bans` shows.

use std::time::{Duration, SystemTime};

use chat_common::name::NameError;
use chat_common::protocol;
use chat_common::sanitize::sanitize;

use super::{Prefix, MAX_BANS, MAX_DURATION, MAX_REASON};

/// `90s`, `10m`, `2h`, `7d`: a whole number and one unit, at most
/// [`MAX_DURATION`].
///
/// # Errors
/// A line saying what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like 90s, 10m, 2h or 7d");
    let unit = text.chars().last().ok_or_else(bad)?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = n.checked_mul(scale).ok_or_else(bad)?;
    if secs == 0 {
        return Err(format!("{text:?}: a ban lasts at least 1s"));
    }
    let duration = Duration::from_secs(secs);
    if duration > MAX_DURATION {
        return Err(format!(
            "{text:?} is longer than the longest ban, {}d",
            MAX_DURATION.as_secs() / 86_400
        ));
    }
    Ok(duration)
}

/// What is left of a ban, as a person reads it: `45s`, `59m 10s`, `2h 5m`,
/// `6d 23h`. Rounded up to the second, so a live ban never shows `0s`.
pub fn format_left(left: Duration) -> String {
    let mut secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    secs = secs.max(1);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Who is banned.
    pub prefix: Prefix,
    /// When it ends; `None` = until `/unban`. Wall-clock time, so a restart
    /// keeps the end where it was.
    pub until: Option<SystemTime>,
    /// The client name `/ban NAME` was given, so `/unban NAME` finds the ban
    /// after that client is gone.
    pub name: Option<String>,
    /// Shown to the banned client and in `/bans`; already sanitised.
    pub reason: Option<String>,
}

impl Ban {
    /// A ban of `prefix` for `duration` (`None`: until `/unban`) from `now`.
    /// The reason is sanitised and cut to [`MAX_REASON`].
    pub fn new(
        prefix: Prefix,
        duration: Option<Duration>,
        name: Option<String>,
        reason: Option<&str>,
        now: SystemTime,
    ) -> Ban {
        Ban {
            prefix,
            until: duration.map(|d| now + d),
            name,
            reason: reason.map(clean_reason).filter(|r| !r.is_empty()),
        }
    }

    pub(super) fn live(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|until| until > now)
    }

    /// What is left of it: `forever`, or `59m 10s`.
    pub fn left(&self, now: SystemTime) -> String {
        match self.until {
            None => "until /unban".to_string(),
            Some(until) => format_left(until.duration_since(now).unwrap_or_default()),
        }
    }

    /// The line a banned client is told before it is closed.
    pub fn message(&self) -> String {
        match &self.reason {
            Some(reason) => format!("you are banned from this server: {reason}"),
            None => "you are banned from this server".to_string(),
        }
    }

    /// One line of the file (with `--redis`, also its value in the
    /// cluster's shared list, read back with [`parse_file`]).
    pub fn to_line(&self) -> String {
        let until = self.until.map_or("never".to_string(), |t| {
            humantime::format_rfc3339_seconds(t).to_string()
        });
        let name = self.name.as_deref().unwrap_or("-");
        let reason = self.reason.as_deref().unwrap_or("");
        format!("{} {until} {name} {reason}", self.prefix)
            .trim_end()
            .to_string()
    }

    /// One line of the file back into a ban. Its words are split at runs
    /// of spaces or tabs (a line edited by hand may have two); the reason
    /// is the rest of the line.
    pub(super) fn from_line(line: &str) -> Result<Ban, String> {
        let mut rest = line;
        let mut word = || {
            let (first, after) = rest
                .trim_start()
                .split_once(char::is_whitespace)
                .unwrap_or((rest.trim_start(), ""));
            rest = after;
            Some(first).filter(|w| !w.is_empty())
        };
        let prefix = Prefix::parse(word().unwrap_or(""))?;
        let until = match word() {
            None => return Err("no end time (an RFC 3339 time or `never`)".into()),
            Some("never") => None,
            Some(time) => Some(
                humantime::parse_rfc3339(time)
                    .map_err(|_| format!("{time:?} is not an RFC 3339 time or `never`"))?,
            ),
        };
        let name = match word() {
            None | Some("-") => None,
            Some(name) => {
                // By shape only: `/ban guest-3` keeps the name the server
                // gave, which a user could not take (reserved).
                match chat_common::name::check(name) {
                    Ok(()) | Err(NameError::Reserved) => {}
                    Err(why) => return Err(format!("name {:?}: {why}", sanitize(name))),
                }
                Some(name.to_string())
            }
        };
        let reason = Some(clean_reason(rest)).filter(|r| !r.is_empty());
        Ok(Ban {
            prefix,
            until,
            name,
            reason,
        })
    }
}

/// A reason as it is kept: sanitised, trimmed, at most [`MAX_REASON`] bytes.
fn clean_reason(reason: &str) -> String {
    let reason = sanitize(reason.trim()).replace('\t', " ");
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].trim_end().to_string()
}

/// Problems [`parse_file`] words one by one; past them, one line counts
/// the rest, so a file of garbage (up to
/// [`MAX_START_FILE`](crate::start_file::MAX_START_FILE)) logs a screenful,
/// not a line per line.
pub const PROBLEMS_SHOWN: usize = 10;

/// Reads a ban file's text: the live bans, and a line for each line that
/// was skipped (malformed), naming its number, each ending in `skipped`:
/// at most [`PROBLEMS_SHOWN`] of them, then one counting the others. Lines
/// past [`MAX_BANS`] live bans are counted in one line. A ban ending more
/// than [`MAX_DURATION`] from `now` (a file edited by hand, or saved by a
/// server whose clock was ahead) is kept, ending then, and said so.
pub fn parse_file(text: &str, now: SystemTime) -> (Vec<Ban>, Vec<String>) {
    let mut bans: Vec<Ban> = Vec::new();
    let mut problems = Vec::new();
    // Problems past the first PROBLEMS_SHOWN: (lines skipped, bans held
    // to the longest ban), counted apart, so a ban kept never reads as one
    // skipped.
    let (mut unshown_skipped, mut unshown_held) = (0_usize, 0_usize);
    // (how many, the first one's line number)
    let mut past_max: Option<(usize, usize)> = None;
    let latest = now + MAX_DURATION;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = match Ban::from_line(line) {
            Ok(ban) if !ban.live(now) => None,
            Ok(_) if bans.len() >= MAX_BANS => {
                let (count, _) = past_max.get_or_insert((0, i + 1));
                *count += 1;
                None
            }
            Ok(mut ban) => {
                let cut = ban.until.is_some_and(|until| until > latest);
                if cut {
                    ban.until = Some(latest);
                }
                // A later line for the same prefix wins, as a later /ban does.
                bans.retain(|b| b.prefix != ban.prefix);
                bans.push(ban);
                let days = MAX_DURATION.as_secs() / 86_400;
                cut.then(|| {
                    let held = format!(
                        "line {}: ends more than the longest ban ({days}d) from now; held for {days}d",
                        i + 1
                    );
                    (held, false)
                })
            }
            Err(why) => Some((format!("line {}: {why}; skipped", i + 1), true)),
        };
        // (what to log, whether the line was skipped)
        match problem {
            Some((problem, _)) if problems.len() < PROBLEMS_SHOWN => problems.push(problem),
            Some((_, true)) => unshown_skipped += 1,
            Some((_, false)) => unshown_held += 1,
            None => {}
        }
    }
    let lines = |n: usize| if n == 1 { "line" } else { "lines" };
    if unshown_skipped > 0 {
        problems.push(format!(
            "{unshown_skipped} more {} with a problem, not shown one by one; skipped",
            lines(unshown_skipped)
        ));
    }
    if unshown_held > 0 {
        problems.push(format!(
            "{unshown_held} more {} ending more than the longest ban ({}d) from now, not shown one by one; held for that long",
            lines(unshown_held),
            MAX_DURATION.as_secs() / 86_400
        ));
    }
    if let Some((count, first)) = past_max {
        problems.push(format!(
            "{} from line {first} on: more than {MAX_BANS} bans; skipped",
            protocol::count(count as u64, "line")
        ));
    }
    (bans, problems)
}

/// The whole file for `bans`.
pub fn render(bans: &[Ban]) -> String {
    let mut text = String::from(
        "# chat-server ban list: PREFIX UNTIL NAME REASON, one ban a line.\n\
         # Written whole by the server on every change; edit it while the server is stopped.\n",
    );
    for ban in bans {
        text.push_str(&ban.to_line());
        text.push('\n');
    }
    text
}

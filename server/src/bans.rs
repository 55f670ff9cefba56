//! The ban list: which addresses may not connect, for how long, and the
//! file (`--bans`) that keeps it across restarts.
//!
//! A ban covers a [`Prefix`]: one address (`192.0.2.7`, every 127.x.y.z is
//! its own) or a CIDR block (`192.0.2.0/24`, `2001:db8::/32`). It lasts until
//! a wall-clock time (so it survives a restart as it was meant) or until
//! `/unban`. Expired bans are ignored at once and dropped at the next change.
//!
//! The list sits behind its own short lock, taken by the accept loop for
//! each connection (a scan of at most [`MAX_BANS`] entries, no I/O). The file
//! is written by whoever changed the list, outside that lock, whole, to a
//! temporary file then renamed over FILE, so a crash leaves the old list or
//! the new one, never half of one; a second lock orders the writers, and a
//! generation number keeps an older snapshot from overwriting a newer one.
//!
//! The file: one ban a line, `PREFIX UNTIL NAME REASON`, UNTIL an RFC 3339
//! UTC time or `never`, NAME the client name the ban was made for or `-`,
//! REASON the rest of the line (may be empty). `#` lines and blank lines are
//! ignored.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chat_common::name::NameError;
use chat_common::sanitize::sanitize;
use parking_lot::Mutex;

use crate::log;

/// Most bans held at once. Each costs at most about 300 bytes (a prefix,
/// a time, a name of 16 bytes and a reason of [`MAX_REASON`]), so the list
/// stays under about 1.2 MiB, and the accept loop's scan of it under a few
/// microseconds.
pub const MAX_BANS: usize = 4096;

/// Longest reason kept with a ban, in bytes (cut at a character boundary).
pub const MAX_REASON: usize = 200;

/// Longest ban: 10 years. Longer is "until `/unban`": give no duration.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// An address, or a block of them: `len` leading bits of `net` (host bits
/// zero). IPv4 addresses are always held as IPv4, never as `::ffff:a.b.c.d`,
/// so a client of a dual-stack listener matches an IPv4 ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    net: IpAddr,
    len: u8,
}

impl Prefix {
    /// Exactly one address.
    pub fn host(ip: IpAddr) -> Prefix {
        let ip = ip.to_canonical();
        Prefix {
            net: ip,
            len: max_len(ip),
        }
    }

    /// `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`. Host bits are cleared
    /// (`192.0.2.7/24` is `192.0.2.0/24`).
    ///
    /// # Errors
    /// A line saying what is wrong.
    pub fn parse(text: &str) -> Result<Prefix, String> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let raw: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or a CIDR prefix"))?;
        let ip = raw.to_canonical();
        let Some(len) = len else {
            return Ok(Prefix::host(ip));
        };
        let too_long = || format!("{text:?}: the prefix length must be 0 to {}", max_len(raw));
        let len: u8 = len
            .parse()
            .ok()
            .filter(|&n| n <= max_len(raw))
            .ok_or_else(too_long)?;
        // `::ffff:192.0.2.0/120` is the IPv4 block `192.0.2.0/24`.
        let len = if raw.is_ipv6() && ip.is_ipv4() {
            len.checked_sub(96).ok_or_else(|| {
                format!("{text:?}: an IPv4-mapped prefix needs a length of 96 to 128")
            })?
        } else {
            len
        };
        let ip = mask(ip, len);
        Ok(Prefix { net: ip, len })
    }

    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.len) == self.net
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == max_len(self.net) {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{}/{}", self.net, self.len)
        }
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// `ip` with all but its first `len` bits cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & keep))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & keep))
        }
    }
}

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
            "{text:?} is longer than {}d; give no duration to ban until /unban",
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

    fn live(&self, now: SystemTime) -> bool {
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

    /// One line of the file.
    fn to_line(&self) -> String {
        let until = self.until.map_or("never".to_string(), |t| {
            humantime::format_rfc3339_seconds(t).to_string()
        });
        let name = self.name.as_deref().unwrap_or("-");
        let reason = self.reason.as_deref().unwrap_or("");
        format!("{} {until} {name} {reason}", self.prefix)
            .trim_end()
            .to_string()
    }

    /// One line of the file back into a ban.
    fn from_line(line: &str) -> Result<Ban, String> {
        let mut words = line.splitn(4, ' ');
        let prefix = Prefix::parse(words.next().unwrap_or(""))?;
        let until = match words.next() {
            None | Some("") => return Err("no end time (an RFC 3339 time or `never`)".into()),
            Some("never") => None,
            Some(time) => Some(
                humantime::parse_rfc3339(time)
                    .map_err(|_| format!("{time:?} is not an RFC 3339 time or `never`"))?,
            ),
        };
        let name = match words.next() {
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
        let reason = words.next().map(clean_reason).filter(|r| !r.is_empty());
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

/// Reads a ban file's text: the live bans, and a line for each line that
/// was skipped (malformed, or past [`MAX_BANS`]), naming its number.
pub fn parse_file(text: &str, now: SystemTime) -> (Vec<Ban>, Vec<String>) {
    let mut bans: Vec<Ban> = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match Ban::from_line(line) {
            Ok(ban) if !ban.live(now) => {}
            Ok(_) if bans.len() >= MAX_BANS => {
                problems.push(format!("line {}: more than {MAX_BANS} bans", i + 1));
            }
            Ok(ban) => {
                // A later line for the same prefix wins, as a later /ban does.
                bans.retain(|b| b.prefix != ban.prefix);
                bans.push(ban);
            }
            Err(why) => problems.push(format!("line {}: {why}", i + 1)),
        }
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

/// `/ban` refused: the list holds [`MAX_BANS`] live bans already.
#[derive(Debug, PartialEq, Eq)]
pub struct ListFull;

/// What `/ban` did.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Added {
    /// A new ban.
    New,
    /// That prefix was banned already: its end and reason were replaced.
    Replaced,
}

struct List {
    bans: Vec<Ban>,
    /// Counts changes, so a writer never replaces a newer file by an older
    /// snapshot.
    generation: u64,
}

/// The live ban list, and where it is saved.
pub struct Bans {
    list: Mutex<List>,
    /// `--bans FILE`, if given.
    file: Option<PathBuf>,
    /// The generation last written to `file`; held while writing, so writers
    /// take turns.
    saved: Mutex<u64>,
}

impl Bans {
    /// An empty list, kept in memory only.
    pub fn in_memory() -> Bans {
        Bans::with(Vec::new(), None)
    }

    fn with(bans: Vec<Ban>, file: Option<PathBuf>) -> Bans {
        Bans {
            list: Mutex::new(List {
                bans,
                generation: 0,
            }),
            file,
            saved: Mutex::new(0),
        }
    }

    /// The list kept in `file` (`--bans`), or an empty one without it. A
    /// missing file is an empty list, and is created now; each malformed
    /// line is logged with its number and skipped.
    ///
    /// # Errors
    /// A file that cannot be read, or created: one line saying so.
    pub fn load(file: Option<&Path>) -> Result<Bans, String> {
        let Some(file) = file else {
            return Ok(Bans::in_memory());
        };
        let text = match fs::read(file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Created now, so a path that can never be written is
                // found at start, not at the first /ban.
                write_atomically(file, render(&[]).as_bytes()).map_err(|e| {
                    format!(
                        "cannot create the ban list {}: {}",
                        file.display(),
                        log::plain(&e)
                    )
                })?;
                String::new()
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the ban list {}: {}",
                    file.display(),
                    log::plain(&e)
                ))
            }
        };
        let (bans, problems) = parse_file(&text, SystemTime::now());
        for problem in &problems {
            log!("ban list {}: {problem}; skipped", file.display());
        }
        if !text.trim().is_empty() {
            log!("{} bans loaded from {}", bans.len(), file.display());
        }
        Ok(Bans::with(bans, Some(file.to_path_buf())))
    }

    /// The live ban covering `ip`, if any.
    pub fn find(&self, ip: IpAddr) -> Option<Ban> {
        let now = SystemTime::now();
        let list = self.list.lock();
        list.bans
            .iter()
            .find(|ban| ban.live(now) && ban.prefix.contains(ip))
            .cloned()
    }

    /// Adds `ban` (replacing one of the same prefix) and saves the list.
    ///
    /// # Errors
    /// [`ListFull`] at [`MAX_BANS`] live bans.
    pub fn add(&self, ban: Ban) -> Result<Added, ListFull> {
        let now = SystemTime::now();
        let mut list = self.list.lock();
        list.bans.retain(|b| b.live(now));
        let added = match list.bans.iter().position(|b| b.prefix == ban.prefix) {
            Some(i) => {
                list.bans[i] = ban;
                Added::Replaced
            }
            None if list.bans.len() >= MAX_BANS => return Err(ListFull),
            None => {
                list.bans.push(ban);
                Added::New
            }
        };
        list.generation += 1;
        drop(list);
        self.save();
        Ok(added)
    }

    /// Lifts the ban of `target`: a prefix as `/ban` took it, or the name a
    /// ban was made for (any case). Returns the bans lifted.
    pub fn remove(&self, target: &str) -> Vec<Ban> {
        let prefix = Prefix::parse(target).ok();
        let now = SystemTime::now();
        let mut list = self.list.lock();
        let mut lifted = Vec::new();
        list.bans.retain(|ban| {
            let hit = Some(ban.prefix) == prefix
                || ban
                    .name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(target));
            if hit && ban.live(now) {
                lifted.push(ban.clone());
            }
            !hit && ban.live(now)
        });
        if lifted.is_empty() {
            return lifted;
        }
        list.generation += 1;
        drop(list);
        self.save();
        lifted
    }

    /// The live bans, oldest first.
    pub fn list(&self) -> Vec<Ban> {
        let now = SystemTime::now();
        let list = self.list.lock();
        list.bans.iter().filter(|b| b.live(now)).cloned().collect()
    }

    /// Writes the list to the file, whole and atomically, unless a newer
    /// snapshot is already there. Failure is logged: the ban still holds
    /// until the server stops.
    fn save(&self) {
        let Some(file) = &self.file else { return };
        let mut saved = self.saved.lock();
        let (generation, text) = {
            let list = self.list.lock();
            if list.generation <= *saved {
                return;
            }
            let now = SystemTime::now();
            let live: Vec<Ban> = list.bans.iter().filter(|b| b.live(now)).cloned().collect();
            (list.generation, render(&live))
        };
        match write_atomically(file, text.as_bytes()) {
            Ok(()) => *saved = generation,
            Err(e) => log!(
                "cannot save the ban list to {}: {}; the change holds until the server stops",
                file.display(),
                log::plain(&e)
            ),
        }
    }
}

/// Writes `bytes` to a temporary file next to `file` (mode 0600), syncs it,
/// and renames it over `file`: readers see the old file or the new one.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other("the ban list's path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = file.with_file_name(tmp_name);
    let written = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        fs::rename(&tmp, file)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // Make the rename itself durable; not every filesystem allows this.
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

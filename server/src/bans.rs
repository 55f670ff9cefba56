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
//!
//! `prefix.rs`: [`Prefix`], an address or a block. `ban.rs`: [`Ban`], its
//! line in the file, and the durations `/ban` takes and `/bans` shows. This
//! file: the list, its lock, and writing the file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use chat_common::protocol;

use crate::log;
use crate::start_file::{self, Unread};

mod ban;
mod prefix;

pub use ban::{format_left, parse_duration, parse_file, render, Ban};
pub use prefix::Prefix;

/// Most bans held at once. Each costs at most about 300 bytes (a prefix,
/// a time, a name of 16 bytes and a reason of [`MAX_REASON`]), so the list
/// stays under about 1.2 MiB, and the accept loop's scan of it under a few
/// microseconds.
pub const MAX_BANS: usize = 4096;

/// Longest reason kept with a ban, in bytes (cut at a character boundary).
pub const MAX_REASON: usize = 200;

/// Longest ban: 10 years. Longer is "until `/unban`": give no duration.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// The `--bans` file as read at start, before the port is bound
/// ([`crate::prepare`]): reading it may stop the start, and logs nothing;
/// [`Bans::load`] parses it and says what it found, after the bind.
#[derive(Debug)]
pub struct BanFile {
    /// FILE, where every change is written back.
    path: PathBuf,
    /// Its text (lossy UTF-8), empty if it was missing.
    text: String,
}

impl BanFile {
    /// Reads `file`, or creates it empty if it is missing, so a path that
    /// can never be written is found at start, not at the first `/ban`.
    ///
    /// # Errors
    /// A file that cannot be read (not a regular file, over
    /// [`MAX_START_FILE`](crate::start_file::MAX_START_FILE)), or created:
    /// one line saying so.
    pub fn read(file: &Path) -> Result<BanFile, String> {
        let text = match start_file::read(file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(Unread::Missing) => {
                write_atomically(file, render(&[]).as_bytes()).map_err(|e| {
                    format!(
                        "cannot create the ban list {}: {}",
                        file.display(),
                        log::plain(&e)
                    )
                })?;
                String::new()
            }
            Err(why) => {
                return Err(format!(
                    "cannot read the ban list {}: {why}",
                    file.display()
                ))
            }
        };
        Ok(BanFile {
            path: file.to_path_buf(),
            text,
        })
    }
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

/// The bans, and how many times they changed.
struct List {
    /// At most [`MAX_BANS`] live ones; an expired ban is skipped by every
    /// lookup and dropped by the next `/ban` or `/unban`.
    bans: Vec<Ban>,
    /// Counts changes, so a writer never replaces a newer file by an older
    /// snapshot.
    generation: u64,
}

/// The live ban list, and where it is saved.
pub struct Bans {
    /// The list, under a lock held only to read or change it, never while
    /// the file is written.
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

    /// The list kept in `file` (`--bans`, read by [`BanFile::read`]), or
    /// an empty one without it. Each malformed line is logged with its
    /// number and skipped (one by one up to [`ban::PROBLEMS_SHOWN`], then
    /// counted; so are lines past [`MAX_BANS`]).
    pub fn load(file: Option<BanFile>) -> Bans {
        let Some(BanFile { path, text }) = file else {
            return Bans::in_memory();
        };
        let (bans, problems) = parse_file(&text, SystemTime::now());
        for problem in &problems {
            log!("ban list {}: {problem}", path.display());
        }
        if !text.trim().is_empty() {
            log!(
                "{} loaded from {}",
                protocol::count(bans.len() as u64, "ban"),
                path.display()
            );
        }
        Bans::with(bans, Some(path))
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

    /// Whether a live ban of exactly `prefix` is held (whatever its end).
    pub fn holds(&self, prefix: &Prefix) -> bool {
        let now = SystemTime::now();
        let list = self.list.lock();
        list.bans.iter().any(|b| b.live(now) && b.prefix == *prefix)
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

/// Writes `bytes` to a temporary file next to `file` (`.FILE.PID.tmp`, mode
/// 0600), syncs it, and renames it over `file`: readers see the old file or
/// the new one.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other("the ban list's path names no file"))?;
    // This process's own: servers given one `--bans` FILE (a cluster on
    // one machine) each save to it, and one's rename took the other's
    // temporary file away mid-save ("no such file or directory").
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = file.with_file_name(tmp_name);
    // The error names the temporary file when it is the one at fault (a
    // directory in its place, say): "FILE: is a directory" misled.
    let at_tmp = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {}", tmp.display(), log::plain(&e)))
    };
    let written = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(at_tmp)?;
        out.write_all(bytes).map_err(at_tmp)?;
        out.sync_all().map_err(at_tmp)?;
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

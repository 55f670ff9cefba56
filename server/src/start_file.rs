//! The small files read whole at start (`--bans`, `--password-file`):
//! read so that the start never waits and never reads without bound.
//!
//! A path may name anything: a FIFO (whose open waits for a writer, and
//! whose read waits for data), a device (`/dev/zero` never ends), a file of
//! gigabytes. The start (which reads them before the port is bound:
//! [`crate::prepare`]) must not hang, silent, nor fill memory, so:
//!
//! - FILE is opened `O_NONBLOCK | O_NOCTTY`: opening a FIFO returns at once,
//!   nothing becomes our terminal (a regular file reads the same either way);
//! - `fstat` on what was opened (not on the path, which could change in
//!   between) must say a regular file, of at most [`MAX_START_FILE`] bytes;
//! - at most [`MAX_START_FILE`] + 1 bytes are read, so a file that grows
//!   meanwhile is still caught.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::log;

/// Largest `--bans` or `--password-file` read, in bytes. A full ban list
/// ([`crate::bans::MAX_BANS`] bans of about 300 bytes) is about 1.2 MiB:
/// this leaves room for comments and expired bans, and bounds the memory
/// of a start.
pub const MAX_START_FILE: u64 = 4 * 1024 * 1024;

/// Why a start-up file was not read.
#[derive(Debug)]
#[must_use]
pub enum Unread {
    /// There is no such file (the ban list then starts empty).
    Missing,
    /// A FIFO, a device, a folder, a socket.
    NotRegular,
    /// Over [`MAX_START_FILE`] bytes.
    TooBig,
    /// Opening or reading it failed.
    Failed(std::io::Error),
}

impl fmt::Display for Unread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unread::Missing => f.write_str("no such file"),
            Unread::NotRegular => f.write_str("not a regular file"),
            Unread::TooBig => write!(f, "too big (over {MAX_START_FILE} bytes)"),
            Unread::Failed(e) => f.write_str(&log::plain(e)),
        }
    }
}

/// The whole of `path`, a regular file of at most [`MAX_START_FILE`] bytes.
///
/// # Errors
/// Why it was not read; never waits for a FIFO's writer.
pub fn read(path: &Path) -> Result<Vec<u8>, Unread> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => Unread::Missing,
            _ => Unread::Failed(e),
        })?;
    let meta = file.metadata().map_err(Unread::Failed)?;
    if !meta.is_file() {
        return Err(Unread::NotRegular);
    }
    if meta.len() > MAX_START_FILE {
        return Err(Unread::TooBig);
    }
    let mut bytes = Vec::new();
    file.take(MAX_START_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(Unread::Failed)?;
    if bytes.len() as u64 > MAX_START_FILE {
        return Err(Unread::TooBig);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regular file is read whole; a missing one, a device, a folder
    /// and a file over the bound are each told apart.
    #[test]
    fn reads_regular_files_only_and_within_the_bound() {
        let dir = std::env::temp_dir().join(format!("chat-start-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, "secret\n").unwrap();
        let big = dir.join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_START_FILE + 1)
            .unwrap();
        let results = [
            read(&small).map_err(|e| e.to_string()),
            read(&dir.join("none")).map_err(|e| e.to_string()),
            read(Path::new("/dev/zero")).map_err(|e| e.to_string()),
            read(&dir).map_err(|e| e.to_string()),
            read(&big).map_err(|e| e.to_string()),
        ];
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(results[0].as_deref().ok(), Some(&b"secret\n"[..]));
        assert_eq!(results[1].as_ref().unwrap_err(), "no such file");
        assert_eq!(results[2].as_ref().unwrap_err(), "not a regular file");
        assert_eq!(results[3].as_ref().unwrap_err(), "not a regular file");
        assert!(results[4].as_ref().unwrap_err().starts_with("too big"));
    }
}

//! The folder `--mode file` serves, and finding a file in it safely.
//!
//! A name from a client is untrusted: `../x`, `/etc/passwd`, a symlink to
//! `/` or a symlink swapped in while the request is served must not reach a
//! byte outside `--root`. Checking a path and then opening it leaves a window
//! between the two, so nothing here checks a path: the kernel resolves the
//! name and refuses any escape while it opens.
//!
//! - The root is opened once, at start, as a directory descriptor
//!   ([`Root`]); names are resolved against that descriptor, never against
//!   a path string (renaming the root's parent changes nothing).
//! - `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` walks the
//!   name: `..` above the root, an absolute name, and a symlink (absolute, or
//!   relative and climbing out) anywhere on the way fail with `EXDEV`, in the
//!   same system call that opens. Symlinks that stay inside are followed.
//! - It is opened with `O_PATH`: a handle on the inode, which opens nothing
//!   (a FIFO's writer is not released, a device's driver is not called).
//!   `fstat` on that handle says whether it is a regular file and how big.
//! - Only a regular file within `--max-file` is then opened for reading,
//!   through `/proc/self/fd/N` of the `O_PATH` handle: the very inode that
//!   was checked, whatever the name points to by then. That open is
//!   `O_NONBLOCK | O_NOCTTY`: a file under someone's write lease fails at
//!   once instead of holding the connection for the lease-break time (45 s
//!   by default), and nothing becomes our terminal.
//! - At start, [`Root::open`] makes sure both exist: `openat2` (Linux 5.6;
//!   an old seccomp profile may answer `ENOSYS` or `EPERM`) and
//!   `/proc/self/fd`. Without either the server does not start (one line,
//!   exit 1), rather than answer "permission denied" to every name or open
//!   a name twice.
//! - At most the size `fstat` gave is sent, so a file that grows while it
//!   is sent cannot exceed `--max-file`.
//!
//! Nothing here writes, creates or deletes: file mode only reads.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

/// Longest name a client may send, in bytes (Linux's `PATH_MAX`); a longer
/// line is refused without being kept.
pub const MAX_FILE_NAME: usize = 4096;

/// How often a lookup is retried when the kernel says a rename raced with it
/// (`EAGAIN` from `openat2`): then it is refused.
const RACE_RETRIES: usize = 8;

/// The served folder, open for the server's life.
pub struct Root {
    /// A directory descriptor every name is resolved against.
    dir: OwnedFd,
    /// The folder as given, for the start-up log line.
    shown: PathBuf,
}

/// Why a name gets no file: each is one `! ` line to the client, which
/// says no more than what is inside the root.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An empty line, a NUL byte, or a name over [`MAX_FILE_NAME`].
    BadName(&'static str),
    /// Nothing by that name (or a path through something not a folder).
    Missing,
    /// A folder.
    Directory,
    /// A FIFO, device or socket: never opened.
    NotRegular,
    /// The name leads outside the root (`..`, absolute, a symlink out).
    Outside,
    /// Symlinks that lead in circles.
    Loop,
    /// Larger than `--max-file` (or one datagram).
    TooBig {
        /// The file's size.
        size: u64,
        /// The most that may be sent.
        max: u64,
    },
    /// The server may not read it.
    Unreadable,
    /// A rename kept racing with the lookup (`EAGAIN`, every retry).
    Changed,
    /// Any other error, in plain words.
    Failed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadName(why) => f.write_str(why),
            Refusal::Missing => f.write_str("no such file"),
            Refusal::Directory => f.write_str("that is a directory"),
            Refusal::NotRegular => f.write_str("not a regular file"),
            Refusal::Outside => f.write_str("that name leads outside the served folder"),
            Refusal::Loop => f.write_str("too many levels of symbolic links"),
            Refusal::TooBig { size, max } => {
                write!(f, "file too big ({size} bytes, at most {max})")
            }
            Refusal::Unreadable => f.write_str("permission denied"),
            Refusal::Changed => f.write_str("the file changed while being opened; try again"),
            Refusal::Failed(why) => write!(f, "cannot read that file: {why}"),
        }
    }
}

/// A file found for a name: open for reading, with the size to send.
pub struct Found {
    /// Open for reading; the inode that was checked.
    pub file: File,
    /// Bytes to send: its size when checked.
    pub size: u64,
}

impl Root {
    /// Opens the folder to serve.
    ///
    /// # Errors
    /// One line for the operator (exit 1): no `--root`, a path that is not
    /// a readable directory, or a system without `openat2` or `/proc`.
    pub fn open(path: Option<&Path>) -> Result<Root, String> {
        let path = path.ok_or("--mode file needs --root DIR, the folder to serve")?;
        let dir = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| {
            let why = match e {
                Errno::ENOTDIR => "not a directory".to_string(),
                other => chat_common::plain::plain(&std::io::Error::from(other)),
            };
            format!("cannot serve --root {}: {why}", path.display())
        })?;
        // A directory we may open but not list or search is no use either.
        if let Err(e) = nix::unistd::faccessat(
            &dir,
            ".",
            nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::X_OK,
            nix::fcntl::AtFlags::empty(),
        ) {
            return Err(format!(
                "cannot serve --root {}: {}",
                path.display(),
                chat_common::plain::plain(&std::io::Error::from(e))
            ));
        }
        let root = Root {
            dir,
            shown: path.to_path_buf(),
        };
        root.check_system()?;
        Ok(root)
    }

    /// The two things every lookup needs from the system: `openat2`, and
    /// `/proc/self/fd` to reopen what it found.
    fn check_system(&self) -> Result<(), String> {
        let handle = match openat2(&self.dir, ".", path_how(OFlag::O_PATH)) {
            Ok(fd) => File::from(fd),
            Err(e) => return Err(no_openat2(e, &self.shown)),
        };
        let proc_fd = format!("/proc/self/fd/{}", handle.as_raw_fd());
        if std::fs::symlink_metadata(&proc_fd).is_err() {
            return Err(
                "--mode file needs /proc (to reopen exactly the file it checked); mount it and try again"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// The folder as the operator named it.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// Finds `name` (a path relative to the root, terminator removed) and
    /// opens it for reading if it is a regular file of at most `max` bytes.
    ///
    /// # Errors
    /// A [`Refusal`] saying why not.
    pub fn lookup(&self, name: &[u8], max: u64) -> Result<Found, Refusal> {
        if name.is_empty() {
            return Err(Refusal::BadName("no file name given"));
        }
        if name.len() > MAX_FILE_NAME {
            return Err(Refusal::BadName("file name too long"));
        }
        if name.contains(&0) {
            return Err(Refusal::BadName("a file name cannot contain a NUL byte"));
        }
        if name.starts_with(b"/") {
            return Err(Refusal::Outside);
        }
        let name = OsStr::from_bytes(name);
        let handle = self.resolve(name, OFlag::O_PATH)?;
        let meta = handle.metadata().map_err(|e| failed(&e))?;
        if meta.is_dir() {
            return Err(Refusal::Directory);
        }
        if !meta.file_type().is_file() {
            return Err(Refusal::NotRegular);
        }
        if meta.len() > max {
            return Err(Refusal::TooBig {
                size: meta.len(),
                max,
            });
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => Refusal::Unreadable,
                std::io::ErrorKind::WouldBlock => {
                    Refusal::Failed("the file is busy (leased); try again".to_string())
                }
                _ => failed(&e),
            })?;
        Ok(Found {
            file,
            size: meta.len(),
        })
    }

    /// `openat2` below the root, with `flags` (plus `O_CLOEXEC`).
    fn resolve(&self, name: &OsStr, flags: OFlag) -> Result<File, Refusal> {
        let how = path_how(flags);
        let mut tries = 0;
        loop {
            match openat2(&self.dir, name, how) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(Errno::EAGAIN | Errno::EINTR) if tries < RACE_RETRIES => tries += 1,
                Err(e) => return Err(refusal(e)),
            }
        }
    }
}

/// How every name is opened: `flags` (plus `O_CLOEXEC`), never above the
/// root, never through a magic link.
fn path_how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// The start-up line when `openat2` fails on the root itself.
fn no_openat2(e: Errno, root: &Path) -> String {
    match e {
        Errno::ENOSYS | Errno::EPERM => "--mode file needs the openat2 system call (Linux 5.6 or later), which this system refuses (an old kernel, or a seccomp profile that predates it)".to_string(),
        other => format!(
            "cannot serve --root {}: {}",
            root.display(),
            chat_common::plain::plain(&std::io::Error::from(other))
        ),
    }
}

/// What an `openat2` error means to the client.
fn refusal(e: Errno) -> Refusal {
    match e {
        Errno::ENOENT | Errno::ENOTDIR => Refusal::Missing,
        Errno::EXDEV => Refusal::Outside,
        Errno::ELOOP => Refusal::Loop,
        Errno::EACCES | Errno::EPERM => Refusal::Unreadable,
        Errno::ENAMETOOLONG => Refusal::BadName("file name too long"),
        Errno::EAGAIN => Refusal::Changed,
        other => failed(&std::io::Error::from(other)),
    }
}

/// Any other I/O error, in plain words.
fn failed(e: &std::io::Error) -> Refusal {
    Refusal::Failed(chat_common::plain::plain(e))
}

#[cfg(test)]
mod tests;

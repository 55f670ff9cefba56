//! FILE itself: opened without waiting, its torn end mended at start, and
//! written a batch at a time, each line in it whole or not at all.
//!
//! A write can stop part-way: the disk fills in the middle of a batch, or
//! the server is killed between two `write`s of one. What it left is the
//! start of a line with no LF, and whatever is appended next would be
//! glued onto it: a garbled line, replayed as history after a restart. So:
//!
//! - before each batch the writer notes FILE's length, and when the write
//!   fails it cuts FILE back to it at once (`ftruncate`); if even that
//!   fails, it tries again before the next batch and writes nothing until
//!   it has. A failed batch is thus wholly absent, and wholly counted lost;
//! - at open, a FILE that does not end in LF loses its partial last line
//!   if that is the start of a transcript line (a crash mid-write), and
//!   the log says so once. Any other last line without LF is someone
//!   else's (a file given by mistake, edited by hand): SPEC appends to an
//!   existing FILE, so it is kept, and ended with an LF before the first
//!   line written.
//!
//! Only a regular file can be cut back. A FIFO with a reader, or a device
//! (`/dev/full`, `/dev/null`), is still a transcript: what a failed write
//! sent to it stays sent. A FIFO with no reader is refused at open, at once
//! (`O_NONBLOCK`): waiting for a reader would hang the start, silent (it
//! is opened before the port is bound: [`crate::prepare`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::TAIL_BYTES;
use crate::log;

/// What the writer needs of FILE: a [`File`], or in tests a disk that fills.
pub trait Disk: Write {
    /// FILE's length now.
    fn size(&self) -> io::Result<u64>;
    /// Cuts FILE back to `len` bytes.
    fn cut(&mut self, len: u64) -> io::Result<()>;
    /// Flushes FILE to stable storage.
    fn sync(&self) -> io::Result<()>;
}

impl Disk for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_all()
    }
}

/// FILE as the transcript thread writes it.
pub struct Sink<D> {
    /// FILE, opened for appending.
    disk: D,
    /// Whether a failed write can be cut back: FILE is a regular file.
    cuttable: bool,
    /// FILE's length before a write that failed, while what that write
    /// left is not cut off yet: the next write cuts it first.
    torn: Option<u64>,
    /// FILE ends in a line of someone else's with no LF: the next write
    /// ends it first.
    unended: bool,
    /// A write failed and none succeeded since: the log has said so.
    failing: bool,
}

/// What [`Sink::write`] did with a batch.
#[derive(Debug)]
#[must_use]
pub enum Written {
    /// There was nothing to write.
    Nothing,
    /// The batch is in FILE.
    Whole,
    /// The batch is in FILE, the first since writes failed: say so.
    Again,
    /// Nothing of the batch is in FILE (a regular file; a FIFO may have
    /// taken some), and writes were working until now: say why.
    Failed(io::Error),
    /// Nothing of the batch is in FILE, as for the ones before.
    StillFailing,
}

impl<D: Disk> Sink<D> {
    /// Writes to `disk`, cutting a failed write back if `cuttable`.
    pub fn new(disk: D, cuttable: bool) -> Sink<D> {
        Sink {
            disk,
            cuttable,
            torn: None,
            unended: false,
            failing: false,
        }
    }

    /// Appends `bytes` (whole lines) to FILE, whole or not at all.
    pub fn write(&mut self, bytes: &[u8]) -> Written {
        if bytes.is_empty() {
            return Written::Nothing;
        }
        match self.try_write(bytes) {
            Ok(()) if std::mem::take(&mut self.failing) => Written::Again,
            Ok(()) => Written::Whole,
            Err(_) if self.failing => Written::StillFailing,
            Err(e) => {
                self.failing = true;
                Written::Failed(e)
            }
        }
    }

    fn try_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.mend()?;
        let before = if self.cuttable {
            Some(self.disk.size()?)
        } else {
            None
        };
        self.disk.write_all(bytes).inspect_err(|_| {
            self.torn = before;
            // At once, so that a crash now leaves whole lines; if it fails,
            // the next write tries again before anything else.
            let _ = self.mend();
        })
    }

    /// Cuts off what a failed write left, if anything, and ends a last
    /// line of someone else's.
    fn mend(&mut self) -> io::Result<()> {
        if let Some(len) = self.torn {
            if self.disk.size()? > len {
                self.disk.cut(len)?;
            }
            self.torn = None;
        }
        if self.unended {
            self.disk.write_all(b"\n")?;
            self.unended = false;
        }
        Ok(())
    }

    /// Cuts off now what the start found cut short at FILE's end (or a
    /// failed write left), rather than at the next write: the start does
    /// this once the port is bound, before the history is read back.
    ///
    /// # Errors
    /// When the cut fails.
    pub fn mend_now(&mut self) -> io::Result<()> {
        self.mend()
    }

    /// At the stop: mends FILE if a failed write is not cut off yet, and
    /// syncs it.
    ///
    /// # Errors
    /// When either fails.
    pub fn finish(&mut self) -> io::Result<()> {
        self.mend()?;
        self.disk.sync()
    }

    /// Whether the last write failed (the log said so already).
    pub fn failing(&self) -> bool {
        self.failing
    }

    /// The disk, for tests.
    #[cfg(test)]
    pub fn disk(&mut self) -> &mut D {
        &mut self.disk
    }
}

/// Opens (creating, mode 0600) FILE for appending, without waiting for a
/// FIFO's reader, and finds a partial last line a crash left in it, which
/// the sink cuts off at [`Sink::mend_now`] (after the bind: a start that
/// then fails changes nothing). Logs nothing (it runs before the port is
/// bound): what there is to say (the partial line dropped, or a FILE it
/// may not read to check) is returned, for the caller to log once the
/// port is bound and the line is cut.
///
/// # Errors
/// The reason, in one line naming the file.
pub fn open(path: &Path) -> Result<(Sink<File>, Option<String>), String> {
    let fail = |why: String| format!("cannot open the transcript {}: {why}", path.display());
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
            if e.raw_os_error() == Some(libc::ENXIO) && fifo {
                fail("a FIFO with no reader".into())
            } else {
                fail(log::plain(&e))
            }
        })?;
    // Writes wait again (a FIFO's reader that lags holds the thread up, as
    // a slow disk does; the queue in front of it absorbs that).
    let errno = |e: nix::errno::Errno| fail(log::plain(&e.into()));
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(errno)?;
    let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(flags)).map_err(errno)?;
    let meta = file.metadata().map_err(|e| fail(log::plain(&e)))?;
    let mut sink = Sink::new(file, meta.is_file());
    let note = if meta.is_file() {
        let (end, note) = check_end(path, &meta).map_err(fail)?;
        match end {
            End::Whole => {}
            End::Torn(keep) => sink.torn = Some(keep),
            End::Unended => sink.unended = true,
        }
        note
    } else {
        None
    };
    Ok((sink, note))
}

/// How a regular FILE ends, and what the start does about it.
enum End {
    /// In LF (or empty): nothing.
    Whole,
    /// In the start of a transcript line a crash cut short: cut back to
    /// this length.
    Torn(u64),
    /// In a line of someone else's with no LF: kept, and ended.
    Unended,
}

/// What every transcript line starts with: TIME (RFC 3339 in UTC, with
/// milliseconds; `0` stands for any digit), a space and the room's `#`.
const LINE_START: &[u8] = b"0000-00-00T00:00:00.000Z #";

/// Whether `tail` (a last line without its LF) is the start of a
/// transcript line, as far as it goes.
fn starts_like_a_line(tail: &[u8]) -> bool {
    !tail.is_empty()
        && tail.iter().zip(LINE_START).all(|(&b, &want)| {
            if want == b'0' {
                b.is_ascii_digit()
            } else {
                b == want
            }
        })
}

/// How a regular FILE (opened as `meta`, from `path`) ends: where it is
/// to be cut back to if it ends in a transcript line cut short, and what
/// to log about it. A FILE the server may append to but not read is left as it
/// is (its history cannot be read either, which is logged, and the room
/// goes on).
fn check_end(path: &Path, meta: &std::fs::Metadata) -> Result<(End, Option<String>), String> {
    let len = meta.len();
    if len == 0 {
        return Ok((End::Whole, None));
    }
    // `file` is write-only: read the same inode through a second handle.
    let reader = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(reader) => reader,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok((End::Whole, Some(format!(
                "transcript {}: cannot read it to check its last line ({}); a line a crash cut short, if any, stays",
                path.display(),
                log::plain(&e)
            ))))
        }
        Err(e) => return Err(log::plain(&e)),
    };
    let seen = reader.metadata().map_err(|e| log::plain(&e))?;
    if (seen.dev(), seen.ino()) != (meta.dev(), meta.ino()) {
        return Err("it was replaced while being opened".into());
    }
    let mut last = [0u8];
    reader
        .read_exact_at(&mut last, len - 1)
        .map_err(|e| log::plain(&e))?;
    if last[0] == b'\n' {
        return Ok((End::Whole, None));
    }
    let start = len.saturating_sub(TAIL_BYTES);
    let mut tail = vec![0u8; usize::try_from(len - start).expect("at most TAIL_BYTES")];
    reader
        .read_exact_at(&mut tail, start)
        .map_err(|e| log::plain(&e))?;
    let keep = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => start + i as u64 + 1,
        None if start == 0 => 0,
        // No transcript line is anywhere near that long: this is not one.
        None => {
            return Err(format!(
                "its last {TAIL_BYTES} bytes hold no line end; is it a transcript?"
            ))
        }
    };
    let partial = &tail[usize::try_from(keep - start).expect("within the tail")..];
    if !starts_like_a_line(partial) {
        return Ok((
            End::Unended,
            Some(format!(
                "transcript {}: its last line has no line end and is not a transcript line: kept, and given one",
                path.display()
            )),
        ));
    }
    Ok((
        End::Torn(keep),
        Some(format!(
            "transcript {}: dropped a partial last line ({} bytes) left by an interrupted write",
            path.display(),
            len - keep
        )),
    ))
}

//! A fresh, private folder under the system's temp dir for one workload's
//! files (the transcript of (i)), removed with everything in it when dropped.

use std::{
    fs, io,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

/// Attempts at a free name before giving up (each name has the pid and the
/// clock's nanoseconds in it, so a clash is already unlikely).
const ATTEMPTS: u32 = 16;

/// The folder; removed on drop.
#[derive(Debug)]
pub struct ScratchDir {
    /// Its path, which did not exist before [`ScratchDir::new`].
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `$TMPDIR/chat-bench-PID-NANOS` (mode 0700); it must not exist.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn new() -> io::Result<ScratchDir> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = format!("chat-bench-{}-{nanos}-{attempt}", std::process::id());
            let path = std::env::temp_dir().join(name);
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free name")))
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_fresh_and_removed_with_its_files() {
        let a = ScratchDir::new().unwrap();
        let b = ScratchDir::new().unwrap();
        assert_ne!(a.path(), b.path());
        fs::write(a.path().join("f"), b"x").unwrap();
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
    }
}

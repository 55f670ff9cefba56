//! Unit tests of the file server's path resolution.

use super::*;
use std::io::Read;
use std::os::unix::fs::symlink;

/// A fresh folder under the system's temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "chat-files-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/sub")).expect("mkdir");
        std::fs::write(dir.join("root/sub/a.txt"), b"inside").expect("write");
        std::fs::write(dir.join("secret"), b"outside").expect("write");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(found: Result<Found, Refusal>) -> Result<Vec<u8>, Refusal> {
    let mut found = found?;
    let mut bytes = Vec::new();
    found.file.read_to_end(&mut bytes).expect("read");
    Ok(bytes)
}

/// Names inside are served, symlinks inside followed; every way out,
/// however spelled, is refused.
#[test]
fn escapes_are_refused_and_inside_is_served() {
    let s = Scratch::new("escape");
    let root_path = s.0.join("root");
    symlink("sub/a.txt", root_path.join("link")).expect("symlink");
    symlink("../secret", root_path.join("out")).expect("symlink");
    symlink(s.0.join("secret"), root_path.join("abs")).expect("symlink");
    symlink("..", root_path.join("sub/up")).expect("symlink");
    let root = Root::open(Some(&root_path)).expect("root");
    assert_eq!(read(root.lookup(b"sub/a.txt", 100)), Ok(b"inside".to_vec()));
    assert_eq!(
        read(root.lookup(b"./sub//a.txt", 100)),
        Ok(b"inside".to_vec())
    );
    assert_eq!(read(root.lookup(b"link", 100)), Ok(b"inside".to_vec()));
    assert_eq!(
        read(root.lookup(b"sub/up/sub/a.txt", 100)),
        Ok(b"inside".to_vec())
    );
    for name in [
        &b"../secret"[..],
        b"sub/../../secret",
        b"/etc/passwd",
        b"out",
        b"abs",
        b"sub/up/../secret",
    ] {
        assert_eq!(
            read(root.lookup(name, 100)).map(|_| ()),
            Err(Refusal::Outside),
            "{name:?}"
        );
    }
}

/// Directories, missing names, and size limits.
#[test]
fn kinds_and_sizes() {
    let s = Scratch::new("kinds");
    let root = Root::open(Some(&s.0.join("root"))).expect("root");
    assert_eq!(
        read(root.lookup(b"sub", 100)).map(|_| ()),
        Err(Refusal::Directory)
    );
    assert_eq!(
        read(root.lookup(b".", 100)).map(|_| ()),
        Err(Refusal::Directory)
    );
    assert_eq!(
        read(root.lookup(b"nope", 100)).map(|_| ()),
        Err(Refusal::Missing)
    );
    assert_eq!(
        read(root.lookup(b"sub/a.txt/x", 100)).map(|_| ()),
        Err(Refusal::Missing)
    );
    assert_eq!(
        read(root.lookup(b"sub/a.txt", 5)).map(|_| ()),
        Err(Refusal::TooBig { size: 6, max: 5 })
    );
    assert_eq!(read(root.lookup(b"sub/a.txt", 6)), Ok(b"inside".to_vec()));
    assert!(matches!(root.lookup(b"", 6), Err(Refusal::BadName(_))));
    assert!(matches!(root.lookup(b"a\0b", 6), Err(Refusal::BadName(_))));
}

/// A system that refuses `openat2` (old kernel, old seccomp profile) is
/// one line naming it, not "permission denied" for every name later.
#[test]
fn no_openat2_is_one_line() {
    for e in [Errno::ENOSYS, Errno::EPERM] {
        let line = no_openat2(e, Path::new("/srv"));
        assert!(line.contains("openat2") && !line.contains('\n'), "{line}");
    }
    let line = no_openat2(Errno::EACCES, Path::new("/srv"));
    assert!(
        line.contains("/srv") && line.contains("permission denied"),
        "{line}"
    );
}

/// A root that is missing or not a folder is one line.
#[test]
fn bad_roots() {
    let s = Scratch::new("roots");
    let err = Root::open(None).err().expect("no root");
    assert!(err.contains("--root"), "{err}");
    let err = Root::open(Some(&s.0.join("missing")))
        .err()
        .expect("missing");
    assert!(err.contains("no such file"), "{err}");
    let err = Root::open(Some(&s.0.join("secret"))).err().expect("a file");
    assert!(err.contains("not a directory"), "{err}");
}

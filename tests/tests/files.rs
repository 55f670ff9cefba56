//! `--mode file` against the real binary (SPEC "File mode"): each line names
//! a file under `--root`, the reply is its bytes exactly; every refusal is
//! one `! ` line and the connection goes on; nothing outside the root is
//! ever sent, however the name is spelled.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::labs::{
    connect_raw, connect_small_raw, read_len, read_line, read_to_clean_eof, read_to_eof, Scratch,
};
use chat_tests::{bin, wait_timeout, Server, TIMEOUT};

/// What only the file outside the root holds: it must never reach a client.
const SECRET: &[u8] = b"outside-the-root-secret\n";
/// The text file inside the root.
const TEXT: &[u8] = b"inside text\n";

/// A root with one of each kind of entry, and a secret next to it.
fn fixture() -> (Scratch, String) {
    let s = Scratch::new("files");
    s.file("secret", SECRET);
    s.file("root/text.txt", TEXT);
    s.file("root/sub/deep.txt", b"deep\n");
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    s.file("root/binary.dat", &binary);
    s.file("root/big.txt", &[b'x'; 2048]);
    let root = s.path().join("root");
    symlink("text.txt", root.join("link")).expect("symlink");
    symlink("../secret", root.join("out")).expect("symlink");
    symlink(s.path().join("secret"), root.join("abs")).expect("symlink");
    symlink("..", root.join("sub/up")).expect("symlink");
    symlink(s.path(), root.join("parent")).expect("symlink");
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let root = root.to_str().expect("UTF-8 temp path").to_string();
    (s, root)
}

/// Starts a file server on the fixture.
fn start(root: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--mode", "file", "--root", root];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Text, CRLF and binary names: the bytes exactly, and the connection goes
/// on to the next name.
#[test]
fn text_binary_and_crlf_names_get_the_exact_bytes() {
    let (_s, root) = fixture();
    let server = start(&root, &[]);
    let mut stream = connect_raw(server.addr());
    stream.write_all(b"text.txt\n").expect("send");
    assert_eq!(read_len(&mut stream, TEXT.len()), TEXT);
    stream.write_all(b"text.txt\r\n").expect("send");
    assert_eq!(read_len(&mut stream, TEXT.len()), TEXT);
    stream.write_all(b"binary.dat\n").expect("send");
    let want: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    assert_eq!(read_len(&mut stream, want.len()), want);
    stream.write_all(b"./sub//deep.txt\nlink\n").expect("send");
    assert_eq!(read_len(&mut stream, 5), b"deep\n");
    assert_eq!(read_len(&mut stream, TEXT.len()), TEXT, "a symlink inside");
    stream.write_all(b"sub/up/text.txt\n").expect("send");
    assert_eq!(read_len(&mut stream, TEXT.len()), TEXT, "a symlink to ..");
}

/// The textbook client: a bare name, no newline, then it waits.
#[test]
fn a_bare_name_is_answered_after_a_pause() {
    let (_s, root) = fixture();
    let server = start(&root, &[]);
    let mut stream = connect_raw(server.addr());
    let asked = Instant::now();
    stream.write_all(b"text.txt").expect("send");
    assert_eq!(read_len(&mut stream, TEXT.len()), TEXT);
    assert!(
        asked.elapsed() >= Duration::from_millis(150),
        "answered after {:?}: before the name could have ended",
        asked.elapsed()
    );
    // A name split across writes inside the pause is still one name. The
    // writes are 20 ms apart; should this thread stall past the pause
    // between them, the server rightly takes two names (`sub/` then
    // `deep.txt`, each refused with a `! ` line): that is tried again, a
    // few times. A server that never joins them fails every try.
    let mut splits = Vec::new();
    while splits.len() < 3 {
        let sent = Instant::now();
        stream.write_all(b"sub/").expect("send");
        thread::sleep(Duration::from_millis(20));
        stream.write_all(b"deep.txt").expect("send");
        let apart = sent.elapsed();
        let first = read_line(&mut stream);
        if first == b"deep\n" {
            return;
        }
        let second = read_line(&mut stream);
        for answer in [&first, &second] {
            assert!(
                answer.starts_with(b"! "),
                "not the file, nor a refusal of part of its name: {:?}",
                String::from_utf8_lossy(answer)
            );
        }
        splits.push(apart);
    }
    panic!("the name split across writes was taken for two each time (writes apart: {splits:?})");
}

/// Every route out of the root is refused with one `! ` line, and not a
/// byte from outside arrives; the connection goes on.
#[test]
fn every_escape_is_refused() {
    let (s, root) = fixture();
    let server = start(&root, &[]);
    let mut stream = connect_raw(server.addr());
    let absolute = s.path().join("secret");
    let names = [
        "../secret".to_string(),
        "sub/../../secret".to_string(),
        "./../secret".to_string(),
        absolute.to_str().expect("UTF-8").to_string(),
        "/etc/hostname".to_string(),
        "out".to_string(),
        "abs".to_string(),
        "sub/up/../secret".to_string(),
        "parent/secret".to_string(),
        "sub/up/out".to_string(),
    ];
    for name in &names {
        stream
            .write_all(format!("{name}\n").as_bytes())
            .expect("send");
        let line = read_line(&mut stream);
        assert!(
            line.starts_with(b"! ") && line.ends_with(b"\n"),
            "{name}: {:?}",
            String::from_utf8_lossy(&line)
        );
        assert!(
            String::from_utf8_lossy(&line).contains("outside"),
            "{name}: {:?}",
            String::from_utf8_lossy(&line)
        );
    }
    // Still served, and nothing else came: the next bytes are the file.
    stream.write_all(b"text.txt\n").expect("send");
    assert_eq!(read_len(&mut stream, TEXT.len()), TEXT);
}

/// A FIFO (never opened, nothing blocks), a directory, a missing name, a
/// file over `--max-file`: one `! ` line each saying which, and the
/// connection goes on.
#[test]
fn fifo_directory_missing_and_too_big_are_refused() {
    let (_s, root) = fixture();
    let server = start(&root, &["--max-file", "1024"]);
    let mut stream = connect_raw(server.addr());
    for (name, says) in [
        ("fifo", "not a regular file"),
        ("sub", "directory"),
        ("nope.txt", "no such file"),
        ("text.txt/x", "no such file"),
        ("big.txt", "too big (2048 bytes, at most 1024)"),
        ("", "no file name"),
    ] {
        stream
            .write_all(format!("{name}\n").as_bytes())
            .expect("send");
        let line = String::from_utf8(read_line(&mut stream)).expect("UTF-8");
        assert!(
            line.starts_with("! ") && line.contains(says),
            "{name:?}: {line:?}"
        );
    }
    stream.write_all(b"text.txt\n").expect("send");
    assert_eq!(read_len(&mut stream, TEXT.len()), TEXT);
}

/// The stop line ends a file-mode connection too; the log counts the one
/// file sent in the singular.
#[test]
fn the_stop_line_ends_it() {
    let (_s, root) = fixture();
    let server = start(&root, &[]);
    let mut stream = connect_raw(server.addr());
    stream
        .write_all(b"text.txt\nEXIT\ntext.txt\n")
        .expect("send");
    assert_eq!(read_to_eof(&mut stream), TEXT);
    server.stderr_until("disconnected after 1 file sent, 0 refused (stop line)");
}

/// Input after the stop line does not reset the connection: an 8 MiB file
/// asked for with `EXIT`, another name once the file is on its way; the client reads
/// the whole file, then end of stream (before the fix: part of it, then
/// "connection reset by peer").
#[test]
fn input_after_the_stop_line_does_not_cut_the_file() {
    let (s, root) = fixture();
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    s.file("root/huge.dat", &big);
    let server = start(&root, &["--max-file", "16777216"]);
    let mut stream = connect_small_raw(server.addr());
    stream.write_all(b"huge.dat\nEXIT\n").expect("send");
    // The next name arrives while the file is still on its way.
    let mut got = read_len(&mut stream, 1);
    stream.write_all(b"text.txt\n").expect("send");
    got.extend(read_to_clean_eof(&mut stream));
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the file came back altered");
}

/// One CR is dropped from a name, not two: `EXIT\r\r` is a name (refused),
/// not the stop line, as it is text in echo mode; the connection goes on.
#[test]
fn exit_with_two_crs_is_not_the_stop_line() {
    let (_s, root) = fixture();
    let server = start(&root, &[]);
    let mut stream = connect_raw(server.addr());
    stream.write_all(b"EXIT\r\r\n").expect("send");
    let line = String::from_utf8(read_line(&mut stream)).expect("UTF-8");
    assert!(line.starts_with("! "), "{line:?}");
    stream.write_all(b"text.txt\n").expect("send");
    assert_eq!(read_len(&mut stream, TEXT.len()), TEXT);
}

/// A symlink swapped between a file inside and the secret outside, as fast
/// as the test can, while a client asks for it again and again: every reply
/// is the inside file or a refusal, never the secret.
#[test]
fn a_symlink_swapped_in_while_serving_never_leaks() {
    const ROUNDS: usize = 300;
    let (s, root) = fixture();
    let server = start(&root, &[]);
    let root_path = s.path().join("root");
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = Arc::clone(&stop);
        let link = root_path.join("swap");
        let tmp = root_path.join("swap.tmp");
        thread::spawn(move || {
            let mut inside = true;
            let deadline = Instant::now() + TIMEOUT * 3;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let _ = std::fs::remove_file(&tmp);
                let target = if inside { "text.txt" } else { "../secret" };
                symlink(target, &tmp).expect("symlink");
                std::fs::rename(&tmp, &link).expect("rename over the link");
                inside = !inside;
            }
        })
    };
    let mut stream = connect_raw(server.addr());
    let mut served = 0;
    for _ in 0..ROUNDS {
        stream.write_all(b"swap\n").expect("send");
        let line = read_line(&mut stream);
        assert_ne!(line, SECRET, "the secret leaked");
        if line == TEXT {
            served += 1;
        } else {
            assert!(
                line.starts_with(b"! "),
                "{:?}",
                String::from_utf8_lossy(&line)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper");
    eprintln!("swapped link: served {served} of {ROUNDS}, refused the rest");
}

/// Over UDP a datagram names a file: its contents when they fit one
/// datagram, else one `! ` line; escapes refused there too.
#[test]
fn udp_datagrams_name_files() {
    let (_s, root) = fixture();
    let server = start(&root, &["--udp"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    socket.connect(server.addr()).expect("connect");
    let mut buf = vec![0; 70_000];
    let mut ask = |name: &[u8]| {
        socket.send(name).expect("send");
        let n = socket.recv(&mut buf).expect("a reply");
        buf[..n].to_vec()
    };
    assert_eq!(ask(b"text.txt"), TEXT);
    assert_eq!(ask(b"text.txt\r\n"), TEXT);
    assert_eq!(ask(b"sub/deep.txt\n"), b"deep\n");
    let refused = String::from_utf8(ask(b"../secret")).expect("UTF-8");
    assert!(
        refused.starts_with("! ") && refused.contains("outside"),
        "{refused:?}"
    );
    let too_big = String::from_utf8(ask(b"binary.dat")).expect("UTF-8");
    assert!(
        too_big.starts_with("! ") && too_big.contains("too big"),
        "{too_big:?}"
    );
}

/// No `--root`, a missing folder, a file as the root: one line on stderr,
/// exit 1.
#[test]
fn root_errors_are_one_line_and_exit_1() {
    let (s, _root) = fixture();
    let missing = s.path().join("missing");
    let file = s.path().join("secret");
    let cases: [(&[&str], &str); 3] = [
        (&[], "--root"),
        (
            &["--root", missing.to_str().expect("UTF-8")],
            "no such file",
        ),
        (
            &["--root", file.to_str().expect("UTF-8")],
            "not a directory",
        ),
    ];
    for (extra, says) in cases {
        let mut child = Command::new(bin("chat-server"))
            .args(["--bind", "127.0.0.1", "--port", "0", "--mode", "file"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let status = wait_timeout(&mut child, TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("{extra:?}: the server kept running");
        });
        let out = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(1), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{extra:?}: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{extra:?}: printed an address");
    }
}

/// Ctrl+C with a client idle and another half-way through a name: exit 0
/// within 2 s.
#[test]
fn ctrl_c_stops_a_file_server_promptly() {
    let (_s, root) = fixture();
    let mut server = start(&root, &["--udp"]);
    let mut idle = connect_raw(server.addr());
    let mut partial = connect_raw(server.addr());
    idle.write_all(b"text.txt\n").expect("send");
    assert_eq!(read_len(&mut idle, TEXT.len()), TEXT);
    partial.write_all(b"sub/de").expect("send");
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(2));
    assert!(status.success(), "{status:?}; stderr:\n{}", server.stderr());
    assert_eq!(read_to_eof(&mut idle), b"");
}

/// A file the server may not read: `! permission denied`, and the
/// connection goes on. The server runs as `nobody` (uid 65534) for this,
/// since root reads everything; the test itself runs as root. Every folder
/// it needs is 0755 whatever the umask (`Scratch`).
#[test]
fn an_unreadable_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let (s, root) = fixture();
    let locked = s.file("root/locked.txt", b"locked\n");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    // `nobody` needs search permission on every folder to the binary: a
    // clone under /root (0700) would not do, so run a copy in the scratch
    // folder (0755, up to the 1777 temp dir).
    let server_copy = s.dir("bin").join("chat-server");
    std::fs::copy(bin("chat-server"), &server_copy).expect("copy chat-server");
    std::fs::set_permissions(&server_copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = Command::new(&server_copy);
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--mode",
        "file",
        "--root",
        &root,
    ])
    .uid(65_534)
    .gid(65_534);
    let server = Server::spawn(cmd);
    let mut stream = connect_raw(server.addr());
    stream.write_all(b"locked.txt\n").expect("send");
    let line = String::from_utf8(read_line(&mut stream)).expect("UTF-8");
    assert!(
        line.starts_with("! ") && line.contains("permission denied"),
        "{line:?}"
    );
    stream.write_all(b"text.txt\n").expect("send");
    assert_eq!(read_len(&mut stream, TEXT.len()), TEXT);
}

/// Every entry under `dir` (not following symlinks): its path, size and
/// modification time.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut seen = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            if meta.is_dir() {
                stack.push(path.clone());
            }
            seen.push((path, meta.len(), meta.modified().expect("mtime")));
        }
    }
    seen.sort();
    seen
}

/// Serving, refusing and stopping leave the root exactly as it was: no
/// file created, changed or removed.
#[test]
fn the_root_is_never_written() {
    let (s, root) = fixture();
    let before = snapshot(s.path());
    let server = start(&root, &["--udp"]);
    let mut stream = connect_raw(server.addr());
    stream
        .write_all(b"text.txt\nnope\nsub\nfifo\n../secret\nbinary.dat\nEXIT\n")
        .expect("send");
    let _ = read_to_eof(&mut stream);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    socket.send_to(b"text.txt", server.addr()).expect("send");
    let mut buf = [0u8; 256];
    socket.recv(&mut buf).expect("a reply");
    drop(server);
    assert_eq!(snapshot(s.path()), before);
}

/// Review: a file that shrank while it was sent gave a short reply that
/// nothing told from a whole one (replies carry no length), the next
/// name's reply glued on, and the log said it was sent whole. A reply cut
/// short ends the connection now (an end of stream, the next name the
/// client sent meanwhile read and dropped), and the log says so.
#[test]
fn a_file_cut_short_while_sent_ends_the_connection() {
    const SIZE: u64 = 50_000_000;
    let (s, root) = fixture();
    let path = s.path().join("root/shrinks.bin");
    // Sparse: no 50 MB written to disk.
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(SIZE))
        .expect("file");
    let server = start(&root, &["--max-file", "100000000"]);
    let mut stream = connect_raw(server.addr());
    stream.write_all(b"shrinks.bin\n").expect("send");
    let first = read_len(&mut stream, 100_000);
    // The next name, sent while the server is busy sending: still unread
    // when the reply is cut short (a review: closed then, the connection
    // was reset, not ended).
    stream.write_all(b"text.txt\n").expect("send");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(0))
        .expect("truncate");
    let rest = read_to_clean_eof(&mut stream);
    let got = (first.len() + rest.len()) as u64;
    assert!(got < SIZE, "{got} bytes: the whole file");
    server.stderr_until("was cut short");
}

/// `--workers 1`: a connection that must wait for the one place is told
/// so, as in chat mode, and served once it frees.
#[test]
fn a_connection_that_waits_is_told_so() {
    let (_s, root) = fixture();
    let server = start(&root, &["--workers", "1"]);
    let mut first = connect_raw(server.addr());
    first.write_all(b"sub/deep.txt\n").expect("send");
    assert_eq!(read_len(&mut first, 5), b"deep\n", "the first is served");
    let mut second = connect_raw(server.addr());
    let wait = b"* the one place is taken; you are number 1 in line, please wait\n";
    assert_eq!(read_len(&mut second, wait.len()), wait);
    drop(first);
    second.write_all(b"sub/deep.txt\n").expect("send");
    assert_eq!(read_len(&mut second, 5), b"deep\n", "served once it freed");
}

//! History and transcript (SPEC "History and transcript"): what a client
//! entering a room is replayed, the transcript's format and mode, history
//! surviving a restart and a `kill -9`, a failing disk, a transcript that
//! cannot be opened.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::rooms::{
    file_until, join_n, join_room, missing_from_transcript, Fifo, TempDir, WAIT,
};
use chat_tests::{bin, Client, Server, TIMEOUT};

/// A short wait for "nothing more arrives" checks.
const QUIET: Duration = Duration::from_millis(300);

/// A newcomer gets the count, then exactly the last chat lines as they were
/// delivered (`/me` and the console's included; no notices, no private
/// messages), then live lines.
#[test]
fn history_is_counted_framed_and_chat_only() {
    let mut server = Server::start(&["--history", "3"]);
    let mut room = join_n(&server, 2);
    room[0].0.send("first, dropped from a history of 3");
    room[0].0.send("/msg guest-2 private, never replayed");
    room[0].0.send("/me waves");
    room[1].0.recv_until(|l| l == "<guest-1> * waves");
    server.console("from the desk");
    room[1].0.recv_until(|l| l == "<server> from the desk");
    room[1].0.send("/nick bob");
    room[1].0.send("hello");
    room[0].0.recv_until(|l| l == "<bob> hello");
    let (mut late, name) = server.join();
    assert_eq!(late.recv(), "* last 3 lines of #lobby:");
    assert_eq!(late.recv(), "<guest-1> * waves");
    assert_eq!(late.recv(), "<server> from the desk");
    assert_eq!(late.recv(), "<bob> hello");
    late.assert_silent(QUIET);
    room[0]
        .0
        .recv_until(|l| l.starts_with(&format!("* {name} joined")));
    room[0].0.send("live");
    assert_eq!(late.recv(), "<guest-1> live");
}

/// A room whose last member left keeps its history for the next to enter.
#[test]
fn an_emptied_room_keeps_its_history() {
    let server = Server::start(&[]);
    let mut room = join_n(&server, 2);
    join_room(&mut room[0].0, "attic");
    room[0].0.send("anyone up here?");
    room[0].0.send("guess not");
    join_room(&mut room[0].0, "lobby");
    room[1].0.send("/rooms");
    assert_eq!(
        room[1]
            .0
            .recv_until(|l| l.starts_with("* 1 room"))
            .pop()
            .unwrap(),
        "* 1 room: #lobby (2)"
    );
    assert_eq!(
        join_room(&mut room[1].0, "ATTIC"),
        "* you are now in #ATTIC (1 online)"
    );
    assert_eq!(room[1].0.recv(), "* last 2 lines of #ATTIC:");
    assert_eq!(room[1].0.recv(), "<guest-1> anyone up here?");
    assert_eq!(room[1].0.recv(), "<guest-1> guess not");
    room[1].0.assert_silent(QUIET);
}

/// `--history 0`: no history and no notice about it.
#[test]
fn history_zero_replays_nothing() {
    let server = Server::start(&["--history", "0"]);
    let mut room = join_n(&server, 2);
    room[0].0.send("said before");
    room[1].0.recv_until(|l| l == "<guest-1> said before");
    let (mut late, name) = server.join();
    late.assert_silent(QUIET);
    room[0]
        .0
        .recv_until(|l| l.starts_with(&format!("* {name} joined")));
    room[0].0.send("said after");
    assert_eq!(late.recv(), "<guest-1> said after");
}

/// Whether `line` is `TIME #room LINE` with TIME in UTC RFC 3339 with
/// milliseconds.
fn is_stamped(line: &str, rest: &str) -> bool {
    let Some((time, tail)) = line.split_once(' ') else {
        return false;
    };
    let b = time.as_bytes();
    tail == rest
        && b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && time.chars().filter(|c| c.is_ascii_digit()).count() == 17
}

/// The transcript: mode 0600, one `TIME #room LINE` per public line within
/// a second, notices and every room included, private messages never.
#[test]
fn transcript_format_and_mode() {
    let dir = TempDir::new("format");
    let path = dir.join("chat.log");
    let path_arg = path.to_str().unwrap();
    let server = Server::start(&["--transcript", path_arg]);
    let mut room = join_n(&server, 2);
    room[0].0.send("/msg guest-2 secret whisper");
    room[1].0.recv_until(|l| l.starts_with("[from guest-1]"));
    let sent = Instant::now();
    room[0].0.send("hello lobby");
    let body = file_until(&path, "hello lobby", Duration::from_secs(3));
    assert!(
        sent.elapsed() < Duration::from_millis(1500),
        "the line took {:?} to reach the file",
        sent.elapsed()
    );
    join_room(&mut room[1].0, "den");
    room[1].0.send("/me hides");
    let body2 = file_until(&path, "hides", Duration::from_secs(3));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "transcript mode {mode:o}");
    assert!(
        !body2.contains("secret"),
        "a private message was written:\n{body2}"
    );
    let lines: Vec<&str> = body2.lines().collect();
    let expect = [
        "#lobby * guest-1 joined (1 online)",
        "#lobby * guest-2 joined (2 online)",
        "#lobby <guest-1> hello lobby",
        "#lobby * guest-2 left for #den (1 online)",
        "#den * guest-2 joined (1 online)",
        "#den <guest-2> * hides",
    ];
    assert_eq!(lines.len(), expect.len(), "{body2}");
    for (line, rest) in lines.iter().zip(expect) {
        assert!(is_stamped(line, rest), "{line:?} is not `TIME {rest}`");
    }
    assert!(body.lines().count() >= 3);
}

/// Starts a server with `--transcript path` and `extra`.
fn start_with(path: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--transcript", path];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// History survives a graceful restart: the new server replays the lines
/// of each room from the transcript.
#[test]
fn history_after_a_graceful_restart() {
    let dir = TempDir::new("restart");
    let path = dir.join("chat.log");
    let path = path.to_str().unwrap();
    let mut server = start_with(path, &[]);
    let (mut alice, _) = server.join();
    alice.send("before the restart");
    join_room(&mut alice, "side");
    alice.send("in a side room");
    server.stdout_until(|l| l == "#side <guest-1> in a side room");
    server.signal("INT");
    assert!(server.wait_exit(TIMEOUT).success());
    let server = start_with(path, &[]);
    let (mut bob, _) = server.join();
    assert_eq!(bob.recv(), "* last 1 line of #lobby:");
    assert_eq!(bob.recv(), "<guest-1> before the restart");
    join_room(&mut bob, "side");
    assert_eq!(bob.recv(), "* last 1 line of #side:");
    assert_eq!(bob.recv(), "<guest-1> in a side room");
}

/// History survives `kill -9`: a line relayed is in the file within 1 s
/// (SPEC; 1.2 s with a margin), is still there after the kill, and is
/// replayed after a restart.
#[test]
fn history_after_kill_9() {
    let dir = TempDir::new("kill9");
    let path = dir.join("chat.log");
    let server = start_with(path.to_str().unwrap(), &[]);
    let mut room = join_n(&server, 2);
    room[0].0.send("said just before the kill");
    room[1]
        .0
        .recv_until(|l| l == "<guest-1> said just before the kill");
    file_until(
        &path,
        "<guest-1> said just before the kill",
        Duration::from_millis(1200),
    );
    server.signal("KILL");
    drop(server);
    let server = start_with(path.to_str().unwrap(), &[]);
    let (mut late, _) = server.join();
    assert_eq!(late.recv(), "* last 1 line of #lobby:");
    assert_eq!(late.recv(), "<guest-1> said just before the kill");
}

/// Defect: `--transcript` on an existing file whose last line has no LF
/// and is not a transcript line (a file given by mistake, edited by hand)
/// lost that line at start, all of the file when it held no LF. SPEC
/// appends to an existing FILE: the line is kept, ended with an LF, and
/// the transcript's lines follow it.
#[test]
fn someone_elses_last_line_without_lf_is_kept() {
    let dir = TempDir::new("notes");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "important notes without newline").unwrap();
    let mut server = start_with(path.to_str().unwrap(), &[]);
    let (mut ann, _) = server.join();
    ann.send("hello");
    let body = file_until(&path, "hello", WAIT);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"important notes without newline"),
        "{body}"
    );
    assert!(
        is_stamped(lines[lines.len() - 1], "#lobby <guest-1> hello"),
        "{body}"
    );
    server.signal("INT");
    assert!(server.wait_exit(TIMEOUT).success());
    let stderr = server.stderr();
    assert!(stderr.contains("kept, and given one"), "{stderr}");
}

/// Defect: a FILE left mid-line (a crash, or a disk that filled, during a
/// write) got the next run's first line glued onto the fragment, and the
/// fragment was replayed as a chat line. Now the partial last line is
/// dropped at start (said once on stderr): what follows starts a line of
/// its own, and after a restart the history holds whole lines only.
#[test]
fn a_partial_last_line_is_dropped_at_start() {
    let dir = TempDir::new("torn");
    let path = dir.join("chat.log");
    std::fs::write(
        &path,
        "2026-12-01T10:00:00.000Z #lobby <alice> said whole\n\
         2026-12-01T10:00:01.000Z #lobby <alice> cut off mid-wri",
    )
    .unwrap();
    let mut server = start_with(path.to_str().unwrap(), &[]);
    let (mut bob, _) = server.join();
    assert_eq!(bob.recv(), "* last 1 line of #lobby:");
    assert_eq!(bob.recv(), "<alice> said whole");
    bob.send("after the restart");
    let body = file_until(&path, "after the restart", WAIT);
    let lines: Vec<&str> = body.lines().collect();
    let expect = [
        "#lobby <alice> said whole",
        "#lobby * guest-1 joined (1 online)",
        "#lobby <guest-1> after the restart",
    ];
    assert_eq!(lines.len(), expect.len(), "{body}");
    for (line, rest) in lines.iter().zip(expect) {
        assert!(is_stamped(line, rest), "{line:?} is not `TIME {rest}`");
    }
    server.signal("INT");
    assert!(server.wait_exit(TIMEOUT).success());
    let stderr = server.stderr();
    assert_eq!(stderr.matches("partial last line").count(), 1, "{stderr}");
    let server = start_with(path.to_str().unwrap(), &[]);
    let (mut carol, _) = server.join();
    assert_eq!(carol.recv(), "* last 2 lines of #lobby:");
    assert_eq!(carol.recv(), "<alice> said whole");
    assert_eq!(carol.recv(), "<guest-1> after the restart");
}

/// A transcript on a disk that fails every write (`/dev/full`): the room
/// goes on, the failure is logged once, and the exit summary counts the
/// lines the transcript lacks.
#[test]
fn a_failing_disk_never_holds_up_the_room() {
    let mut server = Server::start(&["--transcript", "/dev/full"]);
    let mut room = join_n(&server, 2);
    for i in 0..20 {
        room[0].0.send(&format!("line {i}"));
        assert_eq!(room[1].0.recv(), format!("<guest-1> line {i}"));
        if i == 9 {
            // The first write failed; the next ones (at the latest the
            // one at the stop) fail too, and are not logged again.
            server.stderr_until("cannot write");
        }
    }
    server.signal("INT");
    assert!(server.wait_exit(TIMEOUT).success());
    let stderr = server.stderr();
    assert_eq!(stderr.matches("cannot write").count(), 1, "{stderr}");
    // Nothing was ever written: no "writing again" (an empty write at the
    // stop once "succeeded").
    assert!(!stderr.contains("writing again"), "{stderr}");
    let missing = missing_from_transcript(&stderr);
    // Two joins and twenty lines, at least.
    assert!(missing >= 22, "{missing} lines counted missing:\n{stderr}");
}

/// A transcript that cannot be opened (its folder is missing): one line on
/// stderr naming it, exit 1.
#[test]
fn a_transcript_that_cannot_be_opened_exits_1() {
    let dir = TempDir::new("missing");
    let path = dir.join("no/such/folder/chat.log");
    let out = Command::new(bin("chat-server"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--transcript"])
        .arg(&path)
        .output()
        .expect("run chat-server");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("chat.log"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// History is kept for at most `--max-rooms` empty rooms: past that, the
/// room left empty longest ago is forgotten first.
#[test]
fn the_room_emptied_longest_ago_is_forgotten_first() {
    let server = Server::start(&["--max-rooms", "2"]);
    let (mut alice, _) = server.join();
    for room in ["a", "b", "c"] {
        join_room(&mut alice, room);
        alice.send(&format!("said in {room}"));
    }
    join_room(&mut alice, "lobby");
    // #a, #b and #c are empty now: #a was emptied first and is forgotten.
    assert_eq!(join_room(&mut alice, "b"), "* you are now in #b (1 online)");
    assert_eq!(alice.recv(), "* last 1 line of #b:");
    assert_eq!(alice.recv(), "<guest-1> said in b");
    assert_eq!(join_room(&mut alice, "a"), "* you are now in #a (1 online)");
    alice.assert_silent(QUIET);
}

/// Review: rooms that never held a line took places among the empty
/// rooms kept for their history: visiting two of them with `--max-rooms 2`
/// forgot a third room's history. They are forgotten as they empty (they
/// have nothing to keep), and the room with history keeps it.
#[test]
fn rooms_without_history_do_not_push_out_one_with_history() {
    let server = Server::start(&["--max-rooms", "2"]);
    let (mut alice, _) = server.join();
    join_room(&mut alice, "kept");
    alice.send("said in kept");
    join_room(&mut alice, "lobby");
    for room in ["quiet1", "quiet2", "quiet3"] {
        join_room(&mut alice, room);
        alice.assert_silent(QUIET);
        join_room(&mut alice, "lobby");
    }
    assert_eq!(
        join_room(&mut alice, "kept"),
        "* you are now in #kept (1 online)"
    );
    assert_eq!(alice.recv(), "* last 1 line of #kept:");
    assert_eq!(alice.recv(), "<guest-1> said in kept");
}

/// Defect: a transcript write that never returns (a FIFO nobody reads)
/// held up the graceful stop forever, with no summary. Now the stop gives
/// up on it: exit 0 within 2 s of Ctrl+C, the skipped sync logged, and the
/// summary counting every line the FIFO could not take as missing.
#[test]
fn a_stalled_transcript_does_not_hold_up_the_stop() {
    let dir = TempDir::new("fifo-stall");
    let path = dir.join("chat.fifo");
    let fifo = Fifo::new(&path);
    let capacity = fifo.capacity();
    let mut server = start_with(path.to_str().unwrap(), &["--rate-limit", "0"]);
    let (mut alice, _) = server.join();
    // Each line is over 1,000 bytes in the file: four times what the FIFO
    // holds, and more.
    let text = "x".repeat(1000);
    let lines = 4 * capacity / 1000 + 100;
    for i in 0..lines {
        alice.send(&format!("{i} {text}"));
    }
    // Its lines are relayed (and handed to the transcript) before its next
    // command is answered.
    alice.send("/who");
    alice.recv_until(|l| l.starts_with("* 1 in #lobby"));
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(2));
    assert!(status.success(), "{status:?}");
    let stderr = server.stderr();
    assert!(stderr.contains("not synced"), "{stderr}");
    // The join notice and the lines; the FIFO took at most `capacity`
    // bytes of them, a line started and not finished counting as missing.
    let written_at_most = (capacity / 1000) as u64;
    let missing = missing_from_transcript(&stderr);
    assert!(
        missing >= lines as u64 + 1 - written_at_most,
        "{missing} of {} lines counted missing:\n{stderr}",
        lines + 1
    );
    drop(fifo);
}

/// Defect: lines dropped at a full transcript queue (a disk slower than the
/// rooms) were never logged. Now the episode is logged once when it starts
/// (at the first line dropped, even while the write is stuck) and once when
/// the transcript has caught up, and the exit summary counts the dropped
/// lines: the file and the count add up to every line relayed.
#[test]
fn lines_dropped_at_a_full_queue_are_logged_once_and_counted() {
    // More than the transcript's queue (16,384 lines), what its thread
    // holds for one write (64 KiB) and what the FIFO holds.
    const LINES: usize = 30_000;
    let dir = TempDir::new("fifo-lag");
    let path = dir.join("chat.fifo");
    let fifo = Fifo::new(&path);
    let mut server = start_with(path.to_str().unwrap(), &["--rate-limit", "0"]);
    let (mut alice, _) = server.join();
    for i in 0..LINES {
        alice.send(&format!("line {i}"));
    }
    alice.send("/who");
    alice.recv_until(|l| l.starts_with("* 1 in #lobby"));
    // Logged while the transcript's thread is stuck in its write (review:
    // only that thread logged it, so not until the FIFO was read).
    server.stderr_until("slower than the rooms");
    // Every line was handed over while the FIFO was not read: the disk
    // "catches up" now.
    let body = fifo.read_to_end();
    server.stderr_until("caught up");
    server.signal("INT");
    assert!(server.wait_exit(TIMEOUT).success());
    let stderr = server.stderr();
    let body = String::from_utf8(body.join().unwrap()).unwrap();
    let written = body.lines().count() as u64;
    let missing = missing_from_transcript(&stderr);
    assert_eq!(
        stderr.matches("slower than the rooms").count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.matches("caught up").count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "caught up; {missing} line{} dropped meanwhile",
            if missing == 1 { "" } else { "s" }
        )),
        "{stderr}"
    );
    assert!(missing > 0, "{stderr}");
    assert_eq!(written + missing, LINES as u64 + 1, "{stderr}");
}

/// Defect: a high `--history` got joiners dropped as too slow: the replay
/// was pushed whole and counted against the queue's lag allowance (4 x
/// 1,024 lines by default), so the first live line after it found the
/// queue full. With `--history 10000`, 1 KB lines and a live sender, 4 of
/// 5 joiners reading at full speed were dropped. Now the replay is the
/// server's backlog: each joiner gets the whole history, then live lines.
#[test]
fn a_long_history_does_not_drop_joiners_that_read() {
    const HISTORY: usize = 10_000;
    const JOINERS: usize = 5;
    const LIVE: usize = 20;
    let server = Server::start(&["--history", "10000", "--rate-limit", "0"]);
    let (mut talker, _) = server.join();
    let text = "h".repeat(1000);
    for i in 0..HISTORY {
        talker.send(&format!("{i} {text}"));
    }
    talker.send("/who");
    talker.recv_until(|l| l.starts_with("* 1 in #lobby"));
    // A live sender, paced, until every joiner is done (bounded anyway).
    let done = Arc::new(AtomicBool::new(false));
    let live = {
        let done = Arc::clone(&done);
        let mut talker = talker.try_clone();
        thread::spawn(move || {
            for i in 0..60_000 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                talker.send(&format!("live {i}"));
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let joiners: Vec<_> = (0..JOINERS)
        .map(|_| {
            let mut client = Client::connect(server.addr());
            thread::spawn(move || {
                assert!(client.recv().starts_with("* welcome, "));
                assert_eq!(client.recv(), format!("* last {HISTORY} lines of #lobby:"));
                // The live lines relayed before it entered are history too.
                for _ in 0..HISTORY {
                    let line = client.recv();
                    assert!(line.starts_with("<guest-1> "), "{line:.80}");
                }
                let mut live = 0;
                while live < LIVE {
                    let line = client.recv();
                    assert!(!line.starts_with('!'), "dropped: {line}");
                    if line.starts_with("<guest-1> live ") {
                        live += 1;
                    }
                }
                client
            })
        })
        .collect();
    let results: Vec<_> = joiners.into_iter().map(|j| j.join()).collect();
    done.store(true, Ordering::Relaxed);
    live.join().unwrap();
    for result in results {
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
    assert!(!server.stderr().contains("too slow"), "{}", server.stderr());
}

/// The boundary between history and live lines holds under concurrency: a
/// sender streams numbered lines into its room while other clients keep
/// entering and leaving it; for every entry, the replayed history and the
/// live lines after it are one run of numbers, with no gap and no
/// duplicate.
#[test]
fn history_then_live_has_no_gap_and_no_duplicate_while_clients_come_and_go() {
    const HISTORY: usize = 30;
    const MOVERS: usize = 3;
    const ENTRIES: usize = 40;
    const LIVE: u64 = 15;
    let server = Server::start(&["--history", "30", "--rate-limit", "0"]);
    let (mut sender, sender_name) = server.join();
    join_room(&mut sender, "flow");
    for n in 0..HISTORY {
        sender.send(&n.to_string());
    }
    // Its lines are relayed before its next command is answered.
    sender.send("/who");
    sender.recv_until(|l| l.starts_with("* 1 in #flow"));
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = {
        let stop = Arc::clone(&stop);
        let mut sender = sender.try_clone();
        thread::spawn(move || {
            // Bounded in count as well as by the flag.
            for n in HISTORY..HISTORY + 200_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                sender.send(&n.to_string());
                thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let prefix = format!("<{sender_name}> ");
    let movers: Vec<_> = (0..MOVERS)
        .map(|_| {
            let (mut mover, _) = server.join();
            let prefix = prefix.clone();
            thread::spawn(move || {
                let number = |line: &str| -> u64 {
                    line.strip_prefix(&prefix)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("not a numbered line: {line:?}"))
                };
                for entry in 0..ENTRIES {
                    join_room(&mut mover, "flow");
                    assert_eq!(mover.recv(), format!("* last {HISTORY} lines of #flow:"));
                    let first = number(&mover.recv());
                    let mut last = first;
                    for _ in 1..HISTORY {
                        let n = number(&mover.recv());
                        assert_eq!(n, last + 1, "entry {entry}: gap or duplicate in history");
                        last = n;
                    }
                    let mut live = 0;
                    while live < LIVE {
                        let line = mover.recv();
                        if line.starts_with("* ") {
                            // Others coming and going.
                            continue;
                        }
                        let n = number(&line);
                        assert_eq!(
                            n,
                            last + 1,
                            "entry {entry}: after history up to {last}, live line {n}"
                        );
                        last = n;
                        live += 1;
                    }
                    join_room(&mut mover, "lobby");
                }
            })
        })
        .collect();
    let results: Vec<_> = movers.into_iter().map(|m| m.join()).collect();
    stop.store(true, Ordering::Relaxed);
    streaming.join().unwrap();
    for result in results {
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}

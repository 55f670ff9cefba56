//! Unit tests of the transcript: its line budget and its history.

use super::file::Written;
use super::*;

/// Defect: lines refused by a full or closed queue kept their place in
/// the line budget, so after one stall the budget shrank for the rest
/// of the run. They give it back now, and count as lost and dropped.
#[test]
fn refused_lines_give_their_place_back() {
    let (queue, records) = crossbeam_channel::bounded(2);
    let transcript = Transcript::without_thread(queue, "test".into());
    let room: Arc<str> = "#lobby".into();
    let lines: Vec<Arc<str>> = vec!["<a> 1\n".into(), "<a> 2\n".into()];
    for _ in 0..3 {
        transcript.record(&room, &lines);
    }
    // Two batches queued, the third refused (queue full).
    assert_eq!(transcript.queued.load(Ordering::Acquire), 4);
    assert_eq!(transcript.lost(), 2);
    assert_eq!(transcript.dropped.load(Ordering::Acquire), 2);
    drop(records);
    transcript.record(&room, &lines);
    // Refused again (no thread to take it): still the two batches.
    assert_eq!(transcript.queued.load(Ordering::Acquire), 4);
    assert_eq!(transcript.lost(), 4);
}

/// History comes back per room, chat lines only, the last `keep` of
/// each, from the tail of the file; a cut first line is skipped.
#[test]
fn loads_the_tail_per_room() {
    let path = std::env::temp_dir().join(format!("chat-transcript-unit-{}", std::process::id()));
    let mut body = String::new();
    // More than TAIL_BYTES of filler first: only the tail of it is read.
    let old = "2026-01-01T00:00:00.000Z #old <a> far too old to be read\n";
    while (body.len() as u64) < TAIL_BYTES + 1000 {
        body.push_str(old);
    }
    for line in [
        "2026-01-01T00:00:01.000Z #lobby <a> one",
        "2026-01-01T00:00:02.000Z #lobby * b joined (2 online)",
        "2026-01-01T00:00:03.000Z #Games <b> two",
        "2026-01-01T00:00:04.000Z #lobby <a> three",
        "2026-01-01T00:00:05.000Z #lobby <a> four",
        "garbage without fields",
    ] {
        body.push_str(line);
        body.push('\n');
    }
    std::fs::write(&path, body).unwrap();
    let mut rooms = load_history(&path, 2, 8, 4096);
    let _ = std::fs::remove_file(&path);
    rooms.retain(|(room, _)| room != "old");
    let as_text = |lines: &Vec<Arc<str>>| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert_eq!(rooms.len(), 2, "{rooms:?}");
    assert_eq!(rooms[0].0, "Games");
    assert_eq!(as_text(&rooms[0].1), ["<b> two\n"]);
    assert_eq!(rooms[1].0, "lobby");
    assert_eq!(as_text(&rooms[1].1), ["<a> three\n", "<a> four\n"]);
}

/// Review: history reloaded from a transcript someone edited reached
/// clients raw (escape, NUL, bidi override) and whole (a 100,000-byte
/// line). Each line is sanitised as a live one and cut to the bound.
#[test]
fn reloaded_lines_are_sanitised_and_bounded() {
    let path = std::env::temp_dir().join(format!("chat-transcript-raw-{}", std::process::id()));
    let long = "y".repeat(100_000);
    let body = format!(
        "2026-01-01T00:00:01.000Z #lobby <x> a\u{1b}[2J\u{7}b\u{0}c\u{202e}d\u{9b}e\n\
         2026-01-01T00:00:02.000Z #lobby <x> é{long}\n"
    );
    std::fs::write(&path, body).unwrap();
    let rooms = load_history(&path, 8, 8, 100);
    let _ = std::fs::remove_file(&path);
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    let lines = &rooms[0].1;
    assert_eq!(
        &*lines[0],
        "<x> a\u{241b}[2J\u{2407}b\u{2400}c\u{fffd}d\u{fffd}e\n"
    );
    assert_eq!(lines[1].len(), 100);
    assert!(lines[1].starts_with("<x> éyyy") && lines[1].ends_with("y\n"));
}

/// A disk of `room` bytes: a write takes at most 100 bytes at a time (as
/// the kernel may), then fails as a full disk does. Its `cut` can be made
/// to fail.
struct SmallDisk {
    bytes: Vec<u8>,
    room: usize,
    cut_fails: bool,
}

impl std::io::Write for SmallDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let free = self.room.saturating_sub(self.bytes.len());
        if free == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let n = buf.len().min(free).min(100);
        self.bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl file::Disk for SmallDisk {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }

    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        if self.cut_fails {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.bytes.truncate(len as usize);
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `sink`'s disk holds, as text (for readable failures).
fn held(sink: &mut Sink<SmallDisk>) -> String {
    String::from_utf8_lossy(&sink.disk().bytes).into_owned()
}

/// As text.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `n` transcript lines of about `width` bytes, `tag`ged.
fn batch(tag: &str, n: usize, width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let text = "z".repeat(width);
        out.extend_from_slice(
            format!("2026-12-06T09:50:17.056Z #lobby <{tag}> {i} {text}\n").as_bytes(),
        );
    }
    out
}

/// Defect: a batch that filled the disk part-way left a fragment of a
/// line in FILE, and the next batch, once there was room again, was glued
/// onto it (`...zzzz2026-12-06T09:50:17.056Z #lobby <guest-1> after space
/// freed`). Now a failed batch is cut back whole: FILE holds whole lines.
#[test]
fn a_batch_that_fills_the_disk_leaves_nothing_of_itself() {
    let mut sink = Sink::new(
        SmallDisk {
            bytes: Vec::new(),
            room: 1000,
            cut_fails: false,
        },
        true,
    );
    let first = batch("a", 3, 20);
    assert!(matches!(sink.write(&first), Written::Whole));
    assert!(matches!(
        sink.write(&batch("b", 10, 90)),
        Written::Failed(_)
    ));
    assert_eq!(held(&mut sink), text(&first), "a failed batch left bytes");
    assert!(matches!(
        sink.write(&batch("b", 10, 90)),
        Written::StillFailing
    ));
    // Room again (the filler was deleted).
    sink.disk().room = 10_000;
    let after = b"2026-12-06T09:50:17.056Z #lobby <guest-1> after space freed\n";
    assert!(matches!(sink.write(after), Written::Again));
    assert_eq!(held(&mut sink), text(&[first, after.to_vec()].concat()));
}

/// A failed batch whose cut fails too is cut before the next write: the
/// next batch is not glued onto its fragment, and nothing is written
/// while it cannot be cut.
#[test]
fn a_fragment_that_could_not_be_cut_is_cut_before_the_next_write() {
    let mut sink = Sink::new(
        SmallDisk {
            bytes: Vec::new(),
            room: 500,
            cut_fails: true,
        },
        true,
    );
    assert!(matches!(
        sink.write(&batch("a", 10, 90)),
        Written::Failed(_)
    ));
    // The fragment is there, and still cannot be cut: nothing is written.
    sink.disk().room = 10_000;
    assert!(matches!(
        sink.write(&batch("b", 1, 10)),
        Written::StillFailing
    ));
    assert_eq!(sink.disk().bytes.len(), 500);
    sink.disk().cut_fails = false;
    let next = batch("c", 1, 10);
    assert!(matches!(sink.write(&next), Written::Again));
    assert_eq!(held(&mut sink), text(&next));
}

/// Minor defect: after a failed write, the stop's empty write "succeeded"
/// and the log said `writing again` though nothing was written. An empty
/// batch now writes nothing and changes nothing.
#[test]
fn an_empty_batch_is_not_writing_again() {
    let mut sink = Sink::new(
        SmallDisk {
            bytes: Vec::new(),
            room: 0,
            cut_fails: false,
        },
        true,
    );
    assert!(matches!(sink.write(b"x\n"), Written::Failed(_)));
    assert!(matches!(sink.write(b""), Written::Nothing));
    assert!(sink.failing());
}

/// A FILE that ends in a transcript line cut short loses it (all of FILE
/// when it holds no LF at all) when the start mends it, after the bind,
/// not at open (before it); a last line without LF that is not the start
/// of a transcript line is someone else's: kept, and ended with an LF
/// (SPEC appends to an existing FILE); one that ends in LF is kept as it
/// is.
#[test]
fn open_drops_a_partial_last_line_and_ends_anyone_elses() {
    let dir = std::env::temp_dir().join(format!("chat-transcript-open-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let whole = "2026-12-01T10:00:00.000Z #lobby <a> whole\n";
    let cut = "2026-12-01T10:00:01.000Z #lobby <a> cut off mid-wri";
    let cases = [
        (format!("{whole}{cut}"), whole.to_string()),
        (cut.to_string(), String::new()),
        // Cut inside TIME, and right after it.
        (format!("{whole}2026-12-0"), whole.to_string()),
        (
            format!("{whole}2026-12-01T10:00:01.000Z #"),
            whole.to_string(),
        ),
        (whole.to_string(), whole.to_string()),
        (String::new(), String::new()),
        // Not transcript lines: kept.
        (
            "important notes, no line end".to_string(),
            "important notes, no line end\n".to_string(),
        ),
        (
            format!("{whole}T #lobby <a> x"),
            format!("{whole}T #lobby <a> x\n"),
        ),
        (
            format!("{whole}2026-12-01 10:00"),
            format!("{whole}2026-12-01 10:00\n"),
        ),
    ];
    let mut found = Vec::new();
    for (i, (before, _)) in cases.iter().enumerate() {
        let path = dir.join(format!("t{i}"));
        std::fs::write(&path, before).unwrap();
        let (mut sink, _) = open(&path).unwrap();
        // Opened (before the bind): nothing changed yet.
        let opened = std::fs::read_to_string(&path).unwrap();
        let mended = sink.mend_now().map_err(|e| e.to_string());
        found.push((opened, mended, std::fs::read_to_string(&path).unwrap()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    for ((opened, mended, after), (before, want)) in found.iter().zip(cases) {
        assert_eq!(opened, &before);
        assert_eq!(mended, &Ok(()));
        assert_eq!(after, &want, "from {before:?}");
    }
}

/// A FIFO nobody reads is refused at once, not waited on.
#[test]
fn open_refuses_a_fifo_with_no_reader() {
    let path = std::env::temp_dir().join(format!("chat-transcript-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let opened = open(&path).map(|_| ());
    let _ = std::fs::remove_file(&path);
    let why = opened.unwrap_err();
    assert!(why.contains("a FIFO with no reader"), "{why}");
}

//! Unit tests of the transcript: its line budget and its history.

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
    let mut rooms = load_history(&path, 2, 8);
    let _ = std::fs::remove_file(&path);
    rooms.retain(|(room, _)| room != "old");
    let as_text = |lines: &Vec<Arc<str>>| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert_eq!(rooms.len(), 2, "{rooms:?}");
    assert_eq!(rooms[0].0, "Games");
    assert_eq!(as_text(&rooms[0].1), ["<b> two\n"]);
    assert_eq!(rooms[1].0, "lobby");
    assert_eq!(as_text(&rooms[1].1), ["<a> three\n", "<a> four\n"]);
}

//! A room's log: the writer's entries and batches, the reader's order,
//! history, cuts and trims.

use super::*;

/// Writer and reader: every line appended is one stream entry, delivered
/// once, in order, numbered 1.. without gaps, and under load the writer
/// carries many lines per round trip.
#[test]
fn lines_are_one_entry_each_in_order_and_batched() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    const LINES: usize = 2000;
    for i in 0..LINES {
        assert_eq!(node.say("lobby", &format!("line {i}")), Queued::Queued);
    }
    let events = node.sink.until("all delivered", |events| {
        Recorder::delivered(events, "lobby").len() >= LINES
    });
    let texts = Recorder::delivered(&events, "lobby");
    let want: Vec<String> = (0..LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, want);
    let numbers: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Deliver(_, n, _) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(numbers, (1..=LINES as u64).collect::<Vec<_>>());
    assert_eq!(
        redis.query(&["XLEN", "chat:log:lobby"]),
        [LINES.to_string()]
    );
    let trips = node.writer.round_trips();
    assert!(
        trips < LINES as u64 / 4,
        "{trips} round trips for {LINES} lines: not batched"
    );
}

/// A log kept short (`--redis-log-len`): one round trip appends at most a
/// sixteenth of it (`LOG_SHARE`), so a burst queued at once is not
/// appended whole between two reads of a reader, which then finds the
/// lines it had not read trimmed (two servers, 10 clients pasting 100
/// lines each at `--redis-log-len 100`: about half the lines reached each
/// reader, with no outage at all). Every line is delivered, none missed.
#[test]
fn a_short_log_is_appended_a_share_at_a_time() {
    let redis = Redis::start();
    let config = LogConfig {
        max_len: 160,
        ..LogConfig::default()
    };
    let node = Node::start(&redis, "a", config);
    node.watch("lobby");
    const LINES: usize = 200;
    for i in 0..LINES {
        assert_eq!(node.say("lobby", &format!("line {i}")), Queued::Queued);
    }
    let events = node.sink.until("all delivered", |events| {
        Recorder::delivered(events, "lobby").len() >= LINES
    });
    let want: Vec<String> = (0..LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(Recorder::delivered(&events, "lobby"), want);
    let trips = node.writer.round_trips();
    assert!(
        trips >= (LINES / 10) as u64,
        "{trips} round trips for {LINES} lines: more than 10 lines (160 / 16) in one"
    );
}

/// Relaying threads that send their own lines (and each other's, when
/// they find the writer free) beside the writer thread: every line is one
/// entry, none lost or doubled, each sender's in the order it said them.
#[test]
fn relaying_threads_sending_for_each_other_keep_each_senders_order() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    const SENDERS: u64 = 8;
    const EACH: usize = 250;
    thread::scope(|scope| {
        for sender in 1..=SENDERS {
            let writer = &node.writer;
            scope.spawn(move || {
                for i in 0..EACH {
                    let line = alice("lobby", &format!("{sender} {i}"));
                    let queued = writer.append_all(sender, std::iter::once(line));
                    assert_eq!(queued, Queued::Queued);
                    writer.send_queued();
                }
            });
        }
    });
    let total = SENDERS as usize * EACH;
    let events = node.sink.until("all delivered", |events| {
        Recorder::delivered(events, "lobby").len() >= total
    });
    let texts = Recorder::delivered(&events, "lobby");
    assert_eq!(texts.len(), total, "lines doubled");
    let mut next = vec![0; SENDERS as usize + 1];
    for text in &texts {
        let (sender, i) = text.split_once(' ').expect("sender and number");
        let (sender, i): (usize, usize) = (sender.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[sender], "sender {sender}'s lines out of order");
        next[sender] += 1;
    }
    assert_eq!(
        redis.query(&["XLEN", "chat:log:lobby"]),
        [total.to_string()]
    );
}

/// A relaying thread whose send finds the writer's connection closed by
/// Redis leaves its line unsure. A line queued right behind it is not
/// refused for that: the writer thread settles the first (sent again on a
/// new connection) before it takes the next, as it did when it alone sent.
#[test]
fn a_line_behind_a_relaying_threads_lost_send_is_sent_not_refused() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let relay = |token: u64, text: &str| {
        let queued = node
            .writer
            .append_all(token, std::iter::once(alice("lobby", text)));
        assert_eq!(queued, Queued::Queued);
        node.writer.send_queued();
    };
    for round in 0..10 {
        let (first, second) = (format!("{round} first"), format!("{round} second"));
        let _ = say_until_delivered(|t| node.say("lobby", t), &node.sink, &format!("{round} up"));
        node.settled();
        redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
        relay(7, &first);
        relay(8, &second);
        let events = node.sink.until("both delivered or refused", |events| {
            [&first, &second].iter().all(|text| {
                let (refused, delivered) = fate(events, events, text);
                refused || delivered > 0
            })
        });
        for text in [&first, &second] {
            assert_eq!(
                fate(&events, &events, text),
                (false, 1),
                "{text:?}: {events:?}"
            );
        }
    }
}

/// Two servers' writers into one room: both readers see the same order.
#[test]
fn two_servers_one_order() {
    let redis = Redis::start();
    let a = Node::start(&redis, "a", LogConfig::default());
    let b = Node::start(&redis, "b", LogConfig::default());
    a.watch("lobby");
    b.watch("lobby");
    for i in 0..300 {
        let _ = a.say("lobby", &format!("a{i}"));
        let _ = b.say("lobby", &format!("b{i}"));
    }
    let seen_a = a.sink.until("a has 600", |e| {
        Recorder::delivered(e, "lobby").len() >= 600
    });
    let seen_b = b.sink.until("b has 600", |e| {
        Recorder::delivered(e, "lobby").len() >= 600
    });
    assert_eq!(
        Recorder::delivered(&seen_a, "lobby"),
        Recorder::delivered(&seen_b, "lobby")
    );
}

/// History is the log's tail: the last lines that pass the filter, oldest
/// first, looking back past other entries, and reading goes on right after
/// the log's last entry, so history and live lines neither overlap nor
/// leave a gap.
#[test]
fn history_is_the_logs_tail_and_reading_goes_on_after_it() {
    let redis = Redis::start();
    let writer_node = Node::start(&redis, "w", LogConfig::default());
    writer_node.watch("games");
    for i in 0..600 {
        let _ = writer_node.say("games", &format!("g{i}"));
    }
    writer_node.sink.until("600 lines", |e| {
        Recorder::delivered(e, "games").len() >= 600
    });

    let mut link = link(&redis);
    let (history, from) = tail(&mut link, "games", 3, |e| e.text.ends_with('0')).unwrap();
    let texts: Vec<&str> = history.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["g570", "g580", "g590"]);
    assert_eq!(from.n, 600);
    let (far, _) = tail(&mut link, "games", 2, |e| e.text == "g3" || e.text == "g1").unwrap();
    assert_eq!(far.len(), 2, "found across pages");
    assert_eq!(far[0].text, "g1");

    let other = Node::start(&redis, "o", LogConfig::default());
    let _ = writer_node.say("games", "g600");
    writer_node.sink.until("g600 written", |e| {
        Recorder::delivered(e, "games").len() >= 601
    });
    other.reader.watch("games", Some(from));
    other
        .sink
        .until("g600 only", |e| Recorder::delivered(e, "games") == ["g600"]);
}

/// The reader resumes after its connection is cut (Redis itself fine):
/// every line the log took meanwhile arrives, in order, none twice, and
/// none of the lines refused to their sender shows up.
#[test]
fn reader_resumes_after_a_cut_without_gap_or_double() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    let other = Node::start(&redis, "b", LogConfig::default());
    node.watch("lobby");
    let mut sent = vec!["before".to_string()];
    let _ = other.say("lobby", "before");
    node.sink
        .until("before", |e| Recorder::delivered(e, "lobby").len() == 1);
    for round in 0..3 {
        redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
        for i in 0..50 {
            let text = format!("r{round}-{i}");
            let _ = other.say("lobby", &text);
            sent.push(text);
        }
    }
    // A last line, sent once the link is surely back: when it arrives,
    // everything before it has been settled (delivered or refused).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let _ = other.say("lobby", "last");
        let events = node.sink.events.lock().clone();
        if Recorder::delivered(&events, "lobby").contains(&"last".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "never back: {events:?}");
        thread::sleep(Duration::from_millis(100));
    }
    let refused: Vec<String> = other
        .sink
        .events
        .lock()
        .iter()
        .filter_map(|e| match e {
            Event::Refused(_, text) => Some(text.clone()),
            _ => None,
        })
        .collect();
    let events = node.sink.events.lock().clone();
    let delivered = Recorder::delivered(&events, "lobby");
    let first_last = delivered.iter().position(|t| t == "last").unwrap();
    let want: Vec<String> = sent.into_iter().filter(|t| !refused.contains(t)).collect();
    assert_eq!(delivered[..first_last], want[..]);
    assert!(!events.iter().any(|e| matches!(e, Event::Missed(..))));
}

/// Lines trimmed from the log before the reader read them are counted:
/// the reader reports exactly how many it missed.
#[test]
fn trimmed_lines_are_counted() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "first");
    node.sink
        .until("first", |e| Recorder::delivered(e, "lobby").len() == 1);
    // 300 lines and a trim to the last 10, in one atomic step: the reader
    // (blocked in XREAD) sees only what is left.
    let script = "for i = 1, 300 do \
        local n = redis.call('INCR', KEYS[2]) \
        redis.call('XADD', KEYS[1], '*', 'n', n, 'uid', 'x', 'from', 'bob', 'kind', 'chat', 'text', 'x' .. i) \
        end \
        redis.call('XTRIM', KEYS[1], 'MAXLEN', 10) return 1";
    redis.command(&["EVAL", script, "2", "chat:log:lobby", "chat:seq:lobby"]);
    let events = node.sink.until("the last of them", |e| {
        Recorder::delivered(e, "lobby").last().map(String::as_str) == Some("x300")
    });
    assert!(events.contains(&Event::Missed("lobby".into(), Missed::Lines(290))));
    assert_eq!(Recorder::delivered(&events, "lobby").len(), 11);
}

/// While Redis is down, rooms joined and left over and over queue one
/// control per room, not one per join (memory bounded by the rooms), and
/// when it is back the room last joined is read; one read takes at most
/// the read budget in all, however many rooms.
#[test]
fn reader_controls_are_one_per_room_and_reads_share_one_budget() {
    use super::super::reader::{read_count, READ_BUDGET};
    let mut redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("warm");
    let _ = node.say("warm", "up");
    node.sink
        .until("up", |e| Recorder::delivered(e, "warm") == ["up"]);
    redis.kill();
    node.sink
        .until("link down", |e| e.contains(&Event::Link(false)));
    for i in 0..10_000 {
        let room = ["lobby", "games", "music"][i % 3];
        node.reader.watch(room, None);
        node.reader.unwatch(room);
    }
    node.reader.watch("lobby", None);
    assert!(node.reader.pending() <= 3, "{}", node.reader.pending());
    redis.restart();
    node.sink
        .until("link up", |e| e.contains(&Event::Link(true)));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let _ = node.say("lobby", "hello");
        let events = node.sink.events.lock().clone();
        if Recorder::delivered(&events, "lobby").contains(&"hello".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "lobby never read: {events:?}");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read_count(2), READ_BUDGET / 2);
    assert!(read_count(258) * 258 <= READ_BUDGET);
    assert_eq!(read_count(100_000), 1);
}

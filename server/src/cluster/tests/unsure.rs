//! Lines whose reply was lost: sent again once, fenced, refused at their
//! deadline, never doubled.

use super::*;

/// A line sent on a connection that had died (its reply lost): the writer
/// finds it is not in the log and sends it again, so it arrives once and
/// its sender is not told it was refused.
#[test]
fn a_line_lost_on_a_dead_connection_is_sent_again_once() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "first");
    node.sink
        .until("first", |e| Recorder::delivered(e, "lobby").len() == 1);
    node.settled();
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    let _ = node.say("lobby", "second");
    node.sink.until("second", |e| {
        Recorder::delivered(e, "lobby").len() == 2
            || e.iter().any(|e| matches!(e, Event::Refused(..)))
    });
    // Only once "second" is settled: sent earlier, it could be refused
    // for queueing behind an unsettled line.
    let _ = node.say("lobby", "third");
    let events = node.sink.until("third", |e| {
        Recorder::delivered(e, "lobby").last().map(String::as_str) == Some("third")
    });
    assert_eq!(
        Recorder::delivered(&events, "lobby"),
        ["first", "second", "third"]
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Refused(..))),
        "{events:?}"
    );
}

/// A writer ("a") that reaches Redis through a [`Proxy`] the test can cut,
/// and a node ("b") reading `#lobby`, which has seen the writer's first
/// line, "one".
struct Behind {
    redis: Redis,
    proxy: Proxy,
    sink: Arc<Recorder>,
    shutdown: Arc<Shutdown>,
    writer: Writer,
    w: thread::JoinHandle<()>,
    watcher: Node,
}

impl Behind {
    fn proxy() -> Behind {
        let redis = Redis::start();
        let proxy = Proxy::start(redis.addr());
        let sink = Arc::new(Recorder::default());
        let shutdown = Arc::new(Shutdown::new());
        let (writer, w) = Writer::start(
            &Endpoint::new(proxy.url()),
            "a",
            LogConfig::default(),
            sink.clone(),
            shutdown.clone(),
        )
        .unwrap();
        let watcher = Node::start(&redis, "b", LogConfig::default());
        watcher.watch("lobby");
        let _ = writer.append(7, alice("lobby", "one"));
        watcher
            .sink
            .until("one", |e| Recorder::delivered(e, "lobby") == ["one"]);
        Behind {
            redis,
            proxy,
            sink,
            shutdown,
            writer,
            w,
            watcher,
        }
    }
}

/// A cut that holds a line's pipeline and delivers it late, after the
/// writer gave up on its reply and sent the line again on a new
/// connection: the line is in the log once (the late copy is skipped by
/// its uid), and its sender is not told it was refused if it was not.
#[test]
fn a_line_held_in_a_cut_and_delivered_late_is_not_doubled() {
    let Behind {
        redis: _redis,
        proxy,
        sink,
        shutdown,
        writer,
        w,
        watcher,
    } = Behind::proxy();
    let say = |text: &str| writer.append(7, alice("lobby", text));
    proxy.hold();
    let _ = say("two");
    // The writer gave up on the held connection and tried a new one.
    let deadline = Instant::now() + DEADLINE;
    while proxy.refused() == 0 {
        assert!(Instant::now() < deadline, "the writer never reconnected");
        thread::sleep(Duration::from_millis(10));
    }
    proxy.heal();
    let events = watcher.sink.until("two settled", |e| {
        Recorder::delivered(e, "lobby").len() == 2
            || sink
                .events
                .lock()
                .iter()
                .any(|e| matches!(e, Event::Refused(..)))
    });
    let _ = events;
    proxy.deliver_late();
    let _ = say("three");
    let events = watcher.sink.until("three", |e| {
        Recorder::delivered(e, "lobby").last().map(String::as_str) == Some("three")
    });
    let (refused, delivered) = fate(&sink.events.lock(), &events, "two");
    assert!(
        (refused && delivered == 0) || (!refused && delivered == 1),
        "refused: {refused}, delivered {delivered} times: {events:?}"
    );
    shutdown.trigger();
    drop(writer);
    joined(w);
}

/// Redis stopped (SIGSTOP) with a line's pipeline on its way: its sender
/// is answered by `UNSURE_DEADLINE` and a margin (a connection attempt
/// timing out) while Redis is still stopped, with a `!` that says it may
/// not have been sent; and once Redis resumes and runs that pipeline, the
/// line is not applied (too old for the append script): it never shows up,
/// neither in the log nor at a reader.
///
/// The line must have gone out on a live connection for that: one the
/// writer could not send is refused at once, rightly, as never sent. So
/// the test stops Redis only once "one" is settled, and checks that
/// "paused" went out.
#[test]
fn a_line_sent_to_a_stopped_redis_is_answered_at_its_deadline_and_never_appears() {
    let redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "one");
    node.sink
        .until("one", |e| Recorder::delivered(e, "lobby") == ["one"]);
    node.settled();
    let pid = redis.pid().expect("running");
    chat_tests::signal(pid, "STOP");
    let sent = Instant::now();
    let _ = node.say("lobby", "paused");
    // It went out: its fate is unknown, Redis may have run it.
    let deadline = Instant::now() + DEADLINE;
    while node.writer.unsettled() != 1 {
        let events = node.sink.events.lock().clone();
        if Instant::now() >= deadline || fate(&events, &events, "paused").0 {
            chat_tests::signal(pid, "CONT");
            panic!("\"paused\" never sent: {events:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
    let within = super::super::writer::UNSURE_DEADLINE + IO_TIMEOUT * 3;
    refused_while_stopped(&node, pid, "paused", sent, within);
    let answered = sent.elapsed();
    chat_tests::signal(pid, "CONT");
    assert!(
        answered >= super::super::writer::UNSURE_DEADLINE,
        "answered after {answered:?}, before its deadline"
    );
    assert_eq!(why(&node.sink, "paused"), Some(Refusal::Unsure));
    // Redis resumed: the stopped pipeline is run by the time later lines
    // are delivered.
    say_until_delivered(|t| node.say("lobby", t), &node.sink, "later");
    let log = in_log(&redis, "lobby");
    assert_eq!(log.first().map(String::as_str), Some("one"), "{log:?}");
    assert!(!log.contains(&"paused".to_string()), "in the log: {log:?}");
    let events = node.sink.events.lock().clone();
    assert_eq!(fate(&events, &events, "paused"), (true, 0), "{events:?}");
}

/// A cut holds a line's pipeline past its deadline, refusing every new
/// connection (so the writer cannot fence it off): its sender is answered
/// at the deadline, `not sure`; then the held pipeline reaches Redis and
/// is run (its `PING` answered after it), late, and is skipped as stale:
/// the line is in no log and reaches no reader.
#[test]
fn a_line_held_in_a_cut_past_its_deadline_is_refused_and_its_late_copy_skipped() {
    let Behind {
        redis,
        proxy,
        sink,
        shutdown,
        writer,
        w,
        watcher,
    } = Behind::proxy();
    let say = |text: &str| writer.append(7, alice("lobby", text));
    let deadline = Instant::now() + DEADLINE;
    while writer.unsettled() != 0 {
        assert!(Instant::now() < deadline, "the writer never settled");
        thread::sleep(Duration::from_millis(10));
    }
    proxy.hold();
    let _ = say("two");
    sink.until("two refused", |e| fate(e, e, "two").0);
    assert!(proxy.held() > 0, "its pipeline is held");
    assert_eq!(why(&sink, "two"), Some(Refusal::Unsure));
    proxy.deliver_late();
    proxy.heal();
    let events = say_until_delivered(say, &watcher.sink, "three");
    assert_eq!(fate(&[], &events, "two"), (false, 0), "{events:?}");
    let log = in_log(&redis, "lobby");
    assert!(!log.contains(&"two".to_string()), "in the log: {log:?}");
    shutdown.trigger();
    drop(writer);
    joined(w);
}

/// The append script, called directly: a line first sent longer ago than
/// `STALE_AFTER` (by Redis's clock) is skipped, `{'', -1, now}`, leaving
/// the log, the counter and the mark as they were; a fresh one is applied;
/// a copy of an applied line is skipped by the mark however old.
#[test]
fn the_append_script_skips_a_line_older_than_the_bound() {
    use redis::Value;
    let redis = Redis::start();
    let mut link = link(&redis);
    let hash = redis::Script::new(super::super::keys::APPEND)
        .get_hash()
        .to_string();
    let stale_ms = super::super::writer::STALE_AFTER.as_millis() as u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut append = |counter: u64, sent_ms: u64| -> Vec<Value> {
        link.run(|c| {
            redis::cmd("EVALSHA")
                .arg(&hash)
                .arg(3)
                .arg(super::super::keys::log("lobby"))
                .arg(super::super::keys::seq("lobby"))
                .arg(super::super::keys::hw("a"))
                .arg(100)
                .arg(60_000)
                .arg(format!("a:{counter}"))
                .arg("alice")
                .arg("chat")
                .arg(format!("line {counter}"))
                .arg(counter)
                .arg(sent_ms)
                .arg(stale_ms)
                .query(c)
        })
        .unwrap()
    };
    let old = append(1, now_ms - stale_ms - 1_000);
    assert_eq!(old.get(1), Some(&Value::Int(-1)), "{old:?}");
    match old.get(2) {
        Some(Value::Int(t)) => assert!(
            (*t - now_ms as i64).abs() < 60_000,
            "Redis's clock in ms: {old:?}"
        ),
        other => panic!("no clock in {other:?}"),
    }
    assert_eq!(redis.query(&["XLEN", "chat:log:lobby"]), ["0"]);
    assert_eq!(
        redis.query(&["EXISTS", "chat:seq:lobby", "chat:hw:a"]),
        ["0"]
    );
    let fresh = append(2, now_ms);
    assert_eq!(fresh.get(1), Some(&Value::Int(1)), "{fresh:?}");
    let again = append(2, now_ms - stale_ms - 1_000);
    assert_eq!(
        again.get(1),
        Some(&Value::Int(0)),
        "applied already: {again:?}"
    );
    assert_eq!(in_log(&redis, "lobby"), ["line 2"]);
}

/// Redis stopped with a line on its way, then killed and restarted empty
/// within the line's deadline: the line is not sent again into the new
/// Redis (had the old one run it and a reader had it, it would be seen
/// twice); its sender is told it may not have been sent.
#[test]
fn an_unsure_line_is_not_sent_again_into_a_redis_restarted_empty() {
    let mut redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "one");
    node.sink
        .until("one", |e| Recorder::delivered(e, "lobby") == ["one"]);
    node.settled();
    // The writer PINGs its connection before its next command if a
    // sibling link connected since it last checked it. Had the reader made
    // its first connection after the writer's last command (a loaded
    // machine), "two" would wait behind a PING to the stopped Redis; the
    // restart closes it, the writer reconnects at once, finds no Redis
    // (or the new one) and "two", never sent, is refused `NotTaken` (or
    // applied). One more line now that the reader is connected (it
    // delivered "one") makes that check before Redis stops.
    say_until_delivered(|t| node.say("lobby", t), &node.sink, "warm");
    node.settled();
    let pid = redis.pid().expect("running");
    chat_tests::signal(pid, "STOP");
    let _ = node.say("lobby", "two");
    let deadline = Instant::now() + DEADLINE;
    while node.writer.unsettled() != 1 {
        let events = node.sink.events.lock().clone();
        assert!(
            Instant::now() < deadline && !fate(&events, &events, "two").0,
            "\"two\" never sent: {events:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    redis.restart();
    node.sink.until("two refused", |e| fate(e, e, "two").0);
    assert_eq!(why(&node.sink, "two"), Some(Refusal::Restarted));
    let events = say_until_delivered(|t| node.say("lobby", t), &node.sink, "three");
    assert_eq!(fate(&events, &events, "two"), (true, 0), "{events:?}");
    let log = in_log(&redis, "lobby");
    assert!(!log.contains(&"two".to_string()), "sent again: {log:?}");
}

//! Unit tests of the queue state machine: limits, wake-ups, endings.

use super::*;
use crate::write::quiet::Quieted;
use std::net::Shutdown;
use std::time::Duration;

fn line(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// Limits of `sendq` lines, `--burst` 1 and unbounded bytes.
fn lines(sendq: usize) -> Limits {
    Limits::new(sendq, usize::MAX, 1)
}

fn queue(sendq: usize) -> Queue {
    Queue::new(lines(sendq))
}

fn push(queue: &Queue, s: &str) -> Result<Handoff, Full> {
    queue.push_all(&[line(s)])
}

/// The first push into an idle queue asks to be scheduled, later ones
/// do not; the queue refuses the line past its allowance.
#[test]
fn bounded_and_scheduled_once() {
    let queue = queue(2);
    assert_eq!(push(&queue, "a\n"), Ok(Handoff::Schedule));
    for _ in 1..2 * LAG_ALLOWANCE {
        assert_eq!(push(&queue, "b\n"), Ok(Handoff::Done));
    }
    assert_eq!(push(&queue, "c\n"), Err(Full));
    let mut batch = Vec::new();
    assert_eq!(queue.take_now(&mut batch), Taken::Batch(After::More));
    assert_eq!(batch.len(), 2 * LAG_ALLOWANCE);
    batch.clear();
    assert_eq!(queue.take_now(&mut batch), Taken::Idle);
    assert_eq!(
        push(&queue, "d\n"),
        Ok(Handoff::Schedule),
        "idle again: schedule again"
    );
}

/// While the socket takes everything, the allowance covers `--burst`
/// lines even when `--sendq` is small: a paste relayed in batches of 64
/// to a reader at full speed is not cut.
#[test]
fn the_lag_allowance_covers_a_burst() {
    let limits = Limits::new(8, usize::MAX, 100);
    assert_eq!(limits.lag_lines, 100 * LAG_ALLOWANCE);
    let queue = Queue::new(limits);
    let batch: Vec<Arc<str>> = (0..64).map(|_| line("x\n")).collect();
    for _ in 0..2 {
        assert!(queue.push_all(&batch).is_ok(), "a 100-line paste fits");
    }
    assert_eq!(Limits::new(1024, 1, 100).lag_lines, 1024 * LAG_ALLOWANCE);
}

/// The byte bound refuses a batch once the queue holds `--sendq-bytes`
/// more than when the socket filled (four times that before), whatever the
/// line count; taking lines gives the bytes back.
#[test]
fn bounded_in_bytes() {
    let queue = Queue::new(Limits::new(1024, 10, 100));
    let big = line("0123456789abcdef\n");
    for _ in 0..3 {
        assert!(queue.push_all(&[Arc::clone(&big)]).is_ok());
    }
    assert_eq!(queue.bytes(), 3 * big.len());
    assert_eq!(
        queue.push_all(&[Arc::clone(&big)]),
        Err(Full),
        "past 4 x 10"
    );
    let mut batch = Vec::new();
    assert_eq!(queue.take_now(&mut batch), Taken::Batch(After::More));
    assert_eq!(queue.bytes(), 0);
    let _ = queue.push_all(&[Arc::clone(&big)]).unwrap();
    assert_eq!(queue.hand_to_thread(Instant::now()), Stall::Wait);
    assert!(queue.push_all(&[Arc::clone(&big)]).is_ok(), "under 17 + 10");
    assert_eq!(queue.push_all(&[big]), Err(Full), "10 more than at stall");
}

/// Quiet lines wait for a loud line or a signal, and keep their order.
#[test]
fn quiet_lines_wait_for_a_wake() {
    let queue = queue(8);
    assert_eq!(queue.push_quiet(&line("* joined\n")), Ok(Quieted::List));
    assert_eq!(queue.signal(true), Handoff::Schedule, "a signal schedules");
    assert_eq!(queue.signal(false), Handoff::Done, "once");
    let mut batch = Vec::new();
    assert_eq!(queue.take_now(&mut batch), Taken::Batch(After::More));
    assert_eq!(queue.take_now(&mut Vec::new()), Taken::Idle);
    batch.clear();
    assert_eq!(queue.push_quiet(&line("* left\n")), Ok(Quieted::List));
    assert_eq!(
        queue.push_quiet(&line("* left\n")),
        Ok(Quieted::Waiting),
        "listed once"
    );
    assert_eq!(push(&queue, "<a> hi\n"), Ok(Handoff::Schedule));
    assert_eq!(queue.take_now(&mut batch), Taken::Batch(After::More));
    assert_eq!(
        batch,
        vec![line("* left\n"), line("* left\n"), line("<a> hi\n")]
    );
}

/// Half the queue of quiet lines asks for a signal at once.
#[test]
fn many_quiet_lines_signal_now() {
    let queue = queue(4);
    assert_eq!(queue.push_quiet(&line("* a\n")), Ok(Quieted::List));
    assert_eq!(queue.push_quiet(&line("* b\n")), Ok(Quieted::SignalNow));
}

/// Abort drops what was queued but keeps the last word, and ends.
#[test]
fn abort_keeps_only_last_word() {
    let queue = queue(8);
    assert_eq!(push(&queue, "a\n"), Ok(Handoff::Schedule));
    assert_eq!(queue.abort(Some(line("! bye\n"))), Handoff::Done);
    let _ = push(&queue, "late\n").unwrap();
    let mut batch = Vec::new();
    assert_eq!(queue.take_now(&mut batch), Taken::Batch(After::Close));
    assert_eq!(batch, vec![line("! bye\n")]);
    assert_eq!(queue.still_full(Instant::now()), Stall::GiveUp);
    assert_eq!(queue.finish(), Shutdown::Both);
}

/// Drain keeps the queue, adds the notice past the limit, and gives up
/// only after its deadline.
#[test]
fn drain_delivers_then_gives_up_at_deadline() {
    let queue = queue(1);
    let _ = push(&queue, "a\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let _ = queue.drain(Some(&line("* bye\n")), deadline);
    let mut batch = Vec::new();
    assert_eq!(queue.take_now(&mut batch), Taken::Batch(After::Close));
    assert_eq!(batch, vec![line("a\n"), line("* bye\n")]);
    assert_eq!(queue.still_full(Instant::now()), Stall::Wait);
    assert_eq!(queue.still_full(deadline), Stall::GiveUp);
    assert_eq!(queue.finish(), Shutdown::Write);
}

/// Once the socket is full (a thread of its own waits on it), the queue
/// takes `limit` lines more than it held then, not the allowance for the
/// server's own lag; a batch that starts within the limit is taken whole.
#[test]
fn a_full_socket_leaves_only_the_limit() {
    let queue = queue(2);
    assert_eq!(push(&queue, "a\n"), Ok(Handoff::Schedule));
    let mut batch = Vec::new();
    assert_eq!(queue.take_now(&mut batch), Taken::Batch(After::More));
    let _ = queue
        .push_all(&[line("a\n"), line("a\n"), line("a\n")])
        .unwrap();
    assert_eq!(queue.hand_to_thread(Instant::now()), Stall::Wait);
    assert_eq!(
        queue.len(),
        3,
        "the server's backlog when the socket filled"
    );
    assert_eq!(push(&queue, "b\n"), Ok(Handoff::Done));
    assert_eq!(
        queue.push_all(&[line("c\n"), line("c\n"), line("c\n")]),
        Ok(Handoff::Done),
        "one more line fits: the batch goes in whole"
    );
    assert_eq!(push(&queue, "d\n"), Err(Full));
    assert_eq!(queue.len(), 7);
}

/// A thread-owned queue is woken by pushes and returns to idle after
/// its idle time.
#[test]
fn thread_owner_waits_then_idles() {
    let queue = queue(4);
    let _ = push(&queue, "a\n").unwrap();
    let mut batch = Vec::new();
    assert_eq!(queue.take_now(&mut batch), Taken::Batch(After::More));
    assert_eq!(queue.hand_to_thread(Instant::now()), Stall::Wait);
    assert_eq!(
        push(&queue, "b\n"),
        Ok(Handoff::Done),
        "the thread is notified instead"
    );
    batch.clear();
    assert_eq!(
        queue.take_wait(&mut batch, Some(Duration::from_millis(1))),
        Taken::Batch(After::More)
    );
    assert_eq!(batch, vec![line("b\n")]);
    assert_eq!(
        queue.take_wait(&mut batch, Some(Duration::from_millis(1))),
        Taken::Idle
    );
    assert_eq!(
        push(&queue, "c\n"),
        Ok(Handoff::Schedule),
        "idle: back to the flushers"
    );
}

/// A notice pushed quietly right after a chat line, before the client's own
/// thread took the lock, does not put that thread back to sleep: the chat
/// line goes out at once, the notice with it. (The notice used to set the
/// queue's `quiet` flag again, and the line waited for the notice thread's
/// wake-up, up to 250 ms, or on the console display for good.)
#[test]
fn a_notice_does_not_hold_back_a_chat_line() {
    let queue = Queue::for_thread(lines(64));
    assert_eq!(push(&queue, "<a> hi\n"), Ok(Handoff::Done));
    assert_eq!(
        queue.push_quiet(&line("* b joined\n")),
        Ok(Quieted::Waiting),
        "it goes out with the chat line: no wake-up to wait for"
    );
    let mut batch = Vec::new();
    let started = Instant::now();
    assert_eq!(
        queue.take_wait(&mut batch, Some(Duration::from_secs(5))),
        Taken::Batch(After::More)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the thread slept on a chat line for {:?}",
        started.elapsed()
    );
    assert_eq!(batch, vec![line("<a> hi\n"), line("* b joined\n")]);

    // A queue that holds only quiet lines still waits for their wake-up
    // (here, the thread's idle time).
    batch.clear();
    assert_eq!(queue.push_quiet(&line("* c joined\n")), Ok(Quieted::List));
    assert_eq!(
        queue.push_quiet(&line("* d joined\n")),
        Ok(Quieted::Waiting)
    );
    let started = Instant::now();
    let idle = Duration::from_millis(20);
    assert_eq!(
        queue.take_wait(&mut batch, Some(idle)),
        Taken::Batch(After::More)
    );
    assert!(started.elapsed() >= idle, "notices alone wait");
    assert_eq!(batch, vec![line("* c joined\n"), line("* d joined\n")]);
}

/// A client's own thread keeps its queue after the socket drained, but the
/// strict limit holds only while the socket is full: once a write goes
/// through whole, the lag allowance is back, and a later stall counts
/// `--sendq` from what is queued then, not from the first stall's backlog.
#[test]
fn the_strict_limit_lasts_only_while_the_socket_is_full() {
    let queue = queue(2);
    assert_eq!(push(&queue, "a\n"), Ok(Handoff::Schedule));
    let mut batch = Vec::new();
    assert_eq!(queue.take_now(&mut batch), Taken::Batch(After::More));
    let five: Vec<Arc<str>> = (0..5).map(|_| line("a\n")).collect();
    let _ = queue.push_all(&five).unwrap();
    assert_eq!(queue.hand_to_thread(Instant::now()), Stall::Wait);
    let _ = push(&queue, "b\n").unwrap();
    let _ = push(&queue, "b\n").unwrap();
    assert_eq!(push(&queue, "b\n"), Err(Full), "5 + 2: full");

    // The thread sends everything, and the socket takes it at once.
    batch.clear();
    assert_eq!(
        queue.take_wait(&mut batch, Some(Duration::from_millis(1))),
        Taken::Batch(After::More)
    );
    queue.took_all();
    for _ in 0..2 * LAG_ALLOWANCE {
        assert!(
            push(&queue, "c\n").is_ok(),
            "the socket takes everything: the lag allowance, not 5 + 2"
        );
    }
    assert_eq!(push(&queue, "c\n"), Err(Full), "the allowance still binds");

    // The socket fills again with 1 line queued: 2 more, not 5 + 2.
    batch.clear();
    assert_eq!(
        queue.take_wait(&mut batch, Some(Duration::from_millis(1))),
        Taken::Batch(After::More)
    );
    let _ = push(&queue, "d\n").unwrap();
    assert_eq!(queue.still_full(Instant::now()), Stall::Wait);
    let _ = push(&queue, "d\n").unwrap();
    let _ = push(&queue, "d\n").unwrap();
    assert_eq!(push(&queue, "d\n"), Err(Full), "1 + 2: full");
}

/// A replayed history longer than the limits does not count against them:
/// the lines relayed after it still fit while it waits, and count as usual.
/// A second replay pushed before the first is read counts like any line.
#[test]
fn a_replay_is_the_servers_backlog() {
    // `--sendq 2`: 8 lines while the socket takes everything.
    let queue = queue(2);
    // More than a writer's batch: taking one leaves part of the replay.
    let history: Vec<Arc<str>> = (0..2 * BATCH_LINES).map(|_| line("<a> old\n")).collect();
    assert_eq!(queue.push_replay(&history), Ok(Handoff::Schedule));
    for _ in 0..2 * LAG_ALLOWANCE {
        assert!(push(&queue, "live\n").is_ok(), "live lines fit beside it");
    }
    assert_eq!(push(&queue, "live\n"), Err(Full), "and are counted");
    // Reading part of the replay frees nothing: it was not counted.
    let mut batch = Vec::new();
    let _ = queue.take_now(&mut batch);
    assert_eq!(push(&queue, "live\n"), Err(Full));
    // A second replay while the first waits counts: the queue is full.
    let fresh = Queue::new(lines(2));
    assert!(fresh.push_replay(&history).is_ok());
    assert!(fresh.push_replay(&history).is_ok(), "taken whole");
    assert_eq!(push(&fresh, "live\n"), Err(Full));
}

/// Once the replay is read, the lines after it count as before, and the
/// next replay is exempt again.
#[test]
fn a_read_replay_leaves_the_limits_as_they_were() {
    let queue = queue(2);
    let history: Vec<Arc<str>> = (0..10).map(|_| line("<a> old\n")).collect();
    assert!(queue.push_replay(&history).is_ok());
    assert!(push(&queue, "live\n").is_ok());
    let mut batch = Vec::new();
    while queue.take_now(&mut batch) != Taken::Idle {
        batch.clear();
    }
    assert!(queue.push_replay(&history).is_ok());
    for _ in 0..2 * LAG_ALLOWANCE {
        assert!(push(&queue, "live\n").is_ok());
    }
    assert_eq!(push(&queue, "live\n"), Err(Full));
    assert_eq!(queue.len(), 10 + 2 * LAG_ALLOWANCE);
}

//! Unit tests of the outbox state machine: limits, wake-ups, endings.

use super::*;

fn line(s: &str) -> Arc<str> {
    Arc::from(s)
}

/// The first push into an idle outbox asks to be scheduled, later ones
/// do not; the queue refuses the line past its allowance.
#[test]
fn bounded_and_scheduled_once() {
    let outbox = Outbox::new(2);
    assert_eq!(outbox.push(&line("a\n")), Ok(true));
    for _ in 1..2 * LAG_ALLOWANCE {
        assert_eq!(outbox.push(&line("b\n")), Ok(false));
    }
    assert_eq!(outbox.push(&line("c\n")), Err(Full));
    let mut batch = Vec::new();
    assert_eq!(outbox.take_now(&mut batch), Taken::Batch { last: false });
    assert_eq!(batch.len(), 2 * LAG_ALLOWANCE);
    batch.clear();
    assert_eq!(outbox.take_now(&mut batch), Taken::Idle);
    assert_eq!(
        outbox.push(&line("d\n")),
        Ok(true),
        "idle again: schedule again"
    );
}

/// Quiet lines wait for a loud line or a signal, and keep their order.
#[test]
fn quiet_lines_wait_for_a_wake() {
    let outbox = Outbox::new(8);
    outbox.push_quiet(&line("* joined\n")).unwrap();
    assert!(outbox.signal(), "a signal schedules the quiet line");
    assert!(!outbox.signal(), "once");
    let mut batch = Vec::new();
    assert_eq!(outbox.take_now(&mut batch), Taken::Batch { last: false });
    assert_eq!(outbox.take_now(&mut Vec::new()), Taken::Idle);
    batch.clear();
    outbox.push_quiet(&line("* left\n")).unwrap();
    assert_eq!(outbox.push(&line("<a> hi\n")), Ok(true));
    assert_eq!(outbox.take_now(&mut batch), Taken::Batch { last: false });
    assert_eq!(batch, vec![line("* left\n"), line("<a> hi\n")]);
}

/// Abort drops what was queued but keeps the last word, and ends.
#[test]
fn abort_keeps_only_last_word() {
    let outbox = Outbox::new(8);
    assert!(outbox.push(&line("a\n")).unwrap());
    assert!(!outbox.abort(Some(line("! bye\n"))), "already queued");
    outbox.push(&line("late\n")).unwrap();
    let mut batch = Vec::new();
    assert_eq!(outbox.take_now(&mut batch), Taken::Batch { last: true });
    assert_eq!(batch, vec![line("! bye\n")]);
    assert!(outbox.give_up(Instant::now()));
    assert!(outbox.aborted());
}

/// Drain keeps the queue, adds the notice past the limit, and gives up
/// only after its deadline.
#[test]
fn drain_delivers_then_gives_up_at_deadline() {
    let outbox = Outbox::new(1);
    outbox.push(&line("a\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    outbox.drain(Some(&line("* bye\n")), deadline);
    let mut batch = Vec::new();
    assert_eq!(outbox.take_now(&mut batch), Taken::Batch { last: true });
    assert_eq!(batch, vec![line("a\n"), line("* bye\n")]);
    assert!(!outbox.give_up(Instant::now()));
    assert!(outbox.give_up(deadline));
}

/// Once the socket is full (a thread of its own waits on it), the queue
/// takes `limit` lines more than it held then, not the allowance for the
/// server's own lag; a batch that starts within the limit is taken whole.
#[test]
fn a_full_socket_leaves_only_the_limit() {
    let outbox = Outbox::new(2);
    assert_eq!(outbox.push(&line("a\n")), Ok(true));
    let mut batch = Vec::new();
    assert_eq!(outbox.take_now(&mut batch), Taken::Batch { last: false });
    outbox
        .push_all(&[line("a\n"), line("a\n"), line("a\n")])
        .unwrap();
    outbox.hand_to_thread();
    assert_eq!(
        outbox.len(),
        3,
        "the server's backlog when the socket filled"
    );
    assert_eq!(outbox.push(&line("b\n")), Ok(false));
    assert_eq!(
        outbox.push_all(&[line("c\n"), line("c\n"), line("c\n")]),
        Ok(false),
        "one more line fits: the batch goes in whole"
    );
    assert_eq!(outbox.push(&line("d\n")), Err(Full));
    assert_eq!(outbox.len(), 7);
}

/// A thread-owned outbox is woken by pushes and returns to idle after
/// its idle time.
#[test]
fn thread_owner_waits_then_idles() {
    let outbox = Outbox::new(4);
    outbox.push(&line("a\n")).unwrap();
    let mut batch = Vec::new();
    assert_eq!(outbox.take_now(&mut batch), Taken::Batch { last: false });
    outbox.hand_to_thread();
    assert_eq!(
        outbox.push(&line("b\n")),
        Ok(false),
        "the thread is notified instead"
    );
    batch.clear();
    assert_eq!(
        outbox.take_wait(&mut batch, Some(Duration::from_millis(1))),
        Taken::Batch { last: false }
    );
    assert_eq!(batch, vec![line("b\n")]);
    assert_eq!(
        outbox.take_wait(&mut batch, Some(Duration::from_millis(1))),
        Taken::Idle
    );
    assert_eq!(
        outbox.push(&line("c\n")),
        Ok(true),
        "idle: back to the flushers"
    );
}

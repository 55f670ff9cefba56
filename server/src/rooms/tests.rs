//! The rooms' answers at the module boundary, without the session.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use super::log::{Appended, Batch};
use super::*;
use crate::leave::Leave;
use crate::rooms::embedded::Embedded;
use crate::write::{Limits, Writers};

/// Rooms with one flusher, no display, no transcript.
fn rooms() -> Rooms {
    let writers = Writers::start(1, Limits::new(16, 1 << 20, 64)).expect("start a flusher");
    Rooms::new(
        Fanout::new(writers, None, None),
        Box::new(Embedded::new(20)),
        Box::new(names::LocalNames::default()),
        8,
        Arc::new(crate::shutdown::Shutdown::new()),
    )
}

/// A connected socket (the server's end) and the client's end, kept open.
fn socket(listener: &TcpListener) -> (Arc<TcpStream>, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (Arc::new(server), client)
}

/// Defect: a client removed (here kicked) that then renames was told
/// "name taken"; it is told it is gone, and its name is free.
#[test]
fn rename_after_removal_says_gone() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let rooms = rooms();
    let (stream, _client) = socket(&listener);
    let alice = rooms.enter(stream).expect("enter");
    assert_eq!(
        rooms.kick(&alice.name.to_uppercase(), None),
        Kicked::Done(alice.name.clone()),
        "the client's own spelling"
    );
    assert_eq!(rooms.rename(alice.peer.id, "bob"), Renamed::Gone);
    assert_eq!(alice.ticket.fate(), Some(&Leave::Kicked(None)));
    let (stream, _client2) = socket(&listener);
    let other = rooms.enter(stream).expect("enter");
    assert_eq!(
        rooms.rename(other.peer.id, "bob"),
        Renamed::Done(other.name.clone())
    );
}

/// Once removed, a client's lines are relayed nowhere.
#[test]
fn relay_after_removal_says_gone() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let rooms = rooms();
    let (stream, _client) = socket(&listener);
    let alice = rooms.enter(stream).expect("enter");
    rooms.remove(alice.peer.id, Leave::Kicked(None));
    let mut lines = vec!["<guest-1> late\n".to_string()];
    assert_eq!(
        rooms.relay(&alice.room, &alice.ticket, alice.peer.id, &mut lines),
        Relayed::Gone
    );
    assert_eq!(rooms.relayed(), 0);
    // The first reason given is the one that counts.
    rooms.remove(alice.peer.id, Leave::Closed);
    assert_eq!(alice.ticket.fate(), Some(&Leave::Kicked(None)));
}

/// A log that accepts everything for later delivery, or refuses it all,
/// and keeps what it was given: a stand-in for a Redis log.
struct Deferred {
    refuse: bool,
    appended: Arc<parking_lot::Mutex<Vec<Batch>>>,
}

impl Log for Deferred {
    fn server(&self) -> log::ServerId {
        7
    }

    fn open(&self, _key: &str) -> Box<dyn log::RoomLog> {
        Box::new(DeferredRoom {
            refuse: self.refuse,
            appended: Arc::clone(&self.appended),
        })
    }

    fn watch(&self, _key: &str, _local: bool, _prepared: Option<log::Prepared>) {}
}

struct DeferredRoom {
    refuse: bool,
    appended: Arc<parking_lot::Mutex<Vec<Batch>>>,
}

impl log::RoomLog for DeferredRoom {
    fn append(&mut self, batch: &Batch) -> Result<Appended, log::Unreachable> {
        if self.refuse {
            return Err(log::Unreachable);
        }
        self.appended.lock().push(batch.clone());
        Ok(Appended::Later)
    }

    fn delivered(&mut self, _batch: &Batch) {}

    fn history(&self, _out: &mut Vec<Arc<str>>) {}
}

/// Rooms on a [`Deferred`] log.
fn deferred(refuse: bool) -> (Rooms, Arc<parking_lot::Mutex<Vec<Batch>>>) {
    let appended = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let writers = Writers::start(1, Limits::new(16, 1 << 20, 64)).expect("start a flusher");
    let rooms = Rooms::new(
        Fanout::new(writers, None, None),
        Box::new(Deferred {
            refuse,
            appended: Arc::clone(&appended),
        }),
        Box::new(names::LocalNames::default()),
        8,
        Arc::new(crate::shutdown::Shutdown::new()),
    );
    (rooms, appended)
}

/// Reads lines from `client` until one equals `want`; fails after 5 s.
fn read_until(client: &TcpStream, want: &str) -> Vec<String> {
    use std::io::BufRead;
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut reader = std::io::BufReader::new(client);
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("a line within 5 s");
        assert!(n > 0, "end of stream; saw {seen:?}");
        let done = line == want;
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// An asynchronous log: a relayed line is not delivered at append, only
/// when the log hands it to `Rooms::deliver`, and then to everyone in the
/// room but its sender (never "locally first").
#[test]
fn a_deferred_log_delivers_through_deliver() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (rooms, appended) = deferred(false);
    let (stream, alice_end) = socket(&listener);
    let alice = rooms.enter(stream).expect("enter");
    let (stream, bob_end) = socket(&listener);
    let bob = rooms.enter(stream).expect("enter");
    let mut lines = vec!["<guest-1> hi\n".to_string()];
    assert_eq!(
        rooms.relay(&alice.room, &alice.ticket, alice.peer.id, &mut lines),
        Relayed::Done
    );
    let batches = appended.lock().clone();
    // Bob's join notice and Alice's line, in the log's order.
    assert_eq!(batches.len(), 3, "{batches:?}");
    for batch in &batches {
        rooms.deliver(LOBBY, batch);
    }
    read_until(&bob_end, "<guest-1> hi\n");
    let end = Batch {
        from: log::Origin {
            server: 7,
            client: None,
        },
        lines: vec![Arc::from("<server> end\n")],
    };
    rooms.deliver(LOBBY, &end);
    let seen = read_until(&alice_end, "<server> end\n");
    assert!(!seen.iter().any(|l| l.starts_with("<guest-1>")), "{seen:?}");
    assert!(
        seen.contains(&"* guest-2 joined (2 online)\n".to_string()),
        "{seen:?}"
    );
    let _ = bob;
}

/// A log that refuses: nothing is relayed, and the sender is told how
/// many lines were refused.
#[test]
fn a_refusing_log_refuses_each_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (rooms, _) = deferred(true);
    let (stream, _alice_end) = socket(&listener);
    let alice = rooms.enter(stream).expect("enter");
    let mut lines = vec!["<guest-1> a\n".to_string(), "<guest-1> b\n".to_string()];
    assert_eq!(
        rooms.relay(&alice.room, &alice.ticket, alice.peer.id, &mut lines),
        Relayed::Refused(2)
    );
    assert_eq!(rooms.relayed(), 0);
}

/// Defect: a notice the log refused (Redis away) was lost for the room,
/// so members on this very server saw no one come, go or get renamed.
/// Now it is delivered here (only), and the console's line too, which
/// says the other servers were not told.
#[test]
fn a_refusing_log_still_delivers_notices_here() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (rooms, _) = deferred(true);
    let (stream, alice_end) = socket(&listener);
    let _alice = rooms.enter(stream).expect("enter");
    let (stream, _bob_end) = socket(&listener);
    let bob = rooms.enter(stream).expect("enter");
    read_until(&alice_end, "* guest-2 joined (2 online)\n");
    assert_eq!(
        rooms.rename(bob.peer.id, "bob"),
        Renamed::Done("guest-2".into())
    );
    read_until(&alice_end, "* guest-2 is now known as bob\n");
    assert!(rooms.announce("<server> hello\n").is_err());
    read_until(&alice_end, "<server> hello\n");
    rooms.remove(bob.peer.id, Leave::Quit(None));
    let seen = read_until(&alice_end, "* bob left (quit)\n");
    assert_eq!(seen, ["* bob left (quit)\n"], "nothing else between");
}

/// Defect (review): a client that noticed the shutdown and left before the
/// rooms took everyone out gave its name back at once. In a cluster that
/// freed it in Redis and unlisted the client, and the stop, which
/// announces every client listed under the server as leaving, never
/// announced it: the other servers never saw it leave. Now a client
/// leaving as the server stops keeps its name, as when the rooms take
/// everyone out (the stop frees them all); any other leave gives it back.
#[test]
fn a_client_leaving_as_the_server_stops_keeps_its_name_for_the_stop() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let rooms = rooms();
    let (stream, _alice_end) = socket(&listener);
    let alice = rooms.enter(stream).expect("enter");
    let (stream, _bob_end) = socket(&listener);
    let bob = rooms.enter(stream).expect("enter");
    rooms.remove(alice.peer.id, Leave::Shutdown);
    rooms.remove(bob.peer.id, Leave::Quit(None));
    let names = rooms.names.lock();
    assert_eq!(names.holder(&alice.name), Some(alice.peer.id));
    assert_eq!(names.holder(&bob.name), None);
}

/// The in-process log, but with members on "other servers": fixed counts
/// by room, as a cluster's last heartbeat would give them.
struct Beat {
    embedded: Embedded,
    others: std::collections::HashMap<String, usize>,
}

impl Log for Beat {
    fn server(&self) -> log::ServerId {
        1
    }

    fn open(&self, key: &str) -> Box<dyn log::RoomLog> {
        self.embedded.open(key)
    }

    fn watch(&self, _key: &str, _local: bool, _prepared: Option<log::Prepared>) {}

    fn elsewhere(&self, key: &str) -> usize {
        self.others.get(key).copied().unwrap_or(0)
    }

    fn busy_elsewhere(&self) -> Vec<String> {
        self.others.keys().cloned().collect()
    }
}

/// Rooms on a [`Beat`] log counting `others`, `--max-rooms` `max`.
fn beat(others: &[(&str, usize)], max: usize) -> Rooms {
    let writers = Writers::start(1, Limits::new(16, 1 << 20, 64)).expect("start a flusher");
    Rooms::new(
        Fanout::new(writers, None, None),
        Box::new(Beat {
            embedded: Embedded::new(20),
            others: others.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        }),
        Box::new(names::LocalNames::default()),
        max,
        Arc::new(crate::shutdown::Shutdown::new()),
    )
}

/// Defect (review): `--max-rooms` counted this server's rooms only. A room
/// with members on another server is one of the rooms with members: a
/// `/join` that would create one more past the limit is refused, and one
/// into that room creates nothing, so it goes in.
#[test]
fn rooms_with_members_elsewhere_count_for_max_rooms() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let rooms = beat(&[("lobby", 2), ("x", 1)], 2);
    let (stream, _end) = socket(&listener);
    let bea = rooms.enter(stream).expect("enter");
    assert!(matches!(rooms.move_to(bea.peer.id, "y"), Moved::Full(2)));
    assert!(matches!(rooms.move_to(bea.peer.id, "X"), Moved::To(_)));
    // In #x with a member elsewhere, back to #lobby and there again: the
    // count stays two (#x counted once, here and elsewhere).
    assert!(matches!(rooms.move_to(bea.peer.id, "lobby"), Moved::To(_)));
    assert!(matches!(rooms.move_to(bea.peer.id, "x"), Moved::To(_)));
}

/// A client alone here in a room that has members elsewhere may not
/// create one more past the limit: its room does not empty as it goes.
/// Alone in a room with no one elsewhere, it may (the room empties).
#[test]
fn leaving_a_room_with_members_elsewhere_frees_no_place() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let rooms = beat(&[("x", 1)], 2);
    let (stream, _end) = socket(&listener);
    let bea = rooms.enter(stream).expect("enter");
    assert!(matches!(rooms.move_to(bea.peer.id, "x"), Moved::To(_)));
    assert!(matches!(rooms.move_to(bea.peer.id, "y"), Moved::Full(2)));
    let rooms = beat(&[], 2);
    let (stream, _end) = socket(&listener);
    let bea = rooms.enter(stream).expect("enter");
    assert!(matches!(rooms.move_to(bea.peer.id, "x"), Moved::To(_)));
    assert!(matches!(rooms.move_to(bea.peer.id, "y"), Moved::To(_)));
}

//! The rooms' answers at the module boundary, without the session.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use super::*;
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
    assert!(rooms.kick(&alice.name, None));
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

//! A `/ban` that lands between a client's last check and its joining the
//! room, played step by step in-process: the interleaving that a real
//! client hits only by chance.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use chat_server::access::{self, Admission};
use chat_server::{Config, Server};
use clap::Parser;

/// The client passes `access::enter`, the console bans its address (the
/// eviction finds it in no room), then it joins: the room holds a banned
/// client, until `access::joined`, which `session::serve` calls right after
/// the join, evicts it with the ban's line.
#[test]
fn a_ban_between_the_check_and_the_join_still_evicts() {
    let config = Config::parse_from(["chat-server", "--quiet"]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let server = Server::new(config, listener, None).expect("server");
    let ctx = server.context();

    // A connection of our own, served by hand.
    let ours = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(ours.local_addr().unwrap()).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (stream, peer) = ours.accept().expect("accept");
    let stream = Arc::new(stream);

    assert_eq!(access::enter(&stream, peer, &ctx), Admission::Admitted);
    let answer = access::ban(&ctx, "127.0.0.1 raced").lines;
    assert!(answer[0].starts_with("* banned 127.0.0.1"), "{answer:?}");
    let entered = ctx.rooms.enter(Arc::clone(&stream)).expect("join");
    let name = entered.name;
    assert_eq!(
        ctx.rooms.online(),
        1,
        "the race: a banned client in the room"
    );

    access::joined(peer, &ctx);
    assert_eq!(ctx.rooms.online(), 0, "{name} is still in the room");
    let mut lines = Vec::new();
    let mut reader = BufReader::new(client);
    let mut line = String::new();
    while reader.read_line(&mut line).expect("read") > 0 {
        lines.push(std::mem::take(&mut line));
        if lines.last().is_some_and(|l| l.starts_with("! ")) {
            break;
        }
    }
    assert_eq!(
        lines.last().map(String::as_str),
        Some("! disconnected: banned: raced\n"),
        "{lines:?}"
    );
}

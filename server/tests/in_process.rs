//! The server driven in-process, the way `main` drives it: bind port 0,
//! `Server::new`, `run` on a thread, `stop` from outside.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use chat_server::{Config, Server};
use clap::Parser;

/// Two clients chat through a server run in this process; `stop` ends
/// `run` with a summary that counts them, and both clients see the
/// shutdown notice and end of stream.
#[test]
fn run_serves_until_stopped() {
    let config = Config::parse_from(["chat-server", "--quiet"]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let addr = listener.local_addr().unwrap();
    let server = Server::new(config, listener, None).expect("server");
    let ctx = server.context();
    let running = thread::spawn(move || server.run());

    let connect = || {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut welcome = String::new();
        reader.read_line(&mut welcome).unwrap();
        assert!(welcome.starts_with("* welcome, guest-"), "{welcome:?}");
        (stream, reader)
    };
    let (mut alice, mut alice_in) = connect();
    let (_bob, mut bob_in) = connect();
    let mut line = String::new();
    alice_in.read_line(&mut line).unwrap();
    assert_eq!(line, "* guest-2 joined (2 online)\n");
    alice.write_all(b"hi bob\n").unwrap();
    line.clear();
    bob_in.read_line(&mut line).unwrap();
    assert_eq!(line, "<guest-1> hi bob\n");

    assert!(ctx.stop(), "the first stop starts the shutdown");
    assert!(!ctx.stop(), "a second one says it was already started");
    let summary = running.join().expect("run returns");
    assert!(summary.contains("2 connections served"), "{summary}");
    assert!(summary.contains("1 lines relayed"), "{summary}");
    for reader in [&mut alice_in, &mut bob_in] {
        line.clear();
        let mut rest = String::new();
        while reader.read_line(&mut line).unwrap() > 0 {
            rest.push_str(&line);
            line.clear();
        }
        assert!(rest.ends_with("* server shutting down\n"), "{rest:?}");
    }
}

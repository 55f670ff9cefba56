//! Self-tests of the helpers that ask again until an answer comes
//! (`cluster::ask_until`, `cluster::msg_until_sent`) and of the lab
//! readers that wait for the end of a stream (`labs::read_to_eof`,
//! `labs::read_to_clean_eof`), against a fake server on a local listener.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use chat_tests::cluster::{ask_until, msg_until_sent};
use chat_tests::labs::{read_to_clean_eof, read_to_eof};
use chat_tests::{Client, TIMEOUT};

/// A client connected to a fake server that answers each line it gets
/// with the next of `answers` (the last one again once they run out);
/// the thread returns how many lines it got, once the client is gone.
fn answered(answers: &'static [&'static str]) -> (Client, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = Client::connect(listener.local_addr().expect("addr"));
    let (server, _) = listener.accept().expect("accept");
    server.set_read_timeout(Some(TIMEOUT * 3)).expect("timeout");
    let fake = thread::spawn(move || {
        let mut out = server.try_clone().expect("clone");
        let mut asked = 0;
        for line in BufReader::new(server).lines() {
            if line.is_err() {
                break;
            }
            let answer = answers[asked.min(answers.len() - 1)];
            asked += 1;
            if out.write_all(format!("{answer}\n").as_bytes()).is_err() {
                break;
            }
        }
        asked
    });
    (client, fake)
}

/// `ask_until` asks again until the answer it wants comes.
#[test]
fn ask_until_asks_again_until_the_answer_comes() {
    let (mut client, fake) = answered(&[
        "* 2 in #lobby: a, b",
        "* 2 in #lobby: a, b",
        "* 1 in #lobby: a",
    ]);
    ask_until(&mut client, "/who", "* 1 in #lobby: a");
    drop(client);
    assert_eq!(fake.join().expect("fake server"), 3);
}

/// `ask_until` fails when the answer never comes.
#[test]
#[should_panic(expected = "never answered")]
fn ask_until_fails_when_the_answer_never_comes() {
    let (mut client, _fake) = answered(&["* 2 in #lobby: a, b"]);
    ask_until(&mut client, "/who", "* 1 in #lobby: a");
}

/// A client connected to a fake server that, after the i-th line it gets,
/// writes `replies[i]` (nothing past the end); the thread returns how many
/// lines it got, once the client is gone.
fn scripted(replies: &'static [&'static [&'static str]]) -> (Client, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = Client::connect(listener.local_addr().expect("addr"));
    let (server, _) = listener.accept().expect("accept");
    server.set_read_timeout(Some(TIMEOUT * 3)).expect("timeout");
    let fake = thread::spawn(move || {
        let mut out = server.try_clone().expect("clone");
        let mut got = 0;
        for line in BufReader::new(server).lines() {
            if line.is_err() {
                break;
            }
            let replies = replies.get(got).copied().unwrap_or_default();
            got += 1;
            let text: String = replies.iter().map(|r| format!("{r}\n")).collect();
            if out.write_all(text.as_bytes()).is_err() {
                break;
            }
        }
        got
    });
    (client, fake)
}

/// `ask_until` reads the answers to its earlier asks still on their way
/// before it returns: the first ask answered only once the second came,
/// both at once, the second answer is not left to pass for the answer to
/// the next ask (a notice, not an answer, before them).
#[test]
fn ask_until_leaves_no_answer_unread() {
    let (mut client, fake) = scripted(&[
        &[],
        &["* b joined #lobby", "* 1 in #lobby: a", "* 1 in #lobby: a"],
        &["* 2 in #lobby: a, b"],
    ]);
    ask_until(&mut client, "/who", "* 1 in #lobby: a");
    client.send("/who");
    assert_eq!(client.recv(), "* 2 in #lobby: a, b");
    drop(client);
    assert_eq!(fake.join().expect("fake server"), 3);
}

/// `ask_until` fails, and does not hang, when an earlier ask is never
/// answered.
#[test]
#[should_panic(expected = "1 of the /rooms asks never answered")]
fn ask_until_fails_when_an_earlier_ask_is_never_answered() {
    let (mut client, _fake) = scripted(&[&[], &["* 1 rooms: #lobby (1)"]]);
    ask_until(&mut client, "/rooms", "* 1 rooms: #lobby (1)");
}

/// `msg_until_sent` sends again while refused, and counts the refusals.
#[test]
fn msg_until_sent_counts_the_refusals_before_it_went() {
    let (mut client, fake) = answered(&["! no one called bea is online", "[to bea] hi"]);
    let (refused, last) = msg_until_sent(&mut client, "bea", "hi", TIMEOUT);
    assert_eq!(refused, 1);
    assert_eq!(last.as_deref(), Some("! no one called bea is online"));
    drop(client);
    assert_eq!(fake.join().expect("fake server"), 2);
}

/// `msg_until_sent` fails when the message never goes.
#[test]
#[should_panic(expected = "never went")]
fn msg_until_sent_fails_when_it_never_goes() {
    let (mut client, _fake) = answered(&["! no one called bea is online"]);
    msg_until_sent(&mut client, "bea", "hi", Duration::from_secs(1));
}

/// A raw connection and the fake server's end.
fn raw_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (stream, server)
}

/// Closes `stream` with an RST (SO_LINGER 0), after what it sent.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

/// Both readers return every byte before a clean close.
#[test]
fn both_readers_return_every_byte_before_a_clean_close() {
    for clean in [true, false] {
        let (mut stream, mut server) = raw_pair();
        server.write_all(b"one\ntwo, no LF").expect("send");
        drop(server);
        let got = if clean {
            read_to_clean_eof(&mut stream)
        } else {
            read_to_eof(&mut stream)
        };
        assert_eq!(got, b"one\ntwo, no LF");
    }
}

/// `read_to_clean_eof` fails on a reset.
#[test]
#[should_panic(expected = "reset")]
fn read_to_clean_eof_fails_on_a_reset() {
    let (mut stream, server) = raw_pair();
    reset(server);
    read_to_clean_eof(&mut stream);
}

/// `read_to_eof` takes a reset for the server's close.
#[test]
fn read_to_eof_takes_a_reset_for_the_close() {
    let (mut stream, server) = raw_pair();
    reset(server);
    assert_eq!(read_to_eof(&mut stream), b"");
}

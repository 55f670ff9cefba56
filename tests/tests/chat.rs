//! Chat mode as a client sees it: relay, framing, sanitising, commands.

use std::io::Read;
use std::time::Duration;

use chat_tests::{Client, Server};

/// A short wait for "nothing more arrives" checks; the positive checks that
/// follow them bound the wait from the other side.
const QUIET: Duration = Duration::from_millis(200);

/// Joins `n` clients and drains join notices, asserting the online counts.
fn join_all(server: &Server, n: usize) -> Vec<(Client, String)> {
    let mut clients: Vec<(Client, String)> = Vec::new();
    for i in 0..n {
        let (client, name) = server.join();
        for (other, _) in clients.iter_mut() {
            assert_eq!(other.recv(), format!("* {name} joined ({} online)", i + 1));
        }
        clients.push((client, name));
    }
    clients
}

/// The first line is the welcome naming guest-N, counting up; the others
/// are told of the join.
#[test]
fn welcome_names_guests_in_order() {
    let server = Server::start(&[]);
    let mut a = server.connect();
    assert_eq!(
        a.recv(),
        "* welcome, guest-1! you are in #lobby (1 online); type /help for commands"
    );
    let mut b = server.connect();
    assert_eq!(
        b.recv(),
        "* welcome, guest-2! you are in #lobby (2 online); type /help for commands"
    );
    assert_eq!(a.recv(), "* guest-2 joined (2 online)");
    drop(b);
    assert_eq!(a.recv(), "* guest-2 left (connection closed)");
    let (_c, name) = server.join();
    assert_eq!(name, "guest-3", "numbers are never reused");
}

/// A line goes to every other client of three, never back to its sender.
#[test]
fn relays_among_three() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 3);
    room[0].0.send("hello all");
    assert_eq!(room[1].0.recv(), "<guest-1> hello all");
    assert_eq!(room[2].0.recv(), "<guest-1> hello all");
    room[2].0.send("hi");
    assert_eq!(
        room[0].0.recv(),
        "<guest-3> hi",
        "the first sender gets no echo of its own line"
    );
    assert_eq!(room[1].0.recv(), "<guest-3> hi");
    room[2].0.assert_silent(QUIET);
}

/// Bytes split anywhere, CRLF, and many lines in one write are each framed
/// whole; blank lines are ignored.
#[test]
fn framing_pieces_and_batches() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    for piece in [&b"he"[..], b"l", b"lo wor", b"ld\r", b"\n"] {
        room[0].0.send_raw(piece);
        room[0].0.stream().set_nodelay(true).unwrap();
    }
    assert_eq!(room[1].0.recv(), "<guest-1> hello world");
    room[0].0.send_raw(b"one\ntwo\r\n\n   \nthree\n");
    assert_eq!(room[1].0.recv(), "<guest-1> one");
    assert_eq!(room[1].0.recv(), "<guest-1> two");
    assert_eq!(room[1].0.recv(), "<guest-1> three");
    room[1].0.assert_silent(QUIET);
}

/// Data left without LF when a client closes is handled as a last line.
#[test]
fn last_partial_line_at_eof() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    room[0].0.send_raw(b"goodbye without newline");
    room[0].0.shutdown_write();
    assert_eq!(room[1].0.recv(), "<guest-1> goodbye without newline");
    assert_eq!(room[1].0.recv(), "* guest-1 left (connection closed)");
}

/// CR forgery, escape sequences, C1 controls and bidi overrides never reach
/// a receiver raw: no line can pass for another speaker or a notice.
#[test]
fn control_characters_are_neutralised() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    room[0].0.send_raw(b"hi\r<guest-2> forged\n");
    room[0].0.send_raw(b"\x1b[2J\x1b[31mred\x07\n");
    room[0]
        .0
        .send_raw("a\u{202e}evil\u{2066}b\u{85}c\u{7f}\n".as_bytes());
    let forged = room[1].0.recv();
    assert_eq!(forged, "<guest-1> hi\u{240d}<guest-2> forged");
    let escape = room[1].0.recv();
    assert_eq!(escape, "<guest-1> \u{241b}[2J\u{241b}[31mred\u{2407}");
    let bidi = room[1].0.recv();
    assert!(bidi.starts_with("<guest-1> a"), "{bidi:?}");
    for bad in ['\u{202e}', '\u{2066}', '\u{85}', '\u{7f}', '\r', '\x1b'] {
        assert!(
            !bidi.contains(bad),
            "{bad:?} reached a receiver in {bidi:?}"
        );
    }
    assert_eq!(bidi, "<guest-1> a\u{fffd}evil\u{fffd}b\u{fffd}c\u{2421}");
}

/// A 100 KB line: its sender gets one error, nobody gets the line, the
/// sender stays connected and its next line is relayed.
#[test]
fn over_long_line_is_dropped_with_an_error() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    let mut long = vec![b'x'; 100 * 1024];
    long.push(b'\n');
    room[0].0.send_raw(&long);
    assert_eq!(
        room[0].0.recv(),
        "! line too long (over 2048 bytes): dropped"
    );
    room[0].0.send("short again");
    assert_eq!(room[1].0.recv(), "<guest-1> short again");
    room[0].0.assert_silent(QUIET);
}

/// Exactly --max-line bytes is allowed (with or without CR); one more is not.
#[test]
fn max_line_boundary() {
    let server = Server::start(&["--max-line", "16"]);
    let mut room = join_all(&server, 2);
    room[0].0.send_raw(b"0123456789abcdef\r\n");
    assert_eq!(room[1].0.recv(), "<guest-1> 0123456789abcdef");
    room[0].0.send("0123456789abcdefg");
    assert_eq!(room[0].0.recv(), "! line too long (over 16 bytes): dropped");
}

/// Invalid UTF-8 becomes U+FFFD, never a disconnect.
#[test]
fn invalid_utf8_is_replaced() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    room[0].0.send_raw(b"caf\xe9 \xc3\x28 ok\n");
    assert_eq!(room[1].0.recv(), "<guest-1> caf\u{fffd} \u{fffd}( ok");
}

/// Telnet negotiation (IAC sequences) is removed before decoding.
#[test]
fn telnet_sequences_are_removed() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    room[0]
        .0
        .send_raw(b"\xff\xfb\x01\xff\xfd\x03hel\xff\xf4lo\r\n");
    assert_eq!(room[1].0.recv(), "<guest-1> hello");
}

/// Review: a raw 0xFF (IAC) right before the LF, as a Latin-1 `ÿ` typed
/// into nc, dropped the LF as its command: two lines reached the room as
/// one. The stray IAC alone is dropped.
#[test]
fn a_stray_iac_before_the_lf_does_not_join_two_lines() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    room[0].0.send_raw(b"first line \xff\nsecond line\n");
    assert_eq!(room[1].0.recv(), "<guest-1> first line ");
    assert_eq!(room[1].0.recv(), "<guest-1> second line");
}

/// Telnet's interrupt key sends `IAC IP IAC DO TIMING-MARK`, then discards
/// all output until the timing mark is answered: the server refuses it
/// (`IAC WONT TIMING-MARK`) at once, and refuses a `WILL` with `DONT`.
#[test]
fn telnet_requests_are_answered() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    room[0].0.send_raw(b"\xff\xf4\xff\xfd\x06");
    let mut answer = [0u8; 3];
    let mut raw = room[0].0.stream();
    raw.read_exact(&mut answer)
        .expect("an answer to DO TIMING-MARK");
    assert_eq!(answer, [0xff, 0xfc, 0x06]);
    room[0].0.send_raw(b"\xff\xfb\x18");
    let mut raw = room[0].0.stream();
    raw.read_exact(&mut answer).expect("an answer to WILL");
    assert_eq!(answer, [0xff, 0xfe, 0x18]);
    room[0].0.send("still chatting");
    assert_eq!(room[1].0.recv(), "<guest-1> still chatting");
}

/// /nick: rules, reserved names, case-insensitive uniqueness, and notices.
#[test]
fn nick_rules() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    let (a, b) = room.split_at_mut(1);
    let (alice, bob) = (&mut a[0].0, &mut b[0].0);
    alice.send("/nick Alice");
    assert_eq!(alice.recv(), "* you are now known as Alice");
    assert_eq!(bob.recv(), "* guest-1 is now known as Alice");
    for (name, why) in [
        ("alice", "is taken"),
        ("ALICE", "is taken"),
        ("server", "reserved"),
        ("Server", "reserved"),
        ("guest-7", "reserved"),
        ("x y", "refused"),
        ("9lives", "refused"),
        ("abcdefghijklmnopq", "refused"),
        ("caf\u{e9}", "refused"),
    ] {
        bob.send(&format!("/nick {name}"));
        let reply = bob.recv();
        assert!(
            reply.starts_with("! ") && reply.contains(why),
            "/nick {name}: {reply:?}"
        );
    }
    bob.send("/nick");
    assert_eq!(bob.recv(), "! usage: /nick NAME");
    bob.send("/nick b.o_b-2");
    assert_eq!(bob.recv(), "* you are now known as b.o_b-2");
    assert_eq!(alice.recv(), "* guest-2 is now known as b.o_b-2");
    bob.send("hi");
    assert_eq!(alice.recv(), "<b.o_b-2> hi");
}

/// /who lists everyone; /me is an action under the speaker's own prefix.
#[test]
fn who_and_me() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 3);
    room[0].0.send("/who");
    assert_eq!(room[0].0.recv(), "* 3 in #lobby: guest-1, guest-2, guest-3");
    room[1].0.send("/me joined (9 online)");
    assert_eq!(room[0].0.recv(), "<guest-2> * joined (9 online)");
    assert_eq!(room[2].0.recv(), "<guest-2> * joined (9 online)");
}

/// /msg reaches one client (any case of its name) and echoes to the sender.
#[test]
fn private_messages() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 3);
    room[1].0.send("/nick Bob");
    assert_eq!(room[1].0.recv(), "* you are now known as Bob");
    room[0].0.recv();
    room[2].0.recv();
    room[0].0.send("/msg bob  psst, over here ");
    assert_eq!(room[0].0.recv(), "[to Bob] psst, over here");
    assert_eq!(room[1].0.recv(), "[from guest-1] psst, over here");
    room[2].0.assert_silent(QUIET);
    room[0].0.send("/msg nobody hello");
    assert_eq!(room[0].0.recv(), "! no one called nobody is online");
    room[0].0.send("/msg bob");
    assert_eq!(room[0].0.recv(), "! usage: /msg NAME TEXT");
}

/// EXIT alone leaves like /quit; " EXIT" and "exit" are chat text.
#[test]
fn exit_and_quit() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 3);
    room[0].0.send(" EXIT");
    assert_eq!(room[1].0.recv(), "<guest-1>  EXIT");
    room[0].0.send("exit");
    assert_eq!(room[1].0.recv(), "<guest-1> exit");
    room[0].0.send("EXIT");
    assert!(room[0].0.recv_to_eof().is_empty());
    assert_eq!(room[1].0.recv(), "* guest-1 left (quit)");
    room[1].0.send("/quit see you \u{1b}tomorrow");
    assert!(room[1].0.recv_to_eof().is_empty());
    assert_eq!(room[2].0.recv(), "<guest-1>  EXIT");
    assert_eq!(room[2].0.recv(), "<guest-1> exit");
    assert_eq!(room[2].0.recv(), "* guest-1 left (quit)");
    assert_eq!(
        room[2].0.recv(),
        "* guest-2 left (quit: see you \u{241b}tomorrow)"
    );
}

/// /help lists the commands; an unknown command gets an error; // escapes.
#[test]
fn help_unknown_and_escape() {
    let server = Server::start(&[]);
    let mut room = join_all(&server, 2);
    room[0].0.send("/help");
    let help = room[0].0.recv_until(|l| l.contains("//text"));
    assert!(help.iter().all(|l| l.starts_with("* ")), "{help:?}");
    for command in ["/nick", "/who", "/me", "/msg", "/quit", "/help"] {
        assert!(
            help.iter().any(|l| l.contains(command)),
            "/help lacks {command}"
        );
    }
    room[0].0.send("/dance now");
    assert_eq!(room[0].0.recv(), "! unknown command /dance; try /help");
    room[0].0.send("//dance now");
    assert_eq!(room[1].0.recv(), "<guest-1> /dance now");
}

/// The server console: text goes out as <server>, /who and /kick work, and
/// the conversation shows on stdout.
#[test]
fn server_console() {
    let mut server = Server::start(&[]);
    // No one in #lobby yet: a count, and no list after it.
    server.console("/who");
    server.stdout_until(|l| l == "* 0 in #lobby");
    let mut room = join_all(&server, 2);
    server.console("hello from the desk");
    assert_eq!(room[0].0.recv(), "<server> hello from the desk");
    assert_eq!(room[1].0.recv(), "<server> hello from the desk");
    room[0].0.send("seen on stdout");
    server.stdout_until(|l| l == "#lobby <guest-1> seen on stdout");
    server.console("/who");
    server.stdout_until(|l| l == "* 2 in #lobby: guest-1, guest-2");
    server.console("/kick GUEST-2 spamming");
    let last = room[1].0.recv_to_eof();
    assert_eq!(
        last,
        vec![
            "<guest-1> seen on stdout",
            "! disconnected: kicked: spamming"
        ]
    );
    assert_eq!(room[0].0.recv(), "* guest-2 left (kicked: spamming)");
    // A closed console changes nothing.
    server.close_console();
    room[0].0.send("/who");
    assert_eq!(room[0].0.recv(), "* 1 in #lobby: guest-1");
}

//! The stop line of the echo and uppercase modes (SPEC "Echo and uppercase
//! modes"): a line that is exactly `--stop` (default `EXIT`) ends the
//! connection; everything before it is sent back, the line itself is not;
//! everything else is echoed at once.
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::Duration;

use chat_tests::labs::{
    assert_quiet, connect_raw, connect_small_raw, read_len, read_to_clean_eof, read_to_eof,
};
use chat_tests::Server;

/// How long a held byte must stay held to count as "waiting".
const QUIET: Duration = Duration::from_millis(300);

/// `EXIT` alone ends the connection; what came before it is echoed.
#[test]
fn exit_alone_closes_after_echoing_what_came_before() {
    let server = Server::start(&["--mode", "echo"]);
    let mut stream = connect_raw(server.addr());
    stream
        .write_all(b"hello\nEXIT\nnever echoed\n")
        .expect("send");
    assert_eq!(read_to_eof(&mut stream), b"hello\n");
}

/// `EXIT` split across reads, with a CR LF: its bytes wait (nothing comes
/// back) until the LF decides, then the server closes; the text before it
/// was echoed at once.
#[test]
fn exit_split_across_reads_with_crlf() {
    let server = Server::start(&["--mode", "echo"]);
    let mut stream = connect_raw(server.addr());
    stream.write_all(b"ab\nEX").expect("send");
    assert_eq!(read_len(&mut stream, 3), b"ab\n");
    assert_quiet(&mut stream, QUIET);
    stream.write_all(b"IT\r").expect("send");
    assert_quiet(&mut stream, QUIET);
    stream.write_all(b"\n").expect("send");
    assert_eq!(read_to_eof(&mut stream), b"");
}

/// Near misses are echoed whole and the connection goes on.
#[test]
fn near_misses_are_echoed() {
    let server = Server::start(&["--mode", "echo"]);
    let mut stream = connect_raw(server.addr());
    for line in [&b"EXITED\n"[..], b" EXIT\n", b"exit\n", b"EXIT \n", b"EX\n"] {
        stream.write_all(line).expect("send");
        assert_eq!(read_len(&mut stream, line.len()), line, "{line:?}");
    }
    // A partial near miss is echoed as soon as it is one.
    stream.write_all(b"EXO").expect("send");
    assert_eq!(read_len(&mut stream, 3), b"EXO");
    stream.write_all(b"\nEXIT\n").expect("send");
    assert_eq!(read_to_eof(&mut stream), b"\n");
}

/// `--stop stop`: `EXIT` is ordinary text, `stop` ends it.
#[test]
fn another_stop_word() {
    let server = Server::start(&["--mode", "echo", "--stop", "stop"]);
    let mut stream = connect_raw(server.addr());
    stream.write_all(b"EXIT\n").expect("send");
    assert_eq!(read_len(&mut stream, 5), b"EXIT\n");
    stream.write_all(b"stop\n").expect("send");
    assert_eq!(read_to_eof(&mut stream), b"");
}

/// `--stop ''`: pure RFC 862, every byte back at once, nothing closes it.
#[test]
fn no_stop_word_is_pure_echo() {
    let server = Server::start(&["--mode", "echo", "--stop", ""]);
    let mut stream = connect_raw(server.addr());
    stream.write_all(b"EXIT\n").expect("send");
    assert_eq!(read_len(&mut stream, 5), b"EXIT\n");
    stream.write_all(b"EX").expect("send");
    assert_eq!(read_len(&mut stream, 2), b"EX");
    assert_quiet(&mut stream, QUIET);
}

/// Upper mode: `exit` comes back uppercased and is not the stop line;
/// `EXIT` is.
#[test]
fn upper_mode_uppercases_exit_and_stops_on_exit() {
    let server = Server::start(&["--mode", "upper"]);
    let mut stream = connect_raw(server.addr());
    stream.write_all(b"exit\n").expect("send");
    assert_eq!(read_len(&mut stream, 5), b"EXIT\n");
    stream.write_all(b"bye\nEXIT\n").expect("send");
    assert_eq!(read_to_eof(&mut stream), b"BYE\n");
}

/// The log says the client left with the stop line.
#[test]
fn the_log_names_the_stop_line() {
    let server = Server::start(&["--mode", "echo"]);
    let mut stream = connect_raw(server.addr());
    stream.write_all(b"EXIT\n").expect("send");
    assert_eq!(read_to_eof(&mut stream), b"");
    server.stderr_until("(stop line)");
}

/// Input after the stop line does not cost the client the replies it was
/// owed: 2 MiB echoed, then `EXIT`, then one more line once the echo is
/// back. The client gets every byte before the stop line, then end of
/// stream, not a reset (before the fix: "connection reset by peer", and a
/// slower client lost all but ~127 KB).
#[test]
fn input_after_the_stop_line_does_not_reset_the_replies() {
    let server = Server::start(&["--mode", "echo"]);
    let mut stream = connect_small_raw(server.addr());
    let len = 2 << 20;
    let mut writer = stream.try_clone().expect("clone");
    let sent = std::thread::spawn(move || {
        writer.write_all(&vec![b'x'; len]).expect("send");
        writer.write_all(b"\nEXIT\n").expect("send");
    });
    let got = read_len(&mut stream, len + 1);
    sent.join().expect("the sender failed");
    assert!(got[..len].iter().all(|&b| b == b'x'));
    stream.write_all(b"after\n").expect("send");
    assert_eq!(read_to_clean_eof(&mut stream), b"");
}

//! Removal: once a client is removed (kick, too slow, shutdown), nothing
//! more it sent reaches anyone, and a shutdown reaches every client, the
//! one being paced by flood control included (issues 12 and 14).

use std::thread;
use std::time::Duration;

use chat_tests::rooms::join_n;
use chat_tests::Server;

/// Pastes `lines` numbered lines from a clone of `client` on a thread.
fn paste(client: &chat_tests::Client, lines: usize) -> thread::JoinHandle<()> {
    let writer = client.try_clone();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        for i in 0..lines {
            bytes.extend_from_slice(format!("spam line {i}\n").as_bytes());
        }
        // The server may stop reading it (kicked, stopped): a write error
        // then is expected, not a failure.
        let _ = std::io::Write::write_all(&mut writer.stream(), &bytes);
    })
}

/// Ctrl+C while a client is being paced by flood control: every client,
/// the paster included, gets `* server shutting down` as its last line,
/// nobody sees the paster leave, and the server exits 0 within 2 s.
#[test]
fn ctrl_c_reaches_a_paced_paster() {
    let mut server = Server::start(&[]);
    let mut room = join_n(&server, 3);
    let paster = room[2].0.try_clone();
    let pasting = paste(&paster, 400);
    // Past the burst of 100: the paster is being paced now.
    for (client, _) in &mut room[..2] {
        client.recv_until(|l| l == "<guest-3> spam line 120");
    }
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(2));
    assert!(status.success(), "{status:?}");
    for (client, name) in &mut room {
        let rest = client.recv_to_eof();
        assert_eq!(
            rest.last().map(String::as_str),
            Some("* server shutting down"),
            "{name} saw {rest:?}"
        );
        assert!(
            !rest.iter().any(|l| l.starts_with("* guest-3 left")),
            "{name} saw the paster leave: {rest:?}"
        );
    }
    drop(paster);
    let _ = pasting.join();
}

/// Issue 14, defect 1: a paster paced by flood control is kicked from the
/// console; after its leave notice nothing more it sent reaches anyone,
/// though the kernel had buffered much more of its paste. The log names
/// the right reason.
#[test]
fn kicked_paster_says_nothing_more() {
    let mut server = Server::start(&[]);
    let (mut observer, _) = server.join();
    let (paster, name) = server.join();
    observer.recv_until(|l| l.starts_with(&format!("* {name} joined")));
    let pasting = paste(&paster, 3000);
    // Past the burst: the paster is being paced now.
    observer.recv_until(|l| l == format!("<{name}> spam line 150"));
    server.console(&format!("/kick {name}"));
    observer.recv_until(|l| l == format!("* {name} left (kicked)"));
    while let Some(line) = observer.try_recv(Duration::from_millis(1500)) {
        assert!(
            !line.starts_with(&format!("<{name}>")),
            "{line:?} came after the kick"
        );
    }
    // Quiet, not hung up on: the observer's own `/who` is still answered,
    // with nothing of the paster's before it.
    observer.send("/who");
    let rest = observer.recv_until(|l| l.starts_with("* ") && l.contains(" in #lobby"));
    assert!(
        !rest.iter().any(|l| l.starts_with(&format!("<{name}>"))),
        "{rest:?} came after the kick"
    );
    server.stderr_until("left: kicked");
    assert!(!server.stderr().contains("left: server shutting down"));
    drop(paster);
    let _ = pasting.join();
}

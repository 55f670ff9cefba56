//! Delivery under load: one total order for everyone, nothing missing, and
//! a client that stops reading harms nobody but itself.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use chat_tests::{Client, Server};

/// Joins `n` clients, draining every join notice.
fn join_all(server: &Server, n: usize) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..n {
        let (client, name) = server.join();
        for other in clients.iter_mut() {
            let joined = other.recv();
            assert!(
                joined.starts_with(&format!("* {name} joined")),
                "{joined:?}"
            );
        }
        clients.push(client);
    }
    clients
}

/// Reads `count` chat lines (skipping notices) on a thread.
fn collect(mut client: Client, count: usize) -> thread::JoinHandle<(Client, Vec<String>)> {
    thread::spawn(move || {
        let mut lines = Vec::with_capacity(count);
        while lines.len() < count {
            let line = client.recv();
            assert!(
                !line.starts_with("! "),
                "after {} lines: {line}",
                lines.len()
            );
            if line.starts_with('<') {
                lines.push(line);
            }
        }
        (client, lines)
    })
}

/// Five clients sending at once: every receiver gets every line of the
/// others, none twice, and all receivers see them in one identical order.
#[test]
fn five_senders_one_order() {
    const SENDERS: usize = 5;
    const PER_SENDER: usize = 300;
    const LISTENERS: usize = 3;
    // A queue deep enough for everything: this test is about order, and a
    // reader starved of CPU on a loaded machine must not be dropped.
    let server = Server::start(&["--rate-limit", "0", "--sendq", "10000"]);
    let clients = join_all(&server, SENDERS + LISTENERS);
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let expected = if i < SENDERS {
            (SENDERS - 1) * PER_SENDER
        } else {
            SENDERS * PER_SENDER
        };
        if i < SENDERS {
            let mut writer = client.try_clone();
            writers.push(thread::spawn(move || {
                for seq in 0..PER_SENDER {
                    writer.send(&format!("m {i} {seq}"));
                }
            }));
        }
        client.stream().set_nodelay(true).unwrap();
        readers.push(collect(client, expected));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let received: Vec<Vec<String>> = readers.into_iter().map(|r| r.join().unwrap().1).collect();

    // Nothing missing, nothing twice, each sender's lines in its own order.
    for (i, lines) in received.iter().enumerate() {
        let mut next: HashMap<usize, usize> = HashMap::new();
        for line in lines {
            let mut words = line.split_whitespace().skip(2);
            let from: usize = words.next().unwrap().parse().unwrap();
            let seq: usize = words.next().unwrap().parse().unwrap();
            assert_ne!(from, i, "client {i} got its own line back");
            let want = next.entry(from).or_insert(0);
            assert_eq!(
                seq, *want,
                "client {i}: line {seq} from {from} out of place"
            );
            *want += 1;
        }
    }
    // One total order: every receiver's lines, with its own lines removed
    // from the listener's view, are the same sequence.
    let reference = &received[SENDERS];
    for (i, lines) in received.iter().enumerate() {
        let own = format!("m {i} ");
        let projected: Vec<&String> = reference
            .iter()
            .filter(|l| !l.contains(&format!("> {own}")))
            .collect();
        let mine: Vec<&String> = lines.iter().collect();
        assert_eq!(mine, projected, "client {i} saw another order");
    }
}

/// A client that never reads (with a small receive buffer) while ten others
/// exchange lines of 1 KB, more than the server's send buffer for it can
/// grow to (`tcp_wmem`'s maximum, 4 MB by default) plus its 1,024-line
/// queue: it is dropped as too slow, the others lose nothing and stay
/// fast. Each sender is paced at 500 lines/s, so a reader thread starved
/// for a moment on a loaded machine is not too slow itself.
#[test]
fn stalled_reader_is_dropped_and_harms_no_one() {
    const ACTIVE: usize = 10;
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    // Twice what the staller can hold, in 1 KB lines, over the senders.
    let per_sender = (wmem_max / 1000 + 1024) * 2 / ACTIVE;
    let server = Server::start(&["--rate-limit", "500", "--burst", "500"]);
    let mut clients = join_all(&server, ACTIVE);
    // The staller joins last and never reads again.
    let (stalled, stalled_name) = server.join_small();
    for client in clients.iter_mut() {
        assert!(client
            .recv()
            .starts_with(&format!("* {stalled_name} joined")));
    }
    // Lines big enough that the staller's kernel buffers fill quickly.
    let padding = "x".repeat(1000);
    let started = Instant::now();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let mut writer = client.try_clone();
        let padding = padding.clone();
        writers.push(thread::spawn(move || {
            for seq in 0..per_sender {
                writer.send(&format!("m {i} {seq} {padding}"));
            }
        }));
        readers.push(thread::spawn(move || {
            let mut client = client;
            let mut chat = 0;
            let mut saw_drop = false;
            while chat < (ACTIVE - 1) * per_sender || !saw_drop {
                let Some(line) = client.try_recv(chat_tests::TIMEOUT) else {
                    return (chat, saw_drop);
                };
                if line.starts_with('<') {
                    chat += 1;
                } else if line.contains("left (too slow)") {
                    saw_drop = true;
                }
            }
            (chat, saw_drop)
        }));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    for reader in readers {
        let (chat, saw_drop) = reader.join().unwrap();
        assert!(
            chat == (ACTIVE - 1) * per_sender && saw_drop,
            "a reader got {chat} lines, saw the drop: {saw_drop}; server log:\n{}",
            server.stderr()
        );
    }
    // Paced at 500 lines/s (after a burst of 500), the senders need about
    // per_sender / 500 s: the room ran at the senders' pace, not the
    // staller's.
    let took = started.elapsed();
    let paced = Duration::from_secs_f64(per_sender as f64 / 500.0);
    assert!(
        took < paced * 2 + Duration::from_secs(5),
        "the room slowed down: {took:?} for {per_sender} lines a sender"
    );
    drop(stalled);
}

/// `--workers 2 --queue 1`: the third connection is told it waits and is
/// served when a place frees; the fourth is refused with a reason.
#[test]
fn full_server_waits_then_refuses() {
    let server = Server::start(&["--workers", "2", "--queue", "1"]);
    let (a, _) = server.join();
    let (mut b, _) = server.join();
    let mut waiting = server.connect();
    let notice = waiting.recv();
    assert!(
        notice.starts_with("* ") && notice.contains("number 1 in line"),
        "{notice:?}"
    );
    let mut refused = server.connect();
    assert_eq!(
        refused.recv_to_eof(),
        vec!["! server full, try again later"]
    );
    b.assert_silent(Duration::from_millis(200));
    drop(a);
    let welcome = waiting.recv();
    assert!(welcome.starts_with("* welcome, guest-"), "{welcome:?}");
}

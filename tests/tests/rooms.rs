//! Rooms (SPEC "Rooms"): isolation, one order per room, `/rooms`, `/who`,
//! `/msg` across rooms, room names, `--max-rooms`, and the defects found
//! in the one-room registry.

use std::thread;
use std::time::Duration;

use chat_tests::rooms::{join_n, join_room};
use chat_tests::Server;

/// A short wait for "nothing more arrives" checks; the positive checks that
/// follow them bound the wait from the other side.
const QUIET: Duration = Duration::from_millis(300);

/// A client that moves is announced in both rooms; lines then stay in
/// their room, both ways; a third client entering the new room is seen
/// only there.
#[test]
fn rooms_are_isolated_both_ways() {
    let server = Server::start(&[]);
    let mut room = join_n(&server, 3);
    let answer = join_room(&mut room[1].0, "#Games");
    assert_eq!(answer, "* you are now in #Games (1 online)");
    assert_eq!(room[0].0.recv(), "* guest-2 left for #Games (2 online)");
    assert_eq!(room[2].0.recv(), "* guest-2 left for #Games (2 online)");
    room[0].0.send("lobby only");
    assert_eq!(room[2].0.recv(), "<guest-1> lobby only");
    room[1].0.assert_silent(QUIET);
    room[1].0.send("games only");
    room[1].0.send("/me waves");
    // Its chat lines are relayed before its next command is answered.
    room[1].0.send("/who");
    assert_eq!(room[1].0.recv(), "* 1 in #Games: guest-2");
    room[0].0.assert_silent(QUIET);
    room[2].0.assert_silent(Duration::from_millis(1));
    // The name is matched ignoring case and shown in its creator's spelling.
    assert_eq!(
        join_room(&mut room[2].0, "games"),
        "* you are now in #Games (2 online)"
    );
    assert_eq!(room[2].0.recv(), "* last 2 lines of #Games:");
    assert_eq!(room[2].0.recv(), "<guest-2> games only");
    assert_eq!(room[2].0.recv(), "<guest-2> * waves");
    assert_eq!(room[1].0.recv(), "* guest-3 joined (2 online)");
    // The room it left is told the room's name as shown, not as typed.
    assert_eq!(room[0].0.recv(), "* guest-3 left for #Games (1 online)");
    room[2].0.send("/who");
    assert_eq!(room[2].0.recv(), "* 2 in #Games: guest-2, guest-3");
    // Joining the room you are in changes nothing.
    room[2].0.send("/join #GAMES");
    assert_eq!(room[2].0.recv(), "* you are already in #Games");
    room[1].0.assert_silent(QUIET);
    // `#lobby` is always spelled so.
    assert_eq!(
        join_room(&mut room[2].0, "LOBBY"),
        "* you are now in #lobby (2 online)"
    );
    assert_eq!(room[1].0.recv(), "* guest-3 left for #lobby (1 online)");
}

/// Two senders in each of three rooms send at once; both readers of a room
/// see exactly that room's lines, all of them, in one and the same order.
#[test]
fn one_order_per_room_with_concurrent_senders() {
    const LINES: usize = 300;
    let server = Server::start(&["--rate-limit", "0"]);
    let rooms = ["red", "green", "blue"];
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for room in rooms {
        for _ in 0..2 {
            let (mut reader, _) = server.join();
            join_room(&mut reader, room);
            readers.push((room, reader));
        }
        for _ in 0..2 {
            let (mut sender, name) = server.join();
            join_room(&mut sender, room);
            senders.push((room, sender, name));
        }
    }
    // Drain the notices of everyone settling in: each reader sees its
    // room's two senders and the other reader join, or fewer.
    for (_, reader) in &mut readers {
        while reader.try_recv(QUIET).is_some() {}
    }
    let threads: Vec<_> = senders
        .into_iter()
        .map(|(room, mut sender, name)| {
            thread::spawn(move || {
                for i in 0..LINES {
                    sender.send(&format!("{room} {i}"));
                }
                (sender, name)
            })
        })
        .collect();
    let mut seen = Vec::new();
    for (room, reader) in &mut readers {
        let mut lines = Vec::new();
        while lines.len() < 2 * LINES {
            let line = reader.recv();
            if line.starts_with("* ") && line.contains(" joined (") {
                // A join notice of the set-up, flushed late.
                continue;
            }
            assert!(line.starts_with('<'), "{room}: {line}");
            let text = line.split_once("> ").expect("a chat line").1;
            assert!(text.starts_with(&format!("{room} ")), "{room} got {line}");
            lines.push(line);
        }
        reader.assert_silent(QUIET);
        seen.push(lines);
    }
    let _senders: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for pair in seen.chunks(2) {
        assert_eq!(
            pair[0], pair[1],
            "two readers of one room disagree on its order"
        );
    }
}

/// `/rooms` lists the rooms with members and their counts; an emptied room
/// leaves the list.
#[test]
fn rooms_lists_counts() {
    let server = Server::start(&[]);
    let mut room = join_n(&server, 3);
    join_room(&mut room[1].0, "games");
    join_room(&mut room[2].0, "games");
    room[0].0.send("/rooms");
    assert_eq!(
        room[0]
            .0
            .recv_until(|l| l.starts_with("* 2 rooms"))
            .pop()
            .unwrap(),
        "* 2 rooms: #lobby (1), #games (2)"
    );
    join_room(&mut room[1].0, "lobby");
    join_room(&mut room[2].0, "lobby");
    room[0].0.recv_until(|l| l == "* guest-3 joined (3 online)");
    room[0].0.send("/rooms");
    assert_eq!(room[0].0.recv(), "* 1 room: #lobby (3)");
}

/// Defect: `/who` was not in order of entering after a leave
/// (`swap_remove`): guests 1, 2, 3 join, guest-1 quits, `/who` said
/// `guest-3, guest-2`.
#[test]
fn who_keeps_order_after_a_leave() {
    let server = Server::start(&[]);
    let mut room = join_n(&server, 4);
    room[0].0.send("/quit");
    room[1].0.recv_until(|l| l == "* guest-1 left (quit)");
    room[1].0.send("/who");
    assert_eq!(room[1].0.recv(), "* 3 in #lobby: guest-2, guest-3, guest-4");
}

/// `/msg` reaches a client in another room, and only it.
#[test]
fn msg_crosses_rooms() {
    let server = Server::start(&[]);
    let mut room = join_n(&server, 3);
    join_room(&mut room[1].0, "far");
    room[0]
        .0
        .recv_until(|l| l.starts_with("* guest-2 left for #far"));
    room[2]
        .0
        .recv_until(|l| l.starts_with("* guest-2 left for #far"));
    room[0].0.send("/msg GUEST-2 over there?");
    assert_eq!(room[0].0.recv(), "[to guest-2] over there?");
    assert_eq!(room[1].0.recv(), "[from guest-1] over there?");
    room[2].0.assert_silent(QUIET);
}

/// Bad room names get one `! ` line each and the client stays put.
#[test]
fn bad_room_names_are_refused() {
    let server = Server::start(&[]);
    let (mut client, _) = server.join();
    for bad in [
        "a b",
        "-x",
        "#",
        "abcdefghijklmnopqrstuvwxy",
        "caf\u{e9}",
        "#a#b",
    ] {
        client.send(&format!("/join {bad}"));
        let answer = client.recv();
        assert!(answer.starts_with("! room "), "{bad:?}: {answer}");
        assert!(answer.contains("refused"), "{bad:?}: {answer}");
    }
    client.send("/join");
    assert_eq!(client.recv(), "! usage: /join ROOM");
    client.send("/who");
    assert_eq!(client.recv(), "* 1 in #lobby: guest-1");
}

/// `--max-rooms 2`: `#lobby` and one more. A third room is refused and the
/// client stays; a client alone in its room may still move to a new one.
#[test]
fn max_rooms_is_enforced() {
    let server = Server::start(&["--max-rooms", "2"]);
    let mut room = join_n(&server, 2);
    join_room(&mut room[0].0, "one");
    room[1]
        .0
        .recv_until(|l| l.starts_with("* guest-1 left for #one"));
    room[1].0.send("/join two");
    let refused = room[1].0.recv();
    assert!(refused.starts_with("! too many rooms"), "{refused}");
    room[1].0.send("/who");
    assert_eq!(room[1].0.recv(), "* 1 in #lobby: guest-2");
    // guest-1 is alone in #one: leaving it frees the place it takes.
    assert_eq!(
        join_room(&mut room[0].0, "three"),
        "* you are now in #three (1 online)"
    );
    room[1].0.send("/rooms");
    assert_eq!(room[1].0.recv(), "* 2 rooms: #lobby (1), #three (1)");
}

/// Defect: a `/msg` whose push finds the recipient's queue full drops the
/// recipient as too slow, and the sender used to be told `[to NAME] ...`
/// as if it had been delivered. Now it is told the message was not.
#[test]
fn msg_to_a_client_it_evicts_is_not_reported_delivered() {
    let server = Server::start(&["--rate-limit", "0", "--sendq", "1"]);
    let (mut sender, _) = server.join();
    let (_stalled, stalled_name) = server.join_small();
    sender.recv_until(|l| l.starts_with(&format!("* {stalled_name} joined")));
    let text = "x".repeat(1500);
    for i in 0..20_000 {
        sender.send(&format!("/msg {stalled_name} {i} {text}"));
        let mut answer = sender.recv();
        if answer.starts_with("[to ") {
            continue;
        }
        // The room hears of the drop as it happens, before the answer.
        if answer == format!("* {stalled_name} left (too slow)") {
            answer = sender.recv();
        }
        let expected =
            format!("! {stalled_name} was disconnected (too slow): message not delivered");
        assert!(answer == expected, "after {i} messages: {answer:.80}");
        return;
    }
    panic!("the stalled client was never dropped");
}

/// A rename is told to the renamer's room only; names stay unique across
/// rooms.
#[test]
fn renames_stay_in_their_room_and_names_are_server_wide() {
    let server = Server::start(&[]);
    let mut room = join_n(&server, 3);
    join_room(&mut room[1].0, "den");
    join_room(&mut room[2].0, "den");
    room[1].0.recv_until(|l| l.starts_with("* guest-3 joined"));
    room[0]
        .0
        .recv_until(|l| l.starts_with("* guest-3 left for #den"));
    room[2].0.send("/nick carol");
    assert_eq!(room[2].0.recv(), "* you are now known as carol");
    assert_eq!(room[1].0.recv(), "* guest-3 is now known as carol");
    room[0].0.assert_silent(QUIET);
    room[0].0.send("/nick CAROL");
    assert_eq!(room[0].0.recv(), "! name \"CAROL\" is taken");
}

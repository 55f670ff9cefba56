//! `/who` across servers (`--redis`) agrees with the notices before it:
//! a client told that someone joined, moved, was renamed or left, and
//! asking `/who` right then, gets the room as that notice left it. The
//! members list in Redis changes in the same order as the room's log.

use chat_tests::cluster::{joined, servers};
use chat_tests::redis::Redis;
use chat_tests::Client;

/// Rounds of join, rename, move, come back and quit: half of them by a
/// client on the asker's server, half on another.
const ROUNDS: usize = 6;

/// Asks `/who` and returns its answer (the asker's own reply: whatever
/// came before it is read past).
fn who(client: &mut Client) -> String {
    client.send("/who");
    let seen = client.recv_until(|l| l.starts_with("* ") && l.contains(" in #lobby"));
    seen.last().cloned().unwrap_or_default()
}

#[test]
fn who_agrees_with_the_notice_just_seen() {
    let redis = Redis::start();
    let servers = servers(&redis, 2);
    let (mut x, x_name) = joined(&servers[0]);
    let alone = format!("* 1 in #lobby: {x_name}");
    for round in 0..ROUNDS {
        let (mut z, z_name) = servers[round % 2].join();
        x.recv_until(|l| l.starts_with(&format!("* {z_name} joined")));
        assert_eq!(
            who(&mut x),
            format!("* 2 in #lobby: {x_name}, {z_name}"),
            "round {round}: after the join notice"
        );

        let renamed = format!("r{round}");
        z.send(&format!("/nick {renamed}"));
        x.recv_until(|l| l == format!("* {z_name} is now known as {renamed}"));
        assert_eq!(
            who(&mut x),
            format!("* 2 in #lobby: {x_name}, {renamed}"),
            "round {round}: after the rename notice"
        );

        // Away and back to the same name at once: listed under it.
        z.send(&format!("/nick away{round}"));
        z.send(&format!("/nick {renamed}"));
        x.recv_until(|l| l == format!("* away{round} is now known as {renamed}"));
        assert_eq!(
            who(&mut x),
            format!("* 2 in #lobby: {x_name}, {renamed}"),
            "round {round}: after renaming back"
        );

        z.send("/join elsewhere");
        x.recv_until(|l| l.starts_with(&format!("* {renamed} left for #elsewhere")));
        assert_eq!(who(&mut x), alone, "round {round}: after the move");

        z.send("/join lobby");
        x.recv_until(|l| l.starts_with(&format!("* {renamed} joined")));
        assert_eq!(
            who(&mut x),
            format!("* 2 in #lobby: {x_name}, {renamed}"),
            "round {round}: after coming back"
        );

        z.send("/quit");
        x.recv_until(|l| l.starts_with(&format!("* {renamed} left")));
        assert_eq!(who(&mut x), alone, "round {round}: after the leave");
    }
}

//! The console's `/ban` duration word: a misspelt duration (`90 seconds`,
//! `7days`) was read as the first word of the reason, and the address
//! quietly banned until `/unban` (kept across restarts with `--bans`). A
//! word that starts with a digit is a duration now, or an error; `none`
//! bans until `/unban` explicitly. A `/ban` with no TARGET answers with its
//! usage.

use chat_tests::rooms::TempDir;
use chat_tests::Server;

/// Types `line` on the console and returns its answer: the next stdout
/// line starting with `* ` or `! `.
fn answer(server: &mut Server, line: &str) -> String {
    server.console(line);
    server.stdout_until(|l| l.starts_with("* ") || l.starts_with("! "))
}

/// Misspelt and too long durations are refused with one line and ban
/// nothing; `none` and a good duration ban as asked, with the rest as the
/// reason.
#[test]
fn a_misspelt_duration_is_an_error_not_a_ban_until_unban() {
    let mut server = Server::start(&[]);
    for (line, word) in [
        ("/ban 10.1.1.3 90 seconds", "\"90\""),
        ("/ban 10.1.1.4 7days", "\"7days\""),
        ("/ban 10.1.1.5 1.5h spam", "\"1.5h\""),
    ] {
        let said = answer(&mut server, line);
        assert!(
            said.starts_with("! ") && said.contains(word) && said.contains("not a duration"),
            "{line}: {said}"
        );
    }
    // One sentence: the limit, then how to ban for good (it said the
    // second half twice, in other words).
    assert_eq!(
        answer(&mut server, "/ban 10.1.1.9 99999999999d"),
        "! \"99999999999d\" is longer than the longest ban, 3650d; give none, or no duration, to ban until /unban"
    );
    assert_eq!(answer(&mut server, "/bans"), "* no bans");
    assert_eq!(
        answer(&mut server, "/ban"),
        "! usage: /ban TARGET [DURATION] [REASON]"
    );
    assert_eq!(
        answer(&mut server, "/ban 10.1.1.6 none 3 strikes"),
        "* banned 10.1.1.6, until /unban: 3 strikes"
    );
    let said = answer(&mut server, "/ban 10.1.1.7 90s 3 strikes");
    assert!(
        said.starts_with("* banned 10.1.1.7, 1m 30s left: 3 strikes")
            || said.starts_with("* banned 10.1.1.7, 1m 29s left: 3 strikes"),
        "{said}"
    );
    assert_eq!(
        answer(&mut server, "/ban 10.1.1.8 spamming again"),
        "* banned 10.1.1.8, until /unban: spamming again"
    );
}

/// Review: servers given one `--bans` FILE (several on one machine) saved
/// through one temporary file, `.FILE.tmp`: one's rename took it from
/// under the other mid-save (`cannot save the ban list ...: no such file
/// or directory`). Each process has its own now.
#[test]
fn servers_sharing_a_bans_file_save_without_errors() {
    let dir = TempDir::new("shared-bans");
    let file = dir.join("shared.bans");
    let file = file.to_str().expect("UTF-8 temp path");
    let mut servers = [
        Server::start(&["--bans", file]),
        Server::start(&["--bans", file]),
    ];
    for i in 0..40 {
        for (net, server) in servers.iter_mut().enumerate() {
            server.console(&format!("/ban 10.9.{net}.{i}"));
        }
    }
    for (net, server) in servers.iter_mut().enumerate() {
        server.stdout_until(|l| l.starts_with(&format!("* banned 10.9.{net}.39")));
        // Logged after every save: the log holds each save's error by now.
        server.console(&format!("/unban 10.9.{net}.0"));
        server.stderr_until(&format!("lifted the ban on 10.9.{net}.0"));
        let stderr = server.stderr();
        assert!(!stderr.contains("cannot save"), "{stderr}");
    }
}

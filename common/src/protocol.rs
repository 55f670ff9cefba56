//! The lines the server sends, by prefix (SPEC "Chat mode"). Each returned
//! string ends with LF, ready to be queued as is.
//!
//! The first characters of a line tell a reader (human or script) who is
//! speaking: `<name> ` a user, `* ` the server, `! ` an error for you alone,
//! `[from name] ` / `[to name] ` a private message. Keeping every format in
//! one place keeps that contract in one place. These functions only format:
//! text from clients must already have gone through
//! [`sanitize`](crate::sanitize::sanitize), and names through
//! [`name::check`](crate::name::check), or a CR or LF in them would break the
//! one-line-per-message rule.
//!
//! The `_line` functions ([`who_line`], [`rooms_line`]) give a notice's text
//! alone, without prefix or LF: the server's console prints the same text.

/// `<name> text`: a chat line.
pub fn chat(name: &str, text: &str) -> String {
    format!("<{name}> {text}\n")
}

/// `* text`: a notice from the server.
pub fn notice(text: &str) -> String {
    format!("* {text}\n")
}

/// `! text`: an error, to one client only.
pub fn error(text: &str) -> String {
    format!("! {text}\n")
}

/// `<name> * text`: an action (`/me`). It keeps the chat prefix on purpose:
/// IRC's `* name text` would let `/me joined (3 online)` pass for a server
/// notice, and the first character must always say who is speaking.
pub fn action(name: &str, text: &str) -> String {
    format!("<{name}> * {text}\n")
}

/// `[from name] text`: a private message as its recipient sees it.
pub fn private_from(name: &str, text: &str) -> String {
    format!("[from {name}] {text}\n")
}

/// `[to name] text`: a private message as its sender sees it.
pub fn private_to(name: &str, text: &str) -> String {
    format!("[to {name}] {text}\n")
}

/// `* welcome, NAME! you are in ROOM (N online); type /help for commands`:
/// the first line a client sees once it is in (`online` counts it too).
pub fn welcome(name: &str, room: &str, online: usize) -> String {
    notice(&format!(
        "welcome, {name}! you are in {room} ({online} online); type /help for commands"
    ))
}

/// `* you are now in ROOM (N online)`: `/join`'s answer to the one who moved
/// (`online` counts it too).
pub fn moved(room: &str, online: usize) -> String {
    notice(&format!("you are now in {room} ({online} online)"))
}

/// `* NAME joined (N online)`: what a room sees when someone comes in
/// (`online` counts the newcomer).
pub fn joined(name: &str, online: usize) -> String {
    notice(&format!("{name} joined ({online} online)"))
}

/// `* NAME left (REASON)`: what a room sees when someone leaves, for any
/// reason (quit, closed, kicked, server lost...).
pub fn left(name: &str, reason: &str) -> String {
    notice(&format!("{name} left ({reason})"))
}

/// `* OLD is now known as NEW`: what a room sees after a `/nick`.
pub fn renamed(old: &str, new: &str) -> String {
    notice(&format!("{old} is now known as {new}"))
}

/// `* you are now known as NEW`: `/nick`'s answer to the one renamed.
pub fn you_renamed(new: &str) -> String {
    notice(&format!("you are now known as {new}"))
}

/// `* last N lines of ROOM:`: the heading above the history replayed to
/// one entering ROOM (`last 1 line of`); not sent when there is none.
pub fn history_heading(lines: usize, room: &str) -> String {
    notice(&format!("last {} of {room}:", count(lines as u64, "line")))
}

/// `! name "NAME" is taken`: `/nick`'s answer when someone else holds NAME
/// (names are unique ignoring case). NAME has passed
/// [`name::check`](crate::name::check), so its quoting escapes nothing.
pub fn name_taken(name: &str) -> String {
    error(&format!("name {name:?} is taken"))
}

/// `* server shutting down`: the last line a client gets when the server
/// stops, whether it was in a room, giving its password or still waiting
/// for a worker.
pub fn shutting_down() -> String {
    notice("server shutting down")
}

/// `/who`'s answer: `3 in #lobby: a, b, c` (the console's, of a room with
/// no one in it: `0 in #lobby`).
pub fn who_line(room: &str, names: &[String]) -> String {
    if names.is_empty() {
        return format!("0 in {room}");
    }
    format!("{} in {room}: {}", names.len(), names.join(", "))
}

/// `/rooms`' answer, from each room's name and head count:
/// `2 rooms: #lobby (3), #games (1)` (`1 room: ...`).
pub fn rooms_line<'a>(rooms: impl IntoIterator<Item = (&'a str, usize)>) -> String {
    let list: Vec<String> = rooms
        .into_iter()
        .map(|(room, n)| format!("{room} ({n})"))
        .collect();
    let noun = if list.len() == 1 { "room" } else { "rooms" };
    format!("{} {noun}: {}", list.len(), list.join(", "))
}

/// `n` and `noun`, plural but for one: `1 line`, `2 lines`, `0 lines`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The lines `/help` sends, each without prefix or LF.
pub const HELP: &[&str] = &[
    "commands:",
    "  /nick NAME        change your name",
    "  /who              list who is in your room",
    "  /join ROOM        go to ROOM (#ROOM), creating it if it is empty",
    "  /rooms            list the rooms with people in them (#lobby always)",
    "  /me TEXT          say TEXT as an action",
    "  /msg NAME TEXT    send TEXT to NAME only",
    "  /quit [REASON]    leave (EXIT alone on a line does the same)",
    "  /help             this list",
    "  //text            send a line that starts with /",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of line has its prefix and exactly one LF, at the end.
    #[test]
    fn prefixes() {
        assert_eq!(chat("alice", "hello"), "<alice> hello\n");
        assert_eq!(notice("bob joined (3 online)"), "* bob joined (3 online)\n");
        assert_eq!(error("unknown command /x"), "! unknown command /x\n");
        assert_eq!(action("alice", "waves"), "<alice> * waves\n");
        assert_eq!(private_from("alice", "psst"), "[from alice] psst\n");
        assert_eq!(private_to("bob", "psst"), "[to bob] psst\n");
    }

    /// The room notices, to the byte.
    #[test]
    fn room_notices() {
        assert_eq!(
            welcome("guest-1", "#lobby", 3),
            "* welcome, guest-1! you are in #lobby (3 online); type /help for commands\n"
        );
        assert_eq!(moved("#games", 1), "* you are now in #games (1 online)\n");
        assert_eq!(joined("bob", 2), "* bob joined (2 online)\n");
        assert_eq!(left("bob", "quit"), "* bob left (quit)\n");
        assert_eq!(
            left("carol", "quit: gone fishing"),
            "* carol left (quit: gone fishing)\n"
        );
        assert_eq!(renamed("guest-2", "bob"), "* guest-2 is now known as bob\n");
        assert_eq!(you_renamed("bob"), "* you are now known as bob\n");
    }

    /// The history heading counts its lines, singular for one.
    #[test]
    fn history_headings() {
        assert_eq!(history_heading(3, "#games"), "* last 3 lines of #games:\n");
        assert_eq!(history_heading(1, "#games"), "* last 1 line of #games:\n");
        assert_eq!(
            history_heading(20, "#lobby"),
            "* last 20 lines of #lobby:\n"
        );
    }

    /// The errors and notices one client gets alone, to the byte.
    #[test]
    fn notices_to_one() {
        assert_eq!(name_taken("ALICE"), "! name \"ALICE\" is taken\n");
        assert_eq!(shutting_down(), "* server shutting down\n");
    }

    /// `/who`: a count, the room, the names in order; an empty room has no
    /// colon.
    #[test]
    fn who() {
        let names = |all: &[&str]| all.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            who_line("#lobby", &names(&["a", "b", "c"])),
            "3 in #lobby: a, b, c"
        );
        assert_eq!(who_line("#games", &names(&["a"])), "1 in #games: a");
        assert_eq!(who_line("#lobby", &[]), "0 in #lobby");
    }

    /// `/rooms`: one room is singular; each room with its head count, in
    /// the order given.
    #[test]
    fn rooms() {
        assert_eq!(
            rooms_line([("#lobby", 3), ("#games", 1)]),
            "2 rooms: #lobby (3), #games (1)"
        );
        assert_eq!(rooms_line([("#lobby", 0)]), "1 room: #lobby (0)");
        assert_eq!(rooms_line([]), "0 rooms: ");
    }

    /// One of a thing is singular, any other number plural.
    #[test]
    fn counts() {
        assert_eq!(count(1, "line"), "1 line");
        assert_eq!(count(0, "line"), "0 lines");
        assert_eq!(count(2, "connection"), "2 connections");
    }

    /// Text is carried as given, spaces included.
    #[test]
    fn text_is_verbatim() {
        assert_eq!(chat("a", "  x  "), "<a>   x  \n");
        assert_eq!(chat("a", ""), "<a> \n");
        assert_eq!(chat("a", "<b> forged?"), "<a> <b> forged?\n");
    }

    /// Help lines are bare text: no prefix, no line breaks, every command
    /// listed.
    #[test]
    fn help_lines() {
        for line in HELP {
            assert!(!line.contains('\n') && !line.contains('\r'));
            assert!(!line.starts_with("* ") && !line.starts_with("! "));
        }
        let all = HELP.join("\n");
        for command in [
            "/nick", "/who", "/me", "/msg", "/quit", "/help", "//", "EXIT", "/join", "/rooms",
        ] {
            assert!(all.contains(command), "{command}");
        }
    }
}

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

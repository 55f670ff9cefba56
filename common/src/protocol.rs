//! The lines the server sends, by prefix (SPEC "Chat mode"). Each returned
//! string ends with LF, ready to be queued as is.
//!
//! TODO(common helper): implement.

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

/// `* name text`: an action (`/me`).
pub fn action(name: &str, text: &str) -> String {
    format!("* {name} {text}\n")
}

/// `[from name] text`: a private message as its recipient sees it.
pub fn private_from(name: &str, text: &str) -> String {
    format!("[from {name}] {text}\n")
}

/// `[to name] text`: a private message as its sender sees it.
pub fn private_to(name: &str, text: &str) -> String {
    format!("[to {name}] {text}\n")
}

/// The lines `/help` sends, each without prefix or LF.
pub const HELP: &[&str] = &[
    "commands:",
    "  /nick NAME        change your name",
    "  /who              list who is online",
    "  /me TEXT          say TEXT as an action",
    "  /msg NAME TEXT    send TEXT to NAME only",
    "  /quit [REASON]    leave (EXIT alone on a line does the same)",
    "  /help             this list",
    "  //text            send a line that starts with /",
];

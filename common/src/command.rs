//! Parsing one line a client typed.
//!
//! Commands follow IRC habits (`/nick`, `/me`, `/msg`) because that is what
//! people type without reading `/help`. Everything that is not a command is
//! chat text and is passed on exactly as typed, spaces included: only the
//! command arguments are trimmed. The parser only splits the line; checking a
//! name or finding a recipient is the server's job.
//!
//! `EXIT` alone on a line leaves, because that is how the lab's clients end a
//! session; it must match exactly, so ` EXIT` or `exit` is still chat text.

/// What a line asks for. Borrowed from the line: parsing allocates nothing.
/// A line of nothing but whitespace is no command at all ([`parse`] gives
/// `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Chat text for everyone. `//text` arrives here as `/text`.
    Say(&'a str),
    /// `/nick NAME`.
    Nick(&'a str),
    /// `/who`.
    Who,
    /// `/me TEXT`.
    Me(&'a str),
    /// `/msg NAME TEXT`.
    Msg {
        /// Recipient's name as typed.
        to: &'a str,
        /// The message.
        text: &'a str,
    },
    /// `/quit [REASON]`, or `EXIT` alone on a line.
    Quit(Option<&'a str>),
    /// `/help`.
    Help,
    /// `/join NAME`: the whole rest of the line, as typed (checked by
    /// [`crate::room::check`]).
    Join(&'a str),
    /// `/rooms`.
    Rooms,
    /// A known command with missing arguments: the usage line to send back.
    Usage(&'static str),
    /// `/something` we do not know: the command word as typed.
    Unknown(&'a str),
}

/// Usage lines, sent back after `! ` when an argument is missing.
const NICK_USAGE: &str = "usage: /nick NAME";
/// See [`NICK_USAGE`].
const ME_USAGE: &str = "usage: /me TEXT";
/// See [`NICK_USAGE`].
const MSG_USAGE: &str = "usage: /msg NAME TEXT";
/// See [`NICK_USAGE`].
const JOIN_USAGE: &str = "usage: /join ROOM";

/// Parses one line (terminator already removed); `None` for a blank line,
/// which is ignored.
///
/// Command words are matched ignoring ASCII case (`/NICK` works); arguments
/// are trimmed; extra arguments to `/who` and `/help` are ignored. A `/`
/// with no word after it gives `Unknown("")`. A line that starts with a
/// space is never a command.
pub fn parse(line: &str) -> Option<Command<'_>> {
    if line.trim().is_empty() {
        return None;
    }
    Some(parse_text(line))
}

fn parse_text(line: &str) -> Command<'_> {
    // The terminator is already gone: compare exactly, or `EXIT\r` (sent
    // as `EXIT\r\r\n`) would lose a second CR and leave.
    if line == crate::stop::EXIT {
        return Command::Quit(None);
    }
    if line.starts_with("//") {
        return Command::Say(&line[1..]);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Command::Say(line);
    };
    let (word, args) = split_word(rest);
    let is = |name: &str| word.eq_ignore_ascii_case(name);
    if is("nick") {
        non_empty(args).map_or(Command::Usage(NICK_USAGE), Command::Nick)
    } else if is("who") {
        Command::Who
    } else if is("me") {
        non_empty(args).map_or(Command::Usage(ME_USAGE), Command::Me)
    } else if is("msg") {
        let (to, text) = split_word(args);
        match (non_empty(to), non_empty(text)) {
            (Some(to), Some(text)) => Command::Msg { to, text },
            _ => Command::Usage(MSG_USAGE),
        }
    } else if is("quit") {
        Command::Quit(non_empty(args))
    } else if is("help") {
        Command::Help
    } else if is("join") {
        non_empty(args).map_or(Command::Usage(JOIN_USAGE), Command::Join)
    } else if is("rooms") {
        Command::Rooms
    } else {
        Command::Unknown(word)
    }
}

/// The password in `/pass PASSWORD` (command word in any case), without
/// surrounding whitespace; `None` for any other line, `/pass` alone included.
///
/// Only a server started with a password reads it, at its gate, before the
/// client is in a room. It is not a [`Command`]: past the gate, [`parse`]
/// takes `/pass` for an unknown command like any other.
pub fn pass_argument(text: &str) -> Option<&str> {
    let command = text.trim_start().strip_prefix('/')?;
    let (word, rest) = command.split_once([' ', '\t'])?;
    if !word.eq_ignore_ascii_case("pass") {
        return None;
    }
    let given = rest.trim();
    (!given.is_empty()).then_some(given)
}

/// Splits `text` at its first whitespace: the word before, and the rest
/// trimmed.
fn split_word(text: &str) -> (&str, &str) {
    match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    }
}

/// `None` for an empty argument.
fn non_empty(text: &str) -> Option<&str> {
    Some(text).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command::*;

    /// Tests read better with the command itself.
    fn parse(line: &str) -> Command<'_> {
        super::parse(line).expect("not a blank line")
    }

    /// Whitespace-only lines are empty.
    #[test]
    fn empty_lines() {
        for line in ["", " ", "\t", "  \t  "] {
            assert_eq!(super::parse(line), None, "{line:?}");
        }
    }

    /// Chat text is passed on exactly as typed.
    #[test]
    fn chat_text_is_untouched() {
        assert_eq!(parse("hello"), Say("hello"));
        assert_eq!(parse("  spaced  out "), Say("  spaced  out "));
        assert_eq!(parse(" /nick bob"), Say(" /nick bob"));
        assert_eq!(parse("* fake notice"), Say("* fake notice"));
    }

    /// `EXIT` must be alone and exact.
    #[test]
    fn exit() {
        assert_eq!(parse("EXIT"), Quit(None));
        assert_eq!(parse(" EXIT"), Say(" EXIT"));
        assert_eq!(parse("EXIT "), Say("EXIT "));
        assert_eq!(parse("exit"), Say("exit"));
        assert_eq!(parse("EXIT now"), Say("EXIT now"));
        // The line reader removed the one CR a line may end with: another
        // CR is text, not a second line end.
        assert_eq!(parse("EXIT\r"), Say("EXIT\r"));
    }

    /// `//text` sends `/text`.
    #[test]
    fn double_slash_escapes() {
        assert_eq!(parse("//nick bob"), Say("/nick bob"));
        assert_eq!(parse("//"), Say("/"));
        assert_eq!(parse("///"), Say("//"));
    }

    /// `/nick NAME`, with the name trimmed; a missing name gets the usage.
    #[test]
    fn nick() {
        assert_eq!(parse("/nick bob"), Nick("bob"));
        assert_eq!(parse("/nick   bob  "), Nick("bob"));
        assert_eq!(parse("/nick\tbob"), Nick("bob"));
        assert_eq!(parse("/nick x y"), Nick("x y"));
        assert_eq!(parse("/nick"), Usage("usage: /nick NAME"));
        assert_eq!(parse("/nick   "), Usage("usage: /nick NAME"));
    }

    /// Command words ignore case.
    #[test]
    fn case_insensitive_words() {
        assert_eq!(parse("/NICK bob"), Nick("bob"));
        assert_eq!(parse("/Who"), Who);
        assert_eq!(parse("/HELP"), Help);
        assert_eq!(parse("/Quit bye"), Quit(Some("bye")));
    }

    /// `/who` and `/help` take no arguments and ignore any.
    #[test]
    fn who_and_help() {
        assert_eq!(parse("/who"), Who);
        assert_eq!(parse("/who is here"), Who);
        assert_eq!(parse("/help"), Help);
        assert_eq!(parse("/help me"), Help);
    }

    /// `/me TEXT`; no text gets the usage.
    #[test]
    fn me() {
        assert_eq!(parse("/me waves  hello "), Me("waves  hello"));
        assert_eq!(parse("/me"), Usage("usage: /me TEXT"));
        assert_eq!(parse("/me  "), Usage("usage: /me TEXT"));
    }

    /// `/msg NAME TEXT`; missing either gets the usage.
    #[test]
    fn msg() {
        assert_eq!(
            parse("/msg bob  hi  there "),
            Msg {
                to: "bob",
                text: "hi  there"
            }
        );
        assert_eq!(parse("/msg"), Usage("usage: /msg NAME TEXT"));
        assert_eq!(parse("/msg bob"), Usage("usage: /msg NAME TEXT"));
        assert_eq!(parse("/msg bob   "), Usage("usage: /msg NAME TEXT"));
    }

    /// `/quit` with an optional reason.
    #[test]
    fn quit() {
        assert_eq!(parse("/quit"), Quit(None));
        assert_eq!(parse("/quit   "), Quit(None));
        assert_eq!(parse("/quit gone  fishing "), Quit(Some("gone  fishing")));
    }

    /// `/join` takes the whole rest of the line; `/rooms` ignores arguments.
    #[test]
    fn join_and_rooms() {
        assert_eq!(parse("/join games"), Join("games"));
        assert_eq!(parse("/JOIN  #games "), Join("#games"));
        assert_eq!(parse("/join a b"), Join("a b"));
        assert_eq!(parse("/join"), Usage("usage: /join ROOM"));
        assert_eq!(parse("/rooms"), Rooms);
        assert_eq!(parse("/rooms all"), Rooms);
    }

    /// Anything else after `/` is unknown, reported as typed.
    #[test]
    fn unknown() {
        assert_eq!(parse("/dance now"), Unknown("dance"));
        assert_eq!(parse("/Dance"), Unknown("Dance"));
        assert_eq!(parse("/nickname bob"), Unknown("nickname"));
        assert_eq!(parse("/"), Unknown(""));
        assert_eq!(parse("/ nick"), Unknown(""));
    }

    /// `/pass PASSWORD` in any case; the password is the rest of the line,
    /// trimmed; anything else is not a try.
    #[test]
    fn pass_lines() {
        assert_eq!(pass_argument("/pass secret"), Some("secret"));
        assert_eq!(pass_argument("/PASS  two words "), Some("two words"));
        assert_eq!(pass_argument("/pass\tx"), Some("x"));
        assert_eq!(pass_argument("/pass"), None);
        assert_eq!(pass_argument("/pass   "), None);
        assert_eq!(pass_argument("/passx y"), None);
        assert_eq!(pass_argument("pass secret"), None);
        assert_eq!(pass_argument("//pass secret"), None);
        assert_eq!(pass_argument("hello"), None);
    }
}

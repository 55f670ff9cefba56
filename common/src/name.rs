//! Nickname rules.
//!
//! Names appear at the start of every chat line (`<name> text`), so they must
//! be impossible to confuse with anything else: short, plain ASCII, no spaces
//! or brackets, starting with a letter so a name never looks like a number or
//! a command. `server` is what the console speaks as and `guest-N` is what
//! the server hands out, so users may not take either.
//!
//! Uniqueness needs the set of connected clients and is checked by the
//! server's rooms. Names are ASCII, so `eq_ignore_ascii_case` is the whole
//! of "ignoring case".

use std::fmt;

/// Longest name, in characters.
pub const MAX_NAME: usize = 16;

/// The name the server console speaks as.
const SERVER_NAME: &str = "server";

/// Prefix of the names handed out on connect.
const GUEST_PREFIX: &str = "guest-";

/// Why a name is refused; `Display` gives the sentence sent to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Nothing given.
    Empty,
    /// More than [`MAX_NAME`] characters.
    TooLong,
    /// First character is not an ASCII letter.
    BadStart,
    /// A character other than ASCII letters, digits, `-`, `_`, `.`.
    BadChar(char),
    /// `server`, or starting with `guest-` (any case).
    Reserved,
}

/// One line, no prefix, no LF; it does not repeat the name, so a caller that
/// wants it in the message prepends it (quoted, it is unchecked user text).
/// The offending character is shown escaped (`'\u{1b}'`), never raw.
impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "a name needs at least one character"),
            NameError::TooLong => write!(f, "a name may have at most {MAX_NAME} characters"),
            NameError::BadStart => write!(f, "a name must start with a letter (a-z, A-Z)"),
            NameError::BadChar(c) => write!(
                f,
                "a name may not contain {c:?}: only letters, digits, -, _ and . may be used"
            ),
            NameError::Reserved => write!(
                f,
                "that name is reserved: \"{SERVER_NAME}\" and names starting with \"{GUEST_PREFIX}\" belong to the server"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a name a user asked for: 1 to 16 characters of ASCII letters,
/// digits, `-`, `_`, `.`, starting with a letter, not reserved.
/// Uniqueness is the server's business, not this function's.
///
/// # Errors
/// The first rule the name breaks, in this order: empty, too long, bad first
/// character, bad character, reserved.
pub fn check(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let first = chars.next().ok_or(NameError::Empty)?;
    if name.chars().count() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    if !first.is_ascii_alphabetic() {
        return Err(NameError::BadStart);
    }
    if let Some(bad) = chars.find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::BadChar(bad));
    }
    let guest = name
        .as_bytes()
        .get(..GUEST_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(GUEST_PREFIX.as_bytes()));
    if guest || name.eq_ignore_ascii_case(SERVER_NAME) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// The name given to the n-th connection: `guest-N`.
pub fn guest(n: u64) -> String {
    format!("{GUEST_PREFIX}{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names made of the allowed characters pass.
    #[test]
    fn good_names() {
        for name in [
            "a",
            "Alice",
            "bob-2",
            "c_d.e",
            "x123456789012345",
            "guest",
            "servers",
            "Guest2",
        ] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
    }

    /// An empty name is refused.
    #[test]
    fn empty() {
        assert_eq!(check(""), Err(NameError::Empty));
    }

    /// Sixteen characters pass, seventeen do not.
    #[test]
    fn length_limit() {
        assert_eq!(check(&"a".repeat(MAX_NAME)), Ok(()));
        assert_eq!(check(&"a".repeat(MAX_NAME + 1)), Err(NameError::TooLong));
        // Characters, not bytes: 16 of these is not "too long".
        assert_eq!(check(&"é".repeat(MAX_NAME)), Err(NameError::BadStart));
    }

    /// The first character must be an ASCII letter.
    #[test]
    fn bad_start() {
        for name in ["1abc", "-a", "_a", ".a", "éa", " a"] {
            assert_eq!(check(name), Err(NameError::BadStart), "{name}");
        }
    }

    /// Other characters are named in the refusal.
    #[test]
    fn bad_chars() {
        assert_eq!(check("x y"), Err(NameError::BadChar(' ')));
        assert_eq!(check("a<b>"), Err(NameError::BadChar('<')));
        assert_eq!(check("aé"), Err(NameError::BadChar('é')));
        assert_eq!(check("a\x1b"), Err(NameError::BadChar('\x1b')));
    }

    /// `server` and `guest-...` are reserved whatever the case.
    #[test]
    fn reserved() {
        for name in [
            "server", "SERVER", "Server", "guest-1", "GUEST-7", "Guest-", "guest-x",
        ] {
            assert_eq!(check(name), Err(NameError::Reserved), "{name}");
        }
    }

    /// Guest names count up and are themselves reserved.
    #[test]
    fn guest_names() {
        assert_eq!(guest(1), "guest-1");
        assert_eq!(guest(42), "guest-42");
        assert_eq!(check(&guest(3)), Err(NameError::Reserved));
    }

    /// Each message is one printable line and shows a bad character escaped.
    #[test]
    fn messages_are_one_line() {
        let errors = [
            NameError::Empty,
            NameError::TooLong,
            NameError::BadStart,
            NameError::BadChar(' '),
            NameError::BadChar('\n'),
            NameError::Reserved,
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.is_empty());
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        assert_eq!(
            NameError::BadChar(' ').to_string(),
            "a name may not contain ' ': only letters, digits, -, _ and . may be used"
        );
        assert!(NameError::BadChar('\x1b').to_string().contains("'\\u{1b}'"));
        assert!(NameError::TooLong.to_string().contains("16"));
    }
}

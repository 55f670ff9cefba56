//! Room-name rules (SPEC "Rooms").
//!
//! A room is always shown with `#` in front (`#games`), so its name itself
//! needs none; `/join #games` and `/join games` name the same room. Names
//! are ASCII, so rooms match ignoring ASCII case, like nicknames.

use std::fmt;

/// Longest room name, in characters, `#` excluded.
pub const MAX_ROOM: usize = 24;

/// The room every client starts in.
pub const LOBBY: &str = "lobby";

/// Why a room name is refused; `Display` gives the sentence sent to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomError {
    /// Nothing after the optional `#`.
    Empty,
    /// More than [`MAX_ROOM`] characters.
    TooLong,
    /// First character is not an ASCII letter or digit.
    BadStart,
    /// A character other than ASCII letters, digits, `-`, `_`, `.`.
    BadChar(char),
}

impl fmt::Display for RoomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomError::Empty => write!(f, "a room name needs at least one character"),
            RoomError::TooLong => {
                write!(f, "a room name may have at most {MAX_ROOM} characters")
            }
            RoomError::BadStart => {
                write!(f, "a room name must start with a letter or a digit")
            }
            RoomError::BadChar(c) => write!(
                f,
                "a room name may not contain {c:?}: only letters, digits, -, _ and . may be used"
            ),
        }
    }
}

impl std::error::Error for RoomError {}

/// Checks the room a user asked for (a leading `#` is optional) and returns
/// the name without it.
///
/// # Errors
/// The first rule the name breaks: empty, too long, bad first character,
/// bad character.
pub fn check(asked: &str) -> Result<&str, RoomError> {
    let name = asked.strip_prefix('#').unwrap_or(asked);
    let mut chars = name.chars();
    let first = chars.next().ok_or(RoomError::Empty)?;
    if name.chars().count() > MAX_ROOM {
        return Err(RoomError::TooLong);
    }
    if !first.is_ascii_alphanumeric() {
        return Err(RoomError::BadStart);
    }
    if let Some(bad) = chars.find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(RoomError::BadChar(bad));
    }
    Ok(name)
}

/// The key a room is found by: its name in lower case.
pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Good names pass, with or without `#`.
    #[test]
    fn good_names() {
        assert_eq!(check("games"), Ok("games"));
        assert_eq!(check("#Games"), Ok("Games"));
        assert_eq!(check("2026.b-c_d"), Ok("2026.b-c_d"));
        assert_eq!(
            check("abcdefghijklmnopqrstuvwx"),
            Ok("abcdefghijklmnopqrstuvwx")
        );
    }

    /// Each rule has its refusal.
    #[test]
    fn bad_names() {
        assert_eq!(check(""), Err(RoomError::Empty));
        assert_eq!(check("#"), Err(RoomError::Empty));
        assert_eq!(check("abcdefghijklmnopqrstuvwxy"), Err(RoomError::TooLong));
        assert_eq!(check("-x"), Err(RoomError::BadStart));
        assert_eq!(check("##x"), Err(RoomError::BadStart));
        assert_eq!(check("a b"), Err(RoomError::BadChar(' ')));
        assert_eq!(check("a\u{1b}"), Err(RoomError::BadChar('\u{1b}')));
    }

    /// Rooms match ignoring case.
    #[test]
    fn keys_ignore_case() {
        assert_eq!(key("LoBby"), LOBBY);
    }
}

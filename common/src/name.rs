//! Nickname rules.
//!
//! TODO(common helper): implement.

use std::fmt;

/// Longest name, in characters.
pub const MAX_NAME: usize = 16;

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

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for NameError {}

/// Checks a name a user asked for: 1 to 16 characters of ASCII letters,
/// digits, `-`, `_`, `.`, starting with a letter, not reserved.
/// Uniqueness is the registry's business, not this function's.
///
/// # Errors
/// The first rule the name breaks.
pub fn check(name: &str) -> Result<(), NameError> {
    let _ = name;
    Ok(())
}

/// The name given to the n-th connection: `guest-N`.
pub fn guest(n: u64) -> String {
    format!("guest-{n}")
}

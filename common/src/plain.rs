//! I/O errors in plain words, for the one line a user reads.

use std::io;

/// The operating system's description of `err` without its `(os error N)`
/// tail, first letter lowercased, so it reads as the end of a sentence
/// (`cannot listen on 0.0.0.0:2000: address already in use`).
pub fn plain(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number goes, the words stay.
    #[test]
    fn os_errors_lose_their_number() {
        // EHOSTUNREACH on Linux; the kind has no stable name before Rust 1.83.
        let words = plain(&io::Error::from_raw_os_error(113));
        assert!(!words.contains("os error"), "{words}");
        assert!(words.starts_with(char::is_lowercase), "{words}");
        assert_eq!(plain(&io::Error::other("Plain")), "plain");
        assert_eq!(plain(&io::Error::other("")), "unknown error");
    }
}

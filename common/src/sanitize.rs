//! Making text from a client harmless before anyone else sees it.
//!
//! Every line a client sends ends up on other people's terminals. Raw control
//! characters there would let a client move the cursor, rewrite what is shown
//! (a CR and then `<alice> ...` forges someone else's line), change colours or
//! the window title, and bidi overrides would let it hide or reorder its own
//! name. So each such character is replaced by a visible stand-in: the other
//! users still see that *something* was sent, but nothing acts on it.
//!
//! C0 controls get their Unicode control picture (ESC shows as `␛`), which
//! keeps them recognisable; the rest get U+FFFD.

use std::borrow::Cow;

/// First Unicode control picture: U+2400 `␀` stands for NUL, and the C0
/// controls follow it in order.
const CONTROL_PICTURES: u32 = 0x2400;

/// Control picture for DEL.
const DEL_PICTURE: char = '\u{2421}';

/// How many times its length in bytes a line can grow on its way to the
/// others: a one-byte control becomes a three-byte stand-in here, and an
/// invalid byte a three-byte U+FFFD when the line is decoded. So a line of
/// `--max-line` bytes is at most this many times that once shown.
pub const MAX_GROWTH: usize = 3;

/// Replaces every C0 control but TAB (U+0000..U+001F), DEL (U+007F), every C1
/// control (U+0080..U+009F) and the bidi embedding/override/isolate
/// characters (U+202A..U+202E, U+2066..U+2069) with a visible stand-in, so no
/// client can forge a prefix, move the cursor, or hide its own name.
/// Borrows when there is nothing to replace (the common case).
pub fn sanitize(text: &str) -> Cow<'_, str> {
    let Some(first) = text.find(|c| stand_in(c).is_some()) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        out.push(stand_in(c).unwrap_or(c));
    }
    Cow::Owned(out)
}

/// What `c` must be shown as, or `None` if it is harmless as it is.
fn stand_in(c: char) -> Option<char> {
    match c {
        '\t' => None,
        '\0'..='\u{1f}' => char::from_u32(CONTROL_PICTURES + c as u32),
        '\u{7f}' => Some(DEL_PICTURE),
        '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            Some(char::REPLACEMENT_CHARACTER)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ordinary text, TAB and non-ASCII letters are borrowed untouched.
    #[test]
    fn harmless_text_is_borrowed() {
        for text in [
            "",
            "hello",
            "a\tb",
            "héllo wörld ✓ 日本",
            "<alice> hi",
            "\u{a0}",
        ] {
            assert!(matches!(sanitize(text), Cow::Borrowed(t) if t == text));
        }
    }

    /// C0 controls become their control pictures.
    #[test]
    fn c0_controls_become_pictures() {
        assert_eq!(sanitize("\0"), "\u{2400}");
        assert_eq!(sanitize("a\x1b[2Jb"), "a\u{241b}[2Jb");
        assert_eq!(sanitize("x\r<bob> hi"), "x\u{240d}<bob> hi");
        assert_eq!(sanitize("\n"), "\u{240a}");
        assert_eq!(sanitize("\x1f"), "\u{241f}");
        assert_eq!(sanitize("\x07"), "\u{2407}");
    }

    /// DEL gets its own picture.
    #[test]
    fn del_becomes_picture() {
        assert_eq!(sanitize("a\x7fb"), "a\u{2421}b");
    }

    /// C1 controls (including the 8-bit CSI) become U+FFFD.
    #[test]
    fn c1_controls_are_replaced() {
        assert_eq!(
            sanitize("\u{80}x\u{9b}2J\u{9f}"),
            "\u{fffd}x\u{fffd}2J\u{fffd}"
        );
    }

    /// Bidi embeddings, overrides and isolates become U+FFFD; their
    /// neighbours do not.
    #[test]
    fn bidi_controls_are_replaced() {
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            assert_eq!(sanitize(&format!("a{c}b")), "a\u{fffd}b");
        }
        for c in ['\u{2029}', '\u{202f}', '\u{2065}', '\u{206a}'] {
            let text = format!("a{c}b");
            assert_eq!(sanitize(&text), text);
        }
    }

    /// No stand-in makes text grow by more than [`MAX_GROWTH`]: the
    /// one-byte controls (the worst case), two-byte C1 and three-byte bidi.
    #[test]
    fn growth_is_bounded() {
        for c in ('\0'..='\u{9f}').chain('\u{2000}'..='\u{2100}') {
            let text = c.to_string();
            assert!(sanitize(&text).len() <= MAX_GROWTH * text.len(), "{c:?}");
        }
        assert_eq!(sanitize("\0").len(), MAX_GROWTH);
        assert_eq!(char::REPLACEMENT_CHARACTER.len_utf8(), MAX_GROWTH);
    }

    /// Text before the first replacement is kept as is.
    #[test]
    fn prefix_is_kept() {
        assert_eq!(sanitize("é\u{202e}olleh"), "é\u{fffd}olleh");
    }
}

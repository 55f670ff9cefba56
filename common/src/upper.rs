//! Streaming uppercase for `--mode upper`.
//!
//! The uppercase server of the labs answers every read at once, without
//! waiting for a newline, so it cannot decode whole lines: a character such
//! as `é` (two bytes) may arrive split across two reads. [`Upcaser`] holds
//! back only the start of such a character, at most 3 bytes, until the rest
//! arrives. Bytes that are not UTF-8 are no text to uppercase, and the echo
//! contract is "what you sent comes back", so they pass through byte for byte
//! instead of being replaced.

use std::str;

/// Longest UTF-8 sequence, in bytes.
const MAX_UTF8: usize = 4;

/// Uppercases a byte stream by Unicode character. A UTF-8 sequence split
/// between two chunks is held back (at most 3 bytes) until it is whole;
/// bytes that are not UTF-8 pass through unchanged.
#[derive(Debug, Default)]
pub struct Upcaser {
    /// The start of a character whose remaining bytes have not arrived yet:
    /// always a valid but incomplete UTF-8 prefix, `held_len` bytes long.
    held: [u8; MAX_UTF8 - 1],
    /// How many bytes of `held` are in use.
    held_len: usize,
}

impl Upcaser {
    /// A new, empty upcaser.
    pub fn new() -> Self {
        Upcaser::default()
    }

    /// Appends the uppercase of `input` to `out`, holding back an incomplete
    /// trailing UTF-8 sequence.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let Some(input) = self.complete_held(input, out) else {
            return;
        };
        let tail = upcase_valid(input, out);
        self.held[..tail.len()].copy_from_slice(tail);
        self.held_len = tail.len();
    }

    /// Flushes what is held back (at end of stream) unchanged to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.held[..self.held_len]);
        self.held_len = 0;
    }

    /// Finishes the held character with the first bytes of `input` (or finds
    /// it was never going to be one) and returns the input not yet used;
    /// `None` when all of `input` joined the held bytes and the character is
    /// still not whole.
    fn complete_held<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
        let held = self.held_len;
        if held == 0 {
            return Some(input);
        }
        // Enough bytes to settle one character whatever it is.
        let mut joined = [0; MAX_UTF8];
        let borrowed = input.len().min(MAX_UTF8 - held);
        joined[..held].copy_from_slice(&self.held[..held]);
        joined[held..held + borrowed].copy_from_slice(&input[..borrowed]);
        let joined = &joined[..held + borrowed];
        let used = match str::from_utf8(joined) {
            Ok(text) => upcase_first(text, out),
            Err(e) if e.valid_up_to() > 0 => {
                // Cannot fail: the bytes up to `valid_up_to` are UTF-8.
                let text = str::from_utf8(&joined[..e.valid_up_to()]).expect("valid prefix");
                upcase_first(text, out)
            }
            Err(e) => match e.error_len() {
                Some(bad) => {
                    out.extend_from_slice(&joined[..bad]);
                    bad
                }
                None => {
                    // Still incomplete: every input byte joined the held ones.
                    self.held[..joined.len()].copy_from_slice(joined);
                    self.held_len = joined.len();
                    return None;
                }
            },
        };
        self.held_len = 0;
        // The held bytes were a valid prefix, so whatever settled them
        // includes all of them.
        Some(&input[used - held..])
    }
}

/// Uppercases the first character of `text` into `out`; returns its length.
fn upcase_first(text: &str, out: &mut Vec<u8>) -> usize {
    let first = text.chars().next().map_or(0, char::len_utf8);
    upcase_str(&text[..first], out);
    first
}

/// Uppercases `bytes` into `out`, passing invalid bytes through, and returns
/// an incomplete character at the very end (not written).
fn upcase_valid<'a>(mut bytes: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
    loop {
        match str::from_utf8(bytes) {
            Ok(text) => {
                upcase_str(text, out);
                return &[];
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                // Cannot fail: `valid_up_to` says so.
                upcase_str(str::from_utf8(valid).expect("valid prefix"), out);
                match e.error_len() {
                    Some(bad) => {
                        out.extend_from_slice(&rest[..bad]);
                        bytes = &rest[bad..];
                    }
                    None => return rest,
                }
            }
        }
    }
}

/// Appends the uppercase of `text`, one character at a time (`ß` becomes
/// `SS`), with no allocation.
fn upcase_str(text: &str, out: &mut Vec<u8>) {
    if text.is_ascii() {
        out.extend(text.bytes().map(|b| b.to_ascii_uppercase()));
        return;
    }
    let mut utf8 = [0; MAX_UTF8];
    for c in text.chars().flat_map(char::to_uppercase) {
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn upcase_chunks(chunks: &[&[u8]]) -> Vec<u8> {
        let mut upcaser = Upcaser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            upcaser.push(chunk, &mut out);
        }
        upcaser.finish(&mut out);
        out
    }

    /// ASCII and non-ASCII letters are uppercased; other text is kept.
    #[test]
    fn uppercases_by_character() {
        assert_eq!(
            upcase_chunks(&[b"hello, world 42!\n"]),
            b"HELLO, WORLD 42!\n"
        );
        assert_eq!(
            upcase_chunks(&["hello wörld".as_bytes()]),
            "HELLO WÖRLD".as_bytes()
        );
        assert_eq!(
            upcase_chunks(&["straße ǆ".as_bytes()]),
            "STRASSE Ǆ".as_bytes()
        );
        assert_eq!(upcase_chunks(&["日本 ✓".as_bytes()]), "日本 ✓".as_bytes());
    }

    /// A character split between reads is held until it is whole.
    #[test]
    fn split_character_is_held() {
        let mut upcaser = Upcaser::new();
        let mut out = Vec::new();
        upcaser.push(b"w\xc3", &mut out);
        assert_eq!(out, b"W");
        upcaser.push(b"\xb6rld", &mut out);
        assert_eq!(out, "WÖRLD".as_bytes());
        // A four-byte character arriving one byte at a time.
        let mut out = Vec::new();
        for &b in "a😀".as_bytes() {
            upcaser.push(&[b], &mut out);
        }
        assert_eq!(out, "A😀".as_bytes());
    }

    /// Invalid bytes pass through unchanged, also when they end a read.
    #[test]
    fn invalid_bytes_pass_through() {
        assert_eq!(upcase_chunks(&[b"a\xffb\x80c"]), b"A\xffB\x80C");
        assert_eq!(upcase_chunks(&[b"a\xc3", b"b"]), b"A\xc3B");
        assert_eq!(upcase_chunks(&[b"\xf0\x9f", b"x"]), b"\xf0\x9fX");
        assert_eq!(upcase_chunks(&[b"\xed\xa0\x80z"]), b"\xed\xa0\x80Z");
    }

    /// `finish` flushes a dangling partial character as it was.
    #[test]
    fn finish_flushes_held_bytes() {
        let mut upcaser = Upcaser::new();
        let mut out = Vec::new();
        upcaser.push(b"ok\xe2\x82", &mut out);
        assert_eq!(out, b"OK");
        upcaser.finish(&mut out);
        assert_eq!(out, b"OK\xe2\x82");
        upcaser.push(b"x", &mut out);
        assert_eq!(out, b"OK\xe2\x82X");
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                any::<u8>().prop_map(|b| vec![b]),
                any::<char>().prop_map(|c| c.to_string().into_bytes()),
                "[a-zß-ÿ ]{1,4}".prop_map(String::into_bytes),
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        /// However the input is cut, the output is the same.
        #[test]
        fn chunking_does_not_matter(
            data in bytes(),
            cuts in proptest::collection::vec(0usize..100, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for cut in cuts {
                chunks.push(&data[from..cut]);
                from = cut;
            }
            chunks.push(&data[from..]);
            prop_assert_eq!(upcase_chunks(&chunks), upcase_chunks(&[&data]));
        }

        /// On valid UTF-8 it agrees with `str::to_uppercase`.
        #[test]
        fn matches_std_on_text(text in any::<String>(), cut in 0usize..64) {
            let bytes = text.as_bytes();
            let cut = cut.min(bytes.len());
            let out = upcase_chunks(&[&bytes[..cut], &bytes[cut..]]);
            prop_assert_eq!(out, text.to_uppercase().into_bytes());
        }
    }
}

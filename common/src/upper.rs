//! Streaming uppercase for `--mode upper`.
//!
//! TODO(common helper): implement.

/// Uppercases a byte stream by Unicode character. A UTF-8 sequence split
/// between two chunks is held back (at most 3 bytes) until it is whole;
/// bytes that are not UTF-8 pass through unchanged.
#[derive(Debug, Default)]
pub struct Upcaser {}

impl Upcaser {
    /// A new, empty upcaser.
    pub fn new() -> Self {
        Upcaser::default()
    }

    /// Appends the uppercase of `input` to `out`, holding back an incomplete
    /// trailing UTF-8 sequence.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(input);
    }

    /// Flushes what is held back (at end of stream) unchanged to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }
}

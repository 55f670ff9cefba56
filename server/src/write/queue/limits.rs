//! How much one client's queue may hold: `--sendq`, `--sendq-bytes`, and
//! the allowance while the socket takes everything (see the parent
//! module's docs).

use super::LAG_ALLOWANCE;

/// How much one client's queue may hold. Fixed for the server's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `--sendq`: lines that may pile up once the client's socket is full.
    pub lines: usize,
    /// Lines the queue may hold while the socket takes everything:
    /// [`LAG_ALLOWANCE`] times the larger of `--sendq` and a paste (`--burst`
    /// lines, and at least one relay batch). A paste is pushed to every
    /// reader, in relay batches, before a flusher may get the CPU to send any
    /// of it; with a small `--sendq`, an allowance of `LAG_ALLOWANCE *
    /// --sendq` alone dropped readers that read at full speed. Counted in
    /// pastes, it holds four at once.
    pub lag_lines: usize,
    /// `--sendq-bytes`: bytes that may pile up once the socket is full
    /// ([`LAG_ALLOWANCE`] times that before).
    pub bytes: usize,
}

impl Limits {
    /// The limits for `--sendq`, `--sendq-bytes` and a paste of `paste`
    /// lines (`--burst`, at least one relay batch).
    pub fn new(sendq: usize, sendq_bytes: usize, paste: usize) -> Limits {
        Limits {
            lines: sendq,
            lag_lines: sendq.max(paste).saturating_mul(LAG_ALLOWANCE),
            bytes: sendq_bytes,
        }
    }
}

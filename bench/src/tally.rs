//! Accounting of what was sent and what each client received: sequence
//! numbers per (receiver, sender) pair, latency from the embedded send time,
//! lines duplicated, out of order or garbled.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use memchr::memmem::Finder;

use crate::marker::{self, Found, Marker};

/// A partial line longer than this is thrown away: a server that never sends
/// a newline must not make the generator grow without bound.
const MAX_PARTIAL: usize = 1 << 20;
/// Largest latency the histogram holds exactly (longer ones saturate).
const MAX_LATENCY_NS: u64 = 120_000_000_000;

/// One line of a closed-loop sender not yet received by everyone.
#[derive(Debug)]
pub struct InFlight {
    /// Its sequence number.
    pub seq: u64,
    /// Healthy receivers that have not seen it yet.
    pub remaining: u32,
    /// When it was sent.
    pub sent: Instant,
}

/// Per-sender state.
#[derive(Debug)]
pub struct Sender {
    /// The index of the client that sends for it.
    pub client: usize,
    /// Next sequence number, which is also how many lines it has sent.
    pub next_seq: u64,
    /// Closed loop: lines in flight, oldest first, consecutive seqs.
    pub inflight: VecDeque<InFlight>,
    /// Open loop: when the next line is due.
    pub next_due: Instant,
}

/// Which sequence numbers one receiver has seen from one sender.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// One bit per sequence number.
    bits: Vec<u64>,
    /// Highest seen so far.
    max: Option<u64>,
}

impl Seen {
    /// Records `seq`: `None` if it was seen before, else whether it came
    /// after a higher one (out of order).
    fn insert(&mut self, seq: u64) -> Option<bool> {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit != 0 {
            return None;
        }
        self.bits[word] |= bit;
        let late = matches!(self.max, Some(m) if seq < m);
        if !late {
            self.max = Some(seq);
        }
        Some(late)
    }
}

/// Receive-side state of one client.
#[derive(Debug)]
pub struct Rx {
    /// Its sender index, if it sends (it never expects its own lines).
    pub sender: Option<usize>,
    /// Stops reading after its first line.
    pub stalled: bool,
    /// Got its first line (the welcome) and was not refused.
    pub ready: bool,
    /// A first line starting with `! ` (server full, per-IP cap...).
    pub refused: Option<String>,
    /// Bytes after the last newline.
    partial: Vec<u8>,
    /// Per sender.
    seen: Vec<Seen>,
    /// Distinct benchmark lines received.
    pub unique: u64,
}

impl Rx {
    /// State for a new client.
    pub fn new(sender: Option<usize>, stalled: bool, senders: usize) -> Rx {
        Rx {
            sender,
            stalled,
            ready: false,
            refused: None,
            partial: Vec::new(),
            seen: vec![Seen::default(); senders],
            unique: 0,
        }
    }
}

/// Counters and the latency histogram shared by all clients.
pub struct Tally {
    /// Time zero of every embedded timestamp.
    epoch: Instant,
    /// Measured window, in ns since `epoch`: [start, end).
    window: (u64, u64),
    /// Every sender, by sender index.
    pub senders: Vec<Sender>,
    /// Searches lines for the marker.
    finder: Finder<'static>,
    /// Latency of lines sent or received in the window, in ns.
    pub hist: Histogram<u64>,
    /// Benchmark lines received by healthy clients within the window.
    pub delivered: u64,
    /// Lines received a second time by the same client.
    pub dups: u64,
    /// Lines received after a later line of the same sender.
    pub out_of_order: u64,
    /// Lines whose marker was cut (or mangled) by the server.
    pub garbled: u64,
    /// Closed-loop lines that stopped holding a window slot undelivered.
    pub ack_timeouts: u64,
}

impl Tally {
    /// Accounting for `senders` senders (clients 0..senders).
    pub fn new(senders: usize) -> Tally {
        let epoch = Instant::now();
        Tally {
            epoch,
            window: (u64::MAX, u64::MAX),
            senders: (0..senders)
                .map(|client| Sender {
                    client,
                    next_seq: 0,
                    inflight: VecDeque::new(),
                    next_due: epoch,
                })
                .collect(),
            finder: Finder::new(marker::OPEN).into_owned(),
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant bounds are valid"),
            delivered: 0,
            dups: 0,
            out_of_order: 0,
            garbled: 0,
            ack_timeouts: 0,
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sets the measured window.
    pub fn set_window(&mut self, start: Instant, end: Instant) {
        self.window = (self.ns(start), self.ns(end));
    }

    /// Lines sent by all senders so far.
    pub fn sent_total(&self) -> u64 {
        self.senders.iter().map(|s| s.next_seq).sum()
    }

    /// Appends sender `s`'s next line to `out`; closed loop: it takes a
    /// window slot until `expect` receivers have it.
    pub fn send(&mut self, s: usize, out: &mut Vec<u8>, len: usize, expect: usize, closed: bool) {
        let now = Instant::now();
        let t_ns = self.ns(now);
        let sender = &mut self.senders[s];
        let seq = sender.next_seq;
        sender.next_seq += 1;
        marker::write_line(
            out,
            Marker {
                sender: s,
                seq,
                t_ns,
            },
            len,
        );
        if closed {
            sender.inflight.push_back(InFlight {
                seq,
                remaining: u32::try_from(expect).unwrap_or(u32::MAX),
                sent: now,
            });
        }
    }

    /// Frees the window slots of lines everyone has, or that timed out.
    pub fn retire(&mut self, s: usize, now: Instant, timeout: Duration) {
        let sender = &mut self.senders[s];
        while let Some(f) = sender.inflight.front() {
            if f.remaining == 0 {
                sender.inflight.pop_front();
            } else if now.saturating_duration_since(f.sent) > timeout {
                self.ack_timeouts += 1;
                sender.inflight.pop_front();
            } else {
                break;
            }
        }
    }

    /// Handles bytes received by one client; true if it just became ready.
    pub fn take_bytes(&mut self, rx: &mut Rx, data: &[u8]) -> bool {
        let now = self.ns(Instant::now());
        let mut became_ready = false;
        let mut partial = std::mem::take(&mut rx.partial);
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            let piece = &data[start..nl];
            if partial.is_empty() {
                became_ready |= self.on_line(rx, piece, now);
            } else {
                partial.extend_from_slice(piece);
                became_ready |= self.on_line(rx, &partial, now);
                partial.clear();
            }
            start = nl + 1;
        }
        partial.extend_from_slice(&data[start..]);
        if partial.len() > MAX_PARTIAL {
            partial.clear();
        }
        rx.partial = partial;
        became_ready
    }

    fn on_line(&mut self, rx: &mut Rx, line: &[u8], now: u64) -> bool {
        let mut became_ready = false;
        if !rx.ready && rx.refused.is_none() {
            if line.starts_with(b"! ") {
                rx.refused = Some(String::from_utf8_lossy(line).into_owned());
            } else {
                rx.ready = true;
                became_ready = true;
            }
        }
        match marker::find(line, &self.finder) {
            Found::None => {}
            Found::Garbled => self.garbled += 1,
            Found::Marker(m) => self.on_marker(rx, m, now),
        }
        became_ready
    }

    fn on_marker(&mut self, rx: &mut Rx, m: Marker, now: u64) {
        // A marker naming a line never sent was mangled into another number.
        let sent = self.senders.get(m.sender).map_or(0, |s| s.next_seq);
        if m.seq >= sent || m.t_ns > now {
            self.garbled += 1;
            return;
        }
        if rx.sender == Some(m.sender) {
            // Our own line echoed back: neither server does this.
            return;
        }
        let Some(late) = rx.seen[m.sender].insert(m.seq) else {
            self.dups += 1;
            return;
        };
        if late {
            self.out_of_order += 1;
        }
        rx.unique += 1;
        if rx.stalled {
            return;
        }
        let sender = &mut self.senders[m.sender];
        if let Some(front) = sender.inflight.front() {
            if m.seq >= front.seq {
                let idx = (m.seq - front.seq) as usize;
                if let Some(f) = sender.inflight.get_mut(idx) {
                    f.remaining = f.remaining.saturating_sub(1);
                }
            }
        }
        let (start, end) = self.window;
        let received_in = (start..end).contains(&now);
        if received_in {
            self.delivered += 1;
        }
        // Latency counts every line in flight during the window: sent in it,
        // or received in it (a server that lags shows its backlog here).
        if received_in || (start..end).contains(&m.t_ns) {
            self.hist.saturating_record((now - m.t_ns).max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_counts_dups_and_late_lines() {
        let mut s = Seen::default();
        assert_eq!(s.insert(0), Some(false));
        assert_eq!(s.insert(2), Some(false));
        assert_eq!(s.insert(1), Some(true));
        assert_eq!(s.insert(2), None);
        assert_eq!(s.insert(200), Some(false));
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut t = Tally::new(2);
        let mut rx = Rx::new(None, false, 2);
        let mut out = Vec::new();
        t.send(1, &mut out, 40, 1, true);
        let mut data = b"* welcome, guest-1!\n<guest-2> ".to_vec();
        data.extend_from_slice(&out);
        let (a, b) = data.split_at(35);
        assert!(t.take_bytes(&mut rx, a));
        assert!(!t.take_bytes(&mut rx, b));
        assert_eq!(rx.unique, 1);
        assert_eq!(t.senders[1].inflight[0].remaining, 0);
        assert!(!t.take_bytes(&mut rx, &data[20..]));
        assert_eq!((rx.unique, t.dups), (1, 1));
    }
}

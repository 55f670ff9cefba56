//! Accounting of what was sent and what each client received: sequence
//! numbers per (receiver, sender) pair, latency from the embedded send time
//! (to the read, and to the arrival in the socket: [`stamp`](crate::stamp)),
//! lines duplicated, out of order, garbled or shown in the wrong room.
//!
//! A line's expected recipients are the other members of its sender's room
//! (everyone, in a workload without rooms): [`Tally::expected`].

use std::{
    collections::BTreeSet,
    collections::VecDeque,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use memchr::memmem::Finder;

use crate::{
    marker::{self, Found, Marker},
    rooms,
};

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
    /// Its room (0 in a workload without rooms): only that room's other
    /// members expect its lines.
    pub room: usize,
    /// Next sequence number, which is also how many lines it has sent.
    pub next_seq: u64,
    /// Closed loop: lines in flight, oldest first, consecutive seqs.
    pub inflight: VecDeque<InFlight>,
    /// Open loop: when the next line is due.
    pub next_due: Instant,
}

/// Which sequence numbers one receiver has seen from one sender. Lines
/// mostly come in order, so it keeps where the unbroken run of seen ones
/// ends, in place: the usual line touches this struct alone (a bitmap per
/// receiver and sender cost a cache miss per line, a quarter of the
/// generator's time at 300 receivers). Only lines seen past a gap are
/// kept one by one.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Every sequence number below it was seen.
    floor: u64,
    /// Those seen above `floor` (past a gap: a line late or lost).
    above: BTreeSet<u64>,
    /// Highest seen so far.
    max: Option<u64>,
}

impl Seen {
    /// Records `seq`: `None` if it was seen before, else whether it came
    /// after a higher one (out of order).
    fn insert(&mut self, seq: u64) -> Option<bool> {
        if seq < self.floor || self.above.contains(&seq) {
            return None;
        }
        let late = matches!(self.max, Some(m) if seq < m);
        if !late {
            self.max = Some(seq);
        }
        if seq == self.floor {
            self.floor += 1;
            while self.above.remove(&self.floor) {
                self.floor += 1;
            }
        } else {
            self.above.insert(seq);
        }
        Some(late)
    }
}

/// How far a client has got into the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its first line.
    Connecting,
    /// Welcomed, its `/join` sent, waiting for the answer.
    Joining,
    /// In its room: lines may be sent.
    Ready,
}

/// What one batch of received bytes changed for its client.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing about its readiness.
    Nothing,
    /// Welcomed and has a room to go to: send its `/join` now.
    Welcomed,
    /// Just became ready.
    Ready,
    /// Its `/join` was answered with `! ` (in `Rx::refused`).
    Refused,
}

impl Step {
    /// The later of two steps of the same client (`Refused` wins).
    fn then(self, next: Step) -> Step {
        let rank = |s: Step| match s {
            Step::Nothing => 0,
            Step::Welcomed => 1,
            Step::Ready => 2,
            Step::Refused => 3,
        };
        if rank(next) > rank(self) {
            next
        } else {
            self
        }
    }
}

/// Receive-side state of one client.
#[derive(Debug)]
pub struct Rx {
    /// Its sender index, if it sends (it never expects its own lines).
    pub sender: Option<usize>,
    /// Stops reading once ready.
    pub stalled: bool,
    /// Its room (0 in a workload without rooms), for the expected lines and
    /// the wrong-room check.
    pub room: usize,
    /// The room it must `/join` once welcomed (`None`: it stays put).
    pub join: Option<String>,
    /// Its own name, from the welcome: tells the join answer from the
    /// lobby's notices about others.
    name: Option<Vec<u8>>,
    /// Where it is in connecting.
    pub phase: Phase,
    /// A first line, or an answer to `/join`, starting with `! ` (server
    /// full, per-IP cap, too many rooms...).
    pub refused: Option<String>,
    /// Bytes after the last newline.
    partial: Vec<u8>,
    /// Per sender.
    seen: Vec<Seen>,
    /// Distinct benchmark lines received.
    pub unique: u64,
    /// Those lines in order of arrival, as [`order::id`](crate::order::id)s,
    /// when the workload checks the order (else empty).
    pub order: Vec<u64>,
}

impl Rx {
    /// State for a new client; `room` is the room it must join, if any.
    pub fn new(sender: Option<usize>, stalled: bool, senders: usize, room: Option<usize>) -> Rx {
        Rx {
            sender,
            stalled,
            room: room.unwrap_or(0),
            join: room.map(rooms::name),
            name: None,
            phase: Phase::Connecting,
            refused: None,
            partial: Vec::new(),
            seen: vec![Seen::default(); senders],
            unique: 0,
            order: Vec::new(),
        }
    }

    /// In its room: it may be sent to and counts as a receiver.
    pub fn ready(&self) -> bool {
        self.phase == Phase::Ready
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
    /// Latency of lines sent or received in the window, in ns: send to
    /// the generator's read.
    pub hist: Histogram<u64>,
    /// The same lines' latency from send to their arrival in the socket:
    /// the read's latency less how long the read's bytes had waited.
    pub arrival: Histogram<u64>,
    /// How long the bytes of the read being handled had waited, in ns.
    waited: u64,
    /// Benchmark lines received by healthy clients within the window.
    pub delivered: u64,
    /// Lines received a second time by the same client.
    pub dups: u64,
    /// Lines received after a later line of the same sender.
    pub out_of_order: u64,
    /// Lines whose marker was cut (or mangled) by the server.
    pub garbled: u64,
    /// Lines received by a client outside their sender's room.
    pub wrong_room: u64,
    /// Whether each client records its order of arrival (`Rx::order`).
    record_order: bool,
    /// Closed-loop lines that stopped holding a window slot undelivered.
    pub ack_timeouts: u64,
}

impl Tally {
    /// Accounting for one sender per entry of `rooms` (clients
    /// 0..rooms.len()), each in the room given.
    /// `record_order`: every client keeps its lines' order of arrival.
    pub fn new(rooms: &[usize], record_order: bool) -> Tally {
        let epoch = Instant::now();
        Tally {
            epoch,
            window: (u64::MAX, u64::MAX),
            senders: rooms
                .iter()
                .enumerate()
                .map(|(client, &room)| Sender {
                    client,
                    room,
                    next_seq: 0,
                    inflight: VecDeque::new(),
                    next_due: epoch,
                })
                .collect(),
            finder: Finder::new(marker::OPEN).into_owned(),
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant bounds are valid"),
            arrival: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant bounds are valid"),
            waited: 0,
            delivered: 0,
            dups: 0,
            out_of_order: 0,
            garbled: 0,
            wrong_room: 0,
            record_order,
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

    /// Lines sent so far that `rx` should receive: those of the other
    /// senders in its room.
    pub fn expected(&self, rx: &Rx) -> u64 {
        self.senders
            .iter()
            .enumerate()
            .filter(|&(i, s)| s.room == rx.room && rx.sender != Some(i))
            .map(|(_, s)| s.next_seq)
            .sum()
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

    /// Handles bytes received by one client, read `waited` after the last
    /// of them arrived.
    pub fn take_bytes(&mut self, rx: &mut Rx, data: &[u8], waited: Duration) -> Step {
        let now = self.ns(Instant::now());
        self.waited = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        let mut step = Step::Nothing;
        let mut partial = std::mem::take(&mut rx.partial);
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            let piece = &data[start..nl];
            if partial.is_empty() {
                step = step.then(self.on_line(rx, piece, now));
            } else {
                partial.extend_from_slice(piece);
                step = step.then(self.on_line(rx, &partial, now));
                partial.clear();
            }
            start = nl + 1;
        }
        partial.extend_from_slice(&data[start..]);
        if partial.len() > MAX_PARTIAL {
            partial.clear();
        }
        rx.partial = partial;
        step
    }

    fn on_line(&mut self, rx: &mut Rx, line: &[u8], now: u64) -> Step {
        let step = match rx.phase {
            _ if rx.refused.is_some() => Step::Nothing,
            Phase::Connecting if line.starts_with(b"! ") => {
                // The server closes it next: the engine reports it then.
                rx.refused = Some(String::from_utf8_lossy(line).into_owned());
                Step::Nothing
            }
            Phase::Connecting => {
                rx.name = rooms::own_name(line).map(<[u8]>::to_vec);
                if rx.join.is_some() {
                    rx.phase = Phase::Joining;
                    Step::Welcomed
                } else {
                    rx.phase = Phase::Ready;
                    Step::Ready
                }
            }
            Phase::Joining if line.starts_with(b"! ") => {
                rx.refused = Some(String::from_utf8_lossy(line).into_owned());
                Step::Refused
            }
            Phase::Joining => {
                let room = rx.join.as_deref().unwrap_or_default();
                if rooms::is_join_answer(line, room, rx.name.as_deref()) {
                    rx.phase = Phase::Ready;
                    Step::Ready
                } else {
                    Step::Nothing
                }
            }
            Phase::Ready => Step::Nothing,
        };
        match marker::find(line, &self.finder) {
            Found::None => {}
            Found::Garbled => self.garbled += 1,
            Found::Marker(m) => self.on_marker(rx, m, now),
        }
        step
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
        if self.senders[m.sender].room != rx.room {
            // Neither expected nor counted as received: a failure of its own.
            self.wrong_room += 1;
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
        if self.record_order {
            rx.order.push(crate::order::id(m.sender, m.seq));
        }
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
            let latency = now - m.t_ns;
            self.hist.saturating_record(latency.max(1));
            self.arrival
                .saturating_record(latency.saturating_sub(self.waited).max(1));
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
        assert_eq!(s.insert(3), Some(true));
        assert_eq!((s.floor, s.above.len()), (4, 1));
        for seq in [0, 1, 2, 3, 200] {
            assert_eq!(s.insert(seq), None, "{seq} again");
        }
        assert_eq!(s.insert(4), Some(true));
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut t = Tally::new(&[0, 0], false);
        let mut rx = Rx::new(None, false, 2, None);
        let mut out = Vec::new();
        t.send(1, &mut out, 40, 1, true);
        let mut data = b"* welcome, guest-1!\n<guest-2> ".to_vec();
        data.extend_from_slice(&out);
        let (a, b) = data.split_at(35);
        assert_eq!(t.take_bytes(&mut rx, a, Duration::ZERO), Step::Ready);
        assert_eq!(t.take_bytes(&mut rx, b, Duration::ZERO), Step::Nothing);
        assert_eq!(rx.unique, 1);
        assert_eq!(t.senders[1].inflight[0].remaining, 0);
        assert_eq!(
            t.take_bytes(&mut rx, &data[20..], Duration::ZERO),
            Step::Nothing
        );
        assert_eq!((rx.unique, t.dups), (1, 1));
    }

    /// A client with a room is ready only once its `/join` is answered, not
    /// at the welcome nor at a lobby notice naming the same room.
    #[test]
    fn a_room_client_is_ready_at_the_join_answer() {
        let mut t = Tally::new(&[], false);
        let mut rx = Rx::new(None, false, 0, Some(2));
        assert_eq!(rx.join.as_deref(), Some("room-3"));
        let welcome = b"* welcome, guest-9! 12 online; type /help for commands\n";
        assert_eq!(
            t.take_bytes(&mut rx, welcome, Duration::ZERO),
            Step::Welcomed
        );
        assert!(!rx.ready());
        let lobby = b"* guest-4 left for #room-3\n* guest-10 joined (12 online)\n";
        assert_eq!(t.take_bytes(&mut rx, lobby, Duration::ZERO), Step::Nothing);
        assert_eq!(rx.phase, Phase::Joining);
        assert_eq!(
            t.take_bytes(&mut rx, b"* you are in #room-3 (5 here)\n", Duration::ZERO),
            Step::Ready
        );
        assert!(rx.ready());
        assert_eq!(
            t.take_bytes(&mut rx, b"* guest-11 joined #room-3\n", Duration::ZERO),
            Step::Nothing
        );
    }

    /// A `! ` answer to `/join` (too many rooms) is a refusal the engine sees
    /// at once, though the server keeps the connection open.
    #[test]
    fn a_refused_join_is_reported() {
        let mut t = Tally::new(&[], false);
        let mut rx = Rx::new(None, false, 0, Some(0));
        assert_eq!(
            t.take_bytes(&mut rx, b"* welcome, guest-1!\n", Duration::ZERO),
            Step::Welcomed
        );
        let no = b"! too many rooms (256)\n* guest-2 joined (2 online)\n";
        assert_eq!(t.take_bytes(&mut rx, no, Duration::ZERO), Step::Refused);
        assert_eq!(rx.refused.as_deref(), Some("! too many rooms (256)"));
        assert!(!rx.ready());
    }

    /// A line from another room is counted as such, and neither as received
    /// nor as a window acknowledgement.
    #[test]
    fn a_line_from_another_room_is_a_failure_not_a_delivery() {
        let mut t = Tally::new(&[0, 1], false);
        let mut rx = Rx::new(None, false, 2, Some(0));
        assert_eq!(
            t.take_bytes(&mut rx, b"* welcome, guest-3!\n", Duration::ZERO),
            Step::Welcomed
        );
        assert_eq!(
            t.take_bytes(&mut rx, b"* in #room-1\n", Duration::ZERO),
            Step::Ready
        );
        let mut out = Vec::new();
        t.send(0, &mut out, 40, 1, true);
        t.send(1, &mut out, 40, 1, true);
        assert_eq!(t.take_bytes(&mut rx, &out, Duration::ZERO), Step::Nothing);
        assert_eq!((rx.unique, t.wrong_room), (1, 1));
        assert_eq!(t.senders[0].inflight[0].remaining, 0);
        assert_eq!(t.senders[1].inflight[0].remaining, 1);
    }

    /// A line's latency at arrival is its latency at the read less how
    /// long the read's bytes had waited, and never below zero (a wall
    /// clock that jumped ahead between arrival and read).
    #[test]
    fn arrival_latency_is_the_read_latency_less_the_wait() {
        let mut t = Tally::new(&[0, 0], false);
        let mut rx = Rx::new(None, false, 2, None);
        let welcome = b"* welcome, guest-1!\n";
        assert_eq!(t.take_bytes(&mut rx, welcome, Duration::ZERO), Step::Ready);
        let start = Instant::now();
        t.set_window(start, start + Duration::from_secs(60));
        let mut out = Vec::new();
        t.send(1, &mut out, 40, 1, false);
        assert_eq!(t.take_bytes(&mut rx, &out, Duration::ZERO), Step::Nothing);
        assert_eq!((t.hist.len(), t.arrival.len()), (1, 1));
        assert_eq!(t.arrival.max(), t.hist.max(), "no wait: the same latency");
        out.clear();
        t.send(1, &mut out, 40, 1, false);
        let waited = Duration::from_secs(3600);
        assert_eq!(t.take_bytes(&mut rx, &out, waited), Step::Nothing);
        assert_eq!((t.hist.len(), t.arrival.len()), (2, 2));
        assert_eq!(t.arrival.min(), 1, "waited longer than its latency");
        assert!(t.hist.min() > 1);
    }

    /// What a client should have received: its room's lines but its own.
    #[test]
    fn expected_lines_are_the_other_senders_of_the_room() {
        let mut t = Tally::new(&[0, 1, 0, 1], false);
        let mut out = Vec::new();
        for (s, n) in [(0, 3), (1, 2), (2, 5), (3, 7)] {
            for _ in 0..n {
                t.send(s, &mut out, 40, 0, false);
            }
        }
        assert_eq!(t.sent_total(), 17);
        assert_eq!(t.expected(&Rx::new(Some(0), false, 4, Some(0))), 5);
        assert_eq!(t.expected(&Rx::new(None, false, 4, Some(0))), 8);
        assert_eq!(t.expected(&Rx::new(Some(3), false, 4, Some(1))), 2);
        assert_eq!(t.expected(&Rx::new(None, false, 4, Some(1))), 9);
        // Without rooms everyone is in room 0 and expects every other line.
        let mut all = Tally::new(&[0, 0], false);
        all.send(0, &mut out, 40, 0, false);
        all.send(1, &mut out, 40, 0, false);
        assert_eq!(all.expected(&Rx::new(Some(1), false, 2, None)), 1);
        assert_eq!(all.expected(&Rx::new(None, false, 2, None)), 2);
    }
}

//! The event loop: every connection of one workload in one thread, driven by
//! mio (edge-triggered epoll), so one process can hold 10,000 of them.
//!
//! Clients are numbered in connection order: the first `senders` send, the
//! next ones only receive, and the last `stalled` never read once they have
//! seen their first line. A client is *ready* when it has received its first
//! line (chat-server's welcome, ncat's announce): only then is the server
//! known to have registered it, and no line is sent before all are ready.
//! In a workload with rooms a client first sends `/join room-K` (see
//! [`rooms`]) and is ready when the server has answered it.
//! With several servers (a cluster), client `i` connects to server
//! `i % servers`, so senders and receivers are spread evenly too.

use std::{
    io::{self, Write},
    net::SocketAddr,
    time::{Duration, Instant},
};

use mio::{net::TcpStream, Events, Interest, Poll, Token};

use crate::{
    procfs, rooms, stamp,
    tally::{Step, Tally},
};

/// Connections opened but not yet welcomed, at most: more would overflow the
/// server's listen backlog (ncat's is small) and cost a SYN retry of a
/// second or more.
const CONNECT_WINDOW: usize = 8;
/// No client welcomed for this long while connecting: give up.
const CONNECT_STALL: Duration = Duration::from_secs(5);
/// A closed-loop line not delivered to everyone after this long stops
/// holding its sender's window (it is counted as lost at the end if it
/// never arrives).
const ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the stalled clients get, once finally read, to show whether the
/// server has closed them.
const STALLED_CHECK: Duration = Duration::from_secs(2);
/// Bytes read from a socket at once.
const READ_CHUNK: usize = 256 * 1024;

/// How many clients of each kind a workload opens.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Clients that read everything (senders included).
    pub clients: usize,
    /// How many of `clients` send.
    pub senders: usize,
    /// Extra clients that stop reading once ready.
    pub stalled: usize,
    /// Rooms the clients are spread over by index (0: no `/join`, everyone
    /// stays in the room the server puts them in).
    pub rooms: usize,
    /// Record every client's order of arrival, to check that all saw their
    /// room's lines in one order ([`order`](crate::order)).
    pub order: bool,
}

/// How senders pace their lines.
#[derive(Debug, Clone, Copy)]
pub enum Traffic {
    /// Each sender keeps `window` lines in flight: a line leaves the window
    /// when every other healthy client has received it.
    Closed { window: usize },
    /// All senders together send `per_second` lines, evenly spread.
    Open { per_second: f64 },
}

/// The timed part of a traffic workload.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Sending before the measured window (not in latency or throughput).
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
    /// After sending stops: how long to wait for lines still in flight.
    pub drain: Duration,
}

/// What a traffic run measured.
pub struct TrafficStats {
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// CPU seconds each watched process spent in the measured window, in
    /// the order given (`None`: one of them is gone).
    pub server_cpu_s: Option<Vec<f64>>,
    /// The generator's own CPU seconds in the measured window.
    pub gen_cpu_s: f64,
    /// Healthy clients the server closed during the run.
    pub dropped_healthy: usize,
    /// Stalled clients the server closed (by the end of the stalled check).
    pub dropped_stalled: usize,
    /// Lines every healthy client still connected should have had but did not.
    pub lost: u64,
}

/// One connection.
struct Client {
    /// The socket; deregistered (but kept) once closed.
    stream: TcpStream,
    /// Why it closed; `None` while open.
    closed: Option<String>,
    /// Bytes queued for the server, from `out_pos` on.
    out: Vec<u8>,
    /// How much of `out` is already written.
    out_pos: usize,
    /// Receive-side state, kept apart so `Tally` can borrow it alone.
    rx: crate::tally::Rx,
}

/// All connections of one workload and the accounting of what they saw.
pub struct Engine {
    /// The epoll instance every client is registered with.
    poll: Poll,
    /// Reused event buffer.
    events: Events,
    /// Reused (client, readable, writable) list taken out of `events`.
    batch: Vec<(usize, bool, bool)>,
    /// What to open.
    shape: Shape,
    /// Every server under test: client `i` connects to `servers[i % len]`.
    servers: Vec<SocketAddr>,
    /// Every connection opened, indexed by token.
    clients: Vec<Client>,
    /// Sequence, loss and latency accounting.
    pub tally: Tally,
    /// Reused read buffer.
    scratch: Vec<u8>,
    /// Reused room for a read's arrival stamp.
    stamp_room: Vec<u8>,
    /// Clients that got their first line.
    pub ready: usize,
    /// Healthy clients open now, per room (a line is expected by its room's
    /// count, less one).
    live_healthy: Vec<usize>,
    /// Healthy clients closed by the server after being ready.
    dropped_healthy: usize,
    /// Stalled clients closed by the server after being ready.
    dropped_stalled: usize,
    /// Why the first client closed before being ready, if one did.
    pub refusal: Option<String>,
    /// Last time any byte arrived.
    last_rx: Instant,
    /// Whether stalled clients are read (only at the very end).
    read_stalled: bool,
}

impl Engine {
    /// An engine with no connection yet, for the servers at `servers` (at
    /// least one).
    ///
    /// # Errors
    /// epoll cannot be created.
    pub fn new(servers: &[SocketAddr], shape: Shape) -> io::Result<Engine> {
        let sender_rooms: Vec<usize> = (0..shape.senders)
            .map(|i| rooms::room_of(i, shape.rooms).unwrap_or(0))
            .collect();
        Ok(Engine {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            batch: Vec::new(),
            servers: servers.to_vec(),
            shape,
            clients: Vec::with_capacity(shape.clients + shape.stalled),
            tally: Tally::new(&sender_rooms, shape.order),
            scratch: vec![0; READ_CHUNK],
            stamp_room: stamp::buffer(),
            ready: 0,
            live_healthy: vec![0; shape.rooms.max(1)],
            dropped_healthy: 0,
            dropped_stalled: 0,
            refusal: None,
            last_rx: Instant::now(),
            read_stalled: false,
        })
    }

    /// Connects every client and waits until each has its first line.
    ///
    /// # Errors
    /// A one-line reason, e.g. `aborted at 1020 clients: ...`, when the
    /// server refuses or closes a connection, stops welcoming new clients,
    /// or `limit` passes.
    pub fn connect_all(&mut self, limit: Duration) -> Result<(), String> {
        let total = self.shape.clients + self.shape.stalled;
        let start = Instant::now();
        let mut progress = start;
        while self.ready < total {
            while self.clients.len() < total && self.clients.len() - self.ready < CONNECT_WINDOW {
                if let Err(e) = self.open() {
                    return Err(format!("aborted at {} clients: connect: {e}", self.ready));
                }
            }
            let before = self.ready;
            self.pump(Duration::from_millis(20))
                .map_err(|e| format!("poll: {e}"))?;
            if let Some(why) = &self.refusal {
                return Err(format!("aborted at {} clients: {why}", self.ready));
            }
            let now = Instant::now();
            if self.ready > before {
                progress = now;
            }
            if now - progress > CONNECT_STALL {
                return Err(format!(
                    "aborted at {} clients: no first line for {} s",
                    self.ready,
                    CONNECT_STALL.as_secs()
                ));
            }
            if now - start > limit {
                return Err(format!(
                    "aborted at {} clients: not all connected within {} s",
                    self.ready,
                    limit.as_secs()
                ));
            }
        }
        Ok(())
    }

    fn open(&mut self) -> io::Result<()> {
        let idx = self.clients.len();
        let mut stream = TcpStream::connect(self.servers[idx % self.servers.len()])?;
        // Our lines must not wait for a delayed ACK either.
        stream.set_nodelay(true)?;
        stamp::enable(&stream)?;
        self.poll.registry().register(
            &mut stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let sender = (idx < self.shape.senders).then_some(idx);
        let stalled = idx >= self.shape.clients;
        let room = rooms::room_of(idx, self.shape.rooms);
        if !stalled {
            self.live_healthy[room.unwrap_or(0)] += 1;
        }
        self.clients.push(Client {
            stream,
            closed: None,
            out: Vec::new(),
            out_pos: 0,
            rx: crate::tally::Rx::new(sender, stalled, self.shape.senders, room),
        });
        Ok(())
    }

    /// Waits for events up to `timeout` and handles them.
    ///
    /// # Errors
    /// epoll itself failed.
    pub fn pump(&mut self, timeout: Duration) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        batch.extend(self.events.iter().map(|e| {
            (
                e.token().0,
                e.is_readable() || e.is_read_closed() || e.is_error(),
                e.is_writable(),
            )
        }));
        for &(i, readable, writable) in &batch {
            if writable {
                self.flush(i);
            }
            if readable {
                self.read(i);
            }
        }
        self.batch = batch;
        Ok(())
    }

    fn read(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let mut failure = None;
        let mut welcomed = false;
        while c.closed.is_none() {
            if c.rx.stalled && c.rx.ready() && !self.read_stalled {
                break;
            }
            match stamp::read(&c.stream, &mut self.scratch, &mut self.stamp_room) {
                Ok((0, _)) => {
                    failure = Some("closed by server".to_string());
                    break;
                }
                Ok((n, waited)) => {
                    self.last_rx = Instant::now();
                    // A short read emptied the socket: data arriving later
                    // is a new edge, so reading again to see `WouldBlock`
                    // would only cost a second call per event. Not so for
                    // a stalled client: the edges it let pass unread are
                    // gone, so its last read goes on to the end (the
                    // server's close behind what it had buffered).
                    let drained = n < self.scratch.len() && !c.rx.stalled;
                    match self.tally.take_bytes(&mut c.rx, &self.scratch[..n], waited) {
                        Step::Nothing => {}
                        Step::Ready => self.ready += 1,
                        Step::Welcomed => welcomed = true,
                        Step::Refused => {
                            let said = c.rx.refused.clone().unwrap_or_default();
                            let join = c.rx.join.clone().unwrap_or_default();
                            self.refusal.get_or_insert(format!(
                                "client #{} refused /join {join}: {said}",
                                i + 1
                            ));
                        }
                    }
                    if drained {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(why) = failure {
            self.close(i, why);
        } else if welcomed {
            if let Some(room) = rooms::room_of(i, self.shape.rooms) {
                c.out.extend_from_slice(&rooms::join_line(room));
                self.flush(i);
            }
        }
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let mut failure = None;
        while c.closed.is_none() && c.out_pos < c.out.len() {
            match c.stream.write(&c.out[c.out_pos..]) {
                Ok(0) => failure = Some("write returned 0".to_string()),
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => failure = Some(e.to_string()),
            }
            if failure.is_some() {
                break;
            }
        }
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        } else if c.out_pos > READ_CHUNK {
            c.out.drain(..c.out_pos);
            c.out_pos = 0;
        }
        if let Some(why) = failure {
            self.close(i, why);
        }
    }

    fn close(&mut self, i: usize, why: String) {
        let c = &mut self.clients[i];
        if c.closed.is_some() {
            return;
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        let healthy = !c.rx.stalled;
        if healthy {
            self.live_healthy[c.rx.room] -= 1;
        }
        if !c.rx.ready() {
            let said = c.rx.refused.take().unwrap_or_default();
            self.refusal
                .get_or_insert(format!("client #{} {why} {said}", i + 1));
        } else if healthy {
            self.dropped_healthy += 1;
        } else {
            self.dropped_stalled += 1;
        }
        c.closed = Some(why);
    }

    /// Clients that were welcomed and are still open.
    pub fn held(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| c.rx.ready() && c.closed.is_none())
            .count()
    }

    /// Keeps reading until nothing has arrived for `quiet`, or `limit` passed
    /// (the join notices of many clients take a while to drain).
    ///
    /// # Errors
    /// epoll failed.
    pub fn settle(&mut self, quiet: Duration, limit: Duration) -> io::Result<()> {
        let end = Instant::now() + limit;
        self.last_rx = Instant::now();
        while Instant::now() < end && self.last_rx.elapsed() < quiet {
            self.pump(Duration::from_millis(20))?;
        }
        Ok(())
    }

    /// Runs warmup, the measured window and the drain; the CPU of every
    /// process in `pids` (the servers, Redis) is read from /proc at the
    /// window's edges.
    ///
    /// # Errors
    /// epoll failed.
    pub fn run_traffic(
        &mut self,
        traffic: Traffic,
        line_len: usize,
        phases: Phases,
        pids: &[u32],
    ) -> io::Result<TrafficStats> {
        let start = Instant::now();
        let warm_end = start + phases.warmup;
        let meas_end = warm_end + phases.measure;
        self.tally.set_window(warm_end, meas_end);
        let senders = self.tally.senders.len();
        let interval = match traffic {
            Traffic::Open { per_second } => {
                Duration::from_secs_f64(senders as f64 / per_second.max(1e-9))
            }
            Traffic::Closed { .. } => Duration::ZERO,
        };
        for (k, s) in self.tally.senders.iter_mut().enumerate() {
            // Spread open-loop senders evenly over one interval.
            s.next_due = start + interval.mul_f64(k as f64 / senders.max(1) as f64);
        }
        let server = |pids: &[u32]| -> Option<Vec<f64>> {
            pids.iter()
                .map(|&p| procfs::sample(Some(p)).ok().map(|s| s.cpu_s))
                .collect()
        };
        let mut before = None;
        loop {
            let now = Instant::now();
            if now >= meas_end {
                break;
            }
            if before.is_none() && now >= warm_end {
                before = Some((server(pids), procfs::sample(None).ok()));
            }
            let mut wake = self.send_due(now, traffic, interval, line_len);
            wake = wake.min(if before.is_none() { warm_end } else { meas_end });
            self.pump(wake.saturating_duration_since(Instant::now()))?;
        }
        let after = (server(pids), procfs::sample(None).ok());
        let (b_srv, b_gen) = before.unwrap_or((None, None));
        let server_cpu_s = match (b_srv, after.0) {
            (Some(b), Some(a)) => Some(a.iter().zip(&b).map(|(a, b)| a - b).collect()),
            _ => None,
        };
        let gen_cpu_s = match (b_gen, after.1) {
            (Some(b), Some(a)) => a.cpu_s - b.cpu_s,
            _ => 0.0,
        };

        let drain_end = Instant::now() + phases.drain;
        while Instant::now() < drain_end && self.missing() > 0 {
            self.pump(Duration::from_millis(10))?;
        }
        let lost = self.missing();
        if std::env::var_os("CHAT_BENCH_DEBUG").is_some() {
            let mut u: Vec<u64> = self.clients.iter().map(|c| c.rx.unique).collect();
            u.sort_unstable();
            let pending: usize = self.clients.iter().map(|c| c.out.len() - c.out_pos).sum();
            eprint!(
                "[lines per client: min {} median {} max {}; {pending} bytes unsent] ",
                u.first().unwrap_or(&0),
                u.get(u.len() / 2).unwrap_or(&0),
                u.last().unwrap_or(&0)
            );
        }
        eprint!(
            "[{} lines sent, {lost} deliveries missing {:.0} s after] ",
            self.tally.sent_total(),
            phases.drain.as_secs_f64(),
        );

        if self.shape.stalled > 0 {
            self.read_stalled = true;
            let first = self.shape.clients;
            for i in first..self.clients.len() {
                self.read(i);
            }
            let end = Instant::now() + STALLED_CHECK;
            while Instant::now() < end && self.clients[first..].iter().any(|c| c.closed.is_none()) {
                self.pump(Duration::from_millis(10))?;
            }
        }
        Ok(TrafficStats {
            window_s: phases.measure.as_secs_f64(),
            server_cpu_s,
            gen_cpu_s,
            dropped_healthy: self.dropped_healthy,
            dropped_stalled: self.dropped_stalled,
            lost,
        })
    }

    /// Sends whatever is due now; returns when to look again.
    fn send_due(
        &mut self,
        now: Instant,
        traffic: Traffic,
        interval: Duration,
        line_len: usize,
    ) -> Instant {
        let mut wake = now + Duration::from_millis(10);
        for s in 0..self.tally.senders.len() {
            let client = self.tally.senders[s].client;
            if self.clients[client].closed.is_some() {
                continue;
            }
            match traffic {
                Traffic::Closed { window } => {
                    self.tally.retire(s, now, ACK_TIMEOUT);
                    let mut sent = false;
                    let room = self.tally.senders[s].room;
                    while self.tally.senders[s].inflight.len() < window {
                        let expect = self.live_healthy[room].saturating_sub(1);
                        let c = &mut self.clients[client];
                        self.tally.send(s, &mut c.out, line_len, expect, true);
                        sent = true;
                    }
                    if sent {
                        self.flush(client);
                    }
                }
                Traffic::Open { .. } => {
                    let mut sent = false;
                    while self.tally.senders[s].next_due <= now {
                        let c = &mut self.clients[client];
                        self.tally.send(s, &mut c.out, line_len, 0, false);
                        self.tally.senders[s].next_due += interval;
                        sent = true;
                    }
                    if sent {
                        self.flush(client);
                    }
                    wake = wake.min(self.tally.senders[s].next_due);
                }
            }
        }
        wake
    }

    /// Every healthy client's lines in order of arrival (empty unless
    /// [`Shape::order`]).
    pub fn orders(&self) -> Vec<&[u64]> {
        self.clients
            .iter()
            .filter(|c| !c.rx.stalled)
            .map(|c| c.rx.order.as_slice())
            .collect()
    }

    /// Lines that healthy, still open clients should have and do not (only
    /// their room's: lines seen in another room are counted apart).
    fn missing(&self) -> u64 {
        self.clients
            .iter()
            .filter(|c| c.closed.is_none() && !c.rx.stalled)
            .map(|c| self.tally.expected(&c.rx).saturating_sub(c.rx.unique))
            .sum()
    }
}

#[cfg(test)]
mod tests;

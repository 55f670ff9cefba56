//! The workloads of the benchmark, how each is run against one server, and
//! the targets chat-server is held to. (a) to (g) run against both servers;
//! (h) (rooms) and (i) (history and transcript) against chat-server only:
//! ncat has neither. (j) and (k) run 3 chat-servers sharing one Redis
//! (`--redis`), beside the same load on one server ((j)) or (c) ((k)).

use std::{
    fs::File,
    io::{self, Read},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::{
    engine::{Engine, Phases, Shape, Traffic},
    order, procfs,
    scratch::ScratchDir,
    server::{self, Running, Target},
};

/// Bytes of an ordinary benchmark line, newline included.
const LINE: usize = 64;
/// Bytes of a "2 KB" line in (e): under chat-server's default `--max-line`.
const BIG_LINE: usize = 2000;
/// Lines a closed-loop sender keeps in flight.
const WINDOW: usize = 4;
/// How long (g) waits for the server to exit before giving up.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// Rooms in (h), each with `H_CLIENTS / H_ROOMS` members.
const H_ROOMS: usize = 10;
/// Clients in (h).
const H_CLIENTS: usize = 500;
/// Senders in (h): 2 per room.
const H_SENDERS: usize = 20;
/// `--history` in (i): the server's default, passed explicitly.
const I_HISTORY: u32 = 20;
/// (i)'s server CPU per delivered line may exceed (c)'s by this factor.
const I_CPU_FACTOR: f64 = 1.10;
/// Bytes read at once when counting the transcript's lines.
const COUNT_CHUNK: usize = 1 << 20;
/// chat-servers sharing one Redis in (j) and (k).
const CLUSTER: usize = 3;

/// What a workload does.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Clients exchange benchmark lines.
    Traffic {
        shape: Shape,
        traffic: Traffic,
        line_len: usize,
        phases: Phases,
    },
    /// Clients connect and stay idle: memory per connection.
    Idle { clients: usize },
    /// Clients connect, then the server gets SIGINT: time to exit.
    Interrupt { clients: usize },
}

/// Flags chat-server gets in a workload beyond the common ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flags {
    /// None.
    Plain,
    /// `--history 20 --transcript FILE`, FILE in a fresh temp folder.
    HistoryTranscript,
}

/// A check of one chat-server metric.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// metric < value
    Below(&'static str, f64),
    /// metric == value
    Equal(&'static str, f64),
    /// metric >= ncat's
    AtLeastNcat(&'static str),
    /// metric <= ncat's × factor
    AtMostNcatTimes(&'static str, f64),
    /// metric <= the same metric of chat-server in workload `id` of the same
    /// run × factor
    AtMostTimesOf(&'static str, char, f64),
    /// No target: metric shown beside chat-server's `other` metric in
    /// workload `id` of the same run, as a ratio.
    Beside(&'static str, char, &'static str),
}

impl Goal {
    /// The metric it checks.
    pub fn metric(self) -> &'static str {
        match self {
            Goal::Below(m, _) | Goal::Equal(m, _) | Goal::AtLeastNcat(m) => m,
            Goal::AtMostNcatTimes(m, _) | Goal::AtMostTimesOf(m, _, _) => m,
            Goal::Beside(m, _, _) => m,
        }
    }

    /// The workload and metric of chat-server it compares with, if another.
    pub fn reference(self) -> Option<(char, &'static str)> {
        match self {
            Goal::AtMostTimesOf(m, id, _) => Some((id, m)),
            Goal::Beside(_, id, other) => Some((id, other)),
            _ => None,
        }
    }

    /// Its text and verdict, given chat-server's and ncat's values and the
    /// value of the [`reference`](Goal::reference) workload. A chat-server
    /// value that is missing or not a number (the run aborted, no line
    /// arrived) fails; a missing ncat or reference value leaves relative
    /// goals undecided.
    pub fn judge(
        self,
        chat: Option<&Value>,
        ncat: Option<&Value>,
        reference: Option<&Value>,
    ) -> String {
        let c = chat.and_then(Value::num);
        let n = ncat.and_then(Value::num);
        let r = reference.and_then(Value::num);
        let (text, pass) = match self {
            Goal::Below(_, v) => (format!("< {v}"), Some(c.is_some_and(|c| c < v))),
            Goal::Equal(_, v) => (format!("= {v}"), Some(c.is_some_and(|c| c == v))),
            Goal::AtLeastNcat(_) => (">= ncat".to_string(), n.map(|n| c.is_some_and(|c| c >= n))),
            Goal::AtMostNcatTimes(_, f) => (
                format!("<= {f} x ncat"),
                n.map(|n| c.is_some_and(|c| c <= n * f)),
            ),
            Goal::AtMostTimesOf(_, id, f) => {
                let ratio = match (c, r) {
                    (Some(c), Some(r)) if r > 0.0 => format!(" (ratio {:.2})", c / r),
                    (_, None) => format!(" ({id}) not in this run"),
                    _ => String::new(),
                };
                (
                    format!("<= {f} x ({id}){ratio}"),
                    r.map(|r| c.is_some_and(|c| c <= r * f)),
                )
            }
            Goal::Beside(_, id, other) => {
                return match (c, r) {
                    (Some(c), Some(r)) if r > 0.0 => {
                        format!("(no target) {:.2} x ({id})'s {other}", c / r)
                    }
                    _ => format!("(no target) ({id})'s {other} not in this run"),
                };
            }
        };
        let verdict = match pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        };
        format!("{text}: {verdict}")
    }
}

/// One workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Its letter in the issues: a to i.
    pub id: char,
    /// Short description for the table.
    pub title: String,
    /// What it does.
    pub kind: Kind,
    /// Whether ncat runs it too (it has no rooms, history or transcript).
    pub ncat: bool,
    /// chat-server's extra flags.
    pub flags: Flags,
    /// chat-servers sharing one Redis; 0: one server alone, no Redis.
    pub cluster: usize,
    /// Targets for chat-server.
    pub goals: Vec<Goal>,
}

/// Metric names shared by the runners, the goals and the table.
pub mod metric {
    pub const STATUS: &str = "status";
    pub const RATE: &str = "delivered lines/s";
    pub const P50: &str = "latency p50 ms";
    pub const P99: &str = "latency p99 ms";
    pub const P999: &str = "latency p99.9 ms";
    /// Send to arrival in the receiver's socket (kernel stamp), not to
    /// the generator's read: see `stamp.rs`.
    pub const P50_ARRIVAL: &str = "latency p50 ms at arrival";
    pub const P99_ARRIVAL: &str = "latency p99 ms at arrival";
    pub const MAX: &str = "latency max ms";
    pub const LOST: &str = "lines lost (not in by drain end)";
    pub const DUPS: &str = "lines duplicated";
    pub const OOO: &str = "lines out of order";
    pub const GARBLED: &str = "markers garbled by server";
    pub const WRONG_ROOM: &str = "lines in the wrong room";
    pub const ORDER: &str = "lines out of the room's order";
    pub const REDIS_CPU: &str = "Redis CPU s (window)";
    pub const ALL_CPU_PER_LINE: &str = "servers+Redis CPU us/line";
    pub const SENT: &str = "lines sent (whole run)";
    pub const TRANSCRIPT_LINES: &str = "transcript lines at end";
    pub const DROPPED: &str = "healthy clients dropped";
    pub const STALLED_DROPPED: &str = "stalled clients dropped";
    pub const CPU: &str = "server CPU s (window)";
    pub const CPU_PER_LINE: &str = "server CPU us/line";
    pub const GEN_CPU: &str = "generator CPU s (window)";
    pub const PEAK_RSS: &str = "server peak RSS MiB";
    pub const WELCOMED: &str = "clients welcomed";
    pub const HELD: &str = "clients held at end";
    pub const RSS_BEFORE: &str = "server RSS before MiB";
    pub const RSS_HELD: &str = "server RSS holding MiB";
    pub const RSS_PER_CLIENT: &str = "RSS per client KiB";
    pub const EXIT: &str = "exit status";
    pub const EXIT_MS: &str = "signal to exit ms";
}

/// A measured value.
#[derive(Debug, Clone)]
pub enum Value {
    /// A number and how many decimals to show.
    Num(f64, usize),
    /// Anything else.
    Text(String),
}

impl Value {
    /// The number, if it is one.
    pub fn num(&self) -> Option<f64> {
        match self {
            Value::Num(v, _) => Some(*v),
            Value::Text(_) => None,
        }
    }
}

/// Everything measured in one run of one workload against one server.
pub type Measured = Vec<(&'static str, Value)>;

/// The workloads of the issue; `quick` shortens every timed part.
pub fn all(quick: bool) -> Vec<Workload> {
    use metric::*;
    let phases = |measure: u64| Phases {
        warmup: Duration::from_millis(if quick { 500 } else { 1000 }),
        measure: Duration::from_secs(measure),
        drain: Duration::from_secs(if quick { 1 } else { 2 }),
    };
    let short = if quick { 3 } else { 10 };
    let shape = |clients, senders, stalled| Shape {
        clients,
        senders,
        stalled,
        rooms: 0,
        order: false,
    };
    let traffic = |shape, traffic, line_len, phases| Kind::Traffic {
        shape,
        traffic,
        line_len,
        phases,
    };
    let closed = Traffic::Closed { window: WINDOW };
    let open = |per_second| Traffic::Open { per_second };
    let idle = if quick { 2000 } else { 10_000 };
    let j_shape = Shape {
        order: true,
        ..shape(300, 30, 0)
    };
    vec![
        Workload {
            id: 'a',
            title: "10 clients, all send, closed loop".into(),
            kind: traffic(shape(10, 10, 0), closed, LINE, phases(short)),
            ncat: true,
            flags: Flags::Plain,
            cluster: 0,
            goals: vec![Goal::Below(P99, 1.0)],
        },
        Workload {
            id: 'b',
            title: "100 clients, 10 send, 1,000 msg/s".into(),
            kind: traffic(shape(100, 10, 0), open(1000.0), LINE, phases(short)),
            ncat: true,
            flags: Flags::Plain,
            cluster: 0,
            goals: vec![Goal::Below(P99, 2.0)],
        },
        Workload {
            id: 'c',
            title: "100 clients, all send, closed loop".into(),
            kind: traffic(shape(100, 100, 0), closed, LINE, phases(short)),
            ncat: true,
            flags: Flags::Plain,
            cluster: 0,
            goals: vec![
                Goal::AtLeastNcat(RATE),
                Goal::AtMostNcatTimes(CPU_PER_LINE, 0.25),
                Goal::Below(PEAK_RSS, 32.0),
            ],
        },
        Workload {
            id: 'd',
            title: "500 clients, 20 send, 2,000 msg/s".into(),
            kind: traffic(shape(500, 20, 0), open(2000.0), LINE, phases(short)),
            ncat: true,
            flags: Flags::Plain,
            cluster: 0,
            goals: vec![Goal::Below(P99, 20.0), Goal::Below(PEAK_RSS, 32.0)],
        },
        Workload {
            id: 'e',
            title: format!(
                "20 clients + 2 stalled, 5 send, 200 msg/s of 2 KB, {} s",
                if quick { 6 } else { 30 }
            ),
            kind: traffic(
                shape(20, 5, 2),
                open(200.0),
                BIG_LINE,
                phases(if quick { 6 } else { 30 }),
            ),
            ncat: true,
            flags: Flags::Plain,
            cluster: 0,
            goals: vec![
                Goal::Equal(LOST, 0.0),
                Goal::Equal(DROPPED, 0.0),
                Goal::Below(P99, 5.0),
                Goal::Equal(STALLED_DROPPED, 2.0),
            ],
        },
        Workload {
            id: 'f',
            title: format!("{idle} idle clients held"),
            kind: Kind::Idle { clients: idle },
            ncat: true,
            flags: Flags::Plain,
            cluster: 0,
            goals: vec![
                Goal::Equal(HELD, idle as f64),
                Goal::Below(RSS_PER_CLIENT, 16.0),
            ],
        },
        Workload {
            id: 'g',
            title: "SIGINT with 1,000 clients".into(),
            kind: Kind::Interrupt { clients: 1000 },
            ncat: true,
            flags: Flags::Plain,
            cluster: 0,
            goals: vec![Goal::Equal(EXIT, 0.0), Goal::Below(EXIT_MS, 200.0)],
        },
        Workload {
            id: 'h',
            title: format!(
                "{H_CLIENTS} clients in {H_ROOMS} rooms, {H_SENDERS} send, 2,000 msg/s (chat-server only)"
            ),
            kind: traffic(
                Shape {
                    rooms: H_ROOMS,
                    ..shape(H_CLIENTS, H_SENDERS, 0)
                },
                open(2000.0),
                LINE,
                phases(short),
            ),
            ncat: false,
            flags: Flags::Plain,
            cluster: 0,
            goals: vec![
                Goal::Equal(LOST, 0.0),
                Goal::Equal(WRONG_ROOM, 0.0),
                Goal::Below(P99, 10.0),
            ],
        },
        Workload {
            id: 'i',
            title: format!("(c) with --history {I_HISTORY} --transcript (chat-server only)"),
            kind: traffic(shape(100, 100, 0), closed, LINE, phases(short)),
            ncat: false,
            flags: Flags::HistoryTranscript,
            cluster: 0,
            goals: vec![Goal::AtMostTimesOf(CPU_PER_LINE, 'c', I_CPU_FACTOR)],
        },
        Workload {
            id: 'j',
            title: format!("{CLUSTER} servers + Redis, 300 clients, 30 send, 3,000 msg/s"),
            kind: traffic(j_shape, open(3000.0), LINE, phases(short)),
            ncat: false,
            flags: Flags::Plain,
            cluster: CLUSTER,
            goals: vec![
                Goal::Equal(LOST, 0.0),
                Goal::Equal(ORDER, 0.0),
                Goal::Below(P99, 10.0),
            ],
        },
        Workload {
            id: 'j',
            title: "the same on one server alone (no Redis), for comparison".into(),
            kind: traffic(j_shape, open(3000.0), LINE, phases(short)),
            ncat: false,
            flags: Flags::Plain,
            cluster: 0,
            goals: vec![],
        },
        Workload {
            id: 'k',
            title: format!("{CLUSTER} servers + Redis, 100 clients, all send, closed loop"),
            kind: traffic(shape(100, 100, 0), closed, LINE, phases(short)),
            ncat: false,
            flags: Flags::Plain,
            cluster: CLUSTER,
            goals: vec![
                Goal::Beside(RATE, 'c', RATE),
                Goal::Beside(ALL_CPU_PER_LINE, 'c', CPU_PER_LINE),
            ],
        },
    ]
}

/// Time allowed to connect `n` clients.
fn connect_limit(n: usize) -> Duration {
    Duration::from_secs(30 + n as u64 / 100)
}

fn mib(kib: u64) -> Value {
    Value::Num(kib as f64 / 1024.0, 1)
}

fn ms(ns: u64) -> Value {
    Value::Num(ns as f64 / 1e6, 3)
}

fn count(n: u64) -> Value {
    Value::Num(n as f64, 0)
}

/// Adds to an abort reason that the server has exited, and its last word.
fn with_exit(server: &mut Running, why: String, log: &Path) -> String {
    // The clients may see the close a moment before the exit is reapable.
    let deadline = Instant::now() + Duration::from_millis(300);
    loop {
        match server.try_wait() {
            Ok(Some(st)) => {
                // Keep "aborted at N clients", replace the client's view of it.
                let head = why.split(':').next().unwrap_or(&why);
                let text = std::fs::read_to_string(log).unwrap_or_default();
                // Its first sentence is enough ("Attempt to FD_SET fd 1024...").
                let last = text.lines().last().unwrap_or("");
                let last: String = last
                    .split(", ")
                    .next()
                    .unwrap_or(last)
                    .chars()
                    .take(60)
                    .collect();
                return format!("{head}: server exited ({st}): {last}");
            }
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return why,
        }
    }
}

/// The largest peak RSS among `servers` (a cluster's are alike).
fn peak_rss(servers: &[Running]) -> Value {
    let mut peak = 0;
    for s in servers {
        match procfs::sample(Some(s.pid)) {
            Ok(s) => peak = peak.max(s.hwm_kib),
            Err(_) => return Value::Text("server gone".into()),
        }
    }
    mib(peak)
}

/// Runs `w` against a fresh instance of `target`, stderr logged to `log`.
pub fn run(w: &Workload, target: &Target, log: &Path) -> Measured {
    let failed = |e: String| vec![(metric::STATUS, Value::Text(e))];
    // Declared before the server, so dropped (folder removed) after it.
    let mut scratch = None;
    let mut extra = Vec::new();
    let mut transcript = None;
    if w.flags == Flags::HistoryTranscript || w.cluster > 0 {
        match ScratchDir::new() {
            Ok(d) => scratch = Some(d),
            Err(e) => return failed(format!("no temp folder: {e}")),
        }
    }
    let dir = scratch.as_ref().map(|d| d.path().to_path_buf());
    if let (Flags::HistoryTranscript, Some(dir)) = (w.flags, &dir) {
        let file = dir.join("transcript");
        extra.extend(["--history".into(), I_HISTORY.to_string().into()]);
        extra.extend(["--transcript".into(), file.clone().into_os_string()]);
        transcript = Some(file);
    }
    // Declared before the servers, so killed after them.
    let mut redis = None;
    if let (true, Some(dir)) = (w.cluster > 0, &dir) {
        match server::start_redis(&log.with_extension("redis.log"), dir) {
            Ok(r) => {
                extra.extend(["--redis".into(), format!("redis://{}", r.addr).into()]);
                redis = Some(r);
            }
            Err(e) => return failed(format!("Redis did not start: {e}")),
        }
    }
    let logs: Vec<PathBuf> = match w.cluster {
        0 => vec![log.to_path_buf()],
        n => (1..=n)
            .map(|k| log.with_extension(format!("{k}.log")))
            .collect(),
    };
    let mut servers = Vec::new();
    for log in &logs {
        match target.start(log, &extra) {
            Ok(s) => servers.push(s),
            Err(e) => return failed(format!("did not start: {e}")),
        }
    }
    let redis_pid = redis.as_ref().map(|r| r.pid);
    let result = match w.kind {
        Kind::Traffic {
            shape,
            traffic,
            line_len,
            phases,
        } => {
            let run = Run {
                servers: &mut servers,
                redis: redis_pid,
                log: &logs[0],
            };
            run_traffic(run, shape, traffic, line_len, phases).map(|mut m| {
                if let Some(file) = &transcript {
                    let lines = match count_lines(file) {
                        Ok(n) => count(n),
                        Err(e) => Value::Text(format!("unreadable: {e}")),
                    };
                    m.push((metric::TRANSCRIPT_LINES, lines));
                }
                m
            })
        }
        Kind::Idle { clients } => run_idle(&mut servers[0], clients, log),
        Kind::Interrupt { clients } => run_interrupt(servers.remove(0), clients, log),
    };
    result.unwrap_or_else(failed)
}

/// The processes of one traffic run.
struct Run<'a> {
    /// The chat-servers (one, or a cluster's); the first gets the abort
    /// diagnosis.
    servers: &'a mut [Running],
    /// Redis's pid in a cluster run, for its CPU.
    redis: Option<u32>,
    /// The first server's stderr log.
    log: &'a Path,
}

/// Lines in `file` so far (the server may still be appending).
fn count_lines(file: &Path) -> io::Result<u64> {
    let mut f = File::open(file)?;
    let mut buf = vec![0; COUNT_CHUNK];
    let mut n = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => n += memchr::memchr_iter(b'\n', &buf[..k]).count() as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn run_traffic(
    run: Run<'_>,
    shape: Shape,
    traffic: Traffic,
    line_len: usize,
    phases: Phases,
) -> Result<Measured, String> {
    use metric::*;
    let addrs: Vec<_> = run.servers.iter().map(|s| s.addr).collect();
    let mut eng = Engine::new(&addrs, shape).map_err(|e| e.to_string())?;
    if let Err(why) = eng.connect_all(connect_limit(shape.clients)) {
        let why = with_exit(&mut run.servers[0], why, run.log);
        return Ok(vec![
            (STATUS, Value::Text(why)),
            (PEAK_RSS, peak_rss(run.servers)),
        ]);
    }
    // Let the join notices of the last clients arrive before sending.
    eng.settle(Duration::from_millis(200), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let mut pids: Vec<u32> = run.servers.iter().map(|s| s.pid).collect();
    pids.extend(run.redis);
    let st = eng
        .run_traffic(traffic, line_len, phases, &pids)
        .map_err(|e| e.to_string())?;
    let t = &eng.tally;
    let h = &t.hist;
    let at = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            Value::Text("none".into())
        } else {
            ms(h.value_at_quantile(q))
        }
    };
    let lat = |q: f64| at(h, q);
    let mut m = vec![
        (STATUS, Value::Text("ok".into())),
        (SENT, count(t.sent_total())),
        (RATE, Value::Num(t.delivered as f64 / st.window_s, 0)),
        (P50, lat(0.5)),
        (P99, lat(0.99)),
        (P999, lat(0.999)),
        (MAX, if h.is_empty() { lat(1.0) } else { ms(h.max()) }),
        (P50_ARRIVAL, at(&t.arrival, 0.5)),
        (P99_ARRIVAL, at(&t.arrival, 0.99)),
        (LOST, count(st.lost)),
        (DUPS, count(t.dups)),
        (OOO, count(t.out_of_order)),
        (GARBLED, count(t.garbled)),
    ];
    if shape.rooms > 1 {
        m.push((WRONG_ROOM, count(t.wrong_room)));
    }
    if shape.order {
        m.push((ORDER, count(order::violations(&eng.orders()))));
    }
    m.push((DROPPED, count(st.dropped_healthy as u64)));
    if shape.stalled > 0 {
        m.push((STALLED_DROPPED, count(st.dropped_stalled as u64)));
    }
    let per_line = |cpu: f64| {
        if t.delivered > 0 {
            Value::Num(cpu * 1e6 / t.delivered as f64, 3)
        } else {
            Value::Text("no lines".into())
        }
    };
    match st.server_cpu_s {
        Some(cpu) => {
            let servers: f64 = cpu[..run.servers.len()].iter().sum();
            m.push((CPU, Value::Num(servers, 2)));
            m.push((CPU_PER_LINE, per_line(servers)));
            if run.redis.is_some() {
                let redis: f64 = cpu[run.servers.len()..].iter().sum();
                m.push((REDIS_CPU, Value::Num(redis, 2)));
                m.push((ALL_CPU_PER_LINE, per_line(servers + redis)));
            }
        }
        None => m.push((CPU, Value::Text("server gone".into()))),
    }
    m.push((GEN_CPU, Value::Num(st.gen_cpu_s, 2)));
    m.push((PEAK_RSS, peak_rss(run.servers)));
    Ok(m)
}

/// Connects `clients` that only listen; returns them and the status
/// (`ok`, or why connecting stopped).
fn connect_idle(
    server: &mut Running,
    clients: usize,
    log: &Path,
) -> Result<(Engine, String), String> {
    let shape = Shape {
        clients,
        senders: 0,
        stalled: 0,
        rooms: 0,
        order: false,
    };
    let mut eng = Engine::new(&[server.addr], shape).map_err(|e| e.to_string())?;
    let status = match eng.connect_all(connect_limit(clients)) {
        Ok(()) => "ok".to_string(),
        Err(why) => with_exit(server, why, log),
    };
    Ok((eng, status))
}

fn run_idle(server: &mut Running, clients: usize, log: &Path) -> Result<Measured, String> {
    use metric::*;
    let before = procfs::sample(Some(server.pid)).map_err(|e| format!("/proc: {e}"))?;
    let (mut eng, status) = connect_idle(server, clients, log)?;
    // Join notices (n² / 2 lines in all) must drain before RSS means
    // "holding n clients" rather than "delivering notices".
    eng.settle(Duration::from_millis(500), Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    let held = eng.held();
    let mut m = vec![
        (STATUS, Value::Text(status)),
        (WELCOMED, count(eng.ready as u64)),
        (HELD, count(held as u64)),
    ];
    match procfs::sample(Some(server.pid)) {
        Ok(after) => {
            m.push((RSS_BEFORE, mib(before.rss_kib)));
            m.push((RSS_HELD, mib(after.rss_kib)));
            if held > 0 {
                let per = after.rss_kib.saturating_sub(before.rss_kib) as f64 / held as f64;
                m.push((RSS_PER_CLIENT, Value::Num(per, 1)));
            }
            m.push((PEAK_RSS, mib(after.hwm_kib)));
        }
        Err(_) => m.push((RSS_HELD, Value::Text("server gone".into()))),
    }
    Ok(m)
}

fn run_interrupt(mut server: Running, clients: usize, log: &Path) -> Result<Measured, String> {
    use metric::*;
    let (mut eng, status) = connect_idle(&mut server, clients, log)?;
    eng.settle(Duration::from_millis(300), Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    let held = eng.held();
    let start = Instant::now();
    server.interrupt().map_err(|e| format!("kill: {e}"))?;
    let exit = loop {
        if let Some(st) = server.try_wait().map_err(|e| e.to_string())? {
            break Some((st, start.elapsed()));
        }
        if start.elapsed() > EXIT_WAIT {
            break None;
        }
        eng.pump(Duration::from_millis(1))
            .map_err(|e| e.to_string())?;
    };
    let mut m = vec![(STATUS, Value::Text(status)), (HELD, count(held as u64))];
    match exit {
        Some((st, took)) => {
            let code = match (st.code(), st.signal()) {
                (Some(c), _) => Value::Num(f64::from(c), 0),
                (None, Some(sig)) => Value::Text(format!("killed by signal {sig}")),
                _ => Value::Text(st.to_string()),
            };
            m.push((EXIT, code));
            m.push((EXIT_MS, Value::Num(took.as_secs_f64() * 1e3, 1)));
        }
        None => {
            let text = format!("still running after {} s", EXIT_WAIT.as_secs());
            m.push((EXIT, Value::Text(text)));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (i)'s goal: at most 10% above (c)'s value, the ratio shown, and no
    /// verdict when (c) did not run.
    #[test]
    fn a_goal_relative_to_another_workload_shows_the_ratio() {
        let g = Goal::AtMostTimesOf(metric::CPU_PER_LINE, 'c', 1.10);
        let v = |x| Value::Num(x, 2);
        assert_eq!(g.reference(), Some(('c', metric::CPU_PER_LINE)));
        assert_eq!(
            g.judge(Some(&v(0.21)), None, Some(&v(0.20))),
            "<= 1.1 x (c) (ratio 1.05): PASS"
        );
        assert_eq!(
            g.judge(Some(&v(0.23)), None, Some(&v(0.20))),
            "<= 1.1 x (c) (ratio 1.15): FAIL"
        );
        assert_eq!(
            g.judge(Some(&v(0.2)), None, None),
            "<= 1.1 x (c) (c) not in this run: n/a"
        );
        let none = Value::Text("no lines".into());
        assert!(g.judge(Some(&none), None, Some(&v(0.2))).ends_with("FAIL"));
    }

    /// (h) is 500 clients in 10 rooms with 2 senders each, (h) and (i) are
    /// chat-server's alone, only (i) passes extra flags, and (j) is 3
    /// servers beside the same load on one.
    #[test]
    fn h_to_k_are_shaped_as_the_issues_say() {
        let all = all(false);
        let find = |id| all.iter().find(|w| w.id == id).unwrap();
        let Kind::Traffic { shape, traffic, .. } = find('h').kind else {
            panic!("(h) is a traffic workload");
        };
        assert_eq!((shape.clients, shape.senders, shape.rooms), (500, 20, 10));
        assert!(matches!(traffic, Traffic::Open { per_second } if per_second == 2000.0));
        assert!(!find('h').ncat && !find('i').ncat);
        assert_eq!(find('i').flags, Flags::HistoryTranscript);
        let flagged: Vec<char> = all
            .iter()
            .filter(|w| w.flags != Flags::Plain)
            .map(|w| w.id)
            .collect();
        assert_eq!(flagged, ['i']);
        let clusters: Vec<(char, usize)> = all
            .iter()
            .filter(|w| w.cluster > 0)
            .map(|w| (w.id, w.cluster))
            .collect();
        assert_eq!(clusters, [('j', 3), ('k', 3)]);
        let js: Vec<_> = all.iter().filter(|w| w.id == 'j').collect();
        let (Kind::Traffic { shape: a, .. }, Kind::Traffic { shape: b, .. }) =
            (js[0].kind, js[1].kind)
        else {
            panic!("(j) is a traffic workload");
        };
        assert_eq!((a.clients, a.senders, a.order), (300, 30, true));
        assert_eq!(
            (b.clients, b.senders, b.order, js[1].cluster),
            (300, 30, true, 0)
        );
        let (Kind::Traffic { shape: c, .. }, Kind::Traffic { shape: i, .. }) =
            (find('c').kind, find('i').kind)
        else {
            panic!("(c) and (i) are traffic workloads");
        };
        assert_eq!(
            (c.clients, c.senders, c.rooms),
            (i.clients, i.senders, i.rooms)
        );
    }
}

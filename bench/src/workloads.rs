//! The seven workloads of the benchmark, how each is run against one server,
//! and the targets chat-server is held to.

use std::{
    os::unix::process::ExitStatusExt,
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    engine::{Engine, Phases, Shape, Traffic},
    procfs,
    server::{Running, Target},
};

/// Bytes of an ordinary benchmark line, newline included.
const LINE: usize = 64;
/// Bytes of a "2 KB" line in (e): under chat-server's default `--max-line`.
const BIG_LINE: usize = 2000;
/// Lines a closed-loop sender keeps in flight.
const WINDOW: usize = 4;
/// How long (g) waits for the server to exit before giving up.
const EXIT_WAIT: Duration = Duration::from_secs(5);

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
}

impl Goal {
    /// The metric it checks.
    pub fn metric(self) -> &'static str {
        match self {
            Goal::Below(m, _) | Goal::Equal(m, _) | Goal::AtLeastNcat(m) => m,
            Goal::AtMostNcatTimes(m, _) => m,
        }
    }

    /// Its text and verdict, given chat-server's and ncat's values. A
    /// chat-server value that is missing or not a number (the run aborted,
    /// no line arrived) fails; a missing ncat value leaves relative goals
    /// undecided.
    pub fn judge(self, chat: Option<&Value>, ncat: Option<&Value>) -> String {
        let c = chat.and_then(Value::num);
        let n = ncat.and_then(Value::num);
        let (text, pass) = match self {
            Goal::Below(_, v) => (format!("< {v}"), Some(c.is_some_and(|c| c < v))),
            Goal::Equal(_, v) => (format!("= {v}"), Some(c.is_some_and(|c| c == v))),
            Goal::AtLeastNcat(_) => (">= ncat".to_string(), n.map(|n| c.is_some_and(|c| c >= n))),
            Goal::AtMostNcatTimes(_, f) => (
                format!("<= {f} x ncat"),
                n.map(|n| c.is_some_and(|c| c <= n * f)),
            ),
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
    /// Its letter in the issue: a to g.
    pub id: char,
    /// Short description for the table.
    pub title: String,
    /// What it does.
    pub kind: Kind,
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
    pub const MAX: &str = "latency max ms";
    pub const LOST: &str = "lines lost (not in by drain end)";
    pub const DUPS: &str = "lines duplicated";
    pub const OOO: &str = "lines out of order";
    pub const GARBLED: &str = "markers garbled by server";
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
    vec![
        Workload {
            id: 'a',
            title: "10 clients, all send, closed loop".into(),
            kind: traffic(shape(10, 10, 0), closed, LINE, phases(short)),
            goals: vec![Goal::Below(P99, 1.0)],
        },
        Workload {
            id: 'b',
            title: "100 clients, 10 send, 1,000 msg/s".into(),
            kind: traffic(shape(100, 10, 0), open(1000.0), LINE, phases(short)),
            goals: vec![Goal::Below(P99, 2.0)],
        },
        Workload {
            id: 'c',
            title: "100 clients, all send, closed loop".into(),
            kind: traffic(shape(100, 100, 0), closed, LINE, phases(short)),
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
            goals: vec![
                Goal::Equal(HELD, idle as f64),
                Goal::Below(RSS_PER_CLIENT, 16.0),
            ],
        },
        Workload {
            id: 'g',
            title: "SIGINT with 1,000 clients".into(),
            kind: Kind::Interrupt { clients: 1000 },
            goals: vec![Goal::Equal(EXIT, 0.0), Goal::Below(EXIT_MS, 200.0)],
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

fn peak_rss(server: &Running) -> Value {
    match procfs::sample(Some(server.pid)) {
        Ok(s) => mib(s.hwm_kib),
        Err(_) => Value::Text("server gone".into()),
    }
}

/// Runs `w` against a fresh instance of `target`, stderr logged to `log`.
pub fn run(w: &Workload, target: &Target, log: &Path) -> Measured {
    let mut server = match target.start(log) {
        Ok(s) => s,
        Err(e) => return vec![(metric::STATUS, Value::Text(format!("did not start: {e}")))],
    };
    let result = match w.kind {
        Kind::Traffic {
            shape,
            traffic,
            line_len,
            phases,
        } => run_traffic(&mut server, shape, traffic, line_len, phases, log),
        Kind::Idle { clients } => run_idle(&mut server, clients, log),
        Kind::Interrupt { clients } => run_interrupt(server, clients, log),
    };
    result.unwrap_or_else(|e| vec![(metric::STATUS, Value::Text(e))])
}

fn run_traffic(
    server: &mut Running,
    shape: Shape,
    traffic: Traffic,
    line_len: usize,
    phases: Phases,
    log: &Path,
) -> Result<Measured, String> {
    use metric::*;
    let mut eng = Engine::new(server.addr, shape).map_err(|e| e.to_string())?;
    if let Err(why) = eng.connect_all(connect_limit(shape.clients)) {
        let why = with_exit(server, why, log);
        return Ok(vec![
            (STATUS, Value::Text(why)),
            (PEAK_RSS, peak_rss(server)),
        ]);
    }
    // Let the join notices of the last clients arrive before sending.
    eng.settle(Duration::from_millis(200), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let st = eng
        .run_traffic(traffic, line_len, phases, Some(server.pid))
        .map_err(|e| e.to_string())?;
    let t = &eng.tally;
    let h = &t.hist;
    let lat = |q: f64| {
        if h.is_empty() {
            Value::Text("none".into())
        } else {
            ms(h.value_at_quantile(q))
        }
    };
    let mut m = vec![
        (STATUS, Value::Text("ok".into())),
        (RATE, Value::Num(t.delivered as f64 / st.window_s, 0)),
        (P50, lat(0.5)),
        (P99, lat(0.99)),
        (P999, lat(0.999)),
        (MAX, if h.is_empty() { lat(1.0) } else { ms(h.max()) }),
        (LOST, count(st.lost)),
        (DUPS, count(t.dups)),
        (OOO, count(t.out_of_order)),
        (GARBLED, count(t.garbled)),
        (DROPPED, count(st.dropped_healthy as u64)),
    ];
    if shape.stalled > 0 {
        m.push((STALLED_DROPPED, count(st.dropped_stalled as u64)));
    }
    match st.server_cpu_s {
        Some(cpu) => {
            m.push((CPU, Value::Num(cpu, 2)));
            let per = if t.delivered > 0 {
                Value::Num(cpu * 1e6 / t.delivered as f64, 2)
            } else {
                Value::Text("no lines".into())
            };
            m.push((CPU_PER_LINE, per));
        }
        None => m.push((CPU, Value::Text("server gone".into()))),
    }
    m.push((GEN_CPU, Value::Num(st.gen_cpu_s, 2)));
    m.push((PEAK_RSS, peak_rss(server)));
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
    };
    let mut eng = Engine::new(server.addr, shape).map_err(|e| e.to_string())?;
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

//! The server's flags (SPEC "Server"), parsed by clap.
//!
//! Every bound the server enforces is one of these flags, with its default
//! shown by `--help`, so an operator can see and change every limit.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// What the server does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A chat room: lines relayed to everyone else.
    Chat,
    /// RFC 862 echo: every byte straight back.
    Echo,
    /// The Kurose and Ross uppercase server: bytes back, uppercased.
    Upper,
    /// The CS 346 file server: each line names a file under --root, the
    /// reply is its contents.
    File,
}

/// `chat-server`'s command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-server",
    version,
    about = "A line-based TCP chat relay (and the lab's echo, uppercase and file servers)."
)]
pub struct Config {
    /// TCP (and UDP) port to listen on; 0 picks any free port.
    #[arg(long, default_value_t = 2000)]
    pub port: u16,

    /// Address to bind; `::` for IPv6.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// What to serve.
    #[arg(long, value_enum, default_value_t = Mode::Chat)]
    pub mode: Mode,

    /// Also answer UDP datagrams on the same port (echo, upper and file modes).
    #[arg(long)]
    pub udp: bool,

    /// Most clients served at once: one worker thread each.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub workers: u32,

    /// Accepted connections that may wait for a free worker; past that the
    /// server says it is full and closes.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub queue: u32,

    /// Longest line in bytes, terminator excluded; longer lines are dropped
    /// with an error to their sender.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub max_line: u32,

    /// Lines queued to one client, once its socket is full, before it counts
    /// as too slow and is disconnected.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sendq: u32,

    /// Bytes queued to one client, once its socket is full, before it counts
    /// as too slow and is disconnected (four times that while its socket
    /// still takes everything): what bounds the memory a client that asks
    /// for big replies (`/who`) and never reads can take.
    #[arg(long, default_value_t = 1_048_576, value_parser = clap::value_parser!(u32).range(4096..=1_073_741_824))]
    pub sendq_bytes: u32,

    /// Lines per second one client may send, sustained; 0 turns flood
    /// control off.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit: u32,

    /// Lines one client may send at once before the rate applies.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub burst: u32,

    /// Connections from one address; 0 = no cap. Loopback is exempt unless
    /// --limit-loopback.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_per_ip: u32,

    /// Apply --max-per-ip and the connect throttle (--connect-rate,
    /// --connect-burst) to loopback addresses too.
    #[arg(long)]
    pub limit_loopback: bool,

    /// `redis://HOST:PORT[/DB]`: share rooms with every server using the
    /// same Redis (6.2 or later). Checked at start: unreachable or refusing
    /// is one line on stderr and exit 1.
    #[arg(long, value_name = "URL", value_parser = crate::cluster::RedisUrl::parse)]
    pub redis: Option<crate::cluster::RedisUrl>,

    /// With --redis: about how many lines each room's log in Redis keeps
    /// (XADD MAXLEN ~): what history and a server that lost its link can
    /// get back. A log shorter than a burst the servers append at once may
    /// trim lines before every server read them (their clients are told
    /// how many they missed).
    #[arg(long, default_value_t = crate::cluster::LOG_MAX_LEN, value_parser = clap::value_parser!(u64).range(100..=10_000_000))]
    pub redis_log_len: u64,

    /// Do not show the room's conversation on stdout (for benchmarks).
    #[arg(long)]
    pub quiet: bool,

    /// Rooms that may have members at once, #lobby included (and empty
    /// rooms whose history is kept).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_rooms: u32,

    /// Chat lines of a room replayed to whoever enters it; 0 = off.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub history: u32,

    /// A file every room's public lines are appended to (created mode
    /// 0600), and history reloaded from at start.
    #[arg(long)]
    pub transcript: Option<PathBuf>,

    /// The folder --mode file serves (required in that mode).
    #[arg(long)]
    pub root: Option<std::path::PathBuf>,

    /// Largest file --mode file sends, in bytes.
    #[arg(long, default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(0..=1_u64 << 40))]
    pub max_file: u64,

    /// The line that ends a connection in echo, upper and file modes; ''
    /// turns it off.
    #[arg(long, default_value = chat_common::stop::EXIT, value_parser = stop_word)]
    pub stop: String,

    /// UDP replies per second to one source address; more are not answered
    /// (so a spoofed datagram cannot set two servers bouncing at full speed).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub udp_rate: u32,

    /// New connections one address may open at once before
    /// --connect-rate applies; past it they are refused at accept. Loopback
    /// is exempt unless --limit-loopback.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connect_burst: u32,

    /// New connections per second one address may open, sustained, after
    /// --connect-burst; 0 turns the throttle off.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub connect_rate: u32,

    /// A file the ban list is kept in (loaded at start, rewritten on every
    /// change), so bans survive a restart.
    #[arg(long, value_name = "FILE")]
    pub bans: Option<PathBuf>,

    /// A file whose first line is the password every chat client must give
    /// with /pass (read once, at start).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Seconds a chat client has to give the password before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub password_timeout: u64,
}

/// Longest `--stop` word: it is held back while a line could still be it.
pub const MAX_STOP: usize = 64;

/// `--stop`: one line's worth of text, no line breaks.
fn stop_word(word: &str) -> Result<String, String> {
    if word.contains(['\n', '\r']) {
        return Err("the stop line cannot contain a line break".into());
    }
    if word.len() > MAX_STOP {
        return Err(format!("at most {MAX_STOP} bytes"));
    }
    Ok(word.to_string())
}

//! `chat-bench`: drives chat-server and `ncat -l --chat` through the same
//! workloads and prints one table comparing them. `bench/run.sh` (what
//! `make bench` calls) builds, finds ncat and calls this.
#![forbid(unsafe_code)]

mod engine;
mod marker;
mod order;
mod procfs;
mod report;
mod rooms;
mod scratch;
mod server;
mod stalls;
mod stamp;
mod tally;
mod workloads;

use std::{fs, path::PathBuf, process::ExitCode, time::Instant};

use clap::Parser;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::server::{Kind, Target};

/// Load generator for chat-server and `ncat -l --chat`.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A few seconds per workload (for iterating) instead of the full run.
    #[arg(long)]
    quick: bool,
    /// chat-server binary to measure; omit to skip it.
    #[arg(long)]
    chat_server: Option<PathBuf>,
    /// ncat binary to measure; omit to skip it.
    #[arg(long)]
    ncat: Option<PathBuf>,
    /// Which workloads to run, by letter ((i) and (k) bring (c) along: they
    /// are compared with it).
    #[arg(long, default_value = "a,b,c,d,e,f,g,h,i,j,k")]
    workloads: String,
    /// Where the table (results.md) and the servers' stderr logs go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Measure nothing: spin a thread on each core for SECS seconds and
    /// print how often the machine took its core away (see `stalls.rs`).
    #[arg(long, value_name = "SECS")]
    host_stalls: Option<u64>,
}

/// The workloads in the order they run: by letter, except that (i) and
/// (k) run right after (c), so the machine's other load (2 shared cores)
/// differs as little as it can between the runs they compare.
fn run_order(all: Vec<workloads::Workload>) -> Vec<workloads::Workload> {
    let (after_c, mut rest): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|w| matches!(w.id, 'i' | 'k'));
    let at = rest
        .iter()
        .position(|w| w.id == 'c')
        .map_or(rest.len(), |c| c + 1);
    rest.splice(at..at, after_c);
    rest
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(secs) = args.host_stalls {
        let span = std::time::Duration::from_secs(secs);
        let (stalls, cores) = stalls::probe(span);
        println!("{}", stalls::describe(stalls, cores, span));
        return ExitCode::SUCCESS;
    }
    // 10,000 clients need 10,000 descriptors: raise the soft limit to the hard.
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let mut targets = Vec::new();
    if let Some(bin) = &args.chat_server {
        targets.push(Target {
            kind: Kind::ChatServer,
            bin: bin.clone(),
        });
    }
    if let Some(bin) = &args.ncat {
        targets.push(Target {
            kind: Kind::Ncat,
            bin: bin.clone(),
        });
    }
    if targets.is_empty() {
        eprintln!("chat-bench: nothing to measure: give --chat-server and/or --ncat");
        return ExitCode::from(2);
    }
    let logs = args.out_dir.join("logs");
    if let Err(e) = fs::create_dir_all(&logs) {
        eprintln!("chat-bench: cannot create {}: {e}", logs.display());
        return ExitCode::FAILURE;
    }
    let mut wanted: Vec<char> = args
        .workloads
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect();
    if (wanted.contains(&'i') || wanted.contains(&'k')) && !wanted.contains(&'c') {
        eprintln!("chat-bench: (i) and (k) are compared with (c) of the same run: running (c) too");
        wanted.push('c');
    }
    let mut results = Vec::new();
    for w in run_order(workloads::all(args.quick)) {
        if !wanted.contains(&w.id) {
            continue;
        }
        let mut result = report::Result {
            workload: w.clone(),
            chat: None,
            ncat: None,
        };
        for t in &targets {
            if t.kind == Kind::Ncat && !w.ncat {
                continue;
            }
            let started = Instant::now();
            eprint!(
                "chat-bench: ({}) {} vs {} ... ",
                w.id,
                w.title,
                t.kind.name()
            );
            let cluster = if w.cluster > 0 { "-cluster" } else { "" };
            let log = logs.join(format!("{}{cluster}-{}.log", w.id, t.kind.name()));
            let measured = workloads::run(&w, t, &log);
            let status = measured
                .iter()
                .find(|(n, _)| *n == workloads::metric::STATUS)
                .map(|(_, v)| match v {
                    workloads::Value::Text(t) => t.clone(),
                    workloads::Value::Num(n, _) => n.to_string(),
                })
                .unwrap_or_default();
            eprintln!("{:.1} s {status}", started.elapsed().as_secs_f64());
            *result.of(t.kind) = Some(measured);
        }
        results.push(result);
    }
    results.sort_by_key(|r| r.workload.id);
    let table = report::table(&results);
    print!("{table}");
    let file = args.out_dir.join("results.md");
    if let Err(e) = fs::write(&file, &table) {
        eprintln!("chat-bench: cannot write {}: {e}", file.display());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i_and_k_run_right_after_c() {
        let order: String = run_order(workloads::all(true))
            .iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(order, "abcikdefghjj");
    }
}

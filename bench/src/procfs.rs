//! What the benchmark reads about a process from /proc: CPU time and memory.
//!
//! CPU is `utime + stime` from `/proc/PID/stat` (all threads together), in
//! clock ticks converted with `getconf CLK_TCK`; memory is `VmRSS` (now) and
//! `VmHWM` (peak) from `/proc/PID/status`, in KiB.

use std::{fs, io, process::Command, sync::OnceLock};

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// User plus system CPU time, in seconds.
    pub cpu_s: f64,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size over the process's life, KiB.
    pub hwm_kib: u64,
}

/// Reads the counters of `pid` (or of this process for `None`).
///
/// # Errors
/// The process is gone, or /proc is not mounted.
pub fn sample(pid: Option<u32>) -> io::Result<Sample> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_string(),
    };
    let stat = fs::read_to_string(format!("{dir}/stat"))?;
    let status = fs::read_to_string(format!("{dir}/status"))?;
    // A zombie (exited, not yet reaped) has no memory lines left.
    let rss_kib = status_kib(&status, "VmRSS:")
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "process has exited"))?;
    Ok(Sample {
        cpu_s: cpu_ticks(&stat).ok_or_else(|| bad("stat"))? as f64 / clk_tck(),
        rss_kib,
        hwm_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
    })
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unparsable /proc {what}"),
    )
}

/// `utime + stime`: fields 14 and 15, counted after the parenthesised
/// command name (which may itself contain spaces and parentheses).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second, asked once of `getconf` (100 on Linux in practice).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let stat = "42 (a) b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(stat), Some(300));
    }

    #[test]
    fn reads_own_process() {
        let s = sample(None).expect("own /proc entry");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }
}

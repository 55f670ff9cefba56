//! How often the machine itself takes a core away: the host's noise, told
//! apart from the servers'.
//!
//! A latency target of a few milliseconds on a shared virtual machine is
//! also a bet on the host: a virtual CPU that the hypervisor (or the guest
//! kernel's own work) holds back for 5 ms holds back every line in flight on
//! it by as much. So before the workloads, `bench/run.sh` runs this probe: a
//! thread on each core reads the clock in a tight loop for a few seconds,
//! nothing else running, and every gap between two readings longer than
//! [`NOTED`] is time its core was taken from it. The results table's header
//! says how many there were and the longest, so a reader can tell a quiet
//! host's run from a noisy one's.

use std::thread;
use std::time::{Duration, Instant};

/// A gap between two clock readings at least this long is a stall: far
/// longer than a timer interrupt or a cache miss, as long as a scheduler
/// time slice.
pub const NOTED: Duration = Duration::from_millis(1);
/// A stall at least this long is counted apart: half of (h)'s and (j)'s
/// p99 target.
pub const LONG: Duration = Duration::from_millis(5);

/// The stalls one or more spinning threads saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stalls {
    /// Gaps of at least [`NOTED`].
    pub noted: u32,
    /// Gaps of at least [`LONG`] (also counted in `noted`).
    pub long: u32,
    /// The longest gap seen, stall or not.
    pub longest: Duration,
    /// All the noted gaps together.
    pub lost: Duration,
}

impl Stalls {
    /// Counts one gap between two clock readings.
    pub fn note(&mut self, gap: Duration) {
        self.longest = self.longest.max(gap);
        if gap >= NOTED {
            self.noted += 1;
            self.lost += gap;
        }
        if gap >= LONG {
            self.long += 1;
        }
    }

    /// Both threads' stalls together.
    pub fn merge(self, other: Stalls) -> Stalls {
        Stalls {
            noted: self.noted + other.noted,
            long: self.long + other.long,
            longest: self.longest.max(other.longest),
            lost: self.lost + other.lost,
        }
    }
}

/// Spins one thread per core for `span` and returns every stall they saw,
/// with the number of threads. Each thread reads the clock and nothing else,
/// so it wants its core all the time: any gap is the core taken away.
pub fn probe(span: Duration) -> (Stalls, usize) {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let spinners: Vec<_> = (0..cores)
        .map(|_| thread::spawn(move || spin(span, Instant::now)))
        .collect();
    let stalls = spinners
        .into_iter()
        // A spinner only reads the clock: it cannot panic.
        .map(|t| t.join().unwrap_or_default())
        .fold(Stalls::default(), Stalls::merge);
    (stalls, cores)
}

/// One spinner: the gaps between consecutive readings of `clock` (the
/// real one but in tests) for `span`.
fn spin(span: Duration, mut clock: impl FnMut() -> Instant) -> Stalls {
    let mut stalls = Stalls::default();
    let start = clock();
    let mut last = start;
    while last - start < span {
        let now = clock();
        stalls.note(now - last);
        last = now;
    }
    stalls
}

/// One line for the results' header.
pub fn describe(stalls: Stalls, cores: usize, span: Duration) -> String {
    format!(
        "host stalls: {cores} threads spinning {:.0} s, nothing else of ours running, lost their \
         core {} times for {} ms or more ({} for {} ms or more), {:.1} ms in all, longest {:.1} ms",
        span.as_secs_f64(),
        stalls.noted,
        NOTED.as_millis(),
        stalls.long,
        LONG.as_millis(),
        stalls.lost.as_secs_f64() * 1e3,
        stalls.longest.as_secs_f64() * 1e3,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Gaps are counted by length: short ones only raise the longest.
    #[test]
    fn gaps_are_counted_by_length() {
        let mut s = Stalls::default();
        for gap in [Duration::from_micros(20), MS, 3 * MS, 5 * MS, 12 * MS] {
            s.note(gap);
        }
        assert_eq!(
            s,
            Stalls {
                noted: 4,
                long: 2,
                longest: 12 * MS,
                lost: 21 * MS,
            }
        );
        let mut quiet = Stalls::default();
        quiet.note(Duration::from_micros(999));
        assert_eq!(quiet.noted, 0);
        assert_eq!(quiet.longest, Duration::from_micros(999));
    }

    /// Two threads' stalls add up; the longest is the longer one.
    #[test]
    fn merged_stalls_add_up() {
        let mut a = Stalls::default();
        a.note(2 * MS);
        let mut b = Stalls::default();
        b.note(7 * MS);
        b.note(MS);
        let m = a.merge(b);
        assert_eq!(
            (m.noted, m.long, m.longest, m.lost),
            (3, 1, 7 * MS, 10 * MS)
        );
    }

    /// A spinner counts every jump of its clock, and stops once `span`
    /// has passed: a clock ticking 100 us, with jumps of 2 and 8 ms.
    #[test]
    fn a_spinner_counts_the_jumps_of_its_clock() {
        let start = Instant::now();
        let mut at = start;
        let mut reads = 0;
        let clock = || {
            reads += 1;
            at += match reads {
                10 => 2 * MS,
                20 => 8 * MS,
                _ => Duration::from_micros(100),
            };
            at
        };
        let s = spin(20 * MS, clock);
        assert_eq!(
            (s.noted, s.long, s.longest, s.lost),
            (2, 1, 8 * MS, 10 * MS)
        );
        // 20 ms: the two jumps and about 100 ticks of 100 us.
        assert!((100..=110).contains(&reads), "{reads} readings");
    }

    /// The probe runs for its span on every core and says so.
    #[test]
    fn the_probe_spins_for_its_span() {
        let span = Duration::from_millis(50);
        let start = Instant::now();
        let (stalls, cores) = probe(span);
        assert!(start.elapsed() >= span);
        assert!(cores >= 1);
        assert!(stalls.longest > Duration::ZERO);
        let line = describe(stalls, cores, span);
        assert!(
            line.starts_with(&format!("host stalls: {cores} threads spinning")),
            "{line}"
        );
    }
}

//! Timestamped log lines on stderr.
//!
//! Logs go to stderr so stdout carries only the room's conversation. Each
//! line is written with one `write` call on a locked stderr, so lines from
//! different threads never interleave. Never log while holding the registry
//! lock: stderr may block.

use std::fmt;
use std::io::Write;
use std::time::SystemTime;

/// Writes one log line: an RFC 3339 UTC timestamp, then the message.
pub fn write(args: fmt::Arguments<'_>) {
    let line = format!(
        "{} {}\n",
        humantime::format_rfc3339_millis(SystemTime::now()),
        args
    );
    // A closed stderr must not take the server down: drop the line.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// An I/O error in plain words, without the `(os error N)` tail: what a
/// person reads in a log line or a leave notice.
pub fn plain(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_lowercase(),
        None => text,
    }
}

/// Writes one line to stdout, ignoring a closed stdout: the server's own
/// output must never take it down.
pub fn say(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
}

/// `log!("accepted {}", addr)`: one timestamped line on stderr.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::write(format_args!($($arg)*))
    };
}

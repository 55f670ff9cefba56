//! The command line, parsed by hand to clap's standards.
//!
//! The client may not depend on a third-party crate, so this module does what
//! clap would: `--help` lists every option with its default, `--version`
//! prints the version, options may come before or after the operands, take
//! `--opt VALUE` or `--opt=VALUE`, and `--` ends the options. Anything wrong
//! is one [`Usage`] line, and `main` exits 2 with it, before a socket is
//! opened.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::address::Target;
use crate::tcp::MAX_PASSWORD_LINE;

/// How long one connect attempt, or one wait for a UDP reply, may take
/// unless `--timeout` says otherwise. Long enough for a far server, short
/// enough that a wrong address does not look like a hang.
pub const DEFAULT_TIMEOUT_SECS: u64 = 5;

/// The longest `--timeout`: one day. Longer waits mean nothing to a person
/// at a terminal, and the bound is what lets a wait's deadline be
/// `Instant::now() + timeout`: an unbounded one (`--timeout 1e19`) overflowed
/// the instant and panicked.
pub const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;

/// The synopsis, shown by `--help` and at the end of every usage error.
pub const USAGE: &str = "chat-client [OPTIONS] HOST PORT";

/// What the user asked for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Run a session with these options.
    Run(Options),
    /// `--help` / `-h`: print [`help`] and exit 0.
    Help,
    /// `--version` / `-V`: print [`version`] and exit 0.
    Version,
}

/// A session's settings, all checked.
#[derive(Debug, PartialEq)]
pub struct Options {
    /// The server, as the user named it.
    pub target: Target,
    /// `--name`: sent as `/nick NAME` right after connecting (TCP only).
    pub name: Option<String>,
    /// `--password-file`: its first line is sent as `/pass PASSWORD` before
    /// anything else (TCP only). Read when the session starts.
    pub password_file: Option<PathBuf>,
    /// `--udp`: one datagram per line instead of a TCP connection.
    pub udp: bool,
    /// `--timeout`: bound on each connect attempt and each UDP reply wait;
    /// never zero (a zero socket timeout is an error in std), at most
    /// [`MAX_TIMEOUT_SECS`] (so it can be added to an `Instant`).
    pub timeout: Duration,
}

/// A usage error: one line saying what is wrong, then the synopsis.
#[derive(Debug, PartialEq)]
pub struct Usage(String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {} (usage: {USAGE}; try --help)", self.0)
    }
}

/// Parses the arguments after the program name.
///
/// # Errors
///
/// A missing, extra, unknown, repeated or malformed argument is a [`Usage`].
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, Usage> {
    let mut args = args.into_iter();
    let mut operands: Vec<String> = Vec::new();
    let mut name: Option<String> = None;
    let mut password_file: Option<PathBuf> = None;
    let mut timeout: Option<Duration> = None;
    let mut udp = false;
    let mut options_done = false;

    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|bad| Usage(format!("argument {bad:?} is not valid UTF-8")))?;
        if options_done || arg == "-" || !arg.starts_with('-') {
            operands.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--" => options_done = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--udp" => {
                if inline.is_some() {
                    return Err(Usage("--udp takes no value".into()));
                }
                if udp {
                    return Err(Usage("--udp given more than once".into()));
                }
                udp = true;
            }
            "--name" => {
                if name.is_some() {
                    return Err(Usage("--name given more than once".into()));
                }
                let value = value_of(&flag, "NAME", inline, &mut args)?;
                name = Some(check_name(&value)?);
            }
            "--password-file" => {
                if password_file.is_some() {
                    return Err(Usage("--password-file given more than once".into()));
                }
                let value = value_of(&flag, "FILE", inline, &mut args)?;
                if value.is_empty() {
                    return Err(Usage("--password-file needs a file name".into()));
                }
                password_file = Some(PathBuf::from(value));
            }
            "--timeout" => {
                if timeout.is_some() {
                    return Err(Usage("--timeout given more than once".into()));
                }
                let value = value_of(&flag, "SECS", inline, &mut args)?;
                timeout = Some(parse_timeout(&value)?);
            }
            _ => return Err(Usage(format!("unknown option '{arg}'"))),
        }
    }

    let (host, port) = match operands.as_slice() {
        [] => return Err(Usage("missing HOST and PORT".into())),
        [_] => return Err(Usage("missing PORT".into())),
        [host, port] => (host, port),
        [_, _, extra, ..] => return Err(Usage(format!("unexpected argument '{extra}'"))),
    };
    let port = parse_port(port)?;
    let target = Target::new(host, port);
    // `[]` is empty too, once its brackets are off.
    if target.host.is_empty() {
        return Err(Usage("HOST is empty".into()));
    }
    if udp && name.is_some() {
        return Err(Usage(
            "--name has no meaning with --udp (there is no session to name)".into(),
        ));
    }
    if udp && password_file.is_some() {
        return Err(Usage(
            "--password-file has no meaning with --udp (only a chat session asks for one)".into(),
        ));
    }
    Ok(Parsed::Run(Options {
        target,
        name,
        password_file,
        udp,
        timeout: timeout.unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
    }))
}

/// The value of an option: after `=`, or the next argument.
fn value_of(
    flag: &str,
    meta: &str,
    inline: Option<String>,
    rest: &mut impl Iterator<Item = OsString>,
) -> Result<String, Usage> {
    match inline {
        Some(value) => Ok(value),
        None => rest
            .next()
            .ok_or_else(|| Usage(format!("{flag} needs a value ({flag} {meta})")))?
            .into_string()
            .map_err(|bad| Usage(format!("value {bad:?} of {flag} is not valid UTF-8"))),
    }
}

/// PORT: a number from 1 to 65535 (0 would mean "any port", which only
/// makes sense for a server).
fn parse_port(text: &str) -> Result<u16, Usage> {
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        Ok(_) => Err(Usage(format!(
            "invalid PORT '{text}': must be from 1 to 65535"
        ))),
        Err(_) => Err(Usage(format!(
            "invalid PORT '{text}': not a number from 1 to 65535"
        ))),
    }
}

/// SECS: a positive number of seconds, fractions allowed (`0.5`), at most
/// [`MAX_TIMEOUT_SECS`].
fn parse_timeout(text: &str) -> Result<Duration, Usage> {
    let bad = || {
        Usage(format!(
            "invalid --timeout '{text}': expected a positive number of seconds"
        ))
    };
    let secs: f64 = text.parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(bad());
    }
    if secs > MAX_TIMEOUT_SECS as f64 {
        return Err(Usage(format!(
            "invalid --timeout '{text}': at most {MAX_TIMEOUT_SECS} seconds (one day)"
        )));
    }
    let timeout = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
    if timeout.is_zero() {
        return Err(bad());
    }
    Ok(timeout)
}

/// NAME: one word. Whether the server accepts it is the server's call (it
/// answers a refused `/nick` with a `! ` line); the client only makes sure
/// the name cannot smuggle in a second line or a second argument.
fn check_name(name: &str) -> Result<String, Usage> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Usage(format!(
            "invalid --name {name:?}: must be one word without spaces"
        )));
    }
    Ok(name.to_string())
}

/// `chat-client 0.1.0`.
pub fn version() -> String {
    format!("chat-client {}", env!("CARGO_PKG_VERSION"))
}

/// The `--help` text: synopsis, operands, every option with its default.
pub fn help() -> String {
    format!(
        "\
{version}
A terminal client for the line-based chat server, or any line server (TCP or UDP).

Usage: {USAGE}

Arguments:
  HOST  server name, IPv4 or IPv6 address (::1 or [::1]); every address
        the name resolves to is tried in turn
  PORT  server port, 1 to 65535

Options:
      --name NAME     send /nick NAME right after connecting (TCP only)
                      [default: none, the server's guest-N]
      --password-file FILE
                      send /pass with the first line of FILE before
                      anything else, for a server that asks for a password;
                      FILE must be a regular file, its first line at most
                      {MAX_PASSWORD_LINE} bytes [default: none]
      --udp           send each line as one UDP datagram and print the reply
                      [default: off, TCP]
      --timeout SECS  limit on each connect attempt and each UDP reply wait,
                      fractions allowed, at most {MAX_TIMEOUT_SECS} (one day)
                      [default: {DEFAULT_TIMEOUT_SECS}]
  -h, --help          print this help and exit
  -V, --version       print the version and exit

Lines you type are sent as you press Enter; lines from the server are printed
as they arrive. EXIT alone on a line, or end of input (Ctrl+D), leaves; Ctrl+C
quits at once.

Exit status: 0 when the session ends (you left or the server closed),
1 on a network error, 2 on a usage error.
",
        version = version()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Parsed, Usage> {
        parse(args.iter().map(OsString::from))
    }

    fn options(args: &[&str]) -> Options {
        match run(args) {
            Ok(Parsed::Run(options)) => options,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = options(&["localhost", "2000"]);
        assert_eq!(o.target, Target::new("localhost", 2000));
        assert_eq!(o.name, None);
        assert_eq!(o.password_file, None);
        assert!(!o.udp);
        assert_eq!(o.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
    }

    #[test]
    fn options_anywhere_and_with_equals() {
        let o = options(&["::1", "--timeout=0.5", "7", "--name", "alice"]);
        assert_eq!(o.target, Target::new("::1", 7));
        assert_eq!(o.name.as_deref(), Some("alice"));
        assert_eq!(o.timeout, Duration::from_millis(500));
        let o = options(&["--password-file=pw.txt", "h", "9"]);
        assert_eq!(o.password_file, Some(PathBuf::from("pw.txt")));
        let o = options(&["--udp", "--", "h", "9"]);
        assert!(o.udp);
    }

    /// One day is the longest timeout: it is taken, a hair more is not.
    #[test]
    fn timeout_is_at_most_a_day() {
        let o = options(&["--timeout", "86400", "h", "9"]);
        assert_eq!(o.timeout, Duration::from_secs(MAX_TIMEOUT_SECS));
        let err = run(&["--timeout", "1e19", "h", "9"]).unwrap_err();
        assert!(err.to_string().contains("at most 86400 seconds"), "{err}");
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(run(&["--help"]), Ok(Parsed::Help));
        assert_eq!(run(&["x", "-h"]), Ok(Parsed::Help));
        assert_eq!(run(&["-V"]), Ok(Parsed::Version));
        assert!(help().contains("[default: 5]"));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for bad in [
            &[][..],
            &["host"],
            &["host", "0"],
            &["host", "70000"],
            &["host", "abc"],
            &["host", "1", "extra"],
            &["--bogus", "host", "1"],
            &["host", "1", "--timeout"],
            &["--timeout", "0", "host", "1"],
            &["--timeout", "-1", "host", "1"],
            &["--timeout", "nan", "host", "1"],
            &["--timeout", "86400.001", "host", "1"],
            &["--timeout", "1e19", "--udp", "host", "1"],
            &["--timeout", "inf", "host", "1"],
            &["--name", "a b", "host", "1"],
            &["--name", "a", "--name", "b", "host", "1"],
            &["--udp", "--name", "a", "host", "1"],
            &["--udp", "--password-file", "f", "host", "1"],
            &["--password-file", "a", "--password-file", "b", "host", "1"],
            &["--password-file=", "host", "1"],
            &["host", "1", "--password-file"],
            &["", "1"],
            &["[]", "1"],
        ] {
            let err = run(bad).expect_err(&format!("{bad:?} should fail"));
            let line = err.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains(USAGE), "{line}");
        }
    }
}

//! Where the server is: the HOST and PORT the user typed, and the socket
//! addresses they resolve to.
//!
//! [`Target`] keeps the host exactly as typed (less IPv6 brackets) so every
//! diagnostic names the server the way the user knows it (`lectura:2000`,
//! `[::1]:2000`), not as whichever resolved address failed last. A name may
//! resolve to several addresses (`localhost` is often `::1` and `127.0.0.1`);
//! callers try them in turn.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::error::{Failure, Result};

/// The server as the user named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// A DNS name, an IPv4 address or an IPv6 address without brackets.
    pub host: String,
    /// 1 to 65535; port 0 is refused when the arguments are parsed.
    pub port: u16,
}

impl Target {
    /// A target from the HOST argument; `[::1]` and `::1` are the same host.
    pub fn new(host: &str, port: u16) -> Target {
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        Target {
            host: host.to_string(),
            port,
        }
    }

    /// Every address the host stands for, in the resolver's order.
    ///
    /// # Errors
    ///
    /// A name that does not resolve, or resolves to nothing, is a
    /// [`Failure`] naming `host:port` and the resolver's reason.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        // `[::1` or `::1]`: no name has a bracket, so there is nothing to
        // ask DNS about.
        if self.has_bracket() {
            return Err(Failure::new(format!(
                "cannot resolve {self}: {:?} is neither a name nor an address (a bracket without its pair)",
                self.host
            )));
        }
        let addrs: Vec<SocketAddr> = match (self.host.as_str(), self.port).to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(err) => {
                let text = err.to_string();
                let reason = text
                    .strip_prefix("failed to lookup address information: ")
                    .unwrap_or(&text);
                return Err(Failure::new(format!(
                    "cannot resolve {self}: the name {:?} does not resolve to an address ({reason})",
                    self.host
                )));
            }
        };
        if addrs.is_empty() {
            return Err(Failure::new(format!(
                "cannot resolve {self}: the name {:?} has no addresses",
                self.host
            )));
        }
        Ok(addrs)
    }

    /// Whether the host still has a bracket: one without its pair, as
    /// [`Target::new`] takes off only a pair around the whole host.
    fn has_bracket(&self) -> bool {
        self.host.contains(['[', ']'])
    }
}

impl fmt::Display for Target {
    /// `host:port`, with brackets around an IPv6 address as in a URL; a
    /// host that still has a bracket (`[::1`) is shown as typed, not given
    /// a second pair (`[[::1]:2000`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') && !self.has_bracket() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How a list of failed attempts reads in one line: the shared reason once
/// when every address failed the same way, else each address with its own.
pub fn summarize(attempts: &[(SocketAddr, String)]) -> String {
    match attempts {
        [] => "no address to try".to_string(),
        [(_, reason)] => reason.clone(),
        [(_, first), rest @ ..] if rest.iter().all(|(_, reason)| reason == first) => {
            let tried: Vec<String> = attempts
                .iter()
                .map(|(addr, _)| addr.ip().to_string())
                .collect();
            format!("{first} (tried {})", tried.join(", "))
        }
        _ => {
            let each: Vec<String> = attempts
                .iter()
                .map(|(addr, reason)| format!("{}: {reason}", addr.ip()))
                .collect();
            each.join("; ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_are_optional_for_ipv6() {
        assert_eq!(Target::new("[::1]", 7), Target::new("::1", 7));
        assert_eq!(Target::new("::1", 7).to_string(), "[::1]:7");
        assert_eq!(Target::new("lectura", 2000).to_string(), "lectura:2000");
    }

    /// A bracket without its pair is shown as typed, once, and refused
    /// without asking DNS.
    #[test]
    fn an_unpaired_bracket_is_not_doubled() {
        for (host, shown) in [("[::1", "[::1:2000"), ("::1]", "::1]:2000")] {
            let target = Target::new(host, 2000);
            assert_eq!(target.to_string(), shown);
            let err = target.resolve().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("cannot resolve {shown}: ")),
                "{err}"
            );
            assert!(err.contains("bracket"), "{err}");
        }
    }

    #[test]
    fn literals_resolve_without_dns() {
        let addrs = Target::new("[::1]", 9).resolve().unwrap();
        assert_eq!(addrs, vec!["[::1]:9".parse().unwrap()]);
        let addrs = Target::new("127.0.0.1", 9).resolve().unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:9".parse().unwrap()]);
    }

    #[test]
    fn same_reason_is_said_once() {
        let a: SocketAddr = "[::1]:9".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let same = [(a, "refused".to_string()), (b, "refused".to_string())];
        assert_eq!(summarize(&same), "refused (tried ::1, 127.0.0.1)");
        let mixed = [(a, "unreachable".to_string()), (b, "refused".to_string())];
        assert_eq!(summarize(&mixed), "::1: unreachable; 127.0.0.1: refused");
    }
}

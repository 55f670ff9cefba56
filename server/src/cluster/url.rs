//! `--redis URL`: which Redis the servers of one cluster share.
//!
//! Checked when the flags are parsed (clap's error and exit 2 for a URL that
//! is not `redis://HOST[:PORT][/DB]`), so a typo never reaches the network.
//! Whether that Redis answers is [`super::link::check`]'s business, at start.

use std::fmt;

/// The port Redis listens on when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;

/// A checked `redis://HOST[:PORT][/DB]` (a `user:password@` before HOST is
/// passed on to Redis as AUTH).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// The URL as given: what the redis crate connects with.
    url: String,
    /// `HOST:PORT`, for messages: never the password.
    shown: String,
}

impl RedisUrl {
    /// Parses and checks a `--redis` value (clap's `value_parser`).
    ///
    /// # Errors
    /// A one-line reason: wrong scheme, no host, a port or database that is
    /// not a number.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let rest = text
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{text:?} is not a redis://HOST:PORT[/DB] URL"))?;
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(format!("database {db:?} is not a number"));
        }
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = match hostport.rsplit_once(':') {
            // An IPv6 literal in brackets has colons of its own.
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (hostport, None),
        };
        if host.is_empty() || host == "[]" {
            return Err(format!("{text:?} names no host"));
        }
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("port {port:?} is not a number from 1 to 65535"))?,
            None => DEFAULT_PORT,
        };
        // Whatever else the crate rejects (a bad escape in the password).
        redis::Client::open(text).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(RedisUrl {
            url: text.to_string(),
            shown: format!("{host}:{port}"),
        })
    }

    /// The full URL, password included: for connecting only.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

/// `HOST:PORT`: what logs and error lines show (never a password).
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Like `Display`: a `Debug` dump of the flags must not show the password.
impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_host_port_and_db() {
        let url = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(url.to_string(), "127.0.0.1:6380");
        assert_eq!(url.as_str(), "redis://127.0.0.1:6380/2");
        assert_eq!(
            RedisUrl::parse("redis://localhost").unwrap().to_string(),
            "localhost:6379"
        );
        assert_eq!(
            RedisUrl::parse("redis://[::1]:7000").unwrap().to_string(),
            "[::1]:7000"
        );
    }

    #[test]
    fn the_password_is_never_shown() {
        let url = RedisUrl::parse("redis://:sesame@127.0.0.1:7000").unwrap();
        assert_eq!(url.to_string(), "127.0.0.1:7000");
        assert!(!format!("{url:?}").contains("sesame"));
    }

    #[test]
    fn refuses_what_is_not_a_redis_url() {
        for bad in [
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "redis://",
            "redis://:6379",
            "redis://host:port",
            "redis://host:0",
            "redis://host:70000",
            "redis://host:6379/x",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}

//! The start check: Redis reachable, accepting us and recent enough, or
//! one line for `main` to print before exiting 1.

use super::super::url::RedisUrl;
use super::{brief, CONNECT_TIMEOUT, IO_TIMEOUT, MIN_VERSION};

/// At start: connects once, checks that Redis answers, accepts us
/// (password) and is recent enough ([`MIN_VERSION`]).
///
/// # Errors
/// The one line `main` prints before exiting 1.
pub fn check(url: &RedisUrl) -> Result<(), String> {
    let client =
        redis::Client::open(url.as_str()).map_err(|e| format!("--redis: {}", brief(&e)))?;
    let mut conn = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot use Redis at {url}: {}", first_words(&e)))?;
    conn.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("cannot use Redis at {url}: {}", brief(&e)))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut conn)
        .map_err(|e| format!("Redis at {url} refused us: {}", first_words(&e)))?;
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
        .ok_or_else(|| format!("Redis at {url} did not say its version"))?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_VERSION {
        return Err(format!(
            "Redis at {url} is version {version}; the cluster needs {}.{} or later",
            MIN_VERSION.0, MIN_VERSION.1
        ));
    }
    Ok(())
}

/// What the start check says of a failure to connect or to ask: as
/// [`brief`], but a reply that does not parse, this early, means the
/// service on the port is not Redis (an SSH, HTTP or SMTP banner), and the
/// reply parser's own message is lines of byte numbers. (Later, the same
/// kind of error can be a value of ours that does not convert: [`brief`]
/// keeps its words.)
fn first_words(e: &redis::RedisError) -> String {
    if e.kind() == redis::ErrorKind::Parse {
        "it answered, but not in the Redis protocol (is it Redis?)".to_string()
    } else {
        brief(e)
    }
}

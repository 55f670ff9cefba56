//! A room's name as its creator spelled it, the same on every server
//! (SPEC: a room is shown "in the spelling of whoever created the room").
//!
//! `chat:spelling:KEY` holds it while the room has members on some server:
//! a room about to get its first local member, on any server, is shown as
//! it holds, or as the mover typed it if it holds nothing ([`held`]); once
//! the member is in, the server names the room so unless it is named
//! already (`SET NX` through the writer, [`name`]); every server with
//! members in the room keeps it alive at each heartbeat ([`keep`]), so it
//! expires [`SPELLING_TTL`] after the room's last member anywhere left,
//! and the next to create the room names it again. A `/join` refused
//! (`--max-rooms`) names nothing. Redis's value is taken only if it is a
//! valid name of that room.

use chat_common::room;

use super::keys;
use super::link::{Failure, Link};
use super::presence::HEARTBEAT_TTL;

/// How long a room's spelling outlives the heartbeats of the servers with
/// members in it: as long as a server's own heartbeat.
pub const SPELLING_TTL: std::time::Duration = HEARTBEAT_TTL;

/// Room `key`'s spelling as the cluster shows it: the one held in Redis, or
/// `typed` (the mover's) if none is.
///
/// # Errors
/// When Redis cannot be asked.
pub fn held(link: &mut Link, key: &str, typed: &str) -> Result<String, Failure> {
    let held: Option<String> =
        link.run_idempotent(|conn| redis::cmd("GET").arg(keys::spelling(key)).query(conn))?;
    Ok(held
        .filter(|s| room::check(s).is_ok() && room::key(s) == key)
        .unwrap_or_else(|| typed.to_string()))
}

/// Adds to `pipe` naming room `key` `spelling`, unless it is named already
/// (one command, its reply kept).
pub fn name(pipe: &mut redis::Pipeline, key: &str, spelling: &str) {
    pipe.cmd("SET")
        .arg(keys::spelling(key))
        .arg(spelling)
        .arg("NX")
        .arg("PX")
        .arg(SPELLING_TTL.as_millis() as u64);
}

/// How the cluster spells each room of `keys` (its key where none is
/// held, or Redis holds no valid name of that room), for `/rooms`.
///
/// # Errors
/// When Redis cannot be asked.
pub fn spelled(link: &mut Link, rooms: &[String]) -> Result<Vec<String>, Failure> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let held: Vec<Option<String>> = link.run_idempotent(|conn| {
        let mut cmd = redis::cmd("MGET");
        for key in rooms {
            cmd.arg(keys::spelling(key));
        }
        cmd.query(conn)
    })?;
    Ok(rooms
        .iter()
        .zip(held)
        .map(|(key, held)| {
            held.filter(|s| room::check(s).is_ok() && room::key(s) == *key)
                .unwrap_or_else(|| key.clone())
        })
        .collect())
}

/// Keeps the spellings of the rooms this server has members in (key and
/// spelling) for another [`SPELLING_TTL`]; sets one that expired (its
/// server was cut off longer than that) or was lost with Redis's data.
///
/// # Errors
/// When Redis cannot be asked.
pub fn keep(link: &mut Link, rooms: &[(String, String)]) -> Result<(), Failure> {
    if rooms.is_empty() {
        return Ok(());
    }
    let ttl = SPELLING_TTL.as_millis() as u64;
    link.run_idempotent(|conn| {
        let mut pipe = redis::pipe();
        for (key, spelling) in rooms {
            name(&mut pipe, key, spelling);
            pipe.ignore()
                .cmd("PEXPIRE")
                .arg(keys::spelling(key))
                .arg(ttl)
                .ignore();
        }
        pipe.query::<()>(conn)
    })
}

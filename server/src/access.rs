//! Who may come in: the checks a connection meets at accept and before it
//! joins the room, and the console's `/ban`, `/unban` and `/bans`.
//!
//! At accept ([`Access::at_accept`]), on the accept thread, before a worker, a queue
//! place or a per-address slot is taken: a banned address, or one locked out
//! for wrong passwords ([`crate::password`]), gets one `! ` line and is
//! closed. So a banned flood costs the server an `accept` and a `close` per
//! connection, and never pushes honest clients into "please wait".
//!
//! Before joining ([`enter`]), on the client's worker: the ban and the
//! lockout are checked again (a connection may have waited in the queue
//! while its address was banned), then the password gate runs, then both
//! are checked once more. Right after joining ([`joined`]), the ban once
//! more, for a `/ban` that landed in between.
//!
//! `/ban` of a connected name bans that client's address; of an address or
//! prefix, every address inside it. Every connection from inside is closed
//! at once: the room's clients are evicted (told why, their room sees them
//! leave), and every other socket from there has its read side shut
//! ([`crate::conns::Connections::close_where`]): one at the password prompt
//! sees end of stream and is told it is banned, one waiting for a worker is
//! dropped by the pool and told it is banned ([`crate::unserved`]).

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use chat_common::protocol;
use chat_common::sanitize::sanitize;
use parking_lot::Mutex;

use crate::bans::{self, Added, Ban, BanFile, Bans, Prefix};
use crate::config::{Config, Mode};
use crate::leave::Leave;
use crate::log;
use crate::password::{self, Gate, Passage};
use crate::Context;

/// May this connection go on?
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// Yes.
    Admitted,
    /// No: tell it this line (with its LF) and close.
    Refused(String),
    /// It left, or its socket failed, before it could be admitted; the
    /// reason is for the log.
    Gone(String),
}

/// How often refusals at accept are logged one by one: a banned flood
/// gets one line a second and a count of the rest, not a line per
/// connection.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// The ban list and the password gate: what decides who may come in.
pub struct Access {
    /// `--bans`: who is refused at accept.
    pub bans: Bans,
    /// `--password-file` (chat mode only): the password and the wrong tries.
    pub gate: Option<Gate>,
    /// When a refusal at accept was last logged, and how many were not
    /// since (see [`REFUSAL_LOG_EVERY`]).
    refusals: Mutex<(Option<Instant>, u64)>,
}

impl Access {
    /// The ban list (`--bans`) and, in chat mode, the password gate
    /// (`--password-file`), from the files read before the bind
    /// ([`crate::prepare`]); logs what they hold, now that the port is
    /// bound.
    pub fn new(config: &Config, bans: Option<BanFile>, gate: Option<Gate>) -> Access {
        if config.password_file.is_some() && config.mode != Mode::Chat {
            log!("--password-file applies to chat mode only; this server asks no password");
        }
        Access {
            bans: Bans::load(bans),
            gate,
            refusals: Mutex::new((None, 0)),
        }
    }

    /// The check at accept: a banned or locked-out address is refused (and
    /// logged, at most one line per [`REFUSAL_LOG_EVERY`] plus a count).
    pub fn at_accept(&self, peer: SocketAddr) -> Admission {
        let Some(line) = self.shut_out(peer.ip()) else {
            // A quiet moment: the count of a flood's tail is not left behind.
            self.flush_refusals(REFUSAL_LOG_EVERY);
            return Admission::Admitted;
        };
        let mut refusals = self.refusals.lock();
        let now = Instant::now();
        if refusals
            .0
            .is_some_and(|last| now.duration_since(last) < REFUSAL_LOG_EVERY)
        {
            refusals.1 += 1;
        } else {
            let hidden = std::mem::take(&mut refusals.1);
            *refusals = (Some(now), 0);
            drop(refusals);
            if hidden > 0 {
                log!(
                    "{} refused at accept (banned or locked out)",
                    protocol::count(hidden, "more connection")
                );
            }
            log!("{peer} refused: {}", line[2..].trim_end());
        }
        Admission::Refused(line)
    }

    /// The line that turns `ip` away, if it is banned or locked out.
    pub fn shut_out(&self, ip: IpAddr) -> Option<String> {
        if let Some(ban) = self.bans.find(ip) {
            return Some(protocol::error(&ban.message()));
        }
        let left = self.gate.as_ref()?.locked(ip)?;
        Some(password::lockout_line(left))
    }

    /// Logs how many refusals at accept went unlogged, if any did and the
    /// last line logged is at least `quiet` old; `Duration::ZERO` at
    /// shutdown, so the end of a flood is counted too.
    pub fn flush_refusals(&self, quiet: Duration) {
        let mut refusals = self.refusals.lock();
        let (Some(last), hidden) = *refusals else {
            return;
        };
        let now = Instant::now();
        if hidden == 0 || now.duration_since(last) < quiet {
            return;
        }
        *refusals = (Some(now), 0);
        drop(refusals);
        log!(
            "{} refused at accept (banned or locked out)",
            protocol::count(hidden, "more connection")
        );
    }

    /// A guard that counts the refusals left unlogged when it drops: the
    /// accept loop holds it, so the summary of a flood is logged before the
    /// server stops.
    #[must_use]
    pub fn refusals_counted(&self) -> RefusalTally<'_> {
        RefusalTally(self)
    }
}

/// See [`Access::refusals_counted`].
pub struct RefusalTally<'a>(&'a Access);

impl Drop for RefusalTally<'_> {
    fn drop(&mut self) {
        self.0.flush_refusals(Duration::ZERO);
    }
}

/// The check before a chat client joins the room: the ban and the lockout
/// again, then the password, if the server has one, then both again. A
/// client admitted is marked [`crate::conns::Stage::Entered`], so a later
/// lockout of its address leaves it in the room.
pub fn enter(stream: &TcpStream, peer: SocketAddr, ctx: &Context) -> Admission {
    let access = &ctx.access;
    if let Some(line) = access.shut_out(peer.ip()) {
        return Admission::Refused(line);
    }
    let Some(gate) = &access.gate else {
        ctx.conns.entered(stream);
        return Admission::Admitted;
    };
    let admission = match gate.pass(stream, peer, ctx) {
        Passage::Granted => Admission::Admitted,
        Passage::Refused(line) => return Admission::Refused(line),
        Passage::Gone(why) => Admission::Gone(why),
    };
    // Banned or locked out while at the prompt: it saw end of stream there
    // (`/ban` and the lockout shut its read side), or gave the password
    // just then. It is told why.
    if let Some(line) = access.shut_out(peer.ip()) {
        return Admission::Refused(line);
    }
    if admission == Admission::Admitted {
        ctx.conns.entered(stream);
    }
    admission
}

/// Right after a chat client joined the room: the ban once more. A `/ban`
/// that landed between [`enter`]'s last check and the join found the client
/// in no room, so it is evicted here, as `/ban` would have, through the
/// rooms' one removal path. Either `/ban`'s eviction saw the client in
/// the room, or its ban was in the list before this looks.
pub fn joined(peer: SocketAddr, ctx: &Context) {
    if let Some(ban) = ctx.access.bans.find(peer.ip()) {
        let leave = Leave::Banned(ban.reason.clone());
        let gone = ctx.rooms.evict_where(|ip| ban.prefix.contains(ip), &leave);
        if !gone.is_empty() {
            log!(
                "{peer} was banned as it joined; disconnected {}",
                gone.join(", ")
            );
        }
    }
}

/// Console `/ban TARGET [DURATION] [REASON]`: the lines to show, and the
/// ban applied, if any.
pub fn ban(ctx: &Context, args: &str) -> Banned {
    let refused = |line: String| Banned {
        lines: vec![line],
        ban: None,
    };
    let (target, rest) = split_word(args);
    let (duration_word, after) = split_word(rest);
    let (duration, reason) = if duration_word.eq_ignore_ascii_case(UNTIL_UNBAN) {
        (None, after)
    } else if looks_like_duration(duration_word) {
        match bans::parse_duration(duration_word) {
            Ok(d) => (Some(d), after),
            Err(why) => {
                return refused(format!(
                    "! {why}; give {UNTIL_UNBAN}, or no duration, to ban until /unban"
                ))
            }
        }
    } else {
        (None, rest)
    };
    let reason = (!reason.is_empty()).then_some(reason);
    let (prefix, name) = match Prefix::parse(target) {
        Ok(prefix) => (prefix, None),
        Err(_) => match ctx.rooms.address_of(target) {
            Some((name, ip)) => (Prefix::host(ip), Some(name)),
            None => {
                return refused(format!(
                    "! no one called {} is online, and it is not an IP address or a CIDR prefix",
                    sanitize(target)
                ))
            }
        },
    };
    let ban = Ban::new(prefix, duration, name, reason, SystemTime::now());
    let Ok((added, gone, what)) = impose(ctx, ban.clone(), "console") else {
        return refused(format!(
            "! the ban list is full ({} bans); /unban one first",
            bans::MAX_BANS
        ));
    };
    let verb = match added {
        Added::New => "banned",
        Added::Replaced => "ban replaced:",
    };
    let mut lines = vec![format!("* {verb} {what}")];
    if !gone.is_empty() {
        lines.push(format!("* disconnected: {}", gone.join(", ")));
    }
    Banned {
        lines,
        ban: Some(ban),
    }
}

/// What console `/ban` did.
#[derive(Debug)]
pub struct Banned {
    /// The lines to show.
    pub lines: Vec<String>,
    /// The ban now in this server's list, if one is: with `--redis` the
    /// server that applied it with a known address puts it in the
    /// cluster's shared list, for a server that misses it now.
    pub ban: Option<Ban>,
}

/// What [`adopt`] did with a ban of the cluster's shared list.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Adopted {
    /// This server holds a live ban of that prefix already: left as it is.
    Held,
    /// Applied, as a `/ban` passed on would be.
    Applied,
    /// Not applied: this server's list is full ([`bans::MAX_BANS`]).
    Full,
}

/// A ban another server applied while this one was not there to be told
/// (with `--redis`, read from the cluster's shared list when this server
/// registers): applied exactly as a `/ban` passed on is (every connection
/// from inside closed, the list saved to `--bans`), unless this server
/// holds a ban of that prefix already, which it keeps.
pub fn adopt(ctx: &Context, ban: Ban) -> Adopted {
    if ctx.access.bans.holds(&ban.prefix) {
        return Adopted::Held;
    }
    match impose(ctx, ban, "the cluster's shared ban list") {
        Ok(_) => Adopted::Applied,
        Err(bans::ListFull) => Adopted::Full,
    }
}

/// Adds `ban` to the list (saved to `--bans`) and closes every connection
/// from inside it; logs it as banned `by`. Returns whether it replaced a
/// ban, who was disconnected from the rooms, and how `/bans` describes it.
fn impose(
    ctx: &Context,
    ban: Ban,
    by: &str,
) -> Result<(Added, Vec<String>, String), bans::ListFull> {
    let prefix = ban.prefix;
    let leave = Leave::Banned(ban.reason.clone());
    let what = describe(&ban, SystemTime::now());
    let added = ctx.access.bans.add(ban)?;
    let gone = ctx.rooms.evict_where(|ip| prefix.contains(ip), &leave);
    // And every connection from inside it, the room's included (one about
    // to join is then evicted by `joined`): waiting for a worker (the pool
    // drops them, and `Unserved` tells them), at the password prompt (told
    // they are banned), or served in another mode.
    let closed = ctx.conns.close_where(|ip, _| prefix.contains(ip));
    log!(
        "{by} banned {what}{}{}",
        if gone.is_empty() {
            String::new()
        } else {
            format!("; disconnected {}", gone.join(", "))
        },
        if closed == 0 {
            String::new()
        } else {
            format!(
                "; {} closed in all",
                protocol::count(closed as u64, "connection")
            )
        }
    );
    Ok((added, gone, what))
}

/// Console `/unban TARGET`: a prefix as banned, or the name a ban was made
/// for.
pub fn unban(ctx: &Context, target: &str) -> Unbanned {
    let target = target.trim();
    let lifted = ctx.access.bans.remove(target);
    if lifted.is_empty() {
        return Unbanned {
            lines: vec![format!("! no ban on {}", sanitize(target))],
            by_name: Vec::new(),
        };
    }
    let now = SystemTime::now();
    let lines = lifted
        .iter()
        .map(|ban| {
            let what = describe(ban, now);
            log!("console lifted the ban on {what}");
            format!("* lifted the ban on {what}")
        })
        .collect();
    let by_name = if Prefix::parse(target).is_err() {
        lifted.iter().map(|ban| ban.prefix.to_string()).collect()
    } else {
        Vec::new()
    };
    Unbanned { lines, by_name }
}

/// What console `/unban` did.
pub struct Unbanned {
    /// The lines to show.
    pub lines: Vec<String>,
    /// When TARGET was a name: the addresses (or prefixes) whose bans it
    /// lifted. With `--redis` the other servers hold a ban by name as its
    /// address only (it was passed on so), so they are told to lift these.
    pub by_name: Vec<String>,
}

/// `/ban`'s TARGET (the first word of `args`) when it is neither an
/// address nor the name of a client here: with `--redis`, the client may
/// be on another server, whose console path bans it.
pub fn ban_target_absent<'a>(ctx: &Context, args: &'a str) -> Option<&'a str> {
    let (target, _) = split_word(args);
    (Prefix::parse(target).is_err() && ctx.rooms.address_of(target).is_none()).then_some(target)
}

/// Console `/bans`: every live ban with what is left of it.
pub fn list(ctx: &Context) -> Vec<String> {
    let bans = ctx.access.bans.list();
    let now = SystemTime::now();
    let mut lines = vec![match bans.len() {
        0 => "* no bans".to_string(),
        1 => "* 1 ban:".to_string(),
        n => format!("* {n} bans:"),
    }];
    lines.extend(bans.iter().map(|ban| format!("*   {}", describe(ban, now))));
    lines
}

/// `127.0.0.9 (bob), 9m 59s left: spamming`.
fn describe(ban: &Ban, now: SystemTime) -> String {
    let mut text = ban.prefix.to_string();
    if let Some(name) = &ban.name {
        text.push_str(&format!(" ({name})"));
    }
    match ban.until {
        None => text.push_str(", until /unban"),
        Some(_) => text.push_str(&format!(", {} left", ban.left(now))),
    }
    if let Some(reason) = &ban.reason {
        text.push_str(&format!(": {reason}"));
    }
    text
}

/// The first word of `text` and the rest, both trimmed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    }
}

/// The duration word that bans until `/unban`, as giving none does.
const UNTIL_UNBAN: &str = "none";

/// A word that starts with a digit (`90s`, `90`, `7days`, `1.5h`), or with
/// a sign and a digit (`-5m`, `+1h`), is meant as a duration, so a bad one
/// is an error rather than the first word of the reason: a misspelt
/// duration must not quietly ban until `/unban`. (A reason that starts
/// with a digit follows an explicit duration or `none`.)
fn looks_like_duration(word: &str) -> bool {
    let unsigned = word.strip_prefix(['-', '+']).unwrap_or(word);
    unsigned.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A duration word is recognised by its first character (after a
    /// sign), so `/ban x 5y`, `/ban x 90 seconds`, `/ban x 7days` and `/ban
    /// x -5m` are errors, not bans until `/unban` with the reasons "5y",
    /// "90 seconds", "7days" and "-5m" (the last one a review found).
    #[test]
    fn duration_words() {
        for word in [
            "90s", "10m", "2h", "7d", "0s", "5y", "3", "90", "7days", "1.5h", "-5m", "+1h",
        ] {
            assert!(looks_like_duration(word), "{word}");
        }
        for word in ["", "s", "spam", "h1", "none", "-", "--spam", "-x"] {
            assert!(!looks_like_duration(word), "{word}");
        }
    }

    /// A banned address is refused at accept, others are not; a flood of
    /// refusals is logged once and counted, not logged one by one.
    #[test]
    fn refused_at_accept_and_logged_sparingly() {
        let access = Access {
            bans: Bans::in_memory(),
            gate: None,
            refusals: Mutex::new((None, 0)),
        };
        let banned: SocketAddr = "127.0.0.9:5000".parse().unwrap();
        let other: SocketAddr = "127.0.0.10:5000".parse().unwrap();
        let prefix = Prefix::parse("127.0.0.9").unwrap();
        let ban = Ban::new(prefix, None, None, Some("flood"), SystemTime::now());
        assert_eq!(access.bans.add(ban), Ok(Added::New));
        for _ in 0..5 {
            assert_eq!(
                access.at_accept(banned),
                Admission::Refused("! you are banned from this server: flood\n".into())
            );
        }
        assert_eq!(access.at_accept(other), Admission::Admitted);
        let (logged, hidden) = *access.refusals.lock();
        assert!(logged.is_some());
        assert_eq!(hidden, 4);
    }

    #[test]
    fn words_split_once() {
        assert_eq!(split_word("  a  b c "), ("a", "b c"));
        assert_eq!(split_word("a"), ("a", ""));
        assert_eq!(split_word(""), ("", ""));
    }
}

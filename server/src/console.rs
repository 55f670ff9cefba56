//! The server's console: the conversation on stdout, the operator's lines
//! and commands on stdin.
//!
//! The display is one more queue ([`Display`]) that the rooms fill in the same
//! order as everyone else's (each line marked with its room: `#lobby <bob>
//! hi`), drained by a thread that writes to stdout. So the rooms never
//! write to stdout under a lock, and a stdout nobody
//! reads (a full pipe) costs the room nothing: the display just loses lines.
//!
//! The input thread reads stdin lines: text goes to every room as
//! `<server> text`; `/who` (everyone, by room), `/rooms`, `/kick NAME
//! [REASON]` and `/quit` are commands.
//! A line that is not UTF-8 is decoded with U+FFFD, as a client's is, and
//! one longer than `--max-line` is dropped with a word on stdout: the
//! console goes on either way. A closed stdin just ends this thread; the
//! server goes on.
//! It is the one thread shutdown does not join: a read on stdin cannot be
//! interrupted, and the thread holds nothing that needs cleaning up.

use std::io::Write;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use chat_common::protocol;
use chat_common::sanitize::sanitize;
use chat_common::{Line, LineReader};

use crate::cluster::names::Unsent;
use crate::log;
use crate::rooms::Kicked;
use crate::write::{Batch, Display};
use crate::Context;

/// Lines the display may fall behind by before it starts dropping them.
pub const DISPLAY_QUEUE: usize = 4096;

/// Stack of the display thread: it only copies lines to stdout.
const DISPLAY_STACK: usize = 64 * 1024;

/// Stack of the console thread: more than the display's, since it runs the
/// commands themselves (a `/ban` down to its file and its Redis round trips).
const CONSOLE_STACK: usize = 128 * 1024;

/// Starts the thread that shows the room on stdout.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn_display(display: Display) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("display".into())
        .stack_size(DISPLAY_STACK)
        .spawn(move || {
            let mut batch = Vec::new();
            loop {
                let last = display.wait(&mut batch) == Batch::Last;
                let mut out = std::io::stdout().lock();
                for line in batch.drain(..) {
                    // A closed stdout must not stop the server.
                    let _ = out.write_all(line.as_bytes());
                }
                let _ = out.flush();
                if last {
                    return;
                }
            }
        })
}

/// A line typed on the console.
#[derive(Debug, PartialEq, Eq)]
enum Input<'a> {
    Empty,
    Say(&'a str),
    Who,
    Rooms,
    Kick(&'a str, Option<&'a str>),
    /// `/ban TARGET [DURATION] [REASON]`: the arguments, parsed by `access`.
    Ban(&'a str),
    Unban(&'a str),
    Bans,
    Quit,
    /// A known command without the argument it needs: its usage.
    Usage(&'static str),
    Unknown(&'a str),
}

fn parse(line: &str) -> Input<'_> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Input::Empty;
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Input::Say(&line[line.len() - escaped.len() - 1..]);
    }
    let Some(command) = line.strip_prefix('/') else {
        return Input::Say(line);
    };
    let (word, rest) = command.split_once(' ').unwrap_or((command, ""));
    let rest = rest.trim();
    match word.to_ascii_lowercase().as_str() {
        "who" => Input::Who,
        "rooms" => Input::Rooms,
        "quit" => Input::Quit,
        "kick" if !rest.is_empty() => {
            let (name, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let reason = reason.trim();
            Input::Kick(name, (!reason.is_empty()).then_some(reason))
        }
        "ban" if !rest.is_empty() => Input::Ban(rest),
        "unban" if !rest.is_empty() => Input::Unban(rest),
        "bans" => Input::Bans,
        "kick" => Input::Usage("/kick NAME [REASON]"),
        "ban" => Input::Usage("/ban TARGET [DURATION] [REASON]"),
        "unban" => Input::Usage("/unban TARGET"),
        _ => Input::Unknown(word),
    }
}

/// Starts the thread that reads the operator's lines from stdin. It is not
/// joined (see the module docs).
pub fn spawn_input(ctx: Arc<Context>) {
    let started = thread::Builder::new()
        .name("console".into())
        .stack_size(CONSOLE_STACK)
        .spawn(move || {
            // The same framing as a client's: bounded by --max-line, invalid
            // UTF-8 shown as U+FFFD, so no console line stops this loop.
            let max_line = ctx.config.max_line as usize;
            let mut lines = LineReader::new(std::io::stdin().lock(), max_line);
            loop {
                let line = match lines.read_line() {
                    Ok(Some(line)) => line,
                    Ok(None) => return,
                    Err(e) => {
                        log!("console: cannot read stdin: {e}");
                        return;
                    }
                };
                if ctx.shutdown.is_triggered() {
                    return;
                }
                match line {
                    Line::Text(line) => run_line(&line, &ctx),
                    Line::TooLong => log::say(format_args!(
                        "! console line too long (over {max_line} bytes): dropped"
                    )),
                }
            }
        });
    if let Err(e) = started {
        log!("console unavailable: {e}");
    }
}

fn run_line(line: &str, ctx: &Arc<Context>) {
    let rooms = &ctx.rooms;
    match parse(line) {
        Input::Empty => {}
        Input::Say(text) => {
            if rooms
                .announce(&protocol::chat("server", &sanitize(text)))
                .is_err()
            {
                log::say(format_args!(
                    "! said to this server's rooms only: the other servers are cut off (Redis unreachable)"
                ));
            }
        }
        Input::Who => {
            for (room, names) in rooms.everyone() {
                log::say(format_args!("* {}", protocol::who_line(&room, &names)));
            }
        }
        Input::Rooms => {
            let all = rooms.everyone();
            let line = protocol::rooms_line(all.iter().map(|(room, names)| (&**room, names.len())));
            log::say(format_args!("* {line}"));
        }
        Input::Kick(name, reason) => {
            match rooms.kick(name, reason.map(|r| sanitize(r).into_owned())) {
                Kicked::Done(held) => log!("console kicked {held}"),
                Kicked::PassedOn(held) => {
                    log!("console kicked {held}, on another server");
                    log::say(format_args!(
                        "* {held} is on another server, which was asked to kick it"
                    ));
                }
                Kicked::NoOne => log::say(format_args!("! no one called {name} is online")),
                Kicked::CutOff => log::say(format_args!(
                    "! {name} not kicked: the other servers are cut off (Redis unreachable)"
                )),
                Kicked::Unsure => log::say(format_args!(
                    "! not sure {name} was kicked (Redis stopped answering; it will not happen later)"
                )),
            }
        }
        Input::Ban(args) => {
            // A name is passed on as its client's address (the others
            // have no client by that name to find it by).
            let passed = crate::cluster::bridge::ban_by_address(ctx, args);
            let mut put = None;
            // Applied here and put in the shared list in one step, as far
            // as a ban passed on from another server is concerned.
            let order = ctx.cluster.as_ref().map(|cluster| cluster.ban_order());
            let answer = match crate::access::ban_target_absent(ctx, args) {
                // Not here, maybe on another server: its server bans it
                // and passes its address on (to this one too).
                Some(name) if ctx.cluster.is_some() => vec![format!(
                    "* no one called {} on this server: the other servers are asked",
                    sanitize(name)
                )],
                _ => {
                    let mut banned = crate::access::ban(ctx, args);
                    // Applied here with its address: kept in the
                    // cluster's list too, before it is passed on, for a
                    // server that misses it.
                    if let (Some(cluster), Some(ban)) = (&ctx.cluster, &banned.ban) {
                        match cluster.share_ban(ban) {
                            Ok(shared) => put = Some(shared),
                            Err(line) => banned.lines.push(line),
                        }
                    }
                    banned.lines
                }
            };
            drop(order);
            show(shared(
                ctx,
                "ban",
                passed.as_deref().unwrap_or(args),
                put,
                answer,
            ));
        }
        Input::Unban(target) => {
            // Lifted here and taken out of the shared list in one step (as
            // a `/ban`), then passed on.
            let order = ctx.cluster.as_ref().map(|cluster| cluster.ban_order());
            let unbanned = crate::access::unban(ctx, target);
            // A name banned here: the others hold its address only.
            let shared_as = if unbanned.by_name.is_empty() {
                vec![target.to_string()]
            } else {
                unbanned.by_name
            };
            let mut lines = unbanned.lines;
            let mut lifts = Vec::new();
            for args in shared_as {
                let mut lifted = None;
                if let Some(cluster) = &ctx.cluster {
                    match cluster.lift_ban(&args) {
                        Ok(shared) => lifted = shared,
                        Err(line) => lines.push(line),
                    }
                }
                lifts.push((args, lifted));
            }
            drop(order);
            for (args, lifted) in lifts {
                lines = shared(ctx, "unban", &args, lifted, lines);
            }
            show(lines);
        }
        Input::Bans => show(crate::access::list(ctx)),
        Input::Quit => {
            log!("console asked to quit");
            ctx.stop();
        }
        Input::Usage(usage) => log::say(format_args!("! usage: {usage}")),
        Input::Unknown(word) => {
            log::say(format_args!(
                "! unknown console command /{word}; try /who, /rooms, /kick NAME [REASON], /ban TARGET [DURATION] [REASON], /unban TARGET, /bans, /quit, or //text"
            ));
        }
    }
}

/// Passes a console `/ban` or `/unban` on to every other server, with
/// `--redis` (a name as its client's address, by the server that client is
/// on, or whose ban by that name is lifted): `answer`, the command's lines
/// on this server, with the line saying how it was passed on added
/// ([`passed_on`]), with what it did to the shared ban list (`list`: a
/// ban put, a prefix taken out). Without `--redis`, `answer` as it was.
fn shared(
    ctx: &Context,
    command: &str,
    args: &str,
    list: Option<crate::cluster::shared_bans::Shared>,
    mut answer: Vec<String>,
) -> Vec<String> {
    if let Some(cluster) = &ctx.cluster {
        answer.push(cluster.share_console(&format!("/{command} {args}"), list));
    }
    answer
}

/// The console's line for a command passed on to the other servers
/// (`as_`: how it was passed on, if not as typed): how many took it, or
/// that it was not (surely) passed on.
pub fn passed_on(result: Result<usize, (usize, Unsent)>, as_: &str) -> String {
    match result {
        Ok(n) => format!(
            "* passed on to the {}{as_}",
            protocol::count(n as u64, "other server")
        ),
        Err((asked, Unsent::Unsure)) => format!(
            "! not sure it was passed on to every other server{as_} ({asked} took it; Redis stopped answering; it will not happen later)"
        ),
        Err((asked, Unsent::NotSent(_) | Unsent::Stale)) => format!(
            "! not passed on to the other servers{as_} ({asked} took it; Redis unreachable)"
        ),
    }
}

fn show(lines: Vec<String>) {
    for line in lines {
        log::say(format_args!("{line}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Console lines parse into text (`//` escaping a leading slash), an
    /// empty line, the seven commands, a usage line for a command missing
    /// its argument, and an unknown command.
    #[test]
    fn parses_console_lines() {
        assert_eq!(parse("hello"), Input::Say("hello"));
        assert_eq!(parse("//who"), Input::Say("/who"));
        assert_eq!(parse("  "), Input::Empty);
        assert_eq!(parse("/who"), Input::Who);
        assert_eq!(parse("/rooms"), Input::Rooms);
        assert_eq!(parse("/QUIT"), Input::Quit);
        assert_eq!(parse("/kick bob"), Input::Kick("bob", None));
        assert_eq!(
            parse("/kick bob  spamming  "),
            Input::Kick("bob", Some("spamming"))
        );
        assert_eq!(parse("/kick"), Input::Usage("/kick NAME [REASON]"));
        assert_eq!(parse("/UNBAN "), Input::Usage("/unban TARGET"));
        assert_eq!(parse("/x y"), Input::Unknown("x"));
        assert_eq!(
            parse("/ban 10.0.0.0/8 1h spam"),
            Input::Ban("10.0.0.0/8 1h spam")
        );
        assert_eq!(
            parse("/ban"),
            Input::Usage("/ban TARGET [DURATION] [REASON]")
        );
        assert_eq!(parse("/unban bob"), Input::Unban("bob"));
        assert_eq!(parse("/bans"), Input::Bans);
    }
}

//! What another server asks of this one through its inbox: a private
//! message for a local client, a kick, a console's `/ban` or `/unban`.

use super::super::shared_bans::Standing;
use super::super::Request;
use super::Bridge;
use crate::Context;

impl Bridge {
    /// What another server asks: a private message for a local client, or
    /// a kick.
    pub(super) fn serve(&self, ctx: &Context, request: Request) {
        match request {
            Request::Tell { client, line } => ctx.rooms.tell(client, &line),
            Request::Kick { name, reason } => {
                let _ = ctx.rooms.kick(&name, reason);
            }
            Request::Console { line, shared_at } => {
                let answer = if let Some(args) = line.strip_prefix("/ban ") {
                    if let Some(skipped) = self.lifted_since(args, shared_at) {
                        crate::log!("another server's console: {line}: {skipped}");
                        return;
                    }
                    let by_address = ban_by_address(ctx, args);
                    let banned = crate::access::ban(ctx, args);
                    let mut answer = banned.lines;
                    // A name another console banned, held here: every
                    // server bans its client's address, and it goes into
                    // the shared list (`shared_bans.rs`) first, for a
                    // server that misses it.
                    if let Some(by_address) = by_address {
                        let mut shared_at = None;
                        if let Some(ban) = &banned.ban {
                            match self.names.share_ban(ban) {
                                Ok(at) => shared_at = Some(at),
                                Err(said) => answer.push(said),
                            }
                        }
                        answer.push(self.pass_on(&format!("/ban {by_address}"), shared_at));
                    }
                    answer
                } else if let Some(target) = line.strip_prefix("/unban ") {
                    // A name banned here, held by the others as its
                    // address: they are told to lift that.
                    let unbanned = crate::access::unban(ctx, target);
                    let mut answer = unbanned.lines;
                    for prefix in unbanned.by_name {
                        answer.extend(self.names.lift_ban(&prefix));
                        answer.push(self.pass_on(&format!("/unban {prefix}"), None));
                    }
                    answer
                } else {
                    vec![format!("! not a command the cluster passes on: {line}")]
                };
                for said in answer {
                    crate::log!("another server's console: {line}: {said}");
                }
            }
        }
    }

    /// Passes a console `line` on to every other server (a `/ban` with
    /// when it was put in the shared list, if it was); the line to log.
    fn pass_on(&self, line: &str, shared_at: Option<u64>) -> String {
        crate::console::passed_on(
            self.names.broadcast_console(line, shared_at),
            &format!(" as {line}"),
        )
    }

    /// Why a passed-on `/ban ARGS` put in the shared list at `shared_at`
    /// is not applied here: lifted since (by an `/unban` typed here or
    /// anywhere after it was typed, read before it), or replaced by a
    /// later `/ban` of its prefix (passed on by itself). `None`: apply it
    /// (also when it came with no time, or the list cannot be read).
    fn lifted_since(&self, args: &str, shared_at: Option<u64>) -> Option<&'static str> {
        let at = shared_at?;
        let target = args.split_whitespace().next()?;
        let prefix = crate::bans::Prefix::parse(target).ok()?;
        match self.names.passed_on_ban(&prefix, at) {
            Standing::Stands | Standing::Unchecked => None,
            Standing::Lifted => {
                Some("* not applied: lifted since it was typed (the cluster's shared ban list no longer holds it)")
            }
            Standing::Replaced => {
                Some("* not applied: replaced by a later /ban of it, passed on by itself")
            }
        }
    }
}

/// The arguments of `/ban NAME [...]` for a client connected here, as
/// `ADDRESS [...]` (its address): how a ban by name is passed on, so that
/// every server bans the address, not only the one the client is on.
/// `None` when the target is an address or prefix already, or no client
/// here has that name. (The caller adds `/ban `: a first version returned
/// it with the command, and the console added it again, so `/ban NAME`
/// typed on the client's own server reached the others as `/ban /ban
/// ADDRESS`, refused there.)
pub fn ban_by_address(ctx: &Context, args: &str) -> Option<String> {
    let args = args.trim();
    let (target, rest) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    if crate::bans::Prefix::parse(target).is_ok() {
        return None;
    }
    let (_, ip) = ctx.rooms.address_of(target)?;
    Some(format!("{ip} {}", rest.trim()).trim_end().to_string())
}

//! What another server asks of this one through its inbox: a private
//! message for a local client, a kick, a console's `/ban` or `/unban`.

use super::super::shared_bans::{Shared, Standing};
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
            Request::Console { line, shared } => {
                // Applied in one step, as far as this server's console is
                // concerned; passed on (a name banned or lifted here, as
                // its address) after.
                let (mut answer, pass) = {
                    let _turn = self.names.ban_order();
                    self.apply_console(ctx, &line, shared)
                };
                for (passed, list) in pass {
                    answer.push(self.pass_on(&passed, list));
                }
                for said in answer {
                    crate::log!("another server's console: {line}: {said}");
                }
            }
        }
    }

    /// Applies another server's console `line` here, unless a later
    /// command of its prefix overtook it ([`Bridge::overtaken`]). Returns
    /// what to log, and what this server must pass on in turn (a ban or
    /// lift by the name of a client or ban held here, as its address, with
    /// what it did to the shared list).
    fn apply_console(
        &self,
        ctx: &Context,
        line: &str,
        shared: Option<Shared>,
    ) -> (Vec<String>, Vec<(String, Option<Shared>)>) {
        let args = line.split_once(' ').map_or("", |(_, args)| args);
        if let Some(skipped) = self.overtaken(args, shared) {
            return (vec![skipped.to_string()], Vec::new());
        }
        let mut pass = Vec::new();
        if let Some(args) = line.strip_prefix("/ban ") {
            let by_address = ban_by_address(ctx, args);
            let banned = crate::access::ban(ctx, args);
            let mut answer = banned.lines;
            // A name another console banned, held here: every server bans
            // its client's address, and it goes into the shared list
            // (`shared_bans.rs`) first, for a server that misses it.
            if let Some(by_address) = by_address {
                let put = banned.ban.as_ref().and_then(|ban| {
                    self.names
                        .share_ban(ban)
                        .map_err(|said| answer.push(said))
                        .ok()
                });
                pass.push((format!("/ban {by_address}"), put));
            }
            (answer, pass)
        } else if let Some(target) = line.strip_prefix("/unban ") {
            // A name banned here, held by the others as its address: they
            // are told to lift that.
            let unbanned = crate::access::unban(ctx, target);
            let mut answer = unbanned.lines;
            for prefix in unbanned.by_name {
                let lifted = self.names.lift_ban(&prefix).unwrap_or_else(|said| {
                    answer.push(said);
                    None
                });
                pass.push((format!("/unban {prefix}"), lifted));
            }
            (answer, pass)
        } else {
            (
                vec![format!("! not a command the cluster passes on: {line}")],
                pass,
            )
        }
    }

    /// Passes a console `line` on to every other server, with what it did
    /// to the shared ban list (`list`); the line to log.
    fn pass_on(&self, line: &str, list: Option<Shared>) -> String {
        crate::console::passed_on(
            self.names.broadcast_console(line, list),
            &format!(" as {line}"),
        )
    }

    /// Why a passed-on `/ban ARGS` or `/unban ARGS` is not applied here: a
    /// later command of its prefix, here or anywhere, came before it (the
    /// shared list, which it changed, no longer says what it did:
    /// [`crate::cluster::names::Names::still_stands`]). `None`: apply it
    /// (also when it changed nothing in the list, or the list cannot be
    /// read).
    fn overtaken(&self, args: &str, list: Option<Shared>) -> Option<&'static str> {
        let list = list?;
        let target = args.split_whitespace().next()?;
        let prefix = crate::bans::Prefix::parse(target).ok()?;
        match self.names.still_stands(&prefix, &list) {
            Standing::Stands | Standing::Unchecked => None,
            Standing::Lifted => {
                Some("* not applied: lifted since it was typed (the cluster's shared ban list no longer holds it)")
            }
            Standing::Replaced if list == Shared::Lifted => {
                Some("* not applied: banned again since it was typed (the cluster's shared ban list holds the later ban, passed on by itself)")
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

//! What another server asks of this one through its inbox: a private
//! message for a local client, a kick, a console's `/ban` or `/unban`.

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
            Request::Console { line } => {
                let answer = if let Some(args) = line.strip_prefix("/ban ") {
                    let by_address = ban_by_address(ctx, args);
                    let mut answer = crate::access::ban(ctx, args);
                    // A name another console banned, held here: every
                    // server bans its client's address.
                    if let Some(by_address) = by_address {
                        answer.push(crate::console::passed_on(
                            self.names.broadcast_console(&by_address),
                            &format!(" as {by_address}"),
                        ));
                    }
                    answer
                } else if let Some(target) = line.strip_prefix("/unban ") {
                    crate::access::unban(ctx, target)
                } else {
                    vec![format!("! not a command the cluster passes on: {line}")]
                };
                for said in answer {
                    crate::log!("another server's console: {line}: {said}");
                }
            }
        }
    }
}

/// `/ban NAME [...]` of a client connected here, as `/ban ADDRESS [...]`
/// (its address): how a ban by name is passed on, so that every server
/// bans the address, not only the one the client is on. `None` when the
/// target is an address or prefix already, or no client here has that
/// name.
pub fn ban_by_address(ctx: &Context, args: &str) -> Option<String> {
    let args = args.trim();
    let (target, rest) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    if crate::bans::Prefix::parse(target).is_ok() {
        return None;
    }
    let (_, ip) = ctx.rooms.address_of(target)?;
    Some(format!("/ban {ip} {}", rest.trim()).trim_end().to_string())
}

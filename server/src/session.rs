//! One chat client's session: its reader loop and its commands.
//!
//! The worker thread that runs [`serve`] is the client's reader; what the
//! client is sent goes through its outbox to the shared writers
//! ([`crate::writer`]). Whatever ends the session (end of stream, error,
//! `/quit`, eviction, shutdown, a panic), the [`Membership`] guard takes the
//! client out of the room, everyone else hears why, and what was queued for
//! the client still goes out.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use chat_common::command::{self, Command};
use chat_common::sanitize::sanitize;
use chat_common::{name, protocol, Line, LineReader};

use crate::flood::TokenBucket;
use crate::log;
use crate::registry::{ClientId, Leave, Registry};
use crate::writer::{self, Peer, WRITE_POLL};
use crate::Context;

/// Serves one chat client until it leaves.
pub fn serve(stream: Arc<TcpStream>, peer_addr: SocketAddr, ctx: &Context) {
    // The client's own writer thread, if it ever needs one, blocks at most
    // this long per write before looking up.
    let _ = stream.set_write_timeout(Some(WRITE_POLL));
    let Ok((peer, name)) = ctx.registry.join(Arc::clone(&stream)) else {
        crate::listener::refuse(&stream, &protocol::notice("server shutting down"));
        return;
    };
    log!("{peer_addr} joined as {name}");
    let mut membership = Membership {
        registry: &ctx.registry,
        id: peer.id,
        reason: Leave::Internal,
    };
    let mut session = Session {
        ctx,
        name,
        peer: &peer,
    };
    membership.reason = match session.read_loop(&stream) {
        // The writer may have met the reset first and closed the socket.
        Leave::Closed => peer.cause().map_or(Leave::Closed, Leave::Error),
        reason => reason,
    };
    log!("{peer_addr} left: {}", membership.reason);
}

/// Takes the client out of the room on every exit path.
struct Membership<'a> {
    registry: &'a Registry,
    id: ClientId,
    /// Set when the session ends normally; `Internal` if it panicked.
    reason: Leave,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.registry.leave(self.id, &self.reason);
    }
}

/// The reader's state for one client.
struct Session<'a> {
    ctx: &'a Context,
    /// A copy of the registry's name for this client; only this session
    /// changes it, so formatting a line needs no lock.
    name: String,
    /// This client's outbox and socket, for replies meant for it alone.
    peer: &'a Arc<Peer>,
}

impl Session<'_> {
    /// Reads and handles lines until the client leaves; returns why.
    fn read_loop(&mut self, stream: &TcpStream) -> Leave {
        let config = &self.ctx.config;
        let answer_to = Arc::clone(&self.peer.stream);
        let mut lines = LineReader::new(stream, config.max_line as usize)
            .with_telnet_replies(move |bytes| writer::send_aside(&answer_to, bytes));
        let mut bucket = TokenBucket::new(config.rate_limit, config.burst);
        loop {
            let line = match lines.read_line() {
                Ok(Some(line)) => line,
                Ok(None) => return Leave::Closed,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Leave::Error("connection reset".into())
                }
                Err(e) => return Leave::Error(crate::log::plain(&e)),
            };
            if self.ctx.shutdown.is_triggered() {
                return Leave::Shutdown;
            }
            let text = match &line {
                Line::Text(text) if text.trim().is_empty() => continue,
                Line::Text(text) => Some(text.as_str()),
                Line::TooLong => None,
            };
            if !bucket.wait(&self.ctx.shutdown) {
                return Leave::Shutdown;
            }
            let handled = match text {
                Some(text) => self.handle(text),
                None => self.reply(protocol::error(&format!(
                    "line too long (over {} bytes): dropped",
                    config.max_line
                ))),
            };
            if let Err(reason) = handled {
                return reason;
            }
        }
    }

    /// Handles one line. `Err` means the client leaves, and why.
    fn handle(&mut self, text: &str) -> Result<(), Leave> {
        let registry = &self.ctx.registry;
        match command::parse(text) {
            Command::Empty => {}
            Command::Say(text) => {
                registry.relay(self.peer.id, protocol::chat(&self.name, &sanitize(text)))
            }
            Command::Me(text) => {
                registry.relay(self.peer.id, protocol::action(&self.name, &sanitize(text)))
            }
            Command::Nick(new) => self.nick(new)?,
            Command::Who => {
                let names = registry.names();
                self.reply(protocol::notice(&format!(
                    "{} online: {}",
                    names.len(),
                    names.join(", ")
                )))?;
            }
            Command::Msg { to, text } => {
                let text = sanitize(text);
                match registry.whisper(&self.name, to, &text) {
                    Some(to) => self.reply(protocol::private_to(&to, &text))?,
                    None => self.reply(protocol::error(&format!(
                        "no one called {} is online",
                        sanitize(to)
                    )))?,
                }
            }
            Command::Quit(reason) => {
                return Err(Leave::Quit(reason.map(|r| sanitize(r).into_owned())));
            }
            Command::Help => {
                for line in protocol::HELP {
                    self.reply(protocol::notice(line))?;
                }
            }
            Command::Usage(usage) => self.reply(protocol::error(usage))?,
            Command::Unknown(word) => self.reply(protocol::error(&format!(
                "unknown command /{}; try /help",
                sanitize(word)
            )))?,
        }
        Ok(())
    }

    /// `/nick NAME`: checked here, made unique by the registry.
    fn nick(&mut self, new: &str) -> Result<(), Leave> {
        if let Err(why) = name::check(new) {
            return self.reply(protocol::error(&format!(
                "name {:?} refused: {why}",
                sanitize(new)
            )));
        }
        if new == self.name {
            return self.reply(protocol::notice(&format!("you are already {new}")));
        }
        match self.ctx.registry.rename(self.peer.id, new) {
            Ok(old) => {
                log!("{old} is now {new}");
                self.name = new.to_string();
                self.reply(protocol::notice(&format!("you are now known as {new}")))
            }
            Err(_) => self.reply(protocol::error(&format!("name {new:?} is taken"))),
        }
    }

    /// Queues a line for this client only. A client that lets its own
    /// replies pile up is too slow like any other.
    fn reply(&self, line: String) -> Result<(), Leave> {
        self.ctx
            .writers
            .push(self.peer, &line.into())
            .map_err(|_| Leave::TooSlow)
    }
}

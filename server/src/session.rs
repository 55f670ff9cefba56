//! One chat client's session: its reader loop and its commands.
//!
//! The worker thread that runs [`serve`] is the client's reader; what the
//! client is sent goes through its queue to the shared writers
//! ([`crate::write`]). Whatever ends the session (end of stream, error,
//! `/quit`, eviction, shutdown, a panic), the [`Membership`] guard takes the
//! client out of the room, everyone else hears why, and what was queued for
//! the client still goes out.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use chat_common::command::{self, Command};
use chat_common::sanitize::sanitize;
use chat_common::{name, protocol, Line, LineReader};

use crate::access::Admission;
use crate::flood::TokenBucket;
use crate::leave::Leave;
use crate::log;
use crate::registry::{ClientId, Registry};
use crate::write::{self, Peer, Pushed, WRITE_POLL};
use crate::Context;

/// Most chat lines of one client relayed under one lock acquisition.
pub const BATCH_LINES: usize = 64;

/// Serves one chat client until it leaves.
pub fn serve(stream: Arc<TcpStream>, peer_addr: SocketAddr, ctx: &Context) {
    // The client's own writer thread, if it ever needs one, blocks at most
    // this long per write before looking up.
    let _ = stream.set_write_timeout(Some(WRITE_POLL));
    // Banned meanwhile, or no password yet: not in the room (issue 13).
    match crate::access::enter(&stream, peer_addr, ctx) {
        Admission::Admitted => {}
        Admission::Refused(line) => return crate::listener::refuse(&stream, &line),
        Admission::Gone(why) => return log!("{peer_addr} left before joining: {why}"),
    }
    let Ok((peer, name)) = ctx.registry.join(Arc::clone(&stream)) else {
        crate::listener::refuse(&stream, &protocol::notice("server shutting down"));
        return;
    };
    log!("{peer_addr} joined as {name}");
    crate::access::joined(peer_addr, ctx); // a /ban since enter's check evicts it
    let mut membership = Membership {
        registry: &ctx.registry,
        id: peer.id,
        reason: Leave::Internal,
    };
    let mut session = Session {
        ctx,
        name,
        peer: &peer,
        pending: Vec::new(),
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
    /// This client's queue and socket, for replies meant for it alone.
    peer: &'a Arc<Peer>,
    /// Chat lines read but not yet relayed: lines that arrived together are
    /// relayed together ([`Registry::relay`]), before anything else this
    /// client does and before the reader could block.
    pending: Vec<String>,
}

impl Session<'_> {
    /// Reads and handles lines until the client leaves; returns why. Every
    /// line read is relayed before this returns.
    fn read_loop(&mut self, stream: &TcpStream) -> Leave {
        let reason = self.read_lines(stream);
        self.flush();
        reason
    }

    /// Relays the chat lines held in `pending`.
    fn flush(&mut self) {
        self.ctx.registry.relay(self.peer.id, &mut self.pending);
    }

    fn read_lines(&mut self, stream: &TcpStream) -> Leave {
        let config = &self.ctx.config;
        let answer_to = Arc::clone(&self.peer.stream);
        let mut lines = LineReader::new(stream, config.max_line as usize)
            .with_telnet_replies(move |bytes| write::send_aside(&answer_to, bytes));
        let mut bucket = TokenBucket::new(config.rate_limit, config.burst);
        loop {
            if !lines.has_line() || self.pending.len() >= BATCH_LINES {
                // The next read may block: what was read goes out first.
                self.flush();
            }
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
            if !bucket.try_take() {
                self.flush();
                if !bucket.wait(&self.ctx.shutdown) {
                    return Leave::Shutdown;
                }
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
        let command = command::parse(text);
        match command {
            Command::Empty => return Ok(()),
            Command::Say(text) => {
                let line = protocol::chat(&self.name, &sanitize(text));
                self.pending.push(line);
                return Ok(());
            }
            Command::Me(text) => {
                let line = protocol::action(&self.name, &sanitize(text));
                self.pending.push(line);
                return Ok(());
            }
            // Anything else this client does comes after its chat lines.
            _ => registry.relay(self.peer.id, &mut self.pending),
        }
        match command {
            Command::Empty | Command::Say(_) | Command::Me(_) => {}
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
        match self.ctx.writers.push(self.peer, &line.into()) {
            Pushed::Queued => Ok(()),
            Pushed::TooSlow => Err(Leave::TooSlow),
        }
    }
}

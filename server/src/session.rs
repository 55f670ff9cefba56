//! One chat client's session: its reader loop and its commands.
//!
//! The worker thread that runs [`serve`] is the client's reader; what the
//! client is sent goes through its queue to the shared writers
//! ([`crate::write`]). Whatever ends the session (end of stream, error,
//! `/quit`, removal, shutdown, a panic), the `Membership` guard takes the
//! client out through the one removal path, [`Rooms::remove`]: everyone
//! else hears why, and what was queued for the client still goes out.
//!
//! Once the client was removed by someone else (kick, too slow, shutdown),
//! its [`Ticket`] says so, and nothing more it sent is relayed or handled,
//! even lines the kernel had already buffered.

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
use crate::rooms::{ClientId, Moved, Relayed, Renamed, Room, Rooms, Ticket, Whisper};
use crate::shutdown::Waited;
use crate::write::{self, Peer, Pushed, WRITE_POLL};
use crate::Context;

/// Most chat lines of one client relayed under one lock acquisition (not
/// the write side's `BATCH_LINES`, what a writer sends at once).
pub const RELAY_BATCH_LINES: usize = 64;

/// Serves one chat client until it leaves.
pub fn serve(stream: Arc<TcpStream>, peer_addr: SocketAddr, ctx: &Context) {
    // The client's own writer thread, if it ever needs one, blocks at most
    // this long per write before looking up.
    let _ = stream.set_write_timeout(Some(WRITE_POLL));
    // Checked again here, on the worker: it may have been banned while it
    // waited in line, and the password comes before the room.
    match crate::access::enter(&stream, peer_addr, ctx) {
        Admission::Admitted => {}
        Admission::Refused(line) => return crate::listener::refuse(&stream, &line),
        Admission::Gone(why) => return log!("{peer_addr} left before joining: {why}"),
    }
    let Ok(entered) = ctx.rooms.enter(Arc::clone(&stream)) else {
        crate::listener::refuse(&stream, &protocol::shutting_down());
        return;
    };
    log!("{peer_addr} joined as {}", entered.name);
    crate::access::joined(peer_addr, ctx); // a /ban since enter's check evicts it
    let mut membership = Membership {
        rooms: &ctx.rooms,
        id: entered.peer.id,
        reason: Leave::Internal,
    };
    let mut session = Session {
        ctx,
        name: entered.name,
        peer: &entered.peer,
        ticket: &entered.ticket,
        room: entered.room,
        pending: Vec::new(),
    };
    let reason = match session.read_loop(&stream) {
        // The writer may have met the reset first and closed the socket.
        Leave::Closed => entered.peer.cause().map_or(Leave::Closed, Leave::Error),
        reason => reason,
    };
    // Removed by someone else first: that is why it left.
    let reason = entered.ticket.fate().cloned().unwrap_or(reason);
    membership.reason = reason.clone();
    drop(membership);
    // Its last line is queued: input it sent that was never read must not
    // turn the close into a reset that loses it.
    crate::linger::discard_pending(&stream, ctx);
    log!(
        "{peer_addr} left: {}",
        entered.ticket.fate().unwrap_or(&reason)
    );
}

/// A chat connection whose end of stream came before a word
/// (`serve_connection`): shown the welcome and `#lobby`'s history
/// ([`Rooms::glimpse`]), then its end of stream, without entering the
/// room. With a password it is shown the password prompt only, as a
/// client a worker took before its end of stream arrived is (the history
/// is behind the password).
/// The write gives up after [`crate::linger::LINGER`] or at the stop: a
/// port scan's socket is gone, and the bytes are never read.
pub fn glimpse(stream: &TcpStream, peer_addr: SocketAddr, ctx: &Context) {
    let lines: Vec<Arc<str>> = if ctx.access.gate.is_some() {
        vec![protocol::notice(crate::password::PROMPT).into()]
    } else {
        match ctx.rooms.glimpse() {
            Ok(lines) => lines,
            Err(_) => return,
        }
    };
    let _ = stream.set_write_timeout(Some(WRITE_POLL));
    let until = std::time::Instant::now() + crate::linger::LINGER;
    let give_up = || ctx.shutdown.is_triggered() || std::time::Instant::now() >= until;
    // Line by line: the history's lines are shared with the room, never
    // copied into one buffer (`--history` lines of `--max-line` bytes).
    let shown = lines
        .iter()
        .try_for_each(|line| write::write_polling(stream, line.as_bytes(), give_up));
    let _ = stream.shutdown(std::net::Shutdown::Write);
    match shown {
        Ok(()) => log!("{peer_addr} shut its side before a word: shown the welcome, not joined"),
        Err(e) => log!(
            "{peer_addr} shut its side before a word; the welcome not shown whole ({}), not joined",
            log::plain(&e)
        ),
    }
}

/// Takes the client out of its room on every exit path.
struct Membership<'a> {
    /// The rooms to take the client out of, through their one removal path.
    rooms: &'a Rooms,
    /// The client to take out.
    id: ClientId,
    /// Set when the session ends normally; `Internal` if it panicked.
    reason: Leave,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        let reason = std::mem::replace(&mut self.reason, Leave::Internal);
        self.rooms.remove(self.id, reason);
    }
}

/// The reader's state for one client.
struct Session<'a> {
    /// The server's shared state: the rooms, the flags, the shutdown.
    ctx: &'a Context,
    /// A copy of the directory's name for this client, so formatting a
    /// line needs no lock; a rename the rooms make reaches it through the
    /// ticket ([`Ticket::take_renamed`]).
    name: String,
    /// This client's queue and socket, for replies meant for it alone.
    peer: &'a Arc<Peer>,
    /// Settled once the client is removed: then the session stops.
    ticket: &'a Ticket,
    /// The room it is in; only this session moves it.
    room: Arc<Room>,
    /// Chat lines read but not yet relayed: lines that arrived together are
    /// relayed together ([`Rooms::relay`]), before anything else this
    /// client does and before the reader could block.
    pending: Vec<String>,
}

impl Session<'_> {
    /// Reads and handles lines until the client leaves; returns why. Every
    /// line read is relayed before this returns (unless the client was
    /// removed).
    fn read_loop(&mut self, stream: &TcpStream) -> Leave {
        let reason = self.read_lines(stream);
        match self.flush() {
            Ok(()) => reason,
            Err(gone) => gone,
        }
    }

    /// Relays the chat lines held in `pending`.
    fn flush(&mut self) -> Result<(), Leave> {
        let count = self.pending.len();
        match self
            .ctx
            .rooms
            .relay(&self.room, self.ticket, self.peer.id, &mut self.pending)
        {
            Relayed::Done => Ok(()),
            Relayed::Gone => Err(self.gone()),
            Relayed::Refused(n) => {
                debug_assert_eq!(n, count);
                for _ in 0..n {
                    self.reply(protocol::error("the room is cut off: line not sent"))?;
                }
                Ok(())
            }
        }
    }

    /// Why the client is out, when the rooms say it is.
    fn gone(&self) -> Leave {
        self.ticket.fate().cloned().unwrap_or(Leave::Closed)
    }

    fn read_lines(&mut self, stream: &TcpStream) -> Leave {
        let config = &self.ctx.config;
        let answer_to = Arc::clone(&self.peer.stream);
        let mut lines = LineReader::new(stream, config.max_line as usize)
            .with_telnet_replies(move |bytes| write::send_aside(&answer_to, bytes));
        let mut bucket = TokenBucket::new(config.rate_limit, config.burst);
        loop {
            if !lines.has_line() || self.pending.len() >= RELAY_BATCH_LINES {
                // The next read may block: what was read goes out first.
                if let Err(gone) = self.flush() {
                    return gone;
                }
            }
            let line = match lines.read_line() {
                Ok(Some(line)) => line,
                Ok(None) => return Leave::Closed,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Leave::Error("connection reset".into())
                }
                Err(e) => return Leave::Error(crate::log::plain(&e)),
            };
            if let Some(fate) = self.ticket.fate() {
                // Removed: what it had sent meanwhile goes nowhere.
                return fate.clone();
            }
            if self.ctx.shutdown.is_triggered() {
                return Leave::Shutdown;
            }
            let command = match &line {
                Line::Text(text) => match command::parse(text) {
                    Some(command) => Some(command),
                    None => continue,
                },
                Line::TooLong => None,
            };
            if !bucket.try_take() {
                if let Err(gone) = self.flush() {
                    return gone;
                }
                if bucket.wait(&self.ctx.shutdown) == Waited::ShuttingDown {
                    return Leave::Shutdown;
                }
                if let Some(fate) = self.ticket.fate() {
                    return fate.clone();
                }
            }
            let handled = match command {
                Some(command) => self.handle(command),
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
    fn handle(&mut self, command: Command<'_>) -> Result<(), Leave> {
        // Renamed by the rooms (a cluster's name clash), or by its own
        // `/nick`: the lines from now on carry the name it has.
        if let Some(name) = self.ticket.take_renamed() {
            self.name = name;
        }
        match command {
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
            _ => self.flush()?,
        }
        let rooms = &self.ctx.rooms;
        match command {
            Command::Say(_) | Command::Me(_) => {}
            Command::Nick(new) => self.nick(new)?,
            Command::Who => {
                let (room, names) = rooms.who(&self.room);
                self.reply(protocol::notice(&protocol::who_line(&room, &names)))?;
            }
            Command::Rooms => {
                let all = rooms.everyone();
                self.reply(protocol::notice(&protocol::rooms_line(
                    all.iter().map(|(room, names)| (&**room, names.len())),
                )))?;
            }
            Command::Join(asked) => self.join(asked)?,
            Command::Msg { to, text } => {
                let text = sanitize(text);
                match rooms.whisper(self.peer.id, to, &text) {
                    Whisper::Delivered(to) => self.reply(protocol::private_to(&to, &text))?,
                    Whisper::NoOne => self.reply(protocol::error(&format!(
                        "no one called {} is online",
                        sanitize(to)
                    )))?,
                    Whisper::Dropped(to) => self.reply(protocol::error(&format!(
                        "{to} was disconnected (too slow): message not delivered"
                    )))?,
                    Whisper::Gone => return Err(self.gone()),
                    Whisper::CutOff => self.reply(protocol::error(
                        "the room is cut off: private message not sent",
                    ))?,
                    Whisper::Unsure => self.reply(protocol::error(
                        "not sure your private message was sent (Redis stopped answering; it will not arrive later)",
                    ))?,
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

    /// `/join ROOM`: checked here, done by the rooms.
    fn join(&mut self, asked: &str) -> Result<(), Leave> {
        let name = match chat_common::room::check(asked) {
            Ok(name) => name,
            Err(why) => {
                return self.reply(protocol::error(&format!(
                    "room {:?} refused: {why}",
                    sanitize(asked)
                )))
            }
        };
        match self.ctx.rooms.move_to(self.peer.id, name) {
            Moved::To(room) => {
                log!("{} went to {}", self.name, room.name());
                self.room = room;
                Ok(())
            }
            Moved::Already(room) => self.reply(protocol::notice(&format!("you are already in {room}"))),
            Moved::Full(max) => self.reply(protocol::error(&format!(
                "too many rooms ({max} at most have people in them): stay here or join one in /rooms"
            ))),
            Moved::Gone => Err(self.gone()),
        }
    }

    /// `/nick NAME`: checked here, made unique by the rooms.
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
        match self.ctx.rooms.rename(self.peer.id, new) {
            Renamed::Done(old) => {
                log!("{old} is now {new}");
                self.name = new.to_string();
                self.reply(protocol::you_renamed(new))
            }
            Renamed::Taken => self.reply(protocol::name_taken(new)),
            Renamed::Unknown => {
                self.reply(protocol::error("the room is cut off: name not changed"))
            }
            Renamed::Gone => Err(self.gone()),
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

//! The room: who is connected, under which name, and the relay.
//!
//! Relaying a line means pushing one shared `Arc<str>` into each recipient's
//! queue ([`crate::write`]) while holding the registry lock. Holding one
//! lock for the whole fan-out is what gives every client the same total
//! order; it stays cheap
//! because a push only moves a pointer into a queue: nothing under this lock
//! writes to a socket, logs, sleeps or blocks. (Waking a reader with
//! `shutdown(2)` does not block.)
//!
//! A recipient whose queue is full is evicted on the spot: removed, its
//! queue aborted with `! disconnected: too slow`, its reader woken, and a
//! leave notice delivered to the rest. The room never waits for it.
//!
//! Lock order: registry, then a client's queue (see [`crate::write`]).
//! Nothing takes them the other way.

use std::collections::VecDeque;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_common::{name, protocol};
use parking_lot::Mutex;

use crate::leave::Leave;
use crate::write::{Display, Peer, Pushed, Wake, Writers};

/// How long a leaving client's queued lines may take to go out.
pub const LINGER: Duration = Duration::from_secs(2);

/// A client's number for its whole connection: the N of its `guest-N`.
pub type ClientId = u64;

/// `/nick` refused: someone connected already has that name (any case).
#[derive(Debug, PartialEq, Eq)]
pub struct NameTaken;

/// The registry is closed: the server is shutting down.
#[derive(Debug, PartialEq, Eq)]
pub struct Closing;

/// One connected client, as the room sees it.
struct Member {
    id: ClientId,
    name: String,
    /// Its queue (where lines for it go) and its socket (kept to wake its
    /// reader when it is evicted).
    peer: Arc<Peer>,
    /// Where it connects from (IPv4 as IPv4), for `/ban`; `None` if the
    /// socket could not say (it already failed).
    ip: Option<IpAddr>,
}

struct Inner {
    members: Vec<Member>,
    /// Next `guest-N`; never reused while the server runs.
    next_guest: u64,
    /// Set by shutdown: no joins, no leave notices.
    closing: bool,
}

/// Connected clients behind one lock, and the relay between them.
pub struct Registry {
    inner: Mutex<Inner>,
    /// The server console's view of the room (stdout), unless `--quiet`.
    display: Option<Display>,
    /// Who writes the lines pushed here.
    writers: Writers,
    /// Lines accepted from clients and relayed (for the summary).
    relayed: AtomicU64,
}

impl Registry {
    /// An empty room; `display` receives every public line.
    pub fn new(display: Option<Display>, writers: Writers) -> Registry {
        Registry {
            inner: Mutex::new(Inner {
                members: Vec::new(),
                next_guest: 1,
                closing: false,
            }),
            display,
            writers,
            relayed: AtomicU64::new(0),
        }
    }

    /// Adds a client as `guest-N`: it gets the welcome first, everyone else
    /// a join notice.
    ///
    /// # Errors
    /// [`Closing`] once shutdown has begun.
    pub fn join(&self, stream: Arc<TcpStream>) -> Result<(Arc<Peer>, String), Closing> {
        let ip = stream.peer_addr().ok().map(|a| a.ip().to_canonical());
        let mut inner = self.inner.lock();
        if inner.closing {
            return Err(Closing);
        }
        let id = inner.next_guest;
        inner.next_guest += 1;
        let peer = self.writers.peer(id, stream);
        let name = name::guest(id);
        let online = inner.members.len() + 1;
        let welcome = protocol::notice(&format!(
            "welcome, {name}! {online} online; type /help for commands"
        ));
        // A fresh queue has room: this cannot fail.
        let _ = self.writers.push(&peer, &welcome.into());
        let joined = protocol::notice(&format!("{name} joined ({online} online)"));
        self.deliver(&mut inner, &[joined.into()], None, Wake::Later);
        inner.members.push(Member {
            id,
            name: name.clone(),
            peer: Arc::clone(&peer),
            ip,
        });
        Ok((peer, name))
    }

    /// Sends `lines` from client `from` to everyone else, in order, under
    /// one lock: a client that sent several lines in one packet costs one
    /// lock acquisition, not one per line. Empties `lines`.
    pub fn relay(&self, from: ClientId, lines: &mut Vec<String>) {
        if lines.is_empty() {
            return;
        }
        let shared: Vec<Arc<str>> = lines.drain(..).map(Arc::from).collect();
        let mut inner = self.inner.lock();
        self.deliver(&mut inner, &shared, Some(from), Wake::Now);
        self.relayed
            .fetch_add(shared.len() as u64, Ordering::Relaxed);
    }

    /// Sends `line` to everyone (the server console speaking).
    pub fn announce(&self, line: String) {
        let mut inner = self.inner.lock();
        self.deliver(&mut inner, &[line.into()], None, Wake::Now);
    }

    /// Renames client `id` to `new` and tells the others. Returns the old
    /// name. `new` must already have passed [`name::check`].
    ///
    /// # Errors
    /// [`NameTaken`] when another client has that name, ignoring case.
    pub fn rename(&self, id: ClientId, new: &str) -> Result<String, NameTaken> {
        let mut inner = self.inner.lock();
        if inner
            .members
            .iter()
            .any(|m| m.id != id && m.name.eq_ignore_ascii_case(new))
        {
            return Err(NameTaken);
        }
        let Some(member) = inner.members.iter_mut().find(|m| m.id == id) else {
            return Err(NameTaken);
        };
        let old = std::mem::replace(&mut member.name, new.to_string());
        let notice = protocol::notice(&format!("{old} is now known as {new}"));
        self.deliver(&mut inner, &[notice.into()], Some(id), Wake::Now);
        Ok(old)
    }

    /// The names of everyone connected, in order of arrival.
    pub fn names(&self) -> Vec<String> {
        let inner = self.inner.lock();
        inner.members.iter().map(|m| m.name.clone()).collect()
    }

    /// Delivers a private message from `from` to the client named `to` (any
    /// case). Returns the recipient's name as registered, or `None` when no
    /// one by that name is online.
    pub fn whisper(&self, from: &str, to: &str, text: &str) -> Option<String> {
        let mut inner = self.inner.lock();
        let target = inner
            .members
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(to))?;
        let name = target.name.clone();
        let line: Arc<str> = protocol::private_from(from, text).into();
        if self.writers.push(&target.peer, &line) == Pushed::TooSlow {
            let id = target.id;
            self.evict_all(&mut inner, vec![(id, Leave::TooSlow)]);
        }
        Some(name)
    }

    /// Disconnects the client named `name` on the operator's word. Returns
    /// whether someone by that name was online.
    pub fn kick(&self, name: &str, reason: Option<String>) -> bool {
        let mut inner = self.inner.lock();
        let Some(id) = inner
            .members
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .map(|m| m.id)
        else {
            return false;
        };
        self.evict_all(&mut inner, vec![(id, Leave::Kicked(reason))]);
        true
    }

    /// The address the client named `name` (any case) connects from.
    pub fn address_of(&self, name: &str) -> Option<(String, IpAddr)> {
        let inner = self.inner.lock();
        let member = inner
            .members
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))?;
        Some((member.name.clone(), member.ip?))
    }

    /// Disconnects every client whose address satisfies `pred` (`/ban`),
    /// through the ordinary eviction path: each is told
    /// `! disconnected: REASON` and the others see it leave. Returns their
    /// names.
    pub fn evict_where(&self, pred: impl Fn(IpAddr) -> bool, reason: &Leave) -> Vec<String> {
        let mut inner = self.inner.lock();
        let (ids, names): (Vec<_>, Vec<_>) = inner
            .members
            .iter()
            .filter(|m| m.ip.is_some_and(&pred))
            .map(|m| ((m.id, reason.clone()), m.name.clone()))
            .unzip();
        if !ids.is_empty() {
            self.evict_all(&mut inner, ids);
        }
        names
    }

    /// Removes client `id` after its session ended, telling the others why.
    /// Does nothing if it was already evicted. What is queued for it still
    /// goes out, for at most [`LINGER`].
    pub fn leave(&self, id: ClientId, reason: &Leave) {
        let mut inner = self.inner.lock();
        let Some(pos) = inner.members.iter().position(|m| m.id == id) else {
            return;
        };
        let member = inner.members.swap_remove(pos);
        if *reason == Leave::TooSlow {
            let last = protocol::error("disconnected: too slow").into();
            self.writers.abort(&member.peer, Some(last));
        } else {
            self.writers
                .drain(&member.peer, None, Instant::now() + LINGER);
        }
        if !inner.closing {
            let notice = protocol::notice(&format!("{} left ({reason})", member.name));
            self.deliver(&mut inner, &[notice.into()], None, Wake::Later);
        }
    }

    /// Starts shutdown: no more joins; every client gets `notice` after what
    /// is already queued, which goes out until `deadline`.
    pub fn shutdown(&self, notice: &str, deadline: Instant) {
        let notice: Arc<str> = protocol::notice(notice).into();
        let mut inner = self.inner.lock();
        inner.closing = true;
        for member in inner.members.drain(..) {
            member.peer.note_cause(Leave::Shutdown.to_string());
            self.writers.drain(&member.peer, Some(&notice), deadline);
        }
        self.show(&notice, Wake::Now);
    }

    /// Clients connected now.
    pub fn online(&self) -> usize {
        self.inner.lock().members.len()
    }

    /// Lines relayed since start.
    pub fn relayed(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }

    /// Pushes `lines`, in order, to every member but `except` (one queue
    /// lock per member for all of them), and to the display; then evicts
    /// whoever could not take them. Eviction notices are delivered the
    /// same way, from a work list rather than by recursion, so a cascade of
    /// slow clients cannot overflow a small worker stack.
    fn deliver(&self, inner: &mut Inner, lines: &[Arc<str>], except: Option<ClientId>, wake: Wake) {
        let mut slow = Vec::new();
        for member in &inner.members {
            if Some(member.id) != except
                && self.writers.push_all(&member.peer, lines, wake) == Pushed::TooSlow
            {
                slow.push((member.id, Leave::TooSlow));
            }
        }
        for line in lines {
            self.show(line, wake);
        }
        if !slow.is_empty() {
            self.evict_all(inner, slow);
        }
    }

    /// Removes each listed client, ends its queue with the reason (at once
    /// if too slow, after what is queued if kicked), wakes its reader, and
    /// tells the rest (which may find more slow clients).
    fn evict_all(&self, inner: &mut Inner, mut evict: Vec<(ClientId, Leave)>) {
        let mut notices = VecDeque::new();
        loop {
            for (id, reason) in evict.drain(..) {
                let Some(pos) = inner.members.iter().position(|m| m.id == id) else {
                    continue;
                };
                let member = inner.members.swap_remove(pos);
                member.peer.note_cause(reason.to_string());
                let last: Arc<str> = protocol::error(&format!("disconnected: {reason}")).into();
                if reason == Leave::TooSlow {
                    // Its queue is full of lines it will not read: drop them.
                    self.writers.abort(&member.peer, Some(last));
                } else {
                    // Kicked: what it was sent before still goes out first.
                    let deadline = Instant::now() + LINGER;
                    self.writers.drain(&member.peer, Some(&last), deadline);
                }
                let _ = member.peer.stream.shutdown(Shutdown::Read);
                if !inner.closing {
                    notices.push_back(protocol::notice(&format!(
                        "{} left ({reason})",
                        member.name
                    )));
                }
            }
            let Some(notice) = notices.pop_front() else {
                return;
            };
            let line: Arc<str> = notice.into();
            for member in &inner.members {
                if self
                    .writers
                    .push_all(&member.peer, std::slice::from_ref(&line), Wake::Later)
                    == Pushed::TooSlow
                {
                    evict.push((member.id, Leave::TooSlow));
                }
            }
            self.show(&line, Wake::Later);
        }
    }

    /// Shows a public line on the server's stdout. A display that cannot
    /// keep up loses lines rather than slowing the room.
    fn show(&self, line: &Arc<str>, wake: Wake) {
        if let Some(display) = &self.display {
            display.show(line, wake);
        }
    }
}

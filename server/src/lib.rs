//! `chat-server`: a line-based TCP chat relay, and the lab's echo and
//! uppercase servers over TCP and UDP.
//!
//! How one chat line travels, file by file:
//!
//! 1. [`listener`]: the main thread accepts the connection, sets
//!    TCP_NODELAY, checks the per-address cap ([`conns`]) and hands it to a
//!    worker from the bounded [`pool`] (or says it must wait, or is refused).
//! 2. [`session`]: the worker is the client's reader. It frames bytes into
//!    lines with `chat_common::LineReader`, paces them with [`flood`], and
//!    parses commands with `chat_common::command`.
//! 3. [`rooms`]: under the sender's room's lock only, the line (sanitised,
//!    formatted once) is appended to the room's log ([`rooms::log`]) and
//!    pushed as a shared `Arc<str>` into every other member's queue;
//!    [`transcript`] writes it to a file on a thread of its own.
//! 4. [`write`](mod@write): a shared flusher thread takes everything queued for a
//!    client and sends it in one `sendmsg`; a client whose socket is full
//!    gets a writer thread of its own until it catches up.
//!
//! [`prepare`] opens the start-up files before the port is bound;
//! [`shutdown`] is the switch every thread watches; [`Server::run`] is
//! `Server::start`, the accept loop, then `Running::stop`, the graceful
//! stop. [`console`] is the operator's side; [`lab`] and [`udp`]
//! serve the echo and uppercase modes; [`file_mode`] serves the files that
//! [`files`] finds safely under `--root`.
#![forbid(unsafe_code)]

pub mod access;
pub mod allowance;
pub mod bans;
pub mod cluster;
pub mod config;
pub mod conns;
pub mod console;
pub mod file_mode;
pub mod files;
pub mod flood;
pub mod lab;
pub mod leave;
pub mod linger;
pub mod listener;
pub mod log;
pub mod password;
pub mod pool;
pub mod ports;
pub mod prepare;
pub mod rooms;
pub mod session;
pub mod shutdown;
pub mod start_file;
pub mod throttle;
pub mod transcript;
pub mod udp;
pub mod udp_guard;
pub mod unserved;
pub mod write;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use chat_common::protocol;
pub use config::{Config, Mode};
use conns::Connections;
use pool::Pool;
pub use prepare::Prepared;
use rooms::Rooms;
use shutdown::{join_until, Shutdown};
use write::{Display, Limits, Writers};

/// What every thread of the server shares.
pub struct Context {
    /// The flags, fixed for the server's life.
    pub config: Config,
    /// The chat rooms (empty in echo and upper modes).
    pub rooms: Rooms,
    /// Every live connection, for the per-address cap and shutdown.
    pub conns: Arc<Connections>,
    /// The flusher threads that write what is queued for chat clients.
    pub writers: Writers,
    /// The switch every thread watches (the rooms keep a handle, for the
    /// shutdown notice's deadline).
    pub shutdown: Arc<Shutdown>,
    /// The folder `--mode file` serves (`None` in the other modes).
    pub files: Option<files::Root>,
    /// Bans and the password: who may come in.
    pub access: access::Access,
    /// With `--redis`: this server's side of the cluster (the rooms' log
    /// and names are on Redis).
    pub cluster: Option<cluster::Node>,
    /// The listening address, for waking the accept loop.
    local: SocketAddr,
    /// Connections handed to a worker since start.
    accepted: AtomicU64,
}

impl Context {
    /// Starts the graceful shutdown (Ctrl+C, SIGTERM, console `/quit`).
    /// Returns `false` if it had already started, so a second Ctrl+C can
    /// exit at once.
    pub fn stop(&self) -> bool {
        if !self.shutdown.trigger() {
            return false;
        }
        log!("shutting down (Ctrl+C again to exit at once)");
        listener::wake(self.local);
        true
    }

    fn stats_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serves one connection on a worker, in the configured mode.
fn serve_connection(stream: Arc<TcpStream>, peer: SocketAddr, ctx: &Context) {
    if ctx.shutdown.is_triggered() {
        // It waited in the queue while the server began to stop, and a
        // worker took it before the stop shut it: turned away all the same.
        let _ = unserved::turn_away(&stream, peer, ctx);
        return;
    }
    if pool::gave_up(&stream) {
        // Its end of stream came before a word (or the server shut it
        // meanwhile: a ban, a lockout). A port scan and `ncat HOST PORT
        // </dev/null` look the same here: a chat client is shown the
        // welcome without entering the room; the lab modes have nothing
        // to send back.
        if !unserved::turn_away(&stream, peer, ctx) {
            match ctx.config.mode {
                Mode::Chat => session::glimpse(&stream, peer, ctx),
                _ => log!("{peer} closed or shut before a word; nothing to serve"),
            }
        }
        return;
    }
    match ctx.config.mode {
        Mode::Chat => session::serve(stream, peer, ctx),
        Mode::Echo | Mode::Upper => lab::serve(&stream, peer, ctx),
        Mode::File => {
            if let Some(root) = &ctx.files {
                file_mode::serve(&stream, peer, ctx, root);
            }
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    /// The bound TCP listener: [`Server::run`] accepts on it, and its stop
    /// drops it once every connection is closed.
    listener: TcpListener,
    /// A descriptor kept for when `accept` fails for lack of them.
    spare: Option<std::fs::File>,
    /// With `--udp` (echo, upper and file modes): the bound UDP socket,
    /// served on a thread of its own once the server runs.
    udp: Option<UdpSocket>,
    /// What every thread shares; [`Server::context`] hands it out, so a
    /// Ctrl+C handler or a test can stop the server.
    ctx: Arc<Context>,
    /// The queue the display thread shows on stdout (chat mode without
    /// `--quiet`): its thread starts with the accept loop.
    display: Option<Display>,
}

impl Server {
    /// A server for already-bound sockets (tests bind port 0): its
    /// start-up files opened ([`Prepared::open`]), then
    /// [`Server::with_sockets`]. `main` opens them before it binds.
    ///
    /// # Errors
    /// Those of [`Prepared::open`] and [`Server::with_sockets`].
    pub fn new(
        config: Config,
        listener: TcpListener,
        udp: Option<UdpSocket>,
    ) -> std::io::Result<Server> {
        Server::with_sockets(Prepared::open(config)?, listener, udp)
    }

    /// A server for already-bound sockets, from its start-up files: the
    /// ban list parsed, each room's history loaded from the transcript's
    /// tail, the write side's threads started, and with `--redis` the
    /// cluster joined. `udp` should come from [`udp::bind`], which asks
    /// for each datagram's destination before binding (from another
    /// socket, replies leave from the address the kernel picks).
    ///
    /// # Errors
    /// When the listener's address cannot be read, a thread cannot start,
    /// or (with `--redis`) Redis no longer answers (one line saying which).
    pub fn with_sockets(
        prepared: Prepared,
        listener: TcpListener,
        udp: Option<UdpSocket>,
    ) -> std::io::Result<Server> {
        let Prepared {
            config,
            root: files,
            bans,
            gate,
            transcript,
            notes,
        } = prepared;
        let local = listener.local_addr()?;
        let chat = config.mode == Mode::Chat;
        let flushers = if chat {
            write::flushers_for(thread::available_parallelism().map_or(1, |n| n.get()))
        } else {
            0
        };
        // A paste is `--burst` lines, relayed in batches of up to
        // `session::RELAY_BATCH_LINES` (more with flood control off).
        let paste = (config.burst as usize).max(session::RELAY_BATCH_LINES);
        let limits = Limits::new(config.sendq as usize, config.sendq_bytes as usize, paste);
        let writers = Writers::start(flushers, limits)?;
        let display = (!config.quiet && chat).then(|| writers.display(console::DISPLAY_QUEUE));
        let access = access::Access::new(&config, bans, gate);
        let (transcript, history) = match (transcript, &config.transcript) {
            (Some(mut file), Some(path)) => {
                // What the start found cut short at its end goes now that
                // the port is bound, before the history is read back.
                file.mend_now().map_err(|e| {
                    std::io::Error::other(format!(
                        "cannot cut the transcript {} back to its last whole line: {}",
                        path.display(),
                        log::plain(&e)
                    ))
                })?;
                let history = transcript::load_history(
                    path,
                    config.history as usize,
                    config.max_rooms as usize,
                    chat_common::sanitize::MAX_GROWTH * config.max_line as usize
                        + transcript::LINE_FRAME,
                );
                let name = path.display().to_string();
                (Some(transcript::Transcript::start(file, name)?), history)
            }
            _ => (None, Vec::new()),
        };
        for note in notes {
            log!("{note}");
        }
        let shutdown = Arc::new(Shutdown::new());
        let (cluster, log, names): (_, Box<dyn rooms::log::Log>, Box<dyn rooms::names::Names>) =
            match (&config.redis, chat) {
                (Some(url), true) => {
                    let (node, seams) =
                        cluster::Node::start(url, config.history as usize, config.redis_log_len)?;
                    (Some(node), seams.log, seams.names)
                }
                _ => (
                    None,
                    Box::new(rooms::embedded::Embedded::new(config.history as usize)),
                    Box::new(rooms::names::LocalNames::default()),
                ),
            };
        let rooms = Rooms::new(
            rooms::Fanout::new(writers.clone(), display.clone(), transcript),
            log,
            names,
            config.max_rooms as usize,
            Arc::clone(&shutdown),
        );
        for (room, lines) in history {
            rooms.seed(&room, lines);
        }
        let ctx = Arc::new(Context {
            access,
            rooms,
            writers,
            conns: Connections::new(config.max_per_ip, config.limit_loopback),
            shutdown,
            files,
            config,
            cluster,
            local,
            accepted: AtomicU64::new(0),
        });
        if let Some(cluster) = &ctx.cluster {
            cluster.attach(&ctx);
        }
        Ok(Server {
            listener,
            spare: listener::reserve_descriptor(),
            udp,
            ctx,
            display,
        })
    }

    /// The shared context: `stop()` on it shuts the server down.
    pub fn context(&self) -> Arc<Context> {
        Arc::clone(&self.ctx)
    }

    /// Serves until shutdown is triggered, then stops gracefully (see
    /// `Running::stop`). Returns a one-line summary.
    pub fn run(self) -> String {
        let (running, listener, spare) = self.start();
        let mut pool = Pool::new(
            running.ctx.config.workers as usize,
            running.ctx.config.queue as usize,
        );
        listener::accept_loop(&listener, &running.ctx, &mut pool, spare);
        running.stop(listener, pool)
    }

    /// Starts the threads around the accept loop: the display and UDP (the
    /// write side started its own in [`Server::with_sockets`]).
    fn start(self) -> (Running, TcpListener, Option<std::fs::File>) {
        let ctx = &self.ctx;
        let display = self
            .display
            .as_ref()
            .and_then(|d| match console::spawn_display(d.clone()) {
                Ok(thread) => Some(thread),
                Err(e) => {
                    log!("cannot show the conversation: {e}");
                    None
                }
            });
        let udp = self.udp.as_ref().map(|socket| {
            let ctx = Arc::clone(ctx);
            let socket = socket.try_clone();
            thread::Builder::new()
                .name("udp".into())
                .spawn(move || match socket {
                    Ok(socket) => udp::serve(&socket, &ctx),
                    Err(e) => log!("udp: {e}"),
                })
        });
        let running = Running {
            ctx: Arc::clone(&self.ctx),
            started: Instant::now(),
            udp_socket: self.udp,
            udp,
            display_queue: self.display,
            display,
        };
        (running, self.listener, self.spare)
    }
}

/// A started server's threads, for the graceful stop.
pub struct Running {
    /// What every thread shares: the stop goes through it.
    ctx: Arc<Context>,
    /// When the server started serving: the summary's uptime.
    started: Instant,
    /// The UDP socket, kept so the stop can wake the UDP thread with a
    /// datagram to itself ([`udp::wake`]).
    udp_socket: Option<UdpSocket>,
    /// The UDP thread, or why it could not start: joined at the stop (by
    /// the deadline only if it could not be woken).
    udp: Option<std::io::Result<thread::JoinHandle<()>>>,
    /// The display's queue: closed at the stop, so what is queued goes out
    /// by the deadline and the display thread ends.
    display_queue: Option<Display>,
    /// The display thread, if it started: joined by the deadline at the
    /// stop (one stuck on a stdout nobody reads is left to process exit).
    display: Option<thread::JoinHandle<()>>,
}

impl Running {
    /// Stops gracefully once the accept loop has returned: tell every chat
    /// client, deliver what is queued (for at most [`shutdown::GRACE`]),
    /// close every connection, write and sync the transcript (by the
    /// deadline plus [`transcript::SYNC_WAIT`]; a write stuck past it is
    /// left to process exit, its lines counted missing), join every thread.
    /// Returns a one-line summary.
    fn stop(self, listener: TcpListener, pool: Pool) -> String {
        let ctx = &self.ctx;
        let stopping = Instant::now();
        let deadline = ctx
            .shutdown
            .deadline()
            .unwrap_or(stopping + shutdown::GRACE);
        if let Some(cluster) = &ctx.cluster {
            // First, while the clients are still listed: the other servers
            // see them leave.
            cluster.stop();
        }
        ctx.rooms.shutdown();
        // Counted once everyone is out, not before: a session may notice
        // the shutdown and leave before `rooms.shutdown` takes it out.
        let online = ctx.rooms.stopped();
        ctx.conns.close_all();
        drop(listener);
        // A worker blocked past the deadline (on a hung Redis) is not
        // waited for.
        pool.stop(deadline);
        ctx.writers.stop(deadline);
        let udp_woken = self.udp_socket.as_ref().is_some_and(udp::wake);
        match self.udp {
            // Without its wake-up the UDP thread stops at the next
            // datagram: not waited for past the deadline.
            Some(Ok(thread)) if !udp_woken => {
                log!("udp: could not wake the UDP thread; it stops at the next datagram");
                join_until(thread, deadline);
            }
            Some(Ok(thread)) => {
                let _ = thread.join();
            }
            Some(Err(e)) => log!("the udp thread could not start: {e}"),
            None => {}
        }
        if let (Some(display), Some(thread)) = (&self.display_queue, self.display) {
            display.close(deadline);
            join_until(thread, deadline);
        }
        let transcript = ctx
            .rooms
            .fanout()
            .transcript
            .as_ref()
            .map_or(String::new(), |t| {
                t.stop(deadline + transcript::SYNC_WAIT);
                format!(
                    ", {} missing from the transcript",
                    protocol::count(t.lost(), "line")
                )
            });
        format!(
            "stopped in {} ms after {:.1} s: {} served (peak {} at once), {} online at the end, {} relayed{transcript}",
            stopping.elapsed().as_millis(),
            self.started.elapsed().as_secs_f64(),
            protocol::count(ctx.accepted.load(Ordering::Relaxed), "connection"),
            ctx.conns.peak(),
            online,
            protocol::count(ctx.rooms.relayed(), "line")
        )
    }
}

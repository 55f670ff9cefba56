//! `chat-server`: parse flags, check what the start needs, bind, install
//! the Ctrl+C handler, run.
//!
//! Everything else lives in the library so tests can drive it.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use chat_server::log::plain;
use chat_server::ports::{self, BindError};
use chat_server::{console, log, Config, Mode, Prepared, Server};

fn main() -> ExitCode {
    let config = Config::parse();
    if config.udp && config.mode == Mode::Chat {
        Config::command()
            .error(
                ErrorKind::ArgumentConflict,
                "--udp serves the echo, upper and file modes only; add --mode echo, upper or file",
            )
            .exit();
    }
    if config.redis.is_some() && config.mode != Mode::Chat {
        Config::command()
            .error(
                ErrorKind::ArgumentConflict,
                "--redis shares chat rooms; it does not apply to --mode echo, upper or file",
            )
            .exit();
    }
    if let Some(url) = &config.redis {
        // Before anything else: a mistyped URL must never look like a
        // running server.
        if let Err(e) = chat_server::cluster::check(url) {
            return fail(&e);
        }
    }
    // Let --workers, not a default `ulimit -n` of 1024, cap the clients.
    // Failing to raise it is not fatal: the accept loop copes with EMFILE.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // Also before the bind: a start-up file that stops the start stops it
    // before the port takes a single connection.
    let prepared = match Prepared::open(config) {
        Ok(prepared) => prepared,
        Err(e) => return fail(&plain(&e)),
    };
    let config = prepared.config();

    let addr = SocketAddr::new(config.bind, config.port);
    let (listener, udp) = match ports::bind(addr, config.udp) {
        Ok(bound) => bound,
        Err(BindError::Tcp(at, e)) => {
            return fail(&format!("cannot listen on {at}: {}", plain(&e)))
        }
        Err(BindError::Udp(at, e)) => {
            return fail(&format!("cannot listen for UDP on {at}: {}", plain(&e)))
        }
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(e) => return fail(&format!("cannot read the bound address: {}", plain(&e))),
    };
    let mode = config.mode;
    let server = match Server::with_sockets(prepared, listener, udp) {
        Ok(server) => server,
        Err(e) => return fail(&plain(&e)),
    };
    let ctx = server.context();
    let handler_ctx = server.context();
    if let Err(e) = ctrlc::set_handler(move || {
        if !handler_ctx.stop() {
            // Second Ctrl+C: the user means it.
            std::process::exit(130);
        }
    }) {
        return fail(&format!("cannot install the Ctrl+C handler: {e}"));
    }
    let mode = format!("{mode:?}").to_lowercase();
    chat_server::log::say(format_args!(
        "chat-server ({mode} mode{}) listening on {local}",
        if ctx.config.udp { ", also UDP" } else { "" }
    ));
    log!("listening on {local} ({mode} mode); Ctrl+C to stop");
    if let Some(root) = &ctx.files {
        log!("serving the files under {}", root.path().display());
    }
    if ctx.config.mode == Mode::Chat {
        console::spawn_input(std::sync::Arc::clone(&ctx));
    }
    let summary = server.run();
    let exit_by = ctx
        .shutdown
        .deadline()
        .unwrap_or_else(std::time::Instant::now)
        + log::FLUSH_LIMIT;
    log::finish(format_args!("{summary}"), exit_by);
    ExitCode::SUCCESS
}

/// One line on stderr and exit 1: what a user sees when the server cannot
/// start. No backtrace, no `Debug` dump.
fn fail(message: &str) -> ExitCode {
    // A closed stderr must not turn into a panic: the exit code still says it.
    let _ = writeln!(std::io::stderr(), "chat-server: {message}");
    ExitCode::from(1)
}

//! What the start opens and reads before the port is bound.
//!
//! Every start-up file that can stop the start is opened and checked here:
//! `--bans`, `--password-file`, `--transcript` and file mode's `--root`.
//! `main` does this before it binds, so a server that is about to exit 1
//! never takes a connection, not even for a moment (as the `--redis` check
//! runs before the bind too). Nothing here logs: SPEC wants nothing logged
//! before the bind, so a port in use is still one line on stderr. What the
//! files have to say (the bans loaded, a malformed ban line, a `--password-
//! file` that does not apply, a transcript's partial last line dropped or
//! its unreadable history) is logged
//! by [`Server::with_sockets`](crate::Server::with_sockets) once the port
//! is bound.
//!
//! Side effects: a missing `--bans` file is created empty, and the
//! transcript created (0600), even when the bind then fails, as they
//! would be by any start. A transcript's partial last line is only found
//! here, and cut after the bind (a start that fails changes nothing).

use std::fs::File;
use std::time::Duration;

use crate::bans::BanFile;
use crate::config::{Config, Mode};
use crate::files;
use crate::password::Gate;
use crate::transcript;

/// A server's start-up files, opened and checked: what
/// [`Server::with_sockets`](crate::Server::with_sockets) needs besides its
/// sockets.
pub struct Prepared {
    /// The flags, handed on to the server.
    pub(crate) config: Config,
    /// The folder `--mode file` serves (`None` in the other modes).
    pub(crate) root: Option<files::Root>,
    /// `--bans`, read (or created empty), parsed after the bind.
    pub(crate) bans: Option<BanFile>,
    /// `--password-file`, in chat mode only: read and checked.
    pub(crate) gate: Option<Gate>,
    /// `--transcript`, in chat mode only: opened for appending; its
    /// history is read back after the bind.
    pub(crate) transcript: Option<transcript::Sink<File>>,
    /// What opening the files had to say that stops nothing (a
    /// transcript's partial last line dropped): logged after the bind.
    pub(crate) notes: Vec<String>,
}

impl Prepared {
    /// Opens and reads the start-up files `config` names, in the order the
    /// start always checked them.
    ///
    /// # Errors
    /// A file that cannot be used: one line saying which (never the
    /// password), for `main` to print before exiting 1.
    pub fn open(config: Config) -> std::io::Result<Prepared> {
        let chat = config.mode == Mode::Chat;
        let root = match config.mode {
            Mode::File => Some(files::Root::open(config.root.as_deref()).map_err(other)?),
            _ => None,
        };
        let bans = config
            .bans
            .as_deref()
            .map(BanFile::read)
            .transpose()
            .map_err(other)?;
        let gate = match &config.password_file {
            Some(file) if chat => {
                let timeout = Duration::from_secs(config.password_timeout);
                Some(Gate::load(file, timeout).map_err(other)?)
            }
            _ => None,
        };
        let mut notes = Vec::new();
        let transcript = match &config.transcript {
            Some(path) if chat => {
                let (sink, note) = transcript::open(path).map_err(other)?;
                notes.extend(note);
                Some(sink)
            }
            _ => None,
        };
        Ok(Prepared {
            config,
            root,
            bans,
            gate,
            transcript,
            notes,
        })
    }

    /// The flags it was prepared for.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// One start-up line as an I/O error, as [`crate::Server::new`] returns.
fn other(line: String) -> std::io::Error {
    std::io::Error::other(line)
}

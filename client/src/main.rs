//! `chat-client [OPTIONS] HOST PORT`: a terminal client for the chat server,
//! or for any line server (an echo service, `ncat -l`), over TCP or UDP.
//!
//! This file only turns the command line into [`args::Options`] and an exit
//! status; the session itself lives in [`tcp`] and [`udp`], so each concern
//! can be read (and unit-tested) on its own. Exit status: 0 when the session
//! ends normally, 1 on a network error, 2 on a usage error.
//!
//! The client depends on std and chat-common only, never on a third-party
//! crate: it is the program students read to learn the socket calls, so every
//! call is in plain sight.
#![forbid(unsafe_code)]

mod address;
mod args;
mod error;
mod late;
mod tcp;
mod udp;

use std::process::ExitCode;

use args::Parsed;

fn main() -> ExitCode {
    let options = match args::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{}", args::help());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("{}", args::version());
            return ExitCode::SUCCESS;
        }
        Err(usage) => {
            eprintln!("chat-client: {usage}");
            return ExitCode::from(2);
        }
    };
    let outcome = if options.udp {
        udp::run(&options)
    } else {
        tcp::run(&options)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("chat-client: {failure}");
            ExitCode::from(1)
        }
    }
}

//! Protocol code shared by `chat-server` and `chat-client`.
//!
//! Everything here is pure and std-only: no sockets, no threads, no clocks.
//! That is what lets each rule of the wire protocol be unit-tested on its own,
//! and what keeps the client free of third-party crates.
//!
//! | module | concern |
//! |---|---|
//! | [`line`](mod@line) | bounded framing of a byte stream into lines ([`LineReader`]) |
//! | [`telnet`] | removing telnet IAC sequences before decoding |
//! | [`sanitize`] | making client text harmless before others see it |
//! | [`name`] | the rules for nicknames |
//! | [`command`] | parsing a line a client typed into a [`Command`] |
//! | [`protocol`] | the lines the server sends, by prefix |
//! | [`room`] | the rules for room names |
//! | [`upper`] | streaming Unicode uppercasing for the lab's uppercase server |
//! | [`stop`] | the stop line (`EXIT`) that ends a session |
//! | [`datagram`] | how much one UDP datagram carries |
//! | [`plain`](mod@plain) | I/O errors in plain words |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod datagram;
pub mod line;
pub mod name;
pub mod plain;
pub mod protocol;
pub mod room;
pub mod sanitize;
pub mod stop;
pub mod telnet;
pub mod upper;

pub use command::Command;
pub use line::{Line, LineReader};

//! Parsing one line a client typed.
//!
//! TODO(common helper): implement.

/// What a line asks for. Borrowed from the line: parsing allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Nothing but whitespace: ignored.
    Empty,
    /// Chat text for everyone. `//text` arrives here as `/text`.
    Say(&'a str),
    /// `/nick NAME`.
    Nick(&'a str),
    /// `/who`.
    Who,
    /// `/me TEXT`.
    Me(&'a str),
    /// `/msg NAME TEXT`.
    Msg {
        /// Recipient's name as typed.
        to: &'a str,
        /// The message.
        text: &'a str,
    },
    /// `/quit [REASON]`, or `EXIT` alone on a line.
    Quit(Option<&'a str>),
    /// `/help`.
    Help,
    /// A known command with missing arguments: the usage line to send back.
    Usage(&'static str),
    /// `/something` we do not know: the command word as typed.
    Unknown(&'a str),
}

/// Parses one line (terminator already removed).
pub fn parse(line: &str) -> Command<'_> {
    Command::Say(line)
}

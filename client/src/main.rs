//! Placeholder until the client issue lands.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("chat-client: not built yet");
    std::process::exit(2);
}

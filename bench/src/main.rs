//! Placeholder until the benchmark issue lands.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("chat-bench: not built yet");
}

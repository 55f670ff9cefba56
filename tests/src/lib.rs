//! Support for the integration tests: start the real binaries, talk to them
//! with bounded waits.
#![forbid(unsafe_code)]

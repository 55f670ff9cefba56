//! Unit tests of the bridge.

use super::*;

/// An entry's `from` field names its origin and reads back the same;
/// one written by presence (a lost server's leave) comes from no one.
#[test]
fn origins_round_trip() {
    for origin in [
        Origin {
            server: 42,
            client: Some(7),
        },
        Origin {
            server: 42,
            client: None,
        },
    ] {
        assert_eq!(Bridge::origin_of(&Bridge::origin_field(origin)), origin);
    }
    assert_eq!(
        Bridge::origin_of("carol"),
        Origin {
            server: 0,
            client: None
        }
    );
}

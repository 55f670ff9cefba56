//! Unit tests of the bridge, and its test hook.

use super::*;

/// What [`Bridge::before_delivery`] calls, with the room's key.
pub(in crate::cluster) type DeliveryHook = Arc<dyn Fn(&str) + Send + Sync>;

impl Bridge {
    /// Runs the test's [`Bridge::before_delivery`] hook, if any (cloned
    /// out first: the hook may hold the reader while the test sets it).
    pub(super) fn about_to_deliver(&self, key: &str) {
        let hook = self.before_delivery.lock().clone();
        if let Some(hook) = hook {
            hook(key);
        }
    }
}

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

//! The password's pure parts: the compare, the lockout (`/pass` parsing is
//! `chat_common::command`'s).

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// The compare is equality, whatever the lengths.
#[test]
fn compares() {
    assert!(constant_time_eq(b"secret", b"secret"));
    assert!(!constant_time_eq(b"secreT", b"secret"));
    assert!(!constant_time_eq(b"secret!", b"secret"));
    assert!(!constant_time_eq(b"secre", b"secret"));
    assert!(!constant_time_eq(b"", b"secret"));
    assert!(!constant_time_eq(b"secretsecret", b"secret"));
    let password = Password("pw".into());
    assert!(password.matches("pw"));
    assert!(!password.matches("pw "));
}

/// The password never shows in a debug dump.
#[test]
fn debug_hides_it() {
    let shown = format!("{:?}", Password("hunter2".into()));
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// Ten wrong tries within a minute lock the address out for a minute;
/// spread over more than a minute they do not; other addresses are not
/// affected; an IPv4 address counts as one whatever its spelling.
#[test]
fn lockout() {
    let failures = Failures::default();
    let t0 = Instant::now();
    let a = ip("127.0.0.4");
    for i in 0..LOCKOUT_TRIES - 1 {
        assert_eq!(
            failures.strike(a, t0 + Duration::from_secs(i as u64)),
            Strike::Counted
        );
    }
    assert_eq!(failures.locked(a, t0 + Duration::from_secs(9)), None);
    assert_eq!(
        failures.strike(ip("::ffff:127.0.0.4"), t0 + Duration::from_secs(9)),
        Strike::LockedOut
    );
    let locked_at = t0 + Duration::from_secs(9);
    assert_eq!(failures.locked(a, locked_at), Some(LOCKOUT));
    // Asked with an instant taken just before the lockout (a connection
    // accepted then): never more than the lockout itself ("try again in
    // 1m 1s" for a 60 s lockout).
    let before = locked_at - Duration::from_millis(5);
    assert_eq!(failures.locked(a, before), Some(LOCKOUT));
    assert_eq!(failures.locked(ip("127.0.0.5"), locked_at), None);
    assert_eq!(failures.locked(a, locked_at + LOCKOUT), None);

    let b = ip("127.0.0.6");
    for i in 0..3 * LOCKOUT_TRIES {
        // One try every 7 s: never ten within a minute.
        let at = t0 + Duration::from_secs(7 * i as u64);
        assert_eq!(failures.strike(b, at), Strike::Counted, "try {i}");
    }
}

/// Memory stays bounded: past MAX_TRACKED addresses, stale ones are
/// forgotten, and a locked-out address is kept over an unlocked one.
#[test]
fn bounded() {
    let failures = Failures::default();
    let t0 = Instant::now();
    let locked = ip("10.255.255.255");
    for _ in 0..LOCKOUT_TRIES {
        let _ = failures.strike(locked, t0);
    }
    for i in 0..MAX_TRACKED as u32 * 2 {
        let addr = IpAddr::V4(std::net::Ipv4Addr::from(i));
        let _ = failures.strike(addr, t0 + Duration::from_millis(u64::from(i)));
        assert!(failures.tracked() <= MAX_TRACKED);
    }
    assert_eq!(failures.tracked(), MAX_TRACKED);
    assert!(failures
        .locked(locked, t0 + Duration::from_secs(30))
        .is_some());
    // A minute later every unlocked record is stale: room for new ones.
    let later = t0 + Duration::from_secs(200);
    let _ = failures.strike(ip("192.0.2.1"), later);
    assert_eq!(failures.tracked(), 1);
}

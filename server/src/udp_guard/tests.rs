//! The reply policy, on made-up addresses and times.

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("literal")
}

/// Replies `peer` gets out of `tries` at `now`.
fn answered(guard: &mut Guard, peer: SocketAddr, tries: usize, now: Instant) -> usize {
    (0..tries)
        .filter(|_| guard.check(peer, now) == Verdict::Reply)
        .count()
}

/// Our own port is never answered, from any address (ourselves, or a
/// server like us: the default 2000 to 2000 pair); another port is.
#[test]
fn our_own_port_is_not_answered_from_any_address() {
    let mut guard = Guard::new(addr("127.0.0.1:5000"), 100);
    let now = Instant::now();
    for own in [
        "127.0.0.1:5000",
        "127.0.0.9:5000",
        "[::ffff:127.0.0.1]:5000",
        "192.0.2.7:5000",
    ] {
        assert_eq!(guard.check(addr(own), now), Verdict::Own, "{own}");
    }
    assert_eq!(guard.check(addr("127.0.0.1:5001"), now), Verdict::Reply);
    assert_eq!(guard.check(addr("192.0.2.7:5001"), now), Verdict::Reply);
    let report = guard.pending().expect("a count");
    assert_eq!((report.own, report.over_rate), (4, 0));
    assert_eq!(guard.pending(), None);
}

/// Echo, daytime, chargen and time answer anything: never answered.
#[test]
fn service_ports_are_not_answered() {
    let mut guard = Guard::new(addr("0.0.0.0:2000"), 100);
    let now = Instant::now();
    for port in SERVICE_PORTS {
        let peer = SocketAddr::from(([192, 0, 2, 1], port));
        assert_eq!(guard.check(peer, now), Verdict::Service, "{port}");
    }
    assert_eq!(guard.check(addr("192.0.2.1:8"), now), Verdict::Reply);
    assert_eq!(guard.pending().expect("a count").service, 4);
}

/// A source gets `rate` replies at once, then `rate` a second; another
/// source is not affected.
#[test]
fn replies_per_source_are_rate_limited() {
    let mut guard = Guard::new(addr("127.0.0.1:5000"), 10);
    let t0 = Instant::now();
    let a = addr("127.0.0.1:6000");
    let b = addr("127.0.0.1:6001");
    assert_eq!(answered(&mut guard, a, 50, t0), 10);
    assert_eq!(guard.check(b, t0), Verdict::Reply);
    let later = t0 + Duration::from_millis(500);
    assert_eq!(answered(&mut guard, a, 50, later), 5);
}

/// Rotating source ports does not multiply one address's replies: it gets
/// `IP_RATE_FACTOR` times the rate, then that many a second.
#[test]
fn one_address_is_capped_whatever_its_ports() {
    let mut guard = Guard::new(addr("127.0.0.1:5000"), 10);
    let t0 = Instant::now();
    let cap = 10 * IP_RATE_FACTOR as usize;
    let got: usize = (1000..2000)
        .map(|port| answered(&mut guard, SocketAddr::from(([192, 0, 2, 9], port)), 1, t0))
        .sum();
    assert_eq!(got, cap);
    assert!(guard.pending().expect("a count").over_ip > 0);
    // Another address is not affected; the first refills in time.
    assert_eq!(guard.check(addr("192.0.2.10:1000"), t0), Verdict::Reply);
    let later = t0 + Duration::from_millis(500);
    let got: usize = (3000..4000)
        .map(|port| {
            answered(
                &mut guard,
                SocketAddr::from(([192, 0, 2, 9], port)),
                1,
                later,
            )
        })
        .sum();
    assert_eq!(got, cap / 2);
}

/// Reply bytes to one address are capped at `IP_BYTES` a second, across
/// its ports: small requests cannot draw large files without bound.
#[test]
fn reply_bytes_per_address_are_capped() {
    let mut guard = Guard::new(addr("127.0.0.1:5000"), 1000);
    let t0 = Instant::now();
    let big = 60_000;
    let mut sent = 0;
    for port in 1000..1100 {
        let peer = SocketAddr::from(([192, 0, 2, 9], port));
        if guard.check(peer, t0) == Verdict::Reply && guard.spend_bytes(peer, big, t0) {
            sent += big as u64;
        }
    }
    assert!(sent <= IP_BYTES, "{sent} bytes sent");
    assert!(sent + big as u64 > IP_BYTES, "only {sent} bytes sent");
    assert!(guard.pending().expect("a count").over_ip > 0);
    assert!(guard.check(addr("192.0.2.10:1"), t0) == Verdict::Reply);
    assert!(guard.spend_bytes(addr("192.0.2.10:1"), big, t0));
}

/// The table of sources is bounded; refilled buckets make room.
#[test]
fn the_table_is_bounded() {
    let mut guard = Guard::new(addr("127.0.0.1:5000"), 10);
    let t0 = Instant::now();
    for i in 0..MAX_PEERS as u32 {
        let peer = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 9));
        assert_eq!(guard.check(peer, t0), Verdict::Reply);
    }
    let extra = addr("10.200.0.2:1");
    assert_eq!(guard.check(extra, t0), Verdict::OverRate);
    assert_eq!(
        guard.check(extra, t0 + Duration::from_secs(1)),
        Verdict::Reply
    );
    assert!(guard.sources.len() <= MAX_PEERS);
    assert!(guard.addresses.len() <= MAX_PEERS);
}

/// With the table full, a flood of new sources sweeps it at most every
/// `SWEEP_EVERY`, not once per datagram.
#[test]
fn a_full_table_is_swept_at_most_every_sweep_interval() {
    let mut guard = Guard::new(addr("127.0.0.1:5000"), 10);
    let t0 = Instant::now();
    for port in 1..=MAX_PEERS as u16 {
        let peer = SocketAddr::from(([10, 0, (port >> 8) as u8, port as u8], 9000));
        assert_eq!(guard.check(peer, t0), Verdict::Reply);
    }
    let soon = t0 + SWEEP_EVERY / 2;
    for port in 1..=1000u16 {
        let peer = SocketAddr::from(([10, 1, (port >> 8) as u8, port as u8], 9000));
        assert_eq!(guard.check(peer, soon), Verdict::OverRate);
    }
    assert_eq!(guard.sweeps, 1);
    let _ = guard.check(addr("10.2.0.1:1"), t0 + SWEEP_EVERY * 2);
    assert_eq!(guard.sweeps, 2);
}

/// A burst is logged as one count once it is gathered, not as its first
/// datagram: nothing before [`WITHHELD_GATHER`], then all of it; the next
/// count waits for [`WITHHELD_LOG_EVERY`], and what is pending can be
/// taken at any time (at the stop).
#[test]
fn a_burst_is_counted_whole() {
    let mut guard = Guard::new(addr("127.0.0.1:5000"), 100);
    let t0 = Instant::now();
    let peer = addr("127.0.0.1:6000");
    assert_eq!(answered(&mut guard, peer, 300, t0), 100);
    assert_eq!(guard.report(t0), None);
    assert_eq!(guard.due(), Some(t0 + WITHHELD_GATHER));
    let t1 = t0 + WITHHELD_GATHER;
    assert_eq!(guard.report(t1).expect("a count").over_rate, 200);
    assert_eq!(guard.due(), None);
    assert_eq!(answered(&mut guard, peer, 150, t1), 100);
    assert_eq!(guard.report(t1 + WITHHELD_GATHER), None);
    assert_eq!(guard.due(), Some(t1 + WITHHELD_LOG_EVERY));
    assert_eq!(guard.pending().expect("a count").over_rate, 50);
    assert_eq!(guard.pending(), None);
}

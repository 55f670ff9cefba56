//! The ban list's pure parts: prefixes, durations, the file format.

use super::*;
use std::net::Ipv6Addr;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// Addresses and CIDR prefixes of both families parse, host bits are
/// cleared, and the display is what `/bans` and the file show.
#[test]
fn prefixes_parse_and_display() {
    for (text, shown) in [
        ("192.0.2.7", "192.0.2.7"),
        ("192.0.2.7/24", "192.0.2.0/24"),
        ("192.0.2.0/32", "192.0.2.0"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("2001:db8:1:2::5/64", "2001:db8:1:2::/64"),
        ("::1", "::1"),
        ("::ffff:192.0.2.9", "192.0.2.9"),
        ("::ffff:192.0.2.0/120", "192.0.2.0/24"),
    ] {
        let prefix = Prefix::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(prefix.to_string(), shown, "{text}");
    }
    for bad in [
        "",
        "bob",
        "192.0.2.0/33",
        "2001:db8::/129",
        "192.0.2.0/",
        "192.0.2.0/-1",
        "192.0.2/24",
        "::ffff:192.0.2.0/64",
    ] {
        let err = Prefix::parse(bad).expect_err(bad);
        assert!(!err.contains('\n'), "{err}");
    }
}

/// A prefix holds exactly the addresses of its block, of its own family;
/// an IPv4 client seen as `::ffff:a.b.c.d` matches an IPv4 ban.
#[test]
fn prefixes_match() {
    let v4 = Prefix::parse("192.0.2.0/24").unwrap();
    assert!(v4.contains(ip("192.0.2.0")));
    assert!(v4.contains(ip("192.0.2.255")));
    assert!(v4.contains(ip("::ffff:192.0.2.77")));
    assert!(!v4.contains(ip("192.0.3.0")));
    assert!(!v4.contains(ip("2001:db8::1")));
    let v6 = Prefix::parse("2001:db8::/32").unwrap();
    assert!(v6.contains(ip("2001:db8:ffff::1")));
    assert!(!v6.contains(ip("2001:db9::1")));
    assert!(!v6.contains(ip("192.0.2.1")));
    let one = Prefix::host(ip("127.0.0.2"));
    assert!(one.contains(ip("127.0.0.2")));
    assert!(!one.contains(ip("127.0.0.3")), "every 127.x.y.z is its own");
    let all = Prefix::parse("0.0.0.0/0").unwrap();
    assert!(all.contains(ip("203.0.113.9")));
}

/// Durations are a whole number and one of s, m, h, d; zero, other units
/// and more than ten years are refused.
#[test]
fn durations() {
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
    for bad in [
        "",
        "s",
        "0s",
        "10",
        "1.5h",
        "-1m",
        "+1m",
        "5y",
        "3651d",
        "99999999999999999999s",
        "1 h",
        "h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

/// What is left reads plainly and never shows 0s for a live ban.
#[test]
fn time_left() {
    assert_eq!(format_left(Duration::from_millis(1)), "1s");
    assert_eq!(format_left(Duration::from_secs(45)), "45s");
    assert_eq!(format_left(Duration::from_secs(3550)), "59m 10s");
    assert_eq!(format_left(Duration::from_secs(7500)), "2h 5m");
    assert_eq!(format_left(Duration::from_secs(7 * 86_400 - 1)), "6d 23h");
}

/// The file round-trips: what is rendered is parsed back to the same bans.
#[test]
fn file_round_trips() {
    let now = humantime::parse_rfc3339("2026-12-06T01:00:00Z").unwrap();
    let bans = vec![
        Ban::new(
            Prefix::parse("10.0.0.0/8").unwrap(),
            None,
            None,
            Some("spam  and more"),
            now,
        ),
        Ban::new(
            Prefix::host(ip("127.0.0.5")),
            Some(Duration::from_secs(600)),
            Some("bob".into()),
            None,
            now,
        ),
        // `/ban guest-3`: a name the server gave, reserved for users.
        Ban::new(
            Prefix::host(ip("127.0.0.6")),
            None,
            Some("guest-3".into()),
            Some("flood"),
            now,
        ),
    ];
    let text = render(&bans);
    assert!(
        text.contains("\n10.0.0.0/8 never - spam  and more\n"),
        "{text}"
    );
    assert!(
        text.contains("\n127.0.0.5 2026-12-06T01:10:00Z bob\n"),
        "{text}"
    );
    assert!(text.contains("\n127.0.0.6 never guest-3 flood\n"), "{text}");
    let (back, problems) = parse_file(&text, now);
    assert_eq!(back, bans);
    assert!(problems.is_empty(), "{problems:?}");
}

/// A malformed line is reported with its number and skipped; the lines
/// around it still load; expired bans are dropped silently.
#[test]
fn malformed_lines_are_skipped() {
    let now = humantime::parse_rfc3339("2026-12-06T01:00:00Z").unwrap();
    let text = "# comment\n\
                10.0.0.1 never - ok\n\
                not-an-address never -\n\
                \n\
                10.0.0.2 2026-12-06T00:00:00Z - expired\n\
                10.0.0.3 tomorrow -\n\
                10.0.0.4 never bad!name\n\
                10.0.0.5\n\
                10.0.0.6 2026-12-07T00:00:00Z alice later\n";
    let (bans, problems) = parse_file(text, now);
    let shown: Vec<String> = bans.iter().map(|b| b.prefix.to_string()).collect();
    assert_eq!(shown, ["10.0.0.1", "10.0.0.6"]);
    let lines: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(
        lines,
        ["line 3", "line 6", "line 7", "line 8"],
        "{problems:?}"
    );
}

/// A line edited by hand may have runs of spaces or tabs between its
/// words; the reason keeps its own inner spaces.
#[test]
fn words_may_be_apart_by_runs_of_blanks() {
    let now = humantime::parse_rfc3339("2026-12-06T01:00:00Z").unwrap();
    let text = "127.0.0.25  never  -  double  spaces\n\
                127.0.0.26\t2026-12-07T00:00:00Z\tbob\n\
                127.0.0.27 never   \n";
    let (bans, problems) = parse_file(text, now);
    assert!(problems.is_empty(), "{problems:?}");
    let lines: Vec<String> = bans.iter().map(Ban::to_line).collect();
    assert_eq!(
        lines,
        [
            "127.0.0.25 never - double  spaces",
            "127.0.0.26 2026-12-07T00:00:00Z bob",
            "127.0.0.27 never -",
        ]
    );
}

/// A ban ending further off than `/ban` may set (`MAX_DURATION`) is held
/// until then, and said so: never skipped (that would let the address
/// in), never longer than the console allows.
#[test]
fn an_end_past_the_longest_ban_is_held_to_it() {
    let now = humantime::parse_rfc3339("2026-12-06T01:00:00Z").unwrap();
    let text = "127.0.0.22 2999-01-01T00:00:00Z - x\n127.0.0.23 2027-01-01T00:00:00Z - y\n";
    let (bans, problems) = parse_file(text, now);
    assert_eq!(bans.len(), 2);
    assert_eq!(bans[0].until, Some(now + MAX_DURATION));
    assert_eq!(bans[0].left(now), "3650d 0h");
    assert_eq!(
        bans[1].until,
        Some(humantime::parse_rfc3339("2027-01-01T00:00:00Z").unwrap())
    );
    assert_eq!(
        problems,
        ["line 1: ends more than the longest ban (3650d) from now; held for 3650d"]
    );
}

/// A file of garbage, or of more bans than the list holds, is told in a
/// few lines, not one per line: the first `PROBLEMS_SHOWN` malformed lines
/// one by one, then a count; the lines past `MAX_BANS` in one line.
#[test]
fn many_problems_are_told_in_a_few_lines() {
    let now = SystemTime::now();
    let mut text = String::new();
    for i in 0..25 {
        text.push_str(&format!("garbage{i}\n"));
    }
    // Two bans held to the longest, past the ones shown: counted apart,
    // never among the lines skipped.
    text.push_str("10.255.0.1 9999-01-01T00:00:00Z\n10.255.0.2 9999-01-01T00:00:00Z\n");
    for i in 0..(MAX_BANS + 100) {
        text.push_str(&format!("10.{}.{}.1 never\n", i / 256, i % 256));
    }
    let (bans, problems) = parse_file(&text, now);
    assert_eq!(bans.len(), MAX_BANS);
    assert_eq!(problems.len(), ban::PROBLEMS_SHOWN + 3, "{problems:?}");
    assert!(problems[0].starts_with("line 1: "), "{problems:?}");
    assert!(problems[0].ends_with("; skipped"), "{problems:?}");
    assert_eq!(
        problems[ban::PROBLEMS_SHOWN],
        "15 more lines with a problem, not shown one by one; skipped"
    );
    assert_eq!(
        problems[ban::PROBLEMS_SHOWN + 1],
        "2 more lines ending more than the longest ban (3650d) from now, not shown one by one; held for that long"
    );
    assert_eq!(
        problems[ban::PROBLEMS_SHOWN + 2],
        format!(
            "102 lines from line {} on: more than {MAX_BANS} bans; skipped",
            27 + MAX_BANS - 2 + 1
        )
    );
}

/// Reasons are made harmless and bounded.
#[test]
fn reasons_are_clean_and_bounded() {
    let now = SystemTime::now();
    let prefix = Prefix::host(ip("10.0.0.1"));
    let ban = Ban::new(prefix, None, None, Some("a\u{1b}[2Jb\tc"), now);
    assert_eq!(ban.reason.as_deref(), Some("a\u{241b}[2Jb c"));
    let long = "é".repeat(MAX_REASON);
    let ban = Ban::new(prefix, None, None, Some(&long), now);
    let kept = ban.reason.unwrap();
    assert!(kept.len() <= MAX_REASON && kept.chars().all(|c| c == 'é'));
    let ban = Ban::new(prefix, None, None, Some("   "), now);
    assert_eq!(ban.reason, None);
}

/// Adding, replacing, finding and lifting, by prefix and by name; a full
/// list refuses a new prefix but still takes a replacement.
#[test]
fn list_operations() {
    let bans = Bans::in_memory();
    let now = SystemTime::now();
    let block = Prefix::parse("10.1.0.0/16").unwrap();
    assert_eq!(
        bans.add(Ban::new(block, None, None, None, now)),
        Ok(Added::New)
    );
    assert_eq!(
        bans.add(Ban::new(block, None, None, Some("again"), now)),
        Ok(Added::Replaced)
    );
    let host = Prefix::host(ip("127.0.0.9"));
    let _ = bans.add(Ban::new(host, None, Some("Bob".into()), None, now));
    assert_eq!(bans.list().len(), 2);
    assert!(bans.find(ip("10.1.2.3")).is_some());
    assert!(bans.find(ip("10.2.0.1")).is_none());
    assert!(bans.remove("127.0.0.8").is_empty());
    assert_eq!(bans.remove("bob").len(), 1, "found by name, any case");
    assert!(bans.find(ip("127.0.0.9")).is_none());
    assert_eq!(bans.remove("10.1.0.0/16").len(), 1);
    assert!(bans.list().is_empty());

    for i in 0..MAX_BANS {
        let ip = IpAddr::V6(Ipv6Addr::from(i as u128 + 1));
        assert_eq!(
            bans.add(Ban::new(Prefix::host(ip), None, None, None, now)),
            Ok(Added::New)
        );
    }
    let extra = Prefix::host(ip("10.9.9.9"));
    assert_eq!(
        bans.add(Ban::new(extra, None, None, None, now)),
        Err(ListFull)
    );
    let first = Prefix::host(ip("::1"));
    assert_eq!(
        bans.add(Ban::new(first, None, None, Some("x"), now)),
        Ok(Added::Replaced)
    );
}

/// An expired ban no longer matches and is not listed.
#[test]
fn expired_bans_do_not_match() {
    let bans = Bans::in_memory();
    let past = SystemTime::now() - Duration::from_secs(120);
    let prefix = Prefix::host(ip("10.0.0.1"));
    let _ = bans.add(Ban::new(
        prefix,
        Some(Duration::from_secs(60)),
        None,
        None,
        past,
    ));
    assert!(bans.find(ip("10.0.0.1")).is_none());
    assert!(bans.list().is_empty());
}

/// Saving writes the whole list through a temporary file and leaves no
/// temporary file behind; loading it gives the same bans.
#[test]
fn saves_and_loads() {
    let dir = std::env::temp_dir().join(format!("chat-bans-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bans.txt");
    let _ = fs::remove_file(&file);
    let bans = Bans::load(Some(BanFile::read(&file).unwrap()));
    assert!(bans.list().is_empty(), "a missing file is an empty list");
    assert!(file.exists(), "and is created at once");
    let nowhere = dir.join("no-such-dir").join("bans.txt");
    let err = BanFile::read(&nowhere).expect_err("cannot be created");
    assert!(err.contains("cannot create the ban list"), "{err}");
    let now = SystemTime::now();
    let _ = bans.add(Ban::new(
        Prefix::host(ip("10.0.0.7")),
        Some(Duration::from_secs(3600)),
        None,
        Some("why"),
        now,
    ));
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("10.0.0.7 "), "{text}");
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["bans.txt"]);
    let again = Bans::load(Some(BanFile::read(&file).unwrap()));
    assert_eq!(again.list().len(), 1);
    assert!(again.find(ip("10.0.0.7")).is_some());
    let _ = again.remove("10.0.0.7");
    let text = fs::read_to_string(&file).unwrap();
    assert!(!text.contains("10.0.0.7"), "{text}");
    fs::remove_dir_all(&dir).unwrap();
}

/// Review: a directory in the way of the temporary file was reported as
/// the ban list itself being one (`cannot save ... b.txt: is a
/// directory`). The error names the temporary file.
#[test]
fn a_save_error_names_the_file_at_fault() {
    let dir = std::env::temp_dir().join(format!("chat-bans-tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let tmp = format!(".b.txt.{}.tmp", std::process::id());
    fs::create_dir_all(dir.join(&tmp)).unwrap();
    let err = write_atomically(&dir.join("b.txt"), b"x\n").unwrap_err();
    let _ = fs::remove_dir_all(&dir);
    let text = err.to_string();
    assert!(text.contains(&format!("{tmp}: ")), "{text}");
}

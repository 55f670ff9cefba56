//! A room watched with no position (its first local member arrived while
//! the server was cut off from Redis): read from the moment of the watch
//! once Redis is back, or told what it cannot get (`reader/reading/since.rs`).

use super::*;

/// A node whose Redis user (`bee`) [`cut`] switches off, the other nodes
/// staying connected; returned once its reader reads (a line of its own
/// in `#warm` delivered).
fn cuttable(redis: &Redis, id: &str) -> Node {
    redis.command(&["ACL", "SETUSER", "bee", "on", ">pw", "~*", "&*", "+@all"]);
    let url = redis.url().replace("redis://", "redis://bee:pw@");
    let node = Node::start_at(RedisUrl::parse(&url).unwrap(), id, LogConfig::default());
    node.watch("warm");
    let _ = node.say("warm", "up");
    node.sink
        .until("up", |e| Recorder::delivered(e, "warm") == ["up"]);
    node
}

/// Cuts `node` (made by [`cuttable`]) off from Redis: its user switched off
/// and its connections closed; returns once its reader says so.
fn cut(redis: &Redis, node: &Node) {
    redis.command(&["ACL", "SETUSER", "bee", "off"]);
    redis.command(&["CLIENT", "KILL", "USER", "bee"]);
    node.sink
        .until("link down", |e| e.contains(&Event::Link(false)));
}

/// Appends `count` lines `PREFIX1`, `PREFIX2` ... to `room`'s log in one
/// atomic step (as another server would), then trims it to `keep` entries
/// exactly if `keep` is given.
fn append(redis: &Redis, room: &str, prefix: &str, count: u32, keep: Option<u32>) {
    let script = "for i = 1, tonumber(ARGV[2]) do \
        local n = redis.call('INCR', KEYS[2]) \
        redis.call('XADD', KEYS[1], '*', 'n', n, 'uid', 'x', 'from', 'bob', 'kind', 'chat', 'text', ARGV[1] .. i) \
        end \
        if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[3]) end return 1";
    let keep = keep.map(|k| k.to_string()).unwrap_or_default();
    let (log, seq) = (super::super::keys::log(room), super::super::keys::seq(room));
    let count = count.to_string();
    redis.command(&["EVAL", script, "2", &log, &seq, prefix, &count, &keep]);
}

/// The defect: the reader read such a room from where its log stood when
/// Redis was back, so the lines it took meanwhile never arrived, and
/// nothing said so. Now every line appended after the watch is delivered,
/// in order, once; none is reported missed.
#[test]
fn a_room_watched_while_cut_off_gets_the_lines_appended_after_the_watch() {
    let redis = Redis::start();
    let node = cuttable(&redis, "b");
    append(&redis, "games", "before", 3, None);
    cut(&redis, &node);
    node.reader.watch("games", None);
    append(&redis, "games", "during", 3, None);
    redis.command(&["ACL", "SETUSER", "bee", "on"]);
    node.sink
        .until("link up", |e| e.contains(&Event::Link(true)));
    append(&redis, "games", "after", 1, None);
    let events = node.sink.until("after1", |e| {
        Recorder::delivered(e, "games").contains(&"after1".to_string())
    });
    let delivered = Recorder::delivered(&events, "games");
    let since: Vec<&String> = delivered
        .iter()
        .filter(|t| !t.starts_with("before"))
        .collect();
    assert_eq!(since, ["during1", "during2", "during3", "after1"]);
    // Lines from a moment before the watch may come too (docs/CLUSTER.md),
    // the last of them then, each once, before the others.
    let before = delivered.len() - since.len();
    let want: Vec<String> = (4 - before..4).map(|i| format!("before{i}")).collect();
    assert_eq!(delivered[..before], want[..], "{delivered:?}");
    assert!(
        !events.iter().any(|e| matches!(e, Event::Missed(..))),
        "{events:?}"
    );
}

/// The log trimmed past the moment of the watch before Redis was back:
/// how many of the lines trimmed came after the watch is not known; the
/// reader says so, bounded by every line gone, then delivers what is left.
#[test]
fn a_room_watched_while_cut_off_and_trimmed_past_the_watch_is_told() {
    let redis = Redis::start();
    let node = cuttable(&redis, "b");
    append(&redis, "games", "before", 20, None);
    cut(&redis, &node);
    node.reader.watch("games", None);
    append(&redis, "games", "during", 300, Some(10));
    redis.command(&["ACL", "SETUSER", "bee", "on"]);
    let events = node.sink.until("during300", |e| {
        Recorder::delivered(e, "games").contains(&"during300".to_string())
    });
    let want: Vec<String> = (291..=300).map(|i| format!("during{i}")).collect();
    assert_eq!(Recorder::delivered(&events, "games"), want);
    let missed: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Missed(..)))
        .collect();
    assert_eq!(
        missed,
        [&Event::Missed(
            "games".into(),
            Missed::Trimmed { at_most: 310 }
        )]
    );
}

/// Redis restarted empty while the server was away: the log the watch was
/// owed lines of is gone, and the reader says so (then reads the new log).
#[test]
fn a_room_watched_while_redis_was_away_and_restarted_empty_is_told() {
    let mut redis = Redis::start();
    let node = Node::start(&redis, "a", LogConfig::default());
    node.watch("lobby");
    let _ = node.say("lobby", "one");
    node.sink
        .until("one", |e| Recorder::delivered(e, "lobby") == ["one"]);
    redis.kill();
    node.sink
        .until("link down", |e| e.contains(&Event::Link(false)));
    node.reader.watch("games", None);
    redis.restart();
    node.sink.until("games lost", |e| {
        e.contains(&Event::Missed(
            "games".into(),
            Missed::LogLost { unseen: 0 },
        ))
    });
    append(&redis, "games", "new", 1, None);
    node.sink
        .until("new1", |e| Recorder::delivered(e, "games") == ["new1"]);
}

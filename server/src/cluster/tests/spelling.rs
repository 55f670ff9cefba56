//! A room's spelling shared by the servers (`spelling.rs`): the first
//! creator's wins while the room has members anywhere, kept alive by
//! beats, and Redis's value only if it names that room.

use super::*;
use crate::cluster::spelling::{held, keep, name, SPELLING_TTL};

/// Asking names nothing; naming sets it only if none is held; a later
/// mover (another case) is shown the one held; a value that is not a name
/// of the room is not taken; and keeping a room's spelling restores one
/// that was lost and sets its TTL again.
#[test]
fn the_first_spelling_wins_and_is_kept() {
    let redis = Redis::start();
    let mut link = link(&redis);
    assert_eq!(held(&mut link, "games", "Games").unwrap(), "Games");
    assert_eq!(redis.query(&["EXISTS", "chat:spelling:games"]), ["0"]);
    for spelling in ["Games", "GAMES"] {
        let mut pipe = redis::pipe();
        name(&mut pipe, "games", spelling);
        link.run(|conn| pipe.exec(conn)).unwrap();
    }
    assert_eq!(held(&mut link, "games", "GAMES").unwrap(), "Games");
    let ttl: u64 = redis.query(&["PTTL", "chat:spelling:games"])[0]
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= SPELLING_TTL.as_millis() as u64, "{ttl}");

    redis.query(&["SET", "chat:spelling:chess", "not a room!"]);
    assert_eq!(held(&mut link, "chess", "Chess").unwrap(), "Chess");
    redis.query(&["SET", "chat:spelling:chess", "Checkers"]);
    assert_eq!(held(&mut link, "chess", "CHESS").unwrap(), "CHESS");

    redis.query(&["DEL", "chat:spelling:games"]);
    redis.query(&["PEXPIRE", "chat:spelling:chess", "100000"]);
    keep(
        &mut link,
        &[
            ("games".into(), "Games".into()),
            ("chess".into(), "CHESS".into()),
        ],
    )
    .unwrap();
    assert_eq!(redis.query(&["GET", "chat:spelling:games"]), ["Games"]);
    assert_eq!(redis.query(&["GET", "chat:spelling:chess"]), ["Checkers"]);
    let ttl: u64 = redis.query(&["PTTL", "chat:spelling:chess"])[0]
        .parse()
        .unwrap();
    assert!(ttl <= SPELLING_TTL.as_millis() as u64, "{ttl}");
}

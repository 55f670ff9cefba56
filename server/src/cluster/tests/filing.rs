//! Presence filing this server's members and claiming their names in
//! Redis again: the names given while Redis could not be asked, and a
//! member that left or was renamed while a filing ran.

use super::super::keys;
use super::*;

/// A server whose clients' names may not be held in Redis (named while
/// Redis could not be asked): [`Local::unclaimed`] as the test sets it,
/// and the names given up recorded.
struct Unclaimed {
    /// Its members.
    members: Vec<Member>,
    /// What `unclaimed` answers (and clears).
    flag: std::sync::atomic::AtomicBool,
    /// The names given up ([`Local::name_lost`]).
    lost: Mutex<Vec<String>>,
}

impl Stub for Unclaimed {
    fn members(&self) -> Vec<Member> {
        self.members.clone()
    }
    fn name_lost(&self, _client: u64, name: &str, _why: NameLost) -> bool {
        self.lost.lock().push(name.to_string());
        true
    }
    fn unclaimed(&self) -> bool {
        self.flag.swap(false, std::sync::atomic::Ordering::AcqRel)
    }
    fn claim_failed(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// A client named while Redis could not be asked (its name held on its
/// server only): at the next beat presence claims its name in Redis, and
/// one another client took meanwhile is given up.
#[test]
fn presence_claims_the_names_not_held_in_redis() {
    let redis = Redis::start();
    let member = |name: &str, client| Member {
        name: name.into(),
        room: "lobby".into(),
        client,
        entered: client,
    };
    let local = Arc::new(Unclaimed {
        members: vec![member("guest-1.1", 1), member("Bob", 2)],
        flag: Default::default(),
        lost: Mutex::new(Vec::new()),
    });
    // Registered (its first beat claims every name): then one name is
    // not held, another held by a client of another server.
    let (shutdown, presence) = presence_of_a(
        &redis,
        local.clone(),
        &["GET", "chat:name:bob"],
        &["a:2:Bob"],
    );
    redis.command(&["DEL", "chat:name:guest-1.1"]);
    redis.command(&["SET", "chat:name:bob", "b:9:bob"]);
    local.flag.store(true, std::sync::atomic::Ordering::Release);
    let deadline = Instant::now() + HEARTBEAT_EVERY * 5;
    while redis.query(&["GET", "chat:name:guest-1.1"]) != ["a:1:guest-1.1"]
        || local.lost.lock().is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "not claimed: {:?}, lost {:?}",
            redis.query(&["GET", "chat:name:guest-1.1"]),
            local.lost.lock()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(*local.lost.lock(), ["Bob"], "given up");
    assert_eq!(redis.query(&["GET", "chat:name:bob"]), ["b:9:bob"], "kept");
    shutdown.trigger();
    joined(presence);
}

/// A server whose members change while presence files them: its first
/// `members()` call after `stale` is set answers the stale snapshot (as
/// if a member changed just after presence took it), having run `side`
/// (the member's own filing, reaching Redis before presence's pipeline),
/// and every other call the members as they are.
struct Racing {
    /// The members now.
    now: Vec<Member>,
    /// The snapshot the next call answers, once.
    stale: Mutex<Option<Vec<Member>>>,
    /// Run when the stale snapshot is taken, once: Redis commands.
    side: Mutex<Option<Vec<Vec<String>>>>,
    /// Where `side` runs.
    url: Mutex<Option<String>>,
    /// What `unfiled` answers (and clears).
    unfiled: std::sync::atomic::AtomicBool,
    /// Calls of `unfiled`: one each beat but those that register, after
    /// the one before it is over.
    beats: std::sync::atomic::AtomicUsize,
}

impl Stub for Racing {
    fn members(&self) -> Vec<Member> {
        let Some(stale) = self.stale.lock().take() else {
            return self.now.clone();
        };
        if let Some(commands) = self.side.lock().take() {
            let url = self.url.lock().clone().expect("a url for the side");
            let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
            for command in commands {
                let mut cmd = redis::cmd(&command[0]);
                for arg in &command[1..] {
                    cmd.arg(arg);
                }
                cmd.exec(&mut conn).unwrap();
            }
        }
        stale
    }
    fn guest_tag(&self) -> u64 {
        RACING_TAG
    }
    fn name_lost(&self, _client: u64, name: &str, _why: NameLost) -> bool {
        panic!("{name} given up");
    }
    fn unfiled(&self) -> bool {
        self.beats.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.unfiled
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }
}

impl Racing {
    /// A server with members `now`, whose presence is first given
    /// `stale` (if any).
    fn new(now: Vec<Member>, stale: Option<Vec<Member>>) -> Arc<Racing> {
        Arc::new(Racing {
            now,
            stale: Mutex::new(stale),
            side: Mutex::new(None),
            url: Mutex::new(None),
            unfiled: Default::default(),
            beats: Default::default(),
        })
    }

    /// The next stale snapshot taken runs `commands` on `redis` first.
    fn side(&self, redis: &Redis, commands: &[&[&str]]) {
        *self.url.lock() = Some(redis.url());
        *self.side.lock() = Some(
            commands
                .iter()
                .map(|c| c.iter().map(|a| a.to_string()).collect())
                .collect(),
        );
    }

    /// Files the stale snapshot `stale` at the next beat (as after a
    /// failed filing).
    fn refile_from(&self, stale: Vec<Member>) {
        *self.stale.lock() = Some(stale);
        self.unfiled
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Waits until the beat running now (if any) and the next one are
    /// over.
    fn two_beats(&self) {
        let seen = self.beats.load(std::sync::atomic::Ordering::Acquire);
        until("no beat", HEARTBEAT_EVERY * 4, || {
            self.beats.load(std::sync::atomic::Ordering::Acquire) >= seen + 2
        });
    }
}

/// The guest tag a [`Racing`] server raises the tag counter to when it
/// registers: seeing it there says the registration's pipeline ran.
const RACING_TAG: u64 = 77;

/// Member `name`, client `client`, in the lobby.
fn lobby_member(name: &str, client: u64) -> Member {
    Member {
        name: name.into(),
        room: "lobby".into(),
        client,
        entered: client,
    }
}

/// Starts presence for server "a" with `local`; waits until it has
/// registered (its pipeline raised the tag counter).
fn racing_presence(redis: &Redis, local: Arc<Racing>) -> (Arc<Shutdown>, thread::JoinHandle<()>) {
    let tag = RACING_TAG.to_string();
    presence_of_a(redis, local, &["GET", "chat:guest-tags"], &[tag.as_str()])
}

/// Waits until `done` holds, failing with `what` at the deadline.
fn until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A member renamed (Bob to Carol) while its server registers in a new
/// Redis, the rename's own claim and filing reaching Redis first: the
/// registration, from a snapshot taken before the rename, filed and
/// claimed the old name and wiped the new one's filing. Mended at once:
/// `bob` is free for anyone, Carol listed (once) and `carol` hers.
#[test]
fn a_member_renamed_while_its_server_registers_keeps_no_old_name() {
    let redis = Redis::start();
    let local = Racing::new(
        vec![lobby_member("Carol", 2)],
        Some(vec![lobby_member("Bob", 2)]),
    );
    let carol = keys::member_value("lobby", 2, 2);
    local.side(
        &redis,
        &[
            &["SET", "chat:name:carol", "a:2:Carol"],
            &["HSET", "chat:members:a", "Carol", &carol],
        ],
    );
    let (shutdown, presence) = racing_presence(&redis, local.clone());
    local.two_beats();
    assert_eq!(redis.query(&["EXISTS", "chat:name:bob"]), ["0"], "held");
    assert_eq!(redis.query(&["HKEYS", "chat:members:a"]), ["Carol"]);
    assert_eq!(redis.query(&["GET", "chat:name:carol"]), ["a:2:Carol"]);
    shutdown.trigger();
    joined(presence);
}

/// A member that arrived while its server filed its members again (after
/// a filing failed), its own filing reaching Redis first: the refile's
/// `DEL` took it out and its snapshot did not have it. It is listed.
#[test]
fn a_member_who_arrived_while_its_server_files_again_stays_listed() {
    let redis = Redis::start();
    let local = Racing::new(
        vec![lobby_member("Carol", 2), lobby_member("Dave", 3)],
        None,
    );
    let (shutdown, presence) = racing_presence(&redis, local.clone());
    let dave = keys::member_value("lobby", 3, 3);
    local.side(&redis, &[&["HSET", "chat:members:a", "Dave", &dave]]);
    local.refile_from(vec![lobby_member("Carol", 2)]);
    local.two_beats();
    assert!(local.stale.lock().is_none(), "never filed again");
    let mut listed = redis.query(&["HKEYS", "chat:members:a"]);
    listed.sort();
    assert_eq!(listed, ["Carol", "Dave"]);
    shutdown.trigger();
    joined(presence);
}

/// A member that moved to another room while its server filed its members
/// again, its own filing reaching Redis first: the refile put it back in
/// its old room (where a survivor would announce its leave). It is filed
/// in the room it is in.
#[test]
fn a_member_who_moved_while_its_server_files_again_is_filed_in_its_room() {
    let redis = Redis::start();
    let moved = Member {
        room: "games".into(),
        entered: 9,
        ..lobby_member("Carol", 2)
    };
    let local = Racing::new(vec![moved], None);
    let (shutdown, presence) = racing_presence(&redis, local.clone());
    let games = keys::member_value("games", 9, 2);
    local.side(&redis, &[&["HSET", "chat:members:a", "Carol", &games]]);
    local.refile_from(vec![lobby_member("Carol", 2)]);
    local.two_beats();
    assert!(local.stale.lock().is_none(), "never filed again");
    assert_eq!(redis.query(&["HGET", "chat:members:a", "Carol"]), [games]);
    shutdown.trigger();
    joined(presence);
}

/// A server taken for lost (cut off longer than its heartbeat: a survivor
/// announced Bob gone, freed `bob`, unlisted the server) is back: its
/// heartbeat lists it again, but the registration right after fails (the
/// link drops again). Before, no later beat registered it (the heartbeat
/// had listed it, and the epoch was the one registered in): Bob stayed
/// unlisted and `bob` free for a client of another server. Now the next
/// beat registers it.
#[test]
fn a_registration_that_failed_after_a_reap_is_tried_again() {
    let redis = Redis::start();
    let local = Racing::new(vec![lobby_member("Bob", 2)], None);
    let (shutdown, presence) = racing_presence(&redis, local.clone());
    assert_eq!(redis.query(&["GET", "chat:name:bob"]), ["a:2:Bob"]);
    // The registration's snapshot drops presence's connection before
    // its pipeline goes out.
    local.side(
        &redis,
        &[&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]],
    );
    *local.stale.lock() = Some(vec![lobby_member("Bob", 2)]);
    // What a survivor's reap does.
    redis.command(&["SREM", "chat:servers", "a"]);
    redis.command(&["DEL", "chat:members:a", "chat:name:bob"]);
    until("never registered again", HEARTBEAT_EVERY * 6, || {
        local.stale.lock().is_none()
            && redis.query(&["GET", "chat:name:bob"]) == ["a:2:Bob"]
            && redis.query(&["HKEYS", "chat:members:a"]) == ["Bob"]
    });
    shutdown.trigger();
    joined(presence);
}

/// A member that left while its server filed its members again (after a
/// filing failed) is not listed again: the filing, from a snapshot taken
/// before the leave, listed it after the leave had taken it out. The
/// members still here stay listed.
#[test]
fn a_member_that_left_while_its_server_files_again_is_not_listed() {
    let redis = Redis::start();
    let local = Racing::new(vec![lobby_member("Carol", 2)], None);
    let (shutdown, presence) = racing_presence(&redis, local.clone());
    assert_eq!(redis.query(&["HKEYS", "chat:members:a"]), ["Carol"]);
    local.refile_from(vec![lobby_member("Carol", 2), lobby_member("Dave", 3)]);
    local.two_beats();
    assert!(local.stale.lock().is_none(), "never filed again");
    assert_eq!(redis.query(&["HKEYS", "chat:members:a"]), ["Carol"]);
    shutdown.trigger();
    joined(presence);
}

/// A member taken out through the writer ([`Writer::unfile`]) is so in
/// Redis by the time a line queued after it is delivered: the leave notice
/// never reaches a reader before `/who` agrees. Only if filed as it was
/// told: another filing of the name stays.
#[test]
fn the_writer_unfiles_members_ahead_of_the_lines_after() {
    let redis = Redis::start();
    let node = Node::start(&redis, "s1", LogConfig::default());
    node.watch("lobby");
    let members = keys::members("s1");
    let filed = || redis.query(&["HGETALL", &members]);
    let in_lobby = keys::member_value("lobby", 5, 1);
    redis.command(&["HSET", &members, "ann", &in_lobby]);

    // A removal of another filing of the name (another client's, who
    // entered the room in the same millisecond): this one stays.
    node.writer.unfile("ann", keys::member_value("lobby", 5, 2));
    say_until_delivered(|t| node.say("lobby", t), &node.sink, "not ann's leave");
    assert_eq!(filed(), ["ann", in_lobby.as_str()]);

    node.writer.unfile("ann", in_lobby);
    say_until_delivered(|t| node.say("lobby", t), &node.sink, "ann left");
    assert_eq!(filed(), Vec::<String>::new());
}

/// A member filed through the writer ([`Writer::file`], ahead of its join
/// notice) is so by the time a line queued after it is delivered, and only
/// while its client holds the name and over an older filing: a filing
/// that lands after the client gave the name up (a rename right behind
/// the join) lists no one, and one that lands after a newer filing (the
/// client moved on meanwhile, filed on the names link) changes nothing.
#[test]
fn the_writer_files_a_member_only_while_it_holds_its_name() {
    let redis = Redis::start();
    let node = Node::start(&redis, "s1", LogConfig::default());
    node.watch("lobby");
    let members = keys::members("s1");
    let filed = || redis.query(&["HGETALL", &members]);
    let value = keys::member_value("lobby", 5, 1);

    redis.command(&["SET", "chat:name:ann", "s1:1:Ann"]);
    node.writer.file("Ann", value.clone(), 1);
    say_until_delivered(|t| node.say("lobby", t), &node.sink, "Ann joined");
    assert_eq!(filed(), ["Ann", value.as_str()]);

    // Filed anew since (moved on, on the names link): a late filing of
    // the room before changes nothing; a later one does.
    let newer = keys::member_value("games", 8, 1);
    redis.command(&["HSET", &members, "Ann", &newer]);
    node.writer.file("Ann", value.clone(), 1);
    say_until_delivered(|t| node.say("lobby", t), &node.sink, "Ann late");
    assert_eq!(filed(), ["Ann", newer.as_str()]);
    let latest = keys::member_value("lobby", 9, 1);
    node.writer.file("Ann", latest.clone(), 1);
    say_until_delivered(|t| node.say("lobby", t), &node.sink, "Ann back");
    assert_eq!(filed(), ["Ann", latest.as_str()]);

    // Given up since (or another client's): not filed.
    redis.command(&["DEL", &members]);
    redis.command(&["SET", "chat:name:ann", "s1:2:Ann"]);
    node.writer.file("Ann", value.clone(), 1);
    redis.command(&["DEL", "chat:name:bo"]);
    node.writer.file("Bo", keys::member_value("lobby", 5, 3), 3);
    say_until_delivered(|t| node.say("lobby", t), &node.sink, "later");
    assert_eq!(filed(), Vec::<String>::new());
}

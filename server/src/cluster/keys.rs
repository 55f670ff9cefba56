//! Every Redis key the cluster uses, and the Lua scripts that change more
//! than one of them at once.
//!
//! All keys start with [`PREFIX`], so the `/DB` of the `--redis` URL (or a
//! Redis of its own) separates one cluster from another. A script runs
//! atomically in Redis: that is what makes a line's number and its place in
//! the room's stream one event, and a lost server's member announced once.

use redis::Script;

/// What every key of the cluster starts with.
pub const PREFIX: &str = "chat:";

/// A random value set (NX) by the first server to reach an empty Redis. A
/// server that finds a different one after reconnecting knows Redis lost
/// everything (restarted empty): the room logs it was reading are gone.
pub fn epoch() -> String {
    format!("{PREFIX}epoch")
}

/// The room's log: a Redis Stream, trimmed to about the log length.
pub fn log(room: &str) -> String {
    format!("{PREFIX}log:{room}")
}

/// The room's line counter: entry `n` of the log is the room's n-th line
/// since the log began, so a gap in `n` is exactly the number of lines a
/// reader missed.
pub fn seq(room: &str) -> String {
    format!("{PREFIX}seq:{room}")
}

/// A room's name as its creator spelled it, while it has members on some
/// server (see `spelling.rs`).
pub fn spelling(room: &str) -> String {
    format!("{PREFIX}spelling:{room}")
}

/// The `guest-N` counter (INCR), shared so no number is given twice.
pub fn guest() -> String {
    format!("{PREFIX}guest")
}

/// The counter of guest-name tags (INCR): each server takes one when it
/// starts, and names the guests it cannot ask a number for after it
/// (`guest-TAG.N`, see `shared_names`), so no two servers share one.
pub fn guest_tags() -> String {
    format!("{PREFIX}guest-tags")
}

/// A name in use anywhere in the cluster (lowercase, so unique ignoring
/// case); its value is its holder, `SERVER:CLIENT:Name` ([`holder`]).
pub fn name(lowercase: &str) -> String {
    format!("{PREFIX}name:{lowercase}")
}

/// The value of a name key: which client of which server holds it, and
/// the name as it spelled it. Compared by its [`holder_prefix`], so a
/// holder may change the case of its own name.
pub fn holder(server: &str, client: u64, name: &str) -> String {
    format!("{server}:{client}:{name}")
}

/// `SERVER:CLIENT:`: what every name key of one client starts with.
pub fn holder_prefix(server: &str, client: u64) -> String {
    format!("{server}:{client}:")
}

/// A holder read back: (server, client, name as spelled).
pub fn parse_holder(value: &str) -> Option<(&str, u64, &str)> {
    let (server, rest) = value.split_once(':')?;
    let (client, name) = rest.split_once(':')?;
    Some((server, client.parse().ok()?, name))
}

/// The value of a member in [`members`]: its room's key and when it
/// entered it (ms since the epoch), so `/who` lists a room's members across
/// servers in the order they entered, and its client id, so that no two
/// filings of one name by different clients, nor by one client in two
/// rooms, have the same value (a removal that checks the value,
/// [`HDEL_IF`], never takes out a newer filing).
pub fn member_value(room: &str, entered_ms: u64, client: u64) -> String {
    format!("{room}\t{entered_ms}\t{client}")
}

/// The client id of a member value read back (`None` from a server that
/// did not file it).
pub fn member_client(value: &str) -> Option<u64> {
    value.split('\t').nth(2)?.parse().ok()
}

/// A member value read back: (room key, entered ms).
pub fn parse_member(value: &str) -> (&str, u64) {
    match value.split_once('\t') {
        Some((room, rest)) => {
            let ms = rest.split('\t').next().unwrap_or_default();
            (room, ms.parse().unwrap_or(0))
        }
        None => (value, 0),
    }
}

/// A server's inbox: a stream its reader reads along with the room logs,
/// for what other servers ask of it (a private message for one of its
/// clients, a kick).
pub fn inbox(server: &str) -> String {
    format!("{PREFIX}inbox:{server}")
}

/// The highest request counter of server `server` that any inbox took
/// (its inbox high-water mark): [`INBOX_PUT`] skips a request at or below
/// it, so a request sent again on a new connection after its first
/// connection broke, and a late copy of it from that connection, reach an
/// inbox once between them.
pub fn inbox_mark(server: &str) -> String {
    format!("{PREFIX}inbox-hw:{server}")
}

/// The cluster's shared ban list: a hash, each banned prefix (as
/// [`crate::bans::Prefix`] writes it) -> [`ban_value`]: when the ban was
/// applied and its line in the `--bans` file format (which carries its
/// end). Written by the server that applied a console `/ban` with a known
/// address, emptied of a prefix by an `/unban` of it ([`BAN_LIFT`]), and
/// read by every server when it registers (`shared_bans.rs`). At most
/// `MAX_BANS` fields ([`BAN_PUT`]).
pub fn bans() -> String {
    format!("{PREFIX}bans")
}

/// A ban's value in the shared list ([`bans`]): when the server that put it
/// applied it (ms since the epoch, by that server's clock), a space, and
/// its `--bans` line. The time tells a lift from a ban of the same prefix
/// typed after it ([`BAN_LIFT`]).
pub fn ban_value(applied_ms: u64, line: &str) -> String {
    format!("{applied_ms} {line}")
}

/// A value of the shared list read back: (when applied, ms; its `--bans`
/// line). A value put before the list carried the time (a line alone: a
/// prefix is never all digits) reads as applied at 0, before any lift.
pub fn parse_ban_value(value: &str) -> (u64, &str) {
    match value.split_once(' ') {
        Some((ms, line)) if !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()) => {
            (ms.parse().unwrap_or(0), line)
        }
        _ => (0, value),
    }
}

/// The set of server ids that have registered, live or lost.
pub fn servers() -> String {
    format!("{PREFIX}servers")
}

/// A server's last heartbeat number, kept `BEAT_TTL` after its last beat
/// (the heartbeat itself lasts seconds): how a server finds that Redis
/// came back from an older copy of its data.
pub fn beat(server: &str) -> String {
    format!("{PREFIX}beat:{server}")
}

/// A server's heartbeat: exists (with a TTL) while the server lives.
pub fn alive(server: &str) -> String {
    format!("{PREFIX}alive:{server}")
}

/// A server's members: a hash name -> room, what a survivor announces as
/// left when the server is lost.
pub fn members(server: &str) -> String {
    format!("{PREFIX}members:{server}")
}

/// The lock (SET NX PX) that lets exactly one survivor announce a lost
/// server's members.
pub fn reap(server: &str) -> String {
    format!("{PREFIX}reap:{server}")
}

/// The members of a server announced as gone by the others (a set of
/// [`reaped_entry`]), kept until it comes back and announces them back, or
/// for `REAPED_TTL` (`presence.rs`).
pub fn reaped(server: &str) -> String {
    format!("{PREFIX}reaped:{server}")
}

/// A member's entry in [`reaped`]: its client id, which a rename keeps, so
/// a member renamed while its server was taken for lost (its `/nick` read
/// once the server ran again) is still announced back, by its new name;
/// keyed by name, it was never announced back. The name where `value` (its
/// [`member_value`]) carries no client id.
pub fn reaped_entry<'a>(name: &'a str, value: &'a str) -> &'a str {
    value.splitn(3, '\t').nth(2).unwrap_or(name)
}

/// A stream only its server reads, written to wake its blocked XREAD when
/// the set of rooms it must read changes.
pub fn wake(server: &str) -> String {
    format!("{PREFIX}wake:{server}")
}

/// The highest line counter of server `server` that a room's log took (its
/// high-water mark): [`APPEND`] skips a line at or below it, so a line sent
/// twice (again on a new connection, and late on the old one) is applied
/// once, and [`FENCE`] makes a late pipeline of an old connection a no-op.
pub fn hw(server: &str) -> String {
    format!("{PREFIX}hw:{server}")
}

/// Appends one line to a room's log, unless its sender's high-water mark
/// is at or past its counter (it was applied already, or fenced off), or
/// the line is stale: Redis's own clock (`TIME`) says more than the bound
/// has passed since the line was first sent (by its server's clock). So a
/// line held up in a stalled Redis or network and executed late is a no-op,
/// and its server can answer its sender without waiting for Redis.
/// KEYS: log, seq, hw. ARGV: maxlen, idle ttl in ms, uid, from, kind, text,
/// counter (the number in the uid), first sent (ms since the Unix epoch),
/// stale bound in ms. Returns `{id, n}`; `{'', 0}` when skipped by the
/// mark (applied already); `{'', -1, now}` when stale (not applied, and no
/// copy of it ever will be; `now` is Redis's clock, in ms). A server's
/// counters only grow, and a line is sent again only before any later one,
/// so the mark is exact. `redis.replicate_commands()` (Redis 6.2; a no-op
/// in 7) lets a script write after reading the clock.
pub const APPEND: &str = r"
local c = tonumber(ARGV[7])
local hw = tonumber(redis.call('GET', KEYS[3]) or '0')
if c <= hw then return {'', 0} end
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(ARGV[8]) > tonumber(ARGV[9]) then return {'', -1, now} end
redis.call('SET', KEYS[3], ARGV[7], 'PX', ARGV[2])
local n = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
  'n', n, 'uid', ARGV[3], 'from', ARGV[4], 'kind', ARGV[5], 'text', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {id, n}
";

/// Puts one request in a server's inbox, unless its sender's inbox mark is
/// at or past its counter (a copy of it was put already), or it is stale:
/// Redis's clock (`TIME`) says more than the bound has passed since it was
/// first sent (by its server's clock), as [`APPEND`] does for a line. So a
/// request held up in a stalled Redis and executed late is a no-op, and its
/// sender, told it may not have been sent, never sees it land later.
/// KEYS: inbox, the sender's [`inbox_mark`]. ARGV: counter, maxlen, mark
/// ttl in ms, first sent (ms since the Unix epoch), stale bound in ms, then
/// the entry's fields and values. Returns 1 if put, 0 if skipped by the
/// mark (either way the request is in the inbox once), -1 if stale (not
/// put, and no copy of it ever will be: the mark is checked first). A
/// server numbers its requests in the order it sends them and sends one
/// again only before any later one (under its names link's lock), so the
/// mark is exact.
pub const INBOX_PUT: &str = r"
local c = tonumber(ARGV[1])
local hw = tonumber(redis.call('GET', KEYS[2]) or '0')
if c <= hw then return 0 end
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(ARGV[4]) > tonumber(ARGV[5]) then return -1 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
local entry = {}
for i = 6, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(entry))
return 1
";

/// Announces one member of a lost server as gone, once: only the call that
/// removes it from the lost server's members appends the leave line and
/// frees its name (if a client of that server still holds it), and notes
/// it among the server's members announced gone ([`reaped`]: should the
/// server come back, it announces them back). One announced gone before
/// and not announced back since (still noted) is not announced again: its
/// name is freed, no second leave line. KEYS: members, name, log, seq,
/// reaped. ARGV: name, `SERVER:` (the lost server's holder prefix),
/// maxlen, idle ttl, uid, kind, text, reaped ttl, its [`reaped_entry`].
/// Returns 1 if it announced.
pub const REAP_MEMBER: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local holder = redis.call('GET', KEYS[2])
if holder and string.sub(holder, 1, #ARGV[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
local fresh = redis.call('SADD', KEYS[5], ARGV[9])
redis.call('PEXPIRE', KEYS[5], ARGV[8])
if fresh == 0 then return 0 end
local n = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
  'n', n, 'uid', ARGV[5], 'from', ARGV[1], 'kind', ARGV[6], 'text', ARGV[7])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return 1
";

/// Deletes a key only if its value still starts with the given prefix (a
/// name frees only if this client holds it). KEYS: key. ARGV: prefix.
/// Returns 1 if deleted.
pub const DELETE_IF: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Files a member (a hash field and its [`member_value`]) only while its
/// name is held by its client, and only over an older filing of the name:
/// a filing that lands late, after the client gave the name up by a
/// rename (the release's own removal runs after the name is free, on
/// another connection), or after a newer filing of it (the client moved
/// again, or renamed away and back, on the names link meanwhile), changes
/// nothing. KEYS: the members hash, the name's key. ARGV: field (the name
/// as shown), value, the client's holder prefix ([`holder_prefix`]).
/// Returns 1 if filed.
pub const FILE_IF: &str = r"
local holder = redis.call('GET', KEYS[2])
if not holder or string.sub(holder, 1, string.len(ARGV[3])) ~= ARGV[3] then return 0 end
local filed = redis.call('HGET', KEYS[1], ARGV[1])
if filed then
  local was = tonumber(string.match(filed, '^[^\t]*\t(%d+)'))
  local now = tonumber(string.match(ARGV[2], '^[^\t]*\t(%d+)'))
  if not was or not now or was >= now then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Deletes a hash field only if it still has the given value (a member's
/// entry goes only if it is still the one filed). KEYS: hash. ARGV: field,
/// value. Returns 1 if deleted.
pub const HDEL_IF: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
";

/// Claims a name: set if free, or re-spelled if this client holds it
/// already. KEYS: name. ARGV: holder, holder prefix. Returns 1 if the name
/// is this client's now, else 0.
pub const CLAIM: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 1 end
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[2]) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// Puts a ban in the shared list ([`bans`]), unless that would take the
/// list past its bound: a prefix listed already is replaced (a later
/// `/ban` of it wins, as on each server), a new one is put only while the
/// hash has fewer fields than the bound. KEYS: the list. ARGV: prefix,
/// value ([`ban_value`]), bound. Returns 1 if put, 0 if the list is full.
pub const BAN_PUT: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Takes a prefix's ban out of the shared list ([`bans`]) unless it was
/// applied after the lift (its [`ban_value`]'s time is later): an `/unban`
/// retried by presence after Redis did not answer never takes out a
/// `/ban` of that prefix typed since, on any server. (An `/unban` that
/// reaches Redis as it is typed takes out whatever is there, with no
/// clocks compared: `Names::lift_ban`.) A value without a
/// time counts as applied at 0. KEYS: the list. ARGV: prefix, when the
/// lift was typed (ms since the epoch). Returns 1 if taken out, 0 if the
/// prefix was not there or its ban is newer.
pub const BAN_LIFT: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local applied = tonumber(string.match(v, '^(%d+) ') or '0')
if applied > tonumber(ARGV[2]) then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
";

/// Raises a counter to at least a value (the guest counter after Redis came
/// back empty, so no `guest-N` is given twice). KEYS: key. ARGV: floor.
pub const RAISE_TO: &str = r"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
";

/// The next guest number, above a floor: the highest number the asking
/// server gave, so a counter that went back (Redis restarted empty, or
/// from an older copy of its data) never gives one of its numbers again,
/// not even before presence raised it. KEYS: the guest counter. ARGV:
/// floor. Returns the number.
pub const NEXT_GUEST: &str = r"
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if n <= floor then
  n = floor + 1
  redis.call('SET', KEYS[1], n)
end
return n
";

/// Fences off a server's lines up to a counter: raises its high-water mark
/// to it, so no pipeline still on its way from an old connection can apply
/// one of them later. KEYS: hw. ARGV: counter, idle ttl in ms. Returns the
/// mark before: every line at or below it was applied, every line above it
/// (up to the counter) never will be.
pub const FENCE: &str = r"
local hw = tonumber(redis.call('GET', KEYS[1]) or '0')
if hw < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return hw
";

/// Announces one member of a server taken for lost back, once: only if
/// it is still among those announced gone ([`reaped`]), which it then
/// leaves (last, so a failed append is tried again), and holds its name
/// again (else it leaves them with no notice: it is to be renamed). KEYS:
/// log, seq, reaped, name. ARGV: max length, idle TTL (ms), uid, name,
/// kind, text, `SERVER:CLIENT:` (its holder prefix), its
/// [`reaped_entry`]. Returns 1 if it announced.
pub const BACK_MEMBER: &str = r"
if redis.call('SISMEMBER', KEYS[3], ARGV[8]) == 0 then return 0 end
local holder = redis.call('GET', KEYS[4])
if not holder or string.sub(holder, 1, #ARGV[7]) ~= ARGV[7] then
  redis.call('SREM', KEYS[3], ARGV[8])
  return 0
end
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
  'n', n, 'uid', ARGV[3], 'from', ARGV[4], 'kind', ARGV[5], 'text', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[8])
return 1
";

/// Forgets a reaped server: unlists it and deletes its member list, wake
/// and inbox streams; if `ARGV[2]` is 1, only while its heartbeat is still
/// gone (a server back before its reap ended stays listed, and registers
/// its members again itself: unlisted, a kill then would never be
/// reaped). KEYS: servers, alive, members, wake, inbox, beat. ARGV: server, the
/// check. Returns 1 if it forgot it.
pub const UNLIST: &str = r"
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1
";

/// Lists again a server that was registered before Redis restarted empty
/// and has not registered since, with its members as a survivor last read
/// them, and no heartbeat: so the survivors' reap announces them once, as
/// for any server whose heartbeat expired (`presence/remembered.rs`). Only
/// if it is still unknown to this Redis: not listed, no heartbeat, no
/// members, and none of its members announced gone ([`reaped`]: reaped in
/// this Redis already, or listed again by another survivor and reaped). A
/// server that registered again keeps what it filed, and one listed again
/// by another survivor is not listed twice. KEYS: servers, alive, members,
/// reaped. ARGV: server, then each member's name and value. Returns 1 if it
/// listed it.
pub const RELIST: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4]) > 0 then return 0 end
if #ARGV < 3 then return 0 end
for i = 2, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
";

/// Takes a lost server's reap lock, or keeps it if this server holds it
/// already (a reap that failed half way is finished at the next beat, not
/// once the lock expired). KEYS: the lock. ARGV: this server, TTL (ms).
/// Returns 1 if this server holds it now.
pub const TAKE_LOCK: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Every script, loaded (SCRIPT LOAD) on each new connection, so EVALSHA
/// works after Redis restarted empty.
pub fn scripts() -> [Script; 16] {
    [
        Script::new(BAN_PUT),
        Script::new(BAN_LIFT),
        Script::new(FILE_IF),
        Script::new(RELIST),
        Script::new(UNLIST),
        Script::new(BACK_MEMBER),
        Script::new(TAKE_LOCK),
        Script::new(APPEND),
        Script::new(INBOX_PUT),
        Script::new(FENCE),
        Script::new(CLAIM),
        Script::new(REAP_MEMBER),
        Script::new(DELETE_IF),
        Script::new(HDEL_IF),
        Script::new(RAISE_TO),
        Script::new(NEXT_GUEST),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clients that entered a room in the same millisecond have
    /// different member values (a removal that checks the value takes
    /// out only its own), and a value reads back as its room, time and
    /// client.
    #[test]
    fn member_values_differ_by_client_and_read_back() {
        let (a, b) = (member_value("lobby", 7, 1), member_value("lobby", 7, 2));
        assert_ne!(a, b);
        assert_eq!(parse_member(&a), ("lobby", 7));
        assert_eq!(parse_member("games"), ("games", 0));
        assert_eq!(member_client(&b), Some(2));
        assert_eq!(member_client("lobby\t7"), None);
    }

    /// A shared ban's value reads back as its time and line; one put
    /// before the value carried a time reads as applied at 0.
    #[test]
    fn a_ban_value_reads_back() {
        let line = "10.0.0.0/8 never - spam";
        assert_eq!(
            parse_ban_value(&ban_value(1_700_000_000_123, line)),
            (1_700_000_000_123, line)
        );
        assert_eq!(parse_ban_value(line), (0, line));
        assert_eq!(
            parse_ban_value("2001:db8::/32 never -"),
            (0, "2001:db8::/32 never -")
        );
    }

    /// A member is noted as announced gone by its client id, which a
    /// rename keeps; by its name where its value has no id.
    #[test]
    fn a_reaped_entry_is_the_client_id() {
        let value = member_value("lobby", 7, 42);
        assert_eq!(reaped_entry("Finn", &value), "42");
        assert_eq!(reaped_entry("Finn", "lobby\t7"), "Finn");
        assert_eq!(reaped_entry("Finn", "lobby"), "Finn");
    }
}

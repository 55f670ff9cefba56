//! Names on Redis: the second implementation of
//! [`crate::rooms::names::Names`] (the first is `LocalNames`).
//!
//! A name is claimed with `SET NX` for `SERVER:CLIENT`, so it is unique
//! across the servers ignoring case; `guest-N` numbers come from one
//! `INCR`, so none is given twice. Each claim also files the client among
//! this server's members (name -> room), which a survivor announces if
//! this server is lost.
//!
//! The rooms' trait has no word for "Redis is away": a claim that cannot
//! be asked is refused as taken (logged), a release that cannot be is
//! left to presence (the name is remembered, `names/unfreed.rs`, and the
//! members marked for filing again), and a client that connects while
//! no guest number can be asked is named from this server's own range,
//! `guest-TAG.N` ([`fallback_name`]): TAG is this server's, taken from a
//! Redis counter when it started (so no other server, nor this one after a
//! restart, has it), N counts this server's fallback guests. The `.` keeps
//! those names apart from every `guest-N` of the shared counter, which is
//! therefore never raised past them, and `guest-` is reserved from
//! `/nick`, so no client takes one.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chat_common::name::MAX_NAME;

use super::bridge::Bridge;
use super::names::{Claim, Names as RedisNames};
use crate::log;
use crate::rooms::names::{Guest, NameRefused, Names};
use crate::rooms::ClientId;

/// Client ids of the guests named while Redis cannot be asked start above
/// this: far above what the shared counter reaches (10^15), so an id is
/// never given twice on this server, and still exact as a double (in a Lua
/// script). Not shown to anyone (their names are [`fallback_name`]s).
pub const FALLBACK_ID_BASE: u64 = 1 << 50;

/// The digits of a fallback name's TAG and N: lower-case base 36, so the
/// name fits [`MAX_NAME`] with room to spare (a tag of up to 4 digits,
/// 1,679,615 server starts, leaves 5 for N: 60,466,175 guests).
const RADIX: u64 = 36;

/// The fallback guest name for tag `tag` and number `n`:
/// `guest-TAG.N`, both in base 36. `None` when it would be longer than
/// [`MAX_NAME`]. Two different (tag, n) never give one name (the `.`
/// separates them), and none is a `guest-N` of the shared counter.
pub fn fallback_name(tag: u64, n: u64) -> Option<String> {
    let name = format!("guest-{}.{}", base36(tag), base36(n));
    (name.len() <= MAX_NAME).then_some(name)
}

/// `n` in lower-case base 36.
fn base36(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        let digit = (n % RADIX) as u32;
        digits.push(char::from_digit(digit, RADIX as u32).unwrap_or('0'));
        n /= RADIX;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// [`Names`] shared through Redis.
pub struct SharedNames {
    /// Claims, releases and guest numbers in Redis.
    redis: Arc<RedisNames>,
    /// Where this server's clients are filed (name, room), for presence.
    bridge: Arc<Bridge>,
    /// Names held by this server's clients (lower case), for `holder`.
    held: HashMap<String, ClientId>,
    /// Guests named from the fallback range so far (their ids).
    fallback: u64,
    /// The N of the last fallback name given (goes back to 1 when the next
    /// would not fit [`MAX_NAME`], skipping names still held).
    spelled: u64,
}

impl SharedNames {
    /// Names for the server behind `bridge`.
    pub fn new(redis: Arc<RedisNames>, bridge: Arc<Bridge>) -> SharedNames {
        SharedNames {
            redis,
            bridge,
            held: HashMap::new(),
            fallback: 0,
            spelled: 0,
        }
    }

    /// A guest from this server's own range, when Redis gives no number:
    /// held here at once (no other server names from this tag), filed as a
    /// member so that `/who` lists it once Redis is back, and claimed there
    /// by presence then, so a `/msg` from another server finds it.
    fn fallback_guest(&mut self) -> Guest {
        self.fallback += 1;
        let id = FALLBACK_ID_BASE + self.fallback;
        let tag = self.bridge.guest_tag;
        // Bounded: past the held names there is a free one (held names are
        // this server's clients, far fewer than the numbers a tag has).
        let mut name = None;
        for _ in 0..self.held.len() + 2 {
            self.spelled += 1;
            match fallback_name(tag, self.spelled) {
                Some(n) if !self.held.contains_key(&n) => {
                    name = Some(n);
                    break;
                }
                Some(_) => {}
                None => self.spelled = 0,
            }
        }
        // Only with a tag of 9 digits (36^8 server starts) or more clients
        // than it has names: unique on this server, and still short.
        let name = name.unwrap_or_else(|| format!("guest-.{}", base36(self.fallback)));
        self.held.insert(name.clone(), id);
        self.bridge.members.lock().entry(id).or_default().name = name.clone();
        // Not held in Redis yet: presence claims it once Redis answers.
        self.redis.set_unclaimed();
        Guest { id, name }
    }

    /// Records `name` as held by client `id` (Redis has it claimed for
    /// it): here, among the members, and, for a member in a room, in
    /// Redis's members list.
    fn hold(&mut self, name: &str, id: ClientId) {
        self.held.insert(name.to_ascii_lowercase(), id);
        let (before, room) = {
            let mut members = self.bridge.members.lock();
            let whereabouts = members.entry(id).or_default();
            let before = std::mem::replace(&mut whereabouts.name, name.to_string());
            let room = whereabouts
                .room
                .clone()
                .map(|room| (room, whereabouts.entered));
            (before, room)
        };
        // A rename keeps its place in `/who`: the time it entered the room.
        if let Some((room, entered)) = room {
            if let Err(e) = self.redis.member(name, Some((&room, entered, id))) {
                log!("redis: cannot file {name} as a member ({e:?})");
            }
            // The old name is taken out here too, before the rename's
            // notice (this runs before the rooms append it), so a `/who`
            // asked on seeing it lists the new name only. On this link,
            // in order with every filing of this server's (the name is
            // still held for this client until its release: no one else
            // filed it meanwhile); not by the writer ahead of the notice,
            // whose late removal could take out the name filed again by a
            // rename back. The members list is keyed by the exact
            // spelling, so this covers a change of case only too.
            if !before.is_empty() && before != name {
                if let Err(e) = self.redis.member(&before, None) {
                    log!("redis: cannot take {before} out of the members ({e:?})");
                }
            }
        }
    }

    /// [`Self::fallback_guest`], logged (for the first guest and then at
    /// every power of two) with why Redis named no guest.
    fn fallback_logged(&mut self, why: &str) -> Guest {
        let guest = self.fallback_guest();
        if self.fallback.is_power_of_two() {
            log!(
                "redis: {why}; {} named from this server's own range so far ({})",
                self.fallback,
                guest.name
            );
        }
        guest
    }
}

impl Names for SharedNames {
    fn next_guest(&mut self) -> Guest {
        let floor = self.bridge.highest_guest.load(Ordering::Relaxed);
        let id = match self.redis.next_guest(floor) {
            Ok(id) => id,
            Err(e) => return self.fallback_logged(&format!("no guest number from Redis ({e:?})")),
        };
        self.bridge.highest_guest.fetch_max(id, Ordering::Relaxed);
        let name = chat_common::name::guest(id);
        // The number is new, so its name is free, unless Redis failed
        // between the two round trips (or its data went back): then the
        // client is named as if no number could be had.
        match self.redis.claim(&name, id) {
            Ok(Claim::Claimed) => {
                self.hold(&name, id);
                Guest { id, name }
            }
            Ok(Claim::InUse) => self.fallback_logged(&format!("{name} is held in Redis already")),
            Err(e) => self.fallback_logged(&format!("cannot claim {name} ({e:?})")),
        }
    }

    fn claim(&mut self, name: &str, id: ClientId) -> Result<(), NameRefused> {
        let key = name.to_ascii_lowercase();
        if id > FALLBACK_ID_BASE && self.held.get(&key) == Some(&id) {
            // Its fallback name: this server's alone, nothing to ask.
            return Ok(());
        }
        match self.redis.claim(name, id) {
            Ok(Claim::Claimed) => {}
            Ok(Claim::InUse) => return Err(NameRefused::Taken),
            Err(e) => {
                log!("redis: cannot claim a name ({e:?}); refused");
                return Err(NameRefused::Unknown);
            }
        }
        self.hold(name, id);
        Ok(())
    }

    fn release(&mut self, name: &str, id: ClientId) {
        let key = name.to_ascii_lowercase();
        if self.held.get(&key) != Some(&id) {
            return;
        }
        self.held.remove(&key);
        {
            let mut members = self.bridge.members.lock();
            if members
                .get(&id)
                .is_some_and(|w| w.name.eq_ignore_ascii_case(name))
            {
                members.remove(&id);
            }
        }
        if self.bridge.is_stopping() {
            // Stopping: presence freed every name of this server at once.
            return;
        }
        match self.redis.release(name, id) {
            // A failed unlisting marks the members unfiled: presence files
            // them again without this one at its next beat.
            Ok(()) => {
                if let Err(e) = self.redis.member(name, None) {
                    log!("redis: cannot take {name} out of the members ({e:?}); presence does at its next beat");
                }
            }
            // Redis is away: the name is remembered (`Names::release`), and
            // presence frees it, then files the members again without this
            // one, at its next beat that reaches Redis.
            Err(e) => {
                self.redis.set_unfiled();
                log!("redis: cannot free the name {name} ({e:?}); presence frees it once Redis answers");
            }
        }
    }

    fn holder(&self, name: &str) -> Option<ClientId> {
        self.held.get(&name.to_ascii_lowercase()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest tag that still leaves 5 digits for N.
    const BIG_TAG: u64 = 36u64.pow(4) - 1;

    /// A fallback name fits MAX_NAME for every tag of up to 4 digits and
    /// N of up to 5, and is a well-formed name that `/nick` refuses as
    /// reserved (so no client takes it).
    #[test]
    fn fallback_names_fit_and_are_reserved() {
        for (tag, n) in [(1, 1), (BIG_TAG, 36u64.pow(5) - 1), (999, 99_999)] {
            let name = fallback_name(tag, n).expect("fits");
            assert!(name.len() <= MAX_NAME, "{name}");
            assert_eq!(
                chat_common::name::check(&name),
                Err(chat_common::name::NameError::Reserved),
                "{name}"
            );
        }
        assert_eq!(fallback_name(1, 1).as_deref(), Some("guest-1.1"));
        assert_eq!(fallback_name(36, 35).as_deref(), Some("guest-10.z"));
        assert_eq!(fallback_name(BIG_TAG, 36u64.pow(5)), None, "too long");
    }

    /// Two servers (two tags) never give one name, whatever their counts;
    /// a count never spills into another tag's names; and no fallback name
    /// is a `guest-N` of the shared counter.
    #[test]
    fn fallback_names_are_unique_across_tags() {
        let mut seen = std::collections::HashSet::new();
        for tag in [1, 2, 10, 12, 35, 36, 1296, BIG_TAG] {
            for n in (1..2000).chain([36u64.pow(3), 36u64.pow(4) + 1]) {
                let name = fallback_name(tag, n).expect("fits");
                assert!(seen.insert(name.clone()), "{name} given twice");
                let number = name.strip_prefix("guest-").expect("a guest name");
                assert!(number.parse::<u64>().is_err(), "{name} looks like guest-N");
            }
        }
    }

    /// Base 36, lower case.
    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(u64::MAX), "3w5e11264sgsf");
    }
}

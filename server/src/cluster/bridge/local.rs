//! What presence asks of this server's members ([`Local`]): who is here
//! and where, which names still need filing or claiming in Redis, the other
//! servers' counts, and a name another server took while this one was cut
//! off.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chat_common::protocol;

use super::Bridge;
use crate::cluster::link::Failure;
use crate::cluster::names::Names as RedisNames;
use crate::cluster::presence::{Local, Member, NameLost};

impl Local for Bridge {
    fn unfiled(&self) -> bool {
        self.names.take_unfiled()
    }

    fn file_failed(&self) {
        self.names.set_unfiled();
    }

    fn unclaimed(&self) -> bool {
        self.names.take_unclaimed()
    }

    fn claim_failed(&self) {
        self.names.set_unclaimed();
    }

    fn free_unfreed(&self) -> Result<(), Failure> {
        self.names.free_unfreed()
    }

    fn lift_unlifted(&self) -> Result<(), Failure> {
        self.names.lift_unlifted()
    }

    fn spellings(&self) -> Vec<(String, String)> {
        self.spellings
            .lock()
            .iter()
            .map(|(key, spelling)| (key.clone(), spelling.clone()))
            .collect()
    }

    fn names(&self) -> Option<Arc<RedisNames>> {
        Some(Arc::clone(&self.names))
    }

    fn members(&self) -> Vec<Member> {
        self.members
            .lock()
            .iter()
            .filter_map(|(&client, w)| {
                Some(Member {
                    name: w.name.clone(),
                    room: w.room.clone()?,
                    client,
                    entered: w.entered,
                })
            })
            .collect()
    }

    fn highest_guest(&self) -> u64 {
        self.highest_guest.load(Ordering::Relaxed)
    }

    fn counter_seen(&self, counter: u64) {
        self.highest_guest.fetch_max(counter, Ordering::Relaxed);
    }

    fn guest_tag(&self) -> u64 {
        self.guest_tag
    }

    fn others(&self, counts: HashMap<String, usize>) {
        *self.others.lock() = counts;
    }

    fn name_lost(&self, client: u64, name: &str, why: NameLost) -> bool {
        let Some(ctx) = self.rooms() else {
            return true;
        };
        // The names link may still hold the connection that broke while
        // this server was cut off: one more try on a new one.
        let floor = self.highest_guest.load(Ordering::Relaxed);
        let fresh = match self
            .names
            .next_guest(floor)
            .or_else(|_| self.names.next_guest(floor))
        {
            Ok(n) => {
                self.highest_guest.fetch_max(n, Ordering::Relaxed);
                chat_common::name::guest(n)
            }
            Err(e) => {
                crate::log!(
                    "redis: {name} is held elsewhere too, and no new name can be had ({e:?}); tried again at the next beat"
                );
                return false;
            }
        };
        let when = match why {
            NameLost::CutOff => "while this server was cut off from the others",
            NameLost::RedisEmptied => {
                "when Redis restarted empty, before this server claimed it again"
            }
        };
        match ctx.rooms.rename(client, &fresh) {
            crate::rooms::Renamed::Done(_) => {
                crate::log!("redis: {name} was taken on another server {when}; its client here is {fresh} now");
                ctx.rooms.tell(
                    client,
                    &protocol::error(&format!(
                        "{when}, a client of another server took the name {name}: you are {fresh} now"
                    )),
                );
                true
            }
            // Gone meanwhile: nothing to give up.
            crate::rooms::Renamed::Gone => true,
            other => {
                crate::log!("redis: {name} is held elsewhere too; renaming its client here to {fresh}: {other:?}; tried again at the next beat");
                false
            }
        }
    }

    fn shared_bans(&self, shared: &[(String, String)]) -> Option<Vec<(String, String)>> {
        self.adopt_bans(shared)
    }

    fn left(&self, name: &str, reason: &str) -> String {
        protocol::left(name, reason)
    }
}

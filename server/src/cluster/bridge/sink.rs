//! What the reader and the writer hand the bridge ([`Sink`]): entries to
//! deliver, lines refused, what could not be delivered, the link going
//! down or coming back, a new Redis, requests from other servers, and the
//! rooms kept here for their history.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chat_common::protocol;

use super::Bridge;
use crate::cluster::reader::Position;
use crate::cluster::{Entry, Line, Missed, Refusal, Request, Sink, Token};
use crate::rooms::log::Batch;

impl Bridge {
    /// Tells this server's members of room `room` what its reader could
    /// not deliver (a `! ` line); a room with none here is told nothing
    /// (not even the console, nor the transcript).
    fn tell_missed(&self, room: &str, missed: Missed) {
        if !self.local.lock().contains(room) {
            return;
        }
        let Some(ctx) = self.rooms() else {
            return;
        };
        let line = match missed {
            Missed::Lines(n) => protocol::error(&format!(
                "you missed {n} line{} of this room: Redis trimmed them before this server could read them",
                if n == 1 { "" } else { "s" }
            )),
            Missed::Trimmed { at_most } => protocol::error(&format!(
                "you may have missed up to {at_most} line{} of this room: Redis trimmed them before this server could read them",
                if at_most == 1 { "" } else { "s" }
            )),
            Missed::LogLost { unseen: 0 } => protocol::error(
                "Redis restarted empty: this room's log before now is gone, and lines sent just before it went away may be missing",
            ),
            Missed::LogLost { unseen } => protocol::error(&format!(
                "Redis restarted empty: this room's log before now is gone, and you missed at least {unseen} line{} sent just before it went away",
                if unseen == 1 { "" } else { "s" }
            )),
            Missed::RolledBack { from, to } => protocol::error(&format!(
                "Redis came back with an older copy of its data: the last {} line{} of this room are gone from its log and history, and lines sent just before it went away may be missing",
                from - to,
                if from - to == 1 { "" } else { "s" }
            )),
        };
        self.local_notice(&ctx, room, &line);
    }
}

impl Sink for Bridge {
    fn refused(&self, token: Token, line: &Line, why: Refusal) {
        if let Some(ctx) = self.rooms() {
            let origin = Bridge::origin_of(&line.from);
            if line.text.starts_with("* ") || origin.client.is_none() {
                // A notice or the console's line the writer took but Redis
                // did not: delivered here only, as the rooms do with one
                // refused at once (`Rooms::append`), to the members that
                // were in the room when it was offered (a hung Redis can
                // make that seconds ago); its subject is skipped and is
                // not told of a line it never sent.
                let batch = Batch {
                    from: origin,
                    lines: vec![line.text.as_str().into()],
                };
                ctx.rooms.deliver_to_members_by(&line.room, &batch, line.at);
            } else if token != 0 {
                let what = line.text.trim_end();
                let text = match why {
                    Refusal::NotTaken => format!("not delivered (Redis did not take it): {what}"),
                    Refusal::Unsure => format!(
                        "not sure your line was sent (Redis stopped answering; it will not appear later): {what}"
                    ),
                    Refusal::Restarted => format!(
                        "not sure your line was sent (Redis restarted empty; it is not sent again): {what}"
                    ),
                };
                ctx.rooms.tell(token, &protocol::error(&text));
            }
        }
    }

    fn deliver(&self, room: &str, entries: Vec<Entry>) {
        let Some(ctx) = self.rooms() else {
            return;
        };
        if !self.feeds.lock().contains_key(room) {
            return;
        }
        // Runs of one origin become one batch: one room lock each.
        let mut run: Vec<Entry> = Vec::new();
        for entry in entries {
            if run.last().is_some_and(|last| last.from != entry.from) {
                self.deliver_run(&ctx, room, std::mem::take(&mut run));
            }
            run.push(entry);
        }
        self.deliver_run(&ctx, room, run);
    }

    fn history_wanted(&self, _room: &str) -> usize {
        self.history
    }

    fn history(&self, room: &str, end: &Position, lines: Vec<Entry>) {
        let Some(ctx) = self.rooms() else {
            return;
        };
        let Some(feed) = self.feeds.lock().get(room).cloned() else {
            return;
        };
        // Under the room's lock, as every load: nothing of the room's log
        // is delivered here yet (the reader is only starting to read it),
        // unless a member entering loaded a newer tail meanwhile, which
        // then stands.
        ctx.rooms.deliver_picked(room, || {
            if !feed.past(end) {
                feed.load(end, lines.into_iter().map(|e| (e.n, Arc::from(e.text))));
            }
            None
        });
    }

    fn missed(&self, room: &str, missed: Missed) {
        // The log numbers its lines from 1 (or `to + 1`) again, and the
        // history loses what the log lost, before anyone is told.
        let feeds = self.feeds.lock();
        if let Some(feed) = feeds.get(room) {
            match missed {
                Missed::LogLost { .. } => {
                    feed.lost(self.epoch.lock().as_deref().unwrap_or_default());
                }
                Missed::RolledBack { to, .. } => feed.rolled_back(to),
                Missed::Lines(_) | Missed::Trimmed { .. } => {}
            }
        }
        drop(feeds);
        self.tell_missed(room, missed);
    }

    fn request(&self, request: Request) {
        if let Some(ctx) = self.rooms() {
            self.serve(&ctx, request);
        }
    }

    fn kept(&self) -> Vec<(String, (u64, u64))> {
        let feeds = self.feeds.lock();
        let Some(epoch) = self.epoch.lock().clone() else {
            return Vec::new();
        };
        feeds
            .iter()
            .filter_map(|(key, feed)| Some((key.clone(), feed.floor_in(&epoch)?)))
            .filter(|(_, (floor, _))| *floor > 0)
            .collect()
    }

    fn kept_went_back(&self, room: &str, seen: (u64, u64), to: u64) {
        let went = self
            .feeds
            .lock()
            .get(room)
            .is_some_and(|feed| feed.rolled_back_from(seen, to));
        // A member entered while this server was cut off (its watch not
        // served yet): it was replayed lines now gone.
        if went {
            let from = seen.0;
            self.tell_missed(room, Missed::RolledBack { from, to });
        }
    }

    fn epoch(&self, epoch: &str) {
        // Every feed counting in another log loses it, its room read here
        // or only kept for its history (its next first member would be
        // replayed the lost lines, and its floor would hide new ones).
        let feeds = self.feeds.lock();
        *self.epoch.lock() = Some(epoch.to_string());
        for feed in feeds.values() {
            feed.reading(epoch);
        }
    }

    fn link(&self, up: bool) {
        if !up {
            self.up.store(false, Ordering::Release);
            self.cut_off();
            return;
        }
        self.back();
        let Some(ctx) = self.rooms() else {
            return;
        };
        let line = protocol::notice("connected to the other servers again (Redis is back)");
        let rooms: Vec<String> = self.local.lock().iter().cloned().collect();
        for room in rooms {
            self.local_notice(&ctx, &room, &line);
        }
    }
}

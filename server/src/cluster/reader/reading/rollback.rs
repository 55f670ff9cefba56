//! Checking, on every reconnection, whether Redis came back with an older
//! copy of its data: each watched room's counter against its cursor, and
//! each room kept here for its history only against its floor.

use super::super::super::{keys, Missed};
use super::super::Start;
use super::ReaderThread;

impl ReaderThread {
    /// Compares each watched room's counter with its cursor, and each room
    /// kept here for its history only with its floor ([`Sink::kept`](crate::cluster::Sink::kept)):
    /// one below means Redis came back with an older copy of the log (a
    /// kept room's floor past its log's end would take as many new lines
    /// for lines delivered already). Best effort (a failure here is seen
    /// by the next read; [`ReaderThread::take`] also catches a rollback of
    /// a watched room from the entries themselves).
    pub(super) fn check_rollback(&mut self) {
        // Each room with where it stands: a watched room's cursor, or a
        // kept room's floor and loads.
        let mut rooms: Vec<(String, u64, Option<u64>)> = self
            .cursors
            .iter()
            .filter(|(_, c)| c.n > 0)
            .map(|(room, c)| (room.clone(), c.n, None))
            .collect();
        // A room whose watch waits with a start (its first member here
        // loaded its history up to there before the link went) is not
        // checked as kept: entered at that start, a number of the log as it
        // was, the reader finds the rollback from the entries themselves
        // ([`ReaderThread::take`]); told here as well, it was told twice.
        let waiting: Vec<String> = self
            .controls
            .lock()
            .iter()
            .filter(|(_, control)| matches!(control.start, Some(Start::After(_))))
            .map(|(room, _)| room.clone())
            .collect();
        rooms.extend(
            self.sink
                .kept()
                .into_iter()
                .filter(|(room, _)| !self.cursors.contains_key(room) && !waiting.contains(room))
                .map(|(room, (floor, loads))| (room, floor, Some(loads))),
        );
        if rooms.is_empty() {
            return;
        }
        let Ok(seqs) = self.link.run_idempotent(|conn| {
            let mut pipe = redis::pipe();
            for (room, _, _) in &rooms {
                pipe.cmd("GET").arg(keys::seq(room));
            }
            pipe.query::<Vec<Option<u64>>>(conn)
        }) else {
            return;
        };
        for ((room, from, loads), seq) in rooms.into_iter().zip(seqs) {
            let seq = seq.unwrap_or(0);
            if seq >= from {
                continue;
            }
            match loads {
                Some(loads) => self.sink.kept_went_back(&room, (from, loads), seq),
                None => {
                    if let Some(cursor) = self.cursors.get_mut(&room) {
                        cursor.n = seq;
                    }
                    self.sink
                        .missed(&room, Missed::RolledBack { from, to: seq });
                }
            }
        }
    }
}

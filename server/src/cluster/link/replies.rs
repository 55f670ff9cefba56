//! The connection a link's commands run on ([`Replies`]): the redis
//! crate's, except that a pipeline stops reading at the first reply that
//! does not come.
//!
//! `redis::Connection` reads every reply of a pipeline even after one
//! failed, and each read waits out the read timeout again: a pipeline of N
//! commands to a hung Redis (`SIGSTOP`, a stalled network) took N timeouts
//! to fail. The reader's `XREAD` with `TIME` took 9 s in place of 4.5 (its
//! clients were told they were cut off that much later, or only once
//! Redis was back), a writer's batch of 512 lines would have held its
//! thread, or a client's worker, for 17 minutes in place of 2 s. Here the
//! first failure ends the pipeline; the link drops the connection after
//! it, so the replies left unread are never taken for others.

use redis::{Connection, ConnectionLike, RedisResult, Value};

/// A link's connection, lent to one command or pipeline, with the epoch
/// of the Redis it reaches.
pub struct Replies<'a>(pub(super) &'a mut Connection, pub(super) Option<&'a str>);

impl Replies<'_> {
    /// The epoch of the Redis this connection reaches, read when it was
    /// opened ([`super::Link::epoch`]): what is sent on it lands in that
    /// Redis, whatever the server's other links have found since.
    pub fn epoch(&self) -> Option<&str> {
        self.1
    }
}

impl ConnectionLike for Replies<'_> {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.0.req_packed_command(cmd)
    }

    /// Sends the pipeline, then reads its `offset` + `count` replies, up
    /// to the first that fails. The first `offset` (a transaction's
    /// `MULTI` and `QUEUED`s) are not returned; an error reply among them
    /// fails the whole, as the crate's own connection does.
    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.0.send_packed_command(cmd)?;
        let mut replies = Vec::with_capacity(count);
        let mut refused = None;
        for i in 0..offset + count {
            let reply = self.0.recv_response()?;
            if i >= offset {
                replies.push(reply);
            } else if let Value::ServerError(e) = reply {
                refused.get_or_insert(e);
            }
        }
        match refused {
            Some(e) => Err(e.into()),
            None => Ok(replies),
        }
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.0.check_connection()
    }

    fn is_open(&self) -> bool {
        self.0.is_open()
    }
}

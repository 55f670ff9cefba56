//! One order per room: did every client see the room's lines in the same
//! order?
//!
//! Each client records the lines it received in order of arrival (a sender
//! does not get its own back, and a client may lack lines: those are counted
//! as lost elsewhere). The client that received the most is the reference;
//! every other client's sequence must then be a subsequence of it. A line
//! that arrives before a line the reference placed earlier is one *line out
//! of the room's order*. One total order per room, the same at every client,
//! means 0.

use std::collections::HashMap;

/// Sequence numbers fit in the low 32 bits of an id.
const SEQ_BITS: u32 = 32;

/// One line's identity: its sender index and its sequence number.
pub fn id(sender: usize, seq: u64) -> u64 {
    ((sender as u64) << SEQ_BITS) | (seq & u64::from(u32::MAX))
}

/// Lines, over all clients, that arrived out of the reference client's
/// order (see the module docs).
pub fn violations(orders: &[&[u64]]) -> u64 {
    let Some(reference) = orders.iter().max_by_key(|o| o.len()) else {
        return 0;
    };
    let pos: HashMap<u64, usize> = reference
        .iter()
        .enumerate()
        .map(|(p, &id)| (id, p))
        .collect();
    let mut out = 0;
    for order in orders {
        let mut latest = None;
        for p in order.iter().filter_map(|id| pos.get(id)) {
            if latest.is_some_and(|l| *p < l) {
                out += 1;
            } else {
                latest = Some(*p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_sender_and_seq_apart() {
        assert_ne!(id(1, 0), id(0, 1));
        assert_eq!(id(3, 7) >> SEQ_BITS, 3);
    }

    /// Subsequences of one order (own lines left out, a line lost) are fine.
    #[test]
    fn one_order_with_gaps_is_no_violation() {
        let all = [10, 11, 20, 12, 21, 30];
        let own_left_out = [10, 11, 12, 30];
        let one_lost = [10, 20, 12, 21, 30];
        assert_eq!(violations(&[&all, &own_left_out, &one_lost, &[]]), 0);
    }

    /// Two clients seeing two concurrent lines the other way round.
    #[test]
    fn a_swapped_pair_is_counted() {
        let a = [10, 20, 11, 21];
        let b = [10, 11, 20, 21];
        assert_eq!(violations(&[&a, &b]), 1);
        let c = [21, 20, 11, 10];
        assert_eq!(violations(&[&a, &c]), 3);
    }
}

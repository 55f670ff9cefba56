//! Rooms in a workload: which room each client goes to, what it sends to get
//! there, and how it knows it has arrived.
//!
//! Clients are spread over the rooms by connection index (`index % rooms`),
//! so the first `senders` clients, the senders, are spread evenly too: with
//! 10 rooms and 20 senders each room has 2. Every client starts in `#lobby`
//! (SPEC "Rooms"); once welcomed it sends `/join room-K` and counts as ready
//! only when the server's answer arrives.
//!
//! That answer is a `* ` notice naming the room (SPEC: "a `* ` notice naming
//! the room and how many are in it"), but its wording is the server's. While
//! a client waits for it, it also gets the lobby's notices, and those can
//! name the same room ("guest-7 left for #room-3"). So the answer is the
//! first `* ` line naming the room and no other client: a notice about
//! someone else always names them.

/// Prefix of a benchmark room's name: rooms are `room-1`, `room-2`, ...
const ROOM_PREFIX: &str = "room-";
/// Prefix of the names chat-server gives (`guest-N`).
const GUEST_PREFIX: &str = "guest-";

/// The room (0-based) client `index` goes to, or `None` when the workload
/// has no rooms (`rooms` 0 or 1: everyone stays where the server put them).
pub fn room_of(index: usize, rooms: usize) -> Option<usize> {
    (rooms > 1).then(|| index % rooms)
}

/// Name of room `room` (0-based), without `#`: `room-1` for 0.
pub fn name(room: usize) -> String {
    format!("{ROOM_PREFIX}{}", room + 1)
}

/// The line a client sends to enter `room`.
pub fn join_line(room: usize) -> Vec<u8> {
    format!("/join {}\n", name(room)).into_bytes()
}

/// The client's own name in its welcome (`* welcome, guest-12! ...`): the
/// first `guest-N` in it.
pub fn own_name(welcome: &[u8]) -> Option<&[u8]> {
    guests(welcome).next()
}

/// Whether `line` answers this client's `/join room` (see the module docs):
/// a `* ` notice naming `#room` as a whole word, and no `guest-N` but `own`.
pub fn is_join_answer(line: &[u8], room: &str, own: Option<&[u8]>) -> bool {
    if !line.starts_with(b"* ") || !names_room(line, room) {
        return false;
    }
    guests(line).all(|g| Some(g) == own)
}

/// Whether `line` contains `#room` not followed by another name character.
fn names_room(line: &[u8], room: &str) -> bool {
    let tag = format!("#{room}");
    let tag = tag.as_bytes();
    let mut from = 0;
    while let Some(at) = find(&line[from..], tag) {
        let end = from + at + tag.len();
        // A `.` may end a sentence: no benchmark room's name has one.
        if !matches!(line.get(end), Some(&b) if is_room_byte(b)) {
            return true;
        }
        from = from + at + 1;
    }
    false
}

/// Every `guest-N` in `line` (N one or more digits).
fn guests(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let p = GUEST_PREFIX.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || loop {
        let at = from + find(&line[from..], p)?;
        let digits = line[at + p.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        from = at + p.len();
        let starts_word = at == 0 || !is_name_byte(line[at - 1]);
        if digits > 0 && starts_word {
            return Some(&line[at..at + p.len() + digits]);
        }
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Characters of a name or room name (SPEC "Names", "Rooms").
fn is_name_byte(b: u8) -> bool {
    is_room_byte(b) || b == b'.'
}

/// Characters that would continue one of the benchmark's room names.
fn is_room_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h_shape_gives_ten_rooms_of_fifty_with_two_senders_each() {
        let (clients, senders, rooms) = (500, 20, 10);
        let mut members = [0; 10];
        let mut sending = [0; 10];
        for i in 0..clients {
            let r = room_of(i, rooms).unwrap();
            members[r] += 1;
            if i < senders {
                sending[r] += 1;
            }
        }
        assert_eq!(members, [50; 10]);
        assert_eq!(sending, [2; 10]);
    }

    #[test]
    fn no_rooms_means_no_join() {
        assert_eq!(room_of(7, 0), None);
        assert_eq!(room_of(7, 1), None);
        assert_eq!(name(0), "room-1");
        assert_eq!(join_line(9), b"/join room-10\n");
    }

    #[test]
    fn own_name_is_read_from_the_welcome() {
        let w = b"* welcome, guest-12! 3 online; type /help for commands";
        assert_eq!(own_name(w), Some(&b"guest-12"[..]));
        assert_eq!(own_name(b"<user3> hi"), None);
    }

    #[test]
    fn the_answer_names_the_room_and_nobody_else() {
        let me = Some(&b"guest-5"[..]);
        assert!(is_join_answer(
            b"* you are in #room-3 (4 here)",
            "room-3",
            me
        ));
        assert!(is_join_answer(
            b"* guest-5 joined #room-3, 4 in it",
            "room-3",
            me
        ));
        assert!(is_join_answer(b"* last 2 lines of #room-3:", "room-3", me));
        // Lobby notices about others, even naming the same room.
        assert!(!is_join_answer(b"* guest-7 left for #room-3", "room-3", me));
        assert!(!is_join_answer(
            b"* guest-50 joined (9 online)",
            "room-3",
            me
        ));
        // Another room whose name starts the same, or a chat line.
        assert!(!is_join_answer(b"* you are in #room-30 (1)", "room-3", me));
        assert!(!is_join_answer(b"<guest-5> #room-3", "room-3", me));
        assert!(is_join_answer(b"* entered #room-3.", "room-3", me));
        assert!(is_join_answer(b"* entered #room-3", "room-3", None));
        // `xguest-7` is not a guest name.
        assert!(is_join_answer(b"* #room-3 xguest-7", "room-3", None));
    }
}

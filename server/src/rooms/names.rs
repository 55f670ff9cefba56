//! Who may be called what: names unique ignoring case, and guest names
//! (`guest-N`) never given twice.
//!
//! Behind a small trait because across several servers (the cluster
//! issue) both must hold cluster-wide: a Redis implementation would take a
//! number with `INCR` and claim a name with `SET NX` (owned by server and
//! client, released by its owner, expiring with a server that dies). The
//! in-process [`LocalNames`] is a map. Every method is called under the
//! names lock alone, never under the directory's or a room's (see the lock
//! order in [`super`]), so a slower implementation holds up other
//! connects and renames, never the relay nor delivery. The rooms keep
//! their own map of the names their clients hold (the directory's), so
//! [`Names::holder`] is not needed on their paths.

use std::collections::HashMap;

use super::ClientId;

/// Why a name was not claimed.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum NameRefused {
    /// Someone else holds it (any case).
    Taken,
    /// Who holds it cannot be asked now (a cluster cut off from Redis): it
    /// may well be free.
    Unknown,
}

/// A new client: its id and the guest name it starts with.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// A number never given before on this server: the client's id.
    pub id: ClientId,
    /// Its name, never given to another client: `guest-N` with N its id,
    /// unless the implementation says otherwise (a cluster cut off from
    /// Redis names it from a range of its own).
    pub name: String,
}

/// Name claims and guest numbers.
pub trait Names: Send {
    /// A new client's id and guest name, held for it from now on (as if
    /// claimed) until it is released.
    fn next_guest(&mut self) -> Guest;

    /// Claims `name` for client `id`; claiming a name it holds is fine.
    ///
    /// # Errors
    /// [`NameRefused::Taken`] when another client holds it, ignoring case;
    /// [`NameRefused::Unknown`] when that cannot be known now.
    fn claim(&mut self, name: &str, id: ClientId) -> Result<(), NameRefused>;

    /// Gives `name` back, if `id` holds it.
    fn release(&mut self, name: &str, id: ClientId);

    /// Who holds `name` (any case), if anyone.
    fn holder(&self, name: &str) -> Option<ClientId>;
}

/// The in-process [`Names`]: one server is the whole world.
pub struct LocalNames {
    /// Names in lower case, and who holds each.
    held: HashMap<String, ClientId>,
    /// Next `guest-N`.
    next: ClientId,
}

impl Default for LocalNames {
    fn default() -> Self {
        LocalNames {
            held: HashMap::new(),
            next: 1,
        }
    }
}

impl Names for LocalNames {
    fn next_guest(&mut self) -> Guest {
        let id = self.next;
        self.next += 1;
        let name = chat_common::name::guest(id);
        // A number never given before, and `guest-` is reserved: free.
        self.held.insert(name.to_ascii_lowercase(), id);
        Guest { id, name }
    }

    fn claim(&mut self, name: &str, id: ClientId) -> Result<(), NameRefused> {
        let holder = self.held.entry(name.to_ascii_lowercase()).or_insert(id);
        if *holder == id {
            Ok(())
        } else {
            Err(NameRefused::Taken)
        }
    }

    fn release(&mut self, name: &str, id: ClientId) {
        let key = name.to_ascii_lowercase();
        if self.held.get(&key) == Some(&id) {
            self.held.remove(&key);
        }
    }

    fn holder(&self, name: &str) -> Option<ClientId> {
        self.held.get(&name.to_ascii_lowercase()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are unique ignoring case, released only by their holder;
    /// numbers count up.
    #[test]
    fn claims_and_numbers() {
        let mut names = LocalNames::default();
        assert_eq!(names.next_guest().id, 1);
        assert_eq!(names.next_guest().name, "guest-2");
        assert_eq!(names.holder("GUEST-2"), Some(2), "held from the start");
        assert_eq!(names.claim("Bob", 1), Ok(()));
        assert_eq!(names.claim("bob", 1), Ok(()));
        assert_eq!(names.claim("BOB", 2), Err(NameRefused::Taken));
        names.release("bob", 2);
        assert_eq!(names.holder("bOb"), Some(1));
        names.release("bob", 1);
        assert_eq!(names.claim("bob", 2), Ok(()));
    }
}

//! The size of one UDP datagram, for the server's replies and the client's
//! requests alike.

/// Largest UDP payload over IPv4 (65,535 - 8 - 20): a longer message can
/// never travel in one datagram.
pub const MAX_DATAGRAM: usize = 65_507;

/// Largest UDP payload over IPv6 without jumbograms (65,535 - 8): the IPv6
/// payload length does not count the IPv6 header itself.
pub const MAX_DATAGRAM_V6: usize = 65_527;

//! An address or a block of addresses (CIDR), as a ban covers it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address, or a block of them: `len` leading bits of `net` (host bits
/// zero). IPv4 addresses are always held as IPv4, never as `::ffff:a.b.c.d`,
/// so a client of a dual-stack listener matches an IPv4 ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The block's first address (host bits zero; IPv4 as IPv4).
    net: IpAddr,
    /// Leading bits that must match: 32 or 128 for one address.
    len: u8,
}

impl Prefix {
    /// Exactly one address.
    pub fn host(ip: IpAddr) -> Prefix {
        let ip = ip.to_canonical();
        Prefix {
            net: ip,
            len: max_len(ip),
        }
    }

    /// `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`. Host bits are cleared
    /// (`192.0.2.7/24` is `192.0.2.0/24`).
    ///
    /// # Errors
    /// A line saying what is wrong.
    pub fn parse(text: &str) -> Result<Prefix, String> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let raw: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or a CIDR prefix"))?;
        let ip = raw.to_canonical();
        let Some(len) = len else {
            return Ok(Prefix::host(ip));
        };
        let too_long = || format!("{text:?}: the prefix length must be 0 to {}", max_len(raw));
        let len: u8 = len
            .parse()
            .ok()
            .filter(|&n| n <= max_len(raw))
            .ok_or_else(too_long)?;
        // `::ffff:192.0.2.0/120` is the IPv4 block `192.0.2.0/24`.
        let len = if raw.is_ipv6() && ip.is_ipv4() {
            len.checked_sub(96).ok_or_else(|| {
                format!("{text:?}: an IPv4-mapped prefix needs a length of 96 to 128")
            })?
        } else {
            len
        };
        let ip = mask(ip, len);
        Ok(Prefix { net: ip, len })
    }

    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.len) == self.net
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == max_len(self.net) {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{}/{}", self.net, self.len)
        }
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// `ip` with all but its first `len` bits cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & keep))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & keep))
        }
    }
}

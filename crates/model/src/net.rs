//! IPv4 helpers for networks: address arithmetic, ranges, subnets.

use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ModelError;

pub fn ip_add(ip: Ipv4Addr, n: u32) -> Option<Ipv4Addr> {
    u32::from(ip).checked_add(n).map(Ipv4Addr::from)
}

pub fn ip_diff(a: Ipv4Addr, base: Ipv4Addr) -> Option<u32> {
    u32::from(a).checked_sub(u32::from(base))
}

/// The netmask for a prefix length.
pub fn mask(bits: u8) -> u32 {
    if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits.min(32)))
    }
}

/// True when `a` and `b` are in the same subnet of `bits` prefix length.
pub fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, bits: u8) -> bool {
    u32::from(a) & mask(bits) == u32::from(b) & mask(bits)
}

/// An inclusive IPv4 range, written `10.0.1.1-10.0.1.50` (or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl IpRange {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }
    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for IpRange {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ModelError::new(
                "host_ranges",
                format!("'{s}' is not an address range like 10.0.1.1-10.0.1.50"),
            )
        };
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let first: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let last: Ipv4Addr = b.parse().map_err(|_| bad())?;
        if last < first {
            return Err(bad());
        }
        Ok(IpRange { first, last })
    }
}

impl Serialize for IpRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r: IpRange = "10.0.1.1-10.0.1.50".parse().unwrap();
        assert!(r.contains("10.0.1.50".parse().unwrap()));
        assert!(!r.contains("10.0.1.51".parse().unwrap()));
        assert!("10.0.1.9-10.0.1.1".parse::<IpRange>().is_err());
        assert_eq!(
            "10.0.0.1".parse::<IpRange>().unwrap().to_string(),
            "10.0.0.1"
        );
    }

    #[test]
    fn subnets() {
        assert!(same_subnet(
            "10.1.2.3".parse().unwrap(),
            "10.1.255.1".parse().unwrap(),
            16
        ));
        assert!(!same_subnet(
            "10.1.2.3".parse().unwrap(),
            "10.2.0.1".parse().unwrap(),
            16
        ));
        assert_eq!(mask(24), 0xffff_ff00);
        assert_eq!(mask(0), 0);
    }
}

//! Identifiers: object kinds, UIDs and MAC addresses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ModelError;

/// The kinds of object in the database. The lowercase name is used in the CLI
/// (`wulf node ...`), in API paths (`/api/v1/node`) and in store keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Node,
    Attrib,
    Boot,
    Image,
    Pool,
    Net,
    Host,
    Cluster,
    /// An administrator account (`wulf admin`).
    Admin,
    /// An installer repository: an ISO the head serves, or a URL (`wulf repo`).
    Repo,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Node,
        Kind::Attrib,
        Kind::Boot,
        Kind::Image,
        Kind::Pool,
        Kind::Net,
        Kind::Host,
        Kind::Cluster,
        Kind::Admin,
        Kind::Repo,
    ];

    /// The short name used in the CLI, API paths and store keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Attrib => "attrib",
            Kind::Boot => "boot",
            Kind::Image => "image",
            Kind::Pool => "pool",
            Kind::Net => "net",
            Kind::Host => "host",
            Kind::Cluster => "cluster",
            Kind::Admin => "admin",
            Kind::Repo => "repo",
        }
    }

    /// A human name for messages and table headers.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Attrib => "attribute group",
            Kind::Boot => "boot config",
            Kind::Image => "image",
            Kind::Pool => "naming pool",
            Kind::Net => "network",
            Kind::Host => "host",
            Kind::Cluster => "cluster settings",
            Kind::Admin => "admin account",
            Kind::Repo => "repo",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ModelError::new("kind", format!("unknown object kind '{s}'")))
    }
}

/// True when `s` is a UID: 32 lowercase hexadecimal characters.
pub fn is_uid(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True when `s` could be the start of a UID (5 to 31 lowercase hex characters).
pub fn is_uid_prefix(s: &str) -> bool {
    (5..32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A 48-bit Ethernet MAC address, printed as lowercase `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Error for a string that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a MAC address (expected six hex octets like 52:54:00:12:34:56)")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;
    /// Accepts `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff`, `aabb.ccdd.eeff` and `aabbccddeeff`,
    /// any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMac(s.to_string());
        let t = s.trim();
        let hex: String = if t.contains(':') || t.contains('-') {
            let parts: Vec<&str> = t.split([':', '-']).collect();
            if parts.len() != 6 || parts.iter().any(|p| p.is_empty() || p.len() > 2) {
                return Err(bad());
            }
            parts.iter().map(|p| format!("{p:0>2}")).collect()
        } else if t.contains('.') {
            let parts: Vec<&str> = t.split('.').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.len() != 4) {
                return Err(bad());
            }
            parts.concat()
        } else {
            t.to_string()
        };
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        let want = "52:54:00:ab:cd:ef";
        for s in [
            "52:54:00:AB:CD:EF",
            "52-54-00-ab-cd-ef",
            "5254.00ab.cdef",
            "525400abcdef",
            "52:54:0:ab:cd:ef",
        ] {
            assert_eq!(s.parse::<MacAddr>().unwrap().to_string(), want, "{s}");
        }
        for s in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:00",
            "zz:54:00:ab:cd:ef",
            "525400abcde",
            "1:2:3:4:5:666",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s}");
        }
    }

    #[test]
    fn uids() {
        assert!(is_uid("0123456789abcdef0123456789abcdef"));
        assert!(!is_uid("0123456789ABCDEF0123456789abcdef"));
        assert!(is_uid_prefix("01234"));
        assert!(!is_uid_prefix("0123"));
    }

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
        }
        assert!("nodes".parse::<Kind>().is_err());
    }
}

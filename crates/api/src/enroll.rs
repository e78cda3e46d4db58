//! Node enrollment: how a booting node gets its credential.
//!
//! The boot script a head serves to a node that is not up carries a one-time enrollment token
//! (`wulf.enroll=TOKEN` on the kernel command line), bound to the address the script was
//! asked from. The node trades it, once, from that address, at `POST /api/v1/node/enroll`
//! ([`EnrollRequest`]) for the credential of this boot ([`EnrollReply`]), which it then
//! presents as `node:<uid>:<credential>` (see [`crate::status::node_token`]). Each
//! enrollment replaces the node's previous credential.
//!
//! While its token is live (before the agent trades it), the initramfs downloads the node's
//! image with `Authorization: Bearer enroll:<uid>:<token>` ([`enroll_token`]).

use serde::{Deserialize, Serialize};

/// The path under `/api/v1`.
pub const PATH: &str = "/node/enroll";

/// `POST /api/v1/node/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The node's UID (`wulf.node=`).
    pub node: String,
    /// The enrollment token of its boot script (`wulf.enroll=`).
    pub token: String,
}

/// The answer to an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollReply {
    pub node: String,
    /// The node's credential for this boot.
    pub credential: String,
}

/// The bearer token a booting node fetches its image with: `enroll:<uid>:<token>`.
pub fn enroll_token(uid: &str, token: &str) -> String {
    format!("enroll:{uid}:{token}")
}

/// Splits an enrollment bearer token into (uid, token).
pub fn parse_enroll_token(bearer: &str) -> Option<(&str, &str)> {
    let rest = bearer.strip_prefix("enroll:")?;
    let (uid, token) = rest.split_once(':')?;
    (!uid.is_empty() && !token.is_empty()).then_some((uid, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enroll_tokens_round_trip() {
        let t = enroll_token("abc", "def");
        assert_eq!(t, "enroll:abc:def");
        assert_eq!(parse_enroll_token(&t), Some(("abc", "def")));
        assert_eq!(parse_enroll_token("node:abc:def"), None);
        assert_eq!(parse_enroll_token("enroll::x"), None);
        assert_eq!(parse_enroll_token("enroll:x:"), None);
        assert_eq!(parse_enroll_token("enroll:x"), None);
    }
}

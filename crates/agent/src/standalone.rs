//! `wulf-agent --standalone`: a server wulf did not boot reports like a booted node.
//!
//! An admin creates the node (`wulf node create name=store1 type=standalone --enroll-token`)
//! and hands the printed token (`UID.SECRET`, one use, 24 h) to the agent. The agent learns
//! its node UID from the token, trades it once at the head like a booting node trades its
//! boot's token ([`crate::enroll::obtain`]), and keeps the credential and the UID in
//! `STATE_DIR/agent.cred` (mode 0600, no boot id: it outlives reboots). Later starts use the
//! kept credential and need no token. Without a token flag the agent reads
//! `STATE_DIR/enroll.token` ([`TOKEN_NAME`]) and removes it once traded.

use std::path::Path;

use crate::send::SendError;

/// Where a standalone agent keeps its credential, agent.conf and attributes.ini.
pub const STATE_DIR: &str = "/var/lib/wulf-agent";
/// The credential file's name in the state directory.
pub const CRED_NAME: &str = "agent.cred";
/// The enrollment token's file in the state directory, read when no `--enroll-token` or
/// `--enroll-token-file` is given and no credential is kept; removed once the token is
/// traded (it is good for one use only). The packaged unit wulf-agent-standalone.service
/// relies on it: the admin drops the token there and starts the unit.
pub const TOKEN_NAME: &str = "enroll.token";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the enrollment token is not of the form UID.SECRET printed by `wulf node create … --enroll-token` or `wulf node -i NODE enroll-token`")]
    Malformed,
    #[error("cannot read the enrollment token from {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// The node UID and the whole token of a standalone enrollment token `UID.SECRET`.
pub fn split_token(token: &str) -> Result<(String, String), TokenError> {
    let token = token.trim();
    match token.split_once('.') {
        Some((uid, secret))
            if !uid.is_empty()
                && !secret.is_empty()
                && uid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && secret.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok((uid.to_string(), token.to_string()))
        }
        _ => Err(TokenError::Malformed),
    }
}

/// The token kept in file `path` (its first non-empty line).
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::File {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string())
}

/// The node UID named in the credential file at `path`, if any.
pub fn kept_node(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("node="))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// True when a head answered that the credential is not accepted (401 or 403).
pub fn credential_refused(e: &SendError) -> bool {
    match e {
        SendError::Status { status, .. } => matches!(status, 401 | 403),
        SendError::AllFailed(all) => all.iter().any(credential_refused),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_node() {
        let (uid, t) = split_token(" 01abc.00ff \n").unwrap();
        assert_eq!(uid, "01abc");
        assert_eq!(t, "01abc.00ff");
        for bad in ["", "abc", ".00ff", "01abc.", "01abc.xyz", "a b.00"] {
            assert!(split_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_kept_node_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join(CRED_NAME);
        assert_eq!(kept_node(&f), None);
        crate::enroll::save(&f, "u1", None, "c").unwrap();
        assert_eq!(kept_node(&f).as_deref(), Some("u1"));
        let e = |status| SendError::Status {
            head: "h".into(),
            status,
            message: String::new(),
        };
        assert!(credential_refused(&e(401)));
        assert!(credential_refused(&SendError::AllFailed(vec![
            e(500),
            e(401)
        ])));
        assert!(!credential_refused(&e(500)));
    }
}

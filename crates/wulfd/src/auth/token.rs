//! Signed tokens: `wulf1.PAYLOAD.SIGNATURE`, the payload base64url JSON [`Claims`], the
//! signature HMAC-SHA256 over `wulf1.PAYLOAD` with the cluster's token key (in the store, so
//! every head checks every head's tokens).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const PREFIX: &str = "wulf1.";

/// Access tokens are sent with every request; refresh tokens only to `/login/refresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Use {
    Access,
    Refresh,
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The account's UID (a recreated account with the same name is another account).
    pub sub: String,
    /// The account's name when the token was issued (for logs).
    pub name: String,
    /// The account's `token_generation` when the token was issued.
    pub generation: u64,
    /// The login session it belongs to (ended by `wulf logout`).
    pub session: String,
    #[serde(rename = "use")]
    pub usage: Use,
    /// Unix seconds.
    pub issued: u64,
    pub expires: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a wulf token")]
    Malformed,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token expired")]
    Expired,
}

fn mac(key: &[u8], signed: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(signed.as_bytes());
    m
}

/// True when `token` looks like one of ours (so the guard knows which check to apply).
pub fn is_signed_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

pub fn sign(key: &[u8], claims: &Claims) -> String {
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{PREFIX}{payload}");
    let sig = B64.encode(mac(key, &signed).finalize().into_bytes());
    format!("{signed}.{sig}")
}

/// The claims of a token with a valid signature that has not expired at `now`.
pub fn verify(key: &[u8], token: &str, now: u64) -> Result<Claims, TokenError> {
    let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (payload, sig) = rest.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
    let signed = &token[..PREFIX.len() + payload.len()];
    // Constant-time comparison inside `verify_slice`.
    mac(key, signed)
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    let bytes = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if claims.expires <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            sub: "0123456789abcdef0123456789abcdef".into(),
            name: "alice".into(),
            generation: 3,
            session: "s1".into(),
            usage: Use::Access,
            issued: 1000,
            expires: 2000,
        }
    }

    #[test]
    fn signs_and_verifies() {
        let t = sign(b"key", &claims());
        assert!(is_signed_token(&t));
        assert_eq!(verify(b"key", &t, 1500), Ok(claims()));
        assert_eq!(verify(b"key", &t, 2000), Err(TokenError::Expired));
        assert_eq!(verify(b"other", &t, 1500), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampering_is_caught() {
        let t = sign(b"key", &claims());
        let (head, sig) = t.rsplit_once('.').unwrap();
        // A payload claiming another account, with the old signature.
        let mut forged = claims();
        forged.name = "root".into();
        forged.expires = u64::MAX;
        let fake = format!(
            "{PREFIX}{}.{sig}",
            B64.encode(serde_json::to_vec(&forged).unwrap())
        );
        assert_eq!(verify(b"key", &fake, 1500), Err(TokenError::BadSignature));
        // A flipped signature byte.
        let mut bad = sig.as_bytes().to_vec();
        bad[0] = if bad[0] == b'A' { b'B' } else { b'A' };
        let bad = format!("{head}.{}", String::from_utf8(bad).unwrap());
        assert_eq!(verify(b"key", &bad, 1500), Err(TokenError::BadSignature));
        for junk in ["", "wulf1.", "wulf1..", "wulf1.x.y", "Bearer", "wulf2.a.b"] {
            assert!(verify(b"key", junk, 1500).is_err(), "{junk}");
        }
    }
}

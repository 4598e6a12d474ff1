//! User session tokens: what a portal or dashboard backend hands to one of
//! its end users so their browser can open that user's inbox channel
//! (`notifications:<user>`) without ever seeing an API key.
//!
//! A token is `bt_<payload>.<signature>`: the payload is base64url JSON
//! `{"t": workspace, "u": user, "exp": unix seconds}` and the signature
//! HMAC-SHA256 of the payload text under the server's secret. Tokens are
//! minted by `POST /v1/realtime/tokens` with an admin key and verified
//! without any lookup; they expire, and rotating the secret revokes all.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Prefix of every token.
pub const PREFIX: &str = "bt_";

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Workspace id.
    #[serde(rename = "t")]
    pub tenant: String,
    /// User id.
    #[serde(rename = "u")]
    pub user: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    /// A signer with `secret` (at least 32 bytes).
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// The signer whose secret is in `path`, created (32 random bytes,
    /// mode 0600) on first use. Deleting the file revokes every token.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(secret) if secret.len() >= 32 => return Ok(Self::new(secret)),
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} holds fewer than 32 bytes", path.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let secret: [u8; 32] = rand::random();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, secret)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(Self::new(secret.to_vec()))
    }

    /// A token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_as(PREFIX, claims)
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<Claims> {
        let claims: Claims = self.verify_as(PREFIX, token)?;
        if claims.exp <= now_secs {
            return Err(Error::InvalidToken("expired".to_owned()));
        }
        Ok(claims)
    }

    /// A token `<prefix><payload>.<signature>` for any claims (other kinds
    /// of token, e.g. embed tokens, use their own prefix and claims).
    pub fn sign_as<C: Serialize>(&self, prefix: &str, claims: &C) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{prefix}{payload}.{sig}")
    }

    /// The claims of a token [`TokenSigner::sign_as`] made with `prefix`
    /// and this secret (the signature is checked before the payload is
    /// read; expiry is the caller's to check).
    pub fn verify_as<C: DeserializeOwned>(&self, prefix: &str, token: &str) -> Result<C> {
        let bad = |why: &str| Error::InvalidToken(why.to_owned());
        let body = token
            .strip_prefix(prefix)
            .ok_or_else(|| bad("not a Beacon token"))?;
        let (payload, sig) = body.split_once('.').ok_or_else(|| bad("malformed"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| bad("malformed signature"))?;
        self.mac(payload)
            .verify_slice(&sig)
            .map_err(|_| bad("bad signature"))?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| bad("malformed payload"))?;
        serde_json::from_slice(&json).map_err(|_| bad("malformed payload"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_expiry_and_forgery() {
        let s = TokenSigner::new(vec![7; 32]);
        let claims = Claims {
            tenant: "ws_1".into(),
            user: "ann".into(),
            exp: 1_000,
        };
        let token = s.sign(&claims);
        assert_eq!(s.verify(&token, 999).expect("valid"), claims);
        assert!(s.verify(&token, 1_000).is_err(), "expired");
        let other = TokenSigner::new(vec![8; 32]);
        assert!(other.verify(&token, 0).is_err(), "other secret");
        // A payload swapped under the old signature.
        let forged_claims = Claims {
            user: "bob".into(),
            ..claims
        };
        let forged = s.sign(&forged_claims);
        let (_, sig) = token.rsplit_once('.').expect("sig");
        let (payload, _) = forged.rsplit_once('.').expect("payload");
        assert!(s.verify(&format!("{payload}.{sig}"), 0).is_err());
        for junk in ["", "bt_", "bt_x.y", "bk_r_abc", "bt_....", "bt_\u{0}.\u{0}"] {
            assert!(s.verify(junk, 0).is_err(), "{junk:?}");
        }
    }
}

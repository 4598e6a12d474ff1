//! Who is calling: API keys and the credentials that carry them.
//!
//! [`Credentials::parse`] is the one reader of an `Authorization` value,
//! for HTTP, Flight SQL (gRPC metadata) alike: `Bearer <key>`, or HTTP
//! Basic with the key as the password, or as the user name when the
//! password is empty (as Segment's libraries send it); the scheme is case
//! insensitive. The PostgreSQL wire carries the same [`Credentials`] as its
//! user (the workspace) and password (the key). HTTP ingest routes also
//! take a Segment body's `writeKey`.
//!
//! [`crate::access::authenticate_secret`] turns the key into a caller;
//! [`crate::access::gate`] checks it against each route's class.

use base64::Engine as _;

/// Credentials a client presents: an API key, with the user name it came
/// with, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name given next to the key (HTTP Basic, the PostgreSQL
    /// wire's user), if any.
    pub user: Option<String>,
    /// The API key (or a user session token).
    pub key: String,
}

/// Why an `Authorization` value is not credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsError {
    /// The value is not visible ASCII text.
    NotText,
    /// The scheme is neither Basic nor Bearer.
    UnknownScheme,
    /// Basic credentials that are not base64 of UTF-8 text.
    MalformedBasic,
}

impl Credentials {
    /// Reads an `Authorization` value: `Bearer <key>`, or
    /// `Basic base64(user:password)` whose key is the password, or the user
    /// name when the password is empty (`key:` or `key`). The scheme is
    /// case insensitive.
    pub fn parse(value: &[u8]) -> Result<Self, CredentialsError> {
        let value = std::str::from_utf8(value)
            .ok()
            .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
            .ok_or(CredentialsError::NotText)?
            .trim();
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or(CredentialsError::UnknownScheme)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Self {
                user: None,
                key: rest.to_owned(),
            });
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(CredentialsError::UnknownScheme);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| CredentialsError::MalformedBasic)?;
        let decoded = String::from_utf8(decoded).map_err(|_| CredentialsError::MalformedBasic)?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        Ok(Self::password(user, password))
    }

    /// User name and password (HTTP Basic, the PostgreSQL wire): the key
    /// is the password, or the user name when the password is empty.
    pub fn password(user: &str, password: &str) -> Self {
        if password.is_empty() {
            Self {
                user: None,
                key: user.to_owned(),
            }
        } else {
            Self {
                user: Some(user.to_owned()).filter(|u| !u.is_empty()),
                key: password.to_owned(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::{Credentials, CredentialsError};

    fn basic(text: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(text);
        format!("Basic {encoded}").into_bytes()
    }

    fn key(user: Option<&str>, key: &str) -> Result<Credentials, CredentialsError> {
        Ok(Credentials {
            user: user.map(str::to_owned),
            key: key.to_owned(),
        })
    }

    #[test]
    fn basic_with_the_key_as_user_name() {
        assert_eq!(Credentials::parse(&basic("bk_w_1:")), key(None, "bk_w_1"));
        assert_eq!(Credentials::parse(&basic("bk_w_1")), key(None, "bk_w_1"));
    }

    #[test]
    fn basic_with_the_key_as_password() {
        assert_eq!(Credentials::parse(&basic(":bk_r_1")), key(None, "bk_r_1"));
        assert_eq!(
            Credentials::parse(&basic("shop:bk_r_1")),
            key(Some("shop"), "bk_r_1")
        );
    }

    #[test]
    fn schemes_are_case_insensitive() {
        for value in [
            "Bearer bk_r_1",
            "bearer bk_r_1",
            "BEARER  bk_r_1 ",
            "bEaReR bk_r_1",
        ] {
            assert_eq!(
                Credentials::parse(value.as_bytes()),
                key(None, "bk_r_1"),
                "{value}"
            );
        }
        let mut lower = basic("bk_w_1:");
        lower[..5].copy_from_slice(b"basic");
        assert_eq!(Credentials::parse(&lower), key(None, "bk_w_1"));
    }

    #[test]
    fn garbage_is_refused() {
        use CredentialsError::*;
        for (value, error) in [
            (&b"Digest abc"[..], UnknownScheme),
            (b"Bearer", UnknownScheme),
            (b"bk_r_1", UnknownScheme),
            (b"", UnknownScheme),
            (b"Basic %%%", MalformedBasic),
            (b"Basic /w==", MalformedBasic),
            (b"Bearer \xff", NotText),
        ] {
            assert_eq!(Credentials::parse(value), Err(error), "{value:?}");
        }
    }
}

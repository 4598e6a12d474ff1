//! Passwords: argon2id hashes (the `argon2` crate, RustCrypto) with the
//! OWASP parameters (19 MiB, 2 passes, 1 lane: `Params::DEFAULT`), and the
//! policy a new password must meet.
//!
//! Policy (NIST SP 800-63B rather than composition rules): 12 to 256
//! characters, not one of the most common passwords, not the user's email
//! or name, and not a single repeated character or a plain run such as
//! `123456789012`. Hashing takes tens of milliseconds and runs on the
//! blocking pool ([`hash`], [`verify`] are async for that reason).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::ApiError;

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 12;
/// Longest password accepted (argon2 takes any length; this bounds work).
pub const MAX_LENGTH: usize = 256;

/// The most common passwords of at least [`MIN_LENGTH`] characters in the
/// public breach corpora (lower-cased); the short ones fail on length.
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "qwertyuiopasdfgh",
    "qwertyuiop123",
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "iloveyou1234",
    "administrator",
    "administrator1",
    "welcome12345",
    "letmein12345",
    "changeme1234",
    "qwerty123456",
    "abc123456789",
    "111111111111",
    "000000000000",
    "aaaaaaaaaaaa",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "football1234",
    "baseball1234",
    "superman1234",
    "trustno11234",
    "sunshine1234",
    "princess1234",
    "p@ssw0rd1234",
    "p@ssword1234",
    "passw0rd1234",
];

/// Checks a new password against the policy: 400 `weak_password` saying
/// what is wrong.
pub fn check_policy(password: &str, email: Option<&str>, name: Option<&str>) -> Result<(), ApiError> {
    let weak = |why: &str| ApiError::bad_request("weak_password", why.to_owned());
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        return Err(weak(&format!(
            "a password needs at least {MIN_LENGTH} characters (a short sentence works well)"
        )));
    }
    if chars > MAX_LENGTH {
        return Err(weak(&format!("a password has at most {MAX_LENGTH} characters")));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Err(weak("this password is one of the most common ones"));
    }
    let first = lower.chars().next().unwrap_or(' ');
    if lower.chars().all(|c| c == first) {
        return Err(weak("a password cannot be one repeated character"));
    }
    let bytes = lower.as_bytes();
    let run = bytes.windows(2).all(|w| w[1] == w[0].wrapping_add(1))
        || bytes.windows(2).all(|w| w[1] == w[0].wrapping_sub(1));
    if run {
        return Err(weak("a password cannot be a plain run like 123456789012"));
    }
    for own in [email, email.and_then(|e| e.split('@').next()), name]
        .into_iter()
        .flatten()
    {
        let own = own.trim().to_lowercase();
        if own.len() >= 4 && lower.contains(&own) {
            return Err(weak("a password cannot contain your email address or name"));
        }
    }
    Ok(())
}

/// Hashes a password (argon2id, a fresh random salt) on the blocking pool.
pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| ApiError::internal(&e))?
}

/// [`hash`] on the calling thread (the CLI).
pub fn hash_now(password: &str) -> Result<String, ApiError> {
    let hashed: Result<PasswordHash, _> = Argon2::default().hash_password(password.as_bytes());
    hashed
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(&e))
}

/// Checks a password against a stored hash on the blocking pool. Without a
/// hash (unknown user, no password set) it checks against a fixed dummy
/// hash and answers false, so that the time taken does not tell whether
/// the account exists.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let dummy = stored.is_none();
        let stored = stored.unwrap_or_else(|| DUMMY.get_or_init(|| hash_now("dummy password that never matches").unwrap_or_default()).clone());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && !dummy
    })
    .await
    .unwrap_or(false)
}

static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A random password for the CLI and the demo owner (24 base62
/// characters, 143 bits).
pub fn generate() -> String {
    super::store::random_secret(24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_refuses_weak_passwords_and_says_why() {
        for (password, why) in [
            ("short", "at least 12"),
            ("password1234", "most common"),
            ("zzzzzzzzzzzzzz", "repeated"),
            ("abcdefghijklmn", "plain run"),
            ("ann.smith-is-great", "email address or name"),
        ] {
            let e = check_policy(password, Some("ann.smith@shop.example"), Some("Ann"))
                .expect_err(password);
            assert!(e.message().contains(why), "{password}: {}", e.message());
        }
        check_policy("correct horse battery staple", Some("ann@shop.example"), None)
            .expect("a passphrase is fine");
    }

    #[tokio::test]
    async fn hashes_verify_and_do_not_contain_the_password() {
        let h = hash("correct horse battery staple".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!h.contains("horse"));
        assert!(verify("correct horse battery staple".into(), Some(h.clone())).await);
        assert!(!verify("wrong horse battery staple".into(), Some(h)).await);
        assert!(!verify("dummy password that never matches".into(), None).await);
    }
}

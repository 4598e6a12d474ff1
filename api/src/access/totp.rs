//! Second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step
//! of skew, as every authenticator app reads them) with the `totp-rs`
//! crate, and one-time recovery codes.
//!
//! A code is accepted once: the step it matched is stored and a code of
//! that step or an earlier one is refused (RFC 6238 §5.2).

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// A new seed, base32 (160 random bits).
pub fn new_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    Secret::from(bytes).to_base32()
}

fn totp(secret: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret).ok()?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(1)
        .with_secret(secret)
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some("Beacon"))
        .build()
        .ok()
}

/// The `otpauth://` URL an authenticator app scans.
pub fn url(secret: &str, account: &str) -> Option<String> {
    totp(secret, account)?.to_url().ok()
}

/// The step a code matches at `now_secs`, if any.
pub fn check(secret: &str, code: &str, now_secs: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    totp(secret, "check")?.check(&code, now_secs)
}

/// The code at a time (the unit tests).
#[cfg(test)]
pub fn code_at(secret: &str, now_secs: u64) -> Option<String> {
    Some(totp(secret, "check")?.generate(now_secs).to_string())
}

/// Ten recovery codes (`xxxxx-xxxxx`, base62: 59 bits each).
pub fn recovery_codes() -> Vec<String> {
    (0..10)
        .map(|_| {
            let s = super::store::random_secret(10);
            format!("{}-{}", &s[..5], &s[5..])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_check_within_one_step_of_skew() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now).expect("code");
        assert_eq!(code.len(), 6);
        assert_eq!(check(&secret, &code, now), Some(now / 30));
        assert!(check(&secret, &code, now + 30).is_some(), "one step late");
        assert!(check(&secret, &code, now + 90).is_none(), "too late");
        assert!(url(&secret, "ann@shop.example").expect("url").starts_with("otpauth://totp/Beacon:ann"));
    }
}

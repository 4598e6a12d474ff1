//! Rate limits: one GCRA limiter (the `governor` crate) per bucket of
//! route classes, keyed by who is calling: the key (`key:<prefix>`), the
//! signed-in person or token user (`user:<workspace>/<id>`), or, without
//! credentials (sign-in, invitation and reset links, credentials that come
//! in the body), the client's IP address (`ip:<addr>`).
//!
//! Buckets and their defaults (`[access.limits]`, per minute with a
//! burst): `ingest` (ingest routes), `query` (dashboards, SQL, real-time
//! handshakes, inboxes), `admin` (settings, users, keys, rules, account),
//! `login` (sign-in class, per IP). 0 per minute turns a bucket off. A
//! refusal is 429 with `Retry-After`; every limited answer carries
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (IETF
//! draft `ratelimit-headers`).
//!
//! The sign-in brute-force protection is separate ([`super::gate::throttle`]):
//! it counts failures, not requests.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use super::Class;

/// A rate: so many requests a minute, with bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained requests per minute (0: unlimited).
    pub per_minute: u32,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

/// `[access.limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Ingest routes, per key (or IP when the key is in the body).
    pub ingest: Rate,
    /// Dashboards, SQL, real-time handshakes, inboxes.
    pub query: Rate,
    /// Administration and account routes.
    pub admin: Rate,
    /// Sign-in, invitation and reset routes, per IP address.
    pub login: Rate,
}

/// A bucket of route classes sharing a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Ingest.
    Ingest,
    /// Reading and querying.
    Query,
    /// Administration.
    Admin,
    /// Sign-in.
    Login,
}

impl Bucket {
    /// The bucket of a class; `None`: not limited (health, metrics).
    pub fn of(class: Class) -> Option<Self> {
        match class {
            Class::Public => None,
            Class::SignIn => Some(Self::Login),
            Class::Ingest => Some(Self::Ingest),
            Class::View | Class::Query | Class::Realtime | Class::Inbox => Some(Self::Query),
            Class::Account | Class::Rules | Class::Admin | Class::Owner => Some(Self::Admin),
        }
    }
}

type Limiter = RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// The limiters.
#[derive(Debug)]
pub struct Limits {
    ingest: Option<Limiter>,
    query: Option<Limiter>,
    admin: Option<Limiter>,
    login: Option<Limiter>,
    clock: DefaultClock,
}

/// The rate-limit headers of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// `RateLimit-Limit`: the burst.
    pub limit: u32,
    /// `RateLimit-Remaining`.
    pub remaining: u32,
    /// `RateLimit-Reset`: seconds until the burst is whole again.
    pub reset_secs: u64,
}

/// A refusal: the headers, and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The headers (remaining 0).
    pub headers: Headers,
    /// `Retry-After`, seconds (at least 1).
    pub retry_after_secs: u64,
}

fn limiter(rate: Rate) -> Option<Limiter> {
    let per_minute = NonZeroU32::new(rate.per_minute)?;
    let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Some(RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)).with_middleware())
}

impl Limits {
    /// Limiters for a configuration.
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            ingest: limiter(config.ingest),
            query: limiter(config.query),
            admin: limiter(config.admin),
            login: limiter(config.login),
            clock: DefaultClock::default(),
        }
    }

    fn limiter(&self, bucket: Bucket) -> Option<&Limiter> {
        match bucket {
            Bucket::Ingest => self.ingest.as_ref(),
            Bucket::Query => self.query.as_ref(),
            Bucket::Admin => self.admin.as_ref(),
            Bucket::Login => self.login.as_ref(),
        }
    }

    /// Takes one request of `who` from `bucket`: the headers to send, or
    /// the refusal; `Ok(None)` when the bucket is unlimited.
    pub fn check(&self, bucket: Bucket, who: &str) -> Result<Option<Headers>, Refused> {
        let Some(limiter) = self.limiter(bucket) else {
            return Ok(None);
        };
        let key = who.to_owned();
        match limiter.check_key(&key) {
            Ok(snapshot) => {
                let quota = snapshot.quota();
                let remaining = snapshot.remaining_burst_capacity();
                let missing = quota.burst_size().get().saturating_sub(remaining);
                let reset = quota.replenish_interval() * missing;
                Ok(Some(Headers {
                    limit: quota.burst_size().get(),
                    remaining,
                    reset_secs: ceil_secs(reset),
                }))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let quota = not_until.quota();
                Err(Refused {
                    headers: Headers {
                        limit: quota.burst_size().get(),
                        remaining: 0,
                        reset_secs: ceil_secs(quota.burst_size_replenished_in()),
                    },
                    retry_after_secs: ceil_secs(wait).max(1),
                })
            }
        }
    }

    /// Forgets the callers whose limits are whole again (bounds memory;
    /// the server calls it every minute).
    pub fn sweep(&self) {
        for limiter in [&self.ingest, &self.query, &self.admin, &self.login]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_over_the_burst_is_refused_and_another_is_not() {
        let rate = Rate {
            per_minute: 60,
            burst: 3,
        };
        let limits = Limits::new(&LimitsConfig {
            ingest: rate,
            query: rate,
            admin: rate,
            login: Rate {
                per_minute: 0,
                burst: 0,
            },
        });
        for remaining in [2, 1, 0] {
            let h = limits.check(Bucket::Query, "key:a").expect("allowed").expect("limited");
            assert_eq!((h.limit, h.remaining), (3, remaining));
        }
        let refused = limits.check(Bucket::Query, "key:a").expect_err("over the burst");
        assert_eq!(refused.retry_after_secs, 1, "one request a second comes back");
        assert!(limits.check(Bucket::Query, "key:b").is_ok(), "another caller");
        assert!(limits.check(Bucket::Admin, "key:a").is_ok(), "another bucket");
        assert_eq!(limits.check(Bucket::Login, "ip:x"), Ok(None), "off");
    }
}

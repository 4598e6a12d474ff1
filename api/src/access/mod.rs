//! People and access: who is calling, and what they may call.
//!
//! Three kinds of callers ([`Who`]):
//! - a person signed in with a password: a server-side session behind an
//!   HttpOnly cookie ([`session`]), with a role ([`UserRole`]);
//! - an API key (`Authorization: Bearer`/Basic, a Segment body's
//!   `writeKey`, the PostgreSQL password, Flight SQL's `authorization`)
//!   with scopes ([`Scope`]), maybe a user's: then never more than that
//!   user's role allows;
//! - a user session token (`bt_...`, signed by the server for embedded
//!   portals): that user's inbox and notifications channel only.
//!
//! Every route has a [`Class`]; [`ACCESS`] is the one table that says which
//! roles and scopes may call each class. The router is built with each
//! route's class ([`crate::routes`]), and [`gate::authorize`] enforces it
//! before any handler runs (fail-closed: a route without a class answers
//! 500). Handlers add what depends on the resource: an analyst changes only
//! their own alert rules, only owners manage owners, a viewer opens only
//! their own inbox. `beacon routes` prints the table for every route.

pub mod audit;
pub mod cli;
pub mod embed;
pub mod gate;
pub mod limits;
pub mod password;
pub mod session;
pub mod store;
pub mod totp;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use beacon_ingest::{Scope, UserRole};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// What a route does, for access control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Health, readiness, metrics: no credentials.
    Public,
    /// Signing in, accepting an invitation, resetting a password: no
    /// credentials, rate-limited per IP address.
    SignIn,
    /// A signed-in person's own account: who am I, sign out, password,
    /// second factor.
    Account,
    /// Sending events.
    Ingest,
    /// Dashboards: analytics, forecasts and segments as computed, the
    /// workspace's settings and members, alert rules and history.
    View,
    /// SQL, live SQL, exports, forecasting and scoring on demand.
    Query,
    /// WebSocket and SSE channels.
    Realtime,
    /// A user's inbox and preferences.
    Inbox,
    /// Creating and changing alert rules and silences (analysts: their own
    /// rules).
    Rules,
    /// Settings, users, keys, webhooks, every alert rule, notifications,
    /// model training, the audit log.
    Admin,
    /// Managing owners.
    Owner,
}

/// Who may call a class of routes.
#[derive(Debug)]
pub struct Grant {
    /// The class.
    pub class: Class,
    /// Roles of signed-in people (and of `role:` key scopes).
    pub roles: &'static [UserRole],
    /// Key scopes besides `role:`.
    pub scopes: &'static [Scope],
    /// What the class is, for refusals ("{what} needs ...").
    pub what: &'static str,
}

use UserRole::{Admin as RoleAdmin, Analyst, Owner, Viewer};

const EVERYONE: &[UserRole] = &[Viewer, Analyst, RoleAdmin, Owner];
const ANALYSTS: &[UserRole] = &[Analyst, RoleAdmin, Owner];
const ADMINS: &[UserRole] = &[RoleAdmin, Owner];

/// The access table: for each class, the roles and the key scopes that may
/// call it. `Public` and `SignIn` need no credentials; user session tokens
/// reach `Inbox` and `Realtime` only (their own user's).
pub const ACCESS: &[Grant] = &[
    Grant {
        class: Class::Public,
        roles: EVERYONE,
        scopes: &[],
        what: "this route",
    },
    Grant {
        class: Class::SignIn,
        roles: EVERYONE,
        scopes: &[],
        what: "signing in",
    },
    Grant {
        class: Class::Account,
        roles: EVERYONE,
        scopes: &[],
        what: "managing your own account",
    },
    Grant {
        class: Class::Ingest,
        roles: ANALYSTS,
        scopes: &[Scope::Ingest, Scope::Admin],
        what: "sending events",
    },
    Grant {
        class: Class::View,
        roles: EVERYONE,
        scopes: &[Scope::Query, Scope::Admin],
        what: "reading dashboards",
    },
    Grant {
        class: Class::Query,
        roles: ANALYSTS,
        scopes: &[Scope::Query, Scope::Admin],
        what: "SQL, analytics on demand and exports",
    },
    Grant {
        class: Class::Realtime,
        roles: EVERYONE,
        scopes: &[Scope::Realtime, Scope::Query, Scope::Admin],
        what: "real-time channels",
    },
    Grant {
        class: Class::Inbox,
        roles: EVERYONE,
        scopes: &[Scope::Realtime, Scope::Admin],
        what: "users' inboxes",
    },
    Grant {
        class: Class::Rules,
        roles: ANALYSTS,
        scopes: &[Scope::Admin],
        what: "changing alert rules",
    },
    Grant {
        class: Class::Admin,
        roles: ADMINS,
        scopes: &[Scope::Admin],
        what: "workspace administration",
    },
    Grant {
        class: Class::Owner,
        roles: &[Owner],
        scopes: &[],
        what: "managing owners",
    },
];

impl Class {
    /// The class's row of [`ACCESS`].
    pub fn grant(self) -> &'static Grant {
        ACCESS
            .iter()
            .find(|g| g.class == self)
            .expect("every class has a row in ACCESS")
    }

    /// Whether no credentials are needed.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Public | Self::SignIn)
    }

    /// Whether a person of `role` may call it.
    pub fn allows_role(self, role: UserRole) -> bool {
        self.grant().roles.contains(&role)
    }

    /// Whether a key with `scope` may call it.
    pub fn allows_scope(self, scope: Scope) -> bool {
        match scope {
            Scope::Role(role) => self.allows_role(role) && self != Self::Account,
            other => self.grant().scopes.contains(&other),
        }
    }

    /// "{what} needs the role ... (or a key with scope ...)".
    fn needs(self) -> String {
        let g = self.grant();
        let roles: Vec<&str> = g.roles.iter().map(|r| r.as_str()).collect();
        let mut scopes: Vec<String> = g.scopes.iter().map(|s| s.name()).collect();
        if self != Self::Account {
            scopes.extend(g.roles.iter().map(|r| Scope::Role(*r).name()));
        }
        if scopes.is_empty() {
            format!("{} needs a signed-in {}", g.what, roles.join(" or "))
        } else {
            format!(
                "{} needs the role {} (or a key with scope {})",
                g.what,
                roles.join(", "),
                scopes.join(", ")
            )
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Who {
    /// A person signed in with a password.
    Session {
        /// The user.
        user: String,
        /// Their role, as stored now.
        role: UserRole,
        /// The session's CSRF token (cookie-authenticated changes must
        /// echo it in `X-CSRF-Token`).
        csrf: String,
    },
    /// An API key.
    Key {
        /// Its listing prefix.
        prefix: String,
        /// Its scopes.
        scopes: Vec<Scope>,
        /// The user it belongs to and their role, if any.
        owner: Option<(String, UserRole)>,
    },
    /// A user session token (portals).
    Token {
        /// The user.
        user: String,
    },
    /// An embed token (portal components, TV links): read-only
    /// dashboards, limited to the routes of [`embed::ROUTES`] and, with a
    /// customer, to that customer's rows.
    Embed {
        /// The token's id.
        id: String,
        /// The customer (`user_id`) whose rows alone it sees, if any.
        customer: Option<String>,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Workspace id.
    pub tenant: String,
    /// Who.
    pub who: Who,
}

impl Caller {
    /// Whether the caller may call routes of `class`.
    pub fn may(&self, class: Class) -> bool {
        if class.is_open() {
            return true;
        }
        match &self.who {
            Who::Session { role, .. } => class.allows_role(*role),
            Who::Key { scopes, owner, .. } => {
                scopes.iter().any(|s| class.allows_scope(*s))
                    && owner.as_ref().is_none_or(|(_, role)| class.allows_role(*role))
            }
            Who::Token { .. } => matches!(class, Class::Inbox | Class::Realtime),
            // Its HTTP routes are the gate's list (embed::ROUTES), never a
            // whole class: the wire protocols and every other route
            // refuse it.
            Who::Embed { .. } => class == Class::Realtime,
        }
    }

    /// 403 naming what is needed and what the caller is, unless
    /// [`Caller::may`].
    pub fn require(&self, class: Class) -> Result<(), ApiError> {
        if self.may(class) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "{}; {}",
            class.needs(),
            self.describe()
        ))
        .with_detail("needs", serde_json::json!(class)))
    }

    /// "you are signed in as a viewer", "this key has scopes ingest", ...
    pub fn describe(&self) -> String {
        match &self.who {
            Who::Session { role, .. } => format!("you are signed in as {role}"),
            Who::Key { scopes, owner, .. } => {
                let scopes = Scope::join(scopes).replace(',', ", ");
                match owner {
                    Some((user, role)) => format!(
                        "this key has scopes {scopes} and belongs to {user}, who is {role}"
                    ),
                    None => format!("this key has scopes {scopes}"),
                }
            }
            Who::Token { .. } => "a user session token opens only its user's inbox".into(),
            Who::Embed { customer: None, .. } => {
                "an embed token opens only read-only dashboards".into()
            }
            Who::Embed {
                customer: Some(_), ..
            } => "an embed token opens only its customer's read-only dashboards".into(),
        }
    }

    /// The person calling, if any (a session's, a token's, a key's owner).
    pub fn user(&self) -> Option<&str> {
        match &self.who {
            Who::Session { user, .. } | Who::Token { user } => Some(user),
            Who::Key { owner, .. } => owner.as_ref().map(|(u, _)| u.as_str()),
            Who::Embed { .. } => None,
        }
    }

    /// Which rows the caller's queries see: one customer's for a
    /// customer's embed token, else every row.
    pub fn rows(&self) -> beacon_engine::RowScope {
        match &self.who {
            Who::Embed {
                customer: Some(c), ..
            } => beacon_engine::RowScope::Customer(c.clone()),
            _ => beacon_engine::RowScope::All,
        }
    }

    /// How the audit log names the caller: `user:<id>`, `key:<prefix>`,
    /// `token:<user>`.
    pub fn actor(&self) -> String {
        match &self.who {
            Who::Session { user, .. } => format!("user:{user}"),
            Who::Key { prefix, .. } => format!("key:{prefix}"),
            Who::Token { user } => format!("token:{user}"),
            Who::Embed { id, .. } => format!("embed:{id}"),
        }
    }

    /// The workspace and user a per-user route acts on: the caller's own
    /// user when it is a person (another user only for admins), or the user
    /// the request names (`?user=`, the path) for a key.
    pub fn user_for(&self, named: Option<&str>) -> Result<(String, String), ApiError> {
        let own = match &self.who {
            Who::Session { user, .. } | Who::Token { user } => Some(user.as_str()),
            Who::Key { .. } | Who::Embed { .. } => None,
        };
        if matches!(self.who, Who::Embed { .. }) {
            return Err(ApiError::forbidden("an embed token opens no inbox"));
        }
        match (own, named) {
            (Some(own), None) => Ok((self.tenant.clone(), own.to_owned())),
            (Some(own), Some(named)) if own == named => Ok((self.tenant.clone(), own.to_owned())),
            (Some(_), Some(named)) => {
                if matches!(self.who, Who::Session { .. }) && self.may(Class::Admin) {
                    Ok((self.tenant.clone(), named.to_owned()))
                } else {
                    Err(ApiError::forbidden(
                        "you can open only your own inbox and preferences",
                    ))
                }
            }
            (None, Some(named)) => Ok((self.tenant.clone(), named.to_owned())),
            (None, None) => Err(ApiError::bad_request(
                "invalid_request",
                "give the user (?user=<id>) or use the user's session",
            )),
        }
    }

    /// Whether the caller may read privileged tables (the audit log).
    pub fn is_admin(&self) -> bool {
        self.may(Class::Admin)
    }

    /// What the real-time hub lets this caller subscribe to.
    pub fn hub_access(&self) -> beacon_realtime::Access {
        match &self.who {
            Who::Token { user } => beacon_realtime::Access::User(user.clone()),
            Who::Embed { customer, .. } => beacon_realtime::Access::Embed {
                customer: customer.clone(),
            },
            _ => beacon_realtime::Access::Member {
                user: self.user().map(str::to_owned),
                sql: self.may(Class::Query),
            },
        }
    }
}

/// The caller [`gate::authorize`] authenticated (401 if it let the request
/// through without credentials, as it does for ingest and real-time routes
/// whose credentials may come later).
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(gate::missing_credentials)
    }
}

impl OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        Ok(parts.extensions.get::<Caller>().cloned())
    }
}

/// Authenticates a secret (an API key or a user session token) the way
/// every listener does: 401 when unknown, revoked or expired.
pub fn authenticate_secret(state: &AppState, secret: &str) -> Result<Caller, ApiError> {
    if secret.is_empty() {
        return Err(gate::missing_credentials());
    }
    if secret.starts_with(embed::PREFIX) {
        return embed::authenticate(state, secret);
    }
    if secret.starts_with(beacon_realtime::token::PREFIX) {
        let claims = state
            .tokens
            .verify(secret, chrono::Utc::now().timestamp())?;
        return Ok(Caller {
            tenant: claims.tenant,
            who: Who::Token { user: claims.user },
        });
    }
    let Some(info) = state.store.catalog().lookup_key(secret)? else {
        return Err(ApiError::unauthorized(
            "invalid_key",
            "unknown, revoked or expired API key",
        ));
    };
    let owner = match &info.user_id {
        None => None,
        Some(user) => match state.notifier.db().user(&info.tenant_id, user)? {
            Some(u) => Some((u.id, u.role)),
            // The key of a removed user (revoked with them; this covers a
            // removal made while the key was cached elsewhere).
            None => {
                return Err(ApiError::unauthorized(
                    "invalid_key",
                    "unknown, revoked or expired API key",
                ));
            }
        },
    };
    Ok(Caller {
        tenant: info.tenant_id,
        who: Who::Key {
            prefix: info.prefix,
            scopes: info.scopes,
            owner,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scopes: &[Scope]) -> Caller {
        Caller {
            tenant: "ws".into(),
            who: Who::Key {
                prefix: "bk_r_x".into(),
                scopes: scopes.to_vec(),
                owner: None,
            },
        }
    }

    #[test]
    fn every_class_has_exactly_one_row() {
        for class in [
            Class::Public,
            Class::SignIn,
            Class::Account,
            Class::Ingest,
            Class::View,
            Class::Query,
            Class::Realtime,
            Class::Inbox,
            Class::Rules,
            Class::Admin,
            Class::Owner,
        ] {
            assert_eq!(ACCESS.iter().filter(|g| g.class == class).count(), 1, "{class:?}");
        }
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        for grant in ACCESS {
            for (i, role) in UserRole::ALL.iter().enumerate() {
                if grant.roles.contains(role) {
                    for higher in &UserRole::ALL[i..] {
                        assert!(grant.roles.contains(higher), "{:?}: {role} but not {higher}", grant.class);
                    }
                }
            }
        }
    }

    #[test]
    fn a_users_key_is_bounded_by_the_users_role() {
        let mut analyst_key = key(&[Scope::Admin]);
        if let Who::Key { owner, .. } = &mut analyst_key.who {
            *owner = Some(("ann".into(), UserRole::Analyst));
        }
        assert!(analyst_key.may(Class::Query));
        assert!(!analyst_key.may(Class::Admin), "admin scope, analyst owner");
        assert!(key(&[Scope::Admin]).may(Class::Admin));
        assert!(!key(&[Scope::Admin]).may(Class::Owner), "no key manages owners");
    }

    #[test]
    fn refusals_name_what_is_needed_and_what_the_caller_is() {
        let e = key(&[Scope::Ingest]).require(Class::Query).expect_err("refused");
        assert_eq!(
            e.message(),
            "SQL, analytics on demand and exports needs the role analyst, admin, owner \
             (or a key with scope query, admin, role:analyst, role:admin, role:owner); \
             this key has scopes ingest"
        );
        let viewer = Caller {
            tenant: "ws".into(),
            who: Who::Session {
                user: "vic".into(),
                role: UserRole::Viewer,
                csrf: String::new(),
            },
        };
        assert!(viewer.may(Class::View) && !viewer.may(Class::Query));
        assert!(viewer.require(Class::Admin).expect_err("refused").message().ends_with("you are signed in as viewer"));
    }

    #[test]
    fn an_embed_token_passes_no_class_but_the_real_time_one() {
        let embed = Caller {
            tenant: "ws".into(),
            who: Who::Embed {
                id: "emb_1".into(),
                customer: Some("cus_42".into()),
            },
        };
        // The wire protocols ask for Query: refused.
        for class in [Class::View, Class::Query, Class::Inbox, Class::Rules, Class::Admin, Class::Owner, Class::Ingest] {
            assert!(!embed.may(class), "{class:?}");
        }
        assert!(embed.may(Class::Realtime));
        assert_eq!(embed.rows(), beacon_engine::RowScope::Customer("cus_42".into()));
        assert!(!embed.is_admin());
        assert!(embed.user_for(Some("cus_42")).is_err(), "no inbox");
        assert_eq!(key(&[Scope::Admin]).rows(), beacon_engine::RowScope::All);
    }
}

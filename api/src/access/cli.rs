//! `beacon users ...` (the first owner, and recovery) and `beacon routes`
//! (the access table of every route). The users commands open the data
//! directory's metadata database directly, also while the server runs, and
//! leave audit rows with the actor `cli`.

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context, bail};
use beacon_ingest::{Catalog, UserRole};
use beacon_realtime::db::MetaDb;
use beacon_realtime::notify::store::NotifyDb;
use beacon_realtime::notify::{User, valid_id};
use clap::Subcommand;
use serde_json::json;

use super::audit::{Audit, RequestMeta};
use super::store::AccessStore;
use super::{ACCESS, password};

/// `beacon users`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user who can sign in (prints a generated password unless
    /// one is given on stdin with --password-stdin).
    Create {
        /// Workspace id or name.
        #[arg(long)]
        workspace: String,
        /// Email address (the sign-in name).
        #[arg(long)]
        email: String,
        /// viewer, analyst, admin or owner.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// User id [default: the email address].
        #[arg(long)]
        id: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a workspace's users.
    List {
        /// Workspace id or name.
        #[arg(long)]
        workspace: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role (takes effect on their next request).
    SetRole {
        /// Workspace id or name.
        #[arg(long)]
        workspace: String,
        /// User id.
        user: String,
        /// viewer, analyst, admin or owner.
        role: String,
    },
    /// Set a new password (generated and printed unless --password-stdin)
    /// and end the user's sessions.
    ResetPassword {
        /// Workspace id or name.
        #[arg(long)]
        workspace: String,
        /// User id.
        user: String,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
}

fn role(text: &str) -> anyhow::Result<UserRole> {
    UserRole::parse(text).context("role must be viewer, analyst, admin or owner")
}

fn read_password(from_stdin: bool, email: Option<&str>, name: Option<&str>) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((password::generate(), true));
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let text = text.trim_end_matches(['\r', '\n']).to_owned();
    password::check_policy(&text, email, name).map_err(|e| anyhow::anyhow!(e.message()))?;
    Ok((text, false))
}

/// `local@domain.tld` without spaces or control characters (the server
/// checks addresses fully when it sends).
fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && email.chars().all(|c| c.is_ascii_graphic() || !c.is_ascii())
}

/// Runs a users command on the data directory of `catalog`.
#[allow(clippy::print_stdout)]
pub fn users(catalog: &Catalog, dir: &std::path::Path, command: UsersCommand) -> anyhow::Result<()> {
    let meta = Arc::new(MetaDb::open(dir).context("cannot open the metadata database")?);
    let db = NotifyDb::new(Arc::clone(&meta)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let access = AccessStore::new(Arc::clone(&meta));
    let audit = Audit::new(meta);
    let cli = RequestMeta::default();
    let now = chrono::Utc::now().timestamp_micros();
    match command {
        UsersCommand::Create {
            workspace,
            email,
            role: role_name,
            name,
            id,
            password_stdin,
            json,
        } => {
            let tenant = catalog.find_tenant(&workspace)?;
            let role = role(&role_name)?;
            if !plausible_email(&email) {
                bail!("{email:?} is not an email address");
            }
            let id = id.unwrap_or_else(|| email.to_lowercase());
            if !valid_id(&id) {
                bail!("user id must be 1-128 characters of A-Z a-z 0-9 _ - . @");
            }
            if db.user(&tenant.id, &id).map_err(|e| anyhow::anyhow!("{e}"))?.is_some() {
                bail!("user {id:?} exists; use set-role or reset-password");
            }
            let (secret, generated) = read_password(password_stdin, Some(&email), name.as_deref())?;
            let user = User {
                id: id.clone(),
                email: Some(email.clone()),
                name,
                role,
                preferences: Default::default(),
                created_at_us: now,
                has_password: false,
                totp_enabled: false,
                last_login_at_us: None,
            };
            db.put_user(&tenant.id, &user).map_err(|e| anyhow::anyhow!("{e}"))?;
            let hash = password::hash_now(&secret).map_err(|e| anyhow::anyhow!(e.message()))?;
            access.set_password(&tenant.id, &id, &hash)?;
            audit.append(&tenant.id, "cli", &cli, "user_create", Some(&id), "success", json!({"role": role}));
            if json {
                println!(
                    "{}",
                    json!({"workspace": tenant.id, "user": id, "email": email, "role": role, "password": generated.then_some(&secret)})
                );
            } else {
                println!("Created {id} ({role}) in {}", tenant.name);
                if generated {
                    println!("Password: {secret}");
                }
            }
        }
        UsersCommand::List { workspace, json } => {
            let tenant = catalog.find_tenant(&workspace)?;
            let users = db.users(&tenant.id).map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string(&users)?);
            } else {
                for u in users {
                    println!(
                        "{}\t{}\t{}\t{}",
                        u.id,
                        u.email.as_deref().unwrap_or("-"),
                        u.role,
                        if u.has_password { "can sign in" } else { "no password" }
                    );
                }
            }
        }
        UsersCommand::SetRole {
            workspace,
            user,
            role: role_name,
        } => {
            let tenant = catalog.find_tenant(&workspace)?;
            let role = role(&role_name)?;
            let Some(mut u) = db.user(&tenant.id, &user).map_err(|e| anyhow::anyhow!("{e}"))? else {
                bail!("no user {user:?} in {}", tenant.name);
            };
            let before = u.role;
            u.role = role;
            db.put_user(&tenant.id, &u).map_err(|e| anyhow::anyhow!("{e}"))?;
            audit.append(&tenant.id, "cli", &cli, "role_change", Some(&user), "success", json!({"role": role, "previous_role": before}));
            println!("{user}: {before} -> {role}");
        }
        UsersCommand::ResetPassword {
            workspace,
            user,
            password_stdin,
        } => {
            let tenant = catalog.find_tenant(&workspace)?;
            let Some(u) = db.user(&tenant.id, &user).map_err(|e| anyhow::anyhow!("{e}"))? else {
                bail!("no user {user:?} in {}", tenant.name);
            };
            let (secret, generated) = read_password(password_stdin, u.email.as_deref(), u.name.as_deref())?;
            let hash = password::hash_now(&secret).map_err(|e| anyhow::anyhow!(e.message()))?;
            access.set_password(&tenant.id, &user, &hash)?;
            audit.append(&tenant.id, "cli", &cli, "password_reset", Some(&user), "success", json!({}));
            println!("New password set for {user}; their sessions have ended.");
            if generated {
                println!("Password: {secret}");
            }
        }
    }
    Ok(())
}

/// `beacon routes`: every route, its class, and who may call it.
#[allow(clippy::print_stdout)]
pub fn routes(json: bool) -> anyhow::Result<()> {
    let routes = crate::routes::routes();
    let rows: Vec<serde_json::Value> = routes
        .list()
        .iter()
        .map(|(method, path, class)| {
            let grant = class.grant();
            json!({
                "method": method.as_str(),
                "path": path,
                "class": class,
                "roles": grant.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "scopes": grant.scopes.iter().map(|s| s.name()).collect::<Vec<_>>(),
            })
        })
        .collect();
    if json {
        println!("{}", json!({"routes": rows, "classes": ACCESS.iter().map(|g| json!({"class": g.class, "what": g.what})).collect::<Vec<_>>()}));
    } else {
        for (method, path, class) in routes.list() {
            println!("{method}\t{path}\t{class:?}");
        }
    }
    Ok(())
}

//! `beacon`: the Beacon server and its admin commands.
//!
//! `beacon serve` runs everything on an embedded default (data directory,
//! SQLite metadata, loopback address). `beacon tenants ...` and
//! `beacon keys ...` administer the same data directory, also while the
//! server runs, and print JSON with `--json` for scripts.

mod access;
mod auth;
mod config;
mod datasets;
mod demo;
mod error;
mod export;
mod extract;
mod flight;
mod idle_memory;
mod listener;
mod models;
mod pg;
mod queries;
mod reports;
mod routes;
mod server;
mod settings;
mod state;
mod telemetry;
mod tls;
mod web;
mod xlsx;

use std::path::PathBuf;

use anyhow::Context;
use beacon_ingest::{Catalog, Role};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::config::{Config, Overrides};

/// mimalloc: see the `mimalloc` entry in `api/Cargo.toml`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "beacon",
    version,
    about = "Real-time analytics and notification engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args, Clone)]
struct Common {
    /// TOML configuration file (also BEACON_CONFIG).
    #[arg(long, env = "BEACON_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory [default: ./beacon-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the server.
    Serve {
        #[command(flatten)]
        common: Common,
        /// HTTP listen address, e.g. 127.0.0.1:7400. Port 0 picks a free
        /// port, and then also for the PostgreSQL and Flight SQL listeners
        /// not set explicitly; every bound address is printed.
        #[arg(long)]
        listen: Option<String>,
        /// Create and fill the `demo` workspace from the built-in generator
        /// (12 months of history, then live events); prints its keys.
        #[arg(long)]
        demo: bool,
    },
    /// Convert public datasets, generate synthetic data, replay event files.
    Datasets {
        #[command(subcommand)]
        command: datasets::DatasetsCommand,
    },
    /// Manage workspaces (tenants).
    Tenants {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage the people of a workspace (who can sign in, their roles).
    Users {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: access::cli::UsersCommand,
    },
    /// Print every HTTP route, its access class and who may call it.
    Routes {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a workspace with a write key and an admin key.
    Create {
        /// Display name.
        name: String,
        /// IANA business time zone, e.g. Europe/Paris [default: UTC].
        #[arg(long)]
        timezone: Option<String>,
        /// ISO 4217 business currency, e.g. EUR [default: USD].
        #[arg(long)]
        currency: Option<String>,
        /// First day of the week, e.g. sunday [default: monday].
        #[arg(long)]
        week_start: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List workspaces.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Issue a key.
    Create {
        /// Workspace id or name.
        #[arg(long)]
        tenant: String,
        /// write, read or admin.
        #[arg(long)]
        role: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a workspace's keys (prefixes only).
    List {
        /// Workspace id or name.
        #[arg(long)]
        tenant: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its prefix.
    Revoke {
        /// Workspace id or name.
        #[arg(long)]
        tenant: String,
        /// Key prefix as listed.
        prefix: String,
    },
}

/// Stack of each runtime thread (see where the runtime is built).
const WORKER_STACK_BYTES: usize = 256 * 1024 * 1024;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            common,
            listen,
            demo,
        } => {
            let overrides = Overrides {
                data_dir: common.data_dir.clone(),
                listen,
            };
            let config = Config::load(common.config.as_deref(), &overrides)?;
            telemetry::init_tracing(&config.log);
            for warning in config.warnings() {
                tracing::warn!(%warning, "Configuration warning.");
            }
            let prometheus = telemetry::init_metrics()?;
            idle_memory::configure().context("cannot start the idle-memory thread")?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("beacon-http")
                // Planning a query recurses once per level of its deepest
                // expression before the engine can refuse it (at most
                // `MAX_EXPR_DEPTH` levels run): 5000 chained conditions
                // overflowed the default 2 MiB and aborted the server. A
                // 1 MiB query body holds at most ~170 000; this is virtual
                // memory, touched only by such a query.
                .thread_stack_size(WORKER_STACK_BYTES)
                .on_thread_park(idle_memory::on_park)
                .build()
                .context("cannot start the runtime")?;
            runtime.block_on(server::serve(config, prometheus, demo))
        }
        Command::Datasets { command } => datasets::run(command),
        Command::Tenants { common, command } => {
            let catalog = open_catalog(&common)?;
            tenants(&catalog, command)
        }
        Command::Keys { common, command } => {
            let catalog = open_catalog(&common)?;
            keys(&catalog, command)
        }
        Command::Users { common, command } => {
            let catalog = open_catalog(&common)?;
            let dir = catalog
                .path()
                .parent()
                .context("the metadata database has a directory")?
                .to_owned();
            access::cli::users(&catalog, &dir, command)
        }
        Command::Routes { json } => access::cli::routes(json),
    }
}

fn open_catalog(common: &Common) -> anyhow::Result<Catalog> {
    let overrides = Overrides {
        data_dir: common.data_dir.clone(),
        listen: None,
    };
    let config = Config::load(common.config.as_deref(), &overrides)?;
    let dir = config.ensure_data_dir()?;
    Catalog::open(&dir).context("cannot open the metadata database")
}

#[allow(clippy::print_stdout)]
fn tenants(catalog: &Catalog, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create {
            name,
            timezone,
            currency,
            week_start,
            json,
        } => {
            // Checked before anything is created, as PATCH /v1/workspace
            // checks them.
            let changes = settings::Changes {
                timezone,
                currency,
                week_start,
            };
            let changes = changes.validate().map_err(|problems| {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                anyhow::anyhow!("invalid settings:\n  - {}", lines.join("\n  - "))
            })?;
            let (mut tenant, keys) = catalog.create_tenant(&name)?;
            changes.apply_to(&mut tenant);
            catalog.update_tenant(&tenant)?;
            let key = |role: Role| {
                keys.iter()
                    .find(|k| k.scopes == role.scopes())
                    .map(|k| k.key.clone())
            };
            if json {
                println!(
                    "{}",
                    json!({
                        "id": tenant.id,
                        "name": tenant.name,
                        "timezone": tenant.timezone,
                        "currency": tenant.currency,
                        "week_start": tenant.week_start,
                        "write_key": key(Role::Write),
                        "admin_key": key(Role::Admin),
                    })
                );
            } else {
                println!("Created workspace {} ({})", tenant.name, tenant.id);
                println!(
                    "  time zone: {}, currency: {}, week starts on {} (change with PATCH /v1/workspace)",
                    tenant.timezone, tenant.currency, tenant.week_start
                );
                println!("  write key: {}", key(Role::Write).unwrap_or_default());
                println!("  admin key: {}", key(Role::Admin).unwrap_or_default());
                println!("Keys are shown once; store them now.");
            }
        }
        TenantCommand::List { json } => {
            let all = catalog.tenants()?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for t in all {
                    println!("{}\t{}\t{}\t{}", t.id, t.name, t.timezone, t.currency);
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn keys(catalog: &Catalog, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create { tenant, role, json } => {
            let tenant = catalog.find_tenant(&tenant)?;
            let role = Role::parse(&role).context("role must be write, read or admin")?;
            let key = catalog.create_key(&tenant.id, role)?;
            if json {
                println!(
                    "{}",
                    json!({"tenant": tenant.id, "role": role, "scopes": key.scopes, "key": key.key, "prefix": key.prefix})
                );
            } else {
                println!("{}", key.key);
            }
        }
        KeyCommand::List { tenant, json } => {
            let tenant = catalog.find_tenant(&tenant)?;
            let keys = catalog.keys(&tenant.id)?;
            if json {
                println!("{}", serde_json::to_string(&keys)?);
            } else {
                for k in keys {
                    let state = if k.revoked_at_us.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    let state = if k.expires_at_us.is_some_and(|at| at <= chrono::Utc::now().timestamp_micros()) {
                        "expired"
                    } else {
                        state
                    };
                    println!("{}\t{}\t{}", k.prefix, beacon_ingest::Scope::join(&k.scopes), state);
                }
            }
        }
        KeyCommand::Revoke { tenant, prefix } => {
            let tenant = catalog.find_tenant(&tenant)?;
            catalog.revoke_key(&tenant.id, &prefix)?;
            println!("Revoked {prefix}");
        }
    }
    Ok(())
}

//! `beacon serve --demo`: a workspace named `demo` filled by the built-in
//! generator (an online shop and an appointment business, see
//! `beacon_datasets::generate`), then kept moving with live events.
//!
//! The demo keys are created once and kept in `<data_dir>/demo-keys.json`
//! (mode 0600) so they can be printed on every start: this is a demo
//! convenience; real keys are only ever shown once. History is generated
//! only when the workspace is empty; after a restart live events resume
//! from now (the time the server was down stays empty, as it would).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use beacon_datasets::generate::{Generator, GeneratorConfig};
use beacon_datasets::message::Message;
use beacon_datasets::output::decode_lines;
use beacon_ingest::{Catalog, Role, Store};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::DemoConfig;

/// The demo workspace's name.
pub const DEMO_TENANT: &str = "demo";

/// Keys of the demo workspace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoKeys {
    /// Workspace id.
    pub tenant: String,
    /// Write key (ingest).
    pub write_key: String,
    /// Read key (queries).
    pub read_key: String,
    /// Admin key.
    pub admin_key: String,
    /// The demo owner's sign-in email.
    #[serde(default)]
    pub owner_email: Option<String>,
    /// The demo owner's password (a demo convenience, like the keys).
    #[serde(default)]
    pub owner_password: Option<String>,
}

/// The demo owner's sign-in email.
pub const DEMO_OWNER: &str = "owner@demo.example";

/// Makes sure the demo workspace has an owner who can sign in (created
/// once with a generated password, kept in `demo-keys.json`).
pub async fn ensure_owner(
    state: &crate::state::AppState,
    data_dir: &Path,
    keys: &mut DemoKeys,
) -> anyhow::Result<()> {
    let exists = state.notifier.db().user(&keys.tenant, DEMO_OWNER)?;
    let has_password = state
        .access
        .credentials(&keys.tenant, DEMO_OWNER)?
        .is_some_and(|c| c.password_hash.is_some());
    if exists.is_some() && has_password && keys.owner_password.is_some() {
        return Ok(());
    }
    let password = crate::access::password::generate();
    let user = beacon_realtime::notify::User {
        id: DEMO_OWNER.into(),
        email: Some(DEMO_OWNER.into()),
        name: Some("Demo Owner".into()),
        role: beacon_ingest::UserRole::Owner,
        preferences: Default::default(),
        created_at_us: 0,
        has_password: false,
        totp_enabled: false,
        last_login_at_us: None,
    };
    state.notifier.put_user(&keys.tenant, user)?;
    let hash = crate::access::password::hash(password.clone())
        .await
        .map_err(|e| anyhow::anyhow!(e.message()))?;
    state.access.set_password(&keys.tenant, DEMO_OWNER, &hash)?;
    keys.owner_email = Some(DEMO_OWNER.into());
    keys.owner_password = Some(password);
    save(&data_dir.join("demo-keys.json"), keys)
}

/// Creates (or finds) the demo workspace and its keys.
pub fn ensure_workspace(catalog: &Catalog, data_dir: &Path) -> anyhow::Result<DemoKeys> {
    let file = data_dir.join("demo-keys.json");
    if let Ok(tenant) = catalog.find_tenant(DEMO_TENANT) {
        if let Some(keys) = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<DemoKeys>(&b).ok())
            && keys.tenant == tenant.id
            && catalog.lookup_key(&keys.write_key).ok().flatten().is_some()
        {
            return Ok(keys);
        }
        let keys = DemoKeys {
            tenant: tenant.id.clone(),
            write_key: catalog.create_key(&tenant.id, Role::Write)?.key,
            read_key: catalog.create_key(&tenant.id, Role::Read)?.key,
            admin_key: catalog.create_key(&tenant.id, Role::Admin)?.key,
            owner_email: None,
            owner_password: None,
        };
        save(&file, &keys)?;
        return Ok(keys);
    }
    let (mut tenant, issued) = catalog.create_tenant(DEMO_TENANT)?;
    tenant.timezone = "Europe/London".into();
    tenant.currency = "GBP".into();
    catalog.update_tenant(&tenant)?;
    let key = |role: Role| {
        issued
            .iter()
            .find(|k| k.scopes == role.scopes())
            .map(|k| k.key.clone())
    };
    let keys = DemoKeys {
        tenant: tenant.id.clone(),
        write_key: key(Role::Write).context("demo write key")?,
        read_key: catalog.create_key(&tenant.id, Role::Read)?.key,
        admin_key: key(Role::Admin).context("demo admin key")?,
        owner_email: None,
        owner_password: None,
    };
    save(&file, &keys)?;
    Ok(keys)
}

fn save(file: &Path, keys: &DemoKeys) -> anyhow::Result<()> {
    std::fs::write(file, serde_json::to_vec_pretty(keys)?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Stores generated messages, decoding them exactly as the ingest API does.
async fn store_messages(
    store: &Store,
    tenant: &str,
    messages: Vec<Message>,
) -> anyhow::Result<usize> {
    let lines: Vec<String> = messages.iter().map(Message::line).collect();
    let mut stored = 0;
    for chunk in lines.chunks(4_096) {
        let (events, rejected) = decode_lines(chunk)?;
        if rejected > 0 {
            tracing::warn!(rejected, "Generated demo events were rejected.");
        }
        loop {
            match store.ingest(tenant, events.clone()).await {
                Ok(receipt) => {
                    stored += receipt.accepted;
                    break;
                }
                Err(beacon_ingest::Error::Backpressure { .. }) => {
                    let s = store.clone();
                    tokio::task::spawn_blocking(move || s.flush()).await??;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(stored)
}

/// Fills an empty demo workspace with `history_days` of history; returns
/// the generator positioned at now, for live events.
pub async fn backfill(
    store: &Store,
    keys: &DemoKeys,
    config: &DemoConfig,
) -> anyhow::Result<(Generator, DateTime<Utc>)> {
    let now = Utc::now();
    let stats = store.tenant_stats(&keys.tenant);
    let empty = stats.memory_rows == 0 && stats.file_rows == 0;
    let start = if empty {
        now - Duration::days(i64::from(config.history_days))
    } else {
        now
    };
    let mut cfg = GeneratorConfig::new(config.seed, start);
    cfg.scale = config.scale;
    // Unique per run, so a restarted demo never reuses a message id.
    cfg.id_prefix = format!("demo{}", start.timestamp());
    let mut generator = Generator::new(cfg);
    if empty && config.history_days > 0 {
        tracing::info!(days = config.history_days, "Generating the demo history.");
        let mut day = start;
        let mut total = 0;
        while day < now {
            let next = (day + Duration::days(1)).min(now);
            total += store_messages(store, &keys.tenant, generator.advance(day, next)).await?;
            day = next;
            if store.flush_due() {
                let s = store.clone();
                tokio::task::spawn_blocking(move || s.flush()).await??;
            }
        }
        tracing::info!(events = total, anomalies = ?generator.anomalies(), "Demo history stored.");
    }
    generator.set_live_floor(config.live_floor);
    Ok((generator, now))
}

/// Keeps generating live events until `stop`.
pub fn spawn_live(
    store: Store,
    tenant: String,
    mut generator: Generator,
    mut last: DateTime<Utc>,
    every: std::time::Duration,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if every.is_zero() {
        return None;
    }
    let store = Arc::new(store);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = Utc::now();
            let messages = generator.advance(last, now);
            last = now;
            if let Err(e) = store_messages(&store, &tenant, messages).await {
                tracing::warn!(error = %e, "Live demo events were not stored.");
            }
        }
    }))
}

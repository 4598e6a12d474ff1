//! Models and forecasts on disk ([`ModelFiles`]), read back at startup so
//! a restart republishes what was kept, and the text formats of their times.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use beacon_engine::Engine;

use super::forecasts::{ForecastStore, StoredForecast};
use super::scores::{ModelKind, ModelStore, TrainedModel};

/// Where a workspace's models and forecasts are kept on disk:
/// `{data_dir}/models/{tenant}/` with `forecasts.json`, `{kind}.json` (the
/// model) and `{kind}.arrow` (its scores, Arrow IPC). Each file is written
/// to a temporary name, synced and renamed, so a crash leaves the old or
/// the new version, never a torn one.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    root: PathBuf,
}

impl ModelFiles {
    /// Under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("models"),
        }
    }

    fn dir(&self, tenant: &str) -> PathBuf {
        self.root.join(tenant)
    }

    fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Saves a workspace's forecasts.
    pub fn save_forecasts(&self, tenant: &str, list: &[StoredForecast]) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(list).map_err(std::io::Error::other)?;
        Self::write_atomic(&self.dir(tenant).join("forecasts.json"), &bytes)
    }

    /// Saves a model and its scores.
    pub fn save_model(
        &self,
        tenant: &str,
        kind: ModelKind,
        model: &TrainedModel,
        scores: &RecordBatch,
    ) -> std::io::Result<()> {
        let mut ipc = Vec::new();
        {
            let mut w = arrow::ipc::writer::FileWriter::try_new(&mut ipc, &scores.schema())
                .map_err(std::io::Error::other)?;
            w.write(scores).map_err(std::io::Error::other)?;
            w.finish().map_err(std::io::Error::other)?;
        }
        // Scores first: a model file always has its scores next to it.
        Self::write_atomic(
            &self.dir(tenant).join(format!("{}.arrow", kind.name())),
            &ipc,
        )?;
        let bytes = serde_json::to_vec(model).map_err(std::io::Error::other)?;
        Self::write_atomic(
            &self.dir(tenant).join(format!("{}.json", kind.name())),
            &bytes,
        )
    }

    /// Deletes what is saved for a deleted workspace.
    pub fn delete(&self, tenant: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir(tenant)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Loads everything saved, republishing it to the engine. A file that
    /// cannot be read is logged and skipped (the model is retrained at the
    /// next refit or on demand), never fatal.
    pub fn load(&self, engine: &Engine, forecasts: &ForecastStore, models: &ModelStore) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let tenant = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            if let Ok(bytes) = std::fs::read(dir.join("forecasts.json")) {
                match serde_json::from_slice::<Vec<StoredForecast>>(&bytes) {
                    Ok(list) => {
                        for f in list {
                            if let Err(e) = forecasts.keep(engine, &tenant, f, None) {
                                tracing::warn!(%tenant, error = %e.message(), "Could not republish a saved forecast.");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%tenant, error = %e, "Skipped an unreadable forecasts.json.")
                    }
                }
            }
            for kind in [ModelKind::Churn, ModelKind::Leads] {
                let Ok(bytes) = std::fs::read(dir.join(format!("{}.json", kind.name()))) else {
                    continue;
                };
                let loaded = serde_json::from_slice::<TrainedModel>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        let file = std::fs::File::open(dir.join(format!("{}.arrow", kind.name())))
                            .map_err(|e| e.to_string())?;
                        let reader = arrow::ipc::reader::FileReader::try_new(file, None)
                            .map_err(|e| e.to_string())?;
                        let batches = reader
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| e.to_string())?;
                        let batch = arrow::compute::concat_batches(&kind.schema(), &batches)
                            .map_err(|e| e.to_string())?;
                        Ok((m, batch))
                    });
                match loaded {
                    Ok((m, batch)) => {
                        if let Err(e) = models.keep(engine, &tenant, kind, m, batch, None) {
                            tracing::warn!(%tenant, error = %e.message(), "Could not republish a saved model.");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%tenant, model = kind.name(), error = %e, "Skipped an unreadable saved model.")
                    }
                }
            }
        }
    }
}

pub(super) mod utc_time {
    //! `DateTime<Utc>` as RFC 3339 text (chrono's own serde support is a
    //! feature that would rebuild the whole Arrow stack).
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

pub(super) mod naive_times {
    //! `NaiveDateTime`s as `YYYY-MM-DDTHH:MM:SS` text.
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

    pub fn serialize<S: Serializer>(v: &[NaiveDateTime], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|t| t.format(FORMAT).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NaiveDateTime>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| NaiveDateTime::parse_from_str(t, FORMAT).map_err(serde::de::Error::custom))
            .collect()
    }
}

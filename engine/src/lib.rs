//! Beacon's query engine: a DataFusion session per workspace that sees only
//! that workspace's events.
//!
//! [`Engine::sql`] runs one read-only query. Its `events` table is the union
//! of the workspace's published Parquet files and its in-memory tail, taken
//! as one consistent [`beacon_ingest::TenantSnapshot`], so an acknowledged
//! event is visible to the next query, whether or not it has been flushed.
//!
//! The `events` table is an [`provider::EventsTableProvider`] (time pruning
//! of files and in-memory batches, projection and filter pushdown into the
//! Parquet reader, decoded columns kept in the [`column_cache`], exact
//! row-count statistics); the business views of
//! [`views`] and Beacon's functions ([`udf`]) are registered on top.
//!
//! The sandbox: no DDL, DML (`INSERT`, `COPY`, ...) or `SET`/other
//! statements (DataFusion `SQLOptions`), no URL tables or file-reading table
//! functions (neither is registered), a per-query memory pool, a time limit
//! and a row limit. A session holds exactly one workspace's tables, so
//! `information_schema` lists only them.
//!
//! A workspace's time zone, week start and currency are parsed once into a
//! [`Calendar`] ([`Engine::calendar`]); "now" is the store's clock
//! ([`Engine::now`]). The models read their data through [`series`] (the
//! metric series of forecasts, anomaly bands and reorder points) and
//! [`features`] (RFM, churn and lead feature tables): SQL that the `api`
//! and `realtime` crates do not hold themselves.
//! Other crates add tables to every workspace's sessions in two ways:
//! [`Engine::publish_table`] (rows computed elsewhere and handed over, such
//! as model outputs) and [`Engine::register_system_table`] (a
//! [`system_tables::SystemTable`] read at query time, for metadata such as
//! alert history and notification deliveries that lives in SQLite).

pub mod analytics;
pub mod calendar;
pub mod column_cache;
mod error;
pub mod features;
pub mod funnel_index;
pub mod json;
pub mod provider;
pub mod rollup;
pub mod scope;
pub mod series;
pub mod system_tables;
pub mod udf;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use beacon_ingest::Store;
use beacon_ingest::schema::event_schema;
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::DataFrame;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use calendar::Calendar;
pub use scope::RowScope;
pub use error::{Error, Result};

/// Name of the events table in every workspace session.
pub const EVENTS_TABLE: &str = "events";

/// Query limits (`[engine]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Memory one query may use for sorts, joins and aggregates.
    pub query_memory_bytes: usize,
    /// Longest a query may run.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Most rows a query returns; more are cut off and flagged.
    pub max_result_rows: usize,
    /// DataFusion target partitions (0 = number of cores).
    pub target_partitions: usize,
    /// Answer dashboard queries from the incremental rollups when they can
    /// (see [`rollup`]); off only to compare with raw answers.
    pub rollups: bool,
    /// Most bytes the funnel index ([`funnel_index`]) keeps in memory for
    /// all workspaces (20 bytes per event); 0 turns it off (funnels then
    /// scan the events).
    pub funnel_index_bytes: usize,
    /// Most bytes of decoded columns the column cache
    /// ([`column_cache`]) keeps in memory for all workspaces; 0 turns it
    /// off (every scan then decodes Parquet).
    pub column_cache_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            query_memory_bytes: 512 * 1024 * 1024,
            query_timeout: Duration::from_secs(30),
            max_result_rows: 100_000,
            target_partitions: 0,
            rollups: true,
            funnel_index_bytes: 2 << 30,
            column_cache_bytes: 4 << 30,
        }
    }
}

/// A partial (per-partition) aggregation gives up and passes rows through
/// to the final one when its first rows form at least this many groups per
/// row (DataFusion's default is 0.8). Partial aggregation pays when it
/// shrinks what is repartitioned many times over; at a few rows per group
/// (sessions, orders, people) it hashes every row twice. Measured at 10M
/// events (`adhoc_sessions` of the dashboard bench, 2.2M sessions, 0.22
/// groups per row): 15% faster with 0.1, and no query of the suite slower.
pub const SKIP_PARTIAL_AGGREGATION_RATIO: f64 = 0.1;

/// Deepest expression a query may hold (`a AND b AND ...` is one level per
/// operator). DataFusion plans deep expressions on a growing stack, but
/// evaluates them recursively on the worker's: 5000 chained conditions
/// overflowed it and aborted the server. Hand-written and BI-tool SQL stays
/// far below this; long lists belong in `IN (...)`, which is one level.
pub const MAX_EXPR_DEPTH: usize = 256;

/// Plans `query` on `ctx` in the read-only sandbox, refusing expressions
/// deeper than [`MAX_EXPR_DEPTH`] before anything runs them.
async fn plan_checked(ctx: &SessionContext, query: &str, generated: bool) -> Result<DataFrame> {
    // The analytics API writes long but shallow SQL from bounded requests
    // (at most 50 filters per event, 30 funnel steps); only the depth
    // limit applies to it.
    let operators = if generated { 0 } else { operator_count(query) };
    if operators > MAX_OPERATORS {
        return Err(Error::Plan(format!(
            "the query has {operators} operators; at most {MAX_OPERATORS} \
             (use IN (...) for long lists of values)"
        )));
    }
    let df = ctx.sql_with_options(query, read_only()).await?;
    let depth = plan_expr_depth(df.logical_plan())?;
    if depth > MAX_EXPR_DEPTH {
        return Err(Error::Plan(format!(
            "expressions are nested {depth} levels deep; at most {MAX_EXPR_DEPTH} \
             (use IN (...) for long lists of values)"
        )));
    }
    Ok(df)
}

/// Most binary operators (`AND`, `OR`, `+`, `=`, ...) a query may hold.
/// The parser limits nesting, but a flat chain (`1 + 1 + ...`) parses
/// into a tree as deep as it is long, and DataFusion names such an
/// expression once per level: 10 000 of them took 7.7 s and 700 MB, 170 000
/// (a 1 MiB body) exhausted the machine's memory. Counted on the tokens,
/// before planning.
pub const MAX_OPERATORS: usize = 2048;

/// Binary operator tokens of `query` (0 when it does not tokenize: the
/// parser then reports the syntax error).
fn operator_count(query: &str) -> usize {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, query).tokenize() else {
        return 0;
    };
    tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR),
            _ => matches!(
                t,
                Token::DoubleEq
                    | Token::Eq
                    | Token::Neq
                    | Token::Lt
                    | Token::Gt
                    | Token::LtEq
                    | Token::GtEq
                    | Token::Spaceship
                    | Token::Plus
                    | Token::Minus
                    | Token::Mul
                    | Token::Div
                    | Token::DuckIntDiv
                    | Token::Mod
                    | Token::StringConcat
                    | Token::Ampersand
                    | Token::Pipe
                    | Token::Caret
                    | Token::ShiftLeft
                    | Token::ShiftRight
                    | Token::Arrow
                    | Token::LongArrow
                    | Token::HashArrow
                    | Token::HashLongArrow
            ),
        })
        .count()
}

/// The deepest expression of `plan` and its subqueries, measured without
/// recursing on the expression (the walk over plan nodes is shallow).
fn plan_expr_depth(plan: &datafusion::logical_expr::LogicalPlan) -> Result<usize> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut deepest = 0;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|root| {
            let mut stack: Vec<(&Expr, usize)> = vec![(root, 1)];
            while let Some((e, d)) = stack.pop() {
                deepest = deepest.max(d);
                if d > MAX_EXPR_DEPTH {
                    break;
                }
                e.apply_children(|c| {
                    stack.push((c, d + 1));
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
            Ok(TreeNodeRecursion::Continue)
        })
    })?;
    Ok(deepest)
}

/// The sandbox: no DDL, DML or other statements.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// True when `name` occurs in `text` as a whole identifier (a view a query
/// may use; false positives only cost a registration).
fn mentions(text: &str, name: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// The rows a query returned.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows (at most `max_result_rows`).
    pub batches: Vec<RecordBatch>,
    /// True when rows were cut off at `max_result_rows`.
    pub truncated: bool,
}

/// Runs queries over the store.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
    config: EngineConfig,
    /// Parquet footer and file-statistics caches shared by every query
    /// (each query still gets its own memory pool).
    cache: Arc<CacheManager>,
    /// Per-file rollups ([`rollup`]).
    rollups: rollup::Rollups,
    /// Per-file funnel sequences ([`funnel_index`]).
    funnel_index: funnel_index::FunnelIndex,
    /// Decoded columns of published files ([`column_cache`]).
    column_cache: column_cache::ColumnCache,
    /// Tables other components publish per workspace (model outputs such
    /// as `forecasts`), registered in every session of that workspace.
    published: Arc<std::sync::RwLock<PublishedTables>>,
    /// Workspace calendars, parsed once per settings ([`calendar`]).
    calendars: calendar::Calendars,
    /// Tables read at query time ([`system_tables`]), by name, in every
    /// workspace's sessions.
    system_tables: Arc<std::sync::RwLock<SystemTables>>,
}

/// `table name -> source`.
type SystemTables =
    std::collections::BTreeMap<String, Arc<dyn system_tables::SystemTable>>;

/// The tenant key of [`Engine::publish_table`] defaults.
pub const ALL_TENANTS: &str = "*";

/// `tenant -> table name -> (schema, rows)`.
type PublishedTables = std::collections::HashMap<
    String,
    std::collections::BTreeMap<String, (SchemaRef, Vec<RecordBatch>)>,
>;

impl Engine {
    /// An engine over `store`.
    pub fn new(store: Store, config: EngineConfig) -> Self {
        let cache = CacheManager::try_new(&CacheManagerConfig::default())
            .expect("the default cache configuration is valid");
        let funnel_index = funnel_index::FunnelIndex::new(config.funnel_index_bytes);
        let column_cache = column_cache::ColumnCache::new(config.column_cache_bytes);
        let rollups = rollup::Rollups::on_disk(store.data_dir());
        Self {
            store,
            config,
            cache,
            rollups,
            funnel_index,
            column_cache,
            published: Arc::default(),
            calendars: calendar::Calendars::default(),
            system_tables: Arc::default(),
        }
    }

    /// Registers (or replaces) the system table `name`: every later session
    /// of every workspace has it, bound to that workspace, and reads it
    /// when a query scans it ([`system_tables`]). Names of events tables
    /// and views cannot be taken.
    pub fn register_system_table(
        &self,
        name: &str,
        table: Arc<dyn system_tables::SystemTable>,
    ) -> Result<()> {
        if name == EVENTS_TABLE || views::VIEWS.iter().any(|(v, _)| *v == name) {
            return Err(Error::InvalidRequest(format!("{name} is a built-in table")));
        }
        self.system_tables
            .write()
            .expect("the system-tables lock is never held across a panic")
            .insert(name.to_owned(), table);
        Ok(())
    }

    /// Publishes (or replaces) a table `name` for `tenant` ([`ALL_TENANTS`]:
    /// a default every workspace sees until it publishes its own): every
    /// later session of the workspace sees it as a read-only in-memory table.
    /// Names of events tables and views cannot be taken.
    pub fn publish_table(
        &self,
        tenant: &str,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        if name == EVENTS_TABLE
            || views::VIEWS.iter().any(|(v, _)| *v == name)
            || self
                .system_tables
                .read()
                .expect("the system-tables lock is never held across a panic")
                .contains_key(name)
        {
            return Err(Error::InvalidRequest(format!("{name} is a built-in table")));
        }
        // Checks the batches against the schema now, not at query time.
        datafusion::datasource::MemTable::try_new(Arc::clone(&schema), vec![batches.clone()])?;
        self.published
            .write()
            .expect("the published-tables lock is never held across a panic")
            .entry(tenant.to_owned())
            .or_default()
            .insert(name.to_owned(), (schema, batches));
        Ok(())
    }

    /// Deletes a workspace's events ([`Store::delete_tenant`]) and drops
    /// what the engine keeps of them: rollups, funnel index, cached
    /// columns, published tables. Blocking (the store flushes).
    pub fn delete_tenant(
        &self,
        tenant: &str,
        deleted_by: Option<&str>,
    ) -> beacon_ingest::Result<beacon_ingest::store::TenantStats> {
        let stats = self.store.delete_tenant(tenant, deleted_by)?;
        self.rollups.forget(tenant);
        self.funnel_index.forget(tenant);
        self.column_cache.forget(tenant);
        self.published
            .write()
            .expect("the published-tables lock is never held across a panic")
            .remove(tenant);
        Ok(stats)
    }

    /// The store queried.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The funnel index ([`funnel_index`]).
    pub fn funnel_index(&self) -> &funnel_index::FunnelIndex {
        &self.funnel_index
    }

    /// The column cache ([`column_cache`]).
    pub fn column_cache(&self) -> &column_cache::ColumnCache {
        &self.column_cache
    }

    /// The limits in use.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A session over one workspace's events, with the memory limit
    /// applied, Beacon's functions (business time in the workspace's
    /// calendar, funnels, JSON) and the business views.
    pub async fn session(&self, tenant: &str) -> Result<SessionContext> {
        self.session_of(tenant, self.store.snapshot(tenant), None, &RowScope::All)
            .await
    }

    /// A session like [`Engine::session`] that also has the rollup tables
    /// (`events_rollup`, `items_rollup`) of the same snapshot when `want`
    /// and rollups are on (the flag says whether it has).
    pub async fn session_with_rollups(
        &self,
        tenant: &str,
        want: bool,
    ) -> Result<(SessionContext, bool)> {
        self.session_with_rollups_in(tenant, &RowScope::All, want).await
    }

    /// [`Engine::session_with_rollups`] over the rows of `scope`; a
    /// customer's session never has rollups (they sum every customer).
    pub async fn session_with_rollups_in(
        &self,
        tenant: &str,
        scope: &RowScope,
        want: bool,
    ) -> Result<(SessionContext, bool)> {
        let snapshot = self.store.snapshot(tenant);
        let rollups = if want && self.config.rollups && *scope == RowScope::All {
            Some(self.rollups.tables(tenant, &snapshot).await?)
        } else {
            None
        };
        let ctx = self.session_of(tenant, snapshot, None, scope).await?;
        let has = rollups.is_some();
        if let Some(tables) = rollups {
            ctx.register_table(rollup::ROLLUP_TABLE, tables.events)?;
            ctx.register_table(rollup::ITEMS_TABLE, tables.items)?;
        }
        Ok((ctx, has))
    }

    fn tenants(&self) -> Result<Vec<beacon_ingest::catalog::Tenant>> {
        self.store
            .catalog()
            .tenants()
            .map_err(|e| Error::Plan(format!("listing workspaces: {e}")))
    }

    /// Loads (or rolls up) the rollups of every workspace's files, so the
    /// first dashboard after a start does not wait for them (the server
    /// calls it once at start; [`rollup`] keeps them on disk).
    pub async fn load_rollups(&self) -> Result<()> {
        if !self.config.rollups {
            return Ok(());
        }
        for t in self.tenants()? {
            let snapshot = self.store.snapshot(&t.id);
            self.rollups.warm(&t.id, &snapshot).await?;
        }
        Ok(())
    }

    /// Rolls up and indexes for funnels ([`funnel_index`]) every
    /// workspace's new files ahead of the next dashboard query, and drops
    /// the files that left the catalog from the [`column_cache`] (the
    /// server calls this after flushes that wrote files and after each
    /// maintenance run: compaction and retention).
    pub async fn warm_rollups(&self) -> Result<()> {
        if !self.config.rollups && !self.funnel_index.enabled() && !self.column_cache.enabled() {
            return Ok(());
        }
        let tenants = self.tenants()?;
        // Forget replaced files first: a failing warm below must not keep
        // another workspace's dead columns in memory.
        let snapshots: Vec<_> = tenants
            .into_iter()
            .map(|t| {
                let snapshot = self.store.snapshot(&t.id);
                self.column_cache
                    .retain(&t.id, &snapshot.files.iter().map(|(p, _)| p).collect());
                (t, snapshot)
            })
            .collect();
        for (t, snapshot) in snapshots {
            if self.config.rollups {
                self.rollups.warm(&t.id, &snapshot).await?;
            }
            let index = self.funnel_index.clone();
            tokio::task::spawn_blocking(move || index.warm(&t.id, &snapshot))
                .await
                .map_err(|e| Error::Plan(format!("indexing funnels: {e}")))??;
        }
        Ok(())
    }

    /// A session like [`Engine::session`] over a snapshot the caller took
    /// (to relate the answer to [`TenantSnapshot::seq`]).
    ///
    /// [`TenantSnapshot::seq`]: beacon_ingest::TenantSnapshot::seq
    pub async fn session_for(
        &self,
        tenant: &str,
        snapshot: beacon_ingest::TenantSnapshot,
    ) -> Result<SessionContext> {
        self.session_of(tenant, snapshot, None, &RowScope::All).await
    }

    /// `for_query`: register only the views the query names (planning
    /// every view costs more than a small dashboard query itself).
    /// `scope`: a customer's session sees that customer's events only and
    /// nothing computed over the whole workspace (see [`scope`]).
    async fn session_of(
        &self,
        tenant: &str,
        snapshot: beacon_ingest::TenantSnapshot,
        for_query: Option<&str>,
        scope: &RowScope,
    ) -> Result<SessionContext> {
        let scoped = *scope != RowScope::All;
        let mut config = SessionConfig::new().with_information_schema(true);
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_ratio_threshold = SKIP_PARTIAL_AGGREGATION_RATIO;
        if self.config.target_partitions > 0 {
            config = config.with_target_partitions(self.config.target_partitions);
        }
        let mut runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.config.query_memory_bytes, 1.0)
            .build()?;
        runtime.cache_manager = Arc::clone(&self.cache);
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::new(runtime))
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(udf::single_phase::SinglePhaseRowAggregates));
        let state = if self.funnel_index.enabled() && !scoped {
            state.with_optimizer_rule(Arc::new(funnel_index::FunnelIndexRule::new(
                self.funnel_index.clone(),
                tenant,
            )))
        } else {
            state
        }
        .build();
        let mut ctx = SessionContext::new_with_state(state);
        let calendar = self.calendar(tenant);
        udf::register(&ctx, calendar.business(), &calendar.currency);
        datafusion_functions_json::register_all(&mut ctx)?;
        let events: Arc<dyn datafusion::datasource::TableProvider> = Arc::new(
            provider::EventsTableProvider::new(event_schema(), snapshot)
                .with_column_cache(self.column_cache.clone(), tenant),
        );
        let events: Arc<dyn datafusion::datasource::TableProvider> = match scope.customer() {
            None => events,
            Some(customer) => Arc::new(scope::CustomerEvents::new(events, customer)),
        };
        ctx.register_table(EVENTS_TABLE, events)?;
        // Catalog queries (information_schema, SHOW) list every view.
        let lowered = for_query
            .map(str::to_ascii_lowercase)
            .filter(|q| !q.contains("information_schema") && !q.trim_start().starts_with("show"));
        // A workspace's own table hides the default of the same name.
        let published: Vec<(String, SchemaRef, Vec<RecordBatch>)> = if scoped {
            Vec::new()
        } else {
            let all = self
                .published
                .read()
                .expect("the published-tables lock is never held across a panic");
            let own = all.get(tenant);
            let mut out: Vec<(String, SchemaRef, Vec<RecordBatch>)> = own
                .into_iter()
                .flatten()
                .map(|(n, (s, b))| (n.clone(), Arc::clone(s), b.clone()))
                .collect();
            for (n, (s, b)) in all.get(ALL_TENANTS).into_iter().flatten() {
                if !own.is_some_and(|o| o.contains_key(n)) {
                    out.push((n.clone(), Arc::clone(s), b.clone()));
                }
            }
            out
        };
        for (name, schema, batches) in published {
            ctx.register_table(
                name.as_str(),
                Arc::new(datafusion::datasource::MemTable::try_new(
                    schema,
                    vec![batches],
                )?),
            )?;
        }
        let privileged = system_tables::privileged_now();
        let system: Vec<(String, Arc<dyn system_tables::SystemTable>)> = self
            .system_tables
            .read()
            .expect("the system-tables lock is never held across a panic")
            .iter()
            .filter(|_| !scoped)
            .filter(|(_, t)| privileged || !t.privileged())
            .map(|(n, t)| (n.clone(), Arc::clone(t)))
            .collect();
        for (name, table) in system {
            ctx.register_table(
                name.as_str(),
                Arc::new(system_tables::SystemTableProvider::new(table, tenant)),
            )?;
        }
        for (name, sql) in views::VIEWS {
            if lowered.as_deref().is_some_and(|q| !mentions(q, name)) {
                continue;
            }
            let view = ctx.sql(sql).await?.into_view();
            ctx.register_table(name, view)?;
        }
        Ok(ctx)
    }

    /// Runs one read-only query for `tenant`.
    pub async fn sql(&self, tenant: &str, query: &str) -> Result<QueryResult> {
        self.sql_in(tenant, &RowScope::All, query).await
    }

    /// [`Engine::sql`] over the rows of `scope`.
    pub async fn sql_in(&self, tenant: &str, scope: &RowScope, query: &str) -> Result<QueryResult> {
        let ctx = self
            .session_of(tenant, self.store.snapshot(tenant), Some(query), scope)
            .await?;
        self.execute(&ctx, query).await
    }

    /// Plans and starts one read-only query for `tenant` with positional
    /// parameters (`$1`, `$2`, ...) bound as values, never spliced into
    /// the text; returns the result schema and a stream of batches that
    /// ends with [`Error::Timeout`] once `query_timeout` has passed.
    /// Dropping the stream cancels the query. Rows are not limited here:
    /// the caller decides how many it sends.
    pub async fn stream(
        &self,
        tenant: &str,
        query: &str,
        params: Vec<datafusion::scalar::ScalarValue>,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)> {
        self.stream_in(tenant, &RowScope::All, query, params).await
    }

    /// [`Engine::stream`] over the rows of `scope`.
    pub async fn stream_in(
        &self,
        tenant: &str,
        scope: &RowScope,
        query: &str,
        params: Vec<datafusion::scalar::ScalarValue>,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)> {
        let deadline = tokio::time::Instant::now() + self.config.query_timeout;
        let limit = self.config.query_timeout;
        let plan = async {
            let ctx = self
                .session_of(tenant, self.store.snapshot(tenant), Some(query), scope)
                .await?;
            let mut df = self.plan(&ctx, query).await?;
            if !params.is_empty() {
                df = df.with_param_values(params)?;
            }
            Ok::<_, Error>(df)
        };
        let df = tokio::time::timeout_at(deadline, plan)
            .await
            .map_err(|_| Error::Timeout { limit })??;
        self.start_until(df, deadline).await
    }

    /// A session over the workspace's current snapshot for the wire
    /// protocols, which plan in steps ([`Engine::plan`], then
    /// [`Engine::start`]) and may add catalog tables of their own. With
    /// `query`, only the views it names are registered; `None` registers
    /// every view (catalog listings).
    pub async fn query_session(&self, tenant: &str, query: Option<&str>) -> Result<SessionContext> {
        self.session_of(tenant, self.store.snapshot(tenant), query, &RowScope::All)
            .await
    }

    /// A session with the workspace's tables and views but no rows: the
    /// shape of its catalog, for metadata that outlives one snapshot (the
    /// PostgreSQL front end's `pg_catalog` keeps its OIDs on it).
    pub async fn shape_session(&self, tenant: &str) -> Result<SessionContext> {
        let empty = beacon_ingest::TenantSnapshot {
            files: Vec::new(),
            batches: Vec::new(),
            seq: 0,
        };
        self.session_of(tenant, empty, None, &RowScope::All).await
    }

    /// Plans `query` on `ctx` inside the sandbox (no DDL, DML or other
    /// statements). Placeholders (`$1`, ...) stay unbound: the plan's
    /// parameter types and schema describe a prepared statement.
    pub async fn plan(&self, ctx: &SessionContext, query: &str) -> Result<DataFrame> {
        plan_checked(ctx, query, false).await
    }

    /// The types of a planned query's placeholders `$1` to `$n`, in order;
    /// `None` where DataFusion infers none (e.g. `SELECT $1`) or a number
    /// is skipped.
    pub fn parameter_types(df: &DataFrame) -> Result<Vec<Option<arrow::datatypes::DataType>>> {
        let types = df.logical_plan().get_parameter_types()?;
        let numbered: Vec<(usize, Option<arrow::datatypes::DataType>)> = types
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix('$')?.parse().ok()?, v)))
            .collect();
        let n = numbered.iter().map(|(i, _)| *i).max().unwrap_or(0);
        Ok((1..=n)
            .map(|i| {
                numbered
                    .iter()
                    .find(|(j, _)| *j == i)
                    .and_then(|(_, t)| t.clone())
            })
            .collect())
    }

    /// Starts a planned (and parameter-bound) query with the time limit
    /// counted from now; see [`Engine::stream`] for the stream's contract.
    pub async fn start(
        &self,
        df: DataFrame,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)> {
        self.start_until(df, tokio::time::Instant::now() + self.config.query_timeout)
            .await
    }

    async fn start_until(
        &self,
        df: DataFrame,
        deadline: tokio::time::Instant,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)> {
        let limit = self.config.query_timeout;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let inner = tokio::time::timeout_at(deadline, df.execute_stream())
            .await
            .map_err(|_| Error::Timeout { limit })??;
        let stream = futures::stream::unfold(Some(inner), move |state| async move {
            let mut inner = state?;
            match tokio::time::timeout_at(deadline, inner.next()).await {
                Err(_) => Some((Err(Error::Timeout { limit }), None)),
                Ok(None) => None,
                Ok(Some(Ok(batch))) => Some((Ok(batch), Some(inner))),
                Ok(Some(Err(e))) => Some((Err(e.into()), None)),
            }
        });
        // Fused: callers may poll again after the end.
        Ok((schema, Box::pin(stream.fuse())))
    }

    /// Runs one read-only query on a session from [`Engine::session`],
    /// within the sandbox and the limits.
    pub async fn execute(&self, ctx: &SessionContext, query: &str) -> Result<QueryResult> {
        self.execute_with(ctx, query, false).await
    }

    /// [`Engine::execute`] for SQL the engine wrote itself (see
    /// [`MAX_OPERATORS`]).
    pub(crate) async fn execute_generated(
        &self,
        ctx: &SessionContext,
        query: &str,
    ) -> Result<QueryResult> {
        self.execute_with(ctx, query, true).await
    }

    async fn execute_with(
        &self,
        ctx: &SessionContext,
        query: &str,
        generated: bool,
    ) -> Result<QueryResult> {
        let limit = self.config.query_timeout;
        let max_rows = self.config.max_result_rows;
        let run = async {
            let df = plan_checked(ctx, query, generated).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let mut stream = df.execute_stream().await?;
            let mut batches = Vec::new();
            let mut rows = 0;
            let mut truncated = false;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                if rows + batch.num_rows() > max_rows {
                    batches.push(batch.slice(0, max_rows - rows));
                    truncated = true;
                    break;
                }
                rows += batch.num_rows();
                batches.push(batch);
            }
            Ok::<_, Error>(QueryResult {
                schema,
                batches,
                truncated,
            })
        };
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| Error::Timeout { limit })?
    }
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn view_names_are_matched_as_whole_identifiers() {
        assert!(mentions("select * from orders", "orders"));
        assert!(mentions("select count(*) from orders,refunds", "refunds"));
        assert!(mentions("select * from \"orders\" o", "orders"));
        assert!(!mentions(
            "select * from events where event = 'x' -- reorders",
            "orders"
        ));
        assert!(!mentions("select order_items_x from t", "order_items"));
        assert!(!mentions("select * from events", "sessions"));
        assert!(mentions("select * from order_items", "order_items"));
    }
}

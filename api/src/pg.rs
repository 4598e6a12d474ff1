//! The PostgreSQL wire protocol listener (`[sql] pg_listen`), for psql,
//! psycopg, JDBC/BI tools.
//!
//! Built on pgwire (protocol), arrow-pg (Arrow -> PostgreSQL types and
//! text/binary values) and datafusion-pg-catalog (`pg_catalog` tables and
//! functions that clients query to list tables). Decisions:
//!
//! - **Auth**: cleartext password; the user is the workspace (id or name),
//!   the password a read or admin key of that workspace. A write key is
//!   refused. (SCRAM would need the key itself on the server; Beacon stores
//!   only key hashes. Use TLS termination or loopback, the default.)
//! - **Sessions**: every statement runs on a fresh session over the
//!   workspace's current snapshot ([`Engine::query_session`]), in the same
//!   sandbox and limits as HTTP SQL. A prepared statement is planned at
//!   Parse (parameter and result types) and re-planned with its values at
//!   Execute, so it sees new data.
//! - **Session commands**: `BEGIN`/`COMMIT`/`ROLLBACK` are accepted (reads
//!   only, so a transaction is a no-op), `SET` is accepted and ignored,
//!   `SHOW` answers the usual client parameters; anything else that is not
//!   a query is refused by the sandbox (SQLSTATE 25006).
//! - **Limits**: a result over `max_result_rows` ends with an error
//!   (SQLSTATE 54000) rather than being cut silently; the time limit ends
//!   with 57014, the memory limit with 53200.
//! - **Cancel**: a CancelRequest (psql's Ctrl-C, psycopg's `cancel()`), an
//!   admin `DELETE /v1/queries/{id}` or the client going away stops the
//!   query; running statements are listed with interface `postgres`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use beacon_engine::Engine;
use beacon_ingest::Catalog;
use datafusion::catalog::SchemaProvider;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt, Stream, StreamExt};
use parking_lot::Mutex;
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_USER, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::data::DataRow;
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::audit::{QueryRecord, RequestMeta};
use crate::access::{Caller, Class};
use crate::auth::Credentials;
use crate::queries::{QueryGuard, RunningQueries};

/// What `version()` answers: PostgreSQL clients parse the leading
/// "PostgreSQL N.N".
const VERSION: &str = concat!(
    "PostgreSQL 16.6 (Beacon ",
    env!("CARGO_PKG_VERSION"),
    ", Apache DataFusion)"
);

/// Everything a connection needs.
#[derive(Clone)]
pub struct PgContext {
    /// The engine (sessions, sandbox, limits).
    pub engine: Engine,
    /// Keys.
    pub catalog: Arc<Catalog>,
    /// The admin list of running queries.
    pub queries: RunningQueries,
    /// Authentication (keys, their scopes and owners) and the audit log.
    pub state: crate::state::AppState,
}

/// Serves connections from `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    ctx: PgContext,
    max_connections: usize,
    tls: Option<Arc<crate::tls::Tls>>,
    stop: CancellationToken,
) {
    let handlers = Arc::new(Handlers::new(ctx, tls.is_some()));
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let (socket, addr) = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL accept failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%addr, max_connections, "PostgreSQL connection refused: too many connections.");
            drop(socket);
            continue;
        };
        let handlers = Arc::clone(&handlers);
        let stop = stop.clone();
        let acceptor = tls.as_ref().map(|t| t.pg());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = socket.set_nodelay(true);
            tokio::select! {
                r = pgwire::tokio::process_socket(socket, acceptor, handlers) => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, error = %e, "PostgreSQL connection ended with an error.");
                    }
                }
                () = stop.cancelled() => {}
            }
        });
    }
}

/// The pgwire handler set.
struct Handlers {
    startup: Arc<Startup>,
    queries: Arc<Queries>,
    cancel: Arc<Cancel>,
}

impl Handlers {
    fn new(ctx: PgContext, require_tls: bool) -> Self {
        let connections = Arc::new(Connections::default());
        Self {
            startup: Arc::new(Startup {
                catalog: Arc::clone(&ctx.catalog),
                state: ctx.state.clone(),
                require_tls,
                parameters: server_parameters(),
                pids: RandomPidSecretKeyGenerator::default(),
                connections: Arc::clone(&connections),
            }),
            queries: Arc::new(Queries {
                parser: Arc::new(Parser {
                    ctx: ctx.clone(),
                    sql: PostgresCompatibilityParser::new(),
                    catalogs: Mutex::new(HashMap::new()),
                }),
                ctx,
                connections: Arc::clone(&connections),
            }),
            cancel: Arc::new(Cancel { connections }),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = "16.6".to_owned();
    p.is_superuser = false;
    p.default_transaction_read_only = true;
    p
}

// ---------------------------------------------------------------------------
// Connections and cancellation

/// Live connections by backend pid: the secret a CancelRequest must show
/// and the token of the statement running now.
#[derive(Default)]
struct Connections {
    inner: Mutex<HashMap<i32, (bytes::Bytes, CancellationToken)>>,
}

/// Removes a connection from [`Connections`] when the connection ends
/// (kept in the client's session extensions).
struct ConnectionGuard {
    pid: i32,
    connections: Arc<Connections>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.connections.inner.lock().remove(&self.pid);
    }
}

/// The authenticated workspace of a connection, and who it is.
struct Workspace(String, Caller);

impl Connections {
    /// Makes `token` the one a CancelRequest for `pid` cancels.
    fn running(&self, pid: i32, token: &CancellationToken) {
        if let Some(entry) = self.inner.lock().get_mut(&pid) {
            entry.1 = token.clone();
        }
    }
}

struct Cancel {
    connections: Arc<Connections>,
}

#[async_trait]
impl CancelHandler for Cancel {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let token = {
            let inner = self.connections.inner.lock();
            match inner.get(&request.pid) {
                Some((secret, token)) if *secret == request.secret_key.to_bytes() => {
                    Some(token.clone())
                }
                _ => None,
            }
        };
        if let Some(token) = token {
            tracing::info!(pid = request.pid, "PostgreSQL cancel request.");
            token.cancel();
        }
    }
}

// ---------------------------------------------------------------------------
// Startup and authentication

struct Startup {
    catalog: Arc<Catalog>,
    state: crate::state::AppState,
    /// With TLS configured, a connection that did not ask for it is refused.
    require_tls: bool,
    parameters: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
    connections: Arc<Connections>,
}

impl Startup {
    /// The caller when the credentials' key may query (SQL class) in the
    /// workspace named (or with id) by their user.
    fn verify(&self, credentials: &Credentials) -> PgWireResult<Caller> {
        let user = credentials.user.as_deref().unwrap_or_default();
        let key = credentials.key.as_str();
        let fail = || {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_owned(),
                "28P01".to_owned(),
                format!(
                    "password authentication failed for user \"{user}\" (the user is the workspace, the password a key with the query scope)"
                ),
            )))
        };
        let caller = crate::access::authenticate_secret(&self.state, key).map_err(|_| fail())?;
        let tenant = self
            .catalog
            .tenant(&caller.tenant)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        if user != tenant.id && user != tenant.name {
            return Err(fail());
        }
        if let Err(e) = caller.require(Class::Query) {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_owned(),
                "28000".to_owned(),
                format!("this key cannot query: {}", e.message()),
            ))));
        }
        Ok(caller)
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.require_tls && !client.is_secure() {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".to_owned(),
                        "28000".to_owned(),
                        "this server requires TLS: connect with sslmode=require (or verify-full)"
                            .to_owned(),
                    ))));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                // The user names the workspace; the password is the key.
                let caller = self.verify(&Credentials {
                    user: Some(user),
                    key: pwd.password,
                })?;
                let (pid, secret) = self.pids.generate(&*client);
                self.connections
                    .inner
                    .lock()
                    .insert(pid, (secret.to_bytes(), CancellationToken::new()));
                client.set_pid_and_secret_key(pid, secret);
                client.session_extensions().insert(ConnectionGuard {
                    pid,
                    connections: Arc::clone(&self.connections),
                });
                client
                    .session_extensions()
                    .insert(Workspace(caller.tenant.clone(), caller));
                finish_authentication(client, &self.parameters).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Statements

/// What a statement is.
#[derive(Debug, Clone)]
enum Kind {
    /// A query for the engine.
    Query,
    /// A session command answered with a tag.
    Command(&'static str),
    /// `BEGIN`/`START TRANSACTION`.
    Begin,
    /// `COMMIT`/`ROLLBACK`/`END`/`ABORT`.
    End(&'static str),
    /// `SHOW name`.
    Show(String),
}

/// A parsed statement (of the extended protocol, or one of a simple query).
#[derive(Debug, Clone)]
pub struct Statement {
    sql: String,
    kind: Kind,
    /// Parameter types (`$1`...) and result schema, for Describe.
    params: Vec<Type>,
    inferred: Vec<Option<DataType>>,
    schema: SchemaRef,
}

/// Classifies by the leading keywords (before parsing: the SQL parser does
/// not know every PostgreSQL session command).
fn classify(sql: &str) -> Kind {
    let words: Vec<String> = sql
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match w(0) {
        "BEGIN" | "START" => Kind::Begin,
        "COMMIT" | "END" => Kind::End("COMMIT"),
        "ROLLBACK" | "ABORT" => Kind::End("ROLLBACK"),
        "SET" => Kind::Command("SET"),
        "RESET" => Kind::Command("RESET"),
        "DISCARD" => Kind::Command("DISCARD ALL"),
        "DEALLOCATE" => Kind::Command("DEALLOCATE"),
        "SHOW" if w(1) == "TRANSACTION" && w(2) == "ISOLATION" => {
            Kind::Show("transaction_isolation".to_owned())
        }
        "SHOW" if !w(1).is_empty() && !matches!(w(1), "TABLES" | "COLUMNS" | "ALL") => Kind::Show(
            sql.split_whitespace()
                .nth(1)
                .unwrap_or("")
                .trim_end_matches(';')
                .trim_matches('"')
                .to_ascii_lowercase(),
        ),
        _ => Kind::Query,
    }
}

/// The answer to `SHOW name`.
fn show_value(name: &str) -> Option<String> {
    Some(
        match name {
            "server_version" => "16.6",
            "server_version_num" => "160006",
            "server_encoding" | "client_encoding" => "UTF8",
            "standard_conforming_strings" => "on",
            "transaction_isolation" | "default_transaction_isolation" => "read committed",
            "transaction_read_only" | "default_transaction_read_only" => "on",
            "datestyle" => "ISO, YMD",
            "intervalstyle" => "postgres",
            "timezone" => "UTC",
            "search_path" => "public",
            "integer_datetimes" => "on",
            "max_identifier_length" => "63",
            "lc_collate" | "lc_ctype" => "C",
            "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
            "application_name" => "",
            _ => return None,
        }
        .to_owned(),
    )
}

/// True when a query needs `pg_catalog` (tables and functions): set up on
/// demand, as it costs more than a small query.
fn needs_pg_catalog(sql: &str) -> bool {
    let q = sql.to_ascii_lowercase();
    [
        "pg_",
        "current_",
        "session_user",
        "privilege",
        "format_type",
        "quote_ident",
        "parse_ident",
        "array_upper",
        "array_lower",
        "regclass",
        "regtype",
        "regproc",
        "oid",
        "version(",
    ]
    .iter()
    .any(|w| q.contains(w))
}

fn version_udf() -> ScalarUDF {
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                VERSION.to_owned(),
            ))))
        }),
    )
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

/// PostgreSQL SQLSTATE for an engine error.
fn engine_error(e: beacon_engine::Error) -> PgWireError {
    use beacon_engine::Error as E;
    let code = match &e {
        E::Syntax(_) => "42601",
        E::Plan(msg) if msg.contains("not found") || msg.contains("No field named") => "42703",
        E::Plan(_) | E::InvalidRequest(_) | E::ModelInput(_) | E::UnknownEndpoint(_) => "42000",
        E::NotAllowed(_) => "25006",
        E::MemoryLimit(_) => "53200",
        E::Timeout { .. } => "57014",
        E::Execution(_) | E::Arrow(_) | E::InvalidCalendar { .. } => "XX000",
    };
    user_error(code, e.to_string())
}

fn cancelled() -> PgWireError {
    user_error("57014", "canceling statement due to user request")
}

struct Parser {
    ctx: PgContext,
    sql: PostgresCompatibilityParser,
    /// Each workspace's `pg_catalog` (stable OIDs).
    catalogs: Mutex<HashMap<String, Arc<dyn SchemaProvider>>>,
}

impl Parser {
    /// Splits and rewrites PostgreSQL-isms (casts to `regclass`, `OPERATOR(...)`
    /// and the like) into statements DataFusion plans.
    fn split(&self, sql: &str) -> PgWireResult<Vec<(String, Kind)>> {
        let kind = classify(sql);
        if !matches!(kind, Kind::Query) {
            return Ok(vec![(sql.trim().trim_end_matches(';').to_owned(), kind)]);
        }
        let statements = self
            .sql
            .parse(sql)
            .map_err(|e| user_error("42601", format!("SQL syntax error: {e}")))?;
        Ok(statements
            .into_iter()
            .map(|s| {
                let text = s.to_string();
                let kind = classify(&text);
                (text, kind)
            })
            .collect())
    }

    /// A session for `sql` with `pg_catalog` when it needs it.
    ///
    /// `pg_catalog` numbers tables (OIDs) in the order it first sees them,
    /// and clients rely on an OID from one query in the next (psql's `\d
    /// events` looks the table up in `pg_class`, then its columns in
    /// `pg_attribute`). So each workspace keeps one `pg_catalog` for the
    /// process's life, built over a row-less copy of its tables and views
    /// ([`Engine::shape_session`]), and every statement's session gets that
    /// schema; the functions and type planner come from a fresh setup.
    async fn session(&self, tenant: &str, sql: &str) -> PgWireResult<SessionContext> {
        if !needs_pg_catalog(sql) {
            return self
                .ctx
                .engine
                .query_session(tenant, Some(sql))
                .await
                .map_err(engine_error);
        }
        let catalog = self.pg_catalog(tenant).await?;
        let ctx = self
            .ctx
            .engine
            .query_session(tenant, None)
            .await
            .map_err(engine_error)?;
        datafusion_pg_catalog::setup_pg_catalog(&ctx, "datafusion", EmptyContextProvider)
            .map_err(|e| user_error("XX000", format!("pg_catalog: {e}")))?;
        if let Some(c) = ctx.catalog("datafusion") {
            c.register_schema("pg_catalog", catalog)
                .map_err(|e| user_error("XX000", format!("pg_catalog: {e}")))?;
        }
        ctx.register_udf(version_udf());
        Ok(ctx)
    }

    /// The workspace's long-lived `pg_catalog` schema.
    async fn pg_catalog(&self, tenant: &str) -> PgWireResult<Arc<dyn SchemaProvider>> {
        if let Some(c) = self.catalogs.lock().get(tenant) {
            return Ok(Arc::clone(c));
        }
        let shape = self
            .ctx
            .engine
            .shape_session(tenant)
            .await
            .map_err(engine_error)?;
        datafusion_pg_catalog::setup_pg_catalog(&shape, "datafusion", EmptyContextProvider)
            .map_err(|e| user_error("XX000", format!("pg_catalog: {e}")))?;
        let schema = shape
            .catalog("datafusion")
            .and_then(|c| c.schema("pg_catalog"))
            .ok_or_else(|| user_error("XX000", "pg_catalog was not set up"))?;
        Ok(Arc::clone(
            self.catalogs
                .lock()
                .entry(tenant.to_owned())
                .or_insert(schema),
        ))
    }

    async fn plan(&self, tenant: &str, sql: &str) -> PgWireResult<DataFrame> {
        let ctx = self.session(tenant, sql).await?;
        self.ctx.engine.plan(&ctx, sql).await.map_err(engine_error)
    }

    /// Plans one statement for Describe.
    async fn describe(&self, tenant: &str, sql: String, kind: Kind) -> PgWireResult<Statement> {
        let mut statement = Statement {
            sql,
            kind,
            params: vec![],
            inferred: vec![],
            schema: Arc::new(Schema::empty()),
        };
        match &statement.kind {
            Kind::Query => {
                let df = self.plan(tenant, &statement.sql).await?;
                statement.inferred = Engine::parameter_types(&df).map_err(engine_error)?;
                statement.params = statement
                    .inferred
                    .iter()
                    .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
                    .collect::<PgWireResult<_>>()?;
                statement.schema = Arc::new(df.schema().as_arrow().clone());
            }
            Kind::Show(name) => {
                statement.schema = show_schema(name);
            }
            _ => {}
        }
        Ok(statement)
    }
}

fn show_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
}

fn tenant_of<C: ClientInfo>(client: &C) -> PgWireResult<String> {
    client
        .session_extensions()
        .get::<Workspace>()
        .map(|w| w.0.clone())
        .ok_or_else(|| user_error("28000", "not authenticated"))
}

fn caller_of<C: ClientInfo>(client: &C) -> Option<Caller> {
    client
        .session_extensions()
        .get::<Workspace>()
        .map(|w| w.1.clone())
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let tenant = tenant_of(client)?;
        let mut statements = self.split(sql)?;
        if statements.len() > 1 {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some((sql, kind)) = statements.pop() else {
            return Ok(None);
        };
        let admin = caller_of(client).is_some_and(|c| c.is_admin());
        Ok(Some(
            beacon_engine::system_tables::privileged(admin, self.describe(&tenant, sql, kind))
                .await?,
        ))
    }

    fn get_parameter_types(&self, stmt: &Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        if !matches!(stmt.kind, Kind::Query | Kind::Show(_)) {
            return Ok(vec![]);
        }
        arrow_schema_to_pg_fields(&stmt.schema, format.unwrap_or(&Format::UnifiedText), None)
    }
}

struct Queries {
    ctx: PgContext,
    parser: Arc<Parser>,
    connections: Arc<Connections>,
}

impl Queries {
    /// Runs one statement; `df` is the bound plan of a query.
    async fn run<C>(
        &self,
        client: &C,
        tenant: &str,
        sql: &str,
        kind: &Kind,
        df: Option<DataFrame>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo,
    {
        match kind {
            Kind::Begin => return Ok(Response::TransactionStart(Tag::new("BEGIN"))),
            Kind::End(tag) => return Ok(Response::TransactionEnd(Tag::new(tag))),
            Kind::Command(tag) => return Ok(Response::Execution(Tag::new(tag))),
            Kind::Show(name) => {
                let value = show_value(name).ok_or_else(|| {
                    user_error(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                let schema = show_schema(name);
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(StringArray::from(vec![value]))],
                )
                .map_err(|e| user_error("XX000", e.to_string()))?;
                let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, None)?);
                let rows: Vec<PgWireResult<DataRow>> =
                    encode_recordbatch(Arc::clone(&fields), batch).collect();
                let mut r = QueryResponse::new(fields, futures::stream::iter(rows));
                r.set_command_tag("SHOW");
                return Ok(Response::Query(r));
            }
            Kind::Query => {}
        }
        let guard = self.ctx.queries.start(tenant, sql, "postgres");
        let admin = caller_of(client).is_some_and(|c| c.is_admin());
        let (pid, _) = client.pid_and_secret_key();
        self.connections.running(pid, &guard.cancel);
        tracing::debug!(query_id = %guard.id, %sql, "PostgreSQL query started.");
        let cancel = guard.cancel.clone();
        let started = async {
            let df = match df {
                Some(df) => df,
                None => {
                    beacon_engine::system_tables::privileged(admin, self.parser.plan(tenant, sql))
                        .await?
                }
            };
            self.ctx.engine.start(df).await.map_err(engine_error)
        };
        let (schema, mut stream) = tokio::select! {
            r = started => r?,
            () = cancel.cancelled() => return Err(cancelled()),
        };
        // The first batch before the row description, so that early
        // failures (most of a query's work) end the statement cleanly.
        let first = tokio::select! {
            r = stream.next() => r.transpose().map_err(engine_error)?,
            () = cancel.cancelled() => return Err(cancelled()),
        };
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, Some(options))?);
        let max_rows = self.ctx.engine.config().max_result_rows;
        let record = caller_of(client).map(|caller| {
            QueryRecord::new(&self.ctx.state.audit, &caller, RequestMeta::default(), sql, "postgres")
        });
        let rows = data_rows(Arc::clone(&fields), first, stream, guard, max_rows, record);
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

/// Rows of a result, ending with an error when the query is cancelled,
/// fails or passes `max_rows`.
fn data_rows(
    fields: Arc<Vec<FieldInfo>>,
    first: Option<RecordBatch>,
    stream: futures::stream::BoxStream<'static, beacon_engine::Result<RecordBatch>>,
    guard: QueryGuard,
    max_rows: usize,
    record: Option<QueryRecord>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    struct State {
        first: Option<RecordBatch>,
        stream: futures::stream::BoxStream<'static, beacon_engine::Result<RecordBatch>>,
        guard: QueryGuard,
        rows: usize,
        done: bool,
        record: Option<QueryRecord>,
    }
    let state = State {
        first,
        stream,
        guard,
        rows: 0,
        done: false,
        record,
    };
    futures::stream::unfold(state, move |mut st| {
        let fields = Arc::clone(&fields);
        async move {
            if st.done {
                return None;
            }
            let batch = match st.first.take() {
                Some(b) => Some(Some(Ok(b))),
                None => tokio::select! {
                    b = st.stream.next() => Some(b),
                    () = st.guard.cancel.cancelled() => None,
                },
            };
            let rows: Vec<PgWireResult<DataRow>> = match batch {
                None => {
                    st.done = true;
                    vec![Err(cancelled())]
                }
                Some(None) => {
                    if let Some(r) = st.record.as_mut() {
                        r.complete = true;
                    }
                    return None;
                }
                Some(Some(Err(e))) => {
                    st.done = true;
                    vec![Err(engine_error(e))]
                }
                Some(Some(Ok(batch))) => {
                    if st.rows + batch.num_rows() > max_rows {
                        st.done = true;
                        vec![Err(user_error(
                            "54000",
                            format!(
                                "the result has more than {max_rows} rows (engine.max_result_rows); add a LIMIT or aggregate"
                            ),
                        ))]
                    } else {
                        st.rows += batch.num_rows();
                        if let Some(r) = st.record.as_mut() {
                            r.rows = st.rows;
                        }
                        encode_recordbatch(fields, batch).collect()
                    }
                }
            };
            Some((futures::stream::iter(rows), st))
        }
    })
    .flatten()
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let tenant = tenant_of(client)?;
        let statements = self.parser.split(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for (sql, kind) in statements {
            match self
                .run(client, &tenant, &sql, &kind, None, &Format::UnifiedText)
                .await
            {
                Ok(r) => responses.push(r),
                // Later statements of the string are not run.
                Err(PgWireError::UserError(e)) => {
                    responses.push(Response::Error(e));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Statement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let tenant = tenant_of(client)?;
        let statement = &portal.statement.statement;
        let df = if matches!(statement.kind, Kind::Query) {
            let inferred: Vec<Option<&DataType>> =
                statement.inferred.iter().map(Option::as_ref).collect();
            let values = arrow_pg::datatypes::df::deserialize_parameters(portal, &inferred)?;
            let admin = caller_of(client).is_some_and(|c| c.is_admin());
            let df = beacon_engine::system_tables::privileged(
                admin,
                self.parser.plan(&tenant, &statement.sql),
            )
            .await?;
            let df = if portal.parameter_len() > 0 {
                df.with_param_values(values)
                    .map_err(|e| engine_error(e.into()))?
            } else {
                df
            };
            Some(df)
        } else {
            None
        };
        self.run(
            client,
            &tenant,
            &statement.sql,
            &statement.kind,
            df,
            &portal.result_column_format,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_commands_are_classified_before_parsing() {
        assert!(matches!(classify("BEGIN"), Kind::Begin));
        assert!(matches!(
            classify("start transaction read only"),
            Kind::Begin
        ));
        assert!(matches!(classify("commit;"), Kind::End("COMMIT")));
        assert!(matches!(classify("ROLLBACK"), Kind::End("ROLLBACK")));
        assert!(matches!(
            classify("SET extra_float_digits = 3"),
            Kind::Command("SET")
        ));
        assert!(
            matches!(classify("show transaction isolation level"), Kind::Show(n) if n == "transaction_isolation")
        );
        assert!(matches!(classify("SHOW search_path;"), Kind::Show(n) if n == "search_path"));
        assert!(matches!(classify("SHOW TABLES"), Kind::Query));
        assert!(matches!(classify("select 1"), Kind::Query));
        assert!(matches!(
            classify("  with x as (select 1) select * from x"),
            Kind::Query
        ));
    }

    #[test]
    fn catalog_queries_are_recognised() {
        assert!(needs_pg_catalog(
            "SELECT n.nspname FROM pg_catalog.pg_namespace n"
        ));
        assert!(needs_pg_catalog("select version()"));
        assert!(needs_pg_catalog("select current_schema()"));
        assert!(!needs_pg_catalog("select count(*) from orders"));
    }
}

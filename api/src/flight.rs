//! The Arrow Flight SQL endpoint (`[sql] flight_listen`): Arrow end to end
//! for ADBC, pyarrow.flight, JDBC Flight SQL drivers.
//!
//! Decisions:
//! - **Auth**: every call carries `authorization: Bearer <read key>` (or
//!   Basic; read by [`Credentials::parse`], as on HTTP, scheme case
//!   insensitive). A Handshake with HTTP Basic (user = workspace or
//!   anything, password = read key) answers with the same bearer token,
//!   for clients that log in with user and password.
//! - **Stateless handles**: a statement ticket and a prepared-statement
//!   handle carry the SQL (and bound parameters as an Arrow IPC batch), not
//!   a server-side id, so nothing leaks when a client forgets to close and
//!   any Beacon process can serve the `DoGet`. The query is planned again
//!   at `DoGet` on the then-current snapshot.
//! - **Same sandbox and limits** as HTTP SQL ([`Engine::plan`]); results
//!   over `max_result_rows` end with `RESOURCE_EXHAUSTED` rather than being
//!   cut silently. A client that goes away cancels its query; running
//!   queries are listed with interface `flight`.
//! - Catalog calls (GetCatalogs, GetDbSchemas, GetTables with schemas,
//!   GetTableTypes, GetSqlInfo) describe the workspace's session only.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use beacon_engine::Engine;
use datafusion::prelude::DataFrame;
use datafusion::scalar::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::access::audit::{QueryRecord, RequestMeta};
use crate::access::{Caller, Class};
use crate::auth::{Credentials, CredentialsError};
use crate::queries::RunningQueries;

/// Everything the service needs.
#[derive(Clone)]
pub struct FlightContext {
    /// The engine (sessions, sandbox, limits).
    pub engine: Engine,
    /// The admin list of running queries.
    pub queries: RunningQueries,
    /// Authentication (keys, their scopes and owners) and the audit log.
    pub state: crate::state::AppState,
}

/// Serves Flight SQL on `listener` until `stop`: at most `max_connections`
/// open, gRPC over TLS with `tls`.
pub async fn serve(
    listener: TcpListener,
    ctx: FlightContext,
    max_connections: usize,
    tls: Option<Arc<crate::tls::Tls>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let sql_info = {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Beacon");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0_i32);
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.build()?
    };
    let service = Service {
        ctx,
        sql_info: Arc::new(sql_info),
    };
    let server = tonic::transport::Server::builder()
        .add_service(FlightServiceServer::new(service).max_decoding_message_size(16 * 1024 * 1024));
    // One accept loop for both: at most `max_connections` open, TLS
    // handshakes on their own tasks when configured.
    let incoming = futures::stream::unfold(
        crate::listener::Bounded::new(listener, max_connections, tls),
        |mut l| async move { Some((Ok::<_, std::io::Error>(l.next().await), l)) },
    );
    server
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await?;
    Ok(())
}

#[derive(Clone)]
struct Service {
    ctx: FlightContext,
    sql_info: Arc<SqlInfoData>,
}

type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// A statement ticket / prepared-statement handle: the SQL and, once bound,
/// the parameters (one row, Arrow IPC stream).
#[derive(Debug, Clone, PartialEq)]
struct Handle {
    sql: String,
    params: Option<Vec<u8>>,
}

const HANDLE_MAGIC: &[u8] = b"BCN1";

impl Handle {
    fn encode(&self) -> Vec<u8> {
        let mut out = HANDLE_MAGIC.to_vec();
        out.extend_from_slice(&(self.sql.len() as u32).to_le_bytes());
        out.extend_from_slice(self.sql.as_bytes());
        if let Some(p) = &self.params {
            out.extend_from_slice(p);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, Status> {
        let bad = || Status::invalid_argument("malformed statement handle");
        let rest = bytes.strip_prefix(HANDLE_MAGIC).ok_or_else(bad)?;
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let sql = rest.get(4..4 + len).ok_or_else(bad)?;
        let sql = String::from_utf8(sql.to_vec()).map_err(|_| bad())?;
        let params = rest
            .get(4 + len..)
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec);
        Ok(Self { sql, params })
    }

    /// The bound parameter values.
    fn values(&self) -> Result<Vec<ScalarValue>, Status> {
        let Some(bytes) = &self.params else {
            return Ok(vec![]);
        };
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?;
        for batch in reader {
            let batch = batch.map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?;
            if batch.num_rows() == 0 {
                continue;
            }
            return batch
                .columns()
                .iter()
                .map(|c| {
                    ScalarValue::try_from_array(c, 0)
                        .map_err(|e| Status::invalid_argument(format!("parameters: {e}")))
                })
                .collect();
        }
        Ok(vec![])
    }
}

fn status(e: beacon_engine::Error) -> Status {
    use beacon_engine::Error as E;
    let message = e.to_string();
    match e {
        E::Syntax(_)
        | E::Plan(_)
        | E::InvalidRequest(_)
        | E::ModelInput(_)
        | E::UnknownEndpoint(_) => Status::invalid_argument(message),
        E::NotAllowed(_) => Status::permission_denied(message),
        E::MemoryLimit(_) => Status::resource_exhausted(message),
        E::Timeout { .. } => Status::deadline_exceeded(message),
        E::Execution(_) | E::Arrow(_) | E::InvalidCalendar { .. } => Status::internal(message),
    }
}

fn schema_bytes(schema: &arrow::datatypes::Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// The credentials of an `authorization` value ([`Credentials::parse`]).
fn credentials(value: &[u8]) -> Result<Credentials, Status> {
    Credentials::parse(value).map_err(|e| {
        Status::unauthenticated(match e {
            CredentialsError::NotText => "the authorization header is not text",
            CredentialsError::MalformedBasic => "malformed Basic credentials",
            CredentialsError::UnknownScheme => "authorization must be \"Bearer <key>\" or Basic",
        })
    })
}

impl Service {
    /// The workspace of the key in `metadata`'s `authorization`
    /// (`Bearer <key>`, as the handshake answers, or Basic).
    fn tenant(&self, metadata: &tonic::metadata::MetadataMap) -> Result<String, Status> {
        Ok(self.caller(metadata)?.tenant)
    }

    /// The caller of the key in `metadata`'s `authorization`.
    fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, Status> {
        let value = metadata.get("authorization").ok_or_else(|| {
            Status::unauthenticated("a key with the query scope is required: authorization: Bearer <key>")
        })?;
        let credentials = credentials(value.as_bytes())?;
        self.check_key(&credentials.key)
    }

    fn check_key(&self, key: &str) -> Result<Caller, Status> {
        let caller = crate::access::authenticate_secret(&self.ctx.state, key)
            .map_err(|e| Status::unauthenticated(e.message()))?;
        caller
            .require(Class::Query)
            .map_err(|e| Status::permission_denied(e.message()))?;
        Ok(caller)
    }

    async fn plan(&self, tenant: &str, handle: &Handle) -> Result<DataFrame, Status> {
        let engine = &self.ctx.engine;
        let ctx = engine
            .query_session(tenant, Some(&handle.sql))
            .await
            .map_err(status)?;
        let df = engine.plan(&ctx, &handle.sql).await.map_err(status)?;
        let values = handle.values()?;
        if values.is_empty() {
            return Ok(df);
        }
        df.with_param_values(values).map_err(|e| status(e.into()))
    }

    fn info(
        &self,
        schema: &arrow::datatypes::Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_total_bytes(-1))
    }

    /// Runs a statement and streams it as Flight data.
    async fn execute(&self, caller: &Caller, handle: &Handle) -> Result<DoGetStream, Status> {
        let tenant = caller.tenant.as_str();
        let record = QueryRecord::new(&self.ctx.state.audit, caller, RequestMeta::default(), &handle.sql, "flight");
        let guard = self.ctx.queries.start(tenant, &handle.sql, "flight");
        tracing::debug!(query_id = %guard.id, sql = %handle.sql, "Flight SQL query started.");
        let df = beacon_engine::system_tables::privileged(caller.is_admin(), self.plan(tenant, handle)).await?;
        let (schema, stream) = self.ctx.engine.start(df).await.map_err(status)?;
        let max_rows = self.ctx.engine.config().max_result_rows;
        let fail = |s: Status| FlightError::Tonic(Box::new(s));
        let batches = futures::stream::unfold(
            (stream, guard, 0usize, false, record),
            move |(mut stream, guard, mut rows, done, mut record)| async move {
                if done {
                    return None;
                }
                let next = tokio::select! {
                    b = stream.next() => Some(b),
                    () = guard.cancel.cancelled() => None,
                };
                let item = match next {
                    None => Err(fail(Status::cancelled(
                        "the query was cancelled by an administrator",
                    ))),
                    Some(None) => {
                        record.complete = true;
                        drop(record);
                        return None;
                    }
                    Some(Some(Err(e))) => Err(fail(status(e))),
                    Some(Some(Ok(batch))) => {
                        rows += batch.num_rows();
                        record.rows = rows;
                        if rows > max_rows {
                            Err(fail(Status::resource_exhausted(format!(
                                "the result has more than {max_rows} rows (engine.max_result_rows); add a LIMIT or aggregate"
                            ))))
                        } else {
                            Ok(batch)
                        }
                    }
                };
                let done = item.is_err();
                Some((item, (stream, guard, rows, done, record)))
            },
        );
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Box::pin(data))
    }

    /// The answer to a metadata `DoGet`: one batch from a builder.
    fn batch_stream<E: std::fmt::Display>(
        schema: SchemaRef,
        batch: Result<RecordBatch, E>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(Box::pin(
            FlightDataEncoderBuilder::new()
                .with_schema(schema)
                .build(futures::stream::once(async { Ok(batch) }))
                .map_err(Status::from),
        )))
    }

    /// The `FlightInfo` of a metadata command (authorised; the ticket is
    /// the command itself).
    fn metadata_info(
        &self,
        request: Request<FlightDescriptor>,
        schema: &arrow::datatypes::Schema,
        command: Vec<u8>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(request.metadata())?;
        Ok(Response::new(self.info(
            schema,
            command,
            request.into_inner(),
        )?))
    }

    /// (schema name, table name, table type, schema) of the workspace's
    /// tables and views.
    async fn tables(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, String, String, SchemaRef)>, Status> {
        let ctx = self
            .ctx
            .engine
            .query_session(tenant, None)
            .await
            .map_err(status)?;
        let mut out = Vec::new();
        let Some(catalog) = ctx.catalog("datafusion") else {
            return Ok(out);
        };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                if let Ok(Some(table)) = schema.table(&name).await {
                    let kind = match table.table_type() {
                        datafusion::datasource::TableType::View => "VIEW",
                        _ => "TABLE",
                    };
                    out.push((schema_name.clone(), name, kind.to_owned(), table.schema()));
                }
            }
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl FlightSqlService for Service {
    type FlightService = Service;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let value = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("authorization is required (Basic or Bearer)")
        })?;
        let key = credentials(value.as_bytes())?.key;
        self.check_key(&key)?;
        let token = format!("Bearer {key}");
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: key.clone().into(),
        };
        let stream: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(futures::stream::once(async { Ok(response) }));
        let mut resp = Response::new(stream);
        let value = token
            .parse()
            .map_err(|_| Status::internal("token is not a header value"))?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(request.metadata())?;
        let handle = Handle {
            sql: query.query,
            params: None,
        };
        let df = beacon_engine::system_tables::privileged(caller.is_admin(), self.plan(&caller.tenant, &handle)).await?;
        let schema = df.schema().as_arrow().clone();
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode().into(),
        };
        let info = self.info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let handle = Handle::decode(&ticket.statement_handle)?;
        Ok(Response::new(self.execute(&caller, &handle).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let tenant = self.tenant(request.metadata())?;
        let engine = &self.ctx.engine;
        let ctx = engine
            .query_session(&tenant, Some(&query.query))
            .await
            .map_err(status)?;
        let df = engine.plan(&ctx, &query.query).await.map_err(status)?;
        let param_fields: Vec<arrow::datatypes::Field> = Engine::parameter_types(&df)
            .map_err(status)?
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                arrow::datatypes::Field::new(
                    format!("${}", i + 1),
                    t.unwrap_or(arrow::datatypes::DataType::Null),
                    true,
                )
            })
            .collect();
        let handle = Handle {
            sql: query.query,
            params: None,
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode().into(),
            dataset_schema: schema_bytes(df.schema().as_arrow())?,
            parameter_schema: schema_bytes(&arrow::datatypes::Schema::new(param_fields))?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.tenant(request.metadata())?;
        let mut handle = Handle::decode(&query.prepared_statement_handle)?;
        let stream = request
            .into_inner()
            .map_err(|s| FlightError::Tonic(Box::new(s)));
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream)
                .try_collect()
                .await
                .map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?;
        let Some(batch) = batches.into_iter().find(|b| b.num_rows() > 0) else {
            handle.params = None;
            return Ok(DoPutPreparedStatementResult {
                prepared_statement_handle: Some(handle.encode().into()),
            });
        };
        if batch.num_rows() > 1 {
            return Err(Status::invalid_argument(
                "bind one row of parameters per execution",
            ));
        }
        let mut buf = Vec::new();
        {
            let mut w = StreamWriter::try_new(&mut buf, &batch.schema())
                .map_err(|e| Status::internal(e.to_string()))?;
            w.write(&batch)
                .map_err(|e| Status::internal(e.to_string()))?;
            w.finish().map_err(|e| Status::internal(e.to_string()))?;
        }
        handle.params = Some(buf);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode().into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(request.metadata())?;
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        let df = beacon_engine::system_tables::privileged(caller.is_admin(), self.plan(&caller.tenant, &handle)).await?;
        let schema = df.schema().as_arrow().clone();
        let info = self.info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(request.metadata())?;
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        Ok(Response::new(self.execute(&caller, &handle).await?))
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles are stateless: nothing to free.
        self.tenant(request.metadata())?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tenant(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append("datafusion");
        Self::batch_stream(builder.schema(), builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.tenant(request.metadata())?;
        let tables = self.tables(&tenant).await?;
        let mut schemas: Vec<String> = tables.into_iter().map(|t| t.0).collect();
        schemas.sort();
        schemas.dedup();
        let mut builder = query.into_builder();
        for s in schemas {
            builder.append("datafusion", s);
        }
        Self::batch_stream(builder.schema(), builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.tenant(request.metadata())?;
        let tables = self.tables(&tenant).await?;
        let mut builder = query.into_builder();
        for (schema_name, name, kind, table_schema) in tables {
            builder
                .append("datafusion", schema_name, name, kind, &table_schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Self::batch_stream(builder.schema(), builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tenant(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        Self::batch_stream(builder.schema(), builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.metadata_info(request, &schema, query.as_any().encode_to_vec())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tenant(request.metadata())?;
        let builder = query.into_builder(&self.sql_info);
        Self::batch_stream(builder.schema(), builder.build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[allow(dead_code)]
fn _assert_service(s: Service) -> impl FlightService {
    s
}

#[cfg(test)]
mod tests {
    use super::Handle;

    #[test]
    fn handles_round_trip_and_reject_garbage() {
        let h = Handle {
            sql: "SELECT $1".into(),
            params: Some(vec![1, 2, 3]),
        };
        assert_eq!(Handle::decode(&h.encode()).expect("decodes"), h);
        let h = Handle {
            sql: "SELECT 1".into(),
            params: None,
        };
        assert_eq!(Handle::decode(&h.encode()).expect("decodes"), h);
        assert!(Handle::decode(b"nope").is_err());
        assert!(Handle::decode(b"BCN1\xff\xff\xff\xffx").is_err());
    }
}

//! The api crate's integration tests: one binary, one module per suite
//! (one link of the dependency stack instead of one per file).

mod common;
mod access;
mod alerts;
mod analytics;
mod bad_input;
mod crash;
mod datasets;
mod embed;
mod ingest;
mod models;
mod ops;
mod realtime;
mod reports;
mod segment_client;
mod snapshots;
mod tls;
mod sql_http;
mod sql_wire;
mod web;

//! Plumbing every Printyard service shares: layered config, logs and traces, NATS with trace
//! context in headers, typed service calls, Postgres with per-service schema migrations, the
//! admin listener (`/healthz`, `/readyz`, `/metrics`) and graceful shutdown.
//!
//! A service is a [`runtime::Runtime`] plus its own endpoints and tasks; nothing here knows
//! about printers, archives or queues.

pub mod admin;
pub mod backoff;
pub mod boot;
pub mod config;
pub mod db;
pub mod farm_events;
pub mod files;
pub mod frames;
pub mod kv_watch;
pub mod metrics;
pub mod nats;
pub mod rpc;
pub mod runtime;
pub mod secret;
pub mod shutdown;
pub mod telemetry;

pub use runtime::{Runtime, RuntimeOptions};
pub use secret::Secret;

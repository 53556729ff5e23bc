//! The end-to-end suite, one test binary with a module per area (one link of the whole
//! system, not one per area): the real services, NATS, Postgres, object storage and the
//! printer simulator, over real sockets. `scripts/test -p printyard-tests --test e2e queue::`
//! runs one area.
//!
//! Three suites stay binaries of their own: `secrets` and `trace_propagation` each install the
//! process's one global tracing subscriber (to read every log line, to capture spans), and
//! `chaos` kills and restarts servers of its own with a dozen child processes beside it.

mod admin;
mod archives;
mod auth;
mod auto_archive;
mod bounded;
mod camera;
mod commands;
mod dashboard;
mod deployment;
mod discovery;
mod errors;
mod filament;
mod gateway;
mod health;
mod input_errors;
mod maintenance;
mod metrics;
mod migrations;
mod openapi;
mod otlp_traces;
mod people;
mod print_record;
mod print_record_model;
mod printer_errors;
mod printers;
mod proxy;
mod queue;
mod rate_limits;
mod rpc;
mod sites;
mod statistics;
mod system_info;
mod unseen_ends;
mod utilisation;
mod webhooks;

//! The contract between Printyard services: every NATS subject, every message that crosses
//! a service boundary, and every error code. Services never spell a subject or a wire type
//! themselves; they import it from here, so this crate is the one place to read what flows.

pub mod api;
pub mod archive;
pub mod camera;
pub mod error;
pub mod farm;
pub mod filament;
pub mod maintenance;
pub mod printer;
pub mod printer_errors;
pub mod prints;
pub mod queue;
pub mod rpc;
pub mod services;
pub mod site;
pub mod sites;
pub mod stats;
pub mod subjects;
pub mod system;
pub mod utilisation;
pub mod webhooks;

pub use error::{ErrorBody, ErrorCode};
pub use rpc::Endpoint;
pub use services::ServiceName;

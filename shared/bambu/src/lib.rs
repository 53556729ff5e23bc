//! The Bambu Lab LAN protocol as Printyard speaks it: codes, report parsing and delta merge,
//! state normalisation, HMS texts, print lifecycle detection, command payloads, the TLS trust
//! policy, and one MQTT session to a printer. The gateway owns the connections' lifecycle
//! (backoff, ownership, publishing); this crate knows the protocol.

pub mod camera;
pub mod codes;
pub mod commands;
pub mod ftps;
pub mod hms;
pub mod lifecycle;
pub mod models;
pub mod mqtt;
pub mod report;
pub mod status;
pub mod threemf;
pub mod tls;

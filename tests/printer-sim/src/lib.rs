//! A farm of virtual Bambu Lab printers that speak the real LAN protocol: MQTT 3.1.1 over TLS
//! 1.2 on 8883, FTP with implicit TLS on 990 (vsFTPd-style session reuse), the port-6000 JPEG
//! camera of A1 and P1 models and the RTSPS camera (H.264 on 322) of X1, each printer on its own
//! loopback address. Reports take their
//! field names and JSON types from real captures (`tests/fixtures/printers/`).
//!
//! Everything Printyard is tested, benchmarked and demonstrated against runs on this, so it
//! must behave like a printer, not like our idea of one. Sources for each behaviour are in
//! `shared/design/BAMBU-PROTOCOL.md` of the project.

pub mod accept;
pub mod camera;
pub mod certs;
pub mod control;
pub mod farm;
pub mod ftps;
pub mod model;
pub mod mqtt;
pub mod printer;
pub mod rtsps;
pub mod threemf;

pub use farm::{Farm, FarmConfig, Manifest, Ports};
pub use model::Model;
pub use printer::{Faults, GcodeState, Printer};

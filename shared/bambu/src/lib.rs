//! The Bambu Lab LAN protocol as Printyard speaks it: codes, report parsing and delta merge,
//! state normalisation, HMS texts, and print lifecycle detection. No I/O: the gateway owns the
//! connections and feeds what arrives through here.

pub mod codes;
pub mod hms;
pub mod lifecycle;
pub mod report;
pub mod status;
pub mod tls;

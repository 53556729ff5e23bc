//! The Bambu Lab LAN protocol as Printyard speaks it.
//!
//! This crate grows with the printer issue (reports, delta merge, HMS, TLS policy, FTPS,
//! camera). For now it holds the code formats every later part shares.

pub mod codes;

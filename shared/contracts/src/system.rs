//! Messages behind `/system/info` and `/health`.

use serde::{Deserialize, Serialize};

use crate::ServiceName;
use crate::rpc::{Empty, Endpoint};

/// What the `archive` service reports about its holdings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSummary {
    /// Number of archives stored.
    pub archives: i64,
}

/// `archive`: how many archives there are.
pub const ARCHIVE_SUMMARY: Endpoint<Empty, ArchiveSummary> =
    Endpoint::new(ServiceName::Archive, "summary");

/// A discovery ping response (`io.nats.micro.v1.ping_response`), the fields health reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResponse {
    pub name: String,
    pub id: String,
    pub version: String,
}

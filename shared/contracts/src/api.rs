//! What `api` replicas tell each other.

use serde::{Deserialize, Serialize};

use crate::subjects::ROOT;

/// Where each api replica says, every few milliseconds, which requests it admitted (core NATS,
/// no reply): every replica adds the others' counts to its own, so a key's budget is shared.
pub fn rate_limit_subject() -> String {
    format!("{ROOT}.api.rate-limits")
}

/// Requests one replica admitted since its last message, in one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitCounts {
    /// The sending replica (it ignores its own messages).
    pub replica: String,
    /// The window's start, Unix seconds (windows are aligned on the epoch).
    pub window: i64,
    /// (key id, rate class, requests admitted).
    pub counts: Vec<(i64, String, u32)>,
}

//! Who is calling and what they may do: API keys with their permissions ([`keys`]), kept
//! warm in memory ([`key_cache`]), rate limits shared by the replicas ([`rate_limit`]), and
//! the one table of every route's protection with the middleware that enforces it
//! ([`access`]).

pub mod access;
pub mod key_cache;
pub mod keys;
pub mod rate_limit;

pub use keys::Permission;
pub use rate_limit::RateClass;

//! Who is calling and what they may do: API keys with their permissions ([`keys`]) and
//! people's sessions ([`crate::people`]), both [`credential::Credential`]s kept warm in memory
//! ([`key_cache`]), limited to sites and printers ([`scope`]), rate limits shared by the replicas ([`rate_limit`]), and
//! the one table of every route's protection with the middleware that enforces it
//! ([`access`]).

pub mod access;
pub mod credential;
pub mod key_cache;
pub mod keys;
pub mod rate_limit;
pub mod scope;

pub use keys::Permission;
pub use rate_limit::RateClass;

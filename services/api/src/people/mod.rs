//! People: users with a role, their sessions, single sign-on, and sign-in protection.
//!
//! - [`passwords`]: Argon2id hashing and checking (off the async threads).
//! - [`roles`]: named permission sets (`viewer`, `operator`, `manager`, `admin`, and the
//!   farm's own), each optionally limited to sites and printers.
//! - [`users`]: accounts, with their own scope, enabled or not, and the lockout that follows
//!   repeated failed sign-ins.
//! - [`sessions`]: what a sign-in gives the browser: a `pys_…` token in an `HttpOnly` cookie and
//!   a CSRF token for state-changing requests; found, cached and revoked like API keys.
//! - [`sso`]: OpenID Connect sign-in (authorization code with PKCE) against any provider.

pub mod passwords;
pub mod roles;
pub mod sessions;
pub mod sso;
pub mod users;

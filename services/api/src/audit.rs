//! The audit log: every state-changing request (and so every printer command) with when, who
//! (user or key), from where, what (the operation), on which object, and the outcome. Written
//! by a middleware around every route after the answer is made, before it is sent; the table
//! refuses updates and deletes (a trigger) except the retention sweep's, which says so in its
//! own transaction. Bodies are never recorded, so no password, token or key can be in it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::auth::access::AuditActor;
use crate::state::AppState;

/// An entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `user`, `key` or `anonymous` (a request refused before anyone was recognised).
    pub actor_kind: String,
    /// The user's or the key's id.
    pub actor_id: Option<i64>,
    /// The username, or `key <prefix> (<name>)`, or the name someone tried to sign in as.
    pub actor: String,
    /// The client's address.
    pub ip: Option<String>,
    pub method: String,
    /// The operation, by its OpenAPI id (`pausePrinter`, `reorderQueue`, `createApiKey`, …).
    pub action: String,
    /// The route template (`/api/v1/printers/{id}/pause`).
    pub route: String,
    /// The id in the path (a printer's, a job's, a key's, a user's …).
    pub object_id: Option<String>,
    /// The printer the request was about, when the path names one.
    pub printer_id: Option<i64>,
    /// The HTTP status answered.
    pub status: i32,
    /// `success`, `denied` (401, 403, 429) or `failed` (any other error).
    pub outcome: String,
}

/// The filters of `GET /audit` and its export.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub printer_id: Option<i64>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The operation id of each route, from the OpenAPI document (`(method, template)` → id).
static OPERATIONS: LazyLock<HashMap<(String, String), String>> = LazyLock::new(|| {
    let document = crate::routes::openapi_document();
    let mut operations = HashMap::new();
    for (path, item) in &document.paths.paths {
        let full = format!("{}{path}", crate::routes::BASE);
        for (method, operation) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ] {
            if let Some(id) = operation.as_ref().and_then(|o| o.operation_id.clone()) {
                operations.insert((method.to_owned(), full.clone()), id);
            }
        }
    }
    operations
});

/// The values the path's `{…}` segments took: the last one is the object, `{id}` right after
/// `/printers` the printer.
pub(crate) fn path_ids(template: &str, path: &str) -> (Option<String>, Option<i64>) {
    let mut object = None;
    let mut printer = None;
    let mut previous = "";
    for (pattern, actual) in template.split('/').zip(path.split('/')) {
        if pattern.starts_with('{') {
            let value: String = actual.chars().take(100).collect();
            if previous == "printers" {
                printer = value.parse().ok();
            }
            object = Some(value);
        }
        previous = pattern;
    }
    (object, printer)
}

/// The client's address: the first `X-Forwarded-For` entry when a trusted proxy is in front,
/// else the connection's.
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_forwarded: bool,
) -> Option<String> {
    if trust_forwarded
        && let Some(forwarded) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
    {
        return Some(forwarded.to_owned());
    }
    peer.map(|p| p.ip().to_string())
}

/// An entry to write.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub at: DateTime<Utc>,
    pub actor_kind: &'static str,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub ip: Option<String>,
    pub method: String,
    pub action: String,
    pub route: String,
    pub object_id: Option<String>,
    pub printer_id: Option<i64>,
    pub status: i32,
    pub outcome: &'static str,
}

/// Entries kept in memory while Postgres does not answer (beyond it the oldest are dropped,
/// loudly): at about 300 bytes each, some 30 MB.
const MAX_PENDING: usize = 100_000;
/// How long a request waits for its entry to be written before it is kept for later.
const WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Writes entries; while the database does not answer, keeps them (in order, with the time
/// of their request) and writes them when it does, so that an outage neither loses them nor
/// makes every change wait for a database that is not there.
#[derive(Clone, Default)]
pub struct AuditWriter {
    pending: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<NewEntry>>>,
}

impl AuditWriter {
    pub async fn write(&self, pool: &PgPool, entry: NewEntry) {
        let backlog = self.pending.lock().map(|p| !p.is_empty()).unwrap_or(true);
        if !backlog {
            match tokio::time::timeout(WRITE_DEADLINE, insert(pool, &entry)).await {
                Ok(Ok(())) => return,
                Ok(Err(err)) => tracing::warn!(error = %err, "audit entry kept for later"),
                Err(_) => tracing::warn!("audit entry kept for later: the database is slow"),
            }
        }
        if let Ok(mut pending) = self.pending.lock() {
            if pending.len() >= MAX_PENDING {
                pending.pop_front();
                tracing::error!("audit backlog full: the oldest entry waiting was dropped");
            }
            pending.push_back(entry);
        }
    }

    /// Writes what waits, oldest first, until done or the database fails again.
    pub async fn flush(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        loop {
            let Some(next) = self.pending.lock().ok().and_then(|p| p.front().cloned()) else {
                return Ok(());
            };
            insert(pool, &next).await?;
            if let Ok(mut pending) = self.pending.lock() {
                pending.pop_front();
            }
        }
    }
}

async fn insert(pool: &PgPool, entry: &NewEntry) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api.audit (at, actor_kind, actor_id, actor, ip, method, action, route,
                                object_id, printer_id, status, outcome)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(entry.at)
    .bind(entry.actor_kind)
    .bind(entry.actor_id)
    .bind(&entry.actor)
    .bind(&entry.ip)
    .bind(&entry.method)
    .bind(&entry.action)
    .bind(&entry.route)
    .bind(&entry.object_id)
    .bind(entry.printer_id)
    .bind(entry.status)
    .bind(entry.outcome)
    .execute(pool)
    .await?;
    Ok(())
}

/// An outcome a handler states when the status does not say it (a refused single sign-on
/// still answers with a redirect).
#[derive(Debug, Clone, Copy)]
pub struct AuditOutcome(pub &'static str);

/// The route of the single sign-on callback: a `GET` that signs someone in, so audited.
const SSO_CALLBACK: &str = "/api/v1/auth/sso/callback";

/// Middleware around every route: records each state-changing request once it is answered.
pub async fn record(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let route = matched
        .as_ref()
        .map(MatchedPath::as_str)
        .unwrap_or_default();
    // Reads pass untouched (no allocation on the hot path).
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) && route != SSO_CALLBACK {
        return next.run(request).await;
    }
    let route = route.to_owned();
    let path = crate::auth::access::full_path(&request);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = client_ip(request.headers(), peer, state.people.trust_forwarded_for);
    let response = next.run(request).await;

    let actor = response.extensions().get::<AuditActor>().cloned();
    let status = response.status().as_u16();
    let outcome = match (response.extensions().get::<AuditOutcome>(), status) {
        (Some(stated), _) => stated.0,
        (None, 200..=399) => "success",
        (None, 401 | 403 | 429) => "denied",
        (None, _) => "failed",
    };
    let action = OPERATIONS
        .get(&(method.as_str().to_owned(), route.clone()))
        .cloned()
        .unwrap_or_else(|| format!("{method} {route}"));
    let (object_id, printer_id) = path_ids(&route, &path);
    let (kind, actor_id, label) = match actor {
        Some(actor) => (actor.kind, actor.id, actor.label),
        None => ("anonymous", None, "anonymous".to_owned()),
    };
    state
        .audit
        .write(
            &state.db,
            NewEntry {
                at: Utc::now(),
                actor_kind: kind,
                actor_id,
                actor: label,
                ip,
                method: method.as_str().to_owned(),
                action,
                route,
                object_id,
                printer_id,
                status: status as i32,
                outcome,
            },
        )
        .await;
    response
}

const COLUMNS: &str = "id, at, actor_kind, actor_id, actor, ip, method, action, route, \
    object_id, printer_id, status, outcome";

/// A page of entries, newest first; with `after`, the entries older than that id (the
/// export's walk).
pub async fn list(
    pool: &PgPool,
    filter: &AuditFilter,
    limit: i64,
    offset: i64,
    before_id: Option<i64>,
) -> Result<(Vec<AuditEntry>, i64), sqlx::Error> {
    const WHERE: &str =
        "WHERE ($1::text IS NULL OR actor = $1 OR actor_kind || ':' || actor_id = $1)
           AND ($2::bigint IS NULL OR printer_id = $2)
           AND ($3::text IS NULL OR action = $3)
           AND ($4::text IS NULL OR outcome = $4)
           AND ($5::timestamptz IS NULL OR at >= $5)
           AND ($6::timestamptz IS NULL OR at < $6)";
    let entries = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api.audit {WHERE}
           AND ($7::bigint IS NULL OR id < $7)
         ORDER BY id DESC LIMIT $8 OFFSET $9"
    )))
    .bind(&filter.actor)
    .bind(filter.printer_id)
    .bind(&filter.action)
    .bind(&filter.outcome)
    .bind(filter.from)
    .bind(filter.until)
    .bind(before_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total = if before_id.is_some() {
        0
    } else {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM api.audit {WHERE}"
        )))
        .bind(&filter.actor)
        .bind(filter.printer_id)
        .bind(&filter.action)
        .bind(&filter.outcome)
        .bind(filter.from)
        .bind(filter.until)
        .fetch_one(pool)
        .await?
    };
    Ok((entries, total))
}

/// Removes entries older than `days` (the only deletion the table allows).
pub async fn sweep(pool: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    if days == 0 {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('printyard.audit_retention', 'on', true)")
        .execute(&mut *tx)
        .await?;
    let removed = sqlx::query("DELETE FROM api.audit WHERE at < now() - make_interval(days => $1)")
        .bind(days as i32)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_names_its_object_and_printer() {
        assert_eq!(
            path_ids("/api/v1/printers/{id}/pause", "/api/v1/printers/17/pause"),
            (Some("17".into()), Some(17))
        );
        assert_eq!(
            path_ids("/api/v1/queue/{id}", "/api/v1/queue/5"),
            (Some("5".into()), None)
        );
        assert_eq!(
            path_ids("/api/v1/queue/reorder", "/api/v1/queue/reorder"),
            (None, None)
        );
    }

    #[test]
    fn a_forwarded_address_counts_only_when_trusted_and_well_formed() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        let peer = Some(SocketAddr::from(([10, 0, 0, 1], 5000)));
        assert_eq!(
            client_ip(&headers, peer, true).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            client_ip(&headers, peer, false).as_deref(),
            Some("10.0.0.1")
        );
        headers.insert("x-forwarded-for", "<script>".parse().unwrap());
        assert_eq!(client_ip(&headers, peer, true).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn every_change_has_an_operation_id() {
        for (method, route, _) in crate::auth::access::ROUTES {
            if *method != "GET" {
                assert!(
                    OPERATIONS.contains_key(&(method.to_string(), route.to_string())),
                    "{method} {route}"
                );
            }
        }
    }
}

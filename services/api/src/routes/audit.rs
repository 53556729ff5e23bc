//! `GET /audit` and `GET /audit/export` (admin): the audit log, newest first, filtered by
//! actor, printer, action, outcome and dates; the export is CSV.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditEntry, AuditFilter};
use crate::error::ApiError;
use crate::export::{self, Rows, Sheet, cell_text};
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// A username, a key as listed (`key pyk_… (name)`), or `user:<id>` / `key:<id>`.
    #[param(max_length = 200)]
    pub actor: Option<String>,
    pub printer_id: Option<i64>,
    /// An operation id (`pausePrinter`, `reorderQueue`, `createApiKey`, …).
    #[param(max_length = 100)]
    pub action: Option<String>,
    /// `success`, `denied` or `failed`.
    #[param(pattern = "^(success|denied|failed)$")]
    pub outcome: Option<String>,
    /// From this date (`YYYY-MM-DD`, UTC) or instant (RFC 3339), inclusive.
    #[param(value_type = Option<String>, format = Date)]
    pub start_date: Option<String>,
    /// Up to this date (the whole day) or instant, inclusive.
    #[param(value_type = Option<String>, format = Date)]
    pub end_date: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, ApiError> {
        let invalid = |detail: &str| ApiError::new(ErrorCode::ValidationError, detail);
        // Checked for the export too, which pages by itself: the same query is the same answer.
        if self.limit.is_some_and(|l| !(1..=1000).contains(&l))
            || self.offset.is_some_and(|o| o < 0)
        {
            return Err(invalid(
                "Invalid query: `limit` 1 to 1000, `offset` at least 0",
            ));
        }
        if self.actor.as_ref().is_some_and(|a| a.chars().count() > 200) {
            return Err(invalid("Invalid query `actor`: at most 200 characters"));
        }
        if self
            .action
            .as_ref()
            .is_some_and(|a| a.chars().count() > 100)
        {
            return Err(invalid("Invalid query `action`: at most 100 characters"));
        }
        if self
            .outcome
            .as_deref()
            .is_some_and(|o| !["success", "denied", "failed"].contains(&o))
        {
            return Err(invalid(
                "Invalid query `outcome`: success, denied or failed",
            ));
        }
        let (from, until) =
            crate::dates::parse_range(self.start_date.as_deref(), self.end_date.as_deref())?;
        Ok(AuditFilter {
            actor: self.actor.clone(),
            printer_id: self.printer_id,
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            from,
            until,
        })
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Entries matching the filters.
    pub total: i64,
}

#[utoipa::path(
    get, path = "/audit", operation_id = "listAudit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "Newest first", body = AuditPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let filter = query.filter()?;
    let limit = query.limit.unwrap_or(100);
    let offset = query.offset.unwrap_or(0);
    let (entries, total) = audit::list(&state.db, &filter, limit, offset, None).await?;
    Ok(Json(AuditPage { entries, total }))
}

const COLUMNS: [&str; 12] = [
    "id",
    "at",
    "actor_kind",
    "actor_id",
    "actor",
    "ip",
    "method",
    "action",
    "object_id",
    "printer_id",
    "status",
    "outcome",
];
const PAGE: i64 = 1000;

#[utoipa::path(
    get, path = "/audit/export", operation_id = "exportAudit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "CSV, newest first, every matching entry", content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let filter = query.filter()?;
    let pages = futures::stream::try_unfold(Some(i64::MAX), move |before| {
        let state = state.clone();
        let filter = filter.clone();
        async move {
            let Some(before) = before else {
                return Ok(None);
            };
            let (entries, _) = audit::list(&state.db, &filter, PAGE, 0, Some(before)).await?;
            let next = (entries.len() as i64 == PAGE)
                .then(|| entries.last().map(|e| e.id))
                .flatten();
            let rows: Rows = entries.iter().map(row).collect();
            Ok::<_, ApiError>(Some((rows, next)))
        }
    });
    export::csv(
        Sheet {
            columns: &COLUMNS,
            numeric: &[0, 3, 9, 10],
            name: "Audit",
            filename: "audit",
        },
        pages,
    )
    .await
}

fn row(entry: &AuditEntry) -> Vec<String> {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        entry.id.to_string(),
        entry.at.to_rfc3339(),
        entry.actor_kind.clone(),
        opt(entry.actor_id),
        cell_text(&entry.actor),
        entry.ip.clone().unwrap_or_default(),
        entry.method.clone(),
        cell_text(&entry.action),
        cell_text(entry.object_id.as_deref().unwrap_or("")),
        opt(entry.printer_id),
        entry.status.to_string(),
        entry.outcome.clone(),
    ]
}

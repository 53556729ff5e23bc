//! `GET /statistics/utilisation` and its export: where the printers' hours went (printing,
//! paused, a plate waiting to be cleared, idle with work queued or with none, error, offline,
//! maintenance). The `stats` service sums the scheduler's activity facts; `api` parses the
//! filters (the same date rules as `/statistics`) and narrows to the caller's printers.

use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Json};
use printyard_contracts::utilisation::{
    self as contract, Activity, Utilisation, UtilisationRequest, UtilisationRow,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;

use crate::auth::access::Caller;
use crate::error::ApiError;
use crate::export::{self, Sheet};
use crate::extract::ApiQuery;
use crate::routes::archives::BinaryFile;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UtilisationQuery {
    /// Only this printer.
    pub printer_id: Option<i64>,
    /// From this date (`YYYY-MM-DD`, UTC) or instant (RFC 3339), inclusive. Default: 30 days
    /// before the end.
    #[param(value_type = Option<String>, format = Date)]
    pub start_date: Option<String>,
    /// Up to this date (the whole day) or instant, inclusive. Default: now.
    #[param(value_type = Option<String>, format = Date)]
    pub end_date: Option<String>,
    /// Only printers of this site.
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
    /// Only printers of this model (`P1S`; case does not matter).
    #[param(max_length = 64)]
    pub model: Option<String>,
    /// Export only: `csv` (default) or `xlsx`.
    #[param(value_type = Option<String>, pattern = "^(csv|xlsx)$")]
    pub format: Option<String>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ValidationError, detail)
}

impl UtilisationQuery {
    fn request(&self, caller: &Caller, state: &AppState) -> Result<UtilisationRequest, ApiError> {
        let (from, until) =
            crate::dates::parse_range(self.start_date.as_deref(), self.end_date.as_deref())?;
        crate::extract::site_query(self.site.as_deref())?;
        if self.model.as_ref().is_some_and(|m| m.chars().count() > 64) {
            return Err(invalid("Invalid query `model`: at most 64 characters"));
        }
        // Read by the export only, but checked on both: the one query is valid or not.
        if self
            .format
            .as_deref()
            .is_some_and(|f| !matches!(f, "csv" | "xlsx"))
        {
            return Err(invalid("Invalid query `format`: csv or xlsx"));
        }
        if let (Some(from), Some(until)) = (from, until)
            && from >= until
        {
            return Err(invalid("`start_date` must be before `end_date`"));
        }
        Ok(UtilisationRequest {
            from,
            until,
            printer_id: self.printer_id,
            printer_ids: caller.reach.printer_ids(state),
            site: self.site.clone(),
            model: self
                .model
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
        })
    }
}

#[utoipa::path(get, path = "/statistics/utilisation", tag = "statistics", operation_id = "getUtilisation",
    params(UtilisationQuery),
    responses((status = 200, description = "Hours by state per printer, model, site and the farm over the range (default: the 30 days to now), utilisation (printing over online hours), prints per day, plate-clear and queue waits (median, p90), and the farm's trend by day (by month over 92 days)", body = Utilisation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn utilisation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<UtilisationQuery>,
) -> Result<Json<Utilisation>, ApiError> {
    let request = query.request(&caller, &state)?;
    Ok(Json(state.rpc.call(contract::UTILISATION, &request).await?))
}

/// The export's columns: who, then hours by state, then what they come to.
const COLUMNS: [&str; 17] = [
    "row",
    "printer_id",
    "name",
    "model",
    "site",
    "printing_hours",
    "paused_hours",
    "awaiting_clear_hours",
    "idle_queued_hours",
    "idle_hours",
    "error_hours",
    "offline_hours",
    "maintenance_hours",
    "utilisation_percent",
    "prints",
    "prints_per_day",
    "printers",
];

fn cells(kind: &str, row: &UtilisationRow) -> Vec<String> {
    let mut cells = vec![
        kind.to_owned(),
        row.printer_id.map(|p| p.to_string()).unwrap_or_default(),
        export::cell_text(row.name.as_deref().unwrap_or("")),
        export::cell_text(row.model.as_deref().unwrap_or("")),
        row.site.clone().unwrap_or_default(),
    ];
    cells.extend(
        Activity::COUNTED
            .iter()
            .map(|a| row.hours.get(*a).to_string()),
    );
    cells.extend([
        row.utilisation.to_string(),
        row.prints.to_string(),
        row.prints_per_day.to_string(),
        row.printers.to_string(),
    ]);
    cells
}

#[utoipa::path(get, path = "/statistics/utilisation/export", tag = "statistics", operation_id = "exportUtilisation",
    params(UtilisationQuery),
    responses((status = 200, description = "One row per printer, then per model, per site and the farm (`row`: printer, model, site, farm): CSV or XLSX", content((String = "text/csv"), (BinaryFile = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<UtilisationQuery>,
) -> Result<Response, ApiError> {
    let request = query.request(&caller, &state)?;
    let format = query.format.as_deref().unwrap_or("csv");
    let answer = state.rpc.call(contract::UTILISATION, &request).await?;
    let mut rows: Vec<Vec<String>> = answer
        .printers
        .iter()
        .map(|r| cells("printer", r))
        .collect();
    rows.extend(answer.models.iter().map(|r| cells("model", r)));
    rows.extend(answer.sites.iter().map(|r| cells("site", r)));
    rows.push(cells("farm", &answer.farm));
    let sheet = Sheet {
        columns: &COLUMNS,
        numeric: &[1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        name: "Utilisation",
        filename: "utilisation",
    };
    let pages = futures::stream::iter([Ok(rows)]);
    if format == "xlsx" {
        export::xlsx(sheet, pages).await
    } else {
        export::csv(sheet, pages).await
    }
}

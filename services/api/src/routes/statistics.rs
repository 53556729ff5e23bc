//! `/statistics` (the reference's totals, with breakdowns by printer, day and filament type,
//! energy and cost), its export, and `/settings/costs`. The `stats` service keeps the numbers;
//! `api` parses the filters (the same date rules as `/archives`) and names the printers.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::NaiveDate;
use printyard_contracts::rpc::Empty;
use printyard_contracts::stats::{
    self as contract, CostSettings, ExportPage, Statistics, StatsFilter, StatsRequest,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;

use crate::auth::access::Caller;
use crate::error::ApiError;
use crate::export::{self, Rows, Sheet};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::archives::BinaryFile;
use crate::state::AppState;
use crate::stats_answers::{self, Kept};

/// Days per export page (a week of a 500-printer farm is 3,500 rows).
const EXPORT_DAYS: u32 = 7;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Only this printer's prints.
    pub printer_id: Option<i64>,
    /// From this date (`YYYY-MM-DD`, UTC) or instant (RFC 3339), inclusive, by print start.
    #[param(value_type = Option<String>, format = Date)]
    pub start_date: Option<String>,
    /// Up to this date (the whole day) or instant, inclusive.
    #[param(value_type = Option<String>, format = Date)]
    pub end_date: Option<String>,
    /// Only prints of printers of this site.
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
    /// Only prints linked to this project.
    pub project_id: Option<i64>,
    /// Only prints of this filament type (`PLA`; case does not matter).
    #[param(max_length = 64)]
    pub filament_type: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsExportQuery {
    /// `csv` (default) or `xlsx`.
    #[param(value_type = Option<String>, pattern = "^(csv|xlsx)$")]
    pub format: Option<String>,
    pub printer_id: Option<i64>,
    #[param(value_type = Option<String>, format = Date)]
    pub start_date: Option<String>,
    #[param(value_type = Option<String>, format = Date)]
    pub end_date: Option<String>,
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
    pub project_id: Option<i64>,
    #[param(max_length = 64)]
    pub filament_type: Option<String>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ValidationError, detail)
}

impl StatsQuery {
    fn filter(&self) -> Result<StatsFilter, ApiError> {
        let (from, until) =
            crate::dates::parse_range(self.start_date.as_deref(), self.end_date.as_deref())?;
        crate::extract::site_query(self.site.as_deref())?;
        if self
            .filament_type
            .as_ref()
            .is_some_and(|t| t.chars().count() > 64)
        {
            return Err(invalid(
                "Invalid query `filament_type`: at most 64 characters",
            ));
        }
        Ok(StatsFilter {
            printer_id: self.printer_id,
            site: self.site.clone(),
            project_id: self.project_id,
            printer_ids: None,
            filament_type: self.filament_type.clone().filter(|t| !t.trim().is_empty()),
            from,
            until,
        })
    }
}

#[utoipa::path(get, path = "/statistics", tag = "statistics", operation_id = "getStatistics",
    params(StatsQuery),
    responses((status = 200, description = "The totals of the prints matching the filters (ended prints only), with breakdowns by printer, day and filament type. Carries an `ETag`: the same question with `If-None-Match` is answered 304 while nothing changed", body = Statistics, headers(("ETag" = String, description = "Changes when the answer does"))), (status = 304, description = "Not modified since the `ETag` given in `If-None-Match`"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn statistics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<Response, ApiError> {
    let mut filter = query.filter()?;
    filter.printer_ids = caller.reach.printer_ids(&state);
    let key = stats_answers::key(&filter);
    // Read before the names: an answer is never named after a newer version than it records.
    let names = state.known.version();
    let kept = state.stats_answers.get(&key, names);
    let request = StatsRequest {
        filter,
        unless: kept.as_ref().map(|k| k.generation),
    };
    let answer = state.rpc.call(contract::STATISTICS, &request).await?;
    let kept = match (answer.statistics, kept) {
        (None, Some(kept)) => kept,
        (Some(mut stats), _) => {
            if !stats.by_printer.is_empty() {
                let names = state.known.names();
                for printer in &mut stats.by_printer {
                    printer.printer_name =
                        printer.printer_id.and_then(|id| names.get(&id).cloned());
                }
            }
            let body = serde_json::to_vec(&stats).map_err(|e| {
                tracing::error!(error = %e, "statistics not encodable");
                ApiError::new(ErrorCode::InternalError, "Internal server error")
            })?;
            let kept = Kept::new(answer.generation, names, body.into());
            state.stats_answers.put(key, kept.clone());
            kept
        }
        (None, None) => {
            tracing::error!("the stats service answered `unchanged` to a question asked afresh");
            return Err(ApiError::new(
                ErrorCode::InternalError,
                "Internal server error",
            ));
        }
    };
    let etag = HeaderValue::from_str(&kept.etag).ok();
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == kept.etag
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            kept.body,
        )
            .into_response()
    };
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

const EXPORT_COLUMNS: [&str; 16] = [
    "day",
    "printer_id",
    "printer_name",
    "prints",
    "successful",
    "failed",
    "stopped",
    "unknown",
    "success_rate",
    "print_time",
    "filament_used",
    "filament_cost",
    "energy_kwh",
    "energy_cost",
    "total_cost",
    "currency",
];

#[utoipa::path(get, path = "/statistics/export", tag = "statistics", operation_id = "exportStatistics",
    params(StatsExportQuery),
    responses((status = 200, description = "One row per day and printer: CSV (streamed) or XLSX", content((String = "text/csv"), (BinaryFile = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<StatsExportQuery>,
) -> Result<Response, ApiError> {
    let mut filter = StatsQuery {
        printer_id: query.printer_id,
        start_date: query.start_date,
        end_date: query.end_date,
        site: query.site,
        project_id: query.project_id,
        filament_type: query.filament_type,
    }
    .filter()?;
    filter.printer_ids = caller.reach.printer_ids(&state);
    let names = state.known.names();
    let sheet = Sheet {
        columns: &EXPORT_COLUMNS,
        numeric: &[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
        name: "Statistics",
        filename: "statistics",
    };
    let pages = export_pages(state, filter, names);
    match query.format.as_deref().unwrap_or("csv") {
        "csv" => export::csv(sheet, pages).await,
        "xlsx" => export::xlsx(sheet, pages).await,
        _ => Err(invalid("Invalid query `format`: csv or xlsx")),
    }
}

/// Every (day, printer) row, page by page (keyset on the pair).
fn export_pages(
    state: AppState,
    filter: StatsFilter,
    names: std::collections::HashMap<i64, String>,
) -> impl futures::Stream<Item = Result<Rows, ApiError>> + Send + 'static {
    futures::stream::try_unfold(
        Some(None::<NaiveDate>),
        move |after: Option<Option<NaiveDate>>| {
            let state = state.clone();
            let filter = filter.clone();
            let names = names.clone();
            async move {
                let Some(after) = after else { return Ok(None) };
                let page = ExportPage {
                    filter,
                    after,
                    days: EXPORT_DAYS,
                };
                let answer = state.rpc.call(contract::EXPORT, &page).await?;
                let next = answer.next.map(Some);
                let rows: Rows = answer
                    .rows
                    .iter()
                    .map(|r| {
                        let t = &r.totals;
                        vec![
                            r.day.to_string(),
                            r.printer_id.map(|p| p.to_string()).unwrap_or_default(),
                            export::cell_text(
                                r.printer_id
                                    .and_then(|p| names.get(&p))
                                    .map(String::as_str)
                                    .unwrap_or(""),
                            ),
                            t.total_prints.to_string(),
                            t.successful_prints.to_string(),
                            t.failed_prints.to_string(),
                            t.stopped_prints.to_string(),
                            t.unknown_prints.to_string(),
                            t.success_rate.to_string(),
                            t.total_print_time.to_string(),
                            t.total_filament_used.to_string(),
                            t.filament_cost.to_string(),
                            t.energy_kwh.to_string(),
                            t.energy_cost.to_string(),
                            t.total_cost.to_string(),
                            answer.currency.clone(),
                        ]
                    })
                    .collect();
                Ok(Some((rows, next)))
            }
        },
    )
}

#[utoipa::path(get, path = "/settings/costs", tag = "statistics", operation_id = "getCostSettings",
    responses((status = 200, description = "How prints are priced", body = CostSettings), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn costs(State(state): State<AppState>) -> Result<Json<CostSettings>, ApiError> {
    Ok(Json(state.rpc.call(contract::COSTS_GET, &Empty {}).await?))
}

#[utoipa::path(put, path = "/settings/costs", tag = "statistics", operation_id = "setCostSettings",
    request_body = CostSettings,
    responses((status = 200, description = "The settings, in force for prints from now on (a print keeps the prices it was costed with)", body = CostSettings), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_costs(
    State(state): State<AppState>,
    ApiJson(settings): ApiJson<CostSettings>,
) -> Result<Json<CostSettings>, ApiError> {
    Ok(Json(state.rpc.call(contract::COSTS_PUT, &settings).await?))
}

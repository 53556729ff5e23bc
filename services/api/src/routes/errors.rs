//! Printer errors: `GET /printers/{id}/errors` (each HMS and print error as history, with the
//! print it hit and what can be done about it now), `POST /printers/{id}/errors/{error_id}/retry`
//! (its print queued again, first in line) and `GET /statistics/errors` (counts by code). The
//! `stats` service keeps the history, the scheduler re-queues; resume and stop are the printer's
//! own commands (`/printers/{id}/resume`, `/stop`), listed only while the printer allows them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use printyard_contracts::printer::PrinterState;
use printyard_contracts::printer_errors::{
    self as contract, CountErrors, ErrorAction, ErrorCounts, GetError, ListErrors, PrinterError,
};
use printyard_contracts::queue::{self as queue, QueueJob, RetryPrint};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;

use crate::auth::access::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorsQuery {
    /// Errors raised before the one with this id (the next page).
    pub before: Option<i64>,
    /// At most this many (1 to 500; default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// The printer must exist (the watched registry, else Postgres).
async fn known(state: &AppState, id: i64) -> Result<(), ApiError> {
    if !state.known.contains(id) {
        state.registry.get(id).await?;
    }
    Ok(())
}

/// What the printer allows about an error now.
fn actions(error: &PrinterError, printer: PrinterState) -> Vec<ErrorAction> {
    let mut actions = Vec::new();
    let standing = error.cleared_at.is_none();
    let on_its_print = error.print_status.as_deref() == Some("printing");
    if standing && on_its_print && printer == PrinterState::Paused {
        actions.push(ErrorAction::Resume);
    }
    if on_its_print
        && matches!(
            printer,
            PrinterState::Printing | PrinterState::Paused | PrinterState::Preparing
        )
    {
        actions.push(ErrorAction::Stop);
    }
    if matches!(error.print_status.as_deref(), Some("failed" | "stopped")) {
        actions.push(ErrorAction::Retry);
    }
    actions
}

fn printer_state(state: &AppState, id: i64) -> PrinterState {
    match state.statuses.get(id) {
        Some(s) if s.connected => s.status.as_ref().map_or(PrinterState::Idle, |st| st.state),
        _ => PrinterState::Offline,
    }
}

#[utoipa::path(get, path = "/printers/{id}/errors", operation_id = "listPrinterErrors", tag = "printers",
    params(("id" = i64, Path), ErrorsQuery),
    responses((status = 200, description = "The printer's HMS and print errors, newest first: code, severity, text, when raised and cleared, the print it hit, and the actions the printer allows now", body = Vec<PrinterError>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<ErrorsQuery>,
) -> Result<Json<Vec<PrinterError>>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=contract::MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::ValidationError,
            "Invalid query `limit`: 1 to 500",
        ));
    }
    known(&state, id).await?;
    let request = ListErrors {
        printer_id: id,
        before: query.before,
        limit,
    };
    let mut errors = state.rpc.call(contract::LIST, &request).await?;
    let printer = printer_state(&state, id);
    for error in &mut errors {
        error.actions = actions(error, printer);
    }
    Ok(Json(errors))
}

#[utoipa::path(post, path = "/printers/{id}/errors/{error_id}/retry", operation_id = "retryPrinterError", tag = "printers",
    params(("id" = i64, Path), ("error_id" = i64, Path)),
    responses((status = 201, description = "The print the error hit, queued again first in line (as its job was queued: the library file, target, plate and options)", body = QueueJob), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "No such printer or error", body = ErrorBody), (status = 409, description = "Nothing to retry: the error hit no print, its print has not ended failed or stopped, it did not come from the queue, or it was queued again already", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    ApiPath((id, error_id)): ApiPath<(i64, i64)>,
) -> Result<(StatusCode, Json<QueueJob>), ApiError> {
    known(&state, id).await?;
    let error = state
        .rpc
        .call(
            contract::GET,
            &GetError {
                printer_id: id,
                id: error_id,
            },
        )
        .await?;
    let conflict = |detail: &str| ApiError::new(ErrorCode::Conflict, detail);
    let Some(archive_id) = error.archive_id else {
        return Err(conflict(
            "The error hit no print: there is nothing to retry",
        ));
    };
    if !matches!(error.print_status.as_deref(), Some("failed" | "stopped")) {
        return Err(conflict(
            "The print has not ended failed or stopped: resume or stop it first",
        ));
    }
    let job = state
        .rpc
        .call(
            queue::RETRY,
            &RetryPrint {
                archive_id,
                printer_id: id,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(job)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorCountsQuery {
    pub printer_id: Option<i64>,
    /// From this date (`YYYY-MM-DD`, UTC) or instant (RFC 3339), inclusive, by when raised.
    #[param(value_type = Option<String>, format = Date)]
    pub start_date: Option<String>,
    /// Up to this date (the whole day) or instant, inclusive.
    #[param(value_type = Option<String>, format = Date)]
    pub end_date: Option<String>,
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
}

#[utoipa::path(get, path = "/statistics/errors", tag = "statistics", operation_id = "countErrors",
    params(ErrorCountsQuery),
    responses((status = 200, description = "How often each HMS and print error code was raised (errors started) in the range, most frequent first, on how many printers", body = ErrorCounts), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn counts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ErrorCountsQuery>,
) -> Result<Json<ErrorCounts>, ApiError> {
    let (from, until) =
        crate::dates::parse_range(query.start_date.as_deref(), query.end_date.as_deref())?;
    crate::extract::site_query(query.site.as_deref())?;
    let request = CountErrors {
        from,
        until,
        printer_id: query.printer_id,
        printer_ids: caller.reach.printer_ids(&state),
        site: query.site,
    };
    Ok(Json(state.rpc.call(contract::COUNTS, &request).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use printyard_contracts::printer_errors::ErrorSource;

    fn error(cleared: bool, print_status: Option<&str>) -> PrinterError {
        PrinterError {
            id: 1,
            printer_id: 1,
            source: ErrorSource::Hms,
            code: "HMS_0300_0100_0001_0001".into(),
            severity: Some("fatal".into()),
            text: None,
            raised_at: chrono::Utc::now(),
            cleared_at: cleared.then(chrono::Utc::now),
            archive_id: print_status.map(|_| 7),
            print_status: print_status.map(str::to_owned),
            actions: vec![],
        }
    }

    #[test]
    fn an_error_offers_only_what_the_printer_allows() {
        use ErrorAction::*;
        use PrinterState as S;
        let paused_on_it = error(false, Some("printing"));
        assert_eq!(actions(&paused_on_it, S::Paused), vec![Resume, Stop]);
        assert_eq!(actions(&paused_on_it, S::Printing), vec![Stop]);
        assert_eq!(actions(&paused_on_it, S::Offline), vec![]);
        assert_eq!(
            actions(&error(true, Some("printing")), S::Paused),
            vec![Stop]
        );
        assert_eq!(actions(&error(true, Some("failed")), S::Idle), vec![Retry]);
        assert_eq!(
            actions(&error(true, Some("stopped")), S::Finished),
            vec![Retry]
        );
        assert_eq!(actions(&error(true, Some("success")), S::Idle), vec![]);
        assert_eq!(actions(&error(false, None), S::Idle), vec![]);
    }
}

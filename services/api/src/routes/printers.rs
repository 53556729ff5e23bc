//! `/printers`: the reference's printer endpoints, plus `site` and connection details.
//! The access code is accepted, stored and never returned.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use printyard_contracts::farm::{
    COMMAND, CommandOutcome, CommandRequest, PrinterCommand, Site, StatusRecord,
};
use printyard_contracts::printer::{HmsEntry, HmsStatus, LoadedFilament, PrinterState};
use printyard_contracts::queue::{CLEAR_PLATE, ClearPlate, PlateCleared};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

use printyard_service::rpc::PrinterCallError;

use crate::auth::access::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::registry::{NewPrinter, PrinterChange, PrinterRow};
use crate::state::AppState;

/// A printer as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Printer {
    pub id: i64,
    pub name: String,
    pub ip_address: String,
    pub serial_number: String,
    /// Marketing name ("X1 Carbon", "P1S", "A1 mini"), detected from the printer.
    pub model: Option<String>,
    #[schema(value_type = String)]
    pub status: PrinterState,
    pub site: String,
    /// The printer removes finished parts itself: the queue does not wait for its plate to be
    /// marked cleared.
    pub auto_clear_plate: bool,
    /// Being serviced: the queue sends it nothing.
    pub maintenance: bool,
    /// The firmware it runs (`01.07.02.00`), as it last said.
    pub firmware: Option<String>,
    /// The current job, while printing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_print: Option<CurrentPrint>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CurrentPrint {
    pub filename: Option<String>,
    pub progress: u8,
    /// Seconds.
    pub remaining_time: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Temperatures {
    pub nozzle: f64,
    pub bed: f64,
    pub chamber: Option<f64>,
    pub nozzle_target: f64,
    pub bed_target: f64,
}

/// A printer's live status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PrinterStatusView {
    #[schema(value_type = String)]
    pub state: PrinterState,
    pub progress: u8,
    pub remaining_time: u64,
    pub current_layer: u32,
    pub total_layers: u32,
    pub temperatures: Temperatures,
    #[schema(value_type = String)]
    pub hms_status: HmsStatus,
    #[schema(value_type = Vec<Object>)]
    pub hms: Vec<HmsEntry>,
    pub connected: bool,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    pub connection_error: Option<String>,
    /// The filament in each AMS tray and on the external spool holder.
    #[schema(value_type = Vec<Object>)]
    pub filaments: Vec<LoadedFilament>,
    /// Whether an AMS is attached.
    pub has_ams: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrinter {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
    )]
    pub name: String,
    /// IPv4 address or host name.
    #[schema(
        max_length = 253,
        pattern = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
    )]
    pub ip_address: String,
    /// The 8-character LAN access code.
    #[schema(pattern = "^[A-Za-z0-9]{8}$")]
    pub access_code: String,
    #[schema(pattern = "^[A-Za-z0-9]{8,32}$")]
    pub serial_number: String,
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
    /// Kept as given; otherwise detected from the printer.
    #[schema(max_length = 64, pattern = "^[^\\u0000]*$")]
    pub model: Option<String>,
    /// Accept any TLS certificate (only when chosen explicitly).
    #[serde(default)]
    pub tls_insecure: bool,
    /// The printer removes finished parts itself (the queue does not wait for clear-plate).
    #[serde(default)]
    pub auto_clear_plate: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePrinter {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
    )]
    pub name: Option<String>,
    #[schema(
        max_length = 253,
        pattern = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
    )]
    pub ip_address: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9]{8}$")]
    pub access_code: Option<String>,
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
    #[schema(max_length = 64, pattern = "^[^\\u0000]*$")]
    pub model: Option<String>,
    pub tls_insecure: Option<bool>,
    /// Forget the pinned certificate (after a printer's certificate legitimately changed).
    #[serde(default)]
    pub clear_tls_pin: bool,
    pub auto_clear_plate: Option<bool>,
    /// Maintenance mode: `true` keeps the queue from sending it jobs until `false`.
    pub maintenance: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub id: i64,
    pub deleted: bool,
}

fn invalid(field: &str, why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ValidationError,
        format!("Invalid field `{field}`: {why}"),
    )
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let length = name.chars().count();
    if !(1..=100).contains(&length) || name.chars().all(char::is_whitespace) || name.contains('\0')
    {
        return Err(invalid(
            "name",
            "must be 1 to 100 characters, not all blank, no NUL",
        ));
    }
    Ok(name.trim().to_owned())
}

fn check_host(host: &str) -> Result<String, ApiError> {
    // IPv4 addresses are host names by this rule too (digits and dots).
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if is_name {
        Ok(host.to_owned())
    } else {
        Err(invalid(
            "ip_address",
            "must be an IPv4 address or a host name",
        ))
    }
}

fn check_code(code: &str) -> Result<String, ApiError> {
    printyard_bambu::mqtt::AccessCode::parse(code)
        .map(|c| c.expose().to_owned())
        .ok_or_else(|| invalid("access_code", "must be 8 letters or digits"))
}

fn check_serial(serial: &str) -> Result<String, ApiError> {
    let serial = serial.to_ascii_uppercase();
    if (8..=32).contains(&serial.len()) && serial.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(serial)
    } else {
        Err(invalid(
            "serial_number",
            "must be 8 to 32 letters or digits",
        ))
    }
}

fn check_model(model: Option<String>) -> Result<Option<String>, ApiError> {
    match model.map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()) {
        Some(m) if m.chars().count() > 64 || m.contains('\0') => {
            Err(invalid("model", "must be at most 64 characters, no NUL"))
        }
        other => Ok(other),
    }
}

fn check_site(site: &str) -> Result<String, ApiError> {
    Site::parse(site)
        .map(|s| s.as_str().to_owned())
        .map_err(|e| invalid("site", &e.to_string()))
}

fn state_of(status: Option<&StatusRecord>) -> PrinterState {
    match status {
        Some(s) if s.connected => s.status.as_ref().map_or(PrinterState::Idle, |st| st.state),
        _ => PrinterState::Offline,
    }
}

pub(crate) fn view(row: &PrinterRow, status: Option<&StatusRecord>, with_job: bool) -> Printer {
    let state = state_of(status);
    let model = row.model_name(status.and_then(|s| s.model.as_deref()));
    let current_print = status
        .and_then(|s| s.status.as_ref())
        .filter(|_| {
            with_job
                && matches!(
                    state,
                    PrinterState::Printing | PrinterState::Paused | PrinterState::Preparing
                )
        })
        .map(|s| CurrentPrint {
            filename: s.gcode_file.clone().or_else(|| s.job_name.clone()),
            progress: s.progress,
            remaining_time: s.remaining_time,
        });
    Printer {
        id: row.id,
        name: row.name.clone(),
        ip_address: row.host.clone(),
        serial_number: row.serial.clone(),
        model,
        status: state,
        site: row.site.clone(),
        auto_clear_plate: row.auto_clear_plate,
        maintenance: row.maintenance,
        firmware: status.and_then(|s| s.firmware.clone()),
        current_print,
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListPrinters {
    /// Only this site's printers.
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
}

#[utoipa::path(get, path = "/printers", operation_id = "listPrinters", tag = "printers",
    params(ListPrinters),
    responses((status = 200, body = Vec<Printer>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ListPrinters>,
) -> Result<Json<Vec<Printer>>, ApiError> {
    let site = crate::extract::site_query(query.site.as_deref())?.map(|s| s.as_str().to_owned());
    let rows = state.registry.list().await?;
    Ok(Json(state.statuses.with(|statuses| {
        rows.iter()
            .filter(|r| site.as_ref().is_none_or(|site| r.site == *site))
            .filter(|r| caller.reach.allows(r.id, Some(&r.site)))
            .map(|r| view(r, statuses.get(&r.id), false))
            .collect()
    })))
}

#[utoipa::path(get, path = "/printers/{id}", operation_id = "getPrinter", tag = "printers",
    params(("id" = i64, Path)),
    responses((status = 200, body = Printer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Printer>, ApiError> {
    let row = state.registry.get(id).await?;
    Ok(Json(view(&row, state.statuses.get(id).as_ref(), true)))
}

#[utoipa::path(get, path = "/printers/{id}/status", operation_id = "getPrinterStatus", tag = "printers",
    params(("id" = i64, Path)),
    responses((status = 200, body = PrinterStatusView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn status(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PrinterStatusView>, ApiError> {
    // Whether the printer exists: the watched registry bucket, else Postgres (the authority:
    // a printer just added may not have reached the watch yet).
    if !state.known.contains(id) {
        state.registry.get(id).await?;
    }
    let record = state.statuses.get(id);
    let live = record.as_ref().and_then(|r| r.status.clone());
    let s = live.unwrap_or(printyard_contracts::printer::PrinterStatus {
        state: PrinterState::Offline,
        progress: 0,
        remaining_time: 0,
        current_layer: 0,
        total_layers: 0,
        temperatures: Default::default(),
        hms_status: HmsStatus::Ok,
        hms: vec![],
        job_name: None,
        gcode_file: None,
        task_id: None,
        print_error: None,
        filaments: vec![],
        has_ams: false,
    });
    Ok(Json(PrinterStatusView {
        state: state_of(record.as_ref()),
        progress: s.progress,
        remaining_time: s.remaining_time,
        current_layer: s.current_layer,
        total_layers: s.total_layers,
        temperatures: Temperatures {
            nozzle: s.temperatures.nozzle,
            bed: s.temperatures.bed,
            chamber: s.temperatures.chamber,
            nozzle_target: s.temperatures.nozzle_target,
            bed_target: s.temperatures.bed_target,
        },
        hms_status: s.hms_status,
        hms: s.hms,
        connected: record.as_ref().is_some_and(|r| r.connected),
        last_seen: record.as_ref().and_then(|r| r.last_seen),
        connection_error: record.and_then(|r| r.connection_error),
        filaments: s.filaments,
        has_ams: s.has_ams,
    }))
}

#[utoipa::path(post, path = "/printers", operation_id = "createPrinter", tag = "printers", request_body = CreatePrinter,
    responses((status = 201, body = Printer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreatePrinter>,
) -> Result<(StatusCode, Json<Printer>), ApiError> {
    let new = NewPrinter {
        name: check_name(&body.name)?,
        host: check_host(&body.ip_address)?,
        serial: check_serial(&body.serial_number)?,
        access_code: check_code(&body.access_code)?,
        site: check_site(body.site.as_deref().unwrap_or("default"))?,
        model: check_model(body.model)?,
        tls_insecure: body.tls_insecure,
        auto_clear_plate: body.auto_clear_plate,
    };
    caller.reach.check_whole_site(&new.site)?;
    let row = state.registry.create(new).await?;
    tracing::info!(printer = row.id, serial = %row.serial, "printer added");
    Ok((StatusCode::CREATED, Json(view(&row, None, false))))
}

#[utoipa::path(patch, path = "/printers/{id}", operation_id = "updatePrinter", tag = "printers", request_body = UpdatePrinter,
    params(("id" = i64, Path)),
    responses((status = 200, body = Printer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdatePrinter>,
) -> Result<Json<Printer>, ApiError> {
    let change = PrinterChange {
        name: body.name.as_deref().map(check_name).transpose()?,
        host: body.ip_address.as_deref().map(check_host).transpose()?,
        access_code: body.access_code.as_deref().map(check_code).transpose()?,
        site: body.site.as_deref().map(check_site).transpose()?,
        model: check_model(body.model)?,
        tls_insecure: body.tls_insecure,
        clear_tls_pin: body.clear_tls_pin,
        auto_clear_plate: body.auto_clear_plate,
        maintenance: body.maintenance,
    };
    if let Some(site) = &change.site {
        caller.reach.check_whole_site(site)?;
    }
    let row = state.registry.update(id, change).await?;
    Ok(Json(view(&row, state.statuses.get(id).as_ref(), true)))
}

#[utoipa::path(delete, path = "/printers/{id}", operation_id = "deletePrinter", tag = "printers",
    params(("id" = i64, Path)),
    responses((status = 200, body = Deleted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Deleted>, ApiError> {
    let row = state.registry.delete(id).await?;
    tracing::info!(printer = id, "printer deleted");
    state.registry.announce_removed(&row).await;
    Ok(Json(Deleted { id, deleted: true }))
}

/// The answer to a command the printer accepted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommandAccepted {
    /// `refresh_requested` (the reference's answer to refresh-status), `pause_requested`, ...
    pub status: String,
}

/// Sends `command` to the gateway holding printer `id` and waits for its answer (the
/// printer's acknowledgement, within the gateway's deadline).
async fn command(
    state: &AppState,
    id: i64,
    command: PrinterCommand,
) -> Result<Json<CommandAccepted>, ApiError> {
    let row = state.registry.get(id).await?;
    let site = Site::parse(&row.site).unwrap_or_default();
    let deadline = state.http.command_deadline();
    let outcome = state
        .rpc
        .call_printer(COMMAND, &site, id, &CommandRequest { command }, deadline)
        .await
        .map_err(|err| call_failed(id, &site, err))?;
    command_answered(id, command, outcome)
}

fn not_connected(id: i64, why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PrinterNotConnected,
        format!("Printer {id} is not connected: {why}"),
    )
}

/// A printer call that got no answer from a gateway, as the API says it.
fn call_failed(id: i64, site: &Site, err: PrinterCallError) -> ApiError {
    match err {
        PrinterCallError::NoGateway { .. } => {
            not_connected(id, &format!("no gateway of site `{site}` holds it"))
        }
        PrinterCallError::TimedOut(deadline) => ApiError::new(
            ErrorCode::PrinterTimeout,
            format!(
                "Printer {id} did not answer within {} s",
                deadline.as_secs()
            ),
        ),
        PrinterCallError::Unreachable(err) => {
            tracing::warn!(printer = id, error = %err, "command request failed");
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The printer gateway is unavailable, try again shortly",
            )
        }
        PrinterCallError::Unreadable(err) => {
            tracing::error!(printer = id, error = %err, "unreadable command answer");
            ApiError::new(ErrorCode::InternalError, "Internal server error")
        }
    }
}

/// The gateway's answer to a command, as the API says it.
fn command_answered(
    id: i64,
    command: PrinterCommand,
    outcome: CommandOutcome,
) -> Result<Json<CommandAccepted>, ApiError> {
    match outcome {
        CommandOutcome::Accepted => {
            tracing::info!(
                printer = id,
                command = command.as_str(),
                "printer command accepted"
            );
            let status = match command {
                PrinterCommand::Refresh => "refresh_requested".to_owned(),
                other => format!("{}_requested", other.as_str()),
            };
            Ok(Json(CommandAccepted { status }))
        }
        CommandOutcome::NotConnected { reason } => Err(not_connected(
            id,
            reason.as_deref().unwrap_or("it has not connected yet"),
        )),
        CommandOutcome::Refused {
            signed_required: true,
            ..
        } => Err(ApiError::new(
            ErrorCode::PrinterRefused,
            format!(
                "Printer {id} refused the command: its firmware accepts only signed control \
                 commands. Turn on Developer Mode (LAN only mode) on the printer to control it \
                 from Printyard; status keeps working without it"
            ),
        )),
        CommandOutcome::Refused { reason, .. } => Err(ApiError::new(
            ErrorCode::PrinterRefused,
            format!("Printer {id} refused the command: {reason}"),
        )),
        CommandOutcome::TimedOut { after_ms } => Err(ApiError::new(
            ErrorCode::PrinterTimeout,
            format!(
                "Printer {id} did not acknowledge the command within {} ms",
                after_ms
            ),
        )),
    }
}

#[utoipa::path(post, path = "/printers/{id}/refresh-status", operation_id = "refreshPrinterStatus", tag = "printers",
    params(("id" = i64, Path)),
    responses((status = 200, body = CommandAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn refresh_status(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CommandAccepted>, ApiError> {
    command(&state, id, PrinterCommand::Refresh).await
}

#[utoipa::path(post, path = "/printers/{id}/pause", operation_id = "pausePrinter", tag = "printers",
    params(("id" = i64, Path)),
    responses((status = 200, body = CommandAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CommandAccepted>, ApiError> {
    command(&state, id, PrinterCommand::Pause).await
}

#[utoipa::path(post, path = "/printers/{id}/resume", operation_id = "resumePrinter", tag = "printers",
    params(("id" = i64, Path)),
    responses((status = 200, body = CommandAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CommandAccepted>, ApiError> {
    command(&state, id, PrinterCommand::Resume).await
}

#[utoipa::path(post, path = "/printers/{id}/stop", operation_id = "stopPrinter", tag = "printers",
    params(("id" = i64, Path)),
    responses((status = 200, body = CommandAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn stop(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CommandAccepted>, ApiError> {
    command(&state, id, PrinterCommand::Stop).await
}

#[utoipa::path(post, path = "/printers/{id}/clear-plate", tag = "printers", operation_id = "clearPrinterPlate",
    params(("id" = i64, Path, description = "The printer")),
    responses((status = 200, description = "The plate is marked cleared: the printer may take its next queued job", body = PlateCleared), (status = 400, description = "The id is not a number", body = ErrorBody), (status = 401, description = "No or invalid API key", body = ErrorBody), (status = 403, description = "The key lacks the control permission", body = ErrorBody), (status = 404, description = "No such printer", body = ErrorBody), (status = 429, description = "Rate limited", body = ErrorBody), (status = 503, description = "The scheduler is unavailable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn clear_plate(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PlateCleared>, ApiError> {
    state.registry.get(id).await?;
    let cleared = state
        .rpc
        .call(CLEAR_PLATE, &ClearPlate { printer_id: id })
        .await?;
    tracing::info!(printer = id, "plate marked cleared");
    Ok(Json(cleared))
}

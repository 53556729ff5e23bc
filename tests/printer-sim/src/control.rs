//! The simulator's control API (HTTP, JSON): inspect printers and inject faults.
//!
//! | route | effect |
//! |---|---|
//! | `GET /printers`, `GET /printers/{serial}` | state, job, connection counts, faults |
//! | `PUT /printers/{serial}/faults` | `{refuse_connections, silent, quiet, no_sd_card, ftps_delay_ms, require_signed}` |
//! | `POST /printers/{serial}/drop` | close every open connection now |
//! | `PUT /printers/{serial}/firmware` `{version}` | install firmware `NN.NN.NN.NN`: the printer restarts (connections close) and reports it in `get_version` |
//! | `POST /printers/{serial}/hms` `{attr, code}` / `DELETE` | raise / clear an HMS entry |
//! | `POST /printers/{serial}/fail` `{print_error?}` | fail the current print |
//! | `POST /printers/{serial}/garbage` | publish a payload that is not JSON |
//! | `PUT /printers/{serial}/files/{path}` | put a file into the printer's storage |
//! | `POST /printers/{serial}/start` `{path, plate?}` | start a print "from the touchscreen" |
//! | `PUT /printers/{serial}/trays/{tray}` `{type, color}` | load filament into a tray (254: the external spool) |

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use serde::Deserialize;

use crate::printer::{Faults, Printer, Snapshot, Spool};

type Printers = Arc<Vec<Arc<Printer>>>;

pub fn router(printers: Vec<Arc<Printer>>) -> Router {
    Router::new()
        .route("/printers", get(list))
        .route("/printers/{serial}", get(one))
        .route("/printers/{serial}/faults", put(set_faults))
        .route("/printers/{serial}/drop", post(drop_connections))
        .route("/printers/{serial}/firmware", put(update_firmware))
        .route("/printers/{serial}/hms", post(raise_hms).delete(clear_hms))
        .route("/printers/{serial}/fail", post(fail))
        .route("/printers/{serial}/garbage", post(garbage))
        .route("/printers/{serial}/files/{*path}", put(put_file))
        .route("/printers/{serial}/start", post(start))
        .route(
            "/printers/{serial}/trays/{tray}",
            put(load_filament).delete(unload),
        )
        .with_state(Arc::new(printers))
}

type Refusal = (StatusCode, String);

fn find(printers: &Printers, serial: &str) -> Result<Arc<Printer>, Refusal> {
    printers
        .iter()
        .find(|p| p.spec.serial == serial)
        .cloned()
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no printer {serial}")))
}

async fn list(State(printers): State<Printers>) -> Json<Vec<Snapshot>> {
    Json(printers.iter().map(|p| p.snapshot()).collect())
}

async fn one(
    State(printers): State<Printers>,
    Path(serial): Path<String>,
) -> Result<Json<Snapshot>, Refusal> {
    Ok(Json(find(&printers, &serial)?.snapshot()))
}

async fn set_faults(
    State(printers): State<Printers>,
    Path(serial): Path<String>,
    Json(faults): Json<Faults>,
) -> Result<Json<Snapshot>, Refusal> {
    let printer = find(&printers, &serial)?;
    printer.set_faults(faults);
    Ok(Json(printer.snapshot()))
}

async fn drop_connections(
    State(printers): State<Printers>,
    Path(serial): Path<String>,
) -> Result<StatusCode, Refusal> {
    find(&printers, &serial)?.drop_connections();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Firmware {
    version: String,
}

async fn update_firmware(
    State(printers): State<Printers>,
    Path(serial): Path<String>,
    Json(firmware): Json<Firmware>,
) -> Result<StatusCode, Refusal> {
    let valid = firmware.version.split('.').count() == 4
        && firmware
            .version
            .split('.')
            .all(|part| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "a firmware version reads NN.NN.NN.NN".to_owned(),
        ));
    }
    find(&printers, &serial)?.update_firmware(&firmware.version);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Hms {
    attr: u32,
    code: u32,
}

async fn raise_hms(
    State(printers): State<Printers>,
    Path(serial): Path<String>,
    Json(hms): Json<Hms>,
) -> Result<StatusCode, Refusal> {
    find(&printers, &serial)?.raise_hms(hms.attr, hms.code);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_hms(
    State(printers): State<Printers>,
    Path(serial): Path<String>,
) -> Result<StatusCode, Refusal> {
    find(&printers, &serial)?.clear_hms();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
struct Fail {
    print_error: Option<u32>,
}

async fn fail(
    State(printers): State<Printers>,
    Path(serial): Path<String>,
    body: Option<Json<Fail>>,
) -> Result<StatusCode, Refusal> {
    let Json(fail) = body.unwrap_or_default();
    find(&printers, &serial)?
        .fail_print(fail.print_error)
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(|e| (StatusCode::CONFLICT, e))
}

async fn garbage(
    State(printers): State<Printers>,
    Path(serial): Path<String>,
) -> Result<StatusCode, Refusal> {
    find(&printers, &serial)?.send_garbage();
    Ok(StatusCode::NO_CONTENT)
}

async fn put_file(
    State(printers): State<Printers>,
    Path((serial, path)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, Refusal> {
    if path.split('/').any(|p| p == "..") {
        return Err((StatusCode::BAD_REQUEST, "no .. in paths".to_owned()));
    }
    find(&printers, &serial)?.store(&format!("/{}", path.trim_start_matches('/')), body);
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
struct Start {
    path: String,
    #[serde(default = "first_plate")]
    plate: u32,
}

fn first_plate() -> u32 {
    1
}

async fn start(
    State(printers): State<Printers>,
    Path(serial): Path<String>,
    Json(start): Json<Start>,
) -> Result<Json<Snapshot>, Refusal> {
    let printer = find(&printers, &serial)?;
    printer
        .start_from_touchscreen(&start.path, start.plate)
        .map_err(|e| (StatusCode::CONFLICT, e))?;
    Ok(Json(printer.snapshot()))
}

/// A spool a person loads: type and colour as set on the printer; a Bambu spool also brings
/// its RFID tag, weight, product line and what is left (as the AMS reads them).
#[derive(Deserialize)]
struct Filament {
    #[serde(rename = "type")]
    kind: String,
    color: String,
    tag: Option<String>,
    weight: Option<u32>,
    sub_brand: Option<String>,
    remain: Option<f64>,
}

async fn load_filament(
    State(printers): State<Printers>,
    Path((serial, tray)): Path<(String, u16)>,
    Json(filament): Json<Filament>,
) -> Result<Json<Snapshot>, Refusal> {
    let printer = find(&printers, &serial)?;
    let valid_color =
        filament.color.len() == 8 && filament.color.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid_color || filament.kind.trim().is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            "type must be set and color be RRGGBBAA".to_owned(),
        ));
    }
    let tag = filament.tag.filter(|t| !t.is_empty());
    if tag
        .as_ref()
        .is_some_and(|t| t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "tag must be 32 hexadecimal digits (a tray_uuid)".to_owned(),
        ));
    }
    let remain = filament
        .remain
        .unwrap_or(if tag.is_some() { 100.0 } else { -1.0 });
    printer.load_spool(
        tray,
        Spool {
            kind: filament.kind.trim().to_owned(),
            color: filament.color.to_ascii_uppercase(),
            weight_g: filament
                .weight
                .unwrap_or(if tag.is_some() { 1000 } else { 0 }),
            tag: tag.map(|t| t.to_ascii_uppercase()),
            sub_brand: filament.sub_brand,
            remain: remain.clamp(-1.0, 100.0),
        },
    );
    Ok(Json(printer.snapshot()))
}

async fn unload(
    State(printers): State<Printers>,
    Path((serial, tray)): Path<(String, u16)>,
) -> Result<Json<Snapshot>, Refusal> {
    let printer = find(&printers, &serial)?;
    printer.unload(tray);
    Ok(Json(printer.snapshot()))
}

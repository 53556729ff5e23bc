//! The reference's Camera endpoints: an MJPEG stream, a snapshot, and stopping every stream of
//! a printer. The camera itself is opened by the gateway holding the printer, once for every
//! viewer on every replica ([`crate::camera`]).

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::stream;
use printyard_contracts::camera::{DEFAULT_FPS, MAX_FPS};
use printyard_contracts::farm::Site;
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::camera::{TapState, Viewer, part};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::archives::BinaryFile;
use crate::state::AppState;

/// The boundary between the frames of a stream.
const BOUNDARY: &str = "printyard-frame";

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Frames per second, 1–30 (default 5). The camera's own rate is the most a viewer gets:
    /// A1 and P1 cameras send one or two frames a second.
    #[param(minimum = 1, maximum = 30)]
    pub fps: Option<i64>,
}

/// The answer to `POST /printers/{id}/camera/stop`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CameraStopped {
    pub printer_id: i64,
    pub stopped: bool,
}

async fn site_of(state: &AppState, id: i64) -> Result<Site, ApiError> {
    let row = state.registry.get(id).await?;
    Ok(Site::parse(&row.site).unwrap_or_default())
}

#[utoipa::path(get, path = "/printers/{id}/camera/stream", tag = "camera", operation_id = "streamCamera",
    params(("id" = i64, Path, description = "The printer"), StreamQuery),
    responses(
        (status = 200, description = "`multipart/x-mixed-replace` MJPEG: one `image/jpeg` part per frame, until the client leaves or the camera stops", content((BinaryFile = "multipart/x-mixed-replace"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, description = "`CAMERA_UNAVAILABLE`: the printer is offline, the camera unreachable or refusing the access code, or no frame came in time (the detail says which)", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let fps = match query.fps {
        None => DEFAULT_FPS,
        Some(fps) if (1..=i64::from(MAX_FPS)).contains(&fps) => fps as u32,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                format!("Invalid query `fps`: 1 to {MAX_FPS}"),
            ));
        }
    };
    let site = site_of(&state, id).await?;
    let viewer = state.cameras.watch(site, id, fps).await?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(fps));
    let body = stream::unfold(
        (viewer, None::<Instant>, Vec::<bytes::Bytes>::new()),
        move |(mut viewer, mut sent_at, mut pending): (
            Viewer,
            Option<Instant>,
            Vec<bytes::Bytes>,
        )| async move {
            loop {
                if let Some(next) = pending.pop() {
                    return Some((Ok::<_, std::io::Error>(next), (viewer, sent_at, pending)));
                }
                let state = viewer.frames.borrow_and_update().clone();
                match state {
                    TapState::Ended(_) => return None,
                    // Thinned to the viewer's rate (a little early is on time: frames jitter).
                    TapState::Frame(frame)
                        if sent_at.is_none_or(|at| at.elapsed() >= interval.mul_f64(0.9)) =>
                    {
                        sent_at = Some(Instant::now());
                        pending = part(&frame, BOUNDARY).into_iter().rev().collect();
                        continue;
                    }
                    _ => {}
                }
                if viewer.frames.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("multipart/x-mixed-replace; boundary=printyard-frame"),
    );
    super::unbuffered(headers, "no-store");
    Ok(response)
}

#[utoipa::path(get, path = "/printers/{id}/camera/snapshot", tag = "camera", operation_id = "cameraSnapshot",
    params(("id" = i64, Path, description = "The printer")),
    responses(
        (status = 200, description = "The newest frame", content((BinaryFile = "image/jpeg"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, description = "`CAMERA_UNAVAILABLE`, with the reason", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn snapshot(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let site = site_of(&state, id).await?;
    let frame = state.cameras.snapshot(site, id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        frame.jpeg,
    )
        .into_response())
}

#[utoipa::path(post, path = "/printers/{id}/camera/stop", tag = "camera", operation_id = "stopCamera",
    params(("id" = i64, Path, description = "The printer")),
    responses(
        (status = 200, description = "Every stream of the printer ended, on every replica, and its camera closed", body = CameraStopped),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn stop(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CameraStopped>, ApiError> {
    let site = site_of(&state, id).await?;
    state.cameras.stop(site, id).await?;
    Ok(Json(CameraStopped {
        printer_id: id,
        stopped: true,
    }))
}

//! `/archives`: every print with its 3MF (the reference's endpoints), plus uploads into the
//! library and plate thumbnails. The `archive` service owns the data; files stream through
//! NATS in both directions, so memory does not grow with their size:
//!
//! - upload: the multipart field is copied into the transfer bucket in 128 KiB chunks, then
//!   `archive` imports it;
//! - download: byte ranges are pulled from `archive` a few at a time while the response is
//!   being written;
//! - CSV export: pages are walked by keyset and written as they arrive.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use printyard_contracts::archive::{
    self as contract, Archive, ArchiveFilter, ArchiveId, ArchivePage, ArchivePatch, ArchiveStatus,
    FileKind, FileLocation, FileRequest, ImportUpload, ListArchives, MAX_CHUNK_BYTES, PageStart,
    UpdateArchive,
};
use printyard_contracts::filament::{self, ListUsage};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::auth::access::Caller;
use crate::error::ApiError;
use crate::export::{self, Rows, Sheet, cell_text, disposition};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// Archives per page when `limit` is not given (the reference's default).
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest `limit`.
pub const MAX_LIMIT: i64 = 1000;
/// Rows per page while exporting.
const EXPORT_PAGE: i64 = 1000;
/// Ranges of a download in flight at once.
const CHUNKS_IN_FLIGHT: usize = 4;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArchiveQuery {
    /// Only this printer's archives.
    pub printer_id: Option<i64>,
    /// `printing`, `success`, `failed`, `stopped`, `uploaded` or `unknown`.
    #[param(value_type = Option<ArchiveStatus>)]
    pub status: Option<String>,
    /// From this date (`YYYY-MM-DD`, UTC) or instant (RFC 3339), inclusive.
    #[param(value_type = Option<String>, format = Date)]
    pub start_date: Option<String>,
    /// Up to this date (the whole day) or instant, inclusive.
    #[param(value_type = Option<String>, format = Date)]
    pub end_date: Option<String>,
    /// Words matched (as prefixes) in name, file name, notes, tags and printer name.
    #[param(max_length = 200)]
    pub search: Option<String>,
    pub project_id: Option<i64>,
    /// Only archives of prints made at this site.
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
    /// 1 to 1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (default) or `xlsx`.
    #[param(value_type = Option<String>, pattern = "^(csv|xlsx)$")]
    pub format: Option<String>,
    /// The list's filters (an export has every matching archive: no limit or offset).
    pub printer_id: Option<i64>,
    #[param(value_type = Option<ArchiveStatus>)]
    pub status: Option<String>,
    #[param(value_type = Option<String>, format = Date)]
    pub start_date: Option<String>,
    #[param(value_type = Option<String>, format = Date)]
    pub end_date: Option<String>,
    pub search: Option<String>,
    pub project_id: Option<i64>,
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
}

impl ExportQuery {
    fn filters(self) -> ArchiveQuery {
        ArchiveQuery {
            printer_id: self.printer_id,
            status: self.status,
            start_date: self.start_date,
            end_date: self.end_date,
            search: self.search,
            project_id: self.project_id,
            site: self.site,
            limit: None,
            offset: None,
        }
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ValidationError, detail)
}

impl ArchiveQuery {
    fn filter(&self) -> Result<ArchiveFilter, ApiError> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                ArchiveStatus::parse(s).ok_or_else(|| {
                    invalid("Invalid query `status`: one of printing, success, failed, stopped, uploaded, unknown")
                })
            })
            .transpose()?;
        let (from, until) =
            crate::dates::parse_range(self.start_date.as_deref(), self.end_date.as_deref())?;
        if self
            .search
            .as_ref()
            .is_some_and(|s| s.chars().count() > 200)
        {
            return Err(invalid("Invalid query `search`: at most 200 characters"));
        }
        let site = crate::extract::site_query(self.site.as_deref())?.map(|s| s.as_str().to_owned());
        Ok(ArchiveFilter {
            printer_id: self.printer_id,
            status,
            from,
            until,
            search: self.search.clone().filter(|s| !s.trim().is_empty()),
            project_id: self.project_id,
            site,
            printer_ids: None,
        })
    }
}

#[utoipa::path(get, path = "/archives", operation_id = "listArchives", tag = "archives",
    params(ArchiveQuery),
    responses((status = 200, body = ArchivePage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ArchiveQuery>,
) -> Result<Json<ArchivePage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(format!("Invalid query `limit`: 1 to {MAX_LIMIT}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(invalid("Invalid query `offset`: must not be negative"));
    }
    let mut filter = query.filter()?;
    filter.printer_ids = caller.reach.printer_ids(&state);
    let request = ListArchives {
        filter,
        start: PageStart::Offset(offset),
        limit,
        count_total: true,
    };
    Ok(Json(state.rpc.call(contract::LIST, &request).await?))
}

#[utoipa::path(get, path = "/archives/{id}", operation_id = "getArchive", tag = "archives",
    params(("id" = i64, Path)),
    responses((status = 200, body = Archive), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Archive>, ApiError> {
    // What each filament took from which spool, asked of the inventory at the same time; an
    // archive is answered without it when the inventory does not answer.
    let usage = ListUsage {
        archive_id: Some(id),
        spool_id: None,
        limit: 64,
    };
    let which = ArchiveId { id };
    let (archive, usage) = tokio::join!(
        state.rpc.call(contract::GET, &which),
        state.rpc.call(filament::USAGE, &usage)
    );
    let mut archive = archive?;
    if !within_reach(&state, &caller, &archive) {
        return Err(unknown(id));
    }
    if let Ok(usage) = usage {
        for filament in &mut archive.filaments {
            let used = usage.usage.iter().find(|u| {
                filament
                    .slot
                    .is_some_and(|s| i64::from(s) == i64::from(u.slot))
            });
            if let Some(used) = used {
                filament.tray = used.tray;
                filament.spool_id = used.spool_id;
                filament.used_g = Some(used.grams);
            }
        }
    }
    Ok(Json(archive))
}

#[utoipa::path(patch, path = "/archives/{id}", operation_id = "updateArchive", tag = "archives",
    params(("id" = i64, Path)), request_body = ArchivePatch,
    responses((status = 200, body = Archive), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<ArchivePatch>,
) -> Result<Json<Archive>, ApiError> {
    check_archive(&state, &caller, id).await?;
    let request = UpdateArchive { id, patch };
    Ok(Json(state.rpc.call(contract::UPDATE, &request).await?))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeletedArchive {
    pub id: i64,
    pub deleted: bool,
}

#[utoipa::path(delete, path = "/archives/{id}", operation_id = "deleteArchive", tag = "archives",
    params(("id" = i64, Path)),
    responses((status = 200, body = DeletedArchive), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeletedArchive>, ApiError> {
    check_archive(&state, &caller, id).await?;
    let deleted = state.rpc.call(contract::DELETE, &ArchiveId { id }).await?;
    Ok(Json(DeletedArchive {
        id,
        deleted: deleted.deleted,
    }))
}

/// Streams a stored object by pulling its ranges from `archive`.
fn stream_object(state: &AppState, location: &FileLocation) -> Body {
    Body::from_stream(printyard_service::files::object_stream(
        state.rpc.clone(),
        location,
        MAX_CHUNK_BYTES,
        CHUNKS_IN_FLIGHT,
    ))
}

/// Whether a caller may see `archive`: a print of a printer within reach, or a library upload
/// (no printer: the farm's shared files, which any caller may queue).
fn within_reach(state: &AppState, caller: &Caller, archive: &Archive) -> bool {
    caller.reach.is_unlimited()
        || archive.printer_id.is_none_or(|printer| {
            caller.reach.allows(
                printer,
                archive
                    .site
                    .as_deref()
                    .or(state.known.site(printer).as_deref()),
            )
        })
}

fn unknown(id: i64) -> ApiError {
    ApiError::not_found(format!("Archive {id} not found"))
}

/// `Ok` when archive `id` is within the caller's reach; an unknown archive's answer otherwise.
async fn check_archive(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    if caller.reach.is_unlimited() {
        return Ok(());
    }
    let archive = state.rpc.call(contract::GET, &ArchiveId { id }).await?;
    if within_reach(state, caller, &archive) {
        Ok(())
    } else {
        Err(unknown(id))
    }
}

async fn file_response(state: &AppState, id: i64, kind: FileKind) -> Result<Response, ApiError> {
    let location = state
        .rpc
        .call(contract::FILE, &FileRequest { id, kind })
        .await?;
    let (content_type, disposition_kind) = match kind {
        FileKind::ThreeMf => ("application/octet-stream", "attachment"),
        FileKind::Thumbnail => ("image/png", "inline"),
    };
    let mut response = stream_object(state, &location).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(location.size));
    headers.insert(
        header::CONTENT_DISPOSITION,
        disposition(disposition_kind, &location.filename),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/archives/{id}/3mf", operation_id = "downloadArchive3mf", tag = "archives",
    params(("id" = i64, Path)),
    responses((status = 200, description = "The 3MF file", content((BinaryFile = "application/octet-stream"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "No such archive, or it has no file", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn download(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    check_archive(&state, &caller, id).await?;
    file_response(&state, id, FileKind::ThreeMf).await
}

#[utoipa::path(get, path = "/archives/{id}/thumbnail", operation_id = "getArchiveThumbnail", tag = "archives",
    params(("id" = i64, Path)),
    responses((status = 200, description = "The plate thumbnail", content((BinaryFile = "image/png"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "No such archive, or it has no thumbnail", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn thumbnail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    check_archive(&state, &caller, id).await?;
    file_response(&state, id, FileKind::Thumbnail).await
}

fn form_error(err: multer::Error) -> ApiError {
    match err {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge, "The upload is too large")
        }
        other if printyard_service::http::is_too_slow(&other) => {
            ApiError::new(ErrorCode::RequestTimeout, "The upload arrived too slowly")
        }
        other => ApiError::new(ErrorCode::BadRequest, format!("Unreadable form: {other}")),
    }
}

/// How long importing a file of `size` bytes may take: hashing, checking and storing it.
fn import_deadline(size: u64) -> Duration {
    Duration::from_secs(30) + Duration::from_millis(size / (20 * 1024 * 1024) * 1000)
}

/// A file's bytes, as a download.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct BinaryFile(Vec<u8>);

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The 3MF file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[utoipa::path(post, path = "/archives", operation_id = "uploadArchive", tag = "archives",
    request_body(content = UploadForm, content_type = "multipart/form-data", description = "A sliced 3MF in the field `file`"),
    responses((status = 201, body = Archive), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, description = "Not a printable 3MF (not a ZIP, ZIP bomb, unsafe names, unsliced)", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<(StatusCode, Json<Archive>), ApiError> {
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Expected a multipart/form-data body with the 3MF in the field `file`",
            )
        })?;
    // The general body limit is for JSON; a 3MF has its own (`http.max_upload_bytes`), and
    // the form around it a little more.
    let max = state.http.max_upload_bytes;
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(max.saturating_add(1024 * 1024)));
    let mut multipart = multer::Multipart::with_constraints(
        request.into_body().into_data_stream(),
        boundary,
        constraints,
    );
    let deadline = Duration::from_secs(state.http.upload_timeout_secs.max(1));
    let received = tokio::time::timeout(deadline, async {
        loop {
            let field = multipart.next_field().await.map_err(form_error)?;
            let Some(field) = field else {
                return Err(invalid("The form has no field `file`"));
            };
            if field.name() != Some("file") {
                continue;
            }
            let filename = field.file_name().unwrap_or("upload.3mf").to_owned();
            let object = format!("upload/{:032x}", rand::random::<u128>());
            let reader = tokio_util::io::StreamReader::new(field.map_err(std::io::Error::other));
            // One byte over the limit tells "too large" without reading the rest.
            let mut limited = reader.take(max.saturating_add(1));
            let info = state
                .transfer
                .put(object.as_str(), &mut limited)
                .await
                .map_err(|e| {
                    let text = e.to_string();
                    tracing::warn!(error = %text, "upload into the transfer bucket failed");
                    if text.contains("size limit") {
                        ApiError::new(ErrorCode::PayloadTooLarge, "The file is too large")
                    } else if text.contains("multipart") || text.contains("stream") {
                        ApiError::new(ErrorCode::BadRequest, "The upload was cut short")
                    } else {
                        ApiError::new(
                            ErrorCode::ServiceUnavailable,
                            "File transfer to the archive is unavailable, try again shortly",
                        )
                    }
                })?;
            if info.size as u64 > max {
                let _ = state.transfer.delete(object.as_str()).await;
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("The file is larger than {max} bytes"),
                ));
            }
            return Ok((object, filename, info.size as u64));
        }
    })
    .await
    .map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("The upload took longer than {} s", deadline.as_secs()),
        )
    })??;
    let (object, filename, size) = received;
    let archive = state
        .rpc
        .call_within(
            contract::IMPORT,
            &ImportUpload { object, filename },
            import_deadline(size),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(archive)))
}

// ---- export ----

const EXPORT_COLUMNS: [&str; 16] = [
    "id",
    "name",
    "filename",
    "printer_id",
    "printer_name",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "duration",
    "filament_used",
    "filament_type",
    "project_id",
    "tags",
    "notes",
    "file_size",
];

fn export_row(a: &Archive) -> [String; 16] {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let time = |t: Option<DateTime<Utc>>| opt(t.map(|t| t.to_rfc3339()));
    [
        a.id.to_string(),
        cell_text(&a.name),
        cell_text(&a.filename),
        opt(a.printer_id.map(|v| v.to_string())),
        cell_text(&opt(a.printer_name.clone())),
        a.status.as_str().to_owned(),
        a.created_at.to_rfc3339(),
        time(a.started_at),
        time(a.completed_at),
        opt(a.duration.map(|v| v.to_string())),
        opt(a.filament_used.map(|v| v.to_string())),
        cell_text(&opt(a.filament_type.clone())),
        opt(a.project_id.map(|v| v.to_string())),
        cell_text(&a.tags.join(", ")),
        cell_text(&opt(a.notes.clone())),
        opt(a.file_size.map(|v| v.to_string())),
    ]
}

/// Walks every archive matching `filter`, page by page (keyset: deep pages stay fast), as
/// export rows.
fn pages(
    state: AppState,
    filter: ArchiveFilter,
) -> impl futures::Stream<Item = Result<Rows, ApiError>> + Send + 'static {
    futures::stream::try_unfold(Some(PageStart::Offset(0)), move |start| {
        let state = state.clone();
        let filter = filter.clone();
        async move {
            let Some(start) = start else { return Ok(None) };
            let request = ListArchives {
                filter,
                start,
                limit: EXPORT_PAGE,
                count_total: false,
            };
            let page = state.rpc.call(contract::LIST, &request).await?;
            let next = (page.archives.len() as i64 == EXPORT_PAGE)
                .then(|| page.archives.last())
                .flatten()
                .map(|last| PageStart::After {
                    created_at: last.created_at,
                    id: last.id,
                });
            let rows = page
                .archives
                .iter()
                .map(|a| export_row(a).to_vec())
                .collect();
            Ok(Some((rows, next)))
        }
    })
}

#[utoipa::path(get, path = "/archives/export", tag = "archives", operation_id = "exportArchives",
    params(ExportQuery),
    responses((status = 200, description = "CSV (streamed) or XLSX of the archives matching the filters", content((String = "text/csv"), (BinaryFile = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = query.format.clone();
    let mut filter = query.filters().filter()?;
    filter.printer_ids = caller.reach.printer_ids(&state);
    let sheet = Sheet {
        columns: &EXPORT_COLUMNS,
        numeric: &[0, 3, 9, 10, 12, 15],
        name: "Archives",
        filename: "archives",
    };
    match format.as_deref().unwrap_or("csv") {
        "csv" => export::csv(sheet, pages(state, filter)).await,
        "xlsx" => export::xlsx(sheet, pages(state, filter)).await,
        _ => Err(invalid("Invalid query `format`: csv or xlsx")),
    }
}

//! Spreadsheet exports, shared by every route that offers one (`/archives/export`,
//! `/statistics/export`): CSV streamed as its pages arrive, XLSX written through a temporary
//! file (constant-memory mode) and streamed from disk, so neither holds an export in memory.
//! Text a spreadsheet would run as a formula is defused; file names are safe headers.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use printyard_contracts::ErrorCode;

use crate::error::ApiError;

/// What an export is: its columns (which of them hold numbers), its sheet and file names.
pub struct Sheet {
    pub columns: &'static [&'static str],
    /// Indexes of the columns written as numbers in XLSX.
    pub numeric: &'static [usize],
    pub name: &'static str,
    /// The download's name without its extension.
    pub filename: &'static str,
}

/// Rows of cells, one page at a time.
pub type Rows = Vec<Vec<String>>;

/// The most rows a worksheet holds (Excel's limit, less the header).
const XLSX_MAX_ROWS: u32 = 1_048_575;

/// The XLSX media type.
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// Text a spreadsheet would run as a formula gets a leading `'` (CSV injection).
pub fn cell_text(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// `Content-Disposition` with a plain ASCII fallback and the UTF-8 name (RFC 6266).
pub fn disposition(kind: &str, filename: &str) -> HeaderValue {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

fn internal(what: &str, err: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "{what} export failed");
    ApiError::new(ErrorCode::InternalError, "Internal server error")
}

/// CSV of `rows`, with the header row when `header`.
fn csv_bytes(sheet: &Sheet, header: bool, rows: &Rows) -> Result<bytes::Bytes, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 200));
    if header {
        writer
            .write_record(sheet.columns)
            .map_err(|e| internal("CSV", e))?;
    }
    for row in rows {
        writer.write_record(row).map_err(|e| internal("CSV", e))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| internal("CSV", e.into_error()))?;
    Ok(bytes.into())
}

/// A CSV response streamed page by page. The first page is read before answering, so a
/// service that is down is a 503, not a cut-off 200.
pub async fn csv<S>(sheet: Sheet, pages: S) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<Rows, ApiError>> + Send + 'static,
{
    let mut pages = Box::pin(pages);
    let first = pages.next().await.transpose()?.unwrap_or_default();
    let head = csv_bytes(&sheet, true, &first)?;
    let filename = format!("{}.csv", sheet.filename);
    let rest = pages.map(move |page| {
        page.map_err(|e| {
            tracing::warn!(error = %e, "export cut short");
            std::io::Error::other(e.to_string())
        })
        .and_then(|rows| {
            csv_bytes(&sheet, false, &rows).map_err(|e| std::io::Error::other(e.to_string()))
        })
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(rest);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        disposition("attachment", &filename),
    );
    Ok(response)
}

/// An XLSX response: the rows go to a temporary file as they arrive, the finished workbook to
/// another, streamed from disk.
pub async fn xlsx<S>(sheet: Sheet, pages: S) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<Rows, ApiError>> + Send + 'static,
{
    let failed = |e: rust_xlsxwriter::XlsxError| internal("XLSX", e);
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let worksheet = workbook
        .add_worksheet_with_constant_memory()
        .map_err(failed)?;
    worksheet.set_name(sheet.name).map_err(failed)?;
    for (col, name) in sheet.columns.iter().enumerate() {
        worksheet
            .write_string(0, col as u16, *name)
            .map_err(failed)?;
    }
    let mut row: u32 = 1;
    let mut pages = Box::pin(pages);
    while let Some(page) = pages.next().await {
        for cells in page? {
            if row > XLSX_MAX_ROWS {
                return Err(ApiError::new(
                    ErrorCode::ValidationError,
                    "More rows match than a worksheet holds: narrow the filters or export CSV",
                ));
            }
            for (col, value) in cells.iter().enumerate() {
                let numeric = sheet.numeric.contains(&col);
                let col = col as u16;
                match value.parse::<f64>() {
                    Ok(n) if numeric => worksheet.write_number(row, col, n).map_err(failed)?,
                    _ => worksheet.write_string(row, col, value).map_err(failed)?,
                };
            }
            row += 1;
        }
    }
    let file = tokio::task::spawn_blocking(move || {
        let mut file = tempfile::tempfile()?;
        workbook
            .save_to_writer(&mut file)
            .map_err(std::io::Error::other)?;
        use std::io::Seek;
        file.rewind()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| internal("XLSX", e))?
    .map_err(|e| internal("XLSX", e))?;
    let size = file.metadata().map(|m| m.len()).ok();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(XLSX));
    if let Some(size) = size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    headers.insert(
        header::CONTENT_DISPOSITION,
        disposition("attachment", &format!("{}.xlsx", sheet.filename)),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_names_are_safe_headers() {
        assert_eq!(cell_text("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(cell_text("benchy"), "benchy");
        let header = disposition("attachment", "bench\"y\r\n ✓.3mf");
        let text = header.to_str().unwrap();
        assert!(
            text.starts_with("attachment; filename=\"bench_y__ _.3mf\""),
            "{text}"
        );
        assert!(text.contains("%E2%9C%93"), "{text}");
    }
}

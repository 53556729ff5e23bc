//! The web dashboard: the files `npm run build` writes to `web/dist`, served at `/` beside the
//! API (which stays under `/api/v1`). Release builds carry them inside the binary; debug builds
//! read them from `web/dist` as they are asked for, so a rebuilt dashboard shows without a
//! cargo build. The dashboard holds no data: every request it makes goes to `/api/v1` with the
//! user's key.
//!
//! Files under `assets/` have content hashes in their names and are cached for a year; the
//! page itself is revalidated on every load. A `.gz` twin written by the build is sent to
//! clients that accept gzip.

use axum::body::Body;
use axum::http::Method;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use printyard_contracts::{ErrorBody, ErrorCode};

use crate::error::error_response;

/// The built dashboard, inside the binary in every build (`debug-embed`: a debug build would
/// otherwise read the folder at run time, and a container has no source tree).
#[derive(rust_embed::Embed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Assets;

/// The page's policy: its own scripts and styles only, images from the API (as blobs) or
/// inline, requests to its own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; \
     style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard file at `path` (the request path), or `None` when there is none: the caller
/// answers as for any unknown path.
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let name = match path.strip_prefix('/')? {
        "" => "index.html",
        name if name.contains("..") || name.contains('\\') || name.starts_with("api/") => {
            return None;
        }
        name => name,
    };
    let file = Assets::get(name)?;
    let gzip = accepts_gzip(headers)
        .then(|| Assets::get(&format!("{name}.gz")))
        .flatten();
    let mime = file.metadata.mimetype().to_owned();
    let mut response = match gzip {
        Some(zipped) => {
            let mut response = Body::from(zipped.data.into_owned()).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        }
        None => Body::from(file.data.into_owned()).into_response(),
    };
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if name.starts_with("assets/") {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
    } else {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    Some(response)
}

/// What `/` answers when the dashboard was not built into this binary.
pub fn not_built() -> Response {
    error_response(ErrorBody::new(
        ErrorCode::NotFound,
        "The dashboard is not built into this api: run `npm --prefix web ci && npm --prefix web \
         run build` and rebuild; the API is at /api/v1",
    ))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn gzip_is_sent_only_where_accepted() {
        assert!(accepts_gzip(&encoding("gzip, deflate, br")));
        assert!(accepts_gzip(&encoding("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&encoding("*")));
        assert!(!accepts_gzip(&encoding("gzip;q=0, br")));
        assert!(!accepts_gzip(&encoding("br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn paths_outside_the_dashboard_are_not_served() {
        let get = Method::GET;
        for path in [
            "/../Cargo.toml",
            "/assets/../../x",
            "/api/v1/x",
            "/a\\b",
            "relative",
        ] {
            assert!(serve(&get, path, &HeaderMap::new()).is_none(), "{path}");
        }
        assert!(serve(&Method::POST, "/", &HeaderMap::new()).is_none());
    }
}

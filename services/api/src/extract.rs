//! Request extractors whose failures speak the reference's error format: malformed JSON,
//! wrong types, missing or unknown fields (naming the field), oversized bodies, and path ids
//! that are not numbers.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use printyard_contracts::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The `site` query parameter of a listing, if given: a site name, or the reference's 422
/// naming the parameter.
pub fn site_query(site: Option<&str>) -> Result<Option<printyard_contracts::farm::Site>, ApiError> {
    site.map(|s| {
        printyard_contracts::farm::Site::parse(s).map_err(|e| {
            ApiError::new(
                ErrorCode::ValidationError,
                format!("Invalid query `site`: {e}"),
            )
        })
    })
    .transpose()
}

/// A JSON body, decoded with the field path of the first error.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Expected a body with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(ErrorCode::PayloadTooLarge, "Request body is too large")
                } else if printyard_service::http::is_too_slow(&rejection) {
                    ApiError::new(ErrorCode::RequestTimeout, "Request body arrived too slowly")
                } else {
                    ApiError::new(ErrorCode::BadRequest, "Request body could not be read")
                }
            })?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// Decodes JSON, telling syntax errors (400) from shape errors (422, naming the field).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is an object; serde would otherwise read a struct from an array, by position.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
    {
        return Err(ApiError::new(
            ErrorCode::ValidationError,
            "Invalid body: expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::Malformed(inner.to_string())
        } else if path == "." || path.is_empty() {
            ApiError::new(ErrorCode::ValidationError, format!("Invalid body: {inner}"))
        } else {
            ApiError::new(
                ErrorCode::ValidationError,
                format!("Invalid field `{path}`: {inner}"),
            )
        }
    })?;
    deserializer
        .end()
        .map_err(|err| ApiError::Malformed(err.to_string()))?;
    Ok(value)
}

/// Path parameters; a non-number where a number belongs is 400, not 500.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("Invalid path parameter: {}", rejection.body_text()),
                )
            })
    }
}

/// Query parameters, with the same error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::new(
                    ErrorCode::ValidationError,
                    format!("Invalid query: {}", rejection.body_text()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    fn detail(err: ApiError) -> (ErrorCode, String) {
        match err {
            ApiError::Known(body) => (body.code, body.detail),
            ApiError::Malformed(text) => (ErrorCode::BadRequest, text),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_json_is_told_apart_from_a_bad_shape() {
        let (code, text) = detail(decode_json::<Body>(b"{\"name\": ").unwrap_err());
        assert_eq!(code, ErrorCode::BadRequest, "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let (code, text) =
            detail(decode_json::<Body>(br#"{"name": "x", "count": "many"}"#).unwrap_err());
        assert_eq!(code, ErrorCode::ValidationError);
        assert!(text.contains("`count`"), "{text}");
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let (_, missing) = detail(decode_json::<Body>(br#"{"name": "x"}"#).unwrap_err());
        assert!(missing.contains("count"), "{missing}");
        let (_, unknown) =
            detail(decode_json::<Body>(br#"{"name": "x", "count": 1, "colour": 2}"#).unwrap_err());
        assert!(unknown.contains("colour"), "{unknown}");
    }

    #[test]
    fn trailing_garbage_is_malformed() {
        let (code, _) = detail(decode_json::<Body>(br#"{"name": "x", "count": 1} x"#).unwrap_err());
        assert_eq!(code, ErrorCode::BadRequest);
    }
}

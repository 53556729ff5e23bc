//! Error codes shared by the HTTP edge and the service calls behind it.
//!
//! The body `{ "detail": ..., "code": ... }` is the reference's error format; a service that
//! fails a NATS request sends the same pair so `api` can pass it through unchanged.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, UPPER_SNAKE error code. New codes are added here, never invented in a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BadRequest,
    ValidationError,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    InternalError,
    ServiceUnavailable,
    /// A command to a printer that has no live connection (400, as the reference says).
    PrinterNotConnected,
    /// The printer answered a command with a refusal (busy, wrong state, unsigned command).
    PrinterRefused,
    /// The printer did not answer a command in time.
    PrinterTimeout,
    /// A file that is not a printable 3MF (not a ZIP, a ZIP bomb, unsafe names, unsliced).
    InvalidFile,
    /// A queue job that is dispatching or printing cannot be removed: stop the print instead.
    JobPrinting,
    /// A camera that cannot be watched now: the printer is offline, the camera unreachable or
    /// refusing the access code, or no frame came in time (503; the detail says which).
    CameraUnavailable,
    /// A request body that did not arrive at the listener's minimum rate (408; the connection
    /// is closed).
    RequestTimeout,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::BadRequest,
        ErrorCode::ValidationError,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::InternalError,
        ErrorCode::ServiceUnavailable,
        ErrorCode::PrinterNotConnected,
        ErrorCode::PrinterRefused,
        ErrorCode::PrinterTimeout,
        ErrorCode::InvalidFile,
        ErrorCode::JobPrinting,
        ErrorCode::CameraUnavailable,
        ErrorCode::RequestTimeout,
    ];

    /// The HTTP status this code is answered with at the edge.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::ValidationError => 422,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::InternalError => 500,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::PrinterNotConnected => 400,
            ErrorCode::PrinterRefused => 409,
            ErrorCode::PrinterTimeout => 504,
            ErrorCode::InvalidFile => 422,
            ErrorCode::JobPrinting => 409,
            ErrorCode::CameraUnavailable => 503,
            ErrorCode::RequestTimeout => 408,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::PrinterNotConnected => "PRINTER_NOT_CONNECTED",
            ErrorCode::PrinterRefused => "PRINTER_REFUSED",
            ErrorCode::PrinterTimeout => "PRINTER_TIMEOUT",
            ErrorCode::InvalidFile => "INVALID_FILE",
            ErrorCode::JobPrinting => "JOB_PRINTING",
            ErrorCode::CameraUnavailable => "CAMERA_UNAVAILABLE",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
        }
    }

    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reference's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub detail: String,
    /// A stable code, for a program.
    pub code: ErrorCode,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            code,
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for ErrorBody {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_upper_snake_name_and_parse_back() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("NOPE"), None);
    }

    #[test]
    fn error_body_has_exactly_detail_and_code() {
        let body = ErrorBody::new(ErrorCode::NotFound, "Printer 7 not found");
        let value = serde_json::to_value(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"detail": "Printer 7 not found", "code": "NOT_FOUND"})
        );
    }
}

//! The date bounds of list and statistics filters: `start_date` / `end_date` as `YYYY-MM-DD`
//! (whole days in UTC: a start is the day's first instant, an end includes the whole day) or
//! RFC 3339 instants (an end includes that instant). Shared by `/archives` and `/statistics`,
//! so both count the same prints for the same dates.

use chrono::{DateTime, NaiveDate, Utc};
use printyard_contracts::ErrorCode;

use crate::error::ApiError;

/// A bound as an instant: `[from, until)` with `until` just past what `end` includes.
pub fn parse_bound(name: &str, value: &str, end: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let day = if end { day.succ_opt() } else { Some(day) };
        if let Some(start) = day.and_then(|d| d.and_hms_opt(0, 0, 0)) {
            return Ok(start.and_utc());
        }
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(value) {
        let instant = instant.with_timezone(&Utc);
        return Ok(if end {
            instant + chrono::Duration::microseconds(1)
        } else {
            instant
        });
    }
    Err(ApiError::new(
        ErrorCode::ValidationError,
        format!("Invalid query `{name}`: expected YYYY-MM-DD or an RFC 3339 date-time"),
    ))
}

/// The bounds of a filter: `[from, until)`, either open.
pub type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Both bounds of a filter.
pub fn parse_range(start: Option<&str>, end: Option<&str>) -> Result<Range, ApiError> {
    Ok((
        start
            .map(|v| parse_bound("start_date", v, false))
            .transpose()?,
        end.map(|v| parse_bound("end_date", v, true)).transpose()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_whole_days_and_instants_are_themselves() {
        let start = parse_bound("start_date", "2026-03-01", false).unwrap();
        assert_eq!(start.to_rfc3339(), "2026-03-01T00:00:00+00:00");
        let end = parse_bound("end_date", "2026-03-01", true).unwrap();
        assert_eq!(end.to_rfc3339(), "2026-03-02T00:00:00+00:00");
        assert!(parse_bound("start_date", "2026-03-01T10:00:00Z", false).is_ok());
        assert!(parse_bound("start_date", "yesterday", false).is_err());
        assert!(parse_bound("start_date", "2026-02-30", false).is_err());
    }
}

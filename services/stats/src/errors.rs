//! Printer errors as history. The gateway tells every HMS error raised (`printer_error`), every
//! print error raised (`print_error`) and every one gone (`printer_error_cleared`); a printer's
//! first full report of a connection (`printer_state`) lists the errors it shows, so one kept
//! open that it no longer shows was cleared while no gateway watched. Each is kept as a fact
//! (by event id: a redelivery is kept once) and facts are paired when asked: a raise starts an
//! error unless the same error already stands (a reconnected gateway tells it again), and the
//! first clear after it ends it, so the order facts arrive in does not matter. The print an
//! error hit is the printer's print under way when it was raised (from the print facts).

use chrono::{DateTime, Utc};
use printyard_contracts::farm::{EventKind, FarmEvent};
use printyard_contracts::printer_errors::{
    CountErrors, ErrorCount, ErrorCounts, ErrorRaised, ErrorSource, GetError, ListErrors,
    PrinterError,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;
use sqlx::PgPool;

use crate::db::unavailable;
use crate::query::{Binds, Value};

use printyard_contracts::printer_errors::MAX_PAGE;

/// Keeps the error facts of one event.
pub async fn apply(pool: &PgPool, event: &FarmEvent) -> Result<(), sqlx::Error> {
    match event.kind {
        EventKind::PrinterError | EventKind::PrintError => {
            let Ok(raised) = serde_json::from_value::<ErrorRaised>(event.data.clone()) else {
                tracing::warn!(event = %event.id, "unreadable printer error skipped");
                return Ok(());
            };
            let source = if event.kind == EventKind::PrintError {
                ErrorSource::Print
            } else {
                raised.source
            };
            let fact = Fact {
                event_id: event.id.clone(),
                source,
                code: raised.code,
                raised: true,
                severity: raised.severity,
                text: raised.text,
            };
            keep(pool, event, fact).await
        }
        EventKind::PrinterErrorCleared => {
            let Ok(cleared) = serde_json::from_value::<
                printyard_contracts::printer_errors::ErrorCleared,
            >(event.data.clone()) else {
                tracing::warn!(event = %event.id, "unreadable error clearing skipped");
                return Ok(());
            };
            let fact = Fact {
                event_id: event.id.clone(),
                source: cleared.source,
                code: cleared.code,
                raised: false,
                severity: None,
                text: None,
            };
            keep(pool, event, fact).await
        }
        EventKind::PrinterState => cleared_unseen(pool, event).await,
        _ => Ok(()),
    }
}

struct Fact {
    event_id: String,
    source: ErrorSource,
    code: String,
    raised: bool,
    severity: Option<String>,
    text: Option<String>,
}

async fn keep(pool: &PgPool, event: &FarmEvent, fact: Fact) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stats.error_facts (event_id, printer_id, site, source, code, raised, \
           severity, text, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&fact.event_id)
    .bind(event.printer_id)
    .bind(event.site.as_str())
    .bind(fact.source.as_str())
    .bind(&fact.code)
    .bind(fact.raised)
    .bind(&fact.severity)
    .bind(&fact.text)
    .bind(event.at)
    .execute(pool)
    .await
    .map(drop)
}

#[derive(Deserialize)]
struct Shows {
    /// Absent from gateways before the history: HMS errors are then left as they are.
    hms_errors: Option<Vec<String>>,
    print_error: Option<String>,
}

/// A printer's first full report: the errors standing that it no longer shows were cleared.
async fn cleared_unseen(pool: &PgPool, event: &FarmEvent) -> Result<(), sqlx::Error> {
    let Ok(shows) = serde_json::from_value::<Shows>(event.data.clone()) else {
        return Ok(());
    };
    let last_raised: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT DISTINCT ON (source, code) source, code, raised FROM stats.error_facts \
         WHERE printer_id = $1 AND at <= $2 ORDER BY source, code, at DESC, id DESC",
    )
    .bind(event.printer_id)
    .bind(event.at)
    .fetch_all(pool)
    .await?;
    for (source, code, raised) in last_raised {
        let gone = raised
            && match source.as_str() {
                "hms" => shows
                    .hms_errors
                    .as_ref()
                    .is_some_and(|shown| !shown.contains(&code)),
                _ => shows.print_error.as_deref() != Some(code.as_str()),
            };
        if !gone {
            continue;
        }
        let source = if source == "hms" {
            ErrorSource::Hms
        } else {
            ErrorSource::Print
        };
        let fact = Fact {
            event_id: format!("{}.{}.{code}", event.id, source.as_str()),
            source,
            code,
            raised: false,
            severity: None,
            text: None,
        };
        keep(pool, event, fact).await?;
    }
    Ok(())
}

type Row = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<i64>,
    Option<String>,
);

/// The errors of one printer (raises that start an error), newest first, with their clear
/// and the print they hit.
const HISTORY: &str = "WITH f AS ( \
       SELECT id, printer_id, source, code, raised, severity, text, at, \
         lag(raised) OVER (PARTITION BY source, code ORDER BY at, id) AS prev \
       FROM stats.error_facts WHERE printer_id = $1) \
     SELECT r.id, r.printer_id, r.source, r.code, r.severity, r.text, r.at, \
       (SELECT min(c.at) FROM stats.error_facts c WHERE c.printer_id = r.printer_id \
          AND c.source = r.source AND c.code = r.code AND NOT c.raised AND c.at >= r.at), \
       p.archive_id, p.status \
     FROM f r LEFT JOIN LATERAL ( \
       SELECT archive_id, status FROM stats.prints \
       WHERE printer_id = r.printer_id AND created_at <= r.at \
         AND (NOT counted OR created_at + make_interval(secs => duration + 120) >= r.at) \
       ORDER BY created_at DESC LIMIT 1) p ON true \
     WHERE r.raised AND r.prev IS DISTINCT FROM true";

fn entry(row: Row) -> PrinterError {
    PrinterError {
        id: row.0,
        printer_id: row.1,
        source: if row.2 == "print" {
            ErrorSource::Print
        } else {
            ErrorSource::Hms
        },
        code: row.3,
        severity: row.4,
        text: row.5,
        raised_at: row.6,
        cleared_at: row.7,
        archive_id: row.8,
        print_status: row.9,
        actions: Vec::new(),
    }
}

/// A printer's errors, newest first.
pub async fn list(pool: &PgPool, request: ListErrors) -> Result<Vec<PrinterError>, ErrorBody> {
    let limit = request.limit.clamp(1, MAX_PAGE);
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{HISTORY} AND ($2::bigint IS NULL OR (r.at, r.id) < \
           (SELECT at, id FROM stats.error_facts WHERE id = $2)) \
         ORDER BY r.at DESC, r.id DESC LIMIT $3"
    )))
    .bind(request.printer_id)
    .bind(request.before)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    Ok(rows.into_iter().map(entry).collect())
}

/// One error of a printer.
pub async fn get(pool: &PgPool, request: GetError) -> Result<PrinterError, ErrorBody> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{HISTORY} AND r.id = $2")))
        .bind(request.printer_id)
        .bind(request.id)
        .fetch_optional(pool)
        .await
        .map_err(unavailable)?;
    row.map(entry).ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::NotFound,
            format!("No error {} on printer {}", request.id, request.printer_id),
        )
    })
}

/// How often each code was raised (errors started) in a range.
pub async fn counts(pool: &PgPool, request: CountErrors) -> Result<ErrorCounts, ErrorBody> {
    let mut binds = Binds::default();
    let mut filters = String::new();
    if let Some(id) = request.printer_id {
        filters += &format!(" AND printer_id = {}", binds.push(Value::Int(id)));
    }
    if let Some(ids) = request.printer_ids {
        filters += &format!(" AND printer_id = ANY({})", binds.push(Value::Ints(ids)));
    }
    if let Some(site) = request.site {
        filters += &format!(" AND site = {}", binds.push(Value::Text(site)));
    }
    if let Some(until) = request.until {
        filters += &format!(" AND at < {}", binds.push(Value::Time(until)));
    }
    let from = match request.from {
        Some(from) => format!(" AND at >= {}", binds.push(Value::Time(from))),
        None => String::new(),
    };
    let sql = format!(
        "WITH f AS ( \
           SELECT printer_id, source, code, raised, severity, text, at, \
             lag(raised) OVER (PARTITION BY printer_id, source, code ORDER BY at, id) AS prev \
           FROM stats.error_facts WHERE true{filters}) \
         SELECT source, code, max(text), max(severity), count(*), \
           count(DISTINCT printer_id), max(at) \
         FROM f WHERE raised AND prev IS DISTINCT FROM true{from} \
         GROUP BY 1, 2 ORDER BY 5 DESC, 2 LIMIT 500"
    );
    type Counted = (
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
        i64,
        DateTime<Utc>,
    );
    let rows: Vec<Counted> = binds
        .apply(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
    let by_code: Vec<ErrorCount> = rows
        .into_iter()
        .map(|r| ErrorCount {
            source: if r.0 == "print" {
                ErrorSource::Print
            } else {
                ErrorSource::Hms
            },
            code: r.1,
            text: r.2,
            severity: r.3,
            count: r.4,
            printers: r.5,
            last_raised_at: r.6,
        })
        .collect();
    Ok(ErrorCounts {
        total: by_code.iter().map(|c| c.count).sum(),
        by_code,
    })
}

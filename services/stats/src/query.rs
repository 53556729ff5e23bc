//! Answers from the summaries. A time range is cut into whole days (from `daily`, or
//! `daily_farm` when no printer is asked for) and the partial days at its ends (from the
//! prints themselves), so an answer is exact for any instant yet costs the days and printers
//! asked for. The per-printer breakdown over long ranges reads whole months from `monthly`.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use printyard_contracts::stats::{
    DayTotals, ExportPage, ExportRow, ExportRows, FilamentTotals, PrinterTotals, Statistics,
    StatsFilter, Totals,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use sqlx::PgPool;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;

use crate::db::unavailable;

/// The most rows an export page holds.
pub const MAX_EXPORT_PAGE: i64 = 5000;

/// Values bound to a built query, in order.
enum Value {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Day(NaiveDate),
}

#[derive(Default)]
struct Binds(Vec<Value>);

impl Binds {
    fn push(&mut self, value: Value) -> String {
        self.0.push(value);
        format!("${}", self.0.len())
    }

    fn apply<'q, O>(
        self,
        mut query: QueryAs<'q, sqlx::Postgres, O, PgArguments>,
    ) -> QueryAs<'q, sqlx::Postgres, O, PgArguments> {
        for value in self.0 {
            query = match value {
                Value::Int(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Time(v) => query.bind(v),
                Value::Day(v) => query.bind(v),
            };
        }
        query
    }
}

/// Whole days (and months) inside a range, and its partial ends.
struct Span {
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// Whole days `[day_from, day_until)`; `None` bound: open.
    day_from: Option<NaiveDate>,
    day_until: Option<NaiveDate>,
    /// No whole day at all: everything from the prints.
    no_days: bool,
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

impl Span {
    fn of(filter: &StatsFilter) -> Span {
        let day_from = filter.from.map(|f| {
            let day = f.date_naive();
            if midnight(day) == f {
                day
            } else {
                day + Duration::days(1)
            }
        });
        let day_until = filter.until.map(|u| u.date_naive());
        let no_days = matches!((day_from, day_until), (Some(a), Some(b)) if a >= b);
        Span {
            from: filter.from,
            until: filter.until,
            day_from,
            day_until,
            no_days,
        }
    }
}

/// `AND`-ed conditions of the filters on a summary or the prints.
fn conditions(filter: &StatsFilter, binds: &mut Binds, printer_column: bool) -> String {
    let mut sql = String::new();
    if printer_column && let Some(printer) = filter.printer_id {
        sql += &format!(" AND printer_id = {}", binds.push(Value::Int(printer)));
    }
    if let Some(site) = &filter.site {
        sql += &format!(" AND site = {}", binds.push(Value::Text(site.clone())));
    }
    if let Some(project) = filter.project_id {
        sql += &format!(" AND project_id = {}", binds.push(Value::Int(project)));
    }
    if let Some(kind) = &filter.filament_type {
        sql += &format!(
            " AND lower(filament_type) = lower({})",
            binds.push(Value::Text(kind.clone()))
        );
    }
    sql
}

const SUMS: &str = "prints, successful, failed, stopped, print_time, filament_g, filament_cost, \
                    energy_kwh, energy_cost";

/// The prints in the partial days at the ends of the span (or all of it, without whole days).
fn edge_rows(filter: &StatsFilter, span: &Span, binds: &mut Binds) -> Option<String> {
    let mut pieces = Vec::new();
    if span.no_days {
        let mut range = String::from("true");
        if let Some(from) = span.from {
            range += &format!(" AND created_at >= {}", binds.push(Value::Time(from)));
        }
        if let Some(until) = span.until {
            range += &format!(" AND created_at < {}", binds.push(Value::Time(until)));
        }
        pieces.push(range);
    } else {
        if let (Some(from), Some(day)) = (span.from, span.day_from)
            && from < midnight(day)
        {
            pieces.push(format!(
                "created_at >= {} AND created_at < {}",
                binds.push(Value::Time(from)),
                binds.push(Value::Time(midnight(day)))
            ));
        }
        if let (Some(until), Some(day)) = (span.until, span.day_until)
            && midnight(day) < until
        {
            pieces.push(format!(
                "created_at >= {} AND created_at < {}",
                binds.push(Value::Time(midnight(day))),
                binds.push(Value::Time(until))
            ));
        }
    }
    if pieces.is_empty() {
        return None;
    }
    let range = pieces
        .iter()
        .map(|p| format!("({p})"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let filters = conditions(filter, binds, true);
    Some(format!(
        "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, printer_id, filament_type, \
           1::bigint AS prints, (status = 'success')::int::bigint AS successful, \
           (status = 'failed')::int::bigint AS failed, (status = 'stopped')::int::bigint AS stopped, \
           duration AS print_time, filament_g, filament_cost, energy_kwh, energy_cost \
         FROM stats.prints WHERE counted AND ({range}){filters}"
    ))
}

/// A day range condition on `column` for `[from, until)`.
fn day_range(
    column: &str,
    from: Option<NaiveDate>,
    until: Option<NaiveDate>,
    binds: &mut Binds,
) -> String {
    let mut sql = String::new();
    if let Some(from) = from {
        sql += &format!(" AND {column} >= {}", binds.push(Value::Day(from)));
    }
    if let Some(until) = until {
        sql += &format!(" AND {column} < {}", binds.push(Value::Day(until)));
    }
    sql
}

fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

fn next_month(day: NaiveDate) -> NaiveDate {
    let first = first_of_month(day);
    first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first)
}

/// The rows (day, printer_id, filament_type, sums…) the answer sums, from the cheapest source:
/// per printer (`daily`, with whole months from `monthly` when `months`), or for the whole farm
/// (`daily_farm`, printer unknown) when `farm`.
fn rows(filter: &StatsFilter, farm: bool, months: bool, binds: &mut Binds) -> String {
    let span = Span::of(filter);
    let mut parts = Vec::new();
    if !span.no_days {
        if farm {
            let range = day_range("day", span.day_from, span.day_until, binds);
            let filters = conditions(filter, binds, false);
            parts.push(format!(
                "SELECT day, NULL::bigint AS printer_id, filament_type, {SUMS} \
                 FROM stats.daily_farm WHERE true{range}{filters}"
            ));
        } else if months {
            // Whole months inside the days, the rest of the days around them.
            let month_from = span.day_from.map(|d| {
                if first_of_month(d) == d {
                    d
                } else {
                    next_month(d)
                }
            });
            let month_until = span.day_until.map(first_of_month);
            let has_months = !matches!((month_from, month_until), (Some(a), Some(b)) if a >= b);
            if has_months {
                let range = day_range("month", month_from, month_until, binds);
                let filters = conditions(filter, binds, true);
                parts.push(format!(
                    "SELECT month AS day, printer_id, filament_type, {SUMS} \
                     FROM stats.monthly WHERE true{range}{filters}"
                ));
                let mut leftovers = Vec::new();
                if let (Some(from), Some(month)) = (span.day_from, month_from)
                    && from < month
                {
                    leftovers.push((Some(from), Some(month)));
                }
                if let (Some(month), Some(until)) = (month_until, span.day_until)
                    && month < until
                {
                    leftovers.push((Some(month), Some(until)));
                }
                for (from, until) in leftovers {
                    let range = day_range("day", from, until, binds);
                    let filters = conditions(filter, binds, true);
                    parts.push(format!(
                        "SELECT day, printer_id, filament_type, {SUMS} \
                         FROM stats.daily WHERE true{range}{filters}"
                    ));
                }
            } else {
                let range = day_range("day", span.day_from, span.day_until, binds);
                let filters = conditions(filter, binds, true);
                parts.push(format!(
                    "SELECT day, printer_id, filament_type, {SUMS} \
                     FROM stats.daily WHERE true{range}{filters}"
                ));
            }
        } else {
            let range = day_range("day", span.day_from, span.day_until, binds);
            let filters = conditions(filter, binds, true);
            parts.push(format!(
                "SELECT day, printer_id, filament_type, {SUMS} \
                 FROM stats.daily WHERE true{range}{filters}"
            ));
        }
    }
    if let Some(edges) = edge_rows(filter, &span, binds) {
        parts.push(edges);
    }
    if parts.is_empty() {
        return format!(
            "SELECT NULL::date AS day, NULL::bigint AS printer_id, ''::text AS filament_type, \
               {} WHERE false",
            SUMS.split(", ")
                .map(|c| format!("0 AS {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    parts.join(" UNION ALL ")
}

const AGGREGATE: &str = "coalesce(sum(prints), 0)::bigint, coalesce(sum(successful), 0)::bigint, \
     coalesce(sum(failed), 0)::bigint, coalesce(sum(stopped), 0)::bigint, \
     coalesce(sum(print_time), 0)::bigint, coalesce(sum(filament_g), 0)::float8, \
     coalesce(sum(filament_cost), 0)::float8, coalesce(sum(energy_kwh), 0)::float8, \
     coalesce(sum(energy_cost), 0)::float8";

type Sums = (i64, i64, i64, i64, i64, f64, f64, f64, f64);

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn totals(
    (prints, successful, failed, stopped, time, grams, filament, kwh, energy): Sums,
) -> Totals {
    Totals {
        total_prints: prints,
        successful_prints: successful,
        failed_prints: failed,
        stopped_prints: stopped,
        success_rate: if prints > 0 {
            round2(successful as f64 * 100.0 / prints as f64)
        } else {
            0.0
        },
        total_print_time: time,
        total_filament_used: round2(grams),
        total_cost: round2(filament + energy),
        filament_cost: round2(filament),
        energy_kwh: (kwh * 1000.0).round() / 1000.0,
        energy_cost: round2(energy),
    }
}

pub async fn statistics(
    pool: &PgPool,
    filter: StatsFilter,
    currency: String,
) -> Result<Statistics, ErrorBody> {
    // Totals, by day and by filament type: farm-wide days unless a printer is asked for.
    let mut binds = Binds::default();
    let source = rows(&filter, filter.printer_id.is_none(), false, &mut binds);
    let sql = format!(
        "WITH r AS ({source}) SELECT GROUPING(day)::int, GROUPING(filament_type)::int, day, \
           filament_type, {AGGREGATE} FROM r \
         GROUP BY GROUPING SETS ((), (day), (filament_type)) ORDER BY day, filament_type"
    );
    type Grouped = (
        i32,
        i32,
        Option<NaiveDate>,
        Option<String>,
        i64,
        i64,
        i64,
        i64,
        i64,
        f64,
        f64,
        f64,
        f64,
    );
    let grouped: Vec<Grouped> = binds
        .apply(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
    let mut overall = Totals::default();
    let mut by_day = Vec::new();
    let mut by_filament_type = Vec::new();
    for (g_day, g_type, day, kind, a, b, c, d, e, f, g, h, i) in grouped {
        let sums = totals((a, b, c, d, e, f, g, h, i));
        match (g_day, g_type, day, kind) {
            (1, 1, _, _) => overall = sums,
            (0, 1, Some(day), _) if sums.total_prints != 0 => {
                by_day.push(DayTotals { day, totals: sums })
            }
            (1, 0, _, Some(kind)) if sums.total_prints != 0 => {
                by_filament_type.push(FilamentTotals {
                    filament_type: kind,
                    totals: sums,
                })
            }
            _ => {}
        }
    }
    // By printer: whole months where the range has them.
    let mut binds = Binds::default();
    let source = rows(&filter, false, filter.printer_id.is_none(), &mut binds);
    let sql = format!(
        "WITH r AS ({source}) SELECT printer_id, {AGGREGATE} FROM r \
         GROUP BY printer_id HAVING sum(prints) <> 0 ORDER BY printer_id"
    );
    type ByPrinter = (Option<i64>, i64, i64, i64, i64, i64, f64, f64, f64, f64);
    let printers: Vec<ByPrinter> = binds
        .apply(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
    let by_printer = printers
        .into_iter()
        .map(|(printer, a, b, c, d, e, f, g, h, i)| PrinterTotals {
            printer_id: printer.filter(|p| *p != 0),
            printer_name: None,
            totals: totals((a, b, c, d, e, f, g, h, i)),
        })
        .collect();
    Ok(Statistics {
        totals: overall,
        by_printer,
        by_day,
        by_filament_type,
        currency,
    })
}

/// One page of the export: rows of a day and a printer, in (day, printer) order.
pub async fn export(
    pool: &PgPool,
    page: ExportPage,
    currency: String,
) -> Result<ExportRows, ErrorBody> {
    if !(1..=MAX_EXPORT_PAGE).contains(&page.limit) {
        return Err(ErrorBody::new(
            ErrorCode::ValidationError,
            format!("limit must be 1 to {MAX_EXPORT_PAGE}"),
        ));
    }
    let mut binds = Binds::default();
    let source = rows(&page.filter, false, false, &mut binds);
    let after = match page.after {
        Some((day, printer)) => format!(
            "WHERE (day, printer) > ({}, {})",
            binds.push(Value::Day(day)),
            binds.push(Value::Int(printer))
        ),
        None => String::new(),
    };
    let limit = binds.push(Value::Int(page.limit));
    let sql = format!(
        "WITH r AS ({source}) SELECT * FROM (SELECT day, coalesce(printer_id, 0) AS printer, \
           {AGGREGATE} FROM r GROUP BY day, coalesce(printer_id, 0)) g {after} \
         ORDER BY day, printer LIMIT {limit}"
    );
    type Row = (NaiveDate, i64, i64, i64, i64, i64, i64, f64, f64, f64, f64);
    let rows: Vec<Row> = binds
        .apply(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
    Ok(ExportRows {
        rows: rows
            .into_iter()
            .filter(|r| r.2 != 0)
            .map(|(day, printer, a, b, c, d, e, f, g, h, i)| ExportRow {
                day,
                printer_id: (printer != 0).then_some(printer),
                totals: totals((a, b, c, d, e, f, g, h, i)),
            })
            .collect(),
        currency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_range_is_cut_into_whole_days_and_partial_ends() {
        let filter = StatsFilter {
            from: Some(at("2026-03-01T10:00:00Z")),
            until: Some(at("2026-03-05T00:00:00Z")),
            ..Default::default()
        };
        let span = Span::of(&filter);
        assert_eq!(span.day_from, NaiveDate::from_ymd_opt(2026, 3, 2));
        assert_eq!(span.day_until, NaiveDate::from_ymd_opt(2026, 3, 5));
        assert!(!span.no_days);
        let within_a_day = StatsFilter {
            from: Some(at("2026-03-01T10:00:00Z")),
            until: Some(at("2026-03-01T12:00:00Z")),
            ..Default::default()
        };
        assert!(Span::of(&within_a_day).no_days);
        let whole = StatsFilter {
            from: Some(at("2026-03-01T00:00:00Z")),
            until: Some(at("2026-04-01T00:00:00Z")),
            ..Default::default()
        };
        let mut binds = Binds::default();
        let sql = rows(&whole, false, true, &mut binds);
        assert!(
            sql.contains("stats.monthly") && !sql.contains("stats.prints"),
            "{sql}"
        );
    }

    #[test]
    fn totals_round_money_and_rate() {
        let t = totals((3, 2, 1, 0, 100, 10.004, 1.005, 0.1234, 0.5));
        assert_eq!(t.success_rate, 66.67);
        assert_eq!(t.total_cost, 1.51);
        assert_eq!(t.energy_kwh, 0.123);
        assert_eq!(
            totals((0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)).success_rate,
            0.0
        );
    }
}

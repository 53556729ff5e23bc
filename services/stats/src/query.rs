//! Answers from the summaries. A time range is cut into whole years, months and days (read
//! from the summaries of that period) and the partial days at its ends (read from the prints
//! themselves), so an answer is exact for any instant yet costs the periods and printers asked
//! for, not the prints: two years of a farm are two year rows per printer. Filters the
//! summaries do not carry (a project; a filament type together with a printer) are answered
//! from the prints, through their indexes.

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

/// The most days an export page holds.
pub const MAX_EXPORT_DAYS: u32 = 366;

/// Values bound to a built query, in order.
pub(crate) enum Value {
    Int(i64),
    Ints(Vec<i64>),
    Text(String),
    Time(DateTime<Utc>),
    Day(NaiveDate),
}

#[derive(Default)]
pub(crate) struct Binds(Vec<Value>);

impl Binds {
    pub(crate) fn push(&mut self, value: Value) -> String {
        self.0.push(value);
        format!("${}", self.0.len())
    }

    pub(crate) fn apply<'q, O>(
        self,
        mut query: QueryAs<'q, sqlx::Postgres, O, PgArguments>,
    ) -> QueryAs<'q, sqlx::Postgres, O, PgArguments> {
        for value in self.0 {
            query = match value {
                Value::Int(v) => query.bind(v),
                Value::Ints(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Time(v) => query.bind(v),
                Value::Day(v) => query.bind(v),
            };
        }
        query
    }
}

pub(crate) fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// Whole days inside a range, and its partial ends.
pub(crate) struct Span {
    pub(crate) from: Option<DateTime<Utc>>,
    pub(crate) until: Option<DateTime<Utc>>,
    /// Whole days `[day_from, day_until)`; `None`: open.
    pub(crate) day_from: Option<NaiveDate>,
    pub(crate) day_until: Option<NaiveDate>,
    /// No whole day at all: everything from the prints.
    pub(crate) no_days: bool,
}

impl Span {
    pub(crate) fn of(filter: &StatsFilter) -> Span {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grain {
    Day,
    Month,
    Year,
}

impl Grain {
    pub fn name(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Month => "month",
            Grain::Year => "year",
        }
    }
}

/// Periods `[from, until)` of one grain (by their first day; `None`: open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) grain: Grain,
    pub(crate) from: Option<NaiveDate>,
    pub(crate) until: Option<NaiveDate>,
}

pub(crate) fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

pub(crate) fn year_start(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap_or(d)
}

fn ceil_month(d: NaiveDate) -> NaiveDate {
    let start = month_start(d);
    if start == d {
        d
    } else {
        start
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(d)
    }
}

fn ceil_year(d: NaiveDate) -> NaiveDate {
    let start = year_start(d);
    if start == d {
        d
    } else {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1).unwrap_or(d)
    }
}

fn before(a: Option<NaiveDate>, b: Option<NaiveDate>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a < b,
        _ => true,
    }
}

/// Whole days `[from, until)` as whole years, the months around them, the days around those.
pub(crate) fn segments(from: Option<NaiveDate>, until: Option<NaiveDate>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut push = |grain, from: Option<NaiveDate>, until: Option<NaiveDate>| {
        if before(from, until) {
            out.push(Segment { grain, from, until });
        }
    };
    let (y0, y1) = (from.map(ceil_year), until.map(year_start));
    if before(y0, y1) {
        push(Grain::Year, y0, y1);
        if let (Some(a), Some(y0)) = (from, y0) {
            push(Grain::Month, Some(ceil_month(a)), Some(y0));
            push(Grain::Day, Some(a), Some(ceil_month(a)));
        }
        if let (Some(y1), Some(b)) = (y1, until) {
            push(Grain::Month, Some(y1), Some(month_start(b)));
            push(Grain::Day, Some(month_start(b)), Some(b));
        }
        return out;
    }
    let (m0, m1) = (from.map(ceil_month), until.map(month_start));
    if before(m0, m1) {
        push(Grain::Month, m0, m1);
        if let (Some(a), Some(m0)) = (from, m0) {
            push(Grain::Day, Some(a), Some(m0));
        }
        if let (Some(m1), Some(b)) = (m1, until) {
            push(Grain::Day, Some(m1), Some(b));
        }
        return out;
    }
    push(Grain::Day, from, until);
    out
}

/// Where a breakdown reads: the printer summaries, the filament-type summaries, or the prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Printers,
    Types,
    /// By day per site (days only): the farm's days when nothing else narrows them.
    Sites,
    Prints,
}

/// `AND`-ed conditions of the filters a source carries.
fn conditions(filter: &StatsFilter, source: Source, binds: &mut Binds) -> String {
    let mut sql = String::new();
    if matches!(source, Source::Printers | Source::Prints)
        && let Some(printer) = filter.printer_id
    {
        sql += &format!(" AND printer_id = {}", binds.push(Value::Int(printer)));
    }
    if matches!(source, Source::Printers | Source::Prints)
        && let Some(printers) = &filter.printer_ids
    {
        sql += &format!(
            " AND printer_id = ANY({})",
            binds.push(Value::Ints(printers.clone()))
        );
    }
    if let Some(site) = &filter.site {
        sql += &format!(" AND site = {}", binds.push(Value::Text(site.clone())));
    }
    if source == Source::Prints
        && let Some(project) = filter.project_id
    {
        sql += &format!(" AND project_id = {}", binds.push(Value::Int(project)));
    }
    if matches!(source, Source::Types | Source::Prints)
        && let Some(kind) = &filter.filament_type
    {
        sql += &format!(
            " AND lower(filament_type) = lower({})",
            binds.push(Value::Text(kind.clone()))
        );
    }
    sql
}

const SUMS: &str = "prints, successful, failed, stopped, print_time, filament_g, filament_cost, \
                    energy_kwh, energy_cost";

/// Prints in `[from, until)` (either open), as summary rows of one print each.
fn print_rows(
    filter: &StatsFilter,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    binds: &mut Binds,
) -> String {
    let mut range = String::new();
    if let Some(from) = from {
        range += &format!(" AND created_at >= {}", binds.push(Value::Time(from)));
    }
    if let Some(until) = until {
        range += &format!(" AND created_at < {}", binds.push(Value::Time(until)));
    }
    let filters = conditions(filter, Source::Prints, binds);
    format!(
        "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, printer_id, filament_type, \
           1::bigint AS prints, (status = 'success')::int::bigint AS successful, \
           (status = 'failed')::int::bigint AS failed, (status = 'stopped')::int::bigint AS stopped, \
           duration AS print_time, filament_g, filament_cost, energy_kwh, energy_cost \
         FROM stats.prints WHERE counted{range}{filters}"
    )
}

/// The rows a breakdown sums: `(day, printer_id, filament_type, sums…)`. Whole periods from
/// the summaries of `source` (as days only when `days`, for the by-day breakdown), the rest from
/// the prints.
fn rows(filter: &StatsFilter, source: Source, days: bool, binds: &mut Binds) -> String {
    let span = Span::of(filter);
    if source == Source::Prints || span.no_days {
        return print_rows(filter, span.from, span.until, binds);
    }
    let segments = if days || source == Source::Sites {
        vec![Segment {
            grain: Grain::Day,
            from: span.day_from,
            until: span.day_until,
        }]
    } else {
        segments(span.day_from, span.day_until)
    };
    let mut parts = Vec::new();
    for segment in segments {
        let mut range = String::new();
        if let Some(from) = segment.from {
            range += &format!(" AND period >= {}", binds.push(Value::Day(from)));
        }
        if let Some(until) = segment.until {
            range += &format!(" AND period < {}", binds.push(Value::Day(until)));
        }
        let filters = conditions(filter, source, binds);
        let grain = segment.grain.name();
        parts.push(match source {
            Source::Printers => format!(
                "SELECT period AS day, printer_id, ''::text AS filament_type, {SUMS} \
                 FROM stats.printer_{grain} WHERE true{range}{filters}"
            ),
            Source::Sites => format!(
                "SELECT period AS day, NULL::bigint AS printer_id, ''::text AS filament_type, \
                   {SUMS} FROM stats.site_day WHERE true{range}{filters}"
            ),
            _ => format!(
                "SELECT period AS day, NULL::bigint AS printer_id, filament_type, {SUMS} \
                 FROM stats.type_{grain} WHERE true{range}{filters}"
            ),
        });
    }
    if let (Some(from), Some(day)) = (span.from, span.day_from)
        && from < midnight(day)
    {
        parts.push(print_rows(filter, Some(from), Some(midnight(day)), binds));
    }
    if let (Some(until), Some(day)) = (span.until, span.day_until)
        && midnight(day) < until
    {
        parts.push(print_rows(filter, Some(midnight(day)), Some(until), binds));
    }
    if parts.is_empty() {
        return print_rows(filter, span.from, span.until, binds);
    }
    parts.join(" UNION ALL ")
}

const AGGREGATE: &str = "coalesce(sum(prints), 0)::bigint, coalesce(sum(successful), 0)::bigint, \
     coalesce(sum(failed), 0)::bigint, coalesce(sum(stopped), 0)::bigint, \
     coalesce(sum(print_time), 0)::bigint, coalesce(sum(filament_g), 0)::float8, \
     coalesce(sum(filament_cost), 0)::float8, coalesce(sum(energy_kwh), 0)::float8, \
     coalesce(sum(energy_cost), 0)::float8";

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn totals(
    (prints, successful, failed, stopped, time, grams, filament, kwh, energy): Sums,
) -> Totals {
    // `prints` counts every ended print; those of no known outcome are counted apart.
    let known = successful + failed + stopped;
    Totals {
        total_prints: known,
        successful_prints: successful,
        failed_prints: failed,
        stopped_prints: stopped,
        unknown_prints: (prints - known).max(0),
        success_rate: if known > 0 {
            round2(successful as f64 * 100.0 / known as f64)
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

type Sums = (i64, i64, i64, i64, i64, f64, f64, f64, f64);
type Grouped = (Option<String>, i64, i64, i64, i64, i64, f64, f64, f64, f64);

/// Runs `GROUP BY <key>` (a text key; `NULL` for the total) over `source`.
async fn grouped(
    pool: &PgPool,
    source: String,
    binds: Binds,
    key: &str,
) -> Result<Vec<Grouped>, ErrorBody> {
    let sql = format!(
        "WITH r AS ({source}) SELECT ({key})::text, {AGGREGATE} FROM r GROUP BY 1 ORDER BY 1"
    );
    binds
        .apply(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
        .fetch_all(pool)
        .await
        .map_err(unavailable)
}

fn sums_of(row: &Grouped) -> Sums {
    (
        row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9,
    )
}

/// Ended prints (any outcome) per printer under `filter`, from the summaries.
pub async fn prints_by_printer(
    pool: &PgPool,
    filter: &StatsFilter,
) -> Result<std::collections::HashMap<i64, i64>, ErrorBody> {
    let mut binds = Binds::default();
    let rows = rows(filter, Source::Printers, false, &mut binds);
    Ok(grouped(pool, rows, binds, "printer_id")
        .await?
        .into_iter()
        .filter_map(|row| Some((row.0.as_deref()?.parse().ok()?, row.1)))
        .collect())
}

pub async fn statistics(
    pool: &PgPool,
    filter: StatsFilter,
    currency: String,
) -> Result<Statistics, ErrorBody> {
    // The summaries carry printer and site, site and filament type, or site alone (by day); a
    // project, or a printer with a filament type, is read from the prints (index-only).
    // Some printers (a limited caller's) narrow like one printer: only the sources that carry
    // the printer can answer.
    let printer = filter.printer_id.is_some() || filter.printer_ids.is_some();
    let from_prints = filter.project_id.is_some() || (printer && filter.filament_type.is_some());
    let kind = filter.filament_type.is_some();
    let (totals_source, types_source, days_source, printers_source) = if from_prints {
        (
            Source::Prints,
            Source::Prints,
            Source::Prints,
            Source::Prints,
        )
    } else if printer {
        (
            Source::Printers,
            Source::Prints,
            Source::Printers,
            Source::Printers,
        )
    } else if kind {
        (Source::Types, Source::Types, Source::Types, Source::Prints)
    } else {
        (
            Source::Types,
            Source::Types,
            Source::Sites,
            Source::Printers,
        )
    };
    let query = |source: Source, days: bool, key: &'static str| {
        let mut binds = Binds::default();
        let rows = rows(&filter, source, days, &mut binds);
        grouped(pool, rows, binds, key)
    };
    // Independent reads, side by side on the pool.
    let (overall, types, days, printers) = futures::try_join!(
        query(totals_source, false, "NULL"),
        query(types_source, false, "filament_type"),
        query(days_source, true, "day"),
        query(printers_source, false, "printer_id"),
    )?;
    let overall = overall
        .first()
        .map(|row| totals(sums_of(row)))
        .unwrap_or_else(|| totals((0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)));
    let by_filament_type = types
        .iter()
        .filter(|row| row.1 != 0)
        .map(|row| FilamentTotals {
            filament_type: row.0.clone().unwrap_or_default(),
            totals: totals(sums_of(row)),
        })
        .collect();
    let by_day = days
        .iter()
        .filter(|row| row.1 != 0)
        .filter_map(|row| {
            let day = row.0.as_deref()?.parse().ok()?;
            Some(DayTotals {
                day,
                totals: totals(sums_of(row)),
            })
        })
        .collect();
    let by_printer = printers
        .iter()
        .filter(|row| row.1 != 0)
        .map(|row| PrinterTotals {
            printer_id: row
                .0
                .as_deref()
                .and_then(|p| p.parse().ok())
                .filter(|p| *p != 0),
            printer_name: None,
            totals: totals(sums_of(row)),
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

/// One page of the export: rows of a day and a printer, in (day, printer) order, for the
/// page's days only.
pub async fn export(
    pool: &PgPool,
    page: ExportPage,
    currency: String,
) -> Result<ExportRows, ErrorBody> {
    if !(1..=MAX_EXPORT_DAYS).contains(&page.days) {
        return Err(ErrorBody::new(
            ErrorCode::ValidationError,
            format!("days must be 1 to {MAX_EXPORT_DAYS}"),
        ));
    }
    let filter = &page.filter;
    // The first day with a counted print, from the page's start on (none: the end).
    let lower = match page.after {
        Some(day) => Some(midnight(day + Duration::days(1))),
        None => filter.from,
    };
    let lower = match (lower, filter.from) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let mut binds = Binds::default();
    let first_sql = format!(
        "SELECT min(created_at) FROM stats.prints WHERE counted{}{}{}",
        lower
            .map(|l| format!(" AND created_at >= {}", binds.push(Value::Time(l))))
            .unwrap_or_default(),
        filter
            .until
            .map(|u| format!(" AND created_at < {}", binds.push(Value::Time(u))))
            .unwrap_or_default(),
        conditions(filter, Source::Prints, &mut binds),
    );
    let first: Option<DateTime<Utc>> = binds
        .apply(sqlx::query_as::<_, (Option<DateTime<Utc>>,)>(
            sqlx::AssertSqlSafe(first_sql),
        ))
        .fetch_one(pool)
        .await
        .map_err(unavailable)?
        .0;
    let Some(first) = first else {
        return Ok(ExportRows {
            rows: vec![],
            currency,
            next: None,
        });
    };
    let start_day = first.date_naive();
    let end_day = start_day + Duration::days(i64::from(page.days));
    let window = StatsFilter {
        from: Some(lower.map_or(midnight(start_day), |l| l.max(midnight(start_day)))),
        until: Some(match filter.until {
            Some(u) => u.min(midnight(end_day)),
            None => midnight(end_day),
        }),
        ..filter.clone()
    };
    let source = if filter.project_id.is_some() || filter.filament_type.is_some() {
        Source::Prints
    } else {
        Source::Printers
    };
    let mut binds = Binds::default();
    let source = rows(&window, source, true, &mut binds);
    let sql = format!(
        "WITH r AS ({source}) SELECT day, coalesce(printer_id, 0), {AGGREGATE} FROM r \
         GROUP BY day, coalesce(printer_id, 0) ORDER BY 1, 2"
    );
    type Row = (NaiveDate, i64, i64, i64, i64, i64, i64, f64, f64, f64, f64);
    let rows: Vec<Row> = binds
        .apply(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
    let more = filter.until.is_none_or(|u| midnight(end_day) < u);
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
        next: more.then(|| end_day - Duration::days(1)),
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
        let sql = rows(&whole, Source::Printers, false, &mut binds);
        assert!(
            sql.contains("stats.printer_month") && !sql.contains("stats.prints"),
            "{sql}"
        );
    }

    #[test]
    fn whole_days_become_years_months_and_days() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day);
        let cut: Vec<(Grain, Option<NaiveDate>, Option<NaiveDate>)> =
            segments(d(2024, 12, 15), d(2026, 3, 10))
                .iter()
                .map(|s| (s.grain, s.from, s.until))
                .collect();
        assert_eq!(
            cut,
            [
                (Grain::Year, d(2025, 1, 1), d(2026, 1, 1)),
                (Grain::Day, d(2024, 12, 15), d(2025, 1, 1)),
                (Grain::Month, d(2026, 1, 1), d(2026, 3, 1)),
                (Grain::Day, d(2026, 3, 1), d(2026, 3, 10)),
            ]
        );
        assert_eq!(
            segments(None, None),
            [Segment {
                grain: Grain::Year,
                from: None,
                until: None
            }]
        );
        assert_eq!(
            segments(d(2026, 6, 1), d(2026, 7, 1)),
            [Segment {
                grain: Grain::Month,
                from: d(2026, 6, 1),
                until: d(2026, 7, 1)
            }]
        );
        assert_eq!(
            segments(d(2026, 6, 3), d(2026, 6, 9)),
            [Segment {
                grain: Grain::Day,
                from: d(2026, 6, 3),
                until: d(2026, 6, 9)
            }]
        );
    }

    #[test]
    fn totals_round_money_and_rate() {
        let t = totals((3, 2, 1, 0, 100, 10.004, 1.005, 0.1234, 0.5));
        assert_eq!(t.success_rate, 66.67);
        assert_eq!(t.unknown_prints, 0);
        assert_eq!(t.total_cost, 1.51);
        assert_eq!(t.energy_kwh, 0.123);
        assert_eq!(
            totals((0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)).success_rate,
            0.0
        );
    }

    #[test]
    fn prints_of_unknown_outcome_are_counted_apart_and_not_in_the_rate() {
        // 1,000 ended prints: 3 successes, 997 whose printers were deleted mid-print.
        let t = totals((1000, 3, 0, 0, 100, 0.0, 0.0, 0.0, 0.0));
        assert_eq!(t.total_prints, 3);
        assert_eq!(t.unknown_prints, 997);
        assert_eq!(t.success_rate, 100.0);
    }
}

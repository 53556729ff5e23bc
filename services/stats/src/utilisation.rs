//! Utilisation: where each printer's hours go.
//!
//! The scheduler publishes a `printer_activity` fact whenever a printer's [`Activity`] changes
//! (every replica does: a repeated fact is a continuation). Each fact becomes a spell in
//! `stats.activity`: the printer was in that state from the fact's `at` until the next spell.
//! Facts may arrive late, twice or out of order (redelivery, several scheduler replicas, the
//! consumer's parallel lanes): a fact is placed among the spells by its time, a fact equal to the
//! spell before it changes nothing, and one equal to the spell after it takes that spell over,
//! so the spells are the same whatever order the facts came in ([`plan`], tested with generated
//! orders). Ended spells are summed by UTC day, month and year (per printer, and per site by
//! day) in the same transaction, by the difference each fact makes; spells going on now are
//! counted when asked. An answer reads whole periods from the summaries and the range's partial
//! days from the spells, so two years of a farm are two year rows per printer and state.
//!
//! Two durations come with it: the time a plate waits to be cleared (an `awaiting_clear`
//! spell) and a job's queue wait (queued → started, from `queue_job_started`), kept as counts
//! in logarithmic buckets so their median and 90th percentile read from summaries too.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use printyard_contracts::farm::{EventKind, FarmEvent};
use printyard_contracts::stats::StatsFilter;
use printyard_contracts::utilisation::{
    Activity, ActivityChanged, PlateCleared, StateHours, Utilisation, UtilisationPeriod,
    UtilisationRequest, UtilisationRow, Waits,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;
use sqlx::{PgPool, Postgres, Transaction};

use crate::db::unavailable;
use crate::maintenance::Printers;
use crate::query::{self, Binds, Grain, Span, Value, midnight, month_start, year_start};

/// Advisory-lock namespace of one printer's spells.
const ACTIVITY_LOCK: i32 = 0x5554;

/// The default range: the 30 days to now.
const DEFAULT_DAYS: i64 = 30;

/// Ranges longer than this have a trend by month, else by day.
const TREND_DAYS_MAX: i64 = 92;

/// Bucket width of the durations: each bucket's bounds are 10 % apart, so the middle of a
/// bucket is within 5 % of every duration in it.
const BUCKET_BASE: f64 = 1.1;

/// One fact of a printer: in `activity` from `at` until the next fact (`until`; `None`: still).
#[derive(Debug, Clone, PartialEq)]
pub struct Spell {
    pub at: DateTime<Utc>,
    pub activity: Activity,
    pub until: Option<DateTime<Utc>>,
    pub site: String,
}

/// An ended fact's time, added to the summaries (`sign` 1) or taken back (-1).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub sign: i64,
    pub activity: Activity,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub site: String,
}

/// What a fact does to a printer's facts.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The new fact.
    pub insert: Spell,
    /// The fact before it now ends at the new one.
    pub prev_ends: Option<DateTime<Utc>>,
    pub changes: Vec<Change>,
}

/// Where a fact `(at, activity)` goes between the fact at or before it (`prev`) and the one
/// after (`next`); `None` when one is kept at that very instant already (a redelivery; of two
/// different facts at one microsecond, the first stays).
///
/// Every fact is kept, even one equal to its neighbours: dropping it would lose the end of a
/// spell when a fact between them arrives later. Time counts the same either way (a state's
/// time moves from one fact to the next of the same state, and the difference is zero).
pub fn plan(
    prev: Option<&Spell>,
    next: Option<&Spell>,
    at: DateTime<Utc>,
    activity: Activity,
    site: &str,
) -> Option<Plan> {
    if prev.is_some_and(|p| p.at == at) {
        return None;
    }
    let mut changes = Vec::new();
    if let Some(prev) = prev {
        if let Some(until) = prev.until {
            changes.push(Change {
                sign: -1,
                activity: prev.activity,
                from: prev.at,
                until,
                site: prev.site.clone(),
            });
        }
        changes.push(Change {
            sign: 1,
            activity: prev.activity,
            from: prev.at,
            until: at,
            site: prev.site.clone(),
        });
    }
    let until = next.map(|n| n.at);
    if let Some(end) = until {
        changes.push(Change {
            sign: 1,
            activity,
            from: at,
            until: end,
            site: site.to_owned(),
        });
    }
    Some(Plan {
        insert: Spell {
            at,
            activity,
            until,
            site: site.to_owned(),
        },
        prev_ends: prev.map(|_| at),
        changes,
    })
}

/// `[from, until)` cut at UTC midnights: each day and the microseconds of it.
pub fn by_day(from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<(NaiveDate, i64)> {
    let mut out = Vec::new();
    let mut start = from;
    while start < until {
        let day = start.date_naive();
        let end = midnight(day + Duration::days(1)).min(until);
        out.push((day, (end - start).num_microseconds().unwrap_or(i64::MAX)));
        start = end;
    }
    out
}

/// The logarithmic bucket of a duration in seconds.
pub fn bucket(seconds: f64) -> i32 {
    if seconds < BUCKET_BASE {
        0
    } else {
        (seconds.ln() / BUCKET_BASE.ln()).floor() as i32
    }
}

/// The middle of a bucket, in seconds.
fn bucket_middle(bucket: i32) -> f64 {
    if bucket == 0 {
        return BUCKET_BASE / 2.0;
    }
    BUCKET_BASE.powf(f64::from(bucket) + 0.5)
}

/// The count, median and 90th percentile of durations given as `(bucket, count)`.
pub fn waits(buckets: &BTreeMap<i32, i64>) -> Waits {
    let count: i64 = buckets.values().sum();
    let quantile = |q: f64| {
        let rank = (q * count as f64).ceil().max(1.0) as i64;
        let mut seen = 0;
        buckets.iter().find_map(|(b, n)| {
            seen += n;
            (seen >= rank).then(|| (bucket_middle(*b) * 10.0).round() / 10.0)
        })
    };
    Waits {
        count,
        median_secs: (count > 0).then(|| quantile(0.5)).flatten(),
        p90_secs: (count > 0).then(|| quantile(0.9)).flatten(),
    }
}

/// What the summaries change by: microseconds by (grain, period, site, state), and duration
/// counts by (grain, period, site, kind, bucket).
#[derive(Debug, Default, PartialEq)]
pub struct Deltas {
    pub seconds: BTreeMap<(Grain, NaiveDate, String, Activity), i64>,
    pub waits: BTreeMap<(Grain, NaiveDate, String, &'static str, i32), i64>,
}

fn period_of(grain: Grain, day: NaiveDate) -> NaiveDate {
    match grain {
        Grain::Day => day,
        Grain::Month => month_start(day),
        Grain::Year => year_start(day),
    }
}

const GRAINS: [Grain; 3] = [Grain::Day, Grain::Month, Grain::Year];

impl Deltas {
    pub fn of(changes: &[Change]) -> Deltas {
        let mut deltas = Deltas::default();
        for change in changes.iter().filter(|c| c.activity != Activity::Removed) {
            for (day, micros) in by_day(change.from, change.until) {
                for grain in GRAINS {
                    let key = (
                        grain,
                        period_of(grain, day),
                        change.site.clone(),
                        change.activity,
                    );
                    *deltas.seconds.entry(key).or_default() += change.sign * micros;
                }
            }
        }
        deltas.seconds.retain(|_, v| *v != 0);
        deltas.waits.retain(|_, v| *v != 0);
        deltas
    }

    fn wait(&mut self, day: NaiveDate, site: &str, kind: &'static str, seconds: f64, sign: i64) {
        for grain in GRAINS {
            let key = (
                grain,
                period_of(grain, day),
                site.to_owned(),
                kind,
                bucket(seconds),
            );
            *self.waits.entry(key).or_default() += sign;
        }
    }
}

/// Applies one event: `printer_activity`, `printer_removed` (the printer counts nowhere from
/// then on), `queue_job_started` (a queue wait) and `plate_cleared` (a plate's wait).
pub async fn apply(pool: &PgPool, event: &FarmEvent) -> Result<(), sqlx::Error> {
    match event.kind {
        EventKind::PrinterActivity => {
            let Ok(changed) = serde_json::from_value::<ActivityChanged>(event.data.clone()) else {
                tracing::warn!(event = %event.id, "unreadable printer activity skipped");
                return Ok(());
            };
            record(pool, event, changed.activity).await
        }
        EventKind::PrinterRemoved => record(pool, event, Activity::Removed).await,
        EventKind::QueueJobStarted => {
            let Ok(job) = serde_json::from_value::<JobStarted>(event.data.clone()) else {
                return Ok(());
            };
            let Some(created) = job.created_at else {
                return Ok(());
            };
            let started = job.started_at.unwrap_or(event.at);
            let wait = Wait {
                kind: "queue_wait",
                key: job.job_id.to_string(),
                at: started,
                seconds: seconds_between(created, started),
            };
            record_wait(pool, event, wait).await
        }
        EventKind::PlateCleared => {
            let Ok(cleared) = serde_json::from_value::<PlateCleared>(event.data.clone()) else {
                return Ok(());
            };
            let wait = Wait {
                kind: "plate_clear",
                key: format!("{}.{}", event.printer_id, event.at.timestamp_micros()),
                at: event.at,
                seconds: seconds_between(cleared.ended_at, event.at),
            };
            record_wait(pool, event, wait).await
        }
        _ => Ok(()),
    }
}

type SpellRow = (DateTime<Utc>, String, Option<DateTime<Utc>>, String);

fn spell((at, activity, until, site): SpellRow) -> Option<Spell> {
    Some(Spell {
        at,
        activity: Activity::parse(&activity)?,
        until,
        site,
    })
}

/// Places one fact among the printer's spells and moves the summaries by the difference.
async fn record(pool: &PgPool, event: &FarmEvent, activity: Activity) -> Result<(), sqlx::Error> {
    let printer = event.printer_id;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .bind(ACTIVITY_LOCK)
        .bind(printer.to_string())
        .execute(&mut *tx)
        .await?;
    let prev: Option<SpellRow> = sqlx::query_as(
        "SELECT at, activity, until, site FROM stats.activity \
         WHERE printer_id = $1 AND at <= $2 ORDER BY at DESC LIMIT 1",
    )
    .bind(printer)
    .bind(event.at)
    .fetch_optional(&mut *tx)
    .await?;
    let next: Option<SpellRow> = sqlx::query_as(
        "SELECT at, activity, until, site FROM stats.activity \
         WHERE printer_id = $1 AND at > $2 ORDER BY at LIMIT 1",
    )
    .bind(printer)
    .bind(event.at)
    .fetch_optional(&mut *tx)
    .await?;
    let (prev, next) = (prev.and_then(spell), next.and_then(spell));
    let Some(plan) = plan(
        prev.as_ref(),
        next.as_ref(),
        event.at,
        activity,
        event.site.as_str(),
    ) else {
        return tx.commit().await;
    };
    if let (Some(prev), Some(ends)) = (&prev, plan.prev_ends) {
        sqlx::query("UPDATE stats.activity SET until = $3 WHERE printer_id = $1 AND at = $2")
            .bind(printer)
            .bind(prev.at)
            .bind(ends)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO stats.activity (printer_id, at, activity, site, until) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(printer)
    .bind(plan.insert.at)
    .bind(plan.insert.activity.as_str())
    .bind(&plan.insert.site)
    .bind(plan.insert.until)
    .execute(&mut *tx)
    .await?;
    write(&mut tx, printer, &Deltas::of(&plan.changes)).await?;
    tx.commit().await
}

#[derive(Deserialize)]
struct JobStarted {
    job_id: i64,
    created_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
}

fn seconds_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    ((b - a).num_milliseconds() as f64 / 1000.0).max(0.0)
}

/// One duration: a plate's wait or a job's.
struct Wait {
    kind: &'static str,
    key: String,
    at: DateTime<Utc>,
    seconds: f64,
}

/// Counts a duration once (by its kind and key), by the day it ended.
async fn record_wait(pool: &PgPool, event: &FarmEvent, wait: Wait) -> Result<(), sqlx::Error> {
    let site = event.site.as_str();
    let mut tx = pool.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO stats.waits (kind, key, printer_id, site, at, seconds) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(wait.kind)
    .bind(&wait.key)
    .bind(event.printer_id)
    .bind(site)
    .bind(wait.at)
    .bind(wait.seconds)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if fresh {
        let mut deltas = Deltas::default();
        deltas.wait(wait.at.date_naive(), site, wait.kind, wait.seconds, 1);
        write(&mut tx, event.printer_id, &deltas).await?;
    }
    tx.commit().await
}

/// Moves the summaries by `deltas`, one statement per table.
async fn write(
    tx: &mut Transaction<'_, Postgres>,
    printer: i64,
    deltas: &Deltas,
) -> Result<(), sqlx::Error> {
    for grain in GRAINS {
        // One row per period and site, a column per state.
        let mut rows: BTreeMap<(NaiveDate, &str), [f64; 8]> = BTreeMap::new();
        for ((g, period, site, activity), micros) in &deltas.seconds {
            if let (true, Some(column)) = (*g == grain, column(*activity)) {
                rows.entry((*period, site.as_str())).or_default()[column] += *micros as f64 / 1e6;
            }
        }
        if !rows.is_empty() {
            let periods: Vec<NaiveDate> = rows.keys().map(|k| k.0).collect();
            let sites: Vec<&str> = rows.keys().map(|k| k.1).collect();
            let columns: Vec<Vec<f64>> = (0..8)
                .map(|c| rows.values().map(|v| v[c]).collect())
                .collect();
            let table = grain.name();
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO stats.activity_{table} (period, printer_id, site, {STATE_COLUMNS}) \
                 SELECT p, $1, s, c1, c2, c3, c4, c5, c6, c7, c8 FROM unnest($2::date[], \
                   $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], \
                   $8::float8[], $9::float8[], $10::float8[], $11::float8[]) \
                   AS t(p, s, c1, c2, c3, c4, c5, c6, c7, c8) \
                 ON CONFLICT (period, printer_id, site) DO UPDATE SET {}",
                added(&format!("activity_{table}"))
            )))
            .bind(printer)
            .bind(&periods)
            .bind(&sites);
            for column in &columns {
                query = query.bind(column);
            }
            query.execute(&mut **tx).await?;
            if grain == Grain::Day {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO stats.activity_site_day (period, site, {STATE_COLUMNS}) \
                     SELECT p, s, c1, c2, c3, c4, c5, c6, c7, c8 FROM unnest($1::date[], \
                       $2::text[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], \
                       $7::float8[], $8::float8[], $9::float8[], $10::float8[]) \
                       AS t(p, s, c1, c2, c3, c4, c5, c6, c7, c8) \
                     ON CONFLICT (period, site) DO UPDATE SET {}",
                    added("activity_site_day")
                )))
                .bind(&periods)
                .bind(&sites);
                for column in &columns {
                    query = query.bind(column);
                }
                query.execute(&mut **tx).await?;
            }
        }
        let rows: Vec<_> = deltas.waits.iter().filter(|(k, _)| k.0 == grain).collect();
        if !rows.is_empty() {
            let periods: Vec<NaiveDate> = rows.iter().map(|(k, _)| k.1).collect();
            let sites: Vec<&str> = rows.iter().map(|(k, _)| k.2.as_str()).collect();
            let kinds: Vec<&str> = rows.iter().map(|(k, _)| k.3).collect();
            let buckets: Vec<i32> = rows.iter().map(|(k, _)| k.4).collect();
            let counts: Vec<i32> = rows.iter().map(|(_, v)| **v as i32).collect();
            let table = grain.name();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO stats.waits_{table} (period, printer_id, site, kind, bucket, count) \
                 SELECT p, $1, s, k, b, c FROM unnest($2::date[], $3::text[], $4::text[], \
                   $5::int[], $6::int[]) AS t(p, s, k, b, c) \
                 ON CONFLICT (period, printer_id, site, kind, bucket) \
                 DO UPDATE SET count = waits_{table}.count + excluded.count"
            )))
            .bind(printer)
            .bind(&periods)
            .bind(&sites)
            .bind(&kinds)
            .bind(&buckets)
            .bind(&counts)
            .execute(&mut **tx)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO stats.waits_site_{table} (period, site, kind, bucket, count) \
                 SELECT p, s, k, b, c FROM unnest($1::date[], $2::text[], $3::text[], \
                   $4::int[], $5::int[]) AS t(p, s, k, b, c) \
                 ON CONFLICT (period, site, kind, bucket) \
                 DO UPDATE SET count = waits_site_{table}.count + excluded.count"
            )))
            .bind(&periods)
            .bind(&sites)
            .bind(&kinds)
            .bind(&buckets)
            .bind(&counts)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// The summaries' state columns, in [`Activity::COUNTED`] order.
const STATE_COLUMNS: &str =
    "printing, paused, awaiting_clear, idle_queued, idle, error, offline, maintenance";

/// The column of a state in the summaries (none for `removed`).
fn column(activity: Activity) -> Option<usize> {
    Activity::COUNTED.iter().position(|a| *a == activity)
}

/// `col = table.col + excluded.col` for every state column.
fn added(table: &str) -> String {
    STATE_COLUMNS
        .split(", ")
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sum(col)::float8` for every state column.
fn sums() -> String {
    STATE_COLUMNS
        .split(", ")
        .map(|c| format!("sum({c})::float8"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Eight sums, in [`Activity::COUNTED`] order, as hours.
fn hours_of(seconds: [f64; 8]) -> StateHours {
    let mut hours = StateHours::default();
    for (activity, s) in Activity::COUNTED.iter().zip(seconds) {
        if let Some(h) = hours.get_mut(*activity) {
            *h = s / 3600.0;
        }
    }
    hours
}

fn invalid(detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::ValidationError, detail)
}

/// `AND`-ed filters on `printer_id` and `site`.
fn conditions(printers: Option<&[i64]>, site: Option<&str>, binds: &mut Binds) -> String {
    let mut sql = String::new();
    if let Some(ids) = printers {
        sql += &format!(
            " AND printer_id = ANY({})",
            binds.push(Value::Ints(ids.to_vec()))
        );
    }
    if let Some(site) = site {
        sql += &format!(" AND site = {}", binds.push(Value::Text(site.to_owned())));
    }
    sql
}

/// Seconds of one printer at one site, a sum per state.
type Seconds = (i64, String, f64, f64, f64, f64, f64, f64, f64, f64);
/// Seconds of one period, a sum per state.
type Dated = (NaiveDate, f64, f64, f64, f64, f64, f64, f64, f64);
type Raw = (i64, String, String, DateTime<Utc>, Option<DateTime<Utc>>);
/// A spell's part inside the range: printer, site, state, from, until.
type Piece = (i64, String, Activity, DateTime<Utc>, DateTime<Utc>);

async fn fetch<O>(pool: &PgPool, sql: String, binds: Binds) -> Result<Vec<O>, ErrorBody>
where
    O: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    binds
        .apply(sqlx::query_as(sqlx::AssertSqlSafe(sql)))
        .fetch_all(pool)
        .await
        .map_err(unavailable)
}

/// Which printers a question is about: some (by id), any; of one site or any.
struct Scope<'a> {
    printers: Option<&'a [i64]>,
    site: Option<&'a str>,
}

impl Scope<'_> {
    fn conditions(&self, binds: &mut Binds) -> String {
        conditions(self.printers, self.site, binds)
    }
}

/// `AND period >= … AND period < …` for a segment.
fn period_range(from: Option<NaiveDate>, until: Option<NaiveDate>, binds: &mut Binds) -> String {
    let mut sql = String::new();
    if let Some(f) = from {
        sql += &format!(" AND period >= {}", binds.push(Value::Day(f)));
    }
    if let Some(u) = until {
        sql += &format!(" AND period < {}", binds.push(Value::Day(u)));
    }
    sql
}

/// The whole periods of a range (none when it has no whole day).
fn whole_periods(span: &Span) -> Vec<query::Segment> {
    if span.no_days {
        Vec::new()
    } else {
        query::segments(span.day_from, span.day_until)
    }
}

/// Seconds by printer and state of the ended spells in the range's whole days.
async fn summed_by_printer(
    pool: &PgPool,
    scope: &Scope<'_>,
    span: &Span,
) -> Result<Vec<Seconds>, ErrorBody> {
    let mut binds = Binds::default();
    let parts: Vec<String> = whole_periods(span)
        .iter()
        .map(|segment| {
            let range = period_range(segment.from, segment.until, &mut binds);
            let c = scope.conditions(&mut binds);
            format!(
                "SELECT printer_id, site, {STATE_COLUMNS} FROM stats.activity_{} \
                 WHERE true{range}{c}",
                segment.grain.name()
            )
        })
        .collect();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT printer_id, site, {} FROM ({}) s GROUP BY 1, 2",
        sums(),
        parts.join(" UNION ALL ")
    );
    fetch(pool, sql, binds).await
}

/// Duration counts by kind and bucket in the range's whole days: from the per-site summaries,
/// or the per-printer ones when printers are asked for.
async fn summed_waits(
    pool: &PgPool,
    scope: &Scope<'_>,
    span: &Span,
) -> Result<Vec<(String, i32, i64)>, ErrorBody> {
    let mut binds = Binds::default();
    let table = if scope.printers.is_some() {
        "waits"
    } else {
        "waits_site"
    };
    let parts: Vec<String> = whole_periods(span)
        .iter()
        .map(|segment| {
            let range = period_range(segment.from, segment.until, &mut binds);
            let c = scope.conditions(&mut binds);
            format!(
                "SELECT kind, bucket, count FROM stats.{table}_{} WHERE true{range}{c}",
                segment.grain.name()
            )
        })
        .collect();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT kind, bucket, sum(count)::int8 FROM ({}) s GROUP BY 1, 2",
        parts.join(" UNION ALL ")
    );
    fetch(pool, sql, binds).await
}

/// The spells the summaries do not hold: ended ones overlapping the partial windows, and the
/// ones going on now.
async fn raw_spells(
    pool: &PgPool,
    scope: &Scope<'_>,
    partial: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<Vec<Raw>, ErrorBody> {
    let mut binds = Binds::default();
    let mut parts = Vec::new();
    for (a, b) in partial {
        let (a, b) = (binds.push(Value::Time(*a)), binds.push(Value::Time(*b)));
        let c = scope.conditions(&mut binds);
        parts.push(format!(
            "SELECT printer_id, site, activity, at, until FROM stats.activity \
             WHERE until IS NOT NULL AND tstzrange(at, until, '[)') && tstzrange({a}, {b}, '[)'){c}"
        ));
    }
    let c = scope.conditions(&mut binds);
    parts.push(format!(
        "SELECT printer_id, site, activity, at, until FROM stats.activity \
         WHERE until IS NULL{c}"
    ));
    fetch(pool, parts.join(" UNION ALL "), binds).await
}

/// The durations that ended in the partial windows, by kind.
async fn partial_waits(
    pool: &PgPool,
    scope: &Scope<'_>,
    partial: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<Vec<(String, f64)>, ErrorBody> {
    if partial.is_empty() {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let ranges: Vec<String> = partial
        .iter()
        .map(|(a, b)| {
            format!(
                "(at >= {} AND at < {})",
                binds.push(Value::Time(*a)),
                binds.push(Value::Time(*b))
            )
        })
        .collect();
    let c = scope.conditions(&mut binds);
    let sql = format!(
        "SELECT kind, seconds FROM stats.waits WHERE ({}){c}",
        ranges.join(" OR ")
    );
    fetch(pool, sql, binds).await
}

/// The trend's whole days from the day summaries (per site when no printer is asked for), by
/// day or month.
async fn trend_summaries(
    pool: &PgPool,
    scope: &Scope<'_>,
    span: &Span,
    monthly: bool,
) -> Result<Vec<Dated>, ErrorBody> {
    if span.no_days {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let range = period_range(span.day_from, span.day_until, &mut binds);
    let c = scope.conditions(&mut binds);
    let table = if scope.printers.is_some() {
        "activity_day"
    } else {
        "activity_site_day"
    };
    let grain = if monthly {
        "date_trunc('month', period)::date"
    } else {
        "period"
    };
    let sql = format!(
        "SELECT {grain}, {} FROM stats.{table} WHERE true{range}{c} GROUP BY 1",
        sums()
    );
    fetch(pool, sql, binds).await
}

/// `GET /statistics/utilisation`: the summaries' whole periods, the spells of the partial days
/// and going on now, the durations and the prints, read side by side.
pub async fn utilisation(
    pool: &PgPool,
    registry: &Printers,
    request: UtilisationRequest,
) -> Result<Utilisation, ErrorBody> {
    let now = Utc::now();
    let until = request.until.unwrap_or(now);
    let from = request.from.unwrap_or(until - Duration::days(DEFAULT_DAYS));
    if from >= until {
        return Err(invalid("`from` must be before `until`"));
    }
    let known: HashMap<i64, _> = registry.all().into_iter().map(|p| (p.id, p)).collect();
    let printers = chosen(&request, &known);
    let scope = Scope {
        printers: printers.as_deref(),
        site: request.site.as_deref(),
    };
    let span = Span::of(&StatsFilter {
        from: Some(from),
        until: Some(until),
        ..StatsFilter::default()
    });
    let monthly = until - from > Duration::days(TREND_DAYS_MAX);
    let partial = partial_windows(&span, from, until);
    let prints_filter = StatsFilter {
        printer_ids: printers.clone(),
        site: request.site.clone(),
        from: Some(from),
        until: Some(until),
        ..StatsFilter::default()
    };
    let (summed, waited, raw, late_waits, prints, trend_rows) = futures::try_join!(
        summed_by_printer(pool, &scope, &span),
        summed_waits(pool, &scope, &span),
        raw_spells(pool, &scope, &partial),
        partial_waits(pool, &scope, &partial),
        query::prints_by_printer(pool, &prints_filter),
        trend_summaries(pool, &scope, &span, monthly),
    )?;
    let pieces = clipped(raw, &partial, from, until.min(now), now);

    let mut plate_buckets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut queue_buckets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut count = |kind: &str, bucket: i32, n: i64| {
        let target = if kind == "plate_clear" {
            &mut plate_buckets
        } else {
            &mut queue_buckets
        };
        *target.entry(bucket).or_default() += n;
    };
    for (kind, b, n) in &waited {
        count(kind, *b, *n);
    }
    for (kind, seconds) in &late_waits {
        count(kind, bucket(*seconds), 1);
    }

    // Hours by printer.
    let mut by_printer: BTreeMap<i64, (String, StateHours)> = BTreeMap::new();
    for (printer, site, a, b, c, d, e, f, g, h) in summed {
        by_printer
            .entry(printer)
            .or_insert_with(|| (site, StateHours::default()))
            .1
            .add(&hours_of([a, b, c, d, e, f, g, h]));
    }
    for (printer, site, activity, a, b) in &pieces {
        let entry = by_printer
            .entry(*printer)
            .or_insert_with(|| (site.clone(), StateHours::default()));
        if let Some(hours) = entry.1.get_mut(*activity) {
            *hours += (*b - *a).num_microseconds().unwrap_or(0) as f64 / 1e6 / 3600.0;
        }
    }
    by_printer.retain(|_, (_, hours)| hours.total() > 0.0);

    let days = (until - from).num_seconds() as f64 / 86_400.0;
    let mut farm = Tally::default();
    let mut models: BTreeMap<String, Tally> = BTreeMap::new();
    let mut sites: BTreeMap<String, Tally> = BTreeMap::new();
    let mut rows = Vec::new();
    for (id, (site, hours)) in &by_printer {
        let printer = known.get(id);
        let model = printer.and_then(|p| p.model.clone());
        let count = prints.get(id).copied().unwrap_or(0);
        let mut tally = Tally::default();
        tally.add(hours, count);
        farm.add(hours, count);
        sites.entry(site.clone()).or_default().add(hours, count);
        if let Some(model) = &model {
            models.entry(model.clone()).or_default().add(hours, count);
        }
        rows.push(UtilisationRow {
            printer_id: Some(*id),
            name: Some(printer.map_or_else(|| format!("Printer {id}"), |p| p.name.clone())),
            model,
            site: Some(site.clone()),
            ..tally.row(days)
        });
    }
    let named = |(name, tally): (String, Tally)| UtilisationRow {
        name: Some(name),
        ..tally.row(days)
    };
    Ok(Utilisation {
        from: Some(from),
        until: Some(until),
        trend_period: if monthly { "month" } else { "day" }.into(),
        farm: farm.row(days),
        printers: rows,
        models: models.into_iter().map(named).collect(),
        sites: sites.into_iter().map(named).collect(),
        plate_clear: waits(&plate_buckets),
        queue_wait: waits(&queue_buckets),
        trend: trend(trend_rows, monthly, &pieces),
    })
}

/// Each raw spell's part in the range: an ended one's in the partial windows (the summaries
/// hold the rest), one going on from its start to now, within `[from, until)`.
fn clipped(
    raw: Vec<Raw>,
    partial: &[(DateTime<Utc>, DateTime<Utc>)],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for (printer, site, activity, at, end) in raw {
        let Some(activity) = Activity::parse(&activity) else {
            continue;
        };
        let going_on = [(from, until)];
        let windows = if end.is_some() {
            partial
        } else {
            &going_on[..]
        };
        for (a, b) in windows {
            let (start, stop) = (at.max(*a), end.unwrap_or(now).min(*b));
            if start < stop {
                pieces.push((printer, site.clone(), activity, start, stop));
            }
        }
    }
    pieces
}

/// The printers asked for: one, a caller's, a model's (by the registry); `None`: any.
fn chosen(
    request: &UtilisationRequest,
    known: &HashMap<i64, printyard_contracts::maintenance::MaintainedPrinter>,
) -> Option<Vec<i64>> {
    let mut ids: Option<Vec<i64>> = request.printer_id.map(|id| vec![id]);
    if let Some(allowed) = &request.printer_ids {
        ids = Some(match ids {
            Some(ids) => ids.into_iter().filter(|i| allowed.contains(i)).collect(),
            None => allowed.clone(),
        });
    }
    if let Some(model) = &request.model {
        let of_model = |id: &i64| {
            known
                .get(id)
                .and_then(|p| p.model.as_deref())
                .is_some_and(|m| m.eq_ignore_ascii_case(model))
        };
        ids = Some(match ids {
            Some(ids) => ids.into_iter().filter(of_model).collect(),
            None => {
                let mut ids: Vec<i64> = known.keys().copied().filter(of_model).collect();
                ids.sort_unstable();
                ids
            }
        });
    }
    ids
}

/// The parts of `[from, until)` outside its whole days.
fn partial_windows(
    span: &Span,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    if span.no_days {
        return vec![(from, until)];
    }
    let mut out = Vec::new();
    if let Some(day) = span.day_from
        && from < midnight(day)
    {
        out.push((from, midnight(day)));
    }
    if let Some(day) = span.day_until
        && midnight(day) < until
    {
        out.push((midnight(day), until));
    }
    out
}

/// The farm's hours by day (or month): the summaries' whole days and the pieces.
fn trend(rows: Vec<Dated>, monthly: bool, pieces: &[Piece]) -> Vec<UtilisationPeriod> {
    let period = |day: NaiveDate| if monthly { month_start(day) } else { day };
    let mut periods: BTreeMap<NaiveDate, StateHours> = BTreeMap::new();
    for (day, a, b, c, d, e, f, g, h) in rows {
        periods
            .entry(day)
            .or_default()
            .add(&hours_of([a, b, c, d, e, f, g, h]));
    }
    for (_, _, activity, a, b) in pieces {
        for (day, micros) in by_day(*a, *b) {
            if let Some(hours) = periods.entry(period(day)).or_default().get_mut(*activity) {
                *hours += micros as f64 / 1e6 / 3600.0;
            }
        }
    }
    periods
        .into_iter()
        .filter(|(_, h)| h.total() > 0.0)
        .map(|(period, hours)| UtilisationPeriod {
            period,
            utilisation: percent_printing(&hours),
            hours: rounded(hours),
        })
        .collect()
}

fn percent_printing(hours: &StateHours) -> f64 {
    let online = hours.total() - hours.offline;
    if online <= 0.0 {
        return 0.0;
    }
    (hours.printing / online * 10_000.0).round() / 100.0
}

/// Hours to 4 decimals (a third of a second).
fn rounded(mut hours: StateHours) -> StateHours {
    for a in Activity::COUNTED {
        if let Some(v) = hours.get_mut(a) {
            *v = (*v * 10_000.0).round() / 10_000.0;
        }
    }
    hours
}

#[derive(Default)]
struct Tally {
    printers: i64,
    hours: StateHours,
    prints: i64,
}

impl Tally {
    fn add(&mut self, hours: &StateHours, prints: i64) {
        self.printers += 1;
        self.hours.add(hours);
        self.prints += prints;
    }

    fn row(&self, days: f64) -> UtilisationRow {
        UtilisationRow {
            printers: self.printers,
            hours: rounded(self.hours),
            utilisation: percent_printing(&self.hours),
            prints: self.prints,
            prints_per_day: if days > 0.0 {
                (self.prints as f64 / days * 100.0).round() / 100.0
            } else {
                0.0
            },
            ..UtilisationRow::default()
        }
    }
}

/// What a month or year summary period is of a day (for tests and the benchmark's fill).
pub fn periods_of(day: NaiveDate) -> [(Grain, NaiveDate); 3] {
    [
        (Grain::Day, day),
        (Grain::Month, month_start(day)),
        (
            Grain::Year,
            NaiveDate::from_ymd_opt(day.year(), 1, 1).unwrap_or(day),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap_or_default()
    }

    /// The spells of one printer kept in memory with [`plan`], as the database keeps them.
    #[derive(Default)]
    struct Timeline {
        spells: BTreeMap<DateTime<Utc>, Spell>,
        seconds: BTreeMap<(Grain, NaiveDate, String, Activity), i64>,
        waits: BTreeMap<(Grain, NaiveDate, String, &'static str, i32), i64>,
    }

    impl Timeline {
        fn fact(&mut self, at: DateTime<Utc>, activity: Activity) {
            let prev = self.spells.range(..=at).next_back().map(|(_, s)| s.clone());
            let next = self
                .spells
                .range((std::ops::Bound::Excluded(at), std::ops::Bound::Unbounded))
                .next()
                .map(|(_, s)| s.clone());
            let Some(plan) = plan(prev.as_ref(), next.as_ref(), at, activity, "north") else {
                return;
            };
            if let (Some(prev), Some(ends)) = (prev, plan.prev_ends)
                && let Some(spell) = self.spells.get_mut(&prev.at)
            {
                spell.until = Some(ends);
            }
            self.spells.insert(plan.insert.at, plan.insert.clone());
            let deltas = Deltas::of(&plan.changes);
            for (k, v) in deltas.seconds {
                *self.seconds.entry(k).or_default() += v;
            }
            for (k, v) in deltas.waits {
                *self.waits.entry(k).or_default() += v;
            }
            self.seconds.retain(|_, v| *v != 0);
            self.waits.retain(|_, v| *v != 0);
        }
    }

    fn activity() -> impl Strategy<Value = Activity> {
        prop::sample::select(vec![
            Activity::Printing,
            Activity::Paused,
            Activity::AwaitingClear,
            Activity::Idle,
            Activity::Offline,
        ])
    }

    proptest! {
        /// Facts in any order, repeated or not, leave the same facts and summaries as the
        /// facts in time order; each fact ends where the next begins; and the summaries hold
        /// exactly the time of the spells (consecutive facts of one state merged).
        #[test]
        fn any_order_of_facts_gives_the_same_spells_and_sums(
            (facts, shuffled) in prop::collection::btree_map(0i64..400_000, activity(), 1..40)
                .prop_flat_map(|facts| {
                    let facts: Vec<(i64, Activity)> = facts.into_iter().collect();
                    (Just(facts.clone()), Just(facts).prop_shuffle())
                }),
            repeat in any::<prop::sample::Index>(),
        ) {
            let mut sorted = Timeline::default();
            for (at, a) in &facts {
                sorted.fact(t(*at), *a);
            }
            let mut shuffled = shuffled;
            // A fact delivered twice.
            shuffled.push(facts[repeat.index(facts.len())]);
            let mut any = Timeline::default();
            for (at, a) in &shuffled {
                any.fact(t(*at), *a);
            }
            prop_assert_eq!(&any.spells, &sorted.spells);
            prop_assert_eq!(&any.seconds, &sorted.seconds);
            prop_assert_eq!(&any.waits, &sorted.waits);
            let facts: Vec<&Spell> = any.spells.values().collect();
            for pair in facts.windows(2) {
                prop_assert_eq!(pair[0].until, Some(pair[1].at));
            }
            // Merged spells: a state's run from its first fact to the next other state.
            let mut spells: Vec<(DateTime<Utc>, Activity, Option<DateTime<Utc>>)> = Vec::new();
            for fact in &facts {
                match spells.last_mut() {
                    Some(last) if last.1 == fact.activity => last.2 = fact.until,
                    _ => spells.push((fact.at, fact.activity, fact.until)),
                }
            }
            // Counted up to a horizon, the summaries and the fact going on equal the spells.
            let horizon = t(500_000);
            let mut expected: BTreeMap<(Grain, NaiveDate, String, Activity), i64> = BTreeMap::new();
            for (at, activity, until) in &spells {
                for (day, micros) in by_day(*at, until.unwrap_or(horizon)) {
                    for (grain, period) in periods_of(day) {
                        *expected.entry((grain, period, "north".into(), *activity)).or_default() += micros;
                    }
                }
            }
            let mut counted = any.seconds.clone();
            if let Some(open) = facts.iter().find(|f| f.until.is_none()) {
                for (day, micros) in by_day(open.at, horizon) {
                    for (grain, period) in periods_of(day) {
                        *counted.entry((grain, period, "north".into(), open.activity)).or_default() += micros;
                    }
                }
            }
            expected.retain(|_, v| *v != 0);
            counted.retain(|_, v| *v != 0);
            prop_assert_eq!(counted, expected);
        }
    }

    #[test]
    fn a_spell_is_cut_at_utc_midnights() {
        let cut = by_day(t(86_400 - 60), t(2 * 86_400 + 30));
        assert_eq!(cut.len(), 3);
        assert_eq!(cut[0].1, 60_000_000);
        assert_eq!(cut[1].1, 86_400_000_000);
        assert_eq!(cut[2].1, 30_000_000);
    }

    #[test]
    fn percentiles_read_from_buckets_are_within_five_percent() {
        let durations = [
            30.0, 60.0, 90.0, 120.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0,
        ];
        let mut buckets = BTreeMap::new();
        for d in durations {
            *buckets.entry(bucket(d)).or_default() += 1;
        }
        let w = waits(&buckets);
        assert_eq!(w.count, 10);
        let median = w.median_secs.unwrap_or_default();
        assert!((median - 600.0).abs() / 600.0 < 0.05, "{median}");
        let p90 = w.p90_secs.unwrap_or_default();
        assert!((p90 - 3600.0).abs() / 3600.0 < 0.05, "{p90}");
        assert_eq!(waits(&BTreeMap::new()).median_secs, None);
    }
}

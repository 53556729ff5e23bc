//! The `archive` schema: archives and projects.

use chrono::{DateTime, Utc};
use printyard_contracts::archive::{
    Archive, ArchiveFacts, ArchiveFilter, ArchiveStatus, FilamentUse, ListArchives, PageStart,
    Project,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use sqlx::{PgPool, Postgres, Transaction};

use crate::intake::Stored;

/// `SELECT <columns> FROM archive.archives <tail>` as a `&'static str`.
macro_rules! select_archives {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, filename, printer_id, printer_name, status, created_at, started_at, \
             completed_at, duration, filament_used, filament_type, notes, tags, project_id, \
             progress, plates, plate, print_time_estimate, weight, filaments, printer_model_id, \
             file_key, file_size, file_sha256, thumbnail_key, file_error, queue_job_id, \
             source_archive_id, end_reason, site, revision, ams_mapping FROM archive.archives ",
            $tail
        )
    };
}

#[derive(Debug, sqlx::FromRow)]
pub struct ArchiveRow {
    pub id: i64,
    pub name: String,
    pub filename: String,
    pub printer_id: Option<i64>,
    pub printer_name: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration: Option<i64>,
    pub filament_used: Option<f64>,
    pub filament_type: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub project_id: Option<i64>,
    pub progress: Option<i32>,
    pub plates: Option<i32>,
    pub plate: Option<i32>,
    pub print_time_estimate: Option<i64>,
    pub weight: Option<f64>,
    pub filaments: sqlx::types::Json<Vec<FilamentUse>>,
    pub printer_model_id: Option<String>,
    pub file_key: Option<String>,
    pub file_size: Option<i64>,
    pub file_sha256: Option<String>,
    pub thumbnail_key: Option<String>,
    pub file_error: Option<String>,
    pub queue_job_id: Option<i64>,
    pub source_archive_id: Option<i64>,
    pub end_reason: Option<String>,
    pub site: Option<String>,
    pub revision: i64,
    pub ams_mapping: Option<sqlx::types::Json<Vec<i32>>>,
}

impl ArchiveRow {
    /// What `archive_updated` says of it.
    pub fn facts(&self) -> ArchiveFacts {
        ArchiveFacts {
            archive_id: self.id,
            revision: self.revision,
            status: ArchiveStatus::parse(&self.status).unwrap_or(ArchiveStatus::Failed),
            name: self.name.clone(),
            printer_id: self.printer_id,
            printer_name: self.printer_name.clone(),
            site: self.site.clone(),
            project_id: self.project_id,
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            duration: self.duration,
            filament_used: self.filament_used.map(|g| (g * 100.0).round() / 100.0),
            filament_type: self.filament_type.clone(),
            printer_model_id: self.printer_model_id.clone(),
            queue_job_id: self.queue_job_id,
            filaments: self.filaments.0.clone(),
            progress: self.progress,
            ams_mapping: self.ams_mapping.as_ref().map(|m| m.0.clone()),
        }
    }

    pub fn into_view(self) -> Archive {
        Archive {
            id: self.id,
            name: self.name,
            filename: self.filename,
            printer_id: self.printer_id,
            printer_name: self.printer_name,
            created_at: self.created_at,
            duration: self.duration,
            status: ArchiveStatus::parse(&self.status).unwrap_or(ArchiveStatus::Failed),
            filament_used: self.filament_used.map(|g| (g * 100.0).round() / 100.0),
            filament_type: self.filament_type,
            started_at: self.started_at,
            completed_at: self.completed_at,
            progress: self.progress,
            notes: self.notes,
            tags: self.tags,
            project_id: self.project_id,
            plates: self.plates,
            plate: self.plate,
            print_time_estimate: self.print_time_estimate,
            weight: self.weight,
            filaments: self.filaments.0,
            printer_model_id: self.printer_model_id,
            has_file: self.file_key.is_some(),
            file_size: self.file_size,
            file_sha256: self.file_sha256,
            has_thumbnail: self.thumbnail_key.is_some(),
            file_error: self.file_error,
            queue_job_id: self.queue_job_id,
            source_archive_id: self.source_archive_id,
            end_reason: self.end_reason,
            site: self.site,
        }
    }
}

/// A database failure as callers see it (the detail stays in the log).
pub fn unavailable(err: sqlx::Error) -> ErrorBody {
    printyard_service::db::error_body(&err, "archive")
}

pub fn not_found(what: &str, id: i64) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("{what} {id} not found"))
}

/// Words of a search, each matched as a prefix: `benchy pla` → `benchy:* & pla:*`. Only
/// letters and digits survive, so nothing a user types is tsquery syntax.
pub fn prefix_query(search: &str) -> Option<String> {
    let words: Vec<String> = search
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| format!("{}:*", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

enum Bind {
    Int(i64),
    Ints(Vec<i64>),
    Text(String),
    Time(DateTime<Utc>),
}

/// `WHERE …` for a filter, with its bind values in placeholder order.
fn conditions(filter: &ArchiveFilter, binds: &mut Vec<Bind>) -> String {
    let mut clauses = Vec::new();
    let mut push = |clause: &str, bind: Bind, binds: &mut Vec<Bind>| {
        binds.push(bind);
        clauses.push(clause.replace('?', &format!("${}", binds.len())));
    };
    if let Some(id) = filter.printer_id {
        push("printer_id = ?", Bind::Int(id), binds);
    }
    if let Some(ids) = &filter.printer_ids {
        // A limited caller's printers, and the library's uploads (no printer).
        push(
            "(printer_id = ANY(?) OR printer_id IS NULL)",
            Bind::Ints(ids.clone()),
            binds,
        );
    }
    if let Some(status) = filter.status {
        push("status = ?", Bind::Text(status.as_str().to_owned()), binds);
    }
    if let Some(from) = filter.from {
        push("created_at >= ?", Bind::Time(from), binds);
    }
    if let Some(until) = filter.until {
        push("created_at < ?", Bind::Time(until), binds);
    }
    if let Some(query) = filter.search.as_deref().and_then(prefix_query) {
        push(
            "search @@ to_tsquery('simple', ?)",
            Bind::Text(query),
            binds,
        );
    }
    if let Some(project) = filter.project_id {
        push("project_id = ?", Bind::Int(project), binds);
    }
    if let Some(site) = &filter.site {
        push("site = ?", Bind::Text(site.clone()), binds);
    }
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

fn bind_all<'q, O>(
    mut query: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
    for bind in binds {
        query = match bind {
            Bind::Int(v) => query.bind(v),
            Bind::Ints(v) => query.bind(v),
            Bind::Text(v) => query.bind(v),
            Bind::Time(v) => query.bind(v),
        };
    }
    query
}

/// Matches are counted exactly up to this many; beyond it `total` is the planner's estimate
/// (and says so): counting tens of thousands of rows for every page would cost more than the
/// page.
pub const EXACT_COUNT_LIMIT: i64 = 1_000;

/// The planner's estimate of the archives matching `filter` (a millisecond: no rows read).
async fn estimate(pool: &PgPool, filter: &ArchiveFilter) -> Result<i64, sqlx::Error> {
    let mut binds = Vec::new();
    let where_clause = conditions(filter, &mut binds);
    let sql = format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM archive.archives {where_clause}");
    let (plan,): (sqlx::types::Json<serde_json::Value>,) =
        bind_all(sqlx::query_as(sqlx::AssertSqlSafe(sql)), binds)
            .fetch_one(pool)
            .await?;
    Ok(plan.0[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0) as i64)
}

/// How many archives match `filter`, and whether that is exact: a small estimate is checked
/// by counting (which stops past [`EXACT_COUNT_LIMIT`]), a large one is the answer. A search's
/// first word alone (`plan_estimate`) must be small too: its words tend to come together.
async fn count(
    pool: &PgPool,
    filter: &ArchiveFilter,
    estimate: i64,
    plan_estimate: i64,
) -> Result<(i64, bool), sqlx::Error> {
    if estimate.max(plan_estimate) > EXACT_COUNT_LIMIT {
        return Ok((estimate, false));
    }
    let mut binds = Vec::new();
    let where_clause = conditions(filter, &mut binds);
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM archive.archives {where_clause} LIMIT {}) capped",
        EXACT_COUNT_LIMIT + 1
    );
    let (counted,): (i64,) = bind_all(sqlx::query_as(sqlx::AssertSqlSafe(sql)), binds)
        .fetch_one(pool)
        .await?;
    if counted <= EXACT_COUNT_LIMIT {
        Ok((counted, true))
    } else {
        Ok((estimate.max(counted), false))
    }
}

/// A page of archives, and (when asked) how many match in all and whether that is exact.
pub async fn list(
    pool: &PgPool,
    request: &ListArchives,
) -> Result<(i64, bool, Vec<Archive>), ErrorBody> {
    let estimated = estimate(pool, &request.filter).await.map_err(unavailable)?;
    // The words of one search usually stand together (`spool holder`): the planner, taking
    // them as independent, would think the matches far fewer than they are, and pick the plan
    // for a few. The plan is chosen on the first word's estimate.
    let plan_estimate = match first_word(&request.filter) {
        Some(filter) => estimate(pool, &filter).await.map_err(unavailable)?,
        None => estimated,
    };
    let (counted, rows) = tokio::join!(
        async {
            if request.count_total {
                count(pool, &request.filter, estimated, plan_estimate).await
            } else {
                Ok((0, true))
            }
        },
        page(pool, request, plan_estimate)
    );
    let (total, exact) = counted.map_err(unavailable)?;
    Ok((total, exact, rows.map_err(unavailable)?))
}

/// `filter` searching only its first word, when its search has several.
fn first_word(filter: &ArchiveFilter) -> Option<ArchiveFilter> {
    let search = filter.search.as_deref()?;
    let mut words = search
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    let first = words.next()?;
    words.next()?;
    Some(ArchiveFilter {
        search: Some(first.to_owned()),
        ..filter.clone()
    })
}

/// Below this many estimated matches a search is answered from the full-text index alone.
const FEW_MATCHES: i64 = 5_000;

/// How far back (days) a search with many matches looks first, then further: ordering tens of
/// thousands of matches to show the newest 50 reads every one of them, while a recent window
/// usually holds a page already. The last step has no window.
const SEARCH_WINDOWS_DAYS: [i64; 4] = [14, 90, 365, 0];

/// A page, by one of two plans. Few matches (by the estimate): the full-text and other
/// indexes as bitmaps, then a sort of the few rows, never a walk of the date index testing
/// row after row (which reads the whole table when matches are rare). Many matches: the
/// newest rows first, window by window, which finds a page after reading a few hundred.
async fn page(
    pool: &PgPool,
    request: &ListArchives,
    estimated: i64,
) -> Result<Vec<Archive>, sqlx::Error> {
    let anchor = match &request.start {
        PageStart::After { created_at, .. } => *created_at,
        PageStart::Offset(_) => Utc::now(),
    };
    let searching = request.filter.search.is_some();
    let few = estimated < FEW_MATCHES;
    let windows: &[i64] = if searching && !few {
        &SEARCH_WINDOWS_DAYS
    } else {
        &[0]
    };
    let mut tx = pool.begin().await?;
    if searching && few {
        sqlx::query("SET LOCAL enable_indexscan = off")
            .execute(&mut *tx)
            .await?;
    }
    let mut rows = Vec::new();
    for days in windows {
        let since = (*days > 0).then(|| anchor - chrono::Duration::days(*days));
        rows = page_since(&mut tx, request, since).await?;
        // Anything outside the window is older than everything in it: a full page from the
        // window is the page.
        if rows.len() as i64 == request.limit {
            break;
        }
    }
    tx.commit().await?;
    Ok(rows)
}

async fn page_since(
    tx: &mut Transaction<'_, Postgres>,
    request: &ListArchives,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Archive>, sqlx::Error> {
    let mut binds = Vec::new();
    let mut extra = Vec::new();
    let mut where_clause = conditions(&request.filter, &mut binds);
    if let Some(since) = since {
        binds.push(Bind::Time(since));
        extra.push(format!("created_at >= ${}", binds.len()));
    }
    let offset = match &request.start {
        PageStart::Offset(offset) => *offset,
        PageStart::After { created_at, id } => {
            binds.push(Bind::Time(*created_at));
            binds.push(Bind::Int(*id));
            let n = binds.len();
            extra.push(format!("(created_at, id) < (${}, ${n})", n - 1));
            0
        }
    };
    if !extra.is_empty() {
        let joined = extra.join(" AND ");
        where_clause = if where_clause.is_empty() {
            format!("WHERE {joined}")
        } else {
            format!("{where_clause} AND {joined}")
        };
    }
    binds.push(Bind::Int(request.limit));
    binds.push(Bind::Int(offset));
    let n = binds.len();
    let sql = format!(
        "{}{where_clause} ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${n}",
        select_archives!(""),
        n - 1
    );
    let rows: Vec<ArchiveRow> = bind_all(sqlx::query_as(sqlx::AssertSqlSafe(sql)), binds)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.into_iter().map(ArchiveRow::into_view).collect())
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<ArchiveRow>, sqlx::Error> {
    sqlx::query_as(select_archives!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Fills an archive's file fields from a stored 3MF: the object keys, and what was read from
/// the printed plate (then `filament_type` from its filaments).
pub async fn set_file(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    stored: &Stored,
) -> Result<(), sqlx::Error> {
    let fields = FileFields { stored };
    sqlx::query(
        "UPDATE archive.archives SET file_key = $2, file_size = $3, file_sha256 = $4, \
           thumbnail_key = $5, plates = $6, plate = $7, print_time_estimate = $8, weight = $9, \
           filaments = $10, printer_model_id = $11, plate_details = $12, file_error = NULL \
         WHERE id = $1",
    )
    .bind(id)
    .bind(&stored.file_key)
    .bind(stored.size as i64)
    .bind(&stored.sha256)
    .bind(&stored.thumbnail_key)
    .bind(stored.meta.plates.len() as i32)
    .bind(stored.plate.map(|p| p as i32))
    .bind(fields.prediction())
    .bind(fields.weight())
    .bind(sqlx::types::Json(fields.filaments()))
    .bind(fields.model_id())
    .bind(sqlx::types::Json(&stored.meta.plates))
    .execute(&mut **tx)
    .await?;
    // A second statement: within one, `filaments` would still be the old value.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE archive.archives SET filament_type = {FILAMENT_TYPE_SQL} WHERE id = $1"
    )))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The fields a stored 3MF fills in.
struct FileFields<'a> {
    stored: &'a Stored,
}

impl FileFields<'_> {
    fn filaments(&self) -> Vec<FilamentUse> {
        self.plate()
            .map(|p| {
                p.filaments
                    .iter()
                    .map(|f| FilamentUse {
                        slot: Some(f.id),
                        kind: f.kind.clone(),
                        color: f.color.clone(),
                        grams: f.used_g,
                        tray: None,
                        spool_id: None,
                        used_g: None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The plate it describes; none for a print whose plate is not known (its weight and
    /// filaments are then not known either, rather than another plate's).
    fn plate(&self) -> Option<&printyard_bambu::threemf::Plate> {
        let wanted = self.stored.plate?;
        self.stored.meta.plates.iter().find(|p| p.index == wanted)
    }

    fn weight(&self) -> Option<f64> {
        self.plate().and_then(|p| p.weight_g)
    }

    fn prediction(&self) -> Option<i64> {
        self.plate()
            .and_then(|p| p.prediction_secs)
            .map(|s| s.min(i64::MAX as u64) as i64)
    }

    /// The model the file was sliced for (every plate of a file is sliced for one).
    fn model_id(&self) -> Option<String> {
        self.plate()
            .or(self.stored.meta.plates.first())
            .and_then(|p| p.printer_model_id.clone())
    }
}

/// Takes the lock that orders "another archive still uses this object" against deletion.
pub async fn lock_object(tx: &mut Transaction<'_, Postgres>, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The distinct filament types of a row's plate, as the list shows them (`PLA, PETG`).
pub const FILAMENT_TYPE_SQL: &str = "(SELECT string_agg(DISTINCT f->>'type', ', ') FROM jsonb_array_elements(filaments) f \
      WHERE coalesce(f->>'type', '') <> '')";

pub async fn projects(pool: &PgPool, id: Option<i64>) -> Result<Vec<Project>, ErrorBody> {
    let rows: Vec<ProjectRow> = sqlx::query_as(
        "SELECT p.id, p.name, p.description, p.color, p.target_count, p.created_at, \
                count(a.id) AS archive_count, \
                count(a.id) FILTER (WHERE a.status = 'success') AS completed_count \
         FROM archive.projects p LEFT JOIN archive.archives a ON a.project_id = p.id \
         WHERE $1::bigint IS NULL OR p.id = $1 \
         GROUP BY p.id ORDER BY p.id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    Ok(rows.into_iter().map(ProjectRow::into_view).collect())
}

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: i64,
    name: String,
    description: Option<String>,
    color: Option<String>,
    target_count: Option<i32>,
    created_at: DateTime<Utc>,
    archive_count: i64,
    completed_count: i64,
}

impl ProjectRow {
    fn into_view(self) -> Project {
        let progress = self
            .target_count
            .filter(|t| *t > 0)
            .map(|t| ((self.completed_count as f64 / t as f64) * 100.0).min(100.0))
            .map(|p| (p * 10.0).round() / 10.0);
        Project {
            id: self.id,
            name: self.name,
            description: self.description,
            color: self.color,
            target_count: self.target_count,
            created_at: self.created_at,
            archive_count: self.archive_count,
            completed_count: self.completed_count,
            progress,
        }
    }
}

/// The rows of `ids` that exist.
pub async fn rows(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[i64],
) -> Result<Vec<ArchiveRow>, sqlx::Error> {
    sqlx::query_as(select_archives!("WHERE id = ANY($1)"))
        .bind(ids)
        .fetch_all(&mut **tx)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_become_prefix_queries_without_syntax() {
        assert_eq!(prefix_query("Benchy"), Some("benchy:*".into()));
        assert_eq!(
            prefix_query("cube & !(x) | 'y':*"),
            Some("cube:* & x:* & y:*".into())
        );
        assert_eq!(prefix_query("  &|!  "), None);
    }

    #[test]
    fn filters_number_their_placeholders_in_order() {
        let mut binds = Vec::new();
        let filter = ArchiveFilter {
            printer_id: Some(1),
            status: Some(ArchiveStatus::Success),
            search: Some("cube".into()),
            ..Default::default()
        };
        assert_eq!(
            conditions(&filter, &mut binds),
            "WHERE printer_id = $1 AND status = $2 AND search @@ to_tsquery('simple', $3)"
        );
        assert_eq!(binds.len(), 3);
        assert_eq!(conditions(&ArchiveFilter::default(), &mut Vec::new()), "");
    }
}

//! Printing from the library: what the queue needs to send an archive's file to a printer (the
//! stored object, its checksum, the plate's model and filaments), and the archive of a print the
//! queue sent, which reuses the library file's stored object instead of fetching the same bytes
//! back from the printer.
//!
//! Every sliced plate of a file is kept in `plate_details`; files stored before that column
//! existed have it filled from the stored file the first time a plan needs it.

use printyard_bambu::threemf::{self, Limits, Plate, ThreeMf};
use printyard_contracts::archive::{
    FileLocation, PlanRequest, PlateFilament, PlatePlan, PrintPlan,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::io::AsyncWriteExt;

use crate::db::{self, not_found, unavailable};
use crate::intake::Stored;
use crate::storage::{Storage, describe};

/// Bytes read from storage per request while a file is re-read for its plates.
const READ_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct Plans {
    pub pool: PgPool,
    pub storage: Storage,
    pub work_dir: std::path::PathBuf,
    pub limits: Limits,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    name: String,
    filename: String,
    file_key: Option<String>,
    file_size: Option<i64>,
    file_sha256: Option<String>,
    thumbnail_key: Option<String>,
    plate_details: Option<sqlx::types::Json<Vec<Plate>>>,
    file_error: Option<String>,
}

fn invalid(detail: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::ValidationError, detail)
}

fn storage_down(detail: String) -> ErrorBody {
    tracing::error!(error = %detail, "archive storage failed");
    ErrorBody::new(
        ErrorCode::ServiceUnavailable,
        "Archive storage is unavailable, try again shortly",
    )
}

impl Plans {
    /// The plan for printing `plate` of archive `archive_id`.
    pub async fn print_plan(&self, request: PlanRequest) -> Result<PrintPlan, ErrorBody> {
        let id = request.archive_id;
        let row = self.row(id).await?;
        let (Some(key), Some(size), Some(sha256)) =
            (row.file_key.clone(), row.file_size, row.file_sha256.clone())
        else {
            let why = row
                .file_error
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            return Err(invalid(format!(
                "Archive {id} has no 3MF file to print{why}"
            )));
        };
        let plates = match row.plate_details {
            Some(plates) => plates.0,
            None => self.fill_plate_details(id, &key).await?,
        };
        let Some(plate) = plates.iter().find(|p| p.index == request.plate) else {
            let have: Vec<String> = plates.iter().map(|p| p.index.to_string()).collect();
            return Err(invalid(format!(
                "Archive {id} has no sliced plate {} (its file has plate {})",
                request.plate,
                have.join(", ")
            )));
        };
        Ok(PrintPlan {
            archive_id: id,
            name: row.name,
            filename: row.filename.clone(),
            file: FileLocation {
                key,
                size: size.max(0) as u64,
                filename: row.filename,
            },
            sha256,
            has_thumbnail: row.thumbnail_key.is_some(),
            plates: plates.iter().map(|p| p.index).collect(),
            plate: plate_plan(plate),
        })
    }

    async fn row(&self, id: i64) -> Result<FileRow, ErrorBody> {
        sqlx::query_as(
            "SELECT name, filename, file_key, file_size, file_sha256, thumbnail_key, \
               plate_details, file_error FROM archive.archives WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| not_found("Archive", id))
    }

    /// Reads the plates of a file stored before `plate_details` existed, and keeps them.
    async fn fill_plate_details(&self, id: i64, key: &str) -> Result<Vec<Plate>, ErrorBody> {
        let meta = self.read_stored(key).await?;
        sqlx::query(
            "UPDATE archive.archives SET plate_details = $2 \
             WHERE file_key = $1 AND plate_details IS NULL",
        )
        .bind(key)
        .bind(sqlx::types::Json(&meta.plates))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        tracing::info!(archive = id, "plate details read from the stored file");
        Ok(meta.plates)
    }

    /// Inspects a stored 3MF (spooled to a temporary file: the check needs to seek).
    async fn read_stored(&self, key: &str) -> Result<ThreeMf, ErrorBody> {
        let size = self
            .storage
            .size(key)
            .await
            .map_err(|e| storage_down(describe(&e)))?;
        let spool = tempfile::NamedTempFile::new_in(&self.work_dir)
            .map_err(|e| storage_down(e.to_string()))?;
        let mut file =
            tokio::fs::File::from_std(spool.reopen().map_err(|e| storage_down(e.to_string()))?);
        let mut offset = 0;
        while offset < size {
            let len = READ_BYTES.min(size - offset);
            let bytes = self
                .storage
                .range(key, offset, len)
                .await
                .map_err(|e| storage_down(describe(&e)))?;
            file.write_all(&bytes)
                .await
                .map_err(|e| storage_down(e.to_string()))?;
            offset += len;
        }
        file.flush()
            .await
            .map_err(|e| storage_down(e.to_string()))?;
        let path = spool.path().to_owned();
        let limits = self.limits;
        let inspected = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(path)?;
            Ok::<_, std::io::Error>(threemf::inspect(
                std::io::BufReader::new(file),
                &limits,
                None,
            ))
        })
        .await
        .map_err(|e| storage_down(e.to_string()))?
        .map_err(|e| storage_down(e.to_string()))?;
        inspected
            .map(|(meta, _)| meta)
            .map_err(|e| invalid(format!("The stored file is not a printable 3MF: {e}")))
    }

    /// Gives the archive `id` of a print the queue sent the stored file of library archive
    /// `source` (printed plate `plate`). Runs in the caller's transaction, under the object's
    /// lock, so a deletion of the library archive cannot remove the file meanwhile. `Err` with a
    /// reason when the library file is gone.
    pub async fn reuse_library_file(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        id: i64,
        source: i64,
        plate: Option<u32>,
    ) -> Result<Result<(), String>, sqlx::Error> {
        let row: Option<FileRow> = sqlx::query_as(
            "SELECT name, filename, file_key, file_size, file_sha256, thumbnail_key, \
               plate_details, file_error FROM archive.archives WHERE id = $1",
        )
        .bind(source)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(format!(
                "library archive {source} was deleted before the print's archive could use its file"
            )));
        };
        let (Some(key), Some(size), Some(sha256)) = (row.file_key, row.file_size, row.file_sha256)
        else {
            return Ok(Err(format!("library archive {source} has no file")));
        };
        db::lock_object(tx, &key).await?;
        let plates = match row.plate_details {
            Some(plates) => plates.0,
            // A plan read them before the dispatch; a row without them is older than that.
            None => match self.read_stored(&key).await {
                Ok(meta) => meta.plates,
                Err(err) => return Ok(Err(err.detail)),
            },
        };
        match self.storage.exists(&key).await {
            Ok(true) => {}
            Ok(false) => return Ok(Err("the library file was deleted".into())),
            Err(err) => {
                return Err(sqlx::Error::Protocol(format!(
                    "storage unavailable: {}",
                    describe(&err)
                )));
            }
        }
        let plate = plate.or_else(|| plates.first().map(|p| p.index));
        let thumbnail_key = match plate {
            Some(plate) => {
                let key = Storage::thumbnail_key(&sha256, plate);
                match self.storage.exists(&key).await {
                    Ok(true) => Some(key),
                    _ => row.thumbnail_key.filter(|_| plates.len() == 1),
                }
            }
            None => None,
        };
        let stored = Stored {
            sha256,
            size: size.max(0) as u64,
            file_key: key,
            thumbnail_key,
            meta: ThreeMf {
                title: None,
                plates,
            },
            plate,
        };
        db::set_file(tx, id, &stored).await?;
        sqlx::query(
            "UPDATE archive.archives SET name = $2, filename = $3, source_archive_id = $4, \
               filament_used = CASE status WHEN 'printing' THEN NULL \
                   WHEN 'success' THEN weight \
                   ELSE weight * coalesce(progress, 0) / 100.0 END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(&row.name)
        .bind(&row.filename)
        .bind(source)
        .execute(&mut **tx)
        .await?;
        Ok(Ok(()))
    }
}

fn plate_plan(plate: &Plate) -> PlatePlan {
    PlatePlan {
        index: plate.index,
        printer_model_id: plate.printer_model_id.clone(),
        prediction_secs: plate.prediction_secs,
        weight_g: plate.weight_g,
        filaments: plate
            .filaments
            .iter()
            .map(|f| PlateFilament {
                id: f.id,
                kind: f.kind.clone(),
                color: f.color.clone(),
                grams: f.used_g,
            })
            .collect(),
    }
}

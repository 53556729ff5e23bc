//! The archive's service endpoints: archives (list, get, update, delete, files, uploads) and
//! projects.

use printyard_contracts::archive::{
    Archive, ArchiveId, ArchivePage, ArchivePatch, ChunkRequest, Deleted, FileKind, FileLocation,
    FileRequest, ImportUpload, ListArchives, MAX_CHUNK_BYTES, NewProject, Project, ProjectList,
    ProjectPatch, UpdateArchive, UpdateProject, is_hex_color,
};
use printyard_contracts::rpc::Empty;
use printyard_contracts::{ErrorBody, ErrorCode};
use sqlx::PgPool;

use crate::db::{self, not_found, unavailable};
use crate::intake::{Intake, IntakeError, PlateOf};
use crate::print_data::file_stem;
use crate::storage::Storage;

/// The most archives one page may hold.
pub const MAX_PAGE: i64 = 1000;

#[derive(Clone)]
pub struct Library {
    pub pool: PgPool,
    pub intake: Intake,
}

fn validation(detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::ValidationError, detail)
}

fn storage_down(err: impl std::fmt::Display) -> ErrorBody {
    tracing::error!(error = %err, "archive storage failed");
    ErrorBody::new(
        ErrorCode::ServiceUnavailable,
        "Archive storage is unavailable, try again shortly",
    )
}

impl Library {
    pub async fn list(&self, request: ListArchives) -> Result<ArchivePage, ErrorBody> {
        if !(1..=MAX_PAGE).contains(&request.limit) {
            return Err(validation(format!("limit must be 1 to {MAX_PAGE}")));
        }
        let (total, total_exact, archives) = db::list(&self.pool, &request).await?;
        Ok(ArchivePage {
            total,
            total_exact,
            archives,
        })
    }

    pub async fn get(&self, request: ArchiveId) -> Result<Archive, ErrorBody> {
        self.fetch(request.id).await
    }

    async fn fetch(&self, id: i64) -> Result<Archive, ErrorBody> {
        db::get(&self.pool, id)
            .await
            .map_err(unavailable)?
            .map(db::ArchiveRow::into_view)
            .ok_or_else(|| not_found("Archive", id))
    }

    pub async fn update(&self, request: UpdateArchive) -> Result<Archive, ErrorBody> {
        let ArchivePatch {
            name,
            notes,
            tags,
            project_id,
        } = request.patch;
        if let Some(name) = &name
            && (name.trim().is_empty() || name.chars().count() > 255 || name.contains('\0'))
        {
            return Err(validation("name must be 1 to 255 characters"));
        }
        if notes
            .as_ref()
            .is_some_and(|n| n.chars().count() > 10_000 || n.contains('\0'))
        {
            return Err(validation("notes may hold at most 10000 characters"));
        }
        if let Some(tags) = &tags
            && (tags.len() > 50
                || tags
                    .iter()
                    .any(|t| t.chars().count() > 64 || t.contains('\0')))
        {
            return Err(validation("tags: at most 50, each at most 64 characters"));
        }
        if let Some(Some(project)) = project_id {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM archive.projects WHERE id = $1)")
                    .bind(project)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(unavailable)?;
            if !exists {
                return Err(not_found("Project", project));
            }
        }
        let updated = sqlx::query(
            "UPDATE archive.archives SET name = coalesce($2, name), notes = coalesce($3, notes), \
               tags = coalesce($4, tags), \
               project_id = CASE WHEN $5 THEN $6 ELSE project_id END \
             WHERE id = $1",
        )
        .bind(request.id)
        .bind(name.map(|n| n.trim().to_owned()))
        .bind(notes)
        .bind(tags.map(|t| {
            t.into_iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        }))
        .bind(project_id.is_some())
        .bind(project_id.flatten())
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            // The project was deleted between the check and the update.
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                ErrorBody::new(ErrorCode::NotFound, "The project does not exist")
            }
            _ => unavailable(e),
        })?;
        if updated.rows_affected() == 0 {
            return Err(not_found("Archive", request.id));
        }
        self.fetch(request.id).await
    }

    /// Deletes an archive, and its stored objects unless another archive uses them.
    pub async fn delete(&self, ArchiveId { id }: ArchiveId) -> Result<Deleted, ErrorBody> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT file_key, thumbnail_key FROM archive.archives WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some((file_key, thumbnail_key)) = row else {
            return Err(not_found("Archive", id));
        };
        if let Some(key) = &file_key {
            db::lock_object(&mut tx, key).await.map_err(unavailable)?;
        }
        sqlx::query("DELETE FROM archive.archives WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        for key in [file_key, thumbnail_key].into_iter().flatten() {
            let column_in_use: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM archive.archives \
                   WHERE file_key = $1 OR thumbnail_key = $1)",
            )
            .bind(&key)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
            if !column_in_use {
                // Under the object's lock: an import of the same file waits for this
                // transaction and then finds the object gone (and stores it again).
                self.intake
                    .storage
                    .delete(&key)
                    .await
                    .map_err(storage_down)?;
            }
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Deleted { deleted: true })
    }

    /// Turns an uploaded file into a library archive (`uploaded`).
    pub async fn import(&self, upload: ImportUpload) -> Result<Archive, ErrorBody> {
        let filename = sanitize_filename(&upload.filename);
        let stored = match self
            .intake
            .take(None, None, &upload.object, PlateOf::Upload)
            .await
        {
            Ok(stored) => stored,
            Err(err) => {
                self.intake.discard(None, None, &upload.object).await;
                return Err(match err {
                    IntakeError::Invalid(reason) => ErrorBody::new(
                        ErrorCode::InvalidFile,
                        format!("Not a printable 3MF: {reason}"),
                    ),
                    IntakeError::TooLarge { max } => ErrorBody::new(
                        ErrorCode::PayloadTooLarge,
                        format!("The file is larger than {max} bytes"),
                    ),
                    IntakeError::Missing(_) => {
                        ErrorBody::new(ErrorCode::BadRequest, "The upload did not arrive")
                    }
                    IntakeError::Unavailable(reason) => storage_down(reason),
                });
            }
        };
        let name = stored
            .meta
            .title
            .clone()
            .unwrap_or_else(|| file_stem(&filename));
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        db::lock_object(&mut tx, &stored.file_key)
            .await
            .map_err(unavailable)?;
        // A delete of the last archive using this file may have removed it meanwhile.
        if !self
            .intake
            .storage
            .exists(&stored.file_key)
            .await
            .map_err(storage_down)?
        {
            return Err(storage_down("the stored file vanished during the upload"));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO archive.archives (name, filename, status) \
             VALUES ($1, $2, 'uploaded') RETURNING id",
        )
        .bind(name)
        .bind(&filename)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        db::set_file(&mut tx, id, &stored)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        self.intake.discard(None, None, &upload.object).await;
        self.fetch(id).await
    }

    pub async fn file(&self, request: FileRequest) -> Result<FileLocation, ErrorBody> {
        let row: Option<FileColumns> = sqlx::query_as(
            "SELECT filename, file_key, thumbnail_key, file_size FROM archive.archives \
                 WHERE id = $1",
        )
        .bind(request.id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let Some(FileColumns {
            filename,
            file_key,
            thumbnail_key,
            file_size: size,
        }) = row
        else {
            return Err(not_found("Archive", request.id));
        };
        let missing = |what: &str| {
            ErrorBody::new(
                ErrorCode::NotFound,
                format!("Archive {} has no {what}", request.id),
            )
        };
        match request.kind {
            FileKind::ThreeMf => {
                let key = file_key.ok_or_else(|| missing("3MF file"))?;
                let size = match size {
                    Some(size) => size as u64,
                    None => self.intake.storage.size(&key).await.map_err(storage_down)?,
                };
                Ok(FileLocation {
                    key,
                    size,
                    filename,
                })
            }
            FileKind::Thumbnail => {
                let key = thumbnail_key.ok_or_else(|| missing("thumbnail"))?;
                let size = self.intake.storage.size(&key).await.map_err(storage_down)?;
                Ok(FileLocation {
                    key,
                    size,
                    filename: format!("{}.png", file_stem(&filename)),
                })
            }
        }
    }

    pub async fn chunk(&self, request: ChunkRequest) -> Result<bytes::Bytes, ErrorBody> {
        if !Storage::is_our_key(&request.key) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "Not an archive object",
            ));
        }
        if request.len == 0 || request.len > MAX_CHUNK_BYTES {
            return Err(validation(format!(
                "a chunk is 1 to {MAX_CHUNK_BYTES} bytes"
            )));
        }
        self.intake
            .storage
            .range(&request.key, request.offset, request.len)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    ErrorBody::new(ErrorCode::NotFound, "The file is no longer stored")
                }
                other => storage_down(other),
            })
    }

    // ---- projects ----

    pub async fn projects(&self, _: Empty) -> Result<ProjectList, ErrorBody> {
        Ok(ProjectList {
            projects: db::projects(&self.pool, None).await?,
        })
    }

    pub async fn project(&self, ArchiveId { id }: ArchiveId) -> Result<Project, ErrorBody> {
        db::projects(&self.pool, Some(id))
            .await?
            .pop()
            .ok_or_else(|| not_found("Project", id))
    }

    pub async fn create_project(&self, new: NewProject) -> Result<Project, ErrorBody> {
        check_project(
            Some(&new.name),
            new.description.as_deref(),
            new.color.as_deref(),
            new.target_count,
        )?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO archive.projects (name, description, color, target_count) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(new.name.trim())
        .bind(new.description)
        .bind(new.color)
        .bind(new.target_count)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        self.project(ArchiveId { id }).await
    }

    pub async fn update_project(&self, request: UpdateProject) -> Result<Project, ErrorBody> {
        let ProjectPatch {
            name,
            description,
            color,
            target_count,
        } = request.patch;
        check_project(
            name.as_deref(),
            description.clone().flatten().as_deref(),
            color.clone().flatten().as_deref(),
            target_count.flatten(),
        )?;
        let updated = sqlx::query(
            "UPDATE archive.projects SET name = coalesce($2, name), \
               description = CASE WHEN $3 THEN $4 ELSE description END, \
               color = CASE WHEN $5 THEN $6 ELSE color END, \
               target_count = CASE WHEN $7 THEN $8 ELSE target_count END \
             WHERE id = $1",
        )
        .bind(request.id)
        .bind(name.map(|n| n.trim().to_owned()))
        .bind(description.is_some())
        .bind(description.flatten())
        .bind(color.is_some())
        .bind(color.flatten())
        .bind(target_count.is_some())
        .bind(target_count.flatten())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        if updated.rows_affected() == 0 {
            return Err(not_found("Project", request.id));
        }
        self.project(ArchiveId { id: request.id }).await
    }

    /// Deletes a project; its archives stay, unlinked (the foreign key sets them to NULL).
    pub async fn delete_project(&self, ArchiveId { id }: ArchiveId) -> Result<Deleted, ErrorBody> {
        let deleted = sqlx::query("DELETE FROM archive.projects WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        if deleted.rows_affected() == 0 {
            return Err(not_found("Project", id));
        }
        Ok(Deleted { deleted: true })
    }
}

#[derive(sqlx::FromRow)]
struct FileColumns {
    filename: String,
    file_key: Option<String>,
    thumbnail_key: Option<String>,
    file_size: Option<i64>,
}

fn check_project(
    name: Option<&str>,
    description: Option<&str>,
    color: Option<&str>,
    target: Option<i32>,
) -> Result<(), ErrorBody> {
    if let Some(name) = name
        && (name.trim().is_empty() || name.chars().count() > 255 || name.contains('\0'))
    {
        return Err(validation("name must be 1 to 255 characters"));
    }
    if description.is_some_and(|d| d.chars().count() > 10_000 || d.contains('\0')) {
        return Err(validation("description may hold at most 10000 characters"));
    }
    if let Some(color) = color
        && !is_hex_color(color)
    {
        return Err(validation("color must be #RRGGBB"));
    }
    if let Some(target) = target
        && !(1..=1_000_000).contains(&target)
    {
        return Err(validation("target_count must be 1 to 1000000"));
    }
    Ok(())
}

/// The last path component, without control characters, at most 255 characters; a name that
/// is nothing after that becomes `upload.3mf`.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload.3mf".to_owned()
    } else {
        clean.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploaded_names_lose_their_paths() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\models\\cube.3mf"), "cube.3mf");
        assert_eq!(sanitize_filename(".."), "upload.3mf");
        assert_eq!(sanitize_filename("a\u{0}b\n.3mf"), "ab.3mf");
    }
}

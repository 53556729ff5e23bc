//! Files coming into the archive: taken from the NATS transfer bucket, spooled to a local
//! temporary file while their SHA-256 is computed (memory stays flat whatever the size),
//! checked as hostile input, then stored once per content hash with their plate thumbnail.
//!
//! Uploads come through `archive_transfer`; a site's gateways hand over captured files through
//! the site's own bucket (`archive_transfer_<site>`, named in the event), opened on first use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::object_store::ObjectStore as TransferBucket;
use bytes::Bytes;
use printyard_bambu::threemf::{self, Limits, ThreeMf, ThreeMfError};
use printyard_contracts::archive::{TRANSFER_BUCKET, site_transfer_bucket};
use printyard_contracts::farm::Site;
use printyard_contracts::sites::site_domain;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::storage::{Storage, describe};

#[derive(Clone)]
pub struct Intake {
    /// `archive_transfer`: uploads through `api`.
    pub bucket: TransferBucket,
    /// The sites' buckets, opened on first use.
    pub jetstream: async_nats::jetstream::Context,
    pub site_buckets: Arc<Mutex<HashMap<String, TransferBucket>>>,
    pub storage: Storage,
    pub work_dir: PathBuf,
    pub max_bytes: u64,
    pub limits: Limits,
}

/// A stored 3MF and what was read from it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
    pub file_key: String,
    pub thumbnail_key: Option<String>,
    pub meta: ThreeMf,
    /// The plate the metadata describes: the printed one, the first of an upload, `None`
    /// for a print of a file with several plates when the printer did not say which.
    pub plate: Option<u32>,
}

/// Which plate a stored file's archive describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlateOf {
    /// A file uploaded into the library: its first plate (the thumbnail's).
    Upload,
    /// A file a printer printed: the plate it said it printed, else the only sliced one.
    Print(Option<u32>),
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The object is not (or no longer) in the transfer bucket.
    #[error("the file is not in the transfer bucket: {0}")]
    Missing(String),
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("{0}")]
    Invalid(ThreeMfError),
    /// Storage or the bucket failed: worth trying again.
    #[error("storage failed: {0}")]
    Unavailable(String),
}

impl IntakeError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, IntakeError::Unavailable(_))
    }
}

impl Intake {
    /// Takes `object` from the transfer bucket into storage. The object is left in the bucket;
    /// the caller removes it once the archive row is written.
    pub async fn take(
        &self,
        domain: Option<&str>,
        bucket: Option<&str>,
        object: &str,
        plate_of: PlateOf,
    ) -> Result<Stored, IntakeError> {
        let wanted_plate = match plate_of {
            PlateOf::Upload => None,
            PlateOf::Print(plate) => plate,
        };
        let bucket = self.bucket_named(domain, bucket).await?;
        let mut reader = bucket.get(object).await.map_err(|e| {
            use async_nats::jetstream::object_store::GetErrorKind;
            match e.kind() {
                GetErrorKind::NotFound => IntakeError::Missing(object.to_owned()),
                _ => IntakeError::Unavailable(e.to_string()),
            }
        })?;
        let unavailable = |e: std::io::Error| IntakeError::Unavailable(e.to_string());
        let spool = tempfile::NamedTempFile::new_in(&self.work_dir).map_err(unavailable)?;
        let mut file = tokio::fs::File::from_std(spool.reopen().map_err(unavailable)?);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buffer)
                .await
                .map_err(|e| IntakeError::Unavailable(format!("reading the transfer: {e}")))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > self.max_bytes {
                return Err(IntakeError::TooLarge {
                    max: self.max_bytes,
                });
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n]).await.map_err(unavailable)?;
        }
        file.flush().await.map_err(unavailable)?;
        drop(file);
        let sha256 = hex::encode(hasher.finalize());

        let path = spool.path().to_owned();
        let limits = self.limits;
        let inspected = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            Ok::<_, std::io::Error>(threemf::inspect(
                std::io::BufReader::new(file),
                &limits,
                wanted_plate,
            ))
        })
        .await
        .map_err(|e| IntakeError::Unavailable(e.to_string()))?
        .map_err(unavailable)?;
        let (meta, thumbnail) = inspected.map_err(IntakeError::Invalid)?;
        // The thumbnail is of the plate printed, or the first.
        let shown = meta.plate(wanted_plate).map(|p| p.index);
        let plate = match plate_of {
            PlateOf::Upload => shown,
            PlateOf::Print(wanted) => meta.printed_plate(wanted).map(|p| p.index),
        };

        let file_key = Storage::file_key(&sha256);
        let stored_already = self
            .storage
            .exists(&file_key)
            .await
            .map_err(|e| IntakeError::Unavailable(describe(&e)))?;
        if !stored_already {
            self.storage
                .put_file(&file_key, spool.path())
                .await
                .map_err(|e| IntakeError::Unavailable(format!("{e:#}")))?;
        }
        let thumbnail_key = match (thumbnail, shown) {
            (Some(png), Some(plate)) => {
                let key = Storage::thumbnail_key(&sha256, plate);
                self.storage
                    .put_small(&key, Bytes::from(png))
                    .await
                    .map_err(|e| IntakeError::Unavailable(describe(&e)))?;
                Some(key)
            }
            _ => None,
        };
        Ok(Stored {
            sha256,
            size,
            file_key,
            thumbnail_key,
            meta,
            plate,
        })
    }

    /// Removes a transferred object (it is stored, or it was refused for good).
    pub async fn discard(&self, domain: Option<&str>, bucket: Option<&str>, object: &str) {
        let deleted = match self.bucket_named(domain, bucket).await {
            Ok(bucket) => bucket.delete(object).await.map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = deleted {
            tracing::debug!(object, error = %err, "transfer object not deleted (it expires)");
        }
    }

    /// The transfer bucket an event names: `archive_transfer` when it names none (uploads,
    /// and gateways of the version before sites had buckets), else a site's, in the central
    /// JetStream or, when `domain` is given, in the site's own (its leaf node's, which must be
    /// that site's domain). Any other name is refused: an event does not get to choose what
    /// the archive reads.
    async fn bucket_named(
        &self,
        domain: Option<&str>,
        name: Option<&str>,
    ) -> Result<TransferBucket, IntakeError> {
        let Some(name) = name.filter(|n| *n != TRANSFER_BUCKET) else {
            return Ok(self.bucket.clone());
        };
        let site = name
            .strip_prefix(TRANSFER_BUCKET)
            .and_then(|rest| rest.strip_prefix('_'))
            .and_then(|site| Site::parse(site).ok())
            .ok_or_else(|| IntakeError::Missing(format!("{name} is not a transfer bucket")))?;
        if domain.is_some_and(|d| d != site_domain(&site)) {
            return Err(IntakeError::Missing(format!(
                "{name} is not kept in domain {}",
                domain.unwrap_or_default()
            )));
        }
        let key = format!("{}/{name}", domain.unwrap_or_default());
        if let Some(bucket) = self
            .site_buckets
            .lock()
            .ok()
            .and_then(|b| b.get(&key).cloned())
        {
            return Ok(bucket);
        }
        let jetstream = match domain {
            Some(domain) => async_nats::jetstream::with_domain(self.jetstream.client(), domain),
            None => self.jetstream.clone(),
        };
        let bucket = jetstream
            .get_object_store(site_transfer_bucket(&site))
            .await
            .map_err(|e| IntakeError::Unavailable(format!("opening {name}: {e}")))?;
        if let Ok(mut buckets) = self.site_buckets.lock() {
            buckets.insert(key, bucket.clone());
        }
        Ok(bucket)
    }
}

//! Archive files in object storage (`object_store`: a directory or an S3 bucket).
//!
//! Keys are made here, never from user input: `3mf/<sha256>.3mf` (content addressed, so a
//! reprint of the same file is stored once) and `thumbnails/<sha256>/plate_<n>.png`.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::config::ArchiveConfig;

/// Part size of multipart uploads (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight at once: memory stays at a few parts whatever the file size.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// `file:///…` or `s3://bucket`, for logs (no credentials).
    pub description: String,
}

impl Storage {
    pub fn open(config: &ArchiveConfig) -> anyhow::Result<Self> {
        if let Some(bucket) = config.store.strip_prefix("s3://") {
            let s3 = &config.s3;
            let mut builder = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket.trim_end_matches('/'))
                .with_region(&s3.region)
                // Client options first: they replace the whole set, `allow_http` included.
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(5))
                        .with_timeout(Duration::from_secs(60)),
                )
                .with_allow_http(s3.allow_http)
                .with_retry(object_store::RetryConfig {
                    max_retries: 5,
                    retry_timeout: Duration::from_secs(60),
                    ..Default::default()
                });
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(id) = &s3.access_key_id {
                builder = builder.with_access_key_id(id);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret.expose());
            }
            let store = builder
                .build()
                .map_err(|e| anyhow::anyhow!("opening S3 bucket {bucket}: {e}"))?;
            return Ok(Self {
                store: Arc::new(store),
                description: format!("s3://{bucket}"),
            });
        }
        let dir = config
            .store
            .strip_prefix("file://")
            .unwrap_or(&config.store);
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating the archive directory {dir}: {e}"))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| anyhow::anyhow!("opening the archive directory {dir}: {e}"))?;
        Ok(Self {
            store: Arc::new(store),
            description: format!("file://{dir}"),
        })
    }

    pub fn file_key(sha256: &str) -> String {
        format!("3mf/{sha256}.3mf")
    }

    pub fn thumbnail_key(sha256: &str, plate: u32) -> String {
        format!("thumbnails/{sha256}/plate_{plate}.png")
    }

    /// Whether `key` is one this module makes (a request for anything else is refused).
    pub fn is_our_key(key: &str) -> bool {
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(rest) = key.strip_prefix("3mf/") {
            return rest.strip_suffix(".3mf").is_some_and(hex);
        }
        if let Some(rest) = key.strip_prefix("thumbnails/")
            && let Some((sha, plate)) = rest.split_once("/plate_")
        {
            return hex(sha)
                && plate
                    .strip_suffix(".png")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        }
        false
    }

    pub async fn exists(&self, key: &str) -> object_store::Result<bool> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Stores a local file under `key` in parts, a few in flight at a time.
    pub async fn put_file(&self, key: &str, file: &FsPath) -> anyhow::Result<()> {
        let upload = self.store.put_multipart(&Path::from(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut source = tokio::fs::File::open(file).await?;
        let mut buffer = vec![0u8; 256 * 1024];
        let written = async {
            loop {
                let n = source.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(&buffer[..n]);
            }
            anyhow::Ok(())
        }
        .await;
        match written {
            Ok(()) => {
                writer.finish().await?;
                Ok(())
            }
            Err(err) => {
                let _ = writer.abort().await;
                Err(err)
            }
        }
    }

    pub async fn put_small(&self, key: &str, bytes: Bytes) -> object_store::Result<()> {
        self.store.put(&Path::from(key), bytes.into()).await?;
        Ok(())
    }

    pub async fn size(&self, key: &str) -> object_store::Result<u64> {
        Ok(self.store.head(&Path::from(key)).await?.size)
    }

    pub async fn range(&self, key: &str, offset: u64, len: u64) -> object_store::Result<Bytes> {
        self.store
            .get_range(&Path::from(key), offset..offset + len)
            .await
    }

    /// Deletes `key`; a key already gone is fine.
    pub async fn delete(&self, key: &str) -> object_store::Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// An error with its causes (`a: b: c`), for logs: object_store's own message often hides the
/// cause (a refused connection, a TLS failure) in its source chain.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_this_module_makes_are_ours() {
        let sha = "a".repeat(64);
        assert!(Storage::is_our_key(&Storage::file_key(&sha)));
        assert!(Storage::is_our_key(&Storage::thumbnail_key(&sha, 2)));
        for bad in [
            "3mf/../../etc/passwd",
            "/etc/passwd",
            &format!("3mf/{sha}.3mf/.."),
            &format!("thumbnails/{sha}/plate_.png"),
            &format!("thumbnails/{sha}/plate_1.png/x"),
            "3mf/short.3mf",
        ] {
            assert!(!Storage::is_our_key(bad), "{bad}");
        }
    }
}

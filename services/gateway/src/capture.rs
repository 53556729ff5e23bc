//! Fetching the 3MF of a print that just started, for the archive.
//!
//! The file is read from the printer by FTPS (the candidate names of the protocol notes,
//! retried for `gateway.capture_window_secs`: X1 printers write it some seconds after the
//! print starts) and streamed into the NATS transfer bucket in chunks; then a `print_file`
//! event tells `archive` where it is, or why there is none. A site needs nothing but NATS.
//! Captures run beside the MQTT session (never blocking status), a few at a time.

use std::sync::Arc;
use std::time::Duration;

use printyard_bambu::ftps::{self, FTPS_PORT, FtpsError};
use printyard_bambu::mqtt::AccessCode;
use printyard_bambu::tls::{TrustMode, client_config};
use printyard_contracts::farm::{EventKind, PrinterRecord};
use printyard_service::backoff::Backoff;
use tokio::io::AsyncReadExt;

use crate::outbox::farm_event;
use crate::settings::Settings;
use crate::store::FarmStore;
use crate::tracker::CaptureSpec;

/// What is needed to fetch one print's file.
pub struct CaptureJob {
    pub record: PrinterRecord,
    pub trust: TrustMode,
    /// Which print, and what the printer said of its file.
    pub spec: CaptureSpec,
    /// Where the printer's events go (the file's comes after its print's start).
    pub events: crate::outbox::EventOutbox,
}

/// Fetches a print's 3MF when a slot is free, then publishes the `print_file` event (with the
/// object, or the reason). A capture still waiting for its slot when the
/// printer is `released` (deleted, handed over) is dropped: the next holder resumes it while the
/// print runs; one under way finishes.
pub async fn run(
    job: CaptureJob,
    store: Arc<FarmStore>,
    settings: Arc<Settings>,
    released: tokio_util::sync::CancellationToken,
) {
    let limits = &settings.capture;
    let slot = tokio::select! {
        slot = limits.slots.acquire() => slot,
        _ = released.cancelled() => return,
    };
    let Ok(_slot) = slot else {
        return;
    };
    let spec = &job.spec;
    let object = format!("capture/{}/{}", job.record.id, spec.print_key);
    let started = std::time::Instant::now();
    let outcome = fetch_within_window(&job, &store, &settings, &object).await;
    let label = if outcome.is_ok() { "stored" } else { "failed" };
    crate::observe::capture_done(label, started.elapsed());
    let data = match &outcome {
        Ok((filename, size)) => serde_json::json!({
            "print": spec.print_key,
            "printer_name": job.record.name,
            "object": object,
            "bucket": store.transfer_bucket,
            "domain": store.transfer_domain,
            "filename": filename,
            "size": size,
            "plate": spec.plate,
            "resumed": spec.resumed,
            "job_name": spec.subtask_name,
            "task_id": spec.task_id,
        }),
        Err(reason) => {
            tracing::warn!(printer = job.record.id, reason, "3MF not captured");
            serde_json::json!({
                "print": spec.print_key,
                "printer_name": job.record.name,
                "error": reason,
                "plate": spec.plate,
                "resumed": spec.resumed,
                "job_name": spec.subtask_name,
                "task_id": spec.task_id,
            })
        }
    };
    job.events.push(farm_event(
        &job.record,
        EventKind::PrintFile,
        &format!("{}.", spec.print_key),
        data,
    ));
}

/// Tries until the file is found and stored or the window is over; returns the file name on
/// the printer and its size.
async fn fetch_within_window(
    job: &CaptureJob,
    store: &FarmStore,
    settings: &Settings,
    object: &str,
) -> Result<(String, u64), String> {
    let Some(code) = AccessCode::parse(&job.record.access_code) else {
        return Err("the access code is not 8 letters or digits".into());
    };
    let spec = &job.spec;
    let candidates = ftps::candidates(spec.subtask_name.as_deref(), spec.gcode_file.as_deref());
    let give_up = tokio::time::Instant::now() + settings.capture.window;
    let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(10));
    let mut last_error;
    loop {
        match fetch_once(job, store, settings, &code, &candidates, object).await {
            Ok(found) => return Ok(found),
            Err(Fetch::TooLarge(size)) => {
                return Err(format!(
                    "the file is {size} bytes, over the {} byte limit",
                    settings.capture.max_bytes
                ));
            }
            Err(Fetch::Failed(reason)) => last_error = reason,
        }
        let wait = backoff.next_delay();
        if tokio::time::Instant::now() + wait >= give_up {
            return Err(format!(
                "could not fetch the 3MF from the printer within {} s: {last_error}",
                settings.capture.window.as_secs()
            ));
        }
        tokio::time::sleep(wait).await;
    }
}

enum Fetch {
    Failed(String),
    TooLarge(u64),
}

impl From<FtpsError> for Fetch {
    fn from(err: FtpsError) -> Self {
        Fetch::Failed(err.to_string())
    }
}

async fn fetch_once(
    job: &CaptureJob,
    store: &FarmStore,
    settings: &Settings,
    code: &AccessCode,
    candidates: &[String],
    object: &str,
) -> Result<(String, u64), Fetch> {
    let (tls, _) = client_config(
        &job.record.serial,
        settings.anchors.clone(),
        job.trust.clone(),
    )
    .map_err(|e| Fetch::Failed(e.to_string()))?;
    let mut ftp = ftps::connect(
        &job.record.host,
        FTPS_PORT,
        code,
        tls,
        Duration::from_secs(15),
    )
    .await?;
    let job_name = job.spec.subtask_name.as_deref();
    let found = tokio::time::timeout(
        Duration::from_secs(30),
        ftps::locate(&mut ftp, candidates, job_name),
    )
    .await
    .map_err(|_| Fetch::Failed("listing the printer's storage timed out".into()))??;
    let Some((path, size)) = found else {
        let _ = ftp.quit().await;
        return Err(Fetch::Failed(format!(
            "the file of the print ({}) is not on the printer (it prints from its own memory, \
             or has not written it yet)",
            job_name.unwrap_or("unnamed")
        )));
    };
    if size > settings.capture.max_bytes {
        let _ = ftp.quit().await;
        return Err(Fetch::TooLarge(size));
    }
    // Printers serve about 75–150 KB/s: allow 32 KB/s plus a minute.
    let deadline = Duration::from_secs(60 + size / (32 * 1024));
    let stored = tokio::time::timeout(deadline, async {
        let stream = ftp
            .retr_as_stream(&path)
            .await
            .map_err(|e| Fetch::Failed(format!("reading {path}: {e}")))?;
        let mut limited = stream.take(settings.capture.max_bytes + 1);
        let info = store
            .transfer
            .put(object, &mut limited)
            .await
            .map_err(|e| Fetch::Failed(format!("storing into the transfer bucket: {e}")))?;
        limited
            .into_inner()
            .finish()
            .await
            .map_err(|e| Fetch::Failed(format!("the transfer did not complete: {e}")))?;
        Ok::<_, Fetch>(info.size as u64)
    })
    .await;
    let _ = ftp.quit().await;
    let stored = match stored {
        Ok(result) => result?,
        Err(_) => {
            let _ = store.transfer.delete(object).await;
            return Err(Fetch::Failed(format!(
                "the download took longer than {} s",
                deadline.as_secs()
            )));
        }
    };
    if stored != size {
        let _ = store.transfer.delete(object).await;
        return Err(Fetch::Failed(format!(
            "the download was cut short ({stored} of {size} bytes)"
        )));
    }
    let filename = path.rsplit('/').next().unwrap_or(&path).to_owned();
    Ok((filename, size))
}

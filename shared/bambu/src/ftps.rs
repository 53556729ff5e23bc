//! The printer's storage over FTP with implicit TLS (port 990): log in, find the 3MF of the
//! current print, and read it as a stream.
//!
//! The data connections resume the control connection's TLS session (vsFTPd on the printers
//! refuses them otherwise, `522`): the one `Arc<ClientConfig>` given here is used for both, so
//! rustls offers the session it has cached.

use std::sync::Arc;
use std::time::Duration;

use suppaftp::tokio::{
    AsyncRustlsConnector, AsyncRustlsStream, ImplAsyncFtpStream, TokioTlsStream,
};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Status};

use crate::mqtt::AccessCode;

/// The printers' FTPS port.
pub const FTPS_PORT: u16 = 990;

pub type Ftps = ImplAsyncFtpStream<AsyncRustlsStream>;
pub use suppaftp::tokio::TransferStream;

#[derive(Debug, thiserror::Error)]
pub enum FtpsError {
    #[error("FTPS connection failed: {0}")]
    Connect(String),
    #[error("the printer refused the FTPS login (wrong access code?)")]
    Login,
    #[error("FTPS: {0}")]
    Protocol(String),
    #[error("FTPS did not answer within {0:?}")]
    Timeout(Duration),
}

impl From<FtpError> for FtpsError {
    fn from(err: FtpError) -> Self {
        FtpsError::Protocol(err.to_string())
    }
}

/// Connects, logs in as `bblp`, protects the data channel and selects binary transfers.
pub async fn connect(
    host: &str,
    port: u16,
    code: &AccessCode,
    tls: Arc<rustls::ClientConfig>,
    deadline: Duration,
) -> Result<Ftps, FtpsError> {
    let attempt = async {
        let connector = AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(tls));
        // The name only feeds SNI: the verifier checks the certificate against the serial.
        let mut ftp = Ftps::connect_secure_implicit((host, port), connector, host)
            .await
            .map_err(|e| FtpsError::Connect(e.to_string()))?;
        ftp.login("bblp", code.expose())
            .await
            .map_err(|_| FtpsError::Login)?;
        ftp.custom_command("PBSZ 0", &[Status::CommandOk]).await?;
        ftp.custom_command("PROT P", &[Status::CommandOk]).await?;
        ftp.transfer_type(FileType::Binary).await?;
        Ok(ftp)
    };
    tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| FtpsError::Timeout(deadline))?
}

/// The places the 3MF of the current print may be, most likely first: the job name as
/// `.gcode.3mf` and `.3mf`, then the reported file, in `/cache/` then `/`. Names with control
/// characters are left out (they would break the FTP command line).
pub fn candidates(subtask_name: Option<&str>, gcode_file: Option<&str>) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(job) = subtask_name.map(str::trim).filter(|s| !s.is_empty()) {
        names.push(format!("{job}.gcode.3mf"));
        names.push(format!("{job}.3mf"));
    }
    let mut paths = Vec::new();
    if let Some(file) = gcode_file.map(str::trim).filter(|s| !s.is_empty()) {
        let bare = file
            .strip_prefix("ftp://")
            .or_else(|| file.strip_prefix("file:///sdcard"))
            .unwrap_or(file);
        if bare.ends_with(".3mf") {
            if bare.starts_with('/') {
                paths.push(bare.to_owned());
            }
            let name = bare.rsplit('/').next().unwrap_or(bare);
            names.push(name.to_owned());
        }
    }
    for dir in ["/cache/", "/"] {
        for name in &names {
            paths.push(format!("{dir}{name}"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| !p.chars().any(char::is_control) && seen.insert(p.clone()));
    paths
}

/// The first candidate the printer has, with its size; else a `.3mf` in `/cache` or `/` whose
/// name is the job's (`job_name`) but for case, spaces and the `.gcode` part (the newest of
/// them). Never another file: a print whose file is not on the printer (an X1 printing from
/// its internal memory) has none, rather than the file of another print.
///
/// Generic over the control connection's stream so that the fuzz target drives it over plain
/// TCP against scripted replies; the gateway uses [`Ftps`].
pub async fn locate<T: TokioTlsStream + Send>(
    ftp: &mut ImplAsyncFtpStream<T>,
    candidates: &[String],
    job_name: Option<&str>,
) -> Result<Option<(String, u64)>, FtpsError> {
    for path in candidates {
        match ftp.size(path).await {
            Ok(size) => return Ok(Some((path.clone(), size as u64))),
            Err(FtpError::UnexpectedResponse(_)) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    let Some(job) = job_name.filter(|j| !same_name_key(j).is_empty()) else {
        return Ok(None);
    };
    let mut newest: Option<Listed> = None;
    for dir in ["/cache", "/"] {
        let lines = match ftp.list(Some(dir)).await {
            Ok(lines) => lines,
            Err(FtpError::UnexpectedResponse(_)) => continue,
            Err(err) => return Err(err.into()),
        };
        if let Some(found) = newest_listed(dir, lines.iter().map(String::as_str), job)
            && newest.as_ref().is_none_or(|n| found.modified > n.modified)
        {
            newest = Some(found);
        }
    }
    Ok(newest.map(|n| (n.path, n.size)))
}

/// A 3MF found in a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub modified: chrono::DateTime<chrono::Utc>,
    /// `dir/name`.
    pub path: String,
    pub size: u64,
}

/// The newest file of `lines` (a `LIST` of `dir`, in the printers' Unix format) that is the
/// 3MF of job `job_name` (see [`locate`]). Lines that do not parse are skipped: a listing is
/// the printer's text, not ours.
pub fn newest_listed<'a>(
    dir: &str,
    lines: impl IntoIterator<Item = &'a str>,
    job_name: &str,
) -> Option<Listed> {
    let job = same_name_key(job_name);
    if job.is_empty() {
        return None;
    }
    let mut newest: Option<Listed> = None;
    for line in lines {
        let Ok(entry) = suppaftp::list::File::try_from(line) else {
            continue;
        };
        if !entry.is_file() || !is_file_of(entry.name(), &job) {
            continue;
        }
        let modified: chrono::DateTime<chrono::Utc> = entry.modified().into();
        if newest.as_ref().is_none_or(|n| modified > n.modified) {
            newest = Some(Listed {
                modified,
                path: format!("{}/{}", dir.trim_end_matches('/'), entry.name()),
                size: entry.size() as u64,
            });
        }
    }
    newest
}

/// A name compared loosely: lower case, with spaces and underscores alike.
fn same_name_key(name: &str) -> String {
    name.trim().to_lowercase().replace(' ', "_")
}

/// Whether `file` (a name in a listing) is the 3MF of job `job` (a [`same_name_key`]). The
/// listed name is not trimmed: a space it ends with is part of the name (`cube.3mf ` is not a
/// 3MF), and the path built from it must be the file's own.
fn is_file_of(file: &str, job: &str) -> bool {
    let file = file.to_lowercase().replace(' ', "_");
    let Some(stem) = file.strip_suffix(".3mf") else {
        return false;
    };
    stem.strip_suffix(".gcode").unwrap_or(stem) == job
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_protocol_notes_order() {
        assert_eq!(
            candidates(Some("cube"), Some("cube.gcode.3mf")),
            [
                "/cache/cube.gcode.3mf",
                "/cache/cube.3mf",
                "/cube.gcode.3mf",
                "/cube.3mf"
            ]
        );
        assert_eq!(
            candidates(None, Some("ftp:///models/gear.3mf")),
            ["/models/gear.3mf", "/cache/gear.3mf", "/gear.3mf"]
        );
        // X1: `gcode_file` points into internal memory; only the job name helps.
        assert_eq!(
            candidates(Some("gear"), Some("/data/Metadata/plate_1.gcode")),
            [
                "/cache/gear.gcode.3mf",
                "/cache/gear.3mf",
                "/gear.gcode.3mf",
                "/gear.3mf"
            ]
        );
        assert!(candidates(Some("a\r\nDELE x"), None).is_empty());
    }

    #[test]
    fn the_newest_listed_file_of_the_job_is_chosen() {
        let lines = [
            "-rw-rw-rw-   1 root  root    1000 Jan  3  2026 my_cube.3mf",
            "-rw-rw-rw-   1 root  root    2000 Mar  4  2026 My Cube.gcode.3mf",
            "drwxrwxrwx   1 root  root       0 Mar  5  2026 my_cube.3mf",
            "-rw-rw-rw-   1 root  root    3000 Mar  6  2026 other.3mf",
            "not a listing line",
        ];
        let found = newest_listed("/cache/", lines, "my cube").unwrap();
        assert_eq!(found.path, "/cache/My Cube.gcode.3mf");
        assert_eq!(found.size, 2000);
        assert_eq!(newest_listed("/", lines, "  "), None);
        // Found by the `ftps_listing` fuzz target: a listed name ending in a space matched (the
        // name was trimmed) and gave a path that is not a 3MF.
        let spaced = ["-rw-rw-rw-   1 root  root    1000 Dec  1 10:00 cube.gcode.3mf "];
        assert_eq!(newest_listed("/cache", spaced, "cube"), None);
        assert_eq!(newest_listed("/", lines, "gear"), None);
    }

    #[test]
    fn a_listed_file_is_a_jobs_only_by_its_name() {
        let job = same_name_key("My Cube");
        assert!(is_file_of("my_cube.gcode.3mf", &job));
        assert!(is_file_of("My Cube.3mf", &job));
        assert!(!is_file_of("my_cube-pyq2.gcode.3mf", &job), "another job");
        assert!(!is_file_of("my_cube.gcode", &job), "not a 3MF");
        assert!(!is_file_of(
            "x1c-2plates-pyq2.gcode.3mf",
            &same_name_key("manual")
        ));
    }
}

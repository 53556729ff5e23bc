//! What `api` (and the gateway) ask the `archive` service: archives of prints with their 3MF,
//! projects, and the files themselves.
//!
//! Files never travel inside a JSON message. Into the archive they go through the NATS object
//! store bucket [`TRANSFER_BUCKET`] (chunked by the client, so neither side holds a whole file);
//! out of it they come as raw byte ranges from [`FILE_CHUNK`], which `api` pulls a few at a time
//! while it streams the HTTP response.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ServiceName;
use crate::rpc::Endpoint;

/// NATS object store bucket through which files reach `archive`: uploads from `api` (and 3MF
/// files captured by gateways of the version before sites had buckets of their own).
/// `archive` deletes an object once it has stored it.
pub const TRANSFER_BUCKET: &str = "archive_transfer";

/// The object store bucket through which a site's gateways hand 3MF files captured from its
/// printers to `archive` (`archive_transfer_<site>`): a site's credentials reach its own
/// bucket only. The `print_file` event names it (`data.bucket`).
pub fn site_transfer_bucket(site: &crate::site::Site) -> String {
    format!("{TRANSFER_BUCKET}_{site}")
}

/// The largest byte range [`FILE_CHUNK`] answers (under NATS's default 1 MiB payload limit).
pub const MAX_CHUNK_BYTES: u64 = 512 * 1024;

/// How an archive came to be, and how its print ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ArchiveStatus {
    Printing,
    Success,
    Failed,
    Stopped,
    /// Uploaded into the library, not printed (yet).
    Uploaded,
    /// The print ended unseen and nothing tells how (`end_reason` says why): its printer was
    /// deleted while it printed, or showed another print when a gateway held it again.
    Unknown,
}

impl ArchiveStatus {
    pub const ALL: [ArchiveStatus; 6] = [
        ArchiveStatus::Printing,
        ArchiveStatus::Success,
        ArchiveStatus::Failed,
        ArchiveStatus::Stopped,
        ArchiveStatus::Uploaded,
        ArchiveStatus::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveStatus::Printing => "printing",
            ArchiveStatus::Success => "success",
            ArchiveStatus::Failed => "failed",
            ArchiveStatus::Stopped => "stopped",
            ArchiveStatus::Uploaded => "uploaded",
            ArchiveStatus::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<ArchiveStatus> {
        ArchiveStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One filament of the printed plate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FilamentUse {
    /// The 3MF's filament id (1-based; its place in the AMS mapping). `null` on archives
    /// stored before it was kept.
    #[serde(default)]
    pub slot: Option<u32>,
    #[serde(rename = "type")]
    pub kind: String,
    pub color: String,
    /// Grams the slicer planned for the plate.
    pub grams: f64,
    /// What the print took, as the spool inventory recorded at its end (`GET /archives/{id}`
    /// only; `null` before the end, in listings, or without the inventory): the tray it was fed
    /// from, the spool in it, and the grams (the plan's, or its share for a print that did not
    /// finish).
    #[serde(default)]
    pub tray: Option<i32>,
    #[serde(default)]
    pub spool_id: Option<i64>,
    #[serde(default)]
    pub used_g: Option<f64>,
}

/// An archive as the API shows it: the reference's fields, then Printyard's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Archive {
    pub id: i64,
    pub name: String,
    pub filename: String,
    pub printer_id: Option<i64>,
    pub printer_name: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Seconds the print ran (start to end).
    pub duration: Option<i64>,
    pub status: ArchiveStatus,
    /// Grams; for a print that did not finish, the plan scaled by the progress reached.
    pub filament_used: Option<f64>,
    pub filament_type: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Progress reached, percent (for failed and stopped prints).
    pub progress: Option<i32>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub project_id: Option<i64>,
    /// Sliced plates in the file.
    pub plates: Option<i32>,
    /// The plate printed.
    pub plate: Option<i32>,
    /// Predicted print time of the plate, seconds.
    pub print_time_estimate: Option<i64>,
    /// Planned filament weight of the plate, grams.
    pub weight: Option<f64>,
    pub filaments: Vec<FilamentUse>,
    /// The model the file was sliced for (`printer_model_id`: "N1", "BL-P001", …).
    pub printer_model_id: Option<String>,
    /// The 3MF is stored (download at `/archives/{id}/3mf`).
    pub has_file: bool,
    pub file_size: Option<i64>,
    /// SHA-256 of the 3MF, hex.
    pub file_sha256: Option<String>,
    pub has_thumbnail: bool,
    /// Why the 3MF is missing (could not be fetched from the printer, or is not a valid 3MF).
    pub file_error: Option<String>,
    /// The queue job that printed it, for prints the queue sent.
    pub queue_job_id: Option<i64>,
    /// The library archive whose file the queue sent.
    pub source_archive_id: Option<i64>,
    /// How the print's end was learned when no gateway saw it happen (status `unknown`, or an
    /// end read from what the printer showed when it was seen again).
    pub end_reason: Option<String>,
    /// The site of the printer that printed it.
    pub site: Option<String>,
}

/// The filters of `GET /archives` and its export.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveFilter {
    pub printer_id: Option<i64>,
    pub status: Option<ArchiveStatus>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Words, each matched as a prefix, over name, file name, notes, tags and printer name.
    pub search: Option<String>,
    pub project_id: Option<i64>,
    /// Printed at this site.
    #[serde(default)]
    pub site: Option<String>,
    /// Only prints of these printers and the library's uploads (no printer): what a caller
    /// limited to some printers sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer_ids: Option<Vec<i64>>,
}

/// Where a page starts: an offset (the reference's) or after a row of the previous page (the
/// export's keyset walk, which stays fast however deep it goes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageStart {
    Offset(i64),
    After { created_at: DateTime<Utc>, id: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListArchives {
    pub filter: ArchiveFilter,
    pub start: PageStart,
    pub limit: i64,
    /// Count all matches (the list's `total`); the export does not need it.
    pub count_total: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArchivePage {
    /// Archives matching the filters (0 when not counted): exact up to 10,000, beyond that the
    /// database's estimate (then `total_exact` is false).
    pub total: i64,
    pub total_exact: bool,
    pub archives: Vec<Archive>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveId {
    pub id: i64,
}

/// Changes to an archive; absent fields stay as they are, `project_id: null` unlinks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ArchivePatch {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 255,
            pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
        )
    )]
    pub name: Option<String>,
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 10000, pattern = "^[^\\u0000]*$")
    )]
    pub notes: Option<String>,
    /// At most 50 tags of 1 to 64 characters; blank ones are dropped.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<TagInput>>, max_items = 50))]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub project_id: Option<Option<i64>>,
}

/// A tag as a client may send it: a blank one is dropped, not refused.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(max_length = 64, pattern = "^[^\\u0000]*$")]
#[allow(dead_code)]
pub struct TagInput(String);

/// An integer that may be written as a number with a zero fraction (`7.0`), as JSON allows.
pub fn integral<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let Some(value) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    if value.fract() != 0.0 || value < i32::MIN as f64 || value > i32::MAX as f64 {
        return Err(serde::de::Error::custom(format!(
            "expected a whole number, got {value}"
        )));
    }
    Ok(Some(value as i32))
}

fn present_integral<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i32>>, D::Error> {
    integral(d).map(Some)
}

/// A field that is present (maybe `null`) is `Some`; an absent one is `None` (by `default`).
pub fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateArchive {
    pub id: i64,
    pub patch: ArchivePatch,
}

/// A file waiting in [`TRANSFER_BUCKET`] to become a library archive (`uploaded`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportUpload {
    /// The object's name in the transfer bucket.
    pub object: String,
    /// The file name the user gave.
    pub filename: String,
}

/// Which file of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    ThreeMf,
    Thumbnail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRequest {
    pub id: i64,
    pub kind: FileKind,
}

/// Where an archive's file is, to be read with [`FILE_CHUNK`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLocation {
    /// The object key in archive storage.
    pub key: String,
    pub size: u64,
    /// The name to download it as.
    pub filename: String,
}

/// A byte range of a stored object; answered as raw bytes, not JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    pub key: String,
    pub offset: u64,
    pub len: u64,
}

/// A project: archives grouped towards a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    /// `#RRGGBB`.
    pub color: Option<String>,
    pub target_count: Option<i32>,
    pub created_at: DateTime<Utc>,
    /// Archives linked to the project.
    pub archive_count: i64,
    /// Linked archives whose print succeeded.
    pub completed_count: i64,
    /// `completed_count` over `target_count`, percent (capped at 100); `null` without a target.
    pub progress: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 255,
            pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
        )
    )]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(max_length = 10000))]
    pub description: Option<String>,
    #[cfg_attr(feature = "openapi", schema(pattern = "^#[0-9A-Fa-f]{6}$"))]
    pub color: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    #[serde(default, deserialize_with = "integral")]
    pub target_count: Option<i32>,
}

/// Changes to a project; `null` clears description, color and target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 255,
            pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
        )
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 10000))]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = "^#[0-9A-Fa-f]{6}$"))]
    pub color: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_integral")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i32>, minimum = 1, maximum = 1000000))]
    pub target_count: Option<Option<i32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateProject {
    pub id: i64,
    pub patch: ProjectPatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectList {
    pub projects: Vec<Project>,
}

/// What a deletion removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: bool,
}

const fn endpoint<Req, Resp>(name: &'static str) -> Endpoint<Req, Resp> {
    Endpoint::new(ServiceName::Archive, name)
}

pub const LIST: Endpoint<ListArchives, ArchivePage> = endpoint("list");
pub const GET: Endpoint<ArchiveId, Archive> = endpoint("get");
pub const UPDATE: Endpoint<UpdateArchive, Archive> = endpoint("update");
pub const DELETE: Endpoint<ArchiveId, Deleted> = endpoint("delete");
pub const IMPORT: Endpoint<ImportUpload, Archive> = endpoint("import");
pub const FILE: Endpoint<FileRequest, FileLocation> = endpoint("file");
/// Answers raw bytes (see [`ChunkRequest`]); the `()` stands for "not JSON".
pub const FILE_CHUNK: Endpoint<ChunkRequest, ()> = endpoint("file-chunk");
pub const PROJECT_LIST: Endpoint<crate::rpc::Empty, ProjectList> = endpoint("project-list");
pub const PROJECT_GET: Endpoint<ArchiveId, Project> = endpoint("project-get");
pub const PROJECT_CREATE: Endpoint<NewProject, Project> = endpoint("project-create");
pub const PROJECT_UPDATE: Endpoint<UpdateProject, Project> = endpoint("project-update");
pub const PROJECT_DELETE: Endpoint<ArchiveId, Deleted> = endpoint("project-delete");

/// What the queue needs to print a plate of an archive's 3MF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRequest {
    pub archive_id: i64,
    pub plate: u32,
}

/// One filament a plate uses; `id` (1-based) indexes the `ams_mapping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateFilament {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    /// `#RRGGBB` as the slicer wrote it.
    pub color: String,
    pub grams: f64,
}

/// One sliced plate of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatePlan {
    pub index: u32,
    /// The model the plate was sliced for (`printer_model_id`: `N1`, `C12`, `BL-P001`).
    pub printer_model_id: Option<String>,
    pub prediction_secs: Option<u64>,
    pub weight_g: Option<f64>,
    pub filaments: Vec<PlateFilament>,
}

/// An archive's file, ready to be sent to a printer: where it is, its checksum, and the plate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrintPlan {
    pub archive_id: i64,
    pub name: String,
    pub filename: String,
    pub file: FileLocation,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    pub has_thumbnail: bool,
    /// The sliced plates the file has.
    pub plates: Vec<u32>,
    pub plate: PlatePlan,
}

/// Where the API serves an archive's thumbnail.
pub fn thumbnail_path(archive_id: i64) -> String {
    format!("/api/v1/archives/{archive_id}/thumbnail")
}

/// `scheduler`: the file and plate a queue job prints. 404 for an unknown archive, 422 for an
/// archive without a file or without that plate.
pub const PRINT_PLAN: Endpoint<PlanRequest, PrintPlan> = endpoint("print-plan");

/// An archive's facts, as `archive_updated` carries them on `FARM_EVENTS` after every change
/// (statistics are kept from them). `revision` grows with each change: a reader applies only a
/// revision newer than the one it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveFacts {
    pub archive_id: i64,
    pub revision: i64,
    pub status: ArchiveStatus,
    pub name: String,
    pub printer_id: Option<i64>,
    pub printer_name: Option<String>,
    pub site: Option<String>,
    pub project_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Seconds.
    pub duration: Option<i64>,
    /// Grams.
    pub filament_used: Option<f64>,
    pub filament_type: Option<String>,
    pub printer_model_id: Option<String>,
    pub queue_job_id: Option<i64>,
    /// The printed plate's filaments with their planned grams (the spool inventory counts
    /// what each print used from them).
    #[serde(default)]
    pub filaments: Vec<FilamentUse>,
    /// Percent reached, for an ended print.
    #[serde(default)]
    pub progress: Option<i32>,
    /// The AMS mapping the queue sent with the print (one global tray id, or -1, per filament
    /// id); `None` for prints the farm did not send.
    #[serde(default)]
    pub ams_mapping: Option<Vec<i32>>,
}

/// `archive_deleted`: the archive is gone (`revision` is past its last update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveGone {
    pub archive_id: i64,
    pub revision: i64,
}

/// Whether `color` is `#RRGGBB`.
pub fn is_hex_color(color: &str) -> bool {
    color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_tells_null_from_absent() {
        let absent: ArchivePatch = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert_eq!(absent.project_id, None);
        let null: ArchivePatch = serde_json::from_str(r#"{"project_id":null}"#).unwrap();
        assert_eq!(null.project_id, Some(None));
        let set: ArchivePatch = serde_json::from_str(r#"{"project_id":4}"#).unwrap();
        assert_eq!(set.project_id, Some(Some(4)));
        assert!(serde_json::from_str::<ArchivePatch>(r#"{"size":1}"#).is_err());
    }

    #[test]
    fn statuses_and_colors() {
        for s in ArchiveStatus::ALL {
            assert_eq!(ArchiveStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!(is_hex_color("#4caf50"));
        assert!(!is_hex_color("4caf50") && !is_hex_color("#4caf5") && !is_hex_color("#4caf5g"));
    }
}

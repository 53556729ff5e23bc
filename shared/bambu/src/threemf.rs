//! What a farm reads from a Bambu Studio / OrcaSlicer 3MF: its sliced plates (predicted time,
//! weight, filaments, printer model id), its title and the plate thumbnail.
//!
//! Every 3MF is hostile input. [`inspect`] checks the whole central directory before reading
//! anything (entry count, declared sizes, names that climb out with `..` or are absolute) and
//! reads only the few small metadata entries it needs, each through a hard cap, so a ZIP bomb
//! or a lying size header costs at most the caps. Nothing is ever extracted to disk.

use std::io::{Read, Seek};

use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

/// Caps applied while inspecting a file.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries in the ZIP's central directory.
    pub max_entries: usize,
    /// Declared uncompressed size of one entry.
    pub max_entry_bytes: u64,
    /// Declared uncompressed size of all entries together.
    pub max_total_bytes: u64,
    /// Declared size over compressed size of an entry above which it is taken for a bomb
    /// (for entries over 1 MiB; real G-code compresses about 4–8×).
    pub max_ratio: u64,
    /// What is read of one metadata entry (XML, PNG).
    pub max_metadata_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_entry_bytes: 2 * 1024 * 1024 * 1024,
            max_total_bytes: 8 * 1024 * 1024 * 1024,
            max_ratio: 200,
            max_metadata_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Why a file is not a printable 3MF. The texts are shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThreeMfError {
    #[error("not a 3MF (ZIP) file, or truncated: {0}")]
    NotZip(String),
    #[error("too many entries in the archive ({found}, at most {max})")]
    TooManyEntries { found: usize, max: usize },
    #[error("entry {name:?} is too large ({size} bytes uncompressed)")]
    TooLarge { name: String, size: u64 },
    #[error("the archive expands to more than {max} bytes")]
    TotalTooLarge { max: u64 },
    #[error("entry {name:?} looks like a ZIP bomb (compression ratio over {max_ratio})")]
    Bomb { name: String, max_ratio: u64 },
    #[error("entry name {0:?} is not a safe relative path")]
    UnsafeName(String),
    #[error("entry {name:?} is corrupt: {reason}")]
    Corrupt { name: String, reason: String },
    #[error("no sliced plate: an unsliced project cannot be printed (slice it first)")]
    NotSliced,
}

/// One filament a plate uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filament {
    /// 1-based; indexes the AMS mapping.
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    /// `#RRGGBB` (or with alpha) as the slicer wrote it.
    pub color: String,
    pub used_g: f64,
    pub used_m: f64,
}

/// One sliced plate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plate {
    pub index: u32,
    /// Predicted print time, seconds.
    pub prediction_secs: Option<u64>,
    /// Filament weight, grams.
    pub weight_g: Option<f64>,
    pub printer_model_id: Option<String>,
    pub filaments: Vec<Filament>,
    /// Names of the objects on the plate.
    pub objects: Vec<String>,
}

/// What was read from a 3MF.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreeMf {
    /// The model's title (`3D/3dmodel.model` metadata), when the slicer wrote one.
    pub title: Option<String>,
    pub plates: Vec<Plate>,
}

impl ThreeMf {
    /// The plate `wanted`, or the one to show when it is not known: the first sliced one.
    pub fn plate(&self, wanted: Option<u32>) -> Option<&Plate> {
        wanted
            .and_then(|w| self.plates.iter().find(|p| p.index == w))
            .or_else(|| self.plates.first())
    }

    /// The plate a print of this file printed: `wanted` when the printer said, else the only
    /// sliced plate; `None` when it could be any of several (never a guess).
    pub fn printed_plate(&self, wanted: Option<u32>) -> Option<&Plate> {
        match wanted {
            Some(wanted) => self.plates.iter().find(|p| p.index == wanted),
            None if self.plates.len() == 1 => self.plates.first(),
            None => None,
        }
    }
}

/// Checks and reads a 3MF. `thumbnail` is the PNG of the plate [`ThreeMf::plate`] picks, read
/// through the metadata cap.
pub fn inspect<R: Read + Seek>(
    reader: R,
    limits: &Limits,
    wanted_plate: Option<u32>,
) -> Result<(ThreeMf, Option<Vec<u8>>), ThreeMfError> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| ThreeMfError::NotZip(e.to_string()))?;
    check_directory(&mut zip, limits)?;
    let slice_info = read_text(&mut zip, "Metadata/slice_info.config", limits)?;
    let plates = match slice_info {
        Some(xml) => parse_slice_info(&xml)?,
        None => Vec::new(),
    };
    if plates.is_empty() {
        return Err(ThreeMfError::NotSliced);
    }
    let title = read_text(&mut zip, "3D/3dmodel.model", limits)?
        .and_then(|xml| model_title(&xml))
        .filter(|t| !t.trim().is_empty());
    let file = ThreeMf { title, plates };
    let thumbnail = match file.plate(wanted_plate) {
        Some(plate) => read_entry(
            &mut zip,
            &format!("Metadata/plate_{}.png", plate.index),
            limits,
        )?
        .filter(|png| png.starts_with(b"\x89PNG\r\n\x1a\n")),
        None => None,
    };
    Ok((file, thumbnail))
}

fn check_directory<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    limits: &Limits,
) -> Result<(), ThreeMfError> {
    if zip.len() > limits.max_entries {
        return Err(ThreeMfError::TooManyEntries {
            found: zip.len(),
            max: limits.max_entries,
        });
    }
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| ThreeMfError::Corrupt {
            name: format!("#{i}"),
            reason: e.to_string(),
        })?;
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .map_err(|_| ThreeMfError::UnsafeName(format!("#{i} (not UTF-8)")))?;
        if !is_safe_name(&name) || entry.enclosed_name().is_none() {
            return Err(ThreeMfError::UnsafeName(name));
        }
        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(ThreeMfError::TooLarge { name, size });
        }
        if size > 1024 * 1024 && size / entry.compressed_size().max(1) > limits.max_ratio {
            return Err(ThreeMfError::Bomb {
                name,
                max_ratio: limits.max_ratio,
            });
        }
        total = total.saturating_add(size);
        if total > limits.max_total_bytes {
            return Err(ThreeMfError::TotalTooLarge {
                max: limits.max_total_bytes,
            });
        }
    }
    Ok(())
}

/// A relative path of plain components: no `..`, no root, no drive, no backslash, no NUL.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains(['\\', '\0'])
        && !name
            .split('/')
            .any(|part| part == ".." || part.contains(':'))
}

fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    limits: &Limits,
) -> Result<Option<Vec<u8>>, ThreeMfError> {
    let entry = match zip.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => {
            return Err(ThreeMfError::Corrupt {
                name: name.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let mut bytes = Vec::new();
    // One byte more than the cap tells "exactly the cap" from "over it", whatever the header
    // claims.
    entry
        .take(limits.max_metadata_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ThreeMfError::Corrupt {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > limits.max_metadata_bytes {
        return Err(ThreeMfError::TooLarge {
            name: name.to_owned(),
            size: bytes.len() as u64,
        });
    }
    Ok(Some(bytes))
}

fn read_text<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    limits: &Limits,
) -> Result<Option<String>, ThreeMfError> {
    read_entry(zip, name, limits)?
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| ThreeMfError::Corrupt {
                name: name.to_owned(),
                reason: "not UTF-8 text".into(),
            })
        })
        .transpose()
}

fn attribute(e: &quick_xml::events::BytesStart<'_>, wanted: &str) -> Option<String> {
    e.attributes().flatten().find_map(|attr| {
        (attr.key.as_ref() == wanted).then(|| {
            let raw = attr.value.to_string();
            quick_xml::escape::unescape(&raw)
                .map(|v| v.into_owned())
                .unwrap_or(raw)
        })
    })
}

fn parse_slice_info(xml: &str) -> Result<Vec<Plate>, ThreeMfError> {
    let corrupt = |reason: String| ThreeMfError::Corrupt {
        name: "Metadata/slice_info.config".into(),
        reason,
    };
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut plates = Vec::new();
    let mut current: Option<Plate> = None;
    loop {
        let event = reader.read_event().map_err(|e| corrupt(e.to_string()))?;
        match event {
            Event::Start(e) if e.name().as_ref() == "plate" => {
                current = Some(Plate {
                    index: 0,
                    prediction_secs: None,
                    weight_g: None,
                    printer_model_id: None,
                    filaments: Vec::new(),
                    objects: Vec::new(),
                });
            }
            Event::End(e) if e.name().as_ref() == "plate" => {
                if let Some(plate) = current.take()
                    && plate.index > 0
                {
                    plates.push(plate);
                }
            }
            Event::Empty(e) | Event::Start(e) => {
                let Some(plate) = current.as_mut() else {
                    continue;
                };
                match e.name().as_ref() {
                    "metadata" => {
                        let key = attribute(&e, "key").unwrap_or_default();
                        let value = attribute(&e, "value").unwrap_or_default();
                        match key.as_str() {
                            "index" => plate.index = value.trim().parse().unwrap_or(0),
                            "prediction" => {
                                plate.prediction_secs = value
                                    .trim()
                                    .parse::<f64>()
                                    .ok()
                                    .filter(|v| v.is_finite() && *v >= 0.0)
                                    .map(|v| v.round() as u64)
                            }
                            "weight" => {
                                plate.weight_g = value
                                    .trim()
                                    .parse::<f64>()
                                    .ok()
                                    .filter(|v| v.is_finite() && *v >= 0.0)
                            }
                            "printer_model_id" if !value.is_empty() => {
                                plate.printer_model_id = Some(value)
                            }
                            _ => {}
                        }
                    }
                    "filament" => {
                        let number = |name: &str| {
                            attribute(&e, name)
                                .and_then(|v| v.trim().parse::<f64>().ok())
                                .filter(|v| v.is_finite() && *v >= 0.0)
                                .unwrap_or(0.0)
                        };
                        plate.filaments.push(Filament {
                            id: attribute(&e, "id")
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0),
                            kind: attribute(&e, "type").unwrap_or_default(),
                            color: attribute(&e, "color").unwrap_or_default(),
                            used_g: number("used_g"),
                            used_m: number("used_m"),
                        });
                    }
                    "object" => {
                        if let Some(name) = attribute(&e, "name") {
                            plate.objects.push(name);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    plates.sort_by_key(|p| p.index);
    plates.dedup_by_key(|p| p.index);
    Ok(plates)
}

fn model_title(xml: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    // The text arrives in pieces: plain runs and entity references (`&amp;`) apart.
    let mut title: Option<String> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e)
                if e.name().as_ref() == "metadata"
                    && attribute(&e, "name").as_deref() == Some("Title") =>
            {
                title = Some(String::new());
            }
            Event::Text(text) => {
                if let Some(title) = title.as_mut() {
                    title.push_str(text.as_ref());
                }
            }
            Event::GeneralRef(entity) => {
                if let Some(title) = title.as_mut() {
                    let name: &str = entity.as_ref();
                    let resolved = match name {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => name
                            .strip_prefix("#x")
                            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                            .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                            .and_then(char::from_u32),
                    };
                    title.extend(resolved);
                }
            }
            Event::End(e) if e.name().as_ref() == "metadata" && title.is_some() => return title,
            // Metadata comes first; stop before the (possibly large) mesh.
            Event::Start(e) if e.name().as_ref() == "resources" => return None,
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    const SLICED: &[u8] = include_bytes!("../../../tests/fixtures/3mf/a1mini-1plate.gcode.3mf");
    const UNSLICED: &[u8] = include_bytes!("../../../tests/fixtures/3mf/x1c-2plates-unsliced.3mf");

    fn zip_of(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, data) in entries {
            out.start_file(*name, options).unwrap();
            out.write_all(data).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn the_sliced_fixture_gives_its_plate_filament_and_thumbnail() {
        let (file, thumbnail) = inspect(Cursor::new(SLICED), &Limits::default(), None).unwrap();
        assert_eq!(file.title, None, "the fixture's title is empty");
        assert_eq!(file.plates.len(), 1);
        let plate = &file.plates[0];
        assert_eq!(plate.index, 1);
        assert_eq!(plate.prediction_secs, Some(1095));
        assert_eq!(plate.weight_g, Some(2.83));
        assert_eq!(plate.printer_model_id.as_deref(), Some("N1"));
        assert_eq!(plate.objects, vec!["Cube".to_owned()]);
        assert_eq!(
            plate.filaments,
            vec![Filament {
                id: 1,
                kind: "PLA".into(),
                color: "#00AE42".into(),
                used_g: 2.83,
                used_m: 0.93
            }]
        );
        let png = thumbnail.expect("plate_1.png");
        assert_eq!(png.len(), 3659);
        assert!(png.starts_with(b"\x89PNG"));
    }

    #[test]
    fn an_unsliced_project_is_refused() {
        assert_eq!(
            inspect(Cursor::new(UNSLICED), &Limits::default(), None).unwrap_err(),
            ThreeMfError::NotSliced
        );
    }

    #[test]
    fn not_a_zip_and_a_truncated_file_are_refused() {
        assert!(matches!(
            inspect(
                Cursor::new(b"plain text".to_vec()),
                &Limits::default(),
                None
            ),
            Err(ThreeMfError::NotZip(_))
        ));
        let truncated = &SLICED[..SLICED.len() / 2];
        assert!(matches!(
            inspect(Cursor::new(truncated), &Limits::default(), None),
            Err(ThreeMfError::NotZip(_))
        ));
    }

    #[test]
    fn traversal_and_absolute_names_are_refused() {
        for name in [
            "../evil.txt",
            "Metadata/../../evil",
            "/etc/passwd",
            "C:/x",
            "a\\..\\b",
        ] {
            let file = zip_of(&[(name, b"x")], zip::CompressionMethod::Stored);
            assert!(
                matches!(
                    inspect(Cursor::new(file), &Limits::default(), None),
                    Err(ThreeMfError::UnsafeName(_))
                ),
                "{name}"
            );
        }
    }

    /// Rewrites the uncompressed size of every entry in the central directory (a ZIP whose
    /// directory lies about what its entries expand to).
    fn claim_sizes(mut zip: Vec<u8>, size: u32) -> Vec<u8> {
        let mut at = 0;
        while let Some(found) = zip[at..].windows(4).position(|w| w == b"PK\x01\x02") {
            let header = at + found;
            zip[header + 24..header + 28].copy_from_slice(&size.to_le_bytes());
            at = header + 4;
        }
        zip
    }

    #[test]
    fn entries_claiming_gigabytes_thousands_of_entries_and_deep_nesting_are_bounded() {
        // An entry whose directory claims 4 GB (it holds 5 bytes).
        let liar = claim_sizes(
            zip_of(
                &[("Metadata/plate_1.gcode", b"G28\n\n")],
                zip::CompressionMethod::Stored,
            ),
            u32::MAX - 1,
        );
        assert!(matches!(
            inspect(Cursor::new(liar), &Limits::default(), None),
            Err(ThreeMfError::TooLarge { size, .. }) if size == u64::from(u32::MAX - 1)
        ));
        // Ten entries of 1.9 GB each: each under the entry cap, together over the total.
        let names: Vec<String> = (0..10)
            .map(|i| format!("Metadata/plate_{i}.gcode"))
            .collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"G28"[..])).collect();
        let many_liars = claim_sizes(
            zip_of(&entries, zip::CompressionMethod::Stored),
            1_900_000_000,
        );
        // (Their ratio alone would refuse them as bombs: the total is checked without it.)
        let no_ratio = Limits {
            max_ratio: u64::MAX,
            ..Limits::default()
        };
        assert!(matches!(
            inspect(Cursor::new(many_liars.clone()), &no_ratio, None),
            Err(ThreeMfError::TotalTooLarge { .. })
        ));
        assert!(matches!(
            inspect(Cursor::new(many_liars), &Limits::default(), None),
            Err(ThreeMfError::Bomb { .. })
        ));
        // Twenty thousand entries against the default cap of ten thousand.
        let names: Vec<String> = (0..20_000).map(|i| format!("f{i}")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let crowd = zip_of(&entries, zip::CompressionMethod::Stored);
        assert!(matches!(
            inspect(Cursor::new(crowd), &Limits::default(), None),
            Err(ThreeMfError::TooManyEntries { found: 20_000, .. })
        ));
        // A path two thousand directories deep, and XML nested a hundred thousand deep: read
        // without recursion, refused or empty, never a stack overflow.
        let deep_name = format!("{}plate.png", "a/".repeat(2_000));
        let mut deep_xml = "<config>".to_owned();
        deep_xml.push_str(&"<plate>".repeat(100_000));
        deep_xml.push_str(&"</plate>".repeat(100_000));
        deep_xml.push_str("</config>");
        let nested = zip_of(
            &[
                (deep_name.as_str(), &b"x"[..]),
                ("Metadata/slice_info.config", deep_xml.as_bytes()),
            ],
            zip::CompressionMethod::Deflated,
        );
        assert!(matches!(
            inspect(Cursor::new(nested), &Limits::default(), None),
            Err(ThreeMfError::NotSliced)
        ));
    }

    #[test]
    fn too_many_entries_and_bombs_are_refused_before_anything_is_read() {
        let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let many = zip_of(&entries, zip::CompressionMethod::Stored);
        let limits = Limits {
            max_entries: 10,
            ..Limits::default()
        };
        assert!(matches!(
            inspect(Cursor::new(many), &limits, None),
            Err(ThreeMfError::TooManyEntries { found: 20, .. })
        ));
        // 64 MiB of zeros deflates to about 64 KiB: a ratio near 1000.
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let bomb = zip_of(
            &[("Metadata/plate_1.gcode", &zeros)],
            zip::CompressionMethod::Deflated,
        );
        assert!(bomb.len() < 1024 * 1024);
        assert!(matches!(
            inspect(Cursor::new(bomb), &Limits::default(), None),
            Err(ThreeMfError::Bomb { .. })
        ));
    }

    #[test]
    fn an_oversized_metadata_entry_is_cut_off_at_the_cap() {
        let big = vec![b' '; 2048];
        let file = zip_of(
            &[("Metadata/slice_info.config", &big)],
            zip::CompressionMethod::Stored,
        );
        let limits = Limits {
            max_metadata_bytes: 1024,
            ..Limits::default()
        };
        assert!(matches!(
            inspect(Cursor::new(file), &limits, None),
            Err(ThreeMfError::TooLarge { .. })
        ));
    }

    #[test]
    fn plates_are_read_in_order_and_the_wanted_one_is_picked() {
        let xml = br##"<config><plate><metadata key="index" value="2"/><metadata key="prediction" value="60.4"/>
            <filament id="2" type="PETG" color="#FF0000" used_m="1.5" used_g="4.5"/></plate>
            <plate><metadata key="index" value="1"/><metadata key="weight" value="-3"/></plate></config>"##;
        let file = zip_of(
            &[
                ("Metadata/slice_info.config", xml),
                (
                    "3D/3dmodel.model",
                    b"<model><metadata name=\"Title\">Gear &amp; rack &#x2713;</metadata><resources/></model>",
                ),
            ],
            zip::CompressionMethod::Deflated,
        );
        let (parsed, thumbnail) = inspect(Cursor::new(file), &Limits::default(), Some(2)).unwrap();
        assert_eq!(parsed.title.as_deref(), Some("Gear & rack \u{2713}"));
        assert_eq!(
            parsed.plates.iter().map(|p| p.index).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(
            parsed.plates[0].weight_g, None,
            "a negative weight is dropped"
        );
        let picked = parsed.plate(Some(2)).unwrap();
        assert_eq!(picked.prediction_secs, Some(60));
        assert_eq!(picked.filaments[0].kind, "PETG");
        assert_eq!(parsed.plate(Some(9)).unwrap().index, 1);
        assert_eq!(thumbnail, None);
    }
}

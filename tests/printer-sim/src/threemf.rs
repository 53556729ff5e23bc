//! What the simulator reads from a 3MF to drive a print: the plate's predicted time, layer
//! count and filament weight. A file that is not a sliced 3MF is refused like a printer would.

use std::io::{Cursor, Read};

#[derive(Debug, Clone, PartialEq)]
pub struct PlateJob {
    pub plate: u32,
    /// Predicted print time, seconds.
    pub prediction_secs: u64,
    pub total_layers: u32,
    pub weight_g: f64,
    pub model_id: Option<String>,
    /// The plate's filaments: id (1-based, the AMS mapping's index), type, `#RRGGBB`, grams.
    pub filaments: Vec<PlateFilament>,
}

/// One filament a plate uses.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateFilament {
    pub id: u32,
    pub kind: String,
    pub color: String,
    pub grams: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("not a 3MF archive: {0}")]
    NotZip(String),
    #[error("plate {0} is not sliced in this file")]
    NoPlate(u32),
}

/// Reads `Metadata/slice_info.config` and the plate's G-code header.
pub fn read_plate(file: &[u8], plate: u32) -> Result<PlateJob, JobError> {
    const MAX_ENTRY: u64 = 64 * 1024 * 1024;
    let mut archive =
        zip::ZipArchive::new(Cursor::new(file)).map_err(|e| JobError::NotZip(e.to_string()))?;
    let mut slice_info = String::new();
    archive
        .by_name("Metadata/slice_info.config")
        .map_err(|_| JobError::NoPlate(plate))?
        .take(MAX_ENTRY)
        .read_to_string(&mut slice_info)
        .map_err(|e| JobError::NotZip(e.to_string()))?;
    let (prediction, weight, model_id, filaments) =
        plate_metadata(&slice_info, plate).ok_or(JobError::NoPlate(plate))?;

    let layers;
    if let Ok(gcode) = archive.by_name(&format!("Metadata/plate_{plate}.gcode")) {
        // The header block is at the top: the first few KiB are enough.
        let mut head = Vec::new();
        let _ = gcode.take(16 * 1024).read_to_end(&mut head);
        let head = String::from_utf8_lossy(&head);
        layers = head
            .lines()
            .find_map(|l| l.strip_prefix("; total layer number:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
    } else {
        return Err(JobError::NoPlate(plate));
    }
    Ok(PlateJob {
        plate,
        prediction_secs: prediction,
        total_layers: layers.max(1),
        weight_g: weight,
        model_id,
        filaments,
    })
}

type Metadata = (u64, f64, Option<String>, Vec<PlateFilament>);

fn plate_metadata(xml: &str, wanted: u32) -> Option<Metadata> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut in_plate = false;
    let (mut index, mut prediction, mut weight, mut model) = (None, None, 0.0, None);
    let mut filaments = Vec::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.name().as_ref() == "plate" => {
                in_plate = true;
                (index, prediction, weight, model) = (None, None, 0.0, None);
                filaments.clear();
            }
            Event::End(e) if e.name().as_ref() == "plate" => {
                if index == Some(wanted) {
                    return Some((prediction?, weight, model, filaments));
                }
                in_plate = false;
            }
            Event::Empty(e) | Event::Start(e) if in_plate && e.name().as_ref() == "filament" => {
                let mut filament = PlateFilament {
                    id: 0,
                    kind: String::new(),
                    color: String::new(),
                    grams: 0.0,
                };
                for attr in e.attributes().flatten() {
                    let v = attr.value.to_string();
                    match attr.key.as_ref() {
                        "id" => filament.id = v.parse().unwrap_or(0),
                        "type" => filament.kind = v,
                        "color" => filament.color = v,
                        "used_g" => filament.grams = v.parse().unwrap_or(0.0),
                        _ => {}
                    }
                }
                if filament.id > 0 {
                    filaments.push(filament);
                }
            }
            Event::Empty(e) | Event::Start(e) if in_plate && e.name().as_ref() == "metadata" => {
                let mut key = String::new();
                let mut value = String::new();
                for attr in e.attributes().flatten() {
                    let v = attr.value.to_string();
                    match attr.key.as_ref() {
                        "key" => key = v,
                        "value" => value = v,
                        _ => {}
                    }
                }
                match key.as_str() {
                    "index" => index = value.parse().ok(),
                    "prediction" => prediction = value.parse().ok(),
                    "weight" => weight = value.parse().unwrap_or(0.0),
                    "printer_model_id" => model = Some(value),
                    _ => {}
                }
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICED: &[u8] = include_bytes!("../../fixtures/3mf/a1mini-1plate.gcode.3mf");
    const UNSLICED: &[u8] = include_bytes!("../../fixtures/3mf/x1c-2plates-unsliced.3mf");

    #[test]
    fn a_sliced_plate_gives_its_prediction_layers_and_weight() {
        let job = read_plate(SLICED, 1).unwrap();
        assert_eq!(job.prediction_secs, 1095);
        assert_eq!(job.total_layers, 90);
        assert!((job.weight_g - 2.83).abs() < 1e-9);
        assert_eq!(job.model_id.as_deref(), Some("N1"));
        assert_eq!(
            job.filaments,
            [PlateFilament {
                id: 1,
                kind: "PLA".into(),
                color: "#00AE42".into(),
                grams: 2.83
            }]
        );
    }

    #[test]
    fn an_unsliced_project_or_a_missing_plate_is_refused() {
        assert!(matches!(read_plate(UNSLICED, 1), Err(JobError::NoPlate(1))));
        assert!(matches!(read_plate(SLICED, 2), Err(JobError::NoPlate(2))));
        assert!(matches!(
            read_plate(b"not a zip", 1),
            Err(JobError::NotZip(_))
        ));
    }
}

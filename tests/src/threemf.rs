//! 3MF files for tests and benchmarks: the real sliced fixture, re-sliced (on paper) for
//! another model, other filaments, another title, or padded to a size. Only the metadata a
//! farm reads changes; the G-code and thumbnails stay the fixture's own.

use std::io::{Cursor, Read, Write};

use printyard_printer_sim::farm::DEMO_3MF;

/// What to change in the fixture.
#[derive(Debug, Clone)]
pub struct Slicing<'a> {
    /// `printer_model_id` of the plate (`N1`, `C12`, `BL-P001`).
    pub model_id: &'a str,
    /// `(type, #RRGGBB)` of each filament, ids 1, 2, …
    pub filaments: &'a [(&'a str, &'a str)],
    /// The model's title (the archive's name).
    pub title: &'a str,
    /// Incompressible bytes stored in an extra entry, to make the file this much larger.
    pub padding: usize,
    /// The plate's planned filament weight, grams (shared evenly by its filaments).
    pub weight: f64,
    /// Sliced plates, 1 to `plates`; plate `n` plans `n` × `weight` grams (so a record of the
    /// wrong plate shows), with the fixture's G-code and thumbnail as its own.
    pub plates: u32,
}

impl Default for Slicing<'_> {
    fn default() -> Self {
        Self {
            model_id: "N1",
            filaments: &[("PLA", "#00AE42")],
            title: "Cube",
            padding: 0,
            weight: 2.83,
            plates: 1,
        }
    }
}

/// The fixture 3MF with `slicing` applied.
pub fn sliced_3mf(slicing: &Slicing) -> Vec<u8> {
    let mut source = zip::ZipArchive::new(Cursor::new(DEMO_3MF)).expect("the fixture is a ZIP");
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..source.len() {
        let name = source
            .by_index(i)
            .expect("a fixture entry")
            .name()
            .expect("an entry name")
            .into_owned();
        match name.as_str() {
            "Metadata/slice_info.config" => {
                let mut xml = String::new();
                source
                    .by_index(i)
                    .expect("slice_info")
                    .read_to_string(&mut xml)
                    .expect("slice_info is text");
                out.start_file(name, deflated).expect("a new entry");
                out.write_all(reslice(&xml, slicing).as_bytes())
                    .expect("writing slice_info");
            }
            "3D/3dmodel.model" => {
                let mut xml = String::new();
                source
                    .by_index(i)
                    .expect("the model")
                    .read_to_string(&mut xml)
                    .expect("the model is text");
                let xml = xml.replace(
                    "<metadata name=\"Title\"></metadata>",
                    &format!("<metadata name=\"Title\">{}</metadata>", slicing.title),
                );
                out.start_file(name, deflated).expect("a new entry");
                out.write_all(xml.as_bytes()).expect("writing the model");
            }
            _ => {
                let entry = source.by_index_raw(i).expect("a raw entry");
                out.raw_copy_file(entry).expect("copying an entry");
                // The further plates' G-code and thumbnails are the first plate's.
                for plate in 2..=slicing.plates {
                    for (first, nth) in [
                        (
                            "Metadata/plate_1.gcode",
                            format!("Metadata/plate_{plate}.gcode"),
                        ),
                        (
                            "Metadata/plate_1.png",
                            format!("Metadata/plate_{plate}.png"),
                        ),
                    ] {
                        if name == first {
                            let entry = source.by_index_raw(i).expect("a raw entry");
                            out.raw_copy_file_rename(entry, nth)
                                .expect("copying a plate entry");
                        }
                    }
                }
            }
        }
    }
    if slicing.padding > 0 {
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(slicing.padding > u32::MAX as usize / 2);
        out.start_file("Metadata/padding.bin", stored)
            .expect("a padding entry");
        let mut noise = vec![0u8; 64 * 1024];
        let mut left = slicing.padding;
        while left > 0 {
            rand::Rng::fill(&mut rand::rng(), noise.as_mut_slice());
            let n = left.min(noise.len());
            out.write_all(&noise[..n]).expect("writing padding");
            left -= n;
        }
    }
    out.finish().expect("finishing the ZIP").into_inner()
}

fn reslice(xml: &str, slicing: &Slicing) -> String {
    let xml = xml.replace(
        "<metadata key=\"printer_model_id\" value=\"N1\"/>",
        &format!(
            "<metadata key=\"printer_model_id\" value=\"{}\"/>",
            slicing.model_id
        ),
    );
    let xml = xml.replace(
        "<metadata key=\"weight\" value=\"2.83\"/>",
        &format!("<metadata key=\"weight\" value=\"{}\"/>", slicing.weight),
    );
    let start = xml.find("<filament ").expect("a filament line");
    let end = start + xml[start..].find("/>").expect("its end") + 2;
    // The plate's weight is shared evenly by its filaments.
    let grams = |plate: u32| slicing.weight * f64::from(plate) / slicing.filaments.len() as f64;
    let filaments: Vec<String> = slicing
        .filaments
        .iter()
        .enumerate()
        .map(|(i, (kind, color))| {
            format!(
                "<filament id=\"{}\" type=\"{kind}\" color=\"{color}\" used_m=\"0.93\" used_g=\"{}\"/>",
                i + 1,
                grams(1)
            )
        })
        .collect();
    let xml = format!(
        "{}{}{}",
        &xml[..start],
        filaments.join("\n    "),
        &xml[end..]
    );
    // Plates 2.. are copies of plate 1 with their index and weight.
    let (open, close) = (
        xml.find("<plate>").expect("a plate"),
        xml.find("</plate>").expect("its end") + "</plate>".len(),
    );
    let first = &xml[open..close];
    let further: String = (2..=slicing.plates)
        .map(|plate| {
            let weight = slicing.weight * f64::from(plate);
            format!(
                "\n  {}",
                first
                    .replace(
                        "<metadata key=\"index\" value=\"1\"/>",
                        &format!("<metadata key=\"index\" value=\"{plate}\"/>"),
                    )
                    .replace(
                        &format!("<metadata key=\"weight\" value=\"{}\"/>", slicing.weight),
                        &format!("<metadata key=\"weight\" value=\"{weight}\"/>"),
                    )
                    .replace(
                        &format!("used_g=\"{}\"", grams(1)),
                        &format!("used_g=\"{}\"", grams(plate)),
                    )
            )
        })
        .collect();
    format!("{}{further}{}", &xml[..close], &xml[close..])
}

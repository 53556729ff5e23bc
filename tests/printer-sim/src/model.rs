//! The simulated models: serial prefixes, model ids, product names, and the report templates
//! taken from real captures in `tests/fixtures/printers/` so that every field keeps the name and
//! JSON type a real printer of that family sends.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Model {
    #[serde(rename = "X1C")]
    X1C,
    #[serde(rename = "P1S")]
    P1S,
    #[serde(rename = "P1P")]
    P1P,
    #[serde(rename = "A1")]
    A1,
    #[serde(rename = "A1mini")]
    A1Mini,
    #[serde(rename = "H2D")]
    H2D,
}

impl Model {
    pub const ALL: [Model; 6] = [
        Model::X1C,
        Model::P1S,
        Model::P1P,
        Model::A1,
        Model::A1Mini,
        Model::H2D,
    ];

    pub fn parse(s: &str) -> Option<Model> {
        match s.to_ascii_lowercase().replace([' ', '-', '_'], "").as_str() {
            "x1c" | "x1carbon" => Some(Model::X1C),
            "p1s" => Some(Model::P1S),
            "p1p" => Some(Model::P1P),
            "a1" => Some(Model::A1),
            "a1mini" => Some(Model::A1Mini),
            "h2d" => Some(Model::H2D),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Model::X1C => "X1C",
            Model::P1S => "P1S",
            Model::P1P => "P1P",
            Model::A1 => "A1",
            Model::A1Mini => "A1mini",
            Model::H2D => "H2D",
        }
    }

    /// The serial number prefix (protocol notes, "Models").
    pub fn serial_prefix(self) -> &'static str {
        match self {
            Model::X1C => "00M",
            Model::P1S => "01P",
            Model::P1P => "01S",
            Model::A1 => "039",
            Model::A1Mini => "030",
            Model::H2D => "094",
        }
    }

    /// `printer_model_id` as a 3MF names it.
    pub fn model_id(self) -> &'static str {
        match self {
            Model::X1C => "BL-P001",
            Model::P1S => "C12",
            Model::P1P => "C11",
            Model::A1 => "N2S",
            Model::A1Mini => "N1",
            Model::H2D => "O1D",
        }
    }

    /// `product_name` of the `ota` module in `get_version`.
    pub fn product_name(self) -> &'static str {
        match self {
            Model::X1C => "Bambu Lab X1-Carbon",
            Model::P1S => "Bambu Lab P1S",
            Model::P1P => "Bambu Lab P1P",
            Model::A1 => "Bambu Lab A1",
            Model::A1Mini => "Bambu Lab A1 mini",
            Model::H2D => "Bambu Lab H2D",
        }
    }

    /// X1 printers send full reports on LAN; P1, A1 and H2D send deltas.
    pub fn sends_deltas(self) -> bool {
        !matches!(self, Model::X1C)
    }

    /// A1 and P1 stream JPEG on port 6000; X1 and H2D serve RTSPS on 322 (`rtsps.rs`).
    pub fn has_port6000_camera(self) -> bool {
        !matches!(self, Model::X1C | Model::H2D)
    }

    /// X1 and H2D name the file printing by its place in the 3MF they unpacked
    /// (`/data/Metadata/plate_1.gcode`); P1 and A1 by the file sent.
    pub fn names_gcode_by_plate(self) -> bool {
        matches!(self, Model::X1C | Model::H2D)
    }

    /// The real capture this model's reports are shaped after.
    pub fn fixture(self) -> &'static str {
        match self {
            Model::X1C => "x1c-multi-ams.json",
            Model::P1S | Model::P1P => "p1p.json",
            Model::A1 => "a1.json",
            Model::A1Mini => "a1mini-pushall-idle.json",
            Model::H2D => "h2d.json",
        }
    }

    fn fixture_text(self) -> &'static str {
        match self {
            Model::X1C => include_str!("../../fixtures/printers/x1c-multi-ams.json"),
            Model::P1S | Model::P1P => include_str!("../../fixtures/printers/p1p.json"),
            Model::A1 => include_str!("../../fixtures/printers/a1.json"),
            Model::A1Mini => include_str!("../../fixtures/printers/a1mini-pushall-idle.json"),
            Model::H2D => include_str!("../../fixtures/printers/h2d.json"),
        }
    }

    fn version_text(self) -> &'static str {
        match self {
            Model::A1Mini => include_str!("../../fixtures/printers/a1mini-get-version.json"),
            _ => self.fixture_text(),
        }
    }

    /// The `print` object of the family's real full report.
    pub fn report_template(self) -> Map<String, Value> {
        let doc: Value = serde_json::from_str(self.fixture_text()).expect("fixtures are JSON");
        let print = doc
            .pointer("/pushall/print")
            .or_else(|| doc.get("push_all"))
            .or_else(|| doc.pointer("/message/print"))
            .expect("the fixture holds a full report");
        print.as_object().expect("print is an object").clone()
    }

    /// The family's real `get_version` answer (`info` object), for `serial`.
    pub fn version_template(self, serial: &str) -> Value {
        let doc: Value = serde_json::from_str(self.version_text()).expect("fixtures are JSON");
        let mut info = doc
            .pointer("/get_version/info")
            .or_else(|| doc.pointer("/message/info"))
            .or_else(|| doc.get("get_version"))
            .cloned()
            .expect("the fixture holds a get_version answer");
        if let Some(modules) = info.get_mut("module").and_then(Value::as_array_mut) {
            for module in modules {
                if module["name"] == "ota" {
                    module["sn"] = Value::from(serial);
                    module["product_name"] = Value::from(self.product_name());
                } else if let Some(sn) = module.get_mut("sn") {
                    *sn = Value::from(format!("{serial}-{}", module_suffix(sn)));
                }
            }
        }
        info
    }
}

fn module_suffix(sn: &Value) -> String {
    let text = sn.as_str().unwrap_or("");
    let hash = text
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    format!("{:04X}", hash & 0xFFFF)
}

/// A serial number of `model`: its prefix, then digits from `index` (15 characters in all).
pub fn serial_for(model: Model, index: usize) -> String {
    format!("{}{:012}", model.serial_prefix(), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_has_a_full_report_template_and_a_version_answer() {
        for model in Model::ALL {
            let template = model.report_template();
            assert_eq!(template["command"], "push_status", "{model:?}");
            assert!(template.contains_key("gcode_state"), "{model:?}");
            let version = model.version_template("SERIAL");
            let ota = version["module"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == "ota")
                .unwrap();
            assert_eq!(ota["sn"], "SERIAL");
            assert_eq!(ota["product_name"], model.product_name());
        }
    }

    #[test]
    fn serials_carry_the_model_prefix_and_are_15_characters() {
        for model in Model::ALL {
            let serial = serial_for(model, 7);
            assert!(serial.starts_with(model.serial_prefix()));
            assert_eq!(serial.len(), 15);
        }
    }

    #[test]
    fn model_names_parse_back() {
        for model in Model::ALL {
            assert_eq!(Model::parse(model.name()), Some(model));
        }
        assert_eq!(Model::parse("A1 mini"), Some(Model::A1Mini));
        assert_eq!(Model::parse("h2-d"), Some(Model::H2D));
        assert_eq!(Model::parse("H2S"), None);
    }
}

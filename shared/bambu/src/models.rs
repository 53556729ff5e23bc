//! Printer models: detected from `get_version`'s product name, else from the serial prefix,
//! and shown by their marketing names as the API reference does ("X1 Carbon", "A1 mini").
//! Prefixes and model ids: protocol notes, "Models".

/// (marketing name, serial prefix, `printer_model_id` as 3MF files name it, product names seen)
const MODELS: &[(&str, &str, &str, &[&str])] = &[
    (
        "X1 Carbon",
        "00M",
        "BL-P001",
        &[
            "Bambu Lab X1-Carbon",
            "Bambu Lab X1 Carbon",
            "X1 Carbon",
            "X1C",
        ],
    ),
    ("X1", "00W", "BL-P002", &["Bambu Lab X1", "X1"]),
    ("X1E", "03W", "C13", &["Bambu Lab X1E", "X1E"]),
    ("P1P", "01S", "C11", &["Bambu Lab P1P", "P1P"]),
    ("P1S", "01P", "C12", &["Bambu Lab P1S", "P1S"]),
    (
        "A1 mini",
        "030",
        "N1",
        &["Bambu Lab A1 mini", "A1 mini", "A1mini"],
    ),
    ("A1", "039", "N2S", &["Bambu Lab A1", "A1"]),
    ("P2S", "22E", "N7", &["Bambu Lab P2S", "P2S"]),
    ("H2D", "094", "O1D", &["Bambu Lab H2D", "H2D"]),
    ("H2S", "093", "O1S", &["Bambu Lab H2S", "H2S"]),
];

/// The marketing name for a `get_version` product name.
pub fn from_product_name(product: &str) -> Option<&'static str> {
    let product = product.trim();
    MODELS
        .iter()
        .find(|(_, _, _, names)| names.iter().any(|n| n.eq_ignore_ascii_case(product)))
        .map(|(name, ..)| *name)
}

/// The marketing name for a serial number, by its prefix.
pub fn from_serial(serial: &str) -> Option<&'static str> {
    MODELS
        .iter()
        .find(|(_, prefix, ..)| serial.starts_with(prefix))
        .map(|(name, ..)| *name)
}

/// The 3MF `printer_model_id` of a marketing name (to check a job was sliced for the printer).
pub fn model_id(name: &str) -> Option<&'static str> {
    MODELS
        .iter()
        .find(|(n, ..)| n.eq_ignore_ascii_case(name))
        .map(|(_, _, id, _)| *id)
}

/// The marketing name of a 3MF `printer_model_id` ("C12" → "P1S").
pub fn name_of_model_id(id: &str) -> Option<&'static str> {
    MODELS
        .iter()
        .find(|(_, _, model_id, _)| model_id.eq_ignore_ascii_case(id))
        .map(|(name, ..)| *name)
}

/// A model as a person or a client names it: the marketing name, a product name ("Bambu Lab
/// P1S") or the model id ("C12"), to the marketing name.
pub fn canonical(model: &str) -> Option<&'static str> {
    let model = model.trim();
    MODELS
        .iter()
        .find(|(name, _, _, _)| name.eq_ignore_ascii_case(model))
        .map(|(name, ..)| *name)
        .or_else(|| name_of_model_id(model))
        .or_else(|| from_product_name(model))
}

/// The firmware version (`01.07.02.00`): the `ota` module's `sw_ver` in a `get_version` answer.
pub fn firmware(version: &serde_json::Value) -> Option<&str> {
    version
        .get("module")?
        .as_array()?
        .iter()
        .find(|m| m.get("name").and_then(|n| n.as_str()) == Some("ota"))?
        .get("sw_ver")?
        .as_str()
        .filter(|v| !v.is_empty() && v.len() <= 32)
}

/// Orders two firmware versions (`01.08.00.00` after `01.07.02.00`) part by part as numbers;
/// a part that is not a number sorts first.
pub fn compare_firmware(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a).cmp(&parts(b))
}

/// The `ota` module's product name in a `get_version` answer.
pub fn product_name(version: &serde_json::Value) -> Option<&str> {
    version
        .get("module")?
        .as_array()?
        .iter()
        .find(|m| m.get("name").and_then(|n| n.as_str()) == Some("ota"))?
        .get("product_name")?
        .as_str()
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names_and_serials_give_marketing_names() {
        assert_eq!(from_product_name("Bambu Lab X1-Carbon"), Some("X1 Carbon"));
        assert_eq!(from_product_name("Bambu Lab A1 mini"), Some("A1 mini"));
        assert_eq!(from_product_name("Bambu Lab A1"), Some("A1"));
        assert_eq!(from_product_name("Something else"), None);
        assert_eq!(from_serial("01P00A000000001"), Some("P1S"));
        assert_eq!(from_serial("030000000000005"), Some("A1 mini"));
        assert_eq!(from_serial("039000000000004"), Some("A1"));
        assert_eq!(from_serial("ZZZ"), None);
        assert_eq!(name_of_model_id("C12"), Some("P1S"));
        assert_eq!(canonical("c12"), Some("P1S"));
        assert_eq!(canonical("x1 carbon"), Some("X1 Carbon"));
        assert_eq!(canonical("Bambu Lab A1 mini"), Some("A1 mini"));
        assert_eq!(canonical("Ender 3"), None);
        assert_eq!(model_id("A1 mini"), Some("N1"));
    }

    #[test]
    fn the_ota_product_name_is_read_from_a_real_version_answer() {
        let text = include_str!("../../../tests/fixtures/printers/a1mini-get-version.json");
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let product = product_name(&doc["message"]["info"]).unwrap();
        assert_eq!(from_product_name(product), Some("A1 mini"));
        assert_eq!(firmware(&doc["message"]["info"]), Some("01.07.02.00"));
    }

    #[test]
    fn firmware_versions_order_by_their_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_firmware("01.08.00.00", "01.07.02.00"), Greater);
        assert_eq!(compare_firmware("01.07.02.00", "01.07.10.00"), Less);
        assert_eq!(compare_firmware("01.07.02.00", "01.07.02.00"), Equal);
    }
}

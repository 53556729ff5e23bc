//! The HMS text catalog (`data/hms_en.json`, from the ha-bambulab project): `device_hms` keyed
//! by 16 hex digits (attr then code), `device_error` keyed by 8 (a `print_error`). A text may
//! be given per model (e.g. "the right nozzle" on an H2D); the generic text is used otherwise.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

const CATALOG: &str = include_str!("../data/hms_en.json");

/// key → [(text, models the text is specific to; empty for every model)]
type Texts = HashMap<String, Vec<(String, Vec<String>)>>;

struct Catalog {
    hms: Texts,
    errors: Texts,
}

fn catalog() -> &'static Catalog {
    static CATALOG_CELL: OnceLock<Catalog> = OnceLock::new();
    CATALOG_CELL.get_or_init(|| {
        let doc: Value = serde_json::from_str(CATALOG).unwrap_or(Value::Null);
        let table = |name: &str| -> Texts {
            doc.get(name)
                .and_then(Value::as_object)
                .map(|entries| {
                    entries
                        .iter()
                        .map(|(key, texts)| {
                            let texts = texts
                                .as_object()
                                .map(|t| {
                                    t.iter()
                                        .map(|(text, models)| {
                                            let models = models
                                                .as_array()
                                                .map(|m| {
                                                    m.iter()
                                                        .filter_map(|x| {
                                                            x.as_str().map(str::to_owned)
                                                        })
                                                        .collect()
                                                })
                                                .unwrap_or_default();
                                            (text.clone(), models)
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            (key.to_ascii_uppercase(), texts)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Catalog {
            hms: table("device_hms"),
            errors: table("device_error"),
        }
    })
}

fn pick(texts: Option<&Vec<(String, Vec<String>)>>, model: Option<&str>) -> Option<String> {
    let texts = texts?;
    model
        .and_then(|m| {
            texts
                .iter()
                .find(|(_, models)| models.iter().any(|x| x.eq_ignore_ascii_case(m)))
        })
        .or_else(|| texts.iter().find(|(_, models)| models.is_empty()))
        .or_else(|| texts.first())
        .map(|(text, _)| text.clone())
}

/// The text of an HMS entry, for `model` (a catalog model name such as "H2D") if given.
pub fn hms_text(attr: u32, code: u32, model: Option<&str>) -> Option<String> {
    pick(catalog().hms.get(&format!("{attr:08X}{code:08X}")), model)
}

/// The text of a `print_error`.
pub fn print_error_text(print_error: u32, model: Option<&str>) -> Option<String> {
    pick(catalog().errors.get(&format!("{print_error:08X}")), model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_have_texts_and_unknown_ones_none() {
        assert_eq!(
            print_error_text(0x0300_400C, None).as_deref(),
            Some("The task was canceled.")
        );
        let text = hms_text(0x0C00_0300, 0x0003_0007, None).unwrap();
        assert!(text.contains("first layer"), "{text}");
        assert_eq!(hms_text(0xFFFF_FFFF, 0xFFFF_FFFF, None), None);
    }

    #[test]
    fn a_model_specific_text_wins_for_that_model_only() {
        let generic = hms_text(0x0300_0200, 0x0001_0001, None).unwrap();
        let h2d = hms_text(0x0300_0200, 0x0001_0001, Some("H2D")).unwrap();
        assert!(!generic.contains("right"), "{generic}");
        assert!(h2d.contains("right"), "{h2d}");
    }
}

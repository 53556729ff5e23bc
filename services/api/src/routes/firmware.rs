//! `GET /printers/firmware`: the farm's firmware, grouped by model and version, with the
//! printers behind the newest version seen on their model in the farm.

use axum::extract::State;
use axum::{Extension, Json};
use printyard_bambu::models::compare_firmware;
use printyard_contracts::ErrorBody;
use serde::Serialize;

use crate::auth::access::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The printers of one model on one version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FirmwareGroup {
    /// `null`: a model not known yet.
    pub model: Option<String>,
    /// `null`: a printer that has not told its version (offline since it was added).
    pub version: Option<String>,
    /// Whether this is the newest version seen on the model in the farm.
    pub newest: bool,
    pub printer_ids: Vec<i64>,
}

/// A printer behind its model's newest version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Behind {
    pub printer_id: i64,
    pub name: String,
    pub model: Option<String>,
    pub version: String,
    pub newest: String,
}

/// The farm's firmware.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FirmwareTable {
    /// By model, then version, newest first.
    pub groups: Vec<FirmwareGroup>,
    pub behind: Vec<Behind>,
}

#[utoipa::path(get, path = "/printers/firmware", tag = "printers", operation_id = "getFirmware",
    responses((status = 200, description = "Every printer (in reach) by model and firmware version, and those behind the newest version their model runs in the farm", body = FirmwareTable), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn table(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<FirmwareTable>, ApiError> {
    let rows = state.registry.list().await?;
    let printers: Vec<super::printers::Printer> = state.statuses.with(|statuses| {
        rows.iter()
            .filter(|r| caller.reach.allows(r.id, Some(&r.site)))
            .map(|r| super::printers::view(r, statuses.get(&r.id), false))
            .collect()
    });
    Ok(Json(tabulate(&printers)))
}

fn tabulate(printers: &[super::printers::Printer]) -> FirmwareTable {
    use std::collections::BTreeMap;
    // model → version → printers
    let mut by_model: BTreeMap<Option<String>, BTreeMap<Option<String>, Vec<i64>>> =
        BTreeMap::new();
    for p in printers {
        by_model
            .entry(p.model.clone())
            .or_default()
            .entry(p.firmware.clone())
            .or_default()
            .push(p.id);
    }
    let newest_of = |versions: &BTreeMap<Option<String>, Vec<i64>>| {
        versions
            .keys()
            .flatten()
            .max_by(|a, b| compare_firmware(a, b))
            .cloned()
    };
    let names: std::collections::HashMap<i64, &str> =
        printers.iter().map(|p| (p.id, p.name.as_str())).collect();
    let mut groups = Vec::new();
    let mut behind = Vec::new();
    for (model, versions) in &by_model {
        let newest = newest_of(versions);
        let mut ordered: Vec<(&Option<String>, &Vec<i64>)> = versions.iter().collect();
        ordered.sort_by(|(a, _), (b, _)| match (a, b) {
            (Some(a), Some(b)) => compare_firmware(b, a),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        for (version, ids) in ordered {
            let is_newest = version.is_some() && *version == newest;
            groups.push(FirmwareGroup {
                model: model.clone(),
                version: version.clone(),
                newest: is_newest,
                printer_ids: ids.clone(),
            });
            if let (Some(version), Some(newest)) = (version, &newest)
                && !is_newest
            {
                for id in ids {
                    behind.push(Behind {
                        printer_id: *id,
                        name: names.get(id).copied().unwrap_or_default().to_owned(),
                        model: model.clone(),
                        version: version.clone(),
                        newest: newest.clone(),
                    });
                }
            }
        }
    }
    FirmwareTable { groups, behind }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::printers::Printer;

    fn printer(id: i64, model: Option<&str>, firmware: Option<&str>) -> Printer {
        Printer {
            id,
            name: format!("P{id}"),
            ip_address: "10.0.0.1".into(),
            serial_number: "x".into(),
            model: model.map(str::to_owned),
            status: printyard_contracts::printer::PrinterState::Idle,
            site: "default".into(),
            auto_clear_plate: false,
            maintenance: false,
            firmware: firmware.map(str::to_owned),
            current_print: None,
        }
    }

    #[test]
    fn versions_group_by_model_newest_first_and_the_rest_are_behind() {
        let table = tabulate(&[
            printer(1, Some("A1 mini"), Some("01.07.02.00")),
            printer(2, Some("A1 mini"), Some("01.08.00.00")),
            printer(3, Some("A1 mini"), Some("01.07.10.00")),
            printer(4, Some("P1S"), Some("01.05.00.00")),
            printer(5, Some("A1 mini"), None),
        ]);
        let a1: Vec<(Option<&str>, bool, &[i64])> = table
            .groups
            .iter()
            .filter(|g| g.model.as_deref() == Some("A1 mini"))
            .map(|g| (g.version.as_deref(), g.newest, g.printer_ids.as_slice()))
            .collect();
        assert_eq!(
            a1,
            vec![
                (Some("01.08.00.00"), true, &[2][..]),
                (Some("01.07.10.00"), false, &[3][..]),
                (Some("01.07.02.00"), false, &[1][..]),
                (None, false, &[5][..]),
            ]
        );
        let behind: Vec<(i64, &str)> = table
            .behind
            .iter()
            .map(|b| (b.printer_id, b.newest.as_str()))
            .collect();
        assert_eq!(behind, vec![(3, "01.08.00.00"), (1, "01.08.00.00")]);
        assert!(
            table
                .groups
                .iter()
                .any(|g| g.model.as_deref() == Some("P1S") && g.newest),
            "a model's only version is its newest"
        );
    }
}

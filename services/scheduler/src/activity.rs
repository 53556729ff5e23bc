//! Each printer's [`Activity`] for utilisation: the scheduler alone sees a printer's state
//! together with its plate, its maintenance mode and the queue's work for it. Every second each
//! replica looks at every printer and publishes `printer_activity` on `FARM_EVENTS` when one's
//! activity changed since it last told (and, on start, every printer's). Replicas tell the
//! same changes a few milliseconds apart: `stats` keeps every fact, and consecutive facts of one
//! state are one spell, so a repeated fact changes no hour.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::StreamExt;
use printyard_contracts::farm::{EventKind, FarmEvent, event_id};
use printyard_contracts::printer::{HmsStatus, PrinterState};
use printyard_contracts::utilisation::{Activity, ActivityChanged};
use sqlx::PgPool;

use crate::db;
use crate::farm::{FarmView, PrinterView};
use crate::matching::{Wants, is_for};

/// How often each replica looks.
pub const SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Events published at once.
const PUBLISH_CONCURRENCY: usize = 64;

/// The targets of the jobs waiting (pending, or being sent to a printer).
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct Work {
    pub printer_id: Option<i64>,
    pub model: Option<String>,
    pub site: Option<String>,
    pub model_id: Option<String>,
    pub printer_assigned: Option<i64>,
}

impl Work {
    fn wants(&self) -> Wants<'_> {
        Wants {
            printer_id: self.printer_assigned.or(self.printer_id),
            model: self.model.as_deref(),
            site: self.site.as_deref(),
            model_id: self.model_id.as_deref(),
            filaments: &[],
            use_ams: None,
        }
    }
}

/// What `printer` spends its time on now.
pub fn activity_of(printer: &PrinterView, plate_to_clear: bool, work: &[Work]) -> Activity {
    if printer.record.maintenance {
        return Activity::Maintenance;
    }
    let status = printer.status.as_ref().and_then(|s| s.status.as_ref());
    let hms_error = status.is_some_and(|s| s.hms_status == HmsStatus::Error);
    let print_error = status.is_some_and(|s| s.print_error.is_some());
    match printer.state() {
        PrinterState::Offline => Activity::Offline,
        PrinterState::Printing | PrinterState::Preparing => Activity::Printing,
        PrinterState::Paused if hms_error || print_error => Activity::Error,
        PrinterState::Paused => Activity::Paused,
        PrinterState::Finished | PrinterState::Failed
            if plate_to_clear && !printer.record.auto_clear_plate =>
        {
            Activity::AwaitingClear
        }
        PrinterState::Idle | PrinterState::Finished | PrinterState::Failed => {
            if hms_error {
                Activity::Error
            } else if work.iter().any(|w| is_for(&w.wants(), printer)) {
                Activity::IdleQueued
            } else {
                Activity::Idle
            }
        }
    }
}

/// One replica's watch over the farm's activity.
#[derive(Clone)]
pub struct Activities {
    pool: PgPool,
    farm: FarmView,
    jetstream: async_nats::jetstream::Context,
    told: Arc<Mutex<HashMap<i64, Activity>>>,
}

impl Activities {
    pub fn new(pool: PgPool, farm: FarmView, jetstream: async_nats::jetstream::Context) -> Self {
        Self {
            pool,
            farm,
            jetstream,
            told: Arc::default(),
        }
    }

    /// One look at every printer; publishes the changes.
    pub async fn sweep(&self) -> Result<(), sqlx::Error> {
        let printers = self.farm.printers();
        let plates = db::plates_to_clear(&self.pool).await?;
        // The queue is read only when some printer is idle (the question it answers).
        let idle = printers
            .iter()
            .any(|p| activity_of(p, plates.contains(&p.id()), &[]) == Activity::Idle);
        let work: Vec<Work> = if idle {
            sqlx::query_as(
                "SELECT DISTINCT printer_id, model, site, model_id, printer_assigned \
                 FROM queue.jobs WHERE status IN ('pending', 'dispatching')",
            )
            .fetch_all(&self.pool)
            .await?
        } else {
            Vec::new()
        };
        let changed: Vec<(PrinterView, Activity)> = {
            let Ok(mut told) = self.told.lock() else {
                return Ok(());
            };
            let present: HashSet<i64> = printers.iter().map(PrinterView::id).collect();
            told.retain(|id, _| present.contains(id));
            printers
                .into_iter()
                .filter_map(|p| {
                    let now = activity_of(&p, plates.contains(&p.id()), &work);
                    (told.get(&p.id()) != Some(&now)).then_some((p, now))
                })
                .collect()
        };
        let at = Utc::now();
        let published: Vec<(i64, Activity)> = futures::stream::iter(changed)
            .map(|(printer, activity)| async move {
                let kind = EventKind::PrinterActivity;
                let event = FarmEvent {
                    id: event_id(
                        &printer.record.serial,
                        kind,
                        &format!("{}.{}", activity.as_str(), at.timestamp_micros()),
                    ),
                    kind,
                    site: printer.record.site.clone(),
                    printer_id: printer.id(),
                    serial: printer.record.serial.clone(),
                    at,
                    data: serde_json::to_value(ActivityChanged { activity }).unwrap_or_default(),
                };
                printyard_service::farm_events::publish(&self.jetstream, &event)
                    .await
                    .ok()
                    .map(|()| (printer.id(), activity))
            })
            .buffer_unordered(PUBLISH_CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await;
        // What was not published is told again at the next look.
        if let Ok(mut told) = self.told.lock() {
            told.extend(published);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use printyard_contracts::farm::{PrinterRecord, Site, StatusRecord};
    use printyard_contracts::printer::PrinterStatus;

    fn printer(state: PrinterState, connected: bool) -> PrinterView {
        let status: PrinterStatus = serde_json::from_value(serde_json::json!({
            "state": state, "progress": 0, "remaining_time": 0, "current_layer": 0,
            "total_layers": 0, "temperatures": {"nozzle": 0.0, "nozzle_target": 0.0,
            "bed": 0.0, "bed_target": 0.0, "chamber": null}, "hms_status": "ok", "hms": [],
            "job_name": null, "gcode_file": null, "task_id": null, "print_error": null,
            "filaments": [], "has_ams": false
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        PrinterView {
            record: PrinterRecord {
                id: 1,
                name: "Desk".into(),
                site: Site::default(),
                host: "127.0.0.1".into(),
                serial: "01P00A000000001".into(),
                access_code: "x".into(),
                model: Some("P1S".into()),
                tls_pin: None,
                tls_insecure: false,
                auto_clear_plate: false,
                maintenance: false,
            },
            status: Some(StatusRecord {
                printer_id: 1,
                serial: "01P00A000000001".into(),
                connected,
                last_seen: None,
                connection_error: None,
                model: None,
                tls_pin: None,
                status: Some(status),
                firmware: None,
            }),
            spools: Default::default(),
        }
    }

    #[test]
    fn each_state_of_a_printer_is_one_activity() {
        use Activity as A;
        use PrinterState as S;
        assert_eq!(
            activity_of(&printer(S::Printing, true), false, &[]),
            A::Printing
        );
        assert_eq!(
            activity_of(&printer(S::Preparing, true), true, &[]),
            A::Printing
        );
        assert_eq!(
            activity_of(&printer(S::Paused, true), false, &[]),
            A::Paused
        );
        assert_eq!(
            activity_of(&printer(S::Printing, false), false, &[]),
            A::Offline
        );
        assert_eq!(
            activity_of(&printer(S::Finished, true), true, &[]),
            A::AwaitingClear
        );
        assert_eq!(
            activity_of(&printer(S::Failed, true), true, &[]),
            A::AwaitingClear
        );
        assert_eq!(
            activity_of(&printer(S::Finished, true), false, &[]),
            A::Idle
        );
        assert_eq!(activity_of(&printer(S::Idle, true), false, &[]), A::Idle);

        let mut auto = printer(S::Finished, true);
        auto.record.auto_clear_plate = true;
        assert_eq!(activity_of(&auto, true, &[]), A::Idle);

        let mut errored = printer(S::Paused, true);
        if let Some(s) = errored.status.as_mut().and_then(|s| s.status.as_mut()) {
            s.print_error = Some("0300_4000".into());
        }
        assert_eq!(activity_of(&errored, false, &[]), A::Error);

        let mut serviced = printer(S::Printing, false);
        serviced.record.maintenance = true;
        assert_eq!(activity_of(&serviced, false, &[]), A::Maintenance);
    }

    #[test]
    fn idle_with_a_job_for_it_is_told_apart_from_idle_with_none() {
        let idle = printer(PrinterState::Idle, true);
        let for_it = Work {
            printer_id: Some(1),
            ..Work::default()
        };
        let for_another = Work {
            printer_id: Some(2),
            ..Work::default()
        };
        let any_p1s = Work {
            model: Some("P1S".into()),
            ..Work::default()
        };
        let any_a1 = Work {
            model: Some("A1".into()),
            ..Work::default()
        };
        assert_eq!(activity_of(&idle, false, &[for_it]), Activity::IdleQueued);
        assert_eq!(
            activity_of(&idle, false, std::slice::from_ref(&for_another)),
            Activity::Idle
        );
        assert_eq!(activity_of(&idle, false, &[any_p1s]), Activity::IdleQueued);
        assert_eq!(
            activity_of(&idle, false, &[any_a1, for_another]),
            Activity::Idle
        );
    }
}

//! Auto-archiving: a durable consumer of `FARM_EVENTS`.
//!
//! Every replica pulls from the one durable consumer `archive`, so each event is handled by one
//! of them, and after a restart the consumer resumes where it was acknowledged. An event's id is
//! recorded in `applied_events` in the same transaction as its effect, so a redelivery (a crash
//! between commit and ack) changes nothing. The events of one printer are handled one at a time
//! in the stream's order by a replica (the consumer's lanes), and under the printer's lock in
//! Postgres whichever replica handles them; the rules of [`crate::record`] decide what each
//! means, written so that a different order still leaves one archive per print.
//!
//! The inputs: the gateway's `print_started`, `print_ended`, `print_file` and `printer_state`,
//! and `api`'s `printer_removed`. The outputs: `archive_created` once a print's archive exists
//! (the scheduler links its job to it, webhooks announce it), and, through the trigger and the
//! relay ([`crate::outbox`]), the end of every print whichever witness saw it.
//!
//! Prints the queue sent carry their job's tag in their name: their archive records the job,
//! takes its name without the tag, and reuses the library file the gateway reports it sent
//! (`source_archive` in `print_file`).

use std::time::Duration;

use async_nats::jetstream;
use printyard_contracts::farm::{EventKind, FarmEvent, event_id};
use printyard_service::farm_events::{ConsumerOptions, Delivery};
use sqlx::PgPool;

use crate::intake::{Intake, IntakeError, PlateOf, Stored};
use crate::plan::Plans;
use crate::print_data::{PrintData, input_of, job_filename, print_key};
use crate::record::{self, Step, Target};
use crate::steps::{self, NewPrint};

/// What handling an event needs.
#[derive(Clone)]
pub struct Context {
    pub jetstream: jetstream::Context,
    pub pool: PgPool,
    pub intake: Intake,
    pub plans: Plans,
}

/// The durable consumer's name.
pub const CONSUMER: &str = "archive";

/// What became of an event.
#[derive(Debug)]
pub enum Handled {
    Done,
    /// Try again later (database or storage down, or an event it follows not applied yet).
    Retry(String),
}

/// The archive's durable consumer, `concurrency` lanes per replica.
pub fn consumer(concurrency: usize) -> ConsumerOptions {
    ConsumerOptions {
        name: CONSUMER,
        // A long intake (a 1 GiB file) keeps its event in hand meanwhile.
        ack_wait: Duration::from_secs(30),
        concurrency,
    }
}

/// Handles one event for the consumer: `Err` asks for it again.
pub async fn handle(context: Context, event: FarmEvent, delivery: Delivery) -> Result<(), String> {
    match apply(&context, &event, delivery.patient()).await {
        Handled::Done => Ok(()),
        Handled::Retry(reason) => Err(reason),
    }
}

/// An archive a print event created.
struct Created {
    archive_id: i64,
}

/// The kinds the archive acts on.
fn relevant(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::PrintStarted
            | EventKind::PrintEnded
            | EventKind::PrintFile
            | EventKind::PrinterState
            | EventKind::PrinterRemoved
    )
}

/// Applies `event`. `patient`: an event that comes before one it follows (handled by another
/// replica meanwhile) is to be tried again rather than applied (see [`record::decide`]).
pub async fn apply(context: &Context, event: &FarmEvent, patient: bool) -> Handled {
    let (pool, intake) = (&context.pool, &context.intake);
    let kind = event.kind;
    if !relevant(kind) {
        return Handled::Done;
    }
    let data: PrintData = serde_json::from_value(event.data.clone()).unwrap_or_default();
    match already_applied(pool, &event.id).await {
        Ok(true) => {
            if let Some(object) = &data.object {
                intake
                    .discard(data.domain.as_deref(), data.bucket.as_deref(), object)
                    .await;
            }
            // A crash between the commit and `archive_created` leaves it unsent: send it again
            // (its id makes a repeat within the stream's window harmless).
            if kind == EventKind::PrintStarted
                && let Some(key) = print_key(event, &data)
                && let Ok(Some(archive_id)) = sqlx::query_scalar::<_, i64>(
                    "SELECT id FROM archive.archives WHERE print_key = $1",
                )
                .bind(&key)
                .fetch_optional(pool)
                .await
            {
                announce(context, event, &data, Created { archive_id }).await;
            }
            return Handled::Done;
        }
        Ok(false) => {}
        Err(err) => return Handled::Retry(err.to_string()),
    }
    // The file is stored before the transaction (it can take long); it is content-addressed,
    // so doing it twice after a crash stores nothing twice.
    let file = match (&data.object, kind) {
        (Some(object), EventKind::PrintFile) => match intake
            .take(
                data.domain.as_deref(),
                data.bucket.as_deref(),
                object,
                PlateOf::Print(data.plate),
            )
            .await
        {
            Ok(stored) => Some(Ok(stored)),
            Err(err) if err.is_transient() => return Handled::Retry(err.to_string()),
            Err(err) => Some(Err(err)),
        },
        _ => None,
    };
    let result = write(context, event, &data, file.as_ref(), patient).await;
    match result {
        Ok(Written::Early) => Handled::Retry(format!(
            "{} came before an event of its printer it follows",
            kind.as_str()
        )),
        Ok(Written::Done(created)) => {
            if let Some(object) = &data.object {
                intake
                    .discard(data.domain.as_deref(), data.bucket.as_deref(), object)
                    .await;
            }
            if let Some(created) = created {
                announce(context, event, &data, created).await;
            }
            metrics::counter!("printyard_archive_events_applied_total", "kind" => kind.as_str())
                .increment(1);
            Handled::Done
        }
        Err(err) => Handled::Retry(err.to_string()),
    }
}

async fn already_applied(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM archive.applied_events WHERE event_id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// Publishes `archive_created` for a print's new archive (retried by the stream client; an
/// archive that misses it is still listed, only the scheduler's link waits for a redelivery).
async fn announce(context: &Context, event: &FarmEvent, data: &PrintData, created: Created) {
    let announced = FarmEvent {
        id: event_id(
            &event.serial,
            EventKind::ArchiveCreated,
            &created.archive_id.to_string(),
        ),
        kind: EventKind::ArchiveCreated,
        site: event.site.clone(),
        printer_id: event.printer_id,
        serial: event.serial.clone(),
        at: chrono::Utc::now(),
        data: serde_json::json!({
            "archive_id": created.archive_id,
            "print": data.print,
            "printer_name": data.printer_name,
            "queue_job": data.queue_job(),
            "filename": job_filename(data),
            "status": "printing",
        }),
    };
    if printyard_service::farm_events::publish(&context.jetstream, &announced)
        .await
        .is_err()
    {
        tracing::warn!(
            archive = created.archive_id,
            "archive_created not published"
        );
    }
}

/// What writing an event did.
enum Written {
    /// Applied; the archive it created, if any.
    Done(Option<Created>),
    /// Not applied: it came before an event it follows.
    Early,
}

/// Applies one event in one transaction, under its printer's lock.
async fn write(
    context: &Context,
    event: &FarmEvent,
    data: &PrintData,
    file: Option<&Result<Stored, IntakeError>>,
    patient: bool,
) -> Result<Written, sqlx::Error> {
    let mut tx = context.pool.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO archive.applied_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(&event.id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        tx.commit().await?;
        return Ok(Written::Done(None));
    }
    let Some((input, key)) = input_of(event, data) else {
        tx.commit().await?;
        return Ok(Written::Done(None));
    };
    steps::lock_printer(&mut tx, event.printer_id).await?;
    let known = steps::known(&mut tx, event.printer_id, &input.keys()).await?;
    let steps = record::decide(&input, &known, patient);
    if steps == [Step::Wait] {
        // Not applied: rolled back, so its id is not recorded either.
        return Ok(Written::Early);
    }
    let mut created: Option<(i64, bool)> = None;
    for step in steps {
        let target = |target: Target| match target {
            Target::Existing(id) => Some(id),
            Target::Created => created.map(|(id, _)| id),
        };
        match step {
            Step::Create { unseen_start } => {
                let print = NewPrint {
                    key: key.as_deref(),
                    data,
                    printer_id: event.printer_id,
                    site: event.site.as_str(),
                    at: event.at,
                    started: unseen_start || event.kind == EventKind::PrintStarted,
                    unseen_start,
                };
                created = Some(steps::create(&mut tx, &print).await?);
            }
            Step::FillStart(id) => steps::fill_start(&mut tx, id, data, event.at).await?,
            Step::Close(on, ending) => {
                if let Some(id) = target(on) {
                    steps::close(&mut tx, id, &ending).await?;
                }
            }
            Step::Correct(id, ending) => steps::correct(&mut tx, id, &ending).await?,
            Step::AttachFile(on) => {
                if let Some(id) = target(on) {
                    steps::attach_file(&mut tx, &context.plans, id, data, file).await?;
                }
            }
            Step::Alias(id) => {
                if let Some(key) = &key {
                    steps::alias(&mut tx, id, key).await?;
                }
            }
            Step::Wait => {}
        }
    }
    tx.commit().await?;
    Ok(Written::Done(
        created
            .filter(|(_, new)| *new)
            .map(|(archive_id, _)| Created { archive_id }),
    ))
}

//! `GET /health`: the reference's `status`, `database` and `mqtt`, plus NATS and the
//! instances of every service. `unhealthy` (503) when Postgres or NATS is unreachable;
//! `degraded` (200) when a service has no running instance.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use printyard_contracts::ServiceName;
use printyard_service::{db, nats};
use serde::Serialize;

use crate::discovery;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: &'static str,
    /// `connected` or `disconnected`.
    pub database: &'static str,
    /// `connected` when a printer gateway is running, else `disconnected`.
    pub mqtt: &'static str,
    pub nats: &'static str,
    #[schema(value_type = BTreeMap<String, ServiceHealth>)]
    pub services: BTreeMap<&'static str, ServiceHealth>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceHealth {
    /// `up`, `down`, or `unknown` when NATS cannot be asked.
    pub status: &'static str,
    pub instances: usize,
}

fn connected(ok: bool) -> &'static str {
    if ok { "connected" } else { "disconnected" }
}

/// Health of the system. Needs no API key.
#[utoipa::path(
    get, path = "/health", operation_id = "getHealth", tag = "system",
    responses(
        (status = 200, description = "`healthy` or `degraded`", body = Health),
        (status = 503, description = "`unhealthy`: Postgres or NATS unreachable", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let nats_client = state.rpc.nats();
    let (database, instances) = tokio::join!(
        db::ping(&state.db, Duration::from_secs(1)),
        discovery::all_instances(nats_client, state.http.discovery_window()),
    );
    let database_ok = database.is_ok();
    let nats_ok = nats::is_connected(nats_client);
    let services: BTreeMap<_, _> = instances
        .into_iter()
        .map(|(service, answer)| {
            let health = match answer {
                Ok(0) => ServiceHealth {
                    status: "down",
                    instances: 0,
                },
                Ok(n) => ServiceHealth {
                    status: "up",
                    instances: n,
                },
                Err(_) => ServiceHealth {
                    status: "unknown",
                    instances: 0,
                },
            };
            (service.as_str(), health)
        })
        .collect();
    let all_up = services.values().all(|s| s.status == "up");
    let gateway_up = services
        .get(ServiceName::Gateway.as_str())
        .is_some_and(|s| s.status == "up");
    let status = if !database_ok || !nats_ok {
        "unhealthy"
    } else if all_up {
        "healthy"
    } else {
        "degraded"
    };
    let code = if status == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Health {
        status,
        database: connected(database_ok),
        mqtt: connected(gateway_up),
        nats: connected(nats_ok),
        services,
    };
    (code, Json(body)).into_response()
}

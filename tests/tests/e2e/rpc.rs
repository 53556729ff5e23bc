//! Typed service calls over NATS: errors keep their code across the hop, bad requests are
//! refused, and a call to a service that is not running fails at once instead of hanging.

use std::time::Duration;

use printyard_contracts::rpc::Empty;
use printyard_contracts::{Endpoint, ErrorBody, ErrorCode, ServiceName};
use printyard_service::rpc::{RpcClient, RpcError};
use printyard_service::{Runtime, RuntimeOptions};
use printyard_tests::TestEnv;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Lookup {
    id: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Found {
    name: String,
}

const LOOKUP: Endpoint<Lookup, Found> = Endpoint::new(ServiceName::Stats, "test-lookup");
const LOOKUP_UNTYPED: Endpoint<Empty, Found> = Endpoint::new(ServiceName::Stats, "test-lookup");

async fn start_lookup_service(env: &TestEnv, shutdown: CancellationToken) -> Runtime {
    let runtime = Runtime::start(
        RuntimeOptions {
            service: ServiceName::Stats,
            description: "test",
            nats: &env.nats_config(),
            database: None,
            admin: &env.admin_config(),
        },
        shutdown,
    )
    .await
    .unwrap();
    runtime
        .serve(LOOKUP, |req: Lookup| async move {
            if req.id == 7 {
                Ok(Found {
                    name: "Workshop X1C".into(),
                })
            } else {
                Err(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("Printer {} not found", req.id),
                ))
            }
        })
        .await
        .unwrap();
    runtime
}

#[tokio::test]
async fn a_call_returns_the_handlers_answer_and_its_errors_keep_their_code() {
    let env = TestEnv::new().await;
    let _service = start_lookup_service(&env, CancellationToken::new()).await;
    let rpc = RpcClient::new(env.nats.client().await, Duration::from_secs(2));

    let found = rpc.call(LOOKUP, &Lookup { id: 7 }).await.unwrap();
    assert_eq!(
        found,
        Found {
            name: "Workshop X1C".into()
        }
    );

    match rpc.call(LOOKUP, &Lookup { id: 8 }).await {
        Err(RpcError::Remote(body)) => {
            assert_eq!(
                body,
                ErrorBody::new(ErrorCode::NotFound, "Printer 8 not found")
            )
        }
        other => panic!("expected a remote NOT_FOUND, got {other:?}"),
    }
}

#[tokio::test]
async fn a_request_that_does_not_decode_is_refused_as_a_validation_error() {
    let env = TestEnv::new().await;
    let _service = start_lookup_service(&env, CancellationToken::new()).await;
    let rpc = RpcClient::new(env.nats.client().await, Duration::from_secs(2));

    match rpc.call(LOOKUP_UNTYPED, &Empty {}).await {
        Err(RpcError::Remote(body)) => {
            assert_eq!(body.code, ErrorCode::ValidationError);
            assert!(
                body.detail.contains("id"),
                "names the missing field: {}",
                body.detail
            );
        }
        other => panic!("expected VALIDATION_ERROR, got {other:?}"),
    }
}

#[tokio::test]
async fn a_call_to_a_service_that_is_not_running_fails_as_unavailable_without_waiting_out_the_deadline()
 {
    let env = TestEnv::new().await;
    let rpc = RpcClient::new(env.nats.client().await, Duration::from_secs(30));

    let started = std::time::Instant::now();
    let result = rpc.call(LOOKUP, &Lookup { id: 7 }).await;

    assert!(
        matches!(
            result,
            Err(RpcError::Unavailable {
                service: "stats",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(
        result.unwrap_err().to_body().code,
        ErrorCode::ServiceUnavailable
    );
    // NATS answers "no responders" at once; waiting out the 30 s deadline would be a hang.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_stopped_service_finishes_in_flight_requests_then_unsubscribes() {
    let env = TestEnv::new().await;
    let shutdown = CancellationToken::new();
    let runtime = Runtime::start(
        RuntimeOptions {
            service: ServiceName::Stats,
            description: "test",
            nats: &env.nats_config(),
            database: None,
            admin: &env.admin_config(),
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    runtime
        .serve(LOOKUP, |req: Lookup| async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            Ok(Found {
                name: format!("slow {}", req.id),
            })
        })
        .await
        .unwrap();
    let stopped = tokio::spawn(runtime.run_until_stopped());
    let rpc = RpcClient::new(env.nats.client().await, Duration::from_secs(5));

    let in_flight = tokio::spawn({
        let rpc = rpc.clone();
        async move { rpc.call(LOOKUP, &Lookup { id: 1 }).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();

    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.unwrap(),
        Found {
            name: "slow 1".into()
        },
        "in-flight work finishes"
    );
    stopped.await.unwrap().unwrap();
    let after = rpc.call(LOOKUP, &Lookup { id: 2 }).await;
    assert!(
        matches!(after, Err(RpcError::Unavailable { .. })),
        "{after:?}"
    );
}

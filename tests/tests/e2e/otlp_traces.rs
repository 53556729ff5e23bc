//! One trace, as an operator's collector receives it: `api` and the gateway, each in a process
//! of its own, export their spans over OTLP/HTTP (protobuf) to a receiver this test runs, and
//! a pause request is followed from the API, over NATS, into the gateway that sends it to the
//! printer, and back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::GcodeState;
use printyard_tests::nats_server::free_port;
use printyard_tests::{
    ChildService, SimFarm, TestEnv, eventually, keyed_http, post_printer, run_child_api,
    run_child_gateway, wait_connected,
};
use prost::Message as _;
use serde_json::json;

/// The api process of the test below (run only by it).
#[test]
#[ignore = "a child process of a_pause_request_is_one_trace_from_the_api_through_nats_into_the_gateway"]
fn child_api() {
    run_child_api();
}

/// The gateway process of the test below (run only by it).
#[test]
#[ignore = "a child process of a_pause_request_is_one_trace_from_the_api_through_nats_into_the_gateway"]
fn child_gateway() {
    run_child_gateway();
}

/// A span as received: the service that sent it, and what the test looks at.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<KeyValue>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                other => format!("{other:?}"),
            })
    }
}

/// An OTLP/HTTP trace receiver on a free port: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, as the services' exporter sends it.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                let mut kept = kept.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                            AnyValue::StringValue(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                        kept.push(Received {
                            service: service.clone(),
                            name: span.name,
                            trace_id: span.trace_id,
                            span_id: span.span_id,
                            parent_span_id: span.parent_span_id,
                            attributes: span.attributes,
                        });
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

#[tokio::test]
async fn a_pause_request_is_one_trace_from_the_api_through_nats_into_the_gateway() {
    let env = TestEnv::new().await;
    let (collector, spans) = receiver().await;
    // The demo print takes 1,095 s: about 55 s at this speed, still printing when paused.
    let sim = SimFarm::start(&[Model::A1Mini], 20.0).await;
    let mut gateway = sim.gateway_config(&env);
    gateway.telemetry.otlp_endpoint = Some(collector.clone());
    let _gateway = ChildService::spawn("otlp_traces::child_gateway", &gateway);
    let mut api = env.api_config();
    let port = free_port();
    api.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    api.telemetry.otlp_endpoint = Some(collector);
    let _api = ChildService::spawn_api("otlp_traces::child_api", &api);
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let key = env
        .api_key(&[Permission::Read, Permission::Write, Permission::Control])
        .await;
    let client = keyed_http(&key);
    eventually(
        Duration::from_secs(20),
        "the api process serving",
        || async {
            let health = client.get(format!("{base}/health")).send().await.ok()?;
            health.status().is_success().then_some(())
        },
    )
    .await;
    let printer = &sim.farm.printers[0];
    let id = post_printer(
        &client,
        &base,
        &json!({
            "name": "traced", "ip_address": printer.spec.ip.to_string(),
            "access_code": printer.spec.access_code, "serial_number": printer.spec.serial,
        }),
    )
    .await;
    wait_connected(&client, &base, id, Duration::from_secs(20)).await;
    printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    eventually(Duration::from_secs(20), "the printer printing", || async {
        (printer.snapshot().gcode_state == GcodeState::Running).then_some(())
    })
    .await;

    // The caller's own trace id, so that the trace is this request's.
    let trace_id = "5cf92f3577b34da6a3ce929d0e0e4736";
    let response = client
        .post(format!("{base}/printers/{id}/pause"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let trace_id = hex::decode(trace_id).unwrap();

    // Both processes export in batches (every 5 s).
    let (api_spans, command) = eventually(
        Duration::from_secs(30),
        "the api's and the gateway's spans of the request",
        || async {
            let spans = spans.lock().unwrap();
            let ours: Vec<&Received> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
            let api: Vec<Received> = ours
                .iter()
                .filter(|s| s.service == "printyard-api")
                .map(|s| (*s).clone())
                .collect();
            let command = ours
                .iter()
                .find(|s| s.service == "printyard-gateway" && s.name == "printer.command")
                .map(|s| (*s).clone())?;
            (!api.is_empty()).then_some((api, command))
        },
    )
    .await;
    // The gateway's span is a child of a span of the api's request: the context crossed NATS.
    assert!(
        api_spans
            .iter()
            .any(|s| s.span_id == command.parent_span_id),
        "the gateway's span hangs under the api's: {command:?} {api_spans:?}"
    );
    assert_eq!(
        command.attribute("printyard.command").as_deref(),
        Some("pause")
    );
    // And back: the span ends with the printer's answer, which the api returned.
    assert_eq!(
        command.attribute("printyard.outcome").as_deref(),
        Some("accepted")
    );
    assert_eq!(command.attribute("printyard.printer"), Some(id.to_string()));
}

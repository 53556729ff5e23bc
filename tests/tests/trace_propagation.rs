//! Trace context crosses NATS: a request entering `api` and its handler in `archive` share
//! one trace id, and so do a JetStream publisher and its consumer. Spans are captured with
//! OpenTelemetry's in-memory exporter.

use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use printyard_tests::{TestEnv, http, spawn_api, spawn_archive};
use tracing::Instrument;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

struct Capture {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

/// One subscriber for this test binary (tracing's global default can be set once).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        printyard_service::telemetry::install_propagator();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("printyard-tests")));
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        Capture { exporter, provider }
    })
}

fn spans_named(spans: &[SpanData], name: &str) -> Vec<SpanData> {
    spans.iter().filter(|s| s.name == name).cloned().collect()
}

fn parent_of(span: &SpanData) -> SpanId {
    span.parent_span_id
}

#[tokio::test]
async fn a_request_entering_api_and_its_handler_in_archive_share_one_trace_id() {
    let capture = capture();
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let _archive = spawn_archive(&env).await;

    // A client-chosen trace id, so this test finds its own spans among any others.
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let key = env.api_key(&[printyard_api::auth::Permission::Read]).await;
    let response = http()
        .get(api.api_url("/system/info"))
        .header("X-API-Key", key)
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let spans = printyard_tests::eventually(Duration::from_secs(5), "spans", || async {
        let _ = capture.provider.force_flush();
        let spans: Vec<_> = capture
            .exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect();
        (!spans_named(&spans, "rpc.handle").is_empty()
            && !spans_named(&spans, "http.request").is_empty())
        .then_some(spans)
    })
    .await;

    let http_span = &spans_named(&spans, "http.request")[0];
    let call = &spans_named(&spans, "rpc.call")[0];
    let handle = &spans_named(&spans, "rpc.handle")[0];
    assert_eq!(
        parent_of(http_span),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        "the HTTP span continues the caller's trace"
    );
    assert_eq!(parent_of(call), http_span.span_context.span_id());
    assert_eq!(
        parent_of(handle),
        call.span_context.span_id(),
        "archive's handler is a child of api's call, across NATS"
    );
}

#[tokio::test]
async fn a_jetstream_consumer_continues_the_publishers_trace() {
    capture();
    let env = TestEnv::new().await;
    let client = env.nats.client().await;
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "TRACE_TEST".into(),
            subjects: vec!["trace.test".into()],
            ..Default::default()
        })
        .await
        .unwrap();

    let publish = tracing::info_span!("producer");
    let producer_ctx = {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        publish.context()
    };
    printyard_service::nats::publish_to_stream(
        &jetstream,
        "trace.test".into(),
        "hello".into(),
        Some("event-1"),
        Duration::from_secs(5),
    )
    .instrument(publish.clone())
    .await
    .unwrap();
    drop(publish);

    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("trace-test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("message arrives")
        .unwrap()
        .unwrap();
    assert_eq!(
        message
            .headers
            .as_ref()
            .unwrap()
            .get("Nats-Msg-Id")
            .unwrap()
            .as_str(),
        "event-1"
    );
    let handling = tracing::info_span!("consumer");
    printyard_service::nats::adopt_context(&handling, message.headers.as_ref());
    let consumer_ctx = {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        handling.context()
    };
    message.ack().await.unwrap();

    use opentelemetry::trace::TraceContextExt;
    let published = producer_ctx.span().span_context().trace_id();
    assert_ne!(published, TraceId::INVALID);
    assert_eq!(consumer_ctx.span().span_context().trace_id(), published);
}

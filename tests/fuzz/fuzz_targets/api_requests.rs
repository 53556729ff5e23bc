//! The API's request bodies and query strings through the extractors every route uses: each
//! body type as JSON (with the reference's content type and the default 1 MiB cap) and each
//! query type, and the date bounds of the statistics. A rejection must be the reference's
//! `{detail, code}` with a 4xx status; nothing may panic. The first byte chooses the type, the
//! rest is the body or query string. (The handlers behind them, with their database, are
//! fuzzed through HTTP by `scripts/fuzz-api`.)
#![no_main]

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::http::{Request, header};
use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use printyard_api::error::ApiError;
use printyard_api::extract::{ApiJson, ApiQuery};
use printyard_api::routes as r;
use printyard_contracts as c;
use serde::de::DeserializeOwned;

/// A rejection as the client sees it.
async fn check_rejection(error: ApiError) {
    let response = error.into_response();
    let status = response.status();
    assert!(status.is_client_error(), "{status}");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("an error body");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
    assert!(
        json["detail"].is_string() && json["code"].is_string(),
        "{json}"
    );
}

async fn body<T: DeserializeOwned>(bytes: &[u8]) {
    let request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes.to_vec()))
        .expect("a request");
    // The cap the router sets (DefaultBodyLimit), small here so the fuzzer meets it.
    let mut request = request;
    DefaultBodyLimit::max(4096).apply(&mut request);
    if let Err(error) = ApiJson::<T>::from_request(request, &()).await {
        check_rejection(error).await;
    }
}

async fn query<T: DeserializeOwned>(query: &[u8]) {
    let query = String::from_utf8_lossy(query);
    let Ok(request) = Request::get(format!("/?{query}")).body(Body::empty()) else {
        return; // not a URI a client could send
    };
    let (mut parts, _) = request.into_parts();
    if let Err(error) = ApiQuery::<T>::from_request_parts(&mut parts, &()).await {
        check_rejection(error).await;
    }
}

async fn dates(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let (start, end) = text.split_once('\0').unwrap_or((&text, ""));
    let given = |s: &str| (!s.is_empty()).then_some(s.to_owned());
    let (start, end) = (given(start), given(end));
    if let Err(error) = printyard_api::dates::parse_range(start.as_deref(), end.as_deref()) {
        check_rejection(error).await;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    futures::executor::block_on(async {
        match which % 36 {
            0 => body::<c::archive::ArchivePatch>(rest).await,
            1 => body::<c::stats::CostSettings>(rest).await,
            2 => body::<r::CreateApiKey>(rest).await,
            3 => body::<r::printers::CreatePrinter>(rest).await,
            4 => body::<r::maintenance::Done>(rest).await,
            5 => body::<r::auth::Login>(rest).await,
            6 => body::<c::queue::NewJob>(rest).await,
            7 => body::<c::maintenance::NewMaintenanceTask>(rest).await,
            8 => body::<c::archive::NewProject>(rest).await,
            9 => body::<r::users::NewRole>(rest).await,
            10 => body::<c::filament::NewSpool>(rest).await,
            11 => body::<r::users::NewUserRequest>(rest).await,
            12 => body::<c::webhooks::NewWebhook>(rest).await,
            13 => body::<c::archive::ProjectPatch>(rest).await,
            14 => body::<c::queue::Reorder>(rest).await,
            15 => body::<r::users::RoleBody>(rest).await,
            16 => body::<c::filament::SpoolPatch>(rest).await,
            17 => body::<r::printers::UpdatePrinter>(rest).await,
            18 => body::<r::users::UserPatch>(rest).await,
            19 => body::<c::webhooks::WebhookPatch>(rest).await,
            20 => query::<r::archives::ArchiveQuery>(rest).await,
            21 => query::<r::audit::AuditQuery>(rest).await,
            22 => query::<r::webhooks::DeliveriesQuery>(rest).await,
            23 => query::<r::errors::ErrorCountsQuery>(rest).await,
            24 => query::<r::errors::ErrorsQuery>(rest).await,
            25 => query::<r::events::EventsQuery>(rest).await,
            26 => query::<r::archives::ExportQuery>(rest).await,
            27 => query::<r::printers::ListPrinters>(rest).await,
            28 => query::<r::queue::QueueQuery>(rest).await,
            29 => query::<r::spools::SpoolsQuery>(rest).await,
            30 => query::<r::statistics::StatsExportQuery>(rest).await,
            31 => query::<r::statistics::StatsQuery>(rest).await,
            32 => query::<r::camera::StreamQuery>(rest).await,
            33 => query::<r::spools::UsageQuery>(rest).await,
            34 => query::<r::utilisation::UtilisationQuery>(rest).await,
            _ => dates(rest).await,
        }
    });
});

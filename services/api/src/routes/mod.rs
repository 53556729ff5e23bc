//! The `/api/v1` router: every route is registered through utoipa so the OpenAPI document
//! lists exactly what is served, every matched route passes [`crate::auth::access::authorize`], and
//! unknown routes and methods answer in the reference's error format.

pub mod api_keys;
pub mod archives;
pub mod audit;
pub mod auth;
pub mod camera;
pub mod errors;
pub mod events;
pub mod firmware;
pub mod health;
pub mod maintenance;
pub mod printers;
pub mod projects;
pub mod queue;
pub mod spools;
pub mod statistics;
pub mod system;
pub mod users;
pub mod utilisation;
pub mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use printyard_contracts::{ErrorBody, ErrorCode};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::error_response;
use crate::openapi::ApiDoc;
use crate::state::AppState;

pub use api_keys::{CreateApiKey, CreatedApiKey};
pub use health::Health;
pub use system::SystemInfo;

/// The base path of every endpoint.
pub const BASE: &str = "/api/v1";

/// Marks a long-lived streamed answer (`/events`, a camera's MJPEG) so that reverse proxies pass
/// each part on as it comes: `X-Accel-Buffering: no` turns off nginx's response buffering (on
/// by default, it would hold events back until a buffer fills) and is honoured by other proxies
/// that copied it; `no-transform` keeps compressing proxies, which also wait for enough bytes
/// to compress, away from it. `cache` is the stream's own `Cache-Control` directive.
pub(crate) fn unbuffered(headers: &mut HeaderMap, cache: &'static str) {
    let cache_control = match cache {
        "no-store" => "no-store, no-transform",
        _ => "no-cache, no-transform",
    };
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static(cache_control),
    );
    headers.insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
}

/// The `/api/v1` routes (relative to [`BASE`]) and their OpenAPI description.
pub fn v1() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(system::info))
        .routes(routes!(api_keys::list, api_keys::create))
        .routes(routes!(api_keys::current))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::sso_info))
        .routes(routes!(auth::sso_login))
        .routes(routes!(auth::sso_callback))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(users::end_sessions))
        .routes(routes!(users::list_roles, users::create_role))
        .routes(routes!(users::replace_role, users::delete_role))
        .routes(routes!(audit::list))
        .routes(routes!(audit::export))
        .routes(routes!(printers::list, printers::create))
        .routes(routes!(firmware::table))
        .routes(routes!(printers::get, printers::update, printers::delete))
        .routes(routes!(printers::status))
        .routes(routes!(printers::refresh_status))
        .routes(routes!(printers::pause))
        .routes(routes!(printers::resume))
        .routes(routes!(printers::stop))
        .routes(routes!(printers::clear_plate))
        .routes(routes!(camera::stream))
        .routes(routes!(camera::snapshot))
        .routes(routes!(camera::stop))
        .routes(routes!(archives::list, archives::upload))
        .routes(routes!(archives::export))
        .routes(routes!(archives::get, archives::update, archives::delete))
        .routes(routes!(archives::download))
        .routes(routes!(archives::thumbnail))
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::get, projects::update, projects::delete))
        .routes(routes!(queue::list, queue::add))
        .routes(routes!(queue::remove))
        .routes(routes!(queue::reorder))
        .routes(routes!(statistics::statistics))
        .routes(routes!(statistics::export))
        .routes(routes!(utilisation::utilisation))
        .routes(routes!(errors::counts))
        .routes(routes!(errors::list))
        .routes(routes!(errors::retry))
        .routes(routes!(utilisation::export))
        .routes(routes!(statistics::costs, statistics::set_costs))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(spools::list, spools::create))
        .routes(routes!(spools::summary))
        .routes(routes!(spools::usage))
        .routes(routes!(spools::get, spools::update, spools::archive))
        .routes(routes!(maintenance::list))
        .routes(routes!(maintenance::tasks, maintenance::create_task))
        .routes(routes!(maintenance::delete_task))
        .routes(routes!(maintenance::done))
        .routes(routes!(events::stream));
    let (router, mut openapi) = router.split_for_parts();
    crate::openapi::finish_document(&mut openapi);
    (router, openapi)
}

/// The OpenAPI document `/api/v1/openapi.json` serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    v1().1
}

pub fn router(state: AppState) -> Router {
    let (v1, openapi) = v1();
    let v1 = v1
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::access::authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::audit::record,
        ));
    let docs = SwaggerUi::new(format!("{BASE}/docs")).url(format!("{BASE}/openapi.json"), openapi);
    Router::new()
        .nest(BASE, v1)
        .merge(docs)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.http.max_body_bytes))
        .layer(axum::middleware::from_fn(
            printyard_service::metrics::track_http,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            error_response(ErrorBody::new(
                ErrorCode::InternalError,
                "Internal server error",
            ))
        }))
        .with_state(state)
}

/// A request's span: at info level when traces are exported, else at debug (`RUST_LOG=debug`
/// puts the method and path on every log line of a request). An info span per request that
/// nothing exports cost a quarter of the status read's throughput.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    macro_rules! span {
        ($level:expr) => {
            tracing::span!(
                $level,
                "http.request",
                otel.kind = "server",
                http.method = %request.method(),
                http.path = %request.uri().path(),
            )
        };
    }
    let span = if printyard_service::telemetry::exporting() {
        span!(tracing::Level::INFO)
    } else {
        span!(tracing::Level::DEBUG)
    };
    printyard_service::telemetry::adopt_http_context(&span, request.headers());
    span
}

/// Paths outside the API: the dashboard's files, else the reference's 404.
async fn not_found(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(response) = crate::dashboard::serve(&method, uri.path(), &headers) {
        return response;
    }
    if method == Method::GET && uri.path() == "/" {
        return crate::dashboard::not_built();
    }
    error_response(ErrorBody::new(
        ErrorCode::NotFound,
        format!("No endpoint at {}", uri.path()),
    ))
}

async fn method_not_allowed() -> Response {
    error_response(ErrorBody::new(
        ErrorCode::MethodNotAllowed,
        "Method not allowed on this endpoint",
    ))
}

//! The OpenAPI description, generated from the handlers' annotations (so it cannot drift
//! from the code), and the interactive docs page served from the binary (no CDN).
//!
//! [`Conventions`] finishes the document the same way for every operation, so that standard
//! validators accept it and client generators make a good client from it: every response has
//! a description, every error response carries the one `ErrorBody` schema, and every response
//! of an endpoint behind an API key declares the `X-RateLimit-*` headers (and 429 its
//! `Retry-After`). Operation ids are set on each handler (`listPrinters`, `pausePrinter`, …)
//! and checked for uniqueness by the suite.

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Printyard API",
        description = "Runs Bambu Lab print farms. Every endpoint but `/health`, `/openapi.json`, \
                       `/docs` and sign-in needs an `X-API-Key` or a signed-in session (cookie, \
                       with `X-CSRF-Token` on changes). Errors are `{detail, code}`.",
    ),
    servers((url = "/api/v1")),
    modifiers(&ApiKeyScheme),
    components(schemas(printyard_contracts::ErrorBody)),
    tags(
        (name = "system", description = "Health and system information"),
        (name = "api-keys", description = "API keys (admin)"),
        (name = "printers", description = "Printers and their live status"),
        (name = "archives", description = "Every print with its 3MF; the upload library"),
        (name = "projects", description = "Archives grouped towards a target"),
        (name = "queue", description = "The print queue: jobs dispatched to idle printers"),
        (name = "statistics", description = "What the farm printed and what it cost"),
        (name = "webhooks", description = "Signed webhooks of the farm's events (admin)"),
        (name = "events", description = "The live event stream (server-sent events)"),
        (name = "camera", description = "Printer cameras: MJPEG streams and snapshots"),
        (name = "filament", description = "The spool inventory: spools, where they are loaded, what prints used"),
        (name = "people", description = "Sign-in (password and single sign-on), users and roles"),
        (name = "audit", description = "The audit log of every change and printer command (admin)"),
        (name = "maintenance", description = "Printer care: maintenance tasks by print hours, prints, filament or days"),
    )
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        // A signed-in person's session (the dashboard); its state-changing requests also carry
        // the session's `X-CSRF-Token`.
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("printyard_session"))),
        );
    }
}

/// The rate-limit headers, as they are named in `components.headers`.
const RATE_HEADERS: [(&str, &str, &str); 3] = [
    (
        "X-RateLimit-Limit",
        "RateLimitLimit",
        "Requests this key may make in the current window for this endpoint's class (read, write, control)",
    ),
    (
        "X-RateLimit-Remaining",
        "RateLimitRemaining",
        "Requests left in the current window",
    ),
    (
        "X-RateLimit-Reset",
        "RateLimitReset",
        "When the current window ends, in seconds since the Unix epoch",
    ),
];

/// The description of a response that has none of its own, by status.
fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "400" => "Bad request: the body is not JSON, or a path id is not a number",
        "401" => "No API key, or an unknown or revoked one",
        "403" => "The API key lacks this endpoint's permission",
        "404" => "Not found",
        "405" => "Method not allowed",
        "409" => "Conflict with the current state",
        "413" => "The request body is too large",
        "415" => "Unsupported media type",
        "422" => "Invalid input: the detail names the field",
        "429" => "Rate limited: retry after `Retry-After` seconds",
        "500" => "Internal error",
        "503" => "A service or the database did not answer in time: try again shortly",
        "504" => "The printer did not answer in time",
        _ => "Response",
    }
}

fn integer_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
        .description(Some(description))
        .build()
}

/// Applies the document-wide conventions once every route is in (the routes join the document
/// after `ApiDoc`'s own modifiers run, so this runs on the finished document).
pub fn finish_document(openapi: &mut utoipa::openapi::OpenApi) {
    Conventions.modify(openapi);
}

struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (_, name, description) in RATE_HEADERS {
            components
                .headers
                .insert(name.to_owned(), RefOr::T(integer_header(description)));
        }
        components.headers.insert(
            "RetryAfter".to_owned(),
            RefOr::T(integer_header(
                "Seconds until the rate limit allows a request again",
            )),
        );
        link_created_resources(openapi);
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                finish(operation);
            }
        }
    }
}

/// OpenAPI links from each `POST /things` to every operation on `/things/{id}…`, with the `id`
/// of the created resource: what a client (and a stateful fuzzer) does next with what it made.
fn link_created_resources(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::link::LinkBuilder;
    let paths = &openapi.paths.paths;
    let mut links: Vec<(String, String)> = Vec::new();
    for (collection, item) in paths {
        if item.post.is_none() || collection.contains('{') {
            continue;
        }
        let prefix = format!("{collection}/{{id}}");
        for (path, target) in paths {
            if path != &prefix && !path.starts_with(&format!("{prefix}/")) {
                continue;
            }
            // Only operations whose one path parameter is the id.
            if path.matches('{').count() != 1 {
                continue;
            }
            for operation in [
                &target.get,
                &target.post,
                &target.put,
                &target.patch,
                &target.delete,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(id) = &operation.operation_id {
                    links.push((collection.clone(), id.clone()));
                }
            }
        }
    }
    for (collection, target) in links {
        let Some(post) = openapi
            .paths
            .paths
            .get_mut(&collection)
            .and_then(|item| item.post.as_mut())
        else {
            continue;
        };
        let Some(RefOr::T(created)) = post.responses.responses.get_mut("201") else {
            continue;
        };
        created.links.insert(
            target.clone(),
            RefOr::T(
                LinkBuilder::new()
                    .operation_id(target)
                    .parameter("id", "$response.body#/id")
                    .build(),
            ),
        );
    }
}

fn finish(operation: &mut Operation) {
    let keyed = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    if keyed && let Some(requirements) = operation.security.as_mut() {
        // A key or a signed-in session, either will do.
        requirements.push(SecurityRequirement::new("session", Vec::<String>::new()));
    }
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if response.description.trim().is_empty() {
            response.description = default_description(status).to_owned();
        }
        let error = status.starts_with('4') || status.starts_with('5');
        if error && response.content.is_empty() {
            response.content.insert(
                "application/json".to_owned(),
                RefOr::T(
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                ),
            );
        }
        // A 401 comes before a key's budget is known; every other answer to a request with a
        // key carries the headers (a 403 too: the budget is drawn before the permission check).
        if keyed && status != "401" {
            for (header, name, _) in RATE_HEADERS {
                response.headers.insert(
                    header.to_owned(),
                    RefOr::Ref(Ref::new(format!("#/components/headers/{name}"))),
                );
            }
            if status == "429" {
                response.headers.insert(
                    "Retry-After".to_owned(),
                    RefOr::Ref(Ref::new("#/components/headers/RetryAfter")),
                );
            }
        }
    }
}

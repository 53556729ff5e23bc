//! The OpenAPI description, generated from the handlers' annotations (so it cannot drift
//! from the code), and the interactive docs page served from the binary (no CDN).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Printyard API",
        description = "Runs Bambu Lab print farms. Every endpoint but `/health`, `/openapi.json` \
                       and `/docs` needs an `X-API-Key`. Errors are `{detail, code}`.",
    ),
    servers((url = "/api/v1")),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "system", description = "Health and system information"),
        (name = "api-keys", description = "API keys (admin)"),
        (name = "printers", description = "Printers and their live status"),
        (name = "archives", description = "Every print with its 3MF; the upload library"),
        (name = "projects", description = "Archives grouped towards a target"),
        (name = "queue", description = "The print queue: jobs dispatched to idle printers"),
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
    }
}

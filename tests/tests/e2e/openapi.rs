//! The served OpenAPI document and the docs page.

use printyard_tests::{TestEnv, http, spawn_api};
use serde_json::Value;

#[tokio::test]
async fn the_openapi_document_is_public_and_describes_every_endpoint_and_the_key_scheme() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;

    let response = http()
        .get(api.api_url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "no key needed to read the description"
    );
    let doc: Value = response.json().await.unwrap();

    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "X-API-Key");
    for (method, path) in [
        ("get", "/health"),
        ("get", "/system/info"),
        ("get", "/api-keys"),
        ("post", "/api-keys"),
        ("delete", "/api-keys/{id}"),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is described");
    }
    let info = &doc["paths"]["/system/info"]["get"];
    assert_eq!(info["security"][0]["api_key"], serde_json::json!([]));
    for status in ["401", "403", "429", "503"] {
        assert!(
            info["responses"][status].is_object(),
            "/system/info documents {status}"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn the_interactive_docs_are_served_from_the_binary() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;

    let page = http().get(api.api_url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let script = http()
        .get(api.api_url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.status(),
        200,
        "assets come from the binary, not a CDN"
    );
    assert!(
        script.content_length().unwrap_or(0) > 100_000
            || script.text().await.unwrap().len() > 100_000
    );
}

/// The Python that `scripts/test` prepares with the OpenAPI tools nobody here wrote.
fn python() -> String {
    std::env::var("PRINTYARD_TEST_PYTHON")
        .expect("PRINTYARD_TEST_PYTHON is not set: run the suite with scripts/test")
}

/// Runs a command to completion, returning (success, stdout + stderr).
async fn run(program: &str, args: &[&str], envs: &[(&str, String)]) -> (bool, String) {
    let output = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn operation_ids_are_unique_method_names_and_every_response_is_described() {
    let doc = serde_json::to_value(printyard_api::routes::openapi_document()).unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                id.len() > 3
                    && id.chars().next().unwrap().is_ascii_lowercase()
                    && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{method} {path}: operationId {id:?} is not a method name"
            );
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            for (status, response) in operation["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has no description"
                );
                // `/health` answers 503 with its own report (load balancers read it).
                if (status.starts_with('4') || status.starts_with('5')) && path != "/health" {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status} answers the one error schema"
                    );
                }
            }
        }
    }
    assert!(operations >= 33, "{operations}");
    // Every answer to a keyed request but a 401 carries the rate-limit headers.
    let pause = &doc["paths"]["/printers/{id}/pause"]["post"]["responses"];
    for status in ["200", "409", "429"] {
        assert!(
            pause[status]["headers"]["X-RateLimit-Remaining"].is_object(),
            "{status}"
        );
    }
    assert!(pause["429"]["headers"]["Retry-After"].is_object());
    assert!(pause["401"]["headers"].is_null());
    let health = &doc["paths"]["/health"]["get"]["responses"]["200"];
    assert!(
        health["headers"].is_null(),
        "a public endpoint has no budget"
    );
    // Downloads declare what they send.
    let export = &doc["paths"]["/archives/export"]["get"]["responses"]["200"]["content"];
    assert!(export["text/csv"].is_object());
    assert!(
        export["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"].is_object()
    );
    assert!(
        doc["paths"]["/archives/{id}/thumbnail"]["get"]["responses"]["200"]["content"]["image/png"]
            .is_object()
    );
}

#[tokio::test]
async fn a_standard_validator_accepts_the_document_and_a_generated_client_calls_the_api() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.rate_limits.enabled = false;
    let api = printyard_tests::spawn_api_with(config).await;
    let _archive = printyard_tests::spawn_archive(&env).await;
    let key = env.api_key(&[printyard_api::auth::Permission::Admin]).await;
    let served = http()
        .get(api.api_url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &served).unwrap();
    let path = path.to_string_lossy().into_owned();
    let python = python();

    // openapi-spec-validator (PyPI): the OpenAPI 3.1 schema and its rules.
    let (ok, output) = run(&python, &["-m", "openapi_spec_validator", &path], &[]).await;
    assert!(ok, "the validator refuses the document:\n{output}");
    assert!(output.contains("OK"), "{output}");

    // openapi-python-client (PyPI) generates a client without skipping anything...
    let generator = std::path::Path::new(&python)
        .with_file_name("openapi-python-client")
        .to_string_lossy()
        .into_owned();
    let package = dir.path().join("printyard_client");
    // The generator handles binary bodies as `application/octet-stream`; its documented
    // override maps the thumbnail's PNG, the camera's JPEG and its MJPEG stream to that (the
    // document itself says `image/png`, `image/jpeg`, `multipart/x-mixed-replace`).
    let generator_config = dir.path().join("generator.yml");
    std::fs::write(
        &generator_config,
        "content_type_overrides:\n  image/png: application/octet-stream\n  \
         image/jpeg: application/octet-stream\n  \
         multipart/x-mixed-replace: application/octet-stream\n",
    )
    .unwrap();
    let (ok, output) = run(
        &generator,
        &[
            "generate",
            "--path",
            &path,
            "--config",
            &generator_config.to_string_lossy(),
            "--meta",
            "none",
            "--output-path",
            &package.to_string_lossy(),
        ],
        // Its formatting hook (ruff) is installed beside it.
        &[(
            "PATH",
            format!(
                "{}:{}",
                std::path::Path::new(&python).parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )],
    )
    .await;
    assert!(ok, "the client generator failed:\n{output}");
    assert!(
        !output.to_lowercase().contains("warning") && !output.contains("Unable to"),
        "the generator skipped or doubted something:\n{output}"
    );
    // ...that compiles and makes real calls against the running api.
    let script = r#"
import os, sys
sys.path.insert(0, os.environ["CLIENT_DIR"])
from printyard_client import Client
from printyard_client.api.printers import list_printers
from printyard_client.api.projects import create_project, get_project
from printyard_client.models import NewProject

client = Client(base_url=os.environ["BASE_URL"], headers={"X-API-Key": os.environ["API_KEY"]})
printers = list_printers.sync_detailed(client=client)
assert printers.status_code == 200, printers
created = create_project.sync(client=client, body=NewProject(name="Made by a generated client"))
fetched = get_project.sync(client=client, id=created.id)
print("project", fetched.id, fetched.name)
"#;
    let (ok, output) = run(
        &python,
        &["-c", script],
        &[
            ("CLIENT_DIR", dir.path().to_string_lossy().into_owned()),
            ("BASE_URL", api.api_url("")),
            ("API_KEY", key),
        ],
    )
    .await;
    assert!(ok, "the generated client failed:\n{output}");
    assert!(output.contains("Made by a generated client"), "{output}");
}

//! Archives and projects end to end: the library (upload, download, thumbnail, shared objects)
//! on the filesystem store and on a real S3-compatible server; hostile files; list filters,
//! full-text search and paging; projects; CSV and XLSX export.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use printyard_api::auth::Permission;
use printyard_printer_sim::farm::DEMO_3MF;
use printyard_tests::{
    Running, TestEnv, keyed_http, spawn_api, spawn_api_with, spawn_archive, spawn_archive_with,
};
use serde_json::{Value, json};

const UNSLICED: &[u8] = include_bytes!("../../fixtures/3mf/x1c-2plates-unsliced.3mf");

struct Library {
    env: TestEnv,
    api: Running,
    _archive: Running,
    client: reqwest::Client,
}

async fn library_with(env: TestEnv, archive: printyard_archive::Config) -> Library {
    let archive = spawn_archive_with(archive).await;
    let api = spawn_api(&env).await;
    let key = env.api_key(&[Permission::Read, Permission::Write]).await;
    Library {
        env,
        api,
        _archive: archive,
        client: keyed_http(&key),
    }
}

async fn library() -> Library {
    let env = TestEnv::new().await;
    let config = env.archive_config();
    library_with(env, config).await
}

impl Library {
    fn url(&self, path: &str) -> String {
        self.api.api_url(path)
    }

    async fn upload(&self, name: &str, bytes: Vec<u8>) -> (u16, Value) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
        let response = self
            .client
            .post(self.url("/archives"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn bytes(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.bytes().await.unwrap().to_vec())
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .request(method, self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Files under `dir` (the filesystem store), recursively, as paths relative to it.
fn stored_files(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn fixture_entry(name: &str) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(Cursor::new(DEMO_3MF)).unwrap();
    let mut bytes = Vec::new();
    zip.by_name(name).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

/// Upload twice, download byte-identical, thumbnail, then delete: the object stays while an
/// archive uses it and goes with the last one.
async fn round_trip(lib: &Library) {
    let (status, first) = lib.upload("demo-cube.gcode.3mf", DEMO_3MF.to_vec()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "uploaded");
    assert_eq!(first["name"], "demo-cube", "named from the file");
    assert_eq!(first["filename"], "demo-cube.gcode.3mf");
    assert_eq!(first["plates"], 1);
    assert_eq!(first["print_time_estimate"], 1095);
    assert_eq!(first["weight"], 2.83);
    assert_eq!(first["printer_model_id"], "N1");
    assert_eq!(
        first["filaments"],
        json!([{"slot": 1, "type": "PLA", "color": "#00AE42", "grams": 2.83, "tray": null, "spool_id": null, "used_g": null}])
    );
    assert_eq!(first["filament_type"], "PLA");
    assert_eq!(first["has_file"], true);
    assert_eq!(first["has_thumbnail"], true);
    assert_eq!(first["file_size"], DEMO_3MF.len());

    let id = first["id"].as_i64().unwrap();
    let (status, headers, body) = lib.bytes(&format!("/archives/{id}/3mf")).await;
    assert_eq!(status, 200);
    assert!(body == DEMO_3MF, "the download is byte-identical");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("filename=\"demo-cube.gcode.3mf\"")
    );
    let (status, headers, png) = lib.bytes(&format!("/archives/{id}/thumbnail")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(png, fixture_entry("Metadata/plate_1.png"));

    // A reprint of the same file is stored once and survives the deletion of one archive.
    let (status, second) = lib.upload("again.3mf", DEMO_3MF.to_vec()).await;
    assert_eq!(status, 201);
    assert_eq!(second["file_sha256"], first["file_sha256"]);
    let second_id = second["id"].as_i64().unwrap();
    let (status, _) = lib
        .send(
            reqwest::Method::DELETE,
            &format!("/archives/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(lib.get(&format!("/archives/{id}")).await.0, 404);
    let (status, _, body) = lib.bytes(&format!("/archives/{second_id}/3mf")).await;
    assert_eq!(status, 200, "the shared file is kept");
    assert!(body == DEMO_3MF);
    let (status, _) = lib
        .send(
            reqwest::Method::DELETE,
            &format!("/archives/{second_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    // Uploading again stores the file again (it was deleted with the last archive).
    let (status, third) = lib.upload("third.3mf", DEMO_3MF.to_vec()).await;
    assert_eq!(status, 201);
    let (status, _, body) = lib.bytes(&format!("/archives/{}/3mf", third["id"])).await;
    assert_eq!(status, 200);
    assert!(body == DEMO_3MF);
}

#[tokio::test]
async fn the_library_round_trips_files_on_the_filesystem_store() {
    let lib = library().await;
    round_trip(&lib).await;
    // Only the third upload's objects are left: the 3MF and its thumbnail, by content hash.
    let files = stored_files(&lib.env.objects.0);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].starts_with("3mf/") && files[0].ends_with(".3mf"),
        "{files:?}"
    );
    assert!(files[1].starts_with("thumbnails/"), "{files:?}");
}

#[tokio::test]
async fn the_library_round_trips_files_on_s3() {
    let env = TestEnv::new().await;
    let config = env.archive_config_s3();
    let lib = library_with(env, config).await;
    round_trip(&lib).await;
    assert!(
        stored_files(&lib.env.objects.0).is_empty(),
        "nothing went to the filesystem"
    );
}

fn zip_of(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        out.start_file(*name, options).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

#[tokio::test]
async fn hostile_files_are_refused_and_nothing_is_stored() {
    let env = TestEnv::new().await;
    let mut api_config = env.api_config();
    api_config.http.max_upload_bytes = 2 * 1024 * 1024;
    let _archive = spawn_archive(&env).await;
    let api = spawn_api_with(api_config).await;
    let key = env.api_key(&[Permission::Read, Permission::Write]).await;
    let lib = Library {
        api,
        _archive,
        client: keyed_http(&key),
        env,
    };

    let zeros = vec![0u8; 64 * 1024 * 1024];
    let many: Vec<String> = (0..10_001).map(|i| format!("f/{i}")).collect();
    let many_entries: Vec<(&str, &[u8])> = many.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not a zip", b"<html>hello</html>".to_vec(), "not a 3MF"),
        (
            "truncated",
            DEMO_3MF[..DEMO_3MF.len() * 2 / 3].to_vec(),
            "truncated",
        ),
        (
            "zip bomb",
            zip_of(
                &[("Metadata/plate_1.gcode", &zeros)],
                zip::CompressionMethod::Deflated,
            ),
            "ZIP bomb",
        ),
        (
            "too many entries",
            zip_of(&many_entries, zip::CompressionMethod::Stored),
            "too many entries",
        ),
        (
            "climbing name",
            zip_of(
                &[("../../escape.txt", b"x")],
                zip::CompressionMethod::Stored,
            ),
            "not a safe relative path",
        ),
        (
            "absolute name",
            zip_of(&[("/etc/cron.d/x", b"x")], zip::CompressionMethod::Stored),
            "not a safe relative path",
        ),
        ("unsliced project", UNSLICED.to_vec(), "unsliced"),
    ];
    for (what, bytes, says) in cases {
        let (status, body) = lib.upload("../../evil.3mf", bytes).await;
        assert_eq!(status, 422, "{what}: {body}");
        assert_eq!(body["code"], "INVALID_FILE", "{what}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{what}: {body}"
        );
    }
    // Over the upload limit: 413, and the rest of the body is not read.
    let (status, body) = lib.upload("big.3mf", vec![7u8; 3 * 1024 * 1024]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    // Not a form, a form without `file`.
    let response = lib
        .client
        .post(lib.url("/archives"))
        .header("content-type", "application/octet-stream")
        .body(DEMO_3MF.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let form = reqwest::multipart::Form::new().text("name", "x");
    let response = lib
        .client
        .post(lib.url("/archives"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);

    assert!(
        stored_files(&lib.env.objects.0).is_empty(),
        "a refused file leaves nothing in storage"
    );
    let (_, page) = lib.get("/archives").await;
    assert_eq!(page["total"], 0);
    // The transfer bucket is emptied of refused uploads.
    let js = async_nats::jetstream::new(lib.env.nats.client().await);
    let bucket = js
        .get_object_store(printyard_contracts::archive::TRANSFER_BUCKET)
        .await
        .unwrap();
    use futures::StreamExt;
    let left: Vec<_> = bucket.list().await.unwrap().collect().await;
    assert!(left.is_empty(), "{} objects left in transit", left.len());
    // Unknown ids and missing files.
    assert_eq!(lib.get("/archives/999").await.0, 404);
    assert_eq!(lib.get("/archives/999/3mf").await.0, 404);
    assert_eq!(lib.get("/archives/abc").await.0, 400);
}

/// Seeds archives straight into the archive schema (a farm's history).
async fn seed(env: &TestEnv) {
    let pool = env.pool().await;
    let rows = [
        // name, filename, printer, printer name, status, created, notes, tags
        (
            "Benchy",
            "benchy.3mf",
            Some(1),
            Some("Workshop X1C"),
            "success",
            "2026-03-01T10:00:00Z",
            None,
            vec!["calibration"],
        ),
        (
            "Gear rack",
            "gear-rack.gcode.3mf",
            Some(1),
            Some("Workshop X1C"),
            "failed",
            "2026-03-02T10:00:00Z",
            Some("spaghetti at layer 12"),
            vec![],
        ),
        (
            "Phone stand",
            "stand.3mf",
            Some(2),
            Some("Garage P1S"),
            "success",
            "2026-03-03T10:00:00Z",
            None,
            vec!["gift", "functional"],
        ),
        (
            "=HYPERLINK(\"x\")",
            "formula.3mf",
            Some(2),
            Some("Garage P1S"),
            "stopped",
            "2026-03-04T10:00:00Z",
            None,
            vec![],
        ),
        (
            "Vase",
            "vase.3mf",
            None,
            None,
            "uploaded",
            "2026-03-05T10:00:00Z",
            None,
            vec![],
        ),
    ];
    for (name, filename, printer, printer_name, status, created, notes, tags) in rows {
        sqlx::query(
            "INSERT INTO archive.archives (name, filename, printer_id, printer_name, status, \
               created_at, notes, tags, duration, filament_used, filament_type) \
             VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7, $8, 3600, 12.5, 'PLA')",
        )
        .bind(name)
        .bind(filename)
        .bind(printer.map(|p: i64| p))
        .bind(printer_name)
        .bind(status)
        .bind(created)
        .bind(notes)
        .bind(tags.into_iter().map(str::to_owned).collect::<Vec<_>>())
        .execute(&pool)
        .await
        .unwrap();
    }
}

fn names(page: &Value) -> Vec<String> {
    page["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn archives_are_filtered_searched_and_paged() {
    let lib = library().await;
    seed(&lib.env).await;
    let (status, all) = lib.get("/archives").await;
    assert_eq!(status, 200);
    assert_eq!(all["total"], 5);
    assert_eq!(all["total_exact"], true);
    assert_eq!(names(&all)[0], "Vase", "newest first");
    let first = &all["archives"][4];
    for field in [
        "id",
        "name",
        "filename",
        "printer_id",
        "printer_name",
        "created_at",
        "duration",
        "status",
        "filament_used",
        "filament_type",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }

    let cases = [
        ("?printer_id=1", vec!["Gear rack", "Benchy"]),
        ("?status=success", vec!["Phone stand", "Benchy"]),
        (
            "?start_date=2026-03-02&end_date=2026-03-03",
            vec!["Phone stand", "Gear rack"],
        ),
        ("?search=bench", vec!["Benchy"]),
        ("?search=spaghetti", vec!["Gear rack"]),
        ("?search=gift", vec!["Phone stand"]),
        ("?search=garage", vec!["=HYPERLINK(\"x\")", "Phone stand"]),
        ("?search=gear%20workshop", vec!["Gear rack"]),
        (
            "?search=%27%26%7C!",
            vec![
                "Vase",
                "=HYPERLINK(\"x\")",
                "Phone stand",
                "Gear rack",
                "Benchy",
            ],
        ),
        ("?printer_id=2&status=success", vec!["Phone stand"]),
        (
            "?limit=2&offset=1",
            vec!["=HYPERLINK(\"x\")", "Phone stand"],
        ),
    ];
    for (query, expected) in cases {
        let (status, page) = lib.get(&format!("/archives{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(names(&page), expected, "{query}");
    }
    let (status, empty) = lib
        .get("/archives?start_date=2026-03-05&end_date=2026-03-01")
        .await;
    assert_eq!(
        (status, empty["total"].clone()),
        (200, json!(0)),
        "an empty range"
    );
    let (_, paged) = lib.get("/archives?limit=2&offset=1").await;
    assert_eq!(paged["total"], 5, "total counts every match, not the page");

    for bad in [
        "?limit=0",
        "?limit=100000",
        "?offset=-1",
        "?status=done",
        "?start_date=yesterday",
        "?printer_id=abc",
    ] {
        let (status, body) = lib.get(&format!("/archives{bad}")).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["code"], "VALIDATION_ERROR", "{bad}");
    }
}

#[tokio::test]
async fn archives_are_edited_and_grouped_into_projects() {
    let lib = library().await;
    seed(&lib.env).await;
    let (status, project) = lib
        .send(
            reqwest::Method::POST,
            "/projects",
            json!({"name": "Voron Build", "description": "Building a Voron 2.4", "color": "#4caf50", "target_count": 4}),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    assert_eq!(project["archive_count"], 0);
    let pid = project["id"].as_i64().unwrap();

    let (_, all) = lib.get("/archives?status=success").await;
    for archive in all["archives"].as_array().unwrap() {
        let (status, updated) = lib
            .send(
                reqwest::Method::PATCH,
                &format!("/archives/{}", archive["id"]),
                json!({"project_id": pid, "notes": "for the voron", "tags": ["voron", "abs"]}),
            )
            .await;
        assert_eq!(status, 200, "{updated}");
        assert_eq!(updated["project_id"], pid);
        assert_eq!(updated["tags"], json!(["voron", "abs"]));
    }
    let (_, gear) = lib.get("/archives?search=gear").await;
    let gear_id = gear["archives"][0]["id"].as_i64().unwrap();
    let (status, renamed) = lib
        .send(
            reqwest::Method::PATCH,
            &format!("/archives/{gear_id}"),
            json!({"name": "Gear rack v2", "project_id": pid}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(renamed["name"], "Gear rack v2");

    let (_, project) = lib.get(&format!("/projects/{pid}")).await;
    assert_eq!(project["archive_count"], 3);
    assert_eq!(project["completed_count"], 2);
    assert_eq!(project["progress"], 50.0);
    let (_, in_project) = lib.get(&format!("/archives?project_id={pid}")).await;
    assert_eq!(in_project["total"], 3);
    let (_, found) = lib.get("/archives?search=voron").await;
    assert_eq!(
        found["total"], 2,
        "notes and tags are searched after an edit"
    );

    // Validation.
    for (body, what) in [
        (json!({"name": "x", "color": "green"}), "color"),
        (json!({"name": "x", "target_count": 0}), "target_count"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "owner": "me"}), "owner"),
    ] {
        let (status, err) = lib.send(reqwest::Method::POST, "/projects", body).await;
        assert_eq!(status, 422, "{what}: {err}");
    }
    let (status, _) = lib
        .send(
            reqwest::Method::PATCH,
            &format!("/archives/{gear_id}"),
            json!({"project_id": 999}),
        )
        .await;
    assert_eq!(status, 404, "a project that does not exist");
    let (status, _) = lib
        .send(
            reqwest::Method::PATCH,
            "/archives/999",
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = lib
        .send(
            reqwest::Method::PATCH,
            &format!("/projects/{pid}"),
            json!([null, null]),
        )
        .await;
    assert_eq!(status, 422, "an array is not an object, even by position");
    let (status, whole) = lib
        .send(
            reqwest::Method::PATCH,
            &format!("/projects/{pid}"),
            json!({"target_count": 8.0}),
        )
        .await;
    assert_eq!((status, whole["target_count"].clone()), (200, json!(8)));
    let (status, _) = lib
        .send(
            reqwest::Method::PATCH,
            &format!("/projects/{pid}"),
            json!({"target_count": 8.5}),
        )
        .await;
    assert_eq!(status, 422, "not a whole number");
    let (status, tagged) = lib
        .send(
            reqwest::Method::PATCH,
            &format!("/archives/{gear_id}"),
            json!({"tags": ["  ", " rack "]}),
        )
        .await;
    assert_eq!(
        (status, tagged["tags"].clone()),
        (200, json!(["rack"])),
        "blank tags dropped"
    );
    let (status, patched) = lib
        .send(
            reqwest::Method::PATCH,
            &format!("/projects/{pid}"),
            json!({"target_count": null, "color": "#112233"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["progress"], Value::Null);
    assert_eq!(patched["color"], "#112233");

    // Deleting the project unlinks its archives and deletes none.
    let (status, _) = lib
        .send(
            reqwest::Method::DELETE,
            &format!("/projects/{pid}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(lib.get(&format!("/projects/{pid}")).await.0, 404);
    let (_, all) = lib.get("/archives").await;
    assert_eq!(all["total"], 5);
    assert!(
        all["archives"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["project_id"].is_null())
    );
    let (_, projects) = lib.get("/projects").await;
    assert_eq!(projects, json!([]));
}

#[tokio::test]
async fn exports_answer_the_filtered_rows_as_csv_and_xlsx() {
    let lib = library().await;
    seed(&lib.env).await;
    let (status, headers, csv) = lib.bytes("/archives/export?format=csv&printer_id=2").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "id");
    assert_eq!(&header[1], "name");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][1], "'=HYPERLINK(\"x\")", "formulas are defused");
    assert_eq!(&rows[1][1], "Phone stand");
    assert_eq!(&rows[1][4], "Garage P1S");
    assert_eq!(&rows[1][13], "gift, functional");

    let (status, headers, xlsx) = lib
        .bytes("/archives/export?format=xlsx&status=success")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let mut book = zip::ZipArchive::new(Cursor::new(xlsx)).expect("an XLSX is a ZIP");
    let mut sheet = String::new();
    book.by_name("xl/worksheets/sheet1.xml")
        .unwrap()
        .read_to_string(&mut sheet)
        .unwrap();
    assert_eq!(sheet.matches("<row ").count(), 3, "header and two rows");
    assert!(
        sheet.contains("Benchy") && sheet.contains("Phone stand"),
        "{sheet}"
    );
    assert!(!sheet.contains("Gear rack"));

    let (status, body) = lib.get("/archives/export?format=pdf").await;
    assert_eq!(status, 422, "{body}");
    // Everything, by keyset pages.
    let (_, _, csv) = lib.bytes("/archives/export").await;
    assert_eq!(
        csv::Reader::from_reader(csv.as_slice()).records().count(),
        5
    );
}

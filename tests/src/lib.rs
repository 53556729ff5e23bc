//! The end-to-end harness: real NATS, real Postgres, the real services started in-process.
//!
//! `scripts/test` starts a private Postgres and exports `PRINTYARD_TEST_DATABASE_URL` (a
//! superuser URL) and puts `nats-server` on `PATH`. Every test gets its own NATS server on a
//! free port (so discovery answers of one test never reach another) and its own database.

pub mod bench;
pub mod mjpeg;
pub mod nats_server;
pub mod pg_server;
pub mod receiver;
pub mod sites;
pub mod sse;
pub mod threemf;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use printyard_service::Secret;
use printyard_service::config::{
    AdminConfig, DatabaseConfig, NatsConfig, ServiceConfig, TelemetryConfig,
};
use rand::Rng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use nats_server::NatsServer;

/// The env var naming the Postgres superuser URL that tests create databases with.
pub const DATABASE_URL_ENV: &str = "PRINTYARD_TEST_DATABASE_URL";

/// One test's private world: a NATS server and a fresh database.
pub struct TestEnv {
    pub nats: NatsServer,
    /// The archive's filesystem object store.
    pub objects: nats_server::TempDir,
    pub database_url: String,
    pub database_name: String,
    admin_url: String,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with_nats(NatsServer::start().await).await
    }

    /// A test's world on a NATS server of its own making (users, leaf nodes).
    pub async fn with_nats(nats: NatsServer) -> Self {
        let admin_url = std::env::var(DATABASE_URL_ENV).unwrap_or_else(|_| {
            panic!("{DATABASE_URL_ENV} is not set: run the suite with scripts/test")
        });
        Self::with_servers(nats, admin_url).await
    }

    /// A test's world on servers of its own (a Postgres it may kill: `admin_url` is its
    /// superuser's URL).
    pub async fn with_servers(nats: NatsServer, admin_url: String) -> Self {
        let database_name = format!("pyt_{:016x}", rand::rng().random::<u64>());
        let mut admin = connect_admin(&admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {database_name}"
        )))
        .execute(&mut admin)
        .await
        .expect("creating the test database");
        let database_url = replace_database(&admin_url, &database_name);
        Self {
            nats,
            objects: nats_server::TempDir::new("objects"),
            database_url,
            database_name,
            admin_url,
        }
    }

    pub fn nats_config(&self) -> NatsConfig {
        let (user, password) = match &self.nats.login {
            Some((user, password)) => (Some(user.clone()), Some(Secret::new(password.clone()))),
            None => (None, None),
        };
        NatsConfig {
            url: self.nats.url(),
            user,
            password,
            startup_timeout_secs: 10,
            request_timeout_ms: 1_500,
            ..NatsConfig::default()
        }
    }

    pub fn database_config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: Secret::new(self.database_url.clone()),
            max_connections: 5,
            startup_timeout_secs: 10,
            ..DatabaseConfig::default()
        }
    }

    pub fn admin_config(&self) -> AdminConfig {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    pub fn service_config(&self) -> ServiceConfig {
        ServiceConfig {
            nats: self.nats_config(),
            database: self.database_config(),
            admin: self.admin_config(),
            telemetry: TelemetryConfig::default(),
        }
    }

    pub fn api_config(&self) -> printyard_api::Config {
        let http = printyard_api::config::HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Default::default()
        };
        printyard_api::Config {
            nats: self.nats_config(),
            database: self.database_config(),
            admin: self.admin_config(),
            telemetry: TelemetryConfig::default(),
            http,
            rate_limits: Default::default(),
            people: Default::default(),
        }
    }

    /// The archive's configuration, storing files in this test's directory.
    pub fn archive_config(&self) -> printyard_archive::Config {
        printyard_archive::Config {
            nats: self.nats_config(),
            database: self.database_config(),
            admin: self.admin_config(),
            telemetry: TelemetryConfig::default(),
            archive: printyard_archive::ArchiveConfig {
                store: self.objects.0.display().to_string(),
                ..Default::default()
            },
        }
    }

    /// The archive's configuration on the S3-compatible server `scripts/test` starts
    /// (`PRINTYARD_TEST_S3_ENDPOINT`, with `…_ACCESS_KEY` and `…_SECRET_KEY`), in a bucket of
    /// this test's own (the server creates it on first write).
    pub fn archive_config_s3(&self) -> printyard_archive::Config {
        let var = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("{name} is not set: run the suite with scripts/test"))
        };
        let mut config = self.archive_config();
        config.archive.store = format!("s3://{}", self.database_name.replace('_', "-"));
        config.archive.s3 = printyard_archive::S3Config {
            endpoint: Some(var("PRINTYARD_TEST_S3_ENDPOINT")),
            access_key_id: Some(var("PRINTYARD_TEST_S3_ACCESS_KEY")),
            secret_access_key: Some(Secret::new(var("PRINTYARD_TEST_S3_SECRET_KEY"))),
            allow_http: true,
            ..Default::default()
        };
        config
    }

    /// Creates an API key with `permissions` in this test's database; returns the secret.
    pub async fn api_key(&self, permissions: &[printyard_api::auth::Permission]) -> String {
        let (_, secret) = printyard_api::create_key(&self.api_config(), "test", permissions)
            .await
            .expect("creating an API key");
        secret.reveal().to_owned()
    }

    /// The scheduler's configuration, with a short tick for tests.
    pub fn scheduler_config(&self) -> printyard_scheduler::Config {
        printyard_scheduler::Config {
            nats: self.nats_config(),
            database: self.database_config(),
            admin: self.admin_config(),
            telemetry: TelemetryConfig::default(),
            scheduler: printyard_scheduler::SchedulerConfig {
                tick_ms: 250,
                ..Default::default()
            },
        }
    }

    /// The notifier's configuration: webhooks may reach loopback (the tests' receivers), and
    /// retries start after 200 ms.
    pub fn notifier_config(&self) -> printyard_notifier::Config {
        printyard_notifier::Config {
            nats: self.nats_config(),
            database: self.database_config(),
            admin: self.admin_config(),
            telemetry: TelemetryConfig::default(),
            notifier: printyard_notifier::NotifierConfig {
                targets: printyard_notifier::targets::TargetPolicy::Any,
                retry_base_ms: 200,
                timeout_ms: 2_000,
                lease_secs: 5,
                poll_ms: 100,
                ..Default::default()
            },
        }
    }

    /// The filament service's configuration (spools under 150 g are low, as by default).
    pub fn filament_config(&self) -> printyard_filament::Config {
        printyard_filament::Config {
            nats: self.nats_config(),
            database: self.database_config(),
            admin: self.admin_config(),
            telemetry: TelemetryConfig::default(),
            filament: Default::default(),
        }
    }

    pub fn gateway_config(&self) -> printyard_gateway::Config {
        printyard_gateway::Config {
            nats: self.nats_config(),
            admin: self.admin_config(),
            telemetry: TelemetryConfig::default(),
            gateway: Default::default(),
        }
    }

    /// A pool on this test's database, for checking what services wrote.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.database_url)
            .await
            .expect("connecting to the test database")
    }

    /// Drops this test's database, cutting every connection to it: Postgres "going away".
    pub async fn drop_database(&self) {
        let mut admin = connect_admin(&self.admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.database_name
        )))
        .execute(&mut admin)
        .await
        .expect("dropping the test database");
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .expect("connecting to the test Postgres (is scripts/test running it?)")
}

/// `postgres://u@h:p/db?x` with `db` replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(i) if base[..i].ends_with('/') => base.to_owned() + "/",
        Some(i) => base[..=i].to_owned(),
        None => format!("{base}/"),
    };
    match query {
        Some(q) => format!("{prefix}{database}?{q}"),
        None => format!("{prefix}{database}"),
    }
}

/// A service running in this process, stopped by [`Running::stop`] or when dropped.
pub struct Running {
    pub admin_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    token: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    fn new(
        admin_addr: SocketAddr,
        http_addr: Option<SocketAddr>,
        token: CancellationToken,
        handle: JoinHandle<anyhow::Result<()>>,
    ) -> Self {
        Self {
            admin_addr,
            http_addr,
            token,
            handle: Some(handle),
        }
    }

    /// Asks the service to stop, and waits until it has.
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("service did not stop within 30 s")
                .expect("service task panicked")
                .expect("service stopped with an error");
        }
    }

    /// The base URL of `/api/v1` (api only).
    pub fn api_url(&self, path: &str) -> String {
        let addr = self.http_addr.expect("only the api serves HTTP");
        format!("http://{addr}/api/v1{path}")
    }

    /// Sends a request to `/api/v1{path}` (JSON `body`, if any) with `client`: the status and
    /// the JSON answer (`null` when there is none).
    pub async fn send_json(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = client.request(method, self.api_url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the api answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

pub async fn spawn_api(env: &TestEnv) -> Running {
    spawn_api_with(env.api_config()).await
}

/// An api started with a configuration the test adjusted.
pub async fn spawn_api_with(config: printyard_api::Config) -> Running {
    let token = CancellationToken::new();
    let api = printyard_api::Api::start(config, token.clone())
        .await
        .expect("api starts");
    let (admin, http) = (
        api.admin_addr(),
        api.http_addr().expect("the api serves HTTP"),
    );
    Running::new(
        admin,
        Some(http),
        token,
        tokio::spawn(api.run_until_stopped()),
    )
}

/// The api with rate limits off (the scenario tests poll; rate limits have their own tests)
/// and a client whose key may read, write and control.
pub async fn spawn_api_and_client(env: &TestEnv) -> (Running, reqwest::Client) {
    use printyard_api::auth::Permission;
    let mut config = env.api_config();
    config.rate_limits.enabled = false;
    let api = spawn_api_with(config).await;
    let key = env
        .api_key(&[Permission::Read, Permission::Write, Permission::Control])
        .await;
    (api, keyed_http(&key))
}

/// `$plain(env)` starts the service with the test environment's configuration (`$config`),
/// `$with(config)` with one the test adjusted; both in this process, stopped with the
/// returned [`Running`].
macro_rules! spawners {
    ($plain:ident, $with:ident, $config:ident, $krate:ident, $ty:ident) => {
        pub async fn $plain(env: &TestEnv) -> Running {
            $with(env.$config()).await
        }

        pub async fn $with(config: $krate::Config) -> Running {
            let token = CancellationToken::new();
            let service = $krate::$ty::start(config, token.clone())
                .await
                .expect(concat!(stringify!($ty), " starts"));
            let admin = service.admin_addr();
            Running::new(
                admin,
                None,
                token,
                tokio::spawn(service.run_until_stopped()),
            )
        }
    };
}

spawners!(
    spawn_gateway,
    spawn_gateway_with,
    gateway_config,
    printyard_gateway,
    Gateway
);
spawners!(
    spawn_archive,
    spawn_archive_with,
    archive_config,
    printyard_archive,
    Archive
);
spawners!(
    spawn_scheduler,
    spawn_scheduler_with,
    scheduler_config,
    printyard_scheduler,
    Scheduler
);
spawners!(
    spawn_stats,
    spawn_stats_with,
    service_config,
    printyard_stats,
    Stats
);
spawners!(
    spawn_notifier,
    spawn_notifier_with,
    notifier_config,
    printyard_notifier,
    Notifier
);
spawners!(
    spawn_filament,
    spawn_filament_with,
    filament_config,
    printyard_filament,
    Filament
);

/// Puts `printers` into the `printer_registry` bucket of `env` as a gateway of the default site
/// reads them (ids 1, 2, …), the way `api` mirrors printers; waits for the bucket to exist.
pub async fn register_in_bucket(env: &TestEnv, printers: &[Arc<printyard_printer_sim::Printer>]) {
    use printyard_contracts::farm::{PrinterRecord, Site, registry_key};
    let js = async_nats::jetstream::new(env.nats.client().await);
    let registry = eventually(Duration::from_secs(30), "the registry bucket", || {
        let js = js.clone();
        async move { js.get_key_value("printer_registry").await.ok() }
    })
    .await;
    for (i, printer) in printers.iter().enumerate() {
        let record = PrinterRecord {
            id: i as i64 + 1,
            name: format!("Sim {}", i + 1),
            site: Site::default(),
            host: printer.spec.ip.to_string(),
            serial: printer.spec.serial.clone(),
            access_code: printer.spec.access_code.clone(),
            model: None,
            tls_pin: None,
            tls_insecure: false,
            auto_clear_plate: false,
            maintenance: false,
        };
        registry
            .put(
                registry_key(&record.site, record.id),
                serde_json::to_vec(&record)
                    .expect("a record encodes")
                    .into(),
            )
            .await
            .expect("registering a printer");
    }
}

/// The environment variables that turn a test binary into a bare service process.
const CHILD_GATEWAY: &str = "PRINTYARD_CHILD_GATEWAY";
const CHILD_SCHEDULER: &str = "PRINTYARD_CHILD_SCHEDULER";
const CHILD_NOTIFIER: &str = "PRINTYARD_CHILD_NOTIFIER";
const CHILD_API: &str = "PRINTYARD_CHILD_API";
const CHILD_ARCHIVE: &str = "PRINTYARD_CHILD_ARCHIVE";
const CHILD_STATS: &str = "PRINTYARD_CHILD_STATS";
/// The database URL of a child service (its configuration's JSON shows it redacted).
const CHILD_DATABASE_URL: &str = "PRINTYARD_CHILD_DATABASE_URL";

/// A service in a process of its own, for tests that kill it without warning (SIGKILL: no
/// lease released, no connection closed politely, no claim handed back). The test binary
/// re-runs itself with `--exact <child_test>`, an ignored test that calls
/// [`run_child_gateway`] or [`run_child_scheduler`].
pub struct ChildService(tokio::process::Child);

/// A gateway in a process of its own.
pub type ChildGateway = ChildService;

impl ChildService {
    fn spawn_with(
        child_test: &str,
        variable: &str,
        config: String,
        database: Option<&str>,
    ) -> Self {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut command = tokio::process::Command::new(exe);
        if let Some(url) = database {
            command.env(CHILD_DATABASE_URL, url);
        }
        let child = command
            .args(["--exact", child_test, "--ignored", "--nocapture"])
            .env(variable, config)
            .kill_on_drop(true)
            .spawn()
            .expect("starting the child service process");
        Self(child)
    }

    /// A gateway (the test `child_test` calls [`run_child_gateway`]).
    pub fn spawn(child_test: &str, config: &printyard_gateway::Config) -> Self {
        let json = serde_json::to_string(config).expect("the gateway config encodes");
        Self::spawn_with(child_test, CHILD_GATEWAY, json, None)
    }

    /// A scheduler (the test `child_test` calls [`run_child_scheduler`]).
    pub fn spawn_scheduler(child_test: &str, config: &printyard_scheduler::Config) -> Self {
        let json = serde_json::to_string(config).expect("the scheduler config encodes");
        Self::spawn_with(
            child_test,
            CHILD_SCHEDULER,
            json,
            Some(config.database.url.expose()),
        )
    }

    /// A notifier (the test `child_test` calls [`run_child_notifier`]).
    pub fn spawn_notifier(child_test: &str, config: &printyard_notifier::Config) -> Self {
        let json = serde_json::to_string(config).expect("the notifier config encodes");
        Self::spawn_with(
            child_test,
            CHILD_NOTIFIER,
            json,
            Some(config.database.url.expose()),
        )
    }

    /// An api (the test `child_test` calls [`run_child_api`]); it listens on
    /// `config.http.listen`, so give it a port.
    pub fn spawn_api(child_test: &str, config: &printyard_api::Config) -> Self {
        let json = serde_json::to_string(config).expect("the api config encodes");
        Self::spawn_with(
            child_test,
            CHILD_API,
            json,
            Some(config.database.url.expose()),
        )
    }

    /// An archive (the test `child_test` calls [`run_child_archive`]).
    pub fn spawn_archive(child_test: &str, config: &printyard_archive::Config) -> Self {
        let json = serde_json::to_string(config).expect("the archive config encodes");
        Self::spawn_with(
            child_test,
            CHILD_ARCHIVE,
            json,
            Some(config.database.url.expose()),
        )
    }

    /// A stats service (the test `child_test` calls [`run_child_stats`]).
    pub fn spawn_stats(child_test: &str, config: &printyard_stats::Config) -> Self {
        let json = serde_json::to_string(config).expect("the stats config encodes");
        Self::spawn_with(
            child_test,
            CHILD_STATS,
            json,
            Some(config.database.url.expose()),
        )
    }

    /// The process id, for reading its CPU time and memory from `/proc`.
    pub fn pid(&self) -> Option<u32> {
        self.0.id()
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(mut self) {
        self.0.kill().await.expect("killing the child service");
    }
}

/// Logs of a child process when RUST_LOG asks for them (the parent's output shows them), and
/// its traces when its configuration names an OTLP endpoint.
fn child_telemetry(
    service: printyard_contracts::ServiceName,
    config: &printyard_service::config::TelemetryConfig,
) -> Option<printyard_service::telemetry::TelemetryGuard> {
    let wanted = std::env::var_os("RUST_LOG").is_some() || config.otlp_endpoint.is_some();
    wanted
        .then(|| printyard_service::telemetry::init(service, config).ok())
        .flatten()
}

/// Runs a gateway until the process is killed, when the test binary was started by
/// [`ChildService::spawn`]; returns at once otherwise.
pub fn run_child_gateway() {
    let Ok(json) = std::env::var(CHILD_GATEWAY) else {
        return;
    };
    let config: printyard_gateway::Config =
        serde_json::from_str(&json).expect("the child gateway's config");
    let _telemetry = child_telemetry(printyard_contracts::ServiceName::Gateway, &config.telemetry);
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(async move {
            let gateway = printyard_gateway::Gateway::start(config, CancellationToken::new())
                .await
                .expect("the child gateway starts");
            gateway
                .run_until_stopped()
                .await
                .expect("the child gateway runs");
        });
}

/// A function that runs a service with a database until the process is killed, when the test
/// binary was started with its configuration in `$variable`; returns at once otherwise.
macro_rules! child_runner {
    ($(#[$doc:meta])* $name:ident, $variable:expr, $krate:ident, $service:ident) => {
        $(#[$doc])*
        pub fn $name() {
            let Ok(json) = std::env::var($variable) else {
                return;
            };
            let mut config: $krate::Config =
                serde_json::from_str(&json).expect("the child service's config");
            if let Ok(url) = std::env::var(CHILD_DATABASE_URL) {
                config.database.url = Secret::new(url);
            }
            let _telemetry = child_telemetry(
                printyard_contracts::ServiceName::$service,
                &config.telemetry,
            );
            tokio::runtime::Runtime::new()
                .expect("a runtime")
                .block_on(async move {
                    let service = $krate::$service::start(config, CancellationToken::new())
                        .await
                        .expect("the child service starts");
                    service
                        .run_until_stopped()
                        .await
                        .expect("the child service runs");
                });
        }
    };
}

child_runner!(
    /// Runs a scheduler until the process is killed, when the test binary was started by
    /// [`ChildService::spawn_scheduler`]; returns at once otherwise.
    run_child_scheduler,
    CHILD_SCHEDULER,
    printyard_scheduler,
    Scheduler
);
child_runner!(
    /// Runs an api until the process is killed, when the test binary was started by
    /// [`ChildService::spawn_api`]; returns at once otherwise.
    run_child_api,
    CHILD_API,
    printyard_api,
    Api
);
child_runner!(
    /// Runs a notifier until the process is killed, when the test binary was started by
    /// [`ChildService::spawn_notifier`]; returns at once otherwise.
    run_child_notifier,
    CHILD_NOTIFIER,
    printyard_notifier,
    Notifier
);
child_runner!(
    /// Runs an archive until the process is killed, when the test binary was started by
    /// [`ChildService::spawn_archive`]; returns at once otherwise.
    run_child_archive,
    CHILD_ARCHIVE,
    printyard_archive,
    Archive
);
child_runner!(
    /// Runs a stats service until the process is killed, when the test binary was started by
    /// [`ChildService::spawn_stats`]; returns at once otherwise.
    run_child_stats,
    CHILD_STATS,
    printyard_stats,
    Stats
);

/// A simulated farm on a loopback range of its own (127.A.B.1 with random A, B), fast enough
/// for tests, with its CA written to a file for the gateway's `extra_ca_files`.
pub struct SimFarm {
    pub farm: printyard_printer_sim::Farm,
    pub ca_path: String,
    _dir: nats_server::TempDir,
}

impl SimFarm {
    pub async fn start(models: &[printyard_printer_sim::Model], speed: f64) -> Self {
        Self::start_with_camera(models, speed, Default::default()).await
    }

    /// [`SimFarm::start`] with the cameras' frame rate and size.
    pub async fn start_with_camera(
        models: &[printyard_printer_sim::Model],
        speed: f64,
        camera: printyard_printer_sim::camera::CameraConfig,
    ) -> Self {
        let mut rng = rand::rng();
        let farm = printyard_printer_sim::Farm::start(printyard_printer_sim::FarmConfig {
            count: models.len(),
            models: models.to_vec(),
            speed,
            tick: Duration::from_millis(100),
            idle_report: Duration::from_secs(1),
            camera,
            first_ip: std::net::Ipv4Addr::new(
                127,
                rng.random_range(20..250),
                rng.random_range(0..250),
                1,
            ),
            ..Default::default()
        })
        .await
        .expect("the simulated farm starts");
        let dir = nats_server::TempDir::new("sim-ca");
        let path = dir.0.join("ca.pem");
        std::fs::write(&path, farm.ca_pem()).expect("writing the simulator CA");
        Self {
            farm,
            ca_path: path.to_string_lossy().into_owned(),
            _dir: dir,
        }
    }

    /// A gateway configuration for `env` that trusts this farm's CA.
    pub fn gateway_config(&self, env: &TestEnv) -> printyard_gateway::Config {
        let mut config = env.gateway_config();
        config.gateway.extra_ca_files = vec![self.ca_path.clone()];
        config.gateway.status_interval_ms = 50;
        config
    }
}

/// All seven services, each once.
pub struct Farm {
    pub api: Running,
    pub gateway: Running,
    pub archive: Running,
    pub scheduler: Running,
    pub stats: Running,
    pub notifier: Running,
    pub filament: Running,
}

impl Farm {
    pub async fn start(env: &TestEnv) -> Self {
        // Started one after another: concurrent migrations are tested on their own.
        Self {
            archive: spawn_archive(env).await,
            scheduler: spawn_scheduler(env).await,
            stats: spawn_stats(env).await,
            notifier: spawn_notifier(env).await,
            filament: spawn_filament(env).await,
            gateway: spawn_gateway(env).await,
            api: spawn_api(env).await,
        }
    }
}

/// A plain HTTP client with a deadline, for talking to the services.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building the HTTP client")
}

/// An HTTP client that sends `key` as `X-API-Key` with every request.
pub fn keyed_http(key: &str) -> reqwest::Client {
    keyed_builder(key)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building the HTTP client")
}

/// [`keyed_http`] for long responses (camera streams, event streams): no deadline on the whole
/// response, 10 s on each read.
pub fn keyed_stream_http(key: &str) -> reqwest::Client {
    keyed_builder(key)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(10))
        .build()
        .expect("building the HTTP client")
}

fn keyed_builder(key: &str) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(key).expect("a key is ASCII");
    value.set_sensitive(true);
    headers.insert("x-api-key", value);
    reqwest::Client::builder().default_headers(headers)
}

/// Adds a simulated printer through the API at `base` (`…/api/v1`) with `access_code`; its id.
pub async fn add_printer(
    client: &reqwest::Client,
    base: &str,
    printer: &printyard_printer_sim::Printer,
    name: &str,
    access_code: &str,
) -> i64 {
    let body = serde_json::json!({
        "name": name, "ip_address": printer.spec.ip.to_string(),
        "access_code": access_code, "serial_number": printer.spec.serial,
    });
    post_printer(client, base, &body).await
}

/// Adds the printer `body` describes (`POST /printers`) through the API at `base`; its id.
pub async fn post_printer(client: &reqwest::Client, base: &str, body: &serde_json::Value) -> i64 {
    let created: serde_json::Value = client
        .post(format!("{base}/printers"))
        .json(body)
        .send()
        .await
        .expect("POST /printers")
        .json()
        .await
        .expect("a JSON answer");
    created["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no printer id in {created}"))
}

/// Uploads `file` as `name` into the library (`POST /archives`) through the API at `base`; the
/// archive it made.
pub async fn upload_file(
    client: &reqwest::Client,
    base: &str,
    file: Vec<u8>,
    name: &str,
) -> serde_json::Value {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(file).file_name(name.to_owned()),
    );
    let response = client
        .post(format!("{base}/archives"))
        .multipart(form)
        .send()
        .await
        .expect("POST /archives");
    assert_eq!(response.status().as_u16(), 201, "the upload");
    response.json().await.expect("the archive as JSON")
}

/// `GET url` answered as JSON, or `None` when the request or its body fails: for polling in
/// [`eventually`], where a failed read is one more try.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// Waits until printer `id`'s status says `connected` (through the API at `base`).
pub async fn wait_connected(client: &reqwest::Client, base: &str, id: i64, within: Duration) {
    eventually(within, "the printer connected", || async {
        let status = get_json(client, &format!("{base}/printers/{id}/status")).await?;
        (status["connected"] == true).then_some(())
    })
    .await
}

/// User+system CPU seconds and resident / peak memory (KiB) of process `pid`, from `/proc`.
pub fn process_usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (indices 11, 12 after the name); USER_HZ is 100.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (cpu, kib("VmRSS:"), kib("VmHWM:"))
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn database_name_is_replaced_keeping_the_query() {
        assert_eq!(
            replace_database(
                "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable",
                "t1"
            ),
            "postgres://postgres@127.0.0.1:5433/t1?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5433/postgres", "t2"),
            "postgres://postgres@127.0.0.1:5433/t2"
        );
    }
}

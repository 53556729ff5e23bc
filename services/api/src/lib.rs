//! The HTTP edge of Printyard: `/api/v1` as the API reference documents it, answered by
//! asking the owning services over NATS. It keeps no state of its own but its schema, so any
//! number of replicas run behind a load balancer.

pub mod audit;
pub mod auth;
pub mod camera;
pub mod config;
pub mod dashboard;
pub mod dates;
pub mod discovery;
pub mod error;
pub mod export;
pub mod extract;
mod gateways;
pub mod openapi;
pub mod people;
pub mod registry;
pub mod routes;
pub mod state;
pub mod stats_answers;
pub mod status_cache;

use std::time::Instant;

use anyhow::Context as _;
use printyard_contracts::ServiceName;
use printyard_service::{Runtime, RuntimeOptions};
use tokio_util::sync::CancellationToken;

use auth::rate_limit::RateLimiter;
use auth::{access, key_cache, keys};
pub use config::Config;
use state::AppState;

/// The api service.
pub struct Api;

impl Api {
    /// Starts the service; `shutdown` stops it. The runtime says where it serves HTTP.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Runtime> {
        let mut runtime = Runtime::start(
            RuntimeOptions {
                service: ServiceName::Api,
                description: "The /api/v1 HTTP edge",
                nats: &config.nats,
                database: Some((&config.database, sqlx::migrate!("../../migrations/api"))),
                admin: &config.admin,
            },
            shutdown.clone(),
        )
        .await?;
        let jetstream = async_nats::jetstream::new(runtime.nats().clone());
        let state = shared_state(&runtime, &config, &jetstream).await?;
        // Heal a registry mirror left behind by a failed commit (or a lost bucket).
        let registry = state.registry.clone();
        runtime.tasks().spawn(async move {
            match registry.reconcile(std::time::Duration::from_secs(60)).await {
                Ok((0, 0)) => {}
                Ok((put, deleted)) => {
                    tracing::info!(put, deleted, "printer registry mirror reconciled")
                }
                Err(err) => tracing::warn!(error = %err, "printer registry reconciliation failed"),
            }
        });
        gateways::serve(&runtime, &state.registry, &jetstream).await?;
        // Audit entries that waited for the database.
        let (pool, audit_log) = (state.db.clone(), state.audit.clone());
        runtime.every(
            std::time::Duration::from_secs(1),
            "audit backlog not written yet",
            move || {
                let (pool, audit_log) = (pool.clone(), audit_log.clone());
                async move { audit_log.flush(&pool).await }
            },
        );
        // Ended sessions, abandoned single sign-ons, and audit entries past their retention.
        let (pool, retention) = (state.db.clone(), config.people.audit_retention_days);
        runtime.every(
            std::time::Duration::from_secs(3600),
            "sessions and audit sweep failed",
            move || {
                let pool = pool.clone();
                async move {
                    people::sessions::sweep(&pool).await?;
                    audit::sweep(&pool, retention).await.map(drop)
                }
            },
        );
        let http_addr = serve_http(&runtime, &config, state).await?;
        tracing::info!(http = %http_addr, "api listening");
        runtime.set_http_addr(http_addr);
        Ok(runtime)
    }
}

/// The state every request handler shares: caches that follow their buckets (statuses, known
/// printers, key revocations) and the clients of the services behind the API.
async fn shared_state(
    runtime: &Runtime,
    config: &Config,
    jetstream: &async_nats::jetstream::Context,
) -> anyhow::Result<AppState> {
    let db = runtime
        .db()
        .cloned()
        .context("the api service needs a database")?;
    let nats_kv =
        |name| printyard_service::nats::kv_bucket(jetstream, name, std::time::Duration::ZERO);
    let registry_kv = nats_kv(printyard_contracts::farm::PRINTER_REGISTRY_BUCKET).await?;
    let status_kv = nats_kv(printyard_contracts::farm::PRINTER_STATUS_BUCKET).await?;
    // What gateways open but, with their site's credentials, cannot create.
    gateways::farm_buckets(jetstream).await?;
    runtime
        .tasks()
        .spawn(status_cache::purge_legacy_keys(status_kv.clone()));
    let statuses = status_cache::StatusCache::default();
    runtime.tasks().spawn(
        statuses
            .clone()
            .follow(status_kv, runtime.shutdown_token().clone()),
    );
    let known = status_cache::KnownPrinters::default();
    runtime.tasks().spawn(
        known
            .clone()
            .follow(registry_kv.clone(), runtime.shutdown_token().clone()),
    );
    let keys = key_cache::KeyCache::new(std::time::Duration::from_secs(config.http.key_cache_secs));
    runtime.tasks().spawn(
        keys.clone()
            .follow_revocations(runtime.nats().clone(), runtime.shutdown_token().clone()),
    );
    let transfer = printyard_service::nats::transfer_bucket(
        jetstream,
        printyard_contracts::archive::TRANSFER_BUCKET,
    )
    .await?;
    let limiter = RateLimiter::new(config.rate_limits.clone());
    runtime.tasks().spawn(
        limiter
            .clone()
            .share(runtime.nats().clone(), runtime.shutdown_token().clone()),
    );
    Ok(AppState::new(state::Shared {
        transfer,
        rpc: runtime.rpc().clone(),
        limiter: limiter.clone(),
        registry: registry::Registry {
            db: db.clone(),
            kv: registry_kv,
            jetstream: jetstream.clone(),
        },
        statuses,
        keys,
        known,
        stats_answers: Default::default(),
        cameras: camera::Cameras::new(
            runtime.nats().clone(),
            std::time::Duration::from_secs(config.http.camera_timeout_secs.max(1)),
        ),
        db,
        started: Instant::now(),
        http: config.http.clone(),
        people: config.people.clone(),
        audit: Default::default(),
        sso: people::sso::Sso::new(config.people.sso.clone())?,
        event_streams: std::sync::Arc::new(tokio::sync::Semaphore::new(
            config.http.max_event_streams,
        )),
    }))
}

/// Serves `/api/v1` and the dashboard on the configured address until the service stops.
async fn serve_http(
    runtime: &Runtime,
    config: &Config,
    state: AppState,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let app = routes::router(state);
    let shutdown = runtime.shutdown_token().clone();
    let deadlines = config.http.deadlines();
    runtime.tasks().spawn(async move {
        printyard_service::http::serve(listener, app, deadlines, shutdown).await;
    });
    Ok(http_addr)
}

/// Creates an API key from the command line (bootstrap of a fresh install): connects to the
/// database, brings the `api` schema up to date, and stores the key's hash.
pub async fn create_key(
    config: &Config,
    name: &str,
    permissions: &[access::Permission],
) -> anyhow::Result<(keys::ApiKey, keys::ApiKeySecret)> {
    let pool = printyard_service::db::connect(&config.database, ServiceName::Api).await?;
    printyard_service::db::migrate(
        &pool,
        ServiceName::Api,
        sqlx::migrate!("../../migrations/api"),
    )
    .await?;
    let created = keys::create(&pool, name, permissions, &auth::scope::Scope::default()).await?;
    pool.close().await;
    Ok(created)
}

/// Creates a user with `role` and a fresh random password (bootstrap of a fresh install), or
/// gives an existing user of that name a new one (and enables them): returns the user's id and
/// the password, shown once.
pub async fn set_user_password(
    config: &Config,
    username: &str,
    role: &str,
) -> anyhow::Result<(i64, String)> {
    use base64::Engine as _;
    use rand::RngCore as _;
    let pool = printyard_service::db::connect(&config.database, ServiceName::Api).await?;
    printyard_service::db::migrate(
        &pool,
        ServiceName::Api,
        sqlx::migrate!("../../migrations/api"),
    )
    .await?;
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = people::passwords::hash(people::passwords::Password::new(password.clone())).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api.users (username, password_hash, role) VALUES ($1, $2, $3)
         ON CONFLICT (lower(username)) DO UPDATE
            SET password_hash = EXCLUDED.password_hash, enabled = true, failed_logins = 0,
                locked_until = NULL
         RETURNING id",
    )
    .bind(username)
    .bind(hash)
    .bind(role)
    .fetch_one(&pool)
    .await
    .with_context(|| format!("storing user {username:?} (is {role:?} a role?)"))?;
    pool.close().await;
    Ok((id, password))
}

/// Runs the api service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    printyard_service::run_until_signal(|shutdown| Api::start(config, shutdown)).await
}

//! The HTTP edge of Printyard: `/api/v1` as the API reference documents it, answered by
//! asking the owning services over NATS. It keeps no state of its own but its schema, so any
//! number of replicas run behind a load balancer.

pub mod auth;
pub mod camera;
pub mod config;
pub mod dashboard;
pub mod dates;
pub mod discovery;
pub mod error;
pub mod export;
pub mod extract;
pub mod openapi;
pub mod registry;
pub mod routes;
pub mod state;
pub mod stats_answers;
pub mod status_cache;

use std::time::Instant;

use anyhow::Context as _;
use printyard_contracts::farm::{
    PIN_LEARNED, PINS_LEARNED, PinLearned, PinStored, PinsLearned, PinsStored, SITE_PINS_LEARNED,
    SITE_STREAM, Site,
};
use printyard_contracts::rpc::Empty;
use printyard_contracts::{ErrorBody, ServiceName};
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
        let db = runtime
            .db()
            .cloned()
            .context("the api service needs a database")?;
        let jetstream = async_nats::jetstream::new(runtime.nats().clone());
        let nats_kv =
            |name| printyard_service::nats::kv_bucket(&jetstream, name, std::time::Duration::ZERO);
        let registry_kv = nats_kv(printyard_contracts::farm::PRINTER_REGISTRY_BUCKET).await?;
        let status_kv = nats_kv(printyard_contracts::farm::PRINTER_STATUS_BUCKET).await?;
        // What gateways open but, with their site's credentials, cannot create.
        farm_buckets(&jetstream).await?;
        runtime
            .tasks()
            .spawn(status_cache::purge_legacy_keys(status_kv.clone()));
        let statuses = status_cache::StatusCache::default();
        runtime
            .tasks()
            .spawn(statuses.clone().follow(status_kv, shutdown.clone()));
        let known = status_cache::KnownPrinters::default();
        runtime
            .tasks()
            .spawn(known.clone().follow(registry_kv.clone(), shutdown.clone()));
        let keys =
            key_cache::KeyCache::new(std::time::Duration::from_secs(config.http.key_cache_secs));
        runtime.tasks().spawn(
            keys.clone()
                .follow_revocations(runtime.nats().clone(), shutdown.clone()),
        );
        let transfer = printyard_service::nats::transfer_bucket(
            &jetstream,
            printyard_contracts::archive::TRANSFER_BUCKET,
        )
        .await?;
        let limiter = RateLimiter::new(config.rate_limits.clone());
        runtime.tasks().spawn(
            limiter
                .clone()
                .share(runtime.nats().clone(), shutdown.clone()),
        );
        let state = AppState::new(state::Shared {
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
        });
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
        let registry = state.registry.clone();
        runtime
            .serve(PINS_LEARNED, move |learned: PinsLearned| {
                let registry = registry.clone();
                async move {
                    let stored = registry
                        .keep_pins(&learned.pins, None)
                        .await
                        .map_err(|e| e.body())?;
                    if !stored.is_empty() {
                        tracing::info!(printers = stored.len(), "certificates pinned on first use");
                    }
                    Ok(PinsStored { stored })
                }
            })
            .await?;
        let registry = state.registry.clone();
        runtime
            .serve_per_site(SITE_PINS_LEARNED, move |site: Site, learned: PinsLearned| {
                let registry = registry.clone();
                async move {
                    let stored = registry
                        .keep_pins(&learned.pins, Some(&site))
                        .await
                        .map_err(|e| e.body())?;
                    if !stored.is_empty() {
                        tracing::info!(%site, printers = stored.len(), "certificates pinned on first use");
                    }
                    Ok(PinsStored { stored })
                }
            })
            .await?;
        let streams = jetstream.clone();
        runtime
            .serve_per_site(SITE_STREAM, move |site: Site, _: Empty| {
                let streams = streams.clone();
                async move {
                    source_site_stream(&streams, &site).await.map_err(|e| {
                        ErrorBody::new(printyard_contracts::ErrorCode::ServiceUnavailable, e)
                    })?;
                    Ok(Empty {})
                }
            })
            .await?;
        let registry = state.registry.clone();
        runtime
            .serve(PIN_LEARNED, move |learned: PinLearned| {
                let registry = registry.clone();
                async move {
                    let stored = registry
                        .keep_pins(std::slice::from_ref(&learned), None)
                        .await
                        .map_err(|e| e.body())?;
                    Ok(PinStored {
                        stored: !stored.is_empty(),
                    })
                }
            })
            .await?;
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("binding the HTTP listener on {}", config.http.listen))?;
        let http_addr = listener.local_addr()?;
        let app = routes::router(state);
        runtime.tasks().spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "HTTP listener failed");
            }
        });
        tracing::info!(http = %http_addr, "api listening");
        runtime.set_http_addr(http_addr);
        Ok(runtime)
    }
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
    let created = keys::create(&pool, name, permissions).await?;
    pool.close().await;
    Ok(created)
}

/// Runs the api service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    printyard_service::run_until_signal(|shutdown| Api::start(config, shutdown)).await
}

/// Creates the farm's buckets and stream that gateways use but, with credentials limited to
/// their site, may not create: the leases (with the gateways' default lease as max age), the
/// gateway memberships, and `FARM_EVENTS`.
async fn farm_buckets(jetstream: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    use printyard_contracts::farm::{
        DEFAULT_LEASE_SECS, GATEWAY_MEMBERS_BUCKET, PRINTER_OWNERS_BUCKET,
    };
    let lease = std::time::Duration::from_secs(DEFAULT_LEASE_SECS);
    printyard_service::nats::kv_bucket(jetstream, PRINTER_OWNERS_BUCKET, lease).await?;
    printyard_service::nats::kv_bucket(jetstream, GATEWAY_MEMBERS_BUCKET, lease).await?;
    printyard_service::nats::farm_events_stream(jetstream).await?;
    Ok(())
}

/// Makes `FARM_EVENTS` source the event stream a site keeps at its leaf node (in the site's
/// JetStream domain), unless it does already. Stream sourcing resumes where it stopped, so the
/// events of an uplink outage arrive once the link is back, each once (and consumers apply an
/// event id once in any case).
async fn source_site_stream(
    jetstream: &async_nats::jetstream::Context,
    site: &Site,
) -> Result<(), String> {
    use async_nats::jetstream::stream::{External, Source};
    use printyard_contracts::farm::{all_events_of, site_events_stream};
    use printyard_contracts::sites::{jetstream_api, site_domain};
    let mut stream = printyard_service::nats::farm_events_stream(jetstream)
        .await
        .map_err(|e| e.to_string())?;
    let info = stream.info().await.map_err(|e| e.to_string())?;
    let name = site_events_stream(site);
    let mut config = info.config.clone();
    let sources = config.sources.get_or_insert_with(Vec::new);
    if sources.iter().any(|s| s.name == name) {
        return Ok(());
    }
    sources.push(Source {
        name: name.clone(),
        filter_subject: Some(all_events_of(site)),
        external: Some(External {
            api_prefix: jetstream_api(Some(&site_domain(site))),
            delivery_prefix: None,
        }),
        ..Default::default()
    });
    jetstream
        .update_stream(config)
        .await
        .map_err(|e| format!("adding {name} to the event stream's sources: {e}"))?;
    tracing::info!(%site, stream = name, "the event stream sources the site's");
    Ok(())
}

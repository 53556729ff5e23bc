//! The runtime every service is built on (the one skeleton of a service): connections,
//! discovery, the admin listener, the database pool, the endpoints a service serves
//! ([`Runtime::serve_with`]), its event consumer ([`Runtime::consume_events`]), its periodic
//! work ([`Runtime::every`]) and an orderly stop. A service's `start` returns its runtime, and
//! its binary hands control to [`crate::run_until_signal`]. A new service is its config, its
//! handlers, and one `Runtime::start`.
//!
//! Stopping, in order: readiness turns false; endpoints unsubscribe (no new work); in-flight
//! handlers and tasks finish (bounded by a grace period); NATS drains; the pool closes.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::Client;
use async_nats::service::{Service, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use printyard_contracts::farm::Site;
use printyard_contracts::{Endpoint, ErrorBody, ErrorCode, ServiceName};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::admin::Readiness;
use crate::config::{AdminConfig, DatabaseConfig, NatsConfig};
use crate::farm_events::{ConsumerOptions, Delivery};
use crate::rpc::{RpcClient, error_reply};
use crate::{db, nats};
use printyard_contracts::farm::FarmEvent;

/// How long in-flight work may take to finish after a stop was asked for.
const GRACE_PERIOD: Duration = Duration::from_secs(25);

/// Makes `ring` the process's rustls provider. Two are compiled in (object_store's S3 client
/// brings `aws-lc-rs`), and then any TLS client that asks rustls for "the" provider (reqwest
/// inside object_store, async-nats with TLS) fails with "builder error" unless one is chosen.
/// Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a service needs started.
pub struct RuntimeOptions<'a> {
    pub service: ServiceName,
    pub description: &'static str,
    pub nats: &'a NatsConfig,
    /// The database and this service's migrations; `None` for the gateway.
    pub database: Option<(&'a DatabaseConfig, Migrator)>,
    pub admin: &'a AdminConfig,
}

pub struct Runtime {
    service: ServiceName,
    nats: Client,
    rpc: RpcClient,
    db: Option<PgPool>,
    micro: Service,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    admin_addr: SocketAddr,
    /// Where the service serves HTTP, if it does (the api).
    http_addr: Option<SocketAddr>,
    admin_stop: CancellationToken,
    admin_task: JoinHandle<()>,
}

impl Runtime {
    /// Connects to NATS (and Postgres, migrating the service's schema), registers the service
    /// for discovery and starts the admin listener. `shutdown` stops everything when cancelled.
    pub async fn start(
        options: RuntimeOptions<'_>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let service = options.service;
        install_crypto_provider();
        crate::metrics::handle();
        let nats = nats::connect(options.nats, service).await?;
        let db = match options.database {
            Some((config, migrator)) => {
                let pool = db::connect(config, service).await?;
                db::migrate(&pool, service, migrator).await?;
                Some(pool)
            }
            None => None,
        };
        let micro = nats
            .service_builder()
            .description(options.description)
            .queue_group(service.as_str())
            .start(service.as_str(), env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|e| anyhow::anyhow!("registering {service} for discovery: {e}"))?;
        // Started means discoverable: the server has our `$SRV` subscriptions.
        nats::sync_with_server(&nats, Duration::from_secs(5))
            .await
            .map_err(|e| anyhow::anyhow!("registering {service} for discovery: {e}"))?;

        let mut readiness = Readiness::default().with_check("nats", {
            let nats = nats.clone();
            move || {
                let connected = nats::is_connected(&nats);
                async move {
                    if connected {
                        Ok(())
                    } else {
                        Err("disconnected".to_owned())
                    }
                }
            }
        });
        if let Some(pool) = &db {
            let pool = pool.clone();
            readiness = readiness.with_check("postgres", move || {
                let pool = pool.clone();
                async move { db::ping(&pool, Duration::from_secs(1)).await }
            });
        }
        let listener = tokio::net::TcpListener::bind(options.admin.listen)
            .await
            .with_context(|| format!("binding the admin listener on {}", options.admin.listen))?;
        let admin_addr = listener.local_addr()?;
        let admin_stop = CancellationToken::new();
        let admin_router = crate::admin::router(readiness, shutdown.clone());
        let admin_task = tokio::spawn({
            let stop = admin_stop.clone();
            async move {
                crate::http::serve(listener, admin_router, Default::default(), stop).await;
            }
        });
        tracing::info!(service = %service, admin = %admin_addr, "service started");
        let rpc = RpcClient::new(nats.clone(), options.nats.request_timeout());
        Ok(Self {
            service,
            nats,
            rpc,
            db,
            micro,
            shutdown,
            tasks: TaskTracker::new(),
            admin_addr,
            http_addr: None,
            admin_stop,
            admin_task,
        })
    }

    pub fn service(&self) -> ServiceName {
        self.service
    }

    pub fn nats(&self) -> &Client {
        &self.nats
    }

    /// A client for calling other services, with the configured deadline.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// The pool; central services always have one.
    pub fn db(&self) -> Option<&PgPool> {
        self.db.as_ref()
    }

    /// The pool of a service started with a database.
    pub fn database(&self) -> anyhow::Result<PgPool> {
        self.db
            .clone()
            .ok_or_else(|| anyhow::anyhow!("{} needs a database", self.service.as_str()))
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Tasks the stop waits for: put long-running work here.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the service serves HTTP, once it said so.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Records where the service serves HTTP (the api, once it listens).
    pub fn set_http_addr(&mut self, addr: SocketAddr) {
        self.http_addr = Some(addr);
    }

    /// [`Runtime::serve`] with a handler of `state` (cloned for each request) and the request,
    /// as a service serves its endpoints from the one object that owns them:
    /// `runtime.serve_with(LIST, &library, |l, r| async move { l.list(r).await })`.
    pub async fn serve_with<S, Req, Resp, F, Fut>(
        &self,
        endpoint: Endpoint<Req, Resp>,
        state: &S,
        handler: F,
    ) -> anyhow::Result<()>
    where
        S: Clone + Send + Sync + 'static,
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(S, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ErrorBody>> + Send + 'static,
    {
        let state = state.clone();
        self.serve(endpoint, move |request| handler(state.clone(), request))
            .await
    }

    /// [`Runtime::serve_bytes`] with a handler of `state` and the request (see
    /// [`Runtime::serve_with`]).
    pub async fn serve_bytes_with<S, Req, F, Fut>(
        &self,
        endpoint: Endpoint<Req, ()>,
        state: &S,
        handler: F,
    ) -> anyhow::Result<()>
    where
        S: Clone + Send + Sync + 'static,
        Req: DeserializeOwned + Send + 'static,
        F: Fn(S, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, ErrorBody>> + Send + 'static,
    {
        let state = state.clone();
        self.serve_bytes(endpoint, move |request| handler(state.clone(), request))
            .await
    }

    /// Consumes `FARM_EVENTS` with the service's durable consumer (see
    /// [`crate::farm_events::consume`]) until the service stops.
    pub fn consume_events<H, F>(&self, options: ConsumerOptions, handler: H)
    where
        H: Fn(FarmEvent, Delivery) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let jetstream = async_nats::jetstream::new(self.nats.clone());
        self.tasks.spawn(crate::farm_events::consume(
            jetstream,
            options,
            self.shutdown.clone(),
            handler,
        ));
    }

    /// Runs `work` every `period` until the service stops; a failure is logged with `what`.
    pub fn every<W, Fut, E>(&self, period: Duration, what: &'static str, work: W)
    where
        W: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                if let Err(err) = work().await {
                    tracing::warn!(error = %err, "{what}");
                }
            }
        });
    }

    /// Serves `endpoint` with `handler` until shutdown, each request in its own task, in the
    /// trace of its caller. A request that does not decode is answered `VALIDATION_ERROR`.
    pub async fn serve<Req, Resp, F, Fut>(
        &self,
        endpoint: Endpoint<Req, Resp>,
        handler: F,
    ) -> anyhow::Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ErrorBody>> + Send + 'static,
    {
        let raw = endpoint.raw();
        self.serve_bytes(raw, move |req| {
            let answer = handler(req);
            async move { encode(&answer.await?) }
        })
        .await
    }

    /// Serves `endpoint` whose answer is raw bytes (file contents), not JSON; the request is
    /// JSON as everywhere. Failures are answered as [`Runtime::serve`] answers them.
    pub async fn serve_bytes<Req, F, Fut>(
        &self,
        endpoint: Endpoint<Req, ()>,
        handler: F,
    ) -> anyhow::Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        F: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, ErrorBody>> + Send + 'static,
    {
        self.serve_at(endpoint, endpoint.name.to_owned(), move |_, req| {
            handler(req)
        })
        .await
    }

    /// Serves `endpoint` per site, on `<group>.<name>.<site>` (see
    /// [`Endpoint::site_subject`]): `handler` gets the site the request was sent for, which a
    /// site's credentials cannot choose (they may publish on their own site's subject only).
    pub async fn serve_per_site<Req, Resp, F, Fut>(
        &self,
        endpoint: Endpoint<Req, Resp>,
        handler: F,
    ) -> anyhow::Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Site, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ErrorBody>> + Send + 'static,
    {
        let name = endpoint.name;
        self.serve_at(endpoint.raw(), format!("{name}.*"), move |subject, req| {
            let site = subject.rsplit('.').next().and_then(|s| Site::parse(s).ok());
            let answer = site.map(|site| handler(site, req));
            async move {
                let Some(answer) = answer else {
                    return Err(ErrorBody::new(
                        ErrorCode::ValidationError,
                        format!("{name}: not a site's subject"),
                    ));
                };
                encode(&answer.await?)
            }
        })
        .await
    }

    /// Serves `endpoint` on `<group>.<subject>`, handing `handler` the subject each request
    /// came on.
    async fn serve_at<Req, F, Fut>(
        &self,
        endpoint: Endpoint<Req, ()>,
        subject: String,
        handler: F,
    ) -> anyhow::Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        F: Fn(&str, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, ErrorBody>> + Send + 'static,
    {
        let mut subscription = self
            .micro
            .group(endpoint.group())
            .endpoint_builder()
            .name(endpoint.name)
            .add(subject)
            .await
            .map_err(|e| anyhow::anyhow!("serving {endpoint:?}: {e}"))?;
        // Callers on other connections reach the endpoint only once the server has read the
        // subscription; without this, a request right after start could find "no responders".
        nats::sync_with_server(&self.nats, Duration::from_secs(5))
            .await
            .map_err(|e| anyhow::anyhow!("serving {endpoint:?}: {e}"))?;
        let shutdown = self.shutdown.clone();
        let tasks = self.tasks.clone();
        let name = endpoint.name;
        self.tasks.spawn(async move {
            loop {
                let request = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    request = subscription.next() => request,
                };
                let Some(request) = request else { break };
                let handler = handler.clone();
                let span = tracing::info_span!(
                    "rpc.handle",
                    otel.kind = "server",
                    rpc.subject = %request.message.subject,
                );
                nats::adopt_context(&span, request.message.headers.as_ref());
                tasks.spawn(
                    async move {
                        let started = Instant::now();
                        let answer = match serde_json::from_slice::<Req>(&request.message.payload) {
                            Ok(req) => handler(request.message.subject.as_str(), req).await,
                            Err(err) => Err(ErrorBody::new(
                                ErrorCode::ValidationError,
                                format!("request does not match {name}: {err}"),
                            )),
                        };
                        let (outcome, sent) = match answer {
                            Ok(bytes) => ("ok", request.respond(Ok(bytes)).await),
                            Err(body) => {
                                let (error, headers) = error_reply(&body);
                                (
                                    "error",
                                    request.respond_with_headers(Err(error), headers).await,
                                )
                            }
                        };
                        if let Err(err) = sent {
                            tracing::warn!(error = %err, "reply could not be sent");
                        }
                        crate::metrics::record_rpc(name, outcome, started);
                    }
                    .instrument(span),
                );
            }
            // Unsubscribe so that the queue group sends new requests to other replicas.
            if let Err(err) = subscription.stop().await {
                tracing::warn!(error = %err, "endpoint did not unsubscribe cleanly");
            }
        });
        Ok(())
    }

    /// Waits for the shutdown token, then stops in order (see the module docs).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        tracing::info!(service = %self.service, "stopping: finishing in-flight work");
        self.tasks.close();
        if tokio::time::timeout(GRACE_PERIOD, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; abandoning unfinished work");
        }
        if let Err(err) = self.micro.stop().await {
            tracing::warn!(error = %err, "discovery did not stop cleanly");
        }
        match tokio::time::timeout(Duration::from_secs(5), self.nats.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "NATS drain failed"),
            Err(_) => tracing::warn!("NATS drain did not finish within 5 s"),
        }
        if let Some(pool) = self.db {
            pool.close().await;
        }
        self.admin_stop.cancel();
        let _ = self.admin_task.await;
        tracing::info!(service = %self.service, "stopped");
        Ok(())
    }
}

/// A handler's answer as the JSON it travels as.
fn encode<Resp: Serialize>(resp: &Resp) -> Result<Bytes, ErrorBody> {
    serde_json::to_vec(resp).map(Bytes::from).map_err(|e| {
        tracing::error!(error = %e, "reply not encodable");
        ErrorBody::new(ErrorCode::InternalError, "Internal server error")
    })
}

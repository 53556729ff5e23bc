//! The NATS side of the farm: the KV buckets and the event stream, created if missing
//! (idempotent, so every gateway and replica can call it at start).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use printyard_contracts::archive::site_transfer_bucket;
use printyard_contracts::farm::Site;
use printyard_contracts::farm::{
    GATEWAY_MEMBERS_BUCKET, PRINTER_OWNERS_BUCKET, PRINTER_REGISTRY_BUCKET, PRINTER_STATUS_BUCKET,
};
use printyard_service::backoff::Backoff;
use printyard_service::nats::kv_bucket;

pub struct FarmStore {
    /// The plain client, for command subscriptions and replies.
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub registry: kv::Store,
    pub owners: kv::Store,
    pub status: kv::Store,
    /// `<site>.<instance>` → printers held; entries expire like leases, so the live gateways
    /// of a site can count each other and share its printers.
    pub members: kv::Store,
    /// Files on their way to `archive` (3MF captured from printers): the site's own bucket.
    pub transfer: async_nats::jetstream::object_store::ObjectStore,
    /// Its name, which the `print_file` events carry.
    pub transfer_bucket: String,
}

impl FarmStore {
    /// [`FarmStore::open`], tried again with backoff for up to `patience`: a gateway with its
    /// site's credentials waits for the central services to create the buckets.
    pub async fn open_when_ready(
        client: async_nats::Client,
        domain: Option<&str>,
        site: &Site,
        lease: Duration,
        patience: Duration,
    ) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            match Self::open(client.clone(), domain, site, lease).await {
                Ok(store) => return Ok(store),
                Err(err) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %err, "farm buckets not open yet; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Opens (or creates) the buckets and the stream. `lease` is the owners bucket's max age:
    /// an owner that stops renewing loses its printers after it. A gateway whose credentials
    /// are limited to its site opens what the central services created (retried until they
    /// have) and creates nothing but its site's transfer bucket.
    pub async fn open(
        client: async_nats::Client,
        domain: Option<&str>,
        site: &Site,
        lease: Duration,
    ) -> anyhow::Result<Self> {
        let js = printyard_service::nats::central_jetstream(client.clone(), domain);
        let registry = kv_bucket(&js, PRINTER_REGISTRY_BUCKET, Duration::ZERO).await?;
        let owners = kv_bucket(&js, PRINTER_OWNERS_BUCKET, lease).await?;
        let status = kv_bucket(&js, PRINTER_STATUS_BUCKET, Duration::ZERO).await?;
        let members = kv_bucket(&js, GATEWAY_MEMBERS_BUCKET, lease).await?;
        printyard_service::nats::farm_events_stream(&js).await?;
        let transfer_bucket = site_transfer_bucket(site);
        let transfer = printyard_service::nats::transfer_bucket(&js, &transfer_bucket).await?;
        Ok(Self {
            client,
            jetstream: js,
            registry,
            owners,
            status,
            members,
            transfer,
            transfer_bucket,
        })
    }
}

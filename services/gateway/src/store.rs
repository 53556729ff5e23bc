//! The NATS side of the farm: the KV buckets and the event stream, created if missing
//! (idempotent, so every gateway and replica can call it at start).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use printyard_contracts::archive::site_transfer_bucket;
use printyard_contracts::farm::Site;
use printyard_contracts::farm::{
    GATEWAY_MEMBERS_BUCKET, PRINTER_OWNERS_BUCKET, PRINTER_REGISTRY_BUCKET, PRINTER_STATUS_BUCKET,
};
use printyard_contracts::farm::{all_events_of, site_events_stream};
use printyard_contracts::sites::site_domain;
use printyard_service::backoff::Backoff;
use printyard_service::nats::kv_bucket;

pub struct FarmStore {
    /// The plain client, for command subscriptions and replies.
    pub client: async_nats::Client,
    /// Where events are published: the central JetStream, or the site's own (its leaf node's,
    /// `gateway.site_jetstream`), whose stream `FARM_EVENTS` sources.
    pub events: jetstream::Context,
    pub registry: kv::Store,
    pub owners: kv::Store,
    pub status: kv::Store,
    /// `<site>.<instance>` → printers held; entries expire like leases, so the live gateways
    /// of a site can count each other and share its printers.
    pub members: kv::Store,
    /// Files on their way to `archive` (3MF captured from printers): the site's own bucket.
    pub transfer: async_nats::jetstream::object_store::ObjectStore,
    /// Its name and JetStream domain (the site's, when it keeps its files), which the
    /// `print_file` events carry.
    pub transfer_bucket: String,
    pub transfer_domain: Option<String>,
}

/// Where a site's events and captured files are kept first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeping {
    /// Straight into the central JetStream.
    Central,
    /// In the site's own JetStream at its leaf node (domain `site-<site>`), which keeps them
    /// through an uplink outage; the central services source and read them from there.
    AtSite,
}

impl FarmStore {
    /// [`FarmStore::open`], tried again with backoff for up to `patience`: a gateway with its
    /// site's credentials waits for the central services to create the buckets.
    pub async fn open_when_ready(
        client: async_nats::Client,
        domain: Option<&str>,
        site: &Site,
        lease: Duration,
        keeping: Keeping,
        patience: Duration,
    ) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            match Self::open(client.clone(), domain, site, lease, keeping).await {
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
        keeping: Keeping,
    ) -> anyhow::Result<Self> {
        let js = printyard_service::nats::central_jetstream(client.clone(), domain);
        let registry = kv_bucket(&js, PRINTER_REGISTRY_BUCKET, Duration::ZERO).await?;
        let owners = kv_bucket(&js, PRINTER_OWNERS_BUCKET, lease).await?;
        let status = kv_bucket(&js, PRINTER_STATUS_BUCKET, Duration::ZERO).await?;
        let members = kv_bucket(&js, GATEWAY_MEMBERS_BUCKET, lease).await?;
        let (events, transfer_domain) = match keeping {
            Keeping::Central => {
                printyard_service::nats::farm_events_stream(&js).await?;
                (js, None)
            }
            Keeping::AtSite => {
                let domain = site_domain(site);
                let local = jetstream::with_domain(client.clone(), &domain);
                site_events(&local, site).await?;
                (local, Some(domain))
            }
        };
        let transfer_bucket = site_transfer_bucket(site);
        let transfer = printyard_service::nats::transfer_bucket(&events, &transfer_bucket).await?;
        Ok(Self {
            client,
            events,
            transfer_domain,
            registry,
            owners,
            status,
            members,
            transfer,
            transfer_bucket,
        })
    }
}

/// Opens (or creates) the site's own event stream at its leaf node: the site's events, kept
/// as long as `FARM_EVENTS` keeps them, deduplicated by event id like it.
async fn site_events(local: &jetstream::Context, site: &Site) -> anyhow::Result<()> {
    let name = site_events_stream(site);
    local
        .get_or_create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![all_events_of(site)],
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the site's stream {name}: {e}"))?;
    Ok(())
}

//! The NATS side of the farm: the KV buckets and the event stream, created if missing
//! (idempotent, so every gateway and replica can call it at start).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use printyard_contracts::farm::{
    FARM_EVENTS_STREAM, GATEWAY_MEMBERS_BUCKET, PRINTER_OWNERS_BUCKET, PRINTER_REGISTRY_BUCKET,
    PRINTER_STATUS_BUCKET, all_events,
};
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
}

impl FarmStore {
    /// Opens (or creates) the buckets and the stream. `lease` is the owners bucket's max age:
    /// an owner that stops renewing loses its printers after it.
    pub async fn open(client: async_nats::Client, lease: Duration) -> anyhow::Result<Self> {
        let js = jetstream::new(client.clone());
        let registry = kv_bucket(&js, PRINTER_REGISTRY_BUCKET, Duration::ZERO).await?;
        let owners = kv_bucket(&js, PRINTER_OWNERS_BUCKET, lease).await?;
        let status = kv_bucket(&js, PRINTER_STATUS_BUCKET, Duration::ZERO).await?;
        let members = kv_bucket(&js, GATEWAY_MEMBERS_BUCKET, lease).await?;
        js.get_or_create_stream(stream::Config {
            name: FARM_EVENTS_STREAM.to_owned(),
            subjects: vec![all_events()],
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating stream {FARM_EVENTS_STREAM}: {e}"))?;
        Ok(Self {
            client,
            jetstream: js,
            registry,
            owners,
            status,
            members,
        })
    }
}

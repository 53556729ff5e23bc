//! The NATS side of the farm: the KV buckets and the event stream, created if missing
//! (idempotent, so every gateway and replica can call it at start).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use printyard_contracts::farm::{
    GATEWAY_MEMBERS_BUCKET, PRINTER_OWNERS_BUCKET, PRINTER_REGISTRY_BUCKET, PRINTER_STATUS_BUCKET,
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
    /// Files on their way to `archive` (3MF captured from printers).
    pub transfer: async_nats::jetstream::object_store::ObjectStore,
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
        printyard_service::nats::farm_events_stream(&js).await?;
        let transfer = printyard_service::nats::transfer_bucket(&js).await?;
        Ok(Self {
            client,
            jetstream: js,
            registry,
            owners,
            status,
            members,
            transfer,
        })
    }
}

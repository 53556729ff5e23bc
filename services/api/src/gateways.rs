//! What the api serves gateways over NATS: the certificates they pin on first use (from the
//! farm's gateways, and per site from a site's, which may speak for their own site only), and a
//! site's event stream sourced into `FARM_EVENTS`; and the buckets and stream gateways use but,
//! with credentials limited to their site, may not create.

use async_nats::jetstream::Context as JetStream;
use printyard_contracts::ErrorBody;
use printyard_contracts::farm::{
    PIN_LEARNED, PINS_LEARNED, PinLearned, PinStored, PinsLearned, SITE_PINS_LEARNED, SITE_STREAM,
    Site,
};
use printyard_contracts::rpc::Empty;
use printyard_service::Runtime;

use crate::registry::Registry;

/// Serves the gateways' calls until the service stops.
pub(crate) async fn serve(
    runtime: &Runtime,
    registry: &Registry,
    jetstream: &JetStream,
) -> anyhow::Result<()> {
    runtime
        .serve_with(PINS_LEARNED, registry, |registry, learned: PinsLearned| async move {
            registry.pins_learned(learned, None).await
        })
        .await?;
    let per_site = registry.clone();
    runtime
        .serve_per_site(
            SITE_PINS_LEARNED,
            move |site: Site, learned: PinsLearned| {
                let registry = per_site.clone();
                async move { registry.pins_learned(learned, Some(site)).await }
            },
        )
        .await?;
    runtime
        .serve_with(
            PIN_LEARNED,
            registry,
            |registry, learned: PinLearned| async move {
                let stored = registry
                    .keep_pins(std::slice::from_ref(&learned), None)
                    .await
                    .map_err(|e| e.body())?;
                Ok(PinStored {
                    stored: !stored.is_empty(),
                })
            },
        )
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
        .await
}

/// Creates the farm's buckets and stream that gateways use but, with credentials limited to
/// their site, may not create: the leases (with the gateways' default lease as max age), the
/// gateway memberships, and `FARM_EVENTS`.
pub(crate) async fn farm_buckets(jetstream: &JetStream) -> anyhow::Result<()> {
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
async fn source_site_stream(jetstream: &JetStream, site: &Site) -> Result<(), String> {
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

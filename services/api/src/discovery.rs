//! How many instances of each service are alive, by the NATS micro-service discovery ping
//! (`$SRV.PING.<name>`): every running instance answers, so answers are collected for a short
//! window rather than taking the first.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures::StreamExt;
use printyard_contracts::system::PingResponse;
use printyard_contracts::{ServiceName, subjects};

/// Counts the instances of `service` that answer within `window`.
pub async fn instances(
    client: &Client,
    service: ServiceName,
    window: Duration,
) -> Result<usize, String> {
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish_with_reply(subjects::discovery_ping(service), inbox, Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::sleep(window);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            message = answers.next() => {
                let Some(message) = message else { break };
                if let Ok(ping) = serde_json::from_slice::<PingResponse>(&message.payload)
                    && ping.name == service.as_str()
                {
                    seen.insert(ping.id);
                }
            }
        }
    }
    let _ = answers.unsubscribe().await;
    Ok(seen.len())
}

/// Instances of every service, asked in parallel.
pub async fn all_instances(
    client: &Client,
    window: Duration,
) -> BTreeMap<ServiceName, Result<usize, String>> {
    let asks = ServiceName::ALL
        .map(|service| async move { (service, instances(client, service, window).await) });
    futures::future::join_all(asks).await.into_iter().collect()
}

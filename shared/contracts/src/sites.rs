//! What a site's gateway may do on NATS, and nothing more: the publish and subscribe
//! permissions of a site's credentials, derived from the subjects and buckets of this crate so
//! that they cannot drift from what the gateway sends.
//!
//! The same list serves twice (docs/sites.md): as the gateway user's permissions at the
//! site's leaf node (NATS itself refuses the gateway anything else), and as the permissions of
//! the user the leaf node connects to the central cluster with (so a leaf node's own
//! configuration cannot widen them).

use serde::Serialize;

use crate::ServiceName;
use crate::archive::{FILE_CHUNK, site_transfer_bucket};
use crate::farm::{
    FARM_EVENTS_STREAM, GATEWAY_MEMBERS_BUCKET, PRINTER_OWNERS_BUCKET, PRINTER_REGISTRY_BUCKET,
    PRINTER_STATUS_BUCKET, SITE_PINS_LEARNED, SITE_STREAM, Site, site_inbox_prefix,
};
use crate::subjects::ROOT;

/// The JetStream domain of the central cluster in a deployment with sites on leaf nodes: a
/// leaf node's clients reach the central JetStream as `$JS.<domain>.API`.
pub const CENTRAL_DOMAIN: &str = "central";

/// The JetStream domain of a site's leaf node when the site keeps its events and captured
/// files itself (`gateway.site_jetstream`): `site-<site>`.
pub fn site_domain(site: &Site) -> String {
    format!("site-{site}")
}

/// The JetStream API prefix through which a connection reaches the central cluster's
/// JetStream: `$JS.API` directly, `$JS.<domain>.API` through a leaf node.
pub fn jetstream_api(domain: Option<&str>) -> String {
    match domain {
        Some(domain) => format!("$JS.{domain}.API"),
        None => "$JS.API".to_owned(),
    }
}

/// NATS permissions in the shape of a `nats-server` configuration's `permissions` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Permissions {
    pub publish: Allow,
    pub subscribe: Allow,
    /// Replies to the requests it received (commands, camera, discovery pings) are allowed,
    /// one per request.
    pub allow_responses: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allow {
    pub allow: Vec<String>,
}

/// How a site runs: `buffered` when its leaf node runs JetStream in [`site_domain`] and keeps
/// the site's events and captured files through an uplink outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SiteMode {
    pub buffered: bool,
}

/// The permissions of the user a site's leaf node connects to the central cluster with: the
/// gateway's ([`gateway_permissions`]), and for a buffered site, instead of publishing events
/// directly (they are sourced), what sourcing needs across the link: the central JetStream's
/// requests to the site's domain, its flow control, and the deliveries and replies back.
pub fn leaf_permissions(site: &Site, domain: Option<&str>, mode: SiteMode) -> Permissions {
    let mut permissions = gateway_permissions(site, domain, SiteMode::default());
    if mode.buffered {
        let events = format!("{ROOT}.events.{site}.>");
        permissions.publish.allow.retain(|s| *s != events);
        permissions.publish.allow.extend([
            // Stream sourcing: deliveries of the site stream, and replies to the central
            // JetStream's consumer requests.
            "$JS.S.>".to_owned(),
            "$JSC.R.>".to_owned(),
        ]);
        permissions.subscribe.allow.extend([
            // The central services reach the site's JetStream (sourcing its events, reading
            // its transfer bucket)...
            format!("{}.>", jetstream_api(Some(&site_domain(site)))),
            // ...with flow control.
            "$JS.FC.>".to_owned(),
        ]);
    }
    permissions
}

/// The permissions of a gateway of `site`, reaching the central JetStream in `domain` (see
/// [`jetstream_api`]), and for a buffered site its leaf node's own JetStream.
pub fn gateway_permissions(site: &Site, domain: Option<&str>, mode: SiteMode) -> Permissions {
    let js = &jetstream_api(domain);
    let inbox = site_inbox_prefix(site);
    let transfer = site_transfer_bucket(site);
    let kv = |bucket: &str| format!("KV_{bucket}");
    let mut publish = vec![
        // Its own inboxes (a round trip to itself proves the server read its subscriptions).
        format!("{inbox}.>"),
        // Replies to the central services' requests (commands, camera, discovery). NATS's
        // `allow_responses` holds for clients but not across a leaf node connection, so the
        // central user of a leaf node may publish to inboxes; it may not subscribe to any but
        // its own, so it cannot see a reply meant for another.
        "_INBOX.>".to_owned(),
        // Opening the buckets and the stream (read their configuration).
        format!("{js}.STREAM.INFO.{}", kv(PRINTER_REGISTRY_BUCKET)),
        format!("{js}.STREAM.INFO.{}", kv(PRINTER_OWNERS_BUCKET)),
        format!("{js}.STREAM.INFO.{}", kv(PRINTER_STATUS_BUCKET)),
        format!("{js}.STREAM.INFO.{}", kv(GATEWAY_MEMBERS_BUCKET)),
        format!("{js}.STREAM.INFO.{FARM_EVENTS_STREAM}"),
        // Watches of its site's registry entries and gateways: named consumers whose filter
        // is in the subject, so the server checks it.
        format!(
            "{js}.CONSUMER.CREATE.{}.*.$KV.{PRINTER_REGISTRY_BUCKET}.{site}.>",
            kv(PRINTER_REGISTRY_BUCKET)
        ),
        format!(
            "{js}.CONSUMER.CREATE.{}.*.$KV.{GATEWAY_MEMBERS_BUCKET}.{site}.>",
            kv(GATEWAY_MEMBERS_BUCKET)
        ),
        // Flow control of those watches.
        format!("$JS.FC.{}.>", kv(PRINTER_REGISTRY_BUCKET)),
        format!("$JS.FC.{}.>", kv(GATEWAY_MEMBERS_BUCKET)),
    ];
    // Reads and writes of its site's keys: leases, statuses, memberships. Through a leaf
    // node, KV writes travel with the domain's API prefix (`$KV.>` itself does not cross).
    let writes = match domain {
        Some(_) => format!("{js}.$KV"),
        None => "$KV".to_owned(),
    };
    for bucket in [
        PRINTER_OWNERS_BUCKET,
        PRINTER_STATUS_BUCKET,
        GATEWAY_MEMBERS_BUCKET,
    ] {
        publish.push(format!("{writes}.{bucket}.{site}.>"));
        publish.push(format!(
            "{js}.DIRECT.GET.{}.$KV.{bucket}.{site}.>",
            kv(bucket)
        ));
    }
    publish.extend([
        // Its own transfer bucket, whole.
        format!("{js}.STREAM.CREATE.OBJ_{transfer}"),
        format!("{js}.STREAM.INFO.OBJ_{transfer}"),
        format!("{js}.STREAM.PURGE.OBJ_{transfer}"),
        format!("{js}.STREAM.MSG.GET.OBJ_{transfer}"),
        format!("{js}.DIRECT.GET.OBJ_{transfer}.>"),
        format!("$O.{transfer}.>"),
        // Its printers' events and camera frames.
        format!("{ROOT}.events.{site}.>"),
        format!("{ROOT}.camera.{site}.>"),
        // Pins learned on first use, for its site's printers only; and its own event stream
        // to be sourced, when it keeps one.
        SITE_PINS_LEARNED.site_subject(site),
        SITE_STREAM.site_subject(site),
        // The files of queued jobs, to upload them to its printers (content-addressed keys
        // that the scheduler hands it).
        FILE_CHUNK.subject(),
    ]);
    if mode.buffered {
        // The site's own JetStream at its leaf node (its event stream and transfer bucket),
        // asked as `$JS.site-<site>.API`, which the leaf node maps to its local `$JS.API`
        // before it checks permissions. This block is the gateway's at its own leaf node only:
        // the leaf node's user on the central cluster gets none of it.
        publish.push("$JS.API.>".to_owned());
    }
    let gateway = ServiceName::Gateway.as_str();
    let subscribe = vec![
        format!("{inbox}.>"),
        // Commands, print requests and camera requests to its printers.
        format!("{ROOT}.printers.{site}.>"),
        // NATS micro-service discovery of the gateway.
        "$SRV.PING".to_owned(),
        "$SRV.INFO".to_owned(),
        "$SRV.STATS".to_owned(),
        format!("$SRV.*.{gateway}"),
        format!("$SRV.*.{gateway}.*"),
    ];
    Permissions {
        publish: Allow { allow: publish },
        subscribe: Allow { allow: subscribe },
        allow_responses: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_reaches_its_own_keys_subjects_and_bucket_only() {
        let site = Site::parse("north").unwrap();
        let permissions = gateway_permissions(&site, None, SiteMode::default());
        let all: Vec<&String> = permissions
            .publish
            .allow
            .iter()
            .chain(&permissions.subscribe.allow)
            .collect();
        for subject in &all {
            let wide = subject.ends_with("printyard.>")
                || subject.ends_with("$KV.>")
                || subject.as_str() == ">"
                || (subject.starts_with("_INBOX.")
                    && permissions.subscribe.allow.contains(subject))
                || subject.contains("$KV.printer_registry.>")
                || subject.contains("$KV.printer_registry.*");
            assert!(!wide, "{subject} reaches beyond the site");
        }
        assert!(
            permissions
                .publish
                .allow
                .contains(&"$KV.printer_status.north.>".to_owned())
        );
        assert!(
            permissions
                .subscribe
                .allow
                .contains(&"printyard.printers.north.>".to_owned())
        );
        // Nothing writes the registry (only `api` does) or reads its entries one by one.
        assert!(!all.iter().any(|s| s.starts_with("$KV.printer_registry")));
        assert!(
            permissions
                .publish
                .allow
                .contains(&"$JS.API.DIRECT.GET.OBJ_archive_transfer_north.>".to_owned())
        );
    }

    #[test]
    fn permissions_read_as_a_nats_server_block() {
        let site = Site::parse("b").unwrap();
        let json =
            serde_json::to_value(gateway_permissions(&site, Some("hub"), SiteMode::default()))
                .unwrap();
        assert!(json["publish"]["allow"].is_array());
        assert!(json["subscribe"]["allow"].is_array());
        assert_eq!(json["allow_responses"], true);
        assert!(
            json["publish"]["allow"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "$JS.hub.API.STREAM.INFO.KV_printer_status")
        );
    }

    #[test]
    fn a_buffered_site_leaves_its_events_to_sourcing() {
        let site = Site::parse("b").unwrap();
        let mode = SiteMode { buffered: true };
        let leaf = leaf_permissions(&site, Some("central"), mode);
        let gateway = gateway_permissions(&site, Some("central"), mode);
        let events = "printyard.events.b.>".to_owned();
        assert!(gateway.publish.allow.contains(&events), "kept at the site");
        assert!(
            !leaf.publish.allow.contains(&events),
            "never straight to the centre"
        );
        assert!(
            leaf.subscribe
                .allow
                .contains(&"$JS.site-b.API.>".to_owned())
        );
        assert!(gateway.publish.allow.contains(&"$JS.API.>".to_owned()));
        assert!(!leaf.publish.allow.contains(&"$JS.API.>".to_owned()));
        assert!(!leaf.subscribe.allow.iter().any(|s| s.contains("site-a")));
    }
}

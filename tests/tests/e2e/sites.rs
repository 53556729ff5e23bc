//! Sites on NATS leaf nodes: each site's gateway connects to its own leaf node with the site's
//! credentials, and NATS itself keeps it to its own printers (docs/sites.md).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use printyard_contracts::sites::CENTRAL_DOMAIN;
use printyard_contracts::sites::SiteMode;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::GcodeState;
use printyard_printer_sim::{Model, Printer};
use printyard_tests::nats_server::free_port;
use printyard_tests::sites::{Proxy, SiteNats};
use printyard_tests::{
    SimFarm, TestEnv, eventually, get_json, post_printer, spawn_api_and_client, spawn_archive,
    spawn_gateway_with, spawn_stats, wait_connected,
};
use serde_json::{Value, json};

/// A client at `site`'s leaf node with the site's gateway credentials, and the errors the
/// server sent it.
async fn site_client(nats: &SiteNats, site: &str) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let leaf = nats.leaf(site);
    let (user, password) = leaf.login.clone().unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let client = async_nats::ConnectOptions::new()
        .user_and_password(user, password)
        .custom_inbox_prefix(format!("_INBOX_{site}"))
        .request_timeout(Some(Duration::from_secs(2)))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(err) = event {
                    seen.lock().unwrap().push(err.to_string());
                }
            }
        })
        .connect(leaf.url())
        .await
        .unwrap();
    (client, errors)
}

/// Waits until the server has refused something on `subject`.
async fn refused(errors: &Arc<Mutex<Vec<String>>>, subject: &str) {
    eventually(
        Duration::from_secs(5),
        &format!("a permissions violation for {subject}"),
        || async {
            errors
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.contains("Permissions Violation") && e.contains(subject))
                .then_some(())
        },
    )
    .await;
}

/// A gateway of `site` at the site's leaf node, logged in with the site's credentials only.
fn site_gateway_config(
    sim: &SimFarm,
    env: &TestEnv,
    sites: &SiteNats,
    site: &str,
) -> printyard_gateway::Config {
    let mut config = sim.gateway_config(env);
    let leaf = sites.leaf(site);
    let (user, password) = leaf.login.clone().expect("a site leaf has a login");
    config.nats.url = leaf.url();
    config.nats.user = Some(user);
    config.nats.password = Some(printyard_service::Secret::new(password));
    config.nats.jetstream_domain = Some(CENTRAL_DOMAIN.to_owned());
    config.gateway.site = site.to_owned();
    config
}

/// A site's printer added through the API, with its site.
async fn add(client: &reqwest::Client, base: &str, printer: &Printer, site: &str) -> i64 {
    post_printer(
        client,
        base,
        &json!({
            "name": format!("{site} printer"), "ip_address": printer.spec.ip.to_string(),
            "access_code": printer.spec.access_code, "serial_number": printer.spec.serial,
            "site": site,
        }),
    )
    .await
}

#[tokio::test]
async fn each_site_sees_its_own_printers_and_nats_refuses_it_the_others() {
    let (hub, sites) = SiteNats::start(&["a", "b"]).await;
    let env = TestEnv::with_nats(hub).await;
    let _archive = spawn_archive(&env).await;
    let (api, client) = spawn_api_and_client(&env).await;
    let base = api.api_url("");

    // One gateway per site, at its leaf node, with the site's credentials only; the
    // simulator's first printer is at site a, its second at site b.
    let sim = SimFarm::start(&[Model::A1Mini, Model::A1Mini], 60.0).await;
    let mut gateways = Vec::new();
    for site in ["a", "b"] {
        let config = site_gateway_config(&sim, &env, &sites, site);
        gateways.push(spawn_gateway_with(config).await);
    }
    let a = add(&client, &base, &sim.farm.printers[0], "a").await;
    let b = add(&client, &base, &sim.farm.printers[1], "b").await;
    for id in [a, b] {
        wait_connected(&client, &base, id, Duration::from_secs(30)).await;
    }
    let listed: Value = client
        .get(format!("{base}/printers?site=b"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = listed.as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["id"].as_i64(), &listed[0]["site"]),
        (Some(b), &json!("b"))
    );

    // Commands reach each site's printer through its leaf node, and the answer comes back.
    for id in [a, b] {
        let response = client
            .post(format!("{base}/printers/{id}/refresh-status"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "printer {id}");
    }
    // A print at site a is archived with its file, which crossed through site a's bucket.
    let printer = &sim.farm.printers[0];
    printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    let archived = eventually(
        Duration::from_secs(40),
        "the print archived with its file",
        || async {
            let page = get_json(&client, &format!("{base}/archives")).await?;
            page["archives"]
                .as_array()?
                .iter()
                .find(|a| a["has_file"] == true)
                .cloned()
        },
    )
    .await;
    assert_eq!(archived["printer_id"].as_i64(), Some(a));
    assert_eq!(archived["site"], "a");
    // Archives filter by site.
    let of_site = |site: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let response = client
                .get(format!("{base}/archives?site={site}"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, page) = of_site("a").await;
    assert_eq!(status, 200);
    assert!(
        page["archives"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["site"] == "a")
    );
    assert!(!page["archives"].as_array().unwrap().is_empty());
    assert_eq!(of_site("b").await.1["archives"], json!([]));
    let (status, bad) = of_site("B.A").await;
    assert_eq!((status, &bad["code"]), (422, &json!("VALIDATION_ERROR")));

    // Site b's credentials, at site b's leaf node, against site a's printer.
    let (intruder, errors) = site_client(&sites, "b").await;
    let central = env.nats.client().await;

    // Commands: subscribing to site a's command subject is refused, and a command sent
    // there never reaches site b.
    let command = format!("printyard.printers.a.{a}.command");
    let mut overheard = intruder.subscribe(command.clone()).await.unwrap();
    refused(&errors, &command).await;
    central.publish(command.clone(), "{}".into()).await.unwrap();
    central.flush().await.unwrap();
    let heard = tokio::time::timeout(Duration::from_millis(500), overheard.next()).await;
    assert!(
        !matches!(heard, Ok(Some(_))),
        "site b heard site a's command"
    );

    // Registry: site a's entries (with their access codes) cannot be read or watched.
    let js = jetstream::with_domain(intruder.clone(), CENTRAL_DOMAIN);
    let registry = js.get_key_value("printer_registry").await.unwrap();
    let read = registry.entry(format!("a.{a}")).await;
    assert!(
        read.is_err(),
        "site b read site a's registry entry: {read:?}"
    );
    refused(&errors, &format!("$KV.printer_registry.a.{a}")).await;
    let watch =
        printyard_service::kv_watch::watch_keys(&intruder, &registry, "a.*", "intruder").await;
    assert!(watch.is_err(), "site b watched site a's registry");
    // Its own site's entries it may watch (the refusal above is about the site).
    assert!(
        printyard_service::kv_watch::watch_keys(&intruder, &registry, "b.*", "own")
            .await
            .is_ok()
    );

    // Status: site a's status cannot be overwritten.
    let statuses = js.get_key_value("printer_status").await.unwrap();
    let forged = statuses
        .put(format!("a.{a}"), r#"{"forged":true}"#.into())
        .await;
    assert!(forged.is_err(), "site b wrote site a's status");
    refused(&errors, &format!("$KV.printer_status.a.{a}")).await;
    let central_statuses = jetstream::new(central.clone())
        .get_key_value("printer_status")
        .await
        .unwrap();
    let kept = central_statuses
        .get(format!("a.{a}"))
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&kept).contains("forged"));

    // Events: site a's event subjects are closed to it.
    let event = format!("printyard.events.a.{a}.print_failed");
    intruder.publish(event.clone(), "{}".into()).await.unwrap();
    refused(&errors, &event).await;

    // The central user (the services') reaches every site.
    let owners = jetstream::new(central)
        .get_key_value("printer_owners")
        .await
        .unwrap();
    for key in [format!("a.{a}"), format!("b.{b}")] {
        assert!(owners.get(&key).await.unwrap().is_some(), "lease {key}");
    }
    drop(gateways);
}

/// A site whose leaf node runs JetStream keeps its events and captured files through an
/// uplink outage: the print made while the link was cut is archived, with its file, once the
/// link is back, and once only; statistics count it once; the printer stayed connected.
#[tokio::test]
async fn a_site_cut_off_for_30_s_is_archived_once_when_its_link_returns() {
    let leaf_port = free_port();
    let uplink = Proxy::start(leaf_port).await;
    let buffered = SiteMode { buffered: true };
    let (hub, sites) = SiteNats::start_with(&["b"], buffered, leaf_port, uplink.port).await;
    let env = TestEnv::with_nats(hub).await;
    let _archive = spawn_archive(&env).await;
    let _stats = spawn_stats(&env).await;
    let (api, client) = spawn_api_and_client(&env).await;
    let base = api.api_url("");
    // The demo print takes 1,095 s: about 18 s at this speed, over before the link returns.
    let sim = SimFarm::start(&[Model::A1Mini], 60.0).await;
    let mut config = site_gateway_config(&sim, &env, &sites, "b");
    config.gateway.site_jetstream = true;
    let _gateway = spawn_gateway_with(config).await;
    let printer = &sim.farm.printers[0];
    let id = add(&client, &base, printer, "b").await;
    wait_connected(&client, &base, id, Duration::from_secs(30)).await;
    // The central event stream sources the site's (the gateway asked api at start).
    let central = jetstream::new(env.nats.client().await);
    eventually(
        Duration::from_secs(20),
        "the site's stream sourced",
        || async {
            let mut stream = central.get_stream("FARM_EVENTS").await.ok()?;
            let info = stream.info().await.ok()?;
            let sources = info.config.sources.clone().unwrap_or_default();
            sources
                .iter()
                .any(|s| s.name == "SITE_EVENTS_b")
                .then_some(())
        },
    )
    .await;

    uplink.cut();
    let cut_at = std::time::Instant::now();
    printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    eventually(
        Duration::from_secs(28),
        "the print finished at the site",
        || async { (printer.snapshot().gcode_state == GcodeState::Finish).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(cut_at.elapsed())).await;
    let archives = |client: reqwest::Client, base: String| async move {
        let page = get_json(&client, &format!("{base}/archives")).await?;
        page["archives"].as_array().cloned()
    };
    let during = archives(client.clone(), base.clone()).await.unwrap();
    assert!(
        during.is_empty(),
        "nothing crossed the cut link: {during:?}"
    );

    uplink.restore();
    let archived = eventually(
        Duration::from_secs(60),
        "the print archived with its file",
        || async {
            let list = archives(client.clone(), base.clone()).await?;
            list.into_iter()
                .find(|a| a["status"] == "success" && a["has_file"] == true)
        },
    )
    .await;
    assert_eq!(archived["printer_id"].as_i64(), Some(id));
    // Once: more time changes nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = archives(client.clone(), base.clone()).await.unwrap();
    assert_eq!(all.len(), 1, "one print, one archive: {all:?}");
    let statistics: Value = eventually(Duration::from_secs(20), "the print counted", || async {
        let statistics = get_json(&client, &format!("{base}/statistics")).await?;
        (statistics["total_prints"] == 1).then_some(statistics)
    })
    .await;
    assert_eq!(statistics["successful_prints"], 1, "{statistics}");
    assert_eq!(
        printer.snapshot().mqtt_connections_total,
        1,
        "the gateway kept its printer through the outage"
    );
}

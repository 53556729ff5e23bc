//! The deployment files: `docker-compose.yml` and every manifest under `k8s/` parse, and every
//! `PRINTYARD__*` variable they set is a configuration key the service reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

const SERVICES: [&str; 7] = [
    "api",
    "gateway",
    "archive",
    "scheduler",
    "stats",
    "notifier",
    "filament",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `section.key` path of a service's configuration, from its defaults.
fn known_keys(service: &str) -> BTreeSet<String> {
    let defaults = match service {
        "api" => serde_json::to_value(printyard_api::Config::default()),
        "gateway" => serde_json::to_value(printyard_gateway::Config::default()),
        "archive" => serde_json::to_value(printyard_archive::Config::default()),
        "scheduler" => serde_json::to_value(printyard_scheduler::Config::default()),
        "stats" => serde_json::to_value(printyard_stats::Config::default()),
        "notifier" => serde_json::to_value(printyard_notifier::Config::default()),
        "filament" => serde_json::to_value(printyard_filament::Config::default()),
        other => panic!("unknown service {other}"),
    }
    .unwrap();
    let mut keys = BTreeSet::new();
    collect_paths(&defaults, String::new(), &mut keys);
    keys
}

fn collect_paths(value: &Json, prefix: String, out: &mut BTreeSet<String>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_paths(v, path, out);
            }
        }
        _ => {
            out.insert(prefix);
        }
    }
}

/// `PRINTYARD__HTTP__LISTEN` → `http.listen`.
fn env_to_key(var: &str) -> Option<String> {
    var.strip_prefix("PRINTYARD__").map(|rest| {
        rest.split("__")
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(".")
    })
}

fn assert_reads(service: &str, vars: impl IntoIterator<Item = String>, origin: &str) {
    let known = known_keys(service);
    let mut checked = 0;
    for var in vars {
        let Some(key) = env_to_key(&var) else {
            continue;
        };
        assert!(
            known.contains(&key),
            "{origin}: {service} does not read {var} ({key}); it reads {known:?}"
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "{origin}: {service} gets no PRINTYARD__ variable at all"
    );
}

#[test]
fn env_names_map_to_config_keys() {
    assert_eq!(
        env_to_key("PRINTYARD__NATS__REQUEST_TIMEOUT_MS").unwrap(),
        "nats.request_timeout_ms"
    );
    assert!(known_keys("api").contains("http.listen"));
    assert!(
        !known_keys("gateway").contains("database.url"),
        "the gateway has no database"
    );
}

fn compose() -> Yaml {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut doc: Yaml = serde_norway::from_str(&text).expect("docker-compose.yml parses");
    doc.apply_merge().unwrap();
    // Merge keys nested below the top level (service environments) need their own pass.
    if let Some(services) = doc.get_mut("services").and_then(Yaml::as_mapping_mut) {
        for (_, service) in services.iter_mut() {
            service.apply_merge().unwrap();
            if let Some(env) = service.get_mut("environment") {
                env.apply_merge().unwrap();
            }
        }
    }
    doc
}

#[test]
fn compose_runs_nats_postgres_minio_and_the_six_services_with_env_they_read() {
    let doc = compose();
    let services = doc["services"].as_mapping().unwrap();
    for infra in ["nats", "postgres", "minio"] {
        assert!(services.contains_key(infra), "compose has {infra}");
    }
    let nats_command = format!("{:?}", doc["services"]["nats"]["command"]);
    assert!(
        nats_command.contains("/config/central.conf"),
        "{nats_command}"
    );
    let nats_config = format!("{:?}", doc["services"]["nats-config"]["command"]);
    assert!(
        nats_config.contains("jetstream { store_dir: /data, domain: central }"),
        "NATS runs with JetStream: {nats_config}"
    );
    for service in SERVICES {
        let spec = &doc["services"][service];
        assert_eq!(
            spec["command"][0].as_str(),
            Some(format!("printyard-{service}").as_str())
        );
        assert!(
            spec.get("build").is_some(),
            "{service} is built from the Dockerfile"
        );
        let env = spec["environment"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{service} has env"));
        let vars = env.keys().map(|k| k.as_str().unwrap().to_owned());
        assert_reads(service, vars, "docker-compose.yml");
    }
}

#[test]
fn compose_file_validates_with_docker_compose() {
    let candidates: [&[&str]; 2] = [&["docker-compose"], &["docker", "compose"]];
    for command in candidates {
        let output = std::process::Command::new(command[0])
            .args(&command[1..])
            .args(["-f", "docker-compose.yml", "config", "-q"])
            .current_dir(repo())
            .output();
        if let Ok(output) = output {
            if output.status.success() {
                return;
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            if !stderr.contains("unknown") {
                panic!("{command:?} config rejects docker-compose.yml: {stderr}");
            }
        }
    }
    panic!(
        "neither docker-compose nor `docker compose` is installed (scripts/test installs docker-compose)"
    );
}

/// scripts/compose-check runs the user's docker-compose.yml with an override that may change
/// images only: what it checks is the file users run.
#[test]
fn the_local_images_override_changes_images_only_and_replaces_every_hub_image() {
    let doc = compose();
    let text = std::fs::read_to_string(repo().join("scripts/compose/local-images.yml")).unwrap();
    let over: Yaml = serde_norway::from_str(&text).expect("local-images.yml parses");
    let top: Vec<&str> = over
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(top, ["services"], "the override has services only");
    let replaced = over["services"].as_mapping().unwrap();
    for (name, spec) in replaced {
        let name = name.as_str().unwrap();
        assert!(
            doc["services"].get(name).is_some(),
            "{name} is a service of docker-compose.yml"
        );
        let keys: Vec<&str> = spec
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, ["image"], "the override changes {name}'s image only");
    }
    for (name, spec) in doc["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let image = spec.get("image").and_then(Yaml::as_str).unwrap_or("");
        let ours = image == "printyard:local";
        assert!(
            ours || replaced.contains_key(name),
            "{name} uses {image} from Docker Hub and the override gives no local image for it"
        );
    }
}

/// Every document of every manifest under k8s/, with the file it came from.
fn manifests() -> Vec<(String, Yaml)> {
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo().join("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value =
                Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

fn kind_of(doc: &Yaml) -> &str {
    doc.get("kind").and_then(Yaml::as_str).unwrap_or("")
}

fn name_of(doc: &Yaml) -> &str {
    doc["metadata"]["name"].as_str().unwrap()
}

#[test]
fn every_k8s_manifest_parses_and_names_itself() {
    let docs = manifests();
    assert!(docs.len() > 20, "found {} documents", docs.len());
    for (file, doc) in &docs {
        if file.starts_with("nats-") || file == "kustomization.yaml" {
            continue;
        }
        assert!(doc.get("apiVersion").is_some(), "{file}: apiVersion");
        assert!(!kind_of(doc).is_empty(), "{file}: kind");
        assert!(!name_of(doc).is_empty(), "{file}: metadata.name");
    }
}

#[test]
fn each_service_has_a_probed_deployment_a_service_and_a_disruption_budget() {
    let docs = manifests();
    let by_kind = |kind: &str| -> BTreeMap<String, Yaml> {
        docs.iter()
            .filter(|(_, d)| kind_of(d) == kind)
            .map(|(_, d)| (name_of(d).to_owned(), d.clone()))
            .collect()
    };
    let deployments = by_kind("Deployment");
    let services = by_kind("Service");
    let budgets = by_kind("PodDisruptionBudget");
    let config_maps = by_kind("ConfigMap");
    let secrets = by_kind("Secret");

    // Every service, and site east's gateway (one Deployment per site).
    let deployed = SERVICES
        .iter()
        .map(|s| (format!("printyard-{s}"), *s))
        .chain([("printyard-gateway-east".to_owned(), "gateway")]);
    for (name, service) in deployed {
        let command = format!("printyard-{service}");
        let deployment = deployments
            .get(&name)
            .unwrap_or_else(|| panic!("Deployment {name}"));
        assert!(services.contains_key(&name), "Service {name}");
        assert!(budgets.contains_key(&name), "PodDisruptionBudget {name}");
        let selected = &services[&name]["spec"]["selector"]["app.kubernetes.io/name"];
        let labelled =
            &deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"];
        assert_eq!(
            selected, labelled,
            "{name}: the Service selects the Deployment's pods"
        );

        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["command"][0].as_str(), Some(command.as_str()));
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz"),
            "{name}"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz"),
            "{name}"
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["port"].as_str(),
            Some("admin"),
            "{name}"
        );
        let ports = container["ports"].as_sequence().unwrap();
        assert!(
            ports
                .iter()
                .any(|p| p["name"] == "admin" && p["containerPort"] == 9090),
            "{name}"
        );
        assert!(
            container["resources"]["requests"].get("cpu").is_some(),
            "{name}: cpu request"
        );
        assert!(
            container["resources"]["requests"].get("memory").is_some(),
            "{name}: memory request"
        );

        let mut vars = Vec::new();
        for source in container["envFrom"].as_sequence().unwrap() {
            let map_name = source["configMapRef"]["name"].as_str().unwrap();
            let map = config_maps
                .get(map_name)
                .unwrap_or_else(|| panic!("{name} uses missing ConfigMap {map_name}"));
            vars.extend(
                map["data"]
                    .as_mapping()
                    .unwrap()
                    .keys()
                    .map(|k| k.as_str().unwrap().to_owned()),
            );
        }
        if let Some(env) = container.get("env").and_then(Yaml::as_sequence) {
            for var in env {
                if let Some(secret) = var.get("valueFrom").and_then(|v| v.get("secretKeyRef")) {
                    let secret_name = secret["name"].as_str().unwrap();
                    assert!(
                        secrets.contains_key(secret_name),
                        "{name} uses Secret {secret_name}, shown in secret.example.yaml"
                    );
                }
                vars.push(var["name"].as_str().unwrap().to_owned());
            }
        }
        assert_reads(service, vars, "k8s");
    }

    let hpa = by_kind("HorizontalPodAutoscaler");
    let api_hpa = hpa.get("printyard-api").expect("an HPA for api");
    assert_eq!(
        api_hpa["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("printyard-api")
    );
}

#[test]
fn kustomization_lists_every_manifest_but_the_examples() {
    let text = std::fs::read_to_string(repo().join("k8s/kustomization.yaml")).unwrap();
    let doc: Yaml = serde_norway::from_str(&text).unwrap();
    let listed: BTreeSet<_> = doc["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    for (file, _) in manifests() {
        if [
            "kustomization.yaml",
            "secret.example.yaml",
            "nats-values.yaml",
            "nats-leaf-values.yaml",
        ]
        .contains(&file.as_str())
        {
            continue;
        }
        assert!(
            listed.contains(&file),
            "kustomization.yaml does not list {file}"
        );
    }
}

#[test]
fn compose_runs_a_site_on_its_own_leaf_node_and_traces_every_service() {
    let doc = compose();
    let services = &doc["services"];
    // The site's permissions are the gateway's own, not a copy.
    let config = format!("{:?}", services["nats-config"]["command"]);
    assert!(config.contains("site-permissions --site east --domain central --buffered --leaf"));
    assert!(
        config.contains("domain: site-east"),
        "the leaf node runs JetStream"
    );
    assert_eq!(
        services["nats-leaf-east"]["command"][1].as_str(),
        Some("/config/leaf-east.conf")
    );
    let east = &services["gateway-east"];
    assert_eq!(east["command"][0].as_str(), Some("printyard-gateway"));
    let env = east["environment"].as_mapping().unwrap();
    let var = |name: &str| env.get(name).and_then(Yaml::as_str).unwrap_or_default();
    assert_eq!(var("PRINTYARD__NATS__URL"), "nats://nats-leaf-east:4222");
    assert_eq!(var("PRINTYARD__NATS__JETSTREAM_DOMAIN"), "central");
    assert_eq!(var("PRINTYARD__GATEWAY__SITE"), "east");
    assert_eq!(var("PRINTYARD__GATEWAY__SITE_JETSTREAM"), "true");
    assert_reads(
        "gateway",
        env.keys().map(|k| k.as_str().unwrap().to_owned()),
        "docker-compose.yml gateway-east",
    );
    assert!(services.get("jaeger").is_some(), "an OTLP trace viewer");
    for service in SERVICES
        .iter()
        .map(|s| s.to_string())
        .chain(["gateway-east".into()])
    {
        let endpoint =
            services[service.as_str()]["environment"]["PRINTYARD__TELEMETRY__OTLP_ENDPOINT"]
                .as_str();
        assert_eq!(
            endpoint,
            Some("http://jaeger:4318"),
            "{service} sends its traces"
        );
    }
}

/// The policies under k8s/ that select pods labelled `name`, and their rules of `direction`.
fn rules_for<'a>(docs: &'a [(String, Yaml)], name: &str, direction: &str) -> Vec<&'a Yaml> {
    let selects = |policy: &Yaml| {
        let selector = &policy["spec"]["podSelector"];
        if let Some(labels) = selector.get("matchLabels") {
            let by_name = labels.get("app.kubernetes.io/name").and_then(Yaml::as_str);
            let by_part = labels
                .get("app.kubernetes.io/part-of")
                .and_then(Yaml::as_str);
            return by_name == Some(name) || by_part == Some("printyard");
        }
        selector
            .get("matchExpressions")
            .and_then(Yaml::as_sequence)
            .is_some_and(|exprs| {
                exprs.iter().any(|e| {
                    e["operator"] == "In"
                        && e["values"]
                            .as_sequence()
                            .is_some_and(|v| v.iter().any(|v| v.as_str() == Some(name)))
                })
            })
    };
    docs.iter()
        .filter(|(_, d)| kind_of(d) == "NetworkPolicy" && selects(d))
        .filter_map(|(_, d)| d["spec"].get(direction).and_then(Yaml::as_sequence))
        .flatten()
        .collect()
}

fn allows_port(rules: &[&Yaml], port: u64) -> bool {
    rules.iter().any(|rule| {
        rule["ports"]
            .as_sequence()
            .is_some_and(|ports| ports.iter().any(|p| p["port"].as_u64() == Some(port)))
    })
}

#[test]
fn network_policies_keep_each_service_to_its_own_traffic() {
    let docs = manifests();
    let deny_all = docs.iter().any(|(_, d)| {
        kind_of(d) == "NetworkPolicy"
            && d["spec"]["podSelector"]
                .as_mapping()
                .is_some_and(|m| m.is_empty())
            && d["spec"].get("ingress").is_none()
            && d["spec"].get("egress").is_none()
    });
    assert!(deny_all, "a policy denies everything not allowed");
    let deployed = SERVICES
        .iter()
        .map(|s| format!("printyard-{s}"))
        .chain(["printyard-gateway-east".to_owned()]);
    for name in deployed {
        let egress = rules_for(&docs, &name, "egress");
        assert!(allows_port(&egress, 4222), "{name} reaches NATS");
        assert!(allows_port(&egress, 53), "{name} resolves names");
        let to_postgres = allows_port(&egress, 5432);
        assert_eq!(
            !name.contains("gateway"),
            to_postgres,
            "{name} and Postgres"
        );
        let to_printers = allows_port(&egress, 8883) && allows_port(&egress, 990);
        assert_eq!(name.contains("gateway"), to_printers, "{name} and printers");
        let ingress = rules_for(&docs, &name, "ingress");
        assert!(allows_port(&ingress, 9090), "{name} is scraped");
        assert_eq!(
            name == "printyard-api",
            allows_port(&ingress, 8000),
            "{name} serves HTTP"
        );
    }
    assert!(allows_port(
        &rules_for(&docs, "printyard-notifier", "egress"),
        443
    ));
    assert!(!allows_port(
        &rules_for(&docs, "printyard-stats", "egress"),
        443
    ));
}

/// The permissions of the user named `user` in a NATS Helm chart values file, as JSON.
fn user_permissions(file: &str, user: &str) -> Json {
    let text = std::fs::read_to_string(repo().join("k8s").join(file)).unwrap();
    let values: Yaml = serde_norway::from_str(&text).unwrap();
    let users = values["config"]["merge"]["authorization"]["users"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{file} lists users"));
    let found = users
        .iter()
        .find(|u| u["user"].as_str() == Some(user))
        .unwrap_or_else(|| panic!("{file} has user {user}"));
    serde_json::to_value(&found["permissions"]).unwrap()
}

#[test]
fn nats_values_give_a_site_exactly_its_permissions_centrally_and_at_its_leaf_node() {
    use printyard_contracts::sites::{
        CENTRAL_DOMAIN, SiteMode, gateway_permissions, leaf_permissions,
    };
    let site = printyard_contracts::farm::Site::parse("east").unwrap();
    // Site east keeps its events at its leaf node (buffered): its leaf node's user on the
    // central cluster and its gateway's at the leaf node differ.
    let buffered = SiteMode { buffered: true };
    let leaf = leaf_permissions(&site, Some(CENTRAL_DOMAIN), buffered);
    let gateway = gateway_permissions(&site, Some(CENTRAL_DOMAIN), buffered);
    assert_eq!(
        user_permissions("nats-values.yaml", "site_east"),
        serde_json::to_value(leaf).unwrap()
    );
    assert_eq!(
        user_permissions("nats-leaf-values.yaml", "gateway"),
        serde_json::to_value(gateway).unwrap()
    );
    for (file, domain) in [
        ("nats-values.yaml", CENTRAL_DOMAIN),
        ("nats-leaf-values.yaml", "site-east"),
    ] {
        let text = std::fs::read_to_string(repo().join("k8s").join(file)).unwrap();
        let values: Yaml = serde_norway::from_str(&text).unwrap();
        assert_eq!(
            values["config"]["jetstream"]["merge"]["domain"].as_str(),
            Some(domain),
            "{file}: the JetStream domain"
        );
    }
}

//! The farm under faults: a simulated farm prints a queue of jobs while every service (two
//! replicas each, each its own process), NATS and Postgres are killed with SIGKILL and
//! restarted, and printer connections are dropped. At the end, with no manual step: every job
//! printed exactly once (the simulator's own record), one archive per print with its file,
//! every print's end delivered to a webhook and seen on `/events`, statistics equal to the
//! archive, every service ready again. Prints its figures.
//!
//! The suite runs a short scenario; `scripts/chaos` a longer one, sized by
//! `PRINTYARD_CHAOS_PRINTERS`, `PRINTYARD_CHAOS_JOBS` and `PRINTYARD_CHAOS_ROUNDS` (times the
//! list of faults is gone through).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_tests::nats_server::free_port;
use printyard_tests::pg_server::PgServer;
use printyard_tests::receiver::{Behaviour, Received, Receiver};
use printyard_tests::threemf::{Slicing, sliced_3mf};
use printyard_tests::{
    ChildService, NatsServer, SimFarm, TestEnv, keyed_http, post_printer, run_child_api,
    run_child_archive, run_child_gateway, run_child_notifier, run_child_scheduler, run_child_stats,
    upload_file,
};
use serde_json::{Value, json};

#[test]
#[ignore = "a child process of the chaos scenario"]
fn child_gateway() {
    run_child_gateway();
}
#[test]
#[ignore = "a child process of the chaos scenario"]
fn child_api() {
    run_child_api();
}
#[test]
#[ignore = "a child process of the chaos scenario"]
fn child_archive() {
    run_child_archive();
}
#[test]
#[ignore = "a child process of the chaos scenario"]
fn child_scheduler() {
    run_child_scheduler();
}
#[test]
#[ignore = "a child process of the chaos scenario"]
fn child_stats() {
    run_child_stats();
}
#[test]
#[ignore = "a child process of the chaos scenario"]
fn child_notifier() {
    run_child_notifier();
}

const END_EVENTS: [&str; 4] = [
    "print_complete",
    "print_failed",
    "print_stopped",
    "print_unknown",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Api,
    Archive,
    Scheduler,
    Stats,
    Notifier,
    Gateway,
}

/// One replica: how to start it, where its admin listener is, and its process while it runs.
struct Replica {
    kind: Kind,
    admin: u16,
    /// The api's HTTP port.
    http: Option<u16>,
    config: String,
    process: Option<ChildService>,
}

fn admin(port: u16) -> printyard_service::config::AdminConfig {
    printyard_service::config::AdminConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

impl Replica {
    fn new(kind: Kind, env: &TestEnv, sim: &SimFarm) -> Self {
        let port = free_port();
        let mut http = None;
        let config = match kind {
            Kind::Api => {
                let mut config = env.api_config();
                let listen = free_port();
                http = Some(listen);
                config.http.listen = SocketAddr::from(([127, 0, 0, 1], listen));
                config.rate_limits.enabled = false;
                config.admin = admin(port);
                serde_json::to_string(&config)
            }
            Kind::Archive => {
                let mut config = env.archive_config();
                config.admin = admin(port);
                serde_json::to_string(&config)
            }
            Kind::Scheduler => {
                let mut config = env.scheduler_config();
                config.scheduler.claim_lease_secs = 3;
                config.scheduler.retry_backoff_secs = 1;
                config.admin = admin(port);
                serde_json::to_string(&config)
            }
            Kind::Stats => {
                let mut config = env.service_config();
                config.admin = admin(port);
                serde_json::to_string(&config)
            }
            Kind::Notifier => {
                let mut config = env.notifier_config();
                config.admin = admin(port);
                serde_json::to_string(&config)
            }
            Kind::Gateway => {
                let mut config = sim.gateway_config(env);
                config.gateway.lease_secs = 3;
                config.gateway.capture_window_secs = 20;
                config.admin = admin(port);
                serde_json::to_string(&config)
            }
        }
        .expect("a configuration encodes");
        Self {
            kind,
            admin: port,
            http,
            config,
            process: None,
        }
    }

    fn start(&mut self, database_url: &str) {
        let process = match self.kind {
            Kind::Api => ChildService::spawn_api("child_api", &self.parsed(database_url)),
            Kind::Archive => {
                ChildService::spawn_archive("child_archive", &self.parsed(database_url))
            }
            Kind::Scheduler => {
                ChildService::spawn_scheduler("child_scheduler", &self.parsed(database_url))
            }
            Kind::Stats => ChildService::spawn_stats("child_stats", &self.parsed(database_url)),
            Kind::Notifier => {
                ChildService::spawn_notifier("child_notifier", &self.parsed(database_url))
            }
            Kind::Gateway => ChildService::spawn("child_gateway", &self.parsed(database_url)),
        };
        self.process = Some(process);
    }

    /// The configuration again, with the database URL (secrets are not serialised).
    fn parsed<C: serde::de::DeserializeOwned + WithDatabase>(&self, database_url: &str) -> C {
        let mut config: C = serde_json::from_str(&self.config).expect("the config decodes");
        config.set_database(database_url);
        config
    }

    async fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill().await;
        }
    }

    async fn ready(&self, http: &reqwest::Client) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin);
        matches!(http.get(url).send().await, Ok(r) if r.status().is_success())
    }
}

/// Configurations whose database URL the scenario sets.
trait WithDatabase {
    fn set_database(&mut self, url: &str);
}

macro_rules! with_database {
    ($($ty:ty),*) => {$(
        impl WithDatabase for $ty {
            fn set_database(&mut self, url: &str) {
                self.database.url = printyard_service::Secret::new(url.to_owned());
            }
        }
    )*};
}
with_database!(
    printyard_api::Config,
    printyard_archive::Config,
    printyard_scheduler::Config,
    printyard_stats::Config,
    printyard_notifier::Config
);
impl WithDatabase for printyard_gateway::Config {
    fn set_database(&mut self, _: &str) {}
}

/// What happens next to the farm.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(Kind, usize),
    Nats,
    Postgres,
    DropConnections,
}

/// The faults of one round: every service (one replica, then the other for the gateway and
/// the notifier), NATS twice, Postgres, and the printers' connections.
fn round() -> Vec<Fault> {
    use Fault::*;
    use Kind::*;
    vec![
        Kill(Notifier, 0),
        Kill(Gateway, 0),
        Nats,
        Kill(Archive, 0),
        Kill(Scheduler, 1),
        DropConnections,
        Postgres,
        Kill(Api, 0),
        Kill(Notifier, 1),
        Kill(Stats, 0),
        Kill(Gateway, 1),
        Nats,
        Kill(Archive, 1),
        Kill(Notifier, 0),
    ]
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads `/events` for print ends, through whichever api replica answers, resuming after the
/// last event seen (`Last-Event-ID`) when a replica goes away.
async fn follow_events(apis: Vec<u16>, key: String, seen: Arc<Mutex<Vec<Value>>>) {
    let client = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::HeaderName::from_static("x-api-key"),
                reqwest::header::HeaderValue::from_str(&key).expect("a key header"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .expect("a client");
    let mut last_id: Option<String> = None;
    for api in apis.iter().cycle() {
        let url = format!(
            "http://127.0.0.1:{api}/api/v1/events?events={}",
            END_EVENTS.join(",")
        );
        let mut request = client.get(url);
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        let Ok(response) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if !response.status().is_success() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut data = None;
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        last_id = Some(id.trim().to_owned());
                    } else if let Some(text) = line.strip_prefix("data:") {
                        data = serde_json::from_str::<Value>(text.trim()).ok();
                    }
                }
                if let Some(data) = data {
                    seen.lock().expect("the events").push(data);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_farm_under_faults_prints_every_job_once_and_announces_every_end() {
    let printers = setting("PRINTYARD_CHAOS_PRINTERS", 4);
    let jobs = setting("PRINTYARD_CHAOS_JOBS", 8);
    let rounds = setting("PRINTYARD_CHAOS_ROUNDS", 1);
    let every = Duration::from_millis(setting("PRINTYARD_CHAOS_EVERY_MS", 1_500) as u64);

    let pg = PgServer::start().await;
    let mut env = TestEnv::with_servers(NatsServer::start().await, pg.admin_url()).await;
    let sim = SimFarm::start(&vec![Model::A1Mini; printers], 60.0).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");

    let mut replicas: Vec<Replica> = [
        Kind::Api,
        Kind::Archive,
        Kind::Scheduler,
        Kind::Stats,
        Kind::Notifier,
        Kind::Gateway,
    ]
    .into_iter()
    .flat_map(|kind| [kind, kind])
    .map(|kind| Replica::new(kind, &env, &sim))
    .collect();
    // Started one after another: the first of each applies its migrations.
    for replica in &mut replicas {
        replica.start(&env.database_url);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !replica.ready(&http).await {
            assert!(
                Instant::now() < deadline,
                "{:?} did not start",
                replica.kind
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let apis: Vec<u16> = replicas.iter().filter_map(|r| r.http).collect();
    let key = env.api_key(&[Permission::Admin]).await;
    let client = keyed_http(&key);
    // Any replica that answers (the first may be down).
    let send = |method: reqwest::Method, path: String, body: Option<Value>| {
        let client = client.clone();
        let apis = apis.clone();
        async move {
            for attempt in 0..100 {
                let port = apis[attempt % apis.len()];
                let url = format!("http://127.0.0.1:{port}/api/v1{path}");
                let mut request = client.request(method.clone(), url);
                if let Some(body) = &body {
                    request = request.json(body);
                }
                if let Ok(response) = request.send().await {
                    let status = response.status().as_u16();
                    if status != 503 && status != 502 {
                        let value = response.json::<Value>().await.unwrap_or(Value::Null);
                        return (status, value);
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            panic!("{method} {path}: no api replica answered");
        }
    };

    let base = format!("http://127.0.0.1:{}/api/v1", apis[0]);
    for (i, printer) in sim.farm.printers.iter().enumerate() {
        let body = json!({
            "name": format!("Chaos {}", i + 1),
            "ip_address": printer.spec.ip.to_string(),
            "access_code": printer.spec.access_code,
            "serial_number": printer.spec.serial,
            "auto_clear_plate": true,
        });
        post_printer(&client, &base, &body).await;
    }
    let receiver = Receiver::start(Behaviour::Correct).await;
    let (status, body) = send(
        reqwest::Method::POST,
        "/webhooks".into(),
        Some(json!({"url": receiver.url("/hook"), "events": END_EVENTS})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let follower = tokio::spawn(follow_events(apis.clone(), key.clone(), seen.clone()));

    let library = upload_file(
        &client,
        &base,
        sliced_3mf(&Slicing {
            title: "Chaos",
            ..Default::default()
        }),
        "chaos.gcode.3mf",
    )
    .await;
    let mut queued = Vec::new();
    for _ in 0..jobs {
        let (status, job) = send(
            reqwest::Method::POST,
            "/queue".into(),
            Some(json!({"archive_id": library["id"]})),
        )
        .await;
        assert_eq!(status, 201, "{job}");
        queued.push(job["id"].as_i64().expect("a job id"));
    }

    // Faults, one every `every`, each service back a moment later, until the queue is done
    // and the rounds are over.
    let started = Instant::now();
    let mut faults: Vec<Fault> = (0..rounds).flat_map(|_| round()).collect();
    faults.reverse();
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_fault = Instant::now();
    loop {
        let (_, completed) = send(
            reqwest::Method::GET,
            "/queue?status=completed&limit=1000".into(),
            None,
        )
        .await;
        let completed: HashSet<i64> = completed
            .as_array()
            .map(|jobs| jobs.iter().filter_map(|j| j["id"].as_i64()).collect())
            .unwrap_or_default();
        let finished = queued.iter().all(|job| completed.contains(job));
        if faults.is_empty() && finished {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the queue did not finish: {} of {jobs} completed",
            completed.len()
        );
        if let Some(fault) = faults.pop() {
            let name = match fault {
                Fault::Kill(kind, index) => {
                    let replica = replicas
                        .iter_mut()
                        .filter(|r| r.kind == kind)
                        .nth(index)
                        .expect("a replica");
                    replica.kill().await;
                    tokio::time::sleep(every / 2).await;
                    replica.start(&env.database_url);
                    format!("{kind:?} killed").to_lowercase()
                }
                Fault::Nats => {
                    env.nats.kill().await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    env.nats.restart().await;
                    "nats killed".into()
                }
                Fault::Postgres => {
                    pg.kill().await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    pg.restart().await;
                    "postgres killed".into()
                }
                Fault::DropConnections => {
                    for printer in &sim.farm.printers {
                        printer.drop_connections();
                    }
                    "printer connections dropped".into()
                }
            };
            last_fault = Instant::now();
            *counted.entry(name).or_default() += 1;
        }
        tokio::time::sleep(every).await;
    }
    let run = started.elapsed();

    // Recovered, with no manual step: every check holds within a deadline.
    let deadline = Duration::from_secs(180);
    let mut last: String;
    let report = loop {
        match check(&send, &replicas, &http, &sim, &queued, &receiver, &seen).await {
            Ok(report) => break report,
            Err(why) => last = why,
        }
        assert!(
            last_fault.elapsed() < deadline,
            "not recovered {deadline:?} after the last fault: {last}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let recovered = last_fault.elapsed();
    follower.abort();
    println!(
        "chaos: {printers} printers, {jobs} jobs, {} faults survived ({counted:?}); the queue \
         done in {:.0} s; every check held {:.1} s after the last fault; {report}",
        counted.values().sum::<usize>(),
        run.as_secs_f64(),
        recovered.as_secs_f64(),
    );
}

/// Every check of the scenario's end, or why one does not hold yet.
async fn check<F, Fut>(
    send: &F,
    replicas: &[Replica],
    http: &reqwest::Client,
    sim: &SimFarm,
    queued: &[i64],
    receiver: &Receiver,
    seen: &Mutex<Vec<Value>>,
) -> Result<String, String>
where
    F: Fn(reqwest::Method, String, Option<Value>) -> Fut,
    Fut: std::future::Future<Output = (u16, Value)>,
{
    for replica in replicas {
        if !replica.ready(http).await {
            return Err(format!(
                "{:?} (admin {}) not ready",
                replica.kind, replica.admin
            ));
        }
    }
    // Every job printed exactly once, by the printers' own record.
    let started: Vec<String> = sim
        .farm
        .printers
        .iter()
        .flat_map(|p| p.snapshot().started_jobs)
        .collect();
    let mut printed: HashMap<i64, usize> = HashMap::new();
    for name in &started {
        if let Some(job) = printyard_contracts::queue::job_of(name) {
            *printed.entry(job).or_default() += 1;
        }
    }
    for job in queued {
        match printed.get(job) {
            Some(1) => {}
            other => return Err(format!("job {job} printed {other:?} times: {started:?}")),
        }
    }
    // One archive per print, ended, with its file.
    let (_, archives) = send(reqwest::Method::GET, "/archives?limit=500".into(), None).await;
    let archives = archives["archives"].as_array().cloned().unwrap_or_default();
    let prints: Vec<&Value> = archives
        .iter()
        .filter(|a| a["status"] != "uploaded")
        .collect();
    if let Some(open) = prints.iter().find(|a| a["status"] == "printing") {
        return Err(format!("still printing: {open}"));
    }
    let mut per_job: HashMap<i64, usize> = HashMap::new();
    for print in &prints {
        if let Some(job) = print["queue_job_id"].as_i64() {
            *per_job.entry(job).or_default() += 1;
        }
        if print["status"] != "success" || print["has_file"] != true {
            return Err(format!("a print not archived right: {print}"));
        }
    }
    for job in queued {
        if per_job.get(job) != Some(&1) {
            return Err(format!("job {job} has {:?} archives", per_job.get(job)));
        }
    }
    if prints.len() != queued.len() {
        return Err(format!(
            "{} archives of prints for {} jobs",
            prints.len(),
            queued.len()
        ));
    }
    // Every end delivered to the webhook, and seen on the stream.
    let ids: HashSet<i64> = prints.iter().filter_map(|a| a["id"].as_i64()).collect();
    let requests = receiver.requests();
    let delivered: HashSet<i64> = requests
        .iter()
        .map(Received::json)
        .filter_map(|b| b["data"]["archive_id"].as_i64())
        .collect();
    if let Some(missing) = ids.iter().find(|id| !delivered.contains(id)) {
        return Err(format!("the end of archive {missing} was not delivered"));
    }
    let streamed: HashSet<i64> = seen
        .lock()
        .expect("the events")
        .iter()
        .filter_map(|e| e["data"]["archive_id"].as_i64())
        .collect();
    if let Some(missing) = ids.iter().find(|id| !streamed.contains(id)) {
        return Err(format!("the end of archive {missing} was not on /events"));
    }
    // Statistics equal to the archive.
    let (_, stats) = send(reqwest::Method::GET, "/statistics".into(), None).await;
    if stats["total_prints"] != json!(prints.len())
        || stats["successful_prints"] != json!(prints.len())
    {
        return Err(format!("statistics {stats} for {} prints", prints.len()));
    }
    Ok(format!(
        "{} prints, {} webhook requests ({} distinct ends), {} ends on /events",
        prints.len(),
        requests.len(),
        delivered.len(),
        streamed.len()
    ))
}

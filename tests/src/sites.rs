//! A multi-site NATS topology on one machine, configured as docs/sites.md tells an operator
//! to: a central server with JetStream whose users are the central services and one user per
//! site (with that site's permissions), and per site a leaf node that connects to it as the
//! site's user and whose only local user is the site's gateway (with the same permissions).

use std::collections::BTreeMap;

use printyard_contracts::farm::Site;
use printyard_contracts::sites::{
    CENTRAL_DOMAIN, Permissions, SiteMode, gateway_permissions, leaf_permissions, site_domain,
};

use crate::nats_server::{NatsServer, free_port};

/// The user the central services log in with.
pub const CENTRAL_USER: &str = "central";
/// The user a site's gateway logs in with at its leaf node.
pub const GATEWAY_USER: &str = "gateway";

/// The leaf nodes of the sites.
pub struct SiteNats {
    /// Per site: its leaf node (its `login` is the site's gateway user).
    pub leaves: BTreeMap<String, NatsServer>,
}

impl SiteNats {
    /// The central server (its `login` is the central services' user, for a
    /// [`crate::TestEnv::with_nats`]) and the sites' leaf nodes, connected to it.
    pub async fn start(sites: &[&str]) -> (NatsServer, Self) {
        let leaf_port = free_port();
        Self::start_with(sites, SiteMode::default(), leaf_port, leaf_port).await
    }

    /// [`SiteNats::start`] with the sites in `mode` (buffered: each leaf node runs JetStream
    /// in the site's domain), the central server taking leaf nodes on `leaf_port` and the
    /// leaf nodes connecting to `uplink_port` (a [`Proxy`] to it, that can cut the link).
    pub async fn start_with(
        sites: &[&str],
        mode: SiteMode,
        leaf_port: u16,
        uplink_port: u16,
    ) -> (NatsServer, Self) {
        let password = |who: &str| format!("{who}-{:016x}", rand::random::<u64>());
        let central_password = password(CENTRAL_USER);
        let site_passwords: BTreeMap<String, String> = sites
            .iter()
            .map(|s| ((*s).to_owned(), password(s)))
            .collect();
        let hub = NatsServer::start_with_config(
            |port, dir| {
                let mut users = vec![serde_json::json!({
                    "user": CENTRAL_USER, "password": central_password,
                })];
                for (site, secret) in &site_passwords {
                    let permissions = leaf_permissions(&parse(site), Some(CENTRAL_DOMAIN), mode);
                    users.push(serde_json::json!({
                        "user": format!("site_{site}"), "password": secret,
                        "permissions": json(permissions),
                    }));
                }
                // `no_advertise`: a leaf node learns no other address of this server than the one
                // it was given, so a link cut at the proxy stays cut (it once reconnected
                // straight to the advertised port).
                format!(
                    "listen: \"127.0.0.1:{port}\"\nserver_name: central\n\
                     jetstream {{ store_dir: {store:?}, domain: {CENTRAL_DOMAIN} }}\n\
                     leafnodes {{ listen: \"127.0.0.1:{leaf_port}\", no_advertise: true }}\n\
                     authorization {{ users: {users} }}\n",
                    store = dir.join("js").display().to_string(),
                    users = serde_json::Value::Array(users),
                )
            },
            Some((CENTRAL_USER.to_owned(), central_password.clone())),
        )
        .await;
        let uplink = uplink_port;
        let mut leaves = BTreeMap::new();
        for (site, secret) in &site_passwords {
            let gateway_password = password(GATEWAY_USER);
            let leaf = NatsServer::start_with_config(
                |port, dir| {
                    let permissions = gateway_permissions(&parse(site), Some(CENTRAL_DOMAIN), mode);
                    let users = serde_json::json!([{
                        "user": GATEWAY_USER, "password": gateway_password,
                        "permissions": json(permissions),
                    }]);
                    let jetstream = if mode.buffered {
                        format!(
                            "jetstream {{ store_dir: {:?}, domain: {} }}\n",
                            dir.join("js").display().to_string(),
                            site_domain(&parse(site))
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        "listen: \"127.0.0.1:{port}\"\nserver_name: leaf_{site}\n{jetstream}\
                         leafnodes {{ remotes: [ {{ url: \"nats://site_{site}:{secret}@127.0.0.1:{uplink}\" }} ] }}\n\
                         authorization {{ users: {users} }}\n"
                    )
                },
                Some((GATEWAY_USER.to_owned(), gateway_password.clone())),
            )
            .await;
            leaves.insert(site.clone(), leaf);
        }
        (hub, Self { leaves })
    }

    pub fn leaf(&self, site: &str) -> &NatsServer {
        &self.leaves[site]
    }
}

fn parse(site: &str) -> Site {
    Site::parse(site).expect("a valid site name")
}

fn json(permissions: Permissions) -> serde_json::Value {
    serde_json::to_value(permissions).expect("permissions as JSON")
}

/// A TCP proxy on a free loopback port to `target`, whose link can be cut (every connection
/// closed, new ones refused) and restored: an uplink going down.
pub struct Proxy {
    pub port: u16,
    up: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(tokio::sync::watch::channel(true).0);
        let link = up.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*link.borrow() {
                    continue; // refused: dropped at once
                }
                let mut down = link.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up, task }
    }

    /// Closes every connection through the proxy and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

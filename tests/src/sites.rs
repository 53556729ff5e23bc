//! A multi-site NATS topology on one machine, configured as the README's Sites tells an operator
//! to: a central server with JetStream whose users are the central services and one user per
//! site (with that site's permissions), and per site a leaf node that connects to it as the
//! site's user and whose only local user is the site's gateway (with the same permissions).

use std::collections::BTreeMap;

use printyard_contracts::farm::Site;
use printyard_contracts::sites::{CENTRAL_DOMAIN, gateway_permissions};

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
        let password = |who: &str| format!("{who}-{:016x}", rand::random::<u64>());
        let central_password = password(CENTRAL_USER);
        let site_passwords: BTreeMap<String, String> = sites
            .iter()
            .map(|s| ((*s).to_owned(), password(s)))
            .collect();
        let leaf_port = free_port();
        let hub = NatsServer::start_with_config(
            |port, dir| {
                let mut users = vec![serde_json::json!({
                    "user": CENTRAL_USER, "password": central_password,
                })];
                for (site, secret) in &site_passwords {
                    users.push(serde_json::json!({
                        "user": format!("site_{site}"), "password": secret,
                        "permissions": permissions(site),
                    }));
                }
                format!(
                    "listen: \"127.0.0.1:{port}\"\nserver_name: central\n\
                     jetstream {{ store_dir: {store:?}, domain: {CENTRAL_DOMAIN} }}\n\
                     leafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}\n\
                     authorization {{ users: {users} }}\n",
                    store = dir.join("js").display().to_string(),
                    users = serde_json::Value::Array(users),
                )
            },
            Some((CENTRAL_USER.to_owned(), central_password.clone())),
        )
        .await;
        let mut leaves = BTreeMap::new();
        for (site, secret) in &site_passwords {
            let gateway_password = password(GATEWAY_USER);
            let leaf = NatsServer::start_with_config(
                |port, _dir| {
                    let users = serde_json::json!([{
                        "user": GATEWAY_USER, "password": gateway_password,
                        "permissions": permissions(site),
                    }]);
                    format!(
                        "listen: \"127.0.0.1:{port}\"\nserver_name: leaf_{site}\n\
                         leafnodes {{ remotes: [ {{ url: \"nats://site_{site}:{secret}@127.0.0.1:{leaf_port}\" }} ] }}\n\
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

fn permissions(site: &str) -> serde_json::Value {
    let site = Site::parse(site).expect("a valid site name");
    serde_json::to_value(gateway_permissions(&site, Some(CENTRAL_DOMAIN)))
        .expect("permissions as JSON")
}

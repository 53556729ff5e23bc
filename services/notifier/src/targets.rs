//! Where a webhook may point. A webhook URL is a request the farm makes on someone's behalf, so
//! it must not reach what only the farm's own machines can: loopback services and link-local
//! addresses (the cloud metadata service at 169.254.169.254) are refused unless
//! `notifier.targets = "any"`; private LAN ranges are allowed by default (farms post to their
//! local tools) and refused with `"public"`.
//!
//! Checked when a webhook is saved and again at every connection: the HTTP client resolves
//! names through [`GuardedResolver`], which drops refused addresses, so a name that later
//! resolves to a refused address (DNS rebinding) reaches nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetPolicy {
    /// Public addresses only.
    Public,
    /// Public and private (RFC 1918, carrier-grade NAT, IPv6 unique local) addresses.
    #[default]
    Lan,
    /// Any unicast address, loopback and link-local included.
    Any,
}

/// What kind of address an IP is, as far as webhooks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressClass {
    Public,
    Private,
    /// Loopback and link-local.
    Local,
    /// Unspecified, multicast, broadcast, documentation: never a webhook receiver.
    Never,
}

fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_documentation() {
        AddressClass::Never
    } else if ip.is_loopback() || ip.is_link_local() || a == 0 {
        AddressClass::Local
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip.is_unspecified() || ip.is_multicast() {
        AddressClass::Never
    } else if ip.is_loopback() || (first & 0xffc0) == 0xfe80 {
        AddressClass::Local
    } else if (first & 0xfe00) == 0xfc00 {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

impl TargetPolicy {
    /// `Err(why)` when a webhook may not reach `ip`.
    pub fn check(self, ip: IpAddr) -> Result<(), String> {
        let refused = |what: &str| {
            Err(format!(
                "{ip} is {what}: refused (notifier.targets = \"{}\")",
                self.as_str()
            ))
        };
        match (classify(ip), self) {
            (AddressClass::Never, _) => Err(format!(
                "{ip} is not a unicast address a webhook can be sent to"
            )),
            (AddressClass::Public, _) => Ok(()),
            (AddressClass::Private, TargetPolicy::Public) => refused("a private address"),
            (AddressClass::Private, _) => Ok(()),
            (AddressClass::Local, TargetPolicy::Any) => Ok(()),
            (AddressClass::Local, _) => refused("a loopback or link-local address"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetPolicy::Public => "public",
            TargetPolicy::Lan => "lan",
            TargetPolicy::Any => "any",
        }
    }
}

/// Checks a webhook URL as it is saved: `http` or `https`, a host, no more than 2,000
/// characters; an address written in it, or every address its name resolves to now, allowed by
/// `policy`. A name that does not resolve now is accepted (it is checked at every delivery).
pub async fn check_url(raw: &str, policy: TargetPolicy) -> Result<Url, String> {
    if raw.len() > 2000 {
        return Err("url: at most 2000 characters".into());
    }
    let url = Url::parse(raw).map_err(|e| format!("url: not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("url: http or https, not {}", url.scheme()));
    }
    let host = match url.host() {
        Some(host) => host,
        None => return Err("url: no host".into()),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    match host {
        url::Host::Ipv4(ip) => policy.check(ip.into()).map_err(|e| format!("url: {e}"))?,
        url::Host::Ipv6(ip) => policy.check(ip.into()).map_err(|e| format!("url: {e}"))?,
        url::Host::Domain(name) => {
            let lookup = tokio::net::lookup_host((name, port));
            if let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(3), lookup).await {
                let addrs: Vec<SocketAddr> = addrs.collect();
                let first_refusal = addrs.iter().find_map(|a| policy.check(a.ip()).err());
                if !addrs.is_empty() && addrs.iter().all(|a| policy.check(a.ip()).is_err()) {
                    return Err(format!(
                        "url: {name} resolves to {}",
                        first_refusal.unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(url)
}

/// The check of a URL with an address in it, at delivery time (the resolver is not asked for
/// those).
pub fn check_literal(url: &Url, policy: TargetPolicy) -> Result<(), String> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => policy.check(ip.into()),
        Some(url::Host::Ipv6(ip)) => policy.check(ip.into()),
        Some(url::Host::Domain(_)) => Ok(()),
        None => Err("no host".into()),
    }
}

/// The HTTP client's resolver: the system's, less the addresses `policy` refuses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub policy: TargetPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let lookup = tokio::net::lookup_host((host.as_str(), 0));
            let addrs: Vec<SocketAddr> = tokio::time::timeout(Duration::from_secs(5), lookup)
                .await
                .map_err(|_| format!("resolving {host}: no answer within 5 s"))??
                .collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refusal.get_or_insert(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refusal.unwrap_or_else(|| format!("{host} has no address"));
                return Err(format!("{host}: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_and_link_local_need_any() {
        for local in [
            "127.0.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(TargetPolicy::Lan.check(ip(local)).is_err(), "{local}");
            assert!(TargetPolicy::Public.check(ip(local)).is_err(), "{local}");
            assert!(TargetPolicy::Any.check(ip(local)).is_ok(), "{local}");
        }
    }

    #[test]
    fn private_ranges_are_allowed_unless_public_only() {
        for private in [
            "10.1.2.3",
            "192.168.1.50",
            "172.16.0.9",
            "100.64.0.1",
            "fd00::5",
        ] {
            assert!(TargetPolicy::Lan.check(ip(private)).is_ok(), "{private}");
            assert!(
                TargetPolicy::Public.check(ip(private)).is_err(),
                "{private}"
            );
        }
        assert!(TargetPolicy::Public.check(ip("1.1.1.1")).is_ok());
        assert!(TargetPolicy::Public.check(ip("2606:4700::1111")).is_ok());
    }

    #[test]
    fn no_policy_allows_what_cannot_be_a_receiver() {
        for never in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::"] {
            assert!(TargetPolicy::Any.check(ip(never)).is_err(), "{never}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_when_saved() {
        assert!(
            check_url("ftp://example.com/x", TargetPolicy::Any)
                .await
                .is_err()
        );
        assert!(check_url("not a url", TargetPolicy::Any).await.is_err());
        assert!(
            check_url("http://127.0.0.1:9/x", TargetPolicy::Lan)
                .await
                .is_err()
        );
        assert!(
            check_url("http://[::1]/x", TargetPolicy::Lan)
                .await
                .is_err()
        );
        assert!(
            check_url("http://localhost:9/x", TargetPolicy::Lan)
                .await
                .is_err()
        );
        assert!(
            check_url("http://localhost:9/x", TargetPolicy::Any)
                .await
                .is_ok()
        );
        assert!(
            check_url("https://192.168.1.9/hook", TargetPolicy::Lan)
                .await
                .is_ok()
        );
        let long = format!("https://example.com/{}", "a".repeat(2000));
        assert!(check_url(&long, TargetPolicy::Any).await.is_err());
    }
}

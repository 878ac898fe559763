//! Where the registry client may connect: the destination policy and the redirect policy.
//!
//! An image reference names the host signet connects to, and whoever writes the reference
//! (a signer token holder, a webhook payload, a pod author) is not trusted to point signet
//! at its own network. So addresses that are not on the public internet — loopback,
//! link-local (cloud metadata endpoints), RFC 1918, CGNAT, ULA, and IPv6 forms that embed
//! such IPv4 addresses — are refused unless `registry.allowed_hosts` lists them.
//!
//! The check runs on the address actually connected to: [`PolicyResolver`] is the HTTP
//! client's DNS resolver, so a name that resolves to a public address once and to a private
//! one later (DNS rebinding) is checked at each connect. IP literals never reach a resolver,
//! so [`DestinationPolicy::check_url`] checks them before each request and each redirect.
//! Written by hand: no maintained crate classifies addresses this way (`IpAddr::is_global`
//! is unstable in std).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// How many redirects one request may follow (blob storage needs one).
const MAX_REDIRECTS: usize = 5;

/// Hosts and networks the client may reach although they are not public.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    /// Lower-case host names (any port): every address they resolve to is allowed.
    names: Vec<String>,
    /// Networks whose addresses are allowed.
    nets: Vec<IpNet>,
}

/// signet refused to connect to a destination. Says which setting allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRefused {
    pub host: String,
    pub ip: IpAddr,
    /// "a loopback address", "a private address", …
    pub kind: &'static str,
}

impl fmt::Display for DestinationRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().is_ok() {
            write!(f, "registry host {host} is {}", self.kind)?;
        } else {
            write!(
                f,
                "registry host {host} resolves to {}, {}",
                self.ip, self.kind
            )?;
        }
        write!(
            f,
            "; add it to registry.allowed_hosts to allow it (signet refuses non-public \
             destinations by default)"
        )
    }
}

impl std::error::Error for DestinationRefused {}

/// A redirect signet did not follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRefused(pub String);

impl fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

impl DestinationPolicy {
    /// From `registry.allowed_hosts`: IP addresses, CIDRs (`10.0.0.0/8`) or host names
    /// (a `:port` suffix is accepted and ignored).
    pub fn new(allowed: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in allowed {
            let e = entry.trim();
            if let Ok(net) = e.parse::<IpNet>() {
                policy.nets.push(net.trunc());
            } else if let Ok(ip) = e
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                policy.nets.push(IpNet::from(ip));
            } else {
                let host = crate::config::host_part(e).to_ascii_lowercase();
                let valid = !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if !valid {
                    return Err(format!(
                        "registry.allowed_hosts: {entry:?} is neither a host name, an IP address nor a CIDR"
                    ));
                }
                policy.names.push(host);
            }
        }
        Ok(policy)
    }

    /// Loopback addresses allowed too.
    #[cfg(test)]
    fn allow_loopback(&mut self) {
        for net in crate::config::LOOPBACK {
            if let Ok(n) = net.parse::<IpNet>() {
                if !self.nets.contains(&n) {
                    self.nets.push(n);
                }
            }
        }
    }

    fn allows_name(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.names.iter().any(|n| n.eq_ignore_ascii_case(host))
    }

    /// Whether `host` (as written in a URL) may be reached at `ip`.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), DestinationRefused> {
        let Some(kind) = non_public(ip) else {
            return Ok(());
        };
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let listed = |a: IpAddr| self.nets.iter().any(|n| n.contains(&a));
        if self.allows_name(host) || listed(ip) || embedded.is_some_and(listed) {
            return Ok(());
        }
        Err(DestinationRefused {
            host: host.to_owned(),
            ip,
            kind,
        })
    }

    /// The check for URLs whose host is an IP literal, which no resolver sees. Host names
    /// pass here and are checked by [`PolicyResolver`] when connecting.
    pub fn check_url(&self, url: &Url) -> Result<(), DestinationRefused> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        self.check(url.host_str().unwrap_or_default(), ip)
    }
}

/// Why `ip` is not a public internet address, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv6 form that carries an IPv4 address reaches that IPv4 host: judge the
            // embedded address (kyverno#16419 was this bypass).
            if let Some(v4) = embedded_v4(v6) {
                return non_public_v4(v4);
            }
            non_public_v6(v6)
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("an unspecified (\"this network\") address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address (cloud metadata endpoints live there)")
    } else if ip.is_private() {
        Some("a private address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a carrier-grade NAT (shared) address")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("a multicast, broadcast or reserved address")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("an IETF protocol assignment address")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("a benchmarking network address")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address (cloud metadata endpoints live there)")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a unique local (private) address")
    } else if first & 0xffc0 == 0xfec0 {
        Some("a site-local (private) address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

/// The IPv4 address inside IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`)
/// and NAT64 well-known-prefix (`64:ff9b::a.b.c.d`) addresses.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail()),
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        _ => None,
    }
}

/// The HTTP client's resolver: resolves with the system resolver, then keeps only the
/// addresses the policy allows. Refuses the name when none remain.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<DestinationPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<DestinationPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            match (kept.is_empty(), refused) {
                (true, Some(e)) => Err(e.into()),
                _ => Ok(Box::new(kept.into_iter()) as Addrs),
            }
        })
    }
}

/// Redirects are followed only to the same scheme-host-port, or to a host listed in
/// `registry.redirect_hosts` (blob storage such as S3 or GCS); never from https to http,
/// and never to a destination the policy refuses. reqwest drops the Authorization header
/// when a redirect leaves the host.
pub fn redirect_policy(
    policy: Arc<DestinationPolicy>,
    redirect_hosts: Arc<[String]>,
) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let refuse = |why: String| RedirectRefused(why);
        let previous = attempt.previous();
        let next = attempt.url().clone();
        let Some(origin) = previous.first() else {
            return attempt.follow();
        };
        if previous.len() > MAX_REDIRECTS {
            let e = refuse(format!("more than {MAX_REDIRECTS} redirects"));
            return attempt.error(e);
        }
        let shown = format!(
            "{}://{}",
            next.scheme(),
            next.host_str().unwrap_or_default()
        );
        if next.scheme() != "https" && next.scheme() != "http" {
            let e = refuse(format!("a redirect to {shown} (not HTTP) was not followed"));
            return attempt.error(e);
        }
        if next.scheme() == "http" && previous.iter().any(|u| u.scheme() == "https") {
            let e = refuse(format!(
                "a redirect from https to {shown} was not followed (never downgraded to plain HTTP)"
            ));
            return attempt.error(e);
        }
        let same_host = next.host_str() == origin.host_str()
            && next.port_or_known_default() == origin.port_or_known_default();
        let listed = next.host_str().is_some_and(|h| {
            let with_port = next
                .port()
                .map(|p| format!("{h}:{p}"))
                .unwrap_or_else(|| h.to_owned());
            redirect_hosts.iter().any(|r| {
                let r = crate::config::normalize_host(r);
                r == h.to_ascii_lowercase() || r == with_port.to_ascii_lowercase()
            })
        });
        if !same_host && !listed {
            let e = refuse(format!(
                "a redirect to another host ({shown}) was not followed; if it is the registry's \
                 blob storage, add that host to registry.redirect_hosts"
            ));
            return attempt.error(e);
        }
        if let Err(e) = policy.check_url(&next) {
            return attempt.error(e);
        }
        attempt.follow()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn non_public_addresses_are_refused_by_default() {
        let p = DestinationPolicy::default();
        for a in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "10.0.0.5",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fc00::1",
            "fd12:3456::1",
            "0.0.0.0",
            "::",
            // IPv4-mapped, IPv4-compatible and NAT64 forms of the above.
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.5",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(p.check("h", ip(a)).is_err(), "{a} must be refused");
        }
        for a in [
            "1.1.1.1",
            "140.82.112.3",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(p.check("h", ip(a)).is_ok(), "{a} is public");
        }
    }

    #[test]
    fn allowed_hosts_take_cidrs_addresses_and_names() {
        let p = DestinationPolicy::new(&[
            "10.1.0.0/16".into(),
            "192.168.5.5".into(),
            "registry.lan:5000".into(),
        ])
        .expect("valid");
        assert!(p.check("x", ip("10.1.2.3")).is_ok());
        assert!(
            p.check("x", ip("::ffff:10.1.2.3")).is_ok(),
            "the mapped form of a listed address"
        );
        assert!(p.check("x", ip("10.2.0.1")).is_err());
        assert!(p.check("x", ip("192.168.5.5")).is_ok());
        assert!(p.check("registry.lan", ip("10.9.9.9")).is_ok());
        assert!(p.check("REGISTRY.LAN.", ip("10.9.9.9")).is_ok());
        assert!(p.check("other.lan", ip("10.9.9.9")).is_err());
        assert!(DestinationPolicy::new(&["not a host/x".into()]).is_err());
    }

    #[test]
    fn the_refusal_names_host_address_and_setting() {
        let p = DestinationPolicy::default();
        let e = p
            .check("registry.example", ip("10.0.0.5"))
            .expect_err("private");
        assert_eq!(
            e.to_string(),
            "registry host registry.example resolves to 10.0.0.5, a private address; add it to \
             registry.allowed_hosts to allow it (signet refuses non-public destinations by default)"
        );
        let url = Url::parse("http://169.254.169.254/latest/meta-data/").expect("url");
        let e = p.check_url(&url).expect_err("metadata");
        assert!(
            e.to_string()
                .starts_with("registry host 169.254.169.254 is a link-local"),
            "{e}"
        );
        let url = Url::parse("http://[::ffff:a9fe:a9fe]/").expect("url");
        assert!(p.check_url(&url).is_err());
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses_at_connect_time() {
        let strict = PolicyResolver::new(Arc::new(DestinationPolicy::default()));
        let name: Name = "localhost".parse().expect("name");
        let err = match strict.resolve(name).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(err.to_string().contains("loopback"), "{err}");
        let mut open = DestinationPolicy::default();
        open.allow_loopback();
        let laptop = PolicyResolver::new(Arc::new(open));
        let name: Name = "localhost".parse().expect("name");
        let addrs: Vec<_> = laptop.resolve(name).await.expect("allowed").collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}

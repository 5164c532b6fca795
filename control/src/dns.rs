//! Name resolution for the SIP runtime, on hickory-resolver: the RFC 3263 steps for one
//! [`Query`] ([`Resolver::resolve`]: NAPTR for the configured transport's service, then SRV, then
//! A/AAAA; a configured port skips to A/AAAA), and the task that keeps every name the topology
//! uses resolved ([`spawn`]): looked up at once when it appears, again when its shortest TTL runs
//! out, in the background — a lookup never holds up SIP. Answers go to the runtime, which hands
//! them to the engine. A refresh that fails keeps the last good answer for [`STALE`] past its
//! TTL (a DNS server restarting must not take every trunk with it); after that, or for a name
//! never resolved, the failure itself is the answer and calls to the name get 503.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use mediator_b2bua::dns::{MAX_ADDRESSES, Query, Resolution, Target};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The shortest wait before a name is looked up again (a TTL of 0 is not a busy loop).
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// The longest an answer is used without asking again, whatever its TTL.
pub const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// How long after a failed lookup it is tried again.
pub const RETRY: Duration = Duration::from_secs(5);
/// How long past its TTL a good answer is kept while refreshes fail.
pub const STALE: Duration = Duration::from_secs(300);
/// Lookups in flight at most.
const CONCURRENT: usize = 16;
/// SRV records followed per name at most.
const MAX_SRV: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns_servers: {0}")]
    Servers(String),
    #[error("the system's resolver configuration (/etc/resolv.conf): {0}")]
    System(String),
}

/// A stub resolver: the configured servers, or the system's.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// Asks `servers` (UDP, then TCP for truncated answers), or the servers of /etc/resolv.conf
    /// when there are none. Names are looked up as given (absolute: no search list).
    pub fn new(servers: &[SocketAddr]) -> Result<Resolver, DnsError> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsError::System(e.to_string()))?
        } else {
            let mut cfg = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
            for s in servers {
                let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                for c in &mut ns.connections {
                    c.port = s.port();
                }
                cfg.add_name_server(ns);
            }
            TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default())
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        // Both families, IPv4 first (hickory's default asks AAAA first); the engine keeps the
        // family it can send from.
        opts.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        let inner = builder
            .build()
            .map_err(|e| DnsError::Servers(e.to_string()))?;
        Ok(Resolver { inner })
    }

    /// RFC 3263 §4 for `q`, with the transport already chosen by the configuration: with a port,
    /// A/AAAA of the host; without, the first NAPTR record (by order, then preference) whose
    /// service is the transport's names the SRV owner (otherwise `_sip._udp.host` and so on),
    /// the SRV records give targets and ports, and each target's A/AAAA its addresses; no SRV
    /// record: A/AAAA of the host on the transport's default port. Returns the answer and how
    /// long it may be used (the shortest TTL of the records used).
    pub async fn resolve(&self, q: &Query) -> Result<(Resolution, Duration), String> {
        let mut valid = Vec::new();
        if let Some(port) = q.port {
            let (addrs, until) = self.ips(&q.host).await?;
            valid.push(until);
            return Ok(answer(
                vec![target(&q.host, 0, 0, port, addrs)],
                "A/AAAA",
                &valid,
            ));
        }
        let mut how = "SRV";
        let mut srv_name = q.srv_name();
        // NAPTR is optional: an error or no record for the transport leads to the SRV name.
        if let Ok(l) = self.inner.lookup(fqdn(&q.host), RecordType::NAPTR).await {
            let mut naptr: Vec<_> = l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NAPTR(n)
                        if n.services
                            .eq_ignore_ascii_case(q.naptr_service().as_bytes())
                            && n.flags.eq_ignore_ascii_case(b"s") =>
                    {
                        Some(n.clone())
                    }
                    _ => None,
                })
                .collect();
            naptr.sort_by_key(|n| (n.order, n.preference));
            if let Some(n) = naptr.first() {
                valid.push(l.valid_until());
                how = "NAPTR";
                srv_name = n.replacement.to_ascii().trim_end_matches('.').to_string();
            }
        }
        let srv = match self.inner.lookup(fqdn(&srv_name), RecordType::SRV).await {
            Ok(l) => {
                valid.push(l.valid_until());
                l.answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(s) => Some(s.clone()),
                        _ => None,
                    })
                    .take(MAX_SRV)
                    .collect::<Vec<_>>()
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Vec::new(),
            Err(e) => return Err(format!("SRV {srv_name}: {}", brief(&e))),
        };
        if srv.is_empty() {
            if how == "NAPTR" {
                return Err(format!("NAPTR names {srv_name}, which has no SRV record"));
            }
            let (addrs, until) = self.ips(&q.host).await?;
            valid.push(until);
            return Ok(answer(
                vec![target(&q.host, 0, 0, q.default_port(), addrs)],
                "A/AAAA",
                &valid,
            ));
        }
        // A target of "." says the service is not offered there (RFC 2782).
        let srv: Vec<_> = srv.into_iter().filter(|s| !s.target.is_root()).collect();
        if srv.is_empty() {
            return Err(format!(
                "{srv_name}: the service is not offered (SRV target '.')"
            ));
        }
        let mut targets = Vec::new();
        let mut errors = Vec::new();
        for s in srv {
            let name = s
                .target
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            match self.ips(&name).await {
                Ok((addrs, until)) => {
                    valid.push(until);
                    targets.push(target(&name, s.priority, s.weight, s.port, addrs));
                }
                Err(e) => errors.push(e),
            }
        }
        if targets.is_empty() {
            return Err(format!(
                "{srv_name}: no SRV target resolved ({})",
                errors.join("; ")
            ));
        }
        Ok(answer(targets, how, &valid))
    }

    /// A and AAAA of `name` (at most [`MAX_ADDRESSES`]).
    async fn ips(&self, name: &str) -> Result<(Vec<IpAddr>, std::time::Instant), String> {
        let l = self
            .inner
            .lookup_ip(fqdn(name))
            .await
            .map_err(|e| format!("{name}: {}", brief(&e)))?;
        let mut addrs: Vec<IpAddr> = l.iter().collect();
        addrs.dedup();
        addrs.truncate(MAX_ADDRESSES);
        if addrs.is_empty() {
            return Err(format!("{name}: no A or AAAA record"));
        }
        Ok((addrs, l.valid_until()))
    }
}

/// A lookup's failure in a few words for logs, Warnings and `gateway show` (hickory's own text
/// carries the whole query).
fn brief(e: &hickory_resolver::net::NetError) -> String {
    if e.is_nx_domain() {
        "no such name (NXDOMAIN)".into()
    } else if e.is_no_records_found() {
        "no A or AAAA record".into()
    } else {
        let mut text = e.to_string();
        if text.len() > 120 {
            text.truncate(text.floor_char_boundary(117));
            text.push_str("...");
        }
        text
    }
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn target(name: &str, priority: u16, weight: u16, port: u16, addrs: Vec<IpAddr>) -> Target {
    Target {
        name: name.to_string(),
        priority,
        weight,
        port,
        addrs,
    }
}

/// The answer, usable until the first of `valid` (bounded by [`MIN_REFRESH`], [`MAX_REFRESH`]).
fn answer(
    targets: Vec<Target>,
    how: &'static str,
    valid: &[std::time::Instant],
) -> (Resolution, Duration) {
    let now = std::time::Instant::now();
    let ttl = valid
        .iter()
        .map(|u| u.saturating_duration_since(now))
        .min()
        .unwrap_or(MIN_REFRESH)
        .clamp(MIN_REFRESH, MAX_REFRESH);
    let r = Resolution {
        targets,
        how,
        expires_unix_ms: crate::clock::now().unix_ms + ttl.as_millis() as u64,
        error: None,
    };
    (r, ttl)
}

/// A finished lookup: the name, and its answer with how long it may be cached, or why not.
type Done = (Query, Result<(Resolution, Duration), String>);

/// What the refresher knows of one name.
struct Known {
    /// When it is looked up again.
    due: Instant,
    /// The last good answer and until when it may be used despite failed refreshes.
    good: Option<(Resolution, Instant)>,
    /// The failure last reported (reported once until it changes).
    failed: Option<String>,
}

/// Keeps every name in `wanted` resolved, sending each new answer to `out`; ends when either
/// channel closes.
pub fn spawn(
    resolver: Resolver,
    mut wanted: watch::Receiver<BTreeSet<Query>>,
    out: mpsc::Sender<(Query, Resolution)>,
) {
    tokio::spawn(async move {
        let mut known: HashMap<Query, Known> = HashMap::new();
        let mut flying: JoinSet<Done> = JoinSet::new();
        let mut in_flight: BTreeSet<Query> = BTreeSet::new();
        loop {
            let names = wanted.borrow_and_update().clone();
            let now = Instant::now();
            known.retain(|q, _| names.contains(q));
            for q in &names {
                known.entry(q.clone()).or_insert(Known {
                    due: now,
                    good: None,
                    failed: None,
                });
            }
            for (q, k) in &known {
                if k.due <= now && !in_flight.contains(q) && in_flight.len() < CONCURRENT {
                    in_flight.insert(q.clone());
                    let (r, q) = (resolver.clone(), q.clone());
                    flying.spawn(async move {
                        let res = r.resolve(&q).await;
                        (q, res)
                    });
                }
            }
            let next = known
                .iter()
                .filter(|(q, _)| !in_flight.contains(*q))
                .map(|(_, k)| k.due)
                .min()
                .unwrap_or(now + MAX_REFRESH)
                .max(now + Duration::from_millis(50));
            tokio::select! {
                changed = wanted.changed() => if changed.is_err() { return },
                Some(done) = flying.join_next(), if !flying.is_empty() => {
                    let Ok((q, res)) = done else { continue };
                    in_flight.remove(&q);
                    let Some(k) = known.get_mut(&q) else { continue };
                    let now = Instant::now();
                    let send = match res {
                        Ok((r, ttl)) => {
                            k.due = now + ttl;
                            k.failed = None;
                            let changed = k.good.as_ref().is_none_or(|(g, _)| g.targets != r.targets);
                            if changed {
                                tracing::info!(query = %q, how = r.how, addresses = ?r.addresses(), ttl_secs = ttl.as_secs(), "resolved");
                            }
                            k.good = Some((r.clone(), now + ttl + STALE));
                            Some(r)
                        }
                        Err(why) => {
                            k.due = now + RETRY;
                            let first = k.failed.as_deref() != Some(why.as_str());
                            k.failed = Some(why.clone());
                            match &k.good {
                                Some((_, until)) if *until > now => {
                                    if first {
                                        tracing::warn!(query = %q, error = %why, "DNS refresh failed; the last answer is kept for now");
                                    }
                                    None
                                }
                                _ => {
                                    k.good = None;
                                    if first {
                                        tracing::warn!(query = %q, error = %why, "cannot resolve: calls to it get 503");
                                    }
                                    let expires = crate::clock::now().unix_ms + RETRY.as_millis() as u64;
                                    Some(Resolution::failed(why, expires))
                                }
                            }
                        }
                    };
                    if let Some(r) = send
                        && out.send((q, r)).await.is_err()
                    {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    });
}

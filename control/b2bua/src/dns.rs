//! DNS names as the engine sees them (RFC 3263, RFC 2782), sans-IO: what the topology needs
//! resolved ([`Query`], [`wanted`]), what the edge's resolver found ([`Resolution`]), and the
//! order in which a call tries the addresses ([`order`]: SRV priority, then a weighted random
//! pick within one priority). The engine never resolves a name itself: one without an answer yet
//! has no targets, and a call to it is refused (503) rather than held up.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use mediator_sip::Transport;
use mediator_topology::Topology;

use crate::sip_transport;

/// Addresses of one name a call or a probe tries at most (RFC 3263 lists can be long; a call
/// that fails over through more would outlast its caller's patience anyway).
pub const MAX_ADDRESSES: usize = 8;

/// A name to resolve for one transport: with a port (A/AAAA only, RFC 3263 §4.2) or without
/// (NAPTR, then SRV, then A/AAAA on the transport's default port).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Query {
    pub host: String,
    pub transport: Transport,
    pub port: Option<u16>,
}

impl Query {
    /// The query for `host` (None: an IP literal, nothing to resolve); `port` 0 is "none given".
    pub fn of(host: &str, port: u16, transport: Transport) -> Option<Query> {
        if host.parse::<IpAddr>().is_ok() {
            return None;
        }
        Some(Query {
            host: host.to_ascii_lowercase(),
            transport,
            port: (port != 0).then_some(port),
        })
    }

    /// The SRV owner name for the transport when NAPTR names none (RFC 3263 §4.2).
    pub fn srv_name(&self) -> String {
        let service = match self.transport {
            Transport::Udp => "_sip._udp",
            Transport::Tcp => "_sip._tcp",
            Transport::Tls => "_sips._tcp",
        };
        format!("{service}.{}", self.host)
    }

    /// The NAPTR service field that leads to the transport (RFC 3263 §4.1).
    pub fn naptr_service(&self) -> &'static str {
        match self.transport {
            Transport::Udp => "SIP+D2U",
            Transport::Tcp => "SIP+D2T",
            Transport::Tls => "SIPS+D2T",
        }
    }

    /// The transport's default port (RFC 3263 §4.2, when neither the URI nor SRV gives one).
    pub fn default_port(&self) -> u16 {
        match self.transport {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p} ({})", self.host, self.transport.name()),
            None => write!(f, "{} ({}, SRV)", self.host, self.transport.name()),
        }
    }
}

/// One SRV target (or, without SRV, the name itself): its addresses on its port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub addrs: Vec<IpAddr>,
}

/// What the resolver found for a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// In the order DNS gave them; [`order`] picks a call's order.
    pub targets: Vec<Target>,
    /// How they were found: "NAPTR", "SRV" or "A/AAAA".
    pub how: &'static str,
    /// When the shortest TTL among the records used runs out (ms since the Unix epoch).
    pub expires_unix_ms: u64,
    /// Why there are no targets (the name does not exist, no server answered, …).
    pub error: Option<String>,
}

impl Resolution {
    /// A failed lookup.
    pub fn failed(why: impl Into<String>, expires_unix_ms: u64) -> Resolution {
        Resolution {
            targets: Vec::new(),
            how: "",
            expires_unix_ms,
            error: Some(why.into()),
        }
    }

    /// Every address, in priority order and within one priority as DNS listed them: for the
    /// OPTIONS probes, which want a stable order.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut t: Vec<&Target> = self.targets.iter().collect();
        t.sort_by_key(|t| t.priority);
        flatten(&t)
    }
}

fn flatten(targets: &[&Target]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for t in targets {
        for ip in &t.addrs {
            let a = SocketAddr::new(*ip, t.port);
            if !out.contains(&a) && out.len() < MAX_ADDRESSES {
                out.push(a);
            }
        }
    }
    out
}

/// The order a call tries `targets` in (RFC 2782): lowest priority first; within a priority, a
/// target is picked at random with a chance proportional to its weight (zero-weight ones first
/// in the running sum, so they are rarely picked first when others have weight), then the next
/// from those left, and so on. `pick(n)` returns a number in `0..=n`. Each target's addresses
/// follow it in the order DNS gave them. At most [`MAX_ADDRESSES`].
pub fn order(targets: &[Target], mut pick: impl FnMut(u32) -> u32) -> Vec<SocketAddr> {
    let mut priorities: Vec<u16> = targets.iter().map(|t| t.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut ordered: Vec<&Target> = Vec::new();
    for p in priorities {
        // Zero weights first, as RFC 2782 asks.
        let mut left: Vec<&Target> = targets.iter().filter(|t| t.priority == p).collect();
        left.sort_by_key(|t| t.weight != 0);
        while !left.is_empty() {
            let total: u32 = left.iter().map(|t| u32::from(t.weight)).sum();
            let r = pick(total).min(total);
            let mut sum = 0u32;
            let mut chosen = left.len() - 1;
            for (i, t) in left.iter().enumerate() {
                sum += u32::from(t.weight);
                if sum >= r {
                    chosen = i;
                    break;
                }
            }
            ordered.push(left.remove(chosen));
        }
    }
    flatten(&ordered)
}

/// Every name the topology needs resolved: gateways named by FQDN (for each trunk's transport and
/// port) and pools' next hops named by FQDN.
pub fn wanted(topo: &Topology) -> BTreeSet<Query> {
    let mut out = BTreeSet::new();
    for t in topo.trunks.values().map(|t| &t.value) {
        out.extend(Query::of(
            &t.gateway,
            t.gateway_port,
            sip_transport(t.transport),
        ));
    }
    for p in topo.pools.values().map(|p| &p.value) {
        out.extend(Query::of(
            &p.next_hop.host,
            p.next_hop.port,
            sip_transport(p.next_hop.transport),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, priority: u16, weight: u16, ip: &str) -> Target {
        Target {
            name: name.into(),
            priority,
            weight,
            port: 5060,
            addrs: vec![ip.parse().expect("ip")],
        }
    }

    fn ips(v: &[SocketAddr]) -> Vec<String> {
        v.iter().map(|a| a.ip().to_string()).collect()
    }

    #[test]
    fn queries_name_their_srv_and_naptr_service() {
        assert_eq!(Query::of("198.18.0.1", 0, Transport::Udp), None);
        let q = Query::of("GW.Example.com", 0, Transport::Tls).expect("fqdn");
        assert_eq!(q.host, "gw.example.com");
        assert_eq!(q.srv_name(), "_sips._tcp.gw.example.com");
        assert_eq!(q.naptr_service(), "SIPS+D2T");
        assert_eq!(q.default_port(), 5061);
        let q = Query::of("gw.example.com", 5070, Transport::Udp).expect("fqdn");
        assert_eq!(q.port, Some(5070));
        assert_eq!(q.srv_name(), "_sip._udp.gw.example.com");
        assert_eq!(q.to_string(), "gw.example.com:5070 (udp)");
    }

    #[test]
    fn lower_priority_first_whatever_the_weights() {
        let targets = [
            t("b", 20, 100, "198.18.0.2"),
            t("a", 10, 0, "198.18.0.1"),
            t("c", 30, 5, "198.18.0.3"),
        ];
        for r in [0, 50, 100] {
            let o = order(&targets, |n| r.min(n));
            assert_eq!(ips(&o), ["198.18.0.1", "198.18.0.2", "198.18.0.3"]);
        }
    }

    #[test]
    fn within_a_priority_the_pick_follows_the_running_sum_of_weights() {
        let targets = [t("a", 10, 1, "198.18.0.1"), t("b", 10, 3, "198.18.0.2")];
        // Running sums 1 (a) and 4 (b): a draw of 0 or 1 picks a, 2 to 4 picks b.
        assert_eq!(ips(&order(&targets, |_| 1))[0], "198.18.0.1");
        assert_eq!(ips(&order(&targets, |_| 2))[0], "198.18.0.2");
        // Over every draw, a comes first 2 times in 5 (0 and 1 of 0..=4); zero weights first.
        let firsts = (0..=4)
            .filter(|&r| ips(&order(&targets, |n| r.min(n)))[0] == "198.18.0.1")
            .count();
        assert_eq!(firsts, 2);
        let zero = [t("z", 10, 0, "198.18.0.9"), t("b", 10, 3, "198.18.0.2")];
        assert_eq!(ips(&order(&zero, |_| 0))[0], "198.18.0.9");
        assert_eq!(ips(&order(&zero, |_| 3))[0], "198.18.0.2");
    }

    #[test]
    fn addresses_are_bounded_and_not_repeated() {
        let mut many: Vec<Target> = (0..20)
            .map(|i| t("x", i, 1, &format!("198.18.1.{i}")))
            .collect();
        many.push(t("again", 99, 1, "198.18.1.0"));
        let o = order(&many, |_| 0);
        assert_eq!(o.len(), MAX_ADDRESSES);
        let r = Resolution {
            targets: many,
            how: "SRV",
            expires_unix_ms: 0,
            error: None,
        };
        assert_eq!(r.addresses().len(), MAX_ADDRESSES);
        assert_eq!(r.addresses()[0], "198.18.1.0:5060".parse().expect("addr"));
    }
}

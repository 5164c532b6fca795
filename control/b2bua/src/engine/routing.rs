//! Targets and routing: who a message came from, the trunks an outbound call tries (voice
//! routes, translation, each trunk's effective settings), the pool's next hop for an inbound one,
//! and moving on to the next target.

use super::*;

/// One trunk (or the pool's next hop) a call tries.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) trunk: String,
    pub(super) route: String,
    pub(super) gateway: String,
    pub(super) peer: Peer,
    pub(super) request_uri: String,
    pub(super) to_hdr: String,
    pub(super) from_hdr: String,
    pub(super) called: String,
    pub(super) calling: String,
    pub(super) bypass: bool,
    pub(super) latching: bool,
    pub(super) refer: bool,
    pub(super) forward_pai: bool,
    /// `forward_call_history`: Diversion and History-Info pass (on relayed redirects).
    pub(super) forward_call_history: bool,
    /// `follow_redirects`: a 3xx is followed to the gateways it names.
    pub(super) follow_redirects: bool,
    /// `large_requests_over_tcp`: a request over 1300 bytes to a UDP peer goes over TCP.
    pub(super) large_over_tcp: bool,
    /// Added by a followed redirect: the Contacts of one 3xx are alternatives, tried in turn
    /// whatever the previous one answered.
    pub(super) from_redirect: bool,
    /// `max_early_dialogs`: early dialogs of a forked INVITE followed at most.
    pub(super) max_early_dialogs: usize,
    pub(super) fast_failover: Option<Duration>,
    /// `ring_limit_secs`: how long the target may ring without a final answer (Timer C).
    pub(super) ring_limit: Duration,
    pub(super) code_rules: Vec<(u16, u16)>,
    /// The callee's leg's media encryption policy on this target.
    pub(super) srtp: LegPolicy,
    /// `srtp_passthrough` of the trunk.
    pub(super) passthrough: bool,
    /// `session_timer` of the trunk: its gateway's leg keeps an RFC 4028 session timer.
    pub(super) session_timer: bool,
    /// `rtcp_active_calls`, `rtcp_calls_on_hold`: RTCP silence ends the call (active, held).
    pub(super) rtcp_active: bool,
    pub(super) rtcp_on_hold: bool,
    /// The peer is one address of this FQDN (RFC 3263): the Request-URI names it, and the
    /// call's record says which address was tried.
    pub(super) fqdn: Option<String>,
    /// Every address that FQDN resolved to: the same configured peer, so its dialog's route
    /// set may lead to any of them.
    pub(super) known: Vec<IpAddr>,
}

impl Target {
    /// A target on `peer` with the numbers as that side receives them and the trunk's effective
    /// `settings`.
    pub(super) fn new(
        trunk: &str,
        gateway: &str,
        peer: Peer,
        called: String,
        calling: String,
        s: &mediator_topology::model::Settings,
    ) -> Target {
        let host = host_of(peer.remote);
        let from_hdr = if calling.is_empty() {
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_string()
        } else {
            format!("<sip:{calling}@{};user=phone>", host_of(peer.local))
        };
        Target {
            trunk: trunk.into(),
            route: String::new(),
            gateway: gateway.into(),
            request_uri: format!(
                "sip:{called}@{host}:{};user=phone{}",
                peer.remote.port(),
                transport_param(&peer)
            ),
            to_hdr: format!("<sip:{called}@{host};user=phone>"),
            from_hdr,
            called,
            calling,
            bypass: s.media_bypass.unwrap_or(false),
            latching: s.rtp_latching.unwrap_or(false),
            refer: s.refer_support.unwrap_or(true),
            forward_pai: s.forward_pai.unwrap_or(false),
            forward_call_history: s.forward_call_history.unwrap_or(false),
            follow_redirects: s.follow_redirects.unwrap_or(false),
            large_over_tcp: s.large_requests_over_tcp.unwrap_or(false),
            from_redirect: false,
            max_early_dialogs: s.max_early_dialogs.unwrap_or(20).max(1) as usize,
            fast_failover: s.fast_failover.unwrap_or(false).then(|| {
                Duration::from_secs(u64::from(s.fast_failover_timeout_secs.unwrap_or(10)))
            }),
            ring_limit: Duration::from_secs(u64::from(
                s.ring_limit_secs
                    .unwrap_or(mediator_topology::model::DEFAULT_RING_LIMIT_SECS),
            )),
            code_rules: s
                .response_code_rules
                .iter()
                .flatten()
                .map(|r| (r.received, r.translated))
                .collect(),
            srtp: LegPolicy::Off,
            passthrough: s.srtp_passthrough.unwrap_or(false),
            session_timer: s.session_timer.unwrap_or(false),
            rtcp_active: s.rtcp_active_calls.unwrap_or(true),
            rtcp_on_hold: s.rtcp_calls_on_hold.unwrap_or(true),
            fqdn: None,
            known: Vec::new(),
            peer,
        }
    }

    /// The peer is an address of `host`, an FQDN (`port` 0: none configured, found by SRV): the
    /// Request-URI and To name the host, as the configuration does (RFC 3263 resolves where
    /// a request goes, not what it says).
    pub(super) fn named(mut self, host: &str, port: u16) -> Target {
        if host.parse::<IpAddr>().is_ok() {
            return self;
        }
        let port = if port == 0 {
            String::new()
        } else {
            format!(":{port}")
        };
        self.request_uri = format!(
            "sip:{}@{host}{port};user=phone{}",
            self.called,
            transport_param(&self.peer)
        );
        self.to_hdr = format!("<sip:{}@{host};user=phone>", self.called);
        self.fqdn = Some(host.to_string());
        self
    }

    /// How the call's record names this attempt: the trunk, and the address when it was one of
    /// several an FQDN resolved to.
    pub(super) fn label(&self) -> String {
        match &self.fqdn {
            Some(_) => format!("{} via {}", self.trunk, self.peer.remote),
            None => self.trunk.clone(),
        }
    }
}

pub(super) enum Origin {
    Pool { pool: String },
    Gateway { trunk: String, pool: String },
}

/// Who a message came from: the pool's next hop on its pool-side address, or a gateway on the
/// listening port of one of its trunks (and that trunk's transport). A next hop or gateway named
/// by FQDN is matched by the addresses its name last resolved to. Anything else is refused.
pub(super) fn identify(topo: &Topology, dns: &Dns, from: &Peer) -> Option<Origin> {
    let ip = from.remote.ip();
    for p in topo.pools.values().map(|p| &p.value) {
        let transport = sip_transport(p.next_hop.transport);
        if p.pool_side_listen == from.local
            && transport == from.transport
            && is_host(dns, &p.next_hop.host, transport, ip)
        {
            return Some(Origin::Pool {
                pool: p.name.clone(),
            });
        }
    }
    for t in topo.trunks.values().map(|t| &t.value) {
        let Some(p) = topo.pools.get(&t.pool).map(|p| &p.value) else {
            continue;
        };
        let transport = sip_transport(t.transport);
        if SocketAddr::new(p.gateway_side_address, t.pool_port) == from.local
            && transport == from.transport
            && is_host(dns, &t.gateway, transport, ip)
        {
            return Some(Origin::Gateway {
                trunk: t.name.clone(),
                pool: p.name.clone(),
            });
        }
    }
    None
}

/// Every (listening address, transport, peer IP) on which a configured peer may reach Mediator:
/// each pool's Front End next hop on the pool-side address, each trunk's gateway on its port —
/// the IP literal, or every address the name last resolved to. What [`identify`] accepts, as a
/// set the transports can check a connection against before reading a byte of it.
pub(super) fn peer_addresses(
    topo: &Topology,
    dns: &Dns,
) -> HashSet<(SocketAddr, Transport, IpAddr)> {
    let mut out = HashSet::new();
    let mut add = |local: SocketAddr, transport: Transport, host: &str| match host.parse::<IpAddr>()
    {
        Ok(ip) => {
            out.insert((local, transport, ip));
        }
        Err(_) => {
            for ip in host_ips(dns, host, transport) {
                out.insert((local, transport, ip));
            }
        }
    };
    for p in topo.pools.values().map(|p| &p.value) {
        add(
            p.pool_side_listen,
            sip_transport(p.next_hop.transport),
            &p.next_hop.host,
        );
    }
    for t in topo.trunks.values().map(|t| &t.value) {
        if let Some(p) = topo.pools.get(&t.pool).map(|p| &p.value) {
            add(
                SocketAddr::new(p.gateway_side_address, t.pool_port),
                sip_transport(t.transport),
                &t.gateway,
            );
        }
    }
    out
}

/// Whether `ip` is `host`: the same IP literal, or an address `host` resolved to for
/// `transport` (whatever the port: a peer sends from the address it listens on, rarely from the
/// port).
/// Every address `host` (a name) last resolved to for `transport`: all of them the same
/// configured peer. Empty for an IP literal (the peer's own address is all there is).
pub(super) fn host_ips(dns: &Dns, host: &str, transport: Transport) -> Vec<IpAddr> {
    if host.parse::<IpAddr>().is_ok() {
        return Vec::new();
    }
    let mut ips: Vec<IpAddr> = dns
        .iter()
        .filter(|(q, _)| q.host.eq_ignore_ascii_case(host) && q.transport == transport)
        .flat_map(|(_, r)| r.targets.iter().flat_map(|t| t.addrs.iter().copied()))
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn is_host(dns: &Dns, host: &str, transport: Transport, ip: IpAddr) -> bool {
    match host.parse::<IpAddr>() {
        Ok(h) => h == ip,
        Err(_) => dns.iter().any(|(q, r)| {
            q.host.eq_ignore_ascii_case(host)
                && q.transport == transport
                && r.targets.iter().any(|t| t.addrs.contains(&ip))
        }),
    }
}

pub(super) fn host_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

impl Engine {
    /// Where `host` is reached from local address `from`: an IP literal on `port`, or the
    /// addresses of `from`'s family its FQDN last resolved to for `transport` (`port` 0: by SRV)
    /// — for a call in RFC 3263 order with SRV weights drawn (`shuffle`), for the probes in a
    /// stable order. Err: why there are none.
    pub(super) fn addresses(
        &mut self,
        host: &str,
        port: u16,
        transport: Transport,
        from: IpAddr,
        shuffle: bool,
    ) -> Result<Vec<SocketAddr>, String> {
        let Some(q) = dns::Query::of(host, port, transport) else {
            return host
                .parse::<IpAddr>()
                .map(|ip| vec![SocketAddr::new(ip, port)])
                .map_err(|_| format!("'{host}' is not an address"));
        };
        let Some(r) = self.dns.get(&q) else {
            return Err(format!("{q}: not resolved yet"));
        };
        if r.targets.is_empty() {
            return Err(format!(
                "{q}: {}",
                r.error.as_deref().unwrap_or("no addresses")
            ));
        }
        let mut addrs = if shuffle {
            let targets = r.targets.clone();
            dns::order(&targets, |n| self.jitter(u64::from(n)) as u32)
        } else {
            r.addresses()
        };
        // A dual-stack name: only what Mediator can send to from its address.
        addrs.retain(|a| a.is_ipv4() == from.is_ipv4());
        if addrs.is_empty() {
            let family = if from.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(format!(
                "{q}: no {family} address (Mediator sends from {from})"
            ));
        }
        Ok(addrs)
    }

    /// Where Mediator reaches trunk `t`'s peer from its pool: [`Engine::addresses`] of its
    /// gateway, from the pool's gateway-side address and the trunk's port.
    pub(super) fn trunk_peers(
        &mut self,
        topo: &Topology,
        t: &mediator_topology::model::Trunk,
        shuffle: bool,
    ) -> Result<Vec<Peer>, String> {
        let pool = topo
            .pools
            .get(&t.pool)
            .map(|p| p.value.gateway_side_address)
            .ok_or_else(|| format!("trunk {}: no pool '{}'", t.name, t.pool))?;
        let transport = sip_transport(t.transport);
        let addrs = self.addresses(&t.gateway, t.gateway_port, transport, pool, shuffle)?;
        Ok(addrs
            .into_iter()
            .map(|remote| Peer {
                remote,
                local: SocketAddr::new(pool, t.pool_port),
                transport,
            })
            .collect())
    }

    /// The gateway leg's policy on trunk `t`: its effective `srtp_mode`, never SRTP on a trunk
    /// that is not TLS (logged once per trunk when that overrides the configuration).
    pub(super) fn trunk_policy(
        &mut self,
        t: &mediator_topology::model::Trunk,
        eff: &mediator_topology::routing::Effective,
    ) -> LegPolicy {
        let mode = eff
            .settings
            .srtp_mode
            .unwrap_or(mediator_topology::model::SrtpMode::Required);
        let (policy, why) = gateway_policy(mode, t.transport);
        let why = eff
            .notes
            .iter()
            .find(|(n, _)| *n == "srtp_mode")
            .map(|(_, w)| *w)
            .or(why);
        if let Some(why) = why
            && self.not_tls_logged.insert(t.name.clone())
        {
            tracing::info!(trunk = %t.name, transport = t.transport.name(), "srtp_mode {why}");
        }
        policy
    }

    pub(super) fn outbound_targets(
        &mut self,
        topo: &Topology,
        pool: &str,
        dialed: &str,
        caller: &str,
    ) -> Result<Vec<Target>, (u16, String)> {
        let attempts = topo
            .test_route(dialed, &[], caller)
            .map_err(|e| (404, format!("no route for '{dialed}': {e}")))?;
        topo.get::<mediator_topology::model::Pool>(pool)
            .map_err(|e| (500, e.to_string()))?;
        let mut targets = Vec::new();
        let mut down = Vec::new();
        let mut unresolved = Vec::new();
        for a in attempts.into_iter().filter(|a| a.pool == pool) {
            let (Ok(t), Ok(eff)) = (
                topo.get::<mediator_topology::model::Trunk>(&a.trunk),
                topo.effective(&a.trunk),
            ) else {
                continue;
            };
            let t = &t.value;
            if self.is_down(&t.name) {
                if !down.contains(&t.name) {
                    down.push(t.name.clone());
                }
                continue;
            }
            let peers = match self.trunk_peers(topo, t, true) {
                // An address whose probes found it down is skipped while another is up (the
                // trunk is down, and skipped above, once every one is).
                Ok(p) if p.iter().any(|x| !self.address_down(&t.name, x.remote)) => p
                    .into_iter()
                    .filter(|x| !self.address_down(&t.name, x.remote))
                    .collect::<Vec<_>>(),
                Ok(p) => p,
                Err(why) => {
                    tracing::info!(trunk = %t.name, gateway = %t.gateway, why, "trunk skipped: no address for its gateway");
                    unresolved.push(format!("{}: {why}", t.name));
                    continue;
                }
            };
            let srtp = self.trunk_policy(t, &eff);
            // Each address an FQDN resolved to is tried in turn, as the next trunk would be.
            let known: Vec<IpAddr> = peers.iter().map(|p| p.remote.ip()).collect();
            for peer in peers {
                let mut target = Target::new(
                    &a.trunk,
                    &t.gateway,
                    peer,
                    a.called.clone(),
                    a.calling.clone(),
                    &eff.settings,
                )
                .named(&t.gateway, t.gateway_port);
                target.route = a.route.clone();
                target.srtp = srtp;
                target.known = known.clone();
                targets.push(target);
            }
        }
        if targets.is_empty() && (!down.is_empty() || !unresolved.is_empty()) {
            let mut why = Vec::new();
            if !down.is_empty() {
                why.push(format!("down (OPTIONS): {}", down.join(", ")));
            }
            if !unresolved.is_empty() {
                why.push(format!("unresolved: {}", unresolved.join("; ")));
            }
            return Err((
                503,
                format!("no trunk for '{dialed}' is usable: {}", why.join("; ")),
            ));
        }
        if targets.is_empty() {
            return Err((
                404,
                format!("no voice route for '{dialed}' on a trunk of pool {pool}"),
            ));
        }
        Ok(targets)
    }

    /// The pool's next hop for a call from `trunk`: one target per address (an FQDN's, in
    /// RFC 3263 order), tried in turn.
    pub(super) fn inbound_targets(
        &mut self,
        topo: &Topology,
        trunk: &str,
        pool: &str,
        dialed: &str,
        caller: &str,
    ) -> Result<Vec<Target>, (u16, String)> {
        let inb = topo
            .inbound(trunk, dialed, caller)
            .map_err(|e| (500, format!("inbound routing on trunk {trunk}: {e}")))?;
        let pool_v = topo
            .get::<mediator_topology::model::Pool>(pool)
            .map_err(|e| (500, e.to_string()))?
            .value
            .clone();
        let hop = &inb.next_hop;
        let transport = sip_transport(hop.transport);
        let addrs = self
            .addresses(
                &hop.host,
                hop.port,
                transport,
                pool_v.pool_side_listen.ip(),
                true,
            )
            .map_err(|why| (503, format!("the next hop of pool {pool}: {why}")))?;
        let s = topo
            .effective(trunk)
            .map_err(|e| (500, e.to_string()))?
            .settings;
        let gateway = topo
            .get::<mediator_topology::model::Trunk>(trunk)
            .map(|t| t.value.gateway.clone())
            .unwrap_or_default();
        let mut targets = Vec::new();
        let known: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        for remote in addrs {
            let peer = Peer {
                remote,
                local: pool_v.pool_side_listen,
                transport,
            };
            let mut target = Target::new(
                trunk,
                &gateway,
                peer,
                inb.called.clone(),
                inb.calling.clone(),
                &s,
            )
            .named(&hop.host, hop.port);
            // Toward the pool: its own identity headers pass, and no trunk-side failover applies.
            target.srtp = pool_policy(pool_v.media_encryption);
            target.forward_pai = true;
            target.fast_failover = None;
            target.code_rules.clear();
            target.known = known.clone();
            targets.push(target);
        }
        Ok(targets)
    }

    /// Media encryption for an anchored attempt on target `i`: the caller's offer checked
    /// against its leg's policy (once), passthrough decided (once, before the relay's sessions
    /// exist: every trunk the call may try must allow it), and Mediator's fresh offer to the
    /// callee's leg under the target's policy.
    fn prepare_encryption(&mut self, id: CallId, i: usize) -> Result<(), Refused> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        let a = call.a_side;
        let t = &call.targets[i];
        if t.bypass {
            // The SDP passes end to end: the caller's leg policy still holds, and its keys never
            // go in clear to a callee that is not on TLS.
            let Some(offer) = &call.offer else {
                return Ok(());
            };
            let mut policy = [LegPolicy::Off; 2];
            policy[slot(a)] = call.a_policy;
            Sec::of_offer(a, policy, offer)?;
            if offer.has_keys() && t.peer.transport != mediator_sip::Transport::Tls {
                return Err(Refused {
                    status: 488,
                    reason: format!(
                        "media bypass would send the caller's SDES keys in clear to {} (not TLS)",
                        t.trunk
                    ),
                });
            }
            return Ok(());
        }
        if call.sec.is_none() {
            let Some(offer) = &call.offer else {
                return Ok(());
            };
            let mut policy = [LegPolicy::Off; 2];
            policy[slot(a)] = call.a_policy;
            let mut sec = Sec::of_offer(a, policy, offer)?;
            sec.passthrough = sec.caller_all_srtp(a)
                && call
                    .targets
                    .iter()
                    .filter(|t| !t.bypass)
                    .all(|t| t.passthrough && t.srtp != LegPolicy::Off);
            call.sec = Some(sec);
        }
        let policy = call.targets[i].srtp;
        match call.sec.as_mut() {
            Some(sec) => sec.plan_callee(a, policy),
            None => Ok(()),
        }
    }

    /// A 3xx from target `from` on a trunk with `follow_redirects`: its Contacts, best `q` first
    /// (at most 16 read), that name the gateway of a trunk of the call's pool (its address and
    /// port, or its FQDN — then every address the name resolved to, in RFC 3263 order — and
    /// transport when the Contact gives one) become the next targets, with the
    /// Contact's user part as the number. Refused: a trunk and number the call tried already
    /// (loops), a trunk that is down, one whose media handling (bypass, SRTP policy) differs from
    /// the redirecting trunk's (the sessions are made), and more than `MAX_REDIRECTS` in all.
    /// Returns how many were added.
    pub(super) fn follow_redirect(
        &mut self,
        id: CallId,
        from: usize,
        m: &Message,
        topo: &Topology,
    ) -> usize {
        let Some(call) = self.calls.get(&id) else {
            return 0;
        };
        let (pool, cur, tried, redirected) = (
            call.pool.clone(),
            call.targets[from].clone(),
            call.targets
                .iter()
                .map(|t| (t.trunk.clone(), t.called.clone()))
                .collect::<Vec<_>>(),
            call.redirected,
        );
        let mut contacts = contact_list(m);
        contacts.truncate(16);
        contacts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut new: Vec<Target> = Vec::new();
        for (uri, _) in contacts {
            if redirected + new.len() >= MAX_REDIRECTS {
                break;
            }
            let Some(dest) = crate::leg::uri_host(&uri) else {
                tracing::info!(call = id, contact = %uri, "redirect: not a SIP URI, not followed");
                continue;
            };
            let trunks: Vec<mediator_topology::model::Trunk> = topo
                .trunks
                .values()
                .map(|t| t.value.clone())
                .filter(|t| t.pool == pool)
                .collect();
            let found = match crate::leg::uri_addr(&uri) {
                // An address: the trunk of the pool whose gateway is (or resolved to) it.
                Some((addr, tp)) => trunks.into_iter().find_map(|t| {
                    let peer = self
                        .trunk_peers(topo, &t, false)
                        .ok()?
                        .into_iter()
                        .find(|p| p.remote == addr)?;
                    tp.is_none_or(|tp| tp == peer.transport)
                        .then_some((t, vec![peer]))
                }),
                // A name: the trunk of the pool whose gateway has that FQDN (and the port the
                // trunk is configured with, if the Contact gives one), to the addresses the
                // name resolved to, in RFC 3263 order — never a name Mediator was not given.
                None => trunks.into_iter().find_map(|t| {
                    let name = dest.host.trim_end_matches('.');
                    let named = t.gateway.trim_end_matches('.').eq_ignore_ascii_case(name)
                        && dest.port.is_none_or(|p| p == t.gateway_port)
                        && dest
                            .transport
                            .is_none_or(|tp| tp == sip_transport(t.transport));
                    if !named {
                        return None;
                    }
                    match self.trunk_peers(topo, &t, true) {
                        Ok(peers) => Some((t, peers)),
                        Err(why) => {
                            tracing::info!(call = id, contact = %uri, why, "redirect: the gateway's name has no address, not followed");
                            None
                        }
                    }
                }),
            };
            let Some((trunk, peers)) = found else {
                tracing::info!(call = id, contact = %uri, pool, "redirect: no trunk of the pool goes there, not followed");
                continue;
            };
            let called = user_of(&uri).unwrap_or_else(|| cur.called.clone());
            let seen = tried.iter().any(|(t, c)| *t == trunk.name && *c == called)
                || new
                    .iter()
                    .any(|t| t.trunk == trunk.name && t.called == called);
            if seen {
                tracing::info!(call = id, trunk = %trunk.name, called, "redirect: a loop, not followed");
                continue;
            }
            if self.is_down(&trunk.name) {
                continue;
            }
            let Ok(eff) = topo.effective(&trunk.name) else {
                continue;
            };
            let srtp = self.trunk_policy(&trunk, &eff);
            let known: Vec<IpAddr> = peers.iter().map(|p| p.remote.ip()).collect();
            for peer in peers {
                if redirected + new.len() >= MAX_REDIRECTS {
                    break;
                }
                let mut target = Target::new(
                    &trunk.name,
                    &trunk.gateway,
                    peer,
                    called.clone(),
                    cur.calling.clone(),
                    &eff.settings,
                )
                .named(&trunk.gateway, trunk.gateway_port);
                target.route = cur.route.clone();
                target.from_redirect = true;
                target.srtp = srtp;
                target.known = known.clone();
                if target.bypass != cur.bypass || target.srtp != cur.srtp {
                    tracing::info!(call = id, trunk = %trunk.name, "redirect: the trunk handles media otherwise, not followed");
                    break;
                }
                new.push(target);
            }
        }
        let n = new.len();
        if let Some(call) = self.calls.get_mut(&id) {
            let at = call.next_target;
            call.targets.splice(at..at, new);
            call.redirected += n;
        }
        n
    }

    /// Tries the next target, or answers the caller with the last meaningful response.
    pub(super) fn next_attempt(&mut self, id: CallId, out: &mut Vec<Action>, now: Instant) {
        // The last trunk's early offer (a delayed offer) is not the next trunk's.
        self.forget_early_offer(id, out);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(i) = (call.next_target < call.targets.len()).then_some(call.next_target) else {
            let (status, why) = call
                .last
                .clone()
                .unwrap_or((503, "no trunk could take the call".into()));
            self.fail(id, status, &why, out, now);
            return;
        };
        call.next_target += 1;
        let limit = self.cfg.admission.calls_per_trunk;
        if limit > 0 && call.outbound {
            // A trunk at its limit of concurrent calls is skipped like one that answered 503.
            let (trunk, label) = (call.targets[i].trunk.clone(), call.targets[i].label());
            let on_trunk = self.calls_on_trunk(&trunk, Some(id));
            if on_trunk >= limit {
                tracing::info!(
                    call = id,
                    trunk,
                    on_trunk,
                    "trunk at its call limit (max_calls_per_trunk): skipped"
                );
                if let Some(call) = self.calls.get_mut(&id) {
                    call.tried.push((label, 503));
                    call.last.get_or_insert((
                        503,
                        format!(
                            "trunk {trunk} has {on_trunk} calls, its limit (max_calls_per_trunk)"
                        ),
                    ));
                }
                return self.next_attempt(id, out, now);
            }
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.current = Some(i);
        // Each trunk is asked Mediator's own session interval first.
        call.b_se = self.cfg.session_expires;
        call.b_min_se = self.cfg.min_se;
        if let Err(r) = self.prepare_encryption(id, i) {
            tracing::info!(call = id, status = r.status, why = %r.reason, "media encryption refused");
            self.fail(id, r.status, &r.reason, out, now);
            return;
        }
        // The last attempt's early dialogs' own sessions go before anything is made anew.
        self.drop_forks(id, out);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let t = &call.targets[i];
        let settings = (t.latching, t.rtcp_active, t.rtcp_on_hold);
        let (media_timeout_secs, hold_timeout_secs, rtcp) = (
            self.cfg.media_timeout_secs,
            self.cfg.hold_timeout_secs,
            self.cfg.rtcp_timeout_secs,
        );
        let caller_has_sdp = call.sent_sdp[slot(call.a_side)].is_some();
        // A caller that has the sessions' addresses (early SDP of the last trunk) gets new ones
        // only in an early dialog of its own, and only on a plain call: SRTP keys stay with the
        // sessions they were made for.
        let plain = call.sec.as_ref().is_none_or(|s| !s.any_srtp());
        if !t.bypass
            && !call.streams.is_empty()
            && call.media_settings.is_some_and(|s| s != settings)
            && (!caller_has_sdp || plain)
        {
            // The sessions were made with the last trunk's latching and RTCP settings: made
            // again for this trunk (new ids, never racing the old ones' deletion).
            tracing::info!(call = id, trunk = %t.trunk, "the next trunk handles media otherwise: its sessions are made anew");
            out.extend(call.give_up_sessions());
            if caller_has_sdp {
                // Its answer reaches the caller in a new early dialog (as a fork's would).
                let b = slot(call.a_side.other());
                call.sent_sdp[slot(call.a_side)] = None;
                call.sent_offer[slot(call.a_side)] = false;
                call.recv_sdp[b] = None;
                self.new_caller_dialog(id);
            }
        } else if !t.bypass
            && !call.streams.is_empty()
            && call.media_settings.is_some_and(|s| s != settings)
        {
            // An SRTP call whose caller has its sessions' addresses and keys: the sessions stay,
            // with this trunk's latching and RTCP settings.
            tracing::info!(call = id, trunk = %t.trunk, "the next trunk handles media otherwise: its settings go to the sessions");
            let options = |mux: bool| MediaOptions {
                latching: t.latching,
                rtcp_mux: mux,
                media_timeout_secs,
                hold_timeout_secs,
                rtcp_timeout_secs: if t.rtcp_active { rtcp } else { 0 },
                rtcp_hold_timeout_secs: if t.rtcp_on_hold { rtcp } else { 0 },
            };
            for st in &call.streams {
                out.push(Action::UpdateMedia {
                    pool: call.pool.clone(),
                    relay: st.relay.clone(),
                    request: Box::new(MediaUpdate {
                        session_id: st.session_id.clone(),
                        pool: None,
                        gateway: None,
                        on_hold: None,
                        srtp: Default::default(),
                        options: Some(options(st.mux)),
                    }),
                });
            }
            call.media_settings = Some(settings);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.targets[i].bypass && call.streams.is_empty() {
            let requests = match self.session_requests(id) {
                Ok(r) => r,
                Err(r) => {
                    self.fail(id, r.status, &r.reason, out, now);
                    return;
                }
            };
            if !requests.is_empty() {
                let call = self.calls.get_mut(&id).expect("call exists");
                call.phase = Phase::Media;
                if call.orphan_create {
                    // A given-up attempt's creation is still in flight: these go once it is
                    // answered (and deleted).
                    call.deferred_create = Some(requests);
                } else {
                    out.push(Action::CreateMedia {
                        call: id,
                        pool: call.pool.clone(),
                        requests,
                    });
                }
                return;
            }
            // Nothing to anchor yet (a delayed offer) or at all (T.38 only, all rejected).
        }
        self.send_invite(id, out, now);
    }
}

/// Redirect targets a call may add in all (a redirect is no amplifier, and no loop lasts).
pub(super) const MAX_REDIRECTS: usize = 8;

/// The Contacts of a response as (URI, q), in order (`q` 1.0 when absent or unreadable).
fn contact_list(m: &Message) -> Vec<(String, f32)> {
    let mut out = Vec::new();
    for value in m.headers_named("contact") {
        // Split on commas outside <> and quotes.
        let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
        let bytes = value.as_bytes();
        let mut items = Vec::new();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'"' => quoted = !quoted,
                b'<' if !quoted => depth += 1,
                b'>' if !quoted => depth -= 1,
                b',' if !quoted && depth == 0 => {
                    items.push(&value[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&value[start..]);
        for item in items {
            let uri = uri_of(item.trim());
            if uri.is_empty() {
                continue;
            }
            let after = item.rsplit_once('>').map_or("", |(_, a)| a);
            let q = after
                .split(';')
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|v| v.trim().parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(1.0);
            out.push((uri, q));
        }
    }
    out
}

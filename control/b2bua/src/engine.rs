//! The B2BUA engine: the transaction layer, every call and the indexes that find a call from a
//! message. Events in (bytes, media results, time), actions out. This file holds the engine and
//! the SIP handlers (kept together: each handler touches calls, legs and targets at once); its
//! sub-state lives beside it, quinn-proto style — `call` (a call's phase, legs, streams,
//! attempts), `routing` (targets, origins, failover), `media` (anchoring on the relays, SDP
//! re-pointing) and `view` (calls as the API shows them).

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::dns;
use crate::encryption::Refused;
use crate::encryption::{LegPolicy, gateway_policy, pool_policy};
use crate::leg::{Leg, contact, transport_param, via};
use crate::log_budget::LogBudget;
use crate::media::{MediaAnswer, MediaOptions, MediaRequest, MediaUpdate, Remote, SrtpChange};
use crate::sdp::{Anchor, Sdp};
use crate::{
    Action, CallId, CallInfo, LegInfo, Now, Side, StreamInfo, Transport, TrunkChange, TrunkHealth,
    TrunkState, sip_transport,
};
use call::*;
use crypto::*;
use health::{Probe, TrunkProbes};
use media::{Held, SdpKind};
use mediator_sip::Peer;
use mediator_sip::layer::{Event, Layer, Step};
use mediator_sip::message::{
    Message, UDP_REQUEST_LIMIT, build_request, build_response, cancel_for, reason_phrase, uri_of,
    user_of, with_compact_names, with_via_transport,
};
use mediator_sip::transaction::{Timers, TxKey};
use mediator_topology::Topology;
use routing::*;
pub use timer::{MAX_SE, MIN_SE_FLOOR};
use timer::{Refuse, SessionTimer};
use view::*;

/// What the engine is told by its daemon.
#[derive(Clone, Debug)]
pub struct Config {
    pub timers: Timers,
    /// Calls held at most; a new call beyond it gets 503.
    pub max_calls: usize,
    pub media_timeout_secs: u32,
    pub hold_timeout_secs: u32,
    /// The session interval Mediator asks for and offers (RFC 4028 Session-Expires), seconds.
    pub session_expires: u32,
    /// The shortest interval it accepts (Min-SE, at least 90).
    pub min_se: u32,
    /// Seconds without RTCP (once seen) that end a call on trunks with `rtcp_active_calls` /
    /// `rtcp_calls_on_hold` (Lync's 30); 0 turns RTCP dead-call detection off.
    pub rtcp_timeout_secs: u32,
    /// Limits of concurrent calls per pool and trunk, and of the call rate per peer.
    pub admission: admission::Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timers: Timers::default(),
            max_calls: 20_000,
            media_timeout_secs: 0,
            hold_timeout_secs: 0,
            session_expires: 1800,
            min_se: timer::MIN_SE_FLOOR,
            rtcp_timeout_secs: 30,
            admission: admission::Limits::default(),
        }
    }
}

/// Written without spaces (legal, RFC 3261 §25.1 COMMA = SWS "," SWS): a 405 must carry it and
/// must still be no larger than a small request that drew it.
const ALLOW: &str = "INVITE,ACK,CANCEL,BYE,OPTIONS,UPDATE,INFO,PRACK,REFER,NOTIFY";
/// What a 405 to a request outside a dialog allows: the methods Mediator takes there.
const ALLOW_OUTSIDE: &str = "INVITE,ACK,CANCEL,OPTIONS";
const SDP: &str = "application/sdp";
/// Headers passed from one leg to the other on requests and responses (end-to-end extensions).
const PASSED: &[&str] = &[
    "Require",
    "Supported",
    "RSeq",
    "RAck",
    "Event",
    "Subscription-State",
    "Refer-To",
    "Referred-By",
    "Info-Package",
    "Content-Disposition",
    "Reason",
    "Privacy",
];
/// Methods passed across inside a dialog.
const IN_DIALOG: &[&str] = &[
    "INVITE", "UPDATE", "INFO", "PRACK", "REFER", "NOTIFY", "OPTIONS", "MESSAGE",
];

/// RFC 3261 §18.1.1: a request of Mediator's over 1300 bytes to a UDP peer goes over TCP to the
/// same address and port when the trunk says so (`over_tcp`, its `large_requests_over_tcp`),
/// its top Via saying TCP; otherwise as it is (the transport logs it once per peer).
fn sized(req: Message, peer: Peer, over_tcp: bool) -> (Message, Peer) {
    if !over_tcp
        || peer.transport != mediator_sip::Transport::Udp
        || req.wire_len() <= UDP_REQUEST_LIMIT
    {
        return (req, peer);
    }
    match with_via_transport(&req, "TCP") {
        Ok(m) => (
            m,
            Peer {
                transport: mediator_sip::Transport::Tcp,
                ..peer
            },
        ),
        Err(_) => (req, peer),
    }
}

/// Where a request of Mediator's went to `peer`: over TCP when its top Via says so (moved there
/// by [`sized`]) — its CANCEL goes the same way.
fn sent_over(req: &Message, peer: Peer) -> Peer {
    let tcp = req
        .header("via")
        .is_some_and(|v| v.to_ascii_uppercase().starts_with("SIP/2.0/TCP "));
    if tcp && peer.transport == mediator_sip::Transport::Udp {
        Peer {
            transport: mediator_sip::Transport::Tcp,
            ..peer
        }
    } else {
        peer
    }
}

fn is_sdp(m: &Message) -> bool {
    !m.body().is_empty()
        && m.header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with(SDP))
}

/// The headers of `m` that pass to the other leg. The `timer` option tag does not: session
/// timers are each leg's own (RFC 4028), negotiated by Mediator on each.
fn passed(m: &Message) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for name in PASSED {
        for v in m.headers_named(name) {
            let v = if matches!(*name, "Require" | "Supported") {
                let tags: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("timer"))
                    .collect();
                if tags.is_empty() {
                    continue;
                }
                tags.join(", ")
            } else {
                v
            };
            out.push((*name, v));
        }
    }
    out
}

pub struct Engine {
    cfg: Config,
    layer: Layer,
    calls: HashMap<CallId, Call>,
    next_id: CallId,
    by_invite: HashMap<TxKey, CallId>,
    by_client: HashMap<TxKey, Purpose>,
    dialogs: HashMap<(String, String), (CallId, Side)>,
    /// (Call-ID, From tag, CSeq) of every caller's INVITE: a second one on another branch is a
    /// merged request or a loop (RFC 3261 8.2.2.2).
    identities: HashMap<(String, String, u32), CallId>,
    hasher: RandomState,
    counter: u64,
    prefix: String,
    /// When calls want waking (fast failover, 2xx retransmission, ACK wait). Entries are hints:
    /// a call whose deadline moved is simply found not due.
    wake: BinaryHeap<Reverse<(Instant, CallId)>>,
    /// The wall clock of the input being handled (ms since the Unix epoch), for records.
    wall_ms: u64,
    /// Trunks whose srtp_mode was overridden (not TLS) and said so in the log.
    not_tls_logged: HashSet<String>,
    /// The OPTIONS probing of every trunk with probing on, by trunk name.
    health: HashMap<String, TrunkProbes>,
    /// The last DNS answer for every name the topology uses (the edge resolves, see [`dns`]).
    dns: Dns,
    /// Log lines network input provokes, bounded per kind (a flood writes a bounded log).
    stranger_log: LogBudget,
    malformed_log: LogBudget,
    /// Calls refused by admission or while draining: a flood from a configured peer is refused
    /// with a bounded log too.
    refused_log: LogBudget,
    /// Requests from addresses that are not configured peers, and malformed ones, since start.
    strangers: u64,
    malformed: u64,
    /// Each peer's call rate (admission).
    rates: admission::Rates,
    /// Calls refused by admission since start.
    refused_calls: u64,
    /// Calls refused since start because their pool was draining or the daemon stopping.
    refused_draining: u64,
    /// The daemon is stopping gracefully: every pool refuses new calls as if draining.
    stopping: bool,
}

/// Why a new call was refused with 503 (what it is counted as).
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// A pool's or trunk's limit, or the peer's call rate.
    Admission,
    /// The pool drains or the daemon stops.
    Draining,
}

/// DNS answers by query.
pub(super) type Dns = HashMap<dns::Query, dns::Resolution>;

impl Engine {
    pub fn new(cfg: Config) -> Engine {
        let hasher = RandomState::new();
        let prefix = format!("{:08x}", hasher.build_hasher().finish() as u32);
        Engine {
            layer: Layer::new(cfg.timers),
            cfg,
            calls: HashMap::new(),
            next_id: 1,
            by_invite: HashMap::new(),
            by_client: HashMap::new(),
            dialogs: HashMap::new(),
            identities: HashMap::new(),
            hasher,
            counter: 0,
            prefix,
            wake: BinaryHeap::new(),
            wall_ms: 0,
            not_tls_logged: HashSet::new(),
            health: HashMap::new(),
            dns: HashMap::new(),
            stranger_log: LogBudget::default(),
            malformed_log: LogBudget::default(),
            refused_log: LogBudget::default(),
            strangers: 0,
            malformed: 0,
            rates: admission::Rates::default(),
            refused_calls: 0,
            refused_draining: 0,
            stopping: false,
        }
    }

    /// New calls refused since start by admission (a pool's or trunk's limit, a peer's rate).
    pub fn calls_refused(&self) -> u64 {
        self.refused_calls
    }

    /// New calls refused since start because their pool drained or the daemon was stopping.
    pub fn calls_refused_draining(&self) -> u64 {
        self.refused_draining
    }

    /// A graceful stop: from now on every pool refuses new calls (503 with Retry-After, and
    /// out-of-dialog OPTIONS the same, RFC 3261 §11.2) while calls in progress continue.
    pub fn stop_accepting(&mut self) {
        self.stopping = true;
    }

    /// Calls in progress by pool (every pool of `topo`, with 0 for those without calls).
    pub fn calls_by_pool(&self, topo: &Topology) -> Vec<(String, usize, bool)> {
        let mut n: HashMap<&str, usize> = HashMap::new();
        for c in self.calls.values() {
            *n.entry(c.pool.as_str()).or_default() += 1;
        }
        topo.pools
            .values()
            .map(|p| {
                let p = &p.value;
                let calls = n.get(p.name.as_str()).copied().unwrap_or(0);
                (p.name.clone(), calls, p.draining)
            })
            .collect()
    }

    /// Why new calls for `pool` are refused now: the pool drains or the daemon stops.
    fn draining(&self, topo: &Topology, pool: &str) -> Option<String> {
        if self.stopping {
            return Some("Mediator is stopping (graceful stop); calls in progress continue".into());
        }
        topo.get::<mediator_topology::model::Pool>(pool)
            .is_ok_and(|p| p.value.draining)
            .then(|| format!("pool {pool} is draining; calls in progress continue"))
    }

    /// Calls in progress on `pool`.
    fn calls_on_pool(&self, pool: &str) -> usize {
        self.calls.values().filter(|c| c.pool == pool).count()
    }

    /// Calls in progress on `trunk` (from its gateway, or tried on or answered by it), but
    /// `except`.
    fn calls_on_trunk(&self, trunk: &str, except: Option<CallId>) -> usize {
        self.calls
            .values()
            .filter(|c| Some(c.id) != except && c.target().is_some_and(|t| t.trunk == trunk))
            .count()
    }

    /// Refuses a new call with 503 and Retry-After, saying why; counted by `kind`, logged
    /// within the refusals' budget.
    fn refuse_call(
        &mut self,
        key: &TxKey,
        m: &Message,
        why: &str,
        kind: Refusal,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let allowed = self.refused_log.allow(now);
        match kind {
            Refusal::Admission => {
                self.refused_calls += 1;
                if let Some(left_out) = allowed {
                    tracing::info!(why, left_out, "call refused by admission");
                }
            }
            Refusal::Draining => {
                self.refused_draining += 1;
                if let Some(left_out) = allowed {
                    tracing::info!(why, left_out, "call refused: draining");
                }
            }
        }
        self.retry_later(key, m, why, out, now);
    }

    /// `503` with `Retry-After` (admission, draining, stopping): the peer fails over at once.
    fn retry_later(
        &mut self,
        key: &TxKey,
        m: &Message,
        why: &str,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        self.reply_with(key, m, 503, why, vec![admission::retry_after()], out, now);
    }

    /// Requests refused since start because they came from an address that is not a configured
    /// peer (`strangers`), or could not be parsed (`malformed`).
    pub fn refused_counts(&self) -> (u64, u64) {
        (self.strangers, self.malformed)
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn transactions(&self) -> usize {
        self.layer.len()
    }

    fn token(&mut self) -> String {
        self.counter += 1;
        let mut h = self.hasher.build_hasher();
        h.write_u64(self.counter);
        format!("{:016x}", h.finish())
    }

    /// A pseudo-random delay of up to `max_ms` (glare back-off).
    pub(super) fn jitter(&mut self, max_ms: u64) -> u64 {
        self.counter += 1;
        let mut h = self.hasher.build_hasher();
        h.write_u64(self.counter);
        h.finish() % (max_ms + 1)
    }

    fn branch(&mut self) -> String {
        format!("z9hG4bK-med-{}", self.token())
    }

    fn absorb(&mut self, step: Step, out: &mut Vec<Action>, topo: &Topology, now: Instant) {
        for (to, bytes) in step.send {
            out.push(Action::Send { to, bytes });
        }
        for e in step.events {
            self.event(e, out, topo, now);
        }
    }

    /// The transport could not deliver `bytes` to their peer (a TCP or TLS connection or its
    /// handshake failed): the request's transaction ends as if answered 503 — an INVITE fails
    /// over to the next target at once instead of waiting for its timeout.
    pub fn on_transport_error(&mut self, topo: &Topology, bytes: &[u8], now: Now) -> Vec<Action> {
        self.wall_ms = now.unix_ms;
        let now = now.mono;
        let mut out = Vec::new();
        let step = self.layer.transport_error(bytes);
        self.absorb(step, &mut out, topo, now);
        out
    }

    /// Bytes that arrived from `from`.
    pub fn on_message(
        &mut self,
        topo: &Topology,
        bytes: &[u8],
        from: Peer,
        now: Now,
    ) -> Vec<Action> {
        self.wall_ms = now.unix_ms;
        let now = now.mono;
        let mut out = Vec::new();
        // A response over a TCP connection Mediator opened to a UDP trunk's gateway for a large
        // request (`large_requests_over_tcp`) comes from that gateway on TCP.
        let moved_response = || {
            from.transport == mediator_sip::Transport::Tcp
                && bytes.starts_with(b"SIP/2.0 ")
                && matches!(
                    identify(
                        topo,
                        &self.dns,
                        &Peer {
                            transport: mediator_sip::Transport::Udp,
                            ..from
                        }
                    ),
                    Some(Origin::Gateway { .. })
                )
        };
        if identify(topo, &self.dns, &from).is_none() && !moved_response() {
            // Not a configured peer: a request is refused without a transaction, anything else
            // is dropped.
            if let Ok(m) = Message::parse(bytes)
                && m.method().is_some_and(|m| m != "ACK")
            {
                self.strangers += 1;
                if let Some(left_out) = self.stranger_log.allow(now) {
                    tracing::info!(peer = %from.remote, local = %from.local, left_out, "refused a request from an address that is not a configured peer");
                }
                // Never larger than what provoked it (no amplifier toward a spoofed source):
                // without its Warning if need be, not at all if even that is larger.
                let with = [("Warning", warning("not a configured peer"))];
                let reply = [&with[..], &[]]
                    .into_iter()
                    .map(|extra| build_response(&m, 403, "Forbidden", "refused", extra, None))
                    .find(|reply| reply.len() <= bytes.len());
                if let Some(reply) = reply {
                    out.push(Action::Send {
                        to: from,
                        bytes: reply,
                    });
                }
            }
            return out;
        }
        let step = self.layer.on_bytes(bytes, from, now);
        self.absorb(step, &mut out, topo, now);
        out
    }

    fn event(&mut self, e: Event, out: &mut Vec<Action>, topo: &Topology, now: Instant) {
        match e {
            Event::Request { key, from, message } => {
                self.request(key, from, *message, out, topo, now)
            }
            Event::Ack { message, .. } => self.ack(*message, out, now),
            Event::Response { key, message } => self.response(key, *message, out, topo, now),
            Event::Timeout { key } => self.failed(key, 408, out, now),
            Event::TransportError { key } => self.failed(key, 503, out, now),
            Event::Refused {
                from,
                status,
                reason,
            } => {
                self.malformed += 1;
                if let Some(left_out) = self.malformed_log.allow(now) {
                    tracing::info!(peer = %from.remote, status, reason = %mediator_sip::message::short(&reason), left_out, "refused a malformed request");
                }
            }
        }
    }

    fn reply(
        &mut self,
        key: &TxKey,
        req: &Message,
        status: u16,
        why: &str,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        self.reply_with(key, req, status, why, Vec::new(), out, now);
    }

    /// [`Engine::reply`] with headers of its own (a 422's Min-SE).
    #[allow(clippy::too_many_arguments)]
    fn reply_with(
        &mut self,
        key: &TxKey,
        req: &Message,
        status: u16,
        why: &str,
        mut extra: Vec<(&'static str, String)>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        if status == 405 {
            extra.push(("Allow", ALLOW_OUTSIDE.into()));
        }
        if status == 415 && !extra.iter().any(|(n, _)| *n == "Accept") {
            // RFC 3261 §21.4.13: a 415 lists what is acceptable.
            extra.push(("Accept", SDP.into()));
        }
        let tag = self.token();
        let build = |extra: &[(&str, String)]| {
            build_response(req, status, reason_phrase(status), &tag[..10], extra, None)
        };
        let mut bytes = build(&extra);
        // An error reply is never larger than the request that drew it (no amplifier toward a
        // spoofed source): the Warning is cut to fit, or left out.
        let budget = req.wire_len();
        if !why.is_empty() {
            let mut text: String = why.chars().take(200).collect();
            loop {
                extra.push(("Warning", warning(&text)));
                let with = build(&extra);
                extra.pop();
                let over = with.len().saturating_sub(budget);
                if over == 0 || status < 300 {
                    bytes = with;
                    break;
                }
                let keep = text.chars().count().saturating_sub(over + 1);
                if keep < 8 {
                    break;
                }
                text = text.chars().take(keep).collect::<String>() + "…";
            }
        }
        if status >= 300 && bytes.len() > budget {
            // Too large even without a Warning: the same reply with compact header names.
            bytes = with_compact_names(&bytes);
        }
        let step = self.layer.respond(key, status, bytes, now);
        emit(out, step);
    }

    fn request(
        &mut self,
        key: TxKey,
        from: Peer,
        m: Message,
        out: &mut Vec<Action>,
        topo: &Topology,
        now: Instant,
    ) {
        let method = m.method().unwrap_or_default().to_string();
        // Methods Mediator knows are checked as RFC 3261 §8.2 says; the others get their 501.
        if method != "CANCEL"
            && ALLOW.split(',').any(|a| a == method)
            && let Err(r) = uas::check(&m)
        {
            tracing::info!(peer = %from.remote, status = r.status, why = %r.why, "refused a request");
            self.reply_with(&key, &m, r.status, &r.why, r.headers, out, now);
            return;
        }
        if let Some(tag) = m.summary.to_tag.clone() {
            let Some(&(id, side)) = self.dialogs.get(&(m.summary.call_id.clone(), tag)) else {
                self.reply(&key, &m, 481, "no such dialog", out, now);
                return;
            };
            match method.as_str() {
                "BYE" => self.bye(id, side, key, m, out, now),
                "CANCEL" => self.reply(&key, &m, 481, "no such transaction", out, now),
                _ if IN_DIALOG.contains(&method.as_str()) => {
                    self.relay_request(id, side, key, m, out, now)
                }
                _ => self.reply(
                    &key,
                    &m,
                    501,
                    &format!("{method} is not supported"),
                    out,
                    now,
                ),
            }
            return;
        }
        match method.as_str() {
            "INVITE" => self.invite(key, from, m, out, topo, now),
            "CANCEL" => self.cancel(key, m, out, now),
            "OPTIONS" => {
                // Answered as an INVITE would be (RFC 3261 §11.2): a draining pool says 503,
                // so peers that probe with OPTIONS take it out of their rotation.
                let pool = match identify(topo, &self.dns, &from) {
                    Some(Origin::Pool { pool }) | Some(Origin::Gateway { pool, .. }) => Some(pool),
                    None => None,
                };
                if let Some(why) = pool.and_then(|p| self.draining(topo, &p)) {
                    self.retry_later(&key, &m, &why, out, now);
                    return;
                }
                let bytes = build_response(
                    &m,
                    200,
                    "OK",
                    &self.token()[..10],
                    &[
                        ("Allow", ALLOW.into()),
                        ("Accept", SDP.into()),
                        ("Supported", "100rel, timer".into()),
                    ],
                    None,
                );
                let step = self.layer.respond(&key, 200, bytes, now);
                self.absorb(step, out, topo, now);
            }
            "BYE" | "UPDATE" | "INFO" | "PRACK" | "NOTIFY" => {
                self.reply(&key, &m, 481, "outside any dialog", out, now)
            }
            "REGISTER" | "SUBSCRIBE" | "PUBLISH" | "MESSAGE" | "REFER" => self.reply(
                &key,
                &m,
                405,
                &format!("{method} outside a dialog"),
                out,
                now,
            ),
            _ => self.reply(
                &key,
                &m,
                501,
                &format!("{method} is not supported"),
                out,
                now,
            ),
        }
    }

    // ---- a new call -------------------------------------------------------------------------

    fn invite(
        &mut self,
        key: TxKey,
        from: Peer,
        m: Message,
        out: &mut Vec<Action>,
        topo: &Topology,
        now: Instant,
    ) {
        let ours = m.headers_named("via").iter().any(|v| {
            v.contains(";branch=z9hG4bK-med-")
                && topo.pools.values().any(|p| {
                    let p = &p.value;
                    v.contains(&p.pool_side_listen.to_string())
                        || v.contains(&format!(
                            " {}:",
                            host_of(SocketAddr::new(p.gateway_side_address, 0))
                        ))
                })
        });
        if ours {
            self.reply(&key, &m, 482, "the call came back to Mediator", out, now);
            return;
        }
        let ident = (
            m.summary.call_id.clone(),
            m.summary.from_tag.clone().unwrap_or_default(),
            m.summary.cseq,
        );
        if self.identities.contains_key(&ident) {
            self.reply(&key, &m, 482, "merged request", out, now);
            return;
        }
        if self.calls.len() >= self.cfg.max_calls {
            self.reply(&key, &m, 503, "too many calls", out, now);
            return;
        }
        // A peer over its call rate costs nothing more than this answer.
        if let Some(why) = self.rates.take(&self.cfg.admission, from.remote.ip(), now) {
            self.refuse_call(&key, &m, &why, Refusal::Admission, out, now);
            return;
        }
        let offer = if m.body().is_empty() {
            None
        } else if !is_sdp(&m) {
            self.reply(
                &key,
                &m,
                415,
                "only application/sdp bodies are accepted",
                out,
                now,
            );
            return;
        } else {
            match std::str::from_utf8(m.body())
                .map_err(|_| "the SDP is not UTF-8".to_string())
                .and_then(|t| Sdp::parse(t).map_err(|e| e.to_string()))
            {
                Ok(s) => Some(s),
                Err(e) => {
                    self.reply(&key, &m, 488, &e, out, now);
                    return;
                }
            }
        };
        let uri = m.request_uri().unwrap_or_default().to_string();
        let Some(dialed) = user_of(&uri) else {
            self.reply(&key, &m, 404, "the Request-URI has no number", out, now);
            return;
        };
        let caller = m
            .header("from")
            .and_then(|f| user_of(&uri_of(&f)))
            .unwrap_or_default();
        let origin = identify(topo, &self.dns, &from);
        // Every address the caller's configured name resolved to: its route set may lead there.
        let a_known = match &origin {
            Some(Origin::Pool { pool }) => topo.pools.get(pool).map(|p| {
                let hop = &p.value.next_hop;
                host_ips(&self.dns, &hop.host, sip_transport(hop.transport))
            }),
            Some(Origin::Gateway { trunk, .. }) => topo
                .get::<mediator_topology::model::Trunk>(trunk)
                .ok()
                .map(|t| {
                    host_ips(
                        &self.dns,
                        &t.value.gateway,
                        sip_transport(t.value.transport),
                    )
                }),
            None => None,
        }
        .unwrap_or_default();
        let (outbound, pool, targets, a_policy) = match origin {
            Some(Origin::Pool { pool }) => {
                let policy = topo
                    .get::<mediator_topology::model::Pool>(&pool)
                    .map(|p| pool_policy(p.value.media_encryption))
                    .unwrap_or(LegPolicy::Required);
                match self.outbound_targets(topo, &pool, &dialed, &caller) {
                    Ok(t) => (true, pool, t, policy),
                    Err((status, why)) => {
                        self.reply(&key, &m, status, &why, out, now);
                        return;
                    }
                }
            }
            Some(Origin::Gateway { trunk, pool }) => {
                let policy = match (
                    topo.get::<mediator_topology::model::Trunk>(&trunk),
                    topo.effective(&trunk),
                ) {
                    (Ok(t), Ok(eff)) => self.trunk_policy(&t.value, &eff),
                    _ => LegPolicy::Off,
                };
                match self.inbound_targets(topo, &trunk, &pool, &dialed, &caller) {
                    Ok(t) => (false, pool, t, policy),
                    Err((status, why)) => {
                        self.reply(&key, &m, status, &why, out, now);
                        return;
                    }
                }
            }
            None => return,
        };
        if let Some(why) = self.draining(topo, &pool) {
            self.refuse_call(&key, &m, &why, Refusal::Draining, out, now);
            return;
        }
        let limits = self.cfg.admission;
        if limits.calls_per_pool > 0 || (limits.calls_per_trunk > 0 && !outbound) {
            // An outbound call's trunks are checked as each is tried (a full one is skipped).
            let on_pool = if limits.calls_per_pool > 0 {
                self.calls_on_pool(&pool)
            } else {
                0
            };
            let trunk = (!outbound)
                .then(|| targets.first().map(|t| t.trunk.clone()))
                .flatten();
            let on_trunk = match (&trunk, limits.calls_per_trunk) {
                (Some(t), n) if n > 0 => self.calls_on_trunk(t, None),
                _ => 0,
            };
            if let Some(why) = admission::refuse_by_count(
                &limits,
                &pool,
                on_pool,
                trunk.as_deref().map(|t| (t, on_trunk)),
            ) {
                self.refuse_call(&key, &m, &why, Refusal::Admission, out, now);
                return;
            }
        }
        let a_side = if outbound { Side::Pool } else { Side::Gateway };
        // The caller's leg's session timer (RFC 4028 §9), refused before anything is created.
        let timer_on = a_side == Side::Pool || targets.first().is_some_and(|t| t.session_timer);
        let a_timer = match timer::as_uas(&m, timer_on, self.cfg.session_expires, self.cfg.min_se) {
            Ok(t) => t.map(|a| SessionTimer::agreed(a, timer::allows_update(&m), now)),
            Err(Refuse::TooSmall { min_se }) => {
                let why = format!("the session interval is below Mediator's Min-SE of {min_se} s");
                let extra = vec![("Min-SE", min_se.to_string())];
                self.reply_with(&key, &m, 422, &why, extra, out, now);
                return;
            }
            Err(Refuse::Bad(why)) => {
                self.reply(&key, &m, 400, &why, out, now);
                return;
            }
        };
        let mut timers = [None, None];
        timers[slot(a_side)] = a_timer;
        let mut recv_sdp = [None, None];
        if is_sdp(&m) {
            recv_sdp[slot(a_side)] = Some(m.body().to_vec());
        }
        let tag = self.token()[..10].to_string();
        let mut a = Leg {
            side: a_side,
            peer: from,
            call_id: m.summary.call_id.clone(),
            local_tag: tag.clone(),
            local_hdr: format!("{};tag={tag}", m.header("to").unwrap_or_default()),
            remote_hdr: m.header("from").unwrap_or_default(),
            remote_tag: m.summary.from_tag.clone(),
            local_cseq: 0,
            remote_target: String::new(),
            route_set: Vec::new(),
            peer_ips: a_known,
        };
        a.learn(&m, false);
        let id = self.next_id;
        self.next_id += 1;
        self.dialogs.insert(a.key(), (id, a_side));
        self.by_invite.insert(key.clone(), id);
        self.identities.insert(ident.clone(), id);
        let span = tracing::info_span!("call", call = id, sip_call_id = %m.summary.call_id);
        let _g = span.enter();
        tracing::info!(from = %from.remote, dialed, caller, pool, direction = if outbound { "outbound" } else { "inbound" }, trunks = targets.len(), "new call");
        self.calls.insert(
            id,
            Call {
                id,
                outbound,
                pool,
                a_side,
                a,
                a_key: key,
                a_invite: Box::new(m),
                offer,
                offerer: a_side,
                delayed: None,
                answer_in_ack: false,
                offer_in_2xx: None,
                early: EarlyOffer::None,
                early_held: None,
                media_generation: 0,
                orphan_create: false,
                deferred_create: None,
                early_tag: None,
                early_reliable: false,
                media_settings: None,
                sec: None,
                forks: Vec::new(),
                fork_tags: Vec::new(),
                fork_create: None,
                fork_serial: 0,
                delayed_forks: Vec::new(),
                delayed_fork_create: None,
                a_policy,
                targets,
                next_target: 0,
                attempt: None,
                b: None,
                current: None,
                phase: Phase::Calling,
                streams: Vec::new(),
                last: None,
                tried: Vec::new(),
                retx: [None, None],
                ack_deadline: None,
                pending_ack: None,
                acks: [None, None],
                negotiating: false,
                client_keys: Vec::new(),
                dialed,
                caller,
                started_unix: self.wall_ms,
                answered_unix: None,
                answered_at: None,
                ident,
                timers,
                b_se: self.cfg.session_expires,
                sent_sdp: [None, None],
                sent_offer: [false, false],
                recv_sdp,
                refresh_keys: [None, None],
                refresh_invite: [false, false],
                pending_sdp: None,
                b_min_se: self.cfg.min_se,
                se_retried: None,
                redirected: 0,
                adding: None,
            },
        );
        self.next_attempt(id, out, now);
    }

    fn send_invite(&mut self, id: CallId, out: &mut Vec<Action>, now: Instant) {
        self.drop_forks(id, out);
        let branch = self.branch();
        let tag = self.token()[..10].to_string();
        let b_call_id = format!("{}@mediator", self.token());
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(i) = call.current else { return };
        let t = call.targets[i].clone();
        let m = &call.a_invite;
        let body: Option<Vec<u8>> = match &call.offer {
            // Anchored or not (T.38 only), a non-bypass offer is written by Mediator: its keys
            // are Mediator's own or none.
            Some(o) if call.anchored() || !t.bypass => {
                let crypto = call
                    .sec
                    .as_ref()
                    .map(|s| s.rewrites(call.a_side.other(), o, Writing::Offer))
                    .unwrap_or_default();
                match o.rewrite_with(&call.anchors(call.a_side.other(), o), &crypto) {
                    Ok(s) => Some(s.into_bytes()),
                    Err(e) => {
                        let why = e.to_string();
                        self.fail(id, 488, &why, out, now);
                        return;
                    }
                }
            }
            _ => (!m.body().is_empty()).then(|| m.body().to_vec()),
        };
        let ctype = m.header("content-type").unwrap_or_else(|| SDP.into());
        let max_forwards = m
            .summary
            .max_forwards
            .unwrap_or(70)
            .saturating_sub(1)
            .max(1);
        let mut headers: Vec<(&str, String)> = vec![
            ("Via", via(&t.peer, &branch)),
            ("Max-Forwards", max_forwards.to_string()),
            ("From", format!("{};tag={tag}", t.from_hdr)),
            ("To", t.to_hdr.clone()),
            ("Call-ID", b_call_id.clone()),
            // The caller's CSeq, so PRACK's RAck passes across unchanged.
            ("CSeq", format!("{} INVITE", m.summary.cseq)),
            ("Contact", contact(&t.peer)),
            ("Allow", ALLOW.into()),
            (
                "User-Agent",
                concat!("Mediator/", env!("CARGO_PKG_VERSION")).into(),
            ),
        ];
        // (With a delayed offer, a reliable 18x's offer is anchored and the caller's PRACK
        // brings the answer: `100rel` passes as the caller wrote it.)
        for (n, v) in passed(m) {
            if matches!(n, "Require" | "Supported" | "Privacy") {
                headers.push((n, v));
            }
        }
        if t.forward_pai {
            for v in m.headers_named("p-asserted-identity") {
                headers.push(("P-Asserted-Identity", v));
            }
        }
        let b_side = call.a_side.other();
        if call.timer_wanted(b_side) {
            // RFC 4028 §7.1: the interval asked, the refresher left to the callee.
            headers.push(("Supported", "timer".into()));
            headers.push(("Session-Expires", call.b_se.to_string()));
            headers.push(("Min-SE", call.b_min_se.to_string()));
        }
        if ctype.to_ascii_lowercase().starts_with(SDP) {
            call.sent_sdp[slot(b_side)] = body.clone();
            call.sent_offer[slot(b_side)] = true;
        }
        let built = build_request(
            "INVITE",
            &t.request_uri,
            &headers,
            body.as_deref().map(|b| (ctype.as_str(), b)),
        );
        let invite = match built {
            Ok(x) => x,
            Err(e) => {
                self.fail(id, 500, &format!("building the INVITE: {e}"), out, now);
                return;
            }
        };
        let leg = Leg {
            side: call.a_side.other(),
            peer: t.peer,
            call_id: b_call_id,
            local_tag: tag.clone(),
            local_hdr: format!("{};tag={tag}", t.from_hdr),
            remote_hdr: t.to_hdr.clone(),
            remote_tag: None,
            local_cseq: m.summary.cseq,
            remote_target: t.request_uri.clone(),
            route_set: Vec::new(),
            peer_ips: t.known.clone(),
        };
        let (invite, sent_to) = sized(
            invite,
            t.peer,
            t.large_over_tcp && leg.side == Side::Gateway,
        );
        if sent_to != t.peer {
            tracing::info!(call = id, to = %t.peer.remote, bytes = invite.wire_len(), "an INVITE over 1300 bytes goes over TCP (large_requests_over_tcp)");
        }
        let (key, step) = self.layer.request(invite.clone(), sent_to, now);
        self.dialogs.insert(leg.key(), (id, leg.side));
        tracing::info!(call = id, trunk = %t.trunk, to = %t.peer.remote, called = %t.called, calling = %t.calling, "trying trunk");
        call.phase = Phase::Calling;
        call.client_keys.push(key.clone());
        call.attempt = Some(Attempt {
            target: i,
            key: key.clone(),
            invite,
            base: leg.clone(),
            early: Vec::new(),
            current: 0,
            tags: Vec::new(),
            media_owner: None,
            leg,
            provisional: false,
            deadline: t.fast_failover.map(|d| now + d),
            ring_until: now + t.ring_limit,
        });
        if let Some(d) = t.fast_failover {
            self.wake.push(Reverse((now + d, id)));
        }
        self.wake.push(Reverse((now + t.ring_limit, id)));
        self.by_client.insert(key, Purpose::Invite { call: id });
        emit(out, step);
    }

    /// Answers the caller with a final error and ends the call.
    fn fail(&mut self, id: CallId, status: u16, why: &str, out: &mut Vec<Action>, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let key = call.a_key.clone();
        let tag = call.a.local_tag.clone();
        let bytes = build_response(
            &call.a_invite,
            status,
            reason_phrase(status),
            &tag,
            &[("Warning", warning(why))],
            None,
        );
        let step = self.layer.respond(&key, status, bytes, now);
        emit(out, step);
        self.end(id, status, why, out, now);
    }

    // ---- responses --------------------------------------------------------------------------

    fn response(
        &mut self,
        key: TxKey,
        m: Message,
        out: &mut Vec<Action>,
        topo: &Topology,
        now: Instant,
    ) {
        let status = m.status().unwrap_or(0);
        let Some(purpose) = self.by_client.get(&key) else {
            return;
        };
        match purpose {
            Purpose::Invite { call } => {
                let id = *call;
                self.invite_response(id, key, m, status, out, topo, now);
            }
            Purpose::InDialog { .. } => {
                if status >= 200
                    && let Some(Purpose::InDialog {
                        call,
                        to,
                        server,
                        agreed,
                    }) = self.by_client.remove(&key)
                {
                    self.relay_response(call, to, server, agreed, m, out, now);
                } else if let Some(Purpose::InDialog { server, .. }) = self.by_client.get(&key)
                    && status > 100
                    && let Some((skey, sreq)) = server
                {
                    // A provisional of a relayed in-dialog INVITE.
                    let bytes = build_response(sreq, status, &m.reason(), "", &passed(&m), None);
                    let skey = skey.clone();
                    let step = self.layer.respond(&skey, status, bytes, now);
                    emit(out, step);
                }
            }
            Purpose::Orphan(_) => {
                let Some(Purpose::Orphan(mut o)) = self.by_client.remove(&key) else {
                    return;
                };
                match status {
                    100..=199 => {
                        if !o.cancelled
                            && let Ok(c) = cancel_for(&o.invite)
                        {
                            o.cancelled = true;
                            let to = sent_over(&o.invite, o.leg.peer);
                            let (_, step) = self.layer.request(c, to, now);
                            emit(out, step);
                        }
                        self.by_client.insert(key, Purpose::Orphan(o));
                    }
                    200..=299 => {
                        // Answered after Mediator gave up: ACK it and hang it up.
                        o.leg.learn(&m, true);
                        let ack_branch = self.branch();
                        if let Ok(ack) = o.leg.request(
                            "ACK",
                            &ack_branch,
                            Some(o.invite.summary.cseq),
                            &[],
                            None,
                        ) {
                            out.push(Action::Send {
                                to: o.leg.next_hop(),
                                bytes: ack.to_bytes(),
                            });
                        }
                        let bye_branch = self.branch();
                        if let Ok(bye) = o.leg.request("BYE", &bye_branch, None, &[], None) {
                            let (k, step) = self.layer.request(bye, o.leg.next_hop(), now);
                            self.by_client.insert(k, Purpose::Ignore);
                            emit(out, step);
                        }
                    }
                    _ => {}
                }
            }
            Purpose::Refresh { .. } => {
                if status >= 200 {
                    self.refresh_response(key, m, out, now);
                }
            }
            Purpose::Probe { .. } => {
                if status >= 200
                    && let Some(Purpose::Probe { trunk, at }) = self.by_client.remove(&key)
                {
                    self.probe_result(&trunk, at, Some(status), out, now);
                }
            }
            Purpose::Ignore => {
                if status >= 200 {
                    self.by_client.remove(&key);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn invite_response(
        &mut self,
        id: CallId,
        key: TxKey,
        m: Message,
        status: u16,
        out: &mut Vec<Action>,
        topo: &Topology,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let current = call.attempt.as_ref().is_some_and(|a| a.key == key);
        if !current {
            let Some(b) = &call.b else {
                return;
            };
            if !(200..300).contains(&status) {
                return;
            }
            if m.summary.to_tag != b.remote_tag {
                // A second 2xx of a forked INVITE (another dialog answered too): it is ACKed and
                // hung up (RFC 3261 §13.2.2.4); the call keeps the first.
                let mut extra = b.clone();
                extra.remote_tag = None;
                extra.route_set.clear();
                extra.learn(&m, true);
                let (ack_branch, bye_branch) = (self.branch(), self.branch());
                tracing::info!(
                    call = id,
                    "a second dialog answered the forked INVITE: ACK and BYE"
                );
                if let Ok(ack) = extra.request("ACK", &ack_branch, Some(m.summary.cseq), &[], None)
                {
                    out.push(Action::Send {
                        to: extra.next_hop(),
                        bytes: ack.to_bytes(),
                    });
                }
                if let Ok(bye) = extra.request("BYE", &bye_branch, None, &[], None) {
                    let (k, step) = self.layer.request(bye, extra.next_hop(), now);
                    self.by_client.insert(k, Purpose::Ignore);
                    emit(out, step);
                }
                return;
            }
            // A 2xx retransmission of the answered INVITE: ACK it again.
            if let Some(ack) = &call.acks[slot(call.a_side.other())] {
                out.push(Action::Send {
                    to: b.next_hop(),
                    bytes: ack.clone(),
                });
            }
            return;
        }
        let a_side = call.a_side;
        match status {
            100 => {
                if let Some(a) = call.attempt.as_mut() {
                    a.provisional = true;
                }
            }
            101..=199 => {
                let Some(att) = call.attempt.as_mut() else {
                    return;
                };
                att.provisional = true;
                att.deadline = None;
                att.ring_until = now + call.targets[att.target].ring_limit;
                self.wake.push(Reverse((att.ring_until, id)));
                if m.summary.to_tag.is_some() {
                    let max = call.targets[att.target].max_early_dialogs;
                    if !att.fork(&m, max) {
                        // A forked INVITE's early dialog beyond max_early_dialogs: its
                        // provisional is not relayed (it may still answer, and win).
                        tracing::info!(
                            call = id,
                            max,
                            "an early dialog beyond max_early_dialogs is not relayed"
                        );
                        return;
                    }
                }
                call.phase = Phase::Early;
                let bypass = call.target().is_some_and(|t| t.bypass);
                let caller_offered = call.offer.is_some() && call.early == EarlyOffer::None;
                let delayed_early =
                    !bypass && call.early != EarlyOffer::None && call.offerer != a_side;
                // Each early dialog reaches the caller in an early dialog of its own.
                self.tag_early_dialog(id);
                // With a delayed offer, another early dialog's offer is anchored on its own.
                let m = match delayed_early && is_sdp(&m) {
                    true => match self.delayed_fork_provisional(id, m, out, now) {
                        Some(m) => m,
                        None => return,
                    },
                    false => m,
                };
                if !bypass && caller_offered && self.fork_provisional(id, &m, out, now) {
                    return;
                }
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                if !bypass && (call.offer.is_none() || call.early != EarlyOffer::None) {
                    // A delayed offer: the callee's offer in a provisional is anchored at once
                    // and goes to the caller as Mediator's offer (its answer comes in a PRACK or
                    // the ACK), so the caller has early media.
                    let body = match call.early {
                        EarlyOffer::None if is_sdp(&m) && call.delayed.is_none() => {
                            if let Err(why) = self.delayed_offer(id, m, Held::Early, out, now) {
                                self.refuse_early(id, 488, &why, out, now);
                            }
                            return;
                        }
                        EarlyOffer::Anchoring => {
                            // Its sessions are on their way: a retransmission (or another
                            // provisional) now would reach the caller before the offer.
                            tracing::debug!(
                                call = id,
                                status,
                                "a provisional while the early offer is anchored: not relayed"
                            );
                            return;
                        }
                        // Another early dialog's offer after a reliable one: the caller answers
                        // that one in its PRACK; this one's provisional goes on without SDP.
                        EarlyOffer::Sent
                            if call.early_reliable && m.summary.to_tag != call.early_tag =>
                        {
                            None
                        }
                        EarlyOffer::Sent if is_sdp(&m) => {
                            let tag = m.summary.to_tag.clone();
                            call.early_tag = tag;
                            match self.early_offer_body(id, &m, out) {
                                Ok(b) => Some(b),
                                Err(why) => {
                                    self.refuse_early(id, 488, &why, out, now);
                                    return;
                                }
                            }
                        }
                        // No SDP, or the offer already answered (in a PRACK): without it.
                        _ => None,
                    };
                    self.relay_provisional(id, &m, body, out, now);
                    return;
                }
                let body = match self.answer_body(id, a_side.other(), &m, SdpKind::Answer, out) {
                    Ok(b) => b,
                    Err(why) => {
                        // An early answer Mediator cannot use: the attempt is CANCELled and
                        // the caller gets 488 (with 100rel the 2xx may carry no SDP at all).
                        self.refuse_early(id, 488, &why, out, now);
                        return;
                    }
                };
                self.relay_provisional(id, &m, body, out, now);
            }
            200..=299 => {
                let Some(mut att) = call.attempt.take() else {
                    return;
                };
                // The dialog that answers wins: its early dialog (or a new one), and the
                // caller's early dialog of the same (its To tag is the call's from now on).
                att.fork(&m, usize::MAX);
                let winner = att.current;
                let winner_tag = att.caller_tag().map(str::to_string);
                if let Some(tag) = &winner_tag {
                    self.dialogs.remove(&call.a.key());
                    call.a.retag(tag);
                }
                let a_tag = call.a.local_tag.clone();
                self.settle_forks(id, winner, out);
                self.settle_delayed_forks(id, m.summary.to_tag.as_deref(), out);
                self.forget_fork_tags(id, Some(&a_tag));
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                if att.early.len() > 1 {
                    tracing::info!(
                        call = id,
                        early_dialogs = att.early.len(),
                        "a forked INVITE answered; its other early dialogs end with it"
                    );
                }
                let trunk = call.targets[att.target].trunk.clone();
                call.tried.push((call.targets[att.target].label(), status));
                call.b = Some(att.leg);
                let b_side = a_side.other();
                if call.timer_wanted(b_side) {
                    let (i, we) = timer::as_uac(&m, call.b_se);
                    call.timers[slot(b_side)] = Some(SessionTimer::new(
                        i,
                        we,
                        timer::allows_update(&m),
                        call.b_min_se,
                        now,
                    ));
                }
                call.phase = Phase::Answered;
                call.answered_unix = Some(self.wall_ms);
                call.answered_at = Some(now);
                call.pending_ack = Some(PendingAck {
                    to: a_side.other(),
                    cseq: att.invite.summary.cseq,
                });
                tracing::info!(call = id, trunk, "answered");
                let bypass = call.target().is_some_and(|t| t.bypass);
                if is_sdp(&m)
                    && !bypass
                    && call.early != EarlyOffer::Answered
                    && (call.offer.is_none() || call.offerer != a_side)
                {
                    // A delayed offer: its ACK must answer it, whatever becomes of the call.
                    call.offer_in_2xx = Some(m.body().to_vec());
                }
                if call.early != EarlyOffer::None && !bypass {
                    // The callee offered in a provisional already.
                    if call.early == EarlyOffer::Anchoring {
                        // Its sessions are on their way: the 2xx follows the provisional.
                        call.delayed = Some(Box::new(m));
                    } else {
                        self.answer_early_offered(id, m, out, now);
                    }
                    return;
                }
                if call.offer.is_none()
                    && !call.target().is_some_and(|t| t.bypass)
                    && m.body().is_empty()
                {
                    // A delayed offer the callee answered without an offer (its offer went in
                    // a reliable 18x, which Mediator does not anchor): nothing for the caller.
                    let why = "the callee's 2xx to an INVITE without SDP carries no offer";
                    self.refuse_answer(id, 488, why, out, now);
                    return;
                }
                if call.offer.is_none() && is_sdp(&m) && !call.target().is_some_and(|t| t.bypass) {
                    // A delayed offer: the callee's offer is anchored first (sessions made),
                    // then goes to the caller, whose ACK brings the answer.
                    if let Err(why) = self.delayed_offer(id, m, Held::Final, out, now) {
                        self.refuse_answer(id, 488, &why, out, now);
                    }
                    return;
                }
                let body = match self.answer_body(id, a_side.other(), &m, SdpKind::Answer, out) {
                    Ok(b) => b,
                    Err(why) => {
                        self.refuse_answer(id, 488, &why, out, now);
                        return;
                    }
                };
                self.answer_caller(id, &m, body, out, now);
            }
            _ => {
                let Some(att) = call.attempt.take() else {
                    return;
                };
                self.by_client.remove(&key);
                if status == 422
                    && call.timer_wanted(a_side.other())
                    && call.se_retried != Some(att.target)
                    && let Some(n) = timer::min_se(&m).filter(|n| *n <= timer::MAX_SE)
                {
                    // RFC 4028 §7.4: asked too short an interval; once more with the callee's
                    // Min-SE (as Session-Expires and as Min-SE), to the same target.
                    tracing::info!(
                        call = id,
                        min_se = n,
                        "422 from the callee: asking its Min-SE"
                    );
                    call.tried.push((call.targets[att.target].label(), status));
                    call.b_se = call.b_se.max(n);
                    call.b_min_se = call.b_min_se.max(n);
                    call.se_retried = Some(att.target);
                    call.current = Some(att.target);
                    self.dialogs.remove(&att.leg.key());
                    self.forget_early_offer(id, out);
                    self.send_invite(id, out, now);
                    return;
                }
                let t = &call.targets[att.target];
                let translated = t
                    .code_rules
                    .iter()
                    .find(|(r, _)| *r == status)
                    .map(|(_, x)| *x)
                    .unwrap_or(status);
                call.tried.push((t.label(), status));
                let reason = if translated == status {
                    m.reason()
                } else {
                    reason_phrase(translated).to_string()
                };
                tracing::info!(call = id, trunk = %t.trunk, status, translated, "attempt failed");
                call.last = Some((translated, reason.clone()));
                // A 422 not cured by asking its Min-SE is the trunk's failure, not the caller's.
                let alternative = t.from_redirect
                    && call
                        .targets
                        .get(call.next_target)
                        .is_some_and(|n| n.from_redirect);
                let failover = (500..600).contains(&translated)
                    || translated == 408
                    || translated == 422
                    || alternative;
                if translated == 422 {
                    call.last = Some((500, "Server Internal Error".into()));
                }
                let follow =
                    (300..400).contains(&translated) && t.follow_redirects && call.outbound;
                let history = t.forward_call_history;
                if follow && self.follow_redirect(id, att.target, &m, topo) > 0 {
                    tracing::info!(call = id, status, "redirect followed");
                    self.next_attempt(id, out, now);
                } else if failover {
                    self.next_attempt(id, out, now);
                } else {
                    let Some(call) = self.calls.get_mut(&id) else {
                        return;
                    };
                    let mut extra = passed(&m);
                    extra.retain(|(n, _)| *n == "Reason");
                    if (300..400).contains(&translated) {
                        // A redirect not followed is relayed with where it points, and with the
                        // call's history when the trunk says so.
                        // At most 16: a redirect is no amplifier either.
                        for v in m.headers_named("contact").into_iter().take(16) {
                            extra.push(("Contact", v));
                        }
                        if history {
                            for name in ["Diversion", "History-Info"] {
                                for v in m.headers_named(name) {
                                    extra.push((name, v));
                                }
                            }
                        }
                    }
                    let bytes = build_response(
                        &call.a_invite,
                        translated,
                        &reason,
                        &call.a.local_tag,
                        &extra,
                        None,
                    );
                    let akey = call.a_key.clone();
                    let step = self.layer.respond(&akey, translated, bytes, now);
                    emit(out, step);
                    self.end(id, translated, &format!("{translated} {reason}"), out, now);
                }
            }
        }
    }

    /// The callee's 2xx `m` goes on to the caller with `body` (retransmitted until its ACK,
    /// which is awaited for 64×T1), with the caller's leg's session timer.
    pub(super) fn answer_caller(
        &mut self,
        id: CallId,
        m: &Message,
        body: Option<Vec<u8>>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let t1 = self.cfg.timers.t1;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let a_side = call.a_side;
        let status = m.status().unwrap_or(200);
        let mut extra = passed(m);
        extra.push(("Contact", contact(&call.a.peer)));
        extra.extend(record_routes(&call.a_invite));
        extra.push(("Allow", ALLOW.into()));
        if let Some(t) = call.timers[slot(a_side)].as_mut() {
            t.refreshed_at = now;
            extra.extend(t.uas_headers());
        }
        let ctype = m.header("content-type").unwrap_or_else(|| SDP.into());
        let bytes = build_response(
            &call.a_invite,
            status,
            &m.reason(),
            &call.a.local_tag,
            &extra,
            body.as_deref().map(|b| (ctype.as_str(), b)),
        );
        let akey = call.a_key.clone();
        if !call.a.peer.reliable() {
            call.retx[slot(a_side)] = Some(Retx::new(akey.clone(), bytes.clone(), a_side, now, t1));
        }
        call.ack_deadline = Some(now + 64 * t1);
        self.wake.push(Reverse((now + t1, id)));
        self.wake.push(Reverse((now + 64 * t1, id)));
        let step = self.layer.respond(&akey, status, bytes, now);
        emit(out, step);
        self.wake_timers(id, now);
    }

    /// The callee's provisional `m` goes on to the caller with `body` (or without SDP), in the
    /// caller's dialog.
    pub(super) fn relay_provisional(
        &mut self,
        id: CallId,
        m: &Message,
        body: Option<Vec<u8>>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let status = m.status().unwrap_or(183);
        let mut extra = passed(m);
        if body.is_none() {
            extra.retain(|(n, _)| *n != "Content-Disposition");
        }
        extra.push(("Contact", contact(&call.a.peer)));
        extra.extend(record_routes(&call.a_invite));
        // In the caller's early dialog of the callee's early dialog it comes from.
        let tag = call
            .attempt
            .as_ref()
            .and_then(Attempt::caller_tag)
            .unwrap_or(&call.a.local_tag);
        let bytes = build_response(
            &call.a_invite,
            status,
            &m.reason(),
            tag,
            &extra,
            body.as_deref().map(|b| (SDP, b)),
        );
        let step = self.layer.respond(&call.a_key.clone(), status, bytes, now);
        emit(out, step);
    }

    /// The SDP of a provisional cannot be used: the attempt is CANCELled and the caller gets
    /// `status`.
    pub(super) fn refuse_early(
        &mut self,
        id: CallId,
        status: u16,
        why: &str,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        tracing::info!(call = id, why, "the callee's early SDP is refused");
        if let Some(call) = self.calls.get_mut(&id)
            && let Some(att) = call.attempt.take()
        {
            self.orphan(att, true, out, now);
        }
        self.fail(id, status, why, out, now);
    }

    /// Gives up on an attempt: CANCEL it when it has had a provisional (otherwise when one comes).
    fn orphan(&mut self, att: Attempt, provisional: bool, out: &mut Vec<Action>, now: Instant) {
        let mut cancelled = false;
        if provisional && let Ok(c) = cancel_for(&att.invite) {
            let to = sent_over(&att.invite, att.leg.peer);
            let (k, step) = self.layer.request(c, to, now);
            self.by_client.insert(k, Purpose::Ignore);
            emit(out, step);
            cancelled = true;
        }
        self.dialogs.remove(&att.leg.key());
        self.by_client.insert(
            att.key,
            Purpose::Orphan(Box::new(Orphan {
                invite: att.invite,
                leg: att.leg,
                cancelled,
            })),
        );
    }

    /// A client transaction ended without a response: `status` 408 (it timed out) or 503 (its
    /// request could not be delivered — RFC 3261 §8.1.3.1 treats a transport error as a 503).
    fn failed(&mut self, key: TxKey, status: u16, out: &mut Vec<Action>, now: Instant) {
        let what = if status == 408 {
            "transaction timeout"
        } else {
            "transport error"
        };
        match self.by_client.remove(&key) {
            Some(Purpose::Invite { call }) => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                if c.attempt.as_ref().is_some_and(|a| a.key == key)
                    && let Some(att) = c.attempt.take()
                {
                    let t = &c.targets[att.target];
                    tracing::info!(call, trunk = %t.trunk, to = %t.peer.remote, "no answer from the trunk ({what})");
                    c.tried.push((t.label(), status));
                    if c.last.is_none() {
                        c.last = Some((status, reason_phrase(status).into()));
                    }
                    self.dialogs.remove(&att.leg.key());
                    self.next_attempt(call, out, now);
                }
            }
            Some(Purpose::InDialog {
                call, to, server, ..
            }) => {
                tracing::info!(call, leg = to.name(), "in-dialog request failed ({what})");
                if let Some((skey, sreq)) = server {
                    self.answer_relayed(&skey, &sreq, status, out, now);
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.negotiating = false;
                        c.abandon_offer();
                    }
                }
            }
            Some(Purpose::Probe { trunk, at }) => self.probe_result(&trunk, at, None, out, now),
            Some(Purpose::Refresh { call, to, .. }) => {
                let why = format!("session refresh of the {} leg failed ({what})", to.name());
                tracing::info!(call, "{why}");
                if let Some(c) = self.calls.get_mut(&call) {
                    c.refresh_invite[slot(to)] = false;
                }
                let reason = [("Reason", timer::EXPIRED.to_string())];
                self.hangup_with(call, status, &why, &reason, out, now);
            }
            _ => {}
        }
    }

    /// Answers a relayed in-dialog request on its server side with `status` of Mediator's own
    /// (the far side never answered it: 408, or the call ended: 487).
    fn answer_relayed(
        &mut self,
        skey: &TxKey,
        sreq: &Message,
        status: u16,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let bytes = build_response(sreq, status, reason_phrase(status), "", &[], None);
        let step = self.layer.respond(skey, status, bytes, now);
        emit(out, step);
    }

    // ---- the caller's CANCEL and ACK --------------------------------------------------------

    fn cancel(&mut self, key: TxKey, m: Message, out: &mut Vec<Action>, now: Instant) {
        let invite_key = TxKey {
            method: "INVITE".into(),
            ..key.clone()
        };
        let Some(&id) = self.by_invite.get(&invite_key) else {
            self.reply(&key, &m, 481, "no such transaction", out, now);
            return;
        };
        let ok = build_response(&m, 200, "OK", &self.token()[..10], &[], None);
        let step = self.layer.respond(&key, 200, ok, now);
        emit(out, step);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.delayed.is_some() {
            // The callee answered a delayed offer, the caller has had no final response yet
            // (its sessions are being made): the caller gets 487, the callee ACK and BYE.
            tracing::info!(
                call = id,
                "cancelled by the caller while its answer was anchored"
            );
            self.refuse_answer(id, 487, "cancelled by the caller", out, now);
            return;
        }
        if matches!(call.phase, Phase::Answered | Phase::Confirmed) {
            return; // too late: the call was answered
        }
        tracing::info!(call = id, "cancelled by the caller");
        self.terminate_caller(id, out, now);
        self.end(id, 487, "cancelled by the caller", out, now);
    }

    /// Ends the caller's INVITE with 487 and gives up the attempt in progress (CANCELled once it
    /// has had a provisional).
    fn terminate_caller(&mut self, id: CallId, out: &mut Vec<Action>, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let bytes = build_response(
            &call.a_invite,
            487,
            "Request Terminated",
            &call.a.local_tag,
            &[],
            None,
        );
        let akey = call.a_key.clone();
        let attempt = call.attempt.take();
        let step = self.layer.respond(&akey, 487, bytes, now);
        emit(out, step);
        if let Some(att) = attempt {
            let provisional = att.provisional;
            self.orphan(att, provisional, out, now);
        }
    }

    fn ack(&mut self, m: Message, out: &mut Vec<Action>, now: Instant) {
        let Some(tag) = m.summary.to_tag.clone() else {
            return;
        };
        let Some(&(id, side)) = self.dialogs.get(&(m.summary.call_id.clone(), tag)) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.retx[slot(side)] = None;
        if call.phase == Phase::Answered && side == call.a_side {
            call.phase = Phase::Confirmed;
            call.ack_deadline = None;
            self.wake_timers(id, now);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(p) = call.pending_ack.take() else {
            return;
        };
        if p.to == side {
            call.pending_ack = Some(p);
            return;
        }
        let mut refused = None;
        let answer_due = std::mem::take(&mut call.answer_in_ack);
        let body = if m.body().is_empty() {
            if answer_due {
                refused = Some("the ACK carried no answer to the offer in the 2xx".to_string());
            }
            None
        } else {
            match self.answer_body(id, side, &m, SdpKind::Answer, out) {
                Ok(b) => b,
                Err(why) => {
                    refused = Some(why);
                    None
                }
            }
        };
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // RFC 3261 §13.2.2.4: the offer in a 2xx is answered in the ACK even when the call
        // cannot go on — every stream rejected — and the BYE follows.
        let offer = call.offer_to_answer(p.to);
        let body = match (&refused, answer_due) {
            (Some(_), true) => offer.and_then(|o| rejecting(&o)),
            _ => body,
        };
        let Some(leg) = call.leg_mut(p.to) else {
            return;
        };
        let peer = leg.next_hop();
        if let Ok(ack) = leg.request(
            "ACK",
            &branch,
            Some(p.cseq),
            &[],
            body.as_deref().map(|b| (SDP, b)),
        ) {
            let bytes = ack.to_bytes();
            call.acks[slot(p.to)] = Some(bytes.clone());
            out.push(Action::Send { to: peer, bytes });
        }
        if let Some(why) = refused {
            // The answer in the ACK (to an offer in a 2xx) fails: the legs disagree on their
            // media, so the call ends with the reason.
            tracing::info!(
                call = id,
                why,
                "the answer in an ACK is refused; hanging up"
            );
            if let Some(c) = self.calls.get_mut(&id) {
                c.abandon_offer();
            }
            self.hangup(id, 488, &why, out, now);
        }
    }

    // ---- in-dialog --------------------------------------------------------------------------

    fn bye(
        &mut self,
        id: CallId,
        side: Side,
        key: TxKey,
        m: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let ok = build_response(&m, 200, "OK", "", &[], None);
        let step = self.layer.respond(&key, 200, ok, now);
        emit(out, step);
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        tracing::info!(call = id, leg = side.name(), "BYE");
        let reason = format!("BYE from the {} side", side.name());
        if call.delayed.is_some() {
            // Within a delayed offer's anchoring the caller has no final response yet: it gets
            // one (487 when it left, 480 when the callee did), the callee its ACK and BYE.
            let status = if side == call.a_side { 487 } else { 480 };
            self.refuse_answer(id, status, &reason, out, now);
            return;
        }
        if side != call.a_side && !matches!(call.phase, Phase::Answered | Phase::Confirmed) {
            // The callee's early dialog ended: the caller gets a final error.
            self.fail(id, 480, &reason, out, now);
            return;
        }
        if side == call.a_side && !matches!(call.phase, Phase::Answered | Phase::Confirmed) {
            self.terminate_caller(id, out, now);
            self.end(id, 200, &reason, out, now);
            return;
        }
        self.send_bye(id, side.other(), out, now);
        self.end(id, 200, &reason, out, now);
    }

    fn send_bye(&mut self, id: CallId, to: Side, out: &mut Vec<Action>, now: Instant) {
        self.send_bye_with(id, to, &[], out, now);
    }

    fn send_bye_with(
        &mut self,
        id: CallId,
        to: Side,
        extra: &[(&str, String)],
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // A 2xx from that side held while streams its offer adds were being anchored: ACKed
        // first, its offer answered with every stream rejected (RFC 3261 §13.2.2.4).
        let held = call
            .adding
            .as_mut()
            .filter(|a| a.side == to)
            .and_then(|a| a.answer.take());
        if let Some((ok, _)) = held {
            self.ack_2xx(id, to, ok.summary.cseq, rejecting(ok.body()), out);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // RFC 4028 §7.1: every request but ACK on a leg with session timers says `timer`.
        let mut extra = extra.to_vec();
        if call.timers[slot(to)].is_some() {
            extra.push(("Supported", "timer".into()));
        }
        let Some(leg) = call.leg_mut(to) else { return };
        let peer = leg.next_hop();
        if let Ok(bye) = leg.request("BYE", &branch, None, &extra, None) {
            let (k, step) = self.layer.request(bye, peer, now);
            self.by_client.insert(k, Purpose::Ignore);
            emit(out, step);
        }
    }

    /// ACKs the 2xx numbered `cseq` on the leg facing `to`, with `answer` (an SDP) when its offer
    /// must be answered. `false` when the call or leg is gone.
    fn ack_2xx(
        &mut self,
        id: CallId,
        to: Side,
        cseq: u32,
        answer: Option<Vec<u8>>,
        out: &mut Vec<Action>,
    ) -> bool {
        let branch = self.branch();
        let Some(leg) = self.calls.get_mut(&id).and_then(|c| c.leg_mut(to)) else {
            return false;
        };
        let Ok(ack) = leg.request(
            "ACK",
            &branch,
            Some(cseq),
            &[],
            answer.as_deref().map(|b| (SDP, b)),
        ) else {
            return false;
        };
        out.push(Action::Send {
            to: leg.next_hop(),
            bytes: ack.to_bytes(),
        });
        true
    }

    /// The callee answered with SDP Mediator cannot use (a policy it fails, a stream it cannot
    /// anchor, a delayed offer the relays could not anchor): its 2xx is acknowledged and its
    /// dialog hung up, and the caller, which has had no final response yet, gets `status` (488,
    /// or the relays' 503) with the reason.
    pub(super) fn refuse_answer(
        &mut self,
        id: CallId,
        status: u16,
        why: &str,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        tracing::info!(call = id, why, "the answer is refused");
        if let Some(call) = self.calls.get_mut(&id)
            && let Some(p) = call.pending_ack.take()
        {
            let answer = call.offer_in_2xx.take().and_then(|o| rejecting(&o));
            if self.ack_2xx(id, p.to, p.cseq, answer, out) {
                self.send_bye(id, p.to, out, now);
            }
        }
        self.fail(id, status, why, out, now);
    }

    /// A 2xx whose SDP Mediator cannot use in a call in progress (a policy it fails, a stream it
    /// cannot anchor): the request's sender gets 488 (its session stays as it was), the 2xx is
    /// ACKed, and the call — whose legs now disagree on their media — is hung up with the reason.
    #[allow(clippy::too_many_arguments)]
    fn refuse_in_dialog_answer(
        &mut self,
        id: CallId,
        to: Side,
        skey: &TxKey,
        sreq: &Message,
        m: &Message,
        why: &str,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        tracing::info!(call = id, why, "an in-dialog answer is refused; hanging up");
        let bytes = build_response(
            sreq,
            488,
            reason_phrase(488),
            "",
            &[("Warning", warning(why))],
            None,
        );
        let step = self.layer.respond(skey, 488, bytes, now);
        emit(out, step);
        // RFC 3261 §13.2.2.4: an offer in the 2xx (to a re-INVITE without SDP) is answered in
        // the ACK, every stream rejected, before the BYE.
        let answer = (!is_sdp(sreq) && is_sdp(m))
            .then(|| rejecting(m.body()))
            .flatten();
        if let Some(call) = self.calls.get_mut(&id) {
            call.abandon_offer();
            if m.method().is_none() && m.summary.cseq_method.eq_ignore_ascii_case("INVITE") {
                self.ack_2xx(id, to, m.summary.cseq, answer, out);
            }
        }
        self.hangup(id, 488, why, out, now);
    }

    /// Ends an answered call from Mediator's side: BYE to both legs.
    fn hangup(&mut self, id: CallId, status: u16, why: &str, out: &mut Vec<Action>, now: Instant) {
        self.hangup_with(id, status, why, &[], out, now);
    }

    /// [`Engine::hangup`] with headers on both BYEs (a Reason).
    fn hangup_with(
        &mut self,
        id: CallId,
        status: u16,
        why: &str,
        extra: &[(&str, String)],
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        tracing::info!(call = id, why, "hanging up");
        self.send_bye_with(id, Side::Pool, extra, out, now);
        self.send_bye_with(id, Side::Gateway, extra, out, now);
        self.end(id, status, why, out, now);
    }

    fn relay_request(
        &mut self,
        id: CallId,
        side: Side,
        key: TxKey,
        m: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        // A caller's request in an early dialog with an early offer of its own (a delayed
        // offer's other early dialog): handled with that dialog's offer in the call's place.
        let fork_tag = self.calls.get(&id).and_then(|call| {
            let att = call.attempt.as_ref()?;
            let tag = m.summary.to_tag.as_deref()?;
            let i = att.dialog_of(tag, &call.a.local_tag)?;
            let callee = att.early.get(i)?.remote_tag.clone()?;
            (side == call.a_side
                && call.b.is_none()
                && call.delayed_forks.iter().any(|f| f.tag == callee))
            .then_some(callee)
        });
        if self.offer_in_other_early_dialog(id, side, &m) {
            // Its answer would come back to the call's own early dialog's media (and with the
            // caller's offer, to sessions whose gateway side another dialog's SDP answers).
            self.reply(
                &key,
                &m,
                488,
                "an offer in another early dialog of a forked INVITE is not supported",
                out,
                now,
            );
            return;
        }
        if let Some(t) = &fork_tag {
            self.swap_delayed_fork(id, t);
        }
        self.relay_request_in(id, side, key, m, out, now);
        if let Some(t) = &fork_tag {
            self.swap_delayed_fork(id, t);
        }
    }

    /// An early UPDATE with SDP in an early dialog other than the one whose SDP the call's
    /// sessions hold (a forked INVITE's): either side's.
    fn offer_in_other_early_dialog(&self, id: CallId, side: Side, m: &Message) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Some(att) = call.attempt.as_ref() else {
            return false;
        };
        if call.b.is_some() || m.method() != Some("UPDATE") || !is_sdp(m) {
            return false;
        }
        let callee_tag = if side == call.a_side {
            m.summary
                .to_tag
                .as_deref()
                .and_then(|t| att.dialog_of(t, &call.a.local_tag))
                .and_then(|i| att.early.get(i))
                .and_then(|l| l.remote_tag.clone())
        } else {
            m.summary.from_tag.clone()
        };
        let own = if call.offerer != call.a_side {
            call.early_tag.clone()
        } else {
            att.media_owner
                .and_then(|i| att.early.get(i))
                .and_then(|l| l.remote_tag.clone())
        };
        own.is_some() && callee_tag.is_some() && callee_tag != own
    }

    fn relay_request_in(
        &mut self,
        id: CallId,
        side: Side,
        key: TxKey,
        m: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let method = m.method().unwrap_or_default().to_string();
        let Some(call) = self.calls.get_mut(&id) else {
            self.reply(&key, &m, 481, "the call has ended", out, now);
            return;
        };
        if side == call.a_side
            && call.b.is_none()
            && let Some(att) = call.attempt.as_mut()
            && let Some(tag) = m.summary.to_tag.as_deref()
        {
            // A caller's request in an early dialog goes to the callee's early dialog it
            // stands for (a forked INVITE has several).
            match att.dialog_of(tag, &call.a.local_tag) {
                Some(i) => att.select(i),
                None => {
                    self.reply(&key, &m, 481, "no such early dialog", out, now);
                    return;
                }
            }
        }
        if method == "REFER" && !call.target().is_some_and(|t| t.refer) {
            let trunk = call.target().map(|t| t.trunk.clone()).unwrap_or_default();
            self.reply(
                &key,
                &m,
                403,
                &format!("REFER is not allowed on trunk {trunk} (refer_support is off)"),
                out,
                now,
            );
            return;
        }
        let repeats_sdp = is_sdp(&m)
            && call.sent_sdp[slot(side)].is_some()
            && call.recv_sdp[slot(side)].as_deref() == Some(m.body());
        // A refresh: an UPDATE without a body that changes nothing else (no asserted identity,
        // RFC 4916), or a re-INVITE repeating the last SDP — while no offer is pending on the
        // call and no refresh of Mediator's on this leg (glare on its dialog: 491 below).
        let refresh = call.phase == Phase::Confirmed
            && match method.as_str() {
                "UPDATE" => m.body().is_empty() && m.header("p-asserted-identity").is_none(),
                "INVITE" => {
                    repeats_sdp
                        && !call.sent_offer[slot(side)]
                        && !call.negotiating
                        && !call.refresh_invite[slot(side)]
                }
                _ => false,
            };
        if refresh {
            self.answer_refresh(id, side, key, m, out, now);
            return;
        }
        let offer = matches!(method.as_str(), "INVITE" | "UPDATE") && is_sdp(&m);
        // The caller's answer to the callee's early offer (a reliable 18x's) comes in its PRACK.
        let prack_answer = method == "PRACK"
            && is_sdp(&m)
            && side == call.a_side
            && call.early == EarlyOffer::Sent;
        // Any other SDP in a PRACK is refused wherever Mediator handles media (anchored or not
        // yet: passed raw, it would carry the peer's addresses and keys past the relay).
        let bypass = call.target().is_some_and(|t| t.bypass);
        if method == "PRACK" && is_sdp(&m) && !bypass && !prack_answer {
            self.reply(
                &key,
                &m,
                488,
                "an offer or answer in PRACK is not supported",
                out,
                now,
            );
            return;
        }
        if (method == "INVITE" || offer)
            && (call.negotiating || call.refresh_invite.contains(&true))
        {
            self.reply(&key, &m, 491, "another offer is in progress", out, now);
            return;
        }
        if call
            .leg_mut(side.other())
            .is_none_or(|l| l.remote_tag.is_none())
        {
            self.reply(&key, &m, 481, "the other leg has no dialog yet", out, now);
            return;
        }
        if let Some(leg) = call.leg_mut(side) {
            leg.refresh_target(&m);
        }
        let mut agreed = None;
        if matches!(method.as_str(), "INVITE" | "UPDATE") {
            // The sender's leg's session timer, as this request asks it (RFC 4028 §9); put in
            // force with the 2xx (`relay_response`).
            let s = slot(side);
            match timer::as_uas(
                &m,
                call.timers[s].is_some(),
                self.cfg.session_expires,
                self.cfg.min_se,
            ) {
                Ok(a) => agreed = a,
                Err(Refuse::TooSmall { min_se }) => {
                    let why =
                        format!("the session interval is below Mediator's Min-SE of {min_se} s");
                    let extra = vec![("Min-SE", min_se.to_string())];
                    self.reply_with(&key, &m, 422, &why, extra, out, now);
                    return;
                }
                Err(Refuse::Bad(why)) => {
                    self.reply(&key, &m, 400, &why, out, now);
                    return;
                }
            }
        }
        if offer && self.add_streams(id, side, &key, &m, None, out, now) {
            return;
        }
        let body = if offer || prack_answer {
            let kind = if offer {
                SdpKind::Offer
            } else {
                SdpKind::Answer
            };
            match self.answer_body(id, side, &m, kind, out) {
                Ok(b) => {
                    if prack_answer && let Some(call) = self.calls.get_mut(&id) {
                        call.early = EarlyOffer::Answered;
                    }
                    b
                }
                Err(why) => {
                    self.reply(&key, &m, 488, &why, out, now);
                    if prack_answer {
                        // The callee's early offer cannot be answered: its attempt is CANCELled
                        // and the call fails, rather than the callee waiting for an answer.
                        self.refuse_early(id, 488, &why, out, now);
                    }
                    return;
                }
            }
        } else {
            (!m.body().is_empty()).then(|| m.body().to_vec())
        };
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if method == "INVITE" || offer {
            call.negotiating = true;
        }
        let ctype = m.header("content-type").unwrap_or_else(|| SDP.into());
        let mut extra = passed(&m);
        if let Some(t) = &call.timers[slot(side.other())] {
            if matches!(method.as_str(), "INVITE" | "UPDATE") {
                extra.extend(t.uac_headers());
            } else {
                // RFC 4028 §7.1: every request but ACK on a leg with session timers says so.
                extra.push(("Supported", "timer".into()));
            }
        }
        // A callee's request in its early dialog reaches the caller in the caller's early
        // dialog of the same (a forked INVITE's other early dialogs have tags of their own).
        let early_tag = (side != call.a_side && call.b.is_none())
            .then(|| {
                let att = call.attempt.as_mut()?;
                let from = m.summary.from_tag.as_deref()?;
                let i = att
                    .early
                    .iter()
                    .position(|l| l.remote_tag.as_deref() == Some(from))?;
                att.select(i);
                att.caller_tag().map(str::to_string)
            })
            .flatten();
        let Some(leg) = call.leg_mut(side.other()) else {
            return;
        };
        let mut early_leg = early_tag.map(|t| {
            let mut l = leg.clone();
            l.retag(&t);
            l
        });
        let leg = early_leg.as_mut().unwrap_or(leg);
        let peer = leg.next_hop();
        let req = match leg.request(
            &method,
            &branch,
            None,
            &extra,
            body.as_deref().map(|b| (ctype.as_str(), b)),
        ) {
            Ok(r) => r,
            Err(e) => {
                self.reply(
                    &key,
                    &m,
                    500,
                    &format!("building the {method}: {e}"),
                    out,
                    now,
                );
                return;
            }
        };
        if let Some(l) = &early_leg {
            // One CSeq space for the caller's early dialogs: never repeated in any.
            call.a.local_cseq = l.local_cseq;
        }
        let over_tcp =
            side.other() == Side::Gateway && call.target().is_some_and(|t| t.large_over_tcp);
        let (req, peer) = sized(req, peer, over_tcp);
        let (k, step) = self.layer.request(req, peer, now);
        call.client_keys.push(k.clone());
        self.by_client.insert(
            k,
            Purpose::InDialog {
                call: id,
                to: side.other(),
                server: Some((key, Box::new(m))),
                agreed,
            },
        );
        emit(out, step);
    }

    #[allow(clippy::too_many_arguments)]
    fn relay_response(
        &mut self,
        id: CallId,
        to: Side,
        server: Option<(TxKey, Box<Message>)>,
        agreed: Option<timer::Agreed>,
        m: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some((skey, sreq)) = server else { return };
        let mut status = m.status().unwrap_or(500);
        let mut reason = m.reason();
        let method = sreq.method().unwrap_or_default().to_string();
        if (200..300).contains(&status)
            && method == "INVITE"
            && !is_sdp(&sreq)
            && self.add_streams(id, to, &skey, &sreq, Some((&m, agreed)), out, now)
        {
            // The offer in the 2xx adds streams: the 2xx goes on once their sessions exist.
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let was_offer = method == "INVITE" || (method == "UPDATE" && is_sdp(&sreq));
        if was_offer {
            call.negotiating = false;
            if status >= 300 {
                // A refused or failed re-offer leaves the session as it was (RFC 3264 §8).
                call.abandon_offer();
            }
        }
        if (200..300).contains(&status)
            && let Some(leg) = call.leg_mut(to)
        {
            leg.refresh_target(&m);
        }
        let body = if (200..300).contains(&status) && is_sdp(&m) {
            // An answer to the relayed offer, or the offer in a 2xx to an INVITE without SDP.
            let kind = if is_sdp(&sreq) {
                SdpKind::Answer
            } else {
                // The offer in a 2xx to a re-INVITE without SDP: its ACK must bring the answer.
                call.answer_in_ack = method == "INVITE";
                SdpKind::Offer
            };
            match self.answer_body(id, to, &m, kind, out) {
                Ok(b) => b,
                Err(why) => {
                    self.refuse_in_dialog_answer(id, to, &skey, &sreq, &m, &why, out, now);
                    return;
                }
            }
        } else {
            None
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut extra = passed(&m);
        if status == 422
            && let Some(t) = call.timers[slot(to)].as_mut()
        {
            // Mediator's own Session-Expires on that leg was too short: the sender asked none
            // of it, so it is not told 422 (it has no Min-SE to give); the next request on that
            // leg asks the callee's Min-SE.
            if let Some(n) = timer::min_se(&m).filter(|n| *n <= timer::MAX_SE) {
                t.min_se = t.min_se.max(n);
                t.ask = Some(t.interval.max(n));
            }
            status = 500;
            reason = reason_phrase(500).to_string();
            extra.push((
                "Warning",
                warning(&format!(
                    "the {} side refused Mediator's session interval; try again",
                    to.name()
                )),
            ));
        }
        if method == "INVITE" || method == "UPDATE" {
            if let Some(l) = call.leg_mut(to.other()) {
                extra.push(("Contact", contact(&l.peer)));
            }
            if (200..300).contains(&status) {
                // Both legs' sessions were refreshed by this exchange (RFC 4028 §10), the
                // sender's with what it asked.
                if let Some(t) = call.timers[slot(to)].as_mut() {
                    let (i, we) = timer::as_uac(&m, t.ask.unwrap_or(t.interval));
                    t.refreshed(i, we, now);
                }
                let from = slot(to.other());
                if let Some(a) = agreed {
                    let t = call.timers[from].get_or_insert_with(|| {
                        SessionTimer::agreed(a, timer::allows_update(&sreq), now)
                    });
                    t.min_se = t.min_se.max(a.min_se);
                    t.refreshed(a.interval, a.we_refresh, now);
                } else if let Some(t) = call.timers[from].as_mut() {
                    t.refreshed(t.interval, t.we_refresh, now);
                }
                if let Some(t) = &call.timers[from] {
                    extra.extend(t.uas_headers());
                }
            }
        }
        let ctype = m.header("content-type").unwrap_or_else(|| SDP.into());
        let bytes = build_response(
            &sreq,
            status,
            &reason,
            "",
            &extra,
            body.as_deref().map(|b| (ctype.as_str(), b)),
        );
        if method == "INVITE" && (200..300).contains(&status) {
            call.pending_ack = Some(PendingAck {
                to,
                cseq: m.summary.cseq,
            });
            let from_side = to.other();
            let reliable = call.leg_mut(from_side).is_some_and(|l| l.peer.reliable());
            if !reliable {
                call.retx[slot(from_side)] = Some(Retx::new(
                    skey.clone(),
                    bytes.clone(),
                    from_side,
                    now,
                    self.cfg.timers.t1,
                ));
                self.wake.push(Reverse((now + self.cfg.timers.t1, id)));
            }
        }
        let step = self.layer.respond(&skey, status, bytes, now);
        emit(out, step);
        self.wake_timers(id, now);
    }

    // ---- time -------------------------------------------------------------------------------

    pub fn next_deadline(&self) -> Option<Instant> {
        let calls = self.wake.peek().map(|Reverse((at, _))| *at);
        let probes = self
            .health
            .values()
            .flat_map(|tp| tp.probes.iter().map(Probe::deadline))
            .min();
        calls
            .into_iter()
            .chain(self.layer.next_deadline())
            .chain(probes)
            .min()
    }

    /// The topology may have changed: trunks added, removed or re-configured are probed (or no
    /// longer) from now on. The edge calls this whenever it picks up a new topology.
    pub fn on_topology(&mut self, topo: &Topology, now: Now) -> Vec<Action> {
        self.wall_ms = now.unix_ms;
        let wanted = dns::wanted(topo);
        self.dns.retain(|q, _| wanted.contains(q));
        let mut out = Vec::new();
        self.probe(topo, &mut out, now.mono);
        out
    }

    /// The edge's resolver answered `query` (a name [`dns::wanted`] lists): calls and probes
    /// use it from now on, and requests from its addresses are matched to its trunks. Answers for
    /// names the topology no longer uses are dropped by [`Engine::on_topology`].
    pub fn on_dns(
        &mut self,
        topo: &Topology,
        query: dns::Query,
        answer: dns::Resolution,
        now: Now,
    ) -> Vec<Action> {
        self.wall_ms = now.unix_ms;
        if dns::wanted(topo).contains(&query) {
            self.dns.insert(query, answer);
        }
        let mut out = Vec::new();
        self.probe(topo, &mut out, now.mono);
        out
    }

    /// Every (listening address, transport, peer IP) a configured peer may reach Mediator on
    /// under `topo` and the DNS answers in use: the transports refuse a TCP or TLS connection
    /// from anywhere else before reading from it.
    pub fn peer_addresses(
        &self,
        topo: &Topology,
    ) -> HashSet<(
        std::net::SocketAddr,
        mediator_sip::Transport,
        std::net::IpAddr,
    )> {
        routing::peer_addresses(topo, &self.dns)
    }

    /// The DNS answers in use, by query.
    pub fn resolutions(&self) -> Vec<(dns::Query, dns::Resolution)> {
        let mut v: Vec<_> = self
            .dns
            .iter()
            .map(|(q, r)| (q.clone(), r.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn on_timer(&mut self, topo: &Topology, now: Now) -> Vec<Action> {
        self.wall_ms = now.unix_ms;
        let now = now.mono;
        let mut out = Vec::new();
        let step = self.layer.on_timer(now);
        self.absorb(step, &mut out, topo, now);
        self.probe(topo, &mut out, now);
        let mut due: Vec<CallId> = Vec::new();
        while let Some(Reverse((at, id))) = self.wake.peek().copied() {
            if at > now {
                break;
            }
            self.wake.pop();
            if !due.contains(&id) {
                due.push(id);
            }
        }
        for id in due {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let unacked = call
                .retx
                .iter()
                .flatten()
                .find(|r| r.at <= now && r.until <= now)
                .map(|r| r.side);
            if call.phase != Phase::Answered
                && let Some(side) = unacked
            {
                // RFC 3261 §13.3.1.4: a 2xx unacknowledged for 64×T1 ends the session (the
                // caller's first 2xx has its own deadline, `ack_deadline`).
                call.retx[slot(side)] = None;
                let why = format!("no ACK from the {} side for the 2xx", side.name());
                self.hangup(id, 408, &why, &mut out, now);
                continue;
            }
            // Each side's 2xx awaiting its ACK is retransmitted on its own clock.
            for r in call.retx.iter_mut().flatten() {
                if r.at > now {
                    continue;
                }
                r.interval = (r.interval * 2).min(self.cfg.timers.t2);
                r.at = now + r.interval;
                self.wake.push(Reverse((r.at, id)));
                let (key, bytes) = (r.key.clone(), r.bytes.clone());
                let step = self.layer.respond(&key, 200, bytes, now);
                emit(&mut out, step);
            }
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            if call.ack_deadline.is_some_and(|d| d <= now) {
                self.hangup(
                    id,
                    408,
                    "the caller never acknowledged the answer",
                    &mut out,
                    now,
                );
                continue;
            }
            self.session_timers(id, &mut out, now);
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let expired = call
                .attempt
                .as_ref()
                .is_some_and(|a| a.deadline.is_some_and(|d| d <= now) || a.ring_until <= now);
            if expired && let Some(att) = call.attempt.take() {
                let t = &call.targets[att.target];
                if att.provisional {
                    tracing::info!(call = id, trunk = %t.trunk, limit_s = t.ring_limit.as_secs(), "ring limit: no final answer in time (Timer C); cancelled");
                } else if att.ring_until <= now {
                    tracing::info!(call = id, trunk = %t.trunk, limit_s = t.ring_limit.as_secs(), "ring limit: no answer in time (Timer C)");
                } else {
                    tracing::info!(call = id, trunk = %t.trunk, "fast failover: no provisional in time");
                }
                call.tried.push((t.label(), 408));
                if call.last.is_none() {
                    call.last = Some((408, "Request Timeout".into()));
                }
                let p = att.provisional;
                self.orphan(att, p, &mut out, now);
                self.next_attempt(id, &mut out, now);
            }
        }
        out
    }

    // ---- the end of a call ------------------------------------------------------------------

    /// A relay reports that a session's media stopped (no packet either way for its timeout).
    /// Once every live stream of a confirmed call has stopped (a stream the far side declined or
    /// dropped with port 0 does not count), the call is ended on both legs with a BYE carrying
    /// `Reason: SIP;cause=408;text="media timeout"` (RFC 3326), and its record says why. A call
    /// still being set up is left to its own timers.
    pub fn on_media_timeout(&mut self, relay: &str, session_id: &str, now: Now) -> Vec<Action> {
        self.silence(relay, session_id, false, now)
    }

    /// A relay reports that a session's RTCP stopped (no RTCP either way for the RTCP timeout,
    /// after RTCP had been seen; asked only on trunks with `rtcp_active_calls` or
    /// `rtcp_calls_on_hold`). The call ends as for a media timeout, once every live stream is
    /// silent one way or the other, with `Reason: SIP;cause=408;text="rtcp timeout"`.
    pub fn on_rtcp_timeout(&mut self, relay: &str, session_id: &str, now: Now) -> Vec<Action> {
        self.silence(relay, session_id, true, now)
    }

    fn silence(&mut self, relay: &str, session_id: &str, rtcp: bool, now: Now) -> Vec<Action> {
        self.wall_ms = now.unix_ms;
        let now = now.mono;
        let mut out = Vec::new();
        let Some(call) = self.calls.values_mut().find(|c| {
            c.streams
                .iter()
                .any(|s| s.session_id == session_id && s.relay == relay)
        }) else {
            return out;
        };
        for s in call
            .streams
            .iter_mut()
            .filter(|s| s.session_id == session_id && s.relay == relay)
        {
            if rtcp {
                s.rtcp_timed_out = true;
            } else {
                s.timed_out = true;
            }
        }
        let id = call.id;
        // Confirmed only: no BYE may go to a caller before its ACK.
        if call.phase != Phase::Confirmed
            || call
                .streams
                .iter()
                .any(|s| s.live && !s.timed_out && !s.rtcp_timed_out)
        {
            return out;
        }
        let why = if rtcp {
            "rtcp timeout"
        } else {
            "media timeout"
        };
        tracing::info!(call = id, session = session_id, "{why}");
        let reason = [("Reason", format!("SIP;cause=408;text=\"{why}\""))];
        self.hangup_with(id, 200, why, &reason, &mut out, now);
        out
    }

    /// Ends call `id` from Mediator's side (the operator's EndCall): a confirmed call gets a BYE
    /// on both legs, one still being set up is answered 487 and its attempt given up (CANCELled
    /// once it has had a provisional). A call answered but not yet acknowledged by its caller is
    /// refused for the moment: neither leg may get a BYE before its ACK (RFC 3261 §15).
    pub fn end_call(&mut self, id: CallId, why: &str, now: Now) -> Result<Vec<Action>, EndRefused> {
        self.wall_ms = now.unix_ms;
        let now = now.mono;
        let phase = self.calls.get(&id).ok_or(EndRefused::NotInProgress)?.phase;
        let mut out = Vec::new();
        match phase {
            Phase::Answered => return Err(EndRefused::Answering),
            Phase::Confirmed => {
                tracing::info!(call = id, why, "ending the call on request");
                self.hangup(id, 200, why, &mut out, now);
            }
            Phase::Media | Phase::Calling | Phase::Early => {
                tracing::info!(
                    call = id,
                    why,
                    "ending the call on request before its answer"
                );
                self.terminate_caller(id, &mut out, now);
                self.end(id, 487, why, &mut out, now);
            }
        }
        Ok(out)
    }

    fn end(&mut self, id: CallId, status: u16, why: &str, out: &mut Vec<Action>, now: Instant) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        self.by_invite.remove(&call.a_key);
        self.dialogs.remove(&call.a.key());
        for t in &call.fork_tags {
            self.dialogs.remove(&(call.a.call_id.clone(), t.clone()));
        }
        if let Some(b) = &call.b {
            self.dialogs.remove(&b.key());
        }
        if let Some(a) = &call.attempt {
            self.dialogs.remove(&a.leg.key());
        }
        self.identities.remove(&call.ident);
        for k in call.refresh_keys.iter().flatten() {
            self.by_client.remove(k);
        }
        if let Some(add) = &call.adding {
            // A re-offer held for its new streams' sessions gets its answer too.
            self.answer_relayed(&add.key, &add.m, 487, out, now);
        }
        for k in &call.client_keys {
            if matches!(
                self.by_client.get(k),
                Some(Purpose::Invite { .. } | Purpose::InDialog { .. })
            ) && let Some(Purpose::InDialog {
                server: Some((skey, sreq)),
                ..
            }) = self.by_client.remove(k)
            {
                // A request still being relayed across gets its answer (RFC 3261 §15.1.2).
                self.answer_relayed(&skey, &sreq, 487, out, now);
            }
        }
        let mut record = info(&call, now);
        record.state = "ended";
        record.ended_unix_ms = Some(self.wall_ms);
        record.status = status;
        record.end_reason = why.to_string();
        let sessions = call
            .streams
            .iter()
            .map(|s| (s.relay.clone(), s.session_id.clone()))
            .collect();
        let early_sessions: Vec<(String, String)> = call
            .delayed_forks
            .iter()
            .flat_map(|f| f.sessions())
            .collect();
        if !early_sessions.is_empty() {
            // Other early dialogs' own early offers' sessions.
            out.push(Action::DeleteMedia {
                pool: call.pool.clone(),
                sessions: early_sessions,
            });
        }
        out.push(Action::Ended {
            record: Box::new(record),
            pool: call.pool.clone(),
            sessions,
        });
    }
}

/// Why [`Engine::end_call`] did not end a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndRefused {
    NotInProgress,
    /// Answered, waiting for the caller's ACK (at most a few round trips).
    Answering,
}

/// The sends of a layer step (one that has no events: a response or a new request).
fn emit(out: &mut Vec<Action>, step: Step) {
    for (to, bytes) in step.send {
        out.push(Action::Send { to, bytes });
    }
}

/// The Record-Route of the caller's INVITE, copied into every response that makes or confirms
/// its dialog (RFC 3261 §12.1.1).
fn record_routes(invite: &Message) -> Vec<(&'static str, String)> {
    invite
        .headers_named("record-route")
        .into_iter()
        .map(|v| ("Record-Route", v))
        .collect()
}

/// A Warning naming why, bounded (a reason may quote a peer; an error reply stays small).
fn warning(why: &str) -> String {
    let mut text: String = why
        .chars()
        .map(|c| {
            if c.is_control() || c == '"' || c == '\\' {
                '\''
            } else {
                c
            }
        })
        .take(200)
        .collect();
    if why.chars().count() > 200 {
        text.push('…');
    }
    format!("399 mediator \"{text}\"")
}

pub(crate) mod admission;
mod call;
mod crypto;
mod fork;
mod health;
mod media;
mod routing;
mod timer;
mod uas;
mod view;

#[cfg(test)]
mod tests;

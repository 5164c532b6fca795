//! mediator-control's Prometheus metrics: calls ended by direction, trunk, gateway and final
//! status; call attempts per trunk and status; media-bypass calls; calls in progress and SIP
//! transactions; SIP messages in and out by method and status; requests refused (from strangers,
//! malformed); trunk health; relay health; sessions found without a call and deleted.
//!
//! Cardinality is bounded: labels are topology names (trunks, gateways, relays — the operator's),
//! directions, SIP methods (the standard ones, else `other`) and status codes (100–699, else
//! `invalid`) — never a call, a number or an address taken from a message.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use mediator_b2bua::{CallInfo, TrunkState};
use mediator_serve::prometheus_client::collector::Collector;
use mediator_serve::prometheus_client::encoding::DescriptorEncoder;
use mediator_serve::prometheus_client::metrics::counter::Counter;
use mediator_serve::prometheus_client::metrics::family::Family;
use mediator_serve::prometheus_client::metrics::gauge::Gauge;
use mediator_serve::prometheus_client::registry::Registry;
use mediator_serve::{Labels, counter, gauge};

type LabelSet = Vec<(&'static str, String)>;

/// The counters the SIP runtime moves as things happen.
#[derive(Debug, Default)]
pub struct Metrics {
    calls: Family<LabelSet, Counter>,
    attempts: Family<LabelSet, Counter>,
    bypass: Family<LabelSet, Counter>,
    sip: Family<LabelSet, Counter>,
    active: Gauge,
    transactions: Gauge,
    strangers: AtomicU64,
    malformed: AtomicU64,
    tcp_held: Gauge,
    tcp_refused: AtomicU64,
    calls_refused: AtomicU64,
    calls_refused_draining: AtomicU64,
    /// Each pool's calls in progress and whether it refuses new calls (draining, or the daemon
    /// stopping), published once a second.
    pools: std::sync::Mutex<Vec<(String, usize, bool)>>,
}

/// The SIP methods counted by name; any other is `other`.
const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "UPDATE",
    "INFO",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
    "MESSAGE",
    "PUBLISH",
];

fn method_label(m: &[u8]) -> &'static str {
    METHODS
        .iter()
        .find(|k| k.as_bytes().eq_ignore_ascii_case(m))
        .copied()
        .unwrap_or("other")
}

/// (method, status) of a SIP message as labels: a request's method and "", a response's CSeq
/// method and status code. Reads the start line and the headers only.
pub fn classify(bytes: &[u8]) -> (&'static str, String) {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len().min(4096));
    let head = &bytes[..head_end];
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    if let Some(rest) = first.strip_prefix(b"SIP/2.0 ") {
        let status = rest
            .get(..3)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u16>().ok())
            .filter(|s| (100..=699).contains(s))
            .map_or_else(|| "invalid".to_string(), |s| s.to_string());
        let method = lines
            .find_map(|l| {
                let (name, value) = l.split_at(l.iter().position(|&b| b == b':')?);
                if !name.trim_ascii().eq_ignore_ascii_case(b"cseq") {
                    return None;
                }
                value[1..]
                    .trim_ascii()
                    .split(|b| b.is_ascii_whitespace())
                    .nth(1)
            })
            .map_or("other", method_label);
        (method, status)
    } else {
        let method = first.split(|&b| b == b' ').next().unwrap_or_default();
        (method_label(method), String::new())
    }
}

impl Metrics {
    /// A SIP message received (`out` false) or sent.
    pub fn sip(&self, bytes: &[u8], out: bool) {
        let (method, status) = classify(bytes);
        let dir = if out { "out" } else { "in" };
        self.sip
            .get_or_create(&vec![
                ("direction", dir.to_string()),
                ("method", method.to_string()),
                ("status", status),
            ])
            .inc();
    }

    /// A call's record: counted by direction, trunk, gateway and final status, each attempt by
    /// trunk and status, and a media-bypass call by trunk.
    pub fn ended(&self, c: &CallInfo) {
        self.calls
            .get_or_create(&vec![
                ("direction", c.direction.to_string()),
                ("trunk", c.trunk.clone()),
                ("gateway", c.gateway.clone()),
                ("status", c.status.to_string()),
            ])
            .inc();
        for (trunk, status) in &c.attempts {
            self.attempts
                .get_or_create(&vec![
                    ("trunk", trunk.clone()),
                    ("status", status.to_string()),
                ])
                .inc();
        }
        if c.media_bypass {
            self.bypass
                .get_or_create(&vec![("trunk", c.trunk.clone())])
                .inc();
        }
    }

    /// Each pool's calls in progress and whether it takes new calls.
    pub fn pools(&self, pools: Vec<(String, usize, bool)>) {
        if let Ok(mut p) = self.pools.lock() {
            *p = pools;
        }
    }

    /// Accepted TCP/TLS connections held, and refused since start.
    pub fn connections(&self, (held, refused): (usize, u64)) {
        self.tcp_held.set(held as i64);
        self.tcp_refused.store(refused, Ordering::Relaxed);
    }

    /// The engine's own figures, after each input: calls in progress, transactions, and the
    /// requests it refused since start (strangers, malformed).
    pub fn engine(
        &self,
        active: usize,
        transactions: usize,
        refused: (u64, u64),
        (calls_refused, draining): (u64, u64),
    ) {
        self.calls_refused.store(calls_refused, Ordering::Relaxed);
        self.calls_refused_draining
            .store(draining, Ordering::Relaxed);
        self.active.set(active as i64);
        self.transactions.set(transactions as i64);
        self.strangers.store(refused.0, Ordering::Relaxed);
        self.malformed.store(refused.1, Ordering::Relaxed);
    }
}

/// What is read at scrape time: the refused requests, trunk and relay health, orphans.
struct Scraped {
    handle: crate::calls::CallHandle,
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scraped")
    }
}

fn labels<const N: usize>(pairs: [(&'static str, String); N]) -> Labels<'static> {
    pairs.into_iter().map(|(k, v)| (k, Cow::Owned(v))).collect()
}

impl Collector for Scraped {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let m = self.handle.metrics();
        counter(
            &mut enc,
            "mediator_sip_requests_refused",
            "Requests refused without a transaction, by reason (stranger: not a configured peer; malformed)",
            &[
                (
                    labels([("reason", "stranger".into())]),
                    m.strangers.load(Ordering::Relaxed),
                ),
                (
                    labels([("reason", "malformed".into())]),
                    m.malformed.load(Ordering::Relaxed),
                ),
            ],
        )?;
        counter(
            &mut enc,
            "mediator_calls_refused",
            "New calls refused with 503 and Retry-After, by reason (admission: a pool's or trunk's limit, a peer's call rate; draining: the pool drains or the daemon stops)",
            &[
                (
                    labels([("reason", "admission".into())]),
                    m.calls_refused.load(Ordering::Relaxed),
                ),
                (
                    labels([("reason", "draining".into())]),
                    m.calls_refused_draining.load(Ordering::Relaxed),
                ),
            ],
        )?;
        let pools = m.pools.lock().map(|p| p.clone()).unwrap_or_default();
        let by_pool = |f: fn(&(String, usize, bool)) -> i64| -> Vec<(Labels, i64)> {
            pools
                .iter()
                .map(|p| (labels([("pool", p.0.clone())]), f(p)))
                .collect()
        };
        gauge(
            &mut enc,
            "mediator_pool_calls_active",
            "Calls in progress, by pool",
            &by_pool(|p| p.1 as i64),
        )?;
        gauge(
            &mut enc,
            "mediator_pool_draining",
            "1 while the pool refuses new calls (drained, or the daemon stopping gracefully)",
            &by_pool(|p| i64::from(p.2)),
        )?;
        counter(
            &mut enc,
            "mediator_sip_connections_refused",
            "TCP/TLS connections refused at accept (not a configured peer, or over the limits)",
            &[(Vec::new(), m.tcp_refused.load(Ordering::Relaxed))],
        )?;
        let trunks: Vec<(Labels, i64)> = self
            .handle
            .trunk_health()
            .into_iter()
            .map(|h| {
                (
                    labels([("trunk", h.trunk), ("gateway", h.gateway)]),
                    i64::from(h.state != TrunkState::Down),
                )
            })
            .collect();
        gauge(
            &mut enc,
            "mediator_trunk_up",
            "1 while a probed trunk is up or not yet judged, 0 while OPTIONS found it down",
            &trunks,
        )?;
        let relays: Vec<(Labels, i64)> = self
            .handle
            .relay_health()
            .into_iter()
            .map(|(pool, relay, up)| (labels([("pool", pool), ("relay", relay)]), i64::from(up)))
            .collect();
        gauge(
            &mut enc,
            "mediator_relay_up",
            "1 while a pool's dataplane answers, 0 while it is marked down",
            &relays,
        )?;
        counter(
            &mut enc,
            "mediator_relay_orphan_sessions_deleted",
            "Sessions found on a relay under this daemon's lease that no call owned, deleted",
            &[(Vec::new(), self.handle.orphans_deleted())],
        )?;
        Ok(())
    }
}

/// The registry `/metrics` serves for the SIP runtime behind `handle`.
pub fn registry(handle: &crate::calls::CallHandle) -> Registry {
    let m = handle.metrics();
    let mut r = Registry::default();
    r.register(
        "mediator_calls",
        "Calls ended, by direction, trunk, gateway and final SIP status (200: answered)",
        m.calls.clone(),
    );
    r.register(
        "mediator_call_attempts",
        "Trunks tried by calls, by trunk and the status each answered",
        m.attempts.clone(),
    );
    r.register(
        "mediator_media_bypass_calls",
        "Calls ended that used media bypass, by trunk",
        m.bypass.clone(),
    );
    r.register(
        "mediator_sip_messages",
        "SIP messages, by direction (in, out), method (a response's CSeq method) and status (responses)",
        m.sip.clone(),
    );
    r.register(
        "mediator_calls_active",
        "Calls in progress",
        m.active.clone(),
    );
    r.register(
        "mediator_sip_transactions",
        "SIP transactions held",
        m.transactions.clone(),
    );
    r.register(
        "mediator_sip_connections",
        "Accepted TCP/TLS connections held",
        m.tcp_held.clone(),
    );
    r.register_collector(Box::new(Scraped {
        handle: handle.clone(),
    }));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified_by_method_and_status_with_bounded_labels() {
        assert_eq!(
            classify(b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n"),
            ("INVITE", String::new())
        );
        assert_eq!(
            classify(b"SIP/2.0 486 Busy Here\r\nVia: x\r\ncseq:  7 invite\r\n\r\n"),
            ("INVITE", "486".into())
        );
        assert_eq!(classify(b"FOO sip:a@b SIP/2.0\r\n\r\n").0, "other");
        assert_eq!(
            classify(b"SIP/2.0 999 Odd\r\n\r\n"),
            ("other", "invalid".into())
        );
        assert_eq!(classify(b"\xff\xfe garbage").0, "other");
    }
}

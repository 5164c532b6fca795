//! Views: calls in progress as the API and the records show them.

use super::*;

impl Engine {
    pub fn calls(&self, now: Now) -> Vec<CallInfo> {
        let now = now.mono;
        let mut v: Vec<CallInfo> = self.calls.values().map(|c| info(c, now)).collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub fn call(&self, id: CallId, now: Now) -> Option<CallInfo> {
        let now = now.mono;
        self.calls.get(&id).map(|c| info(c, now))
    }

    /// Every dataplane session the calls in progress own, as (relay, session id): their
    /// streams', their early dialogs' forks' and delayed-offer forks'. A session a relay holds
    /// for this owner and not listed here (and not being created) belongs to no call.
    pub fn media_sessions(&self) -> std::collections::HashSet<(String, String)> {
        let mut all = std::collections::HashSet::new();
        for c in self.calls.values() {
            all.extend(
                c.streams
                    .iter()
                    .map(|s| (s.relay.clone(), s.session_id.clone())),
            );
            all.extend(
                c.forks
                    .iter()
                    .flat_map(|f| &f.streams)
                    .map(|s| (s.relay.clone(), s.session_id.clone())),
            );
            all.extend(c.delayed_forks.iter().flat_map(|f| f.sessions()));
        }
        all
    }
}

pub(super) fn leg_info(l: &Leg) -> LegInfo {
    LegInfo {
        side: l.side,
        sip_call_id: l.call_id.clone(),
        peer: l.peer.remote,
        local: l.peer.local,
        transport: l.peer.transport,
    }
}

pub(super) fn info(c: &Call, now: Instant) -> CallInfo {
    let t = c.target();
    let mut legs = vec![leg_info(&c.a)];
    if let Some(b) = c.b.as_ref().or(c.attempt.as_ref().map(|a| &a.leg)) {
        legs.push(leg_info(b));
    }
    CallInfo {
        id: c.id,
        direction: if c.outbound { "outbound" } else { "inbound" },
        state: c.phase.name(),
        pool: c.pool.clone(),
        trunk: t.map(|t| t.trunk.clone()).unwrap_or_default(),
        route: t.map(|t| t.route.clone()).unwrap_or_default(),
        gateway: t.map(|t| t.gateway.clone()).unwrap_or_default(),
        dialed: c.dialed.clone(),
        caller: c.caller.clone(),
        called: t.map(|t| t.called.clone()).unwrap_or_default(),
        calling: t.map(|t| t.calling.clone()).unwrap_or_default(),
        legs,
        attempts: c.tried.clone(),
        media_bypass: t.is_some_and(|t| t.bypass),
        streams: c
            .streams
            .iter()
            .map(|s| StreamInfo {
                index: s.index,
                session_id: s.session_id.clone(),
                relay: s.relay.clone(),
                srtp: c
                    .sec
                    .as_ref()
                    .map(|sec| sec.suites(s.index))
                    .unwrap_or_default(),
                srtp_passthrough: c.sec.as_ref().is_some_and(|sec| sec.passthrough),
            })
            .collect(),
        started_unix_ms: c.started_unix,
        answered_unix_ms: c.answered_unix,
        ended_unix_ms: None,
        duration_ms: c
            .answered_at
            .map(|a| now.saturating_duration_since(a).as_millis() as u64)
            .unwrap_or(0),
        status: 0,
        end_reason: String::new(),
    }
}

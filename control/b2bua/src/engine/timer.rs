//! Session timers (RFC 4028), one per leg: each leg is its own dialog, so the interval and who
//! refreshes are negotiated on each leg apart and never passed across. The pure parts live
//! here — reading Session-Expires and Min-SE, the decision a UAS makes on a request, the one a
//! UAC takes from a 2xx, the headers Mediator writes and when a leg is due — and the engine's
//! handlers below put them to work: the refreshes Mediator sends and their answers, the
//! refreshes it answers itself, and the end of a session whose refresh failed or never came.

use super::*;

/// RFC 4028 §4: no Min-SE may be below 90 s.
pub const MIN_SE_FLOOR: u32 = 90;
/// The longest interval Mediator agrees to (a day); a peer asking more gets this (RFC 4028
/// lets a UAS lower the interval down to the request's Min-SE).
pub const MAX_SE: u32 = 86_400;

/// Who refreshes, as the `refresher` parameter says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refresher {
    Uac,
    Uas,
}

/// A Session-Expires header: delta-seconds and the refresher, when given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Expires {
    pub(super) secs: u32,
    pub(super) refresher: Option<Refresher>,
}

/// One leg's session timer once negotiated.
#[derive(Clone, Debug)]
pub(super) struct SessionTimer {
    /// The session interval in seconds.
    pub(super) interval: u32,
    /// Mediator refreshes this leg (otherwise its peer does, and Mediator watches).
    pub(super) we_refresh: bool,
    /// The peer's Allow has UPDATE: refreshes go as UPDATE, otherwise as re-INVITE.
    pub(super) use_update: bool,
    /// The last refresh that succeeded (or the 2xx that set the session up).
    pub(super) refreshed_at: Instant,
    /// A refresh of Mediator's is in flight.
    pub(super) refreshing: bool,
    /// A refresh that failed without ending the session is tried again then.
    pub(super) retry_at: Option<Instant>,
    /// The largest Min-SE seen on this leg (Mediator's own, the peer's requests, a 422): every
    /// request Mediator sends on it carries it (RFC 4028 §7.1, §7.4).
    pub(super) min_se: u32,
    /// An interval asked for after a 422, in force once a refresh with it succeeds.
    pub(super) ask: Option<u32>,
    /// Refreshes have been failing (logged once per streak).
    pub(super) failing: bool,
}

/// What a leg's timer asks of the engine now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing before `at`.
    Wait(Instant),
    /// Send a refresh.
    Refresh,
    /// The session expired: its refresh never came (or ours kept failing).
    Expired,
}

impl SessionTimer {
    pub(super) fn new(
        interval: u32,
        we_refresh: bool,
        use_update: bool,
        min_se: u32,
        now: Instant,
    ) -> Self {
        SessionTimer {
            interval,
            we_refresh,
            use_update,
            refreshed_at: now,
            refreshing: false,
            retry_at: None,
            min_se,
            ask: None,
            failing: false,
        }
    }

    /// The timer a UAS agreement sets up.
    pub(super) fn agreed(a: Agreed, use_update: bool, now: Instant) -> Self {
        Self::new(a.interval, a.we_refresh, use_update, a.min_se, now)
    }

    fn secs(s: u32) -> Duration {
        Duration::from_secs(u64::from(s))
    }

    /// When the session ends without a refresh: for the refresher, at the interval; for the
    /// watching side, RFC 4028 §10's interval − min(32, interval/3), so its BYE goes before the
    /// peer's own expiry.
    pub(super) fn expires_at(&self) -> Instant {
        if self.we_refresh {
            self.refreshed_at + Self::secs(self.interval)
        } else {
            self.refreshed_at + Self::secs(self.interval - (self.interval / 3).min(32))
        }
    }

    /// What is due at `now` (RFC 4028 §10: the refresher refreshes at half the interval).
    pub(super) fn due(&self, now: Instant) -> Due {
        let expires = self.expires_at();
        if now >= expires {
            return Due::Expired;
        }
        if !self.we_refresh || self.refreshing {
            return Due::Wait(expires);
        }
        let at = self
            .retry_at
            .unwrap_or(self.refreshed_at + Self::secs(self.interval / 2))
            .min(expires);
        if now >= at {
            Due::Refresh
        } else {
            Due::Wait(at)
        }
    }

    /// A refresh (either way) succeeded with this interval and refresher.
    pub(super) fn refreshed(&mut self, interval: u32, we_refresh: bool, now: Instant) {
        self.interval = interval;
        self.we_refresh = we_refresh;
        self.refreshed_at = now;
        self.refreshing = false;
        self.retry_at = None;
        self.ask = None;
        self.failing = false;
    }

    /// Headers of a request Mediator sends on this leg (it is the request's UAC).
    pub(super) fn uac_headers(&self) -> Vec<(&'static str, String)> {
        let who = if self.we_refresh { "uac" } else { "uas" };
        let interval = self.ask.unwrap_or(self.interval);
        vec![
            ("Supported", "timer".into()),
            ("Session-Expires", format!("{interval};refresher={who}")),
            ("Min-SE", self.min_se.to_string()),
        ]
    }

    /// Headers of a 2xx Mediator sends on this leg (it is the UAS). RFC 4028 §9: refresher=uac
    /// in a 2xx goes with `Require: timer`.
    pub(super) fn uas_headers(&self) -> Vec<(&'static str, String)> {
        let who = if self.we_refresh { "uas" } else { "uac" };
        let mut h = vec![
            ("Supported", "timer".into()),
            (
                "Session-Expires",
                format!("{};refresher={who}", self.interval),
            ),
        ];
        if !self.we_refresh {
            h.push(("Require", "timer".into()));
        }
        h
    }
}

/// The Session-Expires of `m` (or its compact form `x`), if any.
pub(super) fn session_expires(m: &Message) -> Result<Option<Expires>, String> {
    let Some(v) = m.header("session-expires") else {
        return Ok(None);
    };
    let mut parts = v.split(';');
    let delta = parts.next().unwrap_or_default().trim();
    let secs: u32 = delta
        .parse()
        .ok()
        .filter(|_| !delta.is_empty() && delta.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("Session-Expires: '{}' is not delta-seconds", short(delta)))?;
    if secs == 0 {
        return Err("Session-Expires: 0 is not a session interval".into());
    }
    let mut refresher = None;
    for p in parts {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        if name.trim().eq_ignore_ascii_case("refresher") {
            refresher = match value.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                other => {
                    return Err(format!(
                        "Session-Expires: refresher '{}' is neither uac nor uas",
                        short(other)
                    ));
                }
            };
        }
    }
    Ok(Some(Expires { secs, refresher }))
}

fn short(s: &str) -> String {
    s.chars().take(20).collect()
}

/// The Min-SE of `m`, when given and well formed.
pub(super) fn min_se(m: &Message) -> Option<u32> {
    m.header("min-se")?.split(';').next()?.trim().parse().ok()
}

fn lists(m: &Message, header: &str, token: &str) -> bool {
    m.headers_named(header)
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The sender of `m` supports session timers (`Supported` or `Require` lists `timer`).
pub(super) fn supports_timer(m: &Message) -> bool {
    lists(m, "supported", "timer") || lists(m, "require", "timer")
}

pub(super) fn requires_timer(m: &Message) -> bool {
    lists(m, "require", "timer")
}

/// The sender of `m` accepts UPDATE (its Allow lists it).
pub(super) fn allows_update(m: &Message) -> bool {
    lists(m, "allow", "UPDATE")
}

/// Why a UAS refuses a request's session timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Refuse {
    /// 422 Session Interval Too Small, with Mediator's Min-SE.
    TooSmall { min_se: u32 },
    /// 400: the header cannot be read.
    Bad(String),
}

/// What Mediator, as a UAS, agrees to for a leg's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Agreed {
    pub(super) interval: u32,
    pub(super) we_refresh: bool,
    /// The larger of Mediator's Min-SE and the request's.
    pub(super) min_se: u32,
}

/// The interval and refresher Mediator, as the UAS of an INVITE or UPDATE on a leg whose timer
/// is `on`, agrees to: `None` when the leg has no timer (off and the peer does not require one;
/// its Session-Expires is then not even read). RFC 4028 §9: below Min-SE is 422 for a peer that
/// supports timers — one that does not could not retry, so its interval is raised instead; the
/// refresher asked for is taken, except that a peer without timer support is never made
/// refresher; with none asked, the peer refreshes when it supports timers, Mediator when it does
/// not. `default` is used when the request asks no interval, never below the request's own
/// Min-SE.
pub(super) fn as_uas(
    m: &Message,
    on: bool,
    default: u32,
    our_min_se: u32,
) -> Result<Option<Agreed>, Refuse> {
    if !(on || requires_timer(m)) {
        return Ok(None);
    }
    let se = session_expires(m).map_err(Refuse::Bad)?;
    let supports = supports_timer(m);
    if let Some(e) = se
        && e.secs < our_min_se
        && supports
    {
        return Err(Refuse::TooSmall { min_se: our_min_se });
    }
    let floor = min_se(m).unwrap_or(0).max(our_min_se);
    let interval = se
        .map_or(default, |e| e.secs)
        .clamp(floor, MAX_SE.max(floor));
    let we_refresh = !supports
        || match se.and_then(|e| e.refresher) {
            Some(Refresher::Uac) => false,
            Some(Refresher::Uas) => true,
            None => false,
        };
    Ok(Some(Agreed {
        interval,
        we_refresh,
        min_se: floor,
    }))
}

/// The interval and refresher a 2xx gives Mediator, the UAC of a request that asked for
/// `asked` seconds. A 2xx without Session-Expires comes from a peer without timers: Mediator
/// refreshes on its own (RFC 4028 §7.2 allows it), which keeps finding out whether the peer is
/// still there. A refresher the 2xx leaves out is Mediator (the UAC).
pub(super) fn as_uac(m: &Message, asked: u32) -> (u32, bool) {
    match session_expires(m) {
        Ok(Some(e)) => (
            e.secs.clamp(MIN_SE_FLOOR, MAX_SE),
            e.refresher != Some(Refresher::Uas),
        ),
        _ => (asked, true),
    }
}

/// The Reason of the BYEs that end a call whose session expired (RFC 3326).
pub(super) const EXPIRED: &str = "SIP;cause=408;text=\"session expired\"";

impl Engine {
    /// Wakes call `id` when its next session-timer duty is due.
    pub(super) fn wake_timers(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.phase != Phase::Confirmed {
            // Armed by the caller's ACK (no request may go before it).
            return;
        }
        let at = call
            .timers
            .iter()
            .flatten()
            .map(|t| match t.due(now) {
                Due::Wait(at) => at,
                _ => now,
            })
            .min();
        if let Some(at) = at {
            self.wake.push(Reverse((at, id)));
        }
    }

    /// The session-timer duties of call `id` at `now`: a refresh to send, or a session that
    /// expired, which ends the call on both legs with a BYE and a Reason.
    pub(super) fn session_timers(&mut self, id: CallId, out: &mut Vec<Action>, now: Instant) {
        for side in [Side::Pool, Side::Gateway] {
            let Some(call) = self.calls.get(&id) else {
                return;
            };
            if call.phase != Phase::Confirmed {
                break;
            }
            let Some(t) = &call.timers[slot(side)] else {
                continue;
            };
            match t.due(now) {
                Due::Wait(_) => {}
                Due::Refresh => self.send_refresh(id, side, out, now),
                Due::Expired => {
                    let why = if t.we_refresh {
                        format!(
                            "session expired: no refresh of the {} leg succeeded",
                            side.name()
                        )
                    } else {
                        format!("session expired: no refresh from the {} side", side.name())
                    };
                    tracing::info!(call = id, leg = side.name(), interval = t.interval, "{why}");
                    let reason = [("Reason", EXPIRED.to_string())];
                    self.hangup_with(id, 408, &why, &reason, out, now);
                    return;
                }
            }
        }
        self.wake_timers(id, now);
    }

    /// Sends a session refresh on the leg facing `side`: UPDATE without a body when its peer
    /// allows UPDATE, otherwise a re-INVITE offering again the SDP it last had from Mediator
    /// (RFC 4028 §7.4, §10).
    fn send_refresh(&mut self, id: CallId, side: Side, out: &mut Vec<Action>, now: Instant) {
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let s = slot(side);
        let Some(t) = call.timers[s].as_mut() else {
            return;
        };
        let invite = !t.use_update && call.sent_sdp[s].is_some();
        if invite && call.negotiating {
            // An offer is under way on the call: the refresh waits for it (no glare).
            t.retry_at = Some(now + Duration::from_secs(2));
            return;
        }
        let headers = t.uac_headers();
        let asked = t.ask.unwrap_or(t.interval);
        let body = if invite {
            call.sent_sdp[s].clone()
        } else {
            None
        };
        let method = if invite { "INVITE" } else { "UPDATE" };
        let Some(leg) = call.leg_mut(side) else {
            return;
        };
        let peer = leg.next_hop();
        let req = match leg.request(
            method,
            &branch,
            None,
            &headers,
            body.as_deref().map(|b| (SDP, b)),
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "building a session refresh");
                if let Some(t) = call.timers[s].as_mut() {
                    t.retry_at = Some(now + Duration::from_secs(10));
                }
                return;
            }
        };
        tracing::debug!(call = id, leg = side.name(), method, "session refresh");
        let over_tcp = side == Side::Gateway && call.target().is_some_and(|t| t.large_over_tcp);
        let (req, peer) = sized(req, peer, over_tcp);
        let (k, step) = self.layer.request(req, peer, now);
        if let Some(t) = call.timers[s].as_mut() {
            t.refreshing = true;
            t.retry_at = None;
        }
        if invite {
            call.refresh_invite[s] = true;
        }
        if let Some(old) = call.refresh_keys[s].replace(k.clone()) {
            self.by_client.remove(&old);
        }
        self.by_client.insert(
            k,
            Purpose::Refresh {
                call: id,
                to: side,
                asked,
                ack: None,
            },
        );
        emit(out, step);
    }

    /// The answer in the 2xx to Mediator's refresh re-INVITE on the leg facing `to` is not the
    /// SDP that leg last sent: the sessions follow it (where it receives, its keys), as for any
    /// answer; what the other leg was last sent stays as it was (nothing goes to it). An answer
    /// Mediator cannot use leaves the legs disagreeing: the call ends with the reason.
    fn refresh_answer_moved(
        &mut self,
        id: CallId,
        to: Side,
        m: &Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let other = slot(to.other());
        let kept = (call.sent_sdp[other].clone(), call.sent_offer[other]);
        tracing::info!(
            call = id,
            leg = to.name(),
            "a refresh's answer moves the media: the sessions follow it"
        );
        match self.answer_body(id, to, m, SdpKind::Answer, out) {
            Ok(_) => {
                if let Some(call) = self.calls.get_mut(&id) {
                    (call.sent_sdp[other], call.sent_offer[other]) = kept;
                }
            }
            Err(why) => {
                let why = format!("the answer to a session refresh is refused: {why}");
                self.hangup(id, 488, &why, out, now);
            }
        }
    }

    /// A final response to a refresh of Mediator's (RFC 4028 §10): a 2xx renews the leg (and a
    /// re-INVITE's is ACKed, again for each retransmission); 408 or 481 ends the call; a 422
    /// is retried at once with the peer's Min-SE; anything else is tried again shortly, until
    /// the session expires.
    pub(super) fn refresh_response(
        &mut self,
        key: TxKey,
        m: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let status = m.status().unwrap_or(500);
        let Some(Purpose::Refresh {
            call: id,
            to,
            asked,
            ack,
        }) = self.by_client.get(&key)
        else {
            return;
        };
        let (id, to, asked) = (*id, *to, *asked);
        if let Some(bytes) = ack {
            // A retransmission of the 2xx: the same ACK again.
            if (200..300).contains(&status)
                && let Some(peer) = self
                    .calls
                    .get_mut(&id)
                    .and_then(|c| c.leg_mut(to))
                    .map(|l| l.next_hop())
            {
                out.push(Action::Send {
                    to: peer,
                    bytes: bytes.clone(),
                });
            }
            return;
        }
        let invite = m.summary.cseq_method.eq_ignore_ascii_case("INVITE");
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&id) else {
            self.by_client.remove(&key);
            return;
        };
        let s = slot(to);
        if invite {
            call.refresh_invite[s] = false;
        }
        let ours_call_id = call
            .leg_mut(to)
            .is_some_and(|l| l.call_id.ends_with("@mediator"));
        match status {
            200..=299 => {
                let (i, we) = as_uac(&m, asked);
                if let Some(t) = call.timers[s].as_mut() {
                    t.refreshed(i, we, now);
                }
                // The answer to a refresh re-INVITE (Mediator offered again what the peer last
                // had) normally repeats the peer's SDP; one that differs (the peer moved its
                // media, changed its keys) is followed below.
                let moved = invite
                    && is_sdp(&m)
                    && call.recv_sdp[s].as_deref() != Some(m.body())
                    && !call.target().is_some_and(|t| t.bypass);
                let Some(leg) = call.leg_mut(to) else {
                    return;
                };
                leg.refresh_target(&m);
                if invite {
                    let peer = leg.next_hop();
                    if let Ok(a) = leg.request("ACK", &branch, Some(m.summary.cseq), &[], None) {
                        let bytes = a.to_bytes();
                        out.push(Action::Send {
                            to: peer,
                            bytes: bytes.clone(),
                        });
                        if let Some(Purpose::Refresh { ack, .. }) = self.by_client.get_mut(&key) {
                            *ack = Some(bytes);
                        }
                    }
                } else {
                    self.by_client.remove(&key);
                }
                if moved {
                    self.refresh_answer_moved(id, to, &m, out, now);
                }
            }
            408 | 481 => {
                self.by_client.remove(&key);
                let why = format!("session refresh of the {} leg failed: {status}", to.name());
                let reason = [("Reason", EXPIRED.to_string())];
                self.hangup_with(id, 408, &why, &reason, out, now);
                return;
            }
            _ => {
                self.by_client.remove(&key);
                // RFC 3261 §14.1: after 491, 2.1–4 s when Mediator owns the dialog's Call-ID,
                // up to 2 s otherwise.
                let glare = if ours_call_id {
                    2100 + self.jitter(1900)
                } else {
                    self.jitter(2000)
                };
                let Some(t) = self.calls.get_mut(&id).and_then(|c| c.timers[s].as_mut()) else {
                    return;
                };
                t.refreshing = false;
                let retry = match (status, min_se(&m)) {
                    (422, Some(n)) if n <= MAX_SE => {
                        // Asked again at once with the peer's Min-SE; the interval in force
                        // changes only when that refresh succeeds.
                        t.min_se = t.min_se.max(n);
                        t.ask = Some(t.interval.max(n));
                        Duration::ZERO
                    }
                    (491, _) => Duration::from_millis(glare),
                    (405 | 501, _) if !invite => {
                        // The peer does not take UPDATE after all: re-INVITE from now on.
                        t.use_update = false;
                        Duration::ZERO
                    }
                    _ => Duration::from_secs(10),
                };
                if !t.failing {
                    t.failing = true;
                    tracing::info!(
                        call = id,
                        leg = to.name(),
                        status,
                        "session refresh refused; trying again until the session expires"
                    );
                }
                t.retry_at = Some(now + retry);
            }
        }
        self.wake_timers(id, now);
    }

    /// A session refresh from a peer, answered by Mediator itself and not passed across (each
    /// leg's session is its own, RFC 4028): an UPDATE without a body, or a re-INVITE whose SDP
    /// repeats the last one (answered with the SDP Mediator last sent that leg). The leg's
    /// timer, if any, is renewed with what the request asks; with none (the trunk's
    /// `session_timer` off) the call survives the peer's refreshes all the same.
    pub(super) fn answer_refresh(
        &mut self,
        id: CallId,
        side: Side,
        key: TxKey,
        m: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let (default, our_min) = (self.cfg.session_expires, self.cfg.min_se);
        let t1 = self.cfg.timers.t1;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let s = slot(side);
        let on = call.timers[s].is_some();
        let mut extra: Vec<(&'static str, String)> = Vec::new();
        match as_uas(&m, on, default, our_min) {
            Ok(Some(a)) => {
                let t = call.timers[s]
                    .get_or_insert_with(|| SessionTimer::agreed(a, allows_update(&m), now));
                t.min_se = t.min_se.max(a.min_se);
                t.refreshed(a.interval, a.we_refresh, now);
                extra.extend(t.uas_headers());
            }
            Ok(None) => {}
            Err(Refuse::TooSmall { min_se }) => {
                let why = format!("the session interval is below Mediator's Min-SE of {min_se} s");
                self.reply_with(
                    &key,
                    &m,
                    422,
                    &why,
                    vec![("Min-SE", min_se.to_string())],
                    out,
                    now,
                );
                return;
            }
            Err(Refuse::Bad(why)) => {
                self.reply(&key, &m, 400, &why, out, now);
                return;
            }
        }
        let invite = m.method() == Some("INVITE");
        let body = if invite {
            call.sent_sdp[s].clone()
        } else {
            None
        };
        let Some(leg) = call.leg_mut(side) else {
            return;
        };
        leg.refresh_target(&m);
        let peer = leg.peer;
        extra.push(("Contact", contact(&peer)));
        extra.push(("Allow", ALLOW.into()));
        let bytes = build_response(&m, 200, "OK", "", &extra, body.as_deref().map(|b| (SDP, b)));
        tracing::debug!(
            call = id,
            leg = side.name(),
            method = m.method().unwrap_or_default(),
            "answered a session refresh"
        );
        if invite && !peer.reliable() {
            // Its 2xx is retransmitted until the ACK, like any (RFC 3261 §13.3.1.4).
            call.retx[slot(side)] = Some(Retx::new(key.clone(), bytes.clone(), side, now, t1));
            self.wake.push(Reverse((now + t1, id)));
        }
        let step = self.layer.respond(&key, 200, bytes, now);
        emit(out, step);
        self.wake_timers(id, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: &str) -> Message {
        Message::parse(
            format!(
                "INVITE sip:1@198.18.1.1 SIP/2.0\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK-1\r\n\
                 From: <sip:a@198.18.1.2>;tag=1\r\nTo: <sip:1@198.18.1.1>\r\nCall-ID: t\r\n\
                 CSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("parses")
    }

    fn agreed(interval: u32, we_refresh: bool, min_se: u32) -> Agreed {
        Agreed {
            interval,
            we_refresh,
            min_se,
        }
    }

    #[test]
    fn a_uas_takes_the_asked_refresher_and_refuses_below_min_se() {
        let m = req("Supported: timer\r\nSession-Expires: 1800;refresher=uas\r\n");
        assert_eq!(as_uas(&m, true, 1800, 90), Ok(Some(agreed(1800, true, 90))));
        let m = req("k: timer\r\nx: 600\r\n");
        assert_eq!(
            as_uas(&m, true, 1800, 90),
            Ok(Some(agreed(600, false, 90))),
            "compact forms; no refresher asked and timers supported: the peer refreshes"
        );
        let m = req("Session-Expires: 600\r\n");
        assert_eq!(
            as_uas(&m, true, 1800, 90),
            Ok(Some(agreed(600, true, 90))),
            "a peer without timer support never refreshes: Mediator does"
        );
        let m = req("Supported: timer\r\nSession-Expires: 60\r\n");
        assert_eq!(
            as_uas(&m, true, 1800, 90),
            Err(Refuse::TooSmall { min_se: 90 })
        );
        let m = req("Supported: timer\r\nMin-SE: 1000\r\n");
        assert_eq!(
            as_uas(&m, true, 600, 90),
            Ok(Some(agreed(1000, false, 1000))),
            "never below the request's Min-SE"
        );
        let m = req("Session-Expires: 60;refresher=uac\r\n");
        assert_eq!(
            as_uas(&m, true, 1800, 90),
            Ok(Some(agreed(90, true, 90))),
            "a peer without timer support cannot take a 422 nor refresh: raised, Mediator refreshes"
        );
        let m = req("Session-Expires: soon\r\n");
        assert!(matches!(as_uas(&m, true, 1800, 90), Err(Refuse::Bad(w)) if w.contains("soon")));
    }

    #[test]
    fn off_means_no_timer_unless_the_peer_requires_one() {
        let m = req("Supported: timer\r\nSession-Expires: 1800\r\n");
        assert_eq!(as_uas(&m, false, 1800, 90), Ok(None));
        let m = req("Session-Expires: soon\r\n");
        assert_eq!(as_uas(&m, false, 1800, 90), Ok(None), "off: not even read");
        let m = req("Require: timer\r\nSession-Expires: 1800;refresher=uac\r\n");
        assert_eq!(
            as_uas(&m, false, 1800, 90),
            Ok(Some(agreed(1800, false, 90)))
        );
    }

    #[test]
    fn a_2xx_without_session_expires_leaves_the_refreshing_to_mediator() {
        let ok = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.18.1.1;branch=z9hG4bK-1\r\n\
              From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: t\r\nCSeq: 1 INVITE\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .expect("parses");
        assert_eq!(as_uac(&ok, 1800), (1800, true));
    }

    #[test]
    fn the_refresher_refreshes_at_half_and_the_watcher_gives_up_before_expiry() {
        let t0 = Instant::now();
        let s = SessionTimer::new(90, true, true, 90, t0);
        assert_eq!(s.due(t0), Due::Wait(t0 + Duration::from_secs(45)));
        assert_eq!(s.due(t0 + Duration::from_secs(45)), Due::Refresh);
        assert_eq!(s.due(t0 + Duration::from_secs(90)), Due::Expired);
        let w = SessionTimer::new(90, false, true, 90, t0);
        assert_eq!(w.due(t0), Due::Wait(t0 + Duration::from_secs(60)));
        assert_eq!(w.due(t0 + Duration::from_secs(60)), Due::Expired);
        let w = SessionTimer::new(1800, false, true, 90, t0);
        assert_eq!(w.expires_at(), t0 + Duration::from_secs(1768));
    }

    #[test]
    fn the_headers_say_who_refreshes() {
        let t0 = Instant::now();
        let watching = SessionTimer::new(600, false, true, 90, t0);
        let h = watching.uas_headers();
        assert!(h.contains(&("Session-Expires", "600;refresher=uac".into())));
        assert!(
            h.contains(&("Require", "timer".into())),
            "uac in a 2xx: Require: timer"
        );
        let refreshing = SessionTimer::new(600, true, true, 90, t0);
        assert!(
            !refreshing
                .uas_headers()
                .iter()
                .any(|(n, _)| *n == "Require")
        );
        assert!(
            refreshing
                .uac_headers()
                .contains(&("Session-Expires", "600;refresher=uac".into()))
        );
    }
}

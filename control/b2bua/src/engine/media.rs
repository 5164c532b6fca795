//! Media anchoring: the sessions a call asks of its pool's relays, what they answer, and each
//! SDP re-pointed at the relay for the other side (with the sessions told where the peer
//! receives).

use super::*;

/// Deletes sessions the relays made that no call will use.
fn delete_made(pool: &str, sessions: Vec<(String, MediaAnswer)>) -> Action {
    Action::DeleteMedia {
        pool: pool.to_string(),
        sessions: sessions
            .into_iter()
            .map(|(r, s)| (r, s.session_id))
            .collect(),
    }
}

/// Where a stream's peer receives, as the media request says it.
pub(super) fn remote(s: &crate::sdp::Stream) -> Remote {
    Remote {
        rtp: s.rtp,
        rtcp: if s.rtcp_mux { None } else { s.rtcp },
    }
}

/// [`remote`] for a session already made: on an rtcp-mux one (RFC 5761) a peer that answered
/// without `a=rtcp-mux` still has its RTCP on the session's one port — its separate RTCP address
/// is not given (the relay would refuse the update, and the peer's RTP address with it).
fn remote_of(st: &Stream, s: &crate::sdp::Stream) -> Remote {
    let r = remote(s);
    if st.mux {
        Remote { rtcp: None, ..r }
    } else {
        r
    }
}

impl Engine {
    pub(super) fn session_requests(&mut self, id: CallId) -> Result<Vec<MediaRequest>, Refused> {
        let Some(call) = self.calls.get(&id) else {
            return Ok(Vec::new());
        };
        let Some(offer) = call.offer.clone() else {
            return Ok(Vec::new());
        };
        let offerer = call.offerer;
        let all: Vec<usize> = offer.streams().iter().map(|s| s.index).collect();
        self.requests_for(id, &offer, offerer, &all, true)
    }

    /// The sessions for the streams `indexes` of `sdp`, an offer from `offerer`'s side: its
    /// peer's addresses, the target's latching and RTCP settings, and (when `keyed`) the keys
    /// the call's encryption gives each side.
    pub(super) fn requests_for(
        &mut self,
        id: CallId,
        sdp: &Sdp,
        offerer: Side,
        indexes: &[usize],
        keyed: bool,
    ) -> Result<Vec<MediaRequest>, Refused> {
        let prefix = self.prefix.clone();
        let (media_timeout_secs, hold_timeout_secs) =
            (self.cfg.media_timeout_secs, self.cfg.hold_timeout_secs);
        let rtcp = self.cfg.rtcp_timeout_secs;
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(Vec::new());
        };
        let Some(t) = call.target() else {
            return Ok(Vec::new());
        };
        let latching = t.latching;
        let settings = (t.latching, t.rtcp_active, t.rtcp_on_hold);
        let rtcp_timeout_secs = if t.rtcp_active { rtcp } else { 0 };
        let rtcp_hold_timeout_secs = if t.rtcp_on_hold { rtcp } else { 0 };
        // The answerer's leg's policies: every trunk the call may try, or (a delayed offer,
        // made by the callee) the caller's.
        let callee: Vec<LegPolicy> = if offerer == call.a_side {
            call.targets
                .iter()
                .filter(|t| !t.bypass)
                .map(|t| t.srtp)
                .collect()
        } else {
            vec![call.a_policy]
        };
        call.media_settings = Some(settings);
        let on_hold = sdp.on_hold();
        // Sessions given up earlier (their deletion may still be on its way) keep their ids.
        let generation = match call.media_generation {
            0 => String::new(),
            n => format!("-{n}"),
        };
        let mut requests = Vec::new();
        for s in sdp
            .streams()
            .into_iter()
            .filter(|s| indexes.contains(&s.index))
        {
            let known = remote(&s);
            let (pool, gateway) = if offerer == Side::Pool {
                (known, Remote::default())
            } else {
                (Remote::default(), known)
            };
            let srtp = match call.sec.as_mut() {
                Some(sec) if keyed => sec.session_keys(s.index, offerer, &callee)?,
                _ => [None, None],
            };
            requests.push(MediaRequest {
                session_id: format!("m{}-{}-{}{}", prefix, id, s.index, generation),
                pool,
                gateway,
                latching,
                strict_source: true,
                rtcp_mux: s.rtcp_mux,
                media_timeout_secs,
                hold_timeout_secs,
                rtcp_timeout_secs,
                rtcp_hold_timeout_secs,
                on_hold,
                srtp,
                fork_of: None,
            });
        }
        Ok(requests)
    }

    /// The relays' answer to [`Action::CreateMedia`]: sessions (relay, session) in request order,
    /// or the SIP status and reason the call attempt fails with.
    pub fn on_media_created(
        &mut self,
        id: CallId,
        pool: &str,
        result: Result<Vec<(String, MediaAnswer)>, (u16, String)>,
        now: Now,
    ) -> Vec<Action> {
        self.wall_ms = now.unix_ms;
        let now = now.mono;
        let mut out = Vec::new();
        let Some(call) = self.calls.get_mut(&id) else {
            // The caller went away meanwhile: the sessions are not needed.
            if let Ok(sessions) = result {
                out.push(delete_made(pool, sessions));
            }
            return out;
        };
        if call.orphan_create {
            // Asked for an attempt given up meanwhile: deleted; what was asked since goes now.
            call.orphan_create = false;
            if let Ok(sessions) = result {
                out.push(delete_made(pool, sessions));
            }
            if let Some(requests) = call.deferred_create.take() {
                out.push(Action::CreateMedia {
                    call: id,
                    pool: call.pool.clone(),
                    requests,
                });
            }
            return out;
        }
        if let Some(add) = call.adding.take() {
            self.streams_added(id, *add, result, &mut out, now);
            return out;
        }
        if let Some(fc) = call.fork_create.take() {
            self.forks_made(id, *fc, result, &mut out, now);
            return out;
        }
        // Sessions for another early dialog's own offer; unless that dialog answered meanwhile
        // and its offer is the call's now (then they were made for the call).
        if let Some((key, tag)) = call.delayed_fork_create.take()
            && (call.early_tag.as_deref() != Some(tag.as_str())
                || call.early != EarlyOffer::Anchoring)
        {
            self.delayed_fork_made(id, (key, tag), result, &mut out, now);
            return out;
        }
        match result {
            Ok(sessions) => {
                let indexes: Vec<usize> = call
                    .offer
                    .as_ref()
                    .map(|o| o.streams().iter().map(|s| s.index).collect())
                    .unwrap_or_default();
                let offer = call.offer.clone();
                let offerer = call.offerer;
                if let Some(offer) = &offer {
                    call.join_streams(sessions, &indexes, offer, offerer);
                }
                match (call.early_held.take(), call.delayed.take()) {
                    (Some(p), ok) => self.send_early_offer(id, *p, ok, &mut out, now),
                    (None, Some(ok)) => self.answer_delayed(id, *ok, &mut out, now),
                    (None, None) => self.send_invite(id, &mut out, now),
                }
            }
            Err((status, why)) => {
                tracing::warn!(call = id, status, why, "media relay failed");
                let why = format!("media relay: {why}");
                let early = call.early_held.take().is_some();
                if call.delayed.take().is_some() {
                    self.refuse_answer(id, status, &why, &mut out, now);
                } else if early {
                    self.refuse_early(id, status, &why, &mut out, now);
                } else {
                    self.fail(id, status, &why, &mut out, now);
                }
            }
        }
        out
    }

    /// An offer from `side` adds streams to an anchored call — in a re-INVITE or UPDATE `m`
    /// (its server transaction `key`), or (`answer`) in `side`'s 2xx to the re-INVITE without
    /// SDP `m` relayed to it: plain RTP ones get sessions of their own (`on_media_created` then
    /// relays the request, or the 2xx, as any re-offer); an SRTP one is refused. `false` when
    /// there is nothing to add.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_streams(
        &mut self,
        id: CallId,
        side: Side,
        key: &TxKey,
        m: &Message,
        answer: Option<(&Message, Option<timer::Agreed>)>,
        out: &mut Vec<Action>,
        now: Instant,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let offer = answer.map_or(m, |(r, _)| r);
        if !call.anchored() || !is_sdp(offer) {
            return false;
        }
        let Ok(sdp) = std::str::from_utf8(offer.body())
            .map_err(|_| ())
            .and_then(|t| Sdp::parse(t).map_err(|_| ()))
        else {
            return false; // refused with its reason by the usual path
        };
        let new: Vec<usize> = sdp
            .streams()
            .iter()
            .map(|s| s.index)
            .filter(|i| !call.streams.iter().any(|c| c.index == *i))
            .collect();
        if new.is_empty() {
            return false;
        }
        let refuse = |e: &mut Engine, status: u16, why: &str, out: &mut Vec<Action>| match answer {
            None => e.reply(key, m, status, why, out, now),
            Some((r, _)) => e.refuse_in_dialog_answer(id, side, key, m, r, why, out, now),
        };
        if self.calls.get(&id).is_some_and(|c| {
            c.fork_create.is_some() || c.delayed_fork_create.is_some() || c.orphan_create
        }) {
            // Sessions are being made for the call already (one creation in flight per call):
            // refused before anything changes.
            refuse(
                self,
                491,
                "sessions are being made for this call; retry",
                out,
            );
            return true;
        }
        // Each new stream against the sender's leg policy, Mediator's offer planned for the
        // other leg under its own (SRTP or plain, as the policies say).
        let checked = match self.calls.get_mut(&id).and_then(|c| c.sec.as_mut()) {
            Some(sec) => sec.add_streams(side, &sdp, &new),
            None if new.iter().any(|&i| sdp.media[i].proto.contains("SAVP")) || sdp.has_keys() => {
                Err(crate::encryption::Refused {
                    status: 488,
                    reason: "SRTP on a call without media encryption state".into(),
                })
            }
            None => Ok(()),
        };
        if let Err(r) = checked {
            refuse(self, r.status, &r.reason, out);
            return true;
        }
        let requests = match self.requests_for(id, &sdp, side, &new, true) {
            Ok(r) => r,
            Err(r) => {
                refuse(self, r.status, &r.reason, out);
                return true;
            }
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return true;
        };
        tracing::info!(
            call = id,
            streams = new.len(),
            leg = side.name(),
            "a re-offer adds streams: anchoring them"
        );
        call.negotiating = true;
        call.adding = Some(Box::new(Adding {
            side,
            key: key.clone(),
            m: m.clone(),
            sdp,
            indexes: new,
            answer: answer.map(|(r, agreed)| (Box::new(r.clone()), agreed)),
        }));
        out.push(Action::CreateMedia {
            call: id,
            pool: call.pool.clone(),
            requests,
        });
        true
    }

    /// The relays' answer for streams a re-offer adds: the streams join the call and the
    /// request goes on as any re-offer, or it is answered with the relays' error.
    fn streams_added(
        &mut self,
        id: CallId,
        add: Adding,
        result: Result<Vec<(String, MediaAnswer)>, (u16, String)>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.negotiating = false;
        match result {
            Ok(sessions) => {
                call.join_streams(sessions, &add.indexes, &add.sdp, add.side);
                match add.answer {
                    // The 2xx goes on to the re-INVITE's sender with its offer re-pointed.
                    Some((r, agreed)) => self.relay_response(
                        id,
                        add.side,
                        Some((add.key, Box::new(add.m))),
                        agreed,
                        *r,
                        out,
                        now,
                    ),
                    None => self.relay_request(id, add.side, add.key, add.m, out, now),
                }
            }
            Err((status, why)) => {
                tracing::warn!(
                    call = id,
                    status,
                    why,
                    "media relay failed for added streams"
                );
                let why = format!("media relay: {why}");
                match &add.answer {
                    Some((r, _)) => self
                        .refuse_in_dialog_answer(id, add.side, &add.key, &add.m, r, &why, out, now),
                    None => self.reply(&add.key, &add.m, status, &why, out, now),
                }
            }
        }
    }

    /// A delayed offer (the caller's INVITE had no SDP) in the callee's message `m` — its 2xx,
    /// or (`Held::Early`) a provisional: the offer against the callee's leg's policy, Mediator's
    /// offer planned for the caller's leg, and the sessions asked of the relays; `m` goes on to
    /// the caller once they exist ([`Engine::answer_delayed`], [`Engine::send_early_offer`]). A
    /// refusal names why.
    pub(super) fn delayed_offer(
        &mut self,
        id: CallId,
        m: Message,
        held: Held,
        out: &mut Vec<Action>,
        now: Instant,
    ) -> Result<(), String> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        let sdp = std::str::from_utf8(m.body())
            .map_err(|_| "the SDP is not UTF-8".to_string())
            .and_then(|t| Sdp::parse(t).map_err(|e| e.to_string()))?;
        let (a_side, b_side) = (call.a_side, call.a_side.other());
        let mut policy = [LegPolicy::Off; 2];
        policy[slot(a_side)] = call.a_policy;
        policy[slot(b_side)] = call.target().map_or(LegPolicy::Off, |t| t.srtp);
        let mut sec = Sec::of_offer(b_side, policy, &sdp).map_err(|r| r.reason)?;
        // `srtp_passthrough`, as for a caller's offer: every stream of the callee's offer SRTP
        // and SRTP allowed on the caller's leg, and its keys cross to the caller as they are
        // (the caller's come back in its answer); the relay sees ciphertext.
        sec.passthrough = sec.caller_all_srtp(b_side)
            && call
                .target()
                .is_some_and(|t| t.passthrough && t.srtp != LegPolicy::Off)
            && call.a_policy != LegPolicy::Off;
        sec.plan_callee(b_side, call.a_policy)
            .map_err(|r| r.reason)?;
        call.sec = Some(sec);
        call.offer = Some(sdp);
        call.offerer = b_side;
        call.recv_sdp[slot(b_side)] = Some(m.body().to_vec());
        let requests = match self.session_requests(id) {
            Ok(r) => r,
            Err(r) => {
                self.forget_early_offer(id, out);
                return Err(r.reason);
            }
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        tracing::info!(
            call = id,
            streams = requests.len(),
            early = held == Held::Early,
            "a delayed offer: anchoring the callee's offer"
        );
        call.early_tag = m.summary.to_tag.clone();
        match held {
            Held::Final => call.delayed = Some(Box::new(m)),
            Held::Early => {
                call.early = EarlyOffer::Anchoring;
                call.early_held = Some(Box::new(m));
            }
        }
        if requests.is_empty() {
            // Nothing to anchor (T.38 only, every port 0): on at once.
            match (call.early_held.take(), call.delayed.take()) {
                (Some(p), ok) => self.send_early_offer(id, *p, ok, out, now),
                (None, Some(ok)) => self.answer_delayed(id, *ok, out, now),
                (None, None) => {}
            }
            return Ok(());
        }
        if call.orphan_create {
            // The sessions of an attempt given up are still being made: these go once they are
            // answered (and deleted).
            call.deferred_create = Some(requests);
            return Ok(());
        }
        out.push(Action::CreateMedia {
            call: id,
            pool: call.pool.clone(),
            requests,
        });
        Ok(())
    }

    /// The call's offer (the callee's, anchored) as Mediator offers it to the caller: re-pointed
    /// at the relay's side facing the caller, with Mediator's crypto for that leg.
    fn offer_to_caller(&mut self, id: CallId) -> Result<Vec<u8>, String> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Err("the call is gone".into());
        };
        let a_side = call.a_side;
        let Some(offer) = call.offer.as_ref() else {
            return Err("the delayed offer was lost".into());
        };
        let crypto = call
            .sec
            .as_ref()
            .map(|s| s.rewrites(a_side, offer, Writing::Offer))
            .unwrap_or_default();
        let body = offer
            .rewrite_with(&call.anchors(a_side, offer), &crypto)
            .map_err(|e| e.to_string())?
            .into_bytes();
        call.sent_sdp[slot(a_side)] = Some(body.clone());
        call.sent_offer[slot(a_side)] = true;
        Ok(body)
    }

    /// The callee's 2xx with its delayed offer goes on to the caller with Mediator's offer; the
    /// caller's ACK must bring the answer.
    pub(super) fn answer_delayed(
        &mut self,
        id: CallId,
        ok: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        match self.offer_to_caller(id) {
            Ok(body) => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.answer_in_ack = true;
                }
                self.answer_caller(id, &ok, Some(body), out, now);
            }
            Err(why) => self.refuse_answer(id, 488, &why, out, now),
        }
    }

    /// The callee's provisional `p` with its early offer goes on to the caller with Mediator's
    /// offer, its sessions made; then the 2xx `ok` that came meanwhile, if one did.
    pub(super) fn send_early_offer(
        &mut self,
        id: CallId,
        p: Message,
        ok: Option<Box<Message>>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        match self.offer_to_caller(id) {
            Ok(body) => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.early = EarlyOffer::Sent;
                    call.early_reliable = p.header("rseq").is_some();
                }
                self.relay_provisional(id, &p, Some(body), out, now);
                if let Some(ok) = ok {
                    self.answer_early_offered(id, *ok, out, now);
                }
            }
            Err(why) if ok.is_some() => self.refuse_answer(id, 488, &why, out, now),
            Err(why) => self.refuse_early(id, 488, &why, out, now),
        }
    }

    /// The SDP for the caller of a provisional or 2xx `m` repeating the callee's early offer:
    /// what the caller was sent for it when `m`'s SDP is the same, else (another fork's, a
    /// moved address) `m`'s offer re-pointed, the sessions told where the callee now receives.
    pub(super) fn early_offer_body(
        &mut self,
        id: CallId,
        m: &Message,
        out: &mut Vec<Action>,
    ) -> Result<Vec<u8>, String> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Err("the call is gone".into());
        };
        let (a_side, b_side) = (call.a_side, call.a_side.other());
        if call.recv_sdp[slot(b_side)].as_deref() == Some(m.body())
            && let Some(sent) = &call.sent_sdp[slot(a_side)]
        {
            return Ok(sent.clone());
        }
        let body = self
            .answer_body(id, b_side, m, SdpKind::Offer, out)?
            .ok_or("the callee's offer went missing")?;
        if let Some(call) = self.calls.get_mut(&id) {
            // Still an offer the caller has not answered: it replaces the first.
            call.pending_sdp = None;
            call.recv_sdp[slot(b_side)] = Some(m.body().to_vec());
            call.sent_sdp[slot(a_side)] = Some(body.clone());
        }
        Ok(body)
    }

    /// The callee's 2xx `ok` after its early offer: with the offer (its answer due in the ACK)
    /// when the caller has not answered it, without SDP when it answered in a PRACK.
    pub(super) fn answer_early_offered(
        &mut self,
        id: CallId,
        ok: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let answered = call.early == EarlyOffer::Answered;
        call.early = EarlyOffer::None;
        let b_side = call.a_side.other();
        let other_dialog = ok.summary.to_tag != call.early_tag;
        if other_dialog && (answered || call.early_reliable || !is_sdp(&ok)) {
            // Another early dialog answered than the one whose offer the caller has (and may
            // have answered): the sessions point at that one's media, and this 2xx brings no
            // offer Mediator may put in its place.
            let why = "a 2xx from another early dialog than the one whose offer the caller has";
            self.refuse_answer(id, 488, why, out, now);
            return;
        }
        let body = if answered {
            if is_sdp(&ok) && call.recv_sdp[slot(b_side)].as_deref() != Some(ok.body()) {
                let why = "the callee's 2xx carries a new offer after its early offer was answered";
                self.refuse_answer(id, 488, why, out, now);
                return;
            }
            None
        } else {
            let body = if is_sdp(&ok) {
                self.early_offer_body(id, &ok, out)
            } else {
                // No SDP in the 2xx: the provisional's offer stands (RFC 3261 wants it
                // repeated; the caller is given it again).
                call.sent_sdp[slot(call.a_side)]
                    .clone()
                    .ok_or_else(|| "the early offer was lost".to_string())
            };
            match body {
                Ok(b) => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.answer_in_ack = true;
                    }
                    Some(b)
                }
                Err(why) => {
                    self.refuse_answer(id, 488, &why, out, now);
                    return;
                }
            }
        };
        self.answer_caller(id, &ok, body, out, now);
    }

    /// An attempt whose callee made an early offer is over (failover, a 422 retry): its sessions
    /// are deleted and the call is a delayed offer again, for the next INVITE without SDP.
    pub(super) fn forget_early_offer(&mut self, id: CallId, out: &mut Vec<Action>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.early == EarlyOffer::None && call.offerer == call.a_side {
            return;
        }
        if call.early == EarlyOffer::Anchoring {
            // Its sessions are still being made: deleted when the relays answer, and the next
            // ones get other ids.
            call.orphan_create = true;
            call.media_generation += 1;
        }
        // The caller has this early dialog's offer (and may have answered it in a PRACK): the
        // next trunk's goes to it in an early dialog of its own, never as a second offer in this
        // one (RFC 3262, RFC 3264).
        let new_dialog = matches!(call.early, EarlyOffer::Sent | EarlyOffer::Answered);
        call.early_tag = None;
        out.extend(call.give_up_sessions());
        call.offer = None;
        call.offerer = call.a_side;
        call.sec = None;
        call.early = EarlyOffer::None;
        call.early_held = None;
        call.recv_sdp = [None, None];
        call.sent_sdp = [None, None];
        call.sent_offer = [false; 2];
        call.pending_sdp = None;
        if new_dialog {
            self.new_caller_dialog(id);
        }
    }

    /// The caller's next early SDP goes in an early dialog of its own (a new To tag on its leg),
    /// as a fork's would.
    pub(super) fn new_caller_dialog(&mut self, id: CallId) {
        let tag = self.token()[..10].to_string();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        self.dialogs.remove(&call.a.key());
        call.a.retag(&tag);
        self.dialogs.insert(call.a.key(), (id, call.a_side));
    }

    /// The SDP of a message from `from`'s side, re-pointed at the relay for the other side and
    /// with Mediator's own crypto for that side; updates the sessions with where `from`'s peer
    /// receives and with the keys now in force. `kind` says whether the SDP answers Mediator's
    /// offer to `from` or is a new offer from it. `None` when there is no SDP. A refusal changes
    /// nothing.
    pub(super) fn answer_body(
        &mut self,
        id: CallId,
        from: Side,
        m: &Message,
        kind: SdpKind,
        out: &mut Vec<Action>,
    ) -> Result<Option<Vec<u8>>, String> {
        let body = self.rewritten(id, from, m, kind, out)?;
        // Kept for session refreshes: the SDP each side last had from Mediator and the last
        // one from each side — an offer's only once it is answered.
        if is_sdp(m)
            && let Some(b) = &body
            && let Some(call) = self.calls.get_mut(&id)
        {
            match kind {
                SdpKind::Offer => {
                    call.pending_sdp = Some(PendingSdp {
                        from,
                        recv: m.body().to_vec(),
                        sent: b.clone(),
                    });
                }
                SdpKind::Answer => {
                    if let Some(p) = call.pending_sdp.take() {
                        call.recv_sdp[slot(p.from)] = Some(p.recv);
                        call.sent_sdp[slot(p.from.other())] = Some(p.sent);
                        call.sent_offer[slot(p.from.other())] = true;
                    }
                    call.recv_sdp[slot(from)] = Some(m.body().to_vec());
                    call.sent_sdp[slot(from.other())] = Some(b.clone());
                    call.sent_offer[slot(from.other())] = false;
                }
            }
        }
        Ok(body)
    }

    fn rewritten(
        &mut self,
        id: CallId,
        from: Side,
        m: &Message,
        kind: SdpKind,
        out: &mut Vec<Action>,
    ) -> Result<Option<Vec<u8>>, String> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(None);
        };
        if !is_sdp(m) {
            if !m.body().is_empty() && !call.target().is_some_and(|t| t.bypass) {
                // Passed as it is, a body Mediator cannot read (multipart, say) could carry the
                // peer's real addresses and keys past the anchoring.
                return Err(format!(
                    "a {} body is not accepted where media is anchored (application/sdp only)",
                    m.header("content-type")
                        .unwrap_or_else(|| "typeless".into())
                ));
            }
            return Ok((!m.body().is_empty()).then(|| m.body().to_vec()));
        }
        let bypass = call.target().is_some_and(|t| t.bypass);
        let sdp = std::str::from_utf8(m.body())
            .map_err(|_| "the SDP is not UTF-8".to_string())
            .and_then(|t| Sdp::parse(t).map_err(|e| e.to_string()));
        if bypass {
            // End to end, but never keys in clear to a leg that is not on TLS.
            let to_tls = call
                .leg_mut(from.other())
                .is_some_and(|l| l.peer.transport == mediator_sip::Transport::Tls);
            if !to_tls && sdp.as_ref().is_ok_and(Sdp::has_keys) {
                return Err(format!(
                    "media bypass would send SDES keys in clear to the {} side (not TLS)",
                    from.other().name()
                ));
            }
            return Ok(Some(m.body().to_vec()));
        }
        let sdp = sdp?;
        let streams = sdp.streams();
        if streams
            .iter()
            .any(|s| !call.streams.iter().any(|c| c.index == s.index))
        {
            return Err(
                "a stream was added where it cannot be anchored (only a re-INVITE or UPDATE offer may add one)"
                    .into(),
            );
        }
        if !call.anchored() {
            // Nothing anchored (T.38 only, every port 0): no addresses to change, but keys
            // Mediator did not negotiate still do not cross.
            let crypto = call
                .sec
                .as_ref()
                .map(|s| s.rewrites(from.other(), &sdp, Writing::Answer))
                .unwrap_or_default();
            return sdp
                .rewrite_with(&vec![None; sdp.media.len()], &crypto)
                .map(|s| Some(s.into_bytes()))
                .map_err(|e| e.to_string());
        }
        let keys = match call.sec.as_mut() {
            Some(sec) => match kind {
                SdpKind::Answer => sec.on_answer(from, &sdp),
                SdpKind::Offer => sec.on_reoffer(from, &sdp).map(|()| Vec::new()),
            }
            .map_err(|r| r.reason)?,
            None => Vec::new(),
        };
        let hold = sdp.on_hold();
        for st in &mut call.streams {
            match streams.iter().find(|s| s.index == st.index) {
                Some(s) => {
                    st.remotes[slot(from)] = Some(remote_of(st, s));
                    st.live = true;
                    // The relay starts its silence clocks over with the update.
                    st.timed_out = false;
                    st.rtcp_timed_out = false;
                }
                // Declined or dropped (port 0): its silence is not the call's.
                None => st.live = false,
            }
        }
        for st in &call.streams {
            let mine = streams
                .iter()
                .find(|s| s.index == st.index)
                .map(|s| remote_of(st, s));
            let mut sides: [Option<Remote>; 2] = [None, None];
            sides[slot(from)] = mine;
            let mut srtp: [SrtpChange; 2] = Default::default();
            for (_, side, change) in keys.iter().filter(|(i, _, _)| *i == st.index) {
                // A key change for a side goes with that side's endpoints (unchanged).
                sides[slot(*side)] = sides[slot(*side)].or(st.remotes[slot(*side)]);
                srtp[slot(*side)] = change.clone();
            }
            if sides.iter().all(Option::is_none) {
                continue;
            }
            out.push(Action::UpdateMedia {
                pool: call.pool.clone(),
                relay: st.relay.clone(),
                request: Box::new(MediaUpdate {
                    session_id: st.session_id.clone(),
                    pool: sides[0],
                    gateway: sides[1],
                    on_hold: Some(hold),
                    srtp,
                    options: None,
                }),
            });
        }
        let writing = match kind {
            SdpKind::Offer => Writing::Offer,
            SdpKind::Answer => Writing::Answer,
        };
        let crypto = call
            .sec
            .as_ref()
            .map(|s| s.rewrites(from.other(), &sdp, writing))
            .unwrap_or_default();
        sdp.rewrite_with(&call.anchors(from.other(), &sdp), &crypto)
            .map(|s| Some(s.into_bytes()))
            .map_err(|e| e.to_string())
    }
}

/// Where a delayed offer's message waits while its sessions are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// The callee's 2xx.
    Final,
    /// A provisional of the callee's.
    Early,
}

/// Whether an SDP answers Mediator's offer to its sender or is a new offer from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SdpKind {
    Offer,
    Answer,
}

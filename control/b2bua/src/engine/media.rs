//! Media anchoring: the sessions a call asks of its pool's relays, what they answer, and each
//! SDP re-pointed at the relay for the other side (with the sessions told where the peer
//! receives).

use super::*;

/// Where a stream's peer receives, as the media request says it.
pub(super) fn remote(s: &crate::sdp::Stream) -> Remote {
    Remote {
        rtp: s.rtp,
        rtcp: if s.rtcp_mux { None } else { s.rtcp },
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
        let on_hold = sdp.on_hold();
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
                session_id: format!("m{}-{}-{}", prefix, id, s.index),
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
                out.push(Action::DeleteMedia {
                    pool: pool.to_string(),
                    sessions: sessions
                        .into_iter()
                        .map(|(r, s)| (r, s.session_id))
                        .collect(),
                });
            }
            return out;
        };
        if let Some(add) = call.adding.take() {
            self.streams_added(id, *add, result, &mut out, now);
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
                match call.delayed.take() {
                    Some(ok) => self.answer_delayed(id, *ok, &mut out, now),
                    None => self.send_invite(id, &mut out, now),
                }
            }
            Err((status, why)) => {
                tracing::warn!(call = id, status, why, "media relay failed");
                let why = format!("media relay: {why}");
                if call.delayed.take().is_some() {
                    self.refuse_answer(id, status, &why, &mut out, now);
                } else {
                    self.fail(id, status, &why, &mut out, now);
                }
            }
        }
        out
    }

    /// An offer in a re-INVITE or UPDATE from `side` adds streams to an anchored call: plain RTP
    /// ones get sessions of their own (`on_media_created` then relays the request as any
    /// re-offer); an SRTP one is refused. `false` when there is nothing to add.
    pub(super) fn add_streams(
        &mut self,
        id: CallId,
        side: Side,
        key: &TxKey,
        m: &Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        if !call.anchored() || !is_sdp(m) {
            return false;
        }
        let Ok(sdp) = std::str::from_utf8(m.body())
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
        let srtp = new.iter().any(|&i| {
            let media = &sdp.media[i];
            media.proto.contains("SAVP")
        }) || sdp.has_keys()
            || call
                .sec
                .as_ref()
                .is_some_and(|s| s.policy.contains(&LegPolicy::Required));
        if srtp {
            self.reply(
                key,
                m,
                488,
                "adding an SRTP stream mid-call is not supported (plain RTP streams are)",
                out,
                now,
            );
            return true;
        }
        let requests = match self.requests_for(id, &sdp, side, &new, false) {
            Ok(r) => r,
            Err(r) => {
                self.reply(key, m, r.status, &r.reason, out, now);
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
                self.relay_request(id, add.side, add.key, add.m, out, now);
            }
            Err((status, why)) => {
                tracing::warn!(
                    call = id,
                    status,
                    why,
                    "media relay failed for added streams"
                );
                self.reply(
                    &add.key,
                    &add.m,
                    status,
                    &format!("media relay: {why}"),
                    out,
                    now,
                );
            }
        }
    }

    /// A delayed offer (the caller's INVITE had no SDP) in the callee's 2xx `ok`: the offer
    /// against the callee's leg's policy, Mediator's offer planned for the caller's leg, and
    /// the sessions asked of the relays; the 2xx goes on to the caller once they exist
    /// ([`Engine::answer_delayed`]). A refusal names why.
    pub(super) fn delayed_offer(
        &mut self,
        id: CallId,
        ok: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) -> Result<(), String> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        let sdp = std::str::from_utf8(ok.body())
            .map_err(|_| "the SDP is not UTF-8".to_string())
            .and_then(|t| Sdp::parse(t).map_err(|e| e.to_string()))?;
        let (a_side, b_side) = (call.a_side, call.a_side.other());
        let mut policy = [LegPolicy::Off; 2];
        policy[slot(a_side)] = call.a_policy;
        policy[slot(b_side)] = call.target().map_or(LegPolicy::Off, |t| t.srtp);
        let mut sec = Sec::of_offer(b_side, policy, &sdp).map_err(|r| r.reason)?;
        sec.plan_callee(b_side, call.a_policy)
            .map_err(|r| r.reason)?;
        call.sec = Some(sec);
        call.offer = Some(sdp);
        call.offerer = b_side;
        call.recv_sdp[slot(b_side)] = Some(ok.body().to_vec());
        let requests = self.session_requests(id).map_err(|r| r.reason)?;
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        tracing::info!(
            call = id,
            streams = requests.len(),
            "a delayed offer: anchoring the callee's offer"
        );
        call.delayed = Some(Box::new(ok));
        if requests.is_empty() {
            // Nothing to anchor (T.38 only, every port 0): on at once.
            if let Some(ok) = call.delayed.take() {
                self.answer_delayed(id, *ok, out, now);
            }
            return Ok(());
        }
        out.push(Action::CreateMedia {
            call: id,
            pool: call.pool.clone(),
            requests,
        });
        Ok(())
    }

    /// The callee's 2xx with its delayed offer goes on to the caller, the offer re-pointed at
    /// the relay's side facing the caller and with Mediator's crypto for that leg; the caller's
    /// ACK must bring the answer.
    pub(super) fn answer_delayed(
        &mut self,
        id: CallId,
        ok: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let a_side = call.a_side;
        let Some(offer) = call.offer.as_ref() else {
            self.refuse_answer(id, 500, "the delayed offer was lost", out, now);
            return;
        };
        let crypto = call
            .sec
            .as_ref()
            .map(|s| s.rewrites(a_side, offer, Writing::Offer))
            .unwrap_or_default();
        match offer.rewrite_with(&call.anchors(a_side, offer), &crypto) {
            Ok(body) => {
                let body = body.into_bytes();
                call.sent_sdp[slot(a_side)] = Some(body.clone());
                call.sent_offer[slot(a_side)] = true;
                call.answer_in_ack = true;
                self.answer_caller(id, &ok, Some(body), out, now);
            }
            Err(e) => self.refuse_answer(id, 488, &e.to_string(), out, now),
        }
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
                    st.remotes[slot(from)] = Some(remote(s));
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
            let mine = streams.iter().find(|s| s.index == st.index).map(remote);
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

/// Whether an SDP answers Mediator's offer to its sender or is a new offer from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SdpKind {
    Offer,
    Answer,
}

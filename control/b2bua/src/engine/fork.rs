//! Forking: each early dialog of a forked INVITE reaches the caller as an early dialog of its
//! own (a To tag of its own on the caller's leg), and each one's early media is anchored in
//! sessions of its own: forks of the call's sessions on the same relay, which share the
//! gateway-side ports the single INVITE offered and are told apart there by source. The early
//! dialog that answers keeps its sessions (a fork inherits the ports); the others' go.

use super::*;
use crate::sdes::Crypto;
use crate::sdp::CryptoRewrite;

/// One early dialog's sessions, forks of the call's, by stream.
#[derive(Clone, Debug)]
pub(super) struct ForkMedia {
    /// Its index in the attempt's early dialogs.
    pub(super) dialog: usize,
    pub(super) streams: Vec<ForkStream>,
    /// What Mediator writes toward the caller for each m-line of its SDP (its own keys there).
    rewrites: Vec<Option<CryptoRewrite>>,
    /// The last SDP the callee of this early dialog sent, and what the caller got for it: the
    /// call's own once this dialog answers (session refreshes repeat them).
    recv: Option<Vec<u8>>,
    sent: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub(super) struct ForkStream {
    pub(super) index: usize,
    pub(super) relay: String,
    pub(super) session_id: String,
    /// The call's session it forks.
    pub(super) parent: String,
    /// The relay's address facing the pool: this early dialog's SDP reaches the caller with it.
    pub(super) pool_anchor: Anchor,
    /// Where its callee receives, as its SDP says.
    pub(super) remote: Remote,
    /// Mediator's key toward the caller for it (SRTP on the caller's leg).
    caller: Option<Crypto>,
}

/// Sessions being made for an early dialog's SDP; its provisional waits for them.
pub(super) struct ForkCreate {
    attempt: TxKey,
    dialog: usize,
    m: Message,
    /// (stream index, parent session, relay, the callee's remote), in request order.
    streams: Vec<(usize, String, String, Remote)>,
    sec: crypto::ForkSec,
}

impl Engine {
    /// Gives the current early dialog of the attempt its caller-facing To tag (the first keeps
    /// the caller leg's own), known to the dialog table from then on.
    pub(super) fn tag_early_dialog(&mut self, id: CallId) {
        let token = self.token()[..10].to_string();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(att) = call.attempt.as_mut() else {
            return;
        };
        let i = att.current;
        if i == 0 || i >= att.early.len() {
            return;
        }
        att.tags.resize(att.early.len(), None);
        if att.tags[i].is_none() {
            att.tags[i] = Some(token.clone());
            call.fork_tags.push(token.clone());
            self.dialogs
                .insert((call.a.call_id.clone(), token), (id, call.a_side));
        }
    }

    /// Forgets the caller-facing tags of early dialogs, but `keep`'s.
    pub(super) fn forget_fork_tags(&mut self, id: CallId, keep: Option<&str>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        for t in std::mem::take(&mut call.fork_tags) {
            if Some(t.as_str()) == keep {
                call.fork_tags.push(t);
            } else {
                self.dialogs.remove(&(call.a.call_id.clone(), t));
            }
        }
    }

    /// Whether the current early dialog's SDP `m` is a fork's (the call's sessions answer
    /// another early dialog's): then it is anchored in sessions of its own and relayed in its
    /// own early dialog here, and true is returned.
    pub(super) fn fork_provisional(
        &mut self,
        id: CallId,
        m: &Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let Some(att) = call.attempt.as_mut() else {
            return false;
        };
        let dialog = att.current;
        if !is_sdp(m) {
            return false;
        }
        // The first early dialog to send SDP answers the call's sessions.
        let owner = *att.media_owner.get_or_insert(dialog);
        if owner == dialog {
            return false;
        }
        let key = att.key.clone();
        let sdp = std::str::from_utf8(m.body())
            .map_err(|_| "not UTF-8".to_string())
            .and_then(|t| Sdp::parse(t).map_err(|e| e.to_string()));
        // Every stream it has must be one of the call's, live: each gets a fork (a stream
        // without one would reach the caller with the callee's own address).
        let usable = match &sdp {
            Ok(s) => {
                s.streams().iter().all(|x| {
                    x.rtp.is_some() && call.streams.iter().any(|c| c.index == x.index && c.live)
                }) && (call.sec.is_some() || !s.has_keys())
            }
            Err(_) => false,
        };
        if let Some(f) = call.forks.iter().find(|f| f.dialog == dialog).cloned() {
            // Its sessions exist: followed where its SDP moved, relayed with their addresses.
            match sdp {
                Ok(sdp) if usable => {
                    let body = self.fork_body(id, &f, &sdp, m.body(), out);
                    self.relay_provisional(id, m, body, out, now);
                }
                _ => self.relay_provisional(id, m, None, out, now),
            }
            return true;
        }
        if call
            .fork_create
            .as_ref()
            .is_some_and(|f| f.dialog == dialog)
        {
            // Its forks are on their way: a retransmission now would reach the caller before
            // its SDP (with a reliable 18x, under the same RSeq).
            tracing::debug!(
                call = id,
                dialog,
                "a provisional while its forks are made: not relayed"
            );
            return true;
        }
        let busy = call.fork_create.is_some()
            || call.adding.is_some()
            || call.orphan_create
            || call.early_held.is_some()
            || call.delayed.is_some();
        // Its answer against the callee's leg's policy, its forks' keys (see `Sec::fork`).
        let sec = match (&sdp, call.sec.as_ref()) {
            (Ok(s), Some(sec)) if usable => sec.fork(call.a_side, s).map_err(|r| r.reason),
            _ => Ok(crypto::ForkSec::default()),
        };
        let (sdp, sec) = match (sdp, sec) {
            (Ok(s), Ok(sec)) if usable && !busy && call.offerer == call.a_side => (s, sec),
            (_, sec) => {
                let why = match sec {
                    Err(why) => why,
                    Ok(_) if busy => "another creation of sessions is in flight".into(),
                    Ok(_) => "its SDP is not an answer Mediator can anchor".into(),
                };
                tracing::info!(
                    call = id,
                    dialog,
                    why,
                    "another early dialog's SDP is not anchored: its provisional goes on without it"
                );
                self.relay_provisional(id, m, None, out, now);
                return true;
            }
        };
        // In the SDP's order, as `requests_for` makes the requests.
        let streams: Vec<(usize, String, String, Remote)> = sdp
            .streams()
            .into_iter()
            .filter_map(|s| {
                let st = call.streams.iter().find(|c| c.index == s.index && c.live)?;
                let r = media::remote(&s);
                let r = if st.mux {
                    Remote { rtcp: None, ..r }
                } else {
                    r
                };
                Some((st.index, st.session_id.clone(), st.relay.clone(), r))
            })
            .collect();
        let indexes: Vec<usize> = streams.iter().map(|s| s.0).collect();
        let mut requests = self
            .requests_for(id, &sdp, Side::Gateway, &indexes, false)
            .unwrap_or_default();
        let Some(call) = self.calls.get_mut(&id) else {
            return true;
        };
        if requests.len() != streams.len() || requests.is_empty() {
            self.relay_provisional(id, m, None, out, now);
            return true;
        }
        // Never an id of an earlier attempt's fork (its deletion may still be on its way).
        call.fork_serial += 1;
        let serial = call.fork_serial;
        for (r, (index, parent, relay, remote)) in requests.iter_mut().zip(&streams) {
            let st = call.streams.iter().find(|s| s.index == *index);
            r.session_id = format!("{parent}-f{serial}");
            r.pool = st.and_then(|s| s.remotes[0]).unwrap_or_default();
            r.gateway = *remote;
            r.rtcp_mux = st.is_some_and(|s| s.mux);
            r.fork_of = Some((relay.clone(), parent.clone()));
            if let Some((_, keys, _)) = sec.streams.iter().find(|(i, _, _)| i == index) {
                r.srtp = keys.clone();
            }
        }
        tracing::info!(
            call = id,
            dialog,
            streams = requests.len(),
            "another early dialog sent SDP: anchoring its early media in forks of the call's sessions"
        );
        call.fork_create = Some(Box::new(ForkCreate {
            attempt: key,
            dialog,
            m: m.clone(),
            streams,
            sec,
        }));
        out.push(Action::CreateMedia {
            call: id,
            pool: call.pool.clone(),
            requests,
        });
        true
    }

    /// The relays' answer for an early dialog's forks: its provisional goes on with their
    /// addresses (or, when they could not be made, without SDP: the call goes on).
    pub(super) fn forks_made(
        &mut self,
        id: CallId,
        fc: ForkCreate,
        result: Result<Vec<(String, MediaAnswer)>, (u16, String)>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let current = call
            .attempt
            .as_ref()
            .is_some_and(|a| a.key == fc.attempt && call.b.is_none());
        let sessions = match result {
            Ok(s) if current => s,
            Ok(s) => {
                // The attempt ended meanwhile (answered, failed over): not needed.
                out.push(Action::DeleteMedia {
                    pool: call.pool.clone(),
                    sessions: s.into_iter().map(|(r, a)| (r, a.session_id)).collect(),
                });
                return;
            }
            Err((status, why)) => {
                tracing::warn!(call = id, status, why, "forks for an early dialog failed");
                if current {
                    self.relay_fork_provisional(id, fc.dialog, &fc.m, None, out, now);
                }
                return;
            }
        };
        let streams: Vec<ForkStream> = sessions
            .into_iter()
            .zip(&fc.streams)
            .filter_map(|((relay, a), (index, parent, _, remote))| {
                Some(ForkStream {
                    index: *index,
                    relay,
                    session_id: a.session_id,
                    parent: parent.clone(),
                    pool_anchor: a.pool?,
                    remote: *remote,
                    caller: fc
                        .sec
                        .streams
                        .iter()
                        .find(|(i, _, _)| i == index)
                        .and_then(|(_, _, c)| c.clone()),
                })
            })
            .collect();
        let f = ForkMedia {
            dialog: fc.dialog,
            streams,
            rewrites: fc.sec.rewrites.clone(),
            recv: None,
            sent: None,
        };
        call.forks.push(f.clone());
        let body = std::str::from_utf8(fc.m.body())
            .ok()
            .and_then(|t| Sdp::parse(t).ok())
            .and_then(|sdp| self.fork_body(id, &f, &sdp, fc.m.body(), out));
        self.relay_fork_provisional(id, fc.dialog, &fc.m, body, out, now);
    }

    /// `m` relayed in early dialog `dialog`'s own To tag toward the caller (the attempt's
    /// current early dialog may have moved on while its forks were made).
    fn relay_fork_provisional(
        &mut self,
        id: CallId,
        dialog: usize,
        m: &Message,
        body: Option<Vec<u8>>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(att) = self.calls.get_mut(&id).and_then(|c| c.attempt.as_mut()) else {
            return;
        };
        let was = std::mem::replace(&mut att.current, dialog);
        self.relay_provisional(id, m, body, out, now);
        if let Some(att) = self.calls.get_mut(&id).and_then(|c| c.attempt.as_mut()) {
            att.current = was;
        }
    }

    /// An early dialog's SDP (`recv`, parsed: `sdp`) re-pointed at its forks' pool-side
    /// addresses; the forks follow where its SDP moved, and the dialog remembers both.
    fn fork_body(
        &mut self,
        id: CallId,
        f: &ForkMedia,
        sdp: &Sdp,
        recv: &[u8],
        out: &mut Vec<Action>,
    ) -> Option<Vec<u8>> {
        let call = self.calls.get_mut(&id)?;
        let mut anchors = vec![None; sdp.media.len()];
        let hold = sdp.on_hold();
        for s in sdp.streams() {
            // A stream with no fork session would reach the caller with the callee's address.
            let fs = f.streams.iter().find(|x| x.index == s.index)?;
            if let Some(a) = anchors.get_mut(s.index) {
                *a = Some(fs.pool_anchor);
            }
            let mux = call.streams.iter().any(|c| c.index == s.index && c.mux);
            let r = media::remote(&s);
            let r = if mux { Remote { rtcp: None, ..r } } else { r };
            if r != fs.remote {
                out.push(Action::UpdateMedia {
                    pool: call.pool.clone(),
                    relay: fs.relay.clone(),
                    request: Box::new(MediaUpdate {
                        session_id: fs.session_id.clone(),
                        pool: None,
                        gateway: Some(r),
                        on_hold: Some(hold),
                        srtp: Default::default(),
                        options: None,
                    }),
                });
                if let Some(cf) = call.forks.iter_mut().find(|x| x.dialog == f.dialog)
                    && let Some(x) = cf.streams.iter_mut().find(|x| x.index == s.index)
                {
                    x.remote = r;
                }
            }
        }
        let body = sdp
            .rewrite_with(&anchors, &f.rewrites)
            .ok()
            .map(String::into_bytes)?;
        if let Some(cf) = call.forks.iter_mut().find(|x| x.dialog == f.dialog) {
            cf.recv = Some(recv.to_vec());
            cf.sent = Some(body.clone());
        }
        Some(body)
    }

    /// Early dialog `winner` answered: its forks (if it has any) inherit their parents' ports and
    /// become the call's sessions; every other fork is deleted.
    pub(super) fn settle_forks(&mut self, id: CallId, winner: usize, out: &mut Vec<Action>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let forks = std::mem::take(&mut call.forks);
        let mut handed = Vec::new();
        let mut doomed = Vec::new();
        if let Some(w) = forks
            .iter()
            .find(|f| f.dialog == winner && f.sent.is_some())
        {
            // The caller's SDP and the callee's are the winning early dialog's now: what a
            // session refresh repeats (a 2xx with SDP replaces them as usual).
            let (a, b) = (slot(call.a_side), slot(call.a_side.other()));
            call.sent_sdp[a] = w.sent.clone();
            call.recv_sdp[b] = w.recv.clone();
        }
        for f in forks {
            for fs in f.streams {
                if f.dialog == winner {
                    handed.push(fs);
                } else {
                    doomed.push(fs);
                }
            }
        }
        for fs in &handed {
            if let Some(st) = call.streams.iter_mut().find(|s| s.session_id == fs.parent) {
                st.session_id = fs.session_id.clone();
                st.anchors[0] = fs.pool_anchor;
                st.remotes[1] = Some(fs.remote);
            }
            // The caller has the fork's key for this stream from its early dialog's SDP.
            if let (Some(c), Some(sec)) = (&fs.caller, call.sec.as_mut()) {
                sec.adopt_fork(fs.index, call.a_side, c);
            }
        }
        // Forks of a handed-over parent go with the hand-over; the others one by one.
        doomed.retain(|d| !handed.iter().any(|h| h.parent == d.parent));
        if !doomed.is_empty() {
            out.push(Action::DeleteMedia {
                pool: call.pool.clone(),
                sessions: doomed
                    .into_iter()
                    .map(|d| (d.relay, d.session_id))
                    .collect(),
            });
        }
        if !handed.is_empty() {
            tracing::info!(
                call = id,
                streams = handed.len(),
                "a fork answered: its sessions take over the call's gateway-side ports"
            );
            out.push(Action::HandOverMedia {
                pool: call.pool.clone(),
                sessions: handed
                    .into_iter()
                    .map(|h| (h.relay, h.parent, h.session_id))
                    .collect(),
            });
        }
    }

    /// A new attempt: the forks of the last one go (their parents may live on).
    pub(super) fn drop_forks(&mut self, id: CallId, out: &mut Vec<Action>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let forks = std::mem::take(&mut call.forks);
        let mut sessions: Vec<(String, String)> = forks
            .into_iter()
            .flat_map(|f| f.streams)
            .map(|s| (s.relay, s.session_id))
            .collect();
        // Other early dialogs' own early offers (a delayed offer).
        for f in std::mem::take(&mut call.delayed_forks) {
            sessions.extend(f.sessions());
        }
        // A creation in flight for them is the given-up attempt's: deleted on arrival, and what
        // the next attempt asks waits for it (one creation in flight per call).
        if call.fork_create.take().is_some() || call.delayed_fork_create.take().is_some() {
            call.orphan_create = true;
        }
        if !sessions.is_empty() {
            out.push(Action::DeleteMedia {
                pool: call.pool.clone(),
                sessions,
            });
        }
        let a_tag = call.a.local_tag.clone();
        self.forget_fork_tags(id, Some(&a_tag));
    }
}

/// An early dialog's own early offer (a delayed offer: Mediator's INVITE had no SDP, and each
/// early dialog offers on its own): everything the call keeps of an early offer, for this
/// dialog. Swapped into the call while this dialog's offer or its answer is handled (the code
/// for the call's own early offer does the work), and for good when this dialog answers.
#[derive(Default)]
pub(super) struct DelayedFork {
    /// The callee's To tag of its early dialog.
    pub(super) tag: String,
    offer: Option<Sdp>,
    offerer: Option<Side>,
    sec: Option<Sec>,
    streams: Vec<Stream>,
    early: EarlyOffer,
    early_held: Option<Box<Message>>,
    early_tag: Option<String>,
    early_reliable: bool,
    delayed: Option<Box<Message>>,
    sent_sdp: [Option<Vec<u8>>; 2],
    sent_offer: [bool; 2],
    recv_sdp: [Option<Vec<u8>>; 2],
    pending_sdp: Option<PendingSdp>,
}

impl DelayedFork {
    /// Trades its early offer with the call's.
    fn swap(&mut self, call: &mut Call) {
        use std::mem::swap;
        let mut offerer = Some(call.offerer);
        swap(&mut self.offer, &mut call.offer);
        swap(&mut self.offerer, &mut offerer);
        if let Some(o) = offerer {
            call.offerer = o;
        }
        swap(&mut self.sec, &mut call.sec);
        swap(&mut self.streams, &mut call.streams);
        swap(&mut self.early, &mut call.early);
        swap(&mut self.early_held, &mut call.early_held);
        swap(&mut self.early_tag, &mut call.early_tag);
        swap(&mut self.early_reliable, &mut call.early_reliable);
        swap(&mut self.delayed, &mut call.delayed);
        swap(&mut self.sent_sdp, &mut call.sent_sdp);
        swap(&mut self.sent_offer, &mut call.sent_offer);
        swap(&mut self.recv_sdp, &mut call.recv_sdp);
        swap(&mut self.pending_sdp, &mut call.pending_sdp);
    }

    pub(super) fn sessions(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.streams
            .iter()
            .map(|s| (s.relay.clone(), s.session_id.clone()))
    }
}

impl Engine {
    /// Swaps early dialog `tag`'s own early offer in or out of call `id`; false when it has none.
    pub(super) fn swap_delayed_fork(&mut self, id: CallId, tag: &str) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let Some(i) = call.delayed_forks.iter().position(|f| f.tag == tag) else {
            return false;
        };
        let mut f = call.delayed_forks.swap_remove(i);
        f.swap(call);
        call.delayed_forks.push(f);
        true
    }

    /// A provisional with SDP from another early dialog than the one whose early offer the call
    /// has (a delayed offer): its offer gets sessions of its own and reaches the caller in its
    /// own early dialog, as the call's own does. `None` when it was handled here (or the call is
    /// gone); the provisional back when it is the call's own dialog's.
    pub(super) fn delayed_fork_provisional(
        &mut self,
        id: CallId,
        m: Message,
        out: &mut Vec<Action>,
        now: Instant,
    ) -> Option<Message> {
        let call = self.calls.get_mut(&id)?;
        let Some(tag) = m.summary.to_tag.clone() else {
            return Some(m);
        };
        if call.early == EarlyOffer::None || call.early_tag.as_deref() == Some(tag.as_str()) {
            return Some(m);
        }
        if self.swap_delayed_fork(id, &tag) {
            // Its offer again (a retransmission, or moved): handled as the call's own would be.
            self.delayed_fork_again(id, &m, out, now);
            self.swap_delayed_fork(id, &tag);
            return None;
        }
        let call = self.calls.get_mut(&id)?;
        let busy = call.fork_create.is_some()
            || call.delayed_fork_create.is_some()
            || call.adding.is_some()
            || call.orphan_create
            || call.early == EarlyOffer::Anchoring
            || call.delayed.is_some();
        if busy || call.attempt.is_none() {
            tracing::info!(
                call = id,
                "another early dialog's offer while sessions are being made: its provisional goes on without it"
            );
            self.relay_provisional(id, &m, None, out, now);
            return None;
        }
        // New session ids: never the call's own sessions'.
        call.media_generation += 1;
        let key = call.attempt.as_ref().map(|a| a.key.clone());
        call.delayed_forks.push(DelayedFork {
            tag: tag.clone(),
            ..DelayedFork::default()
        });
        self.swap_delayed_fork(id, &tag);
        let made = self.delayed_offer(id, m.clone(), Held::Early, out, now);
        self.swap_delayed_fork(id, &tag);
        let call = self.calls.get_mut(&id)?;
        match made {
            Ok(())
                if call
                    .delayed_forks
                    .last()
                    .is_some_and(|f| f.early == EarlyOffer::Anchoring) =>
            {
                tracing::info!(
                    call = id,
                    "another early dialog's offer: anchored in sessions of its own"
                );
                call.delayed_fork_create = key.map(|k| (k, tag));
            }
            Ok(()) => {
                // Nothing to anchor: already sent on (see `delayed_offer`).
            }
            Err(why) => {
                tracing::info!(
                    call = id,
                    why,
                    "another early dialog's offer cannot be anchored: its provisional goes on without it"
                );
                call.delayed_forks.retain(|f| f.tag != tag);
                self.relay_provisional(id, &m, None, out, now);
            }
        }
        None
    }

    /// An early dialog's offer again, its state swapped in: the same as the call's own.
    fn delayed_fork_again(&mut self, id: CallId, m: &Message, out: &mut Vec<Action>, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.early == EarlyOffer::Anchoring {
            // Its sessions are on their way: a retransmission now would reach the caller before
            // the offer (with a reliable 18x, under the same RSeq).
            return;
        }
        if call.early != EarlyOffer::Sent {
            // Answered in a PRACK already: on without SDP.
            self.relay_provisional(id, m, None, out, now);
            return;
        }
        match self.early_offer_body(id, m, out) {
            Ok(b) => self.relay_provisional(id, m, Some(b), out, now),
            Err(_) => self.relay_provisional(id, m, None, out, now),
        }
    }

    /// The relays' answer for an early dialog's own sessions (its state swapped in for the
    /// call's own code): its provisional goes on with Mediator's offer; when they could not be
    /// made it goes on without SDP and the dialog has no early offer.
    pub(super) fn delayed_fork_made(
        &mut self,
        id: CallId,
        (attempt, tag): (TxKey, String),
        result: Result<Vec<(String, MediaAnswer)>, (u16, String)>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let current = call.b.is_none() && call.attempt.as_ref().is_some_and(|a| a.key == attempt);
        let pool = call.pool.clone();
        let swapped = current && result.is_ok() && self.swap_delayed_fork(id, &tag);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match result {
            Ok(sessions) if swapped => {
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                let indexes: Vec<usize> = call
                    .offer
                    .as_ref()
                    .map(|o| o.streams().iter().map(|s| s.index).collect())
                    .unwrap_or_default();
                if let Some(offer) = call.offer.clone() {
                    call.join_streams(sessions, &indexes, &offer, call.offerer);
                }
                let held = call.early_held.take();
                let ok = call.delayed.take();
                if let Some(p) = held {
                    self.relay_fork_offer(id, *p, ok, out, now);
                }
                self.swap_delayed_fork(id, &tag);
            }
            Ok(sessions) => out.push(Action::DeleteMedia {
                pool,
                sessions: sessions
                    .into_iter()
                    .map(|(r, a)| (r, a.session_id))
                    .collect(),
            }),
            Err((status, why)) => {
                tracing::warn!(
                    call = id,
                    status,
                    why,
                    "sessions for another early dialog's offer failed"
                );
                let held = call
                    .delayed_forks
                    .iter_mut()
                    .find(|f| f.tag == tag)
                    .and_then(|f| f.early_held.take());
                call.delayed_forks.retain(|f| f.tag != tag);
                if current && let Some(p) = held {
                    self.relay_in_dialog_of(id, &p, None, out, now);
                }
            }
        }
    }

    /// An early dialog's offer to the caller in its own early dialog: Mediator's offer from its
    /// sessions (the call's own code, its state swapped in). A 2xx that came meanwhile is left
    /// for the 2xx handling, which swaps this dialog in for good.
    fn relay_fork_offer(
        &mut self,
        id: CallId,
        p: Message,
        ok: Option<Box<Message>>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(tag) = p.summary.to_tag.clone() else {
            return;
        };
        let Some(att) = self.calls.get_mut(&id).and_then(|c| c.attempt.as_mut()) else {
            return;
        };
        let Some(i) = att
            .early
            .iter()
            .position(|l| l.remote_tag.as_deref() == Some(tag.as_str()))
        else {
            return;
        };
        let was = std::mem::replace(&mut att.current, i);
        self.send_early_offer(id, p, None, out, now);
        if let Some(att) = self.calls.get_mut(&id).and_then(|c| c.attempt.as_mut()) {
            att.current = was;
        }
        if let Some(ok) = ok
            && let Some(call) = self.calls.get_mut(&id)
        {
            call.delayed = Some(ok);
        }
    }

    /// `m` relayed to the caller in the early dialog of its own To tag.
    fn relay_in_dialog_of(
        &mut self,
        id: CallId,
        m: &Message,
        body: Option<Vec<u8>>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let tag = m.summary.to_tag.clone();
        let Some(att) = self.calls.get_mut(&id).and_then(|c| c.attempt.as_mut()) else {
            return;
        };
        let Some(i) = att.early.iter().position(|l| l.remote_tag == tag) else {
            return;
        };
        let was = std::mem::replace(&mut att.current, i);
        self.relay_provisional(id, m, body, out, now);
        if let Some(att) = self.calls.get_mut(&id).and_then(|c| c.attempt.as_mut()) {
            att.current = was;
        }
    }

    /// Early dialog `tag` answered: when it has an early offer of its own, that becomes the
    /// call's (the call's own sessions and every other dialog's are deleted); otherwise every
    /// early dialog's own sessions are.
    pub(super) fn settle_delayed_forks(
        &mut self,
        id: CallId,
        tag: Option<&str>,
        out: &mut Vec<Action>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.delayed_forks.is_empty() {
            return;
        }
        let mut forks = std::mem::take(&mut call.delayed_forks);
        let mut gone: Vec<(String, String)> = Vec::new();
        if let Some(i) = forks.iter().position(|f| Some(f.tag.as_str()) == tag) {
            let mut w = forks.swap_remove(i);
            w.swap(call);
            tracing::info!(
                call = id,
                "an early dialog with its own early offer answered: its sessions are the call's"
            );
            gone.extend(w.sessions());
        }
        for f in &forks {
            gone.extend(f.sessions());
        }
        if !gone.is_empty() {
            out.push(Action::DeleteMedia {
                pool: call.pool.clone(),
                sessions: gone,
            });
        }
    }
}

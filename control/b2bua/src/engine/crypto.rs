//! A call's media encryption: per anchored stream and leg, what Mediator offered the leg (its
//! plan), what the leg uses (negotiated), and whether the relay holds keys for it. Mediator is the
//! SDES endpoint on each leg (it never passes one leg's keys to the other) unless the call is in
//! passthrough, where the peers' own `a=crypto` lines cross unchanged and the relay sees only
//! ciphertext. The decisions are `crate::encryption`'s; this file applies them to SDP and to the
//! relay's sessions.
//!
//! A re-offer (re-INVITE, UPDATE, or the offer in a 2xx to an SDP-less re-INVITE) changes nothing
//! until its answer is accepted: the offerer's new use waits as `pending`, and a refused or failed
//! re-offer leaves the session as it was (RFC 3264 §8).

use super::*;
use crate::encryption::{LegPolicy, Plan, Refused, StreamCrypto, Use, accept_answer, accept_offer};
use crate::media::{MasterKey, SrtpChange, SrtpKeys, Suite};
use crate::sdes::{Crypto, choose};
use crate::sdp::CryptoRewrite;

/// An early dialog's forks' encryption (see [`Sec::fork`]).
#[derive(Debug, Default)]
pub(super) struct ForkSec {
    /// Per stream index: the relay's keys (by [`slot`]) and Mediator's key toward the caller.
    pub(super) streams: Vec<(usize, [Option<SrtpKeys>; 2], Option<Crypto>)>,
    /// What Mediator writes toward the caller for each m-line (empty: as it is, passthrough).
    pub(super) rewrites: Vec<Option<CryptoRewrite>>,
}

/// One leg of one stream.
#[derive(Debug, Default)]
pub(super) struct LegSec {
    /// The m= line's protocol on this leg (RTP/AVP, RTP/SAVP, …).
    pub(super) proto: String,
    /// Mediator's outstanding offer to this leg.
    pub(super) plan: Option<Plan>,
    /// What the leg uses once negotiated.
    pub(super) used: Option<Use>,
    /// The relay's session holds keys for this side.
    pub(super) keyed: bool,
}

/// A re-offer's new use for its offerer's leg, applied once the other leg's answer is accepted.
#[derive(Debug)]
pub(super) struct Pending {
    from: Side,
    used: Use,
    proto: String,
}

/// The last offer in passthrough: its side, RTP/SAVP or not, and its (tag, suite) pairs.
type Offered = (Side, bool, Vec<(u32, Suite)>);

#[derive(Debug)]
pub(super) struct StreamSec {
    pub(super) index: usize,
    /// By [`slot`]: the pool's leg, the gateway's leg.
    pub(super) legs: [LegSec; 2],
    pending: Option<Pending>,
    /// In passthrough: the last offer's side, RTP/SAVP or not, and its (tag, suite) pairs.
    offered: Option<Offered>,
    /// In passthrough: the suite the peers agreed on end to end.
    pub(super) end_to_end: Option<Suite>,
}

/// A call's encryption state.
#[derive(Debug)]
pub(super) struct Sec {
    /// Each leg's policy by [`slot`]; the callee's follows the target being tried.
    pub(super) policy: [LegPolicy; 2],
    /// The peers' keys pass end to end (`srtp_passthrough`); the relay does no SRTP.
    pub(super) passthrough: bool,
    pub(super) streams: Vec<StreamSec>,
}

/// What an SDP Mediator writes is, toward its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Writing {
    Offer,
    Answer,
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Pool => "pool",
        Side::Gateway => "gateway",
    }
}

fn refused(side: Side, reason: impl std::fmt::Display) -> Refused {
    Refused {
        status: 488,
        reason: format!("{} side: {reason}", side_name(side)),
    }
}

/// The protocol Mediator writes on a leg: SAVP or AVP, keeping the feedback profile (…F) of the
/// caller's offer.
fn proto_for(savp: bool, like: &str) -> String {
    let f = if like.to_ascii_uppercase().ends_with('F') {
        "F"
    } else {
        ""
    };
    if savp {
        format!("RTP/SAVP{f}")
    } else {
        format!("RTP/AVP{f}")
    }
}

/// The policy Mediator offers the callee's leg under: `optional` offers SRTP (best effort) only
/// when the caller's leg of the stream is encrypted, so a plain call stays plain end to end (and
/// in XDP); `required` always offers it; `off` never.
fn callee_policy(policy: LegPolicy, caller_srtp: bool) -> LegPolicy {
    match policy {
        LegPolicy::Optional if !caller_srtp => LegPolicy::Off,
        p => p,
    }
}

fn stream_crypto(sdp: &Sdp, index: usize) -> StreamCrypto {
    let (proto, values) = sdp.crypto(index).unwrap_or(("RTP/AVP", Vec::new()));
    StreamCrypto::new(proto, values)
}

fn proto_of(sdp: &Sdp, index: usize) -> String {
    sdp.crypto(index)
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// The m-lines of `sdp` the relay anchors (RTP with a port).
fn anchored(sdp: &Sdp) -> Vec<usize> {
    sdp.streams().iter().map(|s| s.index).collect()
}

fn rewrite(proto: &str, crypto: &[&Crypto]) -> CryptoRewrite {
    CryptoRewrite {
        proto: proto.to_string(),
        crypto: crypto.iter().map(|c| c.to_sdp()).collect(),
    }
}

fn is_srtp(u: &Option<Use>) -> bool {
    matches!(u, Some(Use::Srtp { .. }))
}

/// Keys held for a side until its peer's answer names the real ones: packets from that peer
/// fail authentication (dropped and counted) rather than pass unprotected.
fn placeholder() -> Result<SrtpKeys, Refused> {
    let key = || {
        MasterKey::generate(Suite::AesCm128HmacSha1_80).map_err(|e| Refused {
            status: 500,
            reason: e.to_string(),
        })
    };
    Ok(SrtpKeys {
        suite: Suite::AesCm128HmacSha1_80,
        peer: key()?,
        peer_mki: None,
        relay: key()?,
        relay_mki: None,
        peer_pending: true,
    })
}

/// The (tag, suite) pairs of an offer's usable attributes, for passthrough.
fn pairs(sc: &StreamCrypto) -> Vec<(u32, Suite)> {
    sc.crypto
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .filter(|c| c.refusal().is_none())
        .map(|c| (c.tag, c.suite))
        .collect()
}

impl Sec {
    /// The caller's offer against its leg's policy: each anchored stream's use, or the refusal
    /// (488 with the reason) for the whole call.
    pub(super) fn of_offer(
        a_side: Side,
        policy: [LegPolicy; 2],
        offer: &Sdp,
    ) -> Result<Sec, Refused> {
        let a = slot(a_side);
        let mut streams = Vec::new();
        for index in anchored(offer) {
            let sc = stream_crypto(offer, index);
            let used = accept_offer(policy[a], side_name(a_side), &sc)?;
            let mut legs: [LegSec; 2] = Default::default();
            legs[a] = LegSec {
                proto: proto_of(offer, index),
                plan: None,
                used: Some(used),
                keyed: false,
            };
            streams.push(StreamSec {
                index,
                legs,
                pending: None,
                offered: Some((a_side, sc.savp, pairs(&sc))),
                end_to_end: None,
            });
        }
        Ok(Sec {
            policy,
            passthrough: false,
            streams,
        })
    }

    /// Streams `indexes` that a re-offer from `from` adds mid-call: each checked against that
    /// leg's policy (as the caller's offer is), and Mediator's fresh offer planned for the other
    /// leg under its policy. A refusal names why and adds nothing.
    pub(super) fn add_streams(
        &mut self,
        from: Side,
        sdp: &Sdp,
        indexes: &[usize],
    ) -> Result<(), Refused> {
        let (f, o) = (slot(from), slot(from.other()));
        if self.passthrough {
            // Its keys cross as they are, as the call's others do: so it must be SRTP with a
            // key the other leg can take (a stream in clear would break the call's promise).
            let mut added = Vec::new();
            for &index in indexes {
                let sc = stream_crypto(sdp, index);
                let used = accept_offer(LegPolicy::Required, side_name(from), &sc).map_err(|_| {
                    refused(
                        from,
                        "a stream added in clear (or without a usable key) to a call whose SRTP                          passes end to end",
                    )
                })?;
                let mut legs: [LegSec; 2] = Default::default();
                legs[f] = LegSec {
                    proto: proto_of(sdp, index),
                    plan: None,
                    used: Some(used),
                    keyed: false,
                };
                added.push(StreamSec {
                    index,
                    legs,
                    pending: None,
                    offered: Some((from, sc.savp, pairs(&sc))),
                    end_to_end: None,
                });
            }
            self.streams.retain(|s| !indexes.contains(&s.index));
            self.streams.extend(added);
            return Ok(());
        }
        let mut added = Vec::new();
        for &index in indexes {
            let sc = stream_crypto(sdp, index);
            let used = accept_offer(self.policy[f], side_name(from), &sc)?;
            let srtp = matches!(used, Use::Srtp { .. });
            let plan = crate::encryption::plan_offer(callee_policy(self.policy[o], srtp)).map_err(
                |e| Refused {
                    status: 500,
                    reason: e.to_string(),
                },
            )?;
            let proto = proto_of(sdp, index);
            let mut legs: [LegSec; 2] = Default::default();
            legs[o] = LegSec {
                proto: proto_for(plan.savp, &proto),
                plan: Some(plan),
                used: None,
                keyed: false,
            };
            legs[f] = LegSec {
                proto,
                plan: None,
                used: Some(used),
                keyed: false,
            };
            added.push(StreamSec {
                index,
                legs,
                pending: None,
                offered: Some((from, sc.savp, pairs(&sc))),
                end_to_end: None,
            });
        }
        self.streams.retain(|s| !indexes.contains(&s.index));
        self.streams.extend(added);
        Ok(())
    }

    /// Whether any stream uses, plans or keyed SRTP on either leg.
    pub(super) fn any_srtp(&self) -> bool {
        self.passthrough
            || self.streams.iter().any(|s| {
                s.legs
                    .iter()
                    .any(|l| l.keyed || is_srtp(&l.used) || l.plan.as_ref().is_some_and(|p| p.savp))
            })
    }

    /// Every stream of the caller uses SRTP: the condition for passthrough on its side.
    pub(super) fn caller_all_srtp(&self, a_side: Side) -> bool {
        !self.streams.is_empty()
            && self
                .streams
                .iter()
                .all(|s| is_srtp(&s.legs[slot(a_side)].used))
    }

    /// Mediator's fresh offer to the callee's leg under `policy` (a new key per stream and suite).
    pub(super) fn plan_callee(&mut self, a_side: Side, policy: LegPolicy) -> Result<(), Refused> {
        let b = slot(a_side.other());
        self.policy[b] = policy;
        if self.passthrough {
            return Ok(());
        }
        for s in &mut self.streams {
            let caller_srtp = is_srtp(&s.legs[slot(a_side)].used);
            let plan =
                crate::encryption::plan_offer(callee_policy(policy, caller_srtp)).map_err(|e| {
                    Refused {
                        status: 500,
                        reason: e.to_string(),
                    }
                })?;
            let like = s.legs[slot(a_side)].proto.clone();
            let leg = &mut s.legs[b];
            leg.proto = proto_for(plan.savp, &like);
            leg.plan = Some(plan);
            leg.used = None;
        }
        Ok(())
    }

    /// The relay's keys when a stream's session is created: the caller's negotiated keys, and
    /// for the callee's side, keys that drop its packets until its answer when any of the
    /// `callee` policies (of every trunk the call may try) offers SRTP there — SRTP cannot be
    /// turned on in a session later.
    pub(super) fn session_keys(
        &mut self,
        index: usize,
        a_side: Side,
        callee: &[LegPolicy],
    ) -> Result<[Option<SrtpKeys>; 2], Refused> {
        let mut keys = [None, None];
        if self.passthrough {
            return Ok(keys);
        }
        let Some(s) = self.streams.iter_mut().find(|s| s.index == index) else {
            return Ok(keys);
        };
        let (a, b) = (slot(a_side), slot(a_side.other()));
        let caller_srtp = is_srtp(&s.legs[a].used);
        if let Some(Use::Srtp { peer, ours }) = &s.legs[a].used {
            keys[a] = Some(SrtpKeys::of(peer, ours));
            s.legs[a].keyed = true;
        }
        if callee
            .iter()
            .any(|&p| callee_policy(p, caller_srtp) != LegPolicy::Off)
        {
            keys[b] = Some(placeholder()?);
            s.legs[b].keyed = true;
        }
        Ok(keys)
    }

    /// Another early dialog's SDP `sdp` (the callee's leg answering Mediator's offer there),
    /// for forks of the call's sessions: checked against that leg's policy as the first early
    /// dialog's answer is, and refused when it is SRTP there (the INVITE's one key of Mediator's
    /// cannot protect a second relay context); per stream the relay's keys for its fork (on the
    /// caller's side a fresh key of Mediator's, never the call's own: two forks' packets to the
    /// caller may share an SSRC) and what Mediator writes toward the caller for each m-line.
    /// The call's own state does not change.
    pub(super) fn fork(&self, a_side: Side, sdp: &Sdp) -> Result<ForkSec, Refused> {
        let (a, b) = (slot(a_side), slot(a_side.other()));
        let live = anchored(sdp);
        if self.passthrough {
            // The peers' own attributes cross as they are; the relay sees ciphertext.
            self.check_passthrough_answer(a_side.other(), sdp, &live)?;
            return Ok(ForkSec::default());
        }
        let mut rewrites: Vec<Option<CryptoRewrite>> = sdp
            .media
            .iter()
            .map(|m| Some(rewrite(&m.proto, &[])))
            .collect();
        let mut streams = Vec::new();
        for s in self.streams.iter().filter(|s| live.contains(&s.index)) {
            let mut keys = [None, None];
            if let Some(plan) = &s.legs[b].plan
                && let Use::Srtp { .. } = accept_answer(
                    self.policy[b],
                    side_name(a_side.other()),
                    plan,
                    &stream_crypto(sdp, s.index),
                )?
            {
                // The INVITE offered every early dialog the same key of Mediator's: a second
                // relay context under it would count its SRTCP index from 0 again, repeating
                // keystream (with GCM, nonces) the first context used.
                return Err(refused(
                    a_side.other(),
                    "SRTP in another early dialog: Mediator's one offered key cannot protect \
                     a second early dialog's media",
                ));
            }
            let proto = s.legs[a].proto.as_str();
            let (written, caller) = match &s.legs[a].used {
                Some(Use::Srtp { peer, .. }) => {
                    let ours = peer.answer().map_err(|e| Refused {
                        status: 500,
                        reason: e.to_string(),
                    })?;
                    keys[a] = Some(SrtpKeys::of(peer, &ours));
                    (rewrite(proto, &[&ours]), Some(ours))
                }
                _ => (rewrite(proto, &[]), None),
            };
            if let Some(r) = rewrites.get_mut(s.index) {
                *r = Some(written);
            }
            streams.push((s.index, keys, caller));
        }
        Ok(ForkSec { streams, rewrites })
    }

    /// The early dialog whose forks answered: Mediator's key toward the caller on `index` is
    /// its fork's from now on (the caller has it from that early dialog's SDP).
    pub(super) fn adopt_fork(&mut self, index: usize, a_side: Side, caller: &Crypto) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.index == index)
            && let Some(Use::Srtp { ours, .. }) = &mut s.legs[slot(a_side)].used
        {
            *ours = caller.clone();
        }
    }

    /// What Mediator writes for each m-line of `sdp` sent to `toward`, as an offer (its plan
    /// there) or an answer (what the leg uses). Every m-line Mediator does not negotiate keeps
    /// its protocol and loses its `a=crypto` lines. Empty in passthrough: the SDP's crypto passes
    /// as it is.
    pub(super) fn rewrites(
        &self,
        toward: Side,
        sdp: &Sdp,
        writing: Writing,
    ) -> Vec<Option<CryptoRewrite>> {
        if self.passthrough {
            return Vec::new();
        }
        let t = slot(toward);
        let mut out: Vec<Option<CryptoRewrite>> = sdp
            .media
            .iter()
            .map(|m| Some(rewrite(&m.proto, &[])))
            .collect();
        let live = anchored(sdp);
        for s in self.streams.iter().filter(|s| live.contains(&s.index)) {
            let leg = &s.legs[t];
            let Some(x) = out.get_mut(s.index) else {
                continue;
            };
            // An answer to a leg whose own re-offer is pending: its new use.
            let pending = s.pending.as_ref().filter(|p| p.from == toward);
            let (proto, used) = match pending {
                Some(p) => (p.proto.as_str(), Some(&p.used)),
                None => (leg.proto.as_str(), leg.used.as_ref()),
            };
            *x = Some(match (writing, &leg.plan, used) {
                (Writing::Offer, Some(plan), _) => {
                    rewrite(&leg.proto, &plan.crypto.iter().collect::<Vec<_>>())
                }
                (_, _, Some(Use::Srtp { ours, .. })) => rewrite(proto, &[ours]),
                _ => rewrite(proto, &[]),
            });
        }
        out
    }

    /// An answer from `from`'s leg to Mediator's offer there: what each stream uses now (and a
    /// pending re-offer of the other leg applied), and the relay's key changes by stream and
    /// side. A refusal names the policy it fails and changes nothing.
    pub(super) fn on_answer(
        &mut self,
        from: Side,
        sdp: &Sdp,
    ) -> Result<Vec<(usize, Side, SrtpChange)>, Refused> {
        let (f, o) = (slot(from), slot(from.other()));
        let live = anchored(sdp);
        if self.passthrough {
            let suites = self.check_passthrough_answer(from, sdp, &live)?;
            for (s, suite) in self.streams.iter_mut().zip(suites) {
                if suite.is_some() {
                    s.end_to_end = suite;
                }
            }
            return Ok(Vec::new());
        }
        let mut uses = Vec::new();
        for s in self.streams.iter().filter(|s| live.contains(&s.index)) {
            let Some(plan) = &s.legs[f].plan else {
                continue;
            };
            let used = accept_answer(
                self.policy[f],
                side_name(from),
                plan,
                &stream_crypto(sdp, s.index),
            )?;
            if matches!(used, Use::Srtp { .. }) && !s.legs[f].keyed {
                return Err(refused(
                    from,
                    "SRTP answered on a stream whose relay session is plain (an earlier answer \
                     was plain); SRTP cannot start mid-session",
                ));
            }
            uses.push((s.index, used));
        }
        // Every stream is acceptable: only now is anything changed.
        let mut changes = Vec::new();
        for (index, used) in uses {
            let Some(s) = self.streams.iter_mut().find(|s| s.index == index) else {
                continue;
            };
            if let Some(p) = s.pending.take() {
                let leg = &mut s.legs[o];
                if let Use::Srtp { peer, ours } = &p.used {
                    changes.push((
                        index,
                        from.other(),
                        SrtpChange::Keys(SrtpKeys::of(peer, ours)),
                    ));
                }
                leg.used = Some(p.used);
                leg.proto = p.proto;
            }
            let leg = &mut s.legs[f];
            let change = match &used {
                Use::Srtp { peer, ours } => SrtpChange::Keys(SrtpKeys::of(peer, ours)),
                Use::Plain if leg.keyed => {
                    leg.keyed = false;
                    SrtpChange::Off
                }
                Use::Plain => SrtpChange::Keep,
            };
            leg.used = Some(used);
            changes.push((index, from, change));
        }
        Ok(changes)
    }

    /// In passthrough the relay sees no keys, but the policies still hold: the answer picks one
    /// of the offer's attributes (tag and suite), a leg that requires SRTP gets one, and an
    /// RTP/SAVP offer is not answered in clear. The agreed suite per stream.
    fn check_passthrough_answer(
        &self,
        from: Side,
        sdp: &Sdp,
        live: &[usize],
    ) -> Result<Vec<Option<Suite>>, Refused> {
        let required = self.policy.contains(&LegPolicy::Required);
        let mut suites = Vec::new();
        for s in &self.streams {
            if !live.contains(&s.index) {
                suites.push(None);
                continue;
            }
            let answer = stream_crypto(sdp, s.index);
            let (savp, offered) = match &s.offered {
                Some((by, savp, pairs)) if *by == from.other() => (*savp, pairs.as_slice()),
                _ => (false, &[][..]),
            };
            match answer.crypto.iter().find_map(|c| c.as_ref().ok()) {
                Some(c) => {
                    if !offered.contains(&(c.tag, c.suite)) {
                        return Err(refused(
                            from,
                            format!(
                                "the answer's crypto tag {} ({}) was not offered",
                                c.tag,
                                c.suite.name()
                            ),
                        ));
                    }
                    if let Some(r) = c.refusal() {
                        return Err(refused(from, r));
                    }
                    suites.push(Some(c.suite));
                }
                None if required || savp || answer.savp => {
                    return Err(refused(
                        from,
                        "media encryption is required (or RTP/SAVP was offered), but the \
                         answer has no usable a=crypto",
                    ));
                }
                None => suites.push(None),
            }
        }
        Ok(suites)
    }

    /// A new offer from `from`'s leg inside the dialog: checked against the leg's policy and
    /// kept pending until the other leg answers; Mediator's re-offer to the other leg carries
    /// the keys it already uses there. Mediator's own key stays where the suite stays (RFC 4568
    /// §7.1.4), under the tag the peer chose now. Switching a leg between SRTP and RTP mid-call is
    /// refused (488). Nothing changes until [`Sec::on_answer`].
    pub(super) fn on_reoffer(&mut self, from: Side, sdp: &Sdp) -> Result<(), Refused> {
        let (f, o) = (slot(from), slot(from.other()));
        let live = anchored(sdp);
        if self.passthrough {
            let required = self.policy.contains(&LegPolicy::Required);
            let mut offers = Vec::new();
            for s in self.streams.iter().filter(|s| live.contains(&s.index)) {
                let sc = stream_crypto(sdp, s.index);
                if required && let Err(why) = choose(&sc.crypto) {
                    return Err(refused(
                        from,
                        format!("media encryption is required: {why}"),
                    ));
                }
                offers.push((s.index, (from, sc.savp, pairs(&sc))));
            }
            for (index, offered) in offers {
                if let Some(s) = self.streams.iter_mut().find(|s| s.index == index) {
                    s.offered = Some(offered);
                }
            }
            return Ok(());
        }
        let mut uses = Vec::new();
        for s in self.streams.iter().filter(|s| live.contains(&s.index)) {
            let sc = stream_crypto(sdp, s.index);
            let mut used = accept_offer(self.policy[f], side_name(from), &sc)?;
            match (&s.legs[f].used, &mut used) {
                // A best-effort key on a plain leg is ignored: the answer is plain.
                (Some(Use::Plain), Use::Srtp { .. }) if !sc.savp => used = Use::Plain,
                (Some(Use::Srtp { ours: old, .. }), Use::Srtp { peer, ours })
                    if old.suite == peer.suite =>
                {
                    *ours = Crypto {
                        tag: peer.tag,
                        ..old.clone()
                    };
                }
                (Some(Use::Srtp { .. }), Use::Srtp { .. }) | (Some(Use::Plain), Use::Plain) => {}
                _ => {
                    return Err(refused(
                        from,
                        "switching a stream between SRTP and RTP mid-call is not supported",
                    ));
                }
            }
            if matches!(used, Use::Srtp { .. }) && !s.legs[f].keyed {
                return Err(refused(
                    from,
                    "SRTP offered on a stream whose relay session is plain",
                ));
            }
            uses.push((s.index, used, proto_of(sdp, s.index)));
        }
        for (index, used, proto) in uses {
            let Some(s) = self.streams.iter_mut().find(|s| s.index == index) else {
                continue;
            };
            s.pending = Some(Pending { from, used, proto });
            let other = &mut s.legs[o];
            if other.used.is_none() && other.plan.is_some() {
                // A stream this re-offer adds: Mediator's fresh plan for the leg stands.
                continue;
            }
            other.plan = Some(match &other.used {
                Some(Use::Srtp { ours, .. }) => Plan {
                    savp: other.proto.to_ascii_uppercase().contains("SAVP"),
                    crypto: vec![ours.clone()],
                },
                _ => Plan {
                    savp: false,
                    crypto: Vec::new(),
                },
            });
        }
        Ok(())
    }

    /// A re-offer that was refused, failed or timed out: the session stays as it was.
    pub(super) fn drop_reoffer(&mut self) {
        for s in &mut self.streams {
            if let Some(p) = s.pending.take() {
                s.legs[slot(p.from.other())].plan = None;
            }
        }
    }

    /// The suite each leg of stream `index` uses, for the API ("" for plain RTP).
    pub(super) fn suites(&self, index: usize) -> [String; 2] {
        let name = |l: &LegSec| match &l.used {
            Some(Use::Srtp { peer, .. }) => peer.suite.name().to_string(),
            _ => String::new(),
        };
        let Some(s) = self.streams.iter().find(|s| s.index == index) else {
            return Default::default();
        };
        if self.passthrough {
            let e = s
                .end_to_end
                .map(|x| x.name().to_string())
                .unwrap_or_default();
            return [e.clone(), e];
        }
        [name(&s.legs[0]), name(&s.legs[1])]
    }
}

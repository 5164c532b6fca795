//! A call's media encryption: per anchored stream and leg, what Mediator offered the leg (its
//! plan), what the leg uses (negotiated), and whether the relay holds keys for it. Mediator is the
//! SDES endpoint on each leg (it never passes one leg's keys to the other) unless the call is in
//! passthrough, where the peers' own `a=crypto` lines cross unchanged and the relay sees only
//! ciphertext. The decisions are `crate::encryption`'s; this file applies them to SDP and to the
//! relay's sessions.

use super::*;
use crate::encryption::{LegPolicy, Plan, Refused, StreamCrypto, Use, accept_answer, accept_offer};
use crate::media::{MasterKey, SrtpChange, SrtpKeys, Suite};
use crate::sdp::CryptoRewrite;

/// One leg of one stream.
#[derive(Debug, Default)]
pub(super) struct LegSec {
    /// The m= line's protocol on this leg (RTP/AVP, RTP/SAVP, …).
    pub(super) proto: String,
    /// Mediator's last offer to this leg.
    pub(super) plan: Option<Plan>,
    /// What the leg uses once negotiated.
    pub(super) used: Option<Use>,
    /// The relay's session holds keys for this side.
    pub(super) keyed: bool,
}

#[derive(Debug)]
pub(super) struct StreamSec {
    pub(super) index: usize,
    /// By [`slot`]: the pool's leg, the gateway's leg.
    pub(super) legs: [LegSec; 2],
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

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Pool => "pool",
        Side::Gateway => "gateway",
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

fn rewrite(proto: &str, crypto: &[&crate::sdes::Crypto]) -> CryptoRewrite {
    CryptoRewrite {
        proto: proto.to_string(),
        crypto: crypto.iter().map(|c| c.to_sdp()).collect(),
    }
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
    })
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
        for s in offer.streams() {
            let sc = stream_crypto(offer, s.index);
            let used = accept_offer(policy[a], side_name(a_side), &sc)?;
            let mut legs: [LegSec; 2] = Default::default();
            legs[a] = LegSec {
                proto: offer
                    .crypto(s.index)
                    .map(|(p, _)| p.to_string())
                    .unwrap_or_default(),
                plan: None,
                used: Some(used),
                keyed: false,
            };
            streams.push(StreamSec {
                index: s.index,
                legs,
                end_to_end: None,
            });
        }
        Ok(Sec {
            policy,
            passthrough: false,
            streams,
        })
    }

    /// Every stream of the caller uses SRTP: the condition for passthrough on its side.
    pub(super) fn caller_all_srtp(&self, a_side: Side) -> bool {
        !self.streams.is_empty()
            && self
                .streams
                .iter()
                .all(|s| matches!(s.legs[slot(a_side)].used, Some(Use::Srtp { .. })))
    }

    /// Mediator's fresh offer to the callee's leg under `policy` (a new key per stream and suite).
    pub(super) fn plan_callee(&mut self, a_side: Side, policy: LegPolicy) -> Result<(), Refused> {
        let b = slot(a_side.other());
        self.policy[b] = policy;
        if self.passthrough {
            return Ok(());
        }
        for s in &mut self.streams {
            let caller_srtp = matches!(s.legs[slot(a_side)].used, Some(Use::Srtp { .. }));
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
        let caller_srtp = matches!(s.legs[a].used, Some(Use::Srtp { .. }));
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

    /// What Mediator writes for each m-line of an SDP sent to `toward`: its offer there, or its
    /// answer. `None` (passthrough, or a stream not anchored) leaves the m-line's crypto as is.
    pub(super) fn rewrites(&self, toward: Side, lines: usize) -> Vec<Option<CryptoRewrite>> {
        let mut out = vec![None; lines];
        if self.passthrough {
            return out;
        }
        let t = slot(toward);
        for s in &self.streams {
            let leg = &s.legs[t];
            let Some(x) = out.get_mut(s.index) else {
                continue;
            };
            *x = match (&leg.plan, &leg.used) {
                // Answered (or negotiated): Mediator's own attribute, or none.
                (_, Some(Use::Srtp { ours, .. })) => Some(rewrite(&leg.proto, &[ours])),
                (_, Some(Use::Plain)) => Some(rewrite(&leg.proto, &[])),
                (Some(plan), None) => {
                    Some(rewrite(&leg.proto, &plan.crypto.iter().collect::<Vec<_>>()))
                }
                (None, None) => Some(rewrite(&leg.proto, &[])),
            };
        }
        out
    }

    /// An answer from `from`'s leg to Mediator's offer there: what each stream uses now, and
    /// the relay's key changes by stream index. A refusal names the policy it fails.
    pub(super) fn on_answer(
        &mut self,
        from: Side,
        sdp: &Sdp,
    ) -> Result<Vec<(usize, SrtpChange)>, Refused> {
        let f = slot(from);
        if self.passthrough {
            let suites = self.check_passthrough_answer(from, sdp)?;
            for (s, suite) in self.streams.iter_mut().zip(suites) {
                s.end_to_end = suite;
            }
            return Ok(Vec::new());
        }
        let mut uses = Vec::new();
        for s in &self.streams {
            let leg = &s.legs[f];
            let Some(plan) = &leg.plan else {
                continue;
            };
            let used = accept_answer(
                self.policy[f],
                side_name(from),
                plan,
                &stream_crypto(sdp, s.index),
            )?;
            uses.push((s.index, used));
        }
        // Every stream is acceptable: only now is anything changed.
        let mut changes = Vec::new();
        for (index, used) in uses {
            let Some(s) = self.streams.iter_mut().find(|s| s.index == index) else {
                continue;
            };
            let leg = &mut s.legs[f];
            let change = match &used {
                Use::Srtp { peer, ours } => {
                    leg.keyed = true;
                    SrtpChange::Keys(SrtpKeys::of(peer, ours))
                }
                Use::Plain if leg.keyed => {
                    leg.keyed = false;
                    SrtpChange::Off
                }
                Use::Plain => SrtpChange::Keep,
            };
            leg.used = Some(used);
            changes.push((index, change));
        }
        Ok(changes)
    }

    /// In passthrough the relay sees no keys, but the policies still hold: a leg that requires
    /// SRTP gets an answer with a key the caller offered, or the call fails.
    fn check_passthrough_answer(
        &self,
        from: Side,
        sdp: &Sdp,
    ) -> Result<Vec<Option<Suite>>, Refused> {
        let required = self.policy.contains(&LegPolicy::Required);
        let mut suites = Vec::new();
        for s in &self.streams {
            let answer = stream_crypto(sdp, s.index);
            let offered = match &s.legs[slot(from.other())].used {
                Some(Use::Srtp { peer, .. }) => Some(peer),
                _ => None,
            };
            let chosen = answer.crypto.iter().find_map(|c| c.as_ref().ok());
            match (chosen, offered) {
                (Some(c), Some(o)) if c.suite == o.suite => {
                    if let Some(r) = c.refusal() {
                        return Err(Refused {
                            status: 488,
                            reason: format!("{} side: {r}", side_name(from)),
                        });
                    }
                    suites.push(Some(c.suite));
                    continue;
                }
                (Some(c), _) => {
                    return Err(Refused {
                        status: 488,
                        reason: format!(
                            "{} side: the answer's crypto tag {} ({}) is not the suite the other side offered first; with srtp_passthrough both sides must use one suite",
                            side_name(from),
                            c.tag,
                            c.suite.name()
                        ),
                    });
                }
                (None, _) if required || answer.savp => {
                    return Err(Refused {
                        status: 488,
                        reason: format!(
                            "{} side: media encryption is required, but the answer has no usable a=crypto",
                            side_name(from)
                        ),
                    });
                }
                (None, _) => {}
            }
            suites.push(None);
        }
        Ok(suites)
    }

    /// A new offer from `from`'s leg inside the dialog (a re-INVITE or UPDATE): its use under
    /// the leg's policy, Mediator's key kept where the suite stays, and Mediator's re-offer to
    /// the other leg with the keys it already uses there. Switching a leg between SRTP and RTP
    /// mid-call is refused (488).
    pub(super) fn on_reoffer(
        &mut self,
        from: Side,
        sdp: &Sdp,
    ) -> Result<Vec<(usize, SrtpChange)>, Refused> {
        if self.passthrough {
            return Ok(Vec::new());
        }
        let (f, o) = (slot(from), slot(from.other()));
        let mut uses = Vec::new();
        for s in &self.streams {
            let sc = stream_crypto(sdp, s.index);
            let mut used = accept_offer(self.policy[f], side_name(from), &sc)?;
            let old = &s.legs[f].used;
            match (old, &mut used) {
                (Some(Use::Plain), Use::Srtp { .. }) if !sc.savp => used = Use::Plain,
                (Some(Use::Srtp { ours: old, .. }), Use::Srtp { peer, ours })
                    if old.suite == peer.suite =>
                {
                    // The same suite: Mediator's key stays (a new one would re-make the
                    // relay's context for nothing), under the tag the peer chose now.
                    *ours = crate::sdes::Crypto {
                        tag: peer.tag,
                        ..old.clone()
                    };
                }
                (Some(Use::Srtp { .. }), Use::Srtp { .. }) | (Some(Use::Plain), Use::Plain) => {}
                (Some(_), _) => {
                    return Err(Refused {
                        status: 488,
                        reason: format!(
                            "{} side: switching a stream between SRTP and RTP mid-call is not supported",
                            side_name(from)
                        ),
                    });
                }
                (None, _) => {}
            }
            uses.push((s.index, used));
        }
        let mut changes = Vec::new();
        for (index, used) in uses {
            let Some(s) = self.streams.iter_mut().find(|s| s.index == index) else {
                continue;
            };
            if let Use::Srtp { peer, ours } = &used {
                changes.push((index, SrtpChange::Keys(SrtpKeys::of(peer, ours))));
            }
            s.legs[f].used = Some(used);
            s.legs[f].plan = None;
            // Mediator re-offers the other leg what it uses there now.
            let other = &mut s.legs[o];
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
            other.used = None;
        }
        Ok(changes)
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

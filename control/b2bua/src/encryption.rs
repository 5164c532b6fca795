//! Media encryption policy, as Lync has it: pure decisions that say why they refuse.
//!
//! Each leg has a [`LegPolicy`]. The pool side's comes from the pool's `media_encryption`
//! (Lync's EncryptionLevel); the gateway side's comes from the trunk's effective `srtp_mode`,
//! which is forced to `not_supported` on a trunk that is not TLS, because SDES keys in SDP would
//! cross the network in clear. On each leg Mediator is the SDP endpoint for crypto:
//! - [`accept_offer`] decides what a peer's offer gets: SRTP with the attribute Mediator picked,
//!   plain RTP, or a 488 whose reason names the policy;
//! - [`plan_offer`] decides what Mediator offers a peer;
//! - [`accept_answer`] decides whether that peer's answer meets the plan.
//!
//! A setting that promises encryption never silently does less: `required` either gets SRTP or
//! fails the call with the reason.

pub use mediator_topology::model::MediaEncryption;
use mediator_topology::model::{SrtpMode, Transport};

use crate::sdes::{Crypto, SdesError, choose};

/// What one leg must, may or must not do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegPolicy {
    /// SRTP only: an offer without usable crypto is refused, Mediator offers RTP/SAVP.
    Required,
    /// SRTP when the peer wants it: Mediator offers best-effort SRTP (RTP/AVP with a=crypto,
    /// RFC 4568 §7.1.1) and accepts plain RTP.
    Optional,
    /// Plain RTP only: crypto attributes are ignored on RTP/AVP, RTP/SAVP is refused.
    Off,
}

/// The pool side's policy.
pub fn pool_policy(level: MediaEncryption) -> LegPolicy {
    match level {
        MediaEncryption::Required => LegPolicy::Required,
        MediaEncryption::Supported => LegPolicy::Optional,
        MediaEncryption::NotSupported => LegPolicy::Off,
    }
}

/// Why a trunk's `srtp_mode` is not what it says, if it is not.
pub const NOT_TLS: &str = "srtp_mode is not_supported on this trunk: it is not TLS, and SDES keys in SDP would cross the network in clear";

/// The gateway side's policy from the trunk's effective `srtp_mode` and transport, with the
/// reason when the transport overrides the setting.
pub fn gateway_policy(mode: SrtpMode, transport: Transport) -> (LegPolicy, Option<&'static str>) {
    let wanted = match mode {
        SrtpMode::Required => LegPolicy::Required,
        SrtpMode::Optional => LegPolicy::Optional,
        SrtpMode::NotSupported => LegPolicy::Off,
    };
    if transport != Transport::Tls && wanted != LegPolicy::Off {
        return (LegPolicy::Off, Some(NOT_TLS));
    }
    (wanted, None)
}

/// What one media stream of an SDP says about crypto.
#[derive(Debug)]
pub struct StreamCrypto {
    /// The m= line's transport protocol is RTP/SAVP (or RTP/SAVPF).
    pub savp: bool,
    /// Its `a=crypto` attributes, parsed, in their order.
    pub crypto: Vec<Result<Crypto, SdesError>>,
}

impl StreamCrypto {
    /// From the m= line's protocol and its `a=crypto:` values.
    pub fn new<'a>(proto: &str, values: impl IntoIterator<Item = &'a str>) -> StreamCrypto {
        StreamCrypto {
            savp: proto.eq_ignore_ascii_case("RTP/SAVP") || proto.eq_ignore_ascii_case("RTP/SAVPF"),
            crypto: values.into_iter().map(Crypto::parse).collect(),
        }
    }
}

/// What a stream uses on a leg once negotiated.
#[derive(Debug, PartialEq, Eq)]
pub enum Use {
    /// SRTP: the peer's attribute (its key protects what it sends) and Mediator's answer to it
    /// (its key protects what Mediator sends).
    Srtp {
        peer: Crypto,
        ours: Crypto,
    },
    Plain,
}

/// A refusal: the status for the offer's transaction and the reason for its Warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub reason: String,
}

fn refuse(side: &str, reason: impl Into<String>) -> Refused {
    Refused {
        status: 488,
        reason: format!("{side} side: {}", reason.into()),
    }
}

/// What a peer's offered stream gets on a leg with `policy` (`side` names the leg in reasons).
pub fn accept_offer(policy: LegPolicy, side: &str, offer: &StreamCrypto) -> Result<Use, Refused> {
    match policy {
        LegPolicy::Off => {
            if offer.savp {
                return Err(refuse(
                    side,
                    "RTP/SAVP offered, but media encryption is not supported here",
                ));
            }
            Ok(Use::Plain)
        }
        LegPolicy::Required | LegPolicy::Optional => match choose(&offer.crypto) {
            Ok(c) => Ok(Use::Srtp {
                ours: c.answer().map_err(|e| Refused {
                    status: 500,
                    reason: e.to_string(),
                })?,
                peer: c.clone(),
            }),
            Err(why) if policy == LegPolicy::Required || offer.savp => Err(refuse(
                side,
                if policy == LegPolicy::Required {
                    format!("media encryption is required: {why}")
                } else {
                    format!("RTP/SAVP offered without a usable key: {why}")
                },
            )),
            Err(_) => Ok(Use::Plain),
        },
    }
}

/// What Mediator offers a peer on a leg with `policy`.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// RTP/SAVP rather than RTP/AVP.
    pub savp: bool,
    /// Mediator's attributes, one per suite it offers (empty: plain RTP).
    pub crypto: Vec<Crypto>,
}

/// Mediator's offer on a leg with `policy`: every suite, each with its own fresh key.
pub fn plan_offer(policy: LegPolicy) -> Result<Plan, SdesError> {
    let crypto = match policy {
        LegPolicy::Off => Vec::new(),
        LegPolicy::Required | LegPolicy::Optional => crate::sdes::Suite::ALL
            .into_iter()
            .zip(1..)
            .map(|(s, tag)| Crypto::offer(tag, s))
            .collect::<Result<_, _>>()?,
    };
    Ok(Plan {
        savp: policy == LegPolicy::Required,
        crypto,
    })
}

/// Whether a peer's answer to `plan` meets `policy` on its leg, and what the stream uses.
pub fn accept_answer(
    policy: LegPolicy,
    side: &str,
    plan: &Plan,
    answer: &StreamCrypto,
) -> Result<Use, Refused> {
    // The answer's protocol is the offer's (RFC 3264 §6).
    if answer.savp != plan.savp {
        return Err(refuse(
            side,
            if plan.savp {
                "RTP/AVP answered to an RTP/SAVP offer"
            } else {
                "RTP/SAVP answered to an RTP/AVP offer"
            },
        ));
    }
    if plan.crypto.is_empty() {
        return Ok(Use::Plain);
    }
    let mut usable = answer.crypto.iter().filter_map(|c| c.as_ref().ok());
    match usable.next() {
        Some(a) => {
            let Some(ours) = plan
                .crypto
                .iter()
                .find(|o| o.tag == a.tag && o.suite == a.suite)
            else {
                return Err(refuse(
                    side,
                    format!(
                        "the answer's crypto tag {} ({}) was not offered",
                        a.tag,
                        a.suite.name()
                    ),
                ));
            };
            if let Some(r) = a.refusal() {
                return Err(refuse(side, r));
            }
            Ok(Use::Srtp {
                peer: a.clone(),
                ours: ours.clone(),
            })
        }
        None if policy == LegPolicy::Required => Err(refuse(
            side,
            "media encryption is required, but the answer has no usable a=crypto",
        )),
        None => Ok(Use::Plain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn lync() -> String {
        format!("2 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31|1:1")
    }

    fn offer(proto: &str, crypto: &[&str]) -> StreamCrypto {
        StreamCrypto::new(proto, crypto.iter().copied())
    }

    #[test]
    fn a_trunk_that_is_not_tls_never_does_srtp_and_says_why() {
        for mode in [SrtpMode::Required, SrtpMode::Optional] {
            for t in [Transport::Udp, Transport::Tcp] {
                assert_eq!(gateway_policy(mode, t), (LegPolicy::Off, Some(NOT_TLS)));
            }
        }
        assert_eq!(
            gateway_policy(SrtpMode::NotSupported, Transport::Tcp),
            (LegPolicy::Off, None)
        );
        assert_eq!(
            gateway_policy(SrtpMode::Required, Transport::Tls),
            (LegPolicy::Required, None)
        );
        assert_eq!(
            gateway_policy(SrtpMode::Optional, Transport::Tls),
            (LegPolicy::Optional, None)
        );
    }

    /// Every policy against every kind of offer: SAVP with a key, AVP with a key (best effort),
    /// AVP without, SAVP without, SAVP with only unusable keys.
    #[test]
    fn every_policy_against_every_offer() {
        let l = lync();
        let unusable = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTCP");
        let offers = [
            ("savp+key", offer("RTP/SAVP", &[&l])),
            ("avp+key", offer("RTP/AVP", &[&l])),
            ("avp", offer("RTP/AVP", &[])),
            ("savp", offer("RTP/SAVP", &[])),
            ("savp+unusable", offer("RTP/SAVP", &[&unusable])),
        ];
        // (policy, offer) -> Ok(srtp?) or Err(reason fragment)
        let want: [(LegPolicy, [Result<bool, &str>; 5]); 3] = [
            (
                LegPolicy::Required,
                [
                    Ok(true),
                    Ok(true),
                    Err("encryption is required: no a=crypto"),
                    Err("encryption is required: no a=crypto"),
                    Err("UNENCRYPTED_SRTCP"),
                ],
            ),
            (
                LegPolicy::Optional,
                [
                    Ok(true),
                    Ok(true),
                    Ok(false),
                    Err("RTP/SAVP offered without a usable key"),
                    Err("UNENCRYPTED_SRTCP"),
                ],
            ),
            (
                LegPolicy::Off,
                [
                    Err("not supported here"),
                    Ok(false),
                    Ok(false),
                    Err("not supported here"),
                    Err("not supported here"),
                ],
            ),
        ];
        for (policy, results) in want {
            for ((name, o), w) in offers.iter().zip(results) {
                let got = accept_offer(policy, "pool", o);
                match (w, got) {
                    (Ok(true), Ok(Use::Srtp { peer, ours })) => {
                        assert_eq!(peer.tag, 2);
                        assert_eq!(ours.suite, peer.suite);
                        assert_ne!(ours.key, peer.key, "Mediator's own key on this leg");
                    }
                    (Ok(false), Ok(Use::Plain)) => {}
                    (Err(frag), Err(r)) => {
                        assert_eq!(r.status, 488, "{policy:?} {name}");
                        assert!(r.reason.starts_with("pool side: "), "{}", r.reason);
                        assert!(r.reason.contains(frag), "{policy:?} {name}: {}", r.reason);
                    }
                    (w, got) => panic!("{policy:?} {name}: wanted {w:?}, got {got:?}"),
                }
            }
        }
    }

    #[test]
    fn mediators_offers_follow_the_policy_with_a_fresh_key_per_suite() {
        let off = plan_offer(LegPolicy::Off).expect("plan");
        assert_eq!(
            off,
            Plan {
                savp: false,
                crypto: vec![]
            }
        );
        let req = plan_offer(LegPolicy::Required).expect("plan");
        assert!(req.savp);
        assert_eq!(req.crypto.len(), 4);
        let opt = plan_offer(LegPolicy::Optional).expect("plan");
        assert!(!opt.savp, "best effort: RTP/AVP with a=crypto");
        assert_ne!(opt.crypto[0].key, req.crypto[0].key);
        let tags: Vec<u32> = req.crypto.iter().map(|c| c.tag).collect();
        assert_eq!(tags, [1, 2, 3, 4]);
    }

    #[test]
    fn answers_must_pick_an_offered_attribute_and_meet_the_policy() {
        let plan = plan_offer(LegPolicy::Required).expect("plan");
        let good = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}");
        match accept_answer(
            LegPolicy::Required,
            "gateway",
            &plan,
            &offer("RTP/SAVP", &[&good]),
        ) {
            Ok(Use::Srtp { peer, ours }) => {
                assert_eq!((peer.tag, ours.tag), (1, 1));
                assert_eq!(&ours, &plan.crypto[0]);
            }
            other => panic!("{other:?}"),
        }
        let wrong_tag = format!("9 AES_CM_128_HMAC_SHA1_80 inline:{KEY}");
        let r = accept_answer(
            LegPolicy::Required,
            "gateway",
            &plan,
            &offer("RTP/SAVP", &[&wrong_tag]),
        )
        .expect_err("not offered");
        assert!(r.reason.contains("tag 9"), "{}", r.reason);
        let r = accept_answer(
            LegPolicy::Required,
            "gateway",
            &plan,
            &offer("RTP/AVP", &[]),
        )
        .expect_err("the offer's protocol");
        assert!(
            r.reason
                .starts_with("gateway side: RTP/AVP answered to an RTP/SAVP offer"),
            "{}",
            r.reason
        );
        let r = accept_answer(
            LegPolicy::Required,
            "gateway",
            &plan,
            &offer("RTP/SAVP", &[]),
        )
        .expect_err("required");
        assert!(
            r.reason
                .starts_with("gateway side: media encryption is required"),
            "{}",
            r.reason
        );
        let best_effort = plan_offer(LegPolicy::Optional).expect("plan");
        assert_eq!(
            accept_answer(
                LegPolicy::Optional,
                "gateway",
                &best_effort,
                &offer("RTP/AVP", &[])
            ),
            Ok(Use::Plain)
        );
        let plain = plan_offer(LegPolicy::Off).expect("plan");
        assert!(
            accept_answer(
                LegPolicy::Off,
                "gateway",
                &plain,
                &offer("RTP/SAVP", &[&good])
            )
            .is_err()
        );
        assert_eq!(
            accept_answer(LegPolicy::Off, "gateway", &plain, &offer("RTP/AVP", &[])),
            Ok(Use::Plain)
        );
    }
}

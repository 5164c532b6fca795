//! Media encryption through whole calls on virtual time: each leg's policy against every kind
//! of offer, Mediator's own keys per leg (never the other leg's), the relay's keys, answers that
//! fail a policy, re-keying on a re-INVITE, and passthrough.

use super::*;
use crate::media::{Mki, SrtpChange, SrtpKeys};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mediator_topology::model::{MediaEncryption, SrtpMode, Transport};

const FE_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const FE_KEY2: &str = "Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0ND";
const GW_KEY: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC";
const ROOT: &str = "198.18.2.2";

fn sdp(ip: &str, port: u16, proto: &str, crypto: &[String]) -> String {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    for c in crypto {
        s.push_str(&format!("a=crypto:{c}\r\n"));
    }
    s
}

fn fe_offer(proto: &str, crypto: &[String]) -> String {
    sdp("198.18.1.2", 6000, proto, crypto)
}

fn gw_sdp(proto: &str, crypto: &[String]) -> String {
    sdp("198.18.2.2", 7000, proto, crypto)
}

/// The Front End's Lync-style attribute: lifetime 2^31, MKI 1 of one byte.
fn lync(tag: u32, key: &str) -> String {
    format!("{tag} AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31|1:1")
}

fn with_body(msg: Vec<u8>, old: &str, new: &str) -> Vec<u8> {
    String::from_utf8(msg)
        .expect("utf8")
        .replace(
            &format!("Content-Length: {}\r\n", old.len()),
            &format!("Content-Length: {}\r\n", new.len()),
        )
        .replace(old, new)
        .into_bytes()
}

fn fe_invite(call_id: &str, offer: &str) -> Vec<u8> {
    with_body(invite("+14255550100", call_id), OFFER, offer)
}

/// The Front End's INVITE without SDP (a delayed offer).
fn fe_invite_without_sdp(call_id: &str) -> Vec<u8> {
    let full = String::from_utf8(fe_invite(call_id, &fe_offer("RTP/SAVP", &[]))).expect("utf8");
    format!(
        "{}Content-Length: 0\r\n\r\n",
        full.split("Content-Type:").next().expect("head")
    )
    .into_bytes()
}

fn gw_tls() -> Peer {
    Peer {
        transport: mediator_sip::Transport::Tls,
        ..gw(5060, 5060)
    }
}

fn gw_tcp() -> Peer {
    Peer {
        transport: mediator_sip::Transport::Tcp,
        ..gw(5060, 5060)
    }
}

/// An INVITE from the gateway over `peer`'s transport.
fn gw_invite(call_id: &str, peer: Peer, offer: &str) -> Vec<u8> {
    let t = peer.transport.name().to_ascii_uppercase();
    format!(
        "INVITE sip:+14255551000@198.18.2.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/{t} 198.18.2.2:5060;branch=z9hG4bK-gw-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+12065550100@198.18.2.2>;tag=gwa\r\n\
         To: <sip:+14255551000@198.18.2.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:gw@198.18.2.2:5060;transport={}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{offer}",
        peer.transport.name(),
        offer.len()
    )
    .into_bytes()
}

/// The pool's encryption level and the root trunk's transport, srtp_mode and passthrough.
fn setup(r: &mut Run, pool: MediaEncryption, transport: Transport, mode: SrtpMode, pt: bool) {
    r.t.pools
        .get_mut("pool.lab.mediator")
        .expect("pool")
        .value
        .media_encryption = pool;
    r.t.trunks
        .get_mut(ROOT)
        .expect("root trunk")
        .value
        .transport = transport;
    let s = &mut r
        .t
        .configs
        .get_mut("trunk:198.18.2.2")
        .expect("trunk config")
        .value
        .settings;
    s.srtp_mode = Some(mode);
    s.srtp_passthrough = Some(pt);
}

fn create(actions: &[Action]) -> Option<(CallId, Vec<MediaRequest>)> {
    actions.iter().find_map(|a| match a {
        Action::CreateMedia { call, requests, .. } => Some((*call, requests.clone())),
        _ => None,
    })
}

fn body(m: &Message) -> String {
    String::from_utf8_lossy(m.body()).to_string()
}

fn m_line(sdp: &str) -> String {
    sdp.lines()
        .find(|l| l.starts_with("m="))
        .unwrap_or_default()
        .to_string()
}

fn cryptos(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(str::to_string)
        .collect()
}

/// The base64 key of an `a=crypto` value.
fn key_of(crypto: &str) -> String {
    let inline = crypto
        .split_whitespace()
        .nth(2)
        .and_then(|k| k.strip_prefix("inline:"))
        .expect("inline key");
    inline.split('|').next().expect("key").to_string()
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn srtp_updates(actions: &[Action], side: Side) -> Vec<SrtpChange> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::UpdateMedia { request, .. } => Some(request.srtp[slot(side)].clone()),
            _ => None,
        })
        .collect()
}

fn keys(c: &SrtpChange) -> &SrtpKeys {
    match c {
        SrtpChange::Keys(k) => k,
        other => panic!("wanted keys, got {other:?}"),
    }
}

/// Lync toward an SBC on a TLS trunk, both sides `required`: each leg has its own keys; the
/// gateway never sees the Front End's key nor the Front End the gateway's; the relay gets each
/// peer's key and Mediator's own, per side.
#[test]
fn srtp_on_both_legs_with_a_key_per_leg() {
    let mut r = Run::new("srtp-both");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        false,
    );
    let offer = fe_offer("RTP/SAVP", &[lync(2, FE_KEY)]);
    let a = r.msg(&fe_invite("s1", &offer), fe());
    let (id, reqs) = create(&a).expect("sessions are created");
    let pool_keys = reqs[0].srtp[0].clone().expect("the pool side is keyed");
    assert_eq!(b64(pool_keys.peer.bytes()), FE_KEY, "the Front End's key");
    assert_eq!(pool_keys.peer_mki, Some(Mki { value: 1, len: 1 }));
    assert_ne!(b64(pool_keys.relay.bytes()), FE_KEY, "Mediator's own key");
    assert!(
        reqs[0].srtp[1].is_some(),
        "the gateway side drops packets until its answer names its key"
    );

    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let offered = body(&inv);
    assert!(
        m_line(&offered).contains(" RTP/SAVP "),
        "required: RTP/SAVP\n{offered}"
    );
    let ours = cryptos(&offered);
    assert_eq!(ours.len(), 4, "every suite, a key each:\n{offered}");
    assert!(
        !offered.contains(FE_KEY),
        "the Front End's key never crosses"
    );
    let tags: Vec<&str> = ours
        .iter()
        .map(|c| c.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(tags, ["1", "2", "3", "4"]);

    let answer = gw_sdp(
        "RTP/SAVP",
        &[format!("1 AES_CM_128_HMAC_SHA1_80 inline:{GW_KEY}")],
    );
    let a = r.msg(&respond(&inv, 200, "gw1", Some(&answer)), gw_tls());
    let upd = srtp_updates(&a, Side::Gateway);
    let k = keys(&upd[0]);
    assert_eq!(b64(k.peer.bytes()), GW_KEY, "the gateway's key");
    assert_eq!(
        b64(k.relay.bytes()),
        key_of(&ours[0]),
        "Mediator's key of the attribute the gateway chose"
    );
    assert_eq!(
        srtp_updates(&a, Side::Pool),
        [SrtpChange::Keep],
        "the pool side's keys stay"
    );
    let ok = sent_to(&a, fe())[0].clone();
    let answered = body(&ok);
    assert!(m_line(&answered).contains(" RTP/SAVP "), "{answered}");
    let c = cryptos(&answered);
    assert_eq!(c.len(), 1, "one attribute in an answer");
    assert!(
        c[0].starts_with("2 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{}",
        c[0]
    );
    assert!(c[0].ends_with("|1:1"), "the MKI length: {}", c[0]);
    assert!(
        !c[0].contains("2^31"),
        "no lifetime: the offer's is about its own key"
    );
    assert_eq!(key_of(&c[0]), b64(pool_keys.relay.bytes()));
    assert!(
        !answered.contains(GW_KEY),
        "the gateway's key never crosses"
    );
    let view = &r.e.calls(r.now)[0].streams[0];
    assert_eq!(
        view.srtp,
        [
            "AES_CM_128_HMAC_SHA1_80".to_string(),
            "AES_CM_128_HMAC_SHA1_80".to_string()
        ]
    );
    assert!(!view.srtp_passthrough);
}

/// What each offer kind gets under each pool-side level (the gateway trunk is UDP, so plain):
/// SRTP terminated toward the pool, plain RTP toward the gateway with no key of the Front End's
/// in it, or a 488 naming the policy with nothing set up.
#[test]
fn every_pool_level_against_every_offer() {
    let with_key = || vec![lync(2, FE_KEY)];
    let offers: [(&str, &str, Vec<String>); 4] = [
        ("savp+key", "RTP/SAVP", with_key()),
        ("avp+key", "RTP/AVP", with_key()),
        ("avp", "RTP/AVP", vec![]),
        ("savp", "RTP/SAVP", vec![]),
    ];
    // Some(srtp toward the pool) or None for a 488.
    let table = [
        (
            MediaEncryption::Required,
            [Some(true), Some(true), None, None],
        ),
        (
            MediaEncryption::Supported,
            [Some(true), Some(true), Some(false), None],
        ),
        (
            MediaEncryption::NotSupported,
            [None, Some(false), Some(false), None],
        ),
    ];
    for (level, want) in table {
        for ((name, proto, crypto), want) in offers.iter().zip(want) {
            let mut r = Run::new("matrix");
            setup(&mut r, level, Transport::Udp, SrtpMode::Required, false);
            let offer = fe_offer(proto, crypto);
            let a = r.msg(&fe_invite("m1", &offer), fe());
            let what = format!("{level:?} / {name}");
            let Some(srtp) = want else {
                let to_fe = sent_to(&a, fe());
                assert_eq!(statuses(&to_fe), [100, 488], "{what}");
                let w = to_fe[1].header("warning").expect("a Warning");
                assert!(w.contains("pool side: "), "{what}: {w}");
                assert!(create(&a).is_none(), "{what}: no session");
                assert!(sent_to(&a, gw(5060, 5060)).is_empty(), "{what}");
                assert!(r.e.calls(r.now).is_empty(), "{what}: nothing left");
                continue;
            };
            let (id, reqs) = create(&a).expect("sessions");
            assert_eq!(reqs[0].srtp[0].is_some(), srtp, "{what}");
            assert!(reqs[0].srtp[1].is_none(), "{what}: the UDP trunk is plain");
            let a = r.created(id);
            let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
            let offered = body(&inv);
            assert!(m_line(&offered).contains(" RTP/AVP "), "{what}: {offered}");
            assert!(cryptos(&offered).is_empty(), "{what}: {offered}");
            let a = r.msg(
                &respond(&inv, 200, "gw1", Some(&gw_sdp("RTP/AVP", &[]))),
                gw(5060, 5060),
            );
            let answered = body(&sent_to(&a, fe())[0]);
            assert!(
                m_line(&answered).contains(&format!(" {proto} ")),
                "{what}: the answer keeps the offer's protocol: {answered}"
            );
            assert_eq!(cryptos(&answered).len(), usize::from(srtp), "{what}");
            assert!(!answered.contains(FE_KEY), "{what}");
        }
    }
}

/// What each offer kind from the gateway gets under each srtp_mode on a TLS trunk, and on a TCP
/// trunk (srtp_mode forced to not_supported whatever it says).
#[test]
fn every_gateway_mode_against_every_offer_and_tcp_is_forced_plain() {
    let with_key = || vec![format!("1 AES_CM_128_HMAC_SHA1_32 inline:{GW_KEY}")];
    let offers: [(&str, &str, Vec<String>); 4] = [
        ("savp+key", "RTP/SAVP", with_key()),
        ("avp+key", "RTP/AVP", with_key()),
        ("avp", "RTP/AVP", vec![]),
        ("savp", "RTP/SAVP", vec![]),
    ];
    let table = [
        (
            Transport::Tls,
            SrtpMode::Required,
            [Some(true), Some(true), None, None],
        ),
        (
            Transport::Tls,
            SrtpMode::Optional,
            [Some(true), Some(true), Some(false), None],
        ),
        (
            Transport::Tls,
            SrtpMode::NotSupported,
            [None, Some(false), Some(false), None],
        ),
        (
            Transport::Tcp,
            SrtpMode::Required,
            [None, Some(false), Some(false), None],
        ),
    ];
    for (transport, mode, want) in table {
        for ((name, proto, crypto), want) in offers.iter().zip(want) {
            let mut r = Run::new("gwmatrix");
            setup(
                &mut r,
                MediaEncryption::NotSupported,
                transport,
                mode,
                false,
            );
            let peer = if transport == Transport::Tls {
                gw_tls()
            } else {
                gw_tcp()
            };
            let a = r.msg(&gw_invite("g1", peer, &gw_sdp(proto, crypto)), peer);
            let what = format!("{transport:?} {mode:?} / {name}");
            let Some(srtp) = want else {
                let back = sent_to(&a, peer);
                assert_eq!(statuses(&back), [100, 488], "{what}");
                let w = back[1].header("warning").expect("a Warning");
                assert!(w.contains("gateway side: "), "{what}: {w}");
                assert!(create(&a).is_none(), "{what}");
                continue;
            };
            let (id, reqs) = create(&a).expect("sessions");
            assert_eq!(reqs[0].srtp[1].is_some(), srtp, "{what}");
            assert!(reqs[0].srtp[0].is_none(), "{what}: the pool side is plain");
            let a = r.created(id);
            let inv = requests(&sent_to(&a, fe()))[0].clone();
            let offered = body(&inv);
            assert!(cryptos(&offered).is_empty(), "{what}: {offered}");
            assert!(!offered.contains(GW_KEY), "{what}");
            let a = r.msg(
                &respond(&inv, 200, "fe9", Some(&fe_offer("RTP/AVP", &[]))),
                fe(),
            );
            let ok = sent_to(&a, peer)
                .into_iter()
                .find(|m| m.status() == Some(200))
                .expect("200 to the gateway");
            let answered = body(&ok);
            assert_eq!(cryptos(&answered).len(), usize::from(srtp), "{what}");
            if srtp {
                assert!(
                    cryptos(&answered)[0].starts_with("1 AES_CM_128_HMAC_SHA1_32 "),
                    "{what}: the suite the gateway offered"
                );
            }
        }
    }
}

/// A gateway that must encrypt but answers in clear: the call fails with 488 toward the pool,
/// the gateway's dialog is hung up, and nothing is left.
#[test]
fn an_answer_that_fails_the_policy_ends_the_call_with_488() {
    let mut r = Run::new("srtp-bad-answer");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        false,
    );
    let a = r.msg(
        &fe_invite("s2", &fe_offer("RTP/SAVP", &[lync(1, FE_KEY)])),
        fe(),
    );
    let (id, _) = create(&a).expect("sessions");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let a = r.msg(
        &respond(&inv, 200, "gw1", Some(&gw_sdp("RTP/AVP", &[]))),
        gw_tls(),
    );
    let to_fe = sent_to(&a, fe());
    assert_eq!(statuses(&to_fe), [488]);
    assert!(
        to_fe[0]
            .header("warning")
            .is_some_and(|w| w.contains("gateway side: RTP/AVP answered to an RTP/SAVP offer"))
    );
    let to_gw = sent_to(&a, gw_tls());
    let methods: Vec<_> = to_gw.iter().filter_map(|m| m.method()).collect();
    assert!(
        methods.contains(&"ACK") && methods.contains(&"BYE"),
        "the callee's 2xx ACKed, then BYE: {methods:?}"
    );
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Ended { record, sessions, .. }
            if record.status == 488 && sessions.len() == 1)),
        "the call ends with 488 and its session is deleted"
    );
    assert!(r.e.calls(r.now).is_empty());
}

/// A re-INVITE in which the Front End changes its key: the relay gets the new key (Mediator's
/// stays), the gateway is re-offered the keys it already uses, and the Front End's answer keeps
/// Mediator's key under the tag it chose now.
#[test]
fn a_re_invite_re_keys_one_leg_and_leaves_the_other() {
    let mut r = Run::new("srtp-rekey");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        false,
    );
    let a = r.msg(
        &fe_invite("s3", &fe_offer("RTP/SAVP", &[lync(1, FE_KEY)])),
        fe(),
    );
    let (id, reqs) = create(&a).expect("sessions");
    let relay_pool_key = b64(reqs[0].srtp[0].as_ref().expect("keys").relay.bytes());
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let gw_attr = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{GW_KEY}");
    let a = r.msg(
        &respond(
            &inv,
            200,
            "gw1",
            Some(&gw_sdp("RTP/SAVP", std::slice::from_ref(&gw_attr))),
        ),
        gw_tls(),
    );
    let ours_to_gw = keys(&srtp_updates(&a, Side::Gateway)[0]).relay.clone();
    let ok = sent_to(&a, fe())[0].clone();
    r.msg(&fe_in_dialog("ACK", &ok, 7, "ack-s3"), fe());

    let new_offer = fe_offer("RTP/SAVP", &[lync(5, FE_KEY2)]);
    let reinvite = with_body(
        String::from_utf8(fe_in_dialog("INVITE", &ok, 8, "re-s3"))
            .expect("utf8")
            .replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Contact: <sip:fe@198.18.1.2:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{new_offer}",
                    new_offer.len()
                ),
            )
            .into_bytes(),
        "",
        "",
    );
    let a = r.msg(&reinvite, fe());
    assert!(
        srtp_updates(&a, Side::Pool)
            .iter()
            .all(|c| *c == SrtpChange::Keep),
        "nothing changes before the answer (RFC 3264 §8)"
    );
    let re = requests(&sent_to(&a, gw_tls()))[0].clone();
    let reoffer = body(&re);
    let c = cryptos(&reoffer);
    assert_eq!(c.len(), 1, "{reoffer}");
    assert_eq!(key_of(&c[0]), b64(ours_to_gw.bytes()), "the key in use");
    assert!(!reoffer.contains(FE_KEY2));
    let a = r.msg(
        &respond(&re, 200, "gw1", Some(&gw_sdp("RTP/SAVP", &[gw_attr]))),
        gw_tls(),
    );
    let upd = srtp_updates(&a, Side::Pool);
    let k = keys(
        upd.iter()
            .find(|c| **c != SrtpChange::Keep)
            .expect("a re-key"),
    );
    assert_eq!(
        b64(k.peer.bytes()),
        FE_KEY2,
        "the Front End's new key, once answered"
    );
    assert_eq!(b64(k.relay.bytes()), relay_pool_key, "Mediator's key stays");
    let ok2 = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200 to the re-INVITE");
    let c = cryptos(&body(&ok2));
    assert_eq!(c.len(), 1);
    assert!(c[0].starts_with("5 AES_CM_128_HMAC_SHA1_80 "), "{}", c[0]);
    assert_eq!(key_of(&c[0]), relay_pool_key);

    // Dropping encryption mid-call is refused; the call and its keys stay.
    let plain = fe_offer("RTP/AVP", &[]);
    let reinvite = String::from_utf8(fe_in_dialog("INVITE", &ok, 9, "re2-s3"))
        .expect("utf8")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Contact: <sip:fe@198.18.1.2:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{plain}",
                plain.len()
            ),
        );
    let a = r.msg(reinvite.as_bytes(), fe());
    assert!(statuses(&sent_to(&a, fe())).contains(&488));
    assert!(srtp_updates(&a, Side::Pool).is_empty(), "nothing changed");
    assert_eq!(r.e.calls(r.now)[0].state, "confirmed");
}

/// srtp_passthrough on a TLS trunk: the peers' own attributes cross unchanged, the relay holds
/// no key (the stream may stay in XDP), and the policy still holds on the answer.
#[test]
fn passthrough_passes_the_peers_keys_and_keeps_the_relay_keyless() {
    let mut r = Run::new("srtp-pass");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        true,
    );
    let fe_attr = lync(2, FE_KEY);
    let a = r.msg(
        &fe_invite("s4", &fe_offer("RTP/SAVP", std::slice::from_ref(&fe_attr))),
        fe(),
    );
    let (id, reqs) = create(&a).expect("sessions");
    assert_eq!(reqs[0].srtp, [None, None], "the relay does no SRTP");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    assert_eq!(
        cryptos(&body(&inv)),
        [fe_attr],
        "the Front End's own attribute"
    );
    let gw_attr = format!("2 AES_CM_128_HMAC_SHA1_80 inline:{GW_KEY}");
    let a = r.msg(
        &respond(
            &inv,
            200,
            "gw1",
            Some(&gw_sdp("RTP/SAVP", std::slice::from_ref(&gw_attr))),
        ),
        gw_tls(),
    );
    assert!(
        srtp_updates(&a, Side::Gateway)
            .iter()
            .all(|c| *c == SrtpChange::Keep)
    );
    let ok = sent_to(&a, fe())[0].clone();
    assert_eq!(cryptos(&body(&ok)), [gw_attr]);
    let view = &r.e.calls(r.now)[0].streams[0];
    assert!(view.srtp_passthrough);
    assert_eq!(view.srtp[0], "AES_CM_128_HMAC_SHA1_80");

    // A gateway answering in clear fails the required policy, passthrough or not.
    let mut r = Run::new("srtp-pass2");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        true,
    );
    let a = r.msg(
        &fe_invite("s5", &fe_offer("RTP/SAVP", &[lync(2, FE_KEY)])),
        fe(),
    );
    let (id, _) = create(&a).expect("sessions");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let a = r.msg(
        &respond(&inv, 200, "gw1", Some(&gw_sdp("RTP/AVP", &[]))),
        gw_tls(),
    );
    assert_eq!(statuses(&sent_to(&a, fe())), [488]);
}

/// `supported` and `optional` on both legs with a plain caller: a plain call stays plain end to
/// end (no key anywhere, nothing that keeps it out of XDP).
#[test]
fn optional_legs_keep_a_plain_call_plain() {
    let mut r = Run::new("srtp-optional");
    setup(
        &mut r,
        MediaEncryption::Supported,
        Transport::Tls,
        SrtpMode::Optional,
        false,
    );
    let a = r.msg(&fe_invite("s6", &fe_offer("RTP/AVP", &[])), fe());
    let (id, reqs) = create(&a).expect("sessions");
    assert_eq!(reqs[0].srtp, [None, None]);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    assert!(cryptos(&body(&inv)).is_empty());
    assert!(m_line(&body(&inv)).contains(" RTP/AVP "));

    // An encrypted caller gets a best-effort offer toward the gateway (RTP/AVP with keys), and
    // a plain answer turns the gateway side plain.
    let mut r = Run::new("srtp-optional2");
    setup(
        &mut r,
        MediaEncryption::Supported,
        Transport::Tls,
        SrtpMode::Optional,
        false,
    );
    let a = r.msg(
        &fe_invite("s7", &fe_offer("RTP/SAVP", &[lync(1, FE_KEY)])),
        fe(),
    );
    let (id, reqs) = create(&a).expect("sessions");
    assert!(reqs[0].srtp[1].is_some(), "held until the answer");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let offered = body(&inv);
    assert!(
        m_line(&offered).contains(" RTP/AVP "),
        "best effort: {offered}"
    );
    assert_eq!(cryptos(&offered).len(), 4);
    let a = r.msg(
        &respond(&inv, 200, "gw1", Some(&gw_sdp("RTP/AVP", &[]))),
        gw_tls(),
    );
    assert_eq!(srtp_updates(&a, Side::Gateway), [SrtpChange::Off]);
    let ok = sent_to(&a, fe())[0].clone();
    assert_eq!(
        cryptos(&body(&ok)).len(),
        1,
        "the pool side stays encrypted"
    );
}

/// A re-offer the other leg refuses leaves the session as it was (RFC 3264 §8): no key change,
/// and the next re-offer is judged against what is really in use.
#[test]
fn a_refused_re_offer_changes_nothing() {
    let mut r = Run::new("srtp-reoffer-refused");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        false,
    );
    let a = r.msg(
        &fe_invite("s8", &fe_offer("RTP/SAVP", &[lync(1, FE_KEY)])),
        fe(),
    );
    let (id, _) = create(&a).expect("sessions");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let gw_attr = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{GW_KEY}");
    let a = r.msg(
        &respond(
            &inv,
            200,
            "gw1",
            Some(&gw_sdp("RTP/SAVP", std::slice::from_ref(&gw_attr))),
        ),
        gw_tls(),
    );
    let ok = sent_to(&a, fe())[0].clone();
    r.msg(&fe_in_dialog("ACK", &ok, 7, "ack-s8"), fe());
    let reinvite =
        |cseq: u32, branch: &str, offer: &str| fe_in_dialog_sdp("INVITE", &ok, cseq, branch, offer);
    let a = r.msg(
        &reinvite(8, "re-s8", &fe_offer("RTP/SAVP", &[lync(1, FE_KEY2)])),
        fe(),
    );
    let re = requests(&sent_to(&a, gw_tls()))[0].clone();
    let a = r.msg(&respond(&re, 488, "gw1", None), gw_tls());
    assert!(statuses(&sent_to(&a, fe())).contains(&488));
    assert!(
        a.iter()
            .all(|x| !matches!(x, Action::UpdateMedia { request, .. }
                if request.srtp.iter().any(|c| *c != SrtpChange::Keep))),
        "no key changed"
    );
    // The next re-offer (same key) is answered with Mediator's same key: the session is intact.
    let a = r.msg(
        &reinvite(
            9,
            "re2-s8",
            &fe_offer("RTP/SAVP", &[lync(1, FE_KEY)]).replace("o=- 1 1 ", "o=- 1 2 "),
        ),
        fe(),
    );
    let re = requests(&sent_to(&a, gw_tls()))[0].clone();
    assert_eq!(cryptos(&body(&re)).len(), 1, "the keys in use re-offered");
    let a = r.msg(
        &respond(&re, 200, "gw1", Some(&gw_sdp("RTP/SAVP", &[gw_attr]))),
        gw_tls(),
    );
    let ok2 = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    assert_eq!(cryptos(&body(&ok2)).len(), 1);
    assert_eq!(r.e.calls(r.now)[0].state, "confirmed");
}

/// Keys outside the negotiated streams never cross: an m-line Mediator does not anchor (port
/// 0) keeps its protocol and loses its `a=crypto`; session-level `a=crypto` and `k=` go too.
#[test]
fn keys_on_lines_mediator_does_not_negotiate_are_dropped() {
    let mut r = Run::new("srtp-strip");
    setup(
        &mut r,
        MediaEncryption::Supported,
        Transport::Udp,
        SrtpMode::NotSupported,
        false,
    );
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\nk=clear:{FE_KEY2}\r\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:{FE_KEY2}\r\n\
         m=audio 6000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{}\r\n\
         m=video 0 RTP/SAVP 96\r\na=crypto:{}\r\n",
        lync(1, FE_KEY),
        lync(2, FE_KEY2)
    );
    let a = r.msg(&fe_invite("s9", &offer), fe());
    let (id, _) = create(&a).expect("sessions");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let sent = body(&inv);
    assert!(
        !sent.contains(FE_KEY) && !sent.contains(FE_KEY2) && !sent.contains("k="),
        "no key of the Front End's:\n{sent}"
    );
    assert!(sent.contains("m=video 0 RTP/SAVP 96"), "{sent}");
}

/// An early answer that fails the policy: the attempt is CANCELled and the caller gets 488,
/// rather than the call going on without an answer it can use.
#[test]
fn an_early_answer_that_fails_the_policy_cancels_the_attempt() {
    let mut r = Run::new("srtp-early");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        false,
    );
    let a = r.msg(
        &fe_invite("s10", &fe_offer("RTP/SAVP", &[lync(1, FE_KEY)])),
        fe(),
    );
    let (id, _) = create(&a).expect("sessions");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let a = r.msg(
        &respond(&inv, 183, "gw1", Some(&gw_sdp("RTP/SAVP", &[]))),
        gw_tls(),
    );
    assert_eq!(statuses(&sent_to(&a, fe())), [488]);
    let methods: Vec<String> = requests(&sent_to(&a, gw_tls()))
        .iter()
        .filter_map(|m| m.method().map(str::to_string))
        .collect();
    assert_eq!(methods, ["CANCEL"]);
}

/// Media bypass passes the SDP end to end: the caller's policy still holds, and its keys are
/// not sent to a trunk that is not TLS.
#[test]
fn bypass_never_sends_keys_in_clear() {
    let mut r = Run::new("srtp-bypass");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Udp,
        SrtpMode::Required,
        false,
    );
    r.t.configs
        .get_mut("trunk:198.18.2.2")
        .expect("config")
        .value
        .settings
        .media_bypass = Some(true);
    let a = r.msg(
        &fe_invite("s11", &fe_offer("RTP/SAVP", &[lync(1, FE_KEY)])),
        fe(),
    );
    let to_fe = sent_to(&a, fe());
    assert_eq!(statuses(&to_fe), [100, 488]);
    assert!(
        to_fe[1]
            .header("warning")
            .is_some_and(|w| w.contains("not TLS")),
        "{:?}",
        to_fe[1].header("warning")
    );
    assert!(sent_to(&a, gw(5060, 5060)).is_empty());
    let a = r.msg(&fe_invite("s12", &fe_offer("RTP/AVP", &[])), fe());
    assert_eq!(
        statuses(&sent_to(&a, fe())),
        [100, 488],
        "the pool's required policy holds in bypass"
    );
}

/// Inside the dialog: an answer that fails the policy gets the offerer 488, the answerer's 2xx an
/// ACK, and the call — whose legs now disagree — ends; SDP in a PRACK is refused.
#[test]
fn an_in_dialog_answer_that_fails_the_policy_ends_the_call_and_prack_sdp_is_refused() {
    let mut r = Run::new("srtp-indialog");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        false,
    );
    let a = r.msg(
        &fe_invite("s13", &fe_offer("RTP/SAVP", &[lync(1, FE_KEY)])),
        fe(),
    );
    let (id, _) = create(&a).expect("sessions");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let gw_attr = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{GW_KEY}");
    let a = r.msg(
        &respond(&inv, 200, "gw1", Some(&gw_sdp("RTP/SAVP", &[gw_attr]))),
        gw_tls(),
    );
    let ok = sent_to(&a, fe())[0].clone();
    r.msg(&fe_in_dialog("ACK", &ok, 7, "ack-s13"), fe());
    let with_sdp = |method: &str, cseq: u32, branch: &str, offer: &str| {
        fe_in_dialog_sdp(method, &ok, cseq, branch, offer)
    };
    let offer = fe_offer("RTP/SAVP", &[lync(1, FE_KEY)]);
    let a = r.msg(&with_sdp("PRACK", 8, "prack-s13", &offer), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), [488], "SDP in PRACK");
    // A new version of the same offer (the same bytes again would be a session refresh).
    let reoffer = offer.replace("o=- 1 1 ", "o=- 1 2 ");
    let a = r.msg(&with_sdp("INVITE", 9, "re-s13", &reoffer), fe());
    let re = requests(&sent_to(&a, gw_tls()))[0].clone();
    // The gateway answers the re-offer in clear.
    let a = r.msg(
        &respond(&re, 200, "gw1", Some(&gw_sdp("RTP/AVP", &[]))),
        gw_tls(),
    );
    assert!(
        statuses(&sent_to(&a, fe())).contains(&488),
        "the offerer gets 488"
    );
    let methods: Vec<String> = sent_to(&a, gw_tls())
        .iter()
        .filter_map(|m| m.method().map(str::to_string))
        .collect();
    assert!(
        methods.iter().any(|m| m == "ACK") && methods.iter().any(|m| m == "BYE"),
        "{methods:?}"
    );
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Ended { record, .. } if record.status == 488)),
        "the call ends with the reason"
    );
    assert!(
        a.iter()
            .all(|x| !matches!(x, Action::UpdateMedia { request, .. }
            if request.srtp.iter().any(|c| *c != SrtpChange::Keep))),
        "no key changed"
    );
}

/// In bypass the SDP goes end to end, but never with keys to a leg that is not on TLS: keys
/// anywhere in it (session level, port 0) are enough to refuse.
#[test]
fn bypass_refuses_keys_anywhere_in_clear() {
    let mut r = Run::new("srtp-bypass2");
    setup(
        &mut r,
        MediaEncryption::Supported,
        Transport::Udp,
        SrtpMode::NotSupported,
        false,
    );
    r.t.configs
        .get_mut("trunk:198.18.2.2")
        .expect("config")
        .value
        .settings
        .media_bypass = Some(true);
    let offer = format!(
        "{}m=video 0 RTP/SAVP 96\r\na=crypto:{}\r\n",
        fe_offer("RTP/AVP", &[]),
        lync(1, FE_KEY)
    );
    let a = r.msg(&fe_invite("s14", &offer), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), [100, 488]);
    assert!(
        sent_to(&a, gw(5060, 5060)).is_empty(),
        "nothing reaches the gateway"
    );
}

/// A delayed offer with SRTP on both legs: the gateway's offer in its 200 is accepted under its
/// trunk's policy (its key for the session's gateway side), the Front End is offered Mediator's
/// own keys, and its answer in the ACK keys the pool side; the gateway's ACK carries Mediator's
/// key for that leg. No key crosses.
#[test]
fn a_delayed_offer_is_keyed_per_leg() {
    let mut r = Run::new("srtp-delayed");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        false,
    );
    let a = r.msg(&fe_invite_without_sdp("s20"), fe());
    assert!(create(&a).is_none());
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    assert!(inv.body().is_empty());
    let offer = gw_sdp(
        "RTP/SAVP",
        &[format!("1 AES_CM_128_HMAC_SHA1_80 inline:{GW_KEY}")],
    );
    let a = r.msg(&respond(&inv, 200, "gw1", Some(&offer)), gw_tls());
    let (id, reqs) = create(&a).expect("sessions for the gateway's offer");
    let gw_keys = reqs[0].srtp[1].clone().expect("the gateway side is keyed");
    assert_eq!(b64(gw_keys.peer.bytes()), GW_KEY);
    assert!(
        reqs[0].srtp[0].is_some(),
        "the pool side waits for its answer"
    );
    let a = r.created(id);
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    let offered = body(&ok);
    assert!(m_line(&offered).contains(" RTP/SAVP "), "{offered}");
    let ours = cryptos(&offered);
    assert!(!ours.is_empty() && !offered.contains(GW_KEY), "{offered}");
    let suite = ours[0]
        .split_whitespace()
        .nth(1)
        .expect("suite")
        .to_string();
    let tag = ours[0].split_whitespace().next().expect("tag").to_string();
    let answer = fe_offer("RTP/SAVP", &[format!("{tag} {suite} inline:{FE_KEY}")]);
    let ack = String::from_utf8(fe_in_dialog("ACK", &ok, 7, "ack-s20"))
        .expect("utf8")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            ),
        );
    let a = r.msg(ack.as_bytes(), fe());
    let upd = srtp_updates(&a, Side::Pool);
    let k = keys(&upd[0]);
    assert_eq!(b64(k.peer.bytes()), FE_KEY, "the Front End's key");
    assert_eq!(
        b64(k.relay.bytes()),
        key_of(&ours[0]),
        "Mediator's key it chose"
    );
    let to_gw = sent_to(&a, gw_tls());
    let gw_ack = to_gw
        .iter()
        .find(|m| m.method() == Some("ACK"))
        .expect("ACK to the gateway");
    let answered = body(gw_ack);
    let c = cryptos(&answered);
    assert_eq!(c.len(), 1, "{answered}");
    assert_eq!(
        key_of(&c[0]),
        b64(gw_keys.relay.bytes()),
        "Mediator's key for that leg"
    );
    assert!(!answered.contains(FE_KEY) && !answered.contains(GW_KEY));
}

/// An SRTP stream (video) added mid-call by the caller's re-INVITE on a call with SRTP required
/// on both legs: its session is made with the caller's keys and a placeholder for the gateway's
/// side; the re-INVITE reaches the gateway with Mediator's own key for it (never the caller's);
/// the gateway's answer keys the relay's gateway side, and the caller gets Mediator's answer
/// with Mediator's own key. A plain stream added on a leg that requires SRTP is refused.
#[test]
fn an_srtp_stream_added_mid_call_is_keyed_per_leg() {
    let mut r = Run::new("srtp-add");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        false,
    );
    let offer = fe_offer("RTP/SAVP", &[lync(1, FE_KEY)]);
    let a = r.msg(&fe_invite("s40", &offer), fe());
    let (id, _) = create(&a).expect("sessions");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let gw_attr = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{GW_KEY}");
    let a = r.msg(
        &respond(
            &inv,
            200,
            "gw1",
            Some(&gw_sdp("RTP/SAVP", std::slice::from_ref(&gw_attr))),
        ),
        gw_tls(),
    );
    let ok = sent_to(&a, fe())[0].clone();
    r.msg(&fe_in_dialog("ACK", &ok, 7, "ack-s40"), fe());
    let with_video = |offer: &str, proto: &str, crypto: &[String]| {
        let mut s = format!(
            "{}m=video 6002 {proto} 96\r\na=rtpmap:96 H264/90000\r\n",
            offer.replace("o=- 1 1 ", "o=- 1 2 ")
        );
        for c in crypto {
            s.push_str(&format!("a=crypto:{c}\r\n"));
        }
        s
    };
    let reinvite =
        |cseq: u32, branch: &str, sdp: &str| fe_in_dialog_sdp("INVITE", &ok, cseq, branch, sdp);
    // A plain video stream on a leg that requires SRTP: refused, nothing made.
    let plain = with_video(&offer, "RTP/AVP", &[]);
    let a = r.msg(&reinvite(8, "re-s40a", &plain), fe());
    assert_eq!(finals(&sent_to(&a, fe())), [488]);
    assert!(create(&a).is_none());
    // An SRTP video stream: a session with keys on both sides.
    let savp = with_video(&offer, "RTP/SAVP", &[lync(1, FE_KEY2)]);
    let a = r.msg(&reinvite(9, "re-s40b", &savp), fe());
    let (cid, reqs) = create(&a).expect("a session for the video");
    assert_eq!(reqs.len(), 1);
    let pending = reqs[0]
        .srtp
        .iter()
        .map(|k| k.as_ref().map(|k| k.peer_pending))
        .collect::<Vec<_>>();
    assert_eq!(
        pending,
        [Some(false), Some(true)],
        "the caller's key is known; the gateway's side holds a stand-in until its answer"
    );
    assert!(
        reqs[0].srtp[0].is_some() && reqs[0].srtp[1].is_some(),
        "{:?}",
        reqs[0].srtp.iter().map(Option::is_some).collect::<Vec<_>>()
    );
    let a = r.created_video(cid);
    let re = requests(&sent_to(&a, gw_tls()))[0].clone();
    let to_gw = body(&re);
    assert!(to_gw.contains("m=video 30006 RTP/SAVP"), "{to_gw}");
    let keys = cryptos(&to_gw);
    assert!(
        keys.len() >= 2
            && !keys
                .iter()
                .any(|k| k.contains(FE_KEY2) || k.contains(FE_KEY)),
        "Mediator's own keys toward the gateway, never the caller's: {keys:?}"
    );
    // The gateway answers both streams with SRTP.
    let gw_video = format!(
        "{}m=video 7002 RTP/SAVP 96\r\na=rtpmap:96 H264/90000\r\na=crypto:{gw_attr}\r\n",
        gw_sdp("RTP/SAVP", std::slice::from_ref(&gw_attr)).replace("o=- 1 1 ", "o=- 1 2 ")
    );
    let a = r.msg(&respond(&re, 200, "gw1", Some(&gw_video)), gw_tls());
    let keyed_gw = a.iter().any(|x| match x {
        Action::UpdateMedia { request, .. } => {
            request.session_id == "v" && matches!(request.srtp[1], SrtpChange::Keys(_))
        }
        _ => false,
    });
    assert!(keyed_gw, "the video session gets the gateway's keys");
    let ok2 = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200 to the caller");
    let to_fe = body(&ok2);
    assert!(to_fe.contains("m=video 30004 RTP/SAVP"), "{to_fe}");
    assert!(
        !cryptos(&to_fe).iter().any(|k| k.contains(GW_KEY)),
        "never the gateway's key toward the caller: {to_fe}"
    );
}

/// A forked INVITE on a call with SRTP toward the Front End (Lync) and plain RTP toward the
/// gateway: another early dialog gets forks keyed toward the caller with a fresh key of
/// Mediator's (never the call's, which the first early dialog's SDP carries), and keeps it when
/// it answers. Toward a gateway leg with SRTP, another early dialog is not anchored (Mediator's
/// one offered key cannot protect a second relay context): its 183 goes on without SDP.
#[test]
fn a_fork_on_an_srtp_call_gets_a_key_of_its_own_toward_the_caller() {
    let mut r = Run::new("srtp-fork");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Udp,
        SrtpMode::NotSupported,
        false,
    );
    let offer = fe_offer("RTP/SAVP", &[lync(2, FE_KEY)]);
    let a = r.msg(&fe_invite("sf1", &offer), fe());
    let (id, reqs) = create(&a).expect("sessions are created");
    let call_key = b64(reqs[0].srtp[0].clone().expect("pool keys").relay.bytes());
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let answer = |port: u16| sdp("198.18.2.2", port, "RTP/AVP", &[]);
    let a = r.msg(
        &respond(&inv, 183, "forkA", Some(&answer(7000))),
        gw(5060, 5060),
    );
    let p1 = sent_to(&a, fe())[0].clone();
    assert_eq!(key_of(&cryptos(&body(&p1))[0]), call_key);

    let fork_b = answer(7002);
    let a = r.msg(&respond(&inv, 183, "forkB", Some(&fork_b)), gw(5060, 5060));
    let (_, reqs) = create(&a).expect("a fork");
    let [pool, gateway] = reqs[0].srtp.clone();
    let pool = pool.expect("pool keys");
    assert!(gateway.is_none(), "plain toward the gateway");
    assert_eq!(
        b64(pool.peer.bytes()),
        FE_KEY,
        "the caller's key, as for the call"
    );
    let fork_key = b64(pool.relay.bytes());
    assert_ne!(fork_key, call_key, "a key of its own toward the caller");
    let a = super::fork_made(&mut r, id);
    let p2 = sent_to(&a, fe())[0].clone();
    let c = cryptos(&body(&p2));
    assert_eq!(c.len(), 1);
    assert_eq!(key_of(&c[0]), fork_key);

    let a = r.msg(&respond(&inv, 200, "forkB", Some(&fork_b)), gw(5060, 5060));
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    assert_eq!(ok.summary.to_tag, p2.summary.to_tag);
    assert_eq!(
        key_of(&cryptos(&body(&ok))[0]),
        fork_key,
        "the caller keeps the key its early dialog gave it"
    );

    // SRTP toward the gateway too: another early dialog is not anchored.
    let mut r = Run::new("srtp-fork-gw");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        false,
    );
    let a = r.msg(&fe_invite("sf2", &offer), fe());
    let (id, _) = create(&a).expect("sessions");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let srtp_answer = |port: u16| {
        sdp(
            "198.18.2.2",
            port,
            "RTP/SAVP",
            &[format!("1 AES_CM_128_HMAC_SHA1_80 inline:{GW_KEY}")],
        )
    };
    r.msg(
        &respond(&inv, 183, "forkA", Some(&srtp_answer(7000))),
        gw_tls(),
    );
    let a = r.msg(
        &respond(&inv, 183, "forkB", Some(&srtp_answer(7002))),
        gw_tls(),
    );
    assert!(create(&a).is_none(), "no fork under the one offered key");
    let p = sent_to(&a, fe());
    assert_eq!(statuses(&p), [183]);
    assert!(p[0].body().is_empty(), "{}", body(&p[0]));
}

/// `srtp_passthrough` with a delayed offer: the gateway's SRTP offer in its 2xx reaches the
/// Front End with the gateway's own attribute, the relay keyless; the Front End's answer in the
/// ACK reaches the gateway with its own attribute. A stream added mid-call passes end to end too
/// (its session keyless), and one added in clear is refused.
#[test]
fn passthrough_applies_to_a_delayed_offer_and_to_added_streams() {
    let mut r = Run::new("srtp-pass-delayed");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Tls,
        SrtpMode::Required,
        true,
    );
    let a = r.msg(&fe_invite_without_sdp("s60"), fe());
    let inv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let gw_attr = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{GW_KEY}");
    let offer = gw_sdp("RTP/SAVP", std::slice::from_ref(&gw_attr));
    let a = r.msg(&respond(&inv, 200, "gw1", Some(&offer)), gw_tls());
    let (id, reqs) = create(&a).expect("sessions for the gateway's offer");
    assert_eq!(reqs[0].srtp, [None, None], "the relay does no SRTP");
    let a = r.created(id);
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    assert_eq!(
        cryptos(&body(&ok)),
        std::slice::from_ref(&gw_attr),
        "the gateway's own attribute"
    );
    let fe_attr = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{FE_KEY}");
    let answer = fe_offer("RTP/SAVP", std::slice::from_ref(&fe_attr));
    let a = r.msg(&fe_in_dialog_sdp("ACK", &ok, 1, "ack-s60", &answer), fe());
    let to_gw = sent_to(&a, gw_tls());
    let ack = to_gw
        .iter()
        .find(|m| m.method() == Some("ACK"))
        .expect("ACK to the gateway");
    assert_eq!(
        cryptos(&body(ack)),
        std::slice::from_ref(&fe_attr),
        "the Front End's own"
    );
    assert!(
        srtp_updates(&a, Side::Pool)
            .iter()
            .all(|c| *c == SrtpChange::Keep)
    );
    assert!(r.e.calls(r.now)[0].streams[0].srtp_passthrough);

    // A video stream added by the Front End: keyless, its attribute passes; in clear: 488.
    let with_video = |proto: &str, crypto: &[String]| {
        let mut s = format!(
            "{}m=video 6002 {proto} 96\r\na=rtpmap:96 H264/90000\r\n",
            answer.replace("o=- 1 1 ", "o=- 1 2 ")
        );
        for c in crypto {
            s.push_str(&format!("a=crypto:{c}\r\n"));
        }
        s
    };
    let plain = with_video("RTP/AVP", &[]);
    let a = r.msg(&fe_in_dialog_sdp("INVITE", &ok, 2, "re-s60a", &plain), fe());
    assert_eq!(finals(&sent_to(&a, fe())), [488]);
    assert!(create(&a).is_none());
    let video_attr = lync(1, FE_KEY2);
    let savp = with_video("RTP/SAVP", std::slice::from_ref(&video_attr));
    let a = r.msg(&fe_in_dialog_sdp("INVITE", &ok, 3, "re-s60b", &savp), fe());
    let (cid, reqs) = create(&a).expect("a session for the video");
    assert_eq!(reqs[0].srtp, [None, None]);
    let a = r.created_video(cid);
    let reinv = requests(&sent_to(&a, gw_tls()))[0].clone();
    let c = cryptos(&body(&reinv));
    assert_eq!(
        c,
        [fe_attr, video_attr],
        "both streams' attributes as the Front End wrote them"
    );
}

/// A failover to a trunk with other latching (or RTCP) settings after the first trunk's early
/// SDP reached the caller on an SRTP call: the caller has the sessions' addresses and keys, so
/// the sessions stay and take the next trunk's settings (an update, no new sessions).
#[test]
fn a_failover_on_an_srtp_call_after_early_sdp_updates_the_sessions_settings() {
    let mut r = Run::new("srtp-failover-settings");
    setup(
        &mut r,
        MediaEncryption::Required,
        Transport::Udp,
        SrtpMode::NotSupported,
        false,
    );
    r.t.configs
        .get_mut("trunk:198.18.2.2")
        .expect("the lab gateway's own configuration")
        .value
        .settings
        .rtp_latching = Some(true);
    let offer = fe_offer("RTP/SAVP", &[lync(1, FE_KEY)]);
    let a = r.msg(
        &with_body(invite("+15555550100", "sfs1"), OFFER, &offer),
        fe(),
    );
    let (id, reqs) = create(&a).expect("sessions");
    assert!(!reqs[0].latching, "gw-5062 does not latch");
    let a = r.created(id);
    let first = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    let a = r.msg(&respond(&first, 183, "x1", Some(ANSWER)), gw(5062, 5062));
    assert_eq!(statuses(&sent_to(&a, fe())), [183]);
    let a = r.msg(&respond(&first, 503, "x1", None), gw(5062, 5062));
    assert!(
        create(&a).is_none(),
        "no new sessions: the caller has their keys"
    );
    assert!(!a.iter().any(|x| matches!(x, Action::DeleteMedia { .. })));
    let options: Vec<MediaOptions> = a
        .iter()
        .filter_map(|x| match x {
            Action::UpdateMedia { request, .. } => request.options,
            _ => None,
        })
        .collect();
    assert_eq!(options.len(), 1, "{a:?}");
    assert!(options[0].latching, "the next trunk's latching");
    assert_eq!(requests(&sent_to(&a, gw(5060, 5060))).len(), 1);
}

//! SRTP through Mediator with a real SRTP client no one here wrote: Debian's baresip (SDES,
//! mandatory SRTP) on the pool side, SIPp with plain RTP on a UDP trunk, both ways. What crosses
//! the wire is captured on both links: the plain side receives exactly the payload the SRTP
//! side sent (each SRTP packet decrypted with the key its sender put in its SDP), the SRTP side's
//! packets are encrypted, each leg has its own keys, and no key appears in any log line, call
//! record or CLI output. Its own test binary: it runs the daemons with debug logs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mediator_dataplane::srtp::{InboundContext, MasterKey, Suite};
use mediator_tests::baresip::Baresip;
use mediator_tests::calls::CallLab;
use mediator_tests::lab::{GW_PEER, GW_RELAY, POOL_PEER, POOL_RELAY, privileged};
use mediator_tests::rtp::{Datagram, capture_udp};
use mediator_tests::sipp::Uas;

const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

/// An `a=crypto` attribute as seen on the wire.
#[derive(Clone, Debug)]
struct Attr {
    tag: String,
    suite: String,
    key: Vec<u8>,
}

fn attrs(sdp: &str) -> Vec<Attr> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=crypto:"))
        .filter_map(|v| {
            let mut f = v.split_whitespace();
            let (tag, suite, key) = (f.next()?, f.next()?, f.next()?);
            let b64 = key.strip_prefix("inline:")?.split('|').next()?;
            Some(Attr {
                tag: tag.into(),
                suite: suite.into(),
                key: STANDARD.decode(b64).ok()?,
            })
        })
        .collect()
}

fn media_port(sdp: &str) -> Option<u16> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
}

/// SIP messages (UDP 5060) among `caps`, as text: (datagram, first line, SDP body).
fn sip(caps: &[Datagram]) -> Vec<(&Datagram, String, String)> {
    caps.iter()
        .filter(|d| d.src.port() == 5060 || d.dst.port() == 5060)
        .filter_map(|d| {
            let text = String::from_utf8_lossy(&d.payload).to_string();
            let first = text.lines().next()?.to_string();
            let body = text
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            Some((d, first, body))
        })
        .collect()
}

fn is_rtp(p: &[u8]) -> bool {
    p.len() >= 12 && p[0] >> 6 == 2 && !(72..=76).contains(&(p[1] & 0x7f))
}

fn rtp_key(p: &[u8]) -> (u32, u16) {
    (
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        u16::from_be_bytes([p[2], p[3]]),
    )
}

/// The RTP payload (after the fixed header and any CSRCs; no extensions in these calls).
fn payload(p: &[u8]) -> &[u8] {
    let start = 12 + 4 * usize::from(p[0] & 0x0f);
    &p[start.min(p.len())..]
}

/// Plain RTP packets from `src_ip` to `dst_ip`, by (SSRC, sequence number).
fn plain(caps: &[Datagram], src_ip: &str, dst_ip: &str) -> HashMap<(u32, u16), Vec<u8>> {
    caps.iter()
        .filter(|d| d.src.ip().to_string() == src_ip && d.dst.ip().to_string() == dst_ip)
        .filter(|d| d.src.port() != 5060 && is_rtp(&d.payload))
        .map(|d| (rtp_key(&d.payload), payload(&d.payload).to_vec()))
        .collect()
}

/// Decrypted packets by (SSRC, seq): (plain payload, the payload as it was on the wire).
type Decrypted = HashMap<(u32, u16), (Vec<u8>, Vec<u8>)>;

/// SRTP packets from `src_ip` to `dst_ip` decrypted with `key`: (SSRC, seq) → (plain payload,
/// the payload as it was on the wire).
fn decrypted(caps: &[Datagram], src_ip: &str, dst_ip: &str, key: &[u8]) -> Decrypted {
    let suite: Suite = SUITE.parse().expect("suite");
    let key = MasterKey::from_concatenated(suite, key).expect("a key of the suite's length");
    let mut ctx = InboundContext::new(&key, None).expect("context");
    let mut out = HashMap::new();
    for d in caps
        .iter()
        .filter(|d| d.src.ip().to_string() == src_ip && d.dst.ip().to_string() == dst_ip)
        .filter(|d| d.src.port() != 5060 && d.src.port() % 2 == 0 && is_rtp(&d.payload))
    {
        let mut p = d.payload.clone();
        if ctx.unprotect_rtp(&mut p).is_ok() {
            out.insert(
                rtp_key(&p),
                (payload(&p).to_vec(), payload(&d.payload).to_vec()),
            );
        }
    }
    out
}

/// Every SRTP packet of one direction decrypts to exactly what the plain side saw, and was
/// encrypted on the wire. Returns how many packets were compared.
fn same_media(what: &str, srtp: &Decrypted, clear: &HashMap<(u32, u16), Vec<u8>>) -> usize {
    let mut compared = 0;
    for (k, (plain, wire)) in srtp {
        let Some(seen) = clear.get(k) else { continue };
        assert_eq!(plain, seen, "{what}: packet {k:?} differs");
        if plain.len() < 80 {
            // Telephone events (SIPp's capture has RFC 2833 digits): compared, too short to
            // look for plaintext in.
            continue;
        }
        assert_ne!(wire[..plain.len()], plain[..], "{what}: {k:?} in clear");
        assert!(
            !wire.windows(16).any(|w| w == &plain[..16]),
            "{what}: plaintext on the SRTP wire"
        );
        compared += 1;
    }
    assert!(
        compared >= 50,
        "{what}: only {compared} packets compared (srtp {}, plain {})",
        srtp.len(),
        clear.len()
    );
    compared
}

/// The key's bytes in every form a leak could take: base64, hex, and a Debug-printed array.
fn forms(key: &[u8]) -> Vec<String> {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("{:?}", &key[..6]);
    vec![
        STANDARD.encode(key),
        STANDARD.encode(&key[..16]),
        hex,
        debug.trim_end_matches(']').to_string(),
    ]
}

fn capture(lab: &CallLab) -> (Arc<AtomicBool>, [std::thread::JoinHandle<Vec<Datagram>>; 2]) {
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Duration::from_secs(90);
    (
        stop.clone(),
        [
            capture_udp(&lab.lab.pool.name, "p0", stop.clone(), limit, 40_000),
            capture_udp(&lab.lab.gw.name, "g0", stop, limit, 40_000),
        ],
    )
}

fn finish(
    stop: Arc<AtomicBool>,
    handles: [std::thread::JoinHandle<Vec<Datagram>>; 2],
) -> [Vec<Datagram>; 2] {
    stop.store(true, Ordering::Relaxed);
    handles.map(|h| h.join().expect("capture"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_srtp_through_mediator_to_plain_rtp_and_back() {
    if !privileged("baresip_srtp_through_mediator_to_plain_rtp_and_back") {
        return;
    }
    // Everything the daemons can log, so a key that reaches any log line is found.
    mediator_tests::process::set_log_filter("debug,h2=info,hyper=info,tower=info");
    let lab = CallLab::new("srtp").await.expect("lab");
    // Lync's default toward the Front End: SRTP required.
    let (code, out) = lab
        .ctl(&[
            "pool",
            "set",
            "pool.lab.mediator",
            "--media-encryption",
            "required",
        ])
        .expect("ctl");
    assert_eq!(code, 0, "{out}");
    let (_, shown) = lab
        .ctl(&["pool", "show", "pool.lab.mediator"])
        .expect("ctl");
    assert!(shown.contains("required"), "{shown}");
    let mut cli = vec![shown];

    // Pool (baresip, SRTP) to gateway (SIPp, plain RTP, echoing it back).
    let _uas = Uas::start(&lab.lab.gw.name, GW_PEER, 5060, &[]).expect("uas");
    let (stop, handles) = capture(&lab);
    let mut caller = Baresip::start(
        &lab.lab.pool.name,
        POOL_PEER,
        5060,
        "20000-20099",
        "fe",
        Some(&format!("sip:+14255550100@{POOL_RELAY}:5060")),
        6,
    )
    .expect("baresip");
    let log = caller.wait(Duration::from_secs(60)).expect("baresip ends");
    assert!(
        log.contains("SRTP is Enabled"),
        "baresip's media is SRTP:\n{log}"
    );
    let [pool_side, gw_side] = finish(stop, handles);
    drop(caller);

    let msgs = sip(&pool_side);
    let summary: Vec<String> = msgs
        .iter()
        .map(|(d, first, _)| format!("{} -> {}: {first}", d.src, d.dst))
        .collect();
    let invite = msgs
        .iter()
        .find(|(d, first, _)| first.starts_with("INVITE ") && d.src.ip().to_string() == POOL_PEER)
        .unwrap_or_else(|| {
            panic!(
                "baresip's INVITE on the wire ({} datagrams captured):\n{}\n{log}",
                pool_side.len(),
                summary.join("\n")
            )
        });
    let theirs = attrs(&invite.2);
    assert_eq!(theirs.len(), 1, "{}", invite.2);
    assert!(media_port(&invite.2).is_some());
    let ok = msgs
        .iter()
        .find(|(d, first, body)| {
            first.starts_with("SIP/2.0 200")
                && d.src.ip().to_string() == POOL_RELAY
                && !body.is_empty()
        })
        .expect("Mediator's 200 to baresip");
    let ours = attrs(&ok.2);
    assert_eq!(ours.len(), 1, "{}", ok.2);
    assert_eq!(
        (ours[0].tag.as_str(), ours[0].suite.as_str()),
        (theirs[0].tag.as_str(), SUITE)
    );
    assert_ne!(
        ours[0].key, theirs[0].key,
        "Mediator's own key on the pool leg"
    );
    let gw_msgs = sip(&gw_side);
    let gw_invite = gw_msgs
        .iter()
        .find(|(_, first, _)| first.starts_with("INVITE "))
        .expect("Mediator's INVITE to the gateway");
    assert!(
        attrs(&gw_invite.2).is_empty(),
        "no key on the UDP trunk:\n{}",
        gw_invite.2
    );
    assert!(gw_invite.2.contains("RTP/AVP"), "{}", gw_invite.2);

    let to_gw = same_media(
        "baresip -> SIPp",
        &decrypted(&pool_side, POOL_PEER, POOL_RELAY, &theirs[0].key),
        &plain(&gw_side, GW_RELAY, GW_PEER),
    );
    let to_fe = same_media(
        "SIPp echo -> baresip",
        &decrypted(&pool_side, POOL_RELAY, POOL_PEER, &ours[0].key),
        &plain(&gw_side, GW_PEER, GW_RELAY),
    );
    let mut keys = vec![theirs[0].key.clone(), ours[0].key.clone()];

    // Gateway (SIPp, plain) to pool (baresip answering, SRTP required).
    let callee = Baresip::start(
        &lab.lab.pool.name,
        POOL_PEER,
        5060,
        "20100-20199",
        "+14255550199",
        None,
        40,
    )
    .expect("baresip");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (stop, handles) = capture(&lab);
    let run = tokio::task::block_in_place(|| lab.from_gateway("+14255550199", 5060, 1, &[]))
        .expect("sipp");
    let [pool_side, gw_side] = finish(stop, handles);
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        callee.log()
    );
    assert!(callee.log().contains("SRTP is Enabled"), "{}", callee.log());
    let msgs = sip(&pool_side);
    let offer = msgs
        .iter()
        .find(|(d, first, _)| first.starts_with("INVITE ") && d.src.ip().to_string() == POOL_RELAY)
        .expect("Mediator's INVITE to baresip");
    let offered = attrs(&offer.2);
    assert_eq!(offered.len(), 4, "every suite, a key each:\n{}", offer.2);
    assert!(offer.2.contains("RTP/SAVP"), "{}", offer.2);
    let answer = msgs
        .iter()
        .find(|(d, first, body)| {
            first.starts_with("SIP/2.0 200")
                && d.src.ip().to_string() == POOL_PEER
                && !body.is_empty()
        })
        .expect("baresip's 200");
    let chosen = attrs(&answer.2);
    assert_eq!(chosen.len(), 1, "{}", answer.2);
    let ours_in = offered
        .iter()
        .find(|a| a.tag == chosen[0].tag)
        .expect("baresip chose an offered tag");
    let from_gw = same_media(
        "SIPp -> baresip",
        &decrypted(&pool_side, POOL_RELAY, POOL_PEER, &ours_in.key),
        &plain(&gw_side, GW_PEER, GW_RELAY),
    );
    let from_fe = same_media(
        "baresip -> SIPp",
        &decrypted(&pool_side, POOL_PEER, POOL_RELAY, &chosen[0].key),
        &plain(&gw_side, GW_RELAY, GW_PEER),
    );
    keys.extend(offered.iter().map(|a| a.key.clone()));
    keys.push(chosen[0].key.clone());
    drop(callee);
    eprintln!("compared packets: out {to_gw} + {to_fe}, in {from_gw} + {from_fe}");

    // The records: the suite on the pool leg, plain on the gateway leg, all in userspace.
    let recent = lab.wait_recent(2).await.expect("records");
    assert_eq!(recent.len(), 2, "{recent:?}");
    for c in &recent {
        let s = &c.streams[0];
        assert_eq!(
            (s.pool_srtp.as_str(), s.gateway_srtp.as_str()),
            (SUITE, ""),
            "{c:?}"
        );
        assert!(!s.srtp_passthrough);
        for f in s.flows.iter().filter(|f| f.kind == "rtp") {
            assert_eq!(f.xdp_packets, 0, "SRTP termination is userspace: {f:?}");
            assert_eq!(f.srtp_auth_failures + f.srtp_replays, 0, "{f:?}");
        }
        let (code, text) = lab.ctl(&["call", "show", &c.id.to_string()]).expect("ctl");
        assert_eq!(code, 0);
        assert!(
            text.contains(&format!("pool side SRTP {SUITE}, gateway side RTP")),
            "{text}"
        );
        cli.push(text);
        cli.push(
            lab.ctl(&["--output", "json", "call", "show", &c.id.to_string()])
                .expect("ctl")
                .1,
        );
    }
    cli.push(lab.ctl(&["call", "recent"]).expect("ctl").1);
    cli.push(
        lab.ctl(&["--output", "json", "call", "recent"])
            .expect("ctl")
            .1,
    );

    // No key anywhere: logs of both daemons, records, CLI output, the dataplane's state files.
    let mut places = vec![
        ("mediator-control log", lab.log()),
        ("mediator-dataplane log", lab.dataplane.log()),
        ("call records", format!("{recent:?}")),
        ("CLI output", cli.join("\n")),
    ];
    assert!(
        places[0].1.contains("new call") && places[1].1.contains("session created"),
        "the logs have lines to search"
    );
    for entry in std::fs::read_dir(&lab.dataplane.state_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(bytes) = std::fs::read(entry.path()) {
            for k in &keys {
                assert!(
                    !bytes.windows(16).any(|w| w == &k[..16]),
                    "a key in {}",
                    entry.path().display()
                );
            }
            places.push(("a state file", String::from_utf8_lossy(&bytes).to_string()));
        }
    }
    for (place, text) in &places {
        for k in &keys {
            for form in forms(k) {
                assert!(!text.contains(&form), "a key ({form}) in the {place}");
            }
        }
    }
}

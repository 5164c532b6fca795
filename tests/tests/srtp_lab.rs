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

/// RTP packets of one direction that did not verify under the key their sender signalled.
static UNVERIFIED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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
        } else {
            UNVERIFIED.fetch_add(1, Ordering::Relaxed);
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
    // Every packet seen on both links matches: at most the ones in flight when a capture
    // started or stopped are seen on one side only.
    let both = srtp.len().min(clear.len());
    assert!(
        compared + 10 >= both,
        "{what}: {compared} of {both} packets matched (srtp {}, plain {})",
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
    let mut lab = CallLab::new("srtp").await.expect("lab");
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
    // The dataplane's events, for the key search (SRTP sessions stay in userspace: few or none).
    let events = watch(&mut lab).await;

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

    cli.push(events.take());
    no_key_anywhere(&lab, &keys, &format!("{recent:?}"), &cli);
    assert_eq!(
        UNVERIFIED.load(Ordering::Relaxed),
        0,
        "every RTP packet on the SRTP wire verifies under the key its sender signalled"
    );
}

/// Every event the dataplane raises from now on, as text.
struct Events {
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Events {
    fn take(self) -> String {
        self.task.abort();
        self.seen.lock().expect("events").join("\n")
    }
}

async fn watch(lab: &mut CallLab) -> Events {
    let mut dp = lab.dataplane.client().await.expect("dataplane client");
    let mut stream = dp
        .watch_events(mediator_proto::dataplane::v1::WatchEventsRequest {})
        .await
        .expect("events")
        .into_inner();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok(Some(e)) = stream.message().await {
            sink.lock().expect("events").push(format!("{e:?}"));
        }
    });
    Events { seen, task }
}

/// No key anywhere: in both daemons' logs, the call records, the CLI output, the dataplane's
/// state files — in any of the forms a leak could take.
fn no_key_anywhere(lab: &CallLab, keys: &[Vec<u8>], records: &str, cli: &[String]) {
    let mut places = vec![
        ("mediator-control log", lab.log()),
        ("mediator-dataplane log", lab.dataplane.log()),
        ("call records", records.to_string()),
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
            for k in keys {
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
        for k in keys {
            for form in forms(k) {
                assert!(!text.contains(&form), "a key ({form}) in the {place}");
            }
        }
    }
}

// ---- SRTP <-> SRTP on a TLS trunk, and passthrough --------------------------------------------

use mediator_dataplane::srtp::{Mki, OutboundContext};
use mediator_tests::tls::{TlsPeer, certificates, header, response};

const GW_MEDIA: &str = "198.18.2.2:40000";
const GW_CONTACT: &str = "<sip:gw@198.18.2.2:5071;transport=tls>";

fn key_b64(k: &[u8]) -> String {
    STANDARD.encode(k)
}

/// What the gateway's SIP thread reports, and what the test tells it.
enum ToTest {
    Invite(String),
    ReinviteAnswered(String),
    Done(String),
}

/// The gateway on the TLS trunk, for `calls` calls: each INVITE goes to the test, which gives the
/// answer's SDP; during the first call, on the test's word, a re-INVITE with the SDP it gives;
/// each BYE is answered. Returns every message it saw.
fn tls_gateway_script(
    listener: std::net::TcpListener,
    dir: std::path::PathBuf,
    calls: usize,
    to_test: std::sync::mpsc::Sender<ToTest>,
    from_test: std::sync::mpsc::Receiver<Option<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut peer: Option<TlsPeer> = None;
        let limit = Duration::from_secs(30);
        let next = |peer: &mut Option<TlsPeer>, seen: &mut String| -> Option<String> {
            for _ in 0..2 {
                if peer.is_none() {
                    *peer = TlsPeer::accept(&listener, &dir, limit).ok();
                }
                match peer.as_mut()?.read(limit) {
                    Ok(m) => {
                        seen.push_str(&m);
                        seen.push_str("\n----\n");
                        return Some(m);
                    }
                    // Mediator may open a new connection for a later call.
                    Err(_) => *peer = None,
                }
            }
            None
        };
        for call in 0..calls {
            let Some(invite) = (loop {
                match next(&mut peer, &mut seen) {
                    Some(m) if m.starts_with("INVITE ") => break Some(m),
                    Some(_) => continue,
                    None => break None,
                }
            }) else {
                break;
            };
            let _ = to_test.send(ToTest::Invite(invite.clone()));
            let Ok(Some(sdp)) = from_test.recv_timeout(limit) else {
                break;
            };
            let tag = format!("gw{call}");
            let ok = response(&invite, "200 OK", &tag, GW_CONTACT, Some(&sdp));
            if peer.as_mut().is_none_or(|p| p.send(&ok).is_err()) {
                break;
            }
            if call == 0
                && let Ok(Some(resdp)) = from_test.recv_timeout(limit)
            {
                // A re-INVITE in the dialog: to Mediator's Contact, From our To, To its From.
                let target = header(&invite, "contact")
                    .and_then(|c| c.split('<').nth(1))
                    .and_then(|c| c.split('>').next())
                    .unwrap_or_default()
                    .to_string();
                let from = format!("{};tag={tag}", header(&invite, "to").unwrap_or_default());
                let to = header(&invite, "from").unwrap_or_default().to_string();
                let call_id = header(&invite, "call-id").unwrap_or_default().to_string();
                let common = format!(
                    "From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nMax-Forwards: 70\r\nContact: {GW_CONTACT}\r\n"
                );
                let re = format!(
                    "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/TLS 198.18.2.2:5071;branch=z9hG4bK-gwre1\r\n{common}CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{resdp}",
                    resdp.len()
                );
                if peer.as_mut().is_none_or(|p| p.send(&re).is_err()) {
                    break;
                }
                while let Some(m) = next(&mut peer, &mut seen) {
                    if m.starts_with("SIP/2.0 200") && m.contains("CSeq: 1 INVITE") {
                        let ack = format!(
                            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/TLS 198.18.2.2:5071;branch=z9hG4bK-gwack1\r\n{common}CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                        );
                        let _ = peer.as_mut().map(|p| p.send(&ack));
                        let _ = to_test.send(ToTest::ReinviteAnswered(m));
                        break;
                    }
                    if m.starts_with("SIP/2.0 4") || m.starts_with("SIP/2.0 5") {
                        let _ = to_test.send(ToTest::ReinviteAnswered(m));
                        break;
                    }
                }
            }
            while let Some(m) = next(&mut peer, &mut seen) {
                if m.starts_with("BYE ") {
                    let ok = response(&m, "200 OK", "", GW_CONTACT, None);
                    let _ = peer.as_mut().map(|p| p.send(&ok));
                    break;
                }
            }
        }
        let _ = to_test.send(ToTest::Done(seen));
    })
}

/// Mediator's INVITE to the gateway: where the relay receives on the gateway side, and the
/// `a=crypto` attributes.
fn relay_media(invite: &str) -> std::net::SocketAddr {
    let body = invite.split("\r\n\r\n").nth(1).unwrap_or_default();
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    format!("{ip}:{}", media_port(body).expect("m= port"))
        .parse()
        .expect("address")
}

fn gw_answer(crypto: &str) -> String {
    format!(
        "v=0\r\no=- 7 7 IN IP4 198.18.2.2\r\ns=-\r\nc=IN IP4 198.18.2.2\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{crypto}\r\n"
    )
}

fn rtp_out(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xAB, 0xCD];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend((0..160u16).map(|i| (i ^ seq) as u8 | 0x01));
    p
}

/// The gateway's media: its sender and receiver contexts, its next sequence number, and what it
/// sent and received (plain payloads by SSRC and sequence number).
struct GwMedia {
    tx: OutboundContext,
    rx: InboundContext,
    seq: u16,
    sent: HashMap<(u32, u16), Vec<u8>>,
    got: HashMap<(u32, u16), Vec<u8>>,
}

/// For `dur`: sends the gateway's SRTP stream to `relay` every 20 ms and collects what arrives.
fn exchange(
    sock: &std::net::UdpSocket,
    relay: std::net::SocketAddr,
    m: &mut GwMedia,
    dur: Duration,
) {
    let GwMedia {
        tx,
        rx,
        seq,
        sent,
        got,
    } = m;
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let start = std::time::Instant::now();
    let mut last = start - Duration::from_secs(1);
    let mut buf = [0u8; 2048];
    while start.elapsed() < dur {
        if last.elapsed() >= Duration::from_millis(20) {
            let plain = rtp_out(*seq);
            let mut p = plain.clone();
            tx.protect_rtp(&mut p).expect("protect");
            sock.send_to(&p, relay).expect("send");
            sent.insert(rtp_key(&plain), payload(&plain).to_vec());
            *seq += 1;
            last = std::time::Instant::now();
        }
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let mut p = buf[..n].to_vec();
            if is_rtp(&p) && rx.unprotect_rtp(&mut p).is_ok() {
                got.insert(rtp_key(&p), payload(&p).to_vec());
            }
        }
    }
}

fn master(key: &[u8]) -> MasterKey {
    MasterKey::from_concatenated(SUITE.parse().expect("suite"), key).expect("key")
}

fn fresh_key(fill: u8) -> Vec<u8> {
    (0..30u8).map(|i| i.wrapping_mul(37) ^ fill).collect()
}

/// SRTP on both legs over a TLS trunk: baresip with its key on the pool leg, the gateway with
/// its own on the gateway leg, Mediator with a key of its own on each; every packet crosses with
/// its payload intact both ways; a tampered, a replayed and a wrong-MKI packet from the gateway
/// are dropped and counted; the gateway re-keys by re-INVITE and its media keeps flowing. Then
/// `srtp_passthrough`: the peers' own keys cross end to end and the stream goes through XDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_to_srtp_on_a_tls_trunk_and_passthrough() {
    if !privileged("srtp_to_srtp_on_a_tls_trunk_and_passthrough") {
        return;
    }
    mediator_tests::process::set_log_filter("debug,h2=info,hyper=info,tower=info");
    use mediator_proto::control::v1 as pb;
    let dir = std::env::temp_dir().join(format!("mediator-srtp-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    certificates(&dir).expect("certificates");
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let mut lab = CallLab::build(
        "srtls",
        &["30000-30999"],
        &[
            "--tls-certificate",
            &p("mediator.pem"),
            "--tls-private-key",
            &p("mediator.key"),
            "--tls-ca",
            &p("ca.pem"),
        ],
    )
    .await
    .expect("call lab");
    let mut topo = lab.control.client().await.expect("client");
    topo.create_trunk(pb::CreateTrunkRequest {
        trunk: Some(pb::Trunk {
            name: "gw-tls".into(),
            gateway: GW_PEER.into(),
            gateway_port: 5071,
            transport: pb::Transport::Tls as i32,
            pool: "pool.lab.mediator".into(),
            pool_port: 5071,
            ..Default::default()
        }),
    })
    .await
    .expect("tls trunk");
    topo.create_voice_route(pb::CreateVoiceRouteRequest {
        route: Some(pb::VoiceRoute {
            name: "tls".into(),
            pattern: r"^\+1999(\d{7})$".into(),
            trunks: vec!["gw-tls".into()],
            pstn_usages: vec!["Lab".into()],
            ..Default::default()
        }),
    })
    .await
    .expect("route");
    let (code, out) = lab
        .ctl(&[
            "trunk-config",
            "add",
            "trunk:gw-tls",
            "--srtp-mode",
            "required",
            "--srtp-passthrough",
            "false",
        ])
        .expect("ctl");
    assert_eq!(code, 0, "{out}");
    // The TCP trunk set to `required` is forced plain, and says why.
    let (code, out) = lab
        .ctl(&[
            "trunk-config",
            "add",
            "trunk:gw-tcp",
            "--srtp-mode",
            "required",
        ])
        .expect("ctl");
    assert_eq!(code, 0, "{out}");
    let (_, eff) = lab
        .ctl(&["trunk-config", "effective", "gw-tcp"])
        .expect("ctl");
    assert!(
        eff.contains("not_supported (*)") && eff.contains("the trunk is not TLS"),
        "{eff}"
    );
    let (_, eff) = lab
        .ctl(&["trunk-config", "effective", "gw-tls"])
        .expect("ctl");
    assert!(!eff.contains("(*)"), "{eff}");
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
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let listener = mediator_tests::lab::in_netns(&lab.lab.gw.name, || {
        std::net::TcpListener::bind("198.18.2.2:5071")
    })
    .expect("bind 5071");
    let (to_test, from_gw) = std::sync::mpsc::channel();
    let (to_gw, from_test) = std::sync::mpsc::channel();
    let gw = tls_gateway_script(listener, dir.clone(), 2, to_test, from_test);
    let sock = mediator_tests::rtp::udp_in(&lab.lab.gw.name, GW_MEDIA.parse().expect("addr"));
    let events = watch(&mut lab).await;
    let wait = |rx: &std::sync::mpsc::Receiver<ToTest>| {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the gateway reports")
    };

    // ---- call 1: SRTP termination on both legs ------------------------------------------
    let (stop, handles) = capture(&lab);
    let mut caller = Baresip::start(
        &lab.lab.pool.name,
        POOL_PEER,
        5060,
        "20000-20099",
        "fe",
        Some(&format!("sip:+19995550100@{POOL_RELAY}:5060")),
        9,
    )
    .expect("baresip");
    let ToTest::Invite(invite) = tokio::task::block_in_place(|| wait(&from_gw)) else {
        panic!("wanted the INVITE:\n{}", caller.log());
    };
    let body = invite
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        body.contains("RTP/SAVP"),
        "required on TLS: RTP/SAVP\n{body}"
    );
    let offered = attrs(&body);
    assert_eq!(offered.len(), 4, "{body}");
    let med_gw = offered[0].clone();
    assert_eq!(med_gw.suite, SUITE);
    let relay = relay_media(&invite);
    let gw_key = fresh_key(1);
    to_gw
        .send(Some(gw_answer(&format!(
            "{} {SUITE} inline:{}|2^31|1:1",
            med_gw.tag,
            key_b64(&gw_key)
        ))))
        .expect("to gw");
    let mki1 = Some(Mki::new(1, 1).expect("mki"));
    let mut m = GwMedia {
        tx: OutboundContext::new(&master(&gw_key), mki1).expect("tx"),
        rx: InboundContext::new(&master(&med_gw.key), None).expect("rx"),
        seq: 1,
        sent: HashMap::new(),
        got: HashMap::new(),
    };
    tokio::task::block_in_place(|| exchange(&sock, relay, &mut m, Duration::from_secs(2)));
    // The gateway's drops so far (its first packets may have come before its answer's keys
    // reached the relay: dropped, as they should be), read live from the relay.
    let drops = |c: &pb::Call| {
        c.streams[0]
            .flows
            .iter()
            .find(|f| f.kind == "rtp" && f.from_side == "gateway")
            .map(|f| (f.srtp_auth_failures, f.srtp_replays, f.srtp_bad_mki))
            .unwrap_or_default()
    };
    let mut calls = lab.control.calls().await.expect("calls");
    let id = lab.active().await.expect("active")[0].id;
    let live =
        |calls: &mut mediator_proto::control::v1::call_service_client::CallServiceClient<_>| {
            let mut calls = calls.clone();
            async move {
                calls
                    .get_call(pb::GetCallRequest { id })
                    .await
                    .expect("get call")
                    .into_inner()
            }
        };
    let before = drops(&live(&mut calls).await);
    let (tx, seq) = (&mut m.tx, m.seq);
    // Forged, replayed and wrong-MKI packets from the gateway.
    let mut forged = rtp_out(seq);
    tx.protect_rtp(&mut forged).expect("protect");
    forged[30] ^= 0x40;
    sock.send_to(&forged, relay).expect("send");
    let mut replay = rtp_out(seq + 1);
    tx.protect_rtp(&mut replay).expect("protect");
    sock.send_to(&replay, relay).expect("send");
    sock.send_to(&replay, relay).expect("send again");
    let mut wrong = OutboundContext::new(&master(&gw_key), Some(Mki::new(2, 1).expect("mki")))
        .expect("wrong mki");
    let mut bad_mki = rtp_out(seq + 2);
    wrong.protect_rtp(&mut bad_mki).expect("protect");
    sock.send_to(&bad_mki, relay).expect("send");
    m.seq += 3;
    let mut after = before;
    for _ in 0..100 {
        after = drops(&live(&mut calls).await);
        if after.0 > before.0 && after.1 > before.1 && after.2 > before.2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (1, 1, 1),
        "one tampered, one replayed, one wrong-MKI packet dropped and counted (before {before:?})"
    );
    // The gateway re-keys by re-INVITE; its media keeps flowing under the new key.
    let gw_key2 = fresh_key(2);
    to_gw
        .send(Some(gw_answer(&format!(
            "{} {SUITE} inline:{}|2^31|1:1",
            med_gw.tag,
            key_b64(&gw_key2)
        ))))
        .expect("to gw");
    let ToTest::ReinviteAnswered(ok) = tokio::task::block_in_place(|| wait(&from_gw)) else {
        panic!("wanted the re-INVITE's answer");
    };
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let again = attrs(ok.split("\r\n\r\n").nth(1).unwrap_or_default());
    assert_eq!(again.len(), 1, "{ok}");
    assert_eq!(again[0].key, med_gw.key, "Mediator's key on this leg stays");
    let rekeyed_from = m.seq;
    m.tx = OutboundContext::new(&master(&gw_key2), mki1).expect("tx2");
    tokio::task::block_in_place(|| exchange(&sock, relay, &mut m, Duration::from_secs(2)));
    let log =
        tokio::task::block_in_place(|| caller.wait(Duration::from_secs(60))).expect("baresip");
    let [pool_side, _] = finish(stop, handles);
    drop(caller);
    assert!(log.contains("SRTP is Enabled"), "{log}");

    let msgs = sip(&pool_side);
    let fe_invite = msgs
        .iter()
        .find(|(d, first, _)| first.starts_with("INVITE ") && d.src.ip().to_string() == POOL_PEER)
        .expect("baresip's INVITE");
    let theirs = attrs(&fe_invite.2)[0].clone();
    let ours_pool = attrs(
        &msgs
            .iter()
            .find(|(d, first, body)| {
                first.starts_with("SIP/2.0 200")
                    && d.src.ip().to_string() == POOL_RELAY
                    && !body.is_empty()
            })
            .expect("Mediator's 200 to baresip")
            .2,
    )[0]
    .clone();
    let all = [&theirs.key, &ours_pool.key, &med_gw.key, &gw_key, &gw_key2];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b, "a key per leg and direction");
        }
    }
    let fe_to_gw = same_media(
        "baresip -> gateway (SRTP to SRTP)",
        &decrypted(&pool_side, POOL_PEER, POOL_RELAY, &theirs.key),
        &m.got,
    );
    let to_fe = decrypted(&pool_side, POOL_RELAY, POOL_PEER, &ours_pool.key);
    let gw_to_fe = same_media("gateway -> baresip (SRTP to SRTP)", &to_fe, &m.sent);
    let after_rekey = to_fe
        .keys()
        .filter(|(ssrc, s)| *ssrc == 0xABCD && *s >= rekeyed_from)
        .count();
    assert!(after_rekey >= 50, "media after the re-key: {after_rekey}");
    let rec = lab.wait_recent(1).await.expect("records");
    let c = rec.first().expect("a record");
    let s = &c.streams[0];
    assert_eq!(
        (s.pool_srtp.as_str(), s.gateway_srtp.as_str()),
        (SUITE, SUITE)
    );
    let gw_flow = s
        .flows
        .iter()
        .find(|f| f.kind == "rtp" && f.from_side == "gateway")
        .expect("gateway flow");
    assert!(
        gw_flow.srtp_auth_failures >= after.0
            && gw_flow.srtp_replays == after.1
            && gw_flow.srtp_bad_mki == after.2,
        "the record keeps the drops: {gw_flow:?}, live {after:?}"
    );
    // The relay's totals (GetStats; its metrics read the same figures) keep them too.
    let stats = lab
        .dataplane
        .client()
        .await
        .expect("relay")
        .get_stats(mediator_proto::dataplane::v1::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert!(
        stats.srtp_auth_failures >= gw_flow.srtp_auth_failures
            && stats.srtp_replays >= gw_flow.srtp_replays
            && stats.srtp_bad_mki >= gw_flow.srtp_bad_mki
            && stats.srtp_bad_mki > 0,
        "the relay's SRTP totals: {stats:?}"
    );
    let (_, shown) = lab.ctl(&["call", "show", &c.id.to_string()]).expect("ctl");
    assert!(
        shown.contains(&format!(
            "srtp dropped: auth {}, replay {}, mki {}",
            gw_flow.srtp_auth_failures, gw_flow.srtp_replays, gw_flow.srtp_bad_mki
        )),
        "{shown}"
    );

    // ---- call 2: passthrough ----------------------------------------------------------------
    let (code, out) = lab
        .ctl(&[
            "trunk-config",
            "set",
            "trunk:gw-tls",
            "--srtp-passthrough",
            "true",
        ])
        .expect("ctl");
    assert_eq!(code, 0, "{out}");
    let (stop, handles) = capture(&lab);
    let mut caller = Baresip::start(
        &lab.lab.pool.name,
        POOL_PEER,
        5060,
        "20100-20199",
        "fe",
        Some(&format!("sip:+19995550101@{POOL_RELAY}:5060")),
        6,
    )
    .expect("baresip");
    let ToTest::Invite(invite) = tokio::task::block_in_place(|| wait(&from_gw)) else {
        panic!("wanted the second INVITE:\n{}", caller.log());
    };
    let body = invite
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let passed = attrs(&body);
    assert_eq!(passed.len(), 1, "baresip's own line: {body}");
    let relay = relay_media(&invite);
    let gw_key3 = fresh_key(3);
    // baresip takes no MKI.
    to_gw
        .send(Some(gw_answer(&format!(
            "{} {SUITE} inline:{}",
            passed[0].tag,
            key_b64(&gw_key3)
        ))))
        .expect("to gw");
    let mut m = GwMedia {
        tx: OutboundContext::new(&master(&gw_key3), None).expect("tx3"),
        rx: InboundContext::new(&master(&passed[0].key), None).expect("baresip's key"),
        seq: m.seq,
        sent: HashMap::new(),
        got: HashMap::new(),
    };
    tokio::task::block_in_place(|| exchange(&sock, relay, &mut m, Duration::from_secs(3)));
    tokio::task::block_in_place(|| caller.wait(Duration::from_secs(60))).expect("baresip");
    let [pool_side, _] = finish(stop, handles);
    drop(caller);
    let msgs = sip(&pool_side);
    let fe_invite = msgs
        .iter()
        .find(|(d, first, _)| first.starts_with("INVITE ") && d.src.ip().to_string() == POOL_PEER)
        .expect("baresip's INVITE");
    assert_eq!(
        attrs(&fe_invite.2)[0].key,
        passed[0].key,
        "the gateway got baresip's own key"
    );
    let pass_out = same_media(
        "baresip -> gateway (passthrough)",
        &decrypted(&pool_side, POOL_PEER, POOL_RELAY, &passed[0].key),
        &m.got,
    );
    let pass_in = same_media(
        "gateway -> baresip (passthrough)",
        &decrypted(&pool_side, POOL_RELAY, POOL_PEER, &gw_key3),
        &m.sent,
    );
    let rec = lab.wait_recent(2).await.expect("records");
    let c = rec
        .iter()
        .find(|c| c.dialed.ends_with("0101"))
        .expect("the passthrough call's record");
    let s = &c.streams[0];
    assert!(s.srtp_passthrough, "{c:?}");
    let xdp: u64 = s
        .flows
        .iter()
        .filter(|f| f.kind == "rtp")
        .map(|f| f.xdp_packets)
        .sum();
    assert!(xdp > 0, "encrypted media through XDP: {s:?}");
    eprintln!(
        "compared: srtp<->srtp {fe_to_gw} + {gw_to_fe} ({after_rekey} after the re-key), passthrough {pass_out} + {pass_in}, {xdp} packets by XDP"
    );
    let mut keys = vec![
        theirs.key.clone(),
        ours_pool.key.clone(),
        gw_key,
        gw_key2,
        gw_key3,
        passed[0].key.clone(),
    ];
    keys.extend(offered.iter().map(|a| a.key.clone()));
    let mut cli = Vec::new();
    for c in &rec {
        for args in [
            &["call", "show"][..],
            &["--output", "json", "call", "show"][..],
        ] {
            let id = c.id.to_string();
            let all: Vec<&str> = args.iter().copied().chain([id.as_str()]).collect();
            cli.push(lab.ctl(&all).expect("ctl").1);
        }
    }
    let events = events.take();
    assert!(
        events.contains("Offloaded") || events.contains("offloaded"),
        "the passthrough session's offload was seen: {events}"
    );
    cli.push(events);
    no_key_anywhere(&lab, &keys, &format!("{rec:?}"), &cli);
    drop(to_gw);
    if let Ok(ToTest::Done(seen)) = from_gw.recv_timeout(Duration::from_secs(10)) {
        assert!(seen.contains("BYE "), "{seen}");
    }
    let _ = gw.join();
    assert_eq!(
        UNVERIFIED.load(Ordering::Relaxed),
        0,
        "every RTP packet on the SRTP wire verifies under the key its sender signalled"
    );
    lab.control.client().await.expect("still up");
    let _ = std::fs::remove_dir_all(&dir);
}

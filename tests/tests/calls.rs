//! Calls through Mediator with real SIP peers: SIPp on the pool side (the Front End) and on the
//! gateway side, in the namespace lab, with mediator-control and mediator-dataplane (XDP native)
//! in the relay namespace and the lab topology (tests/lab/topology.toml).

use std::time::Duration;

use mediator_tests::calls::{CallLab, flow, scenario};
use mediator_tests::lab::{
    GW_PEER, GW_RELAY, POOL_OTHER, POOL_PEER, POOL_RELAY, in_netns, privileged,
};
use mediator_tests::rtp::{rtp_packet, udp_in};
use mediator_tests::sipp::{Uac, Uas};

fn uas(lab: &CallLab, port: u16, name: &str) -> Uas {
    let sf = scenario(name);
    let args: Vec<&str> = if name == "uas" {
        vec![]
    } else {
        vec!["-sf", &sf]
    };
    Uas::start(&lab.lab.gw.name, GW_PEER, port, &args).expect("gateway uas")
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_calls_both_ways_with_media_through_xdp() {
    if !privileged("basic_calls_both_ways_with_media_through_xdp") {
        return;
    }
    let lab = CallLab::new("call").await.expect("call lab");
    let gw = Uas::start(&lab.lab.gw.name, GW_PEER, 5060, &[]).expect("gateway uas");
    let run = lab.from_pool("+14255550100", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let calls = lab.wait_recent(1).await.expect("recent");
    let c = &calls[0];
    assert_eq!(c.direction, "outbound");
    assert_eq!(c.trunk, "198.18.2.2");
    assert_eq!(c.status, 200, "{c:?}");
    assert_eq!(c.called, "14255550100", "translated for the gateway");
    assert_eq!(c.end_reason, "BYE from the pool side");
    let (from_pool, xdp_pool) = flow(c, "pool");
    let (from_gw, xdp_gw) = flow(c, "gateway");
    assert!(from_pool > 100 && from_gw > 100, "RTP both ways: {c:#?}");
    assert!(
        xdp_pool > 0 && xdp_gw > 0,
        "forwarded by XDP both ways: {c:#?}"
    );
    // What an operator sees with mediatorctl.
    let (code, text) = lab
        .ctl(&["call", "show", &c.id.to_string()])
        .expect("mediatorctl");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("rtp from pool: ")
            && text.contains("rtp from gateway: ")
            && text.contains(&format!("by xdp {xdp_pool} / userspace")),
        "per-stream figures and what carried them:\n{text}"
    );
    let (code, text) = lab.ctl(&["call", "recent"]).expect("mediatorctl");
    assert!(
        code == 0 && text.contains("BYE from the pool side"),
        "{text}"
    );
    let (code, _) = lab.ctl(&["call", "show", "nope"]).expect("mediatorctl");
    assert_eq!(code, 64, "a bad id is a usage error");
    let msgs = gw.messages();
    assert!(
        msgs.contains("INVITE sip:14255550100@198.18.2.2:5060"),
        "the gateway receives the translated number:\n{msgs}"
    );
    drop(gw);

    // The reverse direction: the gateway calls the pool.
    let _fe = Uas::start(&lab.lab.pool.name, POOL_PEER, 5060, &[]).expect("pool uas");
    let run = lab.from_gateway("+14255550199", 5060, 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let calls = lab.wait_recent(2).await.expect("recent");
    let c = &calls[0];
    assert_eq!((c.direction.as_str(), c.status), ("inbound", 200), "{c:?}");
    let (from_pool, xdp_pool) = flow(c, "pool");
    let (from_gw, xdp_gw) = flow(c, "gateway");
    assert!(from_pool > 100 && from_gw > 100, "RTP both ways: {c:#?}");
    assert!(
        xdp_pool > 0 && xdp_gw > 0,
        "forwarded by XDP both ways: {c:#?}"
    );
    assert!(lab.active().await.expect("active").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rejections_failover_and_fast_failover() {
    if !privileged("rejections_failover_and_fast_failover") {
        return;
    }
    let lab = CallLab::new("fail").await.expect("call lab");
    // 486 from the gateway reaches the caller; it is not failed over.
    let busy = uas(&lab, 5060, "uas_486");
    let sf = scenario("uac_486");
    let run = lab
        .from_pool("+14255550100", 1, &["-sf", &sf])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(c.status, 486);
    assert_eq!(c.attempts.len(), 1, "no failover on 486: {c:?}");
    drop(busy);

    // 503 from the first trunk: the second one answers.
    let _down = uas(&lab, 5062, "uas_503");
    let _up = uas(&lab, 5060, "uas");
    let run = lab.from_pool("+15555550100", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(2).await.expect("recent")[0];
    let tried: Vec<(&str, u32)> = c
        .attempts
        .iter()
        .map(|a| (a.trunk.as_str(), a.status))
        .collect();
    assert_eq!(tried, vec![("gw-5062", 503), ("198.18.2.2", 200)]);
    assert_eq!((c.status, c.trunk.as_str()), (200, "198.18.2.2"));

    // Nothing answers on the first trunk: fast failover after its 2 s timeout.
    let start = std::time::Instant::now();
    let run = lab.from_pool("+16665550100", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(3).await.expect("recent")[0];
    let tried: Vec<(&str, u32)> = c
        .attempts
        .iter()
        .map(|a| (a.trunk.as_str(), a.status))
        .collect();
    assert_eq!(tried, vec![("gw-silent", 408), ("198.18.2.2", 200)]);
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_bye_from_the_gateway_hold_resume_and_prack() {
    if !privileged("cancel_bye_from_the_gateway_hold_resume_and_prack") {
        return;
    }
    let lab = CallLab::new("dlg").await.expect("call lab");
    let ring = uas(&lab, 5060, "uas_ring");
    let sf = scenario("uac_cancel");
    let run = lab
        .from_pool("+14255550100", 1, &["-sf", &sf])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(
        (c.status, c.end_reason.as_str()),
        (487, "cancelled by the caller")
    );
    assert!(
        ring.messages().contains("CANCEL sip:"),
        "the gateway got the CANCEL"
    );
    drop(ring);

    let bye = uas(&lab, 5060, "uas_bye");
    let sf = scenario("uac_wait_bye");
    let run = lab
        .from_pool("+14255550100", 1, &["-sf", &sf])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(2).await.expect("recent")[0];
    assert_eq!(c.end_reason, "BYE from the gateway side");
    drop(bye);

    let hold = uas(&lab, 5060, "uas_hold");
    let sf = scenario("uac_hold");
    let run = lab
        .from_pool("+14255550100", 1, &["-sf", &sf])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let msgs = hold.messages();
    let reinvites: Vec<&str> = msgs.split("INVITE sip:").skip(2).collect();
    assert!(
        reinvites.len() >= 2
            && reinvites[0].contains("a=sendonly")
            && reinvites[1].contains("a=sendrecv")
            && reinvites.iter().all(|r| r.contains("c=IN IP4 198.18.2.1")),
        "hold then resume reach the gateway, anchored on the relay:\n{msgs}"
    );
    let c = &lab.wait_recent(3).await.expect("recent")[0];
    assert_eq!(
        (c.status, c.end_reason.as_str()),
        (200, "BYE from the pool side")
    );
    drop(hold);

    // 100rel end to end: a reliable 183 with early media, PRACKed across, then the answer.
    let prack = uas(&lab, 5060, "uas_prack");
    let sf = scenario("uac_prack");
    let run = lab
        .from_pool("+14255550100", 1, &["-sf", &sf])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let msgs = prack.messages();
    assert!(
        msgs.contains("PRACK sip:") && msgs.contains("RAck: 1 1 INVITE"),
        "the gateway got the PRACK with its RAck:\n{msgs}"
    );
    let c = &lab.wait_recent(4).await.expect("recent")[0];
    assert_eq!(c.status, 200);
    drop(prack);

    // The operator ends a call with mediatorctl: a BYE reaches both sides.
    let gw = uas(&lab, 5060, "uas");
    let sf = scenario("uac_wait_bye");
    let caller = Uac::start(
        &lab.lab.pool.name,
        POOL_PEER,
        &format!("{POOL_RELAY}:5060"),
        1,
        10,
        Duration::from_secs(30),
        &["-s", "+14255550100", "-sf", &sf],
    )
    .expect("uac");
    let mut id = None;
    for _ in 0..100 {
        let active = lab.active().await.expect("calls");
        if let Some(c) = active.iter().find(|c| c.state == "confirmed") {
            id = Some(c.id.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = id.expect("the call is up");
    let (code, text) = lab.ctl(&["call", "show", &id]).expect("mediatorctl");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("relay media: pool side {POOL_RELAY}:"))
            && text.contains("gateway side 198.18.2.1:"),
        "where the relay takes each side's RTP:\n{text}"
    );
    let (code, text) = lab
        .ctl(&["call", "end", &id, "--reason", "ticket 1234"])
        .expect("mediatorctl");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("ended") && text.contains("200 ticket 1234"),
        "the call's record:\n{text}"
    );
    let run = caller.wait().expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "the caller got its BYE: {run:?}\n{}",
        lab.log()
    );
    assert!(
        gw.messages().contains("BYE sip:"),
        "the gateway got its BYE"
    );
    let c = &lab.wait_recent(5).await.expect("recent")[0];
    assert_eq!((c.status, c.end_reason.as_str()), (200, "ticket 1234"));
    let (code, _) = lab.ctl(&["call", "end", &id]).expect("mediatorctl");
    assert_eq!(code, 1, "an ended call cannot be ended again (NOT_FOUND)");
    let (code, _) = lab.ctl(&["call", "end", "x"]).expect("mediatorctl");
    assert_eq!(code, 64, "a bad id is a usage error");
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_trunk_media_bypass_and_refused_strangers() {
    if !privileged("tcp_trunk_media_bypass_and_refused_strangers") {
        return;
    }
    let lab = CallLab::new("tcp").await.expect("call lab");
    // Pool over UDP, gateway over TCP, both directions.
    let _tcp =
        Uas::start(&lab.lab.gw.name, GW_PEER, 5070, &["-sn", "uas", "-t", "t1"]).expect("uas");
    let run = lab.from_pool("+17775550100", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(
        c.legs
            .iter()
            .map(|l| l.transport.as_str())
            .collect::<Vec<_>>(),
        vec!["udp", "tcp"]
    );
    let (p, g) = (flow(c, "pool").0, flow(c, "gateway").0);
    assert!(
        p > 100 && g > 100,
        "media flows on a TCP-signalled call: {c:#?}"
    );
    let _fe = Uas::start(&lab.lab.pool.name, POOL_PEER, 5060, &[]).expect("pool uas");
    let run = lab
        .from_gateway("+14255550199", 5070, 1, &["-sn", "uac_pcap", "-t", "t1"])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );

    // media_bypass: the gateway sees the Front End's own media address, no session is made.
    let bypass = uas(&lab, 5066, "uas");
    let run = lab.from_pool("+18885550100", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(3).await.expect("recent")[0];
    assert!(c.media_bypass && c.streams.is_empty(), "{c:#?}");
    let msgs = bypass.messages();
    assert!(
        msgs.contains(&format!("c=IN IP4 {POOL_PEER}")),
        "SDP untouched:\n{msgs}"
    );

    // While a call is in progress: a stranger's INVITE gets 403, garbage gets 400, the call is
    // unaffected.
    let _gw = uas(&lab, 5060, "uas");
    let pool_ns = lab.lab.pool.name.clone();
    let caller = {
        let lab_pool = lab.lab.pool.name.clone();
        std::thread::spawn(move || {
            mediator_tests::calls::call_from(
                &lab_pool,
                POOL_PEER,
                &format!("{POOL_RELAY}:5060"),
                "+14255550100",
                1,
                &[],
            )
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let replies = in_netns(&pool_ns, || {
        let ask = |from: &str, what: &[u8]| -> String {
            let s = std::net::UdpSocket::bind(format!("{from}:0")).expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            s.send_to(what, format!("{POOL_RELAY}:5060")).expect("send");
            let mut buf = [0u8; 4096];
            match s.recv(&mut buf) {
                Ok(n) => String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
                Err(_) => "no answer".into(),
            }
        };
        let invite = |from: &str| {
            format!(
                "INVITE sip:+14255550100@{POOL_RELAY}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from}:5999;branch=z9hG4bK-x1\r\nMax-Forwards: 70\r\nFrom: <sip:x@{from}>;tag=1\r\nTo: <sip:+14255550100@{POOL_RELAY}>\r\nCall-ID: stranger\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
        };
        // Two Call-IDs (RFC 3261 §20: one only). A missing Max-Forwards is no longer malformed:
        // RFC 2543 peers send none, and Mediator takes it as 70.
        let two_call_ids = invite(POOL_PEER).replace(
            "Call-ID: stranger\r\n",
            "Call-ID: stranger\r\nCall-ID: another\r\n",
        );
        let replies = (
            ask(POOL_OTHER, invite(POOL_OTHER).as_bytes()),
            ask(POOL_PEER, two_call_ids.as_bytes()),
        );
        // A burst of both (bounded: 300 each): the log gets a bounded number of lines.
        let s = std::net::UdpSocket::bind(format!("{POOL_OTHER}:0")).expect("bind");
        let m = std::net::UdpSocket::bind(format!("{POOL_PEER}:0")).expect("bind");
        for _ in 0..300 {
            let _ = s.send_to(invite(POOL_OTHER).as_bytes(), format!("{POOL_RELAY}:5060"));
            let _ = m.send_to(two_call_ids.as_bytes(), format!("{POOL_RELAY}:5060"));
        }
        replies
    });
    assert!(
        replies.0.starts_with("SIP/2.0 403"),
        "stranger: {replies:?}"
    );
    assert!(
        replies.1.starts_with("SIP/2.0 400"),
        "malformed: {replies:?}"
    );
    let log = lab.log();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    let (strangers, malformed) = (
        lines("not a configured peer"),
        lines("refused a malformed request"),
    );
    let most = mediator_b2bua::log_budget::PER_WINDOW as usize * 2;
    assert!(
        (1..=most).contains(&strangers) && (1..=most).contains(&malformed),
        "301 of each logged in at most {most} lines: {strangers} and {malformed}"
    );
    assert!(
        !log.contains('\x1b'),
        "no colour codes in a log that is not a terminal"
    );
    let run = caller.join().expect("uac thread").expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
}

/// A minimal SIP gateway over TLS (SIPp 3.6.1 from Debian has no TLS): answers one INVITE with
/// 200 and SDP, takes the ACK, answers the BYE. Returns every message it received.
fn tls_gateway(dir: std::path::PathBuf, ns: String) -> std::thread::JoinHandle<String> {
    use mediator_tests::tls::{TlsPeer, response};
    let listener =
        in_netns(&ns, move || std::net::TcpListener::bind("198.18.2.2:5071")).expect("bind 5071");
    std::thread::spawn(move || {
        let mut seen = String::new();
        let Ok(mut peer) = TlsPeer::accept(&listener, &dir, Duration::from_secs(30)) else {
            return seen;
        };
        let contact = "<sip:gw@198.18.2.2:5071;transport=tls>";
        let sdp = "v=0\r\no=- 1 1 IN IP4 198.18.2.2\r\ns=-\r\nc=IN IP4 198.18.2.2\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n";
        while let Ok(msg) = peer.read(Duration::from_secs(30)) {
            seen.push_str(&msg);
            seen.push_str("\n----\n");
            let reply = if msg.starts_with("INVITE ") {
                Some(response(&msg, "200 OK", "tlsgw", contact, Some(sdp)))
            } else if msg.starts_with("BYE ") {
                Some(response(&msg, "200 OK", "", contact, None))
            } else {
                None
            };
            if let Some(r) = reply
                && peer.send(&r).is_err()
            {
                break;
            }
            if msg.starts_with("BYE ") {
                break;
            }
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_trunk_carries_a_call() {
    if !privileged("a_tls_trunk_carries_a_call") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mediator-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    mediator_tests::tls::certificates(&dir).expect("certificates");
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (p("mediator.pem"), p("mediator.key"), p("ca.pem"));
    let mut lab = CallLab::build(
        "tls",
        &["30000-30999"],
        &[
            "--tls-certificate",
            &cert,
            "--tls-private-key",
            &key,
            "--tls-ca",
            &ca,
        ],
    )
    .await
    .expect("call lab");
    let mut topo = lab.control.client().await.expect("client");
    use mediator_proto::control::v1 as pb;
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
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let gateway = tls_gateway(dir.clone(), lab.lab.gw.name.clone());
    let run = lab
        .from_pool("+19995550100", 1, &["-sn", "uac", "-d", "500"])
        .expect("uac");
    let seen = gateway.join().expect("tls gateway");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{seen}\n{}",
        lab.log()
    );
    assert!(
        seen.contains("INVITE sip:+19995550100@198.18.2.2:5071;user=phone;transport=tls SIP/2.0")
            && seen.contains("SIP/2.0/TLS 198.18.2.1:5071")
            && seen.contains("BYE "),
        "the gateway got the call over TLS:\n{seen}"
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(c.legs[1].transport, "tls", "{c:?}");
    assert_eq!(c.status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// RFC 3261 §7.3: compact header names (`v:`, `f:`, `t:`, `i:`, `m:`, `c:`, `l:`), folded lines
/// and whitespace before colons, both ways — a caller in the pool sending them (raw UDP: SIPp
/// cannot fold a line) and SIPp answering in compact form as the gateway, with a reason phrase of
/// its own that reaches the caller as written.
#[tokio::test(flavor = "multi_thread")]
async fn compact_and_folded_headers_both_ways() {
    if !privileged("compact_and_folded_headers_both_ways") {
        return;
    }
    let lab = CallLab::new("compact").await.expect("call lab");
    let gw = uas(&lab, 5060, "uas_compact");
    let pool_ns = lab.lab.pool.name.clone();
    let seen = tokio::task::spawn_blocking(move || {
        in_netns(&pool_ns, || {
            let s = std::net::UdpSocket::bind(format!("{POOL_PEER}:0")).expect("bind");
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let port = s.local_addr().expect("addr").port();
            let to = format!("{POOL_RELAY}:5060");
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 {POOL_PEER}\r\ns=-\r\nc=IN IP4 {POOL_PEER}\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
            );
            let invite = format!(
                "INVITE sip:+14255550100@{POOL_RELAY}:5060 SIP/2.0\r\n\
                 v: SIP/2.0/UDP {POOL_PEER}:{port}\r\n ;branch=z9hG4bK-compact1\r\n\
                 Max-Forwards  : 70\r\n\
                 f: \"Folded\r\n Caller\" <sip:+14255551000@{POOL_PEER}>;tag=c1\r\n\
                 t:<sip:+14255550100@{POOL_RELAY}>\r\n\
                 i: compact-call-1\r\n\
                 CSeq: 1\r\n\tINVITE\r\n\
                 m: <sip:fe@{POOL_PEER}:{port}>\r\n\
                 c: application/sdp\r\n\
                 l: {}\r\n\r\n{sdp}",
                sdp.len()
            );
            s.send_to(invite.as_bytes(), &to).expect("send");
            let mut seen: Vec<String> = Vec::new();
            let mut buf = [0u8; 8192];
            let start = std::time::Instant::now();
            let mut ok = None;
            while ok.is_none() && start.elapsed() < Duration::from_secs(10) {
                if let Ok(n) = s.recv(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).to_string();
                    seen.push(m.lines().next().unwrap_or_default().to_string());
                    if m.starts_with("SIP/2.0 200") {
                        ok = Some(m);
                    }
                }
            }
            let ok = ok.unwrap_or_else(|| panic!("no 200: {seen:?}"));
            let to_hdr = ok
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("to:"))
                .expect("To in the 200")[3..]
                .trim()
                .to_string();
            let send = |method: &str, cseq: u32, branch: &str| {
                let m = format!(
                    "{method} sip:mediator@{POOL_RELAY}:5060 SIP/2.0\r\n\
                     v: SIP/2.0/UDP {POOL_PEER}:{port};branch={branch}\r\n\
                     Max-Forwards: 70\r\n\
                     f: <sip:+14255551000@{POOL_PEER}>;tag=c1\r\n\
                     t: {to_hdr}\r\n\
                     i: compact-call-1\r\n\
                     CSeq: {cseq} {method}\r\n\
                     l: 0\r\n\r\n"
                );
                s.send_to(m.as_bytes(), &to).expect("send");
            };
            send("ACK", 1, "z9hG4bK-compact2");
            std::thread::sleep(Duration::from_millis(500));
            send("BYE", 2, "z9hG4bK-compact3");
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(n) = s.recv(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).to_string();
                    let first = m.lines().next().unwrap_or_default().to_string();
                    let done = first.starts_with("SIP/2.0 200") && m.contains("BYE");
                    seen.push(first);
                    if done {
                        break;
                    }
                }
            }
            seen
        })
    })
    .await
    .expect("caller");
    assert!(
        seen.iter()
            .any(|l| l == "SIP/2.0 183 Session Progress Here"),
        "the gateway's compact 183 reached the caller with its own reason phrase: {seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("SIP/2.0 200")),
        "{seen:?}"
    );
    let rec = &lab.wait_recent(1).await.expect("records")[0];
    assert_eq!(
        (rec.status, rec.end_reason.as_str()),
        (200, "BYE from the pool side"),
        "{rec:?}"
    );
    assert!(
        gw.messages().contains("BYE sip:"),
        "the compact gateway got its BYE"
    );
    assert!(
        !lab.log().contains("400 "),
        "nothing refused:\n{}",
        lab.log()
    );
}

/// A call whose media stopped (here: never flowed) is ended by Mediator when the relay reports
/// the media timeout: both SIPp get a BYE with `Reason: SIP;cause=408;text="media timeout"`, and
/// the record says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_media_timeout_ends_the_call_on_both_legs() {
    if !privileged("a_media_timeout_ends_the_call_on_both_legs") {
        return;
    }
    let lab = CallLab::build("mto", &["30000-30999"], &["--media-timeout-secs", "3"])
        .await
        .expect("call lab");
    let gw = uas(&lab, 5060, "uas");
    let sf = scenario("uac_wait_bye");
    let started = std::time::Instant::now();
    let run = lab
        .from_pool("+14255550100", 1, &["-sf", &sf])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "the caller got Mediator's BYE: {run:?}\n{}",
        lab.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "ended by the 3 s timeout, not by SIPp's own limits"
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(
        (c.status, c.end_reason.as_str()),
        (200, "media timeout"),
        "{c:?}"
    );
    let seen = gw.messages();
    assert!(
        seen.contains("BYE sip:") && seen.contains("Reason: SIP;cause=408;text=\"media timeout\""),
        "the gateway got a BYE with the reason:\n{seen}"
    );
}

/// The trunk's health as `mediatorctl trunk show` prints it ("up since …", "down since …").
fn health_of(lab: &CallLab, trunk: &str) -> String {
    let (code, text) = lab.ctl(&["trunk", "show", trunk]).expect("mediatorctl");
    assert_eq!(code, 0, "{text}");
    text.lines()
        .find(|l| l.trim_start().starts_with("health"))
        .map(|l| {
            l.trim_start()
                .trim_start_matches("health")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Polls `trunk`'s health until it starts with `state`, at most `limit`; how long it took.
fn wait_health(lab: &CallLab, trunk: &str, state: &str, limit: Duration) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if health_of(lab, trunk).starts_with(state) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_gateway_is_marked_down_skipped_and_back_when_it_answers() {
    if !privileged("a_dead_gateway_is_marked_down_skipped_and_back_when_it_answers") {
        return;
    }
    let lab = CallLab::new("health").await.expect("call lab");
    // Probe gw-5062 every second, down after two failures.
    let (code, text) = lab
        .ctl(&[
            "trunk-config",
            "add",
            "trunk:gw-5062",
            "--options-interval",
            "1",
            "--options-failures",
            "2",
        ])
        .expect("mediatorctl");
    assert_eq!(code, 0, "{text}");
    // SIPp answers OPTIONS with 200 only with -aa, as a gateway would.
    let gw = Uas::start(&lab.lab.gw.name, GW_PEER, 5062, &["-sn", "uas", "-aa"]).expect("uas");
    let _second = uas(&lab, 5060, "uas");
    assert!(
        wait_health(&lab, "gw-5062", "up", Duration::from_secs(10)).is_some(),
        "up once its gateway answers: {}\n{}",
        health_of(&lab, "gw-5062"),
        lab.log()
    );
    let (code, text) = lab.ctl(&["trunk", "show", "gw-5062"]).expect("mediatorctl");
    assert!(
        code == 0
            && text.contains("last probe")
            && text.contains("200 in ")
            && text.contains(" ms ("),
        "the last answer and its round trip:\n{text}"
    );

    // The gateway dies: down within interval x threshold (plus a probe's wait), and the
    // event stream says so.
    let events = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            lab.ctl(&["trunk", "events", "--count", "1", "--for", "30"])
                .expect("mediatorctl")
        });
        std::thread::sleep(Duration::from_millis(500));
        drop(gw);
        let took = wait_health(&lab, "gw-5062", "down", Duration::from_secs(20));
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(10)),
            "down after about two seconds (took {took:?}): {}",
            health_of(&lab, "gw-5062")
        );
        watcher.join().expect("watcher")
    });
    assert!(
        events.0 == 0
            && events.1.contains("trunk gw-5062")
            && events.1.contains("down: OPTIONS unanswered"),
        "{events:?}"
    );
    let (code, list) = lab.ctl(&["trunk", "list"]).expect("mediatorctl");
    assert!(
        code == 0
            && list
                .lines()
                .any(|l| l.starts_with("gw-5062") && l.contains(" down ")),
        "{list}"
    );
    assert!(lab.log().contains("trunk down"), "logged");

    // New calls skip it.
    let run = lab.from_pool("+15555550100", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    let tried: Vec<(&str, u32)> = c
        .attempts
        .iter()
        .map(|a| (a.trunk.as_str(), a.status))
        .collect();
    assert_eq!(
        tried,
        vec![("198.18.2.2", 200)],
        "the down trunk is not tried"
    );

    // It comes back: up on the first answered probe, and routed to again.
    let _gw = Uas::start(&lab.lab.gw.name, GW_PEER, 5062, &["-sn", "uas", "-aa"]).expect("uas");
    let took = wait_health(&lab, "gw-5062", "up", Duration::from_secs(20));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "back up (took {took:?}): {}",
        health_of(&lab, "gw-5062")
    );
    let run = lab.from_pool("+15555550101", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(2).await.expect("recent")[0];
    assert_eq!((c.trunk.as_str(), c.status), ("gw-5062", 200), "{c:?}");
    let (code, text) = lab.ctl(&["trunk", "show", "gw-5062"]).expect("mediatorctl");
    assert!(code == 0 && text.contains("down 1 times"), "{text}");
}

/// Session timers (RFC 4028) both ways on one call: the caller (SIPp, pool side) asks 90 s with
/// itself as refresher; the gateway (SIPp) makes Mediator its refresher. Mediator refreshes the
/// gateway's leg with UPDATE at 45 s; the caller never refreshes, so at 60 s (90 − 30) Mediator
/// ends the call on both legs with `Reason: SIP;cause=408;text="session expired"`.
#[tokio::test(flavor = "multi_thread")]
async fn session_timers_refresh_the_gateway_and_end_the_call_when_the_caller_stops() {
    if !privileged("session_timers_refresh_the_gateway_and_end_the_call_when_the_caller_stops") {
        return;
    }
    let lab = CallLab::build(
        "stimer",
        &["30000-30999"],
        &["--session-expires-secs", "90"],
    )
    .await
    .expect("call lab");
    let (code, text) = lab
        .ctl(&["trunk-config", "set", "global", "--session-timer", "true"])
        .expect("mediatorctl");
    assert_eq!(code, 0, "{text}");
    let gw = uas(&lab, 5060, "uas_timer");
    let sf = scenario("uac_timer");
    let started = std::time::Instant::now();
    let run = mediator_tests::sipp::uac(
        &lab.lab.pool.name,
        POOL_PEER,
        &format!("{POOL_RELAY}:5060"),
        1,
        1,
        Duration::from_secs(120),
        &["-s", "+14255550100", "-sf", &sf],
    )
    .expect("uac");
    let took = started.elapsed();
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "the caller's 200 carried its timer and its BYE the reason: {run:?}\n{}",
        lab.log()
    );
    assert!(
        took > Duration::from_secs(55) && took < Duration::from_secs(80),
        "ended when the caller's leg expired (60 s), took {took:?}"
    );
    let seen = gw.messages();
    assert!(
        seen.contains("UPDATE sip:") && seen.contains("Session-Expires: 90;refresher=uac"),
        "the gateway's leg was refreshed with UPDATE:\n{seen}"
    );
    assert!(
        seen.contains("BYE sip:")
            && seen.contains("Reason: SIP;cause=408;text=\"session expired\""),
        "the gateway got a BYE with the reason:\n{seen}"
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(c.status, 408, "{c:?}");
    assert!(
        c.end_reason.contains("no refresh from the pool side"),
        "{c:?}"
    );
}

/// Delayed offers from each side on an anchored trunk: SIPp calls without SDP, the callee's
/// 183 brings the offer (anchored at once, re-pointed at the relay: the caller checks the 183's
/// address), its 200 repeats it, the caller's ACK brings the answer, and G.711 crosses the relay
/// both ways.
#[tokio::test(flavor = "multi_thread")]
async fn delayed_offers_from_each_side_are_anchored() {
    if !privileged("delayed_offers_from_each_side_are_anchored") {
        return;
    }
    let lab = CallLab::new("delayed").await.expect("call lab");
    let sf_uac = scenario("uac_delayed");
    let sf_uas = scenario("uas_delayed");
    let gw = Uas::start(&lab.lab.gw.name, GW_PEER, 5060, &["-sf", &sf_uas]).expect("uas");
    let run = lab
        .from_pool("+14255550100", 1, &["-sf", &sf_uac])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    drop(gw);
    let _fe = Uas::start(&lab.lab.pool.name, POOL_PEER, 5060, &["-sf", &sf_uas]).expect("uas");
    let run = lab
        .from_gateway("+14255550199", 5060, 1, &["-sf", &sf_uac])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let calls = lab.wait_recent(2).await.expect("recent");
    for c in &calls {
        let caller = if c.direction == "outbound" {
            "pool"
        } else {
            "gateway"
        };
        assert_eq!(
            (c.status, c.end_reason.clone()),
            (200, format!("BYE from the {caller} side")),
            "{c:?}"
        );
        assert!(!c.streams.is_empty(), "anchored: {c:?}");
        let (from_pool, _) = flow(c, "pool");
        let (from_gw, _) = flow(c, "gateway");
        assert!(
            from_pool > 50 && from_gw > 50,
            "{} call: RTP both ways through the relay: {c:#?}",
            c.direction
        );
    }
}

/// RTCP dead-call detection (the trunk's `rtcp_active_calls`, on by default as in Lync; the
/// timeout shortened to 3 s with `--rtcp-timeout-secs`): a caller of the test's own sends RTP and
/// RTCP through the relay, then only RTP. Its RTCP stopped: Mediator ends the call on both legs
/// with `Reason: SIP;cause=408;text="rtcp timeout"` while RTP still flows. Twice: RTCP on its own
/// port, then on an rtcp-mux call (RFC 5761: `a=rtcp-mux`, RTCP on the RTP port, told from RTP
/// by its packet type — in XDP and in the userspace relay alike).
#[tokio::test(flavor = "multi_thread")]
async fn an_rtcp_timeout_ends_a_call_whose_rtcp_stopped() {
    if !privileged("an_rtcp_timeout_ends_a_call_whose_rtcp_stopped") {
        return;
    }
    let lab = CallLab::build("rtcpto", &["30000-30999"], &["--rtcp-timeout-secs", "3"])
        .await
        .expect("call lab");
    let gw = uas(&lab, 5060, "uas");
    for (n, mux) in [(1usize, false), (2, true)] {
        let pool_ns = lab.lab.pool.name.clone();
        let call_id = format!("rtcp-call-{n}");
        let (seen, took) = tokio::task::spawn_blocking(move || {
        in_netns(&pool_ns, move || {
            let sip = std::net::UdpSocket::bind(format!("{POOL_PEER}:0")).expect("bind");
            sip.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            let rtp = std::net::UdpSocket::bind(format!("{POOL_PEER}:0")).expect("rtp");
            let port = sip.local_addr().expect("addr").port();
            let media = rtp.local_addr().expect("addr").port();
            // RTCP from the next port, as the SDP says (no a=rtcp) — or, muxed, from the RTP one.
            let rtcp = if mux {
                rtp.try_clone().expect("the RTP socket")
            } else {
                std::net::UdpSocket::bind(format!("{POOL_PEER}:{}", media + 1))
                    .expect("rtcp port next to the RTP one")
            };
            let to = format!("{POOL_RELAY}:5060");
            let mux_line = if mux { "a=rtcp-mux\r\n" } else { "" };
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 {POOL_PEER}\r\ns=-\r\nc=IN IP4 {POOL_PEER}\r\nt=0 0\r\nm=audio {media} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n{mux_line}"
            );
            let invite = format!(
                "INVITE sip:+14255550100@{POOL_RELAY}:5060 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {POOL_PEER}:{port};branch=z9hG4bK-rtcp1-{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:+14255551000@{POOL_PEER}>;tag=r1\r\n\
                 To: <sip:+14255550100@{POOL_RELAY}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
                 Contact: <sip:fe@{POOL_PEER}:{port}>\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            );
            sip.send_to(invite.as_bytes(), &to).expect("send");
            let mut buf = [0u8; 8192];
            let start = std::time::Instant::now();
            let mut ok = None;
            while ok.is_none() && start.elapsed() < Duration::from_secs(10) {
                if let Ok(n) = sip.recv(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).to_string();
                    if m.starts_with("SIP/2.0 200") {
                        ok = Some(m);
                    }
                }
            }
            let ok = ok.expect("a 200");
            let header = |name: &str| {
                ok.lines()
                    .find(|l| l.to_ascii_lowercase().starts_with(name))
                    .map(|l| l[name.len()..].trim().to_string())
                    .expect("header")
            };
            let to_hdr = header("to:");
            let relay_port: u16 = ok
                .lines()
                .find_map(|l| l.strip_prefix("m=audio "))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .expect("the relay's port in the 200");
            let a_rtcp: Option<u16> = ok
                .lines()
                .find_map(|l| l.strip_prefix("a=rtcp:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok());
            let relay_rtcp = if mux {
                // The gateway (SIPp) did not answer a=rtcp-mux; the session is muxed anyway, so
                // the caller is told its RTCP goes to the RTP port.
                let at = a_rtcp.unwrap_or(relay_port);
                assert_eq!(at, relay_port, "RTCP on the RTP port:\n{ok}");
                at
            } else {
                a_rtcp.unwrap_or(relay_port + 1)
            };
            let ack = format!(
                "ACK sip:mediator@{POOL_RELAY}:5060 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {POOL_PEER}:{port};branch=z9hG4bK-rtcp2-{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:+14255551000@{POOL_PEER}>;tag=r1\r\n\
                 To: {to_hdr}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            );
            sip.send_to(ack.as_bytes(), &to).expect("ack");
            let rtp_to = format!("{POOL_RELAY}:{relay_port}");
            let rtcp_to = format!("{POOL_RELAY}:{relay_rtcp}");
            let mut packet = vec![0x80u8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            packet.extend_from_slice(&[0xd5; 160]);
            // A receiver report: V=2, PT=201, length 1, SSRC.
            let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 1];
            let mut seen = Vec::new();
            let mut bye_at = None;
            let started = std::time::Instant::now();
            for i in 0u32..(20 * 50) {
                if bye_at.is_some() {
                    break;
                }
                packet[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                packet[4..8].copy_from_slice(&(i * 160).to_be_bytes());
                let _ = rtp.send_to(&packet, &rtp_to);
                // About 50 packets a second (each turn waits up to 20 ms for SIP); RTCP every
                // half second for the first two seconds only.
                if i < 100 && i % 25 == 0 {
                    let _ = rtcp.send_to(&rr, &rtcp_to);
                }
                if let Ok(n) = sip.recv(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).to_string();
                    if m.starts_with("BYE ") {
                        bye_at = Some(started.elapsed());
                        let via = m
                            .lines()
                            .filter(|l| {
                                let l = l.to_ascii_lowercase();
                                ["via:", "from:", "to:", "call-id:", "cseq:"]
                                    .iter()
                                    .any(|h| l.starts_with(h))
                            })
                            .collect::<Vec<_>>()
                            .join("\r\n");
                        let reply = format!("SIP/2.0 200 OK\r\n{via}\r\nContent-Length: 0\r\n\r\n");
                        sip.send_to(reply.as_bytes(), &to).expect("200 to the BYE");
                    }
                    seen.push(m);
                }
            }
            (seen, bye_at)
        })
    })
    .await
    .expect("caller");
        let bye = seen
            .iter()
            .find(|m| m.starts_with("BYE "))
            .unwrap_or_else(|| panic!("no BYE: {seen:?}\n{}", lab.log()));
        assert!(
            bye.contains("Reason: SIP;cause=408;text=\"rtcp timeout\""),
            "{bye}"
        );
        let took = took.expect("when");
        assert!(
            took > Duration::from_secs(3) && took < Duration::from_secs(15),
            "about 3 s after the last RTCP (at 1.5 s), with RTP still flowing: {took:?}"
        );
        let recent = lab.wait_recent(n).await.expect("recent");
        let c = recent
            .iter()
            .find(|c| c.legs.iter().any(|l| l.sip_call_id == call_id_of(n)))
            .unwrap_or_else(|| panic!("call {n} in {recent:?}"));
        assert_eq!(
            (c.status, c.end_reason.as_str()),
            (200, "rtcp timeout"),
            "{c:?}"
        );
        let msgs = gw.messages();
        assert_eq!(
            msgs.matches("Reason: SIP;cause=408;text=\"rtcp timeout\"")
                .count(),
            n,
            "the gateway got its BYE with the reason:\n{msgs}"
        );
    }
}

fn call_id_of(n: usize) -> String {
    format!("rtcp-call-{n}")
}

/// A Record-Routing proxy on the pool side: SIPp as the Front End answers a call from the
/// gateway with the proxy's Record-Route and a Contact where nothing listens; a second SIPp as
/// the proxy must get the dialog's ACK and the BYE (when the gateway hangs up), each with its
/// Route and the Contact as Request-URI (checked by its scenario).
#[tokio::test(flavor = "multi_thread")]
async fn a_record_routing_proxy_on_the_pool_side_gets_the_dialog_s_requests() {
    if !privileged("a_record_routing_proxy_on_the_pool_side_gets_the_dialog_s_requests") {
        return;
    }
    let lab = CallLab::new("rroute").await.expect("call lab");
    let fe_sf = scenario("uas_record_route");
    let proxy_sf = scenario("proxy_route");
    let _fe = Uas::start(&lab.lab.pool.name, POOL_PEER, 5060, &["-sf", &fe_sf]).expect("fe");
    let proxy =
        Uas::start(&lab.lab.pool.name, POOL_PEER, 5082, &["-sf", &proxy_sf]).expect("proxy");
    let run = lab.from_gateway("+14255550199", 5060, 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(
        (c.status, c.end_reason.as_str()),
        (200, "BYE from the gateway side"),
        "{c:?}"
    );
    let seen = proxy.messages();
    assert!(
        seen.contains("ACK sip:fe@198.18.1.2:5999")
            && seen.contains("BYE sip:fe@198.18.1.2:5999")
            && seen.contains("SIP/2.0 200 OK"),
        "the proxy got the ACK and the BYE and answered:\n{seen}"
    );
    assert!(!seen.contains("Aborting"), "{seen}");
}

/// A forked INVITE (SIPp as a forking gateway, `max_early_dialogs` at its default of 20): two
/// early dialogs each send a 183 with SDP, and each reaches the caller in an early dialog of its
/// own with early media of its own — the test plays both forks (7001, 7002) and the caller
/// (7000): each fork's packets, sent to the one gateway-side port the INVITE offered, reach the
/// caller from that early dialog's own port, and the caller's reach each fork. The second
/// answers and wins: its fork inherits the port (the first's media is dropped there from then
/// on) and goes back to XDP; the first answers too and gets an ACK and a BYE in its own dialog;
/// the caller's BYE ends the second (both scenarios check the To tags).
#[tokio::test(flavor = "multi_thread")]
async fn a_forked_invite_with_two_early_dialogs_and_media_on_both() {
    if !privileged("a_forked_invite_with_two_early_dialogs_and_media_on_both") {
        return;
    }
    let mut lab = CallLab::new("fork").await.expect("call lab");
    let gw = uas(&lab, 5060, "uas_fork");
    let sf = scenario("uac_fork");
    let caller = Uac::start(
        &lab.lab.pool.name,
        POOL_PEER,
        &format!("{POOL_RELAY}:5060"),
        1,
        1,
        Duration::from_secs(40),
        &["-s", "+14255550100", "-sf", &sf],
    )
    .expect("uac");
    let sock =
        |ns: &str, ip: &str, port: u16| udp_in(ns, format!("{ip}:{port}").parse().expect("addr"));
    let me = sock(&lab.lab.pool.name, POOL_PEER, 7000);
    let fork1 = sock(&lab.lab.gw.name, GW_PEER, 7001);
    let fork2 = sock(&lab.lab.gw.name, GW_PEER, 7002);
    let mut dp = lab.dataplane.client().await.expect("dataplane");
    let sessions = |list: &[mediator_proto::dataplane::v1::Session]| {
        let fork = list.iter().find(|s| !s.fork_of.is_empty()).cloned();
        let parent = fork
            .as_ref()
            .and_then(|f| list.iter().find(|s| s.session_id == f.fork_of).cloned());
        parent.zip(fork)
    };
    let port = |l: &Option<mediator_proto::dataplane::v1::Leg>| {
        l.as_ref().expect("leg").local_rtp_port as u16
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    let (parent, fork) = loop {
        let list = dp
            .list_sessions(mediator_proto::dataplane::v1::ListSessionsRequest::default())
            .await
            .expect("list")
            .into_inner()
            .sessions;
        if let Some(pf) = sessions(&list) {
            break pf;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fork session: {list:?}\n{}",
            lab.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (p_pool, gw_port, f_pool) = (port(&parent.pool), port(&parent.gateway), port(&fork.pool));
    assert_eq!(
        port(&fork.gateway),
        gw_port,
        "one gateway-side port for both"
    );
    assert_ne!(p_pool, f_pool, "a caller-facing port per early dialog");
    let at =
        |ip: &str, p: u16| -> std::net::SocketAddr { format!("{ip}:{p}").parse().expect("addr") };
    // One packet through, its source as the receiver sees it (a few tries: UDP).
    let through =
        |from: &std::net::UdpSocket, to: std::net::SocketAddr, rx: &std::net::UdpSocket| {
            let mut buf = [0u8; 2048];
            for seq in 0..20u16 {
                let pkt = rtp_packet(seq, u32::from(seq) * 160, 0x5eed, 160);
                from.send_to(&pkt, to).expect("send");
                if let Ok((n, src)) = rx.recv_from(&mut buf)
                    && buf[..n] == pkt[..]
                {
                    return Some(src);
                }
            }
            None
        };
    let (g, p0, p1) = (
        at(GW_RELAY, gw_port),
        at(POOL_RELAY, p_pool),
        at(POOL_RELAY, f_pool),
    );
    let early = tokio::task::spawn_blocking(move || {
        let r = [
            through(&fork1, g, &me),
            through(&fork2, g, &me),
            through(&me, p0, &fork1),
            through(&me, p1, &fork2),
        ];
        (r, me, fork1, fork2)
    })
    .await
    .expect("early media");
    let (r, me, fork1, fork2) = early;
    assert_eq!(
        r,
        [Some(p0), Some(p1), Some(g), Some(g)],
        "each early dialog's media both ways on its own caller-facing port"
    );
    // Fork 2 answers: its fork inherits the port, the parent goes, and it is offloaded.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = dp
            .get_session(mediator_proto::dataplane::v1::GetSessionRequest {
                session_id: fork.session_id.clone(),
            })
            .await
            .expect("the fork lives on")
            .into_inner()
            .session
            .expect("session");
        if s.fork_of.is_empty()
            && s.path == mediator_proto::dataplane::v1::ForwardingPath::Xdp as i32
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fork did not inherit the port and go to XDP: {s:?}\n{}",
            lab.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = tokio::task::spawn_blocking(move || {
        [
            through(&fork2, g, &me),
            through(&me, p1, &fork2),
            through(&fork1, g, &me),
        ]
    })
    .await
    .expect("media after the answer");
    assert_eq!(
        after,
        [Some(p1), Some(g), None],
        "the answering dialog's media through XDP; the other's is dropped"
    );
    let run = tokio::task::spawn_blocking(move || caller.wait())
        .await
        .expect("join")
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(
        (c.status, c.end_reason.as_str()),
        (200, "BYE from the pool side"),
        "{c:?}"
    );
    let seen = gw.messages();
    assert!(
        seen.matches("BYE sip:").count() == 2 && !seen.contains("Aborting"),
        "the first dialog's BYE and the caller's:\n{seen}"
    );
    assert!(lab.active().await.expect("active").is_empty());
}

/// The final statuses RFC 4475's `name` must draw over UDP and over TCP, from the table the
/// engine test reads too (control/b2bua/tests/rfc4475/EXPECTED).
fn torture_cases() -> Vec<(String, Vec<u16>, Vec<u16>)> {
    let text = std::fs::read_to_string(torture_dir().join("EXPECTED")).expect("EXPECTED");
    let statuses = |s: &str| -> Vec<u16> {
        match s.trim() {
            "-" => Vec::new(),
            s => s.split(',').map(|n| n.parse().expect("a status")).collect(),
        }
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '|').collect();
            (f[0].trim().to_string(), statuses(f[1]), statuses(f[2]))
        })
        .collect()
}

fn torture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../control/b2bua/tests/rfc4475")
}

/// RFC 4475's `name` with `suffix` added to its top Via's branch, or to its Call-ID where the top
/// Via has no branch (RFC 2543 matching: Call-ID, From tag, CSeq and top Via). Several of its
/// messages share a transaction (novelsc and unkscm have the same branch, sent-by and method;
/// longreq's top Via has no branch), and a daemon keeps a transaction for 32 s (RFC 3261 Timer
/// H/J): sent one after the other to one daemon, the second would rightly be a retransmission
/// of the first, answered where the first came from. The engine test sends them byte for byte,
/// each to an engine of its own.
fn torture_message(name: &str, suffix: &str) -> Vec<u8> {
    let bytes = std::fs::read(torture_dir().join(format!("{name}.dat"))).expect("dat");
    let branch = header_field(&bytes, &["via", "v"])
        .and_then(|(start, end)| Some((start + find(&bytes[start..end], b"branch=")? + 7, end)));
    let at = match branch {
        Some((value, end)) => bytes[value..end]
            .iter()
            .position(|b| matches!(b, b';' | b',' | b'\r' | b'\n' | b' '))
            .map_or(end, |e| value + e),
        _ => match header_field(&bytes, &["call-id", "i"]) {
            Some((start, end)) => {
                start
                    + bytes[start..end]
                        .iter()
                        .rposition(|b| !b.is_ascii_whitespace())
                        .map_or(0, |p| p + 1)
            }
            None => return bytes, // no Call-ID: a message refused before any transaction
        },
    };
    [&bytes[..at], suffix.as_bytes(), &bytes[at..]].concat()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The byte range of the first header field with one of `names` (case-insensitive, continuation
/// lines included) in a raw message.
fn header_field(bytes: &[u8], names: &[&str]) -> Option<(usize, usize)> {
    let head = find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let line_end = |from: usize| find(&bytes[from..head], b"\r\n").map_or(head, |e| from + e);
    let mut start = line_end(0) + 2;
    while start < head {
        let mut end = line_end(start);
        while end + 2 < head && matches!(bytes[end + 2], b' ' | b'\t') {
            end = line_end(end + 2);
        }
        let name = bytes[start..end]
            .split(|&b| b == b':')
            .next()
            .unwrap_or_default();
        let name = String::from_utf8_lossy(name);
        if names.iter().any(|n| name.trim().eq_ignore_ascii_case(n)) {
            return Some((start, end));
        }
        start = end + 2;
    }
    None
}

/// What a peer receives after sending one message: `recv` (a read with a short timeout) is
/// called until `want` final responses came and 300 ms passed with nothing more, or it reports
/// the connection closed (`None`); 3 s at most.
fn gather(want: usize, mut recv: impl FnMut() -> Option<Vec<Vec<u8>>>) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let start = std::time::Instant::now();
    let mut quiet = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3)
        && (finals(&got).len() < want || quiet.elapsed() < Duration::from_millis(300))
    {
        let Some(messages) = recv() else { break };
        if !messages.is_empty() {
            got.extend(messages);
            quiet = std::time::Instant::now();
        }
    }
    got
}

/// The final statuses in what a peer received (100 Trying left out).
fn finals(received: &[Vec<u8>]) -> Vec<u16> {
    received
        .iter()
        .filter_map(|m| std::str::from_utf8(m.get(8..11)?).ok()?.parse().ok())
        .filter(|&s| s != 100)
        .collect()
}

/// RFC 4475's 49 torture messages sent to the daemon over its own sockets from the Front End's
/// address: each as one UDP datagram, then (the pool's next hop set to TCP) each on a TCP
/// connection of its own — each with a branch of its own (see [`torture_message`]). Every message draws exactly the final responses the engine test
/// checks — accepted and processed, or the right 4xx/505, or dropped — and the daemon goes on.
#[tokio::test(flavor = "multi_thread")]
async fn rfc_4475_torture_messages_over_udp_and_tcp() {
    if !privileged("rfc_4475_torture_messages_over_udp_and_tcp") {
        return;
    }
    let lab = CallLab::new("torture").await.expect("call lab");
    let cases = torture_cases();
    assert_eq!(cases.len(), 49);
    let ns = lab.lab.pool.name.clone();
    let udp_cases = cases.clone();
    let wrong_udp = tokio::task::spawn_blocking(move || {
        in_netns(&ns, move || {
            let mut wrong = Vec::new();
            for (name, want, _) in udp_cases {
                let bytes = torture_message(&name, &format!("-udp-{name}"));
                let s = std::net::UdpSocket::bind(format!("{POOL_PEER}:0")).expect("bind");
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("timeout");
                s.send_to(&bytes, format!("{POOL_RELAY}:5060"))
                    .expect("send");
                let mut buf = vec![0u8; 65536];
                let got = gather(want.len(), || {
                    Some(
                        s.recv(&mut buf)
                            .map(|n| vec![buf[..n].to_vec()])
                            .unwrap_or_default(),
                    )
                });
                if finals(&got) != want {
                    wrong.push(format!(
                        "{name} over udp: {:?}, want {want:?}",
                        finals(&got)
                    ));
                }
            }
            wrong
        })
    })
    .await
    .expect("udp phase");
    let (rc, out) = lab
        .ctl(&[
            "pool",
            "set",
            "pool.lab.mediator",
            "--next-hop",
            &format!("{POOL_PEER}:5060"),
            "--next-hop-transport",
            "tcp",
        ])
        .expect("mediatorctl");
    assert_eq!(rc, 0, "{out}");
    let ns = lab.lab.pool.name.clone();
    let wrong_tcp = tokio::task::spawn_blocking(move || {
        in_netns(&ns, move || {
            let to: std::net::SocketAddr = format!("{POOL_RELAY}:5060").parse().expect("addr");
            let connect = || -> std::io::Result<std::net::TcpStream> {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                s.bind(
                    &format!("{POOL_PEER}:0")
                        .parse::<std::net::SocketAddr>()
                        .expect("a")
                        .into(),
                )?;
                s.connect_timeout(&to.into(), Duration::from_secs(1))?;
                Ok(s.into())
            };
            // The TCP listener follows the topology change.
            let start = std::time::Instant::now();
            while connect().is_err() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut wrong = Vec::new();
            for (name, _, want) in cases {
                use std::io::{Read, Write};
                let bytes = torture_message(&name, &format!("-tcp-{name}"));
                let mut s = connect().expect("connect over TCP");
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("timeout");
                s.write_all(&bytes).expect("write");
                let mut framer = mediator_sip::framing::Framer::default();
                let mut buf = vec![0u8; 65536];
                let got = gather(want.len(), || match s.read(&mut buf) {
                    Ok(0) => None, // Mediator closed the connection
                    Ok(n) => {
                        framer.push(&buf[..n]);
                        let mut frames = Vec::new();
                        while let Ok(Some(mediator_sip::framing::Frame::Message(m))) =
                            framer.next_frame()
                        {
                            frames.push(m);
                        }
                        Some(frames)
                    }
                    Err(_) => Some(Vec::new()),
                });
                if finals(&got) != want {
                    let firsts: Vec<String> = got
                        .iter()
                        .map(|m| {
                            let text = String::from_utf8_lossy(m);
                            text.lines().next().unwrap_or_default().to_string()
                        })
                        .collect();
                    wrong.push(format!(
                        "{name} over tcp: {:?}, want {want:?} (received {firsts:?})",
                        finals(&got)
                    ));
                }
            }
            wrong
        })
    })
    .await
    .expect("tcp phase");
    let wrong: Vec<String> = wrong_udp.into_iter().chain(wrong_tcp).collect();
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), lab.log());
    // The daemon is still there and still answers.
    assert!(
        lab.active()
            .await
            .expect("control API after the torture")
            .is_empty()
    );
}

/// RFC 3261 §18.1.1 with the trunk's `large_requests_over_tcp` on: SIPp calls from the pool with
/// a large offer, and the INVITE Mediator sends the lab's UDP gateway, over 1300 bytes, arrives
/// over TCP to the gateway's address and port (its Via saying TCP) from Mediator's address; the
/// gateway — the test's own, on UDP and TCP 5060 — answers on that connection, and the ACK and
/// BYE come over UDP as the dialog's Contact says. Before the setting, the same call's INVITE
/// comes over UDP.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_invite_goes_over_tcp_where_the_trunk_says_so() {
    if !privileged("a_large_invite_goes_over_tcp_where_the_trunk_says_so") {
        return;
    }
    let lab = CallLab::new("large").await.expect("call lab");
    let gateway = |lab: &CallLab| {
        let ns = lab.lab.gw.name.clone();
        std::thread::spawn(move || in_netns(&ns, answer_on_udp_and_tcp))
    };
    let uac = scenario("uac_large");
    for over_tcp in [false, true] {
        if over_tcp {
            let (rc, out) = lab
                .ctl(&[
                    "trunk-config",
                    "set",
                    "global",
                    "--large-requests-over-tcp",
                    "true",
                ])
                .expect("mediatorctl");
            assert_eq!(rc, 0, "{out}");
        }
        let gw = gateway(&lab);
        let run = lab
            .from_pool("+14255550100", 1, &["-sf", &uac])
            .expect("uac");
        let seen = gw.join().expect("gateway thread");
        assert_eq!(
            (run.successful, run.failed),
            (1, 0),
            "{run:?}\n{seen:?}\n{}",
            lab.log()
        );
        let want = if over_tcp { "tcp" } else { "udp" };
        assert_eq!(seen.invite_over, want, "{seen:?}");
        assert!(seen.invite_len > 1300, "{seen:?}");
        assert!(
            seen.via
                .starts_with(&format!("SIP/2.0/{} ", want.to_uppercase())),
            "{seen:?}"
        );
        assert_eq!(seen.in_dialog_over_udp, ["ACK", "BYE"], "{seen:?}");
        let said = if over_tcp {
            "goes over TCP (large_requests_over_tcp)"
        } else {
            "a request over 1300 bytes goes over UDP"
        };
        assert!(lab.log().contains(said), "the log says: {said}");
    }
}

/// What the test's gateway saw of one call.
#[derive(Debug, Default)]
struct Seen {
    invite_over: &'static str,
    invite_len: usize,
    via: String,
    in_dialog_over_udp: Vec<String>,
}

/// The lab's gateway for one call, on UDP and TCP 5060: answers the INVITE (whichever way it
/// came) with 200 and an SDP, then takes the ACK and answers the BYE over UDP; 15 s at most.
fn answer_on_udp_and_tcp() -> Seen {
    use mediator_sip::message::{Message, build_response};
    use std::io::{Read, Write};
    let udp = std::net::UdpSocket::bind(format!("{GW_PEER}:5060")).expect("udp 5060");
    udp.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let tcp = std::net::TcpListener::bind(format!("{GW_PEER}:5060")).expect("tcp 5060");
    tcp.set_nonblocking(true).expect("nonblocking");
    let sdp = format!(
        "v=0\r\no=gw 1 1 IN IP4 {GW_PEER}\r\ns=-\r\nc=IN IP4 {GW_PEER}\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    );
    let answer = |req: &Message, status: u16, body: Option<&str>| {
        build_response(
            req,
            status,
            "OK",
            "gwlarge",
            &[("Contact", format!("<sip:gw@{GW_PEER}:5060>"))],
            body.map(|b| ("application/sdp", b.as_bytes())),
        )
    };
    let mut seen = Seen::default();
    let mut conn: Option<(std::net::TcpStream, mediator_sip::framing::Framer)> = None;
    let mut buf = vec![0u8; 65536];
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(15) && seen.in_dialog_over_udp.len() < 2 {
        if conn.is_none()
            && let Ok((s, _)) = tcp.accept()
        {
            s.set_nonblocking(false).expect("blocking");
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            conn = Some((s, Default::default()));
        }
        if let Some((s, framer)) = conn.as_mut()
            && let Ok(n) = s.read(&mut buf)
            && n > 0
        {
            framer.push(&buf[..n]);
            while let Ok(Some(mediator_sip::framing::Frame::Message(m))) = framer.next_frame() {
                let Ok(req) = Message::parse(&m) else {
                    continue;
                };
                if req.method() == Some("INVITE") && seen.invite_over.is_empty() {
                    seen.invite_over = "tcp";
                    seen.invite_len = m.len();
                    seen.via = req.header("via").unwrap_or_default();
                    s.write_all(&answer(&req, 200, Some(&sdp)))
                        .expect("200 over TCP");
                }
            }
        }
        if let Ok((n, from)) = udp.recv_from(&mut buf) {
            let Ok(req) = Message::parse(&buf[..n]) else {
                continue;
            };
            match req.method() {
                Some("INVITE") if seen.invite_over.is_empty() => {
                    seen.invite_over = "udp";
                    seen.invite_len = n;
                    seen.via = req.header("via").unwrap_or_default();
                    udp.send_to(&answer(&req, 200, Some(&sdp)), from)
                        .expect("200 over UDP");
                }
                Some("ACK") => seen.in_dialog_over_udp.push("ACK".into()),
                Some("BYE") => {
                    seen.in_dialog_over_udp.push("BYE".into());
                    udp.send_to(&answer(&req, 200, None), from).expect("200");
                }
                _ => {}
            }
        }
    }
    seen
}

/// In-dialog requests through the B2BUA with SIPp on both sides (`uac_indialog.xml`,
/// `uas_indialog.xml`): once answered, the caller sends INFO (DTMF as application/dtmf-relay),
/// UPDATE without a body (a session refresh: answered by Mediator, it never reaches the
/// gateway, whose scenario would not match it), REFER (the trunk's `refer_support` on, as by
/// default) and NOTIFY (Event: refer, a sipfrag body); the gateway's scenario checks each that
/// crosses arrives with its body and headers (Refer-To, Referred-By, Event,
/// Subscription-State), answers it, and its answer reaches the caller (202 for the REFER); then
/// the caller hangs up.
#[tokio::test(flavor = "multi_thread")]
async fn info_update_refer_and_notify_cross_the_b2bua() {
    if !privileged("info_update_refer_and_notify_cross_the_b2bua") {
        return;
    }
    let lab = CallLab::new("indialog").await.expect("call lab");
    let gw = uas(&lab, 5060, "uas_indialog");
    let uac = scenario("uac_indialog");
    let run = lab
        .from_pool("+14255550100", 1, &["-sf", &uac])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}\n{}",
        gw.messages(),
        lab.log()
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(
        (c.status, c.end_reason.as_str()),
        (200, "BYE from the pool side"),
        "{c:?}"
    );
}

/// Sessions on a relay that no call owns are deleted: one left under mediator-control's lease
/// (as a lost answer or a crash leaves it) goes while a call's own sessions stay; after a
/// `kill -9` and a restart, the sessions of the calls the daemon lost go too.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_no_call_owns_are_deleted_and_a_calls_are_kept() {
    use mediator_proto::dataplane::v1 as dp;
    use mediator_tests::fixture::{create, sa, strict};
    if !privileged("sessions_no_call_owns_are_deleted_and_a_calls_are_kept") {
        return;
    }
    let mut lab = CallLab::build("orph", &["30000-30999"], &["--relay-lease-secs", "9"])
        .await
        .expect("call lab");
    let _gw = uas(&lab, 5060, "uas");
    let owner = std::fs::read_to_string(lab.control.data_dir.join("relay-owner"))
        .expect("the daemon's owner name")
        .trim()
        .to_string();
    let mut c = lab.dataplane.client().await.expect("dataplane");
    let list = |c: &mut mediator_tests::daemon::Client| {
        let mut c = c.clone();
        async move {
            c.list_sessions(dp::ListSessionsRequest::default())
                .await
                .expect("list")
                .into_inner()
                .sessions
        }
    };
    let call = |ms: &'static str| {
        let ns = lab.lab.pool.name.clone();
        std::thread::spawn(move || {
            mediator_tests::calls::call_from(
                &ns,
                POOL_PEER,
                &format!("{POOL_RELAY}:5060"),
                "+14255550100",
                1,
                &["-sn", "uac", "-d", ms],
            )
        })
    };

    let caller = call("20000");
    let mut orphan = create("orphan", sa(POOL_PEER, 4990), sa(GW_PEER, 5990), strict());
    orphan.owner = owner.clone();
    orphan.lease_secs = 9;
    c.create_session(orphan).await.expect("an orphan");
    let started = std::time::Instant::now();
    let mut left = Vec::new();
    while started.elapsed() < Duration::from_secs(18) {
        left = list(&mut c).await;
        if !left.iter().any(|s| s.session_id == "orphan") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        left.len() == 1 && left[0].session_id != "orphan" && left[0].owner == owner,
        "the orphan went, the call's session stayed: {:?}\n{}",
        left.iter().map(|s| &s.session_id).collect::<Vec<_>>(),
        lab.log()
    );
    let run = caller.join().expect("uac thread").expect("uac");
    assert_eq!((run.successful, run.failed), (1, 0), "{run:?}");
    assert!(lab.log().contains("deleted a session no call owns"));

    // kill -9 mid-call: the restarted daemon has lost the call (see the README), and deletes
    // its session instead of leaving it until the media timeout.
    let caller = call("12000");
    let started = std::time::Instant::now();
    while list(&mut c).await.is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(list(&mut c).await.len(), 1, "the call's session");
    lab.control.kill9();
    lab.control.restart().expect("restart");
    lab.control.client().await.expect("back");
    let started = std::time::Instant::now();
    while !list(&mut c).await.is_empty() && started.elapsed() < Duration::from_secs(25) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        list(&mut c).await.is_empty(),
        "the lost call's session was deleted:\n{}",
        lab.log()
    );
    let _ = caller.join();
}

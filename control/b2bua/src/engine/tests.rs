//! The engine on virtual time with the lab topology: whole calls as message exchanges, checked
//! message by message.

use super::*;

/// The lab's topology, built in memory (no store), without OPTIONS probing (the call tests
/// check every message sent; `health` turns probing on).
fn topology(_tag: &str) -> Topology {
    let mut t = mediator_topology::testing::lab();
    if let Some(g) = t.configs.get_mut("global") {
        g.value.settings.options_interval_secs = Some(0);
    }
    t
}

fn fe() -> Peer {
    Peer::udp("198.18.1.2:5060", "198.18.1.1:5060")
}

fn gw(port: u16, local: u16) -> Peer {
    Peer::udp(
        &format!("198.18.2.2:{port}"),
        &format!("198.18.2.1:{local}"),
    )
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 198.18.2.2\r\ns=-\r\nc=IN IP4 198.18.2.2\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";

fn invite(dialed: &str, call_id: &str) -> Vec<u8> {
    format!(
        "INVITE sip:{dialed}@198.18.1.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bK-fe-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+14255551000@198.18.1.2>;tag=fe1\r\n\
         To: <sip:{dialed}@198.18.1.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 7 INVITE\r\n\
         Contact: <sip:fe@198.18.1.2:5060>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    )
    .into_bytes()
}

/// A request from the Front End in the dialog of `ok` (our 2xx to it).
fn fe_in_dialog(method: &str, ok: &Message, cseq: u32, branch: &str) -> Vec<u8> {
    let to = ok.header("to").expect("to");
    format!(
        "{method} sip:mediator@198.18.1.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+14255551000@198.18.1.2>;tag=fe1\r\n\
         To: {to}\r\n\
         Call-ID: {}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        ok.summary.call_id
    )
    .into_bytes()
}

/// [`fe_in_dialog`] with a Contact and `sdp` as its body.
fn fe_in_dialog_sdp(method: &str, ok: &Message, cseq: u32, branch: &str, sdp: &str) -> Vec<u8> {
    String::from_utf8(fe_in_dialog(method, ok, cseq, branch))
        .expect("utf8")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Contact: <sip:fe@198.18.1.2:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
        )
        .into_bytes()
}

struct Run {
    e: Engine,
    t: Topology,
    now: Now,
}

impl Run {
    fn new(tag: &str) -> Run {
        Run {
            e: Engine::new(Config::default()),
            t: topology(tag),
            now: Now {
                mono: Instant::now(),
                unix_ms: 1_700_000_000_000,
            },
        }
    }

    fn msg(&mut self, bytes: &[u8], from: Peer) -> Vec<Action> {
        self.e.on_message(&self.t, bytes, from, self.now)
    }

    fn created(&mut self, call: CallId) -> Vec<Action> {
        self.answered(call, "s", 30000, 30002)
    }

    /// The relays' answer: one session `id` at `pool` and `gateway` (RTCP on the next ports).
    fn answered(&mut self, call: CallId, id: &str, pool: u16, gateway: u16) -> Vec<Action> {
        let anchor = |addr: &str, rtp_port: u16| Anchor {
            addr: addr.parse().expect("ip"),
            rtp_port,
            rtcp_port: rtp_port + 1,
        };
        let session = MediaAnswer {
            session_id: id.into(),
            pool: Some(anchor("198.18.1.1", pool)),
            gateway: Some(anchor("198.18.2.1", gateway)),
        };
        self.e.on_media_created(
            call,
            "pool.lab.mediator",
            Ok(vec![("relay".into(), session)]),
            self.now,
        )
    }

    /// The relays' answer for a second stream (a video session "v" at 30004–30007).
    fn created_video(&mut self, call: CallId) -> Vec<Action> {
        self.answered(call, "v", 30004, 30006)
    }

    fn advance(&mut self, d: Duration) -> Vec<Action> {
        self.now += d;
        self.e.on_timer(&self.t, self.now)
    }
}

/// The messages sent to `to`, parsed.
fn sent_to(actions: &[Action], to: Peer) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to: t, bytes } if *t == to => {
                Some(Message::parse(bytes).expect("what Mediator sends parses"))
            }
            _ => None,
        })
        .collect()
}

fn statuses(ms: &[Message]) -> Vec<u16> {
    ms.iter().filter_map(|m| m.status()).collect()
}

fn requests(ms: &[Message]) -> Vec<&Message> {
    ms.iter().filter(|m| m.is_request()).collect()
}

fn media_call(actions: &[Action]) -> CallId {
    actions
        .iter()
        .find_map(|a| match a {
            Action::CreateMedia { call, requests, .. } => {
                assert_eq!(
                    requests[0].pool.rtp,
                    Some("198.18.1.2:6000".parse().expect("addr")),
                    "the session is made with the caller's media address"
                );
                Some(*call)
            }
            _ => None,
        })
        .expect("a dataplane session is created before the INVITE goes on")
}

fn ended(actions: &[Action]) -> Option<&CallInfo> {
    actions.iter().find_map(|a| match a {
        Action::Ended { record, .. } => Some(record.as_ref()),
        _ => None,
    })
}

fn respond(req: &Message, status: u16, tag: &str, sdp: Option<&str>) -> Vec<u8> {
    build_response(
        req,
        status,
        reason_phrase(status),
        tag,
        &[("Contact", "<sip:gw@198.18.2.2:5060>".into())],
        sdp.map(|s| ("application/sdp", s.as_bytes())),
    )
}

#[test]
fn an_outbound_call_is_routed_translated_anchored_answered_and_hung_up() {
    let mut r = Run::new("basic");
    let a = r.msg(&invite("+14255550100", "c1"), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), vec![100]);
    let id = media_call(&a);
    let a = r.created(id);
    let out = sent_to(&a, gw(5060, 5060));
    let inv = requests(&out)[0].clone();
    assert_eq!(
        inv.request_uri(),
        Some("sip:14255550100@198.18.2.2:5060;user=phone"),
        "the trunk's called-number rule applied"
    );
    let body = String::from_utf8_lossy(inv.body()).to_string();
    assert!(
        body.contains("c=IN IP4 198.18.2.1") && body.contains("m=audio 30002 RTP/AVP 8"),
        "the gateway is offered the relay's gateway side:\n{body}"
    );
    assert_ne!(inv.summary.call_id, "c1", "a B2BUA's own dialog");

    let a = r.msg(&respond(&inv, 180, "gw1", None), gw(5060, 5060));
    assert_eq!(statuses(&sent_to(&a, fe())), vec![180]);
    let a = r.msg(&respond(&inv, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::UpdateMedia { request, .. }
            if request.gateway.and_then(|g| g.rtp).map(|e| e.port()) == Some(7000))),
        "the session learns the gateway's media address"
    );
    let to_fe = sent_to(&a, fe());
    let ok = to_fe[0].clone();
    assert_eq!(ok.status(), Some(200));
    let body = String::from_utf8_lossy(ok.body()).to_string();
    assert!(
        body.contains("c=IN IP4 198.18.1.1") && body.contains("m=audio 30000 "),
        "the caller is answered with the relay's pool side:\n{body}"
    );
    assert!(
        sent_to(&a, gw(5060, 5060)).is_empty(),
        "B is ACKed when A ACKs"
    );
    // No ACK yet: the 2xx is retransmitted (RFC 3261 13.3.1.4).
    let a = r.advance(Duration::from_millis(600));
    assert_eq!(statuses(&sent_to(&a, fe())), vec![200]);
    let a = r.msg(&fe_in_dialog("ACK", &ok, 7, "ack1"), fe());
    let acks = sent_to(&a, gw(5060, 5060));
    assert_eq!(acks[0].method(), Some("ACK"));
    assert_eq!(acks[0].summary.cseq, inv.summary.cseq);
    let a = r.advance(Duration::from_secs(2));
    assert!(
        sent_to(&a, fe()).is_empty(),
        "no 2xx retransmission after the ACK"
    );
    assert_eq!(r.e.calls(r.now)[0].state, "confirmed");

    // BYE from the gateway: 200 to it, BYE to the caller, the call's record.
    let bye = format!(
        "BYE sip:mediator@198.18.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.2:5060;branch=z9hG4bK-gwbye\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        respond_to_header(&inv),
        inv.header("from").expect("from"),
        inv.summary.call_id
    );
    let a = r.msg(bye.as_bytes(), gw(5060, 5060));
    assert_eq!(statuses(&sent_to(&a, gw(5060, 5060))), vec![200]);
    assert_eq!(requests(&sent_to(&a, fe()))[0].method(), Some("BYE"));
    let rec = ended(&a).expect("a record");
    assert_eq!(
        (rec.status, rec.end_reason.as_str(), rec.trunk.as_str()),
        (200, "BYE from the gateway side", "198.18.2.2")
    );
    assert_eq!(rec.called, "14255550100");
    assert!(r.e.calls(r.now).is_empty());
}

/// The To of the gateway's responses (with its tag), as the From of its requests.
fn respond_to_header(inv: &Message) -> String {
    format!("{};tag=gw1", inv.header("to").expect("to"))
}

#[test]
fn a_503_fails_over_to_the_next_trunk_and_a_486_ends_the_call() {
    let mut r = Run::new("failover");
    let a = r.msg(&invite("+15555550100", "c2"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let first = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    let a = r.msg(&respond(&first, 503, "x1", None), gw(5062, 5062));
    let acks = sent_to(&a, gw(5062, 5062));
    assert_eq!(acks[0].method(), Some("ACK"), "the 503 is acknowledged");
    let second = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert_eq!(second.method(), Some("INVITE"), "the next trunk is tried");
    assert!(
        statuses(&sent_to(&a, fe())).is_empty(),
        "the caller sees nothing yet"
    );
    let a = r.msg(&respond(&second, 486, "x2", None), gw(5060, 5060));
    assert_eq!(
        statuses(&sent_to(&a, fe())),
        vec![486],
        "a 4xx is not failed over"
    );
    let rec = ended(&a).expect("record");
    assert_eq!(
        rec.attempts,
        vec![
            ("gw-5062".to_string(), 503),
            ("198.18.2.2".to_string(), 486)
        ]
    );
}

#[test]
fn fast_failover_tries_the_next_trunk_when_no_provisional_comes_in_time() {
    let mut r = Run::new("fast");
    let a = r.msg(&invite("+16665550100", "c3"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    assert_eq!(requests(&sent_to(&a, gw(5064, 5064))).len(), 1);
    let a = r.advance(Duration::from_millis(1900));
    assert!(
        sent_to(&a, gw(5060, 5060)).is_empty(),
        "not before the 2 s timeout"
    );
    let a = r.advance(Duration::from_millis(200));
    let next = requests(&sent_to(&a, gw(5060, 5060)))
        .first()
        .map(|m| m.method().map(str::to_string));
    assert_eq!(next, Some(Some("INVITE".into())), "failed over after 2 s");
}

#[test]
fn a_call_that_rings_past_the_ring_limit_is_cancelled_and_answered_408() {
    let mut r = Run::new("ring");
    let a = r.msg(&invite("+14255550100", "c3r"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    r.msg(&respond(&inv, 180, "gw1", None), gw(5060, 5060));
    let a = r.advance(Duration::from_secs(239));
    assert!(sent_to(&a, gw(5060, 5060)).is_empty(), "rings on");
    // Every provisional restarts Timer C.
    r.msg(&respond(&inv, 183, "gw1", None), gw(5060, 5060));
    let a = r.advance(Duration::from_secs(239));
    assert!(
        requests(&sent_to(&a, gw(5060, 5060))).is_empty(),
        "240 s from the last provisional, not from the first"
    );
    let a = r.advance(Duration::from_secs(2));
    let to_gw = sent_to(&a, gw(5060, 5060));
    let c = requests(&to_gw);
    assert_eq!(c.len(), 1, "{to_gw:?}");
    assert_eq!(c[0].method(), Some("CANCEL"));
    assert_eq!(c[0].summary.branch, inv.summary.branch);
    assert_eq!(
        statuses(&sent_to(&a, fe())),
        vec![408],
        "the caller's answer"
    );
    let rec = ended(&a).expect("record");
    assert_eq!(rec.status, 408);
    assert_eq!(rec.attempts, vec![("198.18.2.2".to_string(), 408)]);
}

#[test]
fn the_ring_limit_is_a_trunk_setting_and_fails_over_like_a_timeout() {
    let mut r = Run::new("ring2");
    r.t.configs
        .get_mut("global")
        .expect("global")
        .value
        .settings
        .ring_limit_secs = Some(30);
    let a = r.msg(&invite("+16665550100", "c3s"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5064, 5064)))[0].clone();
    r.msg(&respond(&inv, 180, "gw1", None), gw(5064, 5064));
    let a = r.advance(Duration::from_secs(29));
    assert!(sent_to(&a, gw(5060, 5060)).is_empty());
    let a = r.advance(Duration::from_secs(2));
    assert_eq!(
        requests(&sent_to(&a, gw(5064, 5064)))
            .iter()
            .map(|m| m.method())
            .collect::<Vec<_>>(),
        [Some("CANCEL")]
    );
    let next = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert_eq!(next.method(), Some("INVITE"), "the next trunk");
    assert!(
        statuses(&sent_to(&a, fe())).is_empty(),
        "the caller waits on"
    );
}

/// An OPTIONS from `peer` outside any dialog.
fn options(call_id: &str, peer: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:mediator@198.18.1.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {peer};branch=z9hG4bK-opt-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{peer}>;tag=o1\r\n\
         To: <sip:mediator@198.18.1.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The 503 among `ms`, with its Retry-After and Warning.
fn refusal(ms: &[Message]) -> (Option<String>, String) {
    let m = ms
        .iter()
        .find(|m| m.status() == Some(503))
        .unwrap_or_else(|| panic!("a 503 among {:?}", statuses(ms)));
    (
        m.header("retry-after"),
        m.header("warning").unwrap_or_default(),
    )
}

/// A draining pool refuses new calls and answers OPTIONS 503 with Retry-After (RFC 3261
/// §11.2: as an INVITE would be), while a call in progress goes on to its BYE; undrained, it
/// takes calls again; a graceful stop refuses on every pool.
#[test]
fn a_draining_pool_refuses_new_calls_and_keeps_the_calls_in_progress() {
    let mut r = Run::new("drain");
    let a = r.msg(&invite("+14255550100", "d1"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&respond(&inv, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    let ok = sent_to(&a, fe())[0].clone();
    r.msg(&fe_in_dialog("ACK", &ok, 7, "ack-d1"), fe());
    let pool = r.e.calls(r.now)[0].pool.clone();
    assert_eq!(r.e.calls_by_pool(&r.t), vec![(pool.clone(), 1, false)]);

    if let Some(p) = r.t.pools.get_mut(&pool) {
        p.value.draining = true;
    }
    let a = r.msg(&invite("+14255550100", "d2"), fe());
    let (retry, warning) = refusal(&sent_to(&a, fe()));
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(warning.contains("draining"), "{warning}");
    assert!(
        !a.iter().any(|x| matches!(x, Action::CreateMedia { .. })),
        "nothing is created for a refused call"
    );
    let a = r.msg(&options("o1", "198.18.1.2:5060"), fe());
    assert_eq!(refusal(&sent_to(&a, fe())).0.as_deref(), Some("5"));
    let a = r.msg(&options("o2", "198.18.2.2:5060"), gw(5060, 5060));
    // (No Warning here: an error reply never outgrows a request this small.)
    assert_eq!(
        refusal(&sent_to(&a, gw(5060, 5060))).0.as_deref(),
        Some("5"),
        "a gateway of the pool's trunks is told the same"
    );
    assert_eq!(r.e.calls_refused_draining(), 1);
    assert_eq!(r.e.calls_refused(), 0, "not counted as admission");
    assert_eq!(r.e.calls_by_pool(&r.t), vec![(pool.clone(), 1, true)]);

    // The call in progress: its BYE is answered and goes on to the gateway.
    let a = r.msg(&fe_in_dialog("BYE", &ok, 8, "bye-d1"), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), vec![200]);
    let bye = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert_eq!(bye.method(), Some("BYE"));
    assert_eq!(ended(&a).map(|c| c.status), Some(200));
    r.msg(&respond(&bye, 200, "gw1", None), gw(5060, 5060));
    assert!(r.e.calls(r.now).is_empty());

    if let Some(p) = r.t.pools.get_mut(&pool) {
        p.value.draining = false;
    }
    let a = r.msg(&options("o3", "198.18.1.2:5060"), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), vec![200]);
    let a = r.msg(&invite("+14255550100", "d3"), fe());
    media_call(&a);

    r.e.stop_accepting();
    let a = r.msg(&invite("+14255550100", "d4"), fe());
    let (retry, warning) = refusal(&sent_to(&a, fe()));
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(warning.contains("stopping"), "{warning}");
    assert_eq!(r.e.calls_refused_draining(), 2);
    assert_eq!(
        r.e.calls(r.now).len(),
        1,
        "the call set up before the stop stays"
    );
}

/// Admission: a peer over its call rate, a pool at its limit, and a trunk at its limit (an
/// outbound call skips it for the route's next trunk).
#[test]
fn admission_refuses_with_retry_after_or_skips_a_full_trunk() {
    let mut r = Run::new("adm-rate");
    r.e = Engine::new(Config {
        admission: crate::AdmissionLimits {
            calls_per_second_per_peer: 2,
            ..Default::default()
        },
        ..Config::default()
    });
    let refused: Vec<bool> = (0..5)
        .map(|i| {
            let a = r.msg(&invite("+14255550100", &format!("rate{i}")), fe());
            statuses(&sent_to(&a, fe())).contains(&503)
        })
        .collect();
    assert_eq!(
        refused,
        [false, false, false, false, true],
        "a burst of 4, then 503"
    );
    let a = r.msg(&invite("+14255550100", "rate5"), fe());
    let sent = sent_to(&a, fe());
    let refused = sent
        .iter()
        .find(|m| statuses(std::slice::from_ref(*m)) == [503])
        .expect("503");
    assert_eq!(refused.header("retry-after").as_deref(), Some("5"));
    assert!(
        refused
            .header("warning")
            .is_some_and(|w| w.contains("calls_per_second_per_peer")),
        "{refused:?}"
    );
    assert_eq!(r.e.calls_refused(), 2);
    r.now += Duration::from_secs(1);
    let a = r.msg(&invite("+14255550100", "rate6"), fe());
    assert!(
        !statuses(&sent_to(&a, fe())).contains(&503),
        "two more a second later"
    );

    let mut r = Run::new("adm-pool");
    r.e = Engine::new(Config {
        admission: crate::AdmissionLimits {
            calls_per_pool: 1,
            ..Default::default()
        },
        ..Config::default()
    });
    r.msg(&invite("+14255550100", "pool1"), fe());
    let a = r.msg(&invite("+14255550100", "pool2"), fe());
    let sent = sent_to(&a, fe());
    let refused = sent
        .iter()
        .find(|m| statuses(std::slice::from_ref(*m)) == [503])
        .expect("503");
    assert!(
        refused
            .header("warning")
            .is_some_and(|w| w.contains("max_calls_per_pool"))
    );

    let mut r = Run::new("adm-trunk");
    r.e = Engine::new(Config {
        admission: crate::AdmissionLimits {
            calls_per_trunk: 1,
            ..Default::default()
        },
        ..Config::default()
    });
    let a = r.msg(&invite("+16665550100", "trunk1"), fe());
    let first = media_call(&a);
    let a = r.created(first);
    assert_eq!(
        requests(&sent_to(&a, gw(5064, 5064))).len(),
        1,
        "the route's first trunk"
    );
    let a = r.msg(&invite("+16665550101", "trunk2"), fe());
    let second = media_call(&a);
    let a = r.answered(second, "s2", 30004, 30006);
    assert!(
        sent_to(&a, gw(5064, 5064)).is_empty(),
        "the first trunk has its one call"
    );
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert_eq!(inv.method(), Some("INVITE"), "the route's next trunk");
    let a = r.msg(&respond(&inv, 486, "t2", None), gw(5060, 5060));
    assert_eq!(
        ended(&a).expect("record").attempts,
        vec![
            ("gw-silent".to_string(), 503),
            ("198.18.2.2".to_string(), 486)
        ]
    );
}

#[test]
fn an_invite_the_transport_could_not_deliver_fails_over_at_once_as_a_503() {
    let mut r = Run::new("transport");
    let a = r.msg(&invite("+15555550100", "c3t"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let to_first = a
        .iter()
        .find_map(|x| match x {
            Action::Send { to, bytes } if *to == gw(5062, 5062) => Some(bytes.clone()),
            _ => None,
        })
        .expect("the INVITE to the first trunk");
    // Its connection (or TLS handshake) failed: RFC 3261 §8.1.3.1, a 503 — no waiting.
    let a = r.e.on_transport_error(&r.t, &to_first, r.now);
    assert!(
        sent_to(&a, gw(5062, 5062)).is_empty(),
        "no ACK to a peer that never got the INVITE"
    );
    let next = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert_eq!(next.method(), Some("INVITE"), "the next trunk at once");
    let a = r.msg(&respond(&next, 486, "t2", None), gw(5060, 5060));
    assert_eq!(
        ended(&a).expect("record").attempts,
        vec![
            ("gw-5062".to_string(), 503),
            ("198.18.2.2".to_string(), 486)
        ]
    );
    // A late error for a transaction already over changes nothing.
    assert!(r.e.on_transport_error(&r.t, &to_first, r.now).is_empty());
}

#[test]
fn cancel_before_answer_reaches_the_gateway_and_ends_the_call() {
    let mut r = Run::new("cancel");
    let a = r.msg(&invite("+14255550100", "c4"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    r.msg(&respond(&inv, 180, "gw1", None), gw(5060, 5060));
    let cancel = String::from_utf8(invite("+14255550100", "c4"))
        .expect("utf8")
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 7 INVITE", "CSeq: 7 CANCEL");
    let cancel = cancel
        .split("Content-Type")
        .next()
        .expect("head")
        .to_string()
        + "Content-Length: 0\r\n\r\n";
    let a = r.msg(cancel.as_bytes(), fe());
    let mut st = statuses(&sent_to(&a, fe()));
    st.sort();
    assert_eq!(st, vec![200, 487], "200 to the CANCEL, 487 to the INVITE");
    let to_gw = sent_to(&a, gw(5060, 5060));
    let c = requests(&to_gw)[0];
    assert_eq!(c.method(), Some("CANCEL"));
    assert_eq!(c.summary.branch, inv.summary.branch, "the INVITE's branch");
    assert_eq!(ended(&a).expect("record").status, 487);
}

#[test]
fn unknown_peers_malformed_and_out_of_dialog_requests_get_their_errors() {
    let mut r = Run::new("errors");
    let stranger = Peer::udp("198.18.1.99:5060", "198.18.1.1:5060");
    let a = r.msg(&invite("+14255550100", "c5"), stranger);
    assert_eq!(statuses(&sent_to(&a, stranger)), vec![403]);
    assert_eq!(r.e.transactions(), 0, "nothing is kept for a stranger");

    let bye = String::from_utf8(invite("+14255550100", "c6"))
        .expect("utf8")
        .replacen("INVITE sip:", "BYE sip:", 1)
        .replace("CSeq: 7 INVITE", "CSeq: 7 BYE")
        .replace(
            "To: <sip:+14255550100@198.18.1.1>",
            "To: <sip:+14255550100@198.18.1.1>;tag=nope",
        );
    let a = r.msg(bye.as_bytes(), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), vec![481]);

    let opt = String::from_utf8(invite("x", "c7"))
        .expect("utf8")
        .replacen("INVITE sip:", "OPTIONS sip:", 1)
        .replace("CSeq: 7 INVITE", "CSeq: 7 OPTIONS");
    let a = r.msg(opt.as_bytes(), fe());
    let ok = &sent_to(&a, fe())[0];
    assert_eq!(ok.status(), Some(200));
    assert!(ok.header("allow").is_some_and(|v| v.contains("INVITE")));

    let refer = opt
        .replacen("OPTIONS sip:", "REFER sip:", 1)
        .replace("CSeq: 7 OPTIONS", "CSeq: 7 REFER")
        .replace("Call-ID: c7", "Call-ID: c8")
        .replace("branch=z9hG4bK-fe-c7", "branch=z9hG4bK-fe-c8");
    let a = r.msg(refer.as_bytes(), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), vec![405]);

    let a = r.msg(&invite("+19995550100", "c9"), fe());
    let st = sent_to(&a, fe());
    assert_eq!(statuses(&st), vec![100, 404], "no route");
    assert!(
        st[1]
            .header("warning")
            .is_some_and(|w| w.contains("no voice route"))
    );

    // A call that comes back through Mediator is a loop.
    let looped = String::from_utf8(invite("+14255550100", "c10"))
        .expect("utf8")
        .replace(
            "Max-Forwards: 70",
            "Via: SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK-med-0123\r\nMax-Forwards: 70",
        );
    let a = r.msg(looped.as_bytes(), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), vec![100, 482]);

    // Garbage never reaches a call, and is answered when it can be.
    let a = r.msg(b"INVITE sip:x SIP/2.0\r\n\r\n", fe());
    assert!(a.iter().all(|x| !matches!(x, Action::CreateMedia { .. })));
    assert!(r.e.calls(r.now).is_empty());
}

#[test]
fn a_caller_leaving_while_the_relay_works_gets_its_sessions_deleted() {
    let mut r = Run::new("gone");
    let a = r.msg(&invite("+14255550100", "c11"), fe());
    let id = media_call(&a);
    let cancel = String::from_utf8(invite("+14255550100", "c11"))
        .expect("utf8")
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 7 INVITE", "CSeq: 7 CANCEL");
    let cancel = cancel
        .split("Content-Type")
        .next()
        .expect("head")
        .to_string()
        + "Content-Length: 0\r\n\r\n";
    r.msg(cancel.as_bytes(), fe());
    let a = r.created(id);
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::DeleteMedia { sessions, .. } if sessions.len() == 1)),
        "{a:?}"
    );
    assert!(
        sent_to(&a, gw(5060, 5060)).is_empty(),
        "no INVITE for a cancelled call"
    );
}

/// Sets up an answered, acknowledged call to +1425…; returns the INVITE the gateway got and the
/// 2xx the caller got.
fn answered(r: &mut Run, call_id: &str) -> (Message, Message) {
    let a = r.msg(&invite("+14255550100", call_id), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&respond(&inv, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    let ok = sent_to(&a, fe())[0].clone();
    r.msg(
        &fe_in_dialog("ACK", &ok, 7, &format!("ack-{call_id}")),
        fe(),
    );
    (inv, ok)
}

#[test]
fn in_dialog_requests_are_passed_across_and_refer_obeys_the_trunk() {
    let mut r = Run::new("indialog");
    let (_inv, ok) = answered(&mut r, "c20");
    // INFO from the caller reaches the gateway in the gateway leg's dialog; its 200 comes back.
    let a = r.msg(&fe_in_dialog("INFO", &ok, 8, "info1"), fe());
    let info = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert_eq!(info.method(), Some("INFO"));
    assert_eq!(info.summary.to_tag.as_deref(), Some("gw1"));
    let a = r.msg(&respond(&info, 200, "", None), gw(5060, 5060));
    assert_eq!(statuses(&sent_to(&a, fe())), vec![200]);
    // refer_support off on this trunk: REFER is refused, naming the trunk.
    r.t.configs
        .get_mut("trunk:198.18.2.2")
        .expect("trunk config")
        .value
        .settings
        .refer_support = Some(false);
    let (_inv, ok) = answered(&mut r, "c21");
    // A REFER as a Front End writes it (RFC 3515: it has a Refer-To): an error reply is never
    // larger than its request, so the Warning needs a request of ordinary size to fit.
    let refer = String::from_utf8(fe_in_dialog("REFER", &ok, 8, "refer1"))
        .expect("utf8")
        .replace(
            "Content-Length: 0",
            "Refer-To: <sip:+14255550199@contoso.com>\r\nContact: <sip:fe@198.18.1.2:5060;transport=udp>\r\nContent-Length: 0",
        );
    let a = r.msg(refer.as_bytes(), fe());
    let st = sent_to(&a, fe());
    assert_eq!(statuses(&st), vec![403]);
    assert!(
        st[0]
            .header("warning")
            .is_some_and(|w| w.contains("198.18.2.2"))
    );
    assert!(sent_to(&a, gw(5060, 5060)).is_empty());
}

#[test]
fn a_re_invite_updates_the_session_and_marks_hold() {
    let mut r = Run::new("hold");
    let (_inv, ok) = answered(&mut r, "c22");
    let held = OFFER.replace(
        "a=rtpmap:8 PCMA/8000\r\n",
        "a=rtpmap:8 PCMA/8000\r\na=sendonly\r\n",
    );
    let reinvite = String::from_utf8(fe_in_dialog("INVITE", &ok, 8, "re1"))
        .expect("utf8")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Contact: <sip:fe@198.18.1.2:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{held}",
                held.len()
            ),
        );
    let a = r.msg(reinvite.as_bytes(), fe());
    assert!(
        a.iter().any(
            |x| matches!(x, Action::UpdateMedia { request, .. } if request.on_hold == Some(true))
        ),
        "the session goes on hold"
    );
    let to_gw = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let body = String::from_utf8_lossy(to_gw.body()).to_string();
    assert!(
        body.contains("a=sendonly") && body.contains("m=audio 30002 "),
        "{body}"
    );
    // A second offer before the first is answered: 491.
    let again = reinvite
        .replace("branch=z9hG4bK-re1", "branch=z9hG4bK-re2")
        .replace("CSeq: 8", "CSeq: 9");
    let a = r.msg(again.as_bytes(), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), vec![100, 491]);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Whatever a configured peer sends — a real call's messages with bytes flipped, cut or
        /// repeated, in any order — the engine answers or drops it and never panics.
        #[test]
        fn mutated_call_traffic(
            flips in proptest::collection::vec((0usize..2000, any::<u8>()), 0..8),
            cut in 0usize..2000,
            steps in proptest::collection::vec(0u8..6, 1..12),
        ) {
            let mut r = Run::new("prop");
            let mut base = invite("+14255550100", "p1");
            let len = base.len();
            for (i, b) in &flips {
                base[*i % len] = *b;
            }
            let cut_base = base[..cut.min(base.len())].to_vec();
            let mut last_invite: Option<Message> = None;
            for s in steps {
                let a = match s {
                    0 => r.msg(&base, fe()),
                    1 => r.msg(&cut_base, fe()),
                    2 => r.created(1),
                    3 => match &last_invite {
                        Some(inv) => r.msg(&respond(inv, 200, "gw1", Some(ANSWER)), gw(5060, 5060)),
                        None => Vec::new(),
                    },
                    4 => match &last_invite {
                        Some(inv) => r.msg(&respond(inv, 503, "gw1", None), gw(5060, 5060)),
                        None => Vec::new(),
                    },
                    _ => r.advance(Duration::from_secs(3)),
                };
                if let Some(m) = requests(&sent_to(&a, gw(5060, 5060))).first() {
                    last_invite = Some((*m).clone());
                }
            }
        }
    }
}

#[test]
fn a_relay_failure_answers_503_and_response_code_rules_decide_failover() {
    let mut r = Run::new("relayfail");
    let a = r.msg(&invite("+14255550100", "c30"), fe());
    let id = media_call(&a);
    let a = r.e.on_media_created(
        id,
        "pool.lab.mediator",
        Err((
            503,
            "no media relay available: 127.0.0.1:7400: connection refused".into(),
        )),
        r.now,
    );
    let st = sent_to(&a, fe());
    assert_eq!(statuses(&st), vec![503]);
    assert!(
        st[0]
            .header("warning")
            .is_some_and(|w| w.contains("media relay"))
    );
    assert!(
        sent_to(&a, gw(5060, 5060)).is_empty(),
        "no INVITE without media"
    );

    // 486 translated to 503 everywhere: a busy first trunk now fails over, and the caller sees
    // the translated code when the last one is busy too.
    r.t.configs
        .get_mut("global")
        .expect("global config")
        .value
        .settings
        .response_code_rules = Some(vec![mediator_topology::model::ResponseCodeRule {
        received: 486,
        translated: 503,
    }]);
    let a = r.msg(&invite("+15555550100", "c31"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let first = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    let a = r.msg(&respond(&first, 486, "b1", None), gw(5062, 5062));
    let second = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert_eq!(
        second.method(),
        Some("INVITE"),
        "a translated 486 fails over"
    );
    let a = r.msg(&respond(&second, 486, "b2", None), gw(5060, 5060));
    assert_eq!(
        statuses(&sent_to(&a, fe())),
        vec![503],
        "the caller sees the translated code"
    );
    assert_eq!(
        ended(&a).expect("record").attempts,
        vec![
            ("gw-5062".to_string(), 486),
            ("198.18.2.2".to_string(), 486)
        ]
    );
}

#[test]
fn refer_notify_and_update_are_passed_across_when_allowed() {
    let mut r = Run::new("refer");
    let (inv, ok) = answered(&mut r, "c40");
    // REFER from the caller (refer_support is on by default) reaches the gateway with Refer-To.
    let refer = String::from_utf8(fe_in_dialog("REFER", &ok, 8, "refer2"))
        .expect("utf8")
        .replace(
            "Content-Length: 0",
            "Refer-To: <sip:+14255550199@198.18.1.2>\r\nContent-Length: 0",
        );
    let a = r.msg(refer.as_bytes(), fe());
    let to_gw = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert_eq!(to_gw.method(), Some("REFER"));
    assert!(
        to_gw
            .header("refer-to")
            .is_some_and(|v| v.contains("+14255550199"))
    );
    let a = r.msg(&respond(&to_gw, 202, "", None), gw(5060, 5060));
    assert_eq!(statuses(&sent_to(&a, fe())), vec![202]);
    // NOTIFY from the gateway in its dialog reaches the caller with Event and Subscription-State.
    let notify = format!(
        "NOTIFY sip:mediator@198.18.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.2:5060;branch=z9hG4bK-gwn1\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 NOTIFY\r\nEvent: refer\r\nSubscription-State: terminated;reason=noresource\r\nContent-Type: message/sipfrag\r\nContent-Length: 16\r\n\r\nSIP/2.0 200 OK\r\n",
        respond_to_header(&inv),
        inv.header("from").expect("from"),
        inv.summary.call_id
    );
    let a = r.msg(notify.as_bytes(), gw(5060, 5060));
    let to_fe = requests(&sent_to(&a, fe()))[0].clone();
    assert_eq!(to_fe.method(), Some("NOTIFY"));
    assert_eq!(to_fe.header("event").as_deref(), Some("refer"));
    assert_eq!(
        to_fe.body(),
        b"SIP/2.0 200 OK\r\n",
        "the sipfrag body passes unchanged"
    );
    // UPDATE with an offer from the gateway: the session learns its new address, the caller is
    // offered the relay's pool side.
    let offer = ANSWER.replace("m=audio 7000", "m=audio 7100");
    let update = format!(
        "UPDATE sip:mediator@198.18.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.2:5060;branch=z9hG4bK-gwu1\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 3 UPDATE\r\nContact: <sip:gw@198.18.2.2:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        respond_to_header(&inv),
        inv.header("from").expect("from"),
        inv.summary.call_id,
        offer.len()
    );
    let a = r.msg(update.as_bytes(), gw(5060, 5060));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::UpdateMedia { request, .. }
        if request.gateway.and_then(|g| g.rtp).map(|e| e.port()) == Some(7100)))
    );
    let to_fe = requests(&sent_to(&a, fe()))[0].clone();
    assert_eq!(to_fe.method(), Some("UPDATE"));
    assert!(String::from_utf8_lossy(to_fe.body()).contains("m=audio 30000 "));
}

#[test]
fn end_call_hangs_up_both_legs_and_answers_what_is_pending() {
    let mut r = Run::new("end");
    let (inv, ok) = answered(&mut r, "c-end1");
    let id = r.e.calls(r.now)[0].id;
    // An INFO from the caller is still with the gateway when the call is ended.
    let a = r.msg(&fe_in_dialog("INFO", &ok, 8, "info-end"), fe());
    assert_eq!(
        requests(&sent_to(&a, gw(5060, 5060)))[0].method(),
        Some("INFO")
    );
    let a =
        r.e.end_call(id, "ended by the operator", r.now)
            .expect("in progress");
    let to_fe = sent_to(&a, fe());
    let byes: Vec<_> = requests(&to_fe)
        .iter()
        .map(|m| (m.method().map(str::to_string), m.summary.call_id.clone()))
        .collect();
    assert_eq!(byes, vec![(Some("BYE".into()), ok.summary.call_id.clone())]);
    assert_eq!(statuses(&to_fe), vec![487], "the pending INFO is answered");
    let to_gw = sent_to(&a, gw(5060, 5060));
    let bye = requests(&to_gw);
    assert_eq!(bye.len(), 1);
    assert_eq!(bye[0].method(), Some("BYE"));
    assert_eq!(
        bye[0].summary.call_id, inv.summary.call_id,
        "in the gateway's dialog"
    );
    let rec = ended(&a).expect("a record");
    assert_eq!(
        (rec.status, rec.end_reason.as_str()),
        (200, "ended by the operator")
    );
    assert!(r.e.calls(r.now).is_empty());
    assert_eq!(
        r.e.end_call(id, "again", r.now).err(),
        Some(EndRefused::NotInProgress),
        "ended once only"
    );
    assert_eq!(
        r.e.end_call(999, "none", r.now).err(),
        Some(EndRefused::NotInProgress)
    );
}

#[test]
fn end_call_before_the_answer_cancels_and_waits_for_the_ack_after_it() {
    // Ringing: the caller gets 487, the gateway a CANCEL for its INVITE.
    let mut r = Run::new("end-ring");
    let a = r.msg(&invite("+14255550100", "c-end2"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    r.msg(&respond(&inv, 180, "gw2", None), gw(5060, 5060));
    let a =
        r.e.end_call(id, "ended by the operator", r.now)
            .expect("in progress");
    assert_eq!(statuses(&sent_to(&a, fe())), vec![487]);
    let to_gw = sent_to(&a, gw(5060, 5060));
    let c = requests(&to_gw);
    assert_eq!(c[0].method(), Some("CANCEL"));
    assert_eq!(c[0].summary.branch, inv.summary.branch);
    assert_eq!(ended(&a).expect("record").status, 487);

    // Still waiting for the relay: 487, and the sessions are deleted when they arrive.
    let a = r.msg(&invite("+14255550100", "c-end3"), fe());
    let id = media_call(&a);
    let a =
        r.e.end_call(id, "ended by the operator", r.now)
            .expect("in progress");
    assert_eq!(statuses(&sent_to(&a, fe())), vec![487]);
    assert!(
        sent_to(&a, gw(5060, 5060)).is_empty(),
        "nothing reached the gateway"
    );
    let a = r.created(id);
    assert!(
        a.iter().any(|x| matches!(x, Action::DeleteMedia { .. })),
        "the late sessions are deleted: {a:?}"
    );

    // INVITE sent, no provisional yet: no CANCEL may go out (RFC 3261 §9.1) until one comes.
    let a = r.msg(&invite("+14255550100", "c-end4"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a =
        r.e.end_call(id, "ended by the operator", r.now)
            .expect("in progress");
    assert_eq!(statuses(&sent_to(&a, fe())), vec![487]);
    assert!(
        requests(&sent_to(&a, gw(5060, 5060))).is_empty(),
        "no CANCEL yet"
    );
    let a = r.msg(&respond(&inv, 180, "gw4", None), gw(5060, 5060));
    let c = requests(&sent_to(&a, gw(5060, 5060)))
        .first()
        .map(|m| (m.method().map(str::to_string), m.summary.branch.clone()));
    assert_eq!(c, Some((Some("CANCEL".into()), inv.summary.branch.clone())));

    // Answered, the caller's ACK not in yet: refused for the moment, then ended once confirmed.
    let a = r.msg(&invite("+14255550100", "c-end5"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&respond(&inv, 200, "gw5", Some(ANSWER)), gw(5060, 5060));
    let ok = sent_to(&a, fe())[0].clone();
    assert_eq!(
        r.e.end_call(id, "too early", r.now).err(),
        Some(EndRefused::Answering)
    );
    r.msg(&fe_in_dialog("ACK", &ok, 7, "ack-end5"), fe());
    let a =
        r.e.end_call(id, "ended by the operator", r.now)
            .expect("confirmed");
    assert_eq!(requests(&sent_to(&a, fe()))[0].method(), Some("BYE"));
    assert_eq!(
        requests(&sent_to(&a, gw(5060, 5060)))[0].method(),
        Some("BYE")
    );
}

/// A relay's media timeout ends a confirmed call: BYE on both legs with a Reason, a record
/// saying why; a session no call owns, or a call not yet confirmed, is left alone.
#[test]
fn a_media_timeout_ends_a_confirmed_call() {
    let mut r = Run::new("mto");
    assert!(r.e.on_media_timeout("relay", "nobody", r.now).is_empty());
    let (_inv, _ok) = answered(&mut r, "c40");
    let a = r.e.on_media_timeout("relay", "s", r.now);
    for peer in [fe(), gw(5060, 5060)] {
        let byes: Vec<Message> = sent_to(&a, peer)
            .into_iter()
            .filter(|m| m.method() == Some("BYE"))
            .collect();
        assert_eq!(byes.len(), 1, "one BYE to {peer:?}");
        assert_eq!(
            byes[0].header("reason").as_deref(),
            Some("SIP;cause=408;text=\"media timeout\"")
        );
    }
    let rec = ended(&a).expect("a record");
    assert_eq!(
        (rec.status, rec.end_reason.as_str()),
        (200, "media timeout")
    );
    assert!(r.e.calls(r.now).is_empty());
}

/// A gateway's redirect reaches the caller with its Contact (followed redirects are not built
/// yet), and with Diversion/History-Info only when the trunk forwards call history.
/// RTCP dead-call detection follows the trunk's `rtcp_active_calls` and `rtcp_calls_on_hold`:
/// the sessions ask the relay for Lync's 30 s (or nothing when off), and the relay's RTCP
/// timeout ends the call on both legs with its reason.
#[test]
fn rtcp_timeouts_follow_the_trunk_settings_and_end_the_call() {
    let rtcp_of = |a: &[Action]| {
        a.iter()
            .find_map(|x| match x {
                Action::CreateMedia { requests, .. } => Some((
                    requests[0].rtcp_timeout_secs,
                    requests[0].rtcp_hold_timeout_secs,
                )),
                _ => None,
            })
            .expect("sessions")
    };
    let mut r = Run::new("rtcp");
    let a = r.msg(&invite("+14255550100", "c70"), fe());
    assert_eq!(rtcp_of(&a), (30, 30), "Lync's defaults: on, 30 s");
    let s = &mut r
        .t
        .configs
        .get_mut("global")
        .expect("global")
        .value
        .settings;
    s.rtcp_active_calls = Some(false);
    let a = r.msg(&invite("+14255550100", "c71"), fe());
    assert_eq!(rtcp_of(&a), (0, 30), "active calls off, held calls on");

    let mut r = Run::new("rtcp-end");
    let (_inv, _ok) = answered(&mut r, "c72");
    let a = r.e.on_rtcp_timeout("relay", "s", r.now);
    for peer in [fe(), gw(5060, 5060)] {
        let bye = sent_to(&a, peer)
            .into_iter()
            .find(|m| m.method() == Some("BYE"))
            .expect("a BYE to each leg");
        assert_eq!(
            bye.header("reason").as_deref(),
            Some("SIP;cause=408;text=\"rtcp timeout\"")
        );
    }
    let rec = ended(&a).expect("a record");
    assert_eq!((rec.status, rec.end_reason.as_str()), (200, "rtcp timeout"));
}

#[test]
fn a_redirect_is_relayed_with_its_contact_and_history_per_the_trunk() {
    for history in [false, true] {
        let mut r = Run::new("redirect");
        r.t.configs
            .get_mut("trunk:198.18.2.2")
            .expect("config")
            .value
            .settings
            .forward_call_history = Some(history);
        let a = r.msg(&invite("+14255550100", &format!("c5{history}")), fe());
        let id = media_call(&a);
        let a = r.created(id);
        let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
        let moved = build_response(
            &inv,
            302,
            "Moved Temporarily",
            "gw1",
            &[
                ("Contact", "<sip:+14255550199@198.18.2.9:5060>".into()),
                (
                    "Diversion",
                    "<sip:+14255550100@198.18.2.2>;reason=unconditional".into(),
                ),
            ],
            None,
        );
        let a = r.msg(&moved, gw(5060, 5060));
        let to_fe = sent_to(&a, fe());
        let resp = to_fe
            .iter()
            .find(|m| m.status() == Some(302))
            .expect("302 relayed");
        assert!(
            resp.header("contact")
                .is_some_and(|c| c.contains("+14255550199@198.18.2.9")),
            "{:?}",
            resp.header("contact")
        );
        assert_eq!(
            resp.header("diversion").is_some(),
            history,
            "history {history}"
        );
        assert_eq!(resp.reason(), "Moved Temporarily");
        assert_eq!(ended(&a).expect("record").status, 302);
    }
}

/// With two streams, one stream's timeout is not the call's; once every live stream has
/// stopped the call ends. A stream the callee declined (port 0) does not count.
#[test]
fn a_media_timeout_ends_a_call_only_when_every_live_stream_stopped() {
    let two = OFFER.to_string() + "m=video 6002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    let invite_two = |call_id: &str| {
        String::from_utf8(invite("+14255550100", call_id))
            .expect("utf8")
            .replace(
                &format!("Content-Length: {}\r\n", OFFER.len()),
                &format!("Content-Length: {}\r\n", two.len()),
            )
            .replace(OFFER, &two)
    };
    let anchor = |addr: &str, port: u16| Anchor {
        addr: addr.parse().expect("ip"),
        rtp_port: port,
        rtcp_port: port + 1,
    };
    for declined in [false, true] {
        let mut r = Run::new("mto2");
        let a = r.msg(invite_two(&format!("c6{declined}")).as_bytes(), fe());
        let id = media_call(&a);
        let sessions = ["a", "v"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    "relay".to_string(),
                    MediaAnswer {
                        session_id: n.to_string(),
                        pool: Some(anchor("198.18.1.1", 30000 + 4 * i as u16)),
                        gateway: Some(anchor("198.18.2.1", 30002 + 4 * i as u16)),
                    },
                )
            })
            .collect();
        let a =
            r.e.on_media_created(id, "pool.lab.mediator", Ok(sessions), r.now);
        let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
        let video = if declined {
            "m=video 0 RTP/AVP 96\r\n"
        } else {
            "m=video 7002 RTP/AVP 96\r\n"
        };
        let answer = ANSWER.to_string() + video;
        let a = r.msg(&respond(&inv, 200, "gw1", Some(&answer)), gw(5060, 5060));
        let ok = sent_to(&a, fe())[0].clone();
        r.msg(
            &fe_in_dialog("ACK", &ok, 7, &format!("ack-mto2{declined}")),
            fe(),
        );
        let a = r.e.on_media_timeout("relay", "a", r.now);
        if declined {
            assert!(
                ended(&a).is_some(),
                "the declined video does not keep the call up"
            );
            continue;
        }
        assert!(a.is_empty(), "the video still flows: {a:?}");
        let a = r.e.on_media_timeout("relay", "v", r.now);
        assert_eq!(ended(&a).expect("ended").end_reason, "media timeout");
    }
}

mod delayed;
mod dns;
mod health;
mod srtp;
mod timer;

/// A Record-Routing proxy on the pool side (at the Front End's address, on its own port): the
/// 2xx copies the Record-Route (RFC 3261 §12.1.1), and requests in the pool leg's dialog go to
/// the proxy with it as Route and the Front End's Contact as Request-URI (loose routing,
/// §12.2.1.1, §16.12).
#[test]
fn the_pool_leg_follows_a_record_routing_proxy() {
    let mut r = Run::new("rr");
    let proxied = String::from_utf8(invite("+14255550100", "c80"))
        .expect("utf8")
        .replace(
            "Contact: <sip:fe@198.18.1.2:5060>",
            "Record-Route: <sip:198.18.1.2:5080;lr>\r\nContact: <sip:fe@198.18.1.2:5090>",
        );
    let a = r.msg(proxied.as_bytes(), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert!(
        inv.header("record-route").is_none(),
        "the route set is the pool leg's, not passed to the gateway"
    );
    let a = r.msg(&respond(&inv, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    let ok = sent_to(&a, fe())[0].clone();
    assert_eq!(
        ok.headers_named("record-route"),
        vec!["<sip:198.18.1.2:5080;lr>".to_string()]
    );
    r.msg(&fe_in_dialog("ACK", &ok, 7, "ack-rr"), fe());
    let bye = format!(
        "BYE sip:mediator@198.18.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.2:5060;branch=z9hG4bK-gwbye-rr\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        respond_to_header(&inv),
        inv.header("from").expect("from"),
        inv.summary.call_id
    );
    let a = r.msg(bye.as_bytes(), gw(5060, 5060));
    let proxy = Peer::udp("198.18.1.2:5080", "198.18.1.1:5060");
    let to_proxy = requests(&sent_to(&a, proxy))
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(to_proxy.len(), 1, "the BYE goes to the proxy");
    assert_eq!(to_proxy[0].method(), Some("BYE"));
    assert_eq!(to_proxy[0].request_uri(), Some("sip:fe@198.18.1.2:5090"));
    assert_eq!(
        to_proxy[0].headers_named("route"),
        vec!["<sip:198.18.1.2:5080;lr>".to_string()]
    );
    assert!(sent_to(&a, fe()).is_empty());
}

/// With `follow_redirects` a gateway's 302 is followed: its Contacts that are gateways of the
/// call's pool become the next targets, best q first, with the Contact's number; a Contact
/// elsewhere, or back to a trunk and number already tried, is not followed; the record lists
/// every attempt. With nothing left to follow, the 3xx is relayed.
#[test]
fn a_redirect_is_followed_to_the_gateways_it_names_when_the_trunk_says_so() {
    let mut r = Run::new("follow");
    r.t.configs
        .get_mut("global")
        .expect("global")
        .value
        .settings
        .follow_redirects = Some(true);
    let a = r.msg(&invite("+14255550100", "c90"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let moved = build_response(
        &inv,
        302,
        "Moved Temporarily",
        "gw1",
        &[(
            "Contact",
            "<sip:+14255550177@198.18.2.2:5064>;q=0.5, <sip:+14255550166@198.18.2.2:5062>;q=0.9, <sip:+14255550155@198.18.2.9:5060>"
                .into(),
        )],
        None,
    );
    let a = r.msg(&moved, gw(5060, 5060));
    assert!(
        statuses(&sent_to(&a, fe())).iter().all(|s| *s < 300),
        "the caller does not see the redirect"
    );
    let next = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    assert_eq!(next.method(), Some("INVITE"));
    assert_eq!(
        next.request_uri(),
        Some("sip:+14255550166@198.18.2.2:5062;user=phone")
    );
    // That gateway redirects back to where the call started: a loop, not followed; the next
    // Contact of the first redirect (q=0.5) is tried instead.
    let back = build_response(
        &next,
        302,
        "Moved Temporarily",
        "gw2",
        &[("Contact", "<sip:14255550100@198.18.2.2:5060>".into())],
        None,
    );
    let a = r.msg(&back, gw(5062, 5062));
    let third = requests(&sent_to(&a, gw(5064, 5064)))[0].clone();
    assert_eq!(
        third.request_uri(),
        Some("sip:+14255550177@198.18.2.2:5064;user=phone")
    );
    let a = r.msg(&respond(&third, 486, "gw3", None), gw(5064, 5064));
    let rec = ended(&a).expect("ended");
    assert_eq!(rec.status, 486);
    assert_eq!(
        rec.attempts,
        [
            ("198.18.2.2".to_string(), 302),
            ("gw-5062".to_string(), 302),
            ("gw-silent".to_string(), 486)
        ]
    );
}

/// The relays' answer for an early dialog's fork of session "s": "s-f1" with its own pool-side
/// port 30008 (the gateway side is the parent's).
fn fork_made(r: &mut Run, call: CallId) -> Vec<Action> {
    r.answered(call, "s-f1", 30008, 30002)
}

/// A forked INVITE up to where fork B (To tag forkB) has its own early media: fork A's 180
/// answers the call's session, fork B's 183 gets a fork of it. Returns the run, the call, the
/// INVITE sent and the caller's two provisionals.
fn forked(tag: &str) -> (Run, CallId, Message, Message, Message) {
    let mut r = Run::new(tag);
    r.t.configs
        .get_mut("global")
        .expect("global")
        .value
        .settings
        .max_early_dialogs = Some(2);
    let a = r.msg(&invite("+14255550100", "c95"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&respond(&inv, 180, "forkA", Some(ANSWER)), gw(5060, 5060));
    let p1 = sent_to(&a, fe()).remove(0);
    assert_eq!(p1.status(), Some(180));
    assert!(String::from_utf8_lossy(p1.body()).contains("m=audio 30000 "));
    let a = r.msg(&respond(&inv, 183, "forkB", Some(FORK_B)), gw(5060, 5060));
    assert!(
        sent_to(&a, fe()).is_empty(),
        "fork B's 183 waits for its sessions"
    );
    let req = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { requests, .. } => Some(requests[0].clone()),
            _ => None,
        })
        .expect("a fork is asked for");
    assert_eq!(req.session_id, "s-f1");
    assert_eq!(req.fork_of, Some(("relay".into(), "s".into())));
    assert_eq!(
        req.gateway.rtp,
        Some("198.18.2.2:7002".parse().expect("addr"))
    );
    assert_eq!(
        req.pool.rtp,
        Some("198.18.1.2:6000".parse().expect("addr")),
        "the caller's address, as the call's session has it"
    );
    let a = fork_made(&mut r, id);
    let p2 = sent_to(&a, fe()).remove(0);
    assert_eq!(p2.status(), Some(183));
    assert!(
        String::from_utf8_lossy(p2.body()).contains("m=audio 30008 "),
        "fork B's early media is anchored on its own port"
    );
    assert!(p1.summary.to_tag.is_some());
    assert_ne!(
        p1.summary.to_tag, p2.summary.to_tag,
        "each early dialog reaches the caller in its own"
    );
    let a = r.msg(&respond(&inv, 180, "forkC", None), gw(5060, 5060));
    assert!(
        sent_to(&a, fe()).is_empty(),
        "a third early dialog is beyond max_early_dialogs"
    );
    (r, id, inv, p1, p2)
}

const FORK_B: &str = "v=0\r\no=- 3 1 IN IP4 198.18.2.2\r\ns=-\r\nc=IN IP4 198.18.2.2\r\nt=0 0\r\nm=audio 7002 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";

/// A forked INVITE: each early dialog reaches the caller in an early dialog of its own, its
/// early media anchored in sessions of its own (fork B's in a fork of the call's session); the
/// caller's early requests go to the early dialog of their To tag. Fork B answers and wins: its
/// fork takes over the session's gateway-side ports, the caller's dialog is fork B's; fork A's
/// late 2xx is ACKed and hung up in its own dialog (RFC 3261 §13.2.2.4).
#[test]
fn a_forked_invite_gives_each_early_dialog_its_own_and_a_fork_that_answers_inherits() {
    let (mut r, id, inv, p1, p2) = forked("fork");
    // The caller's early INFO in fork B's early dialog reaches fork B; in one it never had, 481.
    let a = r.msg(&fe_in_dialog("INFO", &p2, 2, "info-b"), fe());
    let info = &sent_to(&a, gw(5060, 5060))[0];
    assert_eq!(info.summary.to_tag.as_deref(), Some("forkB"));
    let a = r.msg(&fe_in_dialog("INFO", &p1, 3, "info-a"), fe());
    assert_eq!(
        sent_to(&a, gw(5060, 5060))[0].summary.to_tag.as_deref(),
        Some("forkA")
    );
    let stranger = String::from_utf8(fe_in_dialog("INFO", &p1, 4, "info-x"))
        .expect("utf8")
        .replace(p1.summary.to_tag.as_deref().expect("tag"), "nope");
    let a = r.msg(stranger.as_bytes(), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), [481]);
    // An offer (early UPDATE with SDP) in fork B's early dialog, from either side: refused.
    let a = r.msg(&fe_in_dialog_sdp("UPDATE", &p2, 3, "upd-b", OFFER), fe());
    assert_eq!(finals(&sent_to(&a, fe())), [488]);
    assert!(sent_to(&a, gw(5060, 5060)).is_empty());
    // Fork B's own early INFO reaches the caller in fork B's early dialog there.
    let info = format!(
        "INFO sip:mediator@198.18.2.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.2.2:5060;branch=z9hG4bK-gw-info-b\r\n\
         Max-Forwards: 70\r\nFrom: {};tag=forkB\r\nTo: {}\r\nCall-ID: {}\r\n\
         CSeq: 1 INFO\r\nContact: <sip:gw@198.18.2.2:5060>\r\nContent-Length: 0\r\n\r\n",
        inv.header("to").expect("to"),
        inv.header("from").expect("from"),
        inv.summary.call_id
    );
    let a = r.msg(info.as_bytes(), gw(5060, 5060));
    let to_fe = sent_to(&a, fe());
    assert_eq!(
        (to_fe[0].method(), to_fe[0].summary.from_tag.as_deref()),
        (Some("INFO"), p2.summary.to_tag.as_deref())
    );
    let update = info
        .replace("INFO sip:", "UPDATE sip:")
        .replace("CSeq: 1 INFO", "CSeq: 2 UPDATE")
        .replace("gw-info-b", "gw-upd-b")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{FORK_B}",
                FORK_B.len()
            ),
        );
    let a = r.msg(update.as_bytes(), gw(5060, 5060));
    assert_eq!(statuses(&sent_to(&a, gw(5060, 5060))), [488]);
    assert!(sent_to(&a, fe()).is_empty());

    // Fork B answers.
    let a = r.msg(&respond(&inv, 200, "forkB", Some(FORK_B)), gw(5060, 5060));
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    assert_eq!(
        ok.summary.to_tag, p2.summary.to_tag,
        "in fork B's early dialog"
    );
    assert!(String::from_utf8_lossy(ok.body()).contains("m=audio 30008 "));
    let handed: Vec<(String, String, String)> = a
        .iter()
        .filter_map(|x| match x {
            Action::HandOverMedia { sessions, .. } => Some(sessions.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(handed, [("relay".into(), "s".into(), "s-f1".into())]);
    // Fork A answers too: ACKed and hung up in its own dialog.
    let a = r.msg(&respond(&inv, 200, "forkA", Some(ANSWER)), gw(5060, 5060));
    let to_gw = sent_to(&a, gw(5060, 5060));
    let m: Vec<(&str, Option<&str>)> = to_gw
        .iter()
        .map(|x| (x.method().unwrap_or_default(), x.summary.to_tag.as_deref()))
        .collect();
    assert_eq!(m, [("ACK", Some("forkA")), ("BYE", Some("forkA"))]);
    // The caller's ACK goes to the winner; fork A's early dialog is gone.
    let a = r.msg(&fe_in_dialog("ACK", &ok, 1, "ack-fork"), fe());
    let ack = &sent_to(&a, gw(5060, 5060))[0];
    assert_eq!(
        (ack.method(), ack.summary.to_tag.as_deref()),
        (Some("ACK"), Some("forkB"))
    );
    assert_eq!(r.e.call(id, r.now).expect("the call").state, "confirmed");
    let a = r.msg(&fe_in_dialog("INFO", &p1, 5, "info-late"), fe());
    assert_eq!(statuses(&sent_to(&a, fe())), [481]);
    // Fork B hangs up: the caller's BYE comes from fork B's early dialog's tag there (its
    // dialog now); the call's session is the fork's.
    let bye = info
        .replace("INFO sip:", "BYE sip:")
        .replace("CSeq: 1 INFO", "CSeq: 2 BYE")
        .replace("gw-info-b", "gw-bye-b");
    let ended_by_bye = r.msg(bye.as_bytes(), gw(5060, 5060));
    let to_fe = sent_to(&ended_by_bye, fe());
    let bye_fe = to_fe
        .iter()
        .find(|m| m.method() == Some("BYE"))
        .expect("a BYE to the caller");
    assert_eq!(bye_fe.summary.from_tag, p2.summary.to_tag);
    let a = r.msg(&respond(bye_fe, 200, "fe1", None), fe());
    let sessions = ended_by_bye
        .iter()
        .chain(&a)
        .find_map(|x| match x {
            Action::Ended { sessions, .. } => Some(sessions.clone()),
            _ => None,
        })
        .expect("ended");
    assert_eq!(sessions, [("relay".to_string(), "s-f1".to_string())]);
}

/// The early dialog whose SDP the call's session answers wins: the other's fork is deleted and
/// the call keeps its session; the caller's dialog is the first one's.
#[test]
fn a_forked_invite_answered_by_the_first_early_dialog_deletes_the_forks() {
    let (mut r, id, inv, p1, _) = forked("fork-a");
    let a = r.msg(&respond(&inv, 200, "forkA", Some(ANSWER)), gw(5060, 5060));
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    assert_eq!(ok.summary.to_tag, p1.summary.to_tag);
    assert!(String::from_utf8_lossy(ok.body()).contains("m=audio 30000 "));
    let deleted = deleted(&a);
    assert_eq!(deleted, [("relay".into(), "s-f1".into())]);
    assert!(!a.iter().any(|x| matches!(x, Action::HandOverMedia { .. })));
    let a = r.msg(&fe_in_dialog("ACK", &ok, 1, "ack-a"), fe());
    assert_eq!(
        sent_to(&a, gw(5060, 5060))[0].summary.to_tag.as_deref(),
        Some("forkA")
    );
    assert_eq!(r.e.call(id, r.now).expect("the call").state, "confirmed");
}

/// A fork answers with a 2xx without SDP (its early answer stands): the SDP the call keeps for
/// session refreshes is that early dialog's (the caller's points at its fork), not the first's.
#[test]
fn a_fork_that_answers_without_sdp_leaves_its_own_sdp_for_refreshes() {
    let (mut r, id, inv, _, _) = forked("fork-nosdp");
    r.msg(&respond(&inv, 200, "forkB", None), gw(5060, 5060));
    let call = r.e.calls.get(&id).expect("the call");
    let sent = String::from_utf8_lossy(call.sent_sdp[0].as_deref().unwrap_or_default()).to_string();
    let recv = String::from_utf8_lossy(call.recv_sdp[1].as_deref().unwrap_or_default()).to_string();
    assert!(sent.contains("m=audio 30008 "), "{sent}");
    assert!(recv.contains("m=audio 7002 "), "{recv}");
}

/// A failover while an early dialog's forks are being made: the late forks are deleted on
/// arrival and never reach the caller, and nothing else is asked of the relays meanwhile (one
/// creation in flight per call).
#[test]
fn a_failover_while_forks_are_made_deletes_them_on_arrival() {
    let mut r = Run::new("fork-failover");
    let a = r.msg(&invite("+15555550100", "c96"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let first = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    r.msg(&respond(&first, 180, "forkA", Some(ANSWER)), gw(5062, 5062));
    let a = r.msg(&respond(&first, 183, "forkB", Some(FORK_B)), gw(5062, 5062));
    assert!(a.iter().any(|x| matches!(x, Action::CreateMedia { .. })));
    // The first trunk fails before the relays answer.
    let a = r.msg(&respond(&first, 503, "forkA", None), gw(5062, 5062));
    assert!(
        !a.iter().any(|x| matches!(x, Action::CreateMedia { .. })),
        "one creation in flight per call"
    );
    let a = fork_made(&mut r, id);
    let deleted = deleted(&a);
    assert!(
        deleted.contains(&("relay".into(), "s-f1".into())),
        "{deleted:?}"
    );
    assert!(
        sent_to(&a, fe()).iter().all(|m| m.status() != Some(183)),
        "the given-up fork's 183 never reaches the caller"
    );
}

/// The sessions `actions` delete (not those of an ended call).
fn deleted(actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|x| match x {
            Action::DeleteMedia { sessions, .. } => Some(sessions.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn finals(ms: &[Message]) -> Vec<u16> {
    statuses(ms).into_iter().filter(|s| *s >= 200).collect()
}

/// An INVITE from the lab's gateway to the relay's gateway-side port `port`.
fn gw_invite_on(port: u16, call_id: &str) -> Vec<u8> {
    format!(
        "INVITE sip:+14255551000@198.18.2.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/TCP 198.18.2.2:5060;branch=z9hG4bK-gw-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+12065550100@198.18.2.2>;tag=gwa\r\n\
         To: <sip:+14255551000@198.18.2.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:gw@198.18.2.2:5060>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// RFC 3261 §18.1.1 with `large_requests_over_tcp`: an INVITE to a UDP trunk's gateway that
/// is over 1300 bytes goes over TCP to the same address and port (its Via says TCP), the
/// gateway's responses on that connection are taken, and its CANCEL goes the same way; a small
/// one stays on UDP, and with the setting off a large one does too.
#[test]
fn a_large_invite_goes_over_tcp_where_the_trunk_says_so() {
    let mut r = Run::new("large");
    let big_offer = format!(
        "{OFFER}{}",
        (0..40)
            .map(|i| format!("a=x-note-{i}:{}\r\n", "n".repeat(20)))
            .collect::<String>()
    );
    let big = |call_id: &str| -> Vec<u8> {
        String::from_utf8(invite("+14255550100", call_id))
            .expect("utf8")
            .replace(
                &format!("Content-Length: {}\r\n\r\n{OFFER}", OFFER.len()),
                &format!("Content-Length: {}\r\n\r\n{big_offer}", big_offer.len()),
            )
            .into_bytes()
    };
    let tcp = Peer {
        transport: mediator_sip::Transport::Tcp,
        ..gw(5060, 5060)
    };
    // Off (the default): over UDP as configured.
    let a = r.msg(&big("L0"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert!(inv.wire_len() > 1300, "{} bytes", inv.wire_len());
    r.t.configs
        .get_mut("global")
        .expect("global")
        .value
        .settings
        .large_requests_over_tcp = Some(true);
    // On: a small INVITE stays on UDP...
    let a = r.msg(&invite("+14255550100", "L1"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    assert_eq!(requests(&sent_to(&a, gw(5060, 5060))).len(), 1);
    // ...a large one goes over TCP, its Via saying so.
    let a = r.msg(&big("L2"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    assert!(sent_to(&a, gw(5060, 5060)).is_empty());
    let inv = requests(&sent_to(&a, tcp))[0].clone();
    assert!(
        inv.header("via")
            .is_some_and(|v| v.starts_with("SIP/2.0/TCP 198.18.2.1:5060")),
        "{:?}",
        inv.header("via")
    );
    assert!(
        inv.header("contact").is_some_and(|c| !c.contains("tcp")),
        "the dialog stays on the trunk's transport: {:?}",
        inv.header("contact")
    );
    // The gateway answers on that connection: taken (it is the trunk's gateway).
    let a = r.msg(&respond(&inv, 180, "gw1", None), tcp);
    assert_eq!(statuses(&sent_to(&a, fe())), [180]);
    // A request from the gateway over TCP is still no trunk's: refused.
    let a = r.msg(&gw_invite_on(5060, "L3"), tcp);
    assert_eq!(statuses(&sent_to(&a, tcp)), [403]);
    // The call is ended before the answer: the CANCEL follows the INVITE over TCP.
    let a = r.e.end_call(id, "operator", r.now).expect("ended");
    assert_eq!(
        requests(&sent_to(&a, tcp))
            .iter()
            .filter_map(|m| m.method())
            .collect::<Vec<_>>(),
        ["CANCEL"]
    );
}

/// A failover to a trunk whose latching (or RTCP dead-call detection) differs from the first
/// trunk's, before the caller was sent any SDP: the sessions are made anew for it (new ids, the
/// old ones deleted), so the call runs with the trunk's own settings.
#[test]
fn a_failover_to_a_trunk_that_handles_media_otherwise_makes_its_sessions_anew() {
    let mut r = Run::new("failover-settings");
    r.t.configs
        .get_mut("trunk:198.18.2.2")
        .expect("the lab gateway's own configuration")
        .value
        .settings
        .rtp_latching = Some(true);
    let a = r.msg(&invite("+15555550100", "fs1"), fe());
    let first_ids: Vec<String> = a
        .iter()
        .filter_map(|x| match x {
            Action::CreateMedia { requests, .. } => {
                assert!(!requests[0].latching, "gw-5062 does not latch");
                Some(requests[0].session_id.clone())
            }
            _ => None,
        })
        .collect();
    let id = media_call(&a);
    let a = r.created(id);
    let first = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    let a = r.msg(&respond(&first, 503, "x1", None), gw(5062, 5062));
    let deleted: Vec<String> = a
        .iter()
        .filter_map(|x| match x {
            Action::DeleteMedia { sessions, .. } => Some(sessions.clone()),
            _ => None,
        })
        .flatten()
        .map(|(_, s)| s)
        .collect();
    // (The lab relay's answer names its session "s".)
    assert_eq!(deleted, ["s"], "the first trunk's session goes");
    let again = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { requests, .. } => Some(requests[0].clone()),
            _ => None,
        })
        .expect("sessions made anew");
    assert!(again.latching, "with the next trunk's latching");
    assert_ne!(again.session_id, first_ids[0]);
    assert!(
        sent_to(&a, gw(5060, 5060)).is_empty(),
        "the INVITE waits for them"
    );
    let a = r.created(id);
    assert_eq!(requests(&sent_to(&a, gw(5060, 5060))).len(), 1);
}

/// An rtcp-mux offer (RFC 5761) answered without `a=rtcp-mux`: the session stays muxed, so the
/// answerer's separate RTCP address is not given to the relay (which would refuse the whole
/// update, and the peer's RTP address with it).
#[test]
fn a_mux_offer_answered_without_mux_keeps_the_session_s_one_port() {
    let mut r = Run::new("mux");
    let muxed = format!("{OFFER}a=rtcp-mux\r\n");
    let inv = String::from_utf8(invite("+14255550100", "mx1"))
        .expect("utf8")
        .replace(
            &format!("Content-Length: {}\r\n\r\n{OFFER}", OFFER.len()),
            &format!("Content-Length: {}\r\n\r\n{muxed}", muxed.len()),
        );
    let a = r.msg(inv.as_bytes(), fe());
    let req = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { requests, .. } => Some(requests[0].clone()),
            _ => None,
        })
        .expect("a session");
    assert!(req.rtcp_mux);
    let id = media_call(&a);
    let a = r.created(id);
    let to_gw = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    // The gateway answers with RTCP on its own port (7001, implied) and no a=rtcp-mux.
    let a = r.msg(&respond(&to_gw, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    let update = a
        .iter()
        .find_map(|x| match x {
            Action::UpdateMedia { request, .. } => request.gateway,
            _ => None,
        })
        .expect("the gateway's address");
    assert_eq!(update.rtp.map(|e| e.port()), Some(7000));
    assert_eq!(
        update.rtcp, None,
        "no separate RTCP address on a muxed session"
    );
}

/// The same failover after the first trunk's early SDP reached the caller (a plain call): the
/// sessions are still made anew for the next trunk, whose answer reaches the caller in an early
/// dialog of its own (a new To tag), as a fork's would.
#[test]
fn a_failover_after_early_sdp_makes_sessions_anew_in_a_new_early_dialog() {
    let mut r = Run::new("failover-settings-early");
    r.t.configs
        .get_mut("trunk:198.18.2.2")
        .expect("the lab gateway's own configuration")
        .value
        .settings
        .rtp_latching = Some(true);
    let a = r.msg(&invite("+15555550100", "fs2"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let first = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    let a = r.msg(&respond(&first, 183, "x1", Some(ANSWER)), gw(5062, 5062));
    let early = sent_to(&a, fe());
    assert_eq!(statuses(&early), [183]);
    let tag1 = early[0].summary.to_tag.clone();
    let a = r.msg(&respond(&first, 503, "x1", None), gw(5062, 5062));
    assert!(a.iter().any(|x| matches!(x, Action::DeleteMedia { .. })));
    let again = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { requests, .. } => Some(requests[0].clone()),
            _ => None,
        })
        .expect("sessions made anew");
    assert!(again.latching);
    let a = r.created(id);
    let second = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&respond(&second, 183, "x2", Some(ANSWER)), gw(5060, 5060));
    let p = sent_to(&a, fe());
    assert_eq!(statuses(&p), [183]);
    assert_ne!(p[0].summary.to_tag, tag1, "a new early dialog");
    assert!(String::from_utf8_lossy(p[0].body()).contains("m=audio 30000 "));
}

//! Delayed offers on anchored trunks: an INVITE (or re-INVITE) without SDP goes on without SDP,
//! the callee's offer in its 2xx is anchored and re-pointed toward the caller, and the answer in
//! the caller's ACK updates the sessions and goes on in the ACK to the callee.

use super::*;

/// The lab INVITE from the Front End without a body.
fn invite_without_sdp(call_id: &str) -> Vec<u8> {
    let full = String::from_utf8(invite("+14255550100", call_id)).expect("utf8");
    let head = full.split("Content-Type:").next().expect("head");
    format!("{head}Content-Length: 0\r\n\r\n").into_bytes()
}

/// An ACK from the Front End to `ok` with `sdp` as its body.
fn ack_with(ok: &Message, cseq: u32, sdp: Option<&str>) -> Vec<u8> {
    let ack = String::from_utf8(fe_in_dialog("ACK", ok, cseq, "ack-delayed")).expect("utf8");
    match sdp {
        Some(s) => ack
            .replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{s}",
                    s.len()
                ),
            )
            .into_bytes(),
        None => ack.into_bytes(),
    }
}

/// The lab INVITE from the Front End without a body, offering `100rel`.
fn invite_100rel_without_sdp(call_id: &str) -> Vec<u8> {
    String::from_utf8(invite_without_sdp(call_id))
        .expect("utf8")
        .replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nSupported: 100rel\r\n",
        )
        .into_bytes()
}

/// The Front End's PRACK (RAck 1 7 INVITE) of the reliable provisional `p`, with `sdp`.
fn prack_with(p: &Message, branch: &str, sdp: &str) -> Vec<u8> {
    String::from_utf8(fe_in_dialog("PRACK", p, 8, branch))
        .expect("utf8")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "RAck: 1 7 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
        )
        .into_bytes()
}

/// The relays' answer for fork B's own sessions: "sb", at 30010 (pool) and 30012 (gateway).
fn fork_b_made(r: &mut Run, id: CallId) -> Vec<Action> {
    r.answered(id, "sb", 30010, 30012)
}

fn updates(actions: &[Action]) -> Vec<&MediaUpdate> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::UpdateMedia { request, .. } => Some(request.as_ref()),
            _ => None,
        })
        .collect()
}

fn port(ep: Option<Remote>) -> Option<u16> {
    ep.and_then(|r| r.rtp).map(|a| a.port())
}

/// A call from the Front End without SDP, up to the gateway's 200 with its offer; the INVITE
/// to the gateway and the actions of the 200.
fn to_the_offer(r: &mut Run, id: &str) -> (Message, Vec<Action>) {
    let a = r.msg(&invite_without_sdp(id), fe());
    assert!(
        !a.iter().any(|x| matches!(x, Action::CreateMedia { .. })),
        "nothing to anchor before the offer"
    );
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert!(inv.body().is_empty(), "the INVITE goes on without SDP");
    let a = r.msg(&respond(&inv, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    (inv, a)
}

fn created_call(a: &[Action]) -> CallId {
    a.iter()
        .find_map(|x| match x {
            Action::CreateMedia { call, requests, .. } => {
                assert_eq!(
                    requests[0].gateway.rtp.map(|e| e.port()),
                    Some(7000),
                    "the session is made with the callee's offer"
                );
                Some(*call)
            }
            _ => None,
        })
        .expect("sessions for the callee's offer")
}

#[test]
fn a_delayed_offer_is_anchored_from_the_callee_s_200_and_the_answer_in_the_ack() {
    let mut r = Run::new("delayed");
    let (inv, a) = to_the_offer(&mut r, "d1");
    assert!(
        finals(&sent_to(&a, fe())).is_empty(),
        "the caller waits for the sessions"
    );
    let id = created_call(&a);
    let a = r.created(id);
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200 to the caller");
    let offer = String::from_utf8_lossy(ok.body()).to_string();
    assert!(
        offer.contains("c=IN IP4 198.18.1.1") && offer.contains("m=audio 30000 "),
        "the caller is offered the relay's pool side:\n{offer}"
    );
    // The caller's answer in its ACK: the session learns where it receives, and the gateway's
    // ACK carries the answer re-pointed at the relay's gateway side.
    let a = r.msg(&ack_with(&ok, 7, Some(OFFER)), fe());
    assert!(
        updates(&a).iter().any(|u| port(u.pool) == Some(6000)),
        "the session learns the caller's address"
    );
    let to_gw = sent_to(&a, gw(5060, 5060));
    assert_eq!(to_gw.len(), 1);
    let ack = &to_gw[0];
    assert_eq!(ack.method(), Some("ACK"));
    assert_eq!(ack.summary.cseq, inv.summary.cseq);
    let answer = String::from_utf8_lossy(ack.body()).to_string();
    assert!(
        answer.contains("c=IN IP4 198.18.2.1") && answer.contains("m=audio 30002 "),
        "the gateway's ACK carries the answer anchored:\n{answer}"
    );
    let info = r.e.call(id, r.now).expect("the call");
    assert_eq!(info.state, "confirmed");
}

/// The gateway's provisional to `inv` with `sdp`, reliable (RFC 3262) when `rseq` is given.
fn provisional(inv: &Message, status: u16, sdp: Option<&str>, rseq: Option<u32>) -> Vec<u8> {
    let mut extra = vec![("Contact", "<sip:gw@198.18.2.2:5060>".to_string())];
    if let Some(n) = rseq {
        extra.push(("Require", "100rel".into()));
        extra.push(("RSeq", n.to_string()));
    }
    build_response(
        inv,
        status,
        reason_phrase(status),
        "gw1",
        &extra,
        sdp.map(|s| ("application/sdp", s.as_bytes())),
    )
}

#[test]
fn an_early_offer_in_a_183_is_anchored_for_early_media_and_answered_in_the_ack() {
    let mut r = Run::new("delayed-early");
    let a = r.msg(&invite_without_sdp("d5"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&provisional(&inv, 183, Some(ANSWER), None), gw(5060, 5060));
    let id = created_call(&a);
    assert!(
        statuses(&sent_to(&a, fe())).is_empty(),
        "the 183 waits for its sessions"
    );
    let a = r.created(id);
    let p = sent_to(&a, fe());
    assert_eq!(statuses(&p), [183]);
    let early = String::from_utf8_lossy(p[0].body()).to_string();
    assert!(
        early.contains("c=IN IP4 198.18.1.1") && early.contains("m=audio 30000 "),
        "the caller is offered the relay's pool side, for early media:\n{early}"
    );
    // The same 183 again, then the 200 repeating the offer: the caller is given the same SDP,
    // and nothing is anchored twice.
    let a = r.msg(&provisional(&inv, 183, Some(ANSWER), None), gw(5060, 5060));
    assert_eq!(sent_to(&a, fe())[0].body(), p[0].body());
    let a = r.msg(&respond(&inv, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    assert!(!a.iter().any(|x| matches!(x, Action::CreateMedia { .. })));
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200 to the caller");
    assert_eq!(ok.body(), p[0].body(), "the 2xx offers what the 183 did");
    let a = r.msg(&ack_with(&ok, 7, Some(OFFER)), fe());
    assert!(
        updates(&a).iter().any(|u| port(u.pool) == Some(6000)),
        "the session learns the caller's address"
    );
    let ack = sent_to(&a, gw(5060, 5060))
        .into_iter()
        .find(|m| m.method() == Some("ACK"))
        .expect("ACK to the gateway");
    let answer = String::from_utf8_lossy(ack.body()).to_string();
    assert!(
        answer.contains("c=IN IP4 198.18.2.1") && answer.contains("m=audio 30002 "),
        "the gateway's ACK carries the answer anchored:\n{answer}"
    );
    assert_eq!(r.e.call(id, r.now).expect("the call").state, "confirmed");
}

#[test]
fn a_200_that_comes_while_the_early_offer_is_anchored_follows_its_183() {
    let mut r = Run::new("delayed-early-race");
    let a = r.msg(&invite_without_sdp("d6"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&provisional(&inv, 183, Some(ANSWER), None), gw(5060, 5060));
    let id = created_call(&a);
    // A 180 and the 200 before the relay answers: the caller hears nothing before the offer.
    let a = r.msg(&provisional(&inv, 180, None, None), gw(5060, 5060));
    assert!(sent_to(&a, fe()).is_empty());
    let a = r.msg(&respond(&inv, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    assert!(sent_to(&a, fe()).is_empty());
    assert!(!a.iter().any(|x| matches!(x, Action::CreateMedia { .. })));
    let a = r.created(id);
    let to_fe = sent_to(&a, fe());
    assert_eq!(statuses(&to_fe), [183, 200], "the offer, then the answer");
    assert_eq!(to_fe[0].body(), to_fe[1].body());
    let a = r.msg(&ack_with(&to_fe[1], 7, Some(OFFER)), fe());
    assert!(updates(&a).iter().any(|u| port(u.pool) == Some(6000)));
}

#[test]
fn a_reliable_183_s_early_offer_is_answered_in_the_prack() {
    let mut r = Run::new("delayed-prack");
    let a = r.msg(&invite_100rel_without_sdp("d7"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert!(
        inv.header("supported")
            .is_some_and(|s| s.contains("100rel")),
        "100rel is offered to the callee as the caller offered it"
    );
    let a = r.msg(
        &provisional(&inv, 183, Some(ANSWER), Some(1)),
        gw(5060, 5060),
    );
    let id = created_call(&a);
    let a = r.created(id);
    let p = sent_to(&a, fe());
    assert_eq!(statuses(&p), [183]);
    assert_eq!(p[0].header("rseq").as_deref(), Some("1"));
    assert!(String::from_utf8_lossy(p[0].body()).contains("m=audio 30000 "));
    // The caller's PRACK brings its answer: the session learns where it receives, and the
    // PRACK goes on with the answer anchored.
    let prack = prack_with(&p[0], "prack-d7", OFFER);
    let a = r.msg(&prack, fe());
    assert!(
        updates(&a).iter().any(|u| port(u.pool) == Some(6000)),
        "the session learns the caller's address from the PRACK"
    );
    let to_gw = requests(&sent_to(&a, gw(5060, 5060)))
        .into_iter()
        .find(|m| m.method() == Some("PRACK"))
        .expect("PRACK to the gateway")
        .clone();
    let answer = String::from_utf8_lossy(to_gw.body()).to_string();
    assert!(answer.contains("m=audio 30002 "), "{answer}");
    assert_eq!(to_gw.header("rack").as_deref(), Some("1 7 INVITE"));
    let a = r.msg(&respond(&to_gw, 200, "gw1", None), gw(5060, 5060));
    assert_eq!(statuses(&sent_to(&a, fe())), [200], "the PRACK's 200");
    // The 2xx brings no new offer: it reaches the caller without SDP, and its ACK has none.
    let a = r.msg(&respond(&inv, 200, "gw1", None), gw(5060, 5060));
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200 to the caller");
    assert!(ok.body().is_empty());
    let a = r.msg(&ack_with(&ok, 7, None), fe());
    assert_eq!(methods(&sent_to(&a, gw(5060, 5060))), ["ACK"]);
    assert_eq!(r.e.call(id, r.now).expect("the call").state, "confirmed");
}

#[test]
fn a_failover_after_an_early_offer_deletes_its_sessions_and_the_next_trunk_offers_anew() {
    let mut r = Run::new("delayed-early-failover");
    let without = String::from_utf8(invite_without_sdp("d8")).expect("utf8");
    let a = r.msg(
        without.replace("+14255550100", "+15555550100").as_bytes(),
        fe(),
    );
    let first = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    let a = r.msg(
        &provisional(&first, 183, Some(ANSWER), None),
        gw(5062, 5062),
    );
    let id = created_call(&a);
    let a = r.created(id);
    assert_eq!(statuses(&sent_to(&a, fe())), [183]);
    let a = r.msg(&respond(&first, 503, "gw1", None), gw(5062, 5062));
    let deleted: Vec<&(String, String)> = a
        .iter()
        .filter_map(|x| match x {
            Action::DeleteMedia { sessions, .. } => Some(sessions),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        deleted.len(),
        1,
        "the first trunk's early sessions are deleted"
    );
    let second = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert!(
        second.body().is_empty(),
        "the next INVITE has no SDP either"
    );
    // The next trunk's early offer gets sessions of their own, with new ids.
    let moved = ANSWER.replace("7000", "7004");
    let a = r.msg(
        &provisional(&second, 183, Some(&moved), None),
        gw(5060, 5060),
    );
    let ids: Vec<String> = a
        .iter()
        .filter_map(|x| match x {
            Action::CreateMedia { requests, .. } => {
                assert_eq!(port(Some(requests[0].gateway)), Some(7004));
                Some(requests[0].session_id.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(
        !deleted.iter().any(|(_, s)| *s == ids[0]),
        "a new session id ({}) never races the old one's deletion",
        ids[0]
    );
    let a = r.created(id);
    assert_eq!(statuses(&sent_to(&a, fe())), [183]);
}

#[test]
fn an_ack_without_the_answer_ends_the_call() {
    let mut r = Run::new("delayed-noanswer");
    let (_inv, a) = to_the_offer(&mut r, "d2");
    let id = created_call(&a);
    let a = r.created(id);
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    let a = r.msg(&ack_with(&ok, 7, None), fe());
    let to_gw = methods(&sent_to(&a, gw(5060, 5060)));
    assert_eq!(to_gw, ["ACK", "BYE"], "ACKed, then hung up");
    assert_rejecting_ack(&a);
    assert!(methods(&sent_to(&a, fe())).contains(&"BYE".to_string()));
    let rec = ended(&a).expect("ended");
    assert_eq!(rec.status, 488);
    assert!(rec.end_reason.contains("no answer"), "{}", rec.end_reason);
}

#[test]
fn relays_that_cannot_anchor_the_callee_s_offer_end_both_legs() {
    let mut r = Run::new("delayed-relay");
    let (_inv, a) = to_the_offer(&mut r, "d3");
    let id = created_call(&a);
    let a = r.e.on_media_created(
        id,
        "pool.lab.mediator",
        Err((503, "no relay".into())),
        r.now,
    );
    assert_eq!(
        methods(&sent_to(&a, gw(5060, 5060))),
        ["ACK", "BYE"],
        "the callee's 2xx is ACKed and hung up"
    );
    assert_rejecting_ack(&a);
    assert_eq!(finals(&sent_to(&a, fe())), [503]);
    assert!(ended(&a).is_some());
}

#[test]
fn a_re_invite_without_sdp_gets_the_offer_anchored_both_ways() {
    let mut r = Run::new("delayed-reinvite");
    let (inv, ok) = answered(&mut r, "d4");
    let a = r.msg(&fe_in_dialog("INVITE", &ok, 8, "re-d4"), fe());
    let re = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert!(re.body().is_empty(), "the re-INVITE goes on without SDP");
    // The gateway offers a new address (a new version of its SDP).
    let moved = ANSWER.replace("o=- 2 2", "o=- 2 3").replace("7000", "7002");
    let a = r.msg(&respond(&re, 200, "gw1", Some(&moved)), gw(5060, 5060));
    assert!(updates(&a).iter().any(|u| port(u.gateway) == Some(7002)));
    let ok2 = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200 to the caller");
    let offer = String::from_utf8_lossy(ok2.body()).to_string();
    assert!(offer.contains("m=audio 30000 "), "{offer}");
    let answer = OFFER.replace("o=- 1 1", "o=- 1 2").replace("6000", "6002");
    let a = r.msg(&ack_with(&ok2, 8, Some(&answer)), fe());
    assert!(updates(&a).iter().any(|u| port(u.pool) == Some(6002)));
    let ack = sent_to(&a, gw(5060, 5060))
        .into_iter()
        .find(|m| m.method() == Some("ACK"))
        .expect("ACK to the gateway");
    assert_eq!(ack.summary.to_tag.as_deref(), Some("gw1"));
    assert!(String::from_utf8_lossy(ack.body()).contains("m=audio 30002 "));
    let _ = inv;
}

fn finals(ms: &[Message]) -> Vec<u16> {
    statuses(ms).into_iter().filter(|s| *s >= 200).collect()
}

fn methods(ms: &[Message]) -> Vec<String> {
    ms.iter()
        .filter_map(|m| m.method().map(str::to_string))
        .collect()
}

#[test]
fn a_cancel_while_the_callee_s_offer_is_anchored_ends_both_legs() {
    let mut r = Run::new("delayed-cancel");
    let a = r.msg(&invite_without_sdp("d6"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&respond(&inv, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    let id = created_call(&a);
    let cancel = String::from_utf8(invite_without_sdp("d6"))
        .expect("utf8")
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 7 INVITE", "CSeq: 7 CANCEL");
    let a = r.msg(cancel.as_bytes(), fe());
    assert_eq!(
        finals(&sent_to(&a, fe())),
        [200, 487],
        "the CANCEL's 200, the INVITE's 487"
    );
    assert_eq!(methods(&sent_to(&a, gw(5060, 5060))), ["ACK", "BYE"]);
    assert!(ended(&a).is_some());
    // The sessions made meanwhile are deleted when they come.
    let a = r.created(id);
    assert!(a.iter().any(|x| matches!(x, Action::DeleteMedia { .. })));
}

#[test]
fn a_callee_s_2xx_without_the_offer_or_with_another_body_is_refused() {
    let mut r = Run::new("delayed-nooffer");
    let a = r.msg(&invite_without_sdp("d7"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&respond(&inv, 200, "gw1", None), gw(5060, 5060));
    assert_eq!(finals(&sent_to(&a, fe())), [488]);
    assert_eq!(methods(&sent_to(&a, gw(5060, 5060))), ["ACK", "BYE"]);
    // A body Mediator cannot read (multipart) never passes the anchoring.
    let mut r = Run::new("delayed-multipart");
    let a = r.msg(&invite_without_sdp("d9"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let multipart = build_response(
        &inv,
        200,
        "OK",
        "gw9",
        &[("Contact", "<sip:gw@198.18.2.2:5060>".into())],
        Some(("multipart/mixed;boundary=x", b"--x\r\n\r\nv=0\r\n--x--\r\n")),
    );
    let a = r.msg(&multipart, gw(5060, 5060));
    let back = sent_to(&a, fe());
    assert_eq!(finals(&back), [488]);
    assert!(
        back.iter().all(|m| m.body().is_empty()),
        "nothing of the callee's body reaches the caller"
    );
}

#[test]
fn an_ack_without_the_answer_to_a_re_invite_s_offer_ends_the_call() {
    let mut r = Run::new("delayed-reack");
    let (_inv, ok) = answered(&mut r, "d10");
    let a = r.msg(&fe_in_dialog("INVITE", &ok, 8, "re-d10"), fe());
    let re = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let moved = ANSWER.replace("o=- 2 2", "o=- 2 3");
    let a = r.msg(&respond(&re, 200, "gw1", Some(&moved)), gw(5060, 5060));
    let ok2 = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    let a = r.msg(&ack_with(&ok2, 8, None), fe());
    assert!(methods(&sent_to(&a, gw(5060, 5060))).contains(&"BYE".to_string()));
    assert_rejecting_ack(&a);
    assert_eq!(ended(&a).expect("ended").status, 488);
}

/// The ACK sent to the gateway answers its offer by rejecting every stream (RFC 3261
/// §13.2.2.4: an offer in a 2xx is answered in the ACK even when the call is to end).
fn assert_rejecting_ack(a: &[Action]) {
    let ack = sent_to(a, gw(5060, 5060))
        .into_iter()
        .find(|m| m.method() == Some("ACK"))
        .expect("ACK to the gateway");
    let body = String::from_utf8_lossy(ack.body()).to_string();
    assert!(
        body.contains("m=audio 0 RTP/AVP 8"),
        "the ACK rejects the stream:\n{body}"
    );
}

/// A re-INVITE that adds a plain RTP stream (video to an audio call) gets a session for it
/// before it goes on, anchored both ways; an SRTP stream added mid-call gets one with keys.
#[test]
fn a_stream_added_by_a_re_invite_is_anchored() {
    let mut r = Run::new("add-stream");
    let (_inv, ok) = answered(&mut r, "d11");
    let with_video = format!(
        "{}m=video 6002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
        OFFER.replace("o=- 1 1", "o=- 1 2")
    );
    let reinvite = String::from_utf8(fe_in_dialog("INVITE", &ok, 8, "re-d11"))
        .expect("utf8")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{with_video}",
                with_video.len()
            ),
        );
    let a = r.msg(reinvite.as_bytes(), fe());
    let (id, requests_) = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { call, requests, .. } => Some((*call, requests.clone())),
            _ => None,
        })
        .expect("a session for the new stream");
    assert_eq!(requests_.len(), 1);
    assert_eq!(requests_[0].pool.rtp.map(|e| e.port()), Some(6002));
    assert!(
        requests(&sent_to(&a, gw(5060, 5060))).is_empty(),
        "held until it exists"
    );
    let a = r.created_video(id);
    let re = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let body = String::from_utf8_lossy(re.body()).to_string();
    assert!(
        body.contains("m=audio 30002 ") && body.contains("m=video 30006 "),
        "both streams anchored toward the gateway:\n{body}"
    );
    let gw_video = format!(
        "{}m=video 7002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
        ANSWER.replace("o=- 2 2", "o=- 2 3")
    );
    let a = r.msg(&respond(&re, 200, "gw1", Some(&gw_video)), gw(5060, 5060));
    assert!(
        updates(&a)
            .iter()
            .any(|u| u.session_id == "v" && port(u.gateway) == Some(7002)),
        "the new session learns the gateway's video address"
    );
    let ok2 = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    let body = String::from_utf8_lossy(ok2.body()).to_string();
    assert!(body.contains("m=video 30004 "), "{body}");

    // An SRTP stream added mid-call: refused, nothing made.
    let savp = format!(
        "{}m=video 6004 RTP/SAVP 96\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
        with_video.replace("o=- 1 2", "o=- 1 3")
    );
    let reinvite = String::from_utf8(fe_in_dialog("INVITE", &ok, 9, "re2-d11"))
        .expect("utf8")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{savp}",
                savp.len()
            ),
        );
    let a = r.msg(reinvite.as_bytes(), fe());
    // An SRTP stream added mid-call is anchored too: its session holds the caller's keys (the
    // gateway's leg, on UDP, stays plain).
    let reqs = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { requests, .. } => Some(requests.clone()),
            _ => None,
        })
        .expect("a session for the SRTP stream");
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].srtp[0].is_some(), "the caller's keys");
    assert!(reqs[0].srtp[1].is_none(), "plain toward a UDP gateway");
}

/// A re-INVITE without SDP whose 2xx offers a stream more (video): the 2xx is held while the
/// relays make a session for it, then reaches the caller with both streams anchored; the answer
/// in the caller's ACK updates both sessions and goes on anchored in the ACK to the gateway.
#[test]
fn a_stream_added_by_the_offer_in_a_2xx_to_a_re_invite_without_sdp_is_anchored() {
    let mut r = Run::new("add-stream-2xx");
    let (_inv, ok) = answered(&mut r, "d12");
    let a = r.msg(&fe_in_dialog("INVITE", &ok, 8, "re-d12"), fe());
    let re = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert!(re.body().is_empty());
    let gw_video = format!(
        "{}m=video 7002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
        ANSWER.replace("o=- 2 2", "o=- 2 3")
    );
    let a = r.msg(&respond(&re, 200, "gw1", Some(&gw_video)), gw(5060, 5060));
    let (id, reqs) = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { call, requests, .. } => Some((*call, requests.clone())),
            _ => None,
        })
        .expect("a session for the new stream");
    assert_eq!(reqs.len(), 1);
    assert_eq!(port(Some(reqs[0].gateway)), Some(7002));
    assert!(sent_to(&a, fe()).is_empty(), "the 2xx waits for it");
    let a = r.created_video(id);
    let ok2 = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200 to the caller");
    let offer = String::from_utf8_lossy(ok2.body()).to_string();
    assert!(
        offer.contains("m=audio 30000 ") && offer.contains("m=video 30004 "),
        "both streams offered at the relay:\n{offer}"
    );
    let fe_video = format!(
        "{}m=video 6002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
        OFFER.replace("o=- 1 1", "o=- 1 2")
    );
    let a = r.msg(&ack_with(&ok2, 8, Some(&fe_video)), fe());
    assert!(
        updates(&a)
            .iter()
            .any(|u| u.session_id == "v" && port(u.pool) == Some(6002)),
        "the new session learns the caller's video address"
    );
    let ack = sent_to(&a, gw(5060, 5060))
        .into_iter()
        .find(|m| m.method() == Some("ACK"))
        .expect("ACK to the gateway");
    let answer = String::from_utf8_lossy(ack.body()).to_string();
    assert!(
        answer.contains("m=audio 30002 ") && answer.contains("m=video 30006 "),
        "{answer}"
    );
    assert_eq!(r.e.call(id, r.now).expect("the call").state, "confirmed");
}

/// A caller's PRACK whose answer to the callee's early offer cannot be used (here: not SDP
/// Mediator can read): the PRACK gets 488, and the attempt is CANCELled and the call fails
/// rather than the callee waiting for an answer that will not come.
#[test]
fn a_prack_answer_that_cannot_be_used_ends_the_attempt() {
    let mut r = Run::new("delayed-prack-bad");
    let a = r.msg(&invite_100rel_without_sdp("d13"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(
        &provisional(&inv, 183, Some(ANSWER), Some(1)),
        gw(5060, 5060),
    );
    let id = created_call(&a);
    let a = r.created(id);
    let p = sent_to(&a, fe())[0].clone();
    let bad = "v=0\r\nthis is not SDP\r\n";
    let prack = prack_with(&p, "prack-d13", bad);
    let a = r.msg(&prack, fe());
    let to_fe = statuses(&sent_to(&a, fe()));
    assert!(to_fe.contains(&488), "{to_fe:?}");
    assert!(
        methods(&sent_to(&a, gw(5060, 5060))).contains(&"CANCEL".to_string()),
        "the attempt is given up"
    );
    assert!(ended(&a).is_some());
}

/// A trunk that fails while its early offer's sessions are still being made: the next INVITE
/// goes at once; the late sessions are deleted when the relays answer, never joined and never
/// the cause of a second INVITE; the next trunk's early offer waits for that answer if it comes
/// first, then gets sessions of its own (other ids).
#[test]
fn a_failover_while_the_early_offer_is_anchored_discards_the_late_sessions() {
    let mut r = Run::new("delayed-early-race-failover");
    let without = String::from_utf8(invite_without_sdp("d14")).expect("utf8");
    let a = r.msg(
        without.replace("+14255550100", "+15555550100").as_bytes(),
        fe(),
    );
    let first = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    let a = r.msg(
        &provisional(&first, 183, Some(ANSWER), None),
        gw(5062, 5062),
    );
    let id = created_call(&a);
    let stale_id = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { requests, .. } => Some(requests[0].session_id.clone()),
            _ => None,
        })
        .expect("asked");
    // The first trunk fails before the relays answer.
    let a = r.msg(&respond(&first, 503, "gw1", None), gw(5062, 5062));
    let second = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert!(second.body().is_empty());
    // The next trunk offers early before the late answer comes: its sessions wait.
    let moved = ANSWER.replace("7000", "7004");
    let a = r.msg(
        &provisional(&second, 183, Some(&moved), None),
        gw(5060, 5060),
    );
    assert!(
        !a.iter().any(|x| matches!(x, Action::CreateMedia { .. })),
        "one creation in flight per call"
    );
    // The late answer: deleted, and the waiting sessions asked now, with other ids.
    let a = r.created(id);
    assert!(
        a.iter().any(|x| matches!(x, Action::DeleteMedia { .. })),
        "the late sessions are deleted"
    );
    assert!(
        requests(&sent_to(&a, gw(5060, 5060))).is_empty()
            && requests(&sent_to(&a, gw(5062, 5062))).is_empty(),
        "no INVITE goes again"
    );
    assert!(sent_to(&a, fe()).is_empty());
    let asked = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { requests, .. } => Some(requests[0].clone()),
            _ => None,
        })
        .expect("the next trunk's sessions");
    assert_eq!(port(Some(asked.gateway)), Some(7004));
    assert_ne!(asked.session_id, stale_id);
    let a = r.created(id);
    let p = sent_to(&a, fe());
    assert_eq!(
        statuses(&p),
        [183],
        "the next trunk's early offer reaches the caller"
    );
}

/// After the caller had the first trunk's early offer, the next trunk's reaches it in an early
/// dialog of its own (a new To tag), as a fork's would — never as a second offer in the first.
#[test]
fn the_next_trunk_s_early_offer_comes_in_a_new_early_dialog() {
    let mut r = Run::new("delayed-early-new-dialog");
    let without = String::from_utf8(invite_without_sdp("d15")).expect("utf8");
    let a = r.msg(
        without.replace("+14255550100", "+15555550100").as_bytes(),
        fe(),
    );
    let first = requests(&sent_to(&a, gw(5062, 5062)))[0].clone();
    let a = r.msg(
        &provisional(&first, 183, Some(ANSWER), None),
        gw(5062, 5062),
    );
    let id = created_call(&a);
    let a = r.created(id);
    let tag1 = sent_to(&a, fe())[0].summary.to_tag.clone().expect("a tag");
    let a = r.msg(&respond(&first, 503, "gw1", None), gw(5062, 5062));
    let second = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(
        &provisional(&second, 183, Some(ANSWER), None),
        gw(5060, 5060),
    );
    let id2 = created_call(&a);
    let a = r.created(id2);
    let p = sent_to(&a, fe());
    assert_eq!(statuses(&p), [183]);
    assert_ne!(p[0].summary.to_tag, Some(tag1), "a new early dialog");
    let a = r.msg(&respond(&second, 200, "gw2", Some(ANSWER)), gw(5060, 5060));
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    assert_eq!(
        ok.summary.to_tag, p[0].summary.to_tag,
        "the 2xx in that dialog"
    );
    let a = r.msg(&ack_with(&ok, 7, Some(OFFER)), fe());
    assert_eq!(methods(&sent_to(&a, gw(5060, 5060))), ["ACK"]);
}

/// A re-INVITE without SDP whose 2xx adds a stream, and a call that ends while its session is
/// being made: the held 2xx is ACKed — its offer answered, every stream rejected — before the
/// BYE to that side.
#[test]
fn a_held_2xx_is_acked_with_a_rejecting_answer_before_the_bye() {
    let mut r = Run::new("add-stream-2xx-end");
    let (_inv, ok) = answered(&mut r, "d16");
    let a = r.msg(&fe_in_dialog("INVITE", &ok, 8, "re-d16"), fe());
    let re = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let gw_video = format!(
        "{}m=video 7002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
        ANSWER.replace("o=- 2 2", "o=- 2 3")
    );
    let a = r.msg(&respond(&re, 200, "gw1", Some(&gw_video)), gw(5060, 5060));
    let id = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { call, .. } => Some(*call),
            _ => None,
        })
        .expect("a session for the video");
    let a = r.e.end_call(id, "operator", r.now).expect("ended");
    let to_gw = sent_to(&a, gw(5060, 5060));
    assert_eq!(methods(&to_gw), ["ACK", "BYE"], "ACKed before the BYE");
    let body = String::from_utf8_lossy(to_gw[0].body()).to_string();
    assert!(
        body.contains("m=audio 0 ") && body.contains("m=video 0 "),
        "{body}"
    );
}

/// Forks with a delayed offer: each early dialog's offer is anchored in sessions of its own and
/// reaches the caller in its own early dialog (fork A's reliably, answered in its PRACK; fork B's
/// in an unreliable 183, with its own sessions' addresses). Fork B answers and wins: its offer and
/// sessions are the call's, fork A's are deleted, the 2xx carries fork B's offer in fork B's
/// early dialog and the caller's ACK answers it. A third dialog that never offered and answers
/// is refused; SDP in a PRACK that answers nothing is refused before anything is anchored.
#[test]
fn each_early_dialog_s_offer_is_anchored_on_its_own() {
    let mut r = Run::new("delayed-fork");
    let a = r.msg(&invite_100rel_without_sdp("d17"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    // A reliable 180 without SDP first: the caller's PRACK with SDP answers nothing.
    let a = r.msg(&provisional(&inv, 180, None, Some(1)), gw(5060, 5060));
    let p180 = sent_to(&a, fe())[0].clone();
    let prack = prack_with(&p180, "prack-d17", OFFER);
    let a = r.msg(&prack, fe());
    assert_eq!(
        finals(&sent_to(&a, fe())),
        [488],
        "nothing to answer: refused"
    );
    assert!(sent_to(&a, gw(5060, 5060)).is_empty(), "never passed raw");
    // Fork A offers reliably: anchored, answered in the caller's PRACK.
    let fork_a = build_response(
        &inv,
        183,
        "Session Progress",
        "forkA",
        &[
            ("Contact", "<sip:gw@198.18.2.2:5060>".into()),
            ("Require", "100rel".into()),
            ("RSeq", "2".into()),
        ],
        Some(("application/sdp", ANSWER.as_bytes())),
    );
    let a = r.msg(&fork_a, gw(5060, 5060));
    let id = created_call(&a);
    let a = r.created(id);
    let pa = sent_to(&a, fe())[0].clone();
    assert!(
        String::from_utf8_lossy(pa.body()).contains("m=audio 30000 "),
        "fork A's offer"
    );
    let prack = String::from_utf8(prack_with(&pa, "prack-d17a", OFFER))
        .expect("utf8")
        .replace("RAck: 1 7 INVITE", "RAck: 2 7 INVITE")
        .replace("CSeq: 8 PRACK", "CSeq: 9 PRACK");
    let a = r.msg(prack.as_bytes(), fe());
    let to_gw = sent_to(&a, gw(5060, 5060));
    assert_eq!(
        (to_gw[0].method(), to_gw[0].summary.to_tag.as_deref()),
        (Some("PRACK"), Some("forkA"))
    );
    // Fork B offers too: sessions of its own (new ids), its 183 held until they exist.
    let fork_b_sdp = ANSWER.replace("7000", "7008");
    let fork_b = build_response(
        &inv,
        183,
        "Session Progress",
        "forkB",
        &[("Contact", "<sip:gw@198.18.2.2:5060>".into())],
        Some(("application/sdp", fork_b_sdp.as_bytes())),
    );
    let a = r.msg(&fork_b, gw(5060, 5060));
    assert!(
        sent_to(&a, fe()).is_empty(),
        "held while its sessions are made"
    );
    let reqs = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { requests, .. } => Some(requests.clone()),
            _ => None,
        })
        .expect("sessions for fork B's offer");
    assert_eq!(port(Some(reqs[0].gateway)), Some(7008));
    assert!(reqs[0].session_id.ends_with("-1"), "{}", reqs[0].session_id);
    assert_eq!(
        reqs[0].fork_of, None,
        "sessions of its own, not forks: no port was offered"
    );
    let a = fork_b_made(&mut r, id);
    let pb = sent_to(&a, fe())[0].clone();
    assert_eq!(pb.status(), Some(183));
    assert!(
        String::from_utf8_lossy(pb.body()).contains("m=audio 30010 "),
        "fork B's offer, at its own sessions: {}",
        String::from_utf8_lossy(pb.body())
    );
    assert_ne!(
        pb.summary.to_tag, pa.summary.to_tag,
        "in its own early dialog"
    );
    // Fork B answers with its offer: it wins; fork A's sessions go.
    let ok_b = build_response(
        &inv,
        200,
        "OK",
        "forkB",
        &[("Contact", "<sip:gw@198.18.2.2:5060>".into())],
        Some(("application/sdp", fork_b_sdp.as_bytes())),
    );
    let a = r.msg(&ok_b, gw(5060, 5060));
    let deleted = deleted(&a);
    assert_eq!(deleted, [("relay".into(), "s".into())], "fork A's sessions");
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    assert_eq!(ok.summary.to_tag, pb.summary.to_tag);
    assert!(String::from_utf8_lossy(ok.body()).contains("m=audio 30010 "));
    // The caller's ACK answers it: fork B's sessions learn the caller's address.
    let a = r.msg(&ack_with(&ok, 7, Some(OFFER)), fe());
    let u = updates(&a);
    assert_eq!(u[0].session_id, "sb");
    assert_eq!(port(u[0].pool), Some(6000));
    let to_gw = sent_to(&a, gw(5060, 5060));
    let ack = to_gw
        .iter()
        .find(|m| m.method() == Some("ACK"))
        .expect("ACK");
    assert_eq!(ack.summary.to_tag.as_deref(), Some("forkB"));
    assert!(String::from_utf8_lossy(ack.body()).contains("m=audio 30012 "));
    assert_eq!(r.e.call(id, r.now).expect("the call").state, "confirmed");
}

/// Forks with a delayed offer: a 2xx from an early dialog that never offered (the sessions point
/// at another's media, and it brings no offer to take instead) is refused.
#[test]
fn a_2xx_from_an_early_dialog_without_an_offer_is_refused() {
    let mut r = Run::new("delayed-fork-none");
    let a = r.msg(&invite_100rel_without_sdp("d18"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(
        &provisional(&inv, 183, Some(ANSWER), Some(1)),
        gw(5060, 5060),
    );
    let id = created_call(&a);
    r.created(id);
    let ok_c = build_response(
        &inv,
        200,
        "OK",
        "forkC",
        &[("Contact", "<sip:gw@198.18.2.2:5060>".into())],
        None,
    );
    let a = r.msg(&ok_c, gw(5060, 5060));
    assert_eq!(finals(&sent_to(&a, fe())), [488]);
    assert_eq!(methods(&sent_to(&a, gw(5060, 5060))), ["ACK", "BYE"]);
}

/// Forks with a delayed offer, both reliable: the caller answers each early dialog's offer in its
/// own PRACK, which updates that dialog's own sessions and reaches that dialog's callee re-pointed
/// at them. Fork A (the call's own) answers and wins: fork B's sessions are deleted.
#[test]
fn each_early_dialog_s_offer_is_answered_in_its_own_prack() {
    let mut r = Run::new("delayed-fork-prack");
    let a = r.msg(&invite_100rel_without_sdp("d19"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let reliable = |tag: &str, rseq: u32, sdp: &str| {
        build_response(
            &inv,
            183,
            "Session Progress",
            tag,
            &[
                ("Contact", "<sip:gw@198.18.2.2:5060>".into()),
                ("Require", "100rel".into()),
                ("RSeq", rseq.to_string()),
            ],
            Some(("application/sdp", sdp.as_bytes())),
        )
    };
    let a = r.msg(&reliable("forkA", 1, ANSWER), gw(5060, 5060));
    let id = created_call(&a);
    let a = r.created(id);
    let pa = sent_to(&a, fe())[0].clone();
    let fork_b_sdp = ANSWER.replace("7000", "7008");
    let a = r.msg(&reliable("forkB", 1, &fork_b_sdp), gw(5060, 5060));
    assert!(sent_to(&a, fe()).is_empty());
    let a = fork_b_made(&mut r, id);
    let pb = sent_to(&a, fe())[0].clone();
    assert!(String::from_utf8_lossy(pb.body()).contains("m=audio 30010 "));
    // The caller answers fork B's offer in fork B's early dialog.
    let answer_b = OFFER.replace("6000", "6010");
    let a = r.msg(&prack_with(&pb, "prack-d19b", &answer_b), fe());
    let u = updates(&a);
    assert_eq!(
        (u[0].session_id.as_str(), port(u[0].pool)),
        ("sb", Some(6010))
    );
    let to_gw = sent_to(&a, gw(5060, 5060));
    assert_eq!(to_gw[0].summary.to_tag.as_deref(), Some("forkB"));
    assert!(String::from_utf8_lossy(to_gw[0].body()).contains("m=audio 30012 "));
    // And fork A's in fork A's.
    let a = r.msg(&prack_with(&pa, "prack-d19a", OFFER), fe());
    let u = updates(&a);
    assert_eq!(
        (u[0].session_id.as_str(), port(u[0].pool)),
        ("s", Some(6000))
    );
    let to_gw = sent_to(&a, gw(5060, 5060));
    assert_eq!(to_gw[0].summary.to_tag.as_deref(), Some("forkA"));
    assert!(String::from_utf8_lossy(to_gw[0].body()).contains("m=audio 30002 "));
    // Fork A answers: the call's own offer wins, fork B's sessions go.
    let ok_a = build_response(
        &inv,
        200,
        "OK",
        "forkA",
        &[("Contact", "<sip:gw@198.18.2.2:5060>".into())],
        None,
    );
    let a = r.msg(&ok_a, gw(5060, 5060));
    let deleted = deleted(&a);
    assert_eq!(deleted, [("relay".into(), "sb".into())]);
    let ok = sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    assert_eq!(ok.summary.to_tag, pa.summary.to_tag);
    assert!(ok.body().is_empty(), "answered in the PRACK already");
}

/// Forks with a delayed offer: the early dialog whose own sessions are still being made answers.
/// Its offer becomes the call's at once (the call's own sessions are deleted); once its sessions
/// exist, its 183 and then its 2xx reach the caller with Mediator's offer at them, in its dialog.
#[test]
fn an_early_dialog_that_answers_while_its_sessions_are_made_wins_once_they_exist() {
    let mut r = Run::new("delayed-fork-race");
    let a = r.msg(&invite_without_sdp("d20"), fe());
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&provisional(&inv, 183, Some(ANSWER), None), gw(5060, 5060));
    let id = created_call(&a);
    let a = r.created(id);
    let pa = sent_to(&a, fe())[0].clone();
    let fork_b_sdp = ANSWER.replace("7000", "7008");
    let fork_b = |status: u16| {
        build_response(
            &inv,
            status,
            "OK",
            "forkB",
            &[("Contact", "<sip:gw@198.18.2.2:5060>".into())],
            Some(("application/sdp", fork_b_sdp.as_bytes())),
        )
    };
    r.msg(&fork_b(183), gw(5060, 5060));
    let a = r.msg(&fork_b(200), gw(5060, 5060));
    assert!(sent_to(&a, fe()).is_empty(), "waits for its sessions");
    let deleted = deleted(&a);
    assert_eq!(
        deleted,
        [("relay".into(), "s".into())],
        "the call's own sessions go"
    );
    let a = fork_b_made(&mut r, id);
    let to_fe = sent_to(&a, fe());
    assert_eq!(statuses(&to_fe), [183, 200]);
    assert!(
        to_fe
            .iter()
            .all(|m| m.summary.to_tag == to_fe[0].summary.to_tag)
    );
    assert_ne!(to_fe[0].summary.to_tag, pa.summary.to_tag);
    assert!(String::from_utf8_lossy(to_fe[1].body()).contains("m=audio 30010 "));
    let a = r.msg(&ack_with(&to_fe[1], 7, Some(OFFER)), fe());
    assert_eq!(updates(&a)[0].session_id, "sb");
    assert_eq!(r.e.call(id, r.now).expect("the call").state, "confirmed");
}

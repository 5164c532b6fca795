//! Session timers on virtual time (RFC 4028): each leg negotiates its own, Mediator refreshes
//! the legs it is refresher of (UPDATE, or re-INVITE when the peer lacks UPDATE), answers the
//! peers' refreshes itself, and ends the call on both legs when a refresh fails or never comes.

use super::*;

/// The lab with `session_timer` on every trunk (set globally) or off (the default).
fn timers(on: bool) -> Run {
    let mut r = Run::new("timer");
    r.t.configs
        .get_mut("global")
        .expect("global")
        .value
        .settings
        .session_timer = Some(on);
    r
}

/// The lab INVITE from the Front End with `headers` added.
fn invite_with(call_id: &str, headers: &str) -> Vec<u8> {
    String::from_utf8(invite("+14255550100", call_id))
        .expect("utf8")
        .replace("Contact: ", &format!("{headers}Contact: "))
        .into_bytes()
}

/// The gateway's 200 to `inv`, with `headers` added.
fn ok_with(inv: &Message, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut extra: Vec<(&str, String)> = vec![("Contact", "<sip:gw@198.18.2.2:5060>".into())];
    extra.extend(headers.iter().map(|(n, v)| (*n, v.to_string())));
    build_response(
        inv,
        200,
        "OK",
        "gw1",
        &extra,
        Some(("application/sdp", ANSWER.as_bytes())),
    )
}

/// A request from the gateway in the dialog of `inv` (Mediator's INVITE to it).
fn gw_in_dialog(
    inv: &Message,
    method: &str,
    cseq: u32,
    headers: &str,
    sdp: Option<&str>,
) -> Vec<u8> {
    let body = sdp.unwrap_or("");
    let ctype = if sdp.is_some() {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "{method} sip:mediator@198.18.2.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.2.2:5060;branch=z9hG4bK-gw-{method}-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:gw@198.18.2.2:5060>\r\n{headers}{ctype}Content-Length: {}\r\n\r\n{body}",
        respond_to_header(inv),
        inv.header("from").expect("from"),
        inv.summary.call_id,
        body.len()
    )
    .into_bytes()
}

/// Sets a call up with `fe_headers` on the caller's INVITE and `gw_headers` on the gateway's
/// 200; the INVITE to the gateway, the 200 to the Front End and the actions of the ACK.
fn call(
    r: &mut Run,
    id: &str,
    fe_headers: &str,
    gw_headers: &[(&str, &str)],
) -> (Message, Message) {
    let a = r.msg(&invite_with(id, fe_headers), fe());
    let call = media_call(&a);
    let a = r.created(call);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&ok_with(&inv, gw_headers), gw(5060, 5060));
    let ok = sent_to(&a, fe())[0].clone();
    assert_eq!(ok.status(), Some(200));
    r.msg(&fe_in_dialog("ACK", &ok, 7, &format!("ack-{id}")), fe());
    (inv, ok)
}

/// Advances in 1 s steps for `d`, collecting every action.
fn run_for(r: &mut Run, d: Duration) -> Vec<Action> {
    let mut all = Vec::new();
    for _ in 0..d.as_secs() {
        all.extend(r.advance(Duration::from_secs(1)));
    }
    all
}

/// Advances in 1 s steps for `d`, both peers answering 200 to every request Mediator sends
/// them (an INVITE's with their SDP); every action is collected.
fn run_answering(r: &mut Run, d: Duration) -> Vec<Action> {
    let mut all = Vec::new();
    for _ in 0..d.as_secs() {
        let a = r.advance(Duration::from_secs(1));
        for (peer, sdp) in [(fe(), OFFER), (gw(5060, 5060), ANSWER)] {
            for m in sent_to(&a, peer) {
                if let Some(method) = m.method()
                    && !matches!(method, "ACK" | "BYE")
                {
                    let body = (method == "INVITE").then_some(sdp);
                    all.extend(r.msg(&respond(&m, 200, "", body), peer));
                }
            }
        }
        all.extend(a);
    }
    all
}

/// The final statuses among `ms` (the 100 an INVITE gets first left out).
fn finals(ms: &[Message]) -> Vec<u16> {
    statuses(ms).into_iter().filter(|s| *s >= 200).collect()
}

fn methods(ms: &[Message]) -> Vec<String> {
    ms.iter()
        .filter_map(|m| m.method().map(str::to_string))
        .collect()
}

const ALLOW_UPDATE: (&str, &str) = ("Allow", "INVITE, ACK, CANCEL, BYE, UPDATE");

#[test]
fn each_leg_negotiates_its_own_timer_and_mediator_refreshes_the_gateway_with_update() {
    let mut r = timers(true);
    let (inv, ok) = call(
        &mut r,
        "st1",
        "Supported: timer\r\nSession-Expires: 1800;refresher=uac\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n",
        &[
            ("Session-Expires", "1200;refresher=uac"),
            ALLOW_UPDATE,
            ("Require", "timer"),
        ],
    );
    // Toward the gateway: Mediator's own timer, the caller's not passed across.
    assert_eq!(inv.header("session-expires").as_deref(), Some("1800"));
    assert_eq!(inv.header("min-se").as_deref(), Some("90"));
    assert!(
        inv.headers_named("supported")
            .iter()
            .any(|v| v.contains("timer"))
    );
    // Toward the caller: its own interval, refresher as it asked, Require: timer (RFC 4028 §9);
    // the gateway's Require: timer is the gateway leg's and does not cross.
    assert_eq!(
        ok.header("session-expires").as_deref(),
        Some("1800;refresher=uac")
    );
    assert_eq!(ok.headers_named("require"), vec!["timer".to_string()]);
    // The gateway leg: Mediator refreshes at half its 1200 s, with UPDATE (the gateway allows it).
    let a = run_for(&mut r, Duration::from_secs(599));
    assert!(requests(&sent_to(&a, gw(5060, 5060))).is_empty());
    let a = run_for(&mut r, Duration::from_secs(2));
    let to_gw = sent_to(&a, gw(5060, 5060));
    assert!(!to_gw.is_empty() && methods(&to_gw).iter().all(|m| m == "UPDATE"));
    let upd = &to_gw[0];
    assert!(upd.body().is_empty());
    assert_eq!(
        upd.header("session-expires").as_deref(),
        Some("1200;refresher=uac")
    );
    assert!(
        sent_to(&a, fe()).is_empty(),
        "nothing crosses to the caller"
    );
    r.msg(
        &build_response(
            upd,
            200,
            "OK",
            "",
            &[("Session-Expires", "1200;refresher=uac".into())],
            None,
        ),
        gw(5060, 5060),
    );
    // The caller refreshes its leg with UPDATE: answered by Mediator, not passed across.
    let a = r.msg(
        &String::from_utf8(fe_in_dialog("UPDATE", &ok, 8, "upd-fe"))
            .expect("utf8")
            .replace(
                "Content-Length",
                "Supported: timer\r\nSession-Expires: 1800;refresher=uac\r\nContent-Length",
            )
            .into_bytes(),
        fe(),
    );
    let back = sent_to(&a, fe());
    assert_eq!(statuses(&back), [200]);
    assert_eq!(
        back[0].header("session-expires").as_deref(),
        Some("1800;refresher=uac")
    );
    assert!(sent_to(&a, gw(5060, 5060)).is_empty());
    // Then the caller stops refreshing: at 1800 − 32 s after its last refresh Mediator ends the
    // call on both legs (Mediator keeps refreshing the gateway meanwhile).
    let a = run_answering(&mut r, Duration::from_secs(1767));
    assert!(ended(&a).is_none());
    assert!(
        methods(&sent_to(&a, gw(5060, 5060)))
            .iter()
            .filter(|m| *m == "UPDATE")
            .count()
            >= 2,
        "the gateway leg refreshed every 600 s"
    );
    let a = run_answering(&mut r, Duration::from_secs(2));
    for to in [fe(), gw(5060, 5060)] {
        let bye = requests(&sent_to(&a, to))
            .into_iter()
            .find(|m| m.method() == Some("BYE"))
            .cloned()
            .expect("a BYE to each leg");
        assert!(
            bye.header("reason")
                .is_some_and(|v| v.contains("cause=408") && v.contains("session expired"))
        );
    }
    let rec = ended(&a).expect("the call ended");
    assert_eq!(rec.status, 408);
    assert!(
        rec.end_reason.contains("no refresh from the pool side"),
        "{}",
        rec.end_reason
    );
}

#[test]
fn a_peer_without_update_or_timers_is_refreshed_with_a_re_invite_of_the_same_sdp() {
    let mut r = timers(true);
    // Neither peer lists timer nor UPDATE: Mediator refreshes both legs, with re-INVITE.
    let (inv, ok) = call(&mut r, "st2", "", &[]);
    assert_eq!(
        ok.header("session-expires").as_deref(),
        Some("1800;refresher=uas"),
        "a caller without timer support is never made refresher"
    );
    assert!(ok.headers_named("require").is_empty());
    // Both legs are due at 900 s; each leg's refresh is its own dialog's (no glare between them).
    let a = run_for(&mut r, Duration::from_secs(901));
    let re_fe = requests(&sent_to(&a, fe()))
        .into_iter()
        .find(|m| m.method() == Some("INVITE"))
        .cloned()
        .expect("a re-INVITE to the caller");
    assert_eq!(
        re_fe.body(),
        ok.body(),
        "the same SDP as before: nothing changes"
    );
    let re = requests(&sent_to(&a, gw(5060, 5060)))
        .into_iter()
        .find(|m| m.method() == Some("INVITE"))
        .cloned()
        .expect("a re-INVITE to the gateway");
    assert_eq!(re.body(), inv.body());
    assert_eq!(re.summary.to_tag.as_deref(), Some("gw1"), "in its dialog");
    // Its 200 is ACKed, and so is a retransmission of it; nothing crosses.
    let a = r.msg(&respond(&re_fe, 200, "", Some(OFFER)), fe());
    assert_eq!(methods(&sent_to(&a, fe())), ["ACK"]);
    assert!(
        sent_to(&a, gw(5060, 5060)).is_empty(),
        "a refresh is the leg's own"
    );
    let a = r.msg(&respond(&re_fe, 200, "", Some(OFFER)), fe());
    assert_eq!(methods(&sent_to(&a, fe())), ["ACK"]);
    // The caller's repeated SDP while Mediator's refresh of its leg is pending is glare (491);
    // none is pending now, so it is a refresh answered locally.
    let a = r.msg(
        &String::from_utf8(fe_in_dialog("INVITE", &ok, 8, "re-fe-st2"))
            .expect("utf8")
            .replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
                    OFFER.len()
                ),
            )
            .into_bytes(),
        fe(),
    );
    assert_eq!(finals(&sent_to(&a, fe())), [200]);
    assert!(requests(&sent_to(&a, gw(5060, 5060))).is_empty());
    // The gateway answers 481: that leg is gone, the call ends on both legs.
    let a = r.msg(
        &build_response(&re, 481, "Call/Transaction Does Not Exist", "", &[], None),
        gw(5060, 5060),
    );
    assert!(methods(&sent_to(&a, fe())).contains(&"BYE".to_string()));
    let rec = ended(&a).expect("ended");
    assert_eq!(rec.status, 408);
    assert!(
        rec.end_reason
            .contains("refresh of the gateway leg failed: 481"),
        "{}",
        rec.end_reason
    );
}

#[test]
fn a_too_short_interval_gets_422_and_a_callee_422_is_retried_with_its_min_se() {
    let mut r = timers(true);
    let a = r.msg(
        &invite_with("st3", "Supported: timer\r\nSession-Expires: 30\r\n"),
        fe(),
    );
    let back = sent_to(&a, fe());
    assert_eq!(finals(&back), [422]);
    assert_eq!(
        back.last().and_then(|m| m.header("min-se")).as_deref(),
        Some("90")
    );
    assert!(
        !a.iter().any(|x| matches!(x, Action::CreateMedia { .. })),
        "nothing created"
    );
    // The gateway wants at least 3600 s: the INVITE goes again, asking that.
    let a = r.msg(&invite_with("st4", ""), fe());
    let call = media_call(&a);
    let a = r.created(call);
    let inv = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let too_small = build_response(
        &inv,
        422,
        "Session Interval Too Small",
        "gw1",
        &[("Min-SE", "3600".into())],
        None,
    );
    let a = r.msg(&too_small, gw(5060, 5060));
    let again = requests(&sent_to(&a, gw(5060, 5060)))
        .into_iter()
        .find(|m| m.method() == Some("INVITE"))
        .cloned()
        .expect("the INVITE again");
    assert_eq!(again.header("session-expires").as_deref(), Some("3600"));
    assert_ne!(again.summary.call_id, inv.summary.call_id);
    assert!(
        statuses(&sent_to(&a, fe())).iter().all(|s| *s < 200),
        "the caller still waits"
    );
    let a = r.msg(
        &ok_with(&again, &[("Session-Expires", "3600;refresher=uas")]),
        gw(5060, 5060),
    );
    assert_eq!(statuses(&sent_to(&a, fe())), [200]);
}

#[test]
fn with_the_trunk_s_timer_off_the_gateway_s_refreshes_are_answered_locally() {
    let mut r = timers(false);
    let (inv, _ok) = call(
        &mut r,
        "st5",
        "",
        &[("Session-Expires", "1800;refresher=uas")],
    );
    assert!(
        inv.header("session-expires").is_none(),
        "no timer asked of the gateway"
    );
    assert!(
        !inv.headers_named("supported")
            .iter()
            .any(|v| v.contains("timer"))
    );
    // The gateway refreshes with UPDATE: answered by Mediator, nothing crosses.
    let a = r.msg(&gw_in_dialog(&inv, "UPDATE", 2, "", None), gw(5060, 5060));
    assert_eq!(statuses(&sent_to(&a, gw(5060, 5060))), [200]);
    assert!(sent_to(&a, fe()).is_empty());
    // A re-INVITE repeating its SDP: what the gateway last had from Mediator was Mediator's
    // offer (every suite and codec), no answer to give back, so this one crosses...
    let a = r.msg(
        &gw_in_dialog(&inv, "INVITE", 3, "", Some(ANSWER)),
        gw(5060, 5060),
    );
    let re = sent_to(&a, fe());
    assert_eq!(methods(&re), ["INVITE"]);
    let a = r.msg(&respond(&re[0], 200, "", Some(OFFER)), fe());
    let answered = sent_to(&a, gw(5060, 5060));
    assert_eq!(finals(&answered), [200]);
    r.msg(&gw_in_dialog(&inv, "ACK", 3, "", None), gw(5060, 5060));
    // ...and the next one is answered by Mediator with that answer; nothing crosses.
    let a = r.msg(
        &gw_in_dialog(&inv, "INVITE", 4, "", Some(ANSWER)),
        gw(5060, 5060),
    );
    let back = sent_to(&a, gw(5060, 5060));
    assert_eq!(finals(&back), [200]);
    assert_eq!(
        back.last().expect("200").body(),
        answered.last().expect("200").body()
    );
    assert!(sent_to(&a, fe()).is_empty());
    assert!(!a.iter().any(|x| matches!(x, Action::UpdateMedia { .. })));
    r.msg(&gw_in_dialog(&inv, "ACK", 4, "", None), gw(5060, 5060));
    // A re-INVITE that changes the SDP is no refresh: it crosses as before.
    let changed = ANSWER.replace("o=- 2 2", "o=- 2 3").replace("7000", "7002");
    let a = r.msg(
        &gw_in_dialog(&inv, "INVITE", 5, "", Some(&changed)),
        gw(5060, 5060),
    );
    let re = sent_to(&a, fe());
    assert_eq!(methods(&re), ["INVITE"]);
    let a = r.msg(&respond(&re[0], 200, "", Some(OFFER)), fe());
    assert_eq!(statuses(&sent_to(&a, gw(5060, 5060))), [200]);
    r.msg(&gw_in_dialog(&inv, "ACK", 5, "", None), gw(5060, 5060));
    // Hours without refreshes from the gateway do not end the call (no timer on its leg);
    // the caller's leg, which always has one, is kept by Mediator's refreshes.
    let a = run_answering(&mut r, Duration::from_secs(3 * 3600));
    assert!(ended(&a).is_none());
    assert!(methods(&sent_to(&a, fe())).contains(&"INVITE".to_string()));
    assert!(requests(&sent_to(&a, gw(5060, 5060))).is_empty());
}

/// An INVITE from the gateway to the pool with `headers` added.
fn gw_invite_with(call_id: &str, headers: &str) -> Vec<u8> {
    format!(
        "INVITE sip:+14255551000@198.18.2.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.2.2:5060;branch=z9hG4bK-gw-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+12065550100@198.18.2.2>;tag=gwa\r\n\
         To: <sip:+14255551000@198.18.2.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:gw@198.18.2.2:5060>\r\n{headers}Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    )
    .into_bytes()
}

#[test]
fn an_inbound_call_s_legs_follow_the_trunk_and_the_pool() {
    for on in [true, false] {
        let mut r = timers(on);
        let a = r.msg(
            &gw_invite_with(
                "st6",
                "Supported: timer\r\nSession-Expires: 600;refresher=uac\r\n",
            ),
            gw(5060, 5060),
        );
        let call = a
            .iter()
            .find_map(|x| match x {
                Action::CreateMedia { call, .. } => Some(*call),
                _ => None,
            })
            .expect("sessions");
        let a = r.created(call);
        let inv = requests(&sent_to(&a, fe()))[0].clone();
        // The pool's leg always has a timer, whatever the trunk says.
        assert_eq!(inv.header("session-expires").as_deref(), Some("1800"));
        let a = r.msg(
            &build_response(
                &inv,
                200,
                "OK",
                "fe9",
                &[
                    ("Contact", "<sip:fe@198.18.1.2:5060>".into()),
                    ("Session-Expires", "1800;refresher=uas".into()),
                    ("Require", "timer".into()),
                ],
                Some(("application/sdp", OFFER.as_bytes())),
            ),
            fe(),
        );
        let ok = sent_to(&a, gw(5060, 5060))
            .into_iter()
            .find(|m| m.status() == Some(200))
            .expect("200 to the gateway");
        if on {
            assert_eq!(
                ok.header("session-expires").as_deref(),
                Some("600;refresher=uac")
            );
            assert_eq!(ok.headers_named("require"), vec!["timer".to_string()]);
        } else {
            assert!(
                ok.header("session-expires").is_none() && ok.headers_named("require").is_empty(),
                "the trunk's timer is off: the gateway's leg has none, and the pool's Require: \
                 timer does not cross"
            );
        }
    }
}

#[test]
fn a_2xx_to_a_re_invite_never_acknowledged_ends_the_call_after_64_t1() {
    let mut r = timers(false);
    let (inv, _ok) = call(&mut r, "st7", "", &[]);
    let changed = ANSWER.replace("o=- 2 2", "o=- 2 3");
    let a = r.msg(
        &gw_in_dialog(&inv, "INVITE", 2, "", Some(&changed)),
        gw(5060, 5060),
    );
    let re = sent_to(&a, fe());
    let a = r.msg(&respond(&re[0], 200, "", Some(OFFER)), fe());
    assert_eq!(finals(&sent_to(&a, gw(5060, 5060))), [200]);
    // The gateway never ACKs: the 2xx is retransmitted, then the call ends (RFC 3261 §13.3.1.4).
    let a = run_for(&mut r, Duration::from_secs(31));
    assert!(
        finals(&sent_to(&a, gw(5060, 5060))).len() >= 5,
        "retransmitted"
    );
    assert!(ended(&a).is_none());
    let a = run_for(&mut r, Duration::from_secs(5));
    let rec = ended(&a).expect("ended");
    assert_eq!(rec.status, 408);
    assert!(
        rec.end_reason.contains("no ACK from the gateway side"),
        "{}",
        rec.end_reason
    );
    assert!(methods(&sent_to(&a, fe())).contains(&"BYE".to_string()));
}

/// A re-offer the far side refuses changes nothing (RFC 3264 §8): the same re-INVITE sent
/// again is relayed again (not taken for a refresh of the old SDP), and the session timer it
/// asked for is not put in force.
#[test]
fn a_refused_re_offer_is_not_a_refresh_and_does_not_change_the_timer() {
    let mut r = timers(true);
    // The caller lists no timer support: Mediator refreshes its leg.
    let (_inv, ok) = call(&mut r, "st8", "", &[]);
    let held = OFFER.replace("o=- 1 1", "o=- 1 2").replace(
        "a=rtpmap:8 PCMA/8000\r\n",
        "a=rtpmap:8 PCMA/8000\r\na=sendonly\r\n",
    );
    let reinvite = |cseq: u32, branch: &str| {
        String::from_utf8(fe_in_dialog("INVITE", &ok, cseq, branch))
            .expect("utf8")
            .replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Supported: timer\r\nSession-Expires: 1800;refresher=uac\r\n\
                     Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{held}",
                    held.len()
                ),
            )
            .into_bytes()
    };
    let a = r.msg(&reinvite(8, "hold1"), fe());
    let re = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&respond(&re, 491, "gw1", None), gw(5060, 5060));
    assert_eq!(finals(&sent_to(&a, fe())), [491]);
    let a = r.msg(&reinvite(9, "hold2"), fe());
    assert_eq!(
        methods(&sent_to(&a, gw(5060, 5060))),
        ["INVITE"],
        "relayed again, not answered with the old SDP"
    );
    let re = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    r.msg(&respond(&re, 488, "gw1", None), gw(5060, 5060));
    // The refused request asked the caller to refresh; it never took effect: Mediator still
    // refreshes the caller's leg at 900 s (re-INVITE: the caller's Allow is not known).
    let a = run_answering(&mut r, Duration::from_secs(905));
    assert!(ended(&a).is_none());
    assert!(methods(&sent_to(&a, fe())).contains(&"INVITE".to_string()));
}

/// A peer that lists UPDATE but refuses it (405) is refreshed with re-INVITE from then on.
#[test]
fn an_update_refused_with_405_falls_back_to_re_invite() {
    let mut r = timers(true);
    let (inv, _ok) = call(
        &mut r,
        "st9",
        "Supported: timer\r\nSession-Expires: 1800;refresher=uac\r\n",
        &[("Session-Expires", "1200;refresher=uac"), ALLOW_UPDATE],
    );
    let a = run_for(&mut r, Duration::from_secs(601));
    let upd = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    assert_eq!(upd.method(), Some("UPDATE"));
    let a = r.msg(
        &build_response(&upd, 405, "Method Not Allowed", "", &[], None),
        gw(5060, 5060),
    );
    assert!(ended(&a).is_none());
    let a = run_for(&mut r, Duration::from_secs(1));
    let re = requests(&sent_to(&a, gw(5060, 5060)))
        .into_iter()
        .find(|m| m.method() == Some("INVITE"))
        .cloned()
        .expect("a re-INVITE at once");
    assert_eq!(re.body(), inv.body());
}

/// The answer to Mediator's refresh re-INVITE moves the peer's media: the session follows it,
/// and nothing is sent to the other leg (whose next refresh offers what it had). Requests on a
/// leg with session timers say `Supported: timer` (RFC 4028 §7.1), the BYE among them.
#[test]
fn a_refresh_answer_that_moves_the_media_is_followed_and_requests_say_timer() {
    let mut r = timers(true);
    let (inv, ok) = call(&mut r, "st9", "", &[]);
    let a = run_for(&mut r, Duration::from_secs(901));
    let re_fe = requests(&sent_to(&a, fe()))
        .into_iter()
        .find(|m| m.method() == Some("INVITE"))
        .cloned()
        .expect("a re-INVITE to the caller");
    let re_gw = requests(&sent_to(&a, gw(5060, 5060)))
        .into_iter()
        .find(|m| m.method() == Some("INVITE"))
        .cloned()
        .expect("a re-INVITE to the gateway");
    let moved = OFFER.replace("o=- 1 1", "o=- 1 2").replace("6000", "6010");
    let a = r.msg(&respond(&re_fe, 200, "", Some(&moved)), fe());
    assert_eq!(methods(&sent_to(&a, fe())), ["ACK"]);
    let to_pool: Vec<Option<u16>> = a
        .iter()
        .filter_map(|x| match x {
            Action::UpdateMedia { request, .. } => {
                Some(request.pool.and_then(|p| p.rtp).map(|e| e.port()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        to_pool,
        [Some(6010)],
        "the session follows the caller's new address"
    );
    assert!(sent_to(&a, gw(5060, 5060)).is_empty(), "nothing crosses");
    let a = r.msg(&respond(&re_gw, 200, "", Some(ANSWER)), gw(5060, 5060));
    assert!(
        !a.iter().any(|x| matches!(x, Action::UpdateMedia { .. })),
        "unchanged"
    );
    // The next refresh of the gateway's leg offers what that leg had, not something new.
    let a = run_for(&mut r, Duration::from_secs(901));
    let next = requests(&sent_to(&a, gw(5060, 5060)))
        .into_iter()
        .find(|m| m.method() == Some("INVITE"))
        .cloned()
        .expect("the next re-INVITE to the gateway");
    assert_eq!(next.body(), inv.body());
    // The caller hangs up: the gateway's BYE says `timer`.
    let a = r.msg(&fe_in_dialog("BYE", &ok, 9, "bye-st9"), fe());
    let bye = requests(&sent_to(&a, gw(5060, 5060)))
        .into_iter()
        .find(|m| m.method() == Some("BYE"))
        .cloned()
        .expect("BYE to the gateway");
    assert!(
        bye.headers_named("supported")
            .iter()
            .any(|s| s.contains("timer")),
        "{:?}",
        bye.headers_named("supported")
    );
}

/// Two 2xx awaiting their ACKs at once, one on each leg (a relayed 2xx to the caller's
/// re-INVITE not yet ACKed when the gateway's re-INVITE is answered): each is retransmitted on
/// its own clock until its own ACK (RFC 3261 §13.3.1.4), neither taking over the other's.
#[test]
fn a_2xx_awaiting_its_ack_on_each_leg_is_retransmitted_on_its_own() {
    let mut r = timers(false);
    let (inv, ok) = answered(&mut r, "rx1");
    // The caller re-offers; the gateway answers; the 200 reaches the caller, which does not
    // ACK yet.
    let fe_offer = OFFER.replace("o=- 1 1", "o=- 1 2").replace("6000", "6002");
    let a = r.msg(
        &fe_in_dialog_sdp("INVITE", &ok, 8, "re-rx1", &fe_offer),
        fe(),
    );
    let re_gw = requests(&sent_to(&a, gw(5060, 5060)))[0].clone();
    let a = r.msg(&respond(&re_gw, 200, "gw1", Some(ANSWER)), gw(5060, 5060));
    assert_eq!(finals(&sent_to(&a, fe())), [200]);
    // The gateway re-offers in turn; the caller answers; the 200 reaches the gateway.
    let gw_offer = ANSWER.replace("o=- 2 2", "o=- 2 3").replace("7000", "7002");
    let a = r.msg(
        &gw_in_dialog(&inv, "INVITE", 2, "", Some(&gw_offer)),
        gw(5060, 5060),
    );
    let re_fe = requests(&sent_to(&a, fe()))[0].clone();
    let a = r.msg(&respond(&re_fe, 200, "", Some(&fe_offer)), fe());
    assert_eq!(finals(&sent_to(&a, gw(5060, 5060))), [200]);
    // T1 later both are retransmitted.
    let a = r.advance(Duration::from_millis(500));
    assert_eq!(finals(&sent_to(&a, fe())), [200], "the caller's 2xx again");
    assert_eq!(
        finals(&sent_to(&a, gw(5060, 5060))),
        [200],
        "the gateway's 2xx again"
    );
    // The caller's ACK ends only its own.
    r.msg(&fe_in_dialog("ACK", &ok, 8, "ack-re-rx1"), fe());
    let a = r.advance(Duration::from_millis(1000));
    assert!(finals(&sent_to(&a, fe())).is_empty());
    assert_eq!(finals(&sent_to(&a, gw(5060, 5060))), [200]);
}

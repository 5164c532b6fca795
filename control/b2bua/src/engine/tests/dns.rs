//! Gateways and next hops named by FQDN on virtual time (RFC 3263, RFC 2782): the engine only
//! knows what the resolver told it (`on_dns`). Unresolved or failed names refuse calls at once
//! with a 503 naming them; SRV targets are tried in priority order, weighted within one priority,
//! and failed over like trunks; inbound requests are matched by resolved address; probes move to
//! the next address when one stays silent.

use super::*;
use crate::dns::{Query, Resolution, Target as DnsTarget};
use mediator_sip::Transport;

/// The lab plus an SBC named by FQDN (its port found by SRV) on its own pool-side port, with
/// a route for +1999 through it.
const SBC: &str = r#"
[[gateway]]
name = "sbc.lab.test"
kind = "sbc"
site = "lab"
root_trunk = { gateway_port = 0, transport = "udp", pool = "pool.lab.mediator", pool_port = 5090 }

[[voice_route]]
name = "dns"
pattern = '^\+1999(\d{7})$'
trunks = ["sbc.lab.test"]
pstn_usages = ["Lab"]
"#;

fn with_sbc() -> Run {
    let mut r = Run::new("dns");
    let (mut t, _) = Topology::initial(1);
    t.import(
        &format!("{}\n{SBC}", mediator_topology::testing::LAB),
        false,
        1,
        &mut mediator_topology::Changes::default(),
    )
    .expect("the lab with an FQDN gateway imports");
    if let Some(g) = t.configs.get_mut("global") {
        g.value.settings.options_interval_secs = Some(0);
    }
    r.t = t;
    r
}

fn sbc_query() -> Query {
    Query::of("sbc.lab.test", 0, Transport::Udp).expect("an FQDN")
}

fn target(name: &str, priority: u16, weight: u16, port: u16, ip: &str) -> DnsTarget {
    DnsTarget {
        name: name.into(),
        priority,
        weight,
        port,
        addrs: vec![ip.parse().expect("ip")],
    }
}

fn srv(targets: Vec<DnsTarget>) -> Resolution {
    Resolution {
        targets,
        how: "SRV",
        expires_unix_ms: 1_700_000_060_000,
        error: None,
    }
}

/// The SBC's address `remote` as seen from its trunk's pool-side port.
fn sbc(remote: &str) -> Peer {
    Peer::udp(remote, "198.18.2.1:5090")
}

impl Run {
    fn resolved(&mut self, q: Query, r: Resolution) -> Vec<Action> {
        self.e.on_dns(&self.t, q, r, self.now)
    }
}

/// An INVITE from the lab's gateway (198.18.2.2) on its root trunk.
fn gw_invite(id: &str) -> Vec<u8> {
    format!(
        "INVITE sip:+14255551000@198.18.2.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.2.2:5060;branch=z9hG4bK-gw-{id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+12065550100@198.18.2.2>;tag=gwa\r\n\
         To: <sip:+14255551000@198.18.2.1>\r\n\
         Call-ID: {id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:gw@198.18.2.2:5060>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    )
    .into_bytes()
}

fn warning(m: &Message) -> String {
    m.header("warning").unwrap_or_default().to_string()
}

#[test]
fn a_call_to_a_name_not_resolved_or_not_resolvable_gets_503_at_once_naming_it() {
    let mut r = with_sbc();
    let a = r.msg(&invite("+19995550100", "d1"), fe());
    let to_fe = sent_to(&a, fe());
    let last = to_fe.last().expect("an answer");
    assert_eq!(last.status(), Some(503), "refused, not held up");
    let w = warning(last);
    assert!(
        w.contains("sbc.lab.test") && w.contains("not resolved yet"),
        "{w}"
    );
    assert!(
        !a.iter().any(|x| matches!(x, Action::CreateMedia { .. })),
        "no session for a call that cannot go anywhere"
    );

    let a = r.resolved(
        sbc_query(),
        Resolution::failed("no such name (NXDOMAIN)", 1_700_000_005_000),
    );
    assert!(a.is_empty(), "probing is off: nothing to send");
    let a = r.msg(&invite("+19995550101", "d2"), fe());
    let last = sent_to(&a, fe()).pop().expect("an answer");
    assert_eq!(last.status(), Some(503));
    let w = warning(&last);
    assert!(w.contains("NXDOMAIN") && w.contains("sbc.lab.test"), "{w}");
    assert_eq!(r.e.resolutions().len(), 1, "the failure is shown");

    // An answer for a name the topology does not use is not kept.
    r.resolved(
        Query::of("stranger.lab.test", 0, Transport::Udp).expect("fqdn"),
        srv(vec![target("x", 1, 1, 5060, "198.18.2.9")]),
    );
    assert_eq!(r.e.resolutions().len(), 1);
}

#[test]
fn srv_targets_are_tried_in_priority_order_and_fail_over_like_trunks() {
    let mut r = with_sbc();
    // DNS lists the backup first: priority decides, not the order of the answer.
    r.resolved(
        sbc_query(),
        srv(vec![
            target("b.lab.test", 20, 0, 5062, "198.18.2.3"),
            target("a.lab.test", 10, 0, 5060, "198.18.2.2"),
        ]),
    );
    let a = r.msg(&invite("+19995550100", "d3"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let first = requests(&sent_to(&a, sbc("198.18.2.2:5060")))[0].clone();
    assert_eq!(first.method(), Some("INVITE"));
    assert_eq!(
        first.request_uri(),
        Some("sip:+19995550100@sbc.lab.test;user=phone"),
        "the Request-URI names the gateway, not the address tried"
    );
    assert!(
        first
            .header("to")
            .is_some_and(|t| t.contains("@sbc.lab.test")),
        "{:?}",
        first.header("to")
    );
    let a = r.msg(&respond(&first, 503, "s1", None), sbc("198.18.2.2:5060"));
    assert_eq!(sent_to(&a, sbc("198.18.2.2:5060"))[0].method(), Some("ACK"));
    let second = requests(&sent_to(&a, sbc("198.18.2.3:5062")))[0].clone();
    assert_eq!(second.method(), Some("INVITE"), "the next SRV target");
    assert!(statuses(&sent_to(&a, fe())).is_empty());
    let a = r.msg(&respond(&second, 486, "s2", None), sbc("198.18.2.3:5062"));
    assert_eq!(statuses(&sent_to(&a, fe())), vec![486]);
    assert_eq!(
        ended(&a).expect("record").attempts,
        vec![
            ("sbc.lab.test via 198.18.2.2:5060".to_string(), 503),
            ("sbc.lab.test via 198.18.2.3:5062".to_string(), 486)
        ]
    );

    // A silent first target: fast failover moves on after its timeout (10 s, the global one).
    let a = r.msg(&invite("+19995550102", "d4"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    assert_eq!(requests(&sent_to(&a, sbc("198.18.2.2:5060"))).len(), 1);
    let mut next = Vec::new();
    for _ in 0..21 {
        let a = r.advance(Duration::from_millis(500));
        next.extend(
            requests(&sent_to(&a, sbc("198.18.2.3:5062")))
                .into_iter()
                .filter(|m| m.method() == Some("INVITE"))
                .cloned(),
        );
    }
    let branches: std::collections::BTreeSet<&str> =
        next.iter().map(|m| m.summary.branch.as_str()).collect();
    assert_eq!(
        branches.len(),
        1,
        "failed over to the second target (one transaction, retransmitted)"
    );
}

#[test]
fn srv_weights_share_the_first_attempts_within_a_priority() {
    let mut r = with_sbc();
    r.resolved(
        sbc_query(),
        srv(vec![
            target("heavy.lab.test", 10, 90, 5060, "198.18.2.2"),
            target("light.lab.test", 10, 10, 5060, "198.18.2.3"),
            target("backup.lab.test", 20, 100, 5060, "198.18.2.4"),
        ]),
    );
    let heavy: std::net::SocketAddr = "198.18.2.2:5060".parse().expect("addr");
    let backup: std::net::SocketAddr = "198.18.2.4:5060".parse().expect("addr");
    let mut first_heavy = 0;
    for _ in 0..2000 {
        let order =
            r.e.addresses(
                "sbc.lab.test",
                0,
                Transport::Udp,
                "198.18.2.1".parse().expect("ip"),
                true,
            )
            .expect("resolved");
        assert_eq!(order.len(), 3);
        assert_eq!(
            order[2], backup,
            "a higher priority value always comes last"
        );
        if order[0] == heavy {
            first_heavy += 1;
        }
    }
    // 90 % expected: 1,800 of 2,000; the bounds are > 6 standard deviations (13.4) away.
    assert!(
        (1700..=1900).contains(&first_heavy),
        "weight 90 of 100 went first {first_heavy} times of 2000"
    );
}

#[test]
fn requests_from_a_gateway_named_by_fqdn_are_matched_by_its_resolved_addresses() {
    let mut r = with_sbc();
    let from = sbc("198.18.2.3:5062");
    let inbound = |id: &str| {
        format!(
            "INVITE sip:+14255551000@198.18.2.1:5090 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 198.18.2.3:5062;branch=z9hG4bK-sbc-{id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+12065550100@sbc.lab.test>;tag=sbc\r\n\
             To: <sip:+14255551000@198.18.2.1>\r\n\
             Call-ID: {id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:sbc@198.18.2.3:5062>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        )
        .into_bytes()
    };
    let a = r.msg(&inbound("in1"), from);
    assert_eq!(
        statuses(&sent_to(&a, from)),
        vec![403],
        "unknown before its name resolves to it"
    );
    r.resolved(
        sbc_query(),
        srv(vec![
            target("a.lab.test", 10, 0, 5060, "198.18.2.2"),
            target("b.lab.test", 20, 0, 5062, "198.18.2.3"),
        ]),
    );
    let a = r.msg(&inbound("in2"), from);
    assert_eq!(statuses(&sent_to(&a, from)), vec![100]);
    assert!(
        a.iter().any(|x| matches!(x, Action::CreateMedia { .. })),
        "the call goes on toward the pool"
    );
    // The same address on another trunk's port is still a stranger.
    let a = r.msg(
        &inbound("in3"),
        Peer::udp("198.18.2.3:5062", "198.18.2.1:5066"),
    );
    assert_eq!(
        statuses(&sent_to(
            &a,
            Peer::udp("198.18.2.3:5062", "198.18.2.1:5066")
        )),
        vec![403]
    );
}

#[test]
fn a_pool_next_hop_named_by_fqdn_receives_inbound_calls_at_its_resolved_address() {
    let mut r = Run::new("dns-pool");
    let hop = &mut r
        .t
        .pools
        .get_mut("pool.lab.mediator")
        .expect("pool")
        .value
        .next_hop;
    hop.host = "fe.lab.test".into();
    hop.port = 5060;
    let q = Query::of("fe.lab.test", 5060, Transport::Udp).expect("fqdn");
    let a = r.msg(&gw_invite("p1"), gw(5060, 5060));
    let last = sent_to(&a, gw(5060, 5060)).pop().expect("an answer");
    assert_eq!(last.status(), Some(503));
    assert!(warning(&last).contains("fe.lab.test"), "{}", warning(&last));

    r.resolved(
        q,
        Resolution {
            targets: vec![target("fe.lab.test", 0, 0, 5060, "198.18.1.2")],
            how: "A/AAAA",
            expires_unix_ms: 1_700_000_060_000,
            error: None,
        },
    );
    let a = r.msg(&gw_invite("p2"), gw(5060, 5060));
    let id = a
        .iter()
        .find_map(|x| match x {
            Action::CreateMedia { call, .. } => Some(*call),
            _ => None,
        })
        .expect("a session toward the pool");
    let a = r.created(id);
    let inv = requests(&sent_to(&a, fe()))[0].clone();
    assert_eq!(inv.method(), Some("INVITE"));
    assert!(
        inv.request_uri()
            .is_some_and(|u| u.contains("@fe.lab.test")),
        "{:?}",
        inv.request_uri()
    );
    // And the Front End's requests are recognised by that address.
    let a = r.msg(&invite("+14255550100", "p3"), fe());
    assert_eq!(statuses(&sent_to(&a, fe()))[0], 100);
}

/// Every address a gateway's name resolved to is probed on its own clock: one that stays silent
/// is down after `options_failures` probes and calls skip it while the other answers (the trunk
/// stays up); its first answer brings it back.
#[test]
fn every_address_of_a_name_is_probed_and_calls_skip_a_dead_one() {
    let mut r = with_sbc();
    let g = r.t.configs.get_mut("global").expect("global");
    g.value.settings.options_interval_secs = Some(10);
    g.value.settings.options_failures = Some(3);
    r.e.on_topology(&r.t, r.now);
    let (a_addr, b_addr) = (sbc("198.18.2.2:5060"), sbc("198.18.2.3:5062"));
    let mut all = r.resolved(
        sbc_query(),
        srv(vec![
            target("a.lab.test", 10, 0, 5060, "198.18.2.2"),
            target("b.lab.test", 20, 0, 5062, "198.18.2.3"),
        ]),
    );
    let options = |a: &[Action], to: Peer| -> Vec<Message> {
        sent_to(a, to)
            .into_iter()
            .filter(|m| m.method() == Some("OPTIONS"))
            .collect()
    };
    assert_eq!(options(&all, a_addr).len(), 1, "both probed once resolved");
    assert_eq!(options(&all, b_addr).len(), 1);
    // b answers every probe; a never does.
    let mut states = Vec::new();
    for _ in 0..90 {
        for o in options(&all, b_addr) {
            let x = r.msg(&respond(&o, 200, "b", None), b_addr);
            states.extend(x.into_iter().filter_map(|x| match x {
                Action::TrunkState(c) if c.trunk == "sbc.lab.test" => Some(c.state),
                _ => None,
            }));
        }
        all = r.advance(Duration::from_millis(500));
        states.extend(all.iter().filter_map(|x| match x {
            Action::TrunkState(c) if c.trunk == "sbc.lab.test" => Some(c.state),
            _ => None,
        }));
    }
    assert_eq!(states, [TrunkState::Up], "up once, never down: b is alive");
    let h =
        r.e.trunk_health()
            .into_iter()
            .find(|h| h.trunk == "sbc.lab.test")
            .expect("probed");
    assert_eq!(h.state, TrunkState::Up);
    assert_eq!(h.addresses_down, ["198.18.2.2:5060".parse().expect("addr")]);
    assert_eq!(h.peer, b_addr.remote, "the address shown is one that is up");
    // A call now goes to b first: a, though first by priority, is skipped.
    let x = r.msg(&invite("+19995550177", "d30"), fe());
    let id = media_call(&x);
    let x = r.created(id);
    assert!(requests(&sent_to(&x, a_addr)).is_empty());
    assert_eq!(requests(&sent_to(&x, b_addr))[0].method(), Some("INVITE"));
    // a answers its next probe: up again, first again.
    let mut back = false;
    for _ in 0..40 {
        let x = r.advance(Duration::from_millis(500));
        for o in options(&x, a_addr) {
            r.msg(&respond(&o, 200, "a", None), a_addr);
            back = true;
        }
        for o in options(&x, b_addr) {
            r.msg(&respond(&o, 200, "b", None), b_addr);
        }
        if back {
            break;
        }
    }
    assert!(back, "a is probed again while down");
    let h =
        r.e.trunk_health()
            .into_iter()
            .find(|h| h.trunk == "sbc.lab.test")
            .expect("probed");
    assert!(h.addresses_down.is_empty());
    let x = r.msg(&invite("+19995550178", "d31"), fe());
    let id = media_call(&x);
    let x = r.created(id);
    assert_eq!(requests(&sent_to(&x, a_addr))[0].method(), Some("INVITE"));
}

#[test]
fn a_dual_stack_name_is_tried_only_at_the_addresses_of_mediators_family() {
    let mut r = with_sbc();
    let mut t = target("sbc.lab.test", 0, 0, 5060, "2001:2:0:2::2");
    t.addrs.push("198.18.2.2".parse().expect("ip"));
    r.resolved(sbc_query(), srv(vec![t]));
    let a = r.msg(&invite("+19995550100", "d6"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, sbc("198.18.2.2:5060")))[0].clone();
    let a = r.msg(&respond(&inv, 503, "s6", None), sbc("198.18.2.2:5060"));
    assert_eq!(
        statuses(&sent_to(&a, fe())),
        vec![503],
        "no IPv6 attempt from an IPv4 address"
    );
    r.resolved(
        sbc_query(),
        srv(vec![target("sbc.lab.test", 0, 0, 5060, "2001:2:0:2::2")]),
    );
    let a = r.msg(&invite("+19995550101", "d7"), fe());
    let last = sent_to(&a, fe()).pop().expect("an answer");
    assert_eq!(last.status(), Some(503));
    assert!(
        warning(&last).contains("no IPv4 address"),
        "{}",
        warning(&last)
    );
}

/// A redirect naming a configured gateway by its FQDN (any case, a trailing dot) is followed to
/// the addresses the name resolved to, in RFC 3263 order; a Contact naming a host Mediator was
/// not given, or the gateway's name on a port its trunk does not use, is not followed.
#[test]
fn a_redirect_to_a_gateway_s_fqdn_is_followed_to_its_resolved_addresses() {
    let mut r = with_sbc();
    r.t.configs
        .get_mut("global")
        .expect("global")
        .value
        .settings
        .follow_redirects = Some(true);
    r.resolved(
        sbc_query(),
        srv(vec![
            target("b.lab.test", 20, 0, 5062, "198.18.2.3"),
            target("a.lab.test", 10, 0, 5070, "198.18.2.7"),
        ]),
    );
    let a = r.msg(&invite("+14255550100", "d20"), fe());
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
            "<sip:+19995550123@SBC.Lab.Test.>;q=0.9, <sip:+19995550124@elsewhere.example>;q=1.0, \
             <sip:+19995550125@sbc.lab.test:5999>;q=1.0"
                .into(),
        )],
        None,
    );
    let a = r.msg(&moved, gw(5060, 5060));
    assert!(statuses(&sent_to(&a, fe())).iter().all(|s| *s < 300));
    let first = requests(&sent_to(&a, sbc("198.18.2.7:5070")))[0].clone();
    assert_eq!(
        first.request_uri(),
        Some("sip:+19995550123@sbc.lab.test;user=phone"),
        "the first SRV target, with the Contact's number"
    );
    let a = r.msg(&respond(&first, 503, "s1", None), sbc("198.18.2.7:5070"));
    let second = requests(&sent_to(&a, sbc("198.18.2.3:5062")))[0].clone();
    assert_eq!(second.method(), Some("INVITE"), "then the next one");
    let a = r.msg(&respond(&second, 486, "s2", None), sbc("198.18.2.3:5062"));
    assert_eq!(
        ended(&a).expect("record").attempts,
        vec![
            ("198.18.2.2".to_string(), 302),
            ("sbc.lab.test via 198.18.2.7:5070".to_string(), 503),
            ("sbc.lab.test via 198.18.2.3:5062".to_string(), 486)
        ]
    );
}

/// The route set of a dialog with a gateway named by FQDN may lead to another address of that
/// name (the same configured peer): the 2xx came from one, its Contact names the other, and the
/// caller's BYE goes there. An address of no configured name is not followed.
#[test]
fn a_dialog_follows_its_contact_to_another_address_of_the_gateway_s_name() {
    let mut r = with_sbc();
    r.resolved(
        sbc_query(),
        srv(vec![
            target("a.lab.test", 10, 0, 5060, "198.18.2.2"),
            target("b.lab.test", 20, 0, 5062, "198.18.2.3"),
        ]),
    );
    let a = r.msg(&invite("+19995550100", "d40"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, sbc("198.18.2.2:5060")))[0].clone();
    let ok = build_response(
        &inv,
        200,
        "OK",
        "s40",
        &[("Contact", "<sip:gw@198.18.2.3:5062>".into())],
        Some(("application/sdp", ANSWER.as_bytes())),
    );
    let a = r.msg(&ok, sbc("198.18.2.2:5060"));
    let fe_ok = sent_to(&a, fe())[0].clone();
    r.msg(&fe_in_dialog("ACK", &fe_ok, 1, "ack-d40"), fe());
    let a = r.msg(&fe_in_dialog("BYE", &fe_ok, 2, "bye-d40"), fe());
    let bye = requests(&sent_to(&a, sbc("198.18.2.3:5062")))
        .into_iter()
        .find(|m| m.method() == Some("BYE"))
        .cloned();
    assert!(
        bye.is_some(),
        "the BYE goes to the other address of sbc.lab.test: {a:?}"
    );

    // A Contact at an address of no configured name: the BYE goes where the call went.
    let a = r.msg(&invite("+19995550101", "d41"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let inv = requests(&sent_to(&a, sbc("198.18.2.2:5060")))[0].clone();
    let ok = build_response(
        &inv,
        200,
        "OK",
        "s41",
        &[("Contact", "<sip:gw@198.18.2.9:5062>".into())],
        Some(("application/sdp", ANSWER.as_bytes())),
    );
    let a = r.msg(&ok, sbc("198.18.2.2:5060"));
    let fe_ok = sent_to(&a, fe())[0].clone();
    r.msg(&fe_in_dialog("ACK", &fe_ok, 1, "ack-d41"), fe());
    let a = r.msg(&fe_in_dialog("BYE", &fe_ok, 2, "bye-d41"), fe());
    assert!(
        requests(&sent_to(&a, sbc("198.18.2.2:5060")))
            .iter()
            .any(|m| m.method() == Some("BYE"))
    );
}

//! Gateway health on virtual time: OPTIONS to every trunk's peer, down after the threshold,
//! skipped by routing (503 naming the trunks when none is left), up again on the first answer.

use super::*;

/// The lab with probing every 10 s, down after 3 failures.
fn probing() -> Run {
    let mut r = Run::new("health");
    r.t = mediator_topology::testing::lab();
    let g = r.t.configs.get_mut("global").expect("global");
    g.value.settings.options_interval_secs = Some(10);
    g.value.settings.options_failures = Some(3);
    r
}

/// The OPTIONS sent to `to` (first transmissions and retransmissions alike).
fn probes(actions: &[Action], to: Peer) -> Vec<Message> {
    sent_to(actions, to)
        .into_iter()
        .filter(|m| m.method() == Some("OPTIONS"))
        .collect()
}

fn changes(actions: &[Action]) -> Vec<(String, TrunkState)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::TrunkState(c) => Some((c.trunk.clone(), c.state)),
            _ => None,
        })
        .collect()
}

impl Run {
    fn topology_changed(&mut self) -> Vec<Action> {
        self.e.on_topology(&self.t, self.now)
    }

    /// Advances in 500 ms steps for `d`, collecting every action.
    fn run_for(&mut self, d: Duration) -> Vec<Action> {
        let mut all = Vec::new();
        let end = self.now.mono + d;
        while self.now.mono < end {
            all.extend(self.advance(Duration::from_millis(500)));
        }
        all
    }

    fn health(&self, trunk: &str) -> TrunkHealth {
        self.e
            .trunk_health()
            .into_iter()
            .find(|h| h.trunk == trunk)
            .expect("probed")
    }
}

#[test]
fn every_trunk_is_probed_with_a_well_formed_options() {
    let mut r = probing();
    let a = r.topology_changed();
    for port in [5060, 5062, 5064, 5066] {
        assert_eq!(probes(&a, gw(port, port)).len(), 1, "trunk on port {port}");
    }
    let o = &probes(&a, gw(5062, 5062))[0];
    assert_eq!(o.request_uri(), Some("sip:198.18.2.2:5062"));
    assert_eq!(o.header("max-forwards").as_deref(), Some("70"));
    assert_eq!(o.header("cseq").as_deref(), Some("1 OPTIONS"));
    assert!(o.summary.from_tag.is_some() && o.summary.to_tag.is_none());
    assert_eq!(o.header("accept").as_deref(), Some("application/sdp"));
    let tcp = Peer {
        transport: mediator_sip::Transport::Tcp,
        ..gw(5070, 5070)
    };
    let o = &probes(&a, tcp)[0];
    assert_eq!(o.request_uri(), Some("sip:198.18.2.2:5070;transport=tcp"));
    // Nothing new until the interval is up (an unanswered UDP probe is only retransmitted).
    r.run_for(Duration::from_millis(9000));
    assert_eq!(r.health("gw-5062").probes, 1);
    assert_eq!(r.health("gw-tcp").probes, 1);
    r.run_for(Duration::from_millis(1500));
    assert_eq!(r.health("gw-5062").probes, 2, "the next probe");
}

#[test]
fn a_trunk_is_down_after_the_threshold_skipped_by_routing_and_up_on_its_first_answer() {
    let mut r = probing();
    let a = r.topology_changed();
    // 198.18.2.2 answers (405 counts: its SIP stack is there), gw-5062 never does.
    let o = probes(&a, gw(5060, 5060))[0].clone();
    let a = r.msg(&respond(&o, 405, "g", None), gw(5060, 5060));
    assert_eq!(
        changes(&a),
        vec![("198.18.2.2".to_string(), TrunkState::Up)]
    );
    let h = r.health("198.18.2.2");
    assert_eq!(
        (h.state, h.last_status, h.failures),
        (TrunkState::Up, Some(405), 0)
    );
    assert!(h.rtt.is_some() && h.since_unix_ms.is_some());

    let mut downs = Vec::new();
    let mut elapsed = Duration::ZERO;
    let mut given_up: HashSet<String> = probes(&a, gw(5062, 5062))
        .iter()
        .map(|m| m.summary.branch.clone())
        .collect();
    while downs.is_empty() && elapsed < Duration::from_secs(40) {
        let a = r.run_for(Duration::from_secs(1));
        given_up.extend(
            probes(&a, gw(5062, 5062))
                .iter()
                .map(|m| m.summary.branch.clone()),
        );
        elapsed += Duration::from_secs(1);
        // Keep the live trunk answering.
        for o in probes(&a, gw(5060, 5060)) {
            r.msg(&respond(&o, 200, "g", None), gw(5060, 5060));
        }
        downs = changes(&a)
            .into_iter()
            .filter(|(t, s)| t == "gw-5062" && *s == TrunkState::Down)
            .collect();
    }
    assert!(
        !downs.is_empty() && elapsed <= Duration::from_secs(31),
        "down within interval x threshold (took {elapsed:?})"
    );
    let h = r.health("gw-5062");
    assert_eq!(
        (h.state, h.failures, h.downs, h.last_status),
        (TrunkState::Down, 3, 1, None)
    );
    assert_eq!(r.health("198.18.2.2").state, TrunkState::Up);

    // A call on the failover route goes straight to the second trunk.
    let a = r.msg(&invite("+15555550100", "h1"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    let to_down: Vec<Message> = sent_to(&a, gw(5062, 5062))
        .into_iter()
        .filter(|m| m.method() == Some("INVITE"))
        .collect();
    assert!(to_down.is_empty(), "the down trunk is not tried");
    let inv = requests(&sent_to(&a, gw(5060, 5060)))
        .into_iter()
        .find(|m| m.method() == Some("INVITE"))
        .expect("INVITE to the trunk that is up")
        .clone();
    let a = r.msg(&respond(&inv, 486, "x", None), gw(5060, 5060));
    assert_eq!(
        ended(&a).expect("record").attempts,
        vec![("198.18.2.2".to_string(), 486)]
    );

    // Down trunks are probed faster (a quarter of the interval) and come back on one answer.
    let before = r.health("gw-5062").probes;
    let a = r.run_for(Duration::from_secs(3));
    assert_eq!(
        r.health("gw-5062").probes,
        before + 1,
        "probed again within 2.5 s of going down"
    );
    let o = probes(&a, gw(5062, 5062))
        .into_iter()
        .find(|m| !given_up.contains(&m.summary.branch))
        .expect("the new probe");
    // A late answer to a probe given up changes nothing; the answer to the new one does.
    let late = probes(&a, gw(5062, 5062))
        .into_iter()
        .find(|m| given_up.contains(&m.summary.branch));
    if let Some(late) = late {
        let a = r.msg(&respond(&late, 200, "g", None), gw(5062, 5062));
        assert!(changes(&a).is_empty());
    }
    let a = r.msg(&respond(&o, 200, "g", None), gw(5062, 5062));
    assert_eq!(changes(&a), vec![("gw-5062".to_string(), TrunkState::Up)]);
    let a = r.msg(&invite("+15555550101", "h2"), fe());
    let id = media_call(&a);
    let a = r.created(id);
    assert!(
        requests(&sent_to(&a, gw(5062, 5062)))
            .iter()
            .any(|m| m.method() == Some("INVITE")),
        "routed to again"
    );
}

#[test]
fn a_route_whose_trunks_are_all_down_gets_503_naming_them() {
    let mut r = probing();
    let g = r.t.configs.get_mut("global").expect("global");
    g.value.settings.options_failures = Some(1);
    let a = r.topology_changed();
    let tcp = Peer {
        transport: mediator_sip::Transport::Tcp,
        ..gw(5070, 5070)
    };
    let o = probes(&a, tcp)[0].clone();
    let a = r.msg(&respond(&o, 503, "g", None), tcp);
    assert_eq!(changes(&a), vec![("gw-tcp".to_string(), TrunkState::Down)]);
    let a = r.msg(&invite("+17775550100", "h3"), fe());
    let resp = &sent_to(&a, fe())
        .into_iter()
        .find(|m| m.status().is_some_and(|s| s >= 200))
        .expect("a final response");
    assert_eq!(resp.status(), Some(503));
    let w = resp.header("warning").expect("a Warning");
    assert!(w.contains("down") && w.contains("gw-tcp"), "{w}");
    assert!(
        !a.iter().any(|x| matches!(x, Action::CreateMedia { .. })),
        "no media for a call that cannot be routed"
    );
}

#[test]
fn probing_follows_the_topology() {
    let mut r = probing();
    r.topology_changed();
    assert!(r.e.trunk_health().iter().any(|h| h.trunk == "gw-5062"));
    // Probing off for one trunk: it is no longer probed nor ever down.
    r.t.create(
        mediator_topology::topology::TrunkConfig {
            name: "trunk:gw-5062".into(),
            settings: mediator_topology::model::Settings {
                options_interval_secs: Some(0),
                ..Default::default()
            },
        },
        2,
        &mut mediator_topology::topology::Changes::default(),
    )
    .expect("trunk config");
    r.topology_changed();
    assert!(!r.e.trunk_health().iter().any(|h| h.trunk == "gw-5062"));
    let before = r.health("198.18.2.2").probes;
    let a = r.run_for(Duration::from_secs(40));
    // The probe in flight may still be retransmitted by its transaction; no new one goes out.
    let mut calls: Vec<String> = probes(&a, gw(5062, 5062))
        .iter()
        .map(|m| m.summary.call_id.clone())
        .collect();
    calls.dedup();
    assert!(calls.len() <= 1, "{calls:?}");
    assert!(
        r.health("198.18.2.2").probes >= before + 3,
        "the others still are"
    );
}

/// Changing a trunk's interval or threshold keeps its state and counters: a down trunk stays
/// down (and skipped) instead of starting over as unknown.
#[test]
fn new_probe_settings_keep_a_down_trunk_down() {
    let mut r = probing();
    r.topology_changed();
    let mut elapsed = Duration::ZERO;
    while r.health("gw-5062").state != TrunkState::Down && elapsed < Duration::from_secs(40) {
        r.run_for(Duration::from_secs(1));
        elapsed += Duration::from_secs(1);
    }
    assert_eq!(r.health("gw-5062").state, TrunkState::Down);
    let g = r.t.configs.get_mut("global").expect("global");
    g.value.settings.options_interval_secs = Some(20);
    g.value.settings.options_failures = Some(4);
    r.topology_changed();
    let h = r.health("gw-5062");
    assert_eq!((h.state, h.downs), (TrunkState::Down, 1));
    assert!(h.probes >= 3, "the counters are kept: {}", h.probes);
}

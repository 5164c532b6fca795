//! Operations (issue 14) in the namespace lab: a real Prometheus (Debian's) scrapes both daemons
//! during a SIPp call with RTP, and the test reads the call and packet counters back through
//! Prometheus's HTTP API.

use std::time::Duration;

use mediator_tests::calls::CallLab;
use mediator_tests::lab::{GW_PEER, privileged};
use mediator_tests::prometheus::{Prometheus, scrape};
use mediator_tests::sipp::Uas;

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_calls_and_packets_from_both_daemons() {
    if !privileged("prometheus_scrapes_calls_and_packets_from_both_daemons") {
        return;
    }
    let (control, relay) = ("127.0.0.1:9301", "127.0.0.1:9401");
    let lab = CallLab::build_full(
        "prom",
        &["30000-30999"],
        &["--metrics-listen", control],
        &["--metrics-listen", relay],
        None,
    )
    .await
    .expect("call lab");
    let ns = lab.lab.relay.name.clone();
    let _gw = Uas::start(&lab.lab.gw.name, GW_PEER, 5060, &[]).expect("gateway uas");
    let prom = Prometheus::start(&ns, &[control, relay], 9390).expect("prometheus");

    // The exposition itself: OpenMetrics text with its types and end.
    for addr in [control, relay] {
        let text = scrape(&ns, addr).expect("a scrape");
        assert!(text.ends_with("# EOF\n"), "{addr}:\n{text}");
    }
    assert!(
        scrape(&ns, control)
            .expect("scrape")
            .contains("# TYPE mediator_calls_active gauge")
    );

    let run = lab.from_pool("+14255550100", 1, &[]).expect("uac");
    assert_eq!((run.successful, run.failed), (1, 0), "{run:?}");
    let limit = Duration::from_secs(30);
    let want = |expr: &str, ok: fn(f64) -> bool| {
        let got = prom.wait(expr, limit, ok);
        assert!(
            got.is_some_and(ok),
            "{expr}: {got:?}\nprometheus:\n{}",
            prom.log()
        );
        got.unwrap_or_default()
    };
    want(r#"sum(up{job="mediator"})"#, |v| v == 2.0);
    want(r#"sum(mediator_calls_total{status="200"})"#, |v| v == 1.0);
    want(
        r#"sum(mediator_sip_messages_total{direction="in",method="INVITE"})"#,
        |v| v >= 2.0,
    );
    want("mediator_calls_active", |v| v == 0.0);
    let packets = want(r#"sum(mediator_dataplane_packets_total)"#, |v| v > 0.0);
    let xdp = want(r#"mediator_dataplane_packets_total{path="xdp"}"#, |v| {
        v > 0.0
    });
    assert!(xdp <= packets);
    want(r#"mediator_dataplane_xdp_mode{mode="native"}"#, |v| {
        v == 1.0
    });
    want("mediator_dataplane_sessions", |v| v == 0.0);
    want(r#"mediator_relay_up{relay="127.0.0.1:7400"}"#, |v| v == 1.0);
}

//! Calls through Mediator with real SIP peers: SIPp on the pool side (the Front End) and on the
//! gateway side, in the namespace lab, with mediator-control and mediator-dataplane (XDP native)
//! in the relay namespace and the lab topology (tests/lab/topology.toml).

use mediator_tests::calls::{CallLab, flow};
use mediator_tests::lab::{GW_PEER, POOL_PEER, privileged};
use mediator_tests::sipp::Uas;

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
    let (from_pool, xdp_pool) = flow(c, "pool");
    let (from_gw, xdp_gw) = flow(c, "gateway");
    assert!(from_pool > 100 && from_gw > 100, "RTP both ways: {c:#?}");
    assert!(
        xdp_pool > 0 && xdp_gw > 0,
        "forwarded by XDP both ways: {c:#?}"
    );
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

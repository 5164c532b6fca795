//! `kill -9` of mediator-dataplane while media flows: sessions forwarded by XDP lose no packet,
//! and after the restart every session is listed again and userspace-forwarded ones resume.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mediator_proto::dataplane::v1 as pb;
use mediator_tests::fixture::{create, relay_daemon, relay_ports, sa, strict};
use mediator_tests::lab::*;
use mediator_tests::rtp::{drain, rtp_packet, udp_in};

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_xdp_packet_and_sessions_come_back() {
    if !privileged("kill_9_loses_no_xdp_packet_and_sessions_come_back") {
        return;
    }
    let lab = Lab::new("rst").expect("lab");
    let mut d = relay_daemon(&lab, "restart", "native", "31000-31099", &[]).expect("daemon");
    let mut c = d.client().await.expect("client");

    let a_src = udp_in(&lab.pool.name, sa(POOL_PEER, 4000));
    let a_dst = udp_in(&lab.gw.name, sa(GW_PEER, 5000));
    let b_src = udp_in(&lab.pool.name, sa(POOL_PEER, 4100));
    let b_dst = udp_in(&lab.gw.name, sa(GW_PEER, 5100));
    let req = create("kernel", sa(POOL_PEER, 4000), sa(GW_PEER, 5000), strict());
    let a = c
        .create_session(req)
        .await
        .expect("create a")
        .into_inner()
        .session
        .expect("a");
    assert_eq!(a.path, pb::ForwardingPath::Xdp as i32);
    // Latching with only one direction ever confirmed: this one stays in userspace.
    let latching = pb::SessionOptions {
        latching: true,
        ..Default::default()
    };
    let req = create("user", sa(POOL_PEER, 4100), sa(GW_PEER, 5100), latching);
    let b = c
        .create_session(req)
        .await
        .expect("create b")
        .into_inner()
        .session
        .expect("b");
    let (a_port, b_port) = (relay_ports(&a).0, relay_ports(&b).0);
    for seq in 0..5u16 {
        b_src
            .send_to(&rtp_packet(seq, 0, 9, 160), sa(POOL_RELAY, b_port))
            .expect("send");
    }
    assert_eq!(drain(&b_dst, Duration::from_millis(200)).len(), 5);
    // The userspace counters reach the session's record within COUNTERS_FLUSH (5 s).
    tokio::time::sleep(Duration::from_millis(5600)).await;

    // 3000 packets at one per millisecond through session a, while the daemon is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let counter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if a_dst.recv_from(&mut buf).is_ok() {
                    n += 1;
                }
            }
            n
        })
    };
    let sender = std::thread::spawn(move || {
        for seq in 0..3000u16 {
            a_src
                .send_to(
                    &rtp_packet(seq, u32::from(seq) * 160, 7, 160),
                    sa(POOL_RELAY, a_port),
                )
                .expect("send");
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.restart().expect("restart");
    let mut c = d.client().await.expect("client after restart");
    sender.join().expect("sender");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let received = counter.join().expect("counter");
    assert_eq!(
        received, 3000,
        "no packet of the XDP session lost across kill -9 and restart"
    );

    let list = c
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = list
        .sessions
        .iter()
        .map(|s| s.session_id.as_str())
        .collect();
    assert_eq!(ids, ["kernel", "user"], "both sessions re-adopted");
    let a = &list.sessions[0];
    assert_eq!(
        a.path,
        pb::ForwardingPath::Xdp as i32,
        "still offloaded: {a:?}"
    );
    let up = a
        .streams
        .iter()
        .find(|s| s.from_side == pb::Side::Pool as i32 && s.kind == pb::StreamKind::Rtp as i32);
    let cnt = up.expect("stream").counters.expect("counters");
    assert_eq!(
        cnt.xdp_packets, 3000,
        "the kernel's counters survived in the pinned map"
    );

    // The userspace session's counters came back with it (from its record).
    let user_rtp = |s: &pb::Session| {
        s.streams
            .iter()
            .find(|s| s.from_side == pb::Side::Pool as i32 && s.kind == pb::StreamKind::Rtp as i32)
            .and_then(|s| s.counters)
            .map(|c| c.userspace_packets)
    };
    assert_eq!(
        user_rtp(&list.sessions[1]),
        Some(5),
        "the userspace counters survived the crash"
    );
    // The userspace session resumes on its re-bound sockets.
    for seq in 1..=20u16 {
        b_src
            .send_to(&rtp_packet(seq, 0, 9, 160), sa(POOL_RELAY, b_port))
            .expect("send");
    }
    assert_eq!(
        drain(&b_dst, Duration::from_millis(300)).len(),
        20,
        "userspace session resumes"
    );
    let b = c
        .get_session(pb::GetSessionRequest {
            session_id: "user".into(),
        })
        .await
        .expect("get")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(user_rtp(&b), Some(25), "counting on from where it was");
    assert!(
        d.log().contains("re-adopted the pinned XDP link"),
        "{}",
        d.log()
    );
}

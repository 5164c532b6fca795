//! 802.1Q: frames tagged with VLAN 100 arrive at the relay (injected on the pool peer's veth with an
//! AF_PACKET socket — these machines cannot load the 8021q module, so no VLAN device can exist).
//! XDP parses the tag, matches the stream, strips the tag as the FIB sends the packet out of an
//! untagged port, and the gateway peer receives it with valid checksums.

use std::net::SocketAddrV4;
use std::time::Duration;

use mediator_proto::dataplane::v1 as pb;
use mediator_tests::fixture::{create, relay_daemon, relay_ports, sa, stream, strict};
use mediator_tests::lab::*;
use mediator_tests::rtp::{
    drain, parse_mac, raw_socket, rtp_packet, send_frame, udp_errors, udp_in, udp4_frame,
};

async fn tagged_frames(mode: &str) {
    if !privileged(&format!("vlan_{mode}")) {
        return;
    }
    let lab = Lab::new(&format!("v{mode}")).expect("lab");
    let mut d =
        relay_daemon(&lab, &format!("vlan{mode}"), mode, "33000-33099", &[]).expect("daemon");
    let mut c = d.client().await.expect("client");
    let gw = udp_in(&lab.gw.name, sa(GW_PEER, 5000));
    let req = create("vlan", sa(POOL_PEER, 4000), sa(GW_PEER, 5000), strict());
    let s = c
        .create_session(req)
        .await
        .expect("create")
        .into_inner()
        .session
        .expect("session");
    let (p, g) = relay_ports(&s);
    let src_mac = parse_mac(&mac(&lab.pool, "p0").expect("mac"));
    let dst_mac = parse_mac(&mac(&lab.relay, "rp").expect("mac"));
    let raw = raw_socket(&lab.pool.name, "p0");
    let from: SocketAddrV4 = format!("{POOL_PEER}:4000").parse().expect("addr");
    let to: SocketAddrV4 = format!("{POOL_RELAY}:{p}").parse().expect("addr");
    let errors = udp_errors(&lab.gw.name);
    for seq in 0..40u16 {
        let payload = rtp_packet(seq, u32::from(seq) * 160, 1, 160);
        send_frame(
            &raw,
            &udp4_frame(src_mac, dst_mac, Some(100), from, to, &payload),
        );
    }
    let got = drain(&gw, Duration::from_millis(300));
    assert_eq!(got.len(), 40, "tagged frames forwarded");
    assert!(got.iter().all(|(_, f)| *f == sa(GW_RELAY, g)));
    assert_eq!(got[7].0, rtp_packet(7, 7 * 160, 1, 160));
    assert_eq!(
        udp_errors(&lab.gw.name),
        errors,
        "valid checksums after the tag was stripped"
    );

    let s = c
        .get_session(pb::GetSessionRequest {
            session_id: "vlan".into(),
        })
        .await
        .expect("get");
    let s = s.into_inner().session.expect("session");
    let up = stream(&s, pb::Side::Pool, pb::StreamKind::Rtp);
    let cnt = up.counters.expect("counters");
    assert_eq!(
        (cnt.packets, cnt.xdp_packets),
        (40, 40),
        "parsed and forwarded in XDP: {cnt:?}"
    );
    assert_eq!(up.rtp.expect("rtp").received, 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn vlan_native() {
    tagged_frames("native").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vlan_generic() {
    tagged_frames("generic").await;
}

//! One conformance suite, run against XDP native, XDP generic and the userspace fallback (xdp off):
//! the same sessions, the same packets, the same expected results. Needs root (namespaces, XDP).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use mediator_proto::dataplane::v1 as pb;
use mediator_tests::daemon::{Client, Daemon};
use mediator_tests::fixture::{create, ep, leg, relay_daemon, relay_ports, sa, stream, strict};
use mediator_tests::lab::*;
use mediator_tests::rtp::{
    capture_udp_checksums, drain, drain_hop_limits, parse_mac, raw_socket, rtcp_packet, rtp_packet,
    send_frame, set_opt, udp_errors, udp_in, udp4_frame,
};

const QUIET: Duration = Duration::from_millis(300);

async fn session(c: &mut Client, req: pb::CreateSessionRequest) -> pb::Session {
    c.create_session(req)
        .await
        .expect("create")
        .into_inner()
        .session
        .expect("session")
}

async fn get(c: &mut Client, id: &str) -> pb::Session {
    c.get_session(pb::GetSessionRequest {
        session_id: id.into(),
    })
    .await
    .expect("get")
    .into_inner()
    .session
    .expect("session")
}

/// Sends `n` RTP packets from `from` to `to`, paced lightly; returns the payload bytes sent.
fn send_rtp(
    from: &UdpSocket,
    to: SocketAddr,
    ssrc: u32,
    seqs: impl IntoIterator<Item = u16>,
) -> u64 {
    let mut bytes = 0;
    for (i, seq) in seqs.into_iter().enumerate() {
        let p = rtp_packet(seq, u32::from(seq) * 160, ssrc, 160);
        bytes += p.len() as u64;
        from.send_to(&p, to).expect("send");
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    bytes
}

struct Suite {
    lab: Lab,
    daemon: Daemon,
    c: Client,
    xdp: bool,
}

impl Suite {
    async fn start(mode: &str) -> Self {
        let lab = Lab::new(mode).expect("lab");
        let mut daemon = relay_daemon(&lab, mode, mode, "30000-30999", &[]).expect("daemon");
        let mut c = daemon.client().await.expect("client");
        let caps = c
            .get_capabilities(pb::GetCapabilitiesRequest {})
            .await
            .expect("caps")
            .into_inner();
        let want = match mode {
            "native" => pb::XdpMode::Native,
            "generic" => pb::XdpMode::Generic,
            _ => pb::XdpMode::Off,
        };
        assert_eq!(
            caps.xdp_mode, want as i32,
            "mode in force: {}",
            caps.xdp_note
        );
        assert_eq!(caps.free_ports, 1000);
        Self {
            lab,
            daemon,
            c,
            xdp: mode != "off",
        }
    }

    fn check_path(&self, st: &pb::Stream, sent: u64) {
        let cnt = st.counters.expect("counters");
        assert_eq!(cnt.packets, sent, "forwarded packets, both paths: {st:?}");
        assert_eq!(cnt.xdp_packets + cnt.userspace_packets, sent);
        if self.xdp {
            assert_eq!(st.path, pb::ForwardingPath::Xdp as i32, "{st:?}");
            // The first packets may go up while the kernel resolves the neighbour.
            assert!(cnt.xdp_packets >= sent / 2, "mostly in the kernel: {cnt:?}");
        } else {
            assert_eq!(st.path, pb::ForwardingPath::Userspace as i32);
            assert_eq!(cnt.xdp_packets, 0);
        }
    }

    /// RTP and RTCP, both directions, right addresses and ports, valid checksums, counters.
    async fn forwarding(&mut self, v6: bool) {
        let (pp, pr, gr, gp) = if v6 {
            (POOL_PEER6, POOL_RELAY6, GW_RELAY6, GW_PEER6)
        } else {
            (POOL_PEER, POOL_RELAY, GW_RELAY, GW_PEER)
        };
        let id = if v6 { "fwd6" } else { "fwd4" };
        let (pool, gw) = (&self.lab.pool.name, &self.lab.gw.name);
        let pool_rtp = udp_in(pool, sa(pp, 4000));
        let pool_rtcp = udp_in(pool, sa(pp, 4001));
        let gw_rtp = udp_in(gw, sa(gp, 5000));
        let gw_rtcp = udp_in(gw, sa(gp, 5001));
        let s = session(
            &mut self.c,
            create(id, sa(pp, 4000), sa(gp, 5000), strict()),
        )
        .await;
        let (p, g) = relay_ports(&s);
        let errors_before = (udp_errors(pool), udp_errors(gw));

        let n = 300u16;
        let bytes = send_rtp(&pool_rtp, sa(pr, p), 0x1111, 0..n);
        let got = drain(&gw_rtp, QUIET);
        assert_eq!(got.len(), usize::from(n), "pool -> gateway RTP");
        for (i, (payload, from)) in got.iter().enumerate() {
            assert_eq!(
                *from,
                sa(gr, g),
                "source rewritten to the relay's gateway side"
            );
            assert_eq!(
                payload,
                &rtp_packet(i as u16, i as u32 * 160, 0x1111, 160),
                "payload intact"
            );
        }
        send_rtp(&gw_rtp, sa(gr, g), 0x2222, 0..n);
        let back = drain(&pool_rtp, QUIET);
        assert_eq!(back.len(), usize::from(n), "gateway -> pool RTP");
        assert!(back.iter().all(|(_, from)| *from == sa(pr, p)));

        for _ in 0..5 {
            pool_rtcp
                .send_to(&rtcp_packet(0x1111), sa(pr, p + 1))
                .expect("send");
            gw_rtcp
                .send_to(&rtcp_packet(0x2222), sa(gr, g + 1))
                .expect("send");
            std::thread::sleep(Duration::from_millis(2));
        }
        let rtcp_at_gw = drain(&gw_rtcp, QUIET);
        let rtcp_at_pool = drain(&pool_rtcp, QUIET);
        assert_eq!(rtcp_at_gw.len(), 5, "RTCP pool -> gateway");
        assert_eq!(rtcp_at_pool.len(), 5, "RTCP gateway -> pool");
        assert!(
            rtcp_at_gw
                .iter()
                .all(|(p, f)| *f == sa(gr, g + 1) && *p == rtcp_packet(0x1111))
        );
        assert!(rtcp_at_pool.iter().all(|(_, f)| *f == sa(pr, p + 1)));
        assert_eq!(
            (udp_errors(pool), udp_errors(gw)),
            errors_before,
            "no checksum or UDP errors at the peers"
        );

        let s = get(&mut self.c, id).await;
        let up = stream(&s, pb::Side::Pool, pb::StreamKind::Rtp);
        self.check_path(&up, u64::from(n));
        assert_eq!(up.counters.expect("counters").bytes, bytes);
        let rtp = up.rtp.expect("rtp stats");
        assert_eq!(
            (rtp.ssrc, rtp.received, rtp.expected, rtp.lost),
            (0x1111, 300, 300, 0)
        );
        self.check_path(
            &stream(&s, pb::Side::Gateway, pb::StreamKind::Rtp),
            u64::from(n),
        );
        let rtcp = stream(&s, pb::Side::Pool, pb::StreamKind::Rtcp);
        assert_eq!(rtcp.counters.expect("counters").packets, 5);
        assert!(rtcp.rtp.is_none(), "RTCP is not counted as RTP");
        assert_eq!(
            s.path,
            if self.xdp {
                pb::ForwardingPath::Xdp
            } else {
                pb::ForwardingPath::Userspace
            } as i32
        );

        // Every path sends with the relay's own TTL / hop limit, whatever the packet came with
        // (a router would decrement; the relay is the packet's destination).
        let (level, opt) = if v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
        } else {
            (libc::IPPROTO_IP, libc::IP_TTL)
        };
        for ttl in [1i32, 5, 200] {
            set_opt(&pool_rtp, level, opt, &ttl.to_ne_bytes());
            send_rtp(&pool_rtp, sa(pr, p), 0x1111, 400..410);
            let got = drain_hop_limits(&gw_rtp, v6, QUIET);
            assert_eq!(
                got,
                vec![mediator_dataplane::abi::RELAY_TTL; 10],
                "sent with TTL {ttl}: relayed with the relay's own"
            );
        }
    }

    /// Strict source: a spoofer's packets are dropped and counted (RTP bleed).
    async fn strict_source(&mut self) {
        let (pool, gw) = (&self.lab.pool.name, &self.lab.gw.name);
        let legit = udp_in(pool, sa(POOL_PEER, 4100));
        let spoofer = udp_in(pool, sa(POOL_OTHER, 4100));
        let gw_rtp = udp_in(gw, sa(GW_PEER, 5100));
        let s = session(
            &mut self.c,
            create("strict", sa(POOL_PEER, 4100), sa(GW_PEER, 5100), strict()),
        )
        .await;
        let (p, _) = relay_ports(&s);
        send_rtp(&legit, sa(POOL_RELAY, p), 1, 0..20);
        send_rtp(&spoofer, sa(POOL_RELAY, p), 666, 0..30);
        let got = drain(&gw_rtp, QUIET);
        assert_eq!(got.len(), 20, "only the expected source gets through");
        let st = stream(
            &get(&mut self.c, "strict").await,
            pb::Side::Pool,
            pb::StreamKind::Rtp,
        );
        let cnt = st.counters.expect("counters");
        assert_eq!((cnt.packets, cnt.source_mismatch), (20, 30));
        assert_eq!(
            st.rtp.expect("rtp").ssrc,
            1,
            "the spoofer did not touch the statistics"
        );
    }

    /// Latching: a pool peer behind NAT (SDP says :4200, it sends from :4444) is learned; replies
    /// go to the real source; once both ways are confirmed the session is offloaded and a packet
    /// from the SDP address is then a spoof.
    async fn latching(&mut self) {
        let (pool, gw) = (&self.lab.pool.name, &self.lab.gw.name);
        let natted = udp_in(pool, sa(POOL_PEER, 4444));
        let sdp_addr = udp_in(pool, sa(POOL_PEER, 4200));
        let gw_rtp = udp_in(gw, sa(GW_PEER, 5200));
        let opts = pb::SessionOptions {
            latching: true,
            strict_source: true,
            ..Default::default()
        };
        let s = session(
            &mut self.c,
            create("latch", sa(POOL_PEER, 4200), sa(GW_PEER, 5200), opts),
        )
        .await;
        assert_eq!(s.path, pb::ForwardingPath::Userspace as i32);
        let why = if self.xdp {
            "latching"
        } else {
            "xdp off by configuration"
        };
        assert_eq!(s.path_reason, why);
        let (p, g) = relay_ports(&s);
        send_rtp(&natted, sa(POOL_RELAY, p), 7, 0..10);
        assert_eq!(drain(&gw_rtp, QUIET).len(), 10);
        send_rtp(&gw_rtp, sa(GW_RELAY, g), 8, 0..10);
        assert_eq!(
            drain(&natted, QUIET).len(),
            10,
            "replies go to the latched source"
        );
        assert!(
            drain(&sdp_addr, Duration::from_millis(50)).is_empty(),
            "not to the SDP address"
        );
        let s = get(&mut self.c, "latch").await;
        let up = stream(&s, pb::Side::Pool, pb::StreamKind::Rtp);
        assert!(up.latched);
        assert_eq!(up.expected_source, ep(sa(POOL_PEER, 4444)));
        if self.xdp {
            assert_eq!(
                s.path,
                pb::ForwardingPath::Xdp as i32,
                "offloaded once both ways confirmed: {s:?}"
            );
        }
        send_rtp(&natted, sa(POOL_RELAY, p), 7, 10..60);
        send_rtp(&sdp_addr, sa(POOL_RELAY, p), 9, 0..5);
        assert_eq!(drain(&gw_rtp, QUIET).len(), 50);
        let up = stream(
            &get(&mut self.c, "latch").await,
            pb::Side::Pool,
            pb::StreamKind::Rtp,
        );
        let cnt = up.counters.expect("counters");
        assert_eq!((cnt.packets, cnt.source_mismatch), (60, 5));
        if self.xdp {
            assert!(cnt.xdp_packets >= 40, "{cnt:?}");
        }
    }

    /// Loss and reordering as RFC 3550 counts them, and interarrival jitter.
    async fn loss_and_jitter(&mut self) {
        let (pool, gw) = (&self.lab.pool.name, &self.lab.gw.name);
        let src = udp_in(pool, sa(POOL_PEER, 4300));
        let gw_rtp = udp_in(gw, sa(GW_PEER, 5300));
        let s = session(
            &mut self.c,
            create("loss", sa(POOL_PEER, 4300), sa(GW_PEER, 5300), strict()),
        )
        .await;
        let (p, _) = relay_ports(&s);
        let mut seqs: Vec<u16> = (0..100)
            .filter(|s| ![10, 11, 40, 70, 99].contains(s))
            .collect();
        seqs.swap(20, 21);
        seqs.swap(50, 53);
        send_rtp(&src, sa(POOL_RELAY, p), 42, seqs.iter().copied());
        assert_eq!(drain(&gw_rtp, QUIET).len(), 95);
        let rtp = stream(
            &get(&mut self.c, "loss").await,
            pb::Side::Pool,
            pb::StreamKind::Rtp,
        )
        .rtp
        .expect("rtp");
        // 99 was never sent, so the highest seen is 98: 99 expected, 95 received.
        assert_eq!(
            (rtp.received, rtp.expected, rtp.lost, rtp.highest_seq),
            (95, 99, 4, 98)
        );

        // Jitter: 20 ms of RTP time per packet, sent alternately 10 ms and 30 ms apart: |D| = 10 ms.
        let src = udp_in(pool, sa(POOL_PEER, 4301));
        let s = session(
            &mut self.c,
            create("jitter", sa(POOL_PEER, 4301), sa(GW_PEER, 5300), strict()),
        )
        .await;
        let (p, _) = relay_ports(&s);
        for seq in 0..60u16 {
            src.send_to(
                &rtp_packet(seq, u32::from(seq) * 160, 43, 160),
                sa(POOL_RELAY, p),
            )
            .expect("send");
            std::thread::sleep(Duration::from_millis(if seq % 2 == 0 { 10 } else { 30 }));
        }
        drain(&gw_rtp, QUIET);
        let rtp = stream(
            &get(&mut self.c, "jitter").await,
            pb::Side::Pool,
            pb::StreamKind::Rtp,
        )
        .rtp
        .expect("rtp");
        assert_eq!(rtp.lost, 0);
        assert!(
            (5.0..=20.0).contains(&rtp.jitter_ms),
            "jitter {} ms, expected about 10",
            rtp.jitter_ms
        );
    }

    /// IPv4 on one side, IPv6 on the other: relayed in userspace, and it says why.
    async fn family_change(&mut self) {
        let (pool, gw) = (&self.lab.pool.name, &self.lab.gw.name);
        let src = udp_in(pool, sa(POOL_PEER, 4400));
        let dst = udp_in(gw, sa(GW_PEER6, 5400));
        let s = session(
            &mut self.c,
            create("mixed", sa(POOL_PEER, 4400), sa(GW_PEER6, 5400), strict()),
        )
        .await;
        let (p, g) = relay_ports(&s);
        if self.xdp {
            assert_eq!(s.path_reason, "address family change");
        }
        send_rtp(&src, sa(POOL_RELAY, p), 5, 0..20);
        let got = drain(&dst, QUIET);
        assert_eq!(got.len(), 20);
        assert!(got.iter().all(|(_, f)| *f == sa(GW_RELAY6, g)));
    }

    /// rtcp-mux: RTP and RTCP on one port each side.
    async fn rtcp_mux(&mut self) {
        let (pool, gw) = (&self.lab.pool.name, &self.lab.gw.name);
        let src = udp_in(pool, sa(POOL_PEER, 4500));
        let dst = udp_in(gw, sa(GW_PEER, 5500));
        let opts = pb::SessionOptions {
            rtcp_mux: true,
            strict_source: true,
            ..Default::default()
        };
        let s = session(
            &mut self.c,
            create("mux", sa(POOL_PEER, 4500), sa(GW_PEER, 5500), opts),
        )
        .await;
        let (p, _) = relay_ports(&s);
        assert_eq!(s.streams.len(), 2, "no separate RTCP streams");
        send_rtp(&src, sa(POOL_RELAY, p), 11, 0..20);
        src.send_to(&rtcp_packet(11), sa(POOL_RELAY, p))
            .expect("send");
        let got = drain(&dst, QUIET);
        assert_eq!(got.len(), 21);
        let rtp = stream(
            &get(&mut self.c, "mux").await,
            pb::Side::Pool,
            pb::StreamKind::Rtp,
        );
        assert_eq!(rtp.counters.expect("counters").packets, 21);
        assert_eq!(
            rtp.rtp.expect("rtp").received,
            20,
            "the RTCP packet is not RTP"
        );
    }

    /// Update with new endpoints withdraws the offload (with a reason) and forwards to the new peer.
    async fn update_and_events(&mut self) {
        let mut events = self
            .c
            .watch_events(pb::WatchEventsRequest {})
            .await
            .expect("watch")
            .into_inner();
        let (pool, gw) = (&self.lab.pool.name, &self.lab.gw.name);
        let src = udp_in(pool, sa(POOL_PEER, 4600));
        let old = udp_in(gw, sa(GW_PEER, 5600));
        let new = udp_in(gw, sa(GW_PEER, 5602));
        let s = session(
            &mut self.c,
            create("upd", sa(POOL_PEER, 4600), sa(GW_PEER, 5600), strict()),
        )
        .await;
        let (p, _) = relay_ports(&s);
        send_rtp(&src, sa(POOL_RELAY, p), 3, 0..10);
        assert_eq!(drain(&old, QUIET).len(), 10);
        self.c
            .update_session(pb::UpdateSessionRequest {
                session_id: "upd".into(),
                gateway: leg(sa(GW_PEER, 5602)),
                ..Default::default()
            })
            .await
            .expect("update");
        send_rtp(&src, sa(POOL_RELAY, p), 3, 10..20);
        assert_eq!(
            drain(&new, QUIET).len(),
            10,
            "forwarded to the new endpoint"
        );
        assert!(drain(&old, Duration::from_millis(50)).is_empty());
        if self.xdp {
            let mut seen = Vec::new();
            while let Ok(Ok(Some(e))) =
                tokio::time::timeout(Duration::from_millis(500), events.message()).await
            {
                if e.session_id == "upd" {
                    seen.push(e.kind.expect("kind"));
                }
                if seen.len() >= 6 {
                    break;
                }
            }
            let withdrawn = seen.iter().any(
                |k| matches!(k, pb::event::Kind::Withdrawn(w) if w.reason == "update: new endpoints"),
            );
            let offloaded = seen
                .iter()
                .filter(|k| matches!(k, pb::event::Kind::Offloaded(_)))
                .count();
            assert!(withdrawn, "a withdraw event with its reason: {seen:?}");
            assert!(
                offloaded >= 2,
                "offloaded at create and again after the update: {seen:?}"
            );
        }
    }

    fn counters(s: &pb::Session) -> pb::Counters {
        stream(s, pb::Side::Pool, pb::StreamKind::Rtp)
            .counters
            .expect("counters")
    }

    /// What XDP does not handle goes up the stack and is still relayed (fragments, IP options, a
    /// next hop without a neighbour entry yet), and a UDP checksum of 0 stays 0 through XDP.
    async fn pass_up(&mut self) {
        let (pool, gw) = (self.lab.pool.name.clone(), self.lab.gw.name.clone());
        let src = udp_in(&pool, sa(POOL_PEER, 4800));
        let dst = udp_in(&gw, sa(GW_PEER, 5800));
        let s = session(
            &mut self.c,
            create("passup", sa(POOL_PEER, 4800), sa(GW_PEER, 5800), strict()),
        )
        .await;
        let to = sa(POOL_RELAY, relay_ports(&s).0);

        set_opt(
            &src,
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            &1i32.to_ne_bytes(),
        );
        let capture = capture_udp_checksums(&gw, "g0", 5800, Duration::from_millis(500));
        std::thread::sleep(Duration::from_millis(100));
        send_rtp(&src, to, 1, 0..10);
        assert_eq!(
            drain(&dst, QUIET).len(),
            10,
            "checksum-0 packets are accepted at the peer"
        );
        let sums = capture.join().expect("capture");
        assert_eq!(sums.len(), 10, "captured");
        if self.xdp {
            assert!(
                sums.iter().all(|&c| c == 0),
                "IPv4 UDP checksum 0 stays 0 (RFC 768): {sums:?}"
            );
        }
        set_opt(
            &src,
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            &0i32.to_ne_bytes(),
        );

        let before = Self::counters(&get(&mut self.c, "passup").await);
        src.send_to(&vec![0x80; 3000], to)
            .expect("send a fragmented datagram");
        let got = drain(&dst, QUIET);
        assert_eq!(
            got.iter().map(|(p, _)| p.len()).collect::<Vec<_>>(),
            [3000],
            "reassembled and relayed"
        );
        set_opt(&src, libc::IPPROTO_IP, libc::IP_OPTIONS, &[1, 1, 1, 0]);
        send_rtp(&src, to, 1, 10..15);
        assert_eq!(
            drain(&dst, QUIET).len(),
            5,
            "packets with IP options relayed"
        );
        set_opt(&src, libc::IPPROTO_IP, libc::IP_OPTIONS, &[]);
        let after = Self::counters(&get(&mut self.c, "passup").await);
        assert_eq!(
            after.userspace_packets - before.userspace_packets,
            6,
            "went up the stack, not dropped"
        );
        assert_eq!(after.packets - before.packets, 6);

        // A datagram whose UDP length disagrees with its IP length is the stack's to judge, on
        // every path: one that overstates its length is dropped (never forwarded, never counted
        // with its false length); one that understates it is trimmed to it and relayed so.
        let raw = raw_socket(&pool, "p0");
        let (src_mac, dst_mac) = (
            parse_mac(&mac(&self.lab.pool, "p0").expect("mac")),
            parse_mac(&mac(&self.lab.relay, "rp").expect("mac")),
        );
        let (from, to4) = (
            format!("{POOL_PEER}:4800").parse().expect("addr"),
            format!("{to}").parse().expect("addr"),
        );
        let lying = |seq: u16, udp_len: u16| {
            let mut f = udp4_frame(
                src_mac,
                dst_mac,
                None,
                from,
                to4,
                &rtp_packet(seq, 0, 1, 160),
            );
            f[14 + 24..14 + 26].copy_from_slice(&udp_len.to_be_bytes());
            f[14 + 26..14 + 28].copy_from_slice(&[0, 0]); // no checksum (IPv4)
            f
        };
        send_frame(&raw, &lying(40, 8 + 172 + 40));
        assert!(drain(&dst, QUIET).is_empty(), "overstated length: dropped");
        let now = Self::counters(&get(&mut self.c, "passup").await);
        assert_eq!(
            (now.packets, now.bytes),
            (after.packets, after.bytes),
            "nothing forwarded or counted for it"
        );
        send_frame(&raw, &lying(41, 8 + 100));
        let got = drain(&dst, QUIET);
        assert_eq!(
            got.iter().map(|(p, _)| p.len()).collect::<Vec<_>>(),
            [100],
            "understated length: trimmed to it"
        );
        let now = Self::counters(&get(&mut self.c, "passup").await);
        assert_eq!(
            (now.userspace_packets, now.bytes),
            (after.userspace_packets + 1, after.bytes + 100),
            "relayed by the stack's path, counted with its own length"
        );
        let after = now;

        self.lab
            .relay
            .ip(&["neigh", "del", GW_PEER, "dev", "rg"])
            .expect("neigh del");
        send_rtp(&src, to, 1, 18..19);
        assert_eq!(
            drain(&dst, QUIET).len(),
            1,
            "sent by userspace while the kernel resolves"
        );
        send_rtp(&src, to, 1, 19..39);
        assert_eq!(drain(&dst, QUIET).len(), 20);
        let last = Self::counters(&get(&mut self.c, "passup").await);
        let (user, xdp) = (
            last.userspace_packets - after.userspace_packets,
            last.xdp_packets - after.xdp_packets,
        );
        assert_eq!(user + xdp, 21);
        if self.xdp {
            assert!(
                user >= 1 && xdp >= 15,
                "first up to userspace, then XDP: user {user}, xdp {xdp}"
            );
        }
        self.lab.set_neighbours().expect("neighbours");
    }

    /// Delete stops forwarding and frees the ports.
    async fn delete(&mut self) {
        let (pool, gw) = (&self.lab.pool.name, &self.lab.gw.name);
        let src = udp_in(pool, sa(POOL_PEER, 4000));
        let dst = udp_in(gw, sa(GW_PEER, 5000));
        let before = self
            .c
            .get_capabilities(pb::GetCapabilitiesRequest {})
            .await
            .expect("caps")
            .into_inner();
        let s = get(&mut self.c, "fwd4").await;
        let (p, g) = relay_ports(&s);
        let gone = self
            .c
            .delete_session(pb::DeleteSessionRequest {
                session_id: "fwd4".into(),
                hand_ports_to: String::new(),
            })
            .await
            .expect("delete")
            .into_inner()
            .session
            .expect("final figures");
        assert_eq!(
            stream(&gone, pb::Side::Pool, pb::StreamKind::Rtp)
                .counters
                .expect("c")
                .packets,
            330,
            "the 300 of `forwarding` and its 30 of the TTL check"
        );
        send_rtp(&src, sa(POOL_RELAY, p), 1, 0..10);
        assert!(
            drain(&dst, QUIET).is_empty(),
            "nothing forwarded after delete"
        );
        let after = self
            .c
            .get_capabilities(pb::GetCapabilitiesRequest {})
            .await
            .expect("caps")
            .into_inner();
        assert_eq!(after.free_ports, before.free_ports + 4);
        let relay = self.lab.relay.name.clone();
        for port in [p, p + 1] {
            in_netns(&relay, move || UdpSocket::bind(sa(POOL_RELAY, port)))
                .expect("pool-side port is free again");
        }
        for port in [g, g + 1] {
            in_netns(&relay, move || UdpSocket::bind(sa(GW_RELAY, port)))
                .expect("gateway-side port is free again");
        }
    }

    /// No media for the timeout raises an event; on hold the longer hold timeout applies; a
    /// stranger's packets (an RTP-bleed probe, dropped by strict source) keep no call alive.
    async fn media_timeouts(&mut self) {
        let mut events = self
            .c
            .watch_events(pb::WatchEventsRequest {})
            .await
            .expect("watch")
            .into_inner();
        let opts = pb::SessionOptions {
            media_timeout_secs: 1,
            hold_timeout_secs: 3,
            ..strict()
        };
        session(
            &mut self.c,
            create("idle", sa(POOL_PEER, 4700), sa(GW_PEER, 5700), opts),
        )
        .await;
        let mut held = create("held", sa(POOL_PEER, 4702), sa(GW_PEER, 5702), opts);
        held.on_hold = true;
        session(&mut self.c, held).await;
        let probed = session(
            &mut self.c,
            create("probed", sa(POOL_PEER, 4704), sa(GW_PEER, 5704), opts),
        )
        .await;
        let (p, _) = relay_ports(&probed);
        let stranger = udp_in(&self.lab.pool.name, sa(POOL_OTHER, 4704));
        // Bounded: 80 packets over 4 s, well past the 1 s timeout; the event must come while it
        // still runs (a probe that counted would hold it off until the probe ends).
        let probe = std::thread::spawn(move || {
            for seq in 0..80u16 {
                send_rtp(&stranger, sa(POOL_RELAY, p), 666, seq..seq + 1);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut got = std::collections::HashMap::new();
        let mut probing_at_timeout = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        while got.len() < 3 && tokio::time::Instant::now() < deadline {
            if let Ok(Ok(Some(e))) =
                tokio::time::timeout(Duration::from_secs(1), events.message()).await
                && let Some(pb::event::Kind::MediaTimeout(t)) = e.kind
            {
                if e.session_id == "probed" {
                    probing_at_timeout = Some(!probe.is_finished());
                }
                got.insert(e.session_id.clone(), t);
            }
        }
        probe.join().expect("probe");
        assert_eq!(
            probing_at_timeout,
            Some(true),
            "the probed session timed out while the stranger was still sending"
        );
        let idle = got.get("idle").expect("media timeout for the idle session");
        let held = got.get("held").expect("media timeout for the held session");
        let probed = got
            .get("probed")
            .expect("media timeout for the session under a stranger's probe");
        assert!(
            (1000..2600).contains(&probed.idle_ms),
            "the stranger's packets did not count: {probed:?}"
        );
        let st = stream(
            &get(&mut self.c, "probed").await,
            pb::Side::Pool,
            pb::StreamKind::Rtp,
        );
        assert!(
            st.counters.expect("counters").source_mismatch > 0,
            "the probe reached the relay"
        );
        assert!(
            !idle.on_hold && (1000..2600).contains(&idle.idle_ms),
            "{idle:?}"
        );
        assert!(held.on_hold && held.idle_ms >= 3000, "{held:?}");
    }

    /// Media is never aimed into the relay's own host: loopback and the host's own addresses are
    /// refused as remote endpoints, on create and on update, naming the field.
    async fn refused_remotes(&mut self) {
        let ok = create("remotes", sa(POOL_PEER, 4900), sa(GW_PEER, 5900), strict());
        for (bad, what) in [
            (sa("127.0.0.1", 5060), "loopback"),
            (sa("::1", 5060), "loopback"),
            (sa(GW_RELAY, 5060), "an address of this host"),
            (sa(POOL_RELAY, 22), "an address of this host"),
        ] {
            let v6 = bad.is_ipv6();
            let mut req = ok.clone();
            req.gateway = leg(bad);
            if v6 {
                req.pool = leg(sa(POOL_PEER6, 4900));
            }
            let e = self.c.create_session(req).await.expect_err("refused");
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
            assert!(
                e.message().starts_with("gateway.remote_rtp:") && e.message().contains(what),
                "{bad}: {}",
                e.message()
            );
        }
        session(&mut self.c, ok).await;
        let e = self
            .c
            .update_session(pb::UpdateSessionRequest {
                session_id: "remotes".into(),
                pool: Some(pb::LegSpec {
                    remote_rtcp: ep(sa("127.0.0.1", 4901)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().starts_with("pool.remote_rtcp:"),
            "{}",
            e.message()
        );
        assert!(
            self.c
                .list_sessions(pb::ListSessionsRequest::default())
                .await
                .expect("list")
                .into_inner()
                .sessions
                .iter()
                .filter(|s| s.session_id.starts_with("remotes"))
                .count()
                == 1,
            "nothing half-created"
        );
        self.c
            .delete_session(pb::DeleteSessionRequest {
                session_id: "remotes".into(),
                hand_ports_to: String::new(),
            })
            .await
            .expect("delete");
    }
}

async fn conformance(mode: &str) {
    if !privileged(&format!("conformance_{mode}")) {
        return;
    }
    let mut s = Suite::start(mode).await;
    s.forwarding(false).await;
    s.forwarding(true).await;
    s.strict_source().await;
    s.latching().await;
    s.loss_and_jitter().await;
    s.family_change().await;
    s.rtcp_mux().await;
    s.pass_up().await;
    s.update_and_events().await;
    s.delete().await;
    s.media_timeouts().await;
    s.refused_remotes().await;
    let log = s.daemon.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_xdp_native() {
    conformance("native").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_xdp_generic() {
    conformance("generic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_userspace() {
    conformance("off").await;
}

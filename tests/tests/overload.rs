//! Overload of the userspace relay: offered more than it can forward, it sheds evenly across
//! streams, and once the load ends every stream forwards again (rtpengine's userspace mode stops
//! reading a socket that keeps overflowing and leaves that stream dead).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediator_proto::dataplane::v1 as pb;
use mediator_tests::daemon::Client;
use mediator_tests::fixture::{create, relay_daemon, relay_ports, sa};
use mediator_tests::lab::*;
use mediator_tests::rtp::{pin_thread, rtp_packet, send_many, udp_in};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const SESSIONS: usize = 16;

async fn forwarded(c: &mut Client) -> Vec<u64> {
    let list = c
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner();
    list.sessions
        .iter()
        .map(|s| {
            s.streams
                .iter()
                .find(|st| {
                    st.from_side == pb::Side::Pool as i32 && st.kind == pb::StreamKind::Rtp as i32
                })
                .and_then(|st| st.counters)
                .map_or(0, |c| c.packets)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn userspace_relay_sheds_evenly_and_mutes_no_stream() {
    if !privileged("userspace_relay_sheds_evenly_and_mutes_no_stream") {
        return;
    }
    let lab = Lab::new("ovl").expect("lab");
    let mut d = relay_daemon(
        &lab,
        "overload",
        "off",
        "32000-32199",
        &["--relay-threads", "1"],
    )
    .expect("daemon");
    let mut c = d.client().await.expect("client");
    let pid = d.pid().expect("pid").to_string();
    mediator_tests::lab::sh("taskset", &["-a", "-cp", "0", &pid]).expect("taskset");

    let sink = udp_in(&lab.gw.name, sa(GW_PEER, 5999));
    let mut ports = Vec::new();
    for i in 0..SESSIONS {
        let req = create(
            &format!("s{i:02}"),
            sa(POOL_PEER, 4000),
            sa(GW_PEER, 5999),
            Default::default(),
        );
        let s = c
            .create_session(req)
            .await
            .expect("create")
            .into_inner()
            .session
            .expect("session");
        ports.push(relay_ports(&s).0);
    }

    let src = udp_in(&lab.pool.name, sa(POOL_PEER, 4000));
    // The relay shares CPU 0 with a busy thread; the sender has CPU 1 to itself and batches.
    let busy = Arc::new(AtomicBool::new(true));
    let hog = {
        let busy = busy.clone();
        std::thread::spawn(move || {
            pin_thread(0);
            let mut x = 0u64;
            while busy.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                std::hint::black_box(x);
            }
        })
    };
    let offered = {
        let src = src.try_clone().expect("clone");
        let ports = ports.clone();
        std::thread::spawn(move || {
            pin_thread(1);
            let start = Instant::now();
            let mut sent = 0u64;
            let mut seq = 0u16;
            // Bounded in time (1.5 s) and count (5 million).
            while start.elapsed() < Duration::from_millis(1500) && sent < 5_000_000 {
                let p = rtp_packet(seq, u32::from(seq) * 160, 1, 160);
                let batch: Vec<(SocketAddr, &[u8])> = (0..4)
                    .flat_map(|_| {
                        ports
                            .iter()
                            .map(|&port| (sa(POOL_RELAY, port), p.as_slice()))
                    })
                    .collect();
                sent += send_many(&src, &batch) as u64;
                seq = seq.wrapping_add(1);
            }
            sent
        })
        .join()
        .expect("sender")
    };
    busy.store(false, Ordering::Relaxed);
    hog.join().expect("hog");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = forwarded(&mut c).await;
    let stats = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    let total: u64 = during.iter().sum();
    eprintln!(
        "offered {offered}, forwarded {total}, shed by full sockets {}, per stream {during:?}",
        stats.socket_overflow
    );
    assert!(
        stats.socket_overflow > 0 && total < offered,
        "the relay was really overloaded"
    );
    let (min, max) = (
        during.iter().min().copied().unwrap_or(0),
        during.iter().max().copied().unwrap_or(0),
    );
    assert!(min * 2 >= max, "load shed evenly: min {min}, max {max}");

    // After the overload: every stream forwards every probe packet.
    for seq in 0..10u16 {
        for &port in &ports {
            src.send_to(&rtp_packet(60000 + seq, 0, 1, 160), sa(POOL_RELAY, port))
                .expect("probe");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = forwarded(&mut c).await;
    for (i, (a, b)) in during.iter().zip(&after).enumerate() {
        assert_eq!(
            b - a,
            10,
            "stream s{i:02} forwards again after the overload"
        );
    }
    drop(sink);
}

//! Operations (issue 14) in the namespace lab: a real Prometheus (Debian's) scrapes both daemons
//! during a SIPp call with RTP, and the test reads the call and packet counters back through
//! Prometheus's HTTP API; TCP connections are bounded, strangers refused at accept, a slowloris
//! cut off, while a call completes.

use std::time::Duration;

use mediator_tests::calls::CallLab;
use mediator_tests::lab::{GW_PEER, GW_RELAY, POOL_PEER, POOL_RELAY, in_netns, privileged};
use mediator_tests::prometheus::{Prometheus, scrape};
use mediator_tests::sipp::{Uac, Uas};

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

/// A TCP connection from `src` (an address of namespace `ns`) to `dst`, with a short read
/// timeout.
fn connect_from(ns: &str, src: &str, dst: &str) -> std::net::TcpStream {
    let (src, dst): (std::net::SocketAddr, std::net::SocketAddr) = (
        format!("{src}:0").parse().expect("src"),
        dst.parse().expect("dst"),
    );
    let s = in_netns(ns, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.bind(&src.into()).expect("bind");
        s.connect_timeout(&dst.into(), Duration::from_secs(2))
            .expect("connect");
        std::net::TcpStream::from(s)
    });
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s
}

/// Whether Mediator closed `s` (EOF or reset) rather than keeping it open.
fn closed(s: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// TCP connections to a trunk's port: a stranger's are closed at accept (counted, not logged),
/// a peer holds at most 32, a message trickled byte by byte (slowloris) is cut off after 30 s,
/// and a call over the TCP trunk completes meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn tcp_connections_are_bounded_and_strangers_refused_at_accept() {
    use std::io::Write;
    if !privileged("tcp_connections_are_bounded_and_strangers_refused_at_accept") {
        return;
    }
    let metrics = "127.0.0.1:9302";
    let lab = CallLab::build("tcpcap", &["30000-30999"], &["--metrics-listen", metrics])
        .await
        .expect("call lab");
    let (gw, relay) = (lab.lab.gw.name.clone(), lab.lab.relay.name.clone());
    lab.lab
        .gw
        .ip(&["addr", "add", "198.18.2.9/24", "dev", "g0"])
        .expect("a stranger's address");
    let port = format!("{GW_RELAY}:5070");
    let metric = |name: &str| -> f64 {
        scrape(&relay, metrics)
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with(&format!("{name} ")))
                    .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            })
            .unwrap_or(-1.0)
    };
    // The daemon publishes its connection figures within a second.
    let settle = |name: &str, want: f64| -> f64 {
        let started = std::time::Instant::now();
        let mut got = metric(name);
        while got != want && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(200));
            got = metric(name);
        }
        got
    };

    // 200 strangers: each closed at once.
    let before = lab.log().lines().count();
    for _ in 0..200 {
        let mut s = connect_from(&gw, "198.18.2.9", &port);
        assert!(closed(&mut s), "a stranger's connection is closed");
    }
    assert_eq!(
        settle("mediator_sip_connections_refused_total", 200.0),
        200.0
    );
    assert!(
        lab.log().lines().count() < before + 5,
        "no log line per stranger:\n{}",
        lab.log()
    );

    // A configured peer: 32 held, the rest closed.
    let mut held: Vec<std::net::TcpStream> =
        (0..40).map(|_| connect_from(&gw, GW_PEER, &port)).collect();
    let open = held.iter_mut().map(|s| !closed(s)).filter(|o| *o).count();
    assert_eq!(open, 32, "MAX_PER_SOURCE connections from one address");
    assert_eq!(settle("mediator_sip_connections", 32.0), 32.0);

    // Slowloris on one of them, while a call goes over the TCP trunk.
    let mut slow = held.remove(0);
    slow.write_all(b"OPTIONS sip:mediator@198.18.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.2.2;branch=z9hG4bK-slow\r\n")
        .expect("write");
    let _uas = Uas::start(&gw, GW_PEER, 5070, &["-sn", "uas", "-t", "t1"]).expect("uas");
    let run = lab.from_pool("+17775550100", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let started = std::time::Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(40) {
        let _ = slow.write_all(b"X");
        if closed(&mut slow) {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(cut, "a message trickled for over 30 s is cut off");
    drop(held);
    drop(slow);
    assert_eq!(
        settle("mediator_sip_connections", 0.0),
        0.0,
        "all given back"
    );
}

/// Waits (at most 10 s) until `n` calls are confirmed.
async fn confirmed(lab: &CallLab, n: usize) {
    for _ in 0..100 {
        let up = lab.active().await.expect("calls");
        if up.iter().filter(|c| c.state == "confirmed").count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} calls were not up in time:\n{}", lab.log());
}

/// Draining a pool during calls: new calls get 503 with Retry-After while the calls in progress
/// complete, `pool drain --wait` returns when the last has ended, the metrics show it, and
/// `pool resume` takes calls again. Then a graceful stop (SIGTERM) during calls: new calls are
/// refused while a short call completes on its own, the call still up at the deadline is ended
/// with a BYE to both sides, and the daemon exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn drain_and_graceful_stop_keep_calls_in_progress() {
    if !privileged("drain_and_graceful_stop_keep_calls_in_progress") {
        return;
    }
    const POOL: &str = "pool.lab.mediator";
    let metrics = "127.0.0.1:9303";
    let mut lab = CallLab::build(
        "drain",
        &["30000-30999"],
        &["--metrics-listen", metrics, "--stop-deadline-secs", "6"],
    )
    .await
    .expect("call lab");
    let ns = lab.lab.relay.name.clone();
    let gw = Uas::start(&lab.lab.gw.name, GW_PEER, 5060, &[]).expect("gateway uas");
    let target = format!("{POOL_RELAY}:5060");
    let long = |calls: u32, pause_ms: &str| {
        Uac::start(
            &lab.lab.pool.name,
            POOL_PEER,
            &target,
            calls,
            10,
            Duration::from_secs(40),
            &["-s", "+14255550100", "-sn", "uac", "-d", pause_ms],
        )
        .expect("uac")
    };

    let callers = long(4, "5000");
    confirmed(&lab, 4).await;
    let (code, text) = lab.ctl(&["pool", "drain", POOL]).expect("mediatorctl");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("draining") && text.contains("yes"), "{text}");
    let refused = lab
        .from_pool("+14255550100", 1, &["-sn", "uac"])
        .expect("uac");
    assert_eq!((refused.successful, refused.failed), (0, 1), "{refused:?}");
    // The pools' figures are published once a second.
    let lines = [
        format!("mediator_pool_draining{{pool=\"{POOL}\"}} 1"),
        format!("mediator_pool_calls_active{{pool=\"{POOL}\"}} 4"),
        "mediator_calls_refused_total{reason=\"draining\"} 1".to_string(),
    ];
    let mut text = String::new();
    for _ in 0..30 {
        text = scrape(&ns, metrics).expect("scrape");
        if lines.iter().all(|l| text.contains(l)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for line in &lines {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    let (code, text) = lab
        .ctl(&["pool", "drain", POOL, "--wait", "30"])
        .expect("mediatorctl");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("pool {POOL} drained")), "{text}");
    let run = callers.wait().expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (4, 0),
        "the calls in progress completed: {run:?}"
    );
    let (code, text) = lab.ctl(&["pool", "resume", POOL]).expect("mediatorctl");
    assert_eq!(code, 0, "{text}");
    let run = lab
        .from_pool("+14255550100", 1, &["-sn", "uac"])
        .expect("uac");
    assert_eq!((run.successful, run.failed), (1, 0), "resumed: {run:?}");

    // A graceful stop: one call ends by itself within the deadline, one would never end.
    let short = long(1, "2000");
    let waiting = Uac::start(
        &lab.lab.pool.name,
        POOL_PEER,
        &target,
        1,
        10,
        Duration::from_secs(40),
        &[
            "-s",
            "+14255550100",
            "-sf",
            &mediator_tests::calls::scenario("uac_wait_bye"),
        ],
    )
    .expect("uac");
    confirmed(&lab, 2).await;
    let stopped_at = std::time::Instant::now();
    lab.control.signal_term();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = lab
        .from_pool("+14255550100", 1, &["-sn", "uac"])
        .expect("uac");
    assert_eq!(
        (refused.successful, refused.failed),
        (0, 1),
        "no new call while stopping: {refused:?}"
    );
    let run = short.wait().expect("uac");
    assert_eq!((run.successful, run.failed), (1, 0), "{run:?}");
    let run = waiting.wait().expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "the caller got Mediator's BYE at the deadline: {run:?}"
    );
    let status = loop {
        if let Some(s) = lab.control.exited().expect("wait") {
            break s;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(20),
            "mediator-control did not stop:\n{}",
            lab.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}\n{}", lab.log());
    let waited = stopped_at.elapsed();
    assert!(
        waited >= Duration::from_secs(5),
        "it waited for the deadline: {waited:?}"
    );
    let log = lab.log();
    assert!(
        log.contains("stop deadline reached") && log.contains("no call left"),
        "{log}"
    );
    assert!(
        gw.messages().matches("BYE sip:").count() >= 7,
        "every call's BYE reached the gateway, the last one Mediator's"
    );
    // Every session was deleted with its call.
    let mut relay = lab.dataplane.client().await.expect("relay");
    let left = relay
        .list_sessions(mediator_proto::dataplane::v1::ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sessions;
    assert!(left.is_empty(), "{left:?}");
}

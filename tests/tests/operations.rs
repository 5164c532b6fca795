//! Operations (issue 14) in the namespace lab: a real Prometheus (Debian's) scrapes both daemons
//! during a SIPp call with RTP, and the test reads the call and packet counters back through
//! Prometheus's HTTP API; TCP connections are bounded, strangers refused at accept, a slowloris
//! cut off, while a call completes.

use std::time::Duration;

use mediator_proto::dataplane::v1 as dp;
use mediator_proto::dataplane::v1::dataplane_service_client::DataplaneServiceClient;
use mediator_serve::auth::{AuthChannel, ClientAuth, ClientFiles, ClientNames};
use mediator_tests::calls::CallLab;
use mediator_tests::daemon::ns_channel_via;
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
    let text = scrape(&ns, relay).expect("scrape");
    assert!(
        text.contains("mediator_dataplane_srtp_drops_total{reason=\"auth\"} 0")
            && text.contains("mediator_dataplane_srtp_drops_total{reason=\"replay\"} 0"),
        "{text}"
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

/// A client of the dataplane at `addr` in namespace `ns`, authenticating as `files` say.
async fn dataplane_client(
    ns: &str,
    addr: std::net::SocketAddr,
    files: ClientFiles,
) -> anyhow::Result<DataplaneServiceClient<AuthChannel>> {
    let auth = ClientAuth::load(&files, NAMES)?;
    let endpoint = auth
        .endpoint(&addr.to_string())
        .map_err(anyhow::Error::msg)?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    let channel = ns_channel_via(Some(ns.to_string()), addr, endpoint).await?;
    Ok(DataplaneServiceClient::with_interceptor(
        channel,
        auth.add_token(),
    ))
}

const NAMES: ClientNames = ClientNames {
    ca: "ca",
    certificate: "certificate",
    private_key: "private_key",
    token_file: "token_file",
};

/// mediatorctl against `endpoint` with `args`: (exit code, stdout + stderr).
fn ctl(endpoint: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(mediator_tests::daemon::built_binary("mediatorctl"))
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("mediatorctl");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Authenticated APIs: a dataplane listening off loopback (no --insecure-listen) with TLS, client
/// certificates and a token refuses a plain client, a client without a certificate and one
/// without the token, and serves one with both; mediator-control reaches it with its relay
/// client's certificate and token and a call through it completes; mediator-control's own API and
/// metrics with TLS and a token serve mediatorctl and a scrape that bring them, and nothing else;
/// a token without TLS off loopback is refused at start.
#[tokio::test(flavor = "multi_thread")]
async fn apis_require_tls_client_certificates_and_tokens() {
    if !privileged("apis_require_tls_client_certificates_and_tokens") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mediator-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    mediator_tests::tls::certificates(&dir).expect("certificates");
    let token = "lab-token-0123456789abcdef";
    std::fs::write(dir.join("token"), format!("{token}\n")).expect("token");
    std::fs::write(dir.join("wrong"), "wrong-token-0123456789abcdef").expect("token");
    let path = |f: &str| dir.join(f);
    let p = |f: &str| dir.join(f).display().to_string();

    // A token without TLS off loopback: refused at start, naming why.
    let out =
        std::process::Command::new(mediator_tests::daemon::built_binary("mediator-dataplane"))
            .args([
                "--check-config",
                "--grpc-listen",
                "198.18.0.1:7400",
                "--api-token-file",
                &p("token"),
            ])
            .output()
            .expect("dataplane");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("in clear"), "{err}");

    let lab = mediator_tests::lab::Lab::new("auth").expect("lab");
    let ns = lab.relay.name.clone();
    let addr: std::net::SocketAddr = format!("{POOL_RELAY}:7410").parse().expect("addr");
    let (ca, cert, key, tok) = (
        p("ca.pem"),
        p("mediator.pem"),
        p("mediator.key"),
        p("token"),
    );
    let _relay = mediator_tests::daemon::Daemon::start(
        "auth",
        Some(&ns),
        addr,
        &[
            "--xdp-mode",
            "off",
            "--pool-address",
            POOL_RELAY,
            "--gateway-address",
            GW_RELAY,
            "--port-range",
            "31000-31099",
            "--api-tls-certificate",
            &cert,
            "--api-tls-private-key",
            &key,
            "--api-tls-client-ca",
            &ca,
            "--api-token-file",
            &tok,
        ],
    )
    .expect("dataplane");
    let full = ClientFiles {
        ca: Some(path("ca.pem")),
        certificate: Some(path("gateway.pem")),
        private_key: Some(path("gateway.key")),
        token_file: Some(path("token")),
    };
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(mut c) = dataplane_client(&ns, addr, full.clone()).await
            && c.get_capabilities(dp::GetCapabilitiesRequest {})
                .await
                .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the dataplane serves an authenticated client");
    let plain = mediator_tests::daemon::ns_channel(Some(ns.clone()), addr).await;
    if let Ok(ch) = plain {
        let r = DataplaneServiceClient::new(ch)
            .get_capabilities(dp::GetCapabilitiesRequest {})
            .await;
        assert!(r.is_err(), "a plain client is served: {r:?}");
    }
    let no_cert = ClientFiles {
        certificate: None,
        private_key: None,
        ..full.clone()
    };
    let r = match dataplane_client(&ns, addr, no_cert).await {
        Ok(mut c) => c
            .get_capabilities(dp::GetCapabilitiesRequest {})
            .await
            .err(),
        Err(e) => Some(tonic::Status::unavailable(e.to_string())),
    };
    assert!(r.is_some(), "a client without a certificate is served");
    for token_file in [None, Some(path("wrong"))] {
        let mut c = dataplane_client(
            &ns,
            addr,
            ClientFiles {
                token_file,
                ..full.clone()
            },
        )
        .await
        .expect("client");
        let e = c
            .get_capabilities(dp::GetCapabilitiesRequest {})
            .await
            .expect_err("no token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    }

    // mediator-control reaches it with its certificate and token; a call goes through.
    let gw = Uas::start(&lab.gw.name, GW_PEER, 5060, &[]).expect("gateway uas");
    let relay_flags = [
        "--relay-tls-ca",
        &ca,
        "--relay-tls-certificate",
        &cert,
        "--relay-tls-private-key",
        &key,
        "--relay-token-file",
        &tok,
    ];
    let control = mediator_tests::calls::lab_control_using(
        &lab,
        "auth",
        &[addr.to_string()],
        &relay_flags,
        None,
    )
    .await
    .expect("control");
    let run = mediator_tests::calls::call_from(
        &lab.pool.name,
        POOL_PEER,
        &format!("{POOL_RELAY}:5060"),
        "+14255550100",
        1,
        &[],
    )
    .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        control.log()
    );
    drop(gw);

    // mediator-control's own API and metrics with TLS and a token (on loopback here).
    let metrics = format!("127.0.0.1:{}", mediator_tests::daemon::free_port());
    let api = mediator_tests::control::Control::start_in(
        "auth-api",
        None,
        &[
            "--api-tls-certificate",
            &cert,
            "--api-tls-private-key",
            &key,
            "--api-token-file",
            &tok,
            "--metrics-listen",
            &metrics,
        ],
    )
    .expect("control");
    let https = api.endpoint().replace("http://", "https://");
    let with = ["--api-ca", &ca, "--api-token-file", &tok];
    let mut listed = (0, String::new());
    for _ in 0..50 {
        listed = ctl(&https, &[&with[..], &["pool", "list"]].concat());
        if listed.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed.0, 0, "{}", listed.1);
    let (code, text) = ctl(&https, &["--api-ca", &ca, "pool", "list"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.to_lowercase().contains("bearer token"), "{text}");
    let (code, text) = ctl(&api.endpoint(), &["--api-token-file", &tok, "pool", "list"]);
    assert_ne!(code, 0, "plain HTTP/2 to a TLS listener: {text}");
    assert!(
        !text.contains(token),
        "the token never appears in output: {text}"
    );
    let scrape_tls = |auth: Option<&str>| -> String {
        let mut child = std::process::Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &metrics, "-CAfile", &ca])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl");
        let header = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        use std::io::Write;
        let _ = child.stdin.take().map(|mut i| {
            i.write_all(
                format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{header}Connection: close\r\n\r\n")
                    .as_bytes(),
            )
        });
        let out = child.wait_with_output().expect("openssl output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ok = scrape_tls(Some(token));
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.contains("mediator_calls_active"),
        "{ok}"
    );
    let refused = scrape_tls(None);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(!api.log().contains(token) && !control.log().contains(token));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A dataplane started with `ip netns exec` (a private mount namespace, whose own bpffs dies with
/// the process) warns that its pins will not outlive it; one started with `nsenter --net` (the
/// fixture's way, and the quick start's) does not.
#[tokio::test(flavor = "multi_thread")]
async fn pins_on_a_private_bpffs_are_warned_about() {
    if !privileged("pins_on_a_private_bpffs_are_warned_about") {
        return;
    }
    let lab = mediator_tests::lab::Lab::new("pinpriv").expect("lab");
    let ns = lab.relay.name.clone();
    let unique = std::process::id();
    let state = std::env::temp_dir().join(format!("mediator-pinpriv-{unique}"));
    let port = mediator_tests::daemon::free_port().to_string();
    let args = |pin: &str| -> Vec<String> {
        [
            "--interface",
            "rp",
            "--xdp-mode",
            "generic",
            "--pool-address",
            POOL_RELAY,
            "--gateway-address",
            GW_RELAY,
            "--port-range",
            "31200-31299",
            "--pin-dir",
            pin,
            "--state-dir",
            &state.display().to_string(),
            "--grpc-listen",
            &format!("127.0.0.1:{port}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let log = std::env::temp_dir().join(format!("mediator-pinpriv-{unique}.log"));
    let out = std::fs::File::create(&log).expect("log");
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(mediator_tests::daemon::built_binary("mediator-dataplane"))
        .args(args(&format!("/sys/fs/bpf/mediator_test_priv_{unique}")))
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("ip netns exec");
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("serving mediator.dataplane.v1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_dir_all(&state);
    assert!(text.contains("serving mediator.dataplane.v1"), "{text}");
    assert!(
        text.contains("will not outlive this process") && text.contains("nsenter --net="),
        "{text}"
    );

    let mut fixture = mediator_tests::daemon::Daemon::start(
        "pinok",
        Some(&ns),
        format!("127.0.0.1:{}", mediator_tests::daemon::free_port())
            .parse()
            .expect("addr"),
        &[
            "--interface",
            "rp",
            "--xdp-mode",
            "generic",
            "--pool-address",
            POOL_RELAY,
            "--gateway-address",
            GW_RELAY,
            "--port-range",
            "31300-31399",
        ],
    )
    .expect("dataplane");
    fixture.client().await.expect("serving");
    assert!(
        !fixture.log().contains("will not outlive"),
        "{}",
        fixture.log()
    );
}

/// The daemon's resident memory (KiB) and open files.
fn footprint(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// INVITE floods — 3000 INVITEs at 300 a second from a configured peer (the Front End's address,
/// another port) with `calls_per_second_per_peer` 20, and as many from a stranger — while a
/// legitimate call from the gateway completes: the flooder's excess gets 503 with Retry-After,
/// its admitted calls complete, the stranger gets 403s; the daemon's memory, open files and log
/// stay bounded, and every call and session is gone afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn invite_floods_cost_bounded_memory_files_and_log_while_a_call_completes() {
    if !privileged("invite_floods_cost_bounded_memory_files_and_log_while_a_call_completes") {
        return;
    }
    let mut lab = CallLab::build(
        "flood",
        &["30000-30999"],
        &["--calls-per-second-per-peer", "20"],
    )
    .await
    .expect("call lab");
    let pid = lab.control.pid().expect("pid");
    let _gw = Uas::start(&lab.lab.gw.name, GW_PEER, 5060, &[]).expect("gateway uas");
    let _fe = Uas::start(&lab.lab.pool.name, POOL_PEER, 5060, &[]).expect("pool uas");
    // Warm up (the first call's allocations), then measure.
    let run = lab
        .from_gateway("+14255550199", 5060, 1, &["-sn", "uac", "-p", "5080"])
        .expect("uac");
    assert_eq!((run.successful, run.failed), (1, 0), "{run:?}");
    let (rss0, fds0) = footprint(pid);
    let lines0 = lab.log().lines().count();

    let target = format!("{POOL_RELAY}:5060");
    let flood = |ip: &str, port: &str| {
        Uac::start(
            &lab.lab.pool.name,
            ip,
            &target,
            3000,
            300,
            Duration::from_secs(40),
            &["-s", "+14255550100", "-sn", "uac", "-p", port],
        )
        .expect("flood")
    };
    let peer_flood = flood(POOL_PEER, "5070");
    let stranger_flood = flood(mediator_tests::lab::POOL_OTHER, "5071");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let legit = lab
        .from_gateway("+14255550199", 5060, 1, &["-sn", "uac", "-p", "5080"])
        .expect("uac");
    assert_eq!(
        (legit.successful, legit.failed),
        (1, 0),
        "a legitimate call completes during the floods: {legit:?}"
    );
    let (rss_peak, fds_peak) = footprint(pid);
    let peer = peer_flood.wait().expect("flood");
    let stranger = stranger_flood.wait().expect("flood");
    assert_eq!(peer.successful + peer.failed, 3000, "{peer:?}");
    assert!(
        peer.successful >= 40 && peer.successful <= 20 * 15 + 40,
        "admitted at about 20 a second (bursts of 40): {peer:?}"
    );
    assert_eq!(stranger.successful, 0, "{stranger:?}");

    // Every call ends; the sessions go with them.
    let mut left = usize::MAX;
    for _ in 0..400 {
        left = lab.active().await.expect("calls").len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "calls left after the flood");
    let mut relay = lab.dataplane.client().await.expect("relay");
    let sessions = relay
        .list_sessions(dp::ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sessions;
    assert!(sessions.is_empty(), "sessions left: {}", sessions.len());
    let (rss1, fds1) = footprint(pid);
    let lines = lab.log().lines().count() - lines0;
    eprintln!(
        "flood: admitted {} of 3000, refused {}; stranger refused {}; control RSS {rss0} KiB -> \
         peak {rss_peak} -> {rss1} KiB; files {fds0} -> peak {fds_peak} -> {fds1}; {lines} log lines",
        peer.successful, peer.failed, stranger.failed
    );
    assert!(
        fds1 <= fds0 + 4,
        "open files back to where they were: {fds0} -> {fds1}"
    );
    assert!(
        rss1 < rss0 + 64 * 1024,
        "memory bounded: {rss0} KiB -> {rss1} KiB"
    );
    // A few lines per admitted call (its progress and record); the 5000+ refusals a bounded
    // handful (10 per 10 s each kind, the rest counted).
    let log = lab.log();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert!(
        count("call refused by admission") <= 20 && count("not a configured peer") <= 20,
        "refusals are logged within their budget"
    );
    assert!(
        lines < 6 * peer.successful as usize + 100,
        "{lines} log lines for {} admitted calls",
        peer.successful
    );
}

/// CPU time (clock ticks, user + system) a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Out of file descriptors: mediator-control's open-files limit is lowered (prlimit) to just
/// above what it holds, and a configured peer opens 40 TCP connections. Accepting fails; the
/// daemon backs off instead of spinning (its CPU over 3 s measured), logs it within a budget,
/// its gRPC API answers on an established connection, and a UDP call completes meanwhile; with
/// the connections gone and the limit back, it accepts again.
#[tokio::test(flavor = "multi_thread")]
async fn out_of_file_descriptors_backs_off_and_calls_go_on() {
    if !privileged("out_of_file_descriptors_backs_off_and_calls_go_on") {
        return;
    }
    let lab = CallLab::build("fdx", &["30000-30999"], &[])
        .await
        .expect("call lab");
    let pid = lab.control.pid().expect("pid");
    let _gw = Uas::start(&lab.lab.gw.name, GW_PEER, 5060, &[]).expect("gateway uas");
    let run = lab
        .from_pool("+14255550100", 1, &["-sn", "uac"])
        .expect("uac");
    assert_eq!((run.successful, run.failed), (1, 0), "{run:?}");
    let mut api = lab.control.calls().await.expect("api");
    api.list_calls(mediator_proto::control::v1::ListCallsRequest {})
        .await
        .expect("answers");

    let (_, fds) = footprint(pid);
    let limit = (fds + 4).to_string();
    // The hard limit is given back as it is, so the soft one can be raised again after.
    let hard = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
        })
        .expect("the hard limit");
    let prlimit = |nofile: &str| {
        let out = std::process::Command::new("prlimit")
            .args([
                "--pid",
                &pid.to_string(),
                &format!("--nofile={nofile}:{hard}"),
            ])
            .output()
            .expect("prlimit");
        assert!(
            out.status.success(),
            "prlimit {nofile}: {out:?}\n{}",
            std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default()
        );
    };
    prlimit(&limit);
    let port = format!("{GW_RELAY}:5070");
    let conns: Vec<std::net::TcpStream> = (0..40)
        .map(|_| connect_from(&lab.lab.gw.name, GW_PEER, &port))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 60,
        "out of files, the daemon backs off: {used} ticks of CPU in 3 s"
    );
    let log = lab.log();
    let failed = log
        .lines()
        .filter(|l| l.contains("TCP accept failed"))
        .count();
    assert!(
        (1..=11).contains(&failed),
        "accept failures logged within their budget: {failed}"
    );
    api.list_calls(mediator_proto::control::v1::ListCallsRequest {})
        .await
        .expect("the API answers while files are out");
    let run = lab
        .from_pool("+14255550100", 1, &["-sn", "uac"])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "a UDP call completes while files are out: {run:?}"
    );

    drop(conns);
    prlimit("1024");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut s = connect_from(&lab.lab.gw.name, GW_PEER, &port);
    assert!(!closed(&mut s), "accepting again once files are back");
}

//! Bad input to every RPC gets the matching gRPC status with a message naming the field, and
//! leaves nothing behind (no session, no port). Also bad settings and bad flags. Runs unprivileged:
//! the daemon relays on loopback with XDP off.

use std::process::Command;

use mediator_proto::dataplane::v1 as pb;
use mediator_tests::daemon::{Client, Daemon, binary, free_port};
use tonic::Code;

fn ep(address: &str, port: u32) -> Option<pb::Endpoint> {
    Some(pb::Endpoint {
        address: address.into(),
        port,
    })
}

fn leg(address: &str, port: u32) -> Option<pb::LegSpec> {
    Some(pb::LegSpec {
        remote_rtp: ep(address, port),
        ..Default::default()
    })
}

fn good(id: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session_id: id.into(),
        pool: leg("127.0.0.1", 6000),
        gateway: leg("127.0.0.1", 6002),
        options: Some(pb::SessionOptions::default()),
        on_hold: false,
        ..Default::default()
    }
}

async fn free_ports(c: &mut Client) -> u32 {
    c.get_capabilities(pb::GetCapabilitiesRequest {})
        .await
        .expect("caps")
        .into_inner()
        .free_ports
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, field: &str) {
    let e = r.expect_err(field);
    assert_eq!(e.code(), code, "{field}: {}", e.message());
    assert!(
        e.message().contains(field),
        "message names '{field}': {}",
        e.message()
    );
}

/// A daemon on loopback with its own media port range: the tests run in parallel in one
/// namespace, and two daemons allocating from one range would take each other's ports.
async fn start(ports: &str) -> (Daemon, Client) {
    let port = free_port();
    let mut d = Daemon::start(
        &format!("bad{port}"),
        None,
        format!("127.0.0.1:{port}").parse().expect("addr"),
        &[
            "--xdp-mode",
            "off",
            "--pool-address",
            "127.0.0.1",
            "--gateway-address",
            "127.0.0.1",
            "--port-range",
            ports,
        ],
    )
    .expect("daemon");
    let c = d.client().await.expect("client");
    (d, c)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_session_rejects_bad_input_and_leaks_nothing() {
    let (d, mut c) = start("41000-41007").await;
    let ports = free_ports(&mut c).await;
    assert_eq!(ports, 8);

    type Mutation = Box<dyn Fn(&mut pb::CreateSessionRequest)>;
    let cases: Vec<(Mutation, Code, &str)> = vec![
        (
            Box::new(|r| r.session_id.clear()),
            Code::InvalidArgument,
            "session_id",
        ),
        (
            Box::new(|r| r.session_id = "a/b".into()),
            Code::InvalidArgument,
            "session_id",
        ),
        (
            Box::new(|r| r.session_id = "x".repeat(129)),
            Code::InvalidArgument,
            "session_id",
        ),
        (
            Box::new(|r| r.pool = leg("not-an-ip", 6000)),
            Code::InvalidArgument,
            "pool.remote_rtp.address",
        ),
        (
            Box::new(|r| r.gateway = leg("127.0.0.1", 0)),
            Code::InvalidArgument,
            "gateway.remote_rtp.port",
        ),
        (
            Box::new(|r| r.gateway = leg("127.0.0.1", 70000)),
            Code::InvalidArgument,
            "gateway.remote_rtp.port",
        ),
        (
            Box::new(|r| r.pool = leg("224.0.0.1", 6000)),
            Code::InvalidArgument,
            "pool.remote_rtp.address",
        ),
        (
            Box::new(|r| r.pool.as_mut().expect("leg").local_address = "198.18.200.1".into()),
            Code::InvalidArgument,
            "pool.local_address",
        ),
        (
            Box::new(|r| r.pool.as_mut().expect("leg").local_address = "x".into()),
            Code::InvalidArgument,
            "pool.local_address",
        ),
        (
            Box::new(|r| r.gateway = leg("::1", 6002)),
            Code::InvalidArgument,
            "gateway.remote_rtp",
        ),
        (
            Box::new(|r| {
                r.options.as_mut().expect("o").rtcp_mux = true;
                r.pool.as_mut().expect("leg").remote_rtcp = ep("127.0.0.1", 6001);
            }),
            Code::InvalidArgument,
            "pool.remote_rtcp",
        ),
        (
            Box::new(|r| {
                let o = r.options.as_mut().expect("o");
                o.media_timeout_secs = 60;
                o.hold_timeout_secs = 10;
            }),
            Code::InvalidArgument,
            "options.hold_timeout_secs",
        ),
        (
            Box::new(|r| r.options.as_mut().expect("o").clock_rate = 5_000_000),
            Code::InvalidArgument,
            "options.clock_rate",
        ),
    ];
    for (mutate, code, field) in cases {
        let mut r = good("bad");
        mutate(&mut r);
        expect_err(c.create_session(r).await, code, field);
        assert_eq!(
            free_ports(&mut c).await,
            ports,
            "no port leaked after a refused '{field}'"
        );
    }
    let list = c
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.total, 0, "nothing half-created");

    // Duplicate id.
    c.create_session(good("one")).await.expect("first");
    expect_err(
        c.create_session(good("one")).await,
        Code::AlreadyExists,
        "one",
    );
    // Port range exhausted (8 ports = 2 sessions), and nothing leaked by the refusal.
    c.create_session(good("two")).await.expect("second");
    assert_eq!(free_ports(&mut c).await, 0);
    let e = c
        .create_session(good("three"))
        .await
        .expect_err("exhausted");
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(e.message().contains("41000-41007"), "{}", e.message());
    c.delete_session(pb::DeleteSessionRequest {
        session_id: "two".into(),
        hand_ports_to: String::new(),
    })
    .await
    .expect("delete");
    assert_eq!(free_ports(&mut c).await, 4);
    c.create_session(good("three"))
        .await
        .expect("fits again after a delete");
    assert!(!d.log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn other_rpcs_reject_bad_input() {
    let (d, mut c) = start("41008-41015").await;
    c.create_session(good("s")).await.expect("create");

    expect_err(
        c.update_session(pb::UpdateSessionRequest {
            session_id: "nope".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "nope",
    );
    expect_err(
        c.update_session(pb::UpdateSessionRequest {
            session_id: "".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "session_id",
    );
    let mut moved = leg("127.0.0.1", 6000);
    moved.as_mut().expect("leg").local_address = "127.0.0.2".into();
    expect_err(
        c.update_session(pb::UpdateSessionRequest {
            session_id: "s".into(),
            pool: moved,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "pool.local_address",
    );
    expect_err(
        c.update_session(pb::UpdateSessionRequest {
            session_id: "s".into(),
            gateway: leg("::1", 7000),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "gateway.remote_rtp",
    );
    expect_err(
        c.update_session(pb::UpdateSessionRequest {
            session_id: "s".into(),
            gateway: leg("127.0.0.1", 0),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "gateway.remote_rtp.port",
    );
    expect_err(
        c.update_session(pb::UpdateSessionRequest {
            session_id: "s".into(),
            options: Some(pb::SessionOptions {
                rtcp_mux: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "options.rtcp_mux",
    );
    // Forks: of no session, of a fork, without the source that tells them apart; a hand-over
    // to a session that is not a fork.
    let mut fork = good("f");
    fork.fork_of = "nope".into();
    expect_err(
        c.create_session(fork.clone()).await,
        Code::InvalidArgument,
        "fork_of",
    );
    fork.fork_of = "s".into();
    fork.gateway = Some(pb::LegSpec::default());
    expect_err(
        c.create_session(fork.clone()).await,
        Code::InvalidArgument,
        "gateway.remote_rtp",
    );
    expect_err(
        c.delete_session(pb::DeleteSessionRequest {
            session_id: "s".into(),
            hand_ports_to: "s".into(),
        })
        .await,
        Code::InvalidArgument,
        "hand_ports_to",
    );
    // A refused update changed nothing.
    let s = c
        .get_session(pb::GetSessionRequest {
            session_id: "s".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        s.session.expect("s").gateway.expect("leg").remote_rtp,
        ep("127.0.0.1", 6002)
    );

    expect_err(
        c.delete_session(pb::DeleteSessionRequest {
            session_id: "nope".into(),
            hand_ports_to: String::new(),
        })
        .await,
        Code::NotFound,
        "nope",
    );
    expect_err(
        c.delete_session(pb::DeleteSessionRequest {
            session_id: "../x".into(),
            hand_ports_to: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "session_id",
    );
    expect_err(
        c.get_session(pb::GetSessionRequest {
            session_id: "nope".into(),
        })
        .await,
        Code::NotFound,
        "nope",
    );
    expect_err(
        c.get_session(pb::GetSessionRequest {
            session_id: "".into(),
        })
        .await,
        Code::InvalidArgument,
        "session_id",
    );
    expect_err(
        c.list_sessions(pb::ListSessionsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_size",
    );
    expect_err(
        c.list_sessions(pb::ListSessionsRequest {
            page_token: "/etc".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_token",
    );
    // Paging works: one per page.
    c.create_session(good("t")).await.expect("create t");
    let p1 = c
        .list_sessions(pb::ListSessionsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("p1");
    let p1 = p1.into_inner();
    assert_eq!(
        (p1.sessions.len(), p1.total, p1.next_page_token.as_str()),
        (1, 2, "s")
    );
    let p2 = c
        .list_sessions(pb::ListSessionsRequest {
            page_size: 1,
            page_token: p1.next_page_token,
            ..Default::default()
        })
        .await
        .expect("p2")
        .into_inner();
    assert_eq!(
        (
            p2.sessions[0].session_id.as_str(),
            p2.next_page_token.as_str()
        ),
        ("t", "")
    );
    // The standard health service says SERVING for the dataplane service.
    mediator_tests::daemon::assert_serving(
        &format!("http://{}", d.grpc),
        "mediator.dataplane.v1.DataplaneService",
    )
    .await;
    // GetStats and WatchEvents take no input; they answer.
    c.get_stats(pb::GetStatsRequest {}).await.expect("stats");
    c.watch_events(pb::WatchEventsRequest {})
        .await
        .expect("watch");
    assert!(!d.log().contains("panicked"));
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("run daemon");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_settings_and_flags_are_named() {
    let (code, text) = run(&["--check-config"]);
    assert_eq!(code, 0, "defaults are valid: {text}");
    let (code, text) = run(&[
        "--check-config",
        "--insecure-listen",
        "--grpc-listen",
        "198.18.0.1:7400",
    ]);
    assert_eq!(code, 0, "accepted when the operator says so: {text}");
    for (args, field) in [
        (
            vec!["--check-config", "--port-range", "30001-30010"],
            "port_min",
        ),
        (
            vec!["--check-config", "--port-range", "30000-30001"],
            "port_max",
        ),
        (
            vec!["--check-config", "--interface", "nosuchif9"],
            "interfaces",
        ),
        (
            vec!["--check-config", "--pool-address", "198.18.200.1"],
            "pool_addresses",
        ),
        (
            vec!["--check-config", "--relay-threads", "0"],
            "relay_threads",
        ),
        // Off loopback without authentication only when the operator says so.
        (
            vec!["--check-config", "--grpc-listen", "198.18.0.1:7400"],
            "grpc_listen: 198.18.0.1:7400 is not a loopback address",
        ),
        (
            vec!["--check-config", "--metrics-listen", "198.18.0.1:9400"],
            "metrics_listen: 198.18.0.1:9400 is not a loopback address",
        ),
    ] {
        let (code, text) = run(&args);
        assert_eq!(code, 78, "{args:?}: {text}");
        assert!(text.contains(field), "{args:?} names {field}: {text}");
    }
    let dir = std::env::temp_dir().join(format!("mdp-bad-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("dataplane.toml");
    std::fs::write(&file, "port_min = 30000\nxdp_mod = \"off\"\n").expect("write");
    let (code, text) = run(&["--check-config", "--config", file.to_str().expect("path")]);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("xdp_mod"), "{text}");
    std::fs::write(
        &file,
        "port_min = 30000\nport_max = 30099\nxdp_mode = \"off\"\n",
    )
    .expect("write");
    let (code, text) = run(&["--check-config", "--config", file.to_str().expect("path")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("port_max: 30099"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);

    for args in [
        vec!["--port-range", "abc"],
        vec!["--xdp-mode", "turbo"],
        vec!["--no-such-flag"],
    ] {
        let (code, text) = run(&args);
        assert_eq!(code, 64, "usage error for {args:?}: {text}");
    }
}

//! mediator-control's dataplane client against real mediator-dataplane daemons (loopback, XDP
//! off, no root needed): sessions spread round-robin over the healthy relays; an unreachable relay
//! and one that accepts connections but never answers are skipped within the timeout and marked
//! down; with no relay left, the attempt fails fast with 503 instead of hanging. Sessions live on
//! their owner's lease.

use std::time::{Duration, Instant};

use mediator_control::media::{Lease, MediaError, Relays};
use mediator_proto::dataplane::v1 as pb;
use mediator_tests::daemon::{Daemon, free_port};

fn request(id: &str) -> pb::CreateSessionRequest {
    let leg = |port: u32| {
        Some(pb::LegSpec {
            remote_rtp: Some(pb::Endpoint {
                address: "127.0.0.1".into(),
                port,
            }),
            ..Default::default()
        })
    };
    pb::CreateSessionRequest {
        session_id: id.into(),
        pool: leg(6000),
        gateway: leg(6002),
        options: None,
        on_hold: false,
        ..Default::default()
    }
}

async fn relay(tag: &str, ports: &str) -> (Daemon, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut d = Daemon::start(
        tag,
        None,
        addr.parse().expect("addr"),
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
    .expect("dataplane");
    d.client().await.expect("up");
    (d, addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_over_healthy_relays_and_fail_fast_when_none() {
    let (mut d1, a1) = relay("mc1", "42000-42099").await;
    let (d2, a2) = relay("mc2", "42100-42199").await;
    // Connection refused at once, and a relay that accepts but never speaks HTTP/2.
    let refused = format!("127.0.0.1:{}", free_port());
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let relays = Relays::new(
        &[refused.clone(), a1.clone(), silent_addr.clone(), a2.clone()],
        Duration::from_millis(500),
        None,
        &Default::default(),
    )
    .expect("relays");

    let mut placed = Vec::new();
    for i in 0..6 {
        let started = Instant::now();
        let (relay, session) = relays
            .create_session(request(&format!("call-{i}")))
            .await
            .expect("a relay takes it");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded even past dead relays"
        );
        assert_eq!(session.session_id, format!("call-{i}"));
        placed.push(relay);
    }
    let on = |a: &str| placed.iter().filter(|r| *r == a).count();
    assert_eq!(on(&a1) + on(&a2), 6);
    assert!(
        on(&a1) >= 2 && on(&a2) >= 2,
        "spread over both healthy relays: {placed:?}"
    );
    let health = relays.health();
    let down: Vec<&str> = health
        .iter()
        .filter(|h| !h.1)
        .map(|h| h.0.as_str())
        .collect();
    assert_eq!(down, [refused.as_str(), silent_addr.as_str()], "{health:?}");

    // Sessions stay with their relay: update and delete go there.
    let s = relays
        .update_session(
            &placed[0],
            pb::UpdateSessionRequest {
                session_id: "call-0".into(),
                on_hold: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert!(s.on_hold);
    relays
        .delete_session(&placed[0], "call-0")
        .await
        .expect("delete");
    // A refusal of the request itself (here a port 0) is not a dead relay: 500, nobody marked down.
    let mut bad = request("call-bad");
    bad.gateway = Some(pb::LegSpec {
        remote_rtp: Some(pb::Endpoint {
            address: "127.0.0.1".into(),
            port: 0,
        }),
        ..Default::default()
    });
    let e = relays.create_session(bad).await.expect_err("refused");
    assert!(
        matches!(&e, MediaError::Refused { status, .. } if status.code() == tonic::Code::InvalidArgument),
        "{e}"
    );
    assert_eq!(e.sip_status(), 500);
    assert_eq!(
        relays.health().iter().filter(|h| h.1).count(),
        2,
        "still two healthy relays"
    );

    // Kill one: new sessions go to the other.
    d1.kill9();
    for i in 10..13 {
        let (relay, _) = relays
            .create_session(request(&format!("call-{i}")))
            .await
            .expect("the other relay");
        assert_eq!(relay, a2);
    }
    // None left: 503 quickly.
    drop(d2);
    let started = Instant::now();
    let e = relays
        .create_session(request("call-99"))
        .await
        .expect_err("no relay");
    assert_eq!(e.sip_status(), 503, "{e}");
    assert!(matches!(e, MediaError::Unavailable(_)));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "fails fast: {:?}",
        started.elapsed()
    );
    drop(silent);
}

/// Sessions live on their owner's lease: renewed, they stay; an owner that stops renewing loses
/// its sessions (each with a `lease_expired` event, counted); unowned sessions are kept.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_live_on_their_owners_lease() {
    let (mut d, a) = relay("mcl", "42200-42299").await;
    let lease = |owner: &str| {
        Some(Lease {
            owner: owner.into(),
            secs: 5,
        })
    };
    let mine = Relays::new(
        std::slice::from_ref(&a),
        Duration::from_secs(2),
        lease("ctl-a"),
        &Default::default(),
    )
    .expect("r");
    let theirs = Relays::new(
        std::slice::from_ref(&a),
        Duration::from_secs(2),
        lease("ctl-b"),
        &Default::default(),
    )
    .expect("r");
    let (_, s) = mine.create_session(request("a-1")).await.expect("create");
    assert_eq!(s.owner, "ctl-a");
    mine.create_session(request("a-2")).await.expect("create");
    theirs.create_session(request("b-1")).await.expect("create");
    let mut c = d.client().await.expect("client");
    c.create_session(request("free")).await.expect("unowned");
    let mut events = c
        .watch_events(pb::WatchEventsRequest {})
        .await
        .expect("watch")
        .into_inner();

    let held: Vec<String> = mine
        .leased_sessions()
        .await
        .into_iter()
        .map(|(relay, id, _)| {
            assert_eq!(relay, a);
            id
        })
        .collect();
    assert_eq!(held, ["a-1", "a-2"], "the owner's sessions, no other");

    // ctl-a renews every second for 8 s; ctl-b never again.
    for _ in 0..8 {
        mine.leased_sessions().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let ids: Vec<String> = c
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sessions
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    assert_eq!(ids, ["a-1", "a-2", "free"], "ctl-b's session went");
    let e = tokio::time::timeout(Duration::from_secs(2), events.message())
        .await
        .expect("an event")
        .expect("stream")
        .expect("event");
    assert_eq!(e.session_id, "b-1");
    assert!(
        matches!(&e.kind, Some(pb::event::Kind::LeaseExpired(l)) if l.owner == "ctl-b"),
        "{e:?}"
    );
    let stats = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.lease_expired_sessions, 1);

    // Bad owners and leases are refused, naming the field; nothing is created.
    for (owner, secs, field) in [
        ("ctl-a", 0, "lease_secs"),
        ("ctl-a", 86_401, "lease_secs"),
        ("no spaces", 30, "owner"),
    ] {
        let mut r = request("bad");
        r.owner = owner.into();
        r.lease_secs = secs;
        let e = c.create_session(r).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with(&format!("{field}:")), "{e:?}");
        let e = c
            .renew_lease(pb::RenewLeaseRequest {
                owner: owner.into(),
                lease_secs: secs,
            })
            .await
            .expect_err("refused");
        assert!(e.message().starts_with(&format!("{field}:")), "{e:?}");
    }
    assert_eq!(
        c.list_sessions(pb::ListSessionsRequest::default())
            .await
            .expect("list")
            .into_inner()
            .total,
        3
    );
}

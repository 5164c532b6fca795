//! Shorthands the integration tests and the benchmark share: addresses, session requests, and a
//! mediator-dataplane started in a lab's relay namespace on the lab's interfaces and addresses.

use std::net::{IpAddr, SocketAddr};

use mediator_proto::dataplane::v1 as pb;

use crate::daemon::Daemon;
use crate::lab::{GW_RELAY, GW_RELAY6, Lab, POOL_RELAY, POOL_RELAY6};

pub fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().expect("ip literal"), port)
}

pub fn ep(a: SocketAddr) -> Option<pb::Endpoint> {
    Some(a.into())
}

/// A leg whose remote peer receives RTP at `remote`.
pub fn leg(remote: SocketAddr) -> Option<pb::LegSpec> {
    Some(pb::LegSpec {
        remote_rtp: ep(remote),
        ..Default::default()
    })
}

pub fn create(
    id: &str,
    pool: SocketAddr,
    gw: SocketAddr,
    opts: pb::SessionOptions,
) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session_id: id.into(),
        pool: leg(pool),
        gateway: leg(gw),
        options: Some(opts),
        on_hold: false,
        ..Default::default()
    }
}

pub fn strict() -> pb::SessionOptions {
    pb::SessionOptions {
        strict_source: true,
        ..Default::default()
    }
}

/// The stream of `s` arriving on `from`, of `kind`.
pub fn stream(s: &pb::Session, from: pb::Side, kind: pb::StreamKind) -> pb::Stream {
    s.streams
        .iter()
        .find(|st| st.from_side == from as i32 && st.kind == kind as i32)
        .cloned()
        .expect("stream")
}

/// The relay's RTP ports of a session: (pool side, gateway side).
pub fn relay_ports(s: &pb::Session) -> (u16, u16) {
    let p = s.pool.as_ref().expect("pool leg").local_rtp_port as u16;
    let g = s.gateway.as_ref().expect("gateway leg").local_rtp_port as u16;
    (p, g)
}

/// mediator-dataplane in the lab's relay namespace: XDP mode `xdp` on rp and rg, the lab's IPv4
/// and IPv6 relay addresses, media ports `ports` ("MIN-MAX"), plus `extra` flags.
pub fn relay_daemon(
    lab: &Lab,
    tag: &str,
    xdp: &str,
    ports: &str,
    extra: &[&str],
) -> anyhow::Result<Daemon> {
    let mut args = vec![
        "--xdp-mode",
        xdp,
        "--interface",
        "rp",
        "--interface",
        "rg",
        "--pool-address",
        POOL_RELAY,
        "--pool-address",
        POOL_RELAY6,
        "--gateway-address",
        GW_RELAY,
        "--gateway-address",
        GW_RELAY6,
        "--port-range",
        ports,
    ];
    args.extend_from_slice(extra);
    Daemon::start(tag, Some(&lab.relay.name), sa("127.0.0.1", 7400), &args)
}

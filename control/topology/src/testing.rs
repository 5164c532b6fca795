//! Builders of sample resources and topologies for tests, here and in other crates (feature
//! `testing`): a pool, a trunk, a small sample topology, and the lab's topology document built in
//! memory — no store.

use crate::model::{Gateway, GatewayKind, HostPort, Meta, Pool, Transport, Trunk};
use crate::topology::{Changes, Item, Topology};

/// The topology document of the namespace lab (`tests/lab/topology.toml`).
pub const LAB: &str = include_str!("../../../tests/lab/topology.toml");

/// The lab's topology, imported into a fresh in-memory topology (panics if it does not import).
pub fn lab() -> Topology {
    let (mut t, _) = Topology::initial(1);
    t.import(LAB, false, 1, &mut Changes::default())
        .expect("the lab topology imports");
    t
}

/// A pool with addresses of its own (derived from its name).
pub fn pool(name: &str) -> Pool {
    let n = name.bytes().map(u32::from).sum::<u32>() % 200 + 1;
    Pool {
        name: name.into(),
        site: "redmond".into(),
        dataplanes: vec!["127.0.0.1:7400".into()],
        pool_side_listen: format!("198.18.1.{n}:5060").parse().expect("addr"),
        gateway_side_address: format!("198.18.2.{n}").parse().expect("addr"),
        next_hop: HostPort {
            host: "fe.contoso.com".into(),
            port: 5061,
            transport: Transport::Tls,
        },
        // SRTP when the Front End offers it: the engine tests' peers send plain RTP unless a
        // test says otherwise.
        media_encryption: crate::model::MediaEncryption::Supported,
        draining: false,
    }
}

pub fn trunk(name: &str, gw: &str, gw_port: u16, pool: &str, pool_port: u16) -> Trunk {
    Trunk {
        name: name.into(),
        gateway: gw.into(),
        gateway_port: gw_port,
        transport: Transport::Tcp,
        pool: pool.into(),
        pool_port,
    }
}

/// pool1, gateway gw1.contoso.com with its root trunk and a second trunk.
pub fn sample() -> Topology {
    let (mut t, _) = Topology::initial(1);
    let mut ch = Changes::default();
    t.create(pool("pool1.contoso.com"), 1, &mut ch)
        .expect("pool");
    let gw = Gateway {
        name: "gw1.contoso.com".into(),
        kind: GatewayKind::PstnGateway,
        site: "redmond".into(),
    };
    t.create(
        trunk(
            "gw1.contoso.com",
            "gw1.contoso.com",
            5067,
            "pool1.contoso.com",
            5067,
        ),
        1,
        &mut ch,
    )
    .expect_err("no gateway yet");
    t.gateways.insert(
        gw.name.clone(),
        Item {
            meta: Meta::default(),
            value: gw,
        },
    );
    t.create(
        trunk(
            "gw1.contoso.com",
            "gw1.contoso.com",
            5067,
            "pool1.contoso.com",
            5067,
        ),
        1,
        &mut ch,
    )
    .expect("root");
    t.create(
        trunk(
            "gw1-5068",
            "gw1.contoso.com",
            5068,
            "pool1.contoso.com",
            5068,
        ),
        1,
        &mut ch,
    )
    .expect("trunk");
    t
}

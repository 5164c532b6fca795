//! mediator-control's API against a real daemon: every resource's create/read/update/delete,
//! validation, integrity and revision rules, the route test, topology documents, trunk moves,
//! persistence across restarts and a kill -9 during a stream of writes. No root needed.

use mediator_proto::control::v1 as pb;
use mediator_tests::control::{Control, Topo};
use prost_types::FieldMask;
use tonic::Code;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|s| s.to_string()).collect(),
    })
}

/// A pool with addresses of its own (derived from its name).
fn pool(name: &str, site: &str) -> pb::Pool {
    let n = name.bytes().map(u32::from).sum::<u32>() % 200 + 1;
    pb::Pool {
        name: name.into(),
        site: site.into(),
        dataplanes: vec![format!("198.18.1.{n}:7400")],
        pool_side_listen: format!("198.18.1.{n}:5060"),
        gateway_side_address: format!("198.18.2.{n}"),
        next_hop: Some(pb::HostPort {
            host: "fe.contoso.com".into(),
            port: 5061,
            transport: pb::Transport::Tls as i32,
        }),
        // Unspecified: the default, required.
        media_encryption: 0,
        draining: false,
        meta: None,
        next_hop_resolved: Vec::new(),
    }
}

fn gateway(name: &str, pool: &str, port: u32) -> pb::CreateGatewayRequest {
    pb::CreateGatewayRequest {
        gateway: Some(pb::Gateway {
            name: name.into(),
            kind: pb::GatewayKind::PstnGateway as i32,
            site: "redmond".into(),
            ..Default::default()
        }),
        root_trunk: Some(pb::RootTrunkSpec {
            gateway_port: port,
            transport: pb::Transport::Tls as i32,
            pool: pool.into(),
            pool_port: port,
        }),
    }
}

fn trunk(name: &str, gw: &str, gw_port: u32, pool: &str, pool_port: u32) -> pb::Trunk {
    pb::Trunk {
        name: name.into(),
        gateway: gw.into(),
        gateway_port: gw_port,
        transport: pb::Transport::Tcp as i32,
        pool: pool.into(),
        pool_port,
        ..Default::default()
    }
}

fn route(name: &str, pattern: &str, trunks: &[&str], usages: &[&str]) -> pb::VoiceRoute {
    pb::VoiceRoute {
        name: name.into(),
        pattern: pattern.into(),
        trunks: trunks.iter().map(|s| s.to_string()).collect(),
        pstn_usages: usages.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, text: &str) {
    let e = r.expect_err(text);
    assert_eq!(e.code(), code, "{}", e.message());
    assert!(
        e.message().contains(text),
        "message names '{text}': {}",
        e.message()
    );
}

/// pool1 (redmond), gateway gw1 (root trunk 5067) and trunk gw1-5068.
async fn base(c: &mut Topo) {
    c.create_pool(pb::CreatePoolRequest {
        pool: Some(pool("pool1.contoso.com", "redmond")),
    })
    .await
    .expect("pool");
    c.create_gateway(gateway("gw1.contoso.com", "pool1.contoso.com", 5067))
        .await
        .expect("gateway");
    c.create_trunk(pb::CreateTrunkRequest {
        trunk: Some(trunk(
            "gw1-5068",
            "gw1.contoso.com",
            5068,
            "pool1.contoso.com",
            5068,
        )),
    })
    .await
    .expect("trunk");
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_validation_paging_revisions() {
    let mut d = Control::start("pools").expect("daemon");
    let mut c = d.client().await.expect("client");
    let p = c
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pool("pool1.contoso.com", "redmond")),
        })
        .await
        .expect("create");
    assert_eq!(p.get_ref().meta.expect("meta").revision, 1);
    refused(
        c.create_pool(pb::CreatePoolRequest {
            pool: Some(pool("pool1.contoso.com", "redmond")),
        })
        .await,
        Code::AlreadyExists,
        "pool1.contoso.com",
    );
    refused(
        c.create_pool(pb::CreatePoolRequest {
            pool: Some(pool("Pool_2", "redmond")),
        })
        .await,
        Code::InvalidArgument,
        "name:",
    );
    refused(
        c.create_pool(pb::CreatePoolRequest {
            pool: Some(pool("pool2.contoso.com", "red mond")),
        })
        .await,
        Code::InvalidArgument,
        "site:",
    );
    let mut bad = pool("pool2.contoso.com", "redmond");
    bad.pool_side_listen = "198.18.1.1".into();
    refused(
        c.create_pool(pb::CreatePoolRequest { pool: Some(bad) })
            .await,
        Code::InvalidArgument,
        "pool_side_listen",
    );
    let mut bad = pool("pool2.contoso.com", "redmond");
    bad.dataplanes = vec!["relay:0".into()];
    refused(
        c.create_pool(pb::CreatePoolRequest { pool: Some(bad) })
            .await,
        Code::InvalidArgument,
        "dataplanes[0]",
    );
    let mut bad = pool("pool2.contoso.com", "redmond");
    bad.next_hop = None;
    refused(
        c.create_pool(pb::CreatePoolRequest { pool: Some(bad) })
            .await,
        Code::InvalidArgument,
        "next_hop",
    );
    refused(
        c.create_pool(pb::CreatePoolRequest { pool: None }).await,
        Code::InvalidArgument,
        "pool",
    );

    // Update: mask required and checked; revision conflicts are ABORTED.
    let mut change = pool("pool1.contoso.com", "dublin");
    change.dataplanes.clear();
    let u = c
        .update_pool(pb::UpdatePoolRequest {
            pool: Some(change.clone()),
            update_mask: mask(&["site"]),
            expected_revision: 1,
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(
        (
            u.site.as_str(),
            u.dataplanes.len(),
            u.meta.expect("m").revision
        ),
        ("dublin", 1, 2),
        "only the masked field"
    );
    refused(
        c.update_pool(pb::UpdatePoolRequest {
            pool: Some(change.clone()),
            update_mask: mask(&["site"]),
            expected_revision: 1,
        })
        .await,
        Code::Aborted,
        "revision 2, not 1",
    );
    refused(
        c.update_pool(pb::UpdatePoolRequest {
            pool: Some(change.clone()),
            update_mask: mask(&["name"]),
            expected_revision: 0,
        })
        .await,
        Code::InvalidArgument,
        "update_mask",
    );
    refused(
        c.update_pool(pb::UpdatePoolRequest {
            pool: Some(change.clone()),
            update_mask: None,
            expected_revision: 0,
        })
        .await,
        Code::InvalidArgument,
        "update_mask",
    );
    refused(
        c.get_pool(pb::GetRequest {
            name: "nope.contoso.com".into(),
        })
        .await,
        Code::NotFound,
        "nope.contoso.com",
    );

    for n in ["pool2.contoso.com", "pool3.contoso.com"] {
        c.create_pool(pb::CreatePoolRequest {
            pool: Some(pool(n, "redmond")),
        })
        .await
        .expect("pool");
    }
    let page1 = c
        .list_pools(pb::ListPoolsRequest {
            site: String::new(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("list");
    let page1 = page1.into_inner();
    assert_eq!(page1.pools.len(), 2);
    let page2 = c
        .list_pools(pb::ListPoolsRequest {
            site: String::new(),
            page_size: 2,
            page_token: page1.next_page_token,
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!((page2.pools.len(), page2.next_page_token.as_str()), (1, ""));
    let redmond = c
        .list_pools(pb::ListPoolsRequest {
            site: "redmond".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(redmond.get_ref().pools.len(), 2, "filtered by site");
    refused(
        c.delete_pool(pb::DeleteRequest {
            name: "pool2.contoso.com".into(),
            expected_revision: 7,
        })
        .await,
        Code::Aborted,
        "revision",
    );
    c.delete_pool(pb::DeleteRequest {
        name: "pool2.contoso.com".into(),
        expected_revision: 1,
    })
    .await
    .expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn gateways_trunks_and_integrity() {
    let mut d = Control::start("trunks").expect("daemon");
    let mut c = d.client().await.expect("client");
    base(&mut c).await;
    let trunks = c
        .list_trunks(pb::ListTrunksRequest {
            gateway: "gw1.contoso.com".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    let roots: Vec<(String, bool)> = trunks
        .into_inner()
        .trunks
        .into_iter()
        .map(|t| (t.name, t.root))
        .collect();
    assert_eq!(
        roots,
        [
            ("gw1-5068".to_string(), false),
            ("gw1.contoso.com".to_string(), true)
        ]
    );

    refused(
        c.create_gateway(gateway("gw1.contoso.com", "pool1.contoso.com", 6000))
            .await,
        Code::AlreadyExists,
        "gw1.contoso.com",
    );
    refused(
        c.create_gateway(gateway("gw2.contoso.com", "nope.contoso.com", 6000))
            .await,
        Code::InvalidArgument,
        "root_trunk.pool",
    );
    refused(
        c.get_gateway(pb::GetRequest {
            name: "gw2.contoso.com".into(),
        })
        .await,
        Code::NotFound,
        "gw2",
    );
    let t = |name: &str, port: u32| pb::CreateTrunkRequest {
        trunk: Some(trunk(
            name,
            "gw1.contoso.com",
            port,
            "pool1.contoso.com",
            port,
        )),
    };
    refused(
        c.create_trunk(t("dup-port", 5068)).await,
        Code::InvalidArgument,
        "gateway_port",
    );
    refused(
        c.create_trunk(pb::CreateTrunkRequest {
            trunk: Some(trunk(
                "x",
                "gw9.contoso.com",
                6000,
                "pool1.contoso.com",
                6000,
            )),
        })
        .await,
        Code::InvalidArgument,
        "gateway 'gw9.contoso.com' does not exist",
    );
    // A gateway port of 0 is "ask DNS SRV" for an FQDN gateway (RFC 3263 §4.2), but Mediator's
    // own listening port (pool_port) is never 0.
    refused(
        c.create_trunk(t("zero", 0)).await,
        Code::InvalidArgument,
        "pool_port: 0 is outside 1-65535",
    );
    let mut ip_gw = gateway("198.18.2.9", "pool1.contoso.com", 6001);
    ip_gw.root_trunk.as_mut().expect("root trunk").gateway_port = 0;
    refused(
        c.create_gateway(ip_gw).await,
        Code::InvalidArgument,
        "gateway_port",
    );
    refused(
        c.delete_trunk(pb::DeleteRequest {
            name: "gw1.contoso.com".into(),
            expected_revision: 0,
        })
        .await,
        Code::FailedPrecondition,
        "root trunk",
    );
    refused(
        c.delete_pool(pb::DeleteRequest {
            name: "pool1.contoso.com".into(),
            expected_revision: 0,
        })
        .await,
        Code::FailedPrecondition,
        "trunk 'gw1-5068'",
    );
    refused(
        c.delete_gateway(pb::DeleteRequest {
            name: "gw1.contoso.com".into(),
            expected_revision: 0,
        })
        .await,
        Code::FailedPrecondition,
        "trunk 'gw1-5068'",
    );
    let u = c
        .update_trunk(pb::UpdateTrunkRequest {
            trunk: Some(pb::Trunk {
                name: "gw1-5068".into(),
                pool_port: 5070,
                ..Default::default()
            }),
            update_mask: mask(&["pool_port"]),
            expected_revision: 0,
        })
        .await
        .expect("update trunk");
    assert_eq!(u.get_ref().pool_port, 5070);
    refused(
        c.update_trunk(pb::UpdateTrunkRequest {
            trunk: Some(pb::Trunk {
                name: "gw1-5068".into(),
                ..Default::default()
            }),
            update_mask: mask(&["gateway"]),
            expected_revision: 0,
        })
        .await,
        Code::InvalidArgument,
        "update_mask",
    );
    c.delete_trunk(pb::DeleteRequest {
        name: "gw1-5068".into(),
        expected_revision: 0,
    })
    .await
    .expect("delete trunk");
    c.delete_gateway(pb::DeleteRequest {
        name: "gw1.contoso.com".into(),
        expected_revision: 0,
    })
    .await
    .expect("delete gateway");
    let left = c
        .list_trunks(pb::ListTrunksRequest::default())
        .await
        .expect("list")
        .into_inner()
        .trunks;
    assert!(left.is_empty(), "the root trunk went with its gateway");
}

#[tokio::test(flavor = "multi_thread")]
async fn trunk_configuration_scopes_and_effective_settings() {
    let mut d = Control::start("config").expect("daemon");
    let mut c = d.client().await.expect("client");
    base(&mut c).await;
    let global = c
        .get_trunk_configuration(pb::GetRequest {
            name: "global".into(),
        })
        .await
        .expect("global")
        .into_inner();
    let s = global.settings.expect("settings");
    assert_eq!(
        (
            s.srtp_mode,
            s.refer_support,
            s.max_early_dialogs,
            s.fast_failover_timeout_secs
        ),
        (
            Some(pb::SrtpMode::Required as i32),
            Some(true),
            Some(20),
            Some(10)
        ),
        "Lync defaults"
    );

    let site = pb::TrunkConfiguration {
        name: "site:redmond".into(),
        settings: Some(pb::TrunkSettings {
            media_bypass: Some(true),
            rtp_latching: Some(true),
            ..Default::default()
        }),
        meta: None,
    };
    c.create_trunk_configuration(pb::CreateTrunkConfigurationRequest {
        configuration: Some(site),
    })
    .await
    .expect("site");
    let trunk_cfg = pb::TrunkConfiguration {
        name: "trunk:gw1-5068".into(),
        settings: Some(pb::TrunkSettings {
            media_bypass: Some(false),
            called_number_rules: Some(pb::RuleList {
                rules: vec![pb::TranslationRule {
                    name: "national".into(),
                    pattern: r"^\+1(\d{10})$".into(),
                    translation: "1$1".into(),
                }],
            }),
            ..Default::default()
        }),
        meta: None,
    };
    c.create_trunk_configuration(pb::CreateTrunkConfigurationRequest {
        configuration: Some(trunk_cfg),
    })
    .await
    .expect("trunk");
    let eff = c
        .get_effective_trunk_configuration(pb::GetRequest {
            name: "gw1-5068".into(),
        })
        .await
        .expect("effective")
        .into_inner();
    let src = |n: &str| {
        eff.sources
            .iter()
            .find(|s| s.name == n)
            .map(|s| (s.value.clone(), s.scope.clone()))
            .expect("source")
    };
    assert_eq!(
        src("media_bypass"),
        ("false".into(), "trunk:gw1-5068".into())
    );
    assert_eq!(src("rtp_latching"), ("true".into(), "site:redmond".into()));
    assert_eq!(
        src("fast_failover_timeout_secs"),
        ("10".into(), "global".into())
    );
    assert_eq!(src("called_number_rules").0, "[national]");

    // Clearing a trunk-scope setting makes it inherit again.
    c.update_trunk_configuration(pb::UpdateTrunkConfigurationRequest {
        configuration: Some(pb::TrunkConfiguration {
            name: "trunk:gw1-5068".into(),
            settings: None,
            meta: None,
        }),
        update_mask: mask(&["settings.media_bypass"]),
        expected_revision: 0,
    })
    .await
    .expect("inherit");
    let eff = c
        .get_effective_trunk_configuration(pb::GetRequest {
            name: "gw1-5068".into(),
        })
        .await
        .expect("effective")
        .into_inner();
    assert!(
        eff.sources
            .iter()
            .any(|s| s.name == "media_bypass" && s.scope == "site:redmond" && s.value == "true")
    );

    refused(
        c.update_trunk_configuration(pb::UpdateTrunkConfigurationRequest {
            configuration: Some(pb::TrunkConfiguration {
                name: "global".into(),
                settings: None,
                meta: None,
            }),
            update_mask: mask(&["settings.media_bypass"]),
            expected_revision: 0,
        })
        .await,
        Code::InvalidArgument,
        "settings.media_bypass",
    );
    refused(
        c.delete_trunk_configuration(pb::DeleteRequest {
            name: "global".into(),
            expected_revision: 0,
        })
        .await,
        Code::FailedPrecondition,
        "global",
    );
    refused(
        c.create_trunk_configuration(pb::CreateTrunkConfigurationRequest {
            configuration: Some(pb::TrunkConfiguration {
                name: "pool:x".into(),
                settings: None,
                meta: None,
            }),
        })
        .await,
        Code::InvalidArgument,
        "name",
    );
    refused(
        c.create_trunk_configuration(pb::CreateTrunkConfigurationRequest {
            configuration: Some(pb::TrunkConfiguration {
                name: "trunk:nope".into(),
                settings: None,
                meta: None,
            }),
        })
        .await,
        Code::InvalidArgument,
        "trunk 'nope' does not exist",
    );
    refused(
        c.create_trunk_configuration(pb::CreateTrunkConfigurationRequest {
            configuration: Some(pb::TrunkConfiguration {
                name: "site:dublin".into(),
                settings: Some(pb::TrunkSettings {
                    response_code_rules: Some(pb::ResponseCodeRuleList {
                        rules: vec![pb::ResponseCodeRule {
                            received: 408,
                            translated: 200,
                        }],
                    }),
                    ..Default::default()
                }),
                meta: None,
            }),
        })
        .await,
        Code::InvalidArgument,
        "settings.response_code_rules[0].translated",
    );
    refused(
        c.delete_trunk(pb::DeleteRequest {
            name: "gw1-5068".into(),
            expected_revision: 0,
        })
        .await,
        Code::FailedPrecondition,
        "trunk configuration 'trunk:gw1-5068'",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usages_routes_and_route_test() {
    let mut d = Control::start("routes").expect("daemon");
    let mut c = d.client().await.expect("client");
    base(&mut c).await;
    for (n, p) in [("Local", 1), ("Long Distance", 2)] {
        c.create_pstn_usage(pb::CreatePstnUsageRequest {
            usage: Some(pb::PstnUsage {
                name: n.into(),
                priority: p,
                ..Default::default()
            }),
        })
        .await
        .expect("usage");
    }
    let r = |x: pb::VoiceRoute| pb::CreateVoiceRouteRequest { route: Some(x) };
    refused(
        c.create_voice_route(r(route("bad", r"^\+1(\d{10}$", &["gw1-5068"], &["Local"])))
            .await,
        Code::InvalidArgument,
        "pattern",
    );
    refused(
        c.create_voice_route(r(route("bad", r"^\+1", &["nope"], &["Local"])))
            .await,
        Code::InvalidArgument,
        "trunks[0]",
    );
    refused(
        c.create_voice_route(r(route("bad", r"^\+1", &["gw1-5068"], &["Nope"])))
            .await,
        Code::InvalidArgument,
        "pstn_usages[0]",
    );
    refused(
        c.create_voice_route(r(route("bad", r"^\+1", &[], &["Local"])))
            .await,
        Code::InvalidArgument,
        "trunks",
    );
    let mut sup = route("bad", r"^\+1", &["gw1-5068"], &["Local"]);
    sup.suppress_caller_id = true;
    refused(
        c.create_voice_route(r(sup)).await,
        Code::InvalidArgument,
        "alternate_caller_id",
    );

    c.create_voice_route(r(route(
        "redmond",
        r"^\+1425(\d{7})$",
        &["gw1-5068", "gw1.contoso.com"],
        &["Local"],
    )))
    .await
    .expect("route");
    let mut us = route(
        "us",
        r"^\+1(\d{10})$",
        &["gw1.contoso.com"],
        &["Long Distance"],
    );
    us.priority = 5;
    c.create_voice_route(r(us)).await.expect("route");
    c.create_trunk_configuration(pb::CreateTrunkConfigurationRequest {
        configuration: Some(pb::TrunkConfiguration {
            name: "trunk:gw1-5068".into(),
            settings: Some(pb::TrunkSettings {
                called_number_rules: Some(pb::RuleList {
                    rules: vec![pb::TranslationRule {
                        name: "national".into(),
                        pattern: r"^\+1(\d{10})$".into(),
                        translation: "1$1".into(),
                    }],
                }),
                ..Default::default()
            }),
            meta: None,
        }),
    })
    .await
    .expect("config");

    let test = |n: &str, u: &[&str]| pb::TestRouteRequest {
        dialed_number: n.into(),
        pstn_usages: u.iter().map(|s| s.to_string()).collect(),
        calling_number: "+14255550111".into(),
    };
    let a = c
        .test_route(test("+14255550100", &[]))
        .await
        .expect("test")
        .into_inner()
        .attempts;
    let got: Vec<(&str, &str, &str)> = a
        .iter()
        .map(|x| (x.route.as_str(), x.trunk.as_str(), x.called_number.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("redmond", "gw1-5068", "14255550100"),
            ("redmond", "gw1.contoso.com", "+14255550100"),
            ("us", "gw1.contoso.com", "+14255550100")
        ],
        "failover order: usage order, then route priority, then the route's trunks; translation per trunk"
    );
    assert_eq!(a[0].called_rule, "national");
    let a = c
        .test_route(test("+14255550100", &["Long Distance"]))
        .await
        .expect("test")
        .into_inner()
        .attempts;
    assert_eq!(a.len(), 1);
    assert!(
        c.test_route(test("+4930123456", &[]))
            .await
            .expect("test")
            .into_inner()
            .attempts
            .is_empty(),
        "no route matches"
    );
    refused(
        c.test_route(test("+1", &["Nope"])).await,
        Code::InvalidArgument,
        "pstn_usages[0]",
    );
    refused(
        c.test_route(test("", &[])).await,
        Code::InvalidArgument,
        "dialed_number",
    );

    refused(
        c.delete_pstn_usage(pb::DeleteRequest {
            name: "Local".into(),
            expected_revision: 0,
        })
        .await,
        Code::FailedPrecondition,
        "voice route 'redmond'",
    );
    refused(
        c.delete_gateway(pb::DeleteRequest {
            name: "gw1.contoso.com".into(),
            expected_revision: 0,
        })
        .await,
        Code::FailedPrecondition,
        "voice route",
    );
    let u = c
        .update_voice_route(pb::UpdateVoiceRouteRequest {
            route: Some(pb::VoiceRoute {
                name: "us".into(),
                trunks: vec!["gw1-5068".into()],
                ..Default::default()
            }),
            update_mask: mask(&["trunks"]),
            expected_revision: 1,
        })
        .await
        .expect("update route")
        .into_inner();
    assert_eq!(
        (u.trunks.as_slice(), u.pattern.as_str()),
        (&["gw1-5068".to_string()][..], r"^\+1(\d{10})$")
    );
    let listed = c
        .list_voice_routes(pb::ListVoiceRoutesRequest {
            trunk: "gw1.contoso.com".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.get_ref().routes.len(), 1, "filter by trunk");
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_moves_and_persistence() {
    let mut d = Control::start("doc").expect("daemon");
    let mut c = d.client().await.expect("client");
    base(&mut c).await;
    c.create_pool(pb::CreatePoolRequest {
        pool: Some(pool("pool2.contoso.com", "redmond")),
    })
    .await
    .expect("pool2");
    let m = c
        .move_trunks(pb::MoveTrunksRequest {
            from_pool: "pool1.contoso.com".into(),
            to_pool: "pool2.contoso.com".into(),
            ..Default::default()
        })
        .await
        .expect("move")
        .into_inner()
        .r#move
        .expect("move");
    assert_eq!(m.trunks, ["gw1-5068", "gw1.contoso.com"]);
    refused(
        c.move_trunks(pb::MoveTrunksRequest {
            trunk: "gw1-5068".into(),
            to_pool: "pool9.contoso.com".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "to_pool",
    );
    refused(
        c.move_trunks(pb::MoveTrunksRequest {
            to_pool: "pool1.contoso.com".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "trunk",
    );

    let doc = c
        .export_topology(pb::ExportTopologyRequest {})
        .await
        .expect("export")
        .into_inner()
        .toml;
    assert!(
        doc.contains("[[gateway]]") && doc.contains("pool2.contoso.com"),
        "{doc}"
    );
    // Persistence: a graceful restart and a kill -9 both keep everything.
    d.restart().expect("restart");
    let mut c = d.client().await.expect("client");
    assert_eq!(
        c.export_topology(pb::ExportTopologyRequest {})
            .await
            .expect("export")
            .into_inner()
            .toml,
        doc
    );
    assert_eq!(
        c.list_trunk_moves(pb::ListTrunkMovesRequest {})
            .await
            .expect("moves")
            .into_inner()
            .moves
            .len(),
        1
    );

    // Round trip into a fresh daemon is identical.
    let mut d2 = Control::start("doc2").expect("daemon");
    let mut c2 = d2.client().await.expect("client");
    let dry = c2
        .import_topology(pb::ImportTopologyRequest {
            toml: doc.clone(),
            dry_run: true,
        })
        .await
        .expect("dry run")
        .into_inner();
    assert!(
        !dry.applied
            && dry
                .changes
                .iter()
                .any(|x| x.action == "create" && x.kind == "gateway")
    );
    assert!(
        c2.list_pools(pb::ListPoolsRequest::default())
            .await
            .expect("list")
            .into_inner()
            .pools
            .is_empty(),
        "dry run applied nothing"
    );
    c2.import_topology(pb::ImportTopologyRequest {
        toml: doc.clone(),
        dry_run: false,
    })
    .await
    .expect("import");
    assert_eq!(
        c2.export_topology(pb::ExportTopologyRequest {})
            .await
            .expect("export")
            .into_inner()
            .toml,
        doc
    );

    // The dry run is a diff: an edited document names the changed field, old and new.
    let edited = doc.replace("gateway_port = 5068", "gateway_port = 5069");
    let dry = c2
        .import_topology(pb::ImportTopologyRequest {
            toml: edited,
            dry_run: true,
        })
        .await
        .expect("dry run")
        .into_inner();
    let update = dry
        .changes
        .iter()
        .find(|x| x.action == "update")
        .expect("an update");
    assert_eq!(
        (update.kind.as_str(), update.name.as_str()),
        ("trunk", "gw1-5068")
    );
    assert_eq!(update.fields, ["gateway_port: 5068 -> 5069"]);
    // A bad document changes nothing and names every error with its place.
    let bad = doc.replace("pool_port = 5068", "pool_port = 5068\n\n[[trunk]]\nname = \"t2\"\ngateway = \"gw7.contoso.com\"\ngateway_port = 1\ntransport = \"tcp\"\npool = \"pool1.contoso.com\"\npool_port = 0\n");
    let e = c2
        .import_topology(pb::ImportTopologyRequest {
            toml: bad,
            dry_run: false,
        })
        .await
        .expect_err("bad");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("trunk[1] \"t2\" (line") && e.message().contains("pool_port"),
        "{}",
        e.message()
    );
    assert_eq!(
        c2.export_topology(pb::ExportTopologyRequest {})
            .await
            .expect("export")
            .into_inner()
            .toml,
        doc
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_writes_keeps_every_acknowledged_write() {
    let mut d = Control::start("kill").expect("daemon");
    let mut c = d.client().await.expect("client");
    let writer = tokio::spawn(async move {
        let mut acked = Vec::new();
        // Bounded: at most 5000 writes or until the daemon dies.
        for i in 0..5000u32 {
            let name = format!("usage-{i:05}");
            let req = pb::CreatePstnUsageRequest {
                usage: Some(pb::PstnUsage {
                    name: name.clone(),
                    priority: i,
                    ..Default::default()
                }),
            };
            match c.create_pstn_usage(req).await {
                Ok(_) => acked.push(name),
                Err(_) => break,
            }
        }
        acked
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    d.kill9();
    let acked = writer.await.expect("writer");
    assert!(
        acked.len() > 5,
        "some writes were acknowledged before the kill ({})",
        acked.len()
    );
    d.restart().expect("restart");
    let mut c = d.client().await.expect("client after kill -9");
    let mut stored = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_pstn_usages(pb::ListPstnUsagesRequest {
                page_size: 1000,
                page_token: token,
            })
            .await
            .expect("list")
            .into_inner();
        stored.extend(page.usages.into_iter().map(|u| u.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    for name in &acked {
        assert!(
            stored.contains(name),
            "acknowledged write {name} survived kill -9"
        );
    }
    assert!(
        stored.len() <= acked.len() + 1,
        "at most the one in flight beyond the acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_answer_as_grpcurl_needs() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let mut d = Control::start("refl").expect("daemon");
    d.client().await.expect("up");
    let channel = tonic::transport::Channel::from_shared(d.endpoint())
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    mediator_tests::daemon::assert_serving(&d.endpoint(), "mediator.control.v1.TopologyService")
        .await;
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"mediator.control.v1.TopologyService".to_string()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn call_requests_with_bad_ids_or_reasons_are_refused() {
    let mut c = Control::start("calls-bad").expect("start");
    c.client().await.expect("up");
    let mut calls = c.calls().await.expect("calls client");
    refused(
        calls.get_call(pb::GetCallRequest { id: 0 }).await,
        Code::InvalidArgument,
        "id: must be a call id",
    );
    refused(
        calls.get_call(pb::GetCallRequest { id: 42 }).await,
        Code::NotFound,
        "call 42 is neither in progress",
    );
    refused(
        calls
            .end_call(pb::EndCallRequest {
                id: 0,
                reason: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "id: must be a call id",
    );
    refused(
        calls
            .end_call(pb::EndCallRequest {
                id: 42,
                reason: "bell\u{7}".into(),
            })
            .await,
        Code::InvalidArgument,
        "reason: at most 200 characters, without control characters",
    );
    refused(
        calls
            .end_call(pb::EndCallRequest {
                id: 42,
                reason: "x".repeat(201),
            })
            .await,
        Code::InvalidArgument,
        "reason:",
    );
    refused(
        calls
            .end_call(pb::EndCallRequest {
                id: 42,
                reason: String::new(),
            })
            .await,
        Code::NotFound,
        "call 42 is not in progress",
    );
}

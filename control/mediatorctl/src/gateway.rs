//! `mediatorctl gateway …`: PSTN gateways, IP-PBXs and SBCs, each created with its root trunk.

use clap::Args;
use mediator_proto::control::v1 as pb;
use mediator_topology::proto as convert;
use serde_json::Value;

use crate::output::{
    Show, bad_reply, kind_name, meta_fields, resolution_fields, resolution_json, revision,
};
use crate::parse::{KindArg, TransportArg};
use crate::resource::{
    Help, NoMoreVerbs, PAGE_SIZE, Resource, RevisionArg, VerbHelp, field_mask, rpcs,
};
use crate::{Failure, usage_error};

pub const EXAMPLES: &str = "\
Examples:
  mediatorctl gateway add gw1.contoso.com --kind pstn-gateway --site redmond \\
      --pool pool1.contoso.com --gateway-port 5067 --pool-port 5067
  mediatorctl gateway set gw1.contoso.com --kind sbc
  mediatorctl gateway list --site redmond --kind ip-pbx
  mediatorctl gateway remove gw1.contoso.com";

const ADD_EXAMPLES: &str = "\
Examples:
  mediatorctl gateway add gw1.contoso.com --kind pstn-gateway --site redmond \\
      --pool pool1.contoso.com --gateway-port 5067 --pool-port 5067
  mediatorctl gateway add 198.18.2.50 --kind ip-pbx --site redmond \\
      --pool pool1.contoso.com --gateway-port 5060 --pool-port 5068 --transport tcp";

const SET_EXAMPLES: &str = "\
Examples:
  mediatorctl gateway set gw1.contoso.com --kind sbc
  mediatorctl gateway set gw1.contoso.com --site dublin --revision 3
  mediatorctl trunk set gw1.contoso.com --pool-port 5068    # ports and pool: the root trunk's";

const SHOW_EXAMPLES: &str = "\
Examples:
  mediatorctl gateway show gw1.contoso.com
  mediatorctl --output json gateway show gw1.contoso.com";

const LIST_EXAMPLES: &str = "\
Examples:
  mediatorctl gateway list
  mediatorctl gateway list --site redmond --kind pstn-gateway";

const REMOVE_EXAMPLES: &str = "\
Examples:
  mediatorctl gateway remove gw1.contoso.com
  mediatorctl gateway remove gw1.contoso.com --revision 2";

/// `mediatorctl gateway …`.
#[derive(Debug)]
pub struct Gateways;

impl Resource for Gateways {
    const NOUN: &'static str = "gateway";
    const HELP: Help = Help {
        add: VerbHelp::new(
            "Create a gateway and its root trunk (named after the gateway)",
            ADD_EXAMPLES,
        ),
        set: VerbHelp::new(
            "Change a gateway's kind or site; trunks are changed with `trunk set`",
            SET_EXAMPLES,
        ),
        show: VerbHelp::new("Show one gateway", SHOW_EXAMPLES),
        list: VerbHelp::new("List gateways", LIST_EXAMPLES),
        remove: VerbHelp::new(
            "Delete a gateway with its root trunk (delete its other trunks first)",
            REMOVE_EXAMPLES,
        ),
        key: "The gateway's FQDN or IP address",
        remove_key: "The gateway's FQDN or IP address",
    };

    type Item = pb::Gateway;
    type Add = GatewayAdd;
    type Set = GatewaySet;
    type Filter = GatewayFilter;
    type More = NoMoreVerbs;
    type CreateRequest = pb::CreateGatewayRequest;
    type UpdateRequest = pb::UpdateGatewayRequest;
    type ListRequest = pb::ListGatewaysRequest;

    fn create_request(a: &GatewayAdd) -> Result<pb::CreateGatewayRequest, Failure> {
        Ok(pb::CreateGatewayRequest {
            gateway: Some(pb::Gateway {
                name: a.name.clone(),
                kind: a.kind.pb(),
                site: a.site.clone(),
                root_trunk: String::new(),
                meta: None,
                resolved: Vec::new(),
            }),
            root_trunk: Some(pb::RootTrunkSpec {
                gateway_port: u32::from(a.gateway_port),
                transport: a.transport.pb(),
                pool: a.pool.clone(),
                pool_port: u32::from(a.pool_port),
            }),
        })
    }

    fn update_request(
        a: &GatewaySet,
        _current: Option<&pb::Gateway>,
    ) -> Result<pb::UpdateGatewayRequest, Failure> {
        let mut gateway = pb::Gateway {
            name: a.name.clone(),
            ..Default::default()
        };
        let mut paths = Vec::new();
        if let Some(kind) = a.kind {
            gateway.kind = kind.pb();
            paths.push("kind");
        }
        if let Some(site) = &a.site {
            gateway.site = site.clone();
            paths.push("site");
        }
        if paths.is_empty() {
            return Err(usage_error(format!(
                "nothing to change for gateway {}: give --kind and/or --site \
                 (ports, transport and pool are the trunk's: `mediatorctl trunk set {}`)",
                a.name, a.name
            )));
        }
        Ok(pb::UpdateGatewayRequest {
            gateway: Some(gateway),
            update_mask: field_mask(&paths),
            expected_revision: a.revision.expected(),
        })
    }

    fn list_request(f: &GatewayFilter, page_token: String) -> pb::ListGatewaysRequest {
        pb::ListGatewaysRequest {
            site: f.site.clone().unwrap_or_default(),
            kind: f.kind.map_or(0, KindArg::pb),
            page_size: PAGE_SIZE,
            page_token,
        }
    }

    rpcs! {
        create: create_gateway,
        get: get_gateway,
        update: update_gateway,
        delete: delete_gateway,
        list: list_gateways => gateways,
    }
}

#[derive(Args, Debug)]
pub struct GatewayFilter {
    /// Only the gateways of this site.
    #[arg(long)]
    pub site: Option<String>,
    /// Only gateways of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
}

#[derive(Args, Debug)]
pub struct GatewayAdd {
    /// The gateway's FQDN or IP address, e.g. gw1.contoso.com.
    pub name: String,
    /// What the peer is.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// The site the gateway belongs to.
    #[arg(long)]
    pub site: String,
    /// The pool of the root trunk.
    #[arg(long, value_name = "POOL")]
    pub pool: String,
    /// The port the gateway listens on (0: none, found by DNS SRV — a gateway named by FQDN).
    #[arg(long, value_name = "PORT")]
    pub gateway_port: u16,
    /// The pool's port for this trunk.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub pool_port: u16,
    /// Transport of the root trunk.
    #[arg(long, value_enum, default_value_t = TransportArg::Tls)]
    pub transport: TransportArg,
}

#[derive(Args, Debug)]
pub struct GatewaySet {
    /// The gateway's FQDN or IP address.
    pub name: String,
    /// What the peer is.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Move the gateway to this site.
    #[arg(long)]
    pub site: Option<String>,
    #[command(flatten)]
    pub revision: RevisionArg,
}

impl Show for pb::Gateway {
    const PLURAL: &'static str = "gateways";
    const COLUMNS: &'static [&'static str] = &["NAME", "KIND", "SITE", "ROOT TRUNK", "REVISION"];

    fn json(&self) -> Result<Value, Failure> {
        let g = mediator_topology::model::Gateway::try_from(self)
            .map_err(|e| bad_reply("gateway", &self.name, e))?;
        let mut v = convert::view(&g, self.meta.as_ref());
        if let Some(obj) = v.as_object_mut()
            && !self.resolved.is_empty()
        {
            obj.insert("resolved".into(), resolution_json(&self.resolved));
        }
        Ok(v)
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            kind_name(self.kind),
            self.site.clone(),
            self.root_trunk.clone(),
            revision(self.meta.as_ref()),
        ]
    }

    fn fields(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("name".into(), self.name.clone()),
            ("kind".into(), kind_name(self.kind)),
            ("site".into(), self.site.clone()),
            ("root trunk".into(), self.root_trunk.clone()),
        ];
        f.extend(resolution_fields("resolved", &self.resolved));
        f.extend(meta_fields(self.meta.as_ref()));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Verb;

    fn parse(args: &[&str]) -> Result<Verb<Gateways>, clap::Error> {
        crate::resource::parse::<Gateways>(args)
    }

    #[test]
    fn add_builds_the_root_trunk() {
        let cmd = parse(&[
            "add",
            "gw1.contoso.com",
            "--kind",
            "pstn-gateway",
            "--site",
            "redmond",
            "--pool",
            "pool1.contoso.com",
            "--gateway-port",
            "5067",
            "--pool-port",
            "5068",
        ]);
        let Ok(Verb::Add(a)) = cmd else {
            panic!("{cmd:?}")
        };
        let r = Gateways::create_request(&a).expect("request");
        assert_eq!(r.gateway.map(|g| g.kind), Some(KindArg::PstnGateway.pb()));
        let root = r.root_trunk.unwrap_or_default();
        assert_eq!(
            (root.gateway_port, root.pool_port, root.transport),
            (5067, 5068, TransportArg::Tls.pb())
        );
        let add = |gateway_port: &str| {
            parse(&[
                "add",
                "gw1.contoso.com",
                "--kind",
                "sbc",
                "--site",
                "redmond",
                "--pool",
                "pool1.contoso.com",
                "--gateway-port",
                gateway_port,
                "--pool-port",
                "5068",
            ])
        };
        assert!(add("70000").is_err());
        // 0 means "no port: DNS SRV finds it"; the server refuses it for a gateway named by IP.
        assert!(add("0").is_ok());
    }

    #[test]
    fn set_masks() {
        let Ok(Verb::Set(a)) = parse(&["set", "gw1.contoso.com", "--site", "dublin"]) else {
            panic!()
        };
        let r = Gateways::update_request(&a, None).expect("request");
        assert_eq!(r.update_mask.unwrap_or_default().paths, ["site"]);
        let Ok(Verb::Set(a)) = parse(&["set", "gw1.contoso.com", "--revision", "2"]) else {
            panic!()
        };
        assert!(matches!(
            Gateways::update_request(&a, None),
            Err(Failure::Usage(_))
        ));
    }
}

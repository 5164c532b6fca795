//! `mediatorctl gateway …`: PSTN gateways, IP-PBXs and SBCs, each created with its root trunk.

use clap::{Args, Subcommand};
use mediator_proto::control::v1 as pb;
use mediator_topology::proto as convert;
use serde_json::Value;

use crate::output::{
    Show, bad_reply, kind_name, meta_fields, print_list, print_one, print_removed, revision,
};
use crate::parse::{KindArg, TransportArg};
use crate::{Ctx, Failure, PAGE_SIZE, RevisionArg, all_pages, usage_error};

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

#[derive(Subcommand, Debug)]
pub enum GatewayCmd {
    /// Create a gateway and its root trunk (named after the gateway).
    #[command(after_help = ADD_EXAMPLES)]
    Add(GatewayAdd),
    /// Change a gateway's kind or site; trunks are changed with `trunk set`.
    #[command(after_help = SET_EXAMPLES)]
    Set(GatewaySet),
    /// Show one gateway.
    #[command(after_help = SHOW_EXAMPLES)]
    Show {
        /// The gateway's FQDN or IP address.
        name: String,
    },
    /// List gateways.
    #[command(after_help = LIST_EXAMPLES)]
    List {
        /// Only the gateways of this site.
        #[arg(long)]
        site: Option<String>,
        /// Only gateways of this kind.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// Delete a gateway with its root trunk (delete its other trunks first).
    #[command(after_help = REMOVE_EXAMPLES)]
    Remove {
        /// The gateway's FQDN or IP address.
        name: String,
        #[command(flatten)]
        revision: RevisionArg,
    },
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
    /// The port the gateway listens on.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
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

pub fn create_request(a: &GatewayAdd) -> pb::CreateGatewayRequest {
    pb::CreateGatewayRequest {
        gateway: Some(pb::Gateway {
            name: a.name.clone(),
            kind: a.kind.pb(),
            site: a.site.clone(),
            root_trunk: String::new(),
            meta: None,
        }),
        root_trunk: Some(pb::RootTrunkSpec {
            gateway_port: u32::from(a.gateway_port),
            transport: a.transport.pb(),
            pool: a.pool.clone(),
            pool_port: u32::from(a.pool_port),
        }),
    }
}

pub fn update_request(a: &GatewaySet) -> Result<pb::UpdateGatewayRequest, Failure> {
    let mut gateway = pb::Gateway {
        name: a.name.clone(),
        ..Default::default()
    };
    let mut paths = Vec::new();
    if let Some(kind) = a.kind {
        gateway.kind = kind.pb();
        paths.push("kind".to_string());
    }
    if let Some(site) = &a.site {
        gateway.site = site.clone();
        paths.push("site".to_string());
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
        update_mask: Some(prost_types::FieldMask { paths }),
        expected_revision: a.revision.expected(),
    })
}

pub async fn run(ctx: &mut Ctx, cmd: GatewayCmd) -> Result<(), Failure> {
    let out = ctx.out;
    let client = &mut ctx.client;
    match cmd {
        GatewayCmd::Add(a) => {
            let g = client
                .create_gateway(create_request(&a))
                .await?
                .into_inner();
            print_one(out, &g)
        }
        GatewayCmd::Set(a) => {
            let g = client
                .update_gateway(update_request(&a)?)
                .await?
                .into_inner();
            print_one(out, &g)
        }
        GatewayCmd::Show { name } => {
            let g = client
                .get_gateway(pb::GetRequest { name })
                .await?
                .into_inner();
            print_one(out, &g)
        }
        GatewayCmd::List { site, kind } => {
            let site = site.unwrap_or_default();
            let kind = kind.map_or(0, KindArg::pb);
            let gateways = all_pages(async |page_token| {
                let req = pb::ListGatewaysRequest {
                    site: site.clone(),
                    kind,
                    page_size: PAGE_SIZE,
                    page_token,
                };
                let r = client.list_gateways(req).await?.into_inner();
                Ok((r.gateways, r.next_page_token))
            })
            .await?;
            print_list(out, &gateways)
        }
        GatewayCmd::Remove { name, revision } => {
            let req = pb::DeleteRequest {
                name: name.clone(),
                expected_revision: revision.expected(),
            };
            client.delete_gateway(req).await?;
            print_removed(out, "gateway", &name)
        }
    }
}

impl Show for pb::Gateway {
    const PLURAL: &'static str = "gateways";
    const COLUMNS: &'static [&'static str] = &["NAME", "KIND", "SITE", "ROOT TRUNK", "REVISION"];

    fn json(&self) -> Result<Value, Failure> {
        let g = convert::gateway_from_pb(self).map_err(|e| bad_reply("gateway", &self.name, e))?;
        Ok(convert::view(&g, self.meta.as_ref()))
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
        f.extend(meta_fields(self.meta.as_ref()));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[command(subcommand)]
        cmd: GatewayCmd,
    }

    fn parse(args: &[&str]) -> Result<GatewayCmd, clap::Error> {
        T::try_parse_from(["t"].iter().chain(args)).map(|t| t.cmd)
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
        let Ok(GatewayCmd::Add(a)) = cmd else {
            panic!("{cmd:?}")
        };
        let r = create_request(&a);
        assert_eq!(r.gateway.map(|g| g.kind), Some(KindArg::PstnGateway.pb()));
        let root = r.root_trunk.unwrap_or_default();
        assert_eq!(
            (root.gateway_port, root.pool_port, root.transport),
            (5067, 5068, TransportArg::Tls.pb())
        );
        assert!(
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
                "0",
                "--pool-port",
                "5068"
            ])
            .is_err()
        );
    }

    #[test]
    fn set_masks() {
        let Ok(GatewayCmd::Set(a)) = parse(&["set", "gw1.contoso.com", "--site", "dublin"]) else {
            panic!()
        };
        let r = update_request(&a).expect("request");
        assert_eq!(r.update_mask.unwrap_or_default().paths, ["site"]);
        let Ok(GatewayCmd::Set(a)) = parse(&["set", "gw1.contoso.com", "--revision", "2"]) else {
            panic!()
        };
        assert!(matches!(update_request(&a), Err(Failure::Usage(_))));
    }
}

//! `mediatorctl pool …`: mediation pools.

use std::net::{IpAddr, SocketAddr};

use clap::Args;
use mediator_proto::control::v1 as pb;
use mediator_topology::proto as convert;
use serde_json::Value;

use crate::output::{self, Show, bad_reply, emit_line, host_port_text, joined, revision};
use crate::parse::{self, EncryptionArg, HostPort, TransportArg};
use crate::resource::{
    Help, MoreVerbs, PAGE_SIZE, Resource, RevisionArg, VerbHelp, field_mask, rpcs,
};
use crate::{Ctx, Failure, usage_error};

pub const EXAMPLES: &str = "\
Examples:
  mediatorctl pool add pool1.contoso.com --site redmond --pool-side-listen 198.18.1.10:5061 \\
      --gateway-side-address 198.18.2.10 --next-hop fe1.contoso.com:5061
  mediatorctl pool set pool1.contoso.com --dataplane 198.18.1.20:7400 --dataplane 198.18.1.21:7400
  mediatorctl pool list --site redmond
  mediatorctl pool drain pool1.contoso.com --wait 600
  mediatorctl pool resume pool1.contoso.com
  mediatorctl pool remove pool1.contoso.com";

const DRAIN_EXAMPLES: &str = "\
Examples:
  mediatorctl pool drain pool1.contoso.com
  mediatorctl pool drain pool1.contoso.com --wait 600   # until its last call ends (or 600 s)";

const RESUME_EXAMPLES: &str = "\
Examples:
  mediatorctl pool resume pool1.contoso.com";

const ADD_EXAMPLES: &str = "\
Examples:
  mediatorctl pool add pool1.contoso.com --site redmond --pool-side-listen 198.18.1.10:5061 \\
      --gateway-side-address 198.18.2.10 --next-hop fe1.contoso.com:5061 \\
      --dataplane 198.18.1.20:7400 --dataplane 198.18.1.21:7400
  mediatorctl pool add pool2.contoso.com --site dublin --pool-side-listen 198.18.5.10:5068 \\
      --gateway-side-address 198.18.6.10 --next-hop 198.18.5.2:5068 --next-hop-transport tcp";

const SET_EXAMPLES: &str = "\
Examples:
  mediatorctl pool set pool1.contoso.com --next-hop fe2.contoso.com:5061
  mediatorctl pool set pool1.contoso.com --next-hop-transport tcp --revision 4
  mediatorctl pool set pool1.contoso.com --dataplane 198.18.1.20:7400 --dataplane 198.18.1.22:7400";

const SHOW_EXAMPLES: &str = "\
Examples:
  mediatorctl pool show pool1.contoso.com
  mediatorctl --output json pool show pool1.contoso.com";

const LIST_EXAMPLES: &str = "\
Examples:
  mediatorctl pool list
  mediatorctl pool list --site redmond --output json";

const REMOVE_EXAMPLES: &str = "\
Examples:
  mediatorctl pool remove pool2.contoso.com
  mediatorctl pool remove pool2.contoso.com --revision 7";

/// `mediatorctl pool …`.
#[derive(Debug)]
pub struct Pools;

impl Resource for Pools {
    const NOUN: &'static str = "pool";
    const HELP: Help = Help {
        add: VerbHelp::new("Create a pool", ADD_EXAMPLES),
        set: VerbHelp::new(
            "Change some of a pool's fields; the others stay as they are",
            SET_EXAMPLES,
        ),
        show: VerbHelp::new("Show one pool", SHOW_EXAMPLES),
        list: VerbHelp::new("List pools", LIST_EXAMPLES),
        remove: VerbHelp::new(
            "Delete a pool (its trunks must be moved or deleted first)",
            REMOVE_EXAMPLES,
        ),
        key: "The pool's FQDN",
        remove_key: "The pool's FQDN",
    };

    type Item = pb::Pool;
    type Add = PoolAdd;
    type Set = PoolSet;
    type Filter = PoolFilter;
    type More = PoolVerbs;
    type CreateRequest = pb::CreatePoolRequest;
    type UpdateRequest = pb::UpdatePoolRequest;
    type ListRequest = pb::ListPoolsRequest;

    fn create_request(a: &PoolAdd) -> Result<pb::CreatePoolRequest, Failure> {
        Ok(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                name: a.name.clone(),
                site: a.site.clone(),
                dataplanes: a.dataplanes.clone(),
                pool_side_listen: a.pool_side_listen.to_string(),
                gateway_side_address: a.gateway_side_address.to_string(),
                next_hop: Some(pb::HostPort {
                    host: a.next_hop.host.clone(),
                    port: u32::from(a.next_hop.port),
                    transport: a.next_hop_transport.pb(),
                }),
                media_encryption: a.media_encryption.pb(),
                draining: false,
                meta: None,
                next_hop_resolved: Vec::new(),
            }),
        })
    }

    /// The next hop is one field on the wire: changing only its host:port or only its
    /// transport needs the other half from the server.
    fn needs_current(a: &PoolSet) -> Option<&str> {
        (a.next_hop.is_some() != a.next_hop_transport.is_some()).then_some(a.name.as_str())
    }

    /// `current`'s revision guards the write unless --revision was given.
    fn update_request(
        a: &PoolSet,
        current: Option<&pb::Pool>,
    ) -> Result<pb::UpdatePoolRequest, Failure> {
        a.check()?;
        let mut pool = pb::Pool {
            name: a.name.clone(),
            ..Default::default()
        };
        let mut paths = Vec::new();
        if let Some(site) = &a.site {
            pool.site = site.clone();
            paths.push("site");
        }
        if !a.dataplanes.is_empty() {
            pool.dataplanes = a.dataplanes.clone();
            paths.push("dataplanes");
        }
        if let Some(e) = a.media_encryption {
            pool.media_encryption = e.pb();
            paths.push("media_encryption");
        }
        if let Some(listen) = a.pool_side_listen {
            pool.pool_side_listen = listen.to_string();
            paths.push("pool_side_listen");
        }
        if let Some(addr) = a.gateway_side_address {
            pool.gateway_side_address = addr.to_string();
            paths.push("gateway_side_address");
        }
        if a.next_hop.is_some() || a.next_hop_transport.is_some() {
            let old = current.and_then(|p| p.next_hop.as_ref());
            let (host, port) = match (&a.next_hop, old) {
                (Some(h), _) => (h.host.clone(), u32::from(h.port)),
                (None, Some(o)) => (o.host.clone(), o.port),
                (None, None) => {
                    return Err(Failure::BadReply(format!(
                        "pool {} has no next hop to keep; give --next-hop HOST:PORT as well",
                        a.name
                    )));
                }
            };
            let transport = match (a.next_hop_transport, old) {
                (Some(t), _) => t.pb(),
                (None, Some(o)) => o.transport,
                (None, None) => TransportArg::Tls.pb(),
            };
            pool.next_hop = Some(pb::HostPort {
                host,
                port,
                transport,
            });
            paths.push("next_hop");
        }
        let expected_revision = a
            .revision
            .revision
            .or_else(|| current.and_then(|p| p.meta.as_ref()).map(|m| m.revision))
            .unwrap_or(0);
        Ok(pb::UpdatePoolRequest {
            pool: Some(pool),
            update_mask: field_mask(&paths),
            expected_revision,
        })
    }

    fn list_request(f: &PoolFilter, page_token: String) -> pb::ListPoolsRequest {
        pb::ListPoolsRequest {
            site: f.site.clone().unwrap_or_default(),
            page_size: PAGE_SIZE,
            page_token,
        }
    }

    rpcs! {
        create: create_pool,
        get: get_pool,
        update: update_pool,
        delete: delete_pool,
        list: list_pools => pools,
    }
}

/// `pool drain` and `pool resume`.
#[derive(clap::Subcommand, Debug)]
pub enum PoolVerbs {
    /// Stop new calls on the pool (503 with Retry-After, so Front Ends and gateways fail over;
    /// OPTIONS answered the same); calls in progress continue.
    #[command(after_help = DRAIN_EXAMPLES)]
    Drain(DrainArgs),
    /// Take new calls on a drained pool again.
    #[command(after_help = RESUME_EXAMPLES)]
    Resume {
        /// The pool's FQDN.
        name: String,
        #[command(flatten)]
        revision: RevisionArg,
    },
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// The pool's FQDN.
    pub name: String,
    /// Then wait until no call is left on the pool, at most this many seconds (exit 1 if calls
    /// remain), printing the count as it falls.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub wait: Option<u64>,
    #[command(flatten)]
    pub revision: RevisionArg,
}

/// The update that sets or clears `name`'s draining flag (nothing else).
pub fn draining_request(
    name: &str,
    draining: bool,
    revision: &RevisionArg,
) -> pb::UpdatePoolRequest {
    pb::UpdatePoolRequest {
        pool: Some(pb::Pool {
            name: name.to_string(),
            draining,
            ..Default::default()
        }),
        update_mask: field_mask(&["draining"]),
        expected_revision: revision.expected(),
    }
}

impl MoreVerbs for PoolVerbs {
    async fn run(self, ctx: &mut Ctx) -> Result<(), Failure> {
        match self {
            PoolVerbs::Drain(a) => {
                let p = ctx
                    .client
                    .update_pool(draining_request(&a.name, true, &a.revision))
                    .await?
                    .into_inner();
                output::print_one(ctx.out, &p)?;
                match a.wait {
                    Some(secs) => wait_drained(ctx, &a.name, secs).await,
                    None => Ok(()),
                }
            }
            PoolVerbs::Resume { name, revision } => {
                let p = ctx
                    .client
                    .update_pool(draining_request(&name, false, &revision))
                    .await?
                    .into_inner();
                output::print_one(ctx.out, &p)
            }
        }
    }
}

/// Waits until `pool` has no call in progress, at most `secs`.
async fn wait_drained(ctx: &mut Ctx, pool: &str, secs: u64) -> Result<(), Failure> {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut said = None;
    loop {
        let calls = ctx
            .calls
            .list_calls(pb::ListCallsRequest {})
            .await?
            .into_inner()
            .calls;
        let left = calls.iter().filter(|c| c.pool == pool).count();
        if left == 0 {
            return emit_line(&format!("pool {pool} drained: no call in progress"));
        }
        if said != Some(left) {
            if ctx.out == crate::output::Output::Table {
                emit_line(&format!("{left} calls in progress on {pool}"))?;
            }
            said = Some(left);
        }
        if tokio::time::Instant::now() >= until {
            return Err(Failure::Unfinished(format!(
                "{left} calls still in progress on {pool} after {secs} s (it stays draining)"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[derive(Args, Debug)]
pub struct PoolFilter {
    /// Only the pools of this site.
    #[arg(long)]
    pub site: Option<String>,
}

#[derive(Args, Debug)]
pub struct PoolAdd {
    /// The pool's FQDN (lower-case), e.g. pool1.contoso.com.
    pub name: String,
    /// The site the pool belongs to.
    #[arg(long)]
    pub site: String,
    /// Where the pool listens for SIP from its Front End pool.
    #[arg(long, value_name = "IP:PORT", value_parser = parse::socket_addr)]
    pub pool_side_listen: SocketAddr,
    /// The address the pool listens on toward gateways (trunks give the ports).
    #[arg(long, value_name = "IP", value_parser = parse::ip_addr)]
    pub gateway_side_address: IpAddr,
    /// The Front End pool that calls from gateways are sent to.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse::sip_peer)]
    pub next_hop: HostPort,
    /// Transport toward the next hop.
    #[arg(long, value_enum, value_name = "TRANSPORT", default_value_t = TransportArg::Tls)]
    pub next_hop_transport: TransportArg,
    /// gRPC address of a mediator-dataplane relaying the pool's media (repeat for several).
    #[arg(long = "dataplane", value_name = "HOST:PORT", value_parser = parse::dataplane)]
    pub dataplanes: Vec<String>,
    /// SRTP toward the Front End pool (Lync's EncryptionLevel).
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = EncryptionArg::Required)]
    pub media_encryption: EncryptionArg,
}

#[derive(Args, Debug, Default)]
pub struct PoolSet {
    /// The pool's FQDN.
    pub name: String,
    /// Move the pool to this site.
    #[arg(long)]
    pub site: Option<String>,
    /// Where the pool listens for SIP from its Front End pool.
    #[arg(long, value_name = "IP:PORT", value_parser = parse::socket_addr)]
    pub pool_side_listen: Option<SocketAddr>,
    /// The address the pool listens on toward gateways.
    #[arg(long, value_name = "IP", value_parser = parse::ip_addr)]
    pub gateway_side_address: Option<IpAddr>,
    /// The Front End pool's host and port (the transport stays unless --next-hop-transport).
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse::sip_peer)]
    pub next_hop: Option<HostPort>,
    /// Transport toward the next hop (the host and port stay unless --next-hop).
    #[arg(long, value_enum, value_name = "TRANSPORT")]
    pub next_hop_transport: Option<TransportArg>,
    /// Dataplane gRPC address; the ones given replace the whole list (repeat for several).
    #[arg(long = "dataplane", value_name = "HOST:PORT", value_parser = parse::dataplane)]
    pub dataplanes: Vec<String>,
    /// SRTP toward the Front End pool (Lync's EncryptionLevel).
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub media_encryption: Option<EncryptionArg>,
    #[command(flatten)]
    pub revision: RevisionArg,
}

impl PoolSet {
    /// Refuses a `set` that changes nothing, before anything is sent.
    pub fn check(&self) -> Result<(), Failure> {
        let given = self.site.is_some()
            || self.pool_side_listen.is_some()
            || self.gateway_side_address.is_some()
            || self.next_hop.is_some()
            || self.next_hop_transport.is_some()
            || self.media_encryption.is_some()
            || !self.dataplanes.is_empty();
        if given {
            return Ok(());
        }
        Err(usage_error(format!(
            "nothing to change for pool {}: give at least one of --site, --pool-side-listen, \
             --gateway-side-address, --next-hop, --next-hop-transport, --dataplane, --media-encryption",
            self.name
        )))
    }
}

impl Show for pb::Pool {
    const PLURAL: &'static str = "pools";
    const COLUMNS: &'static [&'static str] = &[
        "NAME",
        "SITE",
        "POOL-SIDE LISTEN",
        "GATEWAY-SIDE ADDRESS",
        "NEXT HOP",
        "ENCRYPTION",
        "DATAPLANES",
        "DRAINING",
        "REVISION",
    ];

    fn json(&self) -> Result<Value, Failure> {
        let pool = mediator_topology::model::Pool::try_from(self)
            .map_err(|e| bad_reply("pool", &self.name, e))?;
        let mut v = convert::view(&pool, self.meta.as_ref());
        if let Some(obj) = v.as_object_mut() {
            obj.insert("draining".into(), Value::Bool(self.draining));
        }
        if let Some(obj) = v.as_object_mut()
            && !self.next_hop_resolved.is_empty()
        {
            obj.insert(
                "next_hop_resolved".into(),
                output::resolution_json(&self.next_hop_resolved),
            );
        }
        Ok(v)
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.site.clone(),
            self.pool_side_listen.clone(),
            self.gateway_side_address.clone(),
            host_port_text(self.next_hop.as_ref()),
            encryption_text(self.media_encryption).to_string(),
            joined(&self.dataplanes),
            yes_no(self.draining).into(),
            revision(self.meta.as_ref()),
        ]
    }

    fn fields(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("name".into(), self.name.clone()),
            ("site".into(), self.site.clone()),
            ("pool-side listen".into(), self.pool_side_listen.clone()),
            (
                "gateway-side address".into(),
                self.gateway_side_address.clone(),
            ),
            ("next hop".into(), host_port_text(self.next_hop.as_ref())),
            (
                "media encryption".into(),
                encryption_text(self.media_encryption).to_string(),
            ),
            ("draining".into(), yes_no(self.draining).into()),
        ];
        f.extend(output::resolution_fields(
            "next hop resolved",
            &self.next_hop_resolved,
        ));
        if self.dataplanes.is_empty() {
            f.push(("dataplanes".into(), "-".into()));
        }
        for (i, d) in self.dataplanes.iter().enumerate() {
            let key = if i == 0 { "dataplanes" } else { "" };
            f.push((key.into(), d.clone()));
        }
        f.extend(output::meta_fields(self.meta.as_ref()));
        f
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The level's name as the topology document spells it.
fn encryption_text(level: i32) -> &'static str {
    convert::media_encryption_from_pb("media_encryption", level)
        .map(|m| m.name())
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Verb, parse};

    fn set(args: &[&str]) -> PoolSet {
        match parse::<Pools>(&[&["set", "pool1.contoso.com"], args].concat()) {
            Ok(Verb::Set(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    fn paths(r: &pb::UpdatePoolRequest) -> Vec<String> {
        r.update_mask.clone().unwrap_or_default().paths
    }

    #[test]
    fn mask_names_exactly_the_fields_given() {
        let a = set(&["--site", "dublin", "--gateway-side-address", "198.18.6.10"]);
        assert!(Pools::needs_current(&a).is_none());
        let r = Pools::update_request(&a, None).expect("request");
        assert_eq!(paths(&r), ["site", "gateway_side_address"]);
        assert_eq!(r.expected_revision, 0);
        let p = r.pool.unwrap_or_default();
        assert_eq!(p.site, "dublin");
        assert_eq!(p.name, "pool1.contoso.com");
    }

    #[test]
    fn half_a_next_hop_is_completed_from_the_current_pool() {
        let current = pb::Pool {
            name: "pool1.contoso.com".into(),
            next_hop: Some(pb::HostPort {
                host: "fe1.contoso.com".into(),
                port: 5061,
                transport: TransportArg::Tls.pb(),
            }),
            meta: Some(pb::Meta {
                revision: 9,
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = set(&["--next-hop-transport", "tcp"]);
        assert_eq!(Pools::needs_current(&a), Some("pool1.contoso.com"));
        let r = Pools::update_request(&a, Some(&current)).expect("request");
        assert_eq!(paths(&r), ["next_hop"]);
        assert_eq!(r.expected_revision, 9);
        assert_eq!(
            r.pool.and_then(|p| p.next_hop),
            Some(pb::HostPort {
                host: "fe1.contoso.com".into(),
                port: 5061,
                transport: TransportArg::Tcp.pb(),
            })
        );

        let a = set(&["--next-hop", "fe2.contoso.com:5062", "--revision", "8"]);
        let r = Pools::update_request(&a, Some(&current)).expect("request");
        assert_eq!(r.expected_revision, 8);
        let hop = r.pool.and_then(|p| p.next_hop).unwrap_or_default();
        assert_eq!(
            (hop.host.as_str(), hop.port, hop.transport),
            ("fe2.contoso.com", 5062, TransportArg::Tls.pb())
        );

        let a = set(&[
            "--next-hop",
            "fe2.contoso.com:5062",
            "--next-hop-transport",
            "udp",
        ]);
        assert!(Pools::needs_current(&a).is_none());
        let hop = Pools::update_request(&a, None)
            .expect("request")
            .pool
            .and_then(|p| p.next_hop)
            .unwrap_or_default();
        assert_eq!(hop.transport, TransportArg::Udp.pb());
    }

    #[test]
    fn nothing_to_set_is_a_usage_error() {
        assert!(matches!(
            Pools::update_request(&set(&[]), None),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            Pools::update_request(&set(&["--revision", "3"]), None),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn json_is_the_document_shape_with_revision() {
        let p = pb::Pool {
            name: "pool1.contoso.com".into(),
            site: "redmond".into(),
            dataplanes: vec!["198.18.1.20:7400".into()],
            pool_side_listen: "198.18.1.10:5061".into(),
            gateway_side_address: "198.18.2.10".into(),
            next_hop: Some(pb::HostPort {
                host: "fe1.contoso.com".into(),
                port: 5061,
                transport: TransportArg::Tls.pb(),
            }),
            media_encryption: EncryptionArg::Supported.pb(),
            draining: true,
            meta: Some(pb::Meta {
                revision: 3,
                ..Default::default()
            }),
            next_hop_resolved: Vec::new(),
        };
        let v = p.json().expect("json");
        assert_eq!(v["next_hop"]["transport"], "tls");
        assert_eq!(v["revision"], 3);
        assert_eq!(p.row()[4], "fe1.contoso.com:5061 (tls)");
        assert_eq!(v["media_encryption"], "supported");
        assert_eq!(p.row()[5], "supported");
        assert_eq!(v["draining"], true);
        assert_eq!(p.row()[7], "yes");
        assert!(p.fields().contains(&("draining".into(), "yes".into())));
        let bad = pb::Pool {
            pool_side_listen: "nonsense".into(),
            ..p
        };
        assert!(matches!(bad.json(), Err(Failure::BadReply(_))));
    }

    #[test]
    fn drain_and_resume_change_only_the_draining_flag() {
        let drain = match parse::<Pools>(&["drain", "pool1.contoso.com", "--wait", "60"]) {
            Ok(Verb::More(PoolVerbs::Drain(a))) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(drain.wait, Some(60));
        let r = draining_request(&drain.name, true, &drain.revision);
        assert_eq!(paths(&r), ["draining"]);
        assert_eq!(r.expected_revision, 0);
        let p = r.pool.unwrap_or_default();
        assert!(p.draining && p.name == "pool1.contoso.com");
        match parse::<Pools>(&["resume", "pool1.contoso.com", "--revision", "4"]) {
            Ok(Verb::More(PoolVerbs::Resume { name, revision })) => {
                let r = draining_request(&name, false, &revision);
                assert_eq!(r.expected_revision, 4);
                assert!(!r.pool.unwrap_or_default().draining);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse::<Pools>(&["drain", "pool1.contoso.com", "--wait", "0"]).is_err());
    }
}

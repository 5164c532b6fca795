//! `mediatorctl trunk …`: trunks (a pool port paired with a gateway port) and moving them between
//! pools.

use clap::{ArgGroup, Args, Subcommand};
use mediator_proto::control::v1 as pb;
use mediator_topology::{model, proto as convert};
use serde_json::Value;

use crate::output::{
    Output, Show, bad_reply, emit_line, joined, meta_fields, print_json, print_list, print_one,
    revision, transport_name, when,
};
use crate::parse::TransportArg;
use crate::resource::{
    Help, MoreVerbs, PAGE_SIZE, Resource, RevisionArg, VerbHelp, field_mask, rpcs,
};
use crate::{Ctx, Failure, usage_error};

pub const EXAMPLES: &str = "\
Examples:
  mediatorctl trunk add gw1-5068 --gateway gw1.contoso.com --gateway-port 5068 \\
      --pool pool1.contoso.com --pool-port 5068
  mediatorctl trunk list --pool pool1.contoso.com
  mediatorctl trunk move --from-pool pool1.contoso.com --to-pool pool2.contoso.com
  mediatorctl trunk moves";

const ADD_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk add gw1-5068 --gateway gw1.contoso.com --gateway-port 5068 \\
      --pool pool1.contoso.com --pool-port 5068
  mediatorctl trunk add pbx1-udp --gateway 198.18.2.50 --gateway-port 5060 \\
      --pool pool1.contoso.com --pool-port 5070 --transport udp";

const SET_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk set gw1-5068 --pool-port 5069
  mediatorctl trunk set gw1.contoso.com --transport tcp --gateway-port 5060 --revision 5
  mediatorctl trunk move --trunk gw1-5068 --to-pool pool2.contoso.com    # re-home, calls continue";

const SHOW_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk show gw1-5068
  mediatorctl --output json trunk show gw1.contoso.com";

const LIST_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk list
  mediatorctl trunk list --gateway gw1.contoso.com
  mediatorctl trunk list --pool pool1.contoso.com --output json";

const REMOVE_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk remove gw1-5068
  mediatorctl trunk remove gw1-5068 --revision 4
  mediatorctl gateway remove gw1.contoso.com    # a root trunk goes with its gateway";

const MOVE_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk move --trunk gw1-5068 --to-pool pool2.contoso.com
  mediatorctl trunk move --from-pool pool1.contoso.com --to-pool pool2.contoso.com
  mediatorctl trunk move --trunk gw1.contoso.com --to-pool pool2.contoso.com --pool-port 5080";

const EVENTS_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk events                      # until interrupted
  mediatorctl trunk events --count 1 --for 300  # the next change, waiting at most 5 minutes
  mediatorctl --output json trunk events";

const MOVES_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk moves
  mediatorctl --output json trunk moves";

/// `mediatorctl trunk …`.
#[derive(Debug)]
pub struct Trunks;

impl Resource for Trunks {
    const NOUN: &'static str = "trunk";
    const HELP: Help = Help {
        add: VerbHelp::new(
            "Create a trunk between a pool port and a gateway port",
            ADD_EXAMPLES,
        ),
        set: VerbHelp::new(
            "Change some of a trunk's fields; the others stay as they are",
            SET_EXAMPLES,
        ),
        show: VerbHelp::new("Show one trunk", SHOW_EXAMPLES),
        list: VerbHelp::new("List trunks", LIST_EXAMPLES),
        remove: VerbHelp::new(
            "Delete a trunk (not a root trunk: remove its gateway instead)",
            REMOVE_EXAMPLES,
        ),
        key: "The trunk's name",
        remove_key: "The trunk's name",
    };

    type Item = pb::Trunk;
    type Add = TrunkAdd;
    type Set = TrunkSet;
    type Filter = TrunkFilter;
    type More = TrunkVerbs;
    type CreateRequest = pb::CreateTrunkRequest;
    type UpdateRequest = pb::UpdateTrunkRequest;
    type ListRequest = pb::ListTrunksRequest;

    fn create_request(a: &TrunkAdd) -> Result<pb::CreateTrunkRequest, Failure> {
        Ok(pb::CreateTrunkRequest {
            trunk: Some(pb::Trunk {
                name: a.name.clone(),
                gateway: a.gateway.clone(),
                gateway_port: u32::from(a.gateway_port),
                transport: a.transport.pb(),
                pool: a.pool.clone(),
                pool_port: u32::from(a.pool_port),
                root: false,
                health: None,
                meta: None,
            }),
        })
    }

    fn update_request(
        a: &TrunkSet,
        _current: Option<&pb::Trunk>,
    ) -> Result<pb::UpdateTrunkRequest, Failure> {
        let mut trunk = pb::Trunk {
            name: a.name.clone(),
            ..Default::default()
        };
        let mut paths = Vec::new();
        if let Some(p) = a.gateway_port {
            trunk.gateway_port = u32::from(p);
            paths.push("gateway_port");
        }
        if let Some(t) = a.transport {
            trunk.transport = t.pb();
            paths.push("transport");
        }
        if let Some(p) = &a.pool {
            trunk.pool = p.clone();
            paths.push("pool");
        }
        if let Some(p) = a.pool_port {
            trunk.pool_port = u32::from(p);
            paths.push("pool_port");
        }
        if paths.is_empty() {
            return Err(usage_error(format!(
                "nothing to change for trunk {}: give at least one of --gateway-port, \
                 --transport, --pool, --pool-port",
                a.name
            )));
        }
        Ok(pb::UpdateTrunkRequest {
            trunk: Some(trunk),
            update_mask: field_mask(&paths),
            expected_revision: a.revision.expected(),
        })
    }

    fn list_request(f: &TrunkFilter, page_token: String) -> pb::ListTrunksRequest {
        pb::ListTrunksRequest {
            gateway: f.gateway.clone().unwrap_or_default(),
            pool: f.pool.clone().unwrap_or_default(),
            page_size: PAGE_SIZE,
            page_token,
        }
    }

    rpcs! {
        create: create_trunk,
        get: get_trunk,
        update: update_trunk,
        delete: delete_trunk,
        list: list_trunks => trunks,
    }
}

/// Moving trunks between pools, after the five verbs.
#[derive(Subcommand, Debug)]
pub enum TrunkVerbs {
    /// Re-home one trunk, or every trunk of a pool, to another pool. Calls in progress stay;
    /// new calls use the new pool.
    #[command(after_help = MOVE_EXAMPLES)]
    Move(TrunkMoveArgs),
    /// List the trunk moves made so far.
    #[command(after_help = MOVES_EXAMPLES)]
    Moves,
    /// Print trunks going up or down (OPTIONS probes) as it happens.
    #[command(after_help = EVENTS_EXAMPLES)]
    Events(TrunkEventsArgs),
}

#[derive(Args, Debug)]
pub struct TrunkEventsArgs {
    /// Stop after this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long = "for", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub for_secs: Option<u64>,
}

/// Prints trunk state changes until `a`'s bounds (or the server) end the stream.
async fn events(ctx: &mut Ctx, a: &TrunkEventsArgs) -> Result<(), Failure> {
    let mut stream = ctx
        .calls
        .watch_trunk_health(pb::WatchTrunkHealthRequest {})
        .await?
        .into_inner();
    let deadline = a
        .for_secs
        .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs(s));
    let mut seen = 0u64;
    while a.count.is_none_or(|n| seen < n) {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, stream.message()).await {
                Ok(m) => m?,
                Err(_) => return Ok(()),
            },
            None => stream.message().await?,
        };
        let Some(e) = next else {
            return Ok(());
        };
        seen += 1;
        match ctx.out {
            Output::Json => print_json(&serde_json::json!({
                "trunk": e.trunk,
                "gateway": e.gateway,
                "state": e.state,
                "why": e.why,
                "unix_ms": e.unix_ms,
                "missed": e.missed,
            }))?,
            Output::Table => {
                if e.missed > 0 {
                    emit_line(&format!("({} events missed: reading too slowly)", e.missed))?;
                }
                emit_line(&format!(
                    "{}  trunk {} ({}) {}: {}",
                    when(e.unix_ms),
                    e.trunk,
                    e.gateway,
                    e.state,
                    e.why
                ))?;
            }
        }
    }
    Ok(())
}

impl MoreVerbs for TrunkVerbs {
    async fn run(self, ctx: &mut Ctx) -> Result<(), Failure> {
        let client = &mut ctx.client;
        match self {
            TrunkVerbs::Move(a) => {
                let r = client.move_trunks(move_request(&a)).await?.into_inner();
                match r.r#move {
                    Some(m) => print_one(ctx.out, &m),
                    None => Err(Failure::BadReply(
                        "the server reported the move without describing it; check \
                         `mediatorctl trunk moves`"
                            .into(),
                    )),
                }
            }
            TrunkVerbs::Events(a) => events(ctx, &a).await,
            TrunkVerbs::Moves => {
                let r = client
                    .list_trunk_moves(pb::ListTrunkMovesRequest {})
                    .await?
                    .into_inner();
                print_list(ctx.out, &r.moves)
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct TrunkFilter {
    /// Only the trunks of this gateway.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Only the trunks of this pool.
    #[arg(long)]
    pub pool: Option<String>,
}

#[derive(Args, Debug)]
pub struct TrunkAdd {
    /// The trunk's name, e.g. gw1-5068.
    pub name: String,
    /// The gateway at the far end.
    #[arg(long)]
    pub gateway: String,
    /// The port the gateway listens on (0: none, found by DNS SRV — a gateway named by FQDN).
    #[arg(long, value_name = "PORT")]
    pub gateway_port: u16,
    /// The pool at this end.
    #[arg(long)]
    pub pool: String,
    /// The pool's port for this trunk.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub pool_port: u16,
    /// SIP transport toward the gateway.
    #[arg(long, value_enum, default_value_t = TransportArg::Tls)]
    pub transport: TransportArg,
}

#[derive(Args, Debug)]
pub struct TrunkSet {
    /// The trunk's name.
    pub name: String,
    /// The port the gateway listens on (0: none, found by DNS SRV — a gateway named by FQDN).
    #[arg(long, value_name = "PORT")]
    pub gateway_port: Option<u16>,
    /// SIP transport toward the gateway.
    #[arg(long, value_enum)]
    pub transport: Option<TransportArg>,
    /// The pool at this end.
    #[arg(long)]
    pub pool: Option<String>,
    /// The pool's port for this trunk.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub pool_port: Option<u16>,
    #[command(flatten)]
    pub revision: RevisionArg,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("what").required(true).args(["trunk", "from_pool"])))]
pub struct TrunkMoveArgs {
    /// The trunk to move.
    #[arg(long)]
    pub trunk: Option<String>,
    /// Move every trunk of this pool.
    #[arg(long, value_name = "POOL")]
    pub from_pool: Option<String>,
    /// The pool to move to.
    #[arg(long, value_name = "POOL")]
    pub to_pool: String,
    /// The trunks' port on the new pool (default: each keeps its port).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub pool_port: Option<u16>,
}

pub fn move_request(a: &TrunkMoveArgs) -> pb::MoveTrunksRequest {
    pb::MoveTrunksRequest {
        trunk: a.trunk.clone().unwrap_or_default(),
        from_pool: a.from_pool.clone().unwrap_or_default(),
        to_pool: a.to_pool.clone(),
        pool_port: a.pool_port.map_or(0, u32::from),
    }
}

impl Show for pb::Trunk {
    const PLURAL: &'static str = "trunks";
    const COLUMNS: &'static [&'static str] = &[
        "NAME",
        "GATEWAY",
        "GATEWAY PORT",
        "TRANSPORT",
        "POOL",
        "POOL PORT",
        "ROOT",
        "HEALTH",
        "REVISION",
    ];

    fn json(&self) -> Result<Value, Failure> {
        let t = mediator_topology::model::Trunk::try_from(self)
            .map_err(|e| bad_reply("trunk", &self.name, e))?;
        let mut v = convert::view(&t, self.meta.as_ref());
        if let Some(obj) = v.as_object_mut() {
            obj.insert("root".into(), self.root.into());
            if let Some(h) = &self.health {
                obj.insert(
                    "health".into(),
                    serde_json::json!({
                        "state": h.state,
                        "since_unix_ms": h.since_unix_ms,
                        "last_status": h.last_status,
                        "last_unix_ms": h.last_unix_ms,
                        "rtt_ms": h.rtt_ms,
                        "failures": h.failures,
                        "probes": h.probes,
                        "downs": h.downs,
                        "peer": h.peer,
                        "interval_secs": h.interval_secs,
                        "threshold": h.threshold,
                        "addresses_down": h.addresses_down,
                    }),
                );
            }
        }
        Ok(v)
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.gateway.clone(),
            self.gateway_port.to_string(),
            transport_name(self.transport),
            self.pool.clone(),
            self.pool_port.to_string(),
            if self.root { "yes" } else { "no" }.into(),
            self.health
                .as_ref()
                .map_or_else(|| "-".to_string(), |h| h.state.clone()),
            revision(self.meta.as_ref()),
        ]
    }

    fn fields(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("name".into(), self.name.clone()),
            ("gateway".into(), self.gateway.clone()),
            ("gateway port".into(), self.gateway_port.to_string()),
            ("transport".into(), transport_name(self.transport)),
            ("pool".into(), self.pool.clone()),
            ("pool port".into(), self.pool_port.to_string()),
            ("root".into(), if self.root { "yes" } else { "no" }.into()),
        ];
        f.extend(health_fields(self.health.as_ref()));
        f.extend(meta_fields(self.meta.as_ref()));
        f
    }
}

impl Show for pb::TrunkMove {
    const PLURAL: &'static str = "trunk moves";
    const COLUMNS: &'static [&'static str] = &["ID", "WHEN", "FROM POOL", "TO POOL", "TRUNKS"];

    fn json(&self) -> Result<Value, Failure> {
        let m = model::TrunkMove {
            id: self.id,
            unix_ms: self.unix_ms,
            from_pool: self.from_pool.clone(),
            to_pool: self.to_pool.clone(),
            trunks: self.trunks.clone(),
        };
        serde_json::to_value(&m).map_err(|e| Failure::BadReply(e.to_string()))
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            when(self.unix_ms),
            self.from_pool.clone(),
            self.to_pool.clone(),
            joined(&self.trunks),
        ]
    }

    fn fields(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("move".into(), self.id.to_string()),
            ("when".into(), when(self.unix_ms)),
            ("from pool".into(), self.from_pool.clone()),
            ("to pool".into(), self.to_pool.clone()),
        ];
        if self.trunks.is_empty() {
            f.push(("trunks".into(), "- (the pool had none)".into()));
        }
        for (i, t) in self.trunks.iter().enumerate() {
            f.push((if i == 0 { "trunks" } else { "" }.into(), t.clone()));
        }
        f
    }
}

/// A trunk's health as `show` prints it.
fn health_fields(h: Option<&pb::TrunkHealth>) -> Vec<(String, String)> {
    let Some(h) = h else {
        return vec![(
            "health".into(),
            "not probed (options_interval_secs 0, or an FQDN not resolved yet)".into(),
        )];
    };
    let since = if h.since_unix_ms == 0 {
        String::new()
    } else {
        format!(" since {}", when(h.since_unix_ms))
    };
    let last = match (h.last_unix_ms, h.last_status) {
        (0, _) => "none yet".to_string(),
        (at, 0) => format!("unanswered ({})", when(at)),
        (at, s) => format!("{s} in {:.1} ms ({})", h.rtt_ms, when(at)),
    };
    let mut fields = vec![
        ("health".into(), format!("{}{since}", h.state)),
        ("last probe".into(), last),
        (
            "probes".into(),
            format!(
                "{} sent to {} every {} s, {} failed in a row (down after {}), down {} times",
                h.probes, h.peer, h.interval_secs, h.failures, h.threshold, h.downs
            ),
        ),
    ];
    if !h.addresses_down.is_empty() {
        fields.push((
            "addresses down".into(),
            format!("{} (calls skip them)", h.addresses_down.join(", ")),
        ));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Verb;

    fn parse(args: &[&str]) -> Result<Verb<Trunks>, clap::Error> {
        crate::resource::parse::<Trunks>(args)
    }

    #[test]
    fn set_masks_follow_the_flags() {
        let Ok(Verb::Set(a)) = parse(&[
            "set",
            "gw1-5068",
            "--pool-port",
            "5069",
            "--transport",
            "tcp",
        ]) else {
            panic!()
        };
        let r = Trunks::update_request(&a, None).expect("request");
        assert_eq!(
            r.update_mask.unwrap_or_default().paths,
            ["transport", "pool_port"]
        );
        let t = r.trunk.unwrap_or_default();
        assert_eq!((t.pool_port, t.transport), (5069, TransportArg::Tcp.pb()));
        let Ok(Verb::Set(a)) = parse(&["set", "gw1-5068"]) else {
            panic!()
        };
        assert!(matches!(
            Trunks::update_request(&a, None),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn move_needs_exactly_one_source() {
        assert!(parse(&["move", "--to-pool", "pool2.contoso.com"]).is_err());
        assert!(
            parse(&[
                "move",
                "--trunk",
                "gw1-5068",
                "--from-pool",
                "pool1.contoso.com",
                "--to-pool",
                "pool2.contoso.com"
            ])
            .is_err()
        );
        let Ok(Verb::More(TrunkVerbs::Move(a))) = parse(&[
            "move",
            "--from-pool",
            "pool1.contoso.com",
            "--to-pool",
            "pool2.contoso.com",
        ]) else {
            panic!()
        };
        let r = move_request(&a);
        assert_eq!(
            (r.trunk.as_str(), r.from_pool.as_str(), r.pool_port),
            ("", "pool1.contoso.com", 0)
        );
    }

    #[test]
    fn trunk_json_has_root() {
        let t = pb::Trunk {
            name: "gw1.contoso.com".into(),
            gateway: "gw1.contoso.com".into(),
            gateway_port: 5067,
            transport: TransportArg::Tls.pb(),
            pool: "pool1.contoso.com".into(),
            pool_port: 5067,
            root: true,
            health: None,
            meta: Some(pb::Meta {
                revision: 1,
                ..Default::default()
            }),
        };
        let v = t.json().expect("json");
        assert_eq!(v["root"], true);
        assert_eq!(v["transport"], "tls");
        assert_eq!(v["revision"], 1);
        assert!(v.get("health").is_none());
        assert_eq!(t.row()[7], "-", "not probed");
        assert!(
            t.fields()
                .iter()
                .any(|(k, v)| k == "health" && v.starts_with("not probed"))
        );
    }

    #[test]
    fn trunk_health_is_shown_in_every_form() {
        let t = pb::Trunk {
            name: "gw1-5068".into(),
            health: Some(pb::TrunkHealth {
                state: "down".into(),
                since_unix_ms: 1_700_000_000_000,
                last_status: 0,
                last_unix_ms: 1_700_000_001_000,
                failures: 5,
                probes: 12,
                downs: 1,
                peer: "198.18.2.2:5068".into(),
                interval_secs: 60,
                threshold: 5,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(t.row()[7], "down");
        let f = t.fields();
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("health").as_deref(),
            Some("down since 2023-11-14 22:13:20Z")
        );
        assert_eq!(
            get("last probe").as_deref(),
            Some("unanswered (2023-11-14 22:13:21Z)")
        );
        assert!(get("probes").is_some_and(|p| p.contains("5 failed in a row (down after 5)")));
        assert_eq!(get("addresses down"), None, "none listed when none is");
        let one_down = pb::TrunkHealth {
            state: "up".into(),
            addresses_down: vec!["198.18.2.3:5062".into()],
            ..Default::default()
        };
        let f = health_fields(Some(&one_down));
        assert!(
            f.iter()
                .any(|(k, v)| k == "addresses down" && v.starts_with("198.18.2.3:5062")),
            "{f:?}"
        );
        let answered = pb::TrunkHealth {
            state: "up".into(),
            last_status: 200,
            last_unix_ms: 1_700_000_001_000,
            rtt_ms: 1.25,
            ..Default::default()
        };
        let f = health_fields(Some(&answered));
        assert!(
            f.iter()
                .any(|(k, v)| k == "last probe" && v.starts_with("200 in 1.2 ms")),
            "{f:?}"
        );
    }
}

//! `mediatorctl route …`: voice routes, and Lync's Test-CsVoiceRoute as `route test`.

use clap::{Args, Subcommand};
use mediator_proto::control::v1 as pb;
use mediator_topology::proto as convert;
use serde_json::{Value, json};

use crate::output::{
    Output, Show, Table, bad_reply, emit, emit_line, joined, meta_fields, or_dash, print_json,
    revision,
};
use crate::resource::{
    Help, MoreVerbs, PAGE_SIZE, Resource, RevisionArg, VerbHelp, field_mask, rpcs,
};
use crate::{Ctx, Failure, usage_error};

pub const EXAMPLES: &str = "\
Examples:
  mediatorctl route add local-425 --pattern '^\\+1425(\\d{7})$' --trunk gw1.contoso.com --usage Local
  mediatorctl route set local-425 --trunk gw1-5068 gw1.contoso.com
  mediatorctl route list --usage Local
  mediatorctl route test +14255550100";

const ADD_EXAMPLES: &str = "\
Examples:
  mediatorctl route add local-425 --pattern '^\\+1425(\\d{7})$' \\
      --trunk gw1.contoso.com gw2.contoso.com --usage Local --priority 10
  mediatorctl route add us-long-distance --pattern '^\\+1(\\d{10})$' --trunk gw1-5068 \\
      --usage \"Long Distance\" --suppress-caller-id --alternate-caller-id +14255550100 \\
      --description \"Everything else in NANP\"";

const SET_EXAMPLES: &str = "\
Examples:
  mediatorctl route set local-425 --trunk gw2.contoso.com gw1.contoso.com
  mediatorctl route set local-425 --pattern '^\\+1(425|206)(\\d{7})$' --revision 6
  mediatorctl route set us-long-distance --suppress-caller-id --alternate-caller-id +14255550199
  mediatorctl route set us-long-distance --no-suppress-caller-id";

const SHOW_EXAMPLES: &str = "\
Examples:
  mediatorctl route show local-425
  mediatorctl --output json route show local-425";

const LIST_EXAMPLES: &str = "\
Examples:
  mediatorctl route list
  mediatorctl route list --usage Local
  mediatorctl route list --trunk gw1.contoso.com --output json";

const REMOVE_EXAMPLES: &str = "\
Examples:
  mediatorctl route remove local-425
  mediatorctl route remove local-425 --revision 6";

const TEST_EXAMPLES: &str = "\
Examples:
  mediatorctl route test +14255550100
  mediatorctl route test +12065550123 --usage Local --usage \"Long Distance\"
  mediatorctl route test +14255550100 --calling +14255550111 --output json";

/// `mediatorctl route …`.
#[derive(Debug)]
pub struct Routes;

impl Resource for Routes {
    const NOUN: &'static str = "route";
    const HELP: Help = Help {
        add: VerbHelp::new("Create a voice route", ADD_EXAMPLES),
        set: VerbHelp::new(
            "Change some of a route's fields; lists given replace the old ones",
            SET_EXAMPLES,
        ),
        show: VerbHelp::new("Show one route", SHOW_EXAMPLES),
        list: VerbHelp::new("List routes", LIST_EXAMPLES),
        remove: VerbHelp::new("Delete a route", REMOVE_EXAMPLES),
        key: "The route's name",
        remove_key: "The route's name",
    };

    type Item = pb::VoiceRoute;
    type Add = RouteAdd;
    type Set = RouteSet;
    type Filter = RouteFilter;
    type More = RouteVerbs;
    type CreateRequest = pb::CreateVoiceRouteRequest;
    type UpdateRequest = pb::UpdateVoiceRouteRequest;
    type ListRequest = pb::ListVoiceRoutesRequest;

    fn create_request(a: &RouteAdd) -> Result<pb::CreateVoiceRouteRequest, Failure> {
        Ok(pb::CreateVoiceRouteRequest {
            route: Some(pb::VoiceRoute {
                name: a.name.clone(),
                pattern: a.pattern.clone(),
                priority: a.priority,
                trunks: a.trunks.clone(),
                pstn_usages: a.usages.clone(),
                suppress_caller_id: a.suppress_caller_id,
                alternate_caller_id: a.alternate_caller_id.clone().unwrap_or_default(),
                description: a.description.clone(),
                meta: None,
            }),
        })
    }

    fn update_request(
        a: &RouteSet,
        _current: Option<&pb::VoiceRoute>,
    ) -> Result<pb::UpdateVoiceRouteRequest, Failure> {
        let mut route = pb::VoiceRoute {
            name: a.name.clone(),
            ..Default::default()
        };
        let mut paths = Vec::new();
        if let Some(p) = &a.pattern {
            route.pattern = p.clone();
            paths.push("pattern");
        }
        if let Some(p) = a.priority {
            route.priority = p;
            paths.push("priority");
        }
        if !a.trunks.is_empty() {
            route.trunks = a.trunks.clone();
            paths.push("trunks");
        }
        if !a.usages.is_empty() {
            route.pstn_usages = a.usages.clone();
            paths.push("pstn_usages");
        }
        if a.suppress_caller_id || a.no_suppress_caller_id {
            route.suppress_caller_id = a.suppress_caller_id;
            paths.push("suppress_caller_id");
        }
        // Turning suppression off also clears the alternate number, which the server refuses to
        // keep without suppression.
        if a.alternate_caller_id.is_some() || a.no_suppress_caller_id {
            route.alternate_caller_id = a.alternate_caller_id.clone().unwrap_or_default();
            paths.push("alternate_caller_id");
        }
        if let Some(d) = &a.description {
            route.description = d.clone();
            paths.push("description");
        }
        if paths.is_empty() {
            return Err(usage_error(format!(
                "nothing to change for route '{}': give at least one of --pattern, --priority, \
                 --trunk, --usage, --suppress-caller-id, --no-suppress-caller-id, \
                 --alternate-caller-id, --description",
                a.name
            )));
        }
        Ok(pb::UpdateVoiceRouteRequest {
            route: Some(route),
            update_mask: field_mask(&paths),
            expected_revision: a.revision.expected(),
        })
    }

    fn list_request(f: &RouteFilter, page_token: String) -> pb::ListVoiceRoutesRequest {
        pb::ListVoiceRoutesRequest {
            pstn_usage: f.usage.clone().unwrap_or_default(),
            trunk: f.trunk.clone().unwrap_or_default(),
            page_size: PAGE_SIZE,
            page_token,
        }
    }

    rpcs! {
        create: create_voice_route,
        get: get_voice_route,
        update: update_voice_route,
        delete: delete_voice_route,
        list: list_voice_routes => routes,
    }
}

/// Testing routes, after the five verbs.
#[derive(Subcommand, Debug)]
pub enum RouteVerbs {
    /// Which routes and trunks a dialled number would try, in order.
    #[command(after_help = TEST_EXAMPLES)]
    Test(RouteTest),
}

impl MoreVerbs for RouteVerbs {
    async fn run(self, ctx: &mut Ctx) -> Result<(), Failure> {
        match self {
            RouteVerbs::Test(t) => {
                let req = pb::TestRouteRequest {
                    dialed_number: t.number.clone(),
                    pstn_usages: t.usages.clone(),
                    calling_number: t.calling.clone().unwrap_or_default(),
                };
                let r = ctx.client.test_route(req).await?.into_inner();
                print_attempts(ctx.out, &t, &r.attempts)
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct RouteFilter {
    /// Only routes with this PSTN usage.
    #[arg(long)]
    pub usage: Option<String>,
    /// Only routes using this trunk.
    #[arg(long)]
    pub trunk: Option<String>,
}

#[derive(Args, Debug)]
pub struct RouteAdd {
    /// The route's name, e.g. local-425.
    pub name: String,
    /// Regular expression the whole called number must match.
    #[arg(long, value_name = "REGEX", allow_hyphen_values = true)]
    pub pattern: String,
    /// Trunks to try, in this order.
    #[arg(long = "trunk", value_name = "TRUNK", num_args = 1.., required = true)]
    pub trunks: Vec<String>,
    /// PSTN usages the route belongs to.
    #[arg(long = "usage", value_name = "USAGE", num_args = 1.., required = true)]
    pub usages: Vec<String>,
    /// Lower is tried first among routes of the same usage.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub priority: u32,
    /// Present --alternate-caller-id instead of the caller's number.
    #[arg(long, requires = "alternate_caller_id")]
    pub suppress_caller_id: bool,
    /// The number presented with --suppress-caller-id.
    #[arg(long, value_name = "NUMBER", requires = "suppress_caller_id")]
    pub alternate_caller_id: Option<String>,
    /// Free text.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
}

#[derive(Args, Debug)]
pub struct RouteSet {
    /// The route's name.
    pub name: String,
    /// Regular expression the whole called number must match.
    #[arg(long, value_name = "REGEX", allow_hyphen_values = true)]
    pub pattern: Option<String>,
    /// Lower is tried first among routes of the same usage.
    #[arg(long, value_name = "N")]
    pub priority: Option<u32>,
    /// Trunks to try, in this order (replaces the list).
    #[arg(long = "trunk", value_name = "TRUNK", num_args = 1..)]
    pub trunks: Vec<String>,
    /// PSTN usages the route belongs to (replaces the list).
    #[arg(long = "usage", value_name = "USAGE", num_args = 1..)]
    pub usages: Vec<String>,
    /// Present the alternate caller ID instead of the caller's number.
    #[arg(long)]
    pub suppress_caller_id: bool,
    /// Present the caller's own number again (clears the alternate caller ID).
    #[arg(long, conflicts_with_all = ["suppress_caller_id", "alternate_caller_id"])]
    pub no_suppress_caller_id: bool,
    /// The number presented when the caller ID is suppressed.
    #[arg(long, value_name = "NUMBER")]
    pub alternate_caller_id: Option<String>,
    /// Free text ("" clears it).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    #[command(flatten)]
    pub revision: RevisionArg,
}

#[derive(Args, Debug)]
pub struct RouteTest {
    /// The dialled number, as the pool sends it (e.g. +14255550100).
    #[arg(allow_hyphen_values = true)]
    pub number: String,
    /// Only these PSTN usages, in this order (repeat; default: every usage by priority).
    #[arg(long = "usage", value_name = "USAGE")]
    pub usages: Vec<String>,
    /// The caller's number, to see calling-number translation.
    #[arg(long, value_name = "NUMBER")]
    pub calling: Option<String>,
}

fn rule_text(a: &pb::RouteAttempt) -> String {
    let mut parts = Vec::new();
    if !a.called_rule.is_empty() {
        parts.push(format!("called: {}", a.called_rule));
    }
    if !a.calling_rule.is_empty() {
        parts.push(format!("calling: {}", a.calling_rule));
    }
    or_dash(parts.join("; "))
}

pub fn attempts_table(attempts: &[pb::RouteAttempt]) -> Table {
    let mut t = Table::new(&[
        "#",
        "USAGE",
        "ROUTE",
        "TRUNK",
        "GATEWAY",
        "CALLED NUMBER",
        "CALLING NUMBER",
        "RULE",
    ]);
    for (i, a) in attempts.iter().enumerate() {
        t.row([
            (i + 1).to_string(),
            a.pstn_usage.clone(),
            a.route.clone(),
            a.trunk.clone(),
            a.gateway.clone(),
            or_dash(a.called_number.clone()),
            or_dash(a.calling_number.clone()),
            rule_text(a),
        ]);
    }
    t
}

fn print_attempts(
    out: Output,
    t: &RouteTest,
    attempts: &[pb::RouteAttempt],
) -> Result<(), Failure> {
    match out {
        Output::Json => {
            let list: Vec<Value> = attempts
                .iter()
                .map(|a| {
                    json!({
                        "pstn_usage": a.pstn_usage,
                        "route": a.route,
                        "trunk": a.trunk,
                        "gateway": a.gateway,
                        "pool": a.pool,
                        "called_number": a.called_number,
                        "calling_number": a.calling_number,
                        "called_rule": a.called_rule,
                        "calling_rule": a.calling_rule,
                    })
                })
                .collect();
            print_json(&Value::Array(list))
        }
        Output::Table if attempts.is_empty() => {
            let usages = if t.usages.is_empty() {
                "any PSTN usage".to_string()
            } else {
                format!("PSTN usages {}", t.usages.join(", "))
            };
            emit_line(&format!(
                "no route matches {} in {usages}: the call would fail (check the routes' \
                 patterns with `mediatorctl route list`)",
                t.number
            ))
        }
        Output::Table => emit(&attempts_table(attempts).render()),
    }
}

impl Show for pb::VoiceRoute {
    const PLURAL: &'static str = "routes";
    const COLUMNS: &'static [&'static str] = &[
        "NAME",
        "PRIORITY",
        "PATTERN",
        "USAGES",
        "TRUNKS",
        "CALLER ID",
        "REVISION",
    ];

    fn json(&self) -> Result<Value, Failure> {
        let r = mediator_topology::model::VoiceRoute::try_from(self)
            .map_err(|e| bad_reply("route", &self.name, e))?;
        Ok(convert::view(&r, self.meta.as_ref()))
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.priority.to_string(),
            self.pattern.clone(),
            joined(&self.pstn_usages),
            joined(&self.trunks),
            caller_id(self),
            revision(self.meta.as_ref()),
        ]
    }

    fn fields(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("name".into(), self.name.clone()),
            ("pattern".into(), self.pattern.clone()),
            ("priority".into(), self.priority.to_string()),
            ("pstn usages".into(), joined(&self.pstn_usages)),
        ];
        if self.trunks.is_empty() {
            f.push(("trunks".into(), "-".into()));
        }
        for (i, t) in self.trunks.iter().enumerate() {
            let key = if i == 0 { "trunks" } else { "" };
            f.push((key.into(), format!("{}. {t}", i + 1)));
        }
        f.push(("caller id".into(), caller_id(self)));
        f.push(("description".into(), or_dash(self.description.clone())));
        f.extend(meta_fields(self.meta.as_ref()));
        f
    }
}

fn caller_id(r: &pb::VoiceRoute) -> String {
    if r.suppress_caller_id {
        format!(
            "suppressed, shown as {}",
            or_dash(r.alternate_caller_id.clone())
        )
    } else {
        "caller's own".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Verb;

    fn parse(args: &[&str]) -> Result<Verb<Routes>, clap::Error> {
        crate::resource::parse::<Routes>(args)
    }

    fn set(args: &[&str]) -> RouteSet {
        match parse(&[&["set", "local-425"], args].concat()) {
            Ok(Verb::Set(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    fn paths(a: &RouteSet) -> Vec<String> {
        Routes::update_request(a, None)
            .expect("request")
            .update_mask
            .unwrap_or_default()
            .paths
    }

    #[test]
    fn add_takes_lists_and_requires_both_caller_id_flags() {
        let Ok(Verb::Add(a)) = parse(&[
            "add",
            "local-425",
            "--pattern",
            r"^\+1425(\d{7})$",
            "--trunk",
            "gw1.contoso.com",
            "gw2.contoso.com",
            "--usage",
            "Local",
        ]) else {
            panic!()
        };
        let r = Routes::create_request(&a)
            .expect("request")
            .route
            .unwrap_or_default();
        assert_eq!(r.trunks, ["gw1.contoso.com", "gw2.contoso.com"]);
        assert_eq!(r.pstn_usages, ["Local"]);
        let base = [
            "add",
            "x",
            "--pattern",
            "^1$",
            "--trunk",
            "t",
            "--usage",
            "u",
        ];
        assert!(parse(&[&base[..], &["--suppress-caller-id"]].concat()).is_err());
        assert!(parse(&[&base[..], &["--alternate-caller-id", "+14255550100"]].concat()).is_err());
        assert!(parse(&base[..6]).is_err());
    }

    #[test]
    fn set_masks() {
        assert_eq!(
            paths(&set(&[
                "--trunk",
                "gw2.contoso.com",
                "gw1.contoso.com",
                "--priority",
                "3"
            ])),
            ["priority", "trunks"]
        );
        assert_eq!(
            paths(&set(&["--no-suppress-caller-id"])),
            ["suppress_caller_id", "alternate_caller_id"]
        );
        assert_eq!(
            paths(&set(&[
                "--suppress-caller-id",
                "--alternate-caller-id",
                "+14255550199"
            ])),
            ["suppress_caller_id", "alternate_caller_id"]
        );
        assert_eq!(paths(&set(&["--description", ""])), ["description"]);
        assert!(
            parse(&[
                "set",
                "r",
                "--no-suppress-caller-id",
                "--suppress-caller-id"
            ])
            .is_err()
        );
        assert!(matches!(
            Routes::update_request(&set(&["--revision", "1"]), None),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn test_usages_do_not_swallow_the_number() {
        let Ok(Verb::More(RouteVerbs::Test(t))) = parse(&[
            "test",
            "--usage",
            "Local",
            "+14255550100",
            "--usage",
            "Long Distance",
        ]) else {
            panic!()
        };
        assert_eq!(t.number, "+14255550100");
        assert_eq!(t.usages, ["Local", "Long Distance"]);
    }

    #[test]
    fn attempts_render_with_rules() {
        let a = pb::RouteAttempt {
            pstn_usage: "Local".into(),
            route: "local-425".into(),
            trunk: "gw1.contoso.com".into(),
            gateway: "gw1.contoso.com".into(),
            pool: "pool1.contoso.com".into(),
            called_number: "14255550100".into(),
            calling_number: String::new(),
            called_rule: "strip-plus".into(),
            calling_rule: String::new(),
        };
        let text = attempts_table(&[a]).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("#  USAGE  ROUTE"), "{text}");
        assert!(
            lines[1].ends_with("14255550100    -               called: strip-plus"),
            "{text}"
        );
    }
}

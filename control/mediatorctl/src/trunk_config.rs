//! `mediatorctl trunk-config …`: Lync's trunk configuration at global, site or trunk scope, and
//! the effective settings of a trunk.

use clap::{Args, Subcommand};
use mediator_proto::control::v1 as pb;
use mediator_topology::model::Scope;
use mediator_topology::proto as convert;
use serde_json::{Value, json};

use crate::output::{Output, Show, Table, bad_reply, emit, meta_fields, print_json, revision};
use crate::resource::{
    Help, MoreVerbs, NoFilter, PAGE_SIZE, Resource, RevisionArg, VerbHelp, field_mask, rpcs,
};
use crate::settings::{self, Changes, InheritArgs, SettingFlag, SettingsArgs};
use crate::{Ctx, Failure, usage_error};

pub const EXAMPLES: &str = "\
Examples:
  mediatorctl trunk-config show global
  mediatorctl trunk-config add site:redmond --media-bypass true --srtp-mode optional
  mediatorctl trunk-config set trunk:gw1.contoso.com --called-rule strip-plus '^\\+1(\\d{10})$' '1$1'
  mediatorctl trunk-config effective gw1.contoso.com";

const ADD_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk-config add site:redmond --media-bypass true --srtp-mode optional
  mediatorctl trunk-config add trunk:gw1.contoso.com --remove-plus-from-uri true \\
      --called-rule strip-plus '^\\+1(\\d{10})$' '1$1' --response-code 408=503
  mediatorctl trunk-config add trunk:gw1-5068          # everything inherited, for now";

const SET_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk-config set global --max-early-dialogs 40
  mediatorctl trunk-config set site:redmond --media-bypass inherit --session-timer true
  mediatorctl trunk-config set trunk:gw1.contoso.com --called-rule strip-plus '^\\+1(\\d{10})$' '1$1' \\
      --called-rule local '^\\+1425(\\d{7})$' '$1' --revision 3
  mediatorctl trunk-config set trunk:gw1.contoso.com --clear-response-codes --inherit-calling-rules";

const SHOW_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk-config show global
  mediatorctl trunk-config show site:redmond
  mediatorctl --output json trunk-config show trunk:gw1.contoso.com";

const LIST_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk-config list
  mediatorctl trunk-config list --output json";

const REMOVE_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk-config remove site:redmond
  mediatorctl trunk-config remove trunk:gw1.contoso.com --revision 4";

const EFFECTIVE_EXAMPLES: &str = "\
Examples:
  mediatorctl trunk-config effective gw1.contoso.com
  mediatorctl trunk-config effective gw1-5068 --output json";

/// `mediatorctl trunk-config …`.
#[derive(Debug)]
pub struct TrunkConfigs;

impl Resource for TrunkConfigs {
    const NOUN: &'static str = "trunk configuration";
    const HELP: Help = Help {
        add: VerbHelp::new(
            "Create the configuration of a site or trunk (absent settings are inherited)",
            ADD_EXAMPLES,
        )
        .long(
            "Create the configuration of a site or trunk (absent settings are inherited).\n\n\
             Settings not given are inherited: a trunk's from its site's configuration, a site's \
             from the global one.",
        ),
        set: VerbHelp::new(
            "Change some settings of a configuration; the others stay as they are",
            SET_EXAMPLES,
        )
        .long(
            "Change some settings of a configuration; the others stay as they are.\n\n\
             Every setting also takes `inherit`, which clears it so the wider scope's value \
             applies (--inherit-…-rules does the same for a rule list); the global \
             configuration cannot inherit. A rule flag replaces that whole list; \
             --clear-…-rules makes it empty.",
        ),
        show: VerbHelp::new("Show one configuration", SHOW_EXAMPLES),
        list: VerbHelp::new("List configurations", LIST_EXAMPLES),
        remove: VerbHelp::new(
            "Delete the configuration of a site or trunk (its settings are inherited again)",
            REMOVE_EXAMPLES,
        ),
        key: "global, site:NAME or trunk:NAME",
        remove_key: "site:NAME or trunk:NAME",
    };
    const KEY: (&'static str, &'static str) = ("scope", "SCOPE");

    type Item = pb::TrunkConfiguration;
    type Add = ConfigAdd;
    type Set = ConfigSet;
    type Filter = NoFilter;
    type More = ConfigVerbs;
    type CreateRequest = pb::CreateTrunkConfigurationRequest;
    type UpdateRequest = pb::UpdateTrunkConfigurationRequest;
    type ListRequest = pb::ListTrunkConfigurationsRequest;

    fn create_request(a: &ConfigAdd) -> Result<pb::CreateTrunkConfigurationRequest, Failure> {
        Ok(pb::CreateTrunkConfigurationRequest {
            configuration: Some(pb::TrunkConfiguration {
                name: a.scope.clone(),
                settings: Some(create_settings(&a.settings)?),
                meta: None,
            }),
        })
    }

    /// A setting given as `inherit` is named in the mask but left absent, which the server
    /// reads as "clear it".
    fn update_request(
        a: &ConfigSet,
        _current: Option<&pb::TrunkConfiguration>,
    ) -> Result<pb::UpdateTrunkConfigurationRequest, Failure> {
        let changes = Changes::new(&a.settings, &a.inherit);
        if changes.given.is_empty() {
            return Err(usage_error(format!(
                "nothing to change for {}: give a setting (e.g. --media-bypass true) or a rule \
                 list flag; see `mediatorctl trunk-config set --help`",
                a.scope
            )));
        }
        if a.scope == "global" && changes.inherited().next().is_some() {
            return Err(usage_error(
                "the global configuration cannot inherit: it is where inheritance ends; give a \
                 value",
            ));
        }
        Ok(pb::UpdateTrunkConfigurationRequest {
            update_mask: field_mask(&changes.mask()),
            configuration: Some(pb::TrunkConfiguration {
                name: a.scope.clone(),
                settings: Some(changes.settings),
                meta: None,
            }),
            expected_revision: a.revision.expected(),
        })
    }

    fn list_request(_: &NoFilter, page_token: String) -> pb::ListTrunkConfigurationsRequest {
        pb::ListTrunkConfigurationsRequest {
            page_size: PAGE_SIZE,
            page_token,
        }
    }

    fn key(s: &str) -> Result<String, String> {
        scope(s)
    }

    fn check_remove(scope: &str) -> Result<(), Failure> {
        if scope == "global" {
            return Err(usage_error(
                "the global configuration cannot be removed; change its values with \
                 `mediatorctl trunk-config set global ...`",
            ));
        }
        Ok(())
    }

    rpcs! {
        create: create_trunk_configuration,
        get: get_trunk_configuration,
        update: update_trunk_configuration,
        delete: delete_trunk_configuration,
        list: list_trunk_configurations => configurations,
    }
}

/// The effective settings of a trunk, after the five verbs.
#[derive(Subcommand, Debug)]
pub enum ConfigVerbs {
    /// The settings that apply to a trunk, each with the scope it comes from.
    #[command(after_help = EFFECTIVE_EXAMPLES)]
    Effective {
        /// The trunk's name.
        trunk: String,
    },
}

impl MoreVerbs for ConfigVerbs {
    async fn run(self, ctx: &mut Ctx) -> Result<(), Failure> {
        match self {
            ConfigVerbs::Effective { trunk } => {
                let e = ctx
                    .client
                    .get_effective_trunk_configuration(pb::GetRequest { name: trunk })
                    .await?
                    .into_inner();
                print_effective(ctx.out, &e)
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct ConfigAdd {
    /// global, site:NAME or trunk:NAME.
    #[arg(value_parser = scope)]
    pub scope: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Args, Debug)]
pub struct ConfigSet {
    /// global, site:NAME or trunk:NAME.
    #[arg(value_parser = scope)]
    pub scope: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub inherit: InheritArgs,
    #[command(flatten)]
    pub revision: RevisionArg,
}

/// Checks SCOPE on the command line, so a typo is a usage error and not a server round trip.
fn scope(s: &str) -> Result<String, String> {
    Scope::parse(s).map(|sc| sc.to_string()).map_err(|e| {
        format!(
            "{}; e.g. global, site:redmond or trunk:gw1.contoso.com",
            e.reason
        )
    })
}

/// `add` sets values; `inherit` there would be a no-op the user did not mean.
fn create_settings(s: &SettingsArgs) -> Result<pb::TrunkSettings, Failure> {
    let changes = Changes::new(s, &InheritArgs::default());
    let inherited: Vec<String> = changes.inherited().map(SettingFlag::flag).collect();
    if inherited.is_empty() {
        Ok(changes.settings)
    } else {
        Err(usage_error(format!(
            "{} inherit: `trunk-config add` only sets values (leave a setting out to inherit it; \
             `trunk-config set ... inherit` clears one)",
            inherited.join(", ")
        )))
    }
}

fn print_effective(out: Output, e: &pb::EffectiveTrunkConfiguration) -> Result<(), Failure> {
    match out {
        Output::Json => {
            let settings = e
                .settings
                .as_ref()
                .map(mediator_topology::model::Settings::try_from)
                .transpose()
                .map_err(|err| bad_reply("the effective configuration of", &e.trunk, err))?
                .unwrap_or_default();
            let sources: Vec<Value> = e
                .sources
                .iter()
                .map(|s| {
                    let mut v = json!({ "name": s.name, "value": s.value, "scope": s.scope });
                    if !s.note.is_empty() {
                        v["note"] = json!(s.note);
                    }
                    v
                })
                .collect();
            print_json(&json!({ "trunk": e.trunk, "settings": settings, "sources": sources }))
        }
        Output::Table => {
            let mut t = Table::new(&["SETTING", "VALUE", "SCOPE"]);
            for s in &e.sources {
                let value = if s.note.is_empty() {
                    s.value.clone()
                } else {
                    format!("{} (*)", s.value)
                };
                t.row([s.name.clone(), value, s.scope.clone()]);
            }
            let mut text = t.render();
            for s in e.sources.iter().filter(|s| !s.note.is_empty()) {
                text.push_str(&format!("(*) {}: {}\n", s.name, s.note));
            }
            emit(&text)
        }
    }
}

/// Each setting as rows of (name, value): one row per rule so long lists stay readable; absent
/// settings say where their value comes from.
fn setting_rows(name: &str, s: &pb::TrunkSettings) -> Result<Vec<(String, String)>, Failure> {
    let model = mediator_topology::model::Settings::try_from(s)
        .map_err(|e| bad_reply("trunk configuration", name, e))?;
    let doc = serde_json::to_value(&model).map_err(|e| Failure::BadReply(e.to_string()))?;
    let mut rows = Vec::new();
    for field in settings::all().iter().map(|f| f.field) {
        let value = doc.get(field);
        let items = match value {
            None => {
                rows.push((field.to_string(), "(inherited)".to_string()));
                continue;
            }
            Some(Value::Array(items)) => items,
            Some(Value::String(text)) => {
                rows.push((field.to_string(), text.clone()));
                continue;
            }
            Some(other) => {
                rows.push((field.to_string(), other.to_string()));
                continue;
            }
        };
        if items.is_empty() {
            rows.push((field.to_string(), "(none)".to_string()));
        }
        for (i, item) in items.iter().enumerate() {
            let key = if i == 0 {
                field.to_string()
            } else {
                String::new()
            };
            rows.push((key, rule_text(item)));
        }
    }
    Ok(rows)
}

fn rule_text(item: &Value) -> String {
    let text = |k: &str| match item.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    if item.get("received").is_some() {
        format!("{} -> {}", text("received"), text("translated"))
    } else {
        format!(
            "{}: {} -> {}",
            text("name"),
            text("pattern"),
            text("translation")
        )
    }
}

impl Show for pb::TrunkConfiguration {
    const PLURAL: &'static str = "trunk configurations";
    const COLUMNS: &'static [&'static str] = &["NAME", "SETTINGS", "REVISION"];

    fn json(&self) -> Result<Value, Failure> {
        let c = mediator_topology::topology::TrunkConfig::try_from(self)
            .map_err(|e| bad_reply("trunk configuration", &self.name, e))?;
        Ok(convert::view(&c, self.meta.as_ref()))
    }

    fn row(&self) -> Vec<String> {
        let all = settings::all();
        let set: Vec<&str> = all
            .iter()
            .filter(|f| !self.settings.as_ref().is_none_or(|s| f.is_absent(s)))
            .map(|f| f.field)
            .collect();
        let summary = if set.is_empty() {
            "(all inherited)".to_string()
        } else if set.len() == all.len() {
            "all".to_string()
        } else {
            set.join(", ")
        };
        vec![self.name.clone(), summary, revision(self.meta.as_ref())]
    }

    fn fields(&self) -> Vec<(String, String)> {
        let mut f = vec![("name".to_string(), self.name.clone())];
        let settings = self.settings.clone().unwrap_or_default();
        match setting_rows(&self.name, &settings) {
            Ok(rows) => f.extend(rows),
            // The table still shows what it can; JSON output reports the mismatch.
            Err(_) => f.push(("settings".into(), "(unreadable: see --output json)".into())),
        }
        f.extend(meta_fields(self.meta.as_ref()));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Verb;

    fn parse(args: &[&str]) -> Result<Verb<TrunkConfigs>, clap::Error> {
        crate::resource::parse::<TrunkConfigs>(args)
    }

    fn set(args: &[&str]) -> Result<pb::UpdateTrunkConfigurationRequest, Failure> {
        match parse(&[&["set", "site:redmond"], args].concat()) {
            Ok(Verb::Set(a)) => TrunkConfigs::update_request(&a, None),
            other => panic!("{other:?}"),
        }
    }

    fn paths(r: &pb::UpdateTrunkConfigurationRequest) -> Vec<String> {
        r.update_mask.clone().unwrap_or_default().paths
    }

    #[test]
    fn scopes_are_checked_locally() {
        assert!(parse(&["show", "global"]).is_ok());
        assert!(parse(&["show", "site:redmond"]).is_ok());
        assert!(parse(&["show", "pool:x"]).is_err());
        assert!(parse(&["show", "trunk:"]).is_err());
    }

    #[test]
    fn values_and_inherit_in_the_mask() {
        let r = set(&[
            "--media-bypass",
            "true",
            "--srtp-mode",
            "inherit",
            "--fast-failover-timeout",
            "15",
            "--revision",
            "3",
        ])
        .expect("request");
        assert_eq!(
            paths(&r),
            [
                "settings.srtp_mode",
                "settings.media_bypass",
                "settings.fast_failover_timeout_secs"
            ]
        );
        assert_eq!(r.expected_revision, 3);
        let s = r.configuration.and_then(|c| c.settings).unwrap_or_default();
        assert_eq!(s.media_bypass, Some(true));
        assert_eq!(s.srtp_mode, None);
        assert_eq!(s.fast_failover_timeout_secs, Some(15));
        assert_eq!(s.refer_support, None);
    }

    #[test]
    fn rule_lists_replace_clear_or_inherit() {
        let r = set(&[
            "--called-rule",
            "strip-plus",
            r"^\+1(\d{10})$",
            "1$1",
            "--called-rule",
            "local",
            r"^\+1425(\d{7})$",
            "$1",
            "--clear-calling-rules",
            "--inherit-inbound-called-rules",
            "--response-code",
            "408=503",
            "--response-code",
            "486=600",
        ])
        .expect("request");
        assert_eq!(
            paths(&r),
            [
                "settings.called_number_rules",
                "settings.calling_number_rules",
                "settings.inbound_called_number_rules",
                "settings.response_code_rules"
            ]
        );
        let s = r.configuration.and_then(|c| c.settings).unwrap_or_default();
        let called = s.called_number_rules.unwrap_or_default().rules;
        assert_eq!(called.len(), 2);
        assert_eq!(called[0].pattern, r"^\+1(\d{10})$");
        assert_eq!(called[1].translation, "$1");
        assert_eq!(s.calling_number_rules, Some(pb::RuleList { rules: vec![] }));
        assert_eq!(s.inbound_called_number_rules, None);
        let codes = s.response_code_rules.unwrap_or_default().rules;
        assert_eq!(
            codes
                .iter()
                .map(|c| (c.received, c.translated))
                .collect::<Vec<_>>(),
            [(408, 503), (486, 600)]
        );
    }

    #[test]
    fn conflicting_and_malformed_flags_are_usage_errors() {
        assert!(
            parse(&[
                "set",
                "global",
                "--clear-called-rules",
                "--inherit-called-rules"
            ])
            .is_err()
        );
        assert!(parse(&["set", "global", "--called-rule", "a", "b"]).is_err());
        assert!(parse(&["set", "global", "--response-code", "408"]).is_err());
        assert!(parse(&["set", "global", "--media-bypass", "yes"]).is_err());
        assert!(parse(&["add", "site:redmond", "--inherit-called-rules"]).is_err());
        assert!(matches!(set(&[]), Err(Failure::Usage(_))));
        assert!(matches!(set(&["--revision", "2"]), Err(Failure::Usage(_))));
    }

    #[test]
    fn global_cannot_inherit() {
        let Ok(Verb::Set(a)) = parse(&["set", "global", "--session-timer", "inherit"]) else {
            panic!()
        };
        assert!(matches!(
            TrunkConfigs::update_request(&a, None),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn add_refuses_inherit() {
        let Ok(Verb::Add(a)) = parse(&["add", "site:redmond", "--media-bypass", "inherit"]) else {
            panic!()
        };
        match create_settings(&a.settings) {
            Err(Failure::Usage(m)) => assert!(m.starts_with("--media-bypass inherit"), "{m}"),
            other => panic!("{other:?}"),
        }
        let Ok(Verb::Add(a)) = parse(&[
            "add",
            "trunk:gw1.contoso.com",
            "--max-early-dialogs",
            "40",
            "--clear-response-codes",
        ]) else {
            panic!()
        };
        let s = create_settings(&a.settings).expect("settings");
        assert_eq!(s.max_early_dialogs, Some(40));
        assert_eq!(
            s.response_code_rules,
            Some(pb::ResponseCodeRuleList { rules: vec![] })
        );
    }

    #[test]
    fn show_rows_list_each_rule_and_inheritance() {
        let s = pb::TrunkSettings {
            media_bypass: Some(true),
            called_number_rules: Some(pb::RuleList {
                rules: vec![
                    pb::TranslationRule {
                        name: "strip-plus".into(),
                        pattern: r"^\+1(\d{10})$".into(),
                        translation: "1$1".into(),
                    },
                    pb::TranslationRule {
                        name: "local".into(),
                        pattern: r"^\+1425(\d{7})$".into(),
                        translation: "$1".into(),
                    },
                ],
            }),
            response_code_rules: Some(pb::ResponseCodeRuleList {
                rules: vec![pb::ResponseCodeRule {
                    received: 408,
                    translated: 503,
                }],
            }),
            srtp_mode: Some(pb::SrtpMode::NotSupported as i32),
            ..Default::default()
        };
        let rows = setting_rows("site:redmond", &s).expect("rows");
        let find = |k: &str| rows.iter().position(|(n, _)| n == k).expect(k);
        assert_eq!(rows[find("srtp_mode")].1, "not_supported");
        assert_eq!(rows[find("media_bypass")].1, "true");
        assert_eq!(rows[find("refer_support")].1, "(inherited)");
        let i = find("called_number_rules");
        assert_eq!(rows[i].1, r"strip-plus: ^\+1(\d{10})$ -> 1$1");
        assert_eq!(
            rows[i + 1],
            (String::new(), r"local: ^\+1425(\d{7})$ -> $1".into())
        );
        assert_eq!(rows[find("response_code_rules")].1, "408 -> 503");
        let c = pb::TrunkConfiguration {
            name: "site:redmond".into(),
            settings: Some(s),
            meta: None,
        };
        assert_eq!(
            c.row()[1],
            "srtp_mode, media_bypass, called_number_rules, response_code_rules"
        );
    }
}

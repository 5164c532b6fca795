//! `mediatorctl trunk-config …`: Lync's trunk configuration at global, site or trunk scope, and
//! the effective settings of a trunk.

use clap::{ArgAction, Args, Subcommand};
use mediator_proto::control::v1 as pb;
use mediator_topology::model::{SETTING_NAMES, Scope};
use mediator_topology::proto as convert;
use serde_json::{Value, json};

use crate::output::{
    Output, Show, Table, bad_reply, emit, meta_fields, print_json, print_list, print_one,
    print_removed, revision,
};
use crate::parse::{self, ResponseCode, Setting, SrtpArg};
use crate::{Ctx, Failure, PAGE_SIZE, RevisionArg, all_pages, usage_error};

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

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Create the configuration of a site or trunk (absent settings are inherited).
    ///
    /// Settings not given are inherited: a trunk's from its site's configuration, a site's from
    /// the global one.
    #[command(after_help = ADD_EXAMPLES)]
    Add {
        /// global, site:NAME or trunk:NAME.
        #[arg(value_parser = scope)]
        scope: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Change some settings of a configuration; the others stay as they are.
    ///
    /// Every setting also takes `inherit`, which clears it so the wider scope's value applies
    /// (--inherit-…-rules does the same for a rule list); the global configuration cannot
    /// inherit. A rule flag replaces that whole list; --clear-…-rules makes it empty.
    #[command(after_help = SET_EXAMPLES)]
    Set {
        /// global, site:NAME or trunk:NAME.
        #[arg(value_parser = scope)]
        scope: String,
        #[command(flatten)]
        settings: SettingsArgs,
        #[command(flatten)]
        inherit: InheritArgs,
        #[command(flatten)]
        revision: RevisionArg,
    },
    /// Show one configuration.
    #[command(after_help = SHOW_EXAMPLES)]
    Show {
        /// global, site:NAME or trunk:NAME.
        #[arg(value_parser = scope)]
        scope: String,
    },
    /// List configurations.
    #[command(after_help = LIST_EXAMPLES)]
    List,
    /// Delete the configuration of a site or trunk (its settings are inherited again).
    #[command(after_help = REMOVE_EXAMPLES)]
    Remove {
        /// site:NAME or trunk:NAME.
        #[arg(value_parser = scope)]
        scope: String,
        #[command(flatten)]
        revision: RevisionArg,
    },
    /// The settings that apply to a trunk, each with the scope it comes from.
    #[command(after_help = EFFECTIVE_EXAMPLES)]
    Effective {
        /// The trunk's name.
        trunk: String,
    },
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

/// The settings flags shared by `add` and `set`.
#[derive(Args, Debug, Default)]
pub struct SettingsArgs {
    /// SRTP for media toward the gateway: required, optional or not_supported.
    #[arg(long, value_name = "MODE", value_parser = parse::srtp_setting, help_heading = "Settings")]
    pub srtp_mode: Option<Setting<SrtpArg>>,
    /// Media flows between client and gateway directly: true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub media_bypass: Option<Setting<bool>>,
    /// Send REFER to the gateway for transfers: true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub refer_support: Option<Setting<bool>>,
    /// RTCP on active calls: true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub rtcp_active_calls: Option<Setting<bool>>,
    /// RTCP on calls on hold: true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub rtcp_calls_on_hold: Option<Setting<bool>>,
    /// SIP session timers: true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub session_timer: Option<Setting<bool>>,
    /// Early dialogs allowed per outbound INVITE (1-1000).
    #[arg(long, value_name = "N", value_parser = parse::u32_setting, help_heading = "Settings")]
    pub max_early_dialogs: Option<Setting<u32>>,
    /// Strip '+' from numbers sent to the gateway: true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub remove_plus_from_uri: Option<Setting<bool>>,
    /// Try the next trunk when the gateway does not answer in time: true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub fast_failover: Option<Setting<bool>>,
    /// Seconds before fast failover gives up on a trunk (1-300).
    #[arg(
        long = "fast-failover-timeout",
        value_name = "SECS",
        value_parser = parse::u32_setting,
        help_heading = "Settings"
    )]
    pub fast_failover_timeout_secs: Option<Setting<u32>>,
    /// Latch RTP to the address media actually comes from: true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub rtp_latching: Option<Setting<bool>>,
    /// Forward P-Asserted-Identity: true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub forward_pai: Option<Setting<bool>>,
    /// Forward call history (History-Info): true or false.
    #[arg(long, value_name = "B", value_parser = parse::bool_setting, help_heading = "Settings")]
    pub forward_call_history: Option<Setting<bool>>,

    /// Called-number rule for calls toward the gateway (repeat; replaces the list).
    #[arg(
        long = "called-rule",
        num_args = 3,
        value_names = ["NAME", "PATTERN", "TRANSLATION"],
        allow_hyphen_values = true,
        action = ArgAction::Append,
        help_heading = "Number translation"
    )]
    pub called_rules: Vec<String>,
    /// Make the called-number rule list empty.
    #[arg(
        long,
        conflicts_with = "called_rules",
        help_heading = "Number translation"
    )]
    pub clear_called_rules: bool,
    /// Calling-number rule for calls toward the gateway (repeat; replaces the list).
    #[arg(
        long = "calling-rule",
        num_args = 3,
        value_names = ["NAME", "PATTERN", "TRANSLATION"],
        allow_hyphen_values = true,
        action = ArgAction::Append,
        help_heading = "Number translation"
    )]
    pub calling_rules: Vec<String>,
    /// Make the calling-number rule list empty.
    #[arg(
        long,
        conflicts_with = "calling_rules",
        help_heading = "Number translation"
    )]
    pub clear_calling_rules: bool,
    /// Called-number rule for calls from the gateway (repeat; replaces the list).
    #[arg(
        long = "inbound-called-rule",
        num_args = 3,
        value_names = ["NAME", "PATTERN", "TRANSLATION"],
        allow_hyphen_values = true,
        action = ArgAction::Append,
        help_heading = "Number translation"
    )]
    pub inbound_called_rules: Vec<String>,
    /// Make the inbound called-number rule list empty.
    #[arg(
        long,
        conflicts_with = "inbound_called_rules",
        help_heading = "Number translation"
    )]
    pub clear_inbound_called_rules: bool,
    /// Calling-number rule for calls from the gateway (repeat; replaces the list).
    #[arg(
        long = "inbound-calling-rule",
        num_args = 3,
        value_names = ["NAME", "PATTERN", "TRANSLATION"],
        allow_hyphen_values = true,
        action = ArgAction::Append,
        help_heading = "Number translation"
    )]
    pub inbound_calling_rules: Vec<String>,
    /// Make the inbound calling-number rule list empty.
    #[arg(
        long,
        conflicts_with = "inbound_calling_rules",
        help_heading = "Number translation"
    )]
    pub clear_inbound_calling_rules: bool,
    /// Translate a SIP response code from the gateway, e.g. 408=503 (repeat; replaces the list).
    #[arg(
        long = "response-code",
        value_name = "RECEIVED=TRANSLATED",
        value_parser = parse::response_code,
        help_heading = "Number translation"
    )]
    pub response_codes: Vec<ResponseCode>,
    /// Make the response-code list empty.
    #[arg(
        long,
        conflicts_with = "response_codes",
        help_heading = "Number translation"
    )]
    pub clear_response_codes: bool,
}

/// `set` only: give a rule list back to the wider scope.
#[derive(Args, Debug, Default)]
pub struct InheritArgs {
    /// Inherit the called-number rules from the wider scope.
    #[arg(long, conflicts_with_all = ["called_rules", "clear_called_rules"], help_heading = "Number translation")]
    pub inherit_called_rules: bool,
    /// Inherit the calling-number rules from the wider scope.
    #[arg(long, conflicts_with_all = ["calling_rules", "clear_calling_rules"], help_heading = "Number translation")]
    pub inherit_calling_rules: bool,
    /// Inherit the inbound called-number rules from the wider scope.
    #[arg(
        long,
        conflicts_with_all = ["inbound_called_rules", "clear_inbound_called_rules"],
        help_heading = "Number translation"
    )]
    pub inherit_inbound_called_rules: bool,
    /// Inherit the inbound calling-number rules from the wider scope.
    #[arg(
        long,
        conflicts_with_all = ["inbound_calling_rules", "clear_inbound_calling_rules"],
        help_heading = "Number translation"
    )]
    pub inherit_inbound_calling_rules: bool,
    /// Inherit the response-code translations from the wider scope.
    #[arg(long, conflicts_with_all = ["response_codes", "clear_response_codes"], help_heading = "Number translation")]
    pub inherit_response_codes: bool,
}

/// The settings message and the `settings.<field>` paths the flags name. A setting given as
/// `inherit` is named in the mask but left absent, which the server reads as "clear it".
pub fn settings_and_paths(
    s: &SettingsArgs,
    inherit: &InheritArgs,
) -> Result<(pb::TrunkSettings, Vec<String>), Failure> {
    let mut out = pb::TrunkSettings::default();
    let mut paths: Vec<String> = Vec::new();

    macro_rules! scalar {
        ($field:ident, $conv:expr) => {
            if let Some(v) = &s.$field {
                paths.push(concat!("settings.", stringify!($field)).to_string());
                if let Setting::Value(v) = v {
                    out.$field = Some($conv(v));
                }
            }
        };
    }
    scalar!(srtp_mode, |v: &SrtpArg| v.pb());
    scalar!(media_bypass, |v: &bool| *v);
    scalar!(refer_support, |v: &bool| *v);
    scalar!(rtcp_active_calls, |v: &bool| *v);
    scalar!(rtcp_calls_on_hold, |v: &bool| *v);
    scalar!(session_timer, |v: &bool| *v);
    scalar!(max_early_dialogs, |v: &u32| *v);
    scalar!(remove_plus_from_uri, |v: &bool| *v);
    scalar!(fast_failover, |v: &bool| *v);
    scalar!(fast_failover_timeout_secs, |v: &u32| *v);
    scalar!(rtp_latching, |v: &bool| *v);
    scalar!(forward_pai, |v: &bool| *v);
    scalar!(forward_call_history, |v: &bool| *v);

    let lists = [
        (
            "called_number_rules",
            "called-rule",
            &s.called_rules,
            s.clear_called_rules,
            inherit.inherit_called_rules,
        ),
        (
            "calling_number_rules",
            "calling-rule",
            &s.calling_rules,
            s.clear_calling_rules,
            inherit.inherit_calling_rules,
        ),
        (
            "inbound_called_number_rules",
            "inbound-called-rule",
            &s.inbound_called_rules,
            s.clear_inbound_called_rules,
            inherit.inherit_inbound_called_rules,
        ),
        (
            "inbound_calling_number_rules",
            "inbound-calling-rule",
            &s.inbound_calling_rules,
            s.clear_inbound_calling_rules,
            inherit.inherit_inbound_calling_rules,
        ),
    ];
    for (field, flag, given, clear, inherit) in lists {
        if given.is_empty() && !clear && !inherit {
            continue;
        }
        paths.push(format!("settings.{field}"));
        let list = if inherit {
            None
        } else {
            // clap takes exactly three values per occurrence and appends them to one list.
            let rules = parse::translation_rules(flag, given).map_err(usage_error)?;
            Some(pb::RuleList { rules })
        };
        match field {
            "called_number_rules" => out.called_number_rules = list,
            "calling_number_rules" => out.calling_number_rules = list,
            "inbound_called_number_rules" => out.inbound_called_number_rules = list,
            _ => out.inbound_calling_number_rules = list,
        }
    }

    if !s.response_codes.is_empty() || s.clear_response_codes || inherit.inherit_response_codes {
        paths.push("settings.response_code_rules".into());
        if !inherit.inherit_response_codes {
            out.response_code_rules = Some(pb::ResponseCodeRuleList {
                rules: s
                    .response_codes
                    .iter()
                    .map(|c| pb::ResponseCodeRule {
                        received: c.received,
                        translated: c.translated,
                    })
                    .collect(),
            });
        }
    }
    Ok((out, paths))
}

/// `add` sets values; `inherit` there would be a no-op the user did not mean.
fn create_settings(s: &SettingsArgs) -> Result<pb::TrunkSettings, Failure> {
    let (settings, paths) = settings_and_paths(s, &InheritArgs::default())?;
    let inherited: Vec<String> = paths
        .iter()
        .filter_map(|p| p.strip_prefix("settings."))
        .filter(|f| is_absent(&settings, f))
        .map(|f| format!("--{}", flag_name(f)))
        .collect();
    if inherited.is_empty() {
        Ok(settings)
    } else {
        Err(usage_error(format!(
            "{} inherit: `trunk-config add` only sets values (leave a setting out to inherit it; \
             `trunk-config set ... inherit` clears one)",
            inherited.join(", ")
        )))
    }
}

fn is_absent(s: &pb::TrunkSettings, field: &str) -> bool {
    match field {
        "srtp_mode" => s.srtp_mode.is_none(),
        "media_bypass" => s.media_bypass.is_none(),
        "refer_support" => s.refer_support.is_none(),
        "rtcp_active_calls" => s.rtcp_active_calls.is_none(),
        "rtcp_calls_on_hold" => s.rtcp_calls_on_hold.is_none(),
        "session_timer" => s.session_timer.is_none(),
        "max_early_dialogs" => s.max_early_dialogs.is_none(),
        "remove_plus_from_uri" => s.remove_plus_from_uri.is_none(),
        "fast_failover" => s.fast_failover.is_none(),
        "fast_failover_timeout_secs" => s.fast_failover_timeout_secs.is_none(),
        "rtp_latching" => s.rtp_latching.is_none(),
        "forward_pai" => s.forward_pai.is_none(),
        "forward_call_history" => s.forward_call_history.is_none(),
        "called_number_rules" => s.called_number_rules.is_none(),
        "calling_number_rules" => s.calling_number_rules.is_none(),
        "inbound_called_number_rules" => s.inbound_called_number_rules.is_none(),
        "inbound_calling_number_rules" => s.inbound_calling_number_rules.is_none(),
        "response_code_rules" => s.response_code_rules.is_none(),
        _ => false,
    }
}

/// The flag that sets a field, for messages.
fn flag_name(field: &str) -> String {
    match field {
        "fast_failover_timeout_secs" => "fast-failover-timeout".into(),
        other => other.replace('_', "-"),
    }
}

pub fn update_request(
    scope: &str,
    s: &SettingsArgs,
    inherit: &InheritArgs,
    revision: &RevisionArg,
) -> Result<pb::UpdateTrunkConfigurationRequest, Failure> {
    let (settings, paths) = settings_and_paths(s, inherit)?;
    if paths.is_empty() {
        return Err(usage_error(format!(
            "nothing to change for {scope}: give a setting (e.g. --media-bypass true) or a rule \
             list flag; see `mediatorctl trunk-config set --help`"
        )));
    }
    if scope == "global"
        && paths
            .iter()
            .any(|p| is_absent(&settings, &p["settings.".len()..]))
    {
        return Err(usage_error(
            "the global configuration cannot inherit: it is where inheritance ends; give a value",
        ));
    }
    Ok(pb::UpdateTrunkConfigurationRequest {
        configuration: Some(pb::TrunkConfiguration {
            name: scope.to_string(),
            settings: Some(settings),
            meta: None,
        }),
        update_mask: Some(prost_types::FieldMask { paths }),
        expected_revision: revision.expected(),
    })
}

pub async fn run(ctx: &mut Ctx, cmd: ConfigCmd) -> Result<(), Failure> {
    let out = ctx.out;
    let client = &mut ctx.client;
    match cmd {
        ConfigCmd::Add { scope, settings } => {
            let req = pb::CreateTrunkConfigurationRequest {
                configuration: Some(pb::TrunkConfiguration {
                    name: scope,
                    settings: Some(create_settings(&settings)?),
                    meta: None,
                }),
            };
            let c = client.create_trunk_configuration(req).await?.into_inner();
            print_one(out, &c)
        }
        ConfigCmd::Set {
            scope,
            settings,
            inherit,
            revision,
        } => {
            let req = update_request(&scope, &settings, &inherit, &revision)?;
            let c = client.update_trunk_configuration(req).await?.into_inner();
            print_one(out, &c)
        }
        ConfigCmd::Show { scope } => {
            let c = client
                .get_trunk_configuration(pb::GetRequest { name: scope })
                .await?
                .into_inner();
            print_one(out, &c)
        }
        ConfigCmd::List => {
            let configs = all_pages(async |page_token| {
                let req = pb::ListTrunkConfigurationsRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                };
                let r = client.list_trunk_configurations(req).await?.into_inner();
                Ok((r.configurations, r.next_page_token))
            })
            .await?;
            print_list(out, &configs)
        }
        ConfigCmd::Remove { scope, revision } => {
            if scope == "global" {
                return Err(usage_error(
                    "the global configuration cannot be removed; change its values with \
                     `mediatorctl trunk-config set global ...`",
                ));
            }
            let req = pb::DeleteRequest {
                name: scope.clone(),
                expected_revision: revision.expected(),
            };
            client.delete_trunk_configuration(req).await?;
            print_removed(out, "trunk configuration", &scope)
        }
        ConfigCmd::Effective { trunk } => {
            let e = client
                .get_effective_trunk_configuration(pb::GetRequest { name: trunk })
                .await?
                .into_inner();
            print_effective(out, &e)
        }
    }
}

fn print_effective(out: Output, e: &pb::EffectiveTrunkConfiguration) -> Result<(), Failure> {
    match out {
        Output::Json => {
            let settings = e
                .settings
                .as_ref()
                .map(convert::settings_from_pb)
                .transpose()
                .map_err(|err| bad_reply("the effective configuration of", &e.trunk, err))?
                .unwrap_or_default();
            let sources: Vec<Value> = e
                .sources
                .iter()
                .map(|s| json!({ "name": s.name, "value": s.value, "scope": s.scope }))
                .collect();
            print_json(&json!({ "trunk": e.trunk, "settings": settings, "sources": sources }))
        }
        Output::Table => {
            let mut t = Table::new(&["SETTING", "VALUE", "SCOPE"]);
            for s in &e.sources {
                t.row([s.name.clone(), s.value.clone(), s.scope.clone()]);
            }
            emit(&t.render())
        }
    }
}

/// Each setting as rows of (name, value): one row per rule so long lists stay readable; absent
/// settings say where their value comes from.
fn setting_rows(name: &str, s: &pb::TrunkSettings) -> Result<Vec<(String, String)>, Failure> {
    let model =
        convert::settings_from_pb(s).map_err(|e| bad_reply("trunk configuration", name, e))?;
    let doc = serde_json::to_value(&model).map_err(|e| Failure::BadReply(e.to_string()))?;
    let mut rows = Vec::new();
    for field in SETTING_NAMES {
        let value = doc.get(*field);
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
        let c = convert::config_from_pb(self)
            .map_err(|e| bad_reply("trunk configuration", &self.name, e))?;
        Ok(convert::view(&c, self.meta.as_ref()))
    }

    fn row(&self) -> Vec<String> {
        let set: Vec<&str> = SETTING_NAMES
            .iter()
            .copied()
            .filter(|f| !self.settings.as_ref().is_none_or(|s| is_absent(s, f)))
            .collect();
        let summary = if set.is_empty() {
            "(all inherited)".to_string()
        } else if set.len() == SETTING_NAMES.len() {
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
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[command(subcommand)]
        cmd: ConfigCmd,
    }

    fn parse(args: &[&str]) -> Result<ConfigCmd, clap::Error> {
        T::try_parse_from(["t"].iter().chain(args)).map(|t| t.cmd)
    }

    fn set(args: &[&str]) -> Result<pb::UpdateTrunkConfigurationRequest, Failure> {
        match parse(&[&["set", "site:redmond"], args].concat()) {
            Ok(ConfigCmd::Set {
                scope,
                settings,
                inherit,
                revision,
            }) => update_request(&scope, &settings, &inherit, &revision),
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
        let Ok(ConfigCmd::Set {
            scope,
            settings,
            inherit,
            revision,
        }) = parse(&["set", "global", "--session-timer", "inherit"])
        else {
            panic!()
        };
        assert!(matches!(
            update_request(&scope, &settings, &inherit, &revision),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn add_refuses_inherit() {
        let Ok(ConfigCmd::Add { settings, .. }) =
            parse(&["add", "site:redmond", "--media-bypass", "inherit"])
        else {
            panic!()
        };
        match create_settings(&settings) {
            Err(Failure::Usage(m)) => assert!(m.starts_with("--media-bypass inherit"), "{m}"),
            other => panic!("{other:?}"),
        }
        let Ok(ConfigCmd::Add { settings, .. }) = parse(&[
            "add",
            "trunk:gw1.contoso.com",
            "--max-early-dialogs",
            "40",
            "--clear-response-codes",
        ]) else {
            panic!()
        };
        let s = create_settings(&settings).expect("settings");
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
            srtp_mode: Some(SrtpArg::NotSupported.pb()),
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

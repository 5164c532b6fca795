//! The trunk-configuration settings on the command line, generated from the model's one list
//! (`mediator_topology::for_each_setting!`). Each setting's flags and how they parse follow from
//! its name and its type in the model, its update-mask path is `settings.<name>`, and whether it
//! is absent is read from the wire's field of that name. A setting added to the list gets its
//! flags, mask and checks here without a line of its own; [`WORDS`] only gives it better words
//! in `--help`.

use std::sync::OnceLock;

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use mediator_proto::control::v1 as pb;
use mediator_topology::model::{ResponseCodeRule, Settings, SrtpMode, TranslationRule};
use mediator_topology::proto as convert;

use crate::parse::{self, Setting};

const SETTINGS_HEADING: &str = "Settings";
const LISTS_HEADING: &str = "Number translation";

/// What each setting does, as its flag's `--help` says it, before what its type adds (": true
/// or false", " (repeat; replaces the list)"). Words only: a setting missing here still gets
/// its flags, described by its name.
const WORDS: &[(&str, &str)] = &[
    ("srtp_mode", "SRTP for media toward the gateway"),
    (
        "media_bypass",
        "Media flows between client and gateway directly",
    ),
    ("refer_support", "Send REFER to the gateway for transfers"),
    ("rtcp_active_calls", "RTCP on active calls"),
    ("rtcp_calls_on_hold", "RTCP on calls on hold"),
    ("session_timer", "SIP session timers"),
    (
        "max_early_dialogs",
        "Early dialogs allowed per outbound INVITE (1-1000)",
    ),
    (
        "remove_plus_from_uri",
        "Strip '+' from numbers sent to the gateway",
    ),
    (
        "fast_failover",
        "Try the next trunk when the gateway does not answer in time",
    ),
    (
        "fast_failover_timeout_secs",
        "Seconds before fast failover gives up on a trunk (1-300)",
    ),
    (
        "rtp_latching",
        "Latch RTP to the address media actually comes from",
    ),
    ("forward_pai", "Forward P-Asserted-Identity"),
    (
        "forward_call_history",
        "Forward call history (History-Info)",
    ),
    (
        "called_number_rules",
        "Called-number rule for calls toward the gateway",
    ),
    (
        "calling_number_rules",
        "Calling-number rule for calls toward the gateway",
    ),
    (
        "inbound_called_number_rules",
        "Called-number rule for calls from the gateway",
    ),
    (
        "inbound_calling_number_rules",
        "Calling-number rule for calls from the gateway",
    ),
    (
        "response_code_rules",
        "Translate a SIP response code from the gateway, e.g. 408=503",
    ),
    (
        "srtp_passthrough",
        "Pass SRTP keys end to end and keep such streams in XDP",
    ),
    (
        "options_interval_secs",
        "Seconds between OPTIONS probes of the gateway (0-3600, 0: none)",
    ),
    (
        "options_failures",
        "Failed OPTIONS probes in a row that mark the trunk down (1-100)",
    ),
    (
        "follow_redirects",
        "Follow a gateway's 3xx to the gateways it names instead of relaying it",
    ),
    (
        "large_requests_over_tcp",
        "Send requests over 1300 bytes to a UDP trunk's gateway over TCP (RFC 3261 18.1.1)",
    ),
    (
        "ring_limit_secs",
        "Seconds a call may ring before it is cancelled and fails over (RFC 3261 Timer C, 10-3600)",
    ),
];

/// How a list is named by the flags that empty it or give it back to the wider scope.
struct ListWords {
    /// `called-rules` in `--clear-called-rules`.
    flag: String,
    /// "called-number rule list", for `--clear-…`.
    list: String,
    /// "called-number rules", for `--inherit-…`.
    items: String,
}

/// How a setting of this type is typed on the command line. Scalars take `inherit` as a
/// value; lists are replaced whole, and have `--clear-…` and `--inherit-…` flags instead.
trait FlagType: Sized {
    const HEADING: &'static str = SETTINGS_HEADING;
    /// What the type adds to the setting's words in `--help`.
    const HELP_TAIL: &'static str;

    /// The flag that gives a value, from the setting's name.
    fn long(field: &str) -> String {
        field.replace('_', "-")
    }

    /// For a list, how its other flags name it.
    fn list(_field: &str) -> Option<ListWords> {
        None
    }

    /// The value part of the flag: how many words, what they are called, how they parse.
    fn value(arg: Arg, field: &str) -> Arg;

    /// The setting as the flags in `m` give it, if they do.
    fn read(m: &ArgMatches, flag: &SettingFlag) -> Result<Option<Setting<Self>>, clap::Error>;
}

/// A scalar's flag as parsed: its parser gives `Setting<T>` (a value or `inherit`).
fn scalar<T: Clone + Send + Sync + 'static>(
    m: &ArgMatches,
    flag: &SettingFlag,
) -> Option<Setting<T>> {
    m.get_one::<Setting<T>>(&flag.long).cloned()
}

/// A list's flags as parsed: the items given, or empty with `--clear-…`.
fn list<T, V: Clone + Send + Sync + 'static>(
    m: &ArgMatches,
    flag: &SettingFlag,
    items: impl FnOnce(Vec<V>) -> Result<Vec<T>, String>,
) -> Result<Option<Setting<Vec<T>>>, clap::Error> {
    if let Some(values) = m.get_many::<V>(&flag.long) {
        let items = items(values.cloned().collect())
            .map_err(|e| clap::Error::raw(ErrorKind::WrongNumberOfValues, e))?;
        return Ok(Some(Setting::Value(items)));
    }
    let clear = flag.list.as_ref().is_some_and(|l| m.get_flag(&l.clear));
    Ok(clear.then(|| Setting::Value(Vec::new())))
}

impl FlagType for bool {
    const HELP_TAIL: &'static str = ": true or false";

    fn value(arg: Arg, _field: &str) -> Arg {
        arg.value_name("B")
            .value_parser(parse::bool_setting)
            .action(ArgAction::Set)
    }

    fn read(m: &ArgMatches, flag: &SettingFlag) -> Result<Option<Setting<Self>>, clap::Error> {
        Ok(scalar(m, flag))
    }
}

/// A duration's unit is in its value name, not in its flag: `--fast-failover-timeout SECS`.
const SECS: &str = "_secs";

impl FlagType for u32 {
    const HELP_TAIL: &'static str = "";

    fn long(field: &str) -> String {
        field.strip_suffix(SECS).unwrap_or(field).replace('_', "-")
    }

    fn value(arg: Arg, field: &str) -> Arg {
        let name = if field.ends_with(SECS) { "SECS" } else { "N" };
        arg.value_name(name)
            .value_parser(parse::u32_setting)
            .action(ArgAction::Set)
    }

    fn read(m: &ArgMatches, flag: &SettingFlag) -> Result<Option<Setting<Self>>, clap::Error> {
        Ok(scalar(m, flag))
    }
}

impl FlagType for SrtpMode {
    const HELP_TAIL: &'static str = ": required, optional or not_supported";

    fn value(arg: Arg, _field: &str) -> Arg {
        arg.value_name("MODE")
            .value_parser(parse::srtp_setting)
            .action(ArgAction::Set)
    }

    fn read(m: &ArgMatches, flag: &SettingFlag) -> Result<Option<Setting<Self>>, clap::Error> {
        Ok(scalar(m, flag))
    }
}

/// `called_number_rules` is given a rule at a time: `--called-rule NAME PATTERN TRANSLATION`.
const NUMBER_RULES: &str = "_number_rules";

impl FlagType for Vec<TranslationRule> {
    const HEADING: &'static str = LISTS_HEADING;
    const HELP_TAIL: &'static str = " (repeat; replaces the list)";

    fn long(field: &str) -> String {
        let stem = field.strip_suffix(NUMBER_RULES).unwrap_or(field);
        format!("{}-rule", stem.replace('_', "-"))
    }

    fn list(field: &str) -> Option<ListWords> {
        let stem = field.strip_suffix(NUMBER_RULES).unwrap_or(field);
        let words = stem.replace('_', " ");
        Some(ListWords {
            flag: format!("{}-rules", stem.replace('_', "-")),
            list: format!("{words}-number rule list"),
            items: format!("{words}-number rules"),
        })
    }

    fn value(arg: Arg, _field: &str) -> Arg {
        arg.num_args(3)
            .value_names(["NAME", "PATTERN", "TRANSLATION"])
            .allow_hyphen_values(true)
            .action(ArgAction::Append)
    }

    fn read(m: &ArgMatches, flag: &SettingFlag) -> Result<Option<Setting<Self>>, clap::Error> {
        // clap takes exactly three values per occurrence and appends them to one list.
        list(m, flag, |values: Vec<String>| {
            parse::translation_rules(&flag.long, &values)
        })
    }
}

/// `response_code_rules` is given a translation at a time: `--response-code 408=503`.
const RULES: &str = "_rules";

impl FlagType for Vec<ResponseCodeRule> {
    const HEADING: &'static str = LISTS_HEADING;
    const HELP_TAIL: &'static str = " (repeat; replaces the list)";

    fn long(field: &str) -> String {
        field.strip_suffix(RULES).unwrap_or(field).replace('_', "-")
    }

    fn list(field: &str) -> Option<ListWords> {
        let long = Self::long(field);
        Some(ListWords {
            flag: format!("{long}s"),
            list: format!("{long} list"),
            items: format!("{long} translations"),
        })
    }

    fn value(arg: Arg, _field: &str) -> Arg {
        arg.value_name("RECEIVED=TRANSLATED")
            .value_parser(parse::response_code)
            .action(ArgAction::Append)
    }

    fn read(m: &ArgMatches, flag: &SettingFlag) -> Result<Option<Setting<Self>>, clap::Error> {
        list(m, flag, |codes: Vec<ResponseCodeRule>| Ok(codes))
    }
}

/// A list's `--clear-…` flag (`add` and `set`) and `--inherit-…` flag (`set` only).
struct ListFlags {
    clear: String,
    clear_help: String,
    inherit: String,
    inherit_help: String,
}

type Reader =
    dyn Fn(&SettingFlag, &ArgMatches, &mut Settings) -> Result<bool, clap::Error> + Send + Sync;

/// One setting's flags. The table lives as long as the program, so clap can borrow its names.
pub struct SettingFlag {
    /// The model's field, and the wire's: `settings.<field>` in an update mask.
    pub field: &'static str,
    /// Gives a value (or, for a scalar, `inherit`): `srtp-mode`, `called-rule`.
    long: String,
    help: String,
    heading: &'static str,
    list: Option<ListFlags>,
    value: fn(Arg, &str) -> Arg,
    /// Stores what the flags give into the setting's field; false when they give nothing.
    read: Box<Reader>,
    absent: fn(&pb::TrunkSettings) -> bool,
}

impl SettingFlag {
    /// `slot` is where the setting lives in the model (its type decides the flags); `absent`
    /// reads the wire's field of the same name.
    fn new<T: FlagType + 'static>(
        field: &'static str,
        slot: fn(&mut Settings) -> &mut Option<T>,
        absent: fn(&pb::TrunkSettings) -> bool,
    ) -> Self {
        let words = WORDS
            .iter()
            .find(|(f, _)| *f == field)
            .map_or_else(|| field.replace('_', " "), |(_, w)| (*w).to_string());
        let list = T::list(field).map(|l| ListFlags {
            clear: format!("clear-{}", l.flag),
            clear_help: format!("Make the {} empty", l.list),
            inherit: format!("inherit-{}", l.flag),
            inherit_help: format!("Inherit the {} from the wider scope", l.items),
        });
        SettingFlag {
            field,
            long: T::long(field),
            help: format!("{words}{}", T::HELP_TAIL),
            heading: T::HEADING,
            list,
            value: T::value,
            read: Box::new(move |flag, m, settings| {
                let Some(given) = T::read(m, flag)? else {
                    return Ok(false);
                };
                *slot(settings) = match given {
                    Setting::Value(v) => Some(v),
                    Setting::Inherit => None,
                };
                Ok(true)
            }),
            absent,
        }
    }

    /// The flag as typed, for messages: `--srtp-mode`.
    pub fn flag(&self) -> String {
        format!("--{}", self.long)
    }

    /// Absent settings are inherited from the wider scope.
    pub fn is_absent(&self, s: &pb::TrunkSettings) -> bool {
        (self.absent)(s)
    }

    /// The flag that gives a value.
    fn arg(&'static self) -> Arg {
        let arg = Arg::new(self.long.as_str())
            .long(self.long.as_str())
            .help(self.help.as_str())
            .help_heading(self.heading);
        (self.value)(arg, self.field)
    }

    /// A list's `--clear-…` or `--inherit-…`, which rules out the flags in `conflicts`.
    fn switch(
        &'static self,
        long: &'static str,
        help: &'static str,
        conflicts: &[&'static str],
    ) -> Arg {
        Arg::new(long)
            .long(long)
            .action(ArgAction::SetTrue)
            .conflicts_with_all(conflicts)
            .help(help)
            .help_heading(self.heading)
    }
}

/// Every setting, in the model's order.
pub fn all() -> &'static [SettingFlag] {
    static TABLE: OnceLock<Vec<SettingFlag>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Vec::new();
        macro_rules! flag {
            ($f:ident) => {
                table.push(SettingFlag::new(
                    stringify!($f),
                    |s| &mut s.$f,
                    |s| s.$f.is_none(),
                ));
            };
        }
        mediator_topology::for_each_setting!(flag);
        table
    })
}

/// The settings flags of `add` and `set`: one per setting that gives a value, and a
/// `--clear-…` per list.
#[derive(Debug, Default)]
pub struct SettingsArgs {
    /// The values given; absent where a setting was not given or was given as `inherit`.
    values: Settings,
    /// The settings given, as a value or as `inherit`.
    given: Vec<&'static str>,
}

impl Args for SettingsArgs {
    fn augment_args(mut cmd: Command) -> Command {
        for flag in all() {
            cmd = cmd.arg(flag.arg());
            if let Some(list) = &flag.list {
                cmd = cmd.arg(flag.switch(&list.clear, &list.clear_help, &[&flag.long]));
            }
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SettingsArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = SettingsArgs::default();
        args.update_from_arg_matches(m)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for flag in all() {
            if (flag.read)(flag, m, &mut self.values)? && !self.given.contains(&flag.field) {
                self.given.push(flag.field);
            }
        }
        Ok(())
    }
}

/// `set` only: give a list back to the wider scope (a scalar takes `inherit` as its value).
#[derive(Debug, Default)]
pub struct InheritArgs {
    lists: Vec<&'static str>,
}

impl Args for InheritArgs {
    fn augment_args(mut cmd: Command) -> Command {
        for flag in all() {
            if let Some(list) = &flag.list {
                let conflicts = [flag.long.as_str(), list.clear.as_str()];
                cmd = cmd.arg(flag.switch(&list.inherit, &list.inherit_help, &conflicts));
            }
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for InheritArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = InheritArgs::default();
        args.update_from_arg_matches(m)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for flag in all() {
            let given = flag.list.as_ref().is_some_and(|l| m.get_flag(&l.inherit));
            if given && !self.lists.contains(&flag.field) {
                self.lists.push(flag.field);
            }
        }
        Ok(())
    }
}

/// What the settings flags of one command ask for.
#[derive(Debug)]
pub struct Changes {
    /// The values given. A setting given as `inherit` is absent, which the server reads as
    /// "clear it" when the mask names it.
    pub settings: pb::TrunkSettings,
    /// Every setting given, as a value or as `inherit`, in the model's order.
    pub given: Vec<&'static SettingFlag>,
}

impl Changes {
    pub fn new(s: &SettingsArgs, inherit: &InheritArgs) -> Self {
        let given = all()
            .iter()
            .filter(|f| s.given.contains(&f.field) || inherit.lists.contains(&f.field))
            .collect();
        Changes {
            settings: convert::settings_to_pb(&s.values),
            given,
        }
    }

    /// The update mask's paths: `settings.<field>` for each setting given.
    pub fn mask(&self) -> Vec<String> {
        self.given
            .iter()
            .map(|f| format!("settings.{}", f.field))
            .collect()
    }

    /// The settings given as `inherit`.
    pub fn inherited(&self) -> impl Iterator<Item = &'static SettingFlag> + '_ {
        self.given
            .iter()
            .copied()
            .filter(|f| f.is_absent(&self.settings))
    }
}

impl std::fmt::Debug for SettingFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingFlag")
            .field("field", &self.field)
            .field("long", &self.long)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediator_topology::model::SETTING_NAMES;

    #[test]
    fn every_setting_of_the_model_has_flags_in_its_order() {
        let fields: Vec<&str> = all().iter().map(|f| f.field).collect();
        assert_eq!(fields, SETTING_NAMES);
        for (field, _) in WORDS {
            assert!(fields.contains(field), "WORDS names no setting {field}");
        }
    }

    #[test]
    fn flags_are_named_from_the_settings() {
        let find = |field: &str| all().iter().find(|f| f.field == field).expect(field);
        assert_eq!(find("srtp_mode").flag(), "--srtp-mode");
        assert_eq!(
            find("fast_failover_timeout_secs").flag(),
            "--fast-failover-timeout"
        );
        let called = find("inbound_called_number_rules");
        assert_eq!(called.flag(), "--inbound-called-rule");
        let list = called.list.as_ref().expect("a list");
        assert_eq!(list.clear, "clear-inbound-called-rules");
        assert_eq!(
            list.inherit_help,
            "Inherit the inbound called-number rules from the wider scope"
        );
        let codes = find("response_code_rules");
        assert_eq!(codes.flag(), "--response-code");
        let list = codes.list.as_ref().expect("a list");
        assert_eq!(list.inherit, "inherit-response-codes");
        assert_eq!(list.clear_help, "Make the response-code list empty");
        assert!(find("media_bypass").list.is_none());
    }
}

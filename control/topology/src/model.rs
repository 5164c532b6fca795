//! The topology's resources as Mediator's own types: pools, gateways, trunks, trunk
//! configuration, PSTN usages, voice routes and trunk moves, with field validation and Lync's
//! defaults. The same types are stored (JSON) and make up the topology document (TOML).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// A validation failure: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

pub fn field_error(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayKind {
    PstnGateway,
    IpPbx,
    Sbc,
}

impl GatewayKind {
    pub fn name(self) -> &'static str {
        match self {
            GatewayKind::PstnGateway => "pstn-gateway",
            GatewayKind::IpPbx => "ip-pbx",
            GatewayKind::Sbc => "sbc",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SrtpMode {
    Required,
    Optional,
    NotSupported,
}

impl SrtpMode {
    pub fn name(self) -> &'static str {
        match self {
            SrtpMode::Required => "required",
            SrtpMode::Optional => "optional",
            SrtpMode::NotSupported => "not_supported",
        }
    }
}

/// Lync's EncryptionLevel for a pool's media toward its Front End pool (the pool setting
/// `media_encryption`): SRTP only, SRTP when the peer offers it, or plain RTP only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaEncryption {
    #[default]
    Required,
    Supported,
    NotSupported,
}

impl MediaEncryption {
    pub fn name(self) -> &'static str {
        match self {
            MediaEncryption::Required => "required",
            MediaEncryption::Supported => "supported",
            MediaEncryption::NotSupported => "not_supported",
        }
    }
}

/// A SIP peer: host (FQDN or IP literal), port and transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPort {
    pub host: String,
    /// 0: none given, found by DNS SRV (an FQDN only).
    pub port: u16,
    pub transport: Transport,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    pub site: String,
    #[serde(default)]
    pub dataplanes: Vec<String>,
    pub pool_side_listen: SocketAddr,
    pub gateway_side_address: IpAddr,
    pub next_hop: HostPort,
    /// SRTP toward the Front End pool (Lync's EncryptionLevel); `required` when absent.
    #[serde(default)]
    pub media_encryption: MediaEncryption,
    /// Draining (`mediatorctl pool drain`): new calls on the pool are refused with 503 and
    /// Retry-After so the Front End and gateways fail over; calls in progress continue.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub name: String,
    pub kind: GatewayKind,
    pub site: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: String,
    pub gateway: String,
    /// 0: none given, found by DNS SRV (a gateway named by FQDN only).
    pub gateway_port: u16,
    pub transport: Transport,
    pub pool: String,
    pub pool_port: u16,
}

impl Trunk {
    /// A gateway's root trunk carries the gateway's own name.
    pub fn is_root(&self) -> bool {
        self.name == self.gateway
    }
}

/// Where a trunk configuration applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Global,
    Site(String),
    Trunk(String),
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, FieldError> {
        let bad = || {
            field_error(
                "name",
                format!("'{s}' is not 'global', 'site:NAME' or 'trunk:NAME'"),
            )
        };
        match s.split_once(':') {
            None if s == "global" => Ok(Scope::Global),
            Some(("site", site)) if !site.is_empty() => Ok(Scope::Site(site.into())),
            Some(("trunk", trunk)) if !trunk.is_empty() => Ok(Scope::Trunk(trunk.into())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Site(s) => write!(f, "site:{s}"),
            Scope::Trunk(t) => write!(f, "trunk:{t}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationRule {
    pub name: String,
    pub pattern: String,
    pub translation: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseCodeRule {
    pub received: u16,
    pub translated: u16,
}

/// The default ring limit: four minutes, past RFC 3261's "larger than 3 minutes" for Timer C.
pub const DEFAULT_RING_LIMIT_SECS: u32 = 240;

/// Lync's trunk configuration settings. `None` is "inherited" (never at global scope).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srtp_mode: Option<SrtpMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_bypass: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refer_support: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp_active_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp_calls_on_hold: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_timer: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_early_dialogs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_plus_from_uri: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_failover: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_failover_timeout_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtp_latching: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_pai: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_call_history: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub called_number_rules: Option<Vec<TranslationRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calling_number_rules: Option<Vec<TranslationRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_called_number_rules: Option<Vec<TranslationRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_calling_number_rules: Option<Vec<TranslationRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code_rules: Option<Vec<ResponseCodeRule>>,
    /// With SRTP on both legs in the same suite, pass the peers' own keys end to end and keep
    /// the stream in XDP instead of terminating SRTP on each leg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srtp_passthrough: Option<bool>,
    /// Seconds between the OPTIONS probes of the trunk's peer (0: no probing, the trunk is
    /// never marked down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options_interval_secs: Option<u32>,
    /// Consecutive failed probes that mark the trunk down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options_failures: Option<u32>,
    /// A 3xx from the gateway is followed (its Contacts tried as the next targets) instead of
    /// relayed to the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
    /// A request over 1300 bytes to the gateway of a UDP trunk goes over TCP to the same
    /// address and port (RFC 3261 §18.1.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub large_requests_over_tcp: Option<bool>,
    /// Seconds a call may ring (a provisional, no final answer) before the INVITE is cancelled
    /// and the call fails over like a timeout (RFC 3261 Timer C).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_limit_secs: Option<u32>,
}

/// Applies `$m!` to every setting: `$m!(field_name)`. One list, so merging, masks, effective
/// sources and the "not enforced" list can never miss a setting.
#[macro_export]
macro_rules! for_each_setting {
    ($m:ident) => {
        $m!(srtp_mode);
        $m!(media_bypass);
        $m!(refer_support);
        $m!(rtcp_active_calls);
        $m!(rtcp_calls_on_hold);
        $m!(session_timer);
        $m!(max_early_dialogs);
        $m!(remove_plus_from_uri);
        $m!(fast_failover);
        $m!(fast_failover_timeout_secs);
        $m!(rtp_latching);
        $m!(forward_pai);
        $m!(forward_call_history);
        $m!(called_number_rules);
        $m!(calling_number_rules);
        $m!(inbound_called_number_rules);
        $m!(inbound_calling_number_rules);
        $m!(response_code_rules);
        $m!(srtp_passthrough);
        $m!(options_interval_secs);
        $m!(options_failures);
        $m!(follow_redirects);
        $m!(large_requests_over_tcp);
        $m!(ring_limit_secs);
    };
}

pub const SETTING_NAMES: &[&str] = &[
    "srtp_mode",
    "media_bypass",
    "refer_support",
    "rtcp_active_calls",
    "rtcp_calls_on_hold",
    "session_timer",
    "max_early_dialogs",
    "remove_plus_from_uri",
    "fast_failover",
    "fast_failover_timeout_secs",
    "rtp_latching",
    "forward_pai",
    "forward_call_history",
    "called_number_rules",
    "calling_number_rules",
    "inbound_called_number_rules",
    "inbound_calling_number_rules",
    "response_code_rules",
    "srtp_passthrough",
    "options_interval_secs",
    "options_failures",
    "follow_redirects",
    "large_requests_over_tcp",
    "ring_limit_secs",
];

impl Settings {
    /// Lync Server 2013's defaults: the global scope's initial settings.
    pub fn lync_defaults() -> Self {
        Settings {
            srtp_mode: Some(SrtpMode::Required),
            media_bypass: Some(false),
            refer_support: Some(true),
            rtcp_active_calls: Some(true),
            rtcp_calls_on_hold: Some(true),
            session_timer: Some(false),
            max_early_dialogs: Some(20),
            remove_plus_from_uri: Some(false),
            fast_failover: Some(true),
            fast_failover_timeout_secs: Some(10),
            rtp_latching: Some(false),
            forward_pai: Some(false),
            forward_call_history: Some(false),
            called_number_rules: Some(Vec::new()),
            calling_number_rules: Some(Vec::new()),
            inbound_called_number_rules: Some(Vec::new()),
            inbound_calling_number_rules: Some(Vec::new()),
            response_code_rules: Some(Vec::new()),
            srtp_passthrough: Some(false),
            options_interval_secs: Some(60),
            options_failures: Some(5),
            follow_redirects: Some(false),
            large_requests_over_tcp: Some(false),
            ring_limit_secs: Some(DEFAULT_RING_LIMIT_SECS),
        }
    }

    /// Gives every setting absent here `from`'s value (a store written before a setting
    /// existed gets its default at global scope).
    pub fn fill_from(&mut self, from: &Settings) -> Vec<&'static str> {
        let mut filled = Vec::new();
        macro_rules! fill {
            ($f:ident) => {
                if self.$f.is_none() && from.$f.is_some() {
                    self.$f = from.$f.clone();
                    filled.push(stringify!($f));
                }
            };
        }
        for_each_setting!(fill);
        filled
    }

    /// Settings that are absent (inherited).
    pub fn missing(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        macro_rules! check {
            ($f:ident) => {
                if self.$f.is_none() {
                    out.push(stringify!($f));
                }
            };
        }
        for_each_setting!(check);
        out
    }

    pub fn validate(&self, prefix: &str) -> Result<(), FieldError> {
        if let Some(n) = self.max_early_dialogs
            && !(1..=1000).contains(&n)
        {
            return Err(field_error(
                format!("{prefix}max_early_dialogs"),
                format!("{n} is outside 1-1000"),
            ));
        }
        if let Some(n) = self.options_interval_secs
            && n > 3600
        {
            return Err(field_error(
                format!("{prefix}options_interval_secs"),
                format!("{n} is outside 0-3600 (0: no probing)"),
            ));
        }
        if let Some(n) = self.options_failures
            && !(1..=100).contains(&n)
        {
            return Err(field_error(
                format!("{prefix}options_failures"),
                format!("{n} is outside 1-100"),
            ));
        }
        if let Some(n) = self.ring_limit_secs
            && !(10..=3600).contains(&n)
        {
            return Err(field_error(
                format!("{prefix}ring_limit_secs"),
                format!("{n} is outside 10-3600"),
            ));
        }
        if let Some(n) = self.fast_failover_timeout_secs
            && !(1..=300).contains(&n)
        {
            return Err(field_error(
                format!("{prefix}fast_failover_timeout_secs"),
                format!("{n} is outside 1-300"),
            ));
        }
        for (name, rules) in [
            ("called_number_rules", &self.called_number_rules),
            ("calling_number_rules", &self.calling_number_rules),
            (
                "inbound_called_number_rules",
                &self.inbound_called_number_rules,
            ),
            (
                "inbound_calling_number_rules",
                &self.inbound_calling_number_rules,
            ),
        ] {
            let Some(rules) = rules else { continue };
            let mut seen = std::collections::HashSet::new();
            for (i, r) in rules.iter().enumerate() {
                let at = format!("{prefix}{name}[{i}]");
                check_label(&format!("{at}.name"), &r.name)?;
                if !seen.insert(&r.name) {
                    return Err(field_error(
                        format!("{at}.name"),
                        format!("'{}' appears twice", r.name),
                    ));
                }
                check_regex(&format!("{at}.pattern"), &r.pattern)?;
                if r.translation.is_empty() {
                    return Err(field_error(
                        format!("{at}.translation"),
                        "must not be empty",
                    ));
                }
                check_text(&format!("{at}.translation"), &r.translation, 256)?;
                let groups = compile_pattern(&r.pattern)
                    .map(|re| re.captures_len())
                    .unwrap_or(1);
                normalize_translation(&format!("{at}.translation"), &r.translation, groups)?;
            }
        }
        if let Some(rules) = &self.response_code_rules {
            let mut seen = std::collections::HashSet::new();
            for (i, r) in rules.iter().enumerate() {
                let at = format!("{prefix}response_code_rules[{i}]");
                for (f, code) in [("received", r.received), ("translated", r.translated)] {
                    if !(400..=699).contains(&code) {
                        return Err(field_error(
                            format!("{at}.{f}"),
                            format!("{code} is not a SIP final error code (400-699)"),
                        ));
                    }
                }
                if !seen.insert(r.received) {
                    return Err(field_error(
                        format!("{at}.received"),
                        format!("{} is translated twice", r.received),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PstnUsage {
    pub name: String,
    #[serde(default)]
    pub priority: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceRoute {
    pub name: String,
    pub pattern: String,
    #[serde(default)]
    pub priority: u32,
    pub trunks: Vec<String>,
    pub pstn_usages: Vec<String>,
    #[serde(default)]
    pub suppress_caller_id: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alternate_caller_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkMove {
    pub id: u64,
    pub unix_ms: u64,
    pub from_pool: String,
    pub to_pool: String,
    pub trunks: Vec<String>,
}

/// Revision and timestamps of a stored resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub revision: u64,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
}

// ---- field validation ---------------------------------------------------------------------

/// An FQDN-like name: labels of [a-z0-9-] (not starting or ending with '-') joined by dots.
pub fn check_fqdn(field: &str, s: &str) -> Result<(), FieldError> {
    if s.is_empty() || s.len() > 253 {
        return Err(field_error(field, "must be 1-253 characters"));
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(field_error(
                field,
                format!(
                    "'{s}' is not an FQDN-like name (lower-case labels of a-z, 0-9, '-', joined by dots)"
                ),
            ));
        }
    }
    Ok(())
}

/// A host: an IP literal or an FQDN-like name.
pub fn check_host(field: &str, s: &str) -> Result<(), FieldError> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    check_fqdn(field, s)
        .map_err(|_| field_error(field, format!("'{s}' is neither an IP address nor an FQDN")))
}

/// A site or rule name: 1-64 characters of [A-Za-z0-9._-].
pub fn check_label(field: &str, s: &str) -> Result<(), FieldError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(field_error(
            field,
            format!("'{s}' must be 1-64 characters of A-Z a-z 0-9 . _ -"),
        ))
    }
}

/// A usage, route or trunk name: 1-128 printable characters, no control characters, no leading
/// or trailing space.
pub fn check_name(field: &str, s: &str) -> Result<(), FieldError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.chars().any(char::is_control)
        && s.trim() == s
        && !s.contains(['/', '\\']);
    if ok {
        Ok(())
    } else {
        Err(field_error(
            field,
            format!("'{s}' must be 1-128 printable characters without / or \\, no outer spaces"),
        ))
    }
}

pub fn check_port(field: &str, p: u16) -> Result<(), FieldError> {
    if p == 0 {
        Err(field_error(field, "must be 1-65535"))
    } else {
        Ok(())
    }
}

/// A peer's port: 1-65535, or 0 ("none given": found by DNS SRV, RFC 3263 §4.2) when the host
/// is an FQDN.
pub fn check_peer_port(field: &str, host: &str, p: u16) -> Result<(), FieldError> {
    if p == 0 && host.parse::<IpAddr>().is_ok() {
        return Err(field_error(
            field,
            "must be 1-65535 for an IP address (0, found by DNS SRV, needs an FQDN)",
        ));
    }
    Ok(())
}

/// Compiles a number pattern so that it must match the whole number (as Lync's anchored
/// patterns mean), with a bounded program size.
pub fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    // Every call routes through the voice routes' and trunks' patterns: compiling them each time
    // was most of a call's CPU. Compiled patterns are kept (a Regex clone is an Arc), bounded.
    const MAX_CACHED: usize = 4096;
    static CACHE: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, regex::Regex>>,
    > = std::sync::LazyLock::new(Default::default);
    if let Some(re) = CACHE.lock().ok().and_then(|c| c.get(pattern).cloned()) {
        return Ok(re);
    }
    let re = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()?;
    if let Ok(mut c) = CACHE.lock() {
        if c.len() >= MAX_CACHED {
            c.clear();
        }
        c.insert(pattern.to_string(), re.clone());
    }
    Ok(re)
}

pub fn check_regex(field: &str, pattern: &str) -> Result<(), FieldError> {
    if pattern.is_empty() || pattern.len() > 1024 {
        return Err(field_error(field, "must be 1-1024 characters"));
    }
    compile_pattern(pattern).map(|_| ()).map_err(|e| {
        field_error(
            field,
            format!(
                "not a valid regular expression: {}",
                one_line(&e.to_string())
            ),
        )
    })
}

/// A translation: `$1`, `$2` … name the pattern's groups (all of which must exist); anything
/// else is literal. Returns it in the regex crate's unambiguous `${n}` form.
pub fn normalize_translation(
    field: &str,
    translation: &str,
    groups: usize,
) -> Result<String, FieldError> {
    let mut out = String::with_capacity(translation.len() + 8);
    let mut chars = translation.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        if digits.is_empty() {
            return Err(field_error(
                field,
                "'$' must be followed by a group number ($1, $2 …)",
            ));
        }
        let n: usize = digits
            .parse()
            .map_err(|_| field_error(field, "group number too large"))?;
        if n == 0 || n >= groups {
            return Err(field_error(
                field,
                format!("${n} names a group the pattern does not have"),
            ));
        }
        out.push_str(&format!("${{{n}}}"));
    }
    Ok(out)
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), FieldError> {
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(field_error(
            field,
            format!("at most {max} characters, no control characters"),
        ));
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A dataplane address: host:port, an IPv6 host in brackets.
pub fn check_dataplane(field: &str, s: &str) -> Result<(), FieldError> {
    let bad = || {
        field_error(
            field,
            format!("'{s}' is not host:port (IPv6 as [addr]:port)"),
        )
    };
    let port = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        p
    } else {
        let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
        if h.contains(':') {
            return Err(bad());
        }
        check_host(field, h)?;
        p
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(field_error(
            field,
            format!("'{port}' is not a port (1-65535)"),
        )),
    }
}

/// A caller ID to present: digits, optionally with a leading '+'.
pub fn check_number(field: &str, s: &str) -> Result<(), FieldError> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || digits.len() > 32 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(field_error(
            field,
            format!("'{s}' is not a number (digits, optional leading +)"),
        ));
    }
    Ok(())
}

impl Pool {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_fqdn("name", &self.name)?;
        check_label("site", &self.site)?;
        if self.dataplanes.is_empty() {
            return Err(field_error(
                "dataplanes",
                "a pool needs at least one dataplane (host:port of a mediator-dataplane)",
            ));
        }
        for (i, d) in self.dataplanes.iter().enumerate() {
            check_dataplane(&format!("dataplanes[{i}]"), d)?;
            if self.dataplanes[..i].contains(d) {
                return Err(field_error(
                    format!("dataplanes[{i}]"),
                    format!("'{d}' appears twice"),
                ));
            }
        }
        if self.pool_side_listen.port() == 0 {
            return Err(field_error("pool_side_listen", "needs a port"));
        }
        check_host("next_hop.host", &self.next_hop.host)?;
        check_peer_port("next_hop.port", &self.next_hop.host, self.next_hop.port)
    }
}

impl Gateway {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_host("name", &self.name)?;
        // One spelling per peer: 2001:DB8::1 and 2001:db8:0::1 must not be two gateways.
        if let Ok(ip) = self.name.parse::<IpAddr>() {
            let canonical = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            if canonical.to_string() != self.name {
                return Err(field_error(
                    "name",
                    format!("write the address as {canonical}"),
                ));
            }
        }
        check_label("site", &self.site)
    }
}

impl Trunk {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_name("name", &self.name)?;
        check_host("gateway", &self.gateway)?;
        check_peer_port("gateway_port", &self.gateway, self.gateway_port)?;
        check_fqdn("pool", &self.pool)?;
        check_port("pool_port", self.pool_port)
    }
}

impl PstnUsage {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_name("name", &self.name)?;
        check_text("description", &self.description, 512)
    }
}

impl VoiceRoute {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_name("name", &self.name)?;
        check_regex("pattern", &self.pattern)?;
        if self.trunks.is_empty() {
            return Err(field_error("trunks", "a route needs at least one trunk"));
        }
        if self.pstn_usages.is_empty() {
            return Err(field_error(
                "pstn_usages",
                "a route needs at least one PSTN usage",
            ));
        }
        for (field, list) in [("trunks", &self.trunks), ("pstn_usages", &self.pstn_usages)] {
            let mut seen = std::collections::HashSet::new();
            for (i, n) in list.iter().enumerate() {
                if !seen.insert(n) {
                    return Err(field_error(
                        format!("{field}[{i}]"),
                        format!("'{n}' appears twice"),
                    ));
                }
            }
        }
        if self.suppress_caller_id {
            check_number("alternate_caller_id", &self.alternate_caller_id)?;
        } else if !self.alternate_caller_id.is_empty() {
            return Err(field_error(
                "alternate_caller_id",
                "only meaningful with suppress_caller_id",
            ));
        }
        check_text("description", &self.description, 512)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_fqdn("n", "pool1.contoso.com").is_ok());
        for bad in [
            "",
            "Pool.contoso.com",
            "a..b",
            "-a.b",
            "a_b.c",
            &"a".repeat(64),
        ] {
            assert!(check_fqdn("n", bad).is_err(), "{bad}");
        }
        assert!(check_host("h", "198.18.2.2").is_ok());
        assert!(check_host("h", "2001:2::1").is_ok());
        assert!(check_host("h", "gw 1").is_err());
        assert!(check_name("n", "Long Distance").is_ok());
        assert!(check_name("n", " x").is_err());
        assert!(check_name("n", "a/b").is_err());
        assert!(check_dataplane("d", "198.18.1.1:7400").is_ok());
        assert!(check_dataplane("d", "[2001:2::1]:7400").is_ok());
        assert!(
            check_dataplane("d", "::1:7400").is_err(),
            "ambiguous without brackets"
        );
        assert!(check_dataplane("d", "[relay.contoso.com]:7400").is_err());
        for (name, ok) in [
            ("gw1.contoso.com", true),
            ("198.18.2.2", true),
            ("2001:db8::1", true),
            ("2001:DB8:0::1", false),
            ("::ffff:198.18.2.2", false),
        ] {
            let g = Gateway {
                name: name.into(),
                kind: GatewayKind::Sbc,
                site: "s".into(),
            };
            assert_eq!(g.validate().is_ok(), ok, "{name}");
        }
        assert!(check_dataplane("d", "relay1.contoso.com:0").is_err());
        assert!(check_number("c", "+14255550100").is_ok());
        assert!(check_number("c", "+1-425").is_err());
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::parse("global"), Ok(Scope::Global));
        assert_eq!(
            Scope::parse("site:redmond"),
            Ok(Scope::Site("redmond".into()))
        );
        assert_eq!(
            Scope::parse("trunk:gw1").map(|s| s.to_string()),
            Ok("trunk:gw1".into())
        );
        assert!(Scope::parse("site:").is_err());
        assert!(Scope::parse("pool:x").is_err());
    }

    #[test]
    fn port_zero_means_srv_and_needs_a_name() {
        assert!(check_peer_port("gateway_port", "sbc.contoso.com", 0).is_ok());
        assert!(check_peer_port("gateway_port", "198.18.2.1", 5060).is_ok());
        let e = check_peer_port("next_hop.port", "198.18.2.1", 0).expect_err("ip without port");
        assert_eq!(e.field, "next_hop.port");
        assert!(check_peer_port("gateway_port", "2001:2::1", 0).is_err());
    }

    #[test]
    fn settings_validation_names_the_field() {
        let mut s = Settings {
            max_early_dialogs: Some(0),
            ..Default::default()
        };
        assert_eq!(
            s.validate("settings.").map_err(|e| e.field),
            Err("settings.max_early_dialogs".into())
        );
        s.max_early_dialogs = None;
        s.options_interval_secs = Some(3601);
        let e = s.validate("settings.").expect_err("interval");
        assert_eq!(e.field, "settings.options_interval_secs");
        s.options_interval_secs = Some(0);
        s.options_failures = Some(0);
        let e = s.validate("settings.").expect_err("failures");
        assert_eq!(e.field, "settings.options_failures");
        s.options_failures = Some(100);
        s.validate("settings.")
            .expect("0 (no probing) and 100 are allowed");
        s.called_number_rules = Some(vec![TranslationRule {
            name: "x".into(),
            pattern: "(".into(),
            translation: "$1".into(),
        }]);
        let e = s.validate("").expect_err("bad regex");
        assert_eq!(e.field, "called_number_rules[0].pattern");
        s.called_number_rules = None;
        s.response_code_rules = Some(vec![ResponseCodeRule {
            received: 408,
            translated: 200,
        }]);
        assert_eq!(
            s.validate("").map_err(|e| e.field),
            Err("response_code_rules[0].translated".into())
        );
        assert!(Settings::lync_defaults().missing().is_empty());
        assert_eq!(Settings::default().missing().len(), SETTING_NAMES.len());
    }

    #[test]
    fn routes() {
        let mut r = VoiceRoute {
            name: "local".into(),
            pattern: r"^\+1425(\d{7})$".into(),
            priority: 0,
            trunks: vec!["t1".into()],
            pstn_usages: vec!["Local".into()],
            suppress_caller_id: false,
            alternate_caller_id: String::new(),
            description: String::new(),
        };
        assert!(r.validate().is_ok());
        r.suppress_caller_id = true;
        assert_eq!(
            r.validate().map_err(|e| e.field),
            Err("alternate_caller_id".into())
        );
        r.alternate_caller_id = "+14255550100".into();
        assert!(r.validate().is_ok());
        r.trunks.push("t1".into());
        assert_eq!(r.validate().map_err(|e| e.field), Err("trunks[1]".into()));
    }
}

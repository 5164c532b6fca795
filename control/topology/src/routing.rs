//! Routing decisions on a topology, with no I/O: the effective trunk configuration (global, then
//! the gateway's site, then the trunk — the most specific setting wins), number translation, and
//! Lync's Test-CsVoiceRoute (which routes and trunks a dialled number tries, in order).

use crate::model::{FieldError, Scope, Settings, TranslationRule, field_error};
use crate::topology::{Topology, TopologyError};

/// The merged settings of a trunk and, for each setting, the scope it came from, and why a
/// value in force differs from the configured one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub settings: Settings,
    pub sources: Vec<(&'static str, String)>,
    pub notes: Vec<(&'static str, &'static str)>,
}

/// Why `srtp_mode` is `not_supported` on a trunk that is not TLS whatever its configuration says
/// (Lync does the same).
pub const SRTP_NOT_TLS: &str = "forced to not_supported: the trunk is not TLS, and SDES keys in SDP would cross the network in clear";

impl Topology {
    pub fn effective(&self, trunk: &str) -> Result<Effective, TopologyError> {
        let t = &self.get::<crate::model::Trunk>(trunk)?.value;
        let site = self.gateways.get(&t.gateway).map(|g| g.value.site.clone());
        let scopes: Vec<Scope> = [
            Some(Scope::Trunk(trunk.into())),
            site.map(Scope::Site),
            Some(Scope::Global),
        ]
        .into_iter()
        .flatten()
        .collect();
        let layers: Vec<(String, &Settings)> = scopes
            .iter()
            .filter_map(|s| {
                self.configs
                    .get(&s.to_string())
                    .map(|c| (s.to_string(), &c.value.settings))
            })
            .collect();
        let mut settings = Settings::default();
        let mut sources = Vec::new();
        macro_rules! merge {
            ($f:ident) => {
                if let Some((scope, value)) = layers
                    .iter()
                    .find_map(|(scope, l)| l.$f.clone().map(|v| (scope, v)))
                {
                    settings.$f = Some(value);
                    sources.push((stringify!($f), scope.clone()));
                }
            };
        }
        crate::for_each_setting!(merge);
        let mut notes = Vec::new();
        if t.transport != crate::model::Transport::Tls
            && settings.srtp_mode != Some(crate::model::SrtpMode::NotSupported)
        {
            settings.srtp_mode = Some(crate::model::SrtpMode::NotSupported);
            notes.push(("srtp_mode", SRTP_NOT_TLS));
        }
        Ok(Effective {
            settings,
            sources,
            notes,
        })
    }
}

/// Applies the first rule whose pattern matches the whole `number`; returns the result and the
/// rule's name.
pub fn translate(
    rules: &[TranslationRule],
    number: &str,
) -> Result<(String, Option<String>), FieldError> {
    for (i, r) in rules.iter().enumerate() {
        let re = crate::model::compile_pattern(&r.pattern)
            .map_err(|e| field_error(format!("rules[{i}].pattern"), e.to_string()))?;
        if let Some(caps) = re.captures(number) {
            let template = crate::model::normalize_translation(
                &format!("rules[{i}].translation"),
                &r.translation,
                re.captures_len(),
            )?;
            let mut out = String::new();
            caps.expand(&template, &mut out);
            return Ok((out, Some(r.name.clone())));
        }
    }
    Ok((number.to_string(), None))
}

/// One trunk a call would try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub usage: String,
    pub route: String,
    pub trunk: String,
    pub gateway: String,
    pub pool: String,
    pub called: String,
    pub calling: String,
    pub called_rule: Option<String>,
    pub calling_rule: Option<String>,
}

impl Topology {
    /// The usages in the order a call tries them when it names none: ascending priority, then name.
    pub fn usage_order(&self) -> Vec<String> {
        let mut v: Vec<_> = self
            .usages
            .values()
            .map(|u| (u.value.priority, u.value.name.clone()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// Lync's Test-CsVoiceRoute: for each usage in order, the routes of that usage whose pattern
    /// matches (by priority, then name), and each route's trunks in order, with the numbers as the
    /// gateway would receive them. A (route, trunk) pair is tried once even under two usages.
    pub fn test_route(
        &self,
        dialed: &str,
        usages: &[String],
        calling: &str,
    ) -> Result<Vec<Attempt>, TopologyError> {
        if dialed.is_empty() || dialed.len() > 64 || dialed.chars().any(char::is_control) {
            return Err(field_error("dialed_number", "must be 1-64 printable characters").into());
        }
        let order = if usages.is_empty() {
            self.usage_order()
        } else {
            usages.to_vec()
        };
        for (i, u) in order.iter().enumerate() {
            if !self.usages.contains_key(u) {
                return Err(field_error(
                    format!("pstn_usages[{i}]"),
                    format!("PSTN usage '{u}' does not exist"),
                )
                .into());
            }
        }
        let mut out: Vec<Attempt> = Vec::new();
        for usage in &order {
            let mut routes: Vec<_> = self
                .routes
                .values()
                .map(|r| &r.value)
                .filter(|r| r.pstn_usages.contains(usage))
                .collect();
            routes.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
            for route in routes {
                let re = crate::model::compile_pattern(&route.pattern)
                    .map_err(|e| TopologyError::Invalid(field_error("pattern", e.to_string())))?;
                if !re.is_match(dialed) {
                    continue;
                }
                for trunk in &route.trunks {
                    if out
                        .iter()
                        .any(|a| a.route == route.name && a.trunk == *trunk)
                    {
                        continue;
                    }
                    out.push(self.attempt(usage, route, trunk, dialed, calling)?);
                }
            }
        }
        Ok(out)
    }

    fn attempt(
        &self,
        usage: &str,
        route: &crate::model::VoiceRoute,
        trunk: &str,
        dialed: &str,
        calling: &str,
    ) -> Result<Attempt, TopologyError> {
        let t = &self.get::<crate::model::Trunk>(trunk)?.value;
        let eff = self.effective(trunk)?.settings;
        let (mut called, called_rule) = translate(
            eff.called_number_rules.as_deref().unwrap_or_default(),
            dialed,
        )?;
        let calling_in = if route.suppress_caller_id {
            route.alternate_caller_id.as_str()
        } else {
            calling
        };
        let (mut calling, calling_rule) = if calling_in.is_empty() {
            (String::new(), None)
        } else {
            translate(
                eff.calling_number_rules.as_deref().unwrap_or_default(),
                calling_in,
            )?
        };
        if eff.remove_plus_from_uri == Some(true) {
            called = called.trim_start_matches('+').to_string();
            calling = calling.trim_start_matches('+').to_string();
        }
        Ok(Attempt {
            usage: usage.into(),
            route: route.name.clone(),
            trunk: trunk.into(),
            gateway: t.gateway.clone(),
            pool: t.pool.clone(),
            called,
            calling,
            called_rule,
            calling_rule,
        })
    }
}

/// Where a call from a gateway goes: the trunk it arrived on, that trunk's pool and the pool's
/// next hop, with the numbers after the trunk's inbound translation rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub trunk: String,
    pub pool: String,
    pub next_hop: crate::model::HostPort,
    pub called: String,
    pub calling: String,
    pub called_rule: Option<String>,
    pub calling_rule: Option<String>,
}

impl Topology {
    /// The trunk a call from `gateway` to the pool's listening port `pool_port` arrived on: the
    /// integrity rules make it unique. `None` for a peer or port that is not configured (the call
    /// is refused).
    pub fn trunk_for(
        &self,
        gateway: &str,
        pool: &str,
        pool_port: u16,
    ) -> Option<&crate::model::Trunk> {
        self.trunks
            .values()
            .map(|t| &t.value)
            .find(|t| t.gateway == gateway && t.pool == pool && t.pool_port == pool_port)
    }

    /// Inbound routing: a call from a gateway's trunk goes to the trunk's pool and on to the pool's
    /// next hop, after the trunk's inbound translation rules.
    pub fn inbound(
        &self,
        trunk: &str,
        called: &str,
        calling: &str,
    ) -> Result<Inbound, TopologyError> {
        let t = &self.get::<crate::model::Trunk>(trunk)?.value;
        let pool = &self.get::<crate::model::Pool>(&t.pool)?.value;
        let eff = self.effective(trunk)?.settings;
        let (called, called_rule) = translate(
            eff.inbound_called_number_rules
                .as_deref()
                .unwrap_or_default(),
            called,
        )?;
        let (calling, calling_rule) = if calling.is_empty() {
            (String::new(), None)
        } else {
            translate(
                eff.inbound_calling_number_rules
                    .as_deref()
                    .unwrap_or_default(),
                calling,
            )?
        };
        Ok(Inbound {
            trunk: trunk.into(),
            pool: pool.name.clone(),
            next_hop: pool.next_hop.clone(),
            called,
            calling,
            called_rule,
            calling_rule,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PstnUsage, VoiceRoute};
    use crate::testing::sample;
    use crate::topology::{Changes, Item, TrunkConfig};

    fn rule(name: &str, pattern: &str, translation: &str) -> TranslationRule {
        TranslationRule {
            name: name.into(),
            pattern: pattern.into(),
            translation: translation.into(),
        }
    }

    fn route(
        name: &str,
        pattern: &str,
        priority: u32,
        trunks: &[&str],
        usages: &[&str],
    ) -> VoiceRoute {
        VoiceRoute {
            name: name.into(),
            pattern: pattern.into(),
            priority,
            trunks: trunks.iter().map(|s| s.to_string()).collect(),
            pstn_usages: usages.iter().map(|s| s.to_string()).collect(),
            suppress_caller_id: false,
            alternate_caller_id: String::new(),
            description: String::new(),
        }
    }

    fn routed() -> Topology {
        let mut t = sample();
        let mut ch = Changes::default();
        for (name, prio) in [("Local", 1), ("Long Distance", 2)] {
            t.create(
                PstnUsage {
                    name: name.into(),
                    priority: prio,
                    description: String::new(),
                },
                1,
                &mut ch,
            )
            .expect("usage");
        }
        t.create(
            route(
                "redmond",
                r"^\+1425(\d{7})$",
                0,
                &["gw1-5068", "gw1.contoso.com"],
                &["Local"],
            ),
            1,
            &mut ch,
        )
        .expect("route");
        t.create(
            route(
                "us",
                r"^\+1(\d{10})$",
                5,
                &["gw1.contoso.com"],
                &["Long Distance", "Local"],
            ),
            1,
            &mut ch,
        )
        .expect("route");
        t.create(
            TrunkConfig {
                name: "trunk:gw1-5068".into(),
                settings: Settings {
                    called_number_rules: Some(vec![rule("national", r"^\+1(\d{10})$", "1$1")]),
                    remove_plus_from_uri: Some(true),
                    ..Default::default()
                },
            },
            1,
            &mut ch,
        )
        .expect("config");
        t
    }

    #[test]
    fn routes_in_usage_then_priority_order_with_failover_trunks() {
        let t = routed();
        let a = t
            .test_route("+14255550100", &[], "+14255550111")
            .expect("test");
        let got: Vec<(&str, &str, &str)> = a
            .iter()
            .map(|x| (x.route.as_str(), x.trunk.as_str(), x.called.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("redmond", "gw1-5068", "14255550100"),
                ("redmond", "gw1.contoso.com", "+14255550100"),
                ("us", "gw1.contoso.com", "+14255550100"),
            ]
        );
        assert_eq!(a[0].called_rule.as_deref(), Some("national"));
        assert_eq!(
            a[0].calling, "14255550111",
            "remove_plus_from_uri applies to the calling number too"
        );
        assert_eq!(a[1].called_rule, None);
    }

    #[test]
    fn patterns_and_rules_match_the_whole_number() {
        let t = routed();
        assert!(
            t.test_route("+142555501009", &[], "")
                .expect("test")
                .iter()
                .all(|a| a.route != "redmond"),
            "one digit too many"
        );
        assert!(
            t.test_route("9+14255550100", &[], "")
                .expect("test")
                .is_empty(),
            "prefix"
        );
        let rules = [rule("e164", r"(\d{10})", "+1$1")];
        assert_eq!(
            translate(&rules, "14255550100").expect("t").0,
            "14255550100",
            "11 digits: no match"
        );
        assert_eq!(
            translate(&rules, "4255550100").expect("t").0,
            "+14255550100"
        );
        let rules = [rule("x", r"(\d)(\d+)", "$1x$2")];
        assert_eq!(
            translate(&rules, "123").expect("t").0,
            "1x23",
            "$1x is group 1 then 'x'"
        );
    }

    #[test]
    fn usage_list_restricts_and_orders() {
        let t = routed();
        let a = t
            .test_route("+12065550100", &["Long Distance".into()], "")
            .expect("test");
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].usage.as_str(), a[0].route.as_str()),
            ("Long Distance", "us")
        );
        assert!(
            t.test_route("+4930123456", &[], "")
                .expect("test")
                .is_empty(),
            "no pattern matches"
        );
        let e = t
            .test_route("+1", &["Nope".into()], "")
            .expect_err("unknown usage");
        assert!(e.to_string().contains("pstn_usages[0]"), "{e}");
    }

    #[test]
    fn suppressed_caller_id_uses_the_alternate() {
        let mut t = routed();
        let mut r = t.routes["us"].value.clone();
        r.suppress_caller_id = true;
        r.alternate_caller_id = "+14255550000".into();
        t.routes.insert(
            "us".into(),
            Item {
                meta: Default::default(),
                value: r,
            },
        );
        let a = t
            .test_route("+12065550100", &[], "+14255550111")
            .expect("test");
        assert_eq!(a[0].calling, "+14255550000");
    }

    #[test]
    fn inbound_calls_go_to_the_trunks_pool_after_inbound_rules() {
        let mut t = routed();
        let mut ch = Changes::default();
        t.update::<TrunkConfig>("trunk:gw1-5068", 0, 2, &mut ch, |c| {
            c.settings.inbound_called_number_rules =
                Some(vec![rule("e164", r"^(\d{10})$", "+1$1")]);
            Ok(())
        })
        .expect("config");
        let tr = t
            .trunk_for("gw1.contoso.com", "pool1.contoso.com", 5068)
            .expect("trunk by pool port");
        assert_eq!(tr.name, "gw1-5068");
        assert!(
            t.trunk_for("gw1.contoso.com", "pool1.contoso.com", 5999)
                .is_none(),
            "unknown port: refused"
        );
        assert!(
            t.trunk_for("gw9.contoso.com", "pool1.contoso.com", 5068)
                .is_none(),
            "unknown peer: refused"
        );
        let i = t
            .inbound("gw1-5068", "4255550100", "2065550111")
            .expect("inbound");
        assert_eq!(
            (i.pool.as_str(), i.next_hop.host.as_str(), i.next_hop.port),
            ("pool1.contoso.com", "fe.contoso.com", 5061)
        );
        assert_eq!(
            (i.called.as_str(), i.called_rule.as_deref()),
            ("+14255550100", Some("e164"))
        );
        assert_eq!(i.calling, "2065550111", "no calling rule: unchanged");
        let root = t
            .inbound("gw1.contoso.com", "4255550100", "")
            .expect("root trunk");
        assert_eq!(
            root.called, "4255550100",
            "the root trunk has no inbound rules"
        );
    }

    #[test]
    fn effective_settings_name_their_scope() {
        let mut t = routed();
        let mut ch = Changes::default();
        t.create(
            TrunkConfig {
                name: "site:redmond".into(),
                settings: Settings {
                    media_bypass: Some(true),
                    remove_plus_from_uri: Some(false),
                    ..Default::default()
                },
            },
            1,
            &mut ch,
        )
        .expect("site config");
        let e = t.effective("gw1-5068").expect("effective");
        let src = |n: &str| {
            e.sources
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, s)| s.as_str())
        };
        assert_eq!(
            src("remove_plus_from_uri"),
            Some("trunk:gw1-5068"),
            "trunk beats site"
        );
        assert_eq!(src("media_bypass"), Some("site:redmond"));
        assert_eq!(src("fast_failover_timeout_secs"), Some("global"));
        assert_eq!(e.settings.media_bypass, Some(true));
        assert_eq!(
            e.sources.len(),
            crate::model::SETTING_NAMES.len(),
            "every setting has a value and a source"
        );
        assert!(e.settings.missing().is_empty());
    }

    /// SDES keys must not cross the network in clear: on a trunk that is not TLS, srtp_mode is
    /// not_supported whatever the configuration says, with the reason; on TLS it is as set.
    #[test]
    fn srtp_mode_is_forced_off_on_trunks_that_are_not_tls_and_says_why() {
        let mut t = routed();
        t.trunks
            .get_mut("gw1.contoso.com")
            .expect("root trunk")
            .value
            .transport = crate::model::Transport::Tls;
        let mut seen = [false; 2];
        for trunk in t.trunks.values().map(|x| &x.value) {
            let e = t.effective(&trunk.name).expect("effective");
            let global = t.configs["global"].value.settings.srtp_mode;
            assert_ne!(global, Some(crate::model::SrtpMode::NotSupported));
            if trunk.transport == crate::model::Transport::Tls {
                seen[0] = true;
                assert_eq!(e.settings.srtp_mode, global, "{}", trunk.name);
                assert!(e.notes.is_empty(), "{}", trunk.name);
            } else {
                seen[1] = true;
                assert_eq!(
                    e.settings.srtp_mode,
                    Some(crate::model::SrtpMode::NotSupported),
                    "{}",
                    trunk.name
                );
                assert_eq!(e.notes, [("srtp_mode", SRTP_NOT_TLS)], "{}", trunk.name);
            }
        }
        assert_eq!(seen, [true, true], "the sample has TLS and other trunks");
    }
}

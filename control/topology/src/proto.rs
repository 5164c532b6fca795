//! Conversions between `mediator.control.v1` messages and the model: the one place wire types
//! meet Mediator's own. Incoming messages are validated on the way in (errors name the field).

use std::net::{IpAddr, SocketAddr};

use mediator_proto::control::v1 as pb;

use crate::model::{
    FieldError, Gateway, GatewayKind, HostPort, MediaEncryption, Meta, Pool, PstnUsage,
    ResponseCodeRule, Settings, SrtpMode, TranslationRule, Transport, Trunk, TrunkMove, VoiceRoute,
    field_error,
};
use crate::routing::{Attempt, Effective};
use crate::topology::{Item, TrunkConfig};

pub fn transport_from_pb(field: &str, t: i32) -> Result<Transport, FieldError> {
    match pb::Transport::try_from(t) {
        Ok(pb::Transport::Udp) => Ok(Transport::Udp),
        Ok(pb::Transport::Tcp) => Ok(Transport::Tcp),
        Ok(pb::Transport::Tls) => Ok(Transport::Tls),
        _ => Err(field_error(field, "must be udp, tcp or tls")),
    }
}

pub fn transport_to_pb(t: Transport) -> i32 {
    (match t {
        Transport::Udp => pb::Transport::Udp,
        Transport::Tcp => pb::Transport::Tcp,
        Transport::Tls => pb::Transport::Tls,
    }) as i32
}

pub fn kind_from_pb(field: &str, k: i32) -> Result<GatewayKind, FieldError> {
    match pb::GatewayKind::try_from(k) {
        Ok(pb::GatewayKind::PstnGateway) => Ok(GatewayKind::PstnGateway),
        Ok(pb::GatewayKind::IpPbx) => Ok(GatewayKind::IpPbx),
        Ok(pb::GatewayKind::Sbc) => Ok(GatewayKind::Sbc),
        _ => Err(field_error(field, "must be pstn-gateway, ip-pbx or sbc")),
    }
}

pub fn kind_to_pb(k: GatewayKind) -> i32 {
    (match k {
        GatewayKind::PstnGateway => pb::GatewayKind::PstnGateway,
        GatewayKind::IpPbx => pb::GatewayKind::IpPbx,
        GatewayKind::Sbc => pb::GatewayKind::Sbc,
    }) as i32
}

fn srtp_from_pb(field: &str, m: i32) -> Result<SrtpMode, FieldError> {
    match pb::SrtpMode::try_from(m) {
        Ok(pb::SrtpMode::Required) => Ok(SrtpMode::Required),
        Ok(pb::SrtpMode::Optional) => Ok(SrtpMode::Optional),
        Ok(pb::SrtpMode::NotSupported) => Ok(SrtpMode::NotSupported),
        _ => Err(field_error(
            field,
            "must be required, optional or not_supported",
        )),
    }
}

/// A pool's `media_encryption`; unspecified is the default, `required`.
pub fn media_encryption_from_pb(field: &str, m: i32) -> Result<MediaEncryption, FieldError> {
    match pb::MediaEncryption::try_from(m) {
        Ok(pb::MediaEncryption::Unspecified) => Ok(MediaEncryption::default()),
        Ok(pb::MediaEncryption::Required) => Ok(MediaEncryption::Required),
        Ok(pb::MediaEncryption::Supported) => Ok(MediaEncryption::Supported),
        Ok(pb::MediaEncryption::NotSupported) => Ok(MediaEncryption::NotSupported),
        Err(_) => Err(field_error(
            field,
            "must be required, supported or not_supported",
        )),
    }
}

pub fn media_encryption_to_pb(m: MediaEncryption) -> i32 {
    (match m {
        MediaEncryption::Required => pb::MediaEncryption::Required,
        MediaEncryption::Supported => pb::MediaEncryption::Supported,
        MediaEncryption::NotSupported => pb::MediaEncryption::NotSupported,
    }) as i32
}

fn srtp_to_pb(m: SrtpMode) -> i32 {
    (match m {
        SrtpMode::Required => pb::SrtpMode::Required,
        SrtpMode::Optional => pb::SrtpMode::Optional,
        SrtpMode::NotSupported => pb::SrtpMode::NotSupported,
    }) as i32
}

pub fn port(field: &str, p: u32) -> Result<u16, FieldError> {
    u16::try_from(p)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| field_error(field, format!("{p} is outside 1-65535")))
}

/// A peer's port: 0 is "none given" (an FQDN's port then comes from DNS SRV, RFC 3263 §4.2);
/// the model checks that the host is an FQDN.
pub fn peer_port(field: &str, p: u32) -> Result<u16, FieldError> {
    u16::try_from(p)
        .map_err(|_| field_error(field, format!("{p} is outside 0-65535 (0: by DNS SRV)")))
}

pub fn meta_to_pb(m: &Meta) -> Option<pb::Meta> {
    Some(pb::Meta {
        revision: m.revision,
        created_unix_ms: m.created_unix_ms,
        updated_unix_ms: m.updated_unix_ms,
    })
}

fn required<'a, T>(field: &str, v: &'a Option<T>) -> Result<&'a T, FieldError> {
    v.as_ref().ok_or_else(|| field_error(field, "is required"))
}

// ---- pool ---------------------------------------------------------------------------------

fn pool_from_pb(p: &pb::Pool) -> Result<Pool, FieldError> {
    let listen: SocketAddr = p.pool_side_listen.parse().map_err(|_| {
        field_error(
            "pool_side_listen",
            format!("'{}' is not ip:port", p.pool_side_listen),
        )
    })?;
    let gw_addr: IpAddr = p.gateway_side_address.parse().map_err(|_| {
        field_error(
            "gateway_side_address",
            format!("'{}' is not an IP address", p.gateway_side_address),
        )
    })?;
    let hop = required("next_hop", &p.next_hop)?;
    let pool = Pool {
        name: p.name.clone(),
        site: p.site.clone(),
        dataplanes: p.dataplanes.clone(),
        pool_side_listen: listen,
        gateway_side_address: gw_addr,
        next_hop: HostPort {
            host: hop.host.clone(),
            port: peer_port("next_hop.port", hop.port)?,
            transport: transport_from_pb("next_hop.transport", hop.transport)?,
        },
        media_encryption: media_encryption_from_pb("media_encryption", p.media_encryption)?,
        draining: p.draining,
    };
    pool.validate()?;
    Ok(pool)
}

pub fn pool_to_pb(item: &Item<Pool>) -> pb::Pool {
    let p = &item.value;
    pb::Pool {
        name: p.name.clone(),
        site: p.site.clone(),
        dataplanes: p.dataplanes.clone(),
        pool_side_listen: p.pool_side_listen.to_string(),
        gateway_side_address: p.gateway_side_address.to_string(),
        next_hop: Some(pb::HostPort {
            host: p.next_hop.host.clone(),
            port: u32::from(p.next_hop.port),
            transport: transport_to_pb(p.next_hop.transport),
        }),
        media_encryption: media_encryption_to_pb(p.media_encryption),
        draining: p.draining,
        meta: meta_to_pb(&item.meta),
        // Filled by the API from the resolver's cache, not stored.
        next_hop_resolved: Vec::new(),
    }
}

// ---- gateway and trunk ----------------------------------------------------------------------

fn gateway_from_pb(g: &pb::Gateway) -> Result<Gateway, FieldError> {
    let gw = Gateway {
        name: g.name.clone(),
        kind: kind_from_pb("kind", g.kind)?,
        site: g.site.clone(),
    };
    gw.validate()?;
    Ok(gw)
}

pub fn gateway_to_pb(item: &Item<Gateway>) -> pb::Gateway {
    let g = &item.value;
    pb::Gateway {
        name: g.name.clone(),
        kind: kind_to_pb(g.kind),
        site: g.site.clone(),
        root_trunk: g.name.clone(),
        meta: meta_to_pb(&item.meta),
        // Filled by the API from the resolver's cache, not stored.
        resolved: Vec::new(),
    }
}

/// The root trunk of `gateway` from its spec.
pub fn root_trunk_from_pb(gateway: &str, r: &pb::RootTrunkSpec) -> Result<Trunk, FieldError> {
    let t = Trunk {
        name: gateway.into(),
        gateway: gateway.into(),
        gateway_port: peer_port("root_trunk.gateway_port", r.gateway_port)?,
        transport: transport_from_pb("root_trunk.transport", r.transport)?,
        pool: r.pool.clone(),
        pool_port: port("root_trunk.pool_port", r.pool_port)?,
    };
    t.validate()
        .map_err(|e| field_error(format!("root_trunk.{}", e.field), e.reason))?;
    Ok(t)
}

fn trunk_from_pb(t: &pb::Trunk) -> Result<Trunk, FieldError> {
    let trunk = Trunk {
        name: t.name.clone(),
        gateway: t.gateway.clone(),
        gateway_port: peer_port("gateway_port", t.gateway_port)?,
        transport: transport_from_pb("transport", t.transport)?,
        pool: t.pool.clone(),
        pool_port: port("pool_port", t.pool_port)?,
    };
    trunk.validate()?;
    Ok(trunk)
}

pub fn trunk_to_pb(item: &Item<Trunk>) -> pb::Trunk {
    let t = &item.value;
    pb::Trunk {
        name: t.name.clone(),
        gateway: t.gateway.clone(),
        gateway_port: u32::from(t.gateway_port),
        transport: transport_to_pb(t.transport),
        pool: t.pool.clone(),
        pool_port: u32::from(t.pool_port),
        root: t.is_root(),
        // Runtime state, filled in by the API that has it.
        health: None,
        meta: meta_to_pb(&item.meta),
    }
}

// ---- trunk configuration ------------------------------------------------------------------

fn rules_from_pb(r: &Option<pb::RuleList>) -> Option<Vec<TranslationRule>> {
    r.as_ref().map(|l| {
        l.rules
            .iter()
            .map(|x| TranslationRule {
                name: x.name.clone(),
                pattern: x.pattern.clone(),
                translation: x.translation.clone(),
            })
            .collect()
    })
}

fn rules_to_pb(r: &Option<Vec<TranslationRule>>) -> Option<pb::RuleList> {
    r.as_ref().map(|l| pb::RuleList {
        rules: l
            .iter()
            .map(|x| pb::TranslationRule {
                name: x.name.clone(),
                pattern: x.pattern.clone(),
                translation: x.translation.clone(),
            })
            .collect(),
    })
}

fn settings_from_pb(s: &pb::TrunkSettings) -> Result<Settings, FieldError> {
    let settings = settings_from_pb_unchecked(s)?;
    settings.validate("settings.")?;
    Ok(settings)
}

/// The conversion alone: an update validates the merged result, so fields outside its mask
/// are ignored, as a field mask promises, rather than refused.
pub fn settings_from_pb_unchecked(s: &pb::TrunkSettings) -> Result<Settings, FieldError> {
    let codes = match &s.response_code_rules {
        None => None,
        Some(l) => Some(
            l.rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let code = |f: &str, v: u32| {
                        u16::try_from(v).map_err(|_| {
                            field_error(
                                format!("settings.response_code_rules[{i}].{f}"),
                                format!("{v} is not a SIP code"),
                            )
                        })
                    };
                    Ok(ResponseCodeRule {
                        received: code("received", r.received)?,
                        translated: code("translated", r.translated)?,
                    })
                })
                .collect::<Result<Vec<_>, FieldError>>()?,
        ),
    };
    let settings = Settings {
        srtp_mode: s
            .srtp_mode
            .map(|m| srtp_from_pb("settings.srtp_mode", m))
            .transpose()?,
        media_bypass: s.media_bypass,
        refer_support: s.refer_support,
        rtcp_active_calls: s.rtcp_active_calls,
        rtcp_calls_on_hold: s.rtcp_calls_on_hold,
        session_timer: s.session_timer,
        max_early_dialogs: s.max_early_dialogs,
        remove_plus_from_uri: s.remove_plus_from_uri,
        fast_failover: s.fast_failover,
        fast_failover_timeout_secs: s.fast_failover_timeout_secs,
        rtp_latching: s.rtp_latching,
        forward_pai: s.forward_pai,
        forward_call_history: s.forward_call_history,
        called_number_rules: rules_from_pb(&s.called_number_rules),
        calling_number_rules: rules_from_pb(&s.calling_number_rules),
        inbound_called_number_rules: rules_from_pb(&s.inbound_called_number_rules),
        inbound_calling_number_rules: rules_from_pb(&s.inbound_calling_number_rules),
        response_code_rules: codes,
        srtp_passthrough: s.srtp_passthrough,
        options_interval_secs: s.options_interval_secs,
        options_failures: s.options_failures,
        follow_redirects: s.follow_redirects,
        large_requests_over_tcp: s.large_requests_over_tcp,
        ring_limit_secs: s.ring_limit_secs,
    };
    Ok(settings)
}

pub fn settings_to_pb(s: &Settings) -> pb::TrunkSettings {
    pb::TrunkSettings {
        srtp_mode: s.srtp_mode.map(srtp_to_pb),
        media_bypass: s.media_bypass,
        refer_support: s.refer_support,
        rtcp_active_calls: s.rtcp_active_calls,
        rtcp_calls_on_hold: s.rtcp_calls_on_hold,
        session_timer: s.session_timer,
        max_early_dialogs: s.max_early_dialogs,
        remove_plus_from_uri: s.remove_plus_from_uri,
        fast_failover: s.fast_failover,
        fast_failover_timeout_secs: s.fast_failover_timeout_secs,
        rtp_latching: s.rtp_latching,
        forward_pai: s.forward_pai,
        forward_call_history: s.forward_call_history,
        called_number_rules: rules_to_pb(&s.called_number_rules),
        calling_number_rules: rules_to_pb(&s.calling_number_rules),
        inbound_called_number_rules: rules_to_pb(&s.inbound_called_number_rules),
        inbound_calling_number_rules: rules_to_pb(&s.inbound_calling_number_rules),
        response_code_rules: s
            .response_code_rules
            .as_ref()
            .map(|l| pb::ResponseCodeRuleList {
                rules: l
                    .iter()
                    .map(|r| pb::ResponseCodeRule {
                        received: u32::from(r.received),
                        translated: u32::from(r.translated),
                    })
                    .collect(),
            }),
        srtp_passthrough: s.srtp_passthrough,
        options_interval_secs: s.options_interval_secs,
        options_failures: s.options_failures,
        follow_redirects: s.follow_redirects,
        large_requests_over_tcp: s.large_requests_over_tcp,
        ring_limit_secs: s.ring_limit_secs,
    }
}

fn config_from_pb(c: &pb::TrunkConfiguration) -> Result<TrunkConfig, FieldError> {
    let settings = c
        .settings
        .as_ref()
        .map(settings_from_pb)
        .transpose()?
        .unwrap_or_default();
    Ok(TrunkConfig {
        name: c.name.clone(),
        settings,
    })
}

pub fn config_to_pb(item: &Item<TrunkConfig>) -> pb::TrunkConfiguration {
    pb::TrunkConfiguration {
        name: item.value.name.clone(),
        settings: Some(settings_to_pb(&item.value.settings)),
        meta: meta_to_pb(&item.meta),
    }
}

/// A setting's value as text, for the effective configuration's sources.
pub fn setting_text(s: &Settings, name: &str) -> String {
    let v = serde_json::to_value(s).unwrap_or_default();
    match v.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(a)) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| match (x.get("name"), x.get("received")) {
                    (Some(n), _) => n.as_str().unwrap_or_default().to_string(),
                    (None, Some(r)) => format!(
                        "{}->{}",
                        r,
                        x.get("translated").cloned().unwrap_or_default()
                    ),
                    _ => x.to_string(),
                })
                .collect();
            format!("[{}]", items.join(", "))
        }
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

pub fn effective_to_pb(trunk: &str, e: &Effective) -> pb::EffectiveTrunkConfiguration {
    pb::EffectiveTrunkConfiguration {
        trunk: trunk.into(),
        settings: Some(settings_to_pb(&e.settings)),
        sources: e
            .sources
            .iter()
            .map(|(name, scope)| pb::EffectiveSetting {
                name: (*name).into(),
                value: setting_text(&e.settings, name),
                scope: scope.clone(),
                note: e
                    .notes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, why)| why.to_string())
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

// ---- usages, routes, moves, attempts ------------------------------------------------------

fn usage_from_pb(u: &pb::PstnUsage) -> Result<PstnUsage, FieldError> {
    let usage = PstnUsage {
        name: u.name.clone(),
        priority: u.priority,
        description: u.description.clone(),
    };
    usage.validate()?;
    Ok(usage)
}

pub fn usage_to_pb(item: &Item<PstnUsage>) -> pb::PstnUsage {
    let u = &item.value;
    pb::PstnUsage {
        name: u.name.clone(),
        priority: u.priority,
        description: u.description.clone(),
        meta: meta_to_pb(&item.meta),
    }
}

fn route_from_pb(r: &pb::VoiceRoute) -> Result<VoiceRoute, FieldError> {
    let route = VoiceRoute {
        name: r.name.clone(),
        pattern: r.pattern.clone(),
        priority: r.priority,
        trunks: r.trunks.clone(),
        pstn_usages: r.pstn_usages.clone(),
        suppress_caller_id: r.suppress_caller_id,
        alternate_caller_id: r.alternate_caller_id.clone(),
        description: r.description.clone(),
    };
    route.validate()?;
    Ok(route)
}

pub fn route_to_pb(item: &Item<VoiceRoute>) -> pb::VoiceRoute {
    let r = &item.value;
    pb::VoiceRoute {
        name: r.name.clone(),
        pattern: r.pattern.clone(),
        priority: r.priority,
        trunks: r.trunks.clone(),
        pstn_usages: r.pstn_usages.clone(),
        suppress_caller_id: r.suppress_caller_id,
        alternate_caller_id: r.alternate_caller_id.clone(),
        description: r.description.clone(),
        meta: meta_to_pb(&item.meta),
    }
}

pub fn move_to_pb(m: &TrunkMove) -> pb::TrunkMove {
    pb::TrunkMove {
        id: m.id,
        unix_ms: m.unix_ms,
        from_pool: m.from_pool.clone(),
        to_pool: m.to_pool.clone(),
        trunks: m.trunks.clone(),
    }
}

pub fn attempt_to_pb(a: &Attempt) -> pb::RouteAttempt {
    pb::RouteAttempt {
        pstn_usage: a.usage.clone(),
        route: a.route.clone(),
        trunk: a.trunk.clone(),
        gateway: a.gateway.clone(),
        pool: a.pool.clone(),
        called_number: a.called.clone(),
        calling_number: a.calling.clone(),
        called_rule: a.called_rule.clone().unwrap_or_default(),
        calling_rule: a.calling_rule.clone().unwrap_or_default(),
    }
}

// ---- views for mediatorctl ------------------------------------------------------------------

/// A resource as mediatorctl prints it: the model's own shape (as in the topology document) plus
/// its revision, so JSON output reads like the document and round-trips into it.
pub fn view<T: serde::Serialize>(value: &T, meta: Option<&pb::Meta>) -> serde_json::Value {
    let mut v = serde_json::to_value(value).unwrap_or_default();
    if let (Some(m), Some(obj)) = (meta, v.as_object_mut()) {
        obj.insert("revision".into(), m.revision.into());
    }
    v
}

/// The wire → model conversions of the resources, at this one boundary: `TryFrom` with a typed
/// error ([`FieldError`]) naming the field that is wrong.
macro_rules! try_from_pb {
    ($($model:ty => $pb:ty, $f:ident;)*) => {$(
        impl TryFrom<&$pb> for $model {
            type Error = FieldError;
            fn try_from(p: &$pb) -> Result<$model, FieldError> {
                $f(p)
            }
        }
    )*};
}

try_from_pb! {
    Pool => pb::Pool, pool_from_pb;
    Gateway => pb::Gateway, gateway_from_pb;
    Trunk => pb::Trunk, trunk_from_pb;
    TrunkConfig => pb::TrunkConfiguration, config_from_pb;
    PstnUsage => pb::PstnUsage, usage_from_pb;
    VoiceRoute => pb::VoiceRoute, route_from_pb;
    Settings => pb::TrunkSettings, settings_from_pb;
}

pub fn meta_from_pb(m: Option<&pb::Meta>) -> Meta {
    m.map(|m| Meta {
        revision: m.revision,
        created_unix_ms: m.created_unix_ms,
        updated_unix_ms: m.updated_unix_ms,
    })
    .unwrap_or_default()
}

//! Flag values that clap cannot parse by itself: HOST:PORT, RECEIVED=TRANSLATED, trunk settings
//! that may be `inherit`, and the enums of the API under the names the topology document uses.

use std::net::{IpAddr, SocketAddr};

use clap::ValueEnum;
use mediator_proto::control::v1 as pb;
use mediator_topology::model::{ResponseCodeRule, SrtpMode, TranslationRule};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Udp,
    Tcp,
    Tls,
}

impl TransportArg {
    pub fn pb(self) -> i32 {
        (match self {
            TransportArg::Udp => pb::Transport::Udp,
            TransportArg::Tcp => pb::Transport::Tcp,
            TransportArg::Tls => pb::Transport::Tls,
        }) as i32
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    PstnGateway,
    IpPbx,
    Sbc,
}

impl KindArg {
    pub fn pb(self) -> i32 {
        (match self {
            KindArg::PstnGateway => pb::GatewayKind::PstnGateway,
            KindArg::IpPbx => pb::GatewayKind::IpPbx,
            KindArg::Sbc => pb::GatewayKind::Sbc,
        }) as i32
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SrtpArg {
    Required,
    Optional,
    // The document spells it with an underscore; the dash is what people type after `ip-pbx`.
    #[value(name = "not_supported", alias = "not-supported")]
    NotSupported,
}

impl SrtpArg {
    pub fn model(self) -> SrtpMode {
        match self {
            SrtpArg::Required => SrtpMode::Required,
            SrtpArg::Optional => SrtpMode::Optional,
            SrtpArg::NotSupported => SrtpMode::NotSupported,
        }
    }
}

/// A pool's `media_encryption` (Lync's EncryptionLevel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EncryptionArg {
    Required,
    Supported,
    #[value(name = "not_supported", alias = "not-supported")]
    NotSupported,
}

impl EncryptionArg {
    pub fn pb(self) -> i32 {
        (match self {
            EncryptionArg::Required => pb::MediaEncryption::Required,
            EncryptionArg::Supported => pb::MediaEncryption::Supported,
            EncryptionArg::NotSupported => pb::MediaEncryption::NotSupported,
        }) as i32
    }
}

/// A SIP or gRPC peer as typed on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// `HOST:PORT`, with IPv6 literals in brackets (`[2001:db8::1]:5061`).
pub fn host_port(s: &str) -> Result<HostPort, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not HOST:PORT (e.g. fe1.contoso.com:5061)"))?;
    let host = match host.strip_prefix('[') {
        Some(h) => h
            .strip_suffix(']')
            .ok_or_else(|| format!("'{s}': an IPv6 address needs its closing ']'"))?,
        None if host.contains(':') => {
            return Err(format!(
                "'{s}': write an IPv6 address in brackets, e.g. [2001:db8::1]:5061"
            ));
        }
        None => host,
    };
    if host.is_empty() {
        return Err(format!("'{s}' has no host before the ':'"));
    }
    let port = port_number(port)?;
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// A SIP peer: `HOST:PORT`, or an FQDN alone (port 0: found by DNS SRV, RFC 3263).
pub fn sip_peer(s: &str) -> Result<HostPort, String> {
    if !s.contains(':') && !s.is_empty() && s.parse::<IpAddr>().is_err() {
        return Ok(HostPort {
            host: s.to_string(),
            port: 0,
        });
    }
    host_port(s).map_err(|e| format!("{e}; an FQDN may stand alone (its port found by DNS SRV)"))
}

/// An `IP:PORT` to listen on; clap's own message would not say what it wants.
pub fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .ok()
        .filter(|a| a.port() != 0)
        .ok_or_else(|| {
            format!("'{s}' is not IP:PORT with a port 1-65535 (e.g. 198.18.1.10:5061 or [2001:db8::10]:5061)")
        })
}

pub fn ip_addr(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>().map_err(|_| {
        format!("'{s}' is not an IP address (e.g. 198.18.2.10 or 2001:db8::10; no port, no name)")
    })
}

/// A dataplane's gRPC address, checked as HOST:PORT but sent as typed.
pub fn dataplane(s: &str) -> Result<String, String> {
    host_port(s).map(|_| s.to_string())
}

fn port_number(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("'{s}' is not a port (1-65535)")),
    }
}

/// A response-code translation as typed: `408=503`.
pub fn response_code(s: &str) -> Result<ResponseCodeRule, String> {
    let (r, t) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not RECEIVED=TRANSLATED (e.g. 408=503)"))?;
    let code = |c: &str| match c.trim().parse::<u16>() {
        Ok(n) if (100..=699).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{c}' in '{s}' is not a SIP response code (100-699); write e.g. 408=503"
        )),
    };
    Ok(ResponseCodeRule {
        received: code(r)?,
        translated: code(t)?,
    })
}

/// A trunk setting on the command line: a value, or `inherit` to take it from the wider scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting<T> {
    Value(T),
    Inherit,
}

const INHERIT: &str = "inherit";

pub fn bool_setting(s: &str) -> Result<Setting<bool>, String> {
    match s {
        "true" => Ok(Setting::Value(true)),
        "false" => Ok(Setting::Value(false)),
        INHERIT => Ok(Setting::Inherit),
        _ => Err(format!(
            "'{s}' is not true or false (or inherit, with `trunk-config set`)"
        )),
    }
}

pub fn u32_setting(s: &str) -> Result<Setting<u32>, String> {
    if s == INHERIT {
        return Ok(Setting::Inherit);
    }
    s.parse::<u32>()
        .map(Setting::Value)
        .map_err(|_| format!("'{s}' is not a whole number (or inherit, with `trunk-config set`)"))
}

pub fn srtp_setting(s: &str) -> Result<Setting<SrtpMode>, String> {
    if s == INHERIT {
        return Ok(Setting::Inherit);
    }
    SrtpArg::from_str(s, false).map(|a| Setting::Value(a.model())).map_err(|_| {
        format!(
            "'{s}' is not required, optional or not_supported (or inherit, with `trunk-config set`)"
        )
    })
}

/// The values of every `--called-rule NAME PATTERN TRANSLATION` occurrence, flattened by clap,
/// as rules. clap guarantees three values per occurrence; a short tail is reported, not trusted.
pub fn translation_rules(flag: &str, values: &[String]) -> Result<Vec<TranslationRule>, String> {
    let chunks = values.chunks_exact(3);
    if !chunks.remainder().is_empty() {
        return Err(format!(
            "--{flag} takes three values: NAME PATTERN TRANSLATION, e.g. --{flag} strip-plus '^\\+1(\\d{{10}})$' '1$1'"
        ));
    }
    Ok(chunks
        .filter_map(|c| match c {
            [name, pattern, translation] => Some(TranslationRule {
                name: name.clone(),
                pattern: pattern.clone(),
                translation: translation.clone(),
            }),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        assert_eq!(
            host_port("fe1.contoso.com:5061"),
            Ok(HostPort {
                host: "fe1.contoso.com".into(),
                port: 5061
            })
        );
        assert_eq!(
            host_port("[2001:db8::1]:5061").map(|h| h.host),
            Ok("2001:db8::1".into())
        );
        for bad in [
            "fe1.contoso.com",
            "fe1:0",
            "fe1:70000",
            ":5061",
            "2001:db8::1:5061",
            "[2001:db8::1:5061",
            "fe1:x",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
        assert_eq!(dataplane("198.18.1.10:7400"), Ok("198.18.1.10:7400".into()));
    }

    #[test]
    fn addresses() {
        assert!(socket_addr("198.18.1.10:5061").is_ok());
        assert!(socket_addr("[2001:db8::10]:5061").is_ok());
        for bad in ["198.18.1.10", "198.18.1.10:0", "pool1.contoso.com:5061"] {
            assert!(socket_addr(bad).is_err(), "{bad}");
        }
        assert!(ip_addr("198.18.2.10").is_ok());
        assert!(ip_addr("198.18.2.10:5061").is_err());
    }

    #[test]
    fn response_codes() {
        assert_eq!(
            response_code("408=503"),
            Ok(ResponseCodeRule {
                received: 408,
                translated: 503
            })
        );
        for bad in [
            "408", "408-503", "=503", "408=", "abc=503", "408=99", "408=700",
        ] {
            let e = response_code(bad).expect_err(bad);
            assert!(e.contains("408=503"), "{bad}: {e}");
        }
    }

    #[test]
    fn settings() {
        assert_eq!(bool_setting("true"), Ok(Setting::Value(true)));
        assert_eq!(bool_setting("inherit"), Ok(Setting::Inherit));
        assert!(bool_setting("yes").is_err());
        assert_eq!(u32_setting("20"), Ok(Setting::Value(20)));
        assert!(u32_setting("-1").is_err());
        assert_eq!(
            srtp_setting("not_supported"),
            Ok(Setting::Value(SrtpMode::NotSupported))
        );
        assert_eq!(
            srtp_setting("not-supported"),
            Ok(Setting::Value(SrtpMode::NotSupported))
        );
        assert!(srtp_setting("off").is_err());
    }

    #[test]
    fn rules() {
        let values: Vec<String> = ["strip-plus", r"^\+1(\d{10})$", "1$1", "local", "x", "$1"]
            .map(String::from)
            .to_vec();
        let r = translation_rules("called-rule", &values).expect("rules");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].translation, "1$1");
        assert_eq!(r[1].name, "local");
        assert!(translation_rules("called-rule", &values[..4]).is_err());
        assert_eq!(translation_rules("called-rule", &[]), Ok(vec![]));
    }
}

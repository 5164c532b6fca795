//! Daemon settings: a TOML file (`deny_unknown_fields`), overridden by flags and `MEDIATOR_*`
//! environment variables (clap reads both), then validated as a whole.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::abi;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native where the driver allows it, generic where it refuses.
    #[default]
    Auto,
    Native,
    Generic,
    Off,
}

impl FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "generic" => Ok(Self::Generic),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "'{other}' is not one of auto, native, generic, off"
            )),
        }
    }
}

/// The settings file. Every field is optional; flags and env override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub grpc_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub insecure_listen: Option<bool>,
    pub api_tls_certificate: Option<PathBuf>,
    pub api_tls_private_key: Option<PathBuf>,
    pub api_tls_client_ca: Option<PathBuf>,
    pub api_token_file: Option<PathBuf>,
    pub interfaces: Option<Vec<String>>,
    pub pool_addresses: Option<Vec<IpAddr>>,
    pub gateway_addresses: Option<Vec<IpAddr>>,
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    pub xdp_mode: Option<XdpMode>,
    pub pin_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub max_streams: Option<u32>,
    pub relay_threads: Option<usize>,
    pub media_timeout_secs: Option<u32>,
    pub hold_timeout_secs: Option<u32>,
    pub log_format: Option<LogFormat>,
    pub enable_forwarding: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(Self::Plain),
            "json" => Ok(Self::Json),
            other => Err(format!("'{other}' is not one of plain, json")),
        }
    }
}

/// The validated settings the daemon runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub grpc_listen: SocketAddr,
    /// Where Prometheus scrapes `/metrics` (None: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Listening off loopback without authentication is accepted (and warned about).
    pub insecure_listen: bool,
    /// How the gRPC and metrics listeners authenticate clients (TLS, client CA, token).
    pub api: mediator_serve::auth::ServerFiles,
    pub interfaces: Vec<String>,
    pub pool_addresses: Vec<IpAddr>,
    pub gateway_addresses: Vec<IpAddr>,
    pub port_min: u16,
    pub port_max: u16,
    pub xdp_mode: XdpMode,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub max_streams: u32,
    pub relay_threads: usize,
    pub media_timeout_secs: u32,
    pub hold_timeout_secs: u32,
    pub log_format: LogFormat,
    /// Turn on IPv4/IPv6 forwarding on the attached interfaces: the kernel's FIB lookup helper
    /// refuses (BPF_FIB_LKUP_RET_FWD_DISABLED) on interfaces where it is off.
    pub enable_forwarding: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            metrics_listen: None,
            insecure_listen: false,
            api: Default::default(),
            interfaces: Vec::new(),
            pool_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            gateway_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            port_min: 30000,
            port_max: 39999,
            xdp_mode: XdpMode::Auto,
            pin_dir: PathBuf::from("/sys/fs/bpf/mediator"),
            state_dir: PathBuf::from("/run/mediator-dataplane"),
            max_streams: abi::DEFAULT_MAX_STREAMS,
            relay_threads: 1,
            media_timeout_secs: 60,
            hold_timeout_secs: 3600,
            log_format: LogFormat::Plain,
            enable_forwarding: true,
        }
    }
}

impl Config {
    /// Reads `path` (if any) over the defaults; flags are applied by the caller afterwards.
    pub fn from_file(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg = Self::default();
        let Some(path) = path else { return Ok(cfg) };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let f: FileConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })?;
        macro_rules! take {
            ($($field:ident),*) => { $(if let Some(v) = f.$field { cfg.$field = v; })* };
        }
        take!(
            grpc_listen,
            interfaces,
            pool_addresses,
            gateway_addresses,
            port_min,
            port_max,
            xdp_mode
        );
        take!(
            pin_dir,
            state_dir,
            max_streams,
            relay_threads,
            media_timeout_secs,
            hold_timeout_secs
        );
        take!(log_format, enable_forwarding, insecure_listen);
        if f.metrics_listen.is_some() {
            cfg.metrics_listen = f.metrics_listen;
        }
        cfg.api = mediator_serve::auth::ServerFiles {
            certificate: f.api_tls_certificate,
            private_key: f.api_tls_private_key,
            client_ca: f.api_tls_client_ca,
            token_file: f.api_token_file,
        };
        Ok(cfg)
    }

    /// The APIs' authentication, loaded from its files (an error names the setting).
    pub fn auth(&self) -> Result<mediator_serve::ServerAuth, ConfigError> {
        mediator_serve::ServerAuth::load(&self.api).map_err(|e| invalid(e.setting, e.reason))
    }

    /// Checks everything that can be checked without starting: ranges, interfaces, addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let auth = self.auth()?;
        for (field, addr) in [
            ("grpc_listen", Some(self.grpc_listen)),
            ("metrics_listen", self.metrics_listen),
        ] {
            if let Some(why) =
                addr.and_then(|a| mediator_serve::listen_refusal(a, self.insecure_listen, &auth))
            {
                return Err(invalid(field, why));
            }
        }
        if self.port_min < 1024 {
            return Err(invalid(
                "port_min",
                format!("{} is below 1024", self.port_min),
            ));
        }
        if !self.port_min.is_multiple_of(2) {
            return Err(invalid(
                "port_min",
                format!("{} is odd; RTP ports are even", self.port_min),
            ));
        }
        if u32::from(self.port_max) < u32::from(self.port_min) + 3 {
            return Err(invalid(
                "port_max",
                format!(
                    "the range {}-{} holds fewer than 4 ports (one session)",
                    self.port_min, self.port_max
                ),
            ));
        }
        if self.max_streams < 4 || self.max_streams > 4 * 1024 * 1024 {
            return Err(invalid(
                "max_streams",
                format!("{} is outside 4..=4194304", self.max_streams),
            ));
        }
        if self.relay_threads == 0 || self.relay_threads > 64 {
            return Err(invalid(
                "relay_threads",
                format!("{} is outside 1..=64", self.relay_threads),
            ));
        }
        if self.media_timeout_secs == 0 || self.hold_timeout_secs == 0 {
            return Err(invalid(
                "media_timeout_secs",
                "timeouts must be at least 1 second",
            ));
        }
        if self.interfaces.len() > abi::MAX_TX_PORTS as usize {
            return Err(invalid(
                "interfaces",
                format!("at most {} interfaces", abi::MAX_TX_PORTS),
            ));
        }
        for name in &self.interfaces {
            if crate::netif::ifindex(name).is_none() {
                return Err(invalid(
                    "interfaces",
                    format!("no interface named '{name}' on this host"),
                ));
            }
        }
        for (field, addrs) in [
            ("pool_addresses", &self.pool_addresses),
            ("gateway_addresses", &self.gateway_addresses),
        ] {
            if addrs.is_empty() {
                return Err(invalid(field, "at least one media address is needed"));
            }
            for a in addrs {
                check_local(*a).map_err(|reason| invalid(field, format!("{a}: {reason}")))?;
            }
        }
        for c in self.pin_dir.components() {
            if c.as_os_str().to_string_lossy().contains('.') {
                return Err(invalid(
                    "pin_dir",
                    "bpffs path components may not contain '.'",
                ));
            }
        }
        Ok(())
    }

    pub fn addresses(&self, side: crate::session::Side) -> &[IpAddr] {
        match side {
            crate::session::Side::Pool => &self.pool_addresses,
            crate::session::Side::Gateway => &self.gateway_addresses,
        }
    }

    /// Number of ports in the range, rounded down to whole RTP/RTCP pairs.
    pub fn port_pairs(&self) -> u32 {
        (u32::from(self.port_max) - u32::from(self.port_min)).div_ceil(2)
    }
}

/// An address is local when a UDP socket can bind to it.
fn check_local(addr: IpAddr) -> Result<(), String> {
    if addr.is_unspecified() || addr.is_multicast() {
        return Err("must be a unicast address of this host".into());
    }
    match UdpSocket::bind(SocketAddr::new(addr, 0)) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
            Err("not an address of this host".into())
        }
        Err(e) => Err(format!("cannot bind to it: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile_path::Tmp {
        tempfile_path::Tmp::new(text)
    }

    /// A tiny temporary file helper (std only).
    mod tempfile_path {
        pub struct Tmp(pub std::path::PathBuf);
        impl Tmp {
            pub fn new(text: &str) -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p =
                    std::env::temp_dir().join(format!("mdp-cfg-{}-{n}.toml", std::process::id()));
                std::fs::write(&p, text).expect("write temp config");
                Self(p)
            }
        }
        impl Drop for Tmp {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
    }

    #[test]
    fn file_overrides_defaults() {
        let f = write("port_min = 40000\nport_max = 40099\nxdp_mode = \"generic\"\n");
        let c = Config::from_file(Some(&f.0)).expect("parse");
        assert_eq!(
            (c.port_min, c.port_max, c.xdp_mode),
            (40000, 40099, XdpMode::Generic)
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let f = write("port_mn = 40000\n");
        let e = Config::from_file(Some(&f.0))
            .expect_err("unknown field")
            .to_string();
        assert!(e.contains("port_mn"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.port_min = 31), "port_min"),
            (Box::new(|c| c.port_min = 30001), "port_min"),
            (Box::new(|c| c.port_max = 30001), "port_max"),
            (
                Box::new(|c| c.interfaces = vec!["nosuchif0".into()]),
                "interfaces",
            ),
            (
                Box::new(|c| c.pool_addresses = vec!["198.19.255.254".parse().expect("ip")]),
                "pool_addresses",
            ),
            (
                Box::new(|c| c.gateway_addresses = vec![]),
                "gateway_addresses",
            ),
            (
                Box::new(|c| c.pin_dir = "/sys/fs/bpf/a.b".into()),
                "pin_dir",
            ),
            (Box::new(|c| c.relay_threads = 0), "relay_threads"),
        ];
        for (mutate, field) in cases {
            let mut c = Config::default();
            mutate(&mut c);
            let e = c.validate().expect_err(field).to_string();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }
}

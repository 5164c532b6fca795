//! The `mediator-control` daemon: opens (or creates) the topology store in its data directory and
//! serves `mediator.control.v1` over gRPC, with the standard health service and server
//! reflection. Starts with no arguments on an embedded default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mediator_control::api::Api;
use mediator_control::calls_api::CallApi;
use mediator_control::registry::Registry;
use mediator_proto::control::v1::call_service_server::CallServiceServer;
use mediator_proto::control::v1::topology_service_server::TopologyServiceServer;
use serde::Deserialize;

/// Mediator's control plane: the SIP B2BUA that routes calls over trunks and anchors their media
/// on the pools' dataplanes, and the Lync-style topology (pools, gateways, trunks, trunk
/// configuration, PSTN usages, voice routes), served over gRPC (mediator.control.v1).
///
/// Settings come from --config (TOML), overridden by MEDIATOR_* environment variables, overridden
/// by flags. The topology itself lives in the store and is managed with mediatorctl.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "\
Examples:
  mediator-control                                   # data in /var/lib/mediator-control, gRPC on 127.0.0.1:7300
  mediator-control --data-dir /srv/mediator --grpc-listen 127.0.0.1:7300
  mediator-control --check-config --config /etc/mediator/control.toml"
)]
struct Args {
    /// TOML settings file.
    #[arg(long, env = "MEDIATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Where the topology store lives.
    #[arg(long, env = "MEDIATOR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address (loopback unless --insecure-listen).
    #[arg(long, env = "MEDIATOR_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    /// Where Prometheus scrapes /metrics (not served unless given; loopback unless
    /// --insecure-listen).
    #[arg(long, env = "MEDIATOR_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Accept listening off loopback without authentication (warned at start): anyone who
    /// reaches the address can change the topology and end calls.
    #[arg(long, env = "MEDIATOR_INSECURE_LISTEN")]
    insecure_listen: bool,
    #[command(flatten)]
    api: mediator_serve::auth::ServerFlags,
    /// The CA (PEM) the dataplanes' API certificates chain to: given, the relays are reached
    /// over TLS (https).
    #[arg(long, env = "MEDIATOR_RELAY_TLS_CA", value_name = "PEM")]
    relay_tls_ca: Option<PathBuf>,
    /// This daemon's client certificate chain (PEM) for relays that require one.
    #[arg(long, env = "MEDIATOR_RELAY_TLS_CERTIFICATE", value_name = "PEM")]
    relay_tls_certificate: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "MEDIATOR_RELAY_TLS_PRIVATE_KEY", value_name = "PEM")]
    relay_tls_private_key: Option<PathBuf>,
    /// The bearer token to send the relays (a file).
    #[arg(long, env = "MEDIATOR_RELAY_TOKEN_FILE", value_name = "FILE")]
    relay_token_file: Option<PathBuf>,
    /// Calls held at most; beyond it a new call is answered 503.
    #[arg(long, env = "MEDIATOR_MAX_CALLS")]
    max_calls: Option<usize>,
    /// Calls in progress on one pool at most (0: no limit); beyond it 503 with Retry-After.
    #[arg(long, env = "MEDIATOR_MAX_CALLS_PER_POOL")]
    max_calls_per_pool: Option<usize>,
    /// Calls in progress on one trunk at most (0: no limit): an inbound call beyond it gets 503
    /// with Retry-After, an outbound one tries the route's next trunk.
    #[arg(long, env = "MEDIATOR_MAX_CALLS_PER_TRUNK")]
    max_calls_per_trunk: Option<usize>,
    /// New calls a second from one peer address (bursts of twice that; 0: no limit).
    #[arg(long, env = "MEDIATOR_CALLS_PER_SECOND_PER_PEER")]
    calls_per_second_per_peer: Option<u32>,
    /// Seconds without media before a relay reports a call's stream dead (0: the relay's default).
    #[arg(long, env = "MEDIATOR_MEDIA_TIMEOUT_SECS")]
    media_timeout_secs: Option<u32>,
    /// The same while the call is on hold (0: the relay's default).
    #[arg(long, env = "MEDIATOR_HOLD_TIMEOUT_SECS")]
    hold_timeout_secs: Option<u32>,
    /// End a call whose media timed out (BYE on both legs with a Reason): true or false.
    #[arg(long, env = "MEDIATOR_MEDIA_TIMEOUT_ENDS_CALLS")]
    media_timeout_ends_calls: Option<bool>,
    /// Seconds a relay keeps this daemon's sessions without hearing from it (5-86400; 0: no
    /// lease, sessions are kept until deleted).
    #[arg(long, env = "MEDIATOR_RELAY_LEASE_SECS")]
    relay_lease_secs: Option<u32>,
    /// On SIGTERM, seconds to wait for calls in progress to end (new calls get 503 meanwhile)
    /// before ending the rest with BYE and exiting (0-86400; 0: end them at once). A second
    /// SIGTERM or Ctrl-C stops at once.
    #[arg(long, env = "MEDIATOR_STOP_DEADLINE_SECS")]
    stop_deadline_secs: Option<u32>,
    /// The session interval asked of and offered to peers with session timers (RFC 4028
    /// Session-Expires), seconds.
    #[arg(long, env = "MEDIATOR_SESSION_EXPIRES_SECS")]
    session_expires_secs: Option<u32>,
    /// The shortest session interval accepted (Min-SE; 90 or more).
    #[arg(long, env = "MEDIATOR_MIN_SE_SECS")]
    min_se_secs: Option<u32>,
    /// Seconds without RTCP (once seen) that end a call on trunks with rtcp_active_calls /
    /// rtcp_calls_on_hold (0: never).
    #[arg(long, env = "MEDIATOR_RTCP_TIMEOUT_SECS")]
    rtcp_timeout_secs: Option<u32>,
    /// DNS servers (ip or ip:port, port 53 by default) for FQDN gateways and next hops,
    /// repeated or comma-separated (default: those of /etc/resolv.conf).
    #[arg(
        long = "dns-server",
        env = "MEDIATOR_DNS_SERVERS",
        value_delimiter = ',',
        value_parser = dns_server
    )]
    dns_servers: Vec<SocketAddr>,
    /// Mediator's TLS certificate chain (PEM), for TLS trunks and next hops.
    #[arg(long, env = "MEDIATOR_TLS_CERTIFICATE")]
    tls_certificate: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "MEDIATOR_TLS_PRIVATE_KEY")]
    tls_private_key: Option<PathBuf>,
    /// The CA certificates (PEM) peers' certificates must chain to.
    #[arg(long, env = "MEDIATOR_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// plain or json.
    #[arg(long, env = "MEDIATOR_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Validate the settings, print them and exit (0 valid, 78 invalid).
    #[arg(long)]
    check_config: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    grpc_listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    insecure_listen: Option<bool>,
    api_tls_certificate: Option<PathBuf>,
    api_tls_private_key: Option<PathBuf>,
    api_tls_client_ca: Option<PathBuf>,
    api_token_file: Option<PathBuf>,
    relay_tls_ca: Option<PathBuf>,
    relay_tls_certificate: Option<PathBuf>,
    relay_tls_private_key: Option<PathBuf>,
    relay_token_file: Option<PathBuf>,
    max_calls: Option<usize>,
    max_calls_per_pool: Option<usize>,
    max_calls_per_trunk: Option<usize>,
    calls_per_second_per_peer: Option<u32>,
    media_timeout_secs: Option<u32>,
    hold_timeout_secs: Option<u32>,
    media_timeout_ends_calls: Option<bool>,
    relay_lease_secs: Option<u32>,
    stop_deadline_secs: Option<u32>,
    session_expires_secs: Option<u32>,
    min_se_secs: Option<u32>,
    rtcp_timeout_secs: Option<u32>,
    dns_servers: Option<Vec<String>>,
    tls_certificate: Option<PathBuf>,
    tls_private_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    log_format: Option<LogFormat>,
}

#[derive(Debug)]
struct Config {
    data_dir: PathBuf,
    grpc_listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    insecure_listen: bool,
    api: mediator_serve::auth::ServerFiles,
    relay_client: mediator_serve::auth::ClientFiles,
    max_calls: usize,
    admission: mediator_b2bua::AdmissionLimits,
    media_timeout_secs: u32,
    hold_timeout_secs: u32,
    media_timeout_ends_calls: bool,
    relay_lease_secs: u32,
    stop_deadline_secs: u32,
    session_expires_secs: u32,
    min_se_secs: u32,
    rtcp_timeout_secs: u32,
    /// Empty: the system's.
    dns_servers: Vec<SocketAddr>,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    log_format: LogFormat,
}

/// One DNS server: `ip:port`, `[v6]:port`, or an address alone (port 53).
fn dns_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    s.parse::<SocketAddr>()
        .or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("'{s}' is not an IP address or ip:port"))
}

fn settings(args: &Args) -> anyhow::Result<Config> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let cfg = Config {
        data_dir: args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/mediator-control")),
        grpc_listen: args
            .grpc_listen
            .or(file.grpc_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7300))),
        metrics_listen: args.metrics_listen.or(file.metrics_listen),
        insecure_listen: args.insecure_listen || file.insecure_listen.unwrap_or(false),
        api: args.api.over(mediator_serve::auth::ServerFiles {
            certificate: file.api_tls_certificate,
            private_key: file.api_tls_private_key,
            client_ca: file.api_tls_client_ca,
            token_file: file.api_token_file,
        }),
        relay_client: mediator_serve::auth::ClientFiles {
            ca: args.relay_tls_ca.clone().or(file.relay_tls_ca),
            certificate: args
                .relay_tls_certificate
                .clone()
                .or(file.relay_tls_certificate),
            private_key: args
                .relay_tls_private_key
                .clone()
                .or(file.relay_tls_private_key),
            token_file: args.relay_token_file.clone().or(file.relay_token_file),
        },
        max_calls: args.max_calls.or(file.max_calls).unwrap_or(20_000),
        admission: mediator_b2bua::AdmissionLimits {
            calls_per_pool: args
                .max_calls_per_pool
                .or(file.max_calls_per_pool)
                .unwrap_or(0),
            calls_per_trunk: args
                .max_calls_per_trunk
                .or(file.max_calls_per_trunk)
                .unwrap_or(0),
            calls_per_second_per_peer: args
                .calls_per_second_per_peer
                .or(file.calls_per_second_per_peer)
                .unwrap_or(0),
        },
        media_timeout_secs: args
            .media_timeout_secs
            .or(file.media_timeout_secs)
            .unwrap_or(0),
        hold_timeout_secs: args
            .hold_timeout_secs
            .or(file.hold_timeout_secs)
            .unwrap_or(0),
        media_timeout_ends_calls: args
            .media_timeout_ends_calls
            .or(file.media_timeout_ends_calls)
            .unwrap_or(true),
        relay_lease_secs: args
            .relay_lease_secs
            .or(file.relay_lease_secs)
            .unwrap_or(60),
        stop_deadline_secs: args
            .stop_deadline_secs
            .or(file.stop_deadline_secs)
            .unwrap_or(60),
        session_expires_secs: args
            .session_expires_secs
            .or(file.session_expires_secs)
            .unwrap_or(1800),
        min_se_secs: args
            .min_se_secs
            .or(file.min_se_secs)
            .unwrap_or(mediator_b2bua::MIN_SE_FLOOR),
        rtcp_timeout_secs: args
            .rtcp_timeout_secs
            .or(file.rtcp_timeout_secs)
            .unwrap_or(30),
        dns_servers: if args.dns_servers.is_empty() {
            file.dns_servers
                .unwrap_or_default()
                .iter()
                .map(|s| dns_server(s))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("dns_servers: {e}"))?
        } else {
            args.dns_servers.clone()
        },
        tls: match (
            args.tls_certificate.clone().or(file.tls_certificate),
            args.tls_private_key.clone().or(file.tls_private_key),
            args.tls_ca.clone().or(file.tls_ca),
        ) {
            (None, None, None) => None,
            (Some(c), Some(k), Some(a)) => Some((c, k, a)),
            _ => {
                anyhow::bail!("tls_certificate, tls_private_key and tls_ca: give all three or none")
            }
        },
        log_format: args
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Plain),
    };
    if let Some((c, k, a)) = &cfg.tls {
        mediator_control::tls::load(c, k, a)?;
    }
    if cfg.dns_servers.len() > 8 {
        anyhow::bail!("dns_servers: {} given, at most 8", cfg.dns_servers.len());
    }
    if let Some(s) = cfg.dns_servers.iter().find(|s| s.port() == 0) {
        anyhow::bail!("dns_servers: {s}: port 0");
    }
    let auth = mediator_serve::ServerAuth::load(&cfg.api)?;
    mediator_serve::auth::ClientAuth::load(&cfg.relay_client, RELAY_NAMES)?;
    for (field, addr) in [
        ("grpc_listen", Some(cfg.grpc_listen)),
        ("metrics_listen", cfg.metrics_listen),
    ] {
        if let Some(why) =
            addr.and_then(|a| mediator_serve::listen_refusal(a, cfg.insecure_listen, &auth))
        {
            anyhow::bail!("{field}: {why}");
        }
    }
    if cfg.relay_lease_secs != 0 && !(5..=86_400).contains(&cfg.relay_lease_secs) {
        anyhow::bail!(
            "relay_lease_secs: {} is outside 5-86400 (0: no lease)",
            cfg.relay_lease_secs
        );
    }
    if cfg.stop_deadline_secs > 86_400 {
        anyhow::bail!(
            "stop_deadline_secs: {} is over 86400",
            cfg.stop_deadline_secs
        );
    }
    if cfg.max_calls == 0 {
        anyhow::bail!("max_calls: must be at least 1");
    }
    for (name, v) in [
        ("media_timeout_secs", cfg.media_timeout_secs),
        ("hold_timeout_secs", cfg.hold_timeout_secs),
        ("rtcp_timeout_secs", cfg.rtcp_timeout_secs),
    ] {
        if v > 86_400 {
            anyhow::bail!("{name}: {v} is over 86400");
        }
    }
    // The relay refuses a session whose hold timeout is shorter than its media timeout, with 0
    // taken as its defaults (60 s, 3600 s): refused here, not on every call.
    let media = if cfg.media_timeout_secs == 0 {
        60
    } else {
        cfg.media_timeout_secs
    };
    let hold = if cfg.hold_timeout_secs == 0 {
        3600
    } else {
        cfg.hold_timeout_secs
    };
    if hold < media {
        anyhow::bail!(
            "hold_timeout_secs: {hold} is shorter than media_timeout_secs {media} (0 stands for the relay's defaults, 60 and 3600)"
        );
    }
    if !(mediator_b2bua::MIN_SE_FLOOR..=mediator_b2bua::MAX_SE).contains(&cfg.min_se_secs) {
        anyhow::bail!(
            "min_se_secs: {} is outside {}..={} (RFC 4028: no Min-SE below 90 s)",
            cfg.min_se_secs,
            mediator_b2bua::MIN_SE_FLOOR,
            mediator_b2bua::MAX_SE
        );
    }
    if !(cfg.min_se_secs..=mediator_b2bua::MAX_SE).contains(&cfg.session_expires_secs) {
        anyhow::bail!(
            "session_expires_secs: {} is outside min_se_secs ({})..={}",
            cfg.session_expires_secs,
            cfg.min_se_secs,
            mediator_b2bua::MAX_SE
        );
    }
    if cfg.data_dir.as_os_str().is_empty() {
        anyhow::bail!("data_dir: must not be empty");
    }
    if cfg.data_dir.exists() && !cfg.data_dir.is_dir() {
        anyhow::bail!(
            "data_dir: {} exists and is not a directory",
            cfg.data_dir.display()
        );
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(64);
        }
    };
    let cfg = match settings(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mediator-control: invalid settings: {e:#}");
            return ExitCode::from(78);
        }
    };
    if args.check_config {
        println!("settings are valid:\n{cfg:#?}");
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDIATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only on a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mediator-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::open(&cfg.data_dir)?);
    let lease = match cfg.relay_lease_secs {
        0 => None,
        secs => Some(
            mediator_control::media::Lease::of_data_dir(&cfg.data_dir, secs)
                .context("relay_lease_secs: the owner name of this daemon's sessions")?,
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mediator-control")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let tls = match &cfg.tls {
            Some((c, k, a)) => Some(mediator_control::tls::load(c, k, a)?),
            None => None,
        };
        // Without a resolver, FQDN gateways and next hops are unresolved (their calls get 503);
        // a topology of IP addresses needs none, so a missing /etc/resolv.conf is no reason
        // not to start.
        let resolver = match mediator_control::dns::Resolver::new(&cfg.dns_servers) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver: FQDN gateways and next hops will not be resolved");
                None
            }
        };
        let calls = mediator_control::calls::start_with(
            registry.clone(),
            mediator_b2bua::Config {
                max_calls: cfg.max_calls,
                media_timeout_secs: cfg.media_timeout_secs,
                hold_timeout_secs: cfg.hold_timeout_secs,
                session_expires: cfg.session_expires_secs,
                min_se: cfg.min_se_secs,
                rtcp_timeout_secs: cfg.rtcp_timeout_secs,
                admission: cfg.admission,
                ..Default::default()
            },
            tls,
            mediator_control::calls::Options {
                media_timeout_ends_calls: cfg.media_timeout_ends_calls,
                resolver,
                lease,
                relay_auth: mediator_serve::auth::ClientAuth::load(&cfg.relay_client, RELAY_NAMES)?,
            },
        );
        let auth = mediator_serve::ServerAuth::load(&cfg.api)?;
        if let Some(addr) = cfg.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics_listen: cannot listen on {addr}"))?;
            mediator_serve::warn_insecure("metrics_listen", addr, &auth);
            let registry = Arc::new(mediator_control::metrics::registry(&calls));
            tracing::info!(listen = %addr, clients_need = auth.describe(), "serving Prometheus metrics at /metrics");
            tokio::spawn(mediator_serve::serve_metrics(listener, registry, auth.clone()));
        }
        mediator_serve::warn_insecure("grpc_listen", cfg.grpc_listen, &auth);
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<TopologyServiceServer<Api>>().await;
        health.set_serving::<CallServiceServer<CallApi>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mediator_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building the reflection service")?;
        let listener = tokio::net::TcpListener::bind(cfg.grpc_listen)
            .await
            .with_context(|| format!("grpc_listen: cannot listen on {}", cfg.grpc_listen))?;
        tracing::info!(listen = %cfg.grpc_listen, data_dir = %cfg.data_dir.display(), clients_need = auth.describe(), "serving mediator.control.v1");
        let stopping = calls.clone();
        auth.grpc_server()
            .context("api_tls_certificate")?
            .layer(tonic::service::InterceptorLayer::new(auth.interceptor()))
            .add_service(health_service)
            .add_service(reflection)
            // Topology documents may be large: up to the 16 MiB the importer accepts.
            .add_service(CallServiceServer::new(CallApi::new(calls.clone())))
            .add_service(
                TopologyServiceServer::new(
                    Api::new(registry)
                        .with_health(calls.health_view())
                        .with_dns(calls.dns_view()),
                )
                    .max_decoding_message_size(17 << 20)
                    .max_encoding_message_size(64 << 20),
            )
            // No Nagle: a response's frames leave at once instead of waiting for the peer's
            // delayed ACK (40 ms a request).
            .serve_with_incoming_shutdown(mediator_serve::incoming::incoming(listener, mediator_serve::incoming::GRPC_CONNECTIONS), async move {
                // SIGTERM or Ctrl-C: a graceful stop (the API keeps answering meanwhile); a
                // second one stops at once. Every acknowledged topology write is already durable.
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                stop_signal(&mut term).await;
                let deadline = std::time::Duration::from_secs(u64::from(cfg.stop_deadline_secs));
                tracing::info!(deadline_secs = cfg.stop_deadline_secs, "graceful stop: new calls refused on every pool");
                tokio::select! {
                    ended = stopping.stop(deadline) => {
                        tracing::info!(ended_at_deadline = ended, "graceful stop: no call left");
                    }
                    _ = stop_signal(&mut term) => tracing::warn!("stopping at once (second signal): calls in progress are left to the relays' lease"),
                }
            })
            .await
            .context("gRPC server")?;
        Ok::<_, anyhow::Error>(())
    })
}

/// SIGTERM or Ctrl-C (Ctrl-C alone where SIGTERM cannot be followed).
async fn stop_signal(term: &mut Option<tokio::signal::unix::Signal>) {
    match term {
        Some(t) => tokio::select! {
            _ = t.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// How the relay client's settings are named in errors.
const RELAY_NAMES: mediator_serve::auth::ClientNames = mediator_serve::auth::ClientNames {
    ca: "relay_tls_ca",
    certificate: "relay_tls_certificate",
    private_key: "relay_tls_private_key",
    token_file: "relay_token_file",
};

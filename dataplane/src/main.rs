//! The `mediator-dataplane` daemon: sets up the XDP fast path (or explains why not), re-adopts the
//! sessions of an earlier run, and serves `mediator.dataplane.v1` over gRPC.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mediator_dataplane::config::{Config, LogFormat, XdpMode};
use mediator_dataplane::forwarder::{Forwarder, NoOffload};
use mediator_dataplane::manager::Dataplane;
use mediator_dataplane::service::{Service, XdpInfo};
use mediator_dataplane::xdp::{self, XdpForwarder};
use mediator_proto::dataplane::v1 as pb;

/// Mediator's media relay: RTP/RTCP forwarded in the kernel by XDP, or by a userspace relay
/// wherever XDP cannot run. Driven over gRPC (mediator.dataplane.v1.DataplaneService).
///
/// Settings come from --config (TOML), overridden by MEDIATOR_* environment variables, overridden
/// by flags.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "\
Examples:
  mediator-dataplane --check-config --config /etc/mediator/dataplane.toml
  mediator-dataplane --interface rp --interface rg \\
      --pool-address 198.18.1.1 --gateway-address 198.18.2.1 --port-range 30000-39999
  MEDIATOR_XDP_MODE=off mediator-dataplane          # userspace relay only, on 127.0.0.1
  mediator-dataplane --cleanup                       # forget pinned XDP state and sessions"
)]
struct Args {
    /// TOML settings file.
    #[arg(long, env = "MEDIATOR_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address (loopback unless --insecure-listen).
    #[arg(long, env = "MEDIATOR_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    /// Where Prometheus scrapes /metrics (not served unless given; loopback unless
    /// --insecure-listen).
    #[arg(long, env = "MEDIATOR_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Accept listening off loopback without authentication (warned at start): anyone who
    /// reaches the address can program media relaying.
    #[arg(long, env = "MEDIATOR_INSECURE_LISTEN")]
    insecure_listen: bool,
    #[command(flatten)]
    api: mediator_serve::auth::ServerFlags,
    /// Interface to attach the XDP program to (repeat, or comma-separate in the env variable).
    #[arg(long = "interface", env = "MEDIATOR_INTERFACES", value_delimiter = ',')]
    interfaces: Vec<String>,
    /// The relay's media address on the pool side (repeat for IPv4 and IPv6).
    #[arg(
        long = "pool-address",
        env = "MEDIATOR_POOL_ADDRESSES",
        value_delimiter = ','
    )]
    pool_addresses: Vec<IpAddr>,
    /// The relay's media address on the gateway side (repeat for IPv4 and IPv6).
    #[arg(
        long = "gateway-address",
        env = "MEDIATOR_GATEWAY_ADDRESSES",
        value_delimiter = ','
    )]
    gateway_addresses: Vec<IpAddr>,
    /// Media port range, MIN-MAX (MIN even).
    #[arg(long, env = "MEDIATOR_PORT_RANGE", value_parser = parse_range)]
    port_range: Option<(u16, u16)>,
    /// auto (native, else generic), native, generic or off.
    #[arg(long, env = "MEDIATOR_XDP_MODE")]
    xdp_mode: Option<XdpMode>,
    /// bpffs directory for pinned maps and links (no '.' in any component).
    #[arg(long, env = "MEDIATOR_PIN_DIR")]
    pin_dir: Option<PathBuf>,
    /// Directory for session records (re-adopted after a restart).
    #[arg(long, env = "MEDIATOR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Capacity of the XDP stream table (4 streams per session).
    #[arg(long, env = "MEDIATOR_MAX_STREAMS")]
    max_streams: Option<u32>,
    /// Threads of the userspace relay.
    #[arg(long, env = "MEDIATOR_RELAY_THREADS")]
    relay_threads: Option<usize>,
    /// Default seconds without media before a media-timeout event.
    #[arg(long, env = "MEDIATOR_MEDIA_TIMEOUT")]
    media_timeout_secs: Option<u32>,
    /// Default seconds without media on hold before a media-timeout event.
    #[arg(long, env = "MEDIATOR_HOLD_TIMEOUT")]
    hold_timeout_secs: Option<u32>,
    /// plain or json.
    #[arg(long, env = "MEDIATOR_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Leave IPv4/IPv6 forwarding on the attached interfaces as it is (XDP then needs it on already).
    #[arg(long)]
    keep_forwarding: bool,
    /// Validate the settings, print them and exit (0 valid, 78 invalid).
    #[arg(long)]
    check_config: bool,
    /// Remove pinned XDP links and maps and the session records, then exit.
    #[arg(long)]
    cleanup: bool,
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or("expected MIN-MAX, e.g. 30000-39999")?;
    let a = a
        .trim()
        .parse()
        .map_err(|_| format!("'{a}' is not a port"))?;
    let b = b
        .trim()
        .parse()
        .map_err(|_| format!("'{b}' is not a port"))?;
    Ok((a, b))
}

fn settings(args: &Args) -> anyhow::Result<Config> {
    let mut cfg = Config::from_file(args.config.as_deref())?;
    if let Some(v) = args.grpc_listen {
        cfg.grpc_listen = v;
    }
    if args.metrics_listen.is_some() {
        cfg.metrics_listen = args.metrics_listen;
    }
    if args.insecure_listen {
        cfg.insecure_listen = true;
    }
    cfg.api = args.api.over(std::mem::take(&mut cfg.api));
    if !args.interfaces.is_empty() {
        cfg.interfaces = args
            .interfaces
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
    }
    if !args.pool_addresses.is_empty() {
        cfg.pool_addresses = args.pool_addresses.clone();
    }
    if !args.gateway_addresses.is_empty() {
        cfg.gateway_addresses = args.gateway_addresses.clone();
    }
    if let Some((a, b)) = args.port_range {
        cfg.port_min = a;
        cfg.port_max = b;
    }
    macro_rules! over {
        ($($f:ident),*) => { $(if let Some(v) = args.$f.clone() { cfg.$f = v; })* };
    }
    over!(
        xdp_mode,
        pin_dir,
        state_dir,
        max_streams,
        relay_threads,
        media_timeout_secs,
        hold_timeout_secs,
        log_format
    );
    if args.keep_forwarding {
        cfg.enable_forwarding = false;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDIATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only on a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Sets up the fast path as configured; says what is in force and why.
fn fast_path(cfg: &Config) -> anyhow::Result<(Arc<dyn Forwarder>, XdpInfo)> {
    let off = |reason: &'static str, note: String| -> (Arc<dyn Forwarder>, XdpInfo) {
        (
            Arc::new(NoOffload {
                reason,
                capacity: cfg.max_streams,
            }),
            XdpInfo {
                mode: pb::XdpMode::Off,
                note,
                interfaces: Vec::new(),
            },
        )
    };
    if cfg.xdp_mode == XdpMode::Off {
        let removed = xdp::remove_pins(&cfg.pin_dir).unwrap_or(0);
        if removed > 0 {
            tracing::info!(
                removed,
                "xdp off: removed pinned links and maps of an earlier run"
            );
        }
        return Ok(off(
            "xdp off by configuration",
            "off by configuration".into(),
        ));
    }
    if cfg.interfaces.is_empty() {
        return Ok(off(
            "xdp unavailable: no interfaces configured",
            "no interfaces configured".into(),
        ));
    }
    match XdpForwarder::start(cfg) {
        Ok(f) => {
            let interfaces: Vec<_> = f
                .attached()
                .iter()
                .map(|a| (a.name.clone(), a.ifindex, a.mode))
                .collect();
            let all_native = interfaces.iter().all(|i| i.2 == xdp::AttachMode::Native);
            let mode = if all_native {
                pb::XdpMode::Native
            } else {
                pb::XdpMode::Generic
            };
            let note = interfaces
                .iter()
                .map(|(n, _, m)| format!("{n}: {m:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(", ");
            tracing::info!(%note, "xdp in force");
            Ok((
                Arc::new(f),
                XdpInfo {
                    mode,
                    note,
                    interfaces,
                },
            ))
        }
        Err(e) if cfg.xdp_mode == XdpMode::Auto => {
            tracing::warn!(error = %e, "xdp unavailable; every session is relayed in userspace");
            Ok(off("xdp unavailable", format!("unavailable: {e}")))
        }
        Err(e) => Err(e).context("setting up XDP (use --xdp-mode auto to fall back to userspace)"),
    }
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
            return ExitCode::from(64); // EX_USAGE
        }
    };
    let cfg = match settings(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mediator-dataplane: invalid settings: {e:#}");
            return ExitCode::from(78);
        }
    };
    if args.check_config {
        println!("settings are valid:\n{cfg:#?}");
        return ExitCode::SUCCESS;
    }
    init_logging(cfg.log_format);
    if args.cleanup {
        let pins = xdp::remove_pins(&cfg.pin_dir).unwrap_or(0);
        let _ = std::fs::remove_dir_all(&cfg.state_dir);
        println!(
            "removed {pins} pinned objects from {} and the state in {}",
            cfg.pin_dir.display(),
            cfg.state_dir.display()
        );
        return ExitCode::SUCCESS;
    }
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mediator-dataplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Each session holds four sockets (RTP and RTCP on both sides): raise the soft limit on open
/// files to the hard one, and say how many sessions that leaves room for.
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
                tracing::warn!(soft, hard, "could not raise the open-files limit");
            }
            let now = getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |l| l.0);
            tracing::info!(
                open_files = now,
                sessions = now.saturating_sub(64) / 4,
                "open-files limit (four sockets per session)"
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    raise_open_files();
    let relay = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.relay_threads)
        .thread_name("mdp-relay")
        .enable_all()
        .build()
        .context("starting the relay runtime")?;
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mdp-control")
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    control.block_on(async {
        let (forwarder, info) = fast_path(&cfg)?;
        let (dp, notices) = Dataplane::new(cfg.clone(), forwarder, relay.handle().clone())?;
        tokio::spawn(dp.clone().run_notices(notices));
        tokio::spawn(dp.clone().run_timeouts(Duration::from_secs(1)));
        tokio::spawn(dp.clone().run_leases(Duration::from_secs(1)));
        // Each session at most every COUNTERS_FLUSH; looked at every second, so the writes
        // spread over the interval.
        tokio::spawn(dp.clone().run_flush(Duration::from_secs(1)));
        tracing::info!(
            sessions = dp.session_count(),
            "sessions re-adopted from the state directory"
        );

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<pb::dataplane_service_server::DataplaneServiceServer<Service>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mediator_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building the reflection service")?;
        let auth = cfg.auth()?;
        if let Some(addr) = cfg.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics_listen: cannot listen on {addr}"))?;
            mediator_serve::warn_insecure("metrics_listen", addr, &auth);
            let registry =
                std::sync::Arc::new(mediator_dataplane::metrics::registry(dp.clone(), info.mode));
            tracing::info!(listen = %addr, clients_need = auth.describe(), "serving Prometheus metrics at /metrics");
            tokio::spawn(mediator_serve::serve_metrics(listener, registry, auth.clone()));
        }
        let listener = tokio::net::TcpListener::bind(cfg.grpc_listen)
            .await
            .with_context(|| format!("grpc_listen: cannot listen on {}", cfg.grpc_listen))?;
        mediator_serve::warn_insecure("grpc_listen", cfg.grpc_listen, &auth);
        tracing::info!(listen = %cfg.grpc_listen, clients_need = auth.describe(), "serving mediator.dataplane.v1");
        auth.grpc_server()
            .context("api_tls_certificate")?
            .layer(tonic::service::InterceptorLayer::new(auth.interceptor()))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(pb::dataplane_service_server::DataplaneServiceServer::new(
                Service::new(dp, info).with_remote_keys(auth.client_certificates()),
            ))
            // No Nagle: a response's frames leave at once instead of waiting for the client's
            // delayed ACK (40 ms a request).
            .serve_with_incoming_shutdown(
                mediator_serve::incoming::incoming(listener, mediator_serve::incoming::GRPC_CONNECTIONS),
                shutdown(),
            )
            .await
            .context("gRPC server")?;
        tracing::info!(
            "stopping; XDP links, maps and session records stay, and a restart re-adopts them"
        );
        Ok::<_, anyhow::Error>(())
    })?;
    relay.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

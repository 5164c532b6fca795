//! `mediatorctl`: the command-line client of mediator-control's gRPC API
//! (`mediator.control.v1.TopologyService`). Noun–verb commands manage the Lync-style topology —
//! pools, gateways, trunks, trunk configuration, PSTN usages and voice routes — test routes,
//! export and import the topology document and move trunks between pools.

mod call;
mod gateway;
mod output;
mod parse;
mod pool;
mod resource;
mod route;
mod settings;
mod topology;
mod trunk;
mod trunk_config;
mod usage;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use mediator_proto::control::v1 as pb;
use mediator_proto::control::v1::call_service_client::CallServiceClient;
use mediator_serve::auth::{AuthChannel, ClientAuth, ClientFiles, ClientNames};
use pb::topology_service_client::TopologyServiceClient;
use tonic::transport::Endpoint;

use crate::output::Output;
use crate::resource::Verb;

type Client = TopologyServiceClient<AuthChannel>;

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7300";
/// The default `--endpoint`, without a scheme: `http://`, or `https://` with `--api-ca`.
const DEFAULT_ADDRESS: &str = "127.0.0.1:7300";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
// Generous because an import validates and applies a whole topology in one call; it only exists so
// a server that accepts the connection but never answers cannot hang a script forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_OSERR: u8 = 71;
const EX_IOERR: u8 = 74;

const EXAMPLES: &str = "\
Examples:
  mediatorctl pool add pool1.contoso.com --site redmond --pool-side-listen 198.18.1.10:5061 \\
      --gateway-side-address 198.18.2.10 --next-hop fe1.contoso.com:5061 --dataplane 198.18.1.20:7400
  mediatorctl gateway add gw1.contoso.com --kind pstn-gateway --site redmond \\
      --pool pool1.contoso.com --gateway-port 5067 --pool-port 5067
  mediatorctl route test +14255550100 --usage Local
  mediatorctl --output json trunk list --pool pool1.contoso.com
  MEDIATOR_ENDPOINT=http://198.18.0.5:7300 mediatorctl topology export --file topology.toml";

/// Manage Mediator's topology through mediator-control.
///
/// Pools, gateways, trunks, trunk configuration, PSTN usages and voice routes, as in Lync's
/// Topology Builder and voice routing. Every write is checked and made durable by
/// mediator-control; `--revision N` (from `show`) makes a change fail instead of overwriting
/// someone else's.
///
/// Exit status: 0 done; 1 mediator-control refused the request (the message says why); 64 usage
/// error (fix the command line, or a file that cannot be read or written); 69 mediator-control
/// cannot be reached; 74 the output could not be written.
#[derive(Parser, Debug)]
#[command(name = "mediatorctl", version, after_help = EXAMPLES, subcommand_required = true)]
struct Cli {
    /// mediator-control's gRPC address: HOST:PORT (http, or https with --api-ca), or a URL.
    #[arg(
        long,
        env = "MEDIATOR_ENDPOINT",
        default_value = DEFAULT_ADDRESS,
        global = true,
        value_name = "URL"
    )]
    endpoint: String,
    /// The CA (PEM) mediator-control's API certificate chains to: given, TLS (https).
    #[arg(long, env = "MEDIATOR_API_CA", global = true, value_name = "PEM")]
    api_ca: Option<std::path::PathBuf>,
    /// A client certificate chain (PEM), for a server that requires one.
    #[arg(
        long,
        env = "MEDIATOR_API_CERTIFICATE",
        global = true,
        value_name = "PEM"
    )]
    api_certificate: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[arg(
        long,
        env = "MEDIATOR_API_PRIVATE_KEY",
        global = true,
        value_name = "PEM"
    )]
    api_private_key: Option<std::path::PathBuf>,
    /// A file holding the bearer token the server requires.
    #[arg(
        long,
        env = "MEDIATOR_API_TOKEN_FILE",
        global = true,
        value_name = "FILE"
    )]
    api_token_file: Option<std::path::PathBuf>,
    /// How to print results.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mediation pools (add, set, show, list, remove).
    #[command(after_help = pool::EXAMPLES, subcommand_required = true)]
    Pool {
        #[command(subcommand)]
        cmd: Verb<pool::Pools>,
    },
    /// PSTN gateways, IP-PBXs and SBCs with their root trunks (add, set, show, list, remove).
    #[command(after_help = gateway::EXAMPLES, subcommand_required = true)]
    Gateway {
        #[command(subcommand)]
        cmd: Verb<gateway::Gateways>,
    },
    /// Trunks between pools and gateways (add, set, show, list, remove, move, moves).
    #[command(after_help = trunk::EXAMPLES, subcommand_required = true)]
    Trunk {
        #[command(subcommand)]
        cmd: Verb<trunk::Trunks>,
    },
    /// Trunk configuration at global, site or trunk scope (add, set, show, list, remove,
    /// effective).
    #[command(
        name = "trunk-config",
        after_help = trunk_config::EXAMPLES,
        subcommand_required = true
    )]
    TrunkConfig {
        #[command(subcommand)]
        cmd: Verb<trunk_config::TrunkConfigs>,
    },
    /// PSTN usages (add, set, show, list, remove).
    #[command(after_help = usage::EXAMPLES, subcommand_required = true)]
    Usage {
        #[command(subcommand)]
        cmd: Verb<usage::Usages>,
    },
    /// Voice routes and route tests (add, set, show, list, remove, test).
    #[command(after_help = route::EXAMPLES, subcommand_required = true)]
    Route {
        #[command(subcommand)]
        cmd: Verb<route::Routes>,
    },
    /// The whole topology as one TOML document (export, import).
    #[command(after_help = topology::EXAMPLES, subcommand_required = true)]
    Topology {
        #[command(subcommand)]
        cmd: topology::TopologyCmd,
    },
    /// Calls in progress and recent call records (list, show, recent).
    #[command(after_help = call::EXAMPLES, subcommand_required = true)]
    Call {
        #[command(subcommand)]
        cmd: call::CallCmd,
    },
    /// Print a shell completion script to stdout.
    #[command(after_help = COMPLETION_EXAMPLES)]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

const COMPLETION_EXAMPLES: &str = "\
Examples:
  mediatorctl completions bash > /etc/bash_completion.d/mediatorctl
  mediatorctl completions zsh > \"${fpath[1]}/_mediatorctl\"
  mediatorctl completions fish > ~/.config/fish/completions/mediatorctl.fish";

/// Why a command did not succeed; each kind has its exit status.
#[derive(Debug)]
pub enum Failure {
    /// The command line asks for something impossible; the message says what to change.
    Usage(String),
    /// An RPC failed: refused by the server, or (when tonic made the status itself) never
    /// reached it.
    Rpc(tonic::Status),
    /// The server's answer does not fit the model this mediatorctl was built with.
    BadReply(String),
    /// stdout or stderr could not be written.
    Output(String),
    /// The reader of stdout went away; nothing to report.
    ClosedOutput,
    /// What was asked was done but what it waits for did not happen in time (exit 1).
    Unfinished(String),
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::Rpc(s)
    }
}

pub fn usage_error(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

/// The shared state of one command: the channel and how to print.
pub struct Ctx {
    pub client: Client,
    pub calls: CallServiceClient<AuthChannel>,
    pub out: Output,
}

/// The endpoint as given, or with `http://` (`https://` with `tls`) added to a bare HOST:PORT.
fn endpoint_url(given: &str, tls: bool) -> Result<String, Failure> {
    let given = given.trim();
    let scheme = if tls { "https://" } else { "http://" };
    let url = if given.contains("://") {
        given.to_string()
    } else {
        format!("{scheme}{given}")
    };
    if url.starts_with("https://") && !tls {
        return Err(usage_error(format!(
            "--endpoint {url}: https needs the CA of mediator-control's API certificate \
             (--api-ca)"
        )));
    }
    if url.starts_with("http://") && tls {
        return Err(usage_error(format!(
            "--endpoint {url}: --api-ca asks for TLS; use https://HOST:PORT"
        )));
    }
    if !url.starts_with(scheme) || url.len() == scheme.len() {
        return Err(usage_error(format!(
            "--endpoint '{given}' is not an http:// URL; use e.g. {DEFAULT_ENDPOINT}"
        )));
    }
    Ok(url)
}

/// The names of the API's client settings, for errors.
const API_NAMES: ClientNames = ClientNames {
    ca: "--api-ca",
    certificate: "--api-certificate",
    private_key: "--api-private-key",
    token_file: "--api-token-file",
};

fn client_auth(cli: &Cli) -> Result<ClientAuth, Failure> {
    ClientAuth::load(
        &ClientFiles {
            ca: cli.api_ca.clone(),
            certificate: cli.api_certificate.clone(),
            private_key: cli.api_private_key.clone(),
            token_file: cli.api_token_file.clone(),
        },
        API_NAMES,
    )
    .map_err(|e| usage_error(e.to_string()))
}

fn endpoint(url: &str, auth: &ClientAuth) -> Result<Endpoint, Failure> {
    auth.endpoint(url)
        .map(|e| e.connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT))
        .map_err(|e| {
            usage_error(format!(
                "--endpoint '{url}' is not a valid URL ({e}); use e.g. {DEFAULT_ENDPOINT}"
            ))
        })
}

fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    // clap_complete panics when its writer fails, so it writes to memory and we write stdout.
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mediatorctl", &mut buf);
    output::emit(&String::from_utf8_lossy(&buf))
}

async fn run(cli: Cli, url: &str, auth: &ClientAuth) -> Result<(), Failure> {
    let endpoint = endpoint(url, auth)?;
    // Lazily: commands that fail their own checks never touch the network, and an unreachable
    // server surfaces as the first RPC's status, which `report` recognises.
    let channel = endpoint.connect_lazy();
    let mut ctx = Ctx {
        client: TopologyServiceClient::with_interceptor(channel.clone(), auth.add_token()),
        calls: CallServiceClient::with_interceptor(channel, auth.add_token()),
        out: cli.output,
    };
    match cli.command {
        Command::Pool { cmd } => resource::run(&mut ctx, cmd).await,
        Command::Gateway { cmd } => resource::run(&mut ctx, cmd).await,
        Command::Trunk { cmd } => resource::run(&mut ctx, cmd).await,
        Command::TrunkConfig { cmd } => resource::run(&mut ctx, cmd).await,
        Command::Usage { cmd } => resource::run(&mut ctx, cmd).await,
        Command::Route { cmd } => resource::run(&mut ctx, cmd).await,
        Command::Topology { cmd } => topology::run(&mut ctx, cmd).await,
        Command::Call { cmd } => call::run(&mut ctx, cmd).await,
        Command::Completions { shell } => completions(shell),
    }
}

/// The reader-facing name of a status code; for ABORTED also what to do about it.
fn code_text(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted (someone else changed it)",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented (is mediator-control older than this mediatorctl?)",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// A status the server sent carries no source error; one tonic made on our side (connection
/// refused, timeout, broken HTTP/2) does. Returns the chain of causes for the latter.
fn local_cause(status: &tonic::Status) -> Option<String> {
    let mut cause = std::error::Error::source(status)?;
    let mut parts = vec![status.message().to_string()];
    loop {
        let text = cause.to_string();
        // tonic's wrapper says nothing the causes around it do not.
        if text != "transport error" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        match cause.source() {
            Some(next) => cause = next,
            None => break,
        }
    }
    parts.retain(|p| !p.is_empty());
    Some(parts.join(": "))
}

fn timed_out(status: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(c) = cause {
        if c.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The message and exit status of a failure.
fn report(failure: &Failure, url: &str) -> (Option<String>, u8) {
    match failure {
        Failure::Usage(m) => (Some(m.clone()), EX_USAGE),
        Failure::BadReply(m) => (Some(m.clone()), 1),
        Failure::Unfinished(m) => (Some(m.clone()), 1),
        Failure::Output(m) => (Some(format!("cannot write the output: {m}")), EX_IOERR),
        Failure::ClosedOutput => (None, 0),
        Failure::Rpc(s) if timed_out(s) => (
            Some(format!(
                "mediator-control at {url} did not answer within {} s; is it overloaded or stuck?",
                REQUEST_TIMEOUT.as_secs()
            )),
            EX_UNAVAILABLE,
        ),
        // tonic's words when an HTTP server that is not a gRPC one answered (a proxy, a web
        // server on the wrong port).
        Failure::Rpc(s) if s.message().starts_with("grpc-status header missing") => (
            Some(format!(
                "the server at {url} is not mediator-control ({}); check --endpoint or \
                 MEDIATOR_ENDPOINT",
                s.message()
            )),
            EX_UNAVAILABLE,
        ),
        Failure::Rpc(s) => match local_cause(s) {
            Some(cause) => (
                Some(format!(
                    "cannot reach mediator-control at {url}: {cause}; is it running? \
                     (set --endpoint or MEDIATOR_ENDPOINT)"
                )),
                EX_UNAVAILABLE,
            ),
            None if s.message().is_empty() => (Some(code_text(s.code()).to_string()), 1),
            None => (Some(format!("{}: {}", code_text(s.code()), s.message())), 1),
        },
    }
}

fn say(msg: &str) {
    // Nowhere left to complain if stderr is gone; the exit status still tells.
    let _ = writeln!(std::io::stderr(), "mediatorctl: {msg}");
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let printed = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    match printed {
                        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                            finish(&Failure::Output(err.to_string()), DEFAULT_ENDPOINT)
                        }
                        _ => ExitCode::SUCCESS,
                    }
                }
                _ => ExitCode::from(EX_USAGE),
            };
        }
    };
    if let Command::Completions { shell } = cli.command {
        return match completions(shell) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => finish(&f, &cli.endpoint),
        };
    }
    let auth = match client_auth(&cli) {
        Ok(a) => a,
        Err(f) => return finish(&f, &cli.endpoint),
    };
    let url = match endpoint_url(&cli.endpoint, auth.uses_tls()) {
        Ok(u) => u,
        Err(f) => return finish(&f, &cli.endpoint),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            say(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(EX_OSERR);
        }
    };
    match runtime.block_on(run(cli, &url, &auth)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => finish(&f, &url),
    }
}

fn finish(failure: &Failure, url: &str) -> ExitCode {
    let (msg, code) = report(failure, url);
    if let Some(m) = msg {
        say(&m);
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_examples() {
        fn walk(cmd: &clap::Command, path: &str) {
            let path = format!("{path} {}", cmd.get_name());
            let help = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(help.starts_with("Examples:"), "{path} has no examples");
            // Nothing after the examples: every further line is an indented command.
            assert!(
                help.lines().skip(1).all(|l| l.starts_with("  mediatorctl ")
                    || l.starts_with("      ")
                    || l.starts_with("  MEDIATOR_")
                    || l.starts_with("  ssh ")),
                "{path}: {help}"
            );
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &path);
                }
            }
        }
        walk(&Cli::command(), "");
    }

    #[test]
    fn usage_errors_exit_64_and_help_exits_0() {
        let e = Cli::try_parse_from(["mediatorctl", "pool", "add"]).expect_err("missing args");
        assert_ne!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let e = Cli::try_parse_from(["mediatorctl", "pool", "--help"]).expect_err("help");
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint_url("198.18.0.5:7300", false).ok(),
            Some("http://198.18.0.5:7300".into())
        );
        assert_eq!(
            endpoint_url(DEFAULT_ENDPOINT, false).ok(),
            Some(DEFAULT_ENDPOINT.into())
        );
        assert!(matches!(
            endpoint_url("https://ctl.contoso.com:7300", false),
            Err(Failure::Usage(_))
        ));
        assert_eq!(
            endpoint_url(DEFAULT_ADDRESS, true).ok(),
            Some("https://127.0.0.1:7300".into()),
            "the default follows --api-ca"
        );
        assert_eq!(
            endpoint_url("ctl.contoso.com:7300", true).ok(),
            Some("https://ctl.contoso.com:7300".into()),
            "TLS: https"
        );
        assert!(matches!(
            endpoint_url("http://ctl.contoso.com:7300", true),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            endpoint_url("ftp://x", false),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            endpoint_url("http://", false),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            endpoint("http://bad host:7300", &ClientAuth::default()),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn server_statuses_exit_1_with_their_kind() {
        let (msg, code) = report(
            &Failure::Rpc(tonic::Status::aborted("pool1.contoso.com is at revision 4")),
            DEFAULT_ENDPOINT,
        );
        assert_eq!(code, 1);
        assert_eq!(
            msg.as_deref(),
            Some("aborted (someone else changed it): pool1.contoso.com is at revision 4")
        );
        let (msg, _) = report(
            &Failure::Rpc(tonic::Status::not_found("")),
            DEFAULT_ENDPOINT,
        );
        assert_eq!(msg.as_deref(), Some("not found"));
    }

    #[test]
    fn local_transport_errors_exit_69() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let status = tonic::Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        let (msg, code) = report(&Failure::Rpc(status), DEFAULT_ENDPOINT);
        assert_eq!(code, EX_UNAVAILABLE);
        let msg = msg.unwrap_or_default();
        assert!(
            msg.starts_with(
                "cannot reach mediator-control at http://127.0.0.1:7300: Connection refused"
            ),
            "{msg}"
        );
        assert!(
            msg.ends_with("(set --endpoint or MEDIATOR_ENDPOINT)"),
            "{msg}"
        );
    }

    #[test]
    fn a_web_server_is_not_mediator_control() {
        let status = tonic::Status::unimplemented(
            "grpc-status header missing, mapped from HTTP status code 404",
        );
        let (msg, code) = report(&Failure::Rpc(status), DEFAULT_ENDPOINT);
        assert_eq!(code, EX_UNAVAILABLE);
        assert!(
            msg.unwrap_or_default()
                .starts_with("the server at http://127.0.0.1:7300 is not mediator-control")
        );
    }
}

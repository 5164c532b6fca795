//! A `mediator-dataplane` process as a test fixture (on the shared `process::Process`): started
//! (optionally inside a lab namespace), killed and restarted at will, and on drop killed with its
//! pinned BPF objects and state removed.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use hyper_util::rt::TokioIo;
use mediator_proto::dataplane::v1::GetCapabilitiesRequest;
use mediator_proto::dataplane::v1::dataplane_service_client::DataplaneServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::lab::in_netns;
use crate::process::Process;

pub type Client = DataplaneServiceClient<Channel>;

/// The daemon binary of this workspace's build (cargo builds it for `cargo test --workspace`).
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("MEDIATOR_DATAPLANE_BIN") {
        return p.into();
    }
    built_binary("mediator-dataplane")
}

/// A binary of this workspace's build, found beside the running test or harness.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/mediator-bench or target/<profile>/deps/<test>: look beside, then one up.
    let beside = exe.parent().map(|d| d.join(name));
    let above = exe.parent().and_then(|d| d.parent()).map(|d| d.join(name));
    [beside, above]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not built beside {}: build it with `cargo build --workspace --bins`",
                exe.display()
            )
        })
}

pub struct Daemon {
    pub ns: Option<String>,
    pub grpc: SocketAddr,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    proc: Process,
}

impl Daemon {
    /// Starts the daemon with `args` (plus its gRPC address, pin and state directories).
    pub fn start(
        tag: &str,
        ns: Option<&str>,
        grpc: SocketAddr,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let unique = format!("{}_{}", std::process::id(), tag);
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/mediator_test_{unique}"));
        // MEDIATOR_TEST_STATE_ROOT: where session records go (e.g. a tmpfs, as /run is on a
        // real host; here /run and /tmp share the disk with everything else).
        let root = std::env::var_os("MEDIATOR_TEST_STATE_ROOT")
            .map_or_else(std::env::temp_dir, PathBuf::from);
        let state_dir = root.join(format!("mediator-test-{unique}"));
        let _ = std::fs::remove_dir_all(&state_dir);
        let mut all: Vec<OsString> = vec![
            "--grpc-listen".into(),
            grpc.to_string().into(),
            "--pin-dir".into(),
            pin_dir.clone().into(),
            "--state-dir".into(),
            state_dir.clone().into(),
        ];
        all.extend(args.iter().map(OsString::from));
        let proc = Process::start(
            "mediator-dataplane",
            binary(),
            ns,
            all,
            std::env::temp_dir().join(format!("mediator-test-{unique}.log")),
        )?;
        Ok(Self {
            ns: ns.map(str::to_string),
            grpc,
            pin_dir,
            state_dir,
            proc,
        })
    }

    /// Connects, waiting until the daemon answers (or fails with its log).
    pub async fn client(&mut self) -> anyhow::Result<Client> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.proc.exited()? {
                bail!("mediator-dataplane exited ({status}):\n{}", self.log());
            }
            if let Ok(mut c) = self.connect().await
                && c.get_capabilities(GetCapabilitiesRequest {}).await.is_ok()
            {
                return Ok(c);
            }
            if Instant::now() > deadline {
                bail!(
                    "mediator-dataplane did not answer within 20 s:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn connect(&self) -> anyhow::Result<Client> {
        Ok(DataplaneServiceClient::new(
            ns_channel(self.ns.clone(), self.grpc).await?,
        ))
    }

    /// The daemon's process id (nsenter execs it, so this is the daemon itself).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.terminate()
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.restart()
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Stopped before its pins and state go (the process fixture prints the log on a panic).
        self.proc.kill9();
        if let Ok(entries) = std::fs::read_dir(&self.pin_dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// A loopback TCP port that was free a moment ago.
/// A gRPC channel to `addr` inside namespace `ns` (or here): each connection is made from a thread
/// that entered the namespace, so daemons can listen on their namespace's loopback.
pub async fn ns_channel(ns: Option<String>, addr: SocketAddr) -> anyhow::Result<Channel> {
    ns_channel_via(ns, addr, Endpoint::from_static("http://mediator.invalid")).await
}

/// [`ns_channel`] with `endpoint`'s settings (its TLS, checked against its URL's host).
pub async fn ns_channel_via(
    ns: Option<String>,
    addr: SocketAddr,
    endpoint: Endpoint,
) -> anyhow::Result<Channel> {
    Ok(endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let ns = ns.clone();
            async move {
                let std = tokio::task::spawn_blocking(move || match ns {
                    Some(ns) => in_netns(&ns, move || std::net::TcpStream::connect(addr)),
                    None => std::net::TcpStream::connect(addr),
                })
                .await
                .map_err(std::io::Error::other)??;
                std.set_nonblocking(true)?;
                std.set_nodelay(true)?;
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::TcpStream::from_std(std)?))
            }
        }))
        .await?)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Asserts that the standard gRPC health service at `endpoint` (http://host:port) says SERVING for
/// `service`.
pub async fn assert_serving(endpoint: &str, service: &str) {
    let channel = tonic::transport::Channel::from_shared(endpoint.to_string())
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        "{service}"
    );
}

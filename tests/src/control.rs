//! A `mediator-control` process as a test fixture (on the shared `process::Process`), on loopback
//! or in a lab namespace with its own data directory; killed (and its data directory removed) on
//! drop.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use mediator_proto::control::v1::ListPoolsRequest;
use mediator_proto::control::v1::call_service_client::CallServiceClient;
use mediator_proto::control::v1::topology_service_client::TopologyServiceClient;
use tonic::transport::Channel;

use crate::daemon::{built_binary, free_port, ns_channel};
use crate::process::Process;

pub type Topo = TopologyServiceClient<Channel>;

pub struct Control {
    pub grpc: SocketAddr,
    /// The network namespace it runs in (None: here).
    pub ns: Option<String>,
    pub data_dir: PathBuf,
    proc: Process,
}

impl Control {
    pub fn start(tag: &str) -> anyhow::Result<Self> {
        Self::start_in(tag, None, &[])
    }

    /// Starts it in namespace `ns` (SIP listens on the lab's addresses there) with `args`.
    pub fn start_in(tag: &str, ns: Option<&str>, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_binary(built_binary("mediator-control"), tag, ns, args)
    }

    /// The same with another build of mediator-control (a benchmark's baseline).
    pub fn start_binary(
        binary: PathBuf,
        tag: &str,
        ns: Option<&str>,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let unique = format!("{}-{tag}", std::process::id());
        let data_dir = std::env::temp_dir().join(format!("mediator-control-test-{unique}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
        all.extend([
            "--data-dir".into(),
            data_dir.clone().into(),
            "--grpc-listen".into(),
            grpc.to_string().into(),
        ]);
        let proc = Process::start(
            "mediator-control",
            binary,
            ns,
            all,
            std::env::temp_dir().join(format!("mediator-control-test-{unique}.log")),
        )?;
        Ok(Self {
            grpc,
            ns: ns.map(str::to_string),
            data_dir,
            proc,
        })
    }

    /// The endpoint URL mediatorctl takes.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn client(&mut self) -> anyhow::Result<Topo> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.proc.exited()? {
                bail!("mediator-control exited ({status}):\n{}", self.log());
            }
            if let Ok(ch) = self.channel().await {
                let mut c = TopologyServiceClient::new(ch);
                if c.list_pools(ListPoolsRequest::default()).await.is_ok() {
                    return Ok(c);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "mediator-control did not answer within 20 s:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A channel to its gRPC service (through its namespace when it has one).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        ns_channel(self.ns.clone(), self.grpc).await
    }

    pub async fn calls(&self) -> anyhow::Result<CallServiceClient<Channel>> {
        Ok(CallServiceClient::new(self.channel().await?))
    }

    /// The daemon's process id (nsenter execs it, so this is the daemon itself).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.restart()
    }

    /// SIGTERM (a graceful stop) without waiting.
    pub fn signal_term(&self) {
        self.proc.signal_term();
    }

    /// `Some(status)` once the daemon has exited by itself.
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        self.proc.exited()
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // Stopped before its data directory goes (the process fixture prints the log on a panic).
        self.proc.kill9();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

//! A `mediator-control` process as a test fixture, on loopback with its own data directory;
//! killed (and its data directory removed) on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;
use mediator_proto::control::v1::ListPoolsRequest;
use mediator_proto::control::v1::call_service_client::CallServiceClient;
use mediator_proto::control::v1::topology_service_client::TopologyServiceClient;
use tonic::transport::Channel;

use crate::daemon::{built_binary, free_port, ns_channel};

pub type Topo = TopologyServiceClient<Channel>;

pub struct Control {
    pub grpc: SocketAddr,
    /// The network namespace it runs in (None: here).
    pub ns: Option<String>,
    args: Vec<String>,
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Control {
    pub fn start(tag: &str) -> anyhow::Result<Self> {
        Self::start_in(tag, None, &[])
    }

    /// Starts it in namespace `ns` (SIP listens on the lab's addresses there) with `args`.
    pub fn start_in(tag: &str, ns: Option<&str>, args: &[&str]) -> anyhow::Result<Self> {
        let unique = format!("{}-{tag}", std::process::id());
        let data_dir = std::env::temp_dir().join(format!("mediator-control-test-{unique}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut c = Self {
            grpc: SocketAddr::from(([127, 0, 0, 1], free_port())),
            ns: ns.map(str::to_string),
            args: args.iter().map(|s| s.to_string()).collect(),
            data_dir,
            log: std::env::temp_dir().join(format!("mediator-control-test-{unique}.log")),
            child: None,
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(built_binary("mediator-control"));
                c
            }
            None => Command::new(built_binary("mediator-control")),
        };
        let child = cmd
            .args(&self.args)
            .env("MEDIATOR_LOG", "info")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--grpc-listen")
            .arg(self.grpc.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// The endpoint URL mediatorctl takes.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn client(&mut self) -> anyhow::Result<Topo> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
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
        self.child.as_ref().map(Child::id)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- mediator-control log ----\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(&self.log);
    }
}

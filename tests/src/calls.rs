//! The call lab: the namespace lab with mediator-dataplane (XDP native) and mediator-control in
//! the relay namespace, the lab topology (`tests/lab/topology.toml`) imported, and helpers to run
//! SIPp on either side and read the calls back over the API.

use std::time::Duration;

use mediator_proto::control::v1 as pb;

use crate::control::Control;
use crate::daemon::Daemon;
use crate::fixture::relay_daemon;
use crate::lab::{GW_PEER, GW_RELAY, Lab, POOL_PEER, POOL_RELAY};
use crate::sipp::{UacRun, uac};

/// The lab topology, as the quick start also uses it.
pub const TOPOLOGY: &str = include_str!("../lab/topology.toml");

/// SIPp scenarios for the call tests.
pub fn scenario(name: &str) -> String {
    format!("{}/sipp/{name}.xml", env!("CARGO_MANIFEST_DIR"))
}

/// mediator-control in `lab`'s relay namespace with the lab topology imported, its pool served
/// by the dataplanes at `dataplanes` (gRPC addresses), and `args`; returns once SIP listens.
pub async fn lab_control(
    lab: &Lab,
    tag: &str,
    dataplanes: &[String],
    args: &[&str],
) -> anyhow::Result<Control> {
    lab_control_using(lab, tag, dataplanes, args, None).await
}

/// [`lab_control`] with another build of mediator-control (`None`: this workspace's).
pub async fn lab_control_using(
    lab: &Lab,
    tag: &str,
    dataplanes: &[String],
    args: &[&str],
    binary: Option<&std::path::Path>,
) -> anyhow::Result<Control> {
    let list: Vec<String> = dataplanes.iter().map(|a| format!("\"{a}\"")).collect();
    let toml = TOPOLOGY.replace(
        "dataplanes = [\"127.0.0.1:7400\"]",
        &format!("dataplanes = [{}]", list.join(", ")),
    );
    let mut control = match binary {
        Some(b) => Control::start_binary(b.to_path_buf(), tag, Some(&lab.relay.name), args)?,
        None => Control::start_in(tag, Some(&lab.relay.name), args)?,
    };
    let mut topo = control.client().await?;
    topo.import_topology(pb::ImportTopologyRequest {
        toml,
        dry_run: false,
    })
    .await?;
    // The runtime binds the topology's SIP addresses within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(control)
}

pub struct CallLab {
    // Dropped in this order: control, dataplanes, then the lab.
    pub control: Control,
    pub dataplane: Daemon,
    /// More dataplanes of the pool (userspace, gRPC on 7401, 7402 …), for the call benchmark.
    pub extra: Vec<Daemon>,
    pub lab: Lab,
}

impl CallLab {
    pub async fn new(tag: &str) -> anyhow::Result<CallLab> {
        Self::with_ports(tag, "30000-30999").await
    }

    /// With the dataplane's media port range `ports` ("MIN-MAX"; each call takes an RTP/RTCP
    /// pair per side).
    pub async fn with_ports(tag: &str, ports: &str) -> anyhow::Result<CallLab> {
        Self::with_relays(tag, &[ports]).await
    }

    /// A pool with one dataplane per port range: the first with XDP (gRPC 127.0.0.1:7400), the
    /// others userspace-only on the same addresses (7401, 7402 …) — one process holds four
    /// sockets per session, and the open-files limit caps how many sessions one can hold.
    pub async fn with_relays(tag: &str, ranges: &[&str]) -> anyhow::Result<CallLab> {
        Self::build(tag, ranges, &[]).await
    }

    /// The general form: dataplane port ranges as [`Self::with_relays`], extra flags for
    /// mediator-control.
    pub async fn build(
        tag: &str,
        ranges: &[&str],
        control_args: &[&str],
    ) -> anyhow::Result<CallLab> {
        Self::build_using(tag, ranges, control_args, None).await
    }

    /// [`Self::build`] with another build of mediator-control (a benchmark's baseline).
    pub async fn build_using(
        tag: &str,
        ranges: &[&str],
        control_args: &[&str],
        control_binary: Option<&std::path::Path>,
    ) -> anyhow::Result<CallLab> {
        Self::build_full(tag, ranges, control_args, &[], control_binary).await
    }

    /// [`Self::build_using`] with extra flags for the first (XDP) dataplane too.
    pub async fn build_full(
        tag: &str,
        ranges: &[&str],
        control_args: &[&str],
        dataplane_args: &[&str],
        control_binary: Option<&std::path::Path>,
    ) -> anyhow::Result<CallLab> {
        let lab = Lab::new(tag)?;
        let mut dataplane = relay_daemon(&lab, tag, "native", ranges[0], dataplane_args)?;
        dataplane.client().await?;
        let mut extra = Vec::new();
        let mut addrs = vec!["127.0.0.1:7400".to_string()];
        for (i, ports) in ranges.iter().enumerate().skip(1) {
            let port = 7400 + i as u16;
            let mut d = Daemon::start(
                &format!("{tag}{i}"),
                Some(&lab.relay.name),
                crate::fixture::sa("127.0.0.1", port),
                &[
                    "--xdp-mode",
                    "off",
                    "--pool-address",
                    POOL_RELAY,
                    "--gateway-address",
                    GW_RELAY,
                    "--port-range",
                    ports,
                ],
            )?;
            d.client().await?;
            extra.push(d);
            addrs.push(format!("127.0.0.1:{port}"));
        }
        let control = lab_control_using(&lab, tag, &addrs, control_args, control_binary).await?;
        Ok(CallLab {
            control,
            dataplane,
            extra,
            lab,
        })
    }

    /// SIPp calls from the pool side (the Front End) to `dialed` through Mediator.
    pub fn from_pool(&self, dialed: &str, calls: u32, args: &[&str]) -> anyhow::Result<UacRun> {
        let target = format!("{POOL_RELAY}:5060");
        call_from(&self.lab.pool.name, POOL_PEER, &target, dialed, calls, args)
    }

    /// SIPp calls from the gateway to `dialed` on Mediator's gateway-side `port`.
    pub fn from_gateway(
        &self,
        dialed: &str,
        port: u16,
        calls: u32,
        args: &[&str],
    ) -> anyhow::Result<UacRun> {
        let target = format!("{GW_RELAY}:{port}");
        call_from(&self.lab.gw.name, GW_PEER, &target, dialed, calls, args)
    }

    pub async fn recent(&self) -> anyhow::Result<Vec<pb::Call>> {
        let mut c = self.control.calls().await?;
        Ok(c.list_recent_calls(pb::ListRecentCallsRequest { limit: 0 })
            .await?
            .into_inner()
            .calls)
    }

    /// Waits until `n` calls have ended (their records are written once the relays answered).
    pub async fn wait_recent(&self, n: usize) -> anyhow::Result<Vec<pb::Call>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.recent().await?;
            if r.len() >= n || std::time::Instant::now() > deadline {
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn active(&self) -> anyhow::Result<Vec<pb::Call>> {
        let mut c = self.control.calls().await?;
        Ok(c.list_calls(pb::ListCallsRequest {})
            .await?
            .into_inner()
            .calls)
    }

    pub fn log(&self) -> String {
        self.control.log()
    }

    /// Runs mediatorctl against this control daemon (inside the relay namespace); returns its
    /// exit code and stdout.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.lab.relay.name))
            .arg("--")
            .arg(crate::daemon::built_binary("mediatorctl"))
            .arg("--endpoint")
            .arg(self.control.grpc.to_string())
            .args(args)
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }
}

/// `calls` SIPp calls from `ip` in `ns` to `dialed` at `target`, 10 per second, within a minute;
/// `args` pick the scenario (default: `uac_pcap`, G.711 RTP from SIPp's capture).
pub fn call_from(
    ns: &str,
    ip: &str,
    target: &str,
    dialed: &str,
    calls: u32,
    args: &[&str],
) -> anyhow::Result<UacRun> {
    let mut a = vec!["-s", dialed];
    a.extend_from_slice(if args.is_empty() {
        &["-sn", "uac_pcap"][..]
    } else {
        args
    });
    uac(ns, ip, target, calls, 10, Duration::from_secs(60), &a)
}

/// Packets of a call's flows from `side` (rtp), and how many of them went through XDP.
pub fn flow(call: &pb::Call, side: &str) -> (u64, u64) {
    call.streams
        .iter()
        .flat_map(|s| s.flows.iter())
        .filter(|f| f.from_side == side && f.kind == "rtp")
        .fold((0, 0), |(p, x), f| (p + f.packets, x + f.xdp_packets))
}

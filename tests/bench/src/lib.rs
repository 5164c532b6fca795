//! The packet benchmark harness behind `mediator-bench`: N sessions of RTP both ways through a
//! relay in the namespace lab, for each forwarding mode and its floor side by side in one run. Its own
//! crate, so the integration tests do not compile it; built on `mediator-tests`' lab fixtures.
//!
//! Relay CPU is read from `/proc/<tid>/schedstat` (time on CPU, ns) of the relay's threads plus the
//! NAPI threads of the relay's two veths (threaded NAPI, so softirq work is charged to a thread);
//! the relay and those threads run on CPU 0; the traffic driver and the peers' NAPI threads on
//! CPU 1.

pub mod bare;
pub mod inject;
pub mod probe;
pub mod report;
pub mod rtpengine;
pub mod sip;
pub mod traffic;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};

use crate::probe::Report;
use inject::{Injector, Sender};
use mediator_tests::fixture::{create, relay_daemon, sa, strict};
use mediator_tests::lab::{GW_PEER, GW_RELAY, Lab, POOL_PEER, POOL_RELAY, mac, sh};
use mediator_tests::rtp::parse_mac;
use traffic::{Driven, GW_PEER_PORT, Generator, Load, Media, POOL_PEER_PORT, Peers, Stream};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every run in progress to stop (Ctrl-C); the lab is then torn down as usual.
pub fn request_stop() {
    STOP.store(true, Ordering::Relaxed);
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// The first relay port the floors and the bare relay use; the dataplane allocates from it too.
pub const FIRST_PORT: u16 = 20000;
/// The dataplane's media port range in the bench.
pub const PORT_RANGE: &str = "20000-60999";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The trivial XDP redirect program (native): the kernel path's floor.
    XdpFloor,
    /// mediator-dataplane, XDP native.
    XdpNative,
    /// mediator-dataplane, XDP generic.
    XdpGeneric,
    /// A bare recvmmsg/sendmmsg relay: the userspace floor.
    BareRelay,
    /// mediator-dataplane with XDP off: the userspace relay.
    Userspace,
    /// rtpengine (userspace forwarding), driven through its ng protocol.
    Rtpengine,
    /// mediator-dataplane's userspace relay terminating SRTP on the pool side (RTP↔SRTP).
    UserspaceSrtp,
    /// rtpengine bridging SRTP on the pool side to RTP on the gateway side.
    RtpengineSrtp,
    /// mediator-dataplane, XDP native, with SRTP end to end (srtp_passthrough: no keys).
    XdpPassthrough,
}

impl Mode {
    pub const ALL: [Mode; 9] = [
        Mode::XdpFloor,
        Mode::XdpNative,
        Mode::XdpGeneric,
        Mode::BareRelay,
        Mode::Userspace,
        Mode::Rtpengine,
        Mode::UserspaceSrtp,
        Mode::RtpengineSrtp,
        Mode::XdpPassthrough,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Mode::XdpNative => "xdp-native",
            Mode::XdpGeneric => "xdp-generic",
            Mode::XdpFloor => "xdp-floor",
            Mode::Userspace => "userspace",
            Mode::BareRelay => "bare-relay",
            Mode::Rtpengine => "rtpengine",
            Mode::UserspaceSrtp => "userspace-srtp",
            Mode::RtpengineSrtp => "rtpengine-srtp",
            Mode::XdpPassthrough => "xdp-passthrough",
        }
    }
    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
    /// Whether it runs mediator-dataplane (and so can be set up through mediator-control).
    pub fn runs_dataplane(self) -> bool {
        matches!(self, Mode::XdpNative | Mode::XdpGeneric | Mode::Userspace)
    }
    /// The floor this mode is compared with.
    pub fn floor(self) -> Option<Mode> {
        match self {
            Mode::XdpNative | Mode::XdpGeneric | Mode::XdpPassthrough => Some(Mode::XdpFloor),
            Mode::Userspace | Mode::Rtpengine | Mode::UserspaceSrtp | Mode::RtpengineSrtp => {
                Some(Mode::BareRelay)
            }
            _ => None,
        }
    }
    /// Whether it runs rtpengine.
    pub fn runs_rtpengine(self) -> bool {
        matches!(self, Mode::Rtpengine | Mode::RtpengineSrtp)
    }
    /// Whether its peers speak SRTP (the socket generator only).
    pub fn srtp(self) -> bool {
        matches!(
            self,
            Mode::UserspaceSrtp | Mode::RtpengineSrtp | Mode::XdpPassthrough
        )
    }
    /// Open files the relay process needs per session, where that limits the session count.
    fn files_per_session(self) -> u64 {
        match self {
            // RTP and RTCP sockets on both legs.
            Mode::XdpNative
            | Mode::XdpGeneric
            | Mode::Userspace
            | Mode::Rtpengine
            | Mode::UserspaceSrtp
            | Mode::RtpengineSrtp
            | Mode::XdpPassthrough => 4,
            // A socket per leg, in this process.
            Mode::BareRelay => 2,
            Mode::XdpFloor => 0,
        }
    }
}

/// The hard limit on open files a process here may have (the relay cannot raise it further).
pub fn open_file_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, hard)| hard)
}

/// How many sessions `mode` can hold on this machine, and why not more.
pub fn session_room(mode: Mode) -> (usize, String) {
    let ports = (60999 - u64::from(FIRST_PORT)) / 2;
    let per = mode.files_per_session();
    if per == 0 {
        return (ports as usize, format!("{ports} relay ports"));
    }
    let limit = open_file_limit();
    let room = (limit.saturating_sub(256) / per).min(ports);
    (
        room as usize,
        format!("open files are limited to {limit} per process here and each session takes {per}"),
    )
}

/// The lab with threaded NAPI on all four veths: the relay's (rp, rg) pinned with the relay on
/// CPU 0, the peers' (p0, g0) with the traffic driver on CPU 1.
pub struct BenchLab {
    pub lab: Lab,
    napi: Vec<u32>,
}

fn kthreads(prefixes: &[&str]) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| prefixes.iter().any(|p| c.trim_end().starts_with(p)))
        })
        .collect()
}

/// CPU time (ns) a thread or process has run, from schedstat.
fn schedstat(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Every thread of a process: their CPU time together.
fn process_cpu(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|t| schedstat(&format!("{}/schedstat", t.path().display())))
        .sum()
}

impl BenchLab {
    pub fn new() -> anyhow::Result<Self> {
        let lab = Lab::new("bench")?;
        for (ns, dev) in [
            (&lab.relay, "rp"),
            (&lab.relay, "rg"),
            (&lab.pool, "p0"),
            (&lab.gw, "g0"),
        ] {
            // `ip netns exec` remounts /sys for the namespace, so its devices show there.
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns.name,
                    "sh",
                    "-c",
                    &format!("echo 1 > /sys/class/net/{dev}/threaded"),
                ],
            )
            .with_context(|| format!("threaded NAPI on {dev}"))?;
        }
        let mut bl = Self {
            lab,
            napi: Vec::new(),
        };
        bl.refresh_napi()?;
        Ok(bl)
    }

    /// Finds the NAPI threads again (attaching XDP can make new ones) and pins them.
    fn refresh_napi(&mut self) -> anyhow::Result<()> {
        self.napi = kthreads(&["napi/rp-", "napi/rg-"]);
        if self.napi.is_empty() {
            bail!("no NAPI thread for the relay's veths appeared");
        }
        // Real-time priority, as softirq work preempts any process on a real NIC's core: at
        // normal priority the relay's own threads could keep a NAPI thread waiting past the
        // 256 frames a veth ring holds (about a millisecond at 200 kpps).
        for pid in &self.napi {
            let pid = pid.to_string();
            let _ = sh("taskset", &["-pc", "0", &pid]);
            sh("chrt", &["-f", "-p", "50", &pid])
                .context("real-time priority for a relay NAPI thread")?;
        }
        // The peers' NAPI threads share CPU 1 with the traffic driver, which never sleeps under
        // load: real-time priority lets them preempt it, so the receiving side never drops what
        // the relay forwarded (a veth ring holds 256 frames, about a millisecond here).
        for pid in kthreads(&["napi/p0-", "napi/g0-"]) {
            let pid = pid.to_string();
            let _ = sh("taskset", &["-pc", "1", &pid]);
            sh("chrt", &["-f", "-p", "50", &pid])
                .context("real-time priority for a peer's NAPI thread")?;
        }
        Ok(())
    }

    fn napi_cpu(&self) -> u64 {
        self.napi
            .iter()
            .map(|p| schedstat(&format!("/proc/{p}/schedstat")))
            .sum()
    }

    /// The injectors for `streams`, one per peer.
    pub fn injectors(&self, streams: &[Stream], media: &Media) -> anyhow::Result<[Injector; 2]> {
        let pool = Sender {
            netns: self.lab.pool.name.clone(),
            dev: "p0".into(),
            src_mac: parse_mac(&mac(&self.lab.pool, "p0")?),
            dst_mac: parse_mac(&mac(&self.lab.relay, "rp")?),
            src: SocketAddrV4::new(POOL_PEER.parse()?, POOL_PEER_PORT),
            relay_ip: POOL_RELAY.parse()?,
        };
        let gw = Sender {
            netns: self.lab.gw.name.clone(),
            dev: "g0".into(),
            src_mac: parse_mac(&mac(&self.lab.gw, "g0")?),
            dst_mac: parse_mac(&mac(&self.lab.relay, "rg")?),
            src: SocketAddrV4::new(GW_PEER.parse()?, GW_PEER_PORT),
            relay_ip: GW_RELAY.parse()?,
        };
        let (from_pool, from_gw): (Vec<Stream>, Vec<Stream>) =
            streams.iter().partition(|s| s.from_pool);
        Ok([
            Injector::new(&pool, &from_pool, media)?,
            Injector::new(&gw, &from_gw, media)?,
        ])
    }
}

/// Whose CPU time is the relay's (besides the NAPI threads).
enum Cpu {
    Process(u32),
    Thread(u64),
    None,
}

/// A relay set up for a number of sessions.
pub struct Relay {
    pub mode: Mode,
    pub streams: Vec<Stream>,
    cpu: Cpu,
    /// With `--via-sip`: the calls that hold the sessions (dropped before the relay).
    calls: Option<sip::Calls>,
    /// The SRTP modes: the peers' keys.
    pub srtp: Option<traffic::SrtpPeers>,
    /// What keeps the relay running (daemon, program, thread or process); dropped, it stops.
    _keep: Box<dyn std::any::Any>,
}

impl Relay {
    pub fn sessions(&self) -> usize {
        self.streams.len() / 2
    }

    /// How the sessions were set up, for the report.
    pub fn setup_note(&self) -> Option<String> {
        self.calls.as_ref().map(|c| {
            format!(
                "{}: {} sessions set up as SIP calls through mediator-control in {:.1} s ({:.0} calls/s)",
                self.mode.name(),
                c.count(),
                c.setup.as_secs_f64(),
                c.count() as f64 / c.setup.as_secs_f64().max(1e-3)
            )
        })
    }

    /// Ends the relay's runs: with `--via-sip`, hangs every call up through the API and checks
    /// that both SIP peers saw it end.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        if let Some(calls) = self.calls.take() {
            calls
                .hang_up()
                .await
                .with_context(|| format!("{}: ending the calls", self.mode.name()))?;
        }
        Ok(())
    }
    fn cpu_ns(&self, bl: &BenchLab) -> u64 {
        bl.napi_cpu()
            + match self.cpu {
                Cpu::Process(pid) => process_cpu(pid),
                Cpu::Thread(tid) => schedstat(&format!(
                    "/proc/{}/task/{tid}/schedstat",
                    std::process::id()
                )),
                Cpu::None => 0,
            }
    }
}

fn pin_process(pid: u32) -> anyhow::Result<()> {
    sh("taskset", &["-a", "-cp", "0", &pid.to_string()])?;
    Ok(())
}

/// Sets `mode` up with `sessions` sessions: programmed through the dataplane's gRPC API, or
/// rtpengine's ng protocol; with `via_sip` (the modes that run mediator-dataplane), as SIP calls
/// with `via_sip`'s media through mediator-control.
pub async fn setup(
    bl: &mut BenchLab,
    mode: Mode,
    sessions: usize,
    via_sip: Option<&Media>,
) -> anyhow::Result<Relay> {
    let (room, why) = session_room(mode);
    if sessions == 0 || sessions > room {
        bail!(
            "{}: {sessions} sessions do not fit: at most {room} here ({why})",
            mode.name()
        );
    }
    let pool_peer = SocketAddrV4::new(POOL_PEER.parse()?, POOL_PEER_PORT);
    let gw_peer = SocketAddrV4::new(GW_PEER.parse()?, GW_PEER_PORT);
    let (pool_relay, gw_relay): (Ipv4Addr, Ipv4Addr) = (POOL_RELAY.parse()?, GW_RELAY.parse()?);
    anyhow::ensure!(
        via_sip.is_none() || !mode.srtp(),
        "{}: --via-sip does not run the SRTP modes",
        mode.name()
    );
    let mut calls = None;
    let srtp = mode.srtp().then(traffic::SrtpPeers::default);
    // The bench's keys: the pool-side peer's, the relay's toward it, the gateway-side peer's.
    let suite = mediator_dataplane::srtp::Suite::AesCm128HmacSha1_80;
    let key = |fill: u8| -> Vec<u8> { (0..30u8).map(|i| i.wrapping_mul(29) ^ fill).collect() };
    let master = |k: &[u8]| mediator_dataplane::srtp::MasterKey::from_concatenated(suite, k);
    let (pool_key, relay_key, gw_key) = (key(0x11), key(0x22), key(0x33));
    let (keep, cpu, addrs) = match mode {
        Mode::XdpNative
        | Mode::XdpGeneric
        | Mode::Userspace
        | Mode::UserspaceSrtp
        | Mode::XdpPassthrough => {
            let xdp = match mode {
                Mode::XdpNative | Mode::XdpPassthrough => "native",
                Mode::XdpGeneric => "generic",
                _ => "off",
            };
            if let Some(p) = &srtp {
                p.send_with(true, &master(&pool_key)?)?;
                if mode == Mode::UserspaceSrtp {
                    // Terminated: the relay decrypts the pool side and encrypts toward it.
                    p.receive_with(true, &master(&relay_key)?)?;
                } else {
                    // Passthrough: the peers' keys end to end, none at the relay.
                    p.send_with(false, &master(&gw_key)?)?;
                    p.receive_with(false, &master(&pool_key)?)?;
                    p.receive_with(true, &master(&gw_key)?)?;
                }
            }
            let mut d = relay_daemon(
                &bl.lab,
                &format!("bench-{}", mode.name()),
                xdp,
                PORT_RANGE,
                &[],
            )?;
            let mut c = d.client().await?;
            let mut addrs = Vec::with_capacity(sessions);
            if let Some(media) = via_sip {
                let (placed, a) = sip::place(&bl.lab, sessions, media).await?;
                calls = Some(placed);
                addrs = a;
            }
            for i in (0..sessions).filter(|_| via_sip.is_none()) {
                if stop_requested() {
                    bail!("interrupted");
                }
                let mut req = create(
                    &format!("bench-{i}"),
                    SocketAddr::V4(pool_peer),
                    SocketAddr::V4(gw_peer),
                    strict(),
                );
                if mode == Mode::UserspaceSrtp
                    && let Some(pool) = req.pool.as_mut()
                {
                    pool.srtp = Some(mediator_proto::dataplane::v1::SrtpSpec {
                        suite: suite.name().into(),
                        peer_key: pool_key.clone(),
                        relay_key: relay_key.clone(),
                        ..Default::default()
                    });
                }
                let s = c
                    .create_session(req)
                    .await
                    .with_context(|| format!("creating session {i} of {sessions}"))?
                    .into_inner()
                    .session
                    .context("no session in the answer")?;
                let (p, g) = mediator_tests::fixture::relay_ports(&s);
                addrs.push((sa(POOL_RELAY, p), sa(GW_RELAY, g)));
            }
            let pid = d.pid().context("dataplane pid")?;
            pin_process(pid)?;
            (
                Box::new(d) as Box<dyn std::any::Any>,
                Cpu::Process(pid),
                addrs,
            )
        }
        Mode::XdpFloor => {
            let last = FIRST_PORT + 2 * (sessions as u16 - 1);
            let route = |src: SocketAddrV4,
                         dst: SocketAddrV4,
                         from: &str,
                         to_ns: &mediator_tests::lab::Netns,
                         to: &str|
             -> anyhow::Result<_> {
                Ok(mediator_dataplane::floor::FloorRoute {
                    ports: (FIRST_PORT, last),
                    src,
                    dst,
                    src_mac: parse_mac(&mac(&bl.lab.relay, from)?),
                    dst_mac: parse_mac(&mac(to_ns, to)?),
                })
            };
            let routes = [
                route(
                    SocketAddrV4::new(gw_relay, FIRST_PORT),
                    gw_peer,
                    "rg",
                    &bl.lab.gw,
                    "g0",
                )?,
                route(
                    SocketAddrV4::new(pool_relay, FIRST_PORT),
                    pool_peer,
                    "rp",
                    &bl.lab.pool,
                    "p0",
                )?,
            ];
            let floor = mediator_tests::lab::in_netns(&bl.lab.relay.name, move || {
                mediator_dataplane::floor::Floor::attach("rp", "rg", true, routes)
                    .map_err(|e| e.to_string())
            })
            .map_err(anyhow::Error::msg)?;
            let addrs = (0..sessions)
                .map(|i| {
                    let port = FIRST_PORT + 2 * i as u16;
                    (
                        SocketAddr::from((pool_relay, port)),
                        SocketAddr::from((gw_relay, port)),
                    )
                })
                .collect();
            (Box::new(floor) as Box<dyn std::any::Any>, Cpu::None, addrs)
        }
        Mode::BareRelay => {
            let (relay, addrs) = bare::BareRelay::start(
                &bl.lab.relay.name,
                sessions,
                FIRST_PORT,
                (pool_relay, pool_peer),
                (gw_relay, gw_peer),
            )?;
            let tid = relay.tid();
            (
                Box::new(relay) as Box<dyn std::any::Any>,
                Cpu::Thread(tid),
                addrs,
            )
        }
        Mode::Rtpengine | Mode::RtpengineSrtp => {
            let mut r = rtpengine::Rtpengine::start(&bl.lab.relay.name, sessions)?;
            let pool_srtp = srtp.as_ref().map(|_| pool_key.as_slice());
            let (addrs, keys) = r
                .offer_answer(sessions, pool_peer, gw_peer, pool_srtp)
                .context("setting up calls in rtpengine")?;
            if let Some(p) = &srtp {
                p.send_with(true, &master(&pool_key)?)?;
                // rtpengine keys each call apart: the gateway-to-pool stream of call i.
                for (i, k) in keys.iter().enumerate() {
                    let ssrc = traffic::streams(&addrs)[2 * i + 1].ssrc;
                    p.receive_ssrc_with(true, ssrc, &master(k)?)?;
                }
            }
            let pid = r.pid();
            pin_process(pid)?;
            (
                Box::new(r) as Box<dyn std::any::Any>,
                Cpu::Process(pid),
                addrs,
            )
        }
    };
    bl.refresh_napi()?;
    Ok(Relay {
        mode,
        streams: traffic::streams(&addrs),
        cpu,
        calls,
        srtp,
        _keep: keep,
    })
}

/// One measured run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub mode: Mode,
    pub generator: Generator,
    pub sessions: usize,
    /// Packets per second asked for (both directions).
    pub rate: u64,
    pub offered: u64,
    pub forwarded: u64,
    pub seconds: f64,
    pub relay_cpu_ns: u64,
    pub report: Report,
    /// After a run with loss over the threshold: streams that no longer forwarded.
    pub muted: Option<usize>,
}

impl Outcome {
    pub fn ns_per_packet(&self) -> f64 {
        if self.forwarded == 0 {
            f64::NAN
        } else {
            self.relay_cpu_ns as f64 / self.forwarded as f64
        }
    }
    pub fn offered_pps(&self) -> f64 {
        self.offered as f64 / self.seconds.max(1e-9)
    }
    pub fn forwarded_pps(&self) -> f64 {
        self.forwarded as f64 / self.seconds.max(1e-9)
    }
    pub fn loss(&self) -> f64 {
        self.report.loss_ratio
    }
}

/// Drives `load` through `relay` and measures it. After a run whose loss passes `threshold`,
/// probes every stream: each must forward again.
pub fn measure(
    bl: &BenchLab,
    relay: &Relay,
    peers: &Peers,
    load: Load,
    injectors: Option<&mut [Injector; 2]>,
    threshold: f64,
    progress: &(dyn Fn(f64) + Sync),
) -> anyhow::Result<Outcome> {
    let before = relay.cpu_ns(bl);
    let driven: Driven = traffic::drive(
        peers,
        &relay.streams,
        load,
        injectors,
        relay.srtp.as_ref(),
        progress,
    )?;
    let relay_cpu_ns = relay.cpu_ns(bl).saturating_sub(before);
    if stop_requested() {
        bail!("interrupted");
    }
    // An SRTP relay's replay protection refuses the probe's restarted sequence numbers: after
    // an SRTP run the probe is not made (the report shows no figure).
    let muted = if driven.report.loss_ratio > threshold && relay.srtp.is_none() {
        let m = traffic::muted_streams(peers, &relay.streams, load.media, 3, None)?;
        Some(m.len())
    } else {
        None
    };
    Ok(Outcome {
        mode: relay.mode,
        generator: load.generator,
        sessions: relay.sessions(),
        rate: load.rate,
        offered: driven.offered(),
        forwarded: driven.report.received,
        seconds: driven.seconds,
        relay_cpu_ns,
        report: driven.report,
        muted,
    })
}

/// A mode's runs at one setting, and the medians it is judged by.
#[derive(Clone, Debug)]
pub struct Summary {
    pub mode: Mode,
    pub runs: Vec<Outcome>,
}

impl Summary {
    pub fn median_ns(&self) -> f64 {
        self.median_of(Outcome::ns_per_packet)
    }
    pub fn median_of(&self, f: impl Fn(&Outcome) -> f64) -> f64 {
        median(self.runs.iter().map(f).collect())
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The highest rate among `runs` whose loss stayed within `threshold` (None when none did).
pub fn loss_free_max(runs: &[Outcome], threshold: f64) -> Option<f64> {
    runs.iter()
        .filter(|r| r.loss() <= threshold && r.forwarded > 0)
        .map(Outcome::offered_pps)
        .max_by(|a, b| a.total_cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn run(mode: Mode, cpu: u64, fwd: u64) -> Outcome {
        Outcome {
            mode,
            generator: Generator::Socket,
            sessions: 1,
            rate: fwd,
            offered: fwd,
            forwarded: fwd,
            seconds: 1.0,
            relay_cpu_ns: cpu,
            report: Report {
                sent: fwd,
                received: fwd,
                ..Report::default()
            },
            muted: None,
        }
    }

    #[test]
    fn medians_and_cpu_per_packet() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![f64::NAN]).is_nan());
        let s = Summary {
            mode: Mode::XdpNative,
            runs: vec![
                run(Mode::XdpNative, 1200, 10),
                run(Mode::XdpNative, 9000, 10),
                run(Mode::XdpNative, 1100, 10),
            ],
        };
        assert_eq!(s.median_ns(), 120.0);
        assert!(run(Mode::XdpNative, 5, 0).ns_per_packet().is_nan());
    }

    #[test]
    fn loss_free_max_ignores_lossy_runs() {
        let mut lossy = run(Mode::Userspace, 1, 300);
        lossy.report.loss_ratio = 0.01;
        let runs = [
            run(Mode::Userspace, 1, 100),
            run(Mode::Userspace, 1, 200),
            lossy,
        ];
        assert_eq!(loss_free_max(&runs, 0.0001), Some(200.0));
        assert_eq!(loss_free_max(&runs[2..], 0.0001), None);
    }

    #[test]
    fn session_room_follows_the_open_file_limit() {
        let (room, why) = session_room(Mode::XdpNative);
        assert!(
            room >= 1 && room as u64 <= open_file_limit() / 4,
            "{room}: {why}"
        );
        assert!(session_room(Mode::XdpFloor).0 > room);
    }
}

//! The packet benchmark: relay CPU time per forwarded packet, for each forwarding mode and its floor,
//! measured side by side in one run in the namespace lab.
//!
//! Relay CPU is read from `/proc/<tid>/schedstat` (time on CPU, ns) of the relay's threads plus the
//! NAPI thread of the relay's ingress veth (threaded NAPI, so softirq work is attributed to a
//! thread); the relay runs on CPU 0, the traffic generator and the receiving peer on CPU 1.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::daemon::Daemon;
use crate::fixture::{create, relay_daemon, relay_ports, sa, strict};
use crate::lab::{GW_PEER, GW_RELAY, Lab, POOL_PEER, POOL_RELAY, in_netns, mac, sh};
use crate::rtp::{parse_mac, pin_thread, rtp_packet, send_many, udp_in};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// mediator-dataplane, XDP native.
    XdpNative,
    /// mediator-dataplane, XDP generic.
    XdpGeneric,
    /// The trivial XDP redirect program (native): the kernel path's floor.
    XdpFloor,
    /// mediator-dataplane with XDP off: the userspace relay.
    Userspace,
    /// A bare recvmmsg/sendmmsg loop: the userspace floor.
    BareRelay,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::XdpFloor,
        Mode::XdpNative,
        Mode::XdpGeneric,
        Mode::BareRelay,
        Mode::Userspace,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Mode::XdpNative => "xdp-native",
            Mode::XdpGeneric => "xdp-generic",
            Mode::XdpFloor => "xdp-floor",
            Mode::Userspace => "userspace",
            Mode::BareRelay => "bare-relay",
        }
    }
    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
    /// The floor this mode is compared with.
    pub fn floor(self) -> Option<Mode> {
        match self {
            Mode::XdpNative | Mode::XdpGeneric => Some(Mode::XdpFloor),
            Mode::Userspace => Some(Mode::BareRelay),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Params {
    pub rate_pps: u64,
    pub duration: Duration,
    pub payload: usize,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub mode: Mode,
    pub offered: u64,
    pub forwarded: u64,
    pub seconds: f64,
    pub relay_cpu_ns: u64,
}

impl Outcome {
    pub fn ns_per_packet(&self) -> f64 {
        if self.forwarded == 0 {
            f64::NAN
        } else {
            self.relay_cpu_ns as f64 / self.forwarded as f64
        }
    }
    pub fn loss(&self) -> f64 {
        if self.offered == 0 {
            0.0
        } else {
            1.0 - self.forwarded as f64 / self.offered as f64
        }
    }
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

fn kthreads(prefix: &str) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .collect()
}

/// The lab with threaded NAPI on the relay's pool-side veth, whose thread is pinned to CPU 0.
pub struct BenchLab {
    pub lab: Lab,
    napi: Vec<u32>,
}

impl BenchLab {
    pub fn new() -> anyhow::Result<Self> {
        let before = kthreads("napi/rp-");
        let lab = Lab::new("bench")?;
        sh(
            "ip",
            &[
                "netns",
                "exec",
                &lab.relay.name,
                "sh",
                "-c",
                "echo 1 > /sys/class/net/rp/threaded",
            ],
        )
        .context("threaded NAPI on rp")?;
        let mut bl = Self {
            lab,
            napi: Vec::new(),
        };
        bl.refresh_napi(&before);
        if bl.napi.is_empty() {
            bail!("no NAPI thread for the relay's veth appeared");
        }
        Ok(bl)
    }

    fn refresh_napi(&mut self, exclude: &[u32]) {
        self.napi = kthreads("napi/rp-")
            .into_iter()
            .filter(|p| !exclude.contains(p))
            .collect();
        for pid in &self.napi {
            let _ = sh("taskset", &["-pc", "0", &pid.to_string()]);
        }
    }

    fn napi_cpu(&self) -> u64 {
        self.napi
            .iter()
            .map(|p| schedstat(&format!("/proc/{p}/schedstat")))
            .sum()
    }
}

/// Offers `params.rate_pps` RTP packets from the pool peer to `to`, counting what the gateway peer
/// receives; returns (offered, received, seconds). Bounded by the duration.
fn drive(lab: &Lab, to: SocketAddr, sink: &UdpSocket, params: &Params) -> (u64, u64, f64) {
    let src = udp_in(&lab.pool.name, SocketAddr::from(([198, 18, 1, 2], 4000)));
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = {
        let (sink, received, stop) = (
            sink.try_clone().expect("clone"),
            received.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            pin_thread(1);
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: recv into a live buffer; MSG_TRUNC only reports the length.
                let n = unsafe {
                    libc::recv(
                        sink.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_TRUNC,
                    )
                };
                if n > 0 {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let payload = params.payload;
    let rate = params.rate_pps.max(1);
    let duration = params.duration;
    let offered = std::thread::spawn(move || {
        pin_thread(1);
        const BURST: u64 = 16;
        let start = Instant::now();
        let mut sent = 0u64;
        let mut seq = 0u16;
        while start.elapsed() < duration {
            let due = start.elapsed().as_nanos() as u64 * rate / 1_000_000_000;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            let n = BURST.min(due - sent);
            let packets: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    seq = seq.wrapping_add(1);
                    rtp_packet(seq, u32::from(seq) * 160, 0x5eed, payload)
                })
                .collect();
            let batch: Vec<(SocketAddr, &[u8])> =
                packets.iter().map(|p| (to, p.as_slice())).collect();
            sent += send_many(&src, &batch) as u64;
        }
        (sent, start.elapsed().as_secs_f64())
    })
    .join()
    .expect("sender");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let _ = counter.join();
    (offered.0, received.load(Ordering::Relaxed), offered.1)
}

async fn daemon_session(bl: &BenchLab, tag: &str, xdp: &str) -> anyhow::Result<(Daemon, u16, u16)> {
    let mut d = relay_daemon(&bl.lab, tag, xdp, "34000-34999", &[])?;
    let mut c = d.client().await?;
    let req = create("bench", sa(POOL_PEER, 4000), sa(GW_PEER, 5000), strict());
    let s = c
        .create_session(req)
        .await?
        .into_inner()
        .session
        .context("no session")?;
    let pid = d.pid().context("daemon pid")?;
    sh("taskset", &["-a", "-cp", "0", &pid.to_string()])?;
    let (p, g) = relay_ports(&s);
    Ok((d, p, g))
}

/// A bare relay: one thread, recvmmsg a batch, sendmmsg it on. Nothing else.
fn bare_relay(
    relay_ns: &str,
    stop: Arc<AtomicBool>,
    tid: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let rx = in_netns(relay_ns, || UdpSocket::bind("198.18.1.1:34000")).expect("bind rx");
    let tx = in_netns(relay_ns, || UdpSocket::bind("198.18.2.1:34002")).expect("bind tx");
    rx.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    std::thread::spawn(move || {
        pin_thread(0);
        // SAFETY: gettid has no preconditions.
        tid.store(unsafe { libc::gettid() } as u64, Ordering::Relaxed);
        const B: usize = 64;
        let mut bufs = vec![[0u8; 2048]; B];
        // SAFETY: plain C structs; all-zero is valid.
        let mut hdrs: Vec<libc::mmsghdr> = (0..B).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: sockaddr_in is plain data.
        let mut dst: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        dst.sin_family = libc::AF_INET as libc::sa_family_t;
        dst.sin_port = 5000u16.to_be();
        dst.sin_addr.s_addr = u32::from_be_bytes([198, 18, 2, 2]).to_be();
        while !stop.load(Ordering::Relaxed) {
            for i in 0..B {
                hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
                hdrs[i].msg_hdr.msg_name = std::ptr::null_mut();
                hdrs[i].msg_hdr.msg_namelen = 0;
            }
            // SAFETY: headers point into live buffers; MSG_WAITFORONE returns what is queued.
            let n = unsafe {
                libc::recvmmsg(
                    rx.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    B as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                continue;
            }
            let n = n as usize;
            for i in 0..n {
                iovs[i].iov_len = hdrs[i].msg_len as usize;
                hdrs[i].msg_hdr.msg_name = (&mut dst as *mut libc::sockaddr_in).cast();
                hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
            // SAFETY: as above; the iovecs now hold the received lengths.
            unsafe { libc::sendmmsg(tx.as_raw_fd(), hdrs.as_mut_ptr(), n as u32, 0) };
            for iov in iovs.iter_mut().take(n) {
                iov.iov_len = 2048;
            }
        }
    })
}

/// Drives traffic to `to` and charges the relay CPU of the NAPI thread plus `pid`'s threads or
/// thread `tid` of this process.
fn measure(
    bl: &BenchLab,
    mode: Mode,
    to: SocketAddr,
    sink: &UdpSocket,
    params: &Params,
    pid: Option<u32>,
    tid: Option<u64>,
) -> Outcome {
    let cpu = || {
        bl.napi_cpu()
            + pid.map_or(0, process_cpu)
            + tid.map_or(0, |t| {
                schedstat(&format!("/proc/{}/task/{t}/schedstat", std::process::id()))
            })
    };
    let before = cpu();
    let (offered, forwarded, seconds) = drive(&bl.lab, to, sink, params);
    let relay_cpu_ns = cpu().saturating_sub(before);
    Outcome {
        mode,
        offered,
        forwarded,
        seconds,
        relay_cpu_ns,
    }
}

/// Runs one mode and measures it.
pub async fn run_mode(bl: &mut BenchLab, mode: Mode, params: &Params) -> anyhow::Result<Outcome> {
    let sink = udp_in(&bl.lab.gw.name, sa(GW_PEER, 5000));
    match mode {
        Mode::XdpNative | Mode::XdpGeneric | Mode::Userspace => {
            let xdp = match mode {
                Mode::XdpNative => "native",
                Mode::XdpGeneric => "generic",
                _ => "off",
            };
            let (d, p, _) = daemon_session(bl, &format!("bench{}", mode.name()), xdp).await?;
            bl.refresh_napi(&[]);
            Ok(measure(
                bl,
                mode,
                sa(POOL_RELAY, p),
                &sink,
                params,
                d.pid(),
                None,
            ))
        }
        Mode::XdpFloor => {
            let route = mediator_dataplane::floor::FloorRoute {
                match_port: 34000,
                src: SocketAddrV4::new(GW_RELAY.parse()?, 34002),
                dst: SocketAddrV4::new(GW_PEER.parse()?, 5000),
                src_mac: parse_mac(&mac(&bl.lab.relay, "rg")?),
                dst_mac: parse_mac(&mac(&bl.lab.gw, "g0")?),
            };
            let _floor = in_netns(&bl.lab.relay.name, move || {
                mediator_dataplane::floor::Floor::attach("rp", "rg", true, route)
                    .map_err(|e| e.to_string())
            })
            .map_err(anyhow::Error::msg)?;
            bl.refresh_napi(&[]);
            Ok(measure(
                bl,
                mode,
                sa(POOL_RELAY, 34000),
                &sink,
                params,
                None,
                None,
            ))
        }
        Mode::BareRelay => {
            let stop = Arc::new(AtomicBool::new(false));
            let tid = Arc::new(AtomicU64::new(0));
            let handle = bare_relay(&bl.lab.relay.name, stop.clone(), tid.clone());
            std::thread::sleep(Duration::from_millis(50));
            bl.refresh_napi(&[]);
            let t = Some(tid.load(Ordering::Relaxed));
            let outcome = measure(bl, mode, sa(POOL_RELAY, 34000), &sink, params, None, t);
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
            Ok(outcome)
        }
    }
}

/// A mode's runs, and the median it is judged by.
#[derive(Clone, Debug)]
pub struct Summary {
    pub mode: Mode,
    pub runs: Vec<Outcome>,
}

impl Summary {
    pub fn median_ns(&self) -> f64 {
        median(self.runs.iter().map(Outcome::ns_per_packet).collect())
    }
    fn median_of(&self, f: impl Fn(&Outcome) -> f64) -> f64 {
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

/// Groups interleaved runs by mode, in first-seen order.
pub fn summarize(runs: &[Outcome]) -> Vec<Summary> {
    let mut out: Vec<Summary> = Vec::new();
    for r in runs {
        match out.iter_mut().find(|s| s.mode == r.mode) {
            Some(s) => s.runs.push(r.clone()),
            None => out.push(Summary {
                mode: r.mode,
                runs: vec![r.clone()],
            }),
        }
    }
    out
}

/// The results as a table: each mode's median relay CPU per packet, every run's figure, and the
/// ratio of medians to the mode's floor.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "mode          offered/s  forwarded/s    loss   CPU/packet (median)   runs (ns)              vs floor\n",
    );
    for s in summaries {
        let ratio = s
            .mode
            .floor()
            .and_then(|f| summaries.iter().find(|x| x.mode == f))
            .map(|f| format!("{:.2}x {}", s.median_ns() / f.median_ns(), f.mode.name()))
            .unwrap_or_else(|| "(floor)".into());
        let runs: Vec<String> = s
            .runs
            .iter()
            .map(|r| format!("{:.0}", r.ns_per_packet()))
            .collect();
        out.push_str(&format!(
            "{:<12} {:>10.0} {:>12.0} {:>7.3}% {:>14.0} ns      {:<22} {}\n",
            s.mode.name(),
            s.median_of(|r| r.offered as f64 / r.seconds),
            s.median_of(|r| r.forwarded as f64 / r.seconds),
            s.median_of(Outcome::loss) * 100.0,
            s.median_ns(),
            runs.join(" "),
            ratio
        ));
    }
    out
}

pub fn json(summaries: &[Summary], params: &Params) -> String {
    let modes: Vec<String> = summaries
        .iter()
        .map(|s| {
            let runs: Vec<String> = s
                .runs
                .iter()
                .map(|r| {
                    format!(
                        "{{\"offered\":{},\"forwarded\":{},\"seconds\":{:.3},\"relay_cpu_ns\":{},\"ns_per_packet\":{:.1}}}",
                        r.offered,
                        r.forwarded,
                        r.seconds,
                        r.relay_cpu_ns,
                        r.ns_per_packet()
                    )
                })
                .collect();
            let floor = s.mode.floor().map_or("null".to_string(), |f| format!("\"{}\"", f.name()));
            format!(
                "{{\"mode\":\"{}\",\"floor\":{},\"median_ns_per_packet\":{:.1},\"runs\":[{}]}}",
                s.mode.name(),
                floor,
                s.median_ns(),
                runs.join(",")
            )
        })
        .collect();
    format!(
        "{{\"rate_pps\":{},\"duration_s\":{},\"payload\":{},\"modes\":[{}]}}",
        params.rate_pps,
        params.duration.as_secs_f64(),
        params.payload,
        modes.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: Mode, cpu: u64, fwd: u64) -> Outcome {
        Outcome {
            mode,
            offered: fwd,
            forwarded: fwd,
            seconds: 1.0,
            relay_cpu_ns: cpu,
        }
    }

    #[test]
    fn medians_and_grouping() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![f64::NAN]).is_nan());
        let runs = [
            run(Mode::XdpFloor, 1000, 10),
            run(Mode::XdpNative, 1200, 10),
            run(Mode::XdpFloor, 3000, 10),
            run(Mode::XdpNative, 1100, 10),
            run(Mode::XdpFloor, 2000, 10),
            run(Mode::XdpNative, 9000, 10),
        ];
        let s = summarize(&runs);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].median_ns(), s[1].median_ns()), (200.0, 120.0));
        let t = table(&s);
        assert!(t.contains("0.60x xdp-floor"), "{t}");
    }
}

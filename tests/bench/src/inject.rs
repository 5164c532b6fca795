//! The frame injector: offers more than a UDP socket can, by running `mdp_inject` (ebpf/relay.bpf.c)
//! with `BPF_PROG_RUN` and `BPF_F_TEST_XDP_LIVE_FRAMES` as if a frame had arrived on the sender's
//! veth; the program rewrites it into the next RTP packet of the next stream and redirects it out
//! of that veth, so it reaches the relay's veth as a frame with no socket and no skb behind it,
//! closer to what a real NIC hands a relay.
//!
//! aya 0.14 has no call for BPF_PROG_RUN, so [`Injector::inject`] makes the `bpf(2)` call itself.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use anyhow::{Context, bail};
use aya::maps::{Array, MapData};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};
use mediator_dataplane::abi::{self, InjectCfg, InjectStream};
use nix::sched::{CloneFlags, setns};

use crate::traffic::{Media, Stream};
use mediator_tests::lab::in_netns;

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// The `test` member of `union bpf_attr` (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// `struct xdp_md` as BPF_PROG_RUN takes it for the frame's context.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// The injector of one side: the program loaded (never attached), its streams and template frame.
pub struct Injector {
    ebpf: Ebpf,
    frame: Vec<u8>,
    ifindex: u32,
    netns: File,
    /// Stream ids in the program's round-robin order.
    ids: Vec<u32>,
    pin_dir: PathBuf,
    /// Runs per BPF_PROG_RUN call, tuned so a call lasts about as long as asked.
    repeat: u32,
}

/// The addresses of one sender: its veth, MACs and IP/port, and the relay's address.
#[derive(Clone, Debug)]
pub struct Sender {
    pub netns: String,
    pub dev: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddrV4,
    pub relay_ip: std::net::Ipv4Addr,
}

/// The template: the frame every packet starts from, with each field the program writes at zero.
pub fn template(sender: &Sender, media: &Media) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        media.payload >= crate::probe::PROBE_LEN,
        "the payload ({} bytes) must hold the {}-byte probe for the injector",
        media.payload,
        crate::probe::PROBE_LEN
    );
    let mut rtp = vec![0x80, media.codec.payload_type & 0x7f];
    rtp.resize(12 + crate::probe::PROBE_LEN, 0);
    rtp.resize(12 + media.payload, 0xd5);
    Ok(mediator_tests::rtp::udp4_frame(
        sender.src_mac,
        sender.dst_mac,
        None,
        sender.src,
        SocketAddrV4::new(sender.relay_ip, 0),
        &rtp,
    ))
}

impl Injector {
    /// Loads the program for `streams` (those this sender sends).
    pub fn new(sender: &Sender, streams: &[Stream], media: &Media) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !streams.is_empty(),
            "the injector needs at least one stream"
        );
        let frame = template(sender, media)?;
        let dev = sender.dev.clone();
        let ifindex = in_netns(&sender.netns, move || {
            mediator_dataplane::netif::ifindex(&dev)
        })
        .with_context(|| format!("no interface {} in {}", sender.dev, sender.netns))?;
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/mediator_inject_{}_{}",
            std::process::id(),
            sender.dev
        ));
        mediator_dataplane::xdp::prepare_pin_dir(&pin_dir)?;
        // The object's relay maps are created too; keep them at one entry.
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .map_max_entries(abi::MAP_STREAMS, 1)
            .map_max_entries(abi::MAP_STATS, 1)
            .map_max_entries(abi::MAP_INJECT_STREAMS, streams.len() as u32)
            .load(mediator_dataplane::RELAY_OBJECT)
            .context("loading the injector program")?;
        {
            let mut table: Array<&mut MapData, InjectStream> = Array::try_from(
                ebpf.map_mut(abi::MAP_INJECT_STREAMS)
                    .context("no injector stream map")?,
            )?;
            for (i, s) in streams.iter().enumerate() {
                table.set(
                    i as u32,
                    InjectStream {
                        ssrc: s.ssrc,
                        probe_id: s.id,
                        dst_port: s.to.port().to_be(),
                        pad: 0,
                    },
                    0,
                )?;
            }
        }
        let prog: &mut Xdp = ebpf
            .program_mut(abi::PROG_INJECT)
            .context("no injector program")?
            .try_into()?;
        prog.load().context("loading mdp_inject into the kernel")?;
        let netns = File::open(format!("/run/netns/{}", sender.netns))
            .with_context(|| format!("opening namespace {}", sender.netns))?;
        let mut inj = Self {
            ebpf,
            frame,
            ifindex,
            netns,
            ids: streams.iter().map(|s| s.id).collect(),
            pin_dir,
            repeat: 1 << 20,
        };
        inj.configure(media)?;
        Ok(inj)
    }

    fn cfg_map(&mut self) -> anyhow::Result<Array<&mut MapData, InjectCfg>> {
        Ok(Array::try_from(
            self.ebpf
                .map_mut(abi::MAP_INJECT_CFG)
                .context("no injector config map")?,
        )?)
    }

    fn configure(&mut self, media: &Media) -> anyhow::Result<()> {
        // The UDP checksum lies 34 + 6 bytes into the frame (Ethernet, IPv4 without options).
        let base_check = u16::from_ne_bytes([self.frame[40], self.frame[41]]);
        let mut head = [0u8; 44];
        head.copy_from_slice(&self.frame[..44]);
        let cfg = InjectCfg {
            head,
            streams: self.ids.len() as u32,
            ifindex: self.ifindex,
            samples: media.samples(),
            base_check,
            ..InjectCfg::default()
        };
        self.cfg_map()?.set(0, cfg, 0)?;
        Ok(())
    }

    /// Starts counting (and the streams' sequence numbers) from zero again, paced at `rate`
    /// frames per second in bursts of `burst`.
    pub fn reset(&mut self, rate: u32, burst: u32) -> anyhow::Result<()> {
        let mut map = self.cfg_map()?;
        let mut cfg = map.get(&0, 0)?;
        cfg.made = 0;
        cfg.start_ns = 0;
        cfg.bursting = 0;
        cfg.rate = rate;
        cfg.burst = burst;
        map.set(0, cfg, 0)?;
        Ok(())
    }

    /// Lets the pacing clock start again at the next run, at `rate` frames per second, so the
    /// pause between this injector's turns is not made up in one flood.
    pub fn resume(&mut self, rate: u32) -> anyhow::Result<()> {
        let mut map = self.cfg_map()?;
        let mut cfg = map.get(&0, 0)?;
        cfg.start_ns = 0;
        cfg.bursting = 0;
        cfg.rate = rate;
        map.set(0, cfg, 0)?;
        Ok(())
    }

    /// How many frames the program has made since the last reset.
    pub fn made(&mut self) -> anyhow::Result<u64> {
        Ok(self.cfg_map()?.get(&0, 0)?.made)
    }

    /// Adds how many packets each stream was offered since the last reset to `sent`.
    pub fn sent_per_stream(&mut self, sent: &mut HashMap<u32, u64>) -> anyhow::Result<()> {
        let made = self.made()?;
        let n = self.ids.len() as u64;
        for (i, id) in self.ids.iter().enumerate() {
            let k = made / n + u64::from((i as u64) < made % n);
            *sent.entry(*id).or_default() += k;
        }
        Ok(())
    }

    /// Runs the program for about `span` (one BPF_PROG_RUN call: each costs a fixed ~15 ms to
    /// set up and tear down here, so calls are long and the program paces itself). Switches the
    /// calling thread into the sender's namespace (the kernel finds the veth there).
    pub fn run_for(&mut self, span: std::time::Duration) -> anyhow::Result<()> {
        setns(&self.netns, CloneFlags::CLONE_NEWNET).context("entering the sender's namespace")?;
        let n = self.repeat;
        let started = std::time::Instant::now();
        let prog: &Xdp = self
            .ebpf
            .program(abi::PROG_INJECT)
            .context("no injector program")?
            .try_into()?;
        let fd = prog.fd()?.as_fd().as_raw_fd();
        let ctx = XdpMd {
            data_end: self.frame.len() as u32,
            ingress_ifindex: self.ifindex,
            ..Default::default()
        };
        let attr = TestRunAttr {
            prog_fd: fd as u32,
            data_size_in: self.frame.len() as u32,
            data_in: self.frame.as_ptr() as u64,
            repeat: n,
            ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
            ctx_in: (&ctx as *const XdpMd) as u64,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: 64,
            ..Default::default()
        };
        // SAFETY: bpf(BPF_PROG_TEST_RUN) reads `attr` and, through it, the frame and context, all
        // alive for the call; live-frame mode writes nothing back.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &attr as *const TestRunAttr,
                std::mem::size_of::<TestRunAttr>(),
            )
        };
        if rc != 0 {
            bail!(
                "BPF_PROG_RUN with live frames: {}",
                std::io::Error::last_os_error()
            );
        }
        // Aim the next call at `span`; the per-run cost depends on how many runs make a frame.
        let took = started.elapsed().as_secs_f64().max(1e-4);
        let scale = (span.as_secs_f64() / took).clamp(0.1, 16.0);
        self.repeat = ((f64::from(n) * scale) as u32).clamp(1 << 12, 1 << 26);
        Ok(())
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = mediator_dataplane::xdp::remove_pins(&self.pin_dir);
    }
}

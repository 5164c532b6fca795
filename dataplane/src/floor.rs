//! The benchmark floor: `mdp_floor_redirect`, the least an XDP relay can do on a path (match one
//! UDP port, rewrite addresses, ports, MACs and checksums from a fixed configuration, redirect),
//! attached so mediator-bench can measure the real relay against it in the same run.
//!
//! Call [`Floor::attach`] from a thread inside the network namespace that holds the interfaces.

use std::net::SocketAddrV4;
use std::path::PathBuf;

use aya::maps::{Array, DevMapHash, MapData};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use crate::abi::{self, FloorCfg};
use crate::netif;

/// An attached floor program; dropping it detaches the program and removes its pins.
pub struct Floor {
    _ebpf: Ebpf,
    pin_dir: PathBuf,
}

/// What the floor rewrites a matched packet to.
#[derive(Clone, Copy, Debug)]
pub struct FloorRoute {
    pub match_port: u16,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

impl Floor {
    pub fn attach(
        ingress: &str,
        egress: &str,
        native: bool,
        route: FloorRoute,
    ) -> anyhow::Result<Self> {
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/mediator_floor_{}", std::process::id()));
        crate::xdp::prepare_pin_dir(&pin_dir)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .load(crate::RELAY_OBJECT)?;
        let in_idx =
            netif::ifindex(ingress).ok_or_else(|| anyhow::anyhow!("no interface {ingress}"))?;
        let out_idx =
            netif::ifindex(egress).ok_or_else(|| anyhow::anyhow!("no interface {egress}"))?;
        let mut tx: DevMapHash<&mut MapData> = DevMapHash::try_from(
            ebpf.map_mut(abi::MAP_TX_PORTS)
                .ok_or_else(|| anyhow::anyhow!("no tx map"))?,
        )?;
        tx.insert(out_idx, out_idx, None, 0)?;
        let mut cfg: Array<&mut MapData, FloorCfg> = Array::try_from(
            ebpf.map_mut(abi::MAP_FLOOR)
                .ok_or_else(|| anyhow::anyhow!("no floor map"))?,
        )?;
        cfg.set(
            0,
            FloorCfg {
                src_mac: route.src_mac,
                dst_mac: route.dst_mac,
                src_addr: u32::from(*route.src.ip()).to_be(),
                dst_addr: u32::from(*route.dst.ip()).to_be(),
                src_port: route.src.port().to_be(),
                dst_port: route.dst.port().to_be(),
                match_port: route.match_port.to_be(),
                pad: 0,
                ifindex: out_idx,
            },
            0,
        )?;
        let prog: &mut Xdp = ebpf
            .program_mut(abi::PROG_FLOOR)
            .ok_or_else(|| anyhow::anyhow!("no floor program"))?
            .try_into()?;
        prog.load()?;
        prog.attach_to_if_index(
            in_idx,
            if native {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            },
        )?;
        Ok(Self {
            _ebpf: ebpf,
            pin_dir,
        })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = crate::xdp::remove_pins(&self.pin_dir);
    }
}

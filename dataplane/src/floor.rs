//! The benchmark floor: `mdp_floor_redirect`, the least an XDP relay can do on a path (match a
//! UDP port range, rewrite addresses, ports, MACs and checksums from a fixed configuration per
//! direction, redirect),
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

/// What the floor rewrites a matched packet to, for one direction.
#[derive(Clone, Copy, Debug)]
pub struct FloorRoute {
    /// Destination ports matched (inclusive).
    pub ports: (u16, u16),
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

impl Floor {
    /// Attaches the floor to interfaces `a` and `b`: `routes[0]` rewrites what arrives on `a`
    /// and sends it out of `b`, `routes[1]` the other way.
    pub fn attach(a: &str, b: &str, native: bool, routes: [FloorRoute; 2]) -> anyhow::Result<Self> {
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/mediator_floor_{}", std::process::id()));
        crate::xdp::prepare_pin_dir(&pin_dir)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .load(crate::RELAY_OBJECT)?;
        let index =
            |name: &str| netif::ifindex(name).ok_or_else(|| anyhow::anyhow!("no interface {name}"));
        let (a_idx, b_idx) = (index(a)?, index(b)?);
        let mut tx: DevMapHash<&mut MapData> = DevMapHash::try_from(
            ebpf.map_mut(abi::MAP_TX_PORTS)
                .ok_or_else(|| anyhow::anyhow!("no tx map"))?,
        )?;
        tx.insert(a_idx, a_idx, None, 0)?;
        tx.insert(b_idx, b_idx, None, 0)?;
        let mut cfg: Array<&mut MapData, FloorCfg> = Array::try_from(
            ebpf.map_mut(abi::MAP_FLOOR)
                .ok_or_else(|| anyhow::anyhow!("no floor map"))?,
        )?;
        for (slot, (route, in_idx, out_idx)) in
            [(routes[0], a_idx, b_idx), (routes[1], b_idx, a_idx)]
                .into_iter()
                .enumerate()
        {
            cfg.set(
                slot as u32,
                FloorCfg {
                    src_mac: route.src_mac,
                    dst_mac: route.dst_mac,
                    src_addr: u32::from(*route.src.ip()).to_be(),
                    dst_addr: u32::from(*route.dst.ip()).to_be(),
                    src_port: route.src.port().to_be(),
                    dst_port: route.dst.port().to_be(),
                    port_min: route.ports.0,
                    port_max: route.ports.1,
                    ifindex: out_idx,
                    in_ifindex: in_idx,
                },
                0,
            )?;
        }
        let prog: &mut Xdp = ebpf
            .program_mut(abi::PROG_FLOOR)
            .ok_or_else(|| anyhow::anyhow!("no floor program"))?
            .try_into()?;
        prog.load()?;
        let mode = if native {
            XdpMode::Driver
        } else {
            XdpMode::Skb
        };
        prog.attach_to_if_index(a_idx, mode)?;
        prog.attach_to_if_index(b_idx, mode)?;
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

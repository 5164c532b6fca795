//! The Rust mirror of `ebpf/relay_abi.h`, the one ABI between the XDP program and this crate.
//!
//! `tests/abi.rs` reads the compiled object's BTF and fails when a size or an offset here differs
//! from the header. Addresses and ports are stored in network byte order, as the header says.

use std::net::{IpAddr, SocketAddr};

pub const MAP_STREAMS: &str = "mdp_streams";
pub const MAP_STATS: &str = "mdp_stats";
pub const MAP_TX_PORTS: &str = "mdp_tx_ports";
pub const MAP_FLOOR: &str = "mdp_floor";
pub const MAP_INJECT_CFG: &str = "mdp_inject_cfg";
pub const MAP_INJECT_STREAMS: &str = "mdp_inject_streams";
pub const PROG_RELAY: &str = "mdp_relay";
pub const PROG_FLOOR: &str = "mdp_floor_redirect";
pub const PROG_PASS: &str = "mdp_pass";
pub const PROG_INJECT: &str = "mdp_inject";

pub const DEFAULT_MAX_STREAMS: u32 = 65536;
pub const MAX_TX_PORTS: u32 = 64;
/// The benchmark probe's magic word (tests/src/probe.rs).
pub const PROBE_MAGIC: u32 = 0x4d445042;

pub const AF_INET: u8 = 4;
pub const AF_INET6: u8 = 6;

pub const POLICY_ACCEPT_ANY: u8 = 0;
pub const POLICY_DROP_MISMATCH: u8 = 1;
/// TTL / hop limit of every relayed packet, on both paths (`MDP_RELAY_TTL`).
pub const RELAY_TTL: u8 = 64;
pub const POLICY_PASS_MISMATCH: u8 = 2;

pub const FLAG_RTP_STATS: u32 = 0x1;

/// `struct mdp_stream_key`: the relay socket a packet was sent to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub pad: u8,
}

/// `struct mdp_stream_entry`: how to forward what matched a key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamEntry {
    pub expect_addr: [u8; 16],
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub expect_port: u16,
    pub src_port: u16,
    pub dst_port: u16,
    pub family: u8,
    pub policy: u8,
    pub stats_slot: u32,
    pub clock_rate: u32,
    pub flags: u32,
    pub pad: u32,
}

/// `struct mdp_stream_stats`: one CPU's counters and RTP receiver state for one stream. (Serde:
/// the userspace relay's copy is kept in the session record, see `manager::COUNTERS_FLUSH`.)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamStats {
    pub packets: u64,
    pub bytes: u64,
    pub last_seen_ns: u64,
    pub src_mismatch: u64,
    pub ssrc: u32,
    pub rtp_packets: u32,
    pub base_seq: u32,
    pub max_seq: u32,
    pub jitter_q4: u32,
    pub last_transit: u32,
    pub rtp_init: u32,
    /// 1 + CLOCK_MONOTONIC seconds of the last RTCP packet forwarded on this RTP stream (RTCP
    /// multiplexed on it, RFC 5761); 0: none.
    pub rtcp_seen_s: u32,
}

impl StreamStats {
    /// When RTCP multiplexed on this stream was last forwarded, as CLOCK_MONOTONIC ns (the end
    /// of the second it was seen in: never earlier than the packet); 0: never.
    pub fn rtcp_seen_ns(&self) -> u64 {
        u64::from(self.rtcp_seen_s) * 1_000_000_000
    }
}

/// `struct mdp_floor_cfg`: the benchmark floor program's fixed rewrite.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloorCfg {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub port_min: u16,
    pub port_max: u16,
    pub ifindex: u32,
    pub in_ifindex: u32,
}

/// `struct mdp_inject_cfg`: the benchmark frame injector's state and settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectCfg {
    pub made: u64,
    pub start_ns: u64,
    pub streams: u32,
    pub ifindex: u32,
    pub samples: u32,
    pub rate: u32,
    pub burst: u32,
    pub bursting: u32,
    pub base_check: u16,
    pub pad: u16,
    pub pad2: u32,
    pub head: [u8; 44],
    pub pad3: u32,
}

impl Default for InjectCfg {
    fn default() -> Self {
        Self {
            made: 0,
            start_ns: 0,
            streams: 0,
            ifindex: 0,
            samples: 0,
            rate: 0,
            burst: 0,
            bursting: 0,
            base_check: 0,
            pad: 0,
            pad2: 0,
            head: [0; 44],
            pad3: 0,
        }
    }
}

/// `struct mdp_inject_stream`: one stream the injector makes packets for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectStream {
    pub ssrc: u32,
    pub probe_id: u32,
    pub dst_port: u16,
    pub pad: u16,
}

// SAFETY: all four are #[repr(C)], made only of integers and byte arrays, with every hole filled
// by an explicit `pad` field (tests/abi.rs checks sizes and offsets against the C header), so any
// bit pattern is valid and no byte is uninitialised.
unsafe impl aya::Pod for StreamKey {}
// SAFETY: as above.
unsafe impl aya::Pod for StreamEntry {}
// SAFETY: as above.
unsafe impl aya::Pod for StreamStats {}
// SAFETY: as above.
unsafe impl aya::Pod for FloorCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for InjectCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for InjectStream {}

/// An IP address as the ABI stores it: family and 16 bytes, IPv4 in the first four.
pub fn ip_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (AF_INET, out)
        }
        IpAddr::V6(v6) => (AF_INET6, v6.octets()),
    }
}

impl StreamKey {
    pub fn new(local: SocketAddr) -> Self {
        let (family, addr) = ip_bytes(local.ip());
        Self {
            addr,
            port: local.port().to_be(),
            family,
            pad: 0,
        }
    }
}

//! `mediator-dataplane`: Mediator's media relay. It owns the XDP program (through aya) and its
//! maps, the userspace fallback relay, and the `mediator.dataplane.v1` gRPC service.
//!
//! It is the only crate that knows aya and the map ABI (`ebpf/relay_abi.h`, mirrored in [`abi`]).
//! It decides nothing about calls: sessions are created, changed and deleted over gRPC.

pub mod abi;
pub mod config;
pub mod floor;
pub mod forwarder;
pub mod host;
pub mod manager;
pub mod metrics;
pub mod netif;
pub mod relay;
pub mod service;
pub mod session;
pub mod srtp;
pub mod srtp_stream;
pub mod stats;
pub mod store;
pub mod xdp;

/// The compiled XDP object (`ebpf/relay.bpf.c`, built by build.rs with clang).
pub static RELAY_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o"));

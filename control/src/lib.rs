//! `mediator-control`: the control daemon's edge — SIP transports (UDP, TCP, TLS), the runtime
//! that owns the B2BUA engine and feeds it snapshots of the topology, the client of the pools'
//! dataplanes (the one place that maps the engine's media requests to `mediator.dataplane.v1`),
//! the durable store with the write protocol, and the gRPC services. The logic lives in the
//! sans-IO crates (`mediator-sip`, `mediator-topology`, `mediator-b2bua`); this crate drives
//! dataplanes only over gRPC and must never touch BPF or the map ABI.
#![warn(unreachable_pub)]

pub mod api;
pub mod calls;
pub mod calls_api;
pub mod clock;
pub mod dns;
pub mod media;
pub mod metrics;
pub mod registry;
pub(crate) mod store;
pub mod tls;
pub(crate) mod transport;

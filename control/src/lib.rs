//! `mediator-control`: Mediator's control plane — the SIP B2BUA that routes calls over trunks
//! (`sip`, `call`, `calls`), the Lync-style topology (pools, gateways, trunks, trunk
//! configuration, PSTN usages, voice routes), its durable store, routing decisions and the
//! `mediator.control.v1` gRPC API, plus the `mediatorctl` CLI. It drives dataplanes only over
//! gRPC and must never touch BPF or the map ABI.

pub mod api;
pub mod call;
pub mod calls;
pub mod calls_api;
pub mod convert;
pub mod document;
pub mod media;
pub mod model;
pub mod registry;
pub mod routing;
pub mod sdp;
pub mod sip;
pub mod store;
pub mod topology;

//! `mediator-control`: Mediator's control plane — SIP B2BUA, topology, routing, persistence and the
//! control gRPC API. It drives dataplanes only over gRPC and must never touch BPF or the map ABI.
//!
//! Empty until the control-plane issue: nothing here is implemented yet.

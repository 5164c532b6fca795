//! `mediator-topology`: the Lync-style topology, pure — pools, gateways, trunks (M:N, a root trunk
//! per gateway), trunk configuration, PSTN usages, voice routes and trunk moves as plain types with
//! their validation (`model`); the topology in memory with revisions, references, dependents and
//! the write operations that keep it whole (`topology`); routing — effective configuration,
//! number translation, the route test (`routing`); the topology document — build, validate, diff
//! (`document`); and, with the `proto` feature, the `mediator.control.v1` conversions at one
//! boundary (`proto`). It must not do I/O: no tokio, no store, no clock (time comes in as an
//! argument); the daemon reads the clock, makes writes durable and serves snapshots.
#![warn(unreachable_pub)]

pub mod document;
pub mod model;
#[cfg(feature = "proto")]
pub mod proto;
pub mod routing;
pub mod topology;
mod writes;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use topology::{Changes, Item, Kind, Resource, Topology, TopologyError};

//! `mediator-tests`: the network-namespace lab (RAII fixtures for namespaces, veths and daemon
//! processes that clean up even when a test panics) and the integration tests that use it. The
//! benchmark harness is its own crate, `mediator-bench` in `tests/bench`, on these fixtures. Test
//! traffic only ever goes to loopback or to 198.18.0.0/15 and 2001:2::/48 addresses inside
//! namespaces the lab itself created.

pub mod baresip;
pub mod calls;
pub mod control;
pub mod daemon;
pub mod dnsmasq;
pub mod fixture;
pub mod lab;
pub mod process;
pub mod prometheus;
pub mod rtp;
pub mod sipp;
pub mod tls;

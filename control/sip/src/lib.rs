//! `mediator-sip`: SIP for the B2BUA, sans-IO — messages (parsed with `rsip`, which stays inside
//! this crate), stream framing for TCP/TLS, RFC 3261 transactions and the layer that holds them,
//! and the builders of what Mediator sends. It takes bytes and time and returns what to send and
//! when to wake up; it must not own a socket, a timer, a runtime (no tokio) or know the topology.
//! Sockets live in mediator-control's transports, at the edge.
#![warn(unreachable_pub)]

pub mod framing;
pub mod grammar;
pub mod layer;
pub mod message;
pub mod normalize;
pub mod transaction;

use std::net::SocketAddr;

/// A SIP transport (RFC 3261 §18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Who a message came from or goes to: the peer's address, the local socket it uses and the
/// transport. Responses and in-dialog requests go back over the same local socket, so a peer
/// always sees Mediator from the address it configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
}

impl Peer {
    /// Retransmission timers run only over UDP.
    pub fn reliable(&self) -> bool {
        self.transport != Transport::Udp
    }

    /// A UDP peer from two literals (tests only: it panics on a bad literal).
    #[cfg(any(test, feature = "testing"))]
    pub fn udp(remote: &str, local: &str) -> Peer {
        Peer {
            remote: remote.parse().expect("remote address"),
            local: local.parse().expect("local address"),
            transport: Transport::Udp,
        }
    }
}

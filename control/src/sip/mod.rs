//! SIP for the B2BUA, sans-IO: messages (parsed with `rsip`, which stays inside this module),
//! stream framing for TCP/TLS, RFC 3261 transactions and the layer that holds them, and the
//! builders of what Mediator sends. Sockets and timers live in [`transport`], at the edge; the
//! rest take bytes and time and return what to send and when to wake up.

pub mod framing;
pub mod layer;
pub mod message;
pub mod tls;
pub mod transaction;
pub mod transport;

use std::net::SocketAddr;

use crate::model::Transport;

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

    /// A UDP peer from two literals (tests).
    #[cfg(test)]
    pub fn udp(remote: &str, local: &str) -> Peer {
        Peer {
            remote: remote.parse().expect("remote address"),
            local: local.parse().expect("local address"),
            transport: Transport::Udp,
        }
    }
}

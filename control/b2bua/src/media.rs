//! What the engine asks of the media relays and what they answer, in the engine's own terms: a
//! session per anchored media stream, with each side's remote endpoints. mediator-control maps
//! these to `mediator.dataplane.v1` at one place (its relay client); nothing here knows protobuf.

use std::net::SocketAddr;

pub use crate::sdp::Anchor;

/// Where a peer receives one stream's media: RTP, and RTCP unless it is muxed or unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Remote {
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
}

/// A session to create on one of the pool's relays: one media stream of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRequest {
    pub session_id: String,
    /// What is known of the pool side's peer (empty until its SDP is seen).
    pub pool: Remote,
    /// What is known of the gateway side's peer.
    pub gateway: Remote,
    /// Learn each peer's real source from its packets (NAT).
    pub latching: bool,
    /// Drop packets that do not come from the expected (or latched) peer.
    pub strict_source: bool,
    /// RTP and RTCP share one port (RFC 5761).
    pub rtcp_mux: bool,
    /// Seconds without a packet before the relay reports a media timeout (0: its default).
    pub media_timeout_secs: u32,
    /// The same while on hold.
    pub hold_timeout_secs: u32,
    pub on_hold: bool,
}

/// New endpoints for one side of a session (from an SDP answer or a re-INVITE), or hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaUpdate {
    pub session_id: String,
    pub pool: Option<Remote>,
    pub gateway: Option<Remote>,
    pub on_hold: Option<bool>,
}

/// A relay's answer to a [`MediaRequest`]: the session and where the relay receives on each side
/// (`None` where the relay's answer did not name a usable address; that stream is not anchored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaAnswer {
    pub session_id: String,
    pub pool: Option<Anchor>,
    pub gateway: Option<Anchor>,
}

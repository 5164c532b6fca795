//! What the engine asks of the media relays and what they answer, in the engine's own terms: a
//! session per anchored media stream, with each side's remote endpoints. mediator-control maps
//! these to `mediator.dataplane.v1` at one place (its relay client); nothing here knows protobuf.

use std::net::SocketAddr;

pub use crate::sdes::{MasterKey, Mki, Suite};
pub use crate::sdp::Anchor;

use crate::sdes::Crypto;

/// One side's SRTP keys for the relay: what that side's peer protects its packets with, and
/// what the relay protects its packets to that peer with. `Debug` shows no key bytes
/// ([`MasterKey`]'s own `Debug`); the keys are zeroized when dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: Suite,
    pub peer: MasterKey,
    pub peer_mki: Option<Mki>,
    pub relay: MasterKey,
    pub relay_mki: Option<Mki>,
    /// `peer` stands in for a key not known yet (the peer's answer has not come).
    pub peer_pending: bool,
}

impl SrtpKeys {
    /// From a negotiated leg: the peer's attribute and Mediator's own.
    pub fn of(peer: &Crypto, ours: &Crypto) -> SrtpKeys {
        SrtpKeys {
            suite: peer.suite,
            peer: peer.key.clone(),
            peer_mki: peer.mki,
            relay: ours.key.clone(),
            relay_mki: ours.mki,
            peer_pending: false,
        }
    }
}

/// What an update does to one side's SRTP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SrtpChange {
    #[default]
    Keep,
    /// New keys (a re-key, or the answer's keys replacing the ones held until it came).
    Keys(SrtpKeys),
    /// The side turns to plain RTP (its peer answered a best-effort offer without a key).
    Off,
}

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
    /// Seconds without RTCP either way (once seen) before the relay reports an RTCP timeout
    /// (0: off), from the trunk's `rtcp_active_calls`.
    pub rtcp_timeout_secs: u32,
    /// The same on hold, from `rtcp_calls_on_hold`.
    pub rtcp_hold_timeout_secs: u32,
    pub on_hold: bool,
    /// SRTP on the pool side [0] and the gateway side [1]; `None` is plain RTP.
    pub srtp: [Option<SrtpKeys>; 2],
    /// An early dialog's fork of a call's session: (relay, session). Made on that relay,
    /// sharing the session's gateway-side ports (told apart there by the gateway peer's source).
    pub fork_of: Option<(String, String)>,
}

/// New endpoints for one side of a session (from an SDP answer or a re-INVITE), or hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaUpdate {
    pub session_id: String,
    pub pool: Option<Remote>,
    pub gateway: Option<Remote>,
    pub on_hold: Option<bool>,
    /// SRTP changes on the pool side [0] and the gateway side [1].
    pub srtp: [SrtpChange; 2],
    /// New settings (the call moved to a trunk that handles media otherwise); `None`: as they are.
    pub options: Option<MediaOptions>,
}

/// The settings of a session that follow the trunk: what an update may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaOptions {
    pub latching: bool,
    /// The session's own (it cannot change).
    pub rtcp_mux: bool,
    pub media_timeout_secs: u32,
    pub hold_timeout_secs: u32,
    pub rtcp_timeout_secs: u32,
    pub rtcp_hold_timeout_secs: u32,
}

/// A relay's answer to a [`MediaRequest`]: the session and where the relay receives on each side
/// (`None` where the relay's answer did not name a usable address; that stream is not anchored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaAnswer {
    pub session_id: String,
    pub pool: Option<Anchor>,
    pub gateway: Option<Anchor>,
}

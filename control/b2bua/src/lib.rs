//! `mediator-b2bua`: the B2BUA, sans-IO. [`Engine`] takes SIP bytes from a [`Peer`], a topology
//! snapshot, relay answers and the time ([`Now`]: monotonic and wall clock), and returns
//! [`Action`]s — bytes to send, media sessions to create, update or delete (in this crate's own
//! [`media`] types), and the record of every call that ends. Here a call is two legs, each its own
//! dialog, and the logic that bridges them: routing over trunks with failover, SDP anchoring on
//! the pool's relays, CANCEL, BYE, re-INVITE/UPDATE and the in-dialog requests passed across.
//!
//! It must not do I/O or read a clock: no tokio, no tonic, no protobuf, no store. Sockets, timers
//! and gRPC live in mediator-control, which maps [`media`] requests to the dataplane's API.
//! `rsip` never appears here: messages are read through `mediator_sip::message` and written with
//! its builders.
#![warn(unreachable_pub)]

pub mod dns;
pub mod encryption;
mod engine;
mod leg;
pub mod log_budget;
pub mod media;
pub mod sdes;
pub mod sdp;

pub use engine::admission::Limits as AdmissionLimits;
pub use engine::{Config, EndRefused, Engine, MAX_SE, MIN_SE_FLOOR};
pub use mediator_sip::{Peer, Transport};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use media::{MediaRequest, MediaUpdate};

/// The time of an input: the monotonic clock for timers and durations, the wall clock (ms since
/// the Unix epoch) for what records show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub unix_ms: u64,
}

impl std::ops::Add<Duration> for Now {
    type Output = Now;
    fn add(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            unix_ms: self.unix_ms + d.as_millis() as u64,
        }
    }
}

impl std::ops::AddAssign<Duration> for Now {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

/// The SIP transport of a topology transport setting.
pub fn sip_transport(t: mediator_topology::model::Transport) -> Transport {
    use mediator_topology::model::Transport as T;
    match t {
        T::Udp => Transport::Udp,
        T::Tcp => Transport::Tcp,
        T::Tls => Transport::Tls,
    }
}

/// A call's number in this daemon.
pub type CallId = u64;

/// Which side of Mediator a leg faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The unified-communications pool (Front End) side.
    Pool,
    /// A gateway's trunk.
    Gateway,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Pool => Side::Gateway,
            Side::Gateway => Side::Pool,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Pool => "pool",
            Side::Gateway => "gateway",
        }
    }
}

/// What the engine asks of its edge.
#[derive(Debug)]
pub enum Action {
    /// Bytes for the transport.
    Send { to: Peer, bytes: Vec<u8> },
    /// Create these sessions on the pool's relays; answer with [`Engine::on_media_created`].
    CreateMedia {
        call: CallId,
        pool: String,
        requests: Vec<MediaRequest>,
    },
    /// Update a session (new remote endpoints, hold); failures are logged by the edge.
    UpdateMedia {
        pool: String,
        relay: String,
        request: Box<MediaUpdate>,
    },
    /// Sessions no call needs any more (the caller left while they were being created).
    DeleteMedia {
        pool: String,
        sessions: Vec<(String, String)>,
    },
    /// An early dialog's forks answered: each (relay, session, fork) — the session is deleted
    /// and its fork takes over its gateway-side ports (its other forks are deleted with it).
    HandOverMedia {
        pool: String,
        sessions: Vec<(String, String, String)>,
    },
    /// The call ended: delete its sessions, add their final figures to the record, log it.
    Ended {
        record: Box<CallInfo>,
        pool: String,
        sessions: Vec<(String, String)>,
    },
    /// A trunk's OPTIONS probes marked it up or down: log it, count it, tell who listens.
    TrunkState(Box<TrunkChange>),
}

/// A trunk's health as its OPTIONS probes find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrunkState {
    /// Not answered nor failed enough yet: routed to.
    Unknown,
    Up,
    /// Skipped by routing until a probe is answered.
    Down,
}

impl TrunkState {
    pub fn name(self) -> &'static str {
        match self {
            TrunkState::Unknown => "unknown",
            TrunkState::Up => "up",
            TrunkState::Down => "down",
        }
    }
}

/// A trunk going up or down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkChange {
    pub trunk: String,
    pub gateway: String,
    pub state: TrunkState,
    /// What the last probe found.
    pub why: String,
    pub unix_ms: u64,
}

/// A probed trunk as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkHealth {
    pub trunk: String,
    pub gateway: String,
    /// Where the probes go.
    pub peer: SocketAddr,
    pub state: TrunkState,
    /// When it entered its state (None: never answered nor failed).
    pub since_unix_ms: Option<u64>,
    /// Failed probes in a row.
    pub failures: u32,
    pub probes: u64,
    /// Times it went down.
    pub downs: u64,
    /// The last probe's answer (None: unanswered, or none yet when `last_unix_ms` is None).
    pub last_status: Option<u16>,
    pub last_unix_ms: Option<u64>,
    pub rtt: Option<Duration>,
    pub interval: Duration,
    pub threshold: u32,
    /// The gateway's addresses (an FQDN's) whose probes found them down: calls skip them.
    pub addresses_down: Vec<SocketAddr>,
}

/// A leg as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegInfo {
    pub side: Side,
    pub sip_call_id: String,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
}

/// One media stream of a call: the dataplane session that anchors it.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamInfo {
    pub index: usize,
    pub session_id: String,
    pub relay: String,
    /// The SRTP suite on the pool side [0] and the gateway side [1] ("" for plain RTP).
    pub srtp: [String; 2],
    /// The peers' keys pass end to end (srtp_passthrough): the relay sees only ciphertext.
    pub srtp_passthrough: bool,
}

/// A call in progress or ended (its record).
#[derive(Clone, Debug, PartialEq)]
pub struct CallInfo {
    pub id: CallId,
    /// "outbound" (pool → gateway) or "inbound" (gateway → pool).
    pub direction: &'static str,
    pub state: &'static str,
    pub pool: String,
    /// The trunk of the attempt in progress, or of the answered one.
    pub trunk: String,
    pub route: String,
    pub gateway: String,
    /// The numbers as the caller sent them and as the far side received them.
    pub dialed: String,
    pub caller: String,
    pub called: String,
    pub calling: String,
    pub legs: Vec<LegInfo>,
    /// Each trunk tried, with the status it gave ("408" for a timeout).
    pub attempts: Vec<(String, u16)>,
    pub media_bypass: bool,
    pub streams: Vec<StreamInfo>,
    pub started_unix_ms: u64,
    pub answered_unix_ms: Option<u64>,
    pub ended_unix_ms: Option<u64>,
    /// Answered to ended (or to now), ms.
    pub duration_ms: u64,
    pub status: u16,
    pub end_reason: String,
}

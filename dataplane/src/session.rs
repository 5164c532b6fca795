//! A media session as plain state: two legs (pool side, gateway side), four streams (RTP and RTCP
//! arriving on each side), latching and source checks, and the decision whether a stream can be
//! offloaded to XDP. No sockets, no clocks: packets and time come in as arguments (sans-IO), so all
//! of it is tested without a network.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::abi::{self, StreamEntry, StreamKey, StreamStats};
use crate::stats;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Pool,
    Gateway,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Pool, Side::Gateway];
    pub fn other(self) -> Side {
        match self {
            Side::Pool => Side::Gateway,
            Side::Gateway => Side::Pool,
        }
    }
    fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        match self {
            Side::Pool => "pool",
            Side::Gateway => "gateway",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Rtp,
    Rtcp,
}

impl Kind {
    pub const BOTH: [Kind; 2] = [Kind::Rtp, Kind::Rtcp];
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rtp => "rtp",
            Kind::Rtcp => "rtcp",
        }
    }
}

/// A stream: media of one kind arriving on one side, forwarded to the other side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamId {
    pub from: Side,
    pub kind: Kind,
}

impl StreamId {
    pub const ALL: [StreamId; 4] = [
        StreamId {
            from: Side::Pool,
            kind: Kind::Rtp,
        },
        StreamId {
            from: Side::Pool,
            kind: Kind::Rtcp,
        },
        StreamId {
            from: Side::Gateway,
            kind: Kind::Rtp,
        },
        StreamId {
            from: Side::Gateway,
            kind: Kind::Rtcp,
        },
    ];
    pub fn index(self) -> usize {
        self.from.index() * 2 + self.kind as usize
    }
    /// The stream going the other way (its learned source is where this one's packets go).
    pub fn reverse(self) -> StreamId {
        StreamId {
            from: self.from.other(),
            kind: self.kind,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub latching: bool,
    pub strict_source: bool,
    pub rtcp_mux: bool,
    pub clock_rate: u32,
    pub media_timeout_secs: u32,
    pub hold_timeout_secs: u32,
    /// No RTCP either way for this long (once seen): an rtcp-timeout event. 0 = off.
    #[serde(default)]
    pub rtcp_timeout_secs: u32,
    /// The same on hold.
    #[serde(default)]
    pub rtcp_hold_timeout_secs: u32,
}

/// What the caller says about one side's remote peer (from its SDP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
}

/// One side of a session: the relay's local sockets and the remote peer's hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub local: IpAddr,
    pub rtp_port: u16,
    pub remote: Remote,
}

impl Leg {
    pub fn local_addr(&self, kind: Kind, rtcp_mux: bool) -> SocketAddr {
        match kind {
            Kind::Rtcp if !rtcp_mux => SocketAddr::new(self.local, self.rtp_port + 1),
            _ => SocketAddr::new(self.local, self.rtp_port),
        }
    }
    /// Where the peer receives `kind`: a=rtcp when given, else RTP port + 1 (or RTP with rtcp-mux).
    pub fn remote_hint(&self, kind: Kind, rtcp_mux: bool) -> Option<SocketAddr> {
        match kind {
            Kind::Rtp => self.remote.rtp,
            Kind::Rtcp if rtcp_mux => self.remote.rtp,
            Kind::Rtcp => self.remote.rtcp.or_else(|| {
                self.remote
                    .rtp
                    .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
            }),
        }
    }
}

/// Per-stream state the userspace relay updates.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StreamState {
    /// The peer's real source, learned from its packets (latching).
    pub learned: Option<SocketAddr>,
    /// Index into the kernel's per-CPU statistics array.
    pub stats_slot: u32,
    /// Whether an XDP entry is installed, and why the stream is on the path it is on.
    pub offloaded: bool,
    pub path_reason: String,
    /// What the userspace path forwarded (same layout as the kernel's per-CPU parts). Kept in
    /// the record (written every `COUNTERS_FLUSH` while it moves), so a crash loses at most that
    /// much of it.
    #[serde(default)]
    pub user: StreamStats,
    /// Received by userspace but not forwarded (no destination known, send failure); kept as
    /// `user` is.
    #[serde(default)]
    pub dropped: u64,
    /// Kernel drops on this stream's full socket (SO_RXQ_OVFL, cumulative).
    #[serde(skip)]
    pub socket_overflow: u32,
    /// The entry installed in the fast path while offloaded.
    #[serde(skip)]
    pub installed: Option<StreamEntry>,
}

/// The whole mutable media state of one session, shared by its relay tasks under one lock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Media {
    pub legs: [Leg; 2],
    pub streams: [StreamState; 4],
    pub options: Options,
    pub on_hold: bool,
    /// The SRTP suite on each side (pool, gateway), None for plain RTP. Only the names: the
    /// keys live in the relay's contexts and never in a record.
    #[serde(default)]
    pub srtp: [Option<String>; 2],
    /// An early dialog of a forked INVITE: the session whose gateway-side ports this one shares
    /// (its packets there are told apart by source). Never in a record: forks are not re-adopted.
    #[serde(skip)]
    pub fork_of: Option<String>,
    /// Forks sharing this session's gateway-side ports.
    #[serde(skip)]
    pub forks: usize,
    /// Who owns the session (a mediator-control instance); it lives on that owner's lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// What the relay does with one received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward(SocketAddr),
    /// Wrong source under strict checking.
    DropMismatch,
    /// No destination known yet.
    DropNoDestination,
}

/// Why a stream cannot be offloaded right now (its path reason while in userspace).
pub type NotReady = &'static str;

impl Media {
    pub fn leg(&self, side: Side) -> &Leg {
        &self.legs[side.index()]
    }
    pub fn leg_mut(&mut self, side: Side) -> &mut Leg {
        &mut self.legs[side.index()]
    }
    pub fn stream(&self, id: StreamId) -> &StreamState {
        &self.streams[id.index()]
    }
    pub fn stream_mut(&mut self, id: StreamId) -> &mut StreamState {
        &mut self.streams[id.index()]
    }
    /// Streams that carry packets: with rtcp-mux, RTCP rides on the RTP streams.
    pub fn active_streams(&self) -> impl Iterator<Item = StreamId> + '_ {
        StreamId::ALL
            .into_iter()
            .filter(|s| !(self.options.rtcp_mux && s.kind == Kind::Rtcp))
    }

    /// Where packets of `id` must come from; `None` accepts anyone (and, with latching, learns).
    pub fn expected_source(&self, id: StreamId) -> Option<SocketAddr> {
        if self.options.latching {
            self.stream(id).learned
        } else {
            self.leg(id.from)
                .remote_hint(id.kind, self.options.rtcp_mux)
        }
    }

    /// Where packets of `id` go: the other side's latched source, else its SDP hint.
    pub fn forward_to(&self, id: StreamId) -> Option<SocketAddr> {
        let back = id.reverse();
        let learned = if self.options.latching {
            self.stream(back).learned
        } else {
            None
        };
        learned.or_else(|| {
            self.leg(back.from)
                .remote_hint(id.kind, self.options.rtcp_mux)
        })
    }

    /// The userspace relay's decision for one packet (counted by [`Media::forwarded`] once sent). Returns the verdict and whether
    /// the stream's source was (re)learned, which may make the session ready for offload.
    pub fn on_packet(&mut self, id: StreamId, src: SocketAddr, now_ns: u64) -> (Verdict, bool) {
        let latching = self.options.latching;
        let strict = self.options.strict_source;
        let expected = self.expected_source(id);
        let mut learned = false;
        match expected {
            Some(e) if e != src => {
                if strict {
                    // Counted, but no sign of life: a stranger keeps no call alive.
                    self.stream_mut(id).user.src_mismatch += 1;
                    return (Verdict::DropMismatch, false);
                }
                if latching {
                    // Not strict: follow the peer to its new source (NAT rebinding). Not counted
                    // as a mismatch here: when offloaded, the kernel counted it as it passed it up.
                    self.stream_mut(id).learned = Some(src);
                    learned = true;
                }
            }
            None if latching => {
                self.stream_mut(id).learned = Some(src);
                learned = true;
            }
            _ => {}
        }
        let Some(dst) = self.forward_to(id) else {
            let st = self.stream_mut(id);
            st.dropped += 1;
            st.user.last_seen_ns = now_ns;
            return (Verdict::DropNoDestination, learned);
        };
        (Verdict::Forward(dst), learned)
    }

    /// Counts a packet the userspace relay has sent on.
    pub fn forwarded(&mut self, id: StreamId, payload: &[u8], now_ns: u64) {
        let clock_rate = self.options.clock_rate;
        stats::account_packet(&mut self.stream_mut(id).user, clock_rate, payload, now_ns);
    }

    /// Where a fork's packets on the shared gateway-side ports come from: the source it
    /// latched, else its SDP address. `None` for the pool side (its ports are its own).
    pub fn fork_source(&self, id: StreamId) -> Option<SocketAddr> {
        if id.from != Side::Gateway {
            return None;
        }
        self.stream(id).learned.or_else(|| {
            self.leg(id.from)
                .remote_hint(id.kind, self.options.rtcp_mux)
        })
    }

    /// The XDP entry for `id`, or why it cannot have one yet.
    pub fn offload_entry(&self, id: StreamId) -> Result<(StreamKey, StreamEntry), NotReady> {
        if self.fork_of.is_some() || self.forks > 0 {
            // XDP knows a port, not its sources: a shared port is relayed in userspace.
            return Err("forked: early dialogs share the gateway-side ports");
        }
        if self.srtp.iter().any(Option::is_some) {
            return Err("srtp termination");
        }
        let mux = self.options.rtcp_mux;
        if mux && id.kind == Kind::Rtcp {
            return Err("rtcp-mux: carried on the RTP stream");
        }
        if self.options.latching && self.stream(id).learned.is_none() {
            return Err("latching");
        }
        let Some(dst) = self.forward_to(id) else {
            return Err("no remote endpoint yet");
        };
        if self.options.latching && self.stream(id.reverse()).learned.is_none() {
            return Err("latching");
        }
        let local = self.leg(id.from).local_addr(id.kind, mux);
        let src = self.leg(id.from.other()).local_addr(id.kind, mux);
        if src.is_ipv4() != dst.is_ipv4() || local.is_ipv4() != src.is_ipv4() {
            return Err("address family change");
        }
        let expected = self.expected_source(id);
        let policy = match (expected, self.options.strict_source, self.options.latching) {
            (None, _, _) => abi::POLICY_ACCEPT_ANY,
            (Some(_), true, _) => abi::POLICY_DROP_MISMATCH,
            (Some(_), false, true) => abi::POLICY_PASS_MISMATCH,
            (Some(_), false, false) => abi::POLICY_ACCEPT_ANY,
        };
        let (family, src_addr) = abi::ip_bytes(src.ip());
        let (_, dst_addr) = abi::ip_bytes(dst.ip());
        let (_, expect_addr) = expected.map_or((0, [0; 16]), |e| abi::ip_bytes(e.ip()));
        let entry = StreamEntry {
            expect_addr,
            src_addr,
            dst_addr,
            expect_port: expected.map_or(0, |e| e.port().to_be()),
            src_port: src.port().to_be(),
            dst_port: dst.port().to_be(),
            family,
            policy,
            stats_slot: self.stream(id).stats_slot,
            clock_rate: self.options.clock_rate,
            flags: abi::FLAG_RTP_STATS,
            pad: 0,
        };
        Ok((StreamKey::new(local), entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL_PEER: &str = "198.18.1.2:4000";
    const GW_PEER: &str = "198.18.2.2:5000";

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn media(latching: bool, strict: bool) -> Media {
        Media {
            srtp: Default::default(),
            fork_of: None,
            forks: 0,
            owner: None,
            legs: [
                Leg {
                    local: "198.18.1.1".parse().expect("ip"),
                    rtp_port: 30000,
                    remote: Remote {
                        rtp: Some(sa(POOL_PEER)),
                        rtcp: None,
                    },
                },
                Leg {
                    local: "198.18.2.1".parse().expect("ip"),
                    rtp_port: 30002,
                    remote: Remote {
                        rtp: Some(sa(GW_PEER)),
                        rtcp: Some(sa("198.18.2.2:5009")),
                    },
                },
            ],
            streams: Default::default(),
            options: Options {
                latching,
                strict_source: strict,
                rtcp_mux: false,
                clock_rate: 8000,
                media_timeout_secs: 60,
                hold_timeout_secs: 3600,
                rtcp_timeout_secs: 0,
                rtcp_hold_timeout_secs: 0,
            },
            on_hold: false,
        }
    }

    const POOL_RTP: StreamId = StreamId {
        from: Side::Pool,
        kind: Kind::Rtp,
    };
    const GW_RTP: StreamId = StreamId {
        from: Side::Gateway,
        kind: Kind::Rtp,
    };
    const POOL_RTCP: StreamId = StreamId {
        from: Side::Pool,
        kind: Kind::Rtcp,
    };

    #[test]
    fn without_latching_forwards_to_sdp_hints_and_offloads_at_once() {
        let m = media(false, false);
        assert_eq!(m.forward_to(POOL_RTP), Some(sa(GW_PEER)));
        assert_eq!(m.forward_to(GW_RTP), Some(sa(POOL_PEER)));
        assert_eq!(
            m.forward_to(POOL_RTCP),
            Some(sa("198.18.2.2:5009")),
            "a=rtcp wins"
        );
        let rtcp_back = StreamId {
            from: Side::Gateway,
            kind: Kind::Rtcp,
        };
        assert_eq!(
            m.forward_to(rtcp_back),
            Some(sa("198.18.1.2:4001")),
            "RTP port + 1"
        );
        let (key, e) = m.offload_entry(POOL_RTP).expect("ready");
        assert_eq!(key, StreamKey::new(sa("198.18.1.1:30000")));
        assert_eq!(u16::from_be(e.src_port), 30002);
        assert_eq!(u16::from_be(e.dst_port), 5000);
        assert_eq!(e.policy, abi::POLICY_ACCEPT_ANY);
    }

    #[test]
    fn latching_learns_the_nat_source_and_then_offloads() {
        let mut m = media(true, true);
        assert_eq!(m.offload_entry(POOL_RTP), Err("latching"));
        let natted = sa("198.18.1.2:61000");
        let (v, learned) = m.on_packet(POOL_RTP, natted, 1);
        assert_eq!((v, learned), (Verdict::Forward(sa(GW_PEER)), true));
        assert_eq!(
            m.offload_entry(POOL_RTP),
            Err("latching"),
            "the other way is not confirmed yet"
        );
        let (v, _) = m.on_packet(GW_RTP, sa(GW_PEER), 2);
        assert_eq!(
            v,
            Verdict::Forward(natted),
            "replies go to the latched source, not the SDP"
        );
        let (_, e) = m.offload_entry(POOL_RTP).expect("both confirmed");
        assert_eq!(e.policy, abi::POLICY_DROP_MISMATCH);
        assert_eq!(u16::from_be(e.expect_port), 61000);
    }

    #[test]
    fn strict_source_drops_a_spoofer_after_latching() {
        let mut m = media(true, true);
        m.on_packet(POOL_RTP, sa("198.18.1.2:61000"), 1);
        let (v, learned) = m.on_packet(POOL_RTP, sa("198.18.1.66:61000"), 2);
        assert_eq!((v, learned), (Verdict::DropMismatch, false));
        assert_eq!(
            m.stream(POOL_RTP).learned,
            Some(sa("198.18.1.2:61000")),
            "no re-latch: RTP bleed"
        );
        assert_eq!(m.stream(POOL_RTP).user.src_mismatch, 1);
    }

    #[test]
    fn loose_latching_follows_a_rebinding() {
        let mut m = media(true, false);
        m.on_packet(POOL_RTP, sa("198.18.1.2:61000"), 1);
        let (v, learned) = m.on_packet(POOL_RTP, sa("198.18.1.2:62000"), 2);
        assert_eq!((v, learned), (Verdict::Forward(sa(GW_PEER)), true));
        m.on_packet(GW_RTP, sa(GW_PEER), 3);
        let (_, e) = m.offload_entry(POOL_RTP).expect("ready");
        assert_eq!(
            e.policy,
            abi::POLICY_PASS_MISMATCH,
            "XDP hands a new source to userspace"
        );
    }

    #[test]
    fn strict_without_latching_checks_the_sdp_address() {
        let mut m = media(false, true);
        assert_eq!(
            m.on_packet(POOL_RTP, sa("198.18.1.9:4000"), 1).0,
            Verdict::DropMismatch
        );
        assert_eq!(
            m.on_packet(POOL_RTP, sa(POOL_PEER), 1).0,
            Verdict::Forward(sa(GW_PEER))
        );
    }

    #[test]
    fn unknown_remote_drops_and_waits() {
        let mut m = media(false, false);
        m.leg_mut(Side::Gateway).remote = Remote::default();
        assert_eq!(
            m.on_packet(POOL_RTP, sa(POOL_PEER), 1).0,
            Verdict::DropNoDestination
        );
        assert_eq!(m.offload_entry(POOL_RTP), Err("no remote endpoint yet"));
    }

    #[test]
    fn family_change_stays_in_userspace() {
        let mut m = media(false, false);
        m.leg_mut(Side::Gateway).remote.rtp = Some(sa("[2001:2:0:2::2]:5000"));
        assert_eq!(m.offload_entry(POOL_RTP), Err("address family change"));
    }

    #[test]
    fn rtcp_mux_uses_the_rtp_ports() {
        let mut m = media(false, false);
        m.options.rtcp_mux = true;
        assert_eq!(
            m.offload_entry(POOL_RTCP),
            Err("rtcp-mux: carried on the RTP stream")
        );
        assert_eq!(m.active_streams().count(), 2);
        assert_eq!(m.leg(Side::Pool).local_addr(Kind::Rtcp, true).port(), 30000);
    }
}

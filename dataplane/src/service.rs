//! `mediator.dataplane.v1.DataplaneService`: converts between the wire types and the manager's,
//! and maps every [`SessionError`] to a `tonic::Status` here and nowhere else.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mediator_proto::dataplane::v1 as pb;
use pb::dataplane_service_server::DataplaneService;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};

use crate::manager::{
    CreateSpec, Dataplane, Event, EventKind, LegRequest, LegSrtp, SessionError, SessionView,
    StreamView, UpdateSpec, invalid,
};
use crate::session::{Kind, Leg, Options, Remote, Side};
use crate::srtp::{MasterKey, Mki, Suite};
use crate::xdp::AttachMode;

/// What the daemon found when it set up the fast path, for GetCapabilities.
#[derive(Clone, Debug)]
pub struct XdpInfo {
    pub mode: pb::XdpMode,
    pub note: String,
    pub interfaces: Vec<(String, u32, AttachMode)>,
}

pub struct Service {
    dp: Arc<Dataplane>,
    xdp: XdpInfo,
    /// The listener has TLS and requires client certificates: SRTP keys may come from any
    /// authenticated client, not only from loopback.
    remote_keys: bool,
}

impl Service {
    pub fn new(dp: Arc<Dataplane>, xdp: XdpInfo) -> Self {
        Self {
            dp,
            xdp,
            remote_keys: false,
        }
    }

    /// Whether SRTP keys are taken from clients off loopback (only over TLS with client
    /// certificates).
    pub fn with_remote_keys(mut self, remote_keys: bool) -> Self {
        self.remote_keys = remote_keys;
        self
    }
}

fn status(e: SessionError) -> Status {
    match e {
        SessionError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        SessionError::NotFound(_) => Status::not_found(e.to_string()),
        SessionError::AlreadyExists(_) => Status::already_exists(e.to_string()),
        SessionError::Exhausted(_) => Status::resource_exhausted(e.to_string()),
        SessionError::Busy(_) => Status::aborted(e.to_string()),
        SessionError::Internal(_) => Status::internal(e.to_string()),
    }
}

fn endpoint(field: &str, ep: Option<&pb::Endpoint>) -> Result<Option<SocketAddr>, SessionError> {
    let Some(ep) = ep else { return Ok(None) };
    if ep.address.is_empty() && ep.port == 0 {
        return Ok(None);
    }
    let ip: IpAddr = ep.address.parse().map_err(|_| {
        invalid(
            format!("{field}.address"),
            format!("'{}' is not an IPv4 or IPv6 address", ep.address),
        )
    })?;
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Err(invalid(
            format!("{field}.address"),
            format!("{ip} is IPv4-mapped: write it as {v4}"),
        ));
    }
    if ip.is_multicast() || ip.is_broadcast_v4() {
        return Err(invalid(
            format!("{field}.address"),
            format!("{ip} is not a unicast address"),
        ));
    }
    if ep.port == 0 || ep.port > 65535 {
        return Err(invalid(
            format!("{field}.port"),
            format!("{} is outside 1-65535", ep.port),
        ));
    }
    // 0.0.0.0 / :: is the old SDP way of saying "hold, nowhere to send": not known.
    if ip.is_unspecified() {
        return Ok(None);
    }
    Ok(Some(SocketAddr::new(ip, ep.port as u16)))
}

trait BroadcastV4 {
    fn is_broadcast_v4(&self) -> bool;
}
impl BroadcastV4 for IpAddr {
    fn is_broadcast_v4(&self) -> bool {
        matches!(self, IpAddr::V4(v4) if v4.is_broadcast())
    }
}

fn leg_request(
    side: &str,
    spec: Option<&pb::LegSpec>,
    mux: bool,
) -> Result<LegRequest, SessionError> {
    let Some(spec) = spec else {
        return Ok(LegRequest::default());
    };
    let local = if spec.local_address.is_empty() {
        None
    } else {
        Some(spec.local_address.parse::<IpAddr>().map_err(|_| {
            invalid(
                format!("{side}.local_address"),
                format!("'{}' is not an IP address", spec.local_address),
            )
        })?)
    };
    let rtp = endpoint(&format!("{side}.remote_rtp"), spec.remote_rtp.as_ref())?;
    let rtcp = endpoint(&format!("{side}.remote_rtcp"), spec.remote_rtcp.as_ref())?;
    if mux
        && let (Some(r), Some(c)) = (rtp, rtcp)
        && r != c
    {
        return Err(invalid(
            format!("{side}.remote_rtcp"),
            format!(
                "{c} differs from remote_rtp {r}, but options.rtcp_mux puts RTCP on the RTP port"
            ),
        ));
    }
    if spec.srtp_off && spec.srtp.is_some() {
        return Err(invalid(
            format!("{side}.srtp_off"),
            "cannot be set together with srtp",
        ));
    }
    Ok(LegRequest {
        local,
        remote: Remote { rtp, rtcp },
        srtp_off: spec.srtp_off,
        srtp: spec
            .srtp
            .as_ref()
            .map(|s| leg_srtp(side, s).map(Arc::new))
            .transpose()?,
    })
}

/// SRTP keys are taken from a client on loopback (mediator-control beside the relay), or from
/// anywhere when `remote` (the listener has TLS and requires client certificates); never in
/// clear over a network.
fn keys_allowed(
    from: Option<SocketAddr>,
    remote: bool,
    legs: [Option<&pb::LegSpec>; 2],
) -> Result<(), Status> {
    let has_keys = legs.into_iter().flatten().any(|l| l.srtp.is_some());
    if has_keys && !remote && !from.is_some_and(|a| a.ip().is_loopback()) {
        return Err(Status::failed_precondition(
            "srtp: keys are accepted only from a client on loopback, or over TLS with client certificates (api_tls_client_ca)",
        ));
    }
    Ok(())
}

/// One side's SRTP keys from the wire, each fault named by its field (never with key bytes).
fn leg_srtp(side: &str, s: &pb::SrtpSpec) -> Result<LegSrtp, SessionError> {
    let field = |f: &str| format!("{side}.srtp.{f}");
    let suite: Suite = s.suite.parse().map_err(|_| {
        invalid(
            field("suite"),
            format!(
                "'{}' is not AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM or AEAD_AES_256_GCM",
                crate::srtp::suite_token(&s.suite)
            ),
        )
    })?;
    let key = |name: &str, bytes: &[u8]| {
        MasterKey::from_concatenated(suite, bytes).map_err(|_| {
            invalid(
                field(name),
                format!(
                    "{} bytes; {suite} needs {} (master key and salt)",
                    bytes.len(),
                    suite.key_len() + suite.salt_len()
                ),
            )
        })
    };
    let mki = |name: &str, len: u32, value: u64| -> Result<Option<Mki>, SessionError> {
        if len == 0 {
            return Ok(None);
        }
        let len = u8::try_from(len).map_err(|_| invalid(field(name), "at most 8 bytes"))?;
        Mki::new(value, len)
            .map(Some)
            .map_err(|e| invalid(field(name), e.to_string()))
    };
    Ok(LegSrtp {
        peer: key("peer_key", &s.peer_key)?,
        peer_mki: mki("peer_mki_length", s.peer_mki_length, s.peer_mki)?,
        relay: key("relay_key", &s.relay_key)?,
        relay_mki: mki("relay_mki_length", s.relay_mki_length, s.relay_mki)?,
        peer_pending: s.peer_key_pending,
    })
}

fn options(dp: &Dataplane, o: Option<&pb::SessionOptions>) -> Options {
    let d = pb::SessionOptions::default();
    let o = o.unwrap_or(&d);
    let cfg = dp.config();
    Options {
        latching: o.latching,
        strict_source: o.strict_source,
        rtcp_mux: o.rtcp_mux,
        clock_rate: if o.clock_rate == 0 {
            8000
        } else {
            o.clock_rate
        },
        media_timeout_secs: if o.media_timeout_secs == 0 {
            cfg.media_timeout_secs
        } else {
            o.media_timeout_secs
        },
        hold_timeout_secs: if o.hold_timeout_secs == 0 {
            cfg.hold_timeout_secs.max(if o.media_timeout_secs == 0 {
                0
            } else {
                o.media_timeout_secs
            })
        } else {
            o.hold_timeout_secs
        },
        rtcp_timeout_secs: o.rtcp_timeout_secs,
        rtcp_hold_timeout_secs: o.rtcp_hold_timeout_secs,
    }
}

fn pb_side(s: Side) -> i32 {
    match s {
        Side::Pool => pb::Side::Pool as i32,
        Side::Gateway => pb::Side::Gateway as i32,
    }
}

fn pb_kind(k: Kind) -> i32 {
    match k {
        Kind::Rtp => pb::StreamKind::Rtp as i32,
        Kind::Rtcp => pb::StreamKind::Rtcp as i32,
    }
}

fn pb_endpoint(a: Option<SocketAddr>) -> Option<pb::Endpoint> {
    a.map(pb::Endpoint::from)
}

fn pb_path(offloaded: bool) -> i32 {
    if offloaded {
        pb::ForwardingPath::Xdp as i32
    } else {
        pb::ForwardingPath::Userspace as i32
    }
}

fn pb_leg(side: Side, leg: &Leg, mux: bool, srtp: &Option<String>) -> pb::Leg {
    pb::Leg {
        srtp_suite: srtp.clone().unwrap_or_default(),
        side: pb_side(side),
        local_address: leg.local.to_string(),
        local_rtp_port: u32::from(leg.rtp_port),
        local_rtcp_port: u32::from(leg.local_addr(Kind::Rtcp, mux).port()),
        remote_rtp: pb_endpoint(leg.remote.rtp),
        remote_rtcp: pb_endpoint(leg.remote.rtcp),
    }
}

fn pb_stream(s: &StreamView, clock_rate: u32) -> pb::Stream {
    pb::Stream {
        kind: pb_kind(s.id.kind),
        from_side: pb_side(s.id.from),
        path: pb_path(s.offloaded),
        path_reason: s.reason.clone(),
        expected_source: pb_endpoint(s.expected_source),
        forward_to: pb_endpoint(s.forward_to),
        latched: s.latched,
        counters: Some(pb::Counters {
            packets: s.merged.packets,
            bytes: s.merged.bytes,
            xdp_packets: s.xdp_packets,
            userspace_packets: s.userspace_packets,
            source_mismatch: s.merged.src_mismatch,
            dropped: s.dropped,
            idle_ms: s.idle_ms,
            srtp_auth_failures: s.srtp.auth_failures,
            srtp_replays: s.srtp.replays,
            srtp_bad_mki: s.srtp.bad_mki,
            srtp_other_drops: s.srtp.other,
        }),
        rtp: s.merged.rtp.map(|r| pb::RtpStats {
            ssrc: r.ssrc,
            received: r.received,
            expected: r.expected,
            lost: r.lost,
            highest_seq: r.highest_seq,
            jitter: r.jitter,
            jitter_ms: f64::from(r.jitter) * 1000.0 / f64::from(clock_rate.max(1)),
        }),
    }
}

pub fn pb_session(v: &SessionView) -> pb::Session {
    let mux = v.options.rtcp_mux;
    let (xdp, reason) = v.rtp_path();
    pb::Session {
        session_id: v.id.clone(),
        pool: Some(pb_leg(Side::Pool, &v.legs[0], mux, &v.srtp[0])),
        gateway: Some(pb_leg(Side::Gateway, &v.legs[1], mux, &v.srtp[1])),
        options: Some(pb::SessionOptions {
            latching: v.options.latching,
            strict_source: v.options.strict_source,
            rtcp_mux: mux,
            clock_rate: v.options.clock_rate,
            media_timeout_secs: v.options.media_timeout_secs,
            hold_timeout_secs: v.options.hold_timeout_secs,
            rtcp_timeout_secs: v.options.rtcp_timeout_secs,
            rtcp_hold_timeout_secs: v.options.rtcp_hold_timeout_secs,
        }),
        on_hold: v.on_hold,
        path: pb_path(xdp),
        path_reason: reason,
        streams: v
            .streams
            .iter()
            .map(|s| pb_stream(s, v.options.clock_rate))
            .collect(),
        created_unix_ms: v.created_unix_ms,
        fork_of: v.fork_of.clone().unwrap_or_default(),
        forks: v.forks as u32,
        owner: v.owner.clone().unwrap_or_default(),
    }
}

fn pb_event(e: Event) -> pb::Event {
    let kind = match e.kind {
        EventKind::RtcpTimeout { on_hold, idle_ms } => {
            pb::event::Kind::RtcpTimeout(pb::RtcpTimeout { on_hold, idle_ms })
        }
        EventKind::MediaTimeout { on_hold, idle_ms } => {
            pb::event::Kind::MediaTimeout(pb::MediaTimeout { on_hold, idle_ms })
        }
        EventKind::Offloaded { kind } => pb::event::Kind::Offloaded(pb::Offloaded {
            kind: pb_kind(kind),
        }),
        EventKind::Withdrawn { kind, reason } => pb::event::Kind::Withdrawn(pb::Withdrawn {
            kind: pb_kind(kind),
            reason,
        }),
        EventKind::LeaseExpired { owner } => {
            pb::event::Kind::LeaseExpired(pb::LeaseExpired { owner })
        }
    };
    pb::Event {
        sequence: e.sequence,
        unix_ms: e.unix_ms,
        session_id: e.session_id,
        kind: Some(kind),
    }
}

fn pb_attach(m: AttachMode) -> i32 {
    match m {
        AttachMode::Native => pb::XdpMode::Native as i32,
        AttachMode::Generic => pb::XdpMode::Generic as i32,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl DataplaneService for Service {
    async fn get_capabilities(
        &self,
        _: Request<pb::GetCapabilitiesRequest>,
    ) -> Result<Response<pb::GetCapabilitiesResponse>, Status> {
        let cfg = self.dp.config();
        let addrs = |side: Side| pb::SideAddresses {
            side: pb_side(side),
            addresses: cfg.addresses(side).iter().map(|a| a.to_string()).collect(),
        };
        Ok(Response::new(pb::GetCapabilitiesResponse {
            xdp_mode: self.xdp.mode as i32,
            xdp_note: self.xdp.note.clone(),
            interfaces: self
                .xdp
                .interfaces
                .iter()
                .map(|(name, ifindex, mode)| pb::AttachedInterface {
                    name: name.clone(),
                    ifindex: *ifindex,
                    mode: pb_attach(*mode),
                })
                .collect(),
            media_addresses: vec![addrs(Side::Pool), addrs(Side::Gateway)],
            port_min: u32::from(cfg.port_min),
            port_max: u32::from(cfg.port_max),
            free_ports: self.dp.free_ports(),
            sessions: self.dp.session_count() as u32,
            max_sessions: self.dp.max_sessions(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let from = req.remote_addr();
        let r = req.into_inner();
        keys_allowed(
            from,
            self.remote_keys,
            [r.pool.as_ref(), r.gateway.as_ref()],
        )?;
        let mux = r.options.as_ref().is_some_and(|o| o.rtcp_mux);
        let spec = (|| {
            Ok(CreateSpec {
                id: r.session_id.clone(),
                pool: leg_request("pool", r.pool.as_ref(), mux)?,
                gateway: leg_request("gateway", r.gateway.as_ref(), mux)?,
                options: options(&self.dp, r.options.as_ref()),
                on_hold: r.on_hold,
                fork_of: Some(r.fork_of.clone()).filter(|f| !f.is_empty()),
                owner: Some(r.owner.clone()).filter(|o| !o.is_empty()),
                lease: Duration::from_secs(u64::from(r.lease_secs)),
            })
        })()
        .map_err(status)?;
        let view = self.dp.create(spec).map_err(status)?;
        tracing::info!(session = %view.id, "session created");
        Ok(Response::new(pb::CreateSessionResponse {
            session: Some(pb_session(&view)),
        }))
    }

    async fn update_session(
        &self,
        req: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        let from = req.remote_addr();
        let r = req.into_inner();
        keys_allowed(
            from,
            self.remote_keys,
            [r.pool.as_ref(), r.gateway.as_ref()],
        )?;
        crate::manager::validate_id(&r.session_id).map_err(status)?;
        let mux = self.dp.get(&r.session_id).map_err(status)?.options.rtcp_mux;
        let spec = (|| {
            Ok(UpdateSpec {
                id: r.session_id.clone(),
                pool: r
                    .pool
                    .as_ref()
                    .map(|l| leg_request("pool", Some(l), mux))
                    .transpose()?,
                gateway: r
                    .gateway
                    .as_ref()
                    .map(|l| leg_request("gateway", Some(l), mux))
                    .transpose()?,
                on_hold: r.on_hold,
                options: r.options.as_ref().map(|o| {
                    let mut o = options(&self.dp, Some(o));
                    if r.options.as_ref().is_some_and(|p| p.clock_rate == 0) {
                        o.clock_rate = 0; // the session's own
                    }
                    o
                }),
            })
        })()
        .map_err(status)?;
        let view = self.dp.update(spec).map_err(status)?;
        Ok(Response::new(pb::UpdateSessionResponse {
            session: Some(pb_session(&view)),
        }))
    }

    async fn delete_session(
        &self,
        req: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let r = req.into_inner();
        let heir = Some(r.hand_ports_to.as_str()).filter(|h| !h.is_empty());
        let view = self.dp.delete(&r.session_id, heir).await.map_err(status)?;
        Ok(Response::new(pb::DeleteSessionResponse {
            session: Some(pb_session(&view)),
        }))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let id = req.into_inner().session_id;
        crate::manager::validate_id(&id).map_err(status)?;
        let view = self.dp.get(&id).map_err(status)?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(pb_session(&view)),
        }))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let r = req.into_inner();
        let size = match r.page_size {
            0 => 100,
            n @ 1..=1000 => n as usize,
            n => {
                return Err(Status::invalid_argument(format!(
                    "page_size: {n} is outside 1-1000"
                )));
            }
        };
        if !r.page_token.is_empty() {
            crate::manager::validate_id(&r.page_token).map_err(|_| {
                Status::invalid_argument("page_token: not a token from a previous response")
            })?;
        }
        let owner = Some(r.owner.as_str()).filter(|o| !o.is_empty());
        let (views, more, total) = self.dp.list(&r.page_token, size, owner).map_err(status)?;
        let next = if more {
            views.last().map(|v| v.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: views.iter().map(pb_session).collect(),
            next_page_token: next,
            total: total as u32,
        }))
    }

    async fn renew_lease(
        &self,
        req: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        let r = req.into_inner();
        let lease = Duration::from_secs(u64::from(r.lease_secs));
        let sessions = self.dp.renew_lease(&r.owner, lease).map_err(status)?;
        Ok(Response::new(pb::RenewLeaseResponse {
            sessions: sessions as u32,
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        _: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let stream = BroadcastStream::new(self.dp.subscribe()).filter_map(|e| match e {
            Ok(e) => Some(Ok(pb_event(e))),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "an event watcher fell behind");
                None
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_stats(
        &self,
        _: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let t = self.dp.totals();
        Ok(Response::new(pb::GetStatsResponse {
            paths: vec![
                pb::PathTotals {
                    path: pb::ForwardingPath::Xdp as i32,
                    packets: t.xdp_packets,
                    bytes: t.xdp_bytes,
                },
                pb::PathTotals {
                    path: pb::ForwardingPath::Userspace as i32,
                    packets: t.user_packets,
                    bytes: t.user_bytes,
                },
            ],
            source_mismatch: t.src_mismatch,
            dropped: t.dropped,
            socket_overflow: t.socket_overflow,
            lease_expired_sessions: self.dp.lease_expired_sessions(),
            srtp_auth_failures: t.srtp.auth_failures,
            srtp_replays: t.srtp.replays,
            srtp_bad_mki: t.srtp.bad_mki,
            srtp_other_drops: t.srtp.other,
            sessions: self.dp.session_count() as u32,
            offloaded_streams: self.dp.offloaded_streams(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(suite: &str, key_len: usize, mki_len: u32) -> pb::SrtpSpec {
        pb::SrtpSpec {
            suite: suite.into(),
            peer_key: vec![0x5a; key_len],
            peer_mki_length: mki_len,
            peer_mki: 1,
            relay_key: vec![0x5a; 30],
            relay_mki_length: 0,
            relay_mki: 0,
            peer_key_pending: false,
        }
    }

    #[test]
    fn the_wire_type_of_keys_does_not_print_them() {
        let s = spec("AES_CM_128_HMAC_SHA1_80", 30, 1);
        let text = format!(
            "{s:?} {:?}",
            pb::LegSpec {
                srtp: Some(s.clone()),
                ..Default::default()
            }
        );
        assert!(!text.contains("90") && !text.contains("5a"), "{text}");
        assert!(
            text.contains("<30 bytes>") && text.contains("AES_CM_128_HMAC_SHA1_80"),
            "{text}"
        );
    }

    #[test]
    fn keys_come_only_from_loopback() {
        let with = pb::LegSpec {
            srtp: Some(spec("AES_CM_128_HMAC_SHA1_80", 30, 0)),
            ..Default::default()
        };
        let without = pb::LegSpec::default();
        let lo: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:50000".parse().expect("addr");
        let net: SocketAddr = "198.18.1.2:50000".parse().expect("addr");
        assert!(keys_allowed(Some(lo), false, [Some(&with), None]).is_ok());
        assert!(keys_allowed(Some(lo6), false, [None, Some(&with)]).is_ok());
        let e = keys_allowed(Some(net), false, [Some(&without), Some(&with)]).expect_err("refused");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(keys_allowed(None, false, [Some(&with), None]).is_err());
        assert!(
            keys_allowed(Some(net), false, [Some(&without), None]).is_ok(),
            "no keys, no check"
        );
        assert!(
            keys_allowed(Some(net), true, [Some(&with), None]).is_ok(),
            "over TLS with client certificates"
        );
    }

    #[test]
    fn srtp_input_is_checked_field_by_field_and_errors_hold_no_key() {
        let ok = leg_srtp("pool", &spec("AES_CM_128_HMAC_SHA1_80", 30, 1)).expect("valid");
        assert_eq!(ok.suite(), Suite::AesCm128HmacSha1_80);
        assert!(ok.peer_mki.is_some() && ok.relay_mki.is_none());
        assert!(!format!("{ok:?}").contains("5a"), "Debug shows no key");
        for (s, field, what) in [
            (
                spec("F8_128_HMAC_SHA1_80", 30, 0),
                "pool.srtp.suite",
                "is not",
            ),
            (
                spec("AES_CM_128_HMAC_SHA1_80", 29, 0),
                "pool.srtp.peer_key",
                "29 bytes",
            ),
            (
                spec("AEAD_AES_256_GCM", 30, 0),
                "pool.srtp.peer_key",
                "needs 44",
            ),
            (
                spec("AES_CM_128_HMAC_SHA1_80", 30, 9),
                "pool.srtp.peer_mki_length",
                "",
            ),
            (
                spec("AES_CM_128_HMAC_SHA1_80", 30, 300),
                "pool.srtp.peer_mki_length",
                "8 bytes",
            ),
        ] {
            let e = leg_srtp("pool", &s).expect_err(field).to_string();
            assert!(e.contains(field) && e.contains(what), "{e}");
            assert!(
                !e.contains("5a5a") && !e.contains("90, 90"),
                "no key bytes: {e}"
            );
        }
        // A whole a=crypto value passed as the suite is not echoed.
        let mut whole = spec("AES_CM_128_HMAC_SHA1_80", 30, 0);
        whole.suite = "AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7".into();
        let e = leg_srtp("pool", &whole).expect_err("bad suite").to_string();
        assert!(!e.contains("WVNf") && e.contains("'?'"), "{e}");
    }
}

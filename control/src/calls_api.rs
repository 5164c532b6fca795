//! `mediator.control.v1.CallService`: calls in progress and recent call records, with their
//! media figures from the dataplane.

use mediator_proto::control::v1 as pb;
use mediator_proto::dataplane::v1 as dp;
use tonic::{Request, Response, Status};

use crate::calls::{CallHandle, CallView};
use mediator_b2bua::{EndRefused, TrunkChange, TrunkHealth};

pub struct CallApi {
    calls: CallHandle,
}

impl CallApi {
    pub fn new(calls: CallHandle) -> Self {
        Self { calls }
    }
}

fn path_name(p: i32) -> &'static str {
    match dp::ForwardingPath::try_from(p) {
        Ok(dp::ForwardingPath::Xdp) => "xdp",
        Ok(dp::ForwardingPath::Userspace) => "userspace",
        _ => "",
    }
}

fn side_name(s: i32) -> &'static str {
    match dp::Side::try_from(s) {
        Ok(dp::Side::Pool) => "pool",
        Ok(dp::Side::Gateway) => "gateway",
        _ => "",
    }
}

/// The relay's RTP address on a leg, as its SDP gives it ("" when unknown).
fn media_address(leg: Option<&dp::Leg>) -> String {
    match leg {
        Some(l) if l.local_rtp_port != 0 => match l.local_address.parse::<std::net::IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, l.local_rtp_port as u16).to_string(),
            Err(_) => format!("{}:{}", l.local_address, l.local_rtp_port),
        },
        _ => String::new(),
    }
}

pub fn to_pb(view: &CallView) -> pb::Call {
    let c = &view.info;
    pb::Call {
        id: c.id,
        direction: c.direction.into(),
        state: c.state.into(),
        pool: c.pool.clone(),
        trunk: c.trunk.clone(),
        route: c.route.clone(),
        gateway: c.gateway.clone(),
        dialed: c.dialed.clone(),
        caller: c.caller.clone(),
        called: c.called.clone(),
        calling: c.calling.clone(),
        legs: c
            .legs
            .iter()
            .map(|l| pb::CallLeg {
                side: l.side.name().into(),
                sip_call_id: l.sip_call_id.clone(),
                peer: l.peer.to_string(),
                local: l.local.to_string(),
                transport: l.transport.name().into(),
            })
            .collect(),
        attempts: c
            .attempts
            .iter()
            .map(|(trunk, status)| pb::Attempt {
                trunk: trunk.clone(),
                status: u32::from(*status),
            })
            .collect(),
        media_bypass: c.media_bypass,
        streams: c
            .streams
            .iter()
            .zip(&view.media)
            .map(|(s, session)| pb::CallStream {
                index: s.index as u32,
                session_id: s.session_id.clone(),
                relay: s.relay.clone(),
                pool_media: media_address(session.as_ref().and_then(|x| x.pool.as_ref())),
                gateway_media: media_address(session.as_ref().and_then(|x| x.gateway.as_ref())),
                pool_srtp: s.srtp[0].clone(),
                gateway_srtp: s.srtp[1].clone(),
                srtp_passthrough: s.srtp_passthrough,
                path: session
                    .as_ref()
                    .map(|x| path_name(x.path).to_string())
                    .unwrap_or_default(),
                flows: session
                    .iter()
                    .flat_map(|x| x.streams.iter())
                    .map(|f| {
                        let counters = f.counters.unwrap_or_default();
                        pb::MediaFlow {
                            kind: match dp::StreamKind::try_from(f.kind) {
                                Ok(dp::StreamKind::Rtcp) => "rtcp".into(),
                                _ => "rtp".into(),
                            },
                            from_side: side_name(f.from_side).into(),
                            path: path_name(f.path).into(),
                            path_reason: f.path_reason.clone(),
                            packets: counters.packets,
                            bytes: counters.bytes,
                            xdp_packets: counters.xdp_packets,
                            userspace_packets: counters.userspace_packets,
                            lost: f.rtp.map(|r| r.lost).unwrap_or(0),
                            jitter_ms: f.rtp.map(|r| r.jitter_ms).unwrap_or(0.0),
                            srtp_auth_failures: counters.srtp_auth_failures,
                            srtp_replays: counters.srtp_replays,
                            srtp_bad_mki: counters.srtp_bad_mki,
                            srtp_other_drops: counters.srtp_other_drops,
                        }
                    })
                    .collect(),
            })
            .collect(),
        started_unix_ms: c.started_unix_ms,
        answered_unix_ms: c.answered_unix_ms.unwrap_or(0),
        ended_unix_ms: c.ended_unix_ms.unwrap_or(0),
        duration_ms: c.duration_ms,
        status: u32::from(c.status),
        end_reason: c.end_reason.clone(),
    }
}

/// A trunk's health as the API shows it.
/// A DNS answer as the API shows it.
pub fn resolution_to_pb(
    q: &mediator_b2bua::dns::Query,
    r: &mediator_b2bua::dns::Resolution,
) -> pb::Resolution {
    pb::Resolution {
        query: q.to_string(),
        how: r.how.into(),
        targets: r
            .targets
            .iter()
            .map(|t| pb::ResolvedTarget {
                name: t.name.clone(),
                priority: t.priority.into(),
                weight: t.weight.into(),
                port: t.port.into(),
                addresses: t.addrs.iter().map(|a| a.to_string()).collect(),
            })
            .collect(),
        expires_unix_ms: r.expires_unix_ms,
        error: r.error.clone().unwrap_or_default(),
    }
}

pub fn health_to_pb(h: &TrunkHealth) -> pb::TrunkHealth {
    pb::TrunkHealth {
        state: h.state.name().into(),
        since_unix_ms: h.since_unix_ms.unwrap_or(0),
        last_status: h.last_status.map_or(0, u32::from),
        last_unix_ms: h.last_unix_ms.unwrap_or(0),
        rtt_ms: h.rtt.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        failures: h.failures,
        probes: h.probes,
        downs: h.downs,
        peer: h.peer.to_string(),
        interval_secs: h.interval.as_secs() as u32,
        threshold: h.threshold,
        addresses_down: h.addresses_down.iter().map(|a| a.to_string()).collect(),
    }
}

fn change_to_pb(c: &TrunkChange, missed: u64) -> pb::TrunkHealthEvent {
    pb::TrunkHealthEvent {
        trunk: c.trunk.clone(),
        gateway: c.gateway.clone(),
        state: c.state.name().into(),
        why: c.why.clone(),
        unix_ms: c.unix_ms,
        missed,
    }
}

type HealthStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::TrunkHealthEvent, Status>> + Send>,
>;

#[tonic::async_trait]
impl pb::call_service_server::CallService for CallApi {
    type WatchTrunkHealthStream = HealthStream;

    async fn list_trunk_health(
        &self,
        _req: Request<pb::ListTrunkHealthRequest>,
    ) -> Result<Response<pb::ListTrunkHealthResponse>, Status> {
        let trunks = self
            .calls
            .trunk_health()
            .iter()
            .map(|h| pb::NamedTrunkHealth {
                trunk: h.trunk.clone(),
                gateway: h.gateway.clone(),
                health: Some(health_to_pb(h)),
            })
            .collect();
        Ok(Response::new(pb::ListTrunkHealthResponse { trunks }))
    }

    async fn watch_trunk_health(
        &self,
        _req: Request<pb::WatchTrunkHealthRequest>,
    ) -> Result<Response<HealthStream>, Status> {
        let mut rx = self.calls.watch_health();
        let (tx, out) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut missed = 0u64;
            loop {
                let event = match rx.recv().await {
                    Ok(c) => change_to_pb(&c, std::mem::take(&mut missed)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        missed += n;
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn list_calls(
        &self,
        _req: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        let calls = self.calls.list().await.iter().map(to_pb).collect();
        Ok(Response::new(pb::ListCallsResponse { calls }))
    }

    async fn get_call(
        &self,
        req: Request<pb::GetCallRequest>,
    ) -> Result<Response<pb::Call>, Status> {
        let id = req.into_inner().id;
        if id == 0 {
            return Err(Status::invalid_argument(
                "id: must be a call id (1 or more)",
            ));
        }
        match self.calls.get(id).await {
            Some(c) => Ok(Response::new(to_pb(&c))),
            None => Err(Status::not_found(format!(
                "call {id} is neither in progress nor among the recent calls"
            ))),
        }
    }

    async fn end_call(
        &self,
        req: Request<pb::EndCallRequest>,
    ) -> Result<Response<pb::Call>, Status> {
        let req = req.into_inner();
        if req.id == 0 {
            return Err(Status::invalid_argument(
                "id: must be a call id (1 or more)",
            ));
        }
        let reason = req.reason.trim();
        if reason.chars().any(char::is_control) || reason.chars().count() > 200 {
            return Err(Status::invalid_argument(
                "reason: at most 200 characters, without control characters",
            ));
        }
        let reason = if reason.is_empty() {
            "ended by the operator".to_string()
        } else {
            reason.to_string()
        };
        match self.calls.end(req.id, reason).await {
            Ok(c) => Ok(Response::new(to_pb(&c))),
            Err(EndRefused::NotInProgress) => Err(Status::not_found(format!(
                "call {} is not in progress",
                req.id
            ))),
            Err(EndRefused::Answering) => Err(Status::failed_precondition(format!(
                "call {} is being answered (its caller has not acknowledged yet): try again in a moment",
                req.id
            ))),
        }
    }

    async fn list_recent_calls(
        &self,
        req: Request<pb::ListRecentCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        let limit = req.into_inner().limit as usize;
        let mut calls: Vec<pb::Call> = self.calls.recent().iter().map(to_pb).collect();
        if limit > 0 {
            calls.truncate(limit);
        }
        Ok(Response::new(pb::ListCallsResponse { calls }))
    }
}

//! The control plane's side of a pool's dataplanes (stand-alone media relays), over gRPC only:
//! sessions are created round-robin among the healthy relays, every call is bounded in time and
//! their number in flight is bounded, and a relay that cannot be reached is skipped and marked
//! down — so a call attempt fails cleanly (SIP 503) instead of hanging. A session stays on the
//! relay that created it.
//!
//! No session without an owner: every session is created under this control plane's lease
//! ([`Lease`]), which [`reconcile`] renews and uses to delete what no call owns; a create that
//! failed or timed out after the relay may have acted is followed at once by a delete of its id.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mediator_b2bua::media::{
    Anchor, MediaAnswer, MediaRequest, MediaUpdate, Mki, Remote, SrtpChange, SrtpKeys,
};
use mediator_proto::dataplane::v1 as pb;
use mediator_serve::auth::{AuthChannel, ClientAuth};
use pb::dataplane_service_client::DataplaneServiceClient;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// No relay answered in time: the call attempt gets 503.
    #[error("no media relay available: {0}")]
    Unavailable(String),
    /// A relay refused the request itself (bad input, port range exhausted …).
    #[error("media relay {relay} refused: {status}")]
    Refused {
        relay: String,
        status: tonic::Status,
    },
}

impl MediaError {
    /// The SIP status a call attempt answers with.
    pub fn sip_status(&self) -> u16 {
        match self {
            MediaError::Unavailable(_) => 503,
            MediaError::Refused { status, .. }
                if status.code() == tonic::Code::ResourceExhausted =>
            {
                503
            }
            MediaError::Refused { .. } => 500,
        }
    }
}

/// Who owns the sessions this control plane creates, and for how long a relay keeps them
/// without hearing from it (CreateSessionRequest.owner, RenewLease).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub secs: u32,
}

impl Lease {
    /// This daemon's lease: its owner name is kept in `data_dir/relay-owner` (made on first
    /// start), so a restarted daemon finds the sessions its previous run created.
    pub fn of_data_dir(data_dir: &std::path::Path, secs: u32) -> std::io::Result<Lease> {
        use std::hash::{BuildHasher, Hasher};
        let path = data_dir.join("relay-owner");
        let owner = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                );
                let owner = format!("mediator-control-{:016x}", h.finish());
                let tmp = data_dir.join(".relay-owner.tmp");
                std::fs::write(&tmp, format!("{owner}\n"))?;
                std::fs::rename(&tmp, &path)?;
                owner
            }
            Err(e) => return Err(e),
        };
        let valid = (1..=128).contains(&owner.len())
            && owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c));
        if !valid {
            return Err(std::io::Error::other(format!(
                "{}: not an owner name (1-128 of A-Z a-z 0-9 . _ : @ -)",
                path.display()
            )));
        }
        Ok(Lease { owner, secs })
    }
}

/// Dataplane calls in flight at most per pool: beyond it a call attempt gets 503 at once rather
/// than pile requests onto a relay that is already behind.
pub const MAX_IN_FLIGHT: usize = 64;

struct Relay {
    addr: String,
    client: DataplaneServiceClient<AuthChannel>,
    healthy: AtomicBool,
    last_error: Mutex<String>,
}

/// The dataplanes of one pool.
pub struct Relays {
    relays: Vec<Relay>,
    next: AtomicUsize,
    timeout: Duration,
    lease: Option<Lease>,
    in_flight: tokio::sync::Semaphore,
}

/// Whether a status means the relay itself is unreachable or broken (try another) rather than a
/// refusal of this request.
fn transport_failure(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
    )
}

/// A session from a relay's answer to an RPC bounded by `timeout`: an outage (try elsewhere, or
/// 503) told apart from a refusal of the request.
fn session_of<T>(
    relay: &str,
    timeout: Duration,
    answer: Result<Result<tonic::Response<T>, tonic::Status>, tokio::time::error::Elapsed>,
    session: impl FnOnce(T) -> Option<pb::Session>,
) -> Result<pb::Session, MediaError> {
    match answer {
        Ok(Ok(resp)) => session(resp.into_inner())
            .ok_or_else(|| MediaError::Unavailable(format!("{relay}: empty answer"))),
        Ok(Err(status)) if transport_failure(&status) => Err(MediaError::Unavailable(format!(
            "{relay}: {}",
            status.message()
        ))),
        Ok(Err(status)) => Err(MediaError::Refused {
            relay: relay.into(),
            status,
        }),
        Err(_) => Err(MediaError::Unavailable(format!(
            "{relay}: no answer within {timeout:?}"
        ))),
    }
}

impl Relays {
    /// `addrs` are host:port of mediator-dataplane gRPC services, reached as `auth` says (TLS,
    /// token). Connections are made lazily. Sessions are created under `lease` when given.
    pub fn new(
        addrs: &[String],
        timeout: Duration,
        lease: Option<Lease>,
        auth: &ClientAuth,
    ) -> Result<Relays, MediaError> {
        let relays = addrs
            .iter()
            .map(|addr| {
                let endpoint = auth
                    .endpoint(addr)
                    .map_err(MediaError::Unavailable)?
                    .connect_timeout(timeout)
                    .timeout(timeout);
                Ok(Relay {
                    addr: addr.clone(),
                    client: DataplaneServiceClient::with_interceptor(
                        endpoint.connect_lazy(),
                        auth.add_token(),
                    ),
                    healthy: AtomicBool::new(true),
                    last_error: Mutex::new(String::new()),
                })
            })
            .collect::<Result<Vec<_>, MediaError>>()?;
        Ok(Relays {
            relays,
            next: AtomicUsize::new(0),
            timeout,
            lease,
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    /// A place among the dataplane calls in flight, waited for at most the call timeout.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, MediaError> {
        match tokio::time::timeout(self.timeout, self.in_flight.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(MediaError::Unavailable(format!(
                "{MAX_IN_FLIGHT} dataplane calls already in flight"
            ))),
        }
    }

    /// The request with this control plane's lease on it.
    fn owned(&self, mut req: pb::CreateSessionRequest) -> pb::CreateSessionRequest {
        if let Some(l) = &self.lease {
            req.owner = l.owner.clone();
            req.lease_secs = l.secs;
        }
        req
    }

    /// A create that failed without an answer may still have made the session (the relay got
    /// the request, its answer was lost): delete that id on that relay, in the background
    /// (idempotent: NOT_FOUND is the usual answer). What this misses, [`reconcile`] finds.
    fn forget(&self, i: usize, session_id: &str) {
        let mut client = self.relays[i].client.clone();
        let (addr, timeout) = (self.relays[i].addr.clone(), self.timeout);
        let req = pb::DeleteSessionRequest {
            session_id: session_id.into(),
            hand_ports_to: String::new(),
        };
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, client.delete_session(req.clone())).await {
                Ok(Ok(_)) => {
                    tracing::warn!(relay = %addr, session = %req.session_id, "deleted a session whose creation had failed");
                }
                Ok(Err(s)) if s.code() == tonic::Code::NotFound => {}
                _ => {
                    tracing::info!(relay = %addr, session = %req.session_id, "a failed creation could not be undone yet; the lease reconciliation will")
                }
            }
        });
    }

    /// (address, healthy, last error) of every relay.
    pub fn health(&self) -> Vec<(String, bool, String)> {
        self.relays
            .iter()
            .map(|r| {
                let err = r.last_error.lock().map(|e| e.clone()).unwrap_or_default();
                (r.addr.clone(), r.healthy.load(Ordering::Relaxed), err)
            })
            .collect()
    }

    fn mark(&self, i: usize, ok: bool, error: &str) {
        let r = &self.relays[i];
        let was = r.healthy.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!(relay = %r.addr, "media relay is back");
            } else {
                tracing::warn!(relay = %r.addr, error, "media relay down");
            }
        }
        if let Ok(mut e) = r.last_error.lock() {
            *e = error.to_string();
        }
    }

    /// The order to try relays in: round-robin over the healthy ones, then the ones marked down
    /// (they may be back).
    fn order(&self) -> Vec<usize> {
        let n = self.relays.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let ring: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
        let (up, down): (Vec<usize>, Vec<usize>) = ring
            .into_iter()
            .partition(|&i| self.relays[i].healthy.load(Ordering::Relaxed));
        up.into_iter().chain(down).collect()
    }

    /// Creates a session on the next healthy relay; returns the relay's address with it.
    pub async fn create_session(
        &self,
        req: pb::CreateSessionRequest,
    ) -> Result<(String, pb::Session), MediaError> {
        if self.relays.is_empty() {
            return Err(MediaError::Unavailable("the pool has no dataplanes".into()));
        }
        let req = self.owned(req);
        let _permit = self.permit().await?;
        let mut errors = Vec::new();
        for i in self.order() {
            let relay = &self.relays[i];
            let mut client = relay.client.clone();
            let result =
                tokio::time::timeout(self.timeout, client.create_session(req.clone())).await;
            match result {
                Ok(Ok(resp)) => {
                    self.mark(i, true, "");
                    let session = resp.into_inner().session.ok_or_else(|| {
                        MediaError::Unavailable(format!("{}: empty answer", relay.addr))
                    })?;
                    return Ok((relay.addr.clone(), session));
                }
                Ok(Err(status)) if !transport_failure(&status) => {
                    self.mark(i, true, "");
                    return Err(MediaError::Refused {
                        relay: relay.addr.clone(),
                        status,
                    });
                }
                Ok(Err(status)) => {
                    self.mark(i, false, status.message());
                    errors.push(format!("{}: {}", relay.addr, status.message()));
                    self.forget(i, &req.session_id);
                }
                Err(_) => {
                    self.mark(i, false, "timed out");
                    self.forget(i, &req.session_id);
                    errors.push(format!(
                        "{}: no answer within {:?}",
                        relay.addr, self.timeout
                    ));
                }
            }
        }
        Err(MediaError::Unavailable(errors.join("; ")))
    }

    fn relay(&self, addr: &str) -> Result<&Relay, MediaError> {
        self.relays.iter().find(|r| r.addr == addr).ok_or_else(|| {
            MediaError::Unavailable(format!("{addr} is not a dataplane of this pool"))
        })
    }

    fn index(&self, addr: &str) -> Option<usize> {
        self.relays.iter().position(|r| r.addr == addr)
    }

    /// Updates a session on the relay that holds it.
    pub async fn update_session(
        &self,
        relay: &str,
        req: pb::UpdateSessionRequest,
    ) -> Result<pb::Session, MediaError> {
        let r = self.relay(relay)?;
        let mut client = r.client.clone();
        let _permit = self.permit().await?;
        let answer = tokio::time::timeout(self.timeout, client.update_session(req)).await;
        session_of(relay, self.timeout, answer, |r| r.session)
    }

    /// Deletes a session; returns its final figures when the relay answered.
    pub async fn delete_session(
        &self,
        relay: &str,
        session_id: &str,
    ) -> Result<pb::Session, MediaError> {
        self.delete_session_to(relay, session_id, None).await
    }

    /// Deletes a session whose gateway-side ports its fork `heir` (when given) takes over.
    pub async fn delete_session_to(
        &self,
        relay: &str,
        session_id: &str,
        heir: Option<&str>,
    ) -> Result<pb::Session, MediaError> {
        let r = self.relay(relay)?;
        let mut client = r.client.clone();
        let req = pb::DeleteSessionRequest {
            session_id: session_id.into(),
            hand_ports_to: heir.unwrap_or_default().into(),
        };
        let _permit = self.permit().await?;
        let answer = tokio::time::timeout(self.timeout, client.delete_session(req)).await;
        session_of(relay, self.timeout, answer, |r| r.session)
    }

    /// Creates a session on relay `relay` (a fork, where the session it forks lives).
    pub async fn create_session_on(
        &self,
        relay: &str,
        req: pb::CreateSessionRequest,
    ) -> Result<(String, pb::Session), MediaError> {
        let r = self.relay(relay)?;
        let mut client = r.client.clone();
        let req = self.owned(req);
        let id = req.session_id.clone();
        let _permit = self.permit().await?;
        let answer = tokio::time::timeout(self.timeout, client.create_session(req)).await;
        let result = session_of(relay, self.timeout, answer, |r| r.session);
        if let (Err(MediaError::Unavailable(_)), Some(i)) = (&result, self.index(relay)) {
            self.forget(i, &id);
        }
        result.map(|s| (relay.to_string(), s))
    }

    /// A session's current figures from the relay that holds it.
    pub async fn get_session(
        &self,
        relay: &str,
        session_id: &str,
    ) -> Result<pb::Session, MediaError> {
        let r = self.relay(relay)?;
        let mut client = r.client.clone();
        let req = pb::GetSessionRequest {
            session_id: session_id.into(),
        };
        let answer = tokio::time::timeout(self.timeout, client.get_session(req)).await;
        session_of(relay, self.timeout, answer, |r| r.session)
    }

    /// Renews this control plane's lease on every relay and lists the sessions held under it:
    /// (relay, session id, created at, ms since the Unix epoch). A relay that does not answer is
    /// skipped (its lease runs on until the next pass, or lapses).
    pub async fn leased_sessions(&self) -> Vec<(String, String, u64)> {
        let Some(lease) = &self.lease else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in &self.relays {
            let mut client = r.client.clone();
            let renew = pb::RenewLeaseRequest {
                owner: lease.owner.clone(),
                lease_secs: lease.secs,
            };
            match tokio::time::timeout(self.timeout, client.renew_lease(renew)).await {
                Ok(Ok(_)) => {}
                Ok(Err(s)) => {
                    tracing::warn!(relay = %r.addr, error = %s.message(), "cannot renew the lease on the relay's sessions");
                    continue;
                }
                Err(_) => continue,
            }
            let mut token = String::new();
            // Bounded: 1000 pages of 1000 (the most sessions a relay can hold is far less).
            for _ in 0..1000 {
                let req = pb::ListSessionsRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                    owner: lease.owner.clone(),
                };
                let Ok(Ok(page)) =
                    tokio::time::timeout(self.timeout, client.list_sessions(req)).await
                else {
                    break;
                };
                let page = page.into_inner();
                out.extend(
                    page.sessions
                        .into_iter()
                        .map(|s| (r.addr.clone(), s.session_id, s.created_unix_ms)),
                );
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
        }
        out
    }

    /// Asks every relay for its capabilities and marks it up or down accordingly.
    pub async fn probe(&self) {
        for i in 0..self.relays.len() {
            let mut client = self.relays[i].client.clone();
            match tokio::time::timeout(
                self.timeout,
                client.get_capabilities(pb::GetCapabilitiesRequest {}),
            )
            .await
            {
                Ok(Ok(_)) => self.mark(i, true, ""),
                Ok(Err(s)) => self.mark(i, false, s.message()),
                Err(_) => self.mark(i, false, "timed out"),
            }
        }
    }
}

/// What a relay reported silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// No packet either way for the media (or hold) timeout.
    Media,
    /// No RTCP either way for the RTCP timeout, after RTCP had been seen.
    Rtcp,
}

/// Follows relay `addr`'s event stream and sends each media or RTCP timeout on `tx` as (relay,
/// session id, which). Its own channel: no per-request timeout (a stream lasts), HTTP/2 keep-alives so a relay
/// host that vanished is noticed; a stream that ends or cannot be opened is opened again after a
/// pause. The task ends when `tx`'s receiver is gone or it is aborted.
pub fn watch_relay(
    addr: &str,
    connect_timeout: Duration,
    tx: tokio::sync::mpsc::Sender<(String, String, Silence)>,
    auth: &ClientAuth,
) -> Result<tokio::task::AbortHandle, MediaError> {
    let endpoint = auth
        .endpoint(addr)
        .map_err(MediaError::Unavailable)?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let mut client =
        DataplaneServiceClient::with_interceptor(endpoint.connect_lazy(), auth.add_token());
    let addr = addr.to_string();
    Ok(tokio::spawn(async move {
        loop {
            if let Ok(resp) = client.watch_events(pb::WatchEventsRequest {}).await {
                let mut stream = resp.into_inner();
                while let Ok(Some(e)) = stream.message().await {
                    let silence = match e.kind {
                        Some(pb::event::Kind::MediaTimeout(_)) => Silence::Media,
                        Some(pb::event::Kind::RtcpTimeout(_)) => Silence::Rtcp,
                        _ => continue,
                    };
                    if tx
                        .send((addr.clone(), e.session_id, silence))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
    .abort_handle())
}

// The engine's media requests and the relays' answers, mapped to and from
// `mediator.dataplane.v1` here and nowhere else.

/// One side's keys as the dataplane's API has them (write-only there; its `Debug` shows none).
fn srtp_spec(k: &SrtpKeys) -> pb::SrtpSpec {
    let mki = |m: Option<Mki>| m.map(|m| (u32::from(m.len), m.value)).unwrap_or((0, 0));
    let ((peer_mki_length, peer_mki), (relay_mki_length, relay_mki)) =
        (mki(k.peer_mki), mki(k.relay_mki));
    pb::SrtpSpec {
        suite: k.suite.name().into(),
        peer_key: k.peer.bytes().to_vec(),
        peer_mki_length,
        peer_mki,
        relay_key: k.relay.bytes().to_vec(),
        relay_mki_length,
        relay_mki,
        peer_key_pending: k.peer_pending,
    }
}

fn leg_spec(r: Remote, srtp: &SrtpChange) -> pb::LegSpec {
    pb::LegSpec {
        local_address: String::new(),
        remote_rtp: r.rtp.map(pb::Endpoint::from),
        remote_rtcp: r.rtcp.map(pb::Endpoint::from),
        srtp: match srtp {
            SrtpChange::Keys(k) => Some(srtp_spec(k)),
            SrtpChange::Keep | SrtpChange::Off => None,
        },
        srtp_off: *srtp == SrtpChange::Off,
    }
}

fn keys(k: Option<SrtpKeys>) -> SrtpChange {
    k.map(SrtpChange::Keys).unwrap_or_default()
}

/// A session to create, as the dataplane's API has it.
pub fn create_request(r: MediaRequest) -> pb::CreateSessionRequest {
    let [pool_srtp, gateway_srtp] = r.srtp;
    pb::CreateSessionRequest {
        session_id: r.session_id,
        pool: Some(leg_spec(r.pool, &keys(pool_srtp))),
        gateway: Some(leg_spec(r.gateway, &keys(gateway_srtp))),
        options: Some(pb::SessionOptions {
            latching: r.latching,
            strict_source: r.strict_source,
            rtcp_mux: r.rtcp_mux,
            clock_rate: 0,
            media_timeout_secs: r.media_timeout_secs,
            hold_timeout_secs: r.hold_timeout_secs,
            rtcp_timeout_secs: r.rtcp_timeout_secs,
            rtcp_hold_timeout_secs: r.rtcp_hold_timeout_secs,
        }),
        on_hold: r.on_hold,
        fork_of: r.fork_of.map(|(_, s)| s).unwrap_or_default(),
        // Set by the pool's relays (Relays::owned).
        owner: String::new(),
        lease_secs: 0,
    }
}

/// A session update, as the dataplane's API has it.
pub fn update_request(u: MediaUpdate) -> pb::UpdateSessionRequest {
    pb::UpdateSessionRequest {
        session_id: u.session_id,
        pool: u.pool.map(|r| leg_spec(r, &u.srtp[0])),
        gateway: u.gateway.map(|r| leg_spec(r, &u.srtp[1])),
        on_hold: u.on_hold,
        options: u.options.map(|o| pb::SessionOptions {
            latching: o.latching,
            strict_source: true,
            rtcp_mux: o.rtcp_mux,
            clock_rate: 0,
            media_timeout_secs: o.media_timeout_secs,
            hold_timeout_secs: o.hold_timeout_secs,
            rtcp_timeout_secs: o.rtcp_timeout_secs,
            rtcp_hold_timeout_secs: o.rtcp_hold_timeout_secs,
        }),
    }
}

/// Where the relay receives on one side, from its answer (`None` if it named no usable address).
fn anchor(leg: Option<&pb::Leg>) -> Option<Anchor> {
    let l = leg?;
    Some(Anchor {
        addr: l.local_address.parse().ok()?,
        rtp_port: u16::try_from(l.local_rtp_port).ok()?,
        rtcp_port: u16::try_from(l.local_rtcp_port).ok()?,
    })
}

/// A relay's session, as the engine takes it.
pub fn media_answer(s: &pb::Session) -> MediaAnswer {
    MediaAnswer {
        session_id: s.session_id.clone(),
        pool: anchor(s.pool.as_ref()),
        gateway: anchor(s.gateway.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> std::net::SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn a_create_request_carries_what_the_engine_knows_and_nothing_more() {
        let r = create_request(MediaRequest {
            session_id: "m1-7-0".into(),
            pool: Remote {
                rtp: Some(sa("198.18.1.2:6000")),
                rtcp: Some(sa("198.18.1.2:6001")),
            },
            gateway: Remote::default(),
            latching: true,
            strict_source: true,
            rtcp_mux: false,
            media_timeout_secs: 30,
            hold_timeout_secs: 3600,
            rtcp_timeout_secs: 30,
            rtcp_hold_timeout_secs: 0,
            on_hold: true,
            srtp: [None, None],
            fork_of: Some(("127.0.0.1:7400".into(), "m1-7-0-parent".into())),
        });
        assert_eq!(r.session_id, "m1-7-0");
        assert_eq!(
            r.fork_of, "m1-7-0-parent",
            "the relay is where it goes, not what it says"
        );
        let pool = r.pool.expect("pool leg");
        assert_eq!(pool.local_address, "", "the relay picks its own address");
        assert_eq!(pool.remote_rtp, Some(sa("198.18.1.2:6000").into()));
        assert_eq!(pool.remote_rtcp, Some(sa("198.18.1.2:6001").into()));
        let gw = r.gateway.expect("an empty gateway leg, not a missing one");
        assert_eq!((gw.remote_rtp, gw.remote_rtcp), (None, None));
        let o = r.options.expect("options");
        assert!(o.latching && o.strict_source && !o.rtcp_mux);
        assert_eq!(o.clock_rate, 0, "the relay's default");
        assert_eq!((o.media_timeout_secs, o.hold_timeout_secs), (30, 3600));
        assert_eq!((o.rtcp_timeout_secs, o.rtcp_hold_timeout_secs), (30, 0));
        assert!(r.on_hold);
    }

    #[test]
    fn an_update_sets_only_what_it_names() {
        let u = update_request(MediaUpdate {
            session_id: "s".into(),
            pool: None,
            gateway: Some(Remote {
                rtp: Some(sa("[2001:2::2]:7000")),
                rtcp: None,
            }),
            on_hold: Some(false),
            srtp: Default::default(),
            options: None,
        });
        assert!(u.pool.is_none(), "an unset side stays unchanged");
        assert!(u.options.is_none(), "unset options stay as they are");
        let gw = u.gateway.expect("gateway");
        assert_eq!(
            gw.remote_rtp,
            Some(pb::Endpoint {
                address: "2001:2::2".into(),
                port: 7000
            })
        );
        assert_eq!(gw.remote_rtcp, None);
        assert_eq!(u.on_hold, Some(false));
    }

    /// Keys go to the side they belong to, with their MKIs; `Off` and `Keep` send no key.
    #[test]
    fn srtp_keys_map_to_their_side_and_off_is_explicit() {
        use mediator_b2bua::media::{MasterKey, Suite};
        let suite = Suite::AesCm128HmacSha1_80;
        let k = SrtpKeys {
            suite,
            peer: MasterKey::generate(suite).expect("key"),
            peer_mki: Some(Mki { value: 1, len: 1 }),
            relay: MasterKey::generate(suite).expect("key"),
            relay_mki: None,
            peer_pending: false,
        };
        let r = create_request(MediaRequest {
            session_id: "s".into(),
            pool: Remote::default(),
            gateway: Remote::default(),
            latching: false,
            strict_source: true,
            rtcp_mux: false,
            media_timeout_secs: 0,
            hold_timeout_secs: 0,
            rtcp_timeout_secs: 0,
            rtcp_hold_timeout_secs: 0,
            on_hold: false,
            srtp: [Some(k.clone()), None],
            fork_of: None,
        });
        let pool = r.pool.expect("pool").srtp.expect("pool keys");
        assert_eq!(pool.suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(pool.peer_key, k.peer.bytes());
        assert_eq!((pool.peer_mki_length, pool.peer_mki), (1, 1));
        assert_eq!(pool.relay_key, k.relay.bytes());
        assert_eq!((pool.relay_mki_length, pool.relay_mki), (0, 0));
        assert!(r.gateway.expect("gateway").srtp.is_none());
        let u = update_request(MediaUpdate {
            session_id: "s".into(),
            pool: Some(Remote::default()),
            gateway: Some(Remote::default()),
            on_hold: None,
            srtp: [SrtpChange::Off, SrtpChange::Keep],
            options: Some(mediator_b2bua::media::MediaOptions {
                latching: true,
                rtcp_mux: false,
                media_timeout_secs: 0,
                hold_timeout_secs: 0,
                rtcp_timeout_secs: 30,
                rtcp_hold_timeout_secs: 0,
            }),
        });
        let o = u.options.expect("options");
        assert!(o.latching && o.strict_source && o.rtcp_timeout_secs == 30);
        assert_eq!(o.clock_rate, 0, "the session's own");
        let (p, g) = (u.pool.expect("pool"), u.gateway.expect("gateway"));
        assert!(p.srtp_off && p.srtp.is_none());
        assert!(!g.srtp_off && g.srtp.is_none());
    }

    #[test]
    fn an_answer_anchors_only_usable_addresses() {
        let leg = |addr: &str, rtp: u32, rtcp: u32| pb::Leg {
            local_address: addr.into(),
            local_rtp_port: rtp,
            local_rtcp_port: rtcp,
            ..Default::default()
        };
        let a = media_answer(&pb::Session {
            session_id: "s".into(),
            pool: Some(leg("198.18.1.1", 30000, 30001)),
            gateway: Some(leg("not an address", 30002, 30003)),
            ..Default::default()
        });
        assert_eq!(a.session_id, "s");
        assert_eq!(
            a.pool,
            Some(Anchor {
                addr: "198.18.1.1".parse().expect("ip"),
                rtp_port: 30000,
                rtcp_port: 30001
            })
        );
        assert_eq!(a.gateway, None, "a bad address anchors nothing");
        let a = media_answer(&pb::Session {
            pool: Some(leg("198.18.1.1", 70000, 30001)),
            ..Default::default()
        });
        assert_eq!(a.pool, None, "a port over 65535 anchors nothing");
        assert_eq!(a.gateway, None, "a missing leg anchors nothing");
    }
}

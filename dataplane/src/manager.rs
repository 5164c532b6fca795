//! Session management: allocation of ports and statistics slots, the relay tasks, offload to the
//! fast path and withdrawal from it, media timeouts, persistence and re-adoption after a restart.
//!
//! Lock order: `inner` before a session's `media`; relay tasks take only `media`. Offload entries
//! are installed and removed under the session's `media` lock, so a deleted session can never get
//! an entry back.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::abi::{StreamEntry, StreamKey};
use crate::config::Config;
use crate::forwarder::Forwarder;
use crate::host::{self, HostAddrs};
use crate::relay::{self, Notice, SessionShared};
use crate::session::{Kind, Leg, Media, Options, Remote, Side, StreamId, StreamState};
use crate::srtp::{InboundContext, MasterKey, Mki, OutboundContext, Suite};
use crate::srtp_stream::{SrtpCounters, StreamCrypto};
use crate::stats::{self, Merged, monotonic_ns};
use crate::store::{Record, Store};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("session '{0}' not found")]
    NotFound(String),
    #[error("session '{0}' already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Exhausted(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Internal(String),
}

pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SessionError {
    SessionError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One side of a session as asked for.
#[derive(Clone, Debug, Default)]
pub struct LegRequest {
    pub local: Option<IpAddr>,
    pub remote: Remote,
    /// SRTP on this side (on update: unset leaves it as it is).
    pub srtp: Option<Arc<LegSrtp>>,
    /// On update: this side turns to plain RTP.
    pub srtp_off: bool,
}

/// One side's SRTP keys: what its peer protects with, and what the relay protects with toward
/// it. Held only in memory; `Debug` shows no key bytes.
#[derive(Debug)]
pub struct LegSrtp {
    pub peer: MasterKey,
    pub peer_mki: Option<Mki>,
    pub relay: MasterKey,
    pub relay_mki: Option<Mki>,
    /// `peer` stands in for a key not known yet: its failures are not the peer's.
    pub peer_pending: bool,
}

impl LegSrtp {
    pub fn suite(&self) -> Suite {
        self.relay.suite()
    }
}

/// Refuses keys that would reuse a keystream: a leg whose relay key is its peer's key (an SDES
/// peer echoing the offered key), or one relay key on both legs.
fn check_keys(keys: &[Option<Arc<LegSrtp>>; 2]) -> Result<(), SessionError> {
    for (side, k) in Side::BOTH.into_iter().zip(keys) {
        if let Some(k) = k
            && k.relay.same_as(&k.peer)
        {
            return Err(invalid(
                format!("{}.srtp.relay_key", side.name()),
                "must differ from peer_key: one key in both directions reuses its keystream",
            ));
        }
    }
    if let [Some(a), Some(b)] = keys
        && a.relay.same_as(&b.relay)
    {
        return Err(invalid(
            "gateway.srtp.relay_key",
            "must differ from pool.srtp.relay_key",
        ));
    }
    Ok(())
}

/// Each stream's SRTP work from the sides' keys: a stream arriving from side S is decrypted with
/// S's peer key and encrypted with the other side's relay key.
fn stream_crypto(keys: &[Option<Arc<LegSrtp>>; 2]) -> Result<[StreamCrypto; 4], SessionError> {
    let mut out: [StreamCrypto; 4] = Default::default();
    for from in Side::BOTH {
        for kind in [Kind::Rtp, Kind::Rtcp] {
            let id = StreamId { from, kind };
            let field = |side: Side| format!("{}.srtp", side.name());
            let inbound = match &keys[from as usize] {
                Some(k) => Some(
                    InboundContext::new(&k.peer, k.peer_mki)
                        .map_err(|e| SessionError::Internal(format!("{}: {e}", field(from))))?,
                ),
                None => None,
            };
            let to = from.other();
            let outbound = match &keys[to as usize] {
                Some(k) => Some(
                    OutboundContext::new(&k.relay, k.relay_mki)
                        .map_err(|e| SessionError::Internal(format!("{}: {e}", field(to))))?,
                ),
                None => None,
            };
            out[id.index()] = StreamCrypto::new(inbound, outbound);
            out[id.index()].inbound_pending =
                keys[from as usize].as_ref().is_some_and(|k| k.peer_pending);
        }
    }
    Ok(out)
}

#[derive(Clone, Debug)]
pub struct CreateSpec {
    pub id: String,
    pub pool: LegRequest,
    pub gateway: LegRequest,
    pub options: Options,
    pub on_hold: bool,
    /// An early dialog of a forked INVITE: the session whose gateway-side ports it shares.
    pub fork_of: Option<String>,
    /// Who owns the session, and the lease it asks for (see [`Dataplane::renew_lease`]).
    pub owner: Option<String>,
    pub lease: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct UpdateSpec {
    pub id: String,
    pub pool: Option<LegRequest>,
    pub gateway: Option<LegRequest>,
    pub on_hold: Option<bool>,
    /// New options; `rtcp_mux` must be the session's, a `clock_rate` of 0 keeps its own.
    pub options: Option<Options>,
}

#[derive(Clone, Debug)]
pub enum EventKind {
    MediaTimeout {
        on_hold: bool,
        idle_ms: u64,
    },
    /// No RTCP either way for the rtcp timeout after RTCP had been seen.
    RtcpTimeout {
        on_hold: bool,
        idle_ms: u64,
    },
    Offloaded {
        kind: Kind,
    },
    Withdrawn {
        kind: Kind,
        reason: String,
    },
    /// The session was deleted: its owner's lease lapsed.
    LeaseExpired {
        owner: String,
    },
}

#[derive(Clone, Debug)]
pub struct Event {
    pub sequence: u64,
    pub unix_ms: u64,
    pub session_id: String,
    pub kind: EventKind,
}

#[derive(Clone, Debug)]
pub struct StreamView {
    pub id: StreamId,
    pub offloaded: bool,
    pub reason: String,
    pub expected_source: Option<SocketAddr>,
    pub forward_to: Option<SocketAddr>,
    pub latched: bool,
    pub merged: Merged,
    pub xdp_packets: u64,
    pub xdp_bytes: u64,
    pub userspace_packets: u64,
    pub userspace_bytes: u64,
    pub dropped: u64,
    /// Packets SRTP termination dropped, by cause.
    pub srtp: SrtpCounters,
    pub socket_overflow: u64,
    pub idle_ms: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct SessionView {
    pub id: String,
    pub legs: [Leg; 2],
    /// The SRTP suite on each side (None: plain RTP).
    pub srtp: [Option<String>; 2],
    pub options: Options,
    pub on_hold: bool,
    pub created_unix_ms: u64,
    pub streams: Vec<StreamView>,
    /// The session whose gateway-side ports this fork shares.
    pub fork_of: Option<String>,
    /// Forks sharing this session's gateway-side ports.
    pub forks: usize,
    pub owner: Option<String>,
}

impl SessionView {
    /// The session's RTP path: XDP only when both RTP directions are offloaded.
    pub fn rtp_path(&self) -> (bool, String) {
        let rtp: Vec<&StreamView> = self
            .streams
            .iter()
            .filter(|s| s.id.kind == Kind::Rtp)
            .collect();
        if rtp.iter().all(|s| s.offloaded) {
            (true, "offloaded".into())
        } else {
            let reason = rtp
                .iter()
                .find(|s| !s.offloaded)
                .map(|s| s.reason.clone())
                .unwrap_or_default();
            (false, reason)
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub xdp_packets: u64,
    pub xdp_bytes: u64,
    pub user_packets: u64,
    pub user_bytes: u64,
    pub src_mismatch: u64,
    pub dropped: u64,
    pub socket_overflow: u64,
    /// SRTP termination's drops (authentication, replay, MKI, other), summed over streams.
    pub srtp: crate::srtp_stream::SrtpCounters,
}

impl Totals {
    fn add(&mut self, s: &StreamView) {
        self.xdp_packets += s.xdp_packets;
        self.xdp_bytes += s.xdp_bytes;
        self.user_packets += s.userspace_packets;
        self.user_bytes += s.userspace_bytes;
        self.src_mismatch += s.merged.src_mismatch;
        self.dropped += s.dropped;
        self.socket_overflow += s.socket_overflow;
        self.srtp.auth_failures += s.srtp.auth_failures;
        self.srtp.replays += s.srtp.replays;
        self.srtp.bad_mki += s.srtp.bad_mki;
        self.srtp.other += s.srtp.other;
    }
}

/// How often the userspace relay's per-stream counters (packets, bytes, mismatches, RTP
/// receiver state, drops) are written to the session records: what a crash of the dataplane can
/// lose of them. The XDP path's live in the pinned statistics map and lose nothing.
pub const COUNTERS_FLUSH: Duration = Duration::from_secs(5);

/// Hands out indexes from a fixed range, round-robin so a freed one is reused last.
#[derive(Debug)]
struct IndexPool {
    used: Vec<bool>,
    free: usize,
    cursor: usize,
}

impl IndexPool {
    fn new(n: usize) -> Self {
        Self {
            used: vec![false; n],
            free: n,
            cursor: 0,
        }
    }
    fn alloc(&mut self, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        let n = self.used.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if !self.used[i] && accept(i) {
                self.used[i] = true;
                self.free -= 1;
                self.cursor = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }
    fn reserve(&mut self, i: usize) -> bool {
        match self.used.get_mut(i) {
            Some(u) if !*u => {
                *u = true;
                self.free -= 1;
                true
            }
            _ => false,
        }
    }
    fn release(&mut self, i: usize) {
        if let Some(u) = self.used.get_mut(i)
            && *u
        {
            *u = false;
            self.free += 1;
        }
    }
}

struct Entry {
    shared: Arc<SessionShared>,
    tasks: Vec<JoinHandle<()>>,
    /// Every socket of the session, including an rtcp-mux session's idle RTCP ones, so their
    /// ports stay held for as long as the session lives.
    sockets: Vec<Arc<UdpSocket>>,
    created_mono_ns: u64,
    timed_out: bool,
    /// When the session could next time out, for the timeout it was last checked with: until
    /// then its kernel counters need no reading (a syscall per stream).
    next_check: Option<(u64, u32)>,
    /// The same for RTCP (its own silence, its own event).
    rtcp_timed_out: bool,
    rtcp_next_check: Option<(u64, u32)>,
    /// RTCP is watched from then on (creation, or the last update: a new endpoint must send
    /// RTCP of its own before its silence counts).
    rtcp_since: u64,
}

struct Inner {
    sessions: BTreeMap<String, Entry>,
    /// Sessions whose teardown is under way: their id cannot be reused until it ends.
    deleting: std::collections::HashSet<String>,
    pairs: IndexPool,
    slots: IndexPool,
    retired: Totals,
    /// When each owner's lease lapses (monotonic ns).
    leases: HashMap<String, u64>,
}

pub struct Dataplane {
    cfg: Config,
    forwarder: Arc<dyn Forwarder>,
    relay: tokio::runtime::Handle,
    store: Store,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    sequence: AtomicU64,
    notify: mpsc::UnboundedSender<Notice>,
    host: HostAddrs,
    /// Sessions deleted because their owner's lease lapsed, since start.
    lease_expired: AtomicU64,
    /// Media and RTCP timeout events raised since start.
    timeouts: [AtomicU64; 2],
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock_err<T>(_: T) -> SessionError {
    SessionError::Internal("internal lock poisoned".into())
}

/// The lease a relay gives each owner of re-adopted sessions after a restart: time for the owner
/// to renew it before its sessions go.
pub const READOPTED_LEASE: Duration = Duration::from_secs(120);

/// An owner is named like a session id (1-128 of A-Z a-z 0-9 . _ : @ -).
fn validate_owner(owner: &str) -> Result<(), SessionError> {
    validate_id(owner).map_err(|e| match e {
        SessionError::Invalid { reason, .. } => invalid("owner", reason),
        other => other,
    })
}

fn validate_lease(field: &str, lease: Duration) -> Result<(), SessionError> {
    let secs = lease.as_secs();
    if !(5..=86_400).contains(&secs) || lease.subsec_nanos() != 0 {
        return Err(invalid(field, format!("{secs} is outside 5-86400 seconds")));
    }
    Ok(())
}

pub fn validate_id(id: &str) -> Result<(), SessionError> {
    if id.is_empty() || id.len() > 128 {
        return Err(invalid("session_id", "must be 1-128 characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._:@-".contains(*c)))
    {
        return Err(invalid(
            "session_id",
            format!("character '{c}' is not allowed (use A-Z a-z 0-9 . _ : @ -)"),
        ));
    }
    if id.starts_with('.') {
        return Err(invalid("session_id", "must not start with '.'"));
    }
    Ok(())
}

impl Dataplane {
    /// Builds the manager, re-adopting the sessions recorded by an earlier run. Returns the
    /// receiver the caller must drive with [`Dataplane::run_notices`].
    pub fn new(
        cfg: Config,
        forwarder: Arc<dyn Forwarder>,
        relay: tokio::runtime::Handle,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Notice>), SessionError> {
        let store = Store::open(&cfg.state_dir).map_err(|e| {
            SessionError::Internal(format!("state dir {}: {e}", cfg.state_dir.display()))
        })?;
        let (notify, notices) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        let slots = forwarder.capacity().min(cfg.max_streams) as usize;
        let dp = Arc::new(Self {
            inner: Mutex::new(Inner {
                sessions: BTreeMap::new(),
                deleting: Default::default(),
                pairs: IndexPool::new(cfg.port_pairs() as usize),
                slots: IndexPool::new(slots),
                retired: Totals::default(),
                leases: HashMap::new(),
            }),
            cfg,
            forwarder,
            relay,
            store,
            events,
            sequence: AtomicU64::new(0),
            notify,
            host: HostAddrs::default(),
            lease_expired: AtomicU64::new(0),
            timeouts: Default::default(),
        });
        dp.readopt();
        Ok((dp, notices))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Media (`[0]`) and RTCP (`[1]`) timeout events raised since start.
    pub fn timeouts_raised(&self) -> [u64; 2] {
        self.timeouts.each_ref().map(|t| t.load(Ordering::Relaxed))
    }

    fn emit(&self, session_id: &str, kind: EventKind) {
        match kind {
            EventKind::MediaTimeout { .. } => self.timeouts[0].fetch_add(1, Ordering::Relaxed),
            EventKind::RtcpTimeout { .. } => self.timeouts[1].fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(session = session_id, event = ?kind, "session event");
        let _ = self.events.send(Event {
            sequence,
            unix_ms: unix_ms(),
            session_id: session_id.into(),
            kind,
        });
    }

    fn port_of_pair(&self, pair: usize) -> u16 {
        self.cfg.port_min + (pair as u16) * 2
    }

    fn pair_of_port(&self, port: u16) -> Option<usize> {
        let off = port.checked_sub(self.cfg.port_min)?;
        (off % 2 == 0).then_some(usize::from(off / 2))
    }

    pub fn free_ports(&self) -> u32 {
        self.inner.lock().map_or(0, |i| i.pairs.free as u32 * 2)
    }

    pub fn max_sessions(&self) -> u32 {
        self.inner.lock().map_or(0, |i| {
            (i.pairs.used.len() / 2).min(i.slots.used.len() / 4) as u32
        })
    }

    pub fn session_count(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.sessions.len())
    }

    /// The local address of a side: the one asked for (which must be configured), else the first
    /// configured one of the remote's family.
    fn pick_local(&self, side: Side, req: &LegRequest) -> Result<IpAddr, SessionError> {
        let field = format!("{}.local_address", side.name());
        let configured = self.cfg.addresses(side);
        let remote_v4 = req.remote.rtp.or(req.remote.rtcp).map(|a| a.is_ipv4());
        let local = match req.local {
            Some(ip) if !configured.contains(&ip) => {
                return Err(invalid(
                    field,
                    format!("{ip} is not a media address of the {} side", side.name()),
                ));
            }
            Some(ip) => ip,
            None => match remote_v4 {
                Some(v4) => *configured
                    .iter()
                    .find(|a| a.is_ipv4() == v4)
                    .ok_or_else(|| {
                        invalid(
                            format!("{}.remote_rtp", side.name()),
                            format!(
                                "no IPv{} media address is configured on the {} side",
                                if v4 { 4 } else { 6 },
                                side.name()
                            ),
                        )
                    })?,
                None => configured[0],
            },
        };
        for (name, a) in [
            ("remote_rtp", req.remote.rtp),
            ("remote_rtcp", req.remote.rtcp),
        ] {
            self.check_remote(format!("{}.{name}", side.name()), a, local)?;
            if let Some(a) = a
                && a.is_ipv4() != local.is_ipv4()
            {
                return Err(invalid(
                    format!("{}.{name}", side.name()),
                    format!("{a} is not of the family of local address {local}"),
                ));
            }
        }
        Ok(local)
    }

    /// A remote must not be one of this relay's own media sockets (one packet would loop
    /// forever), nor loopback or another address of this host ([`host::refuse_remote`]).
    fn check_remote(
        &self,
        field: String,
        remote: Option<SocketAddr>,
        local: IpAddr,
    ) -> Result<(), SessionError> {
        let Some(a) = remote else { return Ok(()) };
        if let Some(why) = host::refuse_remote(a.ip(), local, |ip| self.host.contains(ip)) {
            return Err(invalid(field, why));
        }
        let ours = self.cfg.pool_addresses.contains(&a.ip())
            || self.cfg.gateway_addresses.contains(&a.ip());
        if ours && (self.cfg.port_min..=self.cfg.port_max).contains(&a.port()) {
            return Err(invalid(
                field,
                format!("{a} is one of this relay's own media sockets"),
            ));
        }
        Ok(())
    }

    fn validate_options(o: &Options) -> Result<(), SessionError> {
        if o.clock_rate == 0 || o.clock_rate > 1_000_000 {
            return Err(invalid(
                "options.clock_rate",
                format!("{} Hz is outside 1..=1000000", o.clock_rate),
            ));
        }
        for (field, v) in [
            ("options.rtcp_timeout_secs", o.rtcp_timeout_secs),
            ("options.rtcp_hold_timeout_secs", o.rtcp_hold_timeout_secs),
        ] {
            if v > 86_400 {
                return Err(invalid(field, format!("{v} s is over 86400")));
            }
        }
        if o.hold_timeout_secs < o.media_timeout_secs {
            return Err(invalid(
                "options.hold_timeout_secs",
                format!(
                    "{} s is shorter than media_timeout_secs ({} s)",
                    o.hold_timeout_secs, o.media_timeout_secs
                ),
            ));
        }
        Ok(())
    }

    /// Binds the RTP and RTCP sockets of one side on a free pair; returns the pair and sockets.
    fn bind_pair(
        &self,
        inner: &mut Inner,
        local: IpAddr,
    ) -> Result<(usize, std::net::UdpSocket, std::net::UdpSocket), SessionError> {
        let mut bound = None;
        let mut last_err = None;
        let pair = inner.pairs.alloc(|pair| {
            let port = self.cfg.port_min + (pair as u16) * 2;
            let pair_sockets = relay::bind(SocketAddr::new(local, port)).and_then(|rtp| {
                relay::bind(SocketAddr::new(local, port + 1)).map(|rtcp| (rtp, rtcp))
            });
            match pair_sockets {
                Ok(s) => {
                    bound = Some(s);
                    true
                }
                Err(e) => {
                    last_err = Some(e);
                    false
                }
            }
        });
        match (pair, bound) {
            (Some(p), Some((rtp, rtcp))) => Ok((p, rtp, rtcp)),
            _ => Err(SessionError::Exhausted(format!(
                "no free RTP/RTCP port pair on {local} in {}-{}{}",
                self.cfg.port_min,
                self.cfg.port_max,
                last_err
                    .map(|e| format!(" (last bind error: {e})"))
                    .unwrap_or_default()
            ))),
        }
    }

    pub fn create(&self, spec: CreateSpec) -> Result<SessionView, SessionError> {
        validate_id(&spec.id)?;
        Self::validate_options(&spec.options)?;
        if let Some(owner) = &spec.owner {
            validate_owner(owner)?;
            validate_lease("lease_secs", spec.lease)?;
        }
        for (side, leg) in [(Side::Pool, &spec.pool), (Side::Gateway, &spec.gateway)] {
            if leg.srtp_off {
                return Err(invalid(
                    format!("{}.srtp_off", side.name()),
                    "is for updates only (a side without srtp is plain)",
                ));
            }
        }
        let keys = [spec.pool.srtp.clone(), spec.gateway.srtp.clone()];
        check_keys(&keys)?;
        let crypto = stream_crypto(&keys)?;
        if let Some(parent) = spec.fork_of.clone() {
            return self.create_fork(spec, &parent, keys, crypto);
        }
        let locals = [
            self.pick_local(Side::Pool, &spec.pool)?,
            self.pick_local(Side::Gateway, &spec.gateway)?,
        ];
        let shared;
        {
            let mut inner = self.inner.lock().map_err(lock_err)?;
            if inner.sessions.contains_key(&spec.id) {
                return Err(SessionError::AlreadyExists(spec.id));
            }
            if inner.deleting.contains(&spec.id) {
                return Err(SessionError::Busy(format!(
                    "session '{}' is being deleted; retry",
                    spec.id
                )));
            }
            if inner.slots.free < 4 {
                return Err(SessionError::Exhausted(format!(
                    "all {} stream slots are in use (max_streams)",
                    inner.slots.used.len()
                )));
            }
            // Allocate everything first; on any failure give back what was taken.
            let (p0, rtp0, rtcp0) = self.bind_pair(&mut inner, locals[0])?;
            let (p1, rtp1, rtcp1) = match self.bind_pair(&mut inner, locals[1]) {
                Ok(x) => x,
                Err(e) => {
                    inner.pairs.release(p0);
                    return Err(e);
                }
            };
            let mut slots = [0u32; 4];
            for s in &mut slots {
                *s = inner.slots.alloc(|_| true).unwrap_or(0) as u32; // free >= 4 checked above
            }
            let mut streams: [StreamState; 4] = Default::default();
            for (st, slot) in streams.iter_mut().zip(slots) {
                st.stats_slot = slot;
                st.path_reason = "starting".into();
                let _ = self.forwarder.reset_stats(slot);
            }
            let media = Media {
                legs: [
                    Leg {
                        local: locals[0],
                        rtp_port: self.port_of_pair(p0),
                        remote: spec.pool.remote,
                    },
                    Leg {
                        local: locals[1],
                        rtp_port: self.port_of_pair(p1),
                        remote: spec.gateway.remote,
                    },
                ],
                streams,
                options: spec.options,
                on_hold: spec.on_hold,
                srtp: keys
                    .each_ref()
                    .map(|k| k.as_ref().map(|k| k.suite().name().to_string())),
                fork_of: None,
                forks: 0,
                owner: spec.owner.clone(),
            };
            let rec = Record {
                id: spec.id.clone(),
                created_unix_ms: unix_ms(),
                media: media.clone(),
            };
            let started = self.start_session(&rec, [[rtp0, rtcp0], [rtp1, rtcp1]], keys, crypto);
            let persisted = started.and_then(|entry| match self.store.save(&rec) {
                Ok(()) => Ok(entry),
                Err(e) => {
                    // Dropping a JoinHandle would detach the tasks, still relaying on ports
                    // about to be handed out again: stop them.
                    entry.tasks.iter().for_each(JoinHandle::abort);
                    Err(SessionError::Internal(format!(
                        "saving the session record: {e}"
                    )))
                }
            });
            let entry = match persisted {
                Ok(entry) => entry,
                Err(e) => {
                    inner.pairs.release(p0);
                    inner.pairs.release(p1);
                    for s in slots {
                        inner.slots.release(s as usize);
                    }
                    return Err(e);
                }
            };
            shared = entry.shared.clone();
            inner.sessions.insert(spec.id.clone(), entry);
        }
        if let Some(owner) = &spec.owner {
            self.extend_lease(owner, spec.lease);
        }
        self.evaluate(&shared);
        self.get(&spec.id)
    }

    /// Extends `owner`'s lease to at least now + `lease`.
    fn extend_lease(&self, owner: &str, lease: Duration) {
        let until = monotonic_ns().saturating_add(lease.as_nanos() as u64);
        if let Ok(mut inner) = self.inner.lock() {
            let at = inner.leases.entry(owner.to_string()).or_insert(until);
            *at = (*at).max(until);
        }
    }

    /// Renews `owner`'s lease: it runs until now + `lease` (shorter or longer than before).
    /// Returns how many sessions the owner has here.
    pub fn renew_lease(&self, owner: &str, lease: Duration) -> Result<usize, SessionError> {
        validate_owner(owner)?;
        validate_lease("lease_secs", lease)?;
        let until = monotonic_ns().saturating_add(lease.as_nanos() as u64);
        let shared: Vec<Arc<SessionShared>> = {
            let mut inner = self.inner.lock().map_err(lock_err)?;
            inner.leases.insert(owner.to_string(), until);
            inner.sessions.values().map(|e| e.shared.clone()).collect()
        };
        Ok(shared
            .iter()
            .filter(|s| {
                s.media
                    .lock()
                    .is_ok_and(|m| m.owner.as_deref() == Some(owner))
            })
            .count())
    }

    /// Deletes every session of each owner whose lease has lapsed, with a `LeaseExpired` event
    /// each. Runs from [`Self::run_leases`]; also callable directly (tests).
    pub async fn expire_leases(self: &Arc<Self>) {
        let now = monotonic_ns();
        let (lapsed, shared): (Vec<String>, Vec<Arc<SessionShared>>) = {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            let lapsed: Vec<String> = inner
                .leases
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(o, _)| o.clone())
                .collect();
            if lapsed.is_empty() {
                return;
            }
            for o in &lapsed {
                inner.leases.remove(o);
            }
            (
                lapsed,
                inner.sessions.values().map(|e| e.shared.clone()).collect(),
            )
        };
        for s in shared {
            let owner = match s.media.lock() {
                Ok(m) => m.owner.clone(),
                Err(_) => continue,
            };
            let Some(owner) = owner.filter(|o| lapsed.contains(o)) else {
                continue;
            };
            // A fork goes with its parent; one whose parent is gone already is NotFound.
            match self.delete(&s.id, None).await {
                Ok(_) => {
                    self.lease_expired.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(session = %s.id, owner = %owner, "lease lapsed: session deleted");
                    self.emit(&s.id, EventKind::LeaseExpired { owner });
                }
                Err(SessionError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(session = %s.id, error = %e, "lease lapsed, but the session could not be deleted (retried)");
                    self.extend_lease(&owner, Duration::ZERO);
                }
            }
        }
    }

    /// Sessions deleted because their owner's lease lapsed, since start.
    pub fn lease_expired_sessions(&self) -> u64 {
        self.lease_expired.load(Ordering::Relaxed)
    }

    /// Writes the record of every session whose userspace counters moved since its last write
    /// (their digest differs) and was written [`COUNTERS_FLUSH`] ago or more, so a crash loses at
    /// most that much of them; sessions on XDP, or silent, cost nothing, and sessions created at
    /// different times are written at different ticks. Each is written under its media lock, as
    /// every other write of a record is: a deletion or an update never races it. Returns how many
    /// were written.
    pub fn flush_counters(&self) -> usize {
        let shared: Vec<Arc<SessionShared>> = match self.inner.lock() {
            Ok(i) => i.sessions.values().map(|e| e.shared.clone()).collect(),
            Err(_) => return 0,
        };
        let now = monotonic_ns();
        let every = COUNTERS_FLUSH.as_nanos() as u64;
        let mut written = 0;
        for s in shared {
            if now.saturating_sub(s.flushed_at.load(Ordering::Relaxed)) < every {
                continue;
            }
            let m = match s.media.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            let digest = m.streams.iter().fold(0u64, |a, st| {
                a.wrapping_mul(31)
                    .wrapping_add(st.user.packets)
                    .wrapping_add(st.user.src_mismatch << 20)
                    .wrapping_add(st.dropped << 40)
            });
            if digest == s.flushed.load(Ordering::Relaxed) {
                continue;
            }
            self.persist(&s, &m);
            drop(m);
            s.flushed.store(digest, Ordering::Relaxed);
            s.flushed_at.store(now, Ordering::Relaxed);
            written += 1;
        }
        written
    }

    /// [`Self::flush_counters`] every `every`. Runs until the daemon stops.
    pub async fn run_flush(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            self.flush_counters();
        }
    }

    /// Expires lapsed leases every `every`. Runs until the daemon stops.
    pub async fn run_leases(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            self.expire_leases().await;
        }
    }

    /// Creates an early dialog of a forked INVITE: pool-side ports of its own, the gateway-side
    /// ports of `parent` (which the forks' single INVITE offered), where its packets are told
    /// apart by source: those from its gateway peer's address are its own. Parent and forks stay
    /// in userspace while they share (XDP knows ports, not sources); forks are not recorded.
    fn create_fork(
        &self,
        spec: CreateSpec,
        parent: &str,
        keys: [Option<Arc<LegSrtp>>; 2],
        crypto: [StreamCrypto; 4],
    ) -> Result<SessionView, SessionError> {
        let Some(source) = spec.gateway.remote.rtp else {
            return Err(invalid(
                "gateway.remote_rtp",
                "a fork is told apart by its gateway peer's address: required",
            ));
        };
        let pool_local = self.pick_local(Side::Pool, &spec.pool)?;
        let shared;
        {
            let mut inner = self.inner.lock().map_err(lock_err)?;
            if inner.sessions.contains_key(&spec.id) {
                return Err(SessionError::AlreadyExists(spec.id));
            }
            if inner.deleting.contains(&spec.id) {
                return Err(SessionError::Busy(format!(
                    "session '{}' is being deleted; retry",
                    spec.id
                )));
            }
            let (parent_shared, gw_sockets) = match inner.sessions.get(parent) {
                Some(e) if e.sockets.len() == 4 => (
                    e.shared.clone(),
                    [e.sockets[2].clone(), e.sockets[3].clone()],
                ),
                Some(_) => {
                    return Err(invalid(
                        "fork_of",
                        format!("'{parent}' is a fork itself (forks share their parent's ports)"),
                    ));
                }
                None => return Err(invalid("fork_of", format!("no session '{parent}'"))),
            };
            let mut pm = parent_shared.media.lock().map_err(lock_err)?;
            let gw = pm.legs[1];
            if pm.options.rtcp_mux != spec.options.rtcp_mux {
                return Err(invalid(
                    "options.rtcp_mux",
                    "must be the parent's: the shared ports keep their shape",
                ));
            }
            if spec.gateway.local.is_some_and(|a| a != gw.local) {
                return Err(invalid(
                    "gateway.local_address",
                    format!("must be empty or the parent's ({})", gw.local),
                ));
            }
            if source.is_ipv4() != gw.local.is_ipv4() {
                return Err(invalid(
                    "gateway.remote_rtp",
                    format!(
                        "{source} is not of the family of local address {}",
                        gw.local
                    ),
                ));
            }
            self.check_remote("gateway.remote_rtp".into(), Some(source), gw.local)?;
            let forks = parent_shared.forks.lock().map_err(lock_err)?;
            // Told apart by what each early dialog's SDP says (the parent may have latched the
            // fork's source before the fork existed: see below).
            let taken = forks
                .iter()
                .map(|f| {
                    f.shared
                        .media
                        .lock()
                        .ok()
                        .and_then(|m| m.legs[1].remote.rtp)
                })
                .any(|s| s == Some(source));
            drop(forks);
            if taken || gw.remote.rtp == Some(source) {
                return Err(invalid(
                    "gateway.remote_rtp",
                    format!(
                        "{source} already sends to the shared port (for '{parent}' or another fork): the forks could not be told apart"
                    ),
                ));
            }
            if inner.slots.free < 4 {
                return Err(SessionError::Exhausted(format!(
                    "all {} stream slots are in use (max_streams)",
                    inner.slots.used.len()
                )));
            }
            let (p0, rtp0, rtcp0) = self.bind_pair(&mut inner, pool_local)?;
            let mut slots = [0u32; 4];
            for s in &mut slots {
                *s = inner.slots.alloc(|_| true).unwrap_or(0) as u32; // free >= 4 checked above
            }
            let mut streams: [StreamState; 4] = Default::default();
            for (st, slot) in streams.iter_mut().zip(slots) {
                st.stats_slot = slot;
                st.path_reason = "forked: early dialogs share the gateway-side ports".into();
                let _ = self.forwarder.reset_stats(slot);
            }
            let media = Media {
                legs: [
                    Leg {
                        local: pool_local,
                        rtp_port: self.port_of_pair(p0),
                        remote: spec.pool.remote,
                    },
                    Leg {
                        local: gw.local,
                        rtp_port: gw.rtp_port,
                        remote: spec.gateway.remote,
                    },
                ],
                streams,
                options: spec.options,
                on_hold: spec.on_hold,
                srtp: keys
                    .each_ref()
                    .map(|k| k.as_ref().map(|k| k.suite().name().to_string())),
                fork_of: Some(parent.to_string()),
                forks: 0,
                owner: spec.owner.clone(),
            };
            let mux = media.options.rtcp_mux;
            let wrap = |s: std::net::UdpSocket| {
                let _guard = self.relay.enter();
                UdpSocket::from_std(s)
                    .map(Arc::new)
                    .map_err(|e| SessionError::Internal(format!("socket: {e}")))
            };
            let pool = match wrap(rtp0).and_then(|r| Ok([r, wrap(rtcp0)?])) {
                Ok(p) => p,
                Err(e) => {
                    inner.pairs.release(p0);
                    slots.iter().for_each(|s| inner.slots.release(*s as usize));
                    return Err(e);
                }
            };
            shared = Arc::new(SessionShared {
                id: spec.id.clone(),
                created_unix_ms: unix_ms(),
                media: Mutex::new(media),
                deleted: AtomicBool::new(false),
                notify: self.notify.clone(),
                keys: Mutex::new(keys),
                crypto: crypto.map(Mutex::new),
                forks: Mutex::new(Vec::new()),
                has_forks: AtomicBool::new(false),
                flushed: std::sync::atomic::AtomicU64::new(0),
                flushed_at: std::sync::atomic::AtomicU64::new(0),
            });
            // What its pool-side peer sends leaves by the shared ports; what arrives there from
            // its source is the parent's relay tasks' to hand over (see relay::Fork).
            let tasks = [Kind::Rtp, Kind::Rtcp]
                .into_iter()
                .filter(|k| !(mux && *k == Kind::Rtcp))
                .map(|kind| {
                    let k = kind as usize;
                    let id = StreamId {
                        from: Side::Pool,
                        kind,
                    };
                    self.relay.spawn(relay::run_stream(
                        pool[k].clone(),
                        gw_sockets[k].clone(),
                        shared.clone(),
                        id,
                    ))
                })
                .collect();
            let tx = [
                pool[0].clone(),
                if mux {
                    pool[0].clone()
                } else {
                    pool[1].clone()
                },
            ];
            // With latching, the fork's first packets may have come before it existed and
            // latched the parent: the parent learns its own peer's source again.
            let fork_leg = Leg {
                local: gw.local,
                rtp_port: gw.rtp_port,
                remote: spec.gateway.remote,
            };
            for kind in [Kind::Rtp, Kind::Rtcp] {
                let id = StreamId {
                    from: Side::Gateway,
                    kind,
                };
                let theirs = fork_leg.remote_hint(kind, mux);
                if theirs.is_some() && pm.stream(id).learned == theirs {
                    pm.stream_mut(id).learned = None;
                }
            }
            pm.forks += 1;
            self.withdraw_all(
                &parent_shared,
                &mut pm,
                "forked: early dialogs share the gateway-side ports",
            );
            if let Ok(mut f) = parent_shared.forks.lock() {
                f.push(relay::Fork {
                    shared: shared.clone(),
                    tx,
                });
            }
            parent_shared.has_forks.store(true, Ordering::Release);
            drop(pm);
            tracing::info!(session = %spec.id, parent, %source, "fork created");
            inner.sessions.insert(
                spec.id.clone(),
                Entry {
                    shared: shared.clone(),
                    tasks,
                    sockets: pool.to_vec(),
                    created_mono_ns: monotonic_ns(),
                    timed_out: false,
                    next_check: None,
                    rtcp_timed_out: false,
                    rtcp_next_check: None,
                    rtcp_since: monotonic_ns(),
                },
            );
        }
        self.get(&shared.id)
    }

    /// Wraps bound sockets for tokio and spawns the relay tasks of a session.
    fn start_session(
        &self,
        rec: &Record,
        sockets: [[std::net::UdpSocket; 2]; 2],
        keys: [Option<Arc<LegSrtp>>; 2],
        crypto: [StreamCrypto; 4],
    ) -> Result<Entry, SessionError> {
        let _guard = self.relay.enter();
        let mut wrapped: Vec<[Arc<UdpSocket>; 2]> = Vec::new();
        for side in sockets {
            let [rtp, rtcp] = side;
            let rtp = UdpSocket::from_std(rtp)
                .map_err(|e| SessionError::Internal(format!("socket: {e}")))?;
            let rtcp = UdpSocket::from_std(rtcp)
                .map_err(|e| SessionError::Internal(format!("socket: {e}")))?;
            wrapped.push([Arc::new(rtp), Arc::new(rtcp)]);
        }
        let shared = Arc::new(SessionShared {
            id: rec.id.clone(),
            created_unix_ms: rec.created_unix_ms,
            media: Mutex::new(rec.media.clone()),
            deleted: AtomicBool::new(false),
            notify: self.notify.clone(),
            keys: Mutex::new(keys),
            crypto: crypto.map(Mutex::new),
            forks: Mutex::new(Vec::new()),
            has_forks: AtomicBool::new(false),
            flushed: std::sync::atomic::AtomicU64::new(0),
            flushed_at: std::sync::atomic::AtomicU64::new(0),
        });
        let mux = rec.media.options.rtcp_mux;
        let tasks = rec
            .media
            .active_streams()
            .map(|id| {
                let k = if mux { 0 } else { id.kind as usize };
                let rx = wrapped[id.from as usize][k].clone();
                let tx = wrapped[id.from.other() as usize][k].clone();
                // The RTCP socket of an rtcp-mux session only holds its port: no task reads it.
                self.relay
                    .spawn(relay::run_stream(rx, tx, shared.clone(), id))
            })
            .collect();
        Ok(Entry {
            shared,
            tasks,
            sockets: wrapped.into_iter().flatten().collect(),
            created_mono_ns: monotonic_ns(),
            timed_out: false,
            next_check: None,
            rtcp_timed_out: false,
            rtcp_next_check: None,
            rtcp_since: monotonic_ns(),
        })
    }

    /// Offloads every stream that is ready and withdraws every one that no longer is.
    fn evaluate(&self, shared: &SessionShared) {
        let Ok(mut m) = shared.media.lock() else {
            return;
        };
        if shared.deleted.load(Ordering::Acquire) {
            return;
        }
        let mut changed = false;
        for id in m.active_streams().collect::<Vec<_>>() {
            let local = m.leg(id.from).local;
            let remote_side = m.leg(id.from.other()).local;
            let plan = self
                .forwarder
                .can_offload(local, remote_side)
                .and_then(|()| m.offload_entry(id));
            let key = StreamKey::new(m.leg(id.from).local_addr(id.kind, m.options.rtcp_mux));
            match plan {
                Ok((key, entry)) => {
                    let st = m.stream(id);
                    if st.offloaded && st.installed == Some(entry) {
                        continue;
                    }
                    match self.forwarder.install(key, entry) {
                        Ok(()) => {
                            let was = st.offloaded;
                            let st = m.stream_mut(id);
                            st.offloaded = true;
                            st.installed = Some(entry);
                            st.path_reason = "offloaded".into();
                            changed = true;
                            if !was {
                                self.emit(&shared.id, EventKind::Offloaded { kind: id.kind });
                            }
                        }
                        Err(e) => {
                            tracing::warn!(session = %shared.id, stream = ?id, error = %e, "offload failed");
                            m.stream_mut(id).path_reason = format!("offload failed: {e}");
                        }
                    }
                }
                Err(reason) => {
                    if m.stream(id).offloaded {
                        let _ = self.forwarder.remove(&key);
                        m.stream_mut(id).offloaded = false;
                        m.stream_mut(id).installed = None;
                        changed = true;
                        self.emit(
                            &shared.id,
                            EventKind::Withdrawn {
                                kind: id.kind,
                                reason: reason.into(),
                            },
                        );
                    }
                    m.stream_mut(id).path_reason = reason.into();
                }
            }
        }
        if changed {
            self.persist(shared, &m);
        }
    }

    fn persist(&self, shared: &SessionShared, m: &Media) {
        if shared.deleted.load(Ordering::Acquire) || m.fork_of.is_some() {
            return; // its record is being removed: never write it back
        }
        let rec = Record {
            id: shared.id.clone(),
            created_unix_ms: shared.created_unix_ms,
            media: m.clone(),
        };
        if let Err(e) = self.store.save(&rec) {
            tracing::error!(session = %shared.id, error = %e, "saving the session record failed");
        }
    }

    /// Withdraws every offloaded stream of a session, with a reason.
    fn withdraw_all(&self, shared: &SessionShared, m: &mut Media, reason: &str) {
        for id in m.active_streams().collect::<Vec<_>>() {
            if m.stream(id).offloaded {
                let key = StreamKey::new(m.leg(id.from).local_addr(id.kind, m.options.rtcp_mux));
                let _ = self.forwarder.remove(&key);
                let st = m.stream_mut(id);
                st.offloaded = false;
                st.installed = None;
                st.path_reason = reason.into();
                self.emit(
                    &shared.id,
                    EventKind::Withdrawn {
                        kind: id.kind,
                        reason: reason.into(),
                    },
                );
            }
        }
    }

    pub fn update(&self, spec: UpdateSpec) -> Result<SessionView, SessionError> {
        validate_id(&spec.id)?;
        let shared = self.shared(&spec.id)?;
        if let Some(o) = spec.options {
            // A clock rate of 0 keeps the session's own.
            Self::validate_options(&Options {
                clock_rate: o.clock_rate.max(1),
                ..o
            })?;
        }
        {
            let mut m = shared.media.lock().map_err(lock_err)?;
            if let Some(o) = &spec.options
                && o.rtcp_mux != m.options.rtcp_mux
            {
                return Err(invalid(
                    "options.rtcp_mux",
                    "cannot change in an update; create a new session",
                ));
            }
            let mut new_remote = false;
            let mut remotes = [None, None];
            for (i, (side, req)) in [(Side::Pool, &spec.pool), (Side::Gateway, &spec.gateway)]
                .into_iter()
                .enumerate()
            {
                let Some(req) = req else { continue };
                let leg = *m.leg(side);
                if let Some(l) = req.local
                    && l != leg.local
                {
                    return Err(invalid(
                        format!("{}.local_address", side.name()),
                        format!(
                            "cannot change from {} to {l}; create a new session",
                            leg.local
                        ),
                    ));
                }
                for (name, a) in [
                    ("remote_rtp", req.remote.rtp),
                    ("remote_rtcp", req.remote.rtcp),
                ] {
                    self.check_remote(format!("{}.{name}", side.name()), a, leg.local)?;
                    if let Some(a) = a
                        && a.is_ipv4() != leg.local.is_ipv4()
                    {
                        return Err(invalid(
                            format!("{}.{name}", side.name()),
                            format!("{a} is not of the family of local address {}", leg.local),
                        ));
                    }
                }
                remotes[i] = Some(req.remote);
                if req.srtp.is_some() && m.srtp[i].is_none() {
                    return Err(invalid(
                        format!("{}.srtp", side.name()),
                        "cannot turn SRTP on in an update; create a new session",
                    ));
                }
            }
            // New keys (a re-INVITE's re-keying): only the contexts whose key changed are made
            // anew. A context re-made under an unchanged key would restart its rollover counter
            // and SRTCP index, reusing keystreams (AES-CM) or nonces (GCM) already sent.
            if spec
                .pool
                .as_ref()
                .is_some_and(|r| r.srtp.is_some() || r.srtp_off)
                || spec
                    .gateway
                    .as_ref()
                    .is_some_and(|r| r.srtp.is_some() || r.srtp_off)
            {
                let old = shared.keys.lock().map_err(lock_err)?.clone();
                let mut keys = old.clone();
                let (mut new_peer, mut new_relay) = ([false; 2], [false; 2]);
                let mut off = [false; 2];
                for (i, req) in [&spec.pool, &spec.gateway].into_iter().enumerate() {
                    if req.as_ref().is_some_and(|r| r.srtp_off) {
                        off[i] = keys[i].is_some();
                        keys[i] = None;
                        continue;
                    }
                    let Some(k) = req.as_ref().and_then(|r| r.srtp.clone()) else {
                        continue;
                    };
                    if let Some(o) = &old[i] {
                        new_peer[i] = !(o.peer.same_as(&k.peer) && o.peer_mki == k.peer_mki);
                        new_relay[i] = !(o.relay.same_as(&k.relay) && o.relay_mki == k.relay_mki);
                    }
                    keys[i] = Some(k);
                }
                check_keys(&keys)?;
                // Every new context first, so a failure changes nothing.
                type Fresh = (usize, Option<InboundContext>, Option<OutboundContext>, bool);
                let mut fresh: Vec<Fresh> = Vec::new();
                for from in Side::BOTH {
                    let to = from.other();
                    for kind in Kind::BOTH {
                        let id = StreamId { from, kind };
                        let inbound = match (&keys[from as usize], new_peer[from as usize]) {
                            (Some(k), true) => Some(
                                InboundContext::new(&k.peer, k.peer_mki)
                                    .map_err(|e| SessionError::Internal(e.to_string()))?,
                            ),
                            _ => None,
                        };
                        let outbound = match (&keys[to as usize], new_relay[to as usize]) {
                            (Some(k), true) => Some(
                                OutboundContext::new(&k.relay, k.relay_mki)
                                    .map_err(|e| SessionError::Internal(e.to_string()))?,
                            ),
                            _ => None,
                        };
                        let pending = keys[from as usize].as_ref().is_some_and(|k| k.peer_pending);
                        fresh.push((id.index(), inbound, outbound, pending));
                    }
                }
                // Every lock before any change: a poisoned one fails the update with nothing
                // changed (contexts swapped under keys not recorded would let a later update
                // re-make a context under an unchanged key: keystream reuse).
                let mut keys_slot = shared.keys.lock().map_err(lock_err)?;
                let mut slots = Vec::with_capacity(shared.crypto.len());
                for c in shared.crypto.iter() {
                    slots.push(c.lock().map_err(lock_err)?);
                }
                for (i, inbound, outbound, pending) in fresh {
                    let slot = &mut slots[i];
                    if inbound.is_some() {
                        slot.set_inbound(inbound);
                        slot.inbound_pending = pending;
                    }
                    if outbound.is_some() {
                        slot.set_outbound(outbound);
                    }
                }
                // A side turned plain: what its peer sends is no longer unprotected, what goes
                // to it no longer protected (the contexts, and their keys, are dropped).
                for from in Side::BOTH {
                    for kind in Kind::BOTH {
                        let slot = &mut slots[StreamId { from, kind }.index()];
                        if off[from as usize] {
                            slot.set_inbound(None);
                        }
                        if off[from.other() as usize] {
                            slot.set_outbound(None);
                        }
                    }
                }
                for (i, k) in keys.iter().enumerate() {
                    m.srtp[i] = k.as_ref().map(|k| k.suite().name().to_string());
                }
                *keys_slot = keys;
            }
            for (i, r) in remotes.into_iter().enumerate() {
                if let Some(r) = r {
                    let side = Side::BOTH[i];
                    new_remote |= m.leg(side).remote != r;
                    m.leg_mut(side).remote = r;
                }
            }
            if new_remote {
                self.withdraw_all(&shared, &mut m, "update: new endpoints");
                if m.options.latching {
                    for st in &mut m.streams {
                        st.learned = None;
                    }
                }
            }
            if let Some(mut o) = spec.options {
                if o.clock_rate == 0 {
                    o.clock_rate = m.options.clock_rate;
                }
                let relearn =
                    o.latching != m.options.latching || o.strict_source != m.options.strict_source;
                m.options = o;
                if relearn {
                    self.withdraw_all(&shared, &mut m, "update: new options");
                    for st in &mut m.streams {
                        st.learned = None;
                    }
                }
            }
            if let Some(h) = spec.on_hold {
                m.on_hold = h;
            }
            self.persist(&shared, &m);
        }
        if let Ok(mut inner) = self.inner.lock()
            && let Some(e) = inner.sessions.get_mut(&spec.id)
        {
            // A silence already reported stays reported: an update (a re-INVITE of the dead
            // call, a hold) is no sign of media, and the next event comes only after media has
            // come back and stopped again. The timeout may have changed: look again.
            e.next_check = None;
            e.rtcp_timed_out = false;
            e.rtcp_next_check = None;
            e.rtcp_since = monotonic_ns();
        }
        self.evaluate(&shared);
        self.get(&spec.id)
    }

    fn shared(&self, id: &str) -> Result<Arc<SessionShared>, SessionError> {
        let inner = self.inner.lock().map_err(lock_err)?;
        inner
            .sessions
            .get(id)
            .map(|e| e.shared.clone())
            .ok_or_else(|| SessionError::NotFound(id.into()))
    }

    /// Deletes a session. The teardown runs in its own task: a cancelled RPC cannot leave it half
    /// done (ports or slots lost, a record left behind to be re-adopted). A session with forks
    /// takes them with it, unless `hand_to` names one of them: that fork (the early dialog that
    /// answered) takes over its gateway-side ports and the others go.
    pub async fn delete(
        self: &Arc<Self>,
        id: &str,
        hand_to: Option<&str>,
    ) -> Result<SessionView, SessionError> {
        validate_id(id)?;
        let (entry, doomed) = {
            let mut inner = self.inner.lock().map_err(lock_err)?;
            let e = inner
                .sessions
                .get(id)
                .ok_or_else(|| SessionError::NotFound(id.into()))?;
            let forks: Vec<String> = e
                .shared
                .forks
                .lock()
                .map(|f| f.iter().map(|f| f.shared.id.clone()).collect())
                .unwrap_or_default();
            let mut hand_to = hand_to;
            if let Some(h) = hand_to
                && !forks.iter().any(|f| f == h)
            {
                if inner.sessions.contains_key(h) {
                    return Err(invalid(
                        "hand_ports_to",
                        format!("'{h}' is not a fork of '{id}'"),
                    ));
                }
                // The fork went meanwhile (its call ended, or a restart lost it): the session
                // is deleted all the same, never left behind with nobody to delete it.
                tracing::info!(session = %id, heir = %h, "the fork to hand the ports to is gone: deleting");
                hand_to = None;
            }
            let entry = inner.sessions.remove(id).expect("looked up above");
            inner.deleting.insert(id.to_string());
            let mut doomed = Vec::new();
            for f in forks.into_iter().filter(|f| Some(f.as_str()) != hand_to) {
                if let Some(e) = inner.sessions.remove(&f) {
                    inner.deleting.insert(f.clone());
                    doomed.push((f, e));
                }
            }
            (entry, doomed)
        };
        let dp = self.clone();
        let id = id.to_string();
        let heir = hand_to.map(str::to_string);
        tokio::spawn(async move {
            for (f, e) in doomed {
                dp.teardown(f, e, None).await;
            }
            dp.teardown(id, entry, heir).await
        })
        .await
        .map_err(|e| SessionError::Internal(format!("deleting the session: {e}")))
    }

    /// Stops a session and gives back what it holds. Its gateway-side ports go to `heir` (a
    /// fork, which then relays them itself) when there is one; a fork's are its parent's.
    async fn teardown(&self, id: String, entry: Entry, heir: Option<String>) -> SessionView {
        let (pairs, slots, parent) = {
            let mut m = match entry.shared.media.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            entry.shared.deleted.store(true, Ordering::Release);
            for sid in m.active_streams().collect::<Vec<_>>() {
                if m.stream(sid).offloaded {
                    let key =
                        StreamKey::new(m.leg(sid.from).local_addr(sid.kind, m.options.rtcp_mux));
                    let _ = self.forwarder.remove(&key);
                    m.stream_mut(sid).offloaded = false;
                    m.stream_mut(sid).installed = None;
                }
            }
            let owned = if m.fork_of.is_some() || heir.is_some() {
                1
            } else {
                2
            };
            let pairs: Vec<usize> = m.legs[..owned]
                .iter()
                .filter_map(|l| self.pair_of_port(l.rtp_port))
                .collect();
            let slots: Vec<u32> = m.streams.iter().map(|s| s.stats_slot).collect();
            (pairs, slots, m.fork_of.clone())
        };
        let view = self.view(&entry.shared);
        // The ports are free only once the tasks holding the sockets are gone.
        for t in &entry.tasks {
            t.abort();
        }
        for t in entry.tasks {
            let _ = t.await;
        }
        if let Ok(mut f) = entry.shared.forks.lock() {
            f.clear();
        }
        entry.shared.has_forks.store(false, Ordering::Release);
        if let Some(parent) = parent {
            self.unfork(&parent, &id);
        }
        let mut gateway_released = false;
        if let Some(heir) = heir
            && entry.sockets.len() == 4
            && !self.inherit(&heir, [entry.sockets[2].clone(), entry.sockets[3].clone()])
        {
            // The heir went meanwhile: the ports are nobody's.
            gateway_released = true;
        }
        drop(entry.sockets);
        drop(entry.shared);
        if let Err(e) = self.store.remove(&id) {
            tracing::error!(session = %id, error = %e, "removing the session record failed");
        }
        let mut inner = match self.inner.lock() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        };
        for p in pairs {
            inner.pairs.release(p);
        }
        if gateway_released && let Some(p) = self.pair_of_port(view.legs[1].rtp_port) {
            inner.pairs.release(p);
        }
        for s in slots {
            inner.slots.release(s as usize);
        }
        for s in &view.streams {
            inner.retired.add(s);
        }
        inner.deleting.remove(&id);
        tracing::info!(session = %id, "session deleted");
        view
    }

    /// A fork went: its parent stops handing it packets, and relays alone (and may be offloaded
    /// again) once it has no fork left.
    fn unfork(&self, parent: &str, fork: &str) {
        let Some(shared) = self.shared(parent).ok() else {
            return; // the parent is going too
        };
        let left = match shared.forks.lock() {
            Ok(mut f) => {
                f.retain(|f| f.shared.id != fork);
                f.len()
            }
            Err(_) => return,
        };
        shared.has_forks.store(left > 0, Ordering::Release);
        if let Ok(mut m) = shared.media.lock() {
            m.forks = left;
        }
        if left == 0 {
            self.evaluate(&shared);
        }
    }

    /// Fork `heir` takes over its parent's gateway-side sockets: it relays them itself from now
    /// on, is recorded, and may be offloaded. False when it is gone.
    fn inherit(&self, heir: &str, gateway: [Arc<UdpSocket>; 2]) -> bool {
        let mut inner = match self.inner.lock() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        };
        let Some(entry) = inner.sessions.get_mut(heir) else {
            return false;
        };
        let shared = entry.shared.clone();
        let Ok(mut m) = shared.media.lock() else {
            return false;
        };
        m.fork_of = None;
        let mux = m.options.rtcp_mux;
        for kind in [Kind::Rtp, Kind::Rtcp] {
            if mux && kind == Kind::Rtcp {
                continue;
            }
            let k = kind as usize;
            let id = StreamId {
                from: Side::Gateway,
                kind,
            };
            let task = self.relay.spawn(relay::run_stream(
                gateway[k].clone(),
                entry.sockets[k].clone(),
                shared.clone(),
                id,
            ));
            entry.tasks.push(task);
            m.stream_mut(id).path_reason = "answered: its fork's ports".into();
        }
        entry.sockets.extend(gateway);
        if let Err(e) = self.store.save(&Record {
            id: shared.id.clone(),
            created_unix_ms: shared.created_unix_ms,
            media: m.clone(),
        }) {
            tracing::error!(session = %heir, error = %e, "saving the session record failed");
        }
        drop(m);
        drop(inner);
        tracing::info!(session = %heir, "a fork took over its parent's gateway-side ports");
        self.evaluate(&shared);
        true
    }

    pub fn get(&self, id: &str) -> Result<SessionView, SessionError> {
        Ok(self.view(&*self.shared(id)?))
    }

    /// Sessions after `after`, in id order, at most `limit`; and the total count.
    /// A page of sessions (ids after `after`, at most `limit`), only `owner`'s when given; with
    /// whether more follow and how many there are in all.
    pub fn list(
        &self,
        after: &str,
        limit: usize,
        owner: Option<&str>,
    ) -> Result<(Vec<SessionView>, bool, usize), SessionError> {
        let owned = |s: &SessionShared| {
            owner.is_none_or(|o| s.media.lock().is_ok_and(|m| m.owner.as_deref() == Some(o)))
        };
        let (page, total) = {
            let inner = self.inner.lock().map_err(lock_err)?;
            let range = inner
                .sessions
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded));
            let page: Vec<_> = range
                .map(|(_, e)| e.shared.clone())
                .filter(|s| owned(s))
                .take(limit + 1)
                .collect();
            let total = match owner {
                None => inner.sessions.len(),
                Some(_) => inner.sessions.values().filter(|e| owned(&e.shared)).count(),
            };
            (page, total)
        };
        let more = page.len() > limit;
        Ok((
            page.into_iter()
                .take(limit)
                .map(|s| self.view(&s))
                .collect(),
            more,
            total,
        ))
    }

    fn view(&self, shared: &SessionShared) -> SessionView {
        let now = monotonic_ns();
        let m = match shared.media.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let streams = m
            .active_streams()
            .map(|id| {
                let st = m.stream(id);
                let kernel = self.forwarder.read_stats(st.stats_slot).unwrap_or_default();
                let xdp_packets = kernel.iter().fold(0u64, |a, k| a.saturating_add(k.packets));
                let xdp_bytes = kernel.iter().fold(0u64, |a, k| a.saturating_add(k.bytes));
                let merged = stats::merge(kernel.iter().chain(std::iter::once(&st.user)));
                StreamView {
                    id,
                    offloaded: st.offloaded,
                    reason: st.path_reason.clone(),
                    expected_source: m.expected_source(id),
                    forward_to: m.forward_to(id),
                    latched: st.learned.is_some(),
                    xdp_packets,
                    xdp_bytes,
                    userspace_packets: st.user.packets,
                    userspace_bytes: st.user.bytes,
                    dropped: st.dropped,
                    srtp: shared.crypto[id.index()]
                        .lock()
                        .map(|c| c.counters)
                        .unwrap_or_default(),
                    socket_overflow: u64::from(st.socket_overflow),
                    idle_ms: merged
                        .last_seen_ns
                        .map(|t| now.saturating_sub(t) / 1_000_000),
                    merged,
                }
            })
            .collect();
        SessionView {
            id: shared.id.clone(),
            legs: m.legs,
            srtp: m.srtp.clone(),
            options: m.options,
            on_hold: m.on_hold,
            created_unix_ms: shared.created_unix_ms,
            streams,
            fork_of: m.fork_of.clone(),
            forks: m.forks,
            owner: m.owner.clone(),
        }
    }

    pub fn totals(&self) -> Totals {
        let (sessions, mut totals) = match self.inner.lock() {
            Ok(i) => (
                i.sessions
                    .values()
                    .map(|e| e.shared.clone())
                    .collect::<Vec<_>>(),
                i.retired,
            ),
            Err(_) => return Totals::default(),
        };
        for s in sessions {
            for st in &self.view(&s).streams {
                totals.add(st);
            }
        }
        totals
    }

    pub fn offloaded_streams(&self) -> u32 {
        let shared: Vec<_> = match self.inner.lock() {
            Ok(i) => i.sessions.values().map(|e| e.shared.clone()).collect(),
            Err(_) => return 0,
        };
        shared
            .iter()
            .filter_map(|s| {
                s.media
                    .lock()
                    .ok()
                    .map(|m| m.streams.iter().filter(|st| st.offloaded).count() as u32)
            })
            .sum()
    }

    /// Drives relay notices (offload once latched). Runs until the daemon stops.
    pub async fn run_notices(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Notice>) {
        while let Some(Notice::Learned(id)) = rx.recv().await {
            if let Ok(shared) = self.shared(&id) {
                self.evaluate(&shared);
            }
        }
    }

    /// Raises a media-timeout event for each session idle longer than its timeout (the hold
    /// timeout while on hold), once per silence. Runs until the daemon stops.
    pub async fn run_timeouts(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            self.check_timeouts();
        }
    }

    pub fn check_timeouts(&self) {
        let now = monotonic_ns();
        type Due = Option<(u64, u32)>;
        let sessions: Vec<(String, Arc<SessionShared>, u64, Due)> = match self.inner.lock() {
            Ok(i) => i
                .sessions
                .iter()
                .map(|(k, e)| (k.clone(), e.shared.clone(), e.created_mono_ns, e.next_check))
                .collect(),
            Err(_) => return,
        };
        for (id, shared, created, next_check) in sessions {
            self.check_rtcp(&id, &shared, now);
            let (slots, user_last, on_hold, timeout) = {
                let Ok(m) = shared.media.lock() else { continue };
                let t = if m.on_hold {
                    m.options.hold_timeout_secs
                } else {
                    m.options.media_timeout_secs
                };
                let slots: Vec<u32> = m.active_streams().map(|s| m.stream(s).stats_slot).collect();
                let user = m
                    .streams
                    .iter()
                    .map(|s| s.user.last_seen_ns)
                    .max()
                    .unwrap_or(0);
                (slots, user, m.on_hold, t)
            };
            // Media seen recently enough that the session cannot have timed out yet: skip the
            // kernel counters (with thousands of sessions, reading them every second cost more
            // CPU than forwarding their packets).
            if next_check.is_some_and(|(at, with)| with == timeout && now < at) {
                continue;
            }
            let kernel_last = slots
                .iter()
                .flat_map(|&s| self.forwarder.read_stats(s).unwrap_or_default())
                .map(|k| k.last_seen_ns)
                .max()
                .unwrap_or(0);
            let last = user_last.max(kernel_last).max(created);
            let idle_ms = now.saturating_sub(last) / 1_000_000;
            let expired = idle_ms >= u64::from(timeout) * 1000;
            let fire = {
                let Ok(mut inner) = self.inner.lock() else {
                    return;
                };
                let Some(e) = inner.sessions.get_mut(&id) else {
                    continue;
                };
                let fire = expired && !e.timed_out;
                e.timed_out = expired;
                // Not expired: nothing can change that before `last + timeout`. Expired: look
                // again at every tick, to see media come back.
                e.next_check =
                    (!expired).then(|| (last + u64::from(timeout) * 1_000_000_000, timeout));
                fire
            };
            if fire {
                self.emit(&id, EventKind::MediaTimeout { on_hold, idle_ms });
            }
        }
    }

    /// The RTCP half of [`Self::check_timeouts`] for one session. Each direction is watched on
    /// its own (a peer that died while the other still sends RTCP is still a dead call), and
    /// only once it has carried RTCP since the session was created or last updated (a peer that
    /// never sends RTCP, or a new endpoint that has not yet, is not a dead call). On an rtcp-mux
    /// session, RTCP is what the RTP streams forwarded with an RTCP packet type (RFC 5761).
    fn check_rtcp(&self, id: &str, shared: &SessionShared, now: u64) {
        let (slots, user, on_hold, timeout, mux) = {
            let Ok(m) = shared.media.lock() else { return };
            let t = if m.on_hold {
                m.options.rtcp_hold_timeout_secs
            } else {
                m.options.rtcp_timeout_secs
            };
            if t == 0 {
                return;
            }
            let mux = m.options.rtcp_mux;
            let kind = if mux { Kind::Rtp } else { Kind::Rtcp };
            let rtcp = [Side::Pool, Side::Gateway].map(|from| StreamId { from, kind });
            (
                rtcp.map(|s| m.stream(s).stats_slot),
                rtcp.map(|s| {
                    let u = &m.stream(s).user;
                    if mux {
                        u.rtcp_seen_ns()
                    } else {
                        u.last_seen_ns
                    }
                }),
                m.on_hold,
                t,
                mux,
            )
        };
        let Some((since, next)) = self.inner.lock().ok().and_then(|i| {
            i.sessions
                .get(id)
                .map(|e| (e.rtcp_since, e.rtcp_next_check))
        }) else {
            return;
        };
        if next.is_some_and(|(at, with)| with == timeout && now < at) {
            return;
        }
        let timeout_ns = u64::from(timeout) * 1_000_000_000;
        // The last RTCP of each direction that has carried RTCP since `since`.
        let armed: Vec<u64> = slots
            .iter()
            .zip(user)
            .map(|(&slot, u)| {
                self.forwarder
                    .read_stats(slot)
                    .unwrap_or_default()
                    .iter()
                    .map(|k| {
                        if mux {
                            k.rtcp_seen_ns()
                        } else {
                            k.last_seen_ns
                        }
                    })
                    .max()
                    .unwrap_or(0)
                    .max(u)
            })
            // Muxed RTCP is known to the second (`rtcp_seen_ns` is its end): it arms the watch
            // only when that second began after `since`, never from RTCP before an update.
            .filter(|&last| {
                let seen_from = if mux {
                    last.saturating_sub(1_000_000_000)
                } else {
                    last
                };
                seen_from > since
            })
            .collect();
        let Some(&oldest) = armed.iter().min() else {
            // Not armed: nothing can fire before a timeout from now.
            if let Ok(mut inner) = self.inner.lock()
                && let Some(e) = inner.sessions.get_mut(id)
            {
                e.rtcp_next_check = Some((now + timeout_ns, timeout));
            }
            return;
        };
        let idle_ms = now.saturating_sub(oldest) / 1_000_000;
        let expired = idle_ms >= u64::from(timeout) * 1000;
        let fire = {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            let Some(e) = inner.sessions.get_mut(id) else {
                return;
            };
            let fire = expired && !e.rtcp_timed_out;
            e.rtcp_timed_out = expired;
            e.rtcp_next_check = (!expired).then(|| (oldest + timeout_ns, timeout));
            fire
        };
        if fire {
            self.emit(id, EventKind::RtcpTimeout { on_hold, idle_ms });
        }
    }

    /// Re-adopts one recorded session: reserves its pairs and slots, re-binds its sockets, marks
    /// the streams whose XDP entries are still installed, starts its relay tasks. On any failure
    /// everything it reserved is given back. Returns the session and the kernel keys it owns.
    fn adopt_one(
        &self,
        rec: &mut Record,
        kernel: &HashMap<StreamKey, StreamEntry>,
    ) -> Result<(Arc<SessionShared>, Vec<StreamKey>), String> {
        validate_id(&rec.id).map_err(|e| e.to_string())?;
        if rec.media.srtp.iter().any(Option::is_some) {
            return Err(
                "it used SRTP, and SRTP keys are never saved: its call must set it up again".into(),
            );
        }
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| "internal lock poisoned".to_string())?;
        let mut took_pairs = Vec::new();
        let mut took_slots = Vec::new();
        let result = (|| {
            for l in &rec.media.legs {
                let pair = self
                    .pair_of_port(l.rtp_port)
                    .ok_or(format!("port {} is outside the range", l.rtp_port))?;
                if !inner.pairs.reserve(pair) {
                    return Err(format!("port {} is taken", l.rtp_port));
                }
                took_pairs.push(pair);
            }
            for st in &rec.media.streams {
                if !inner.slots.reserve(st.stats_slot as usize) {
                    return Err(format!(
                        "stats slot {} is taken or out of range",
                        st.stats_slot
                    ));
                }
                took_slots.push(st.stats_slot as usize);
            }
            let bind = |l: &Leg| -> std::io::Result<[std::net::UdpSocket; 2]> {
                Ok([
                    relay::bind(SocketAddr::new(l.local, l.rtp_port))?,
                    relay::bind(SocketAddr::new(l.local, l.rtp_port + 1))?,
                ])
            };
            let pool =
                bind(&rec.media.legs[0]).map_err(|e| format!("re-binding its ports: {e}"))?;
            let gateway =
                bind(&rec.media.legs[1]).map_err(|e| format!("re-binding its ports: {e}"))?;
            let mux = rec.media.options.rtcp_mux;
            let mut keys = Vec::new();
            for id in StreamId::ALL {
                let key = StreamKey::new(rec.media.leg(id.from).local_addr(id.kind, mux));
                let st = rec.media.stream_mut(id);
                st.installed = kernel
                    .get(&key)
                    .copied()
                    .filter(|_| !(mux && id.kind == Kind::Rtcp));
                st.offloaded = st.installed.is_some();
                st.path_reason = if st.offloaded {
                    "offloaded".into()
                } else {
                    "re-adopted".into()
                };
                if st.offloaded {
                    keys.push(key);
                }
            }
            let entry = self
                .start_session(rec, [pool, gateway], [None, None], Default::default())
                .map_err(|e| e.to_string())?;
            Ok((entry, keys))
        })();
        match result {
            Ok((entry, keys)) => {
                let shared = entry.shared.clone();
                inner.sessions.insert(rec.id.clone(), entry);
                Ok((shared, keys))
            }
            Err(e) => {
                took_pairs.into_iter().for_each(|p| inner.pairs.release(p));
                took_slots.into_iter().for_each(|s| inner.slots.release(s));
                Err(e)
            }
        }
    }

    /// Re-adopts the sessions an earlier run recorded: re-binds their sockets, recognises the XDP
    /// entries that kept forwarding meanwhile, and removes entries that belong to no session.
    fn readopt(&self) {
        let records = self.store.load_all();
        let kernel: HashMap<StreamKey, StreamEntry> = self
            .forwarder
            .entries()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut claimed = Vec::new();
        let mut adopted = Vec::new();
        for mut rec in records {
            let result = self.adopt_one(&mut rec, &kernel);
            let result = result.map(|(shared, keys)| {
                claimed.extend(keys);
                shared
            });
            match result {
                Ok(shared) => {
                    tracing::info!(session = %rec.id, "session re-adopted");
                    adopted.push(shared);
                }
                Err(e) => {
                    tracing::warn!(session = %rec.id, error = %e, "cannot re-adopt session; dropping it");
                    let _ = self.store.remove(&rec.id);
                }
            }
        }
        for key in kernel.keys() {
            if !claimed.contains(key) {
                let _ = self.forwarder.remove(key);
            }
        }
        let owners: std::collections::HashSet<String> = adopted
            .iter()
            .filter_map(|s| s.media.lock().ok().and_then(|m| m.owner.clone()))
            .collect();
        for owner in owners {
            self.extend_lease(&owner, READOPTED_LEASE);
        }
        for shared in adopted {
            self.evaluate(&shared);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The manager against [`FakeForwarder`], unprivileged: relay sockets and peers on 127.0.0.1,
    //! a temporary state directory per test. Each test has its own block of eight ports in
    //! 61000-61143 (see [`base`]), so tests running in parallel never take each other's ports;
    //! the block is above Linux's ephemeral range (32768-60999), so no port-0 bind takes them.

    use super::*;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use crate::abi::{self, StreamStats};
    use crate::forwarder::FakeForwarder;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    /// How long to wait for a packet or an event: generous, because a loaded CI machine is slow
    /// and a passing run never waits this long.
    const WAIT: Duration = Duration::from_secs(10);

    /// The first port of test `block`'s eight.
    fn base(block: u16) -> u16 {
        61000 + block * 8
    }

    fn at(port: u16) -> SocketAddr {
        SocketAddr::new(LOCALHOST, port)
    }

    /// A state directory that is removed when the test ends, passed or not.
    struct StateDir(PathBuf);

    impl StateDir {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "mediator-manager-test-{}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            Self(p)
        }
        fn records(&self) -> Vec<Record> {
            Store::open(&self.0).expect("open the store").load_all()
        }
    }

    impl Drop for StateDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A relay range of `pairs` RTP/RTCP pairs at the start of `block`.
    fn config(block: u16, pairs: u16, state: &StateDir) -> Config {
        Config {
            port_min: base(block),
            port_max: base(block) + pairs * 2 - 1,
            state_dir: state.0.clone(),
            ..Config::default()
        }
    }

    struct Lab {
        dp: Arc<Dataplane>,
        fake: Arc<FakeForwarder>,
        events: broadcast::Receiver<Event>,
        notices: JoinHandle<()>,
    }

    impl Lab {
        /// A manager as the daemon runs it: relay tasks on this runtime, notices driven.
        fn start(cfg: Config, fake: Arc<FakeForwarder>) -> Self {
            let forwarder: Arc<dyn Forwarder> = fake.clone();
            let (dp, notices) = Dataplane::new(cfg, forwarder, tokio::runtime::Handle::current())
                .expect("start the manager");
            let events = dp.subscribe();
            let notices = tokio::spawn(dp.clone().run_notices(notices));
            Self {
                dp,
                fake,
                events,
                notices,
            }
        }

        /// Stops the manager the way a killed daemon stops: its sockets close, while its records
        /// and the fast path's entries (pinned maps, here the shared fake) stay behind.
        async fn crash(self) -> Arc<FakeForwarder> {
            self.notices.abort();
            let _ = self.notices.await;
            let entries: Vec<Entry> = {
                let mut inner = self.dp.inner.lock().expect("inner lock");
                std::mem::take(&mut inner.sessions).into_values().collect()
            };
            for e in entries {
                e.tasks.iter().for_each(JoinHandle::abort);
                for t in e.tasks {
                    let _ = t.await;
                }
            }
            self.fake
        }

        fn entries(&self) -> HashMap<StreamKey, StreamEntry> {
            self.fake.entries.lock().expect("fake lock").clone()
        }

        fn slot(&self, id: &str, stream: StreamId) -> u32 {
            let shared = self.dp.shared(id).expect("the session exists");
            let m = shared.media.lock().expect("media lock");
            m.stream(stream).stats_slot
        }

        fn free_slots(&self) -> usize {
            self.dp.inner.lock().expect("inner lock").slots.free
        }

        async fn next_event(&mut self) -> Event {
            tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("an event in time")
                .expect("the event channel is open")
        }

        /// The events already emitted (emission is synchronous with create and update).
        fn drain_events(&mut self) -> Vec<EventKind> {
            let mut out = Vec::new();
            while let Ok(e) = self.events.try_recv() {
                out.push(e.kind);
            }
            out
        }
    }

    fn options(latching: bool) -> Options {
        Options {
            latching,
            strict_source: true,
            rtcp_mux: false,
            clock_rate: 8000,
            media_timeout_secs: 60,
            hold_timeout_secs: 3600,
            rtcp_timeout_secs: 0,
            rtcp_hold_timeout_secs: 0,
        }
    }

    fn spec(
        id: &str,
        pool: Option<SocketAddr>,
        gateway: Option<SocketAddr>,
        latching: bool,
    ) -> CreateSpec {
        let leg = |rtp| LegRequest {
            srtp: None,
            srtp_off: false,
            local: None,
            remote: Remote { rtp, rtcp: None },
        };
        CreateSpec {
            id: id.into(),
            pool: leg(pool),
            gateway: leg(gateway),
            options: options(latching),
            on_hold: false,
            fork_of: None,
            owner: None,
            lease: Duration::ZERO,
        }
    }

    fn stream(v: &SessionView, from: Side, kind: Kind) -> &StreamView {
        v.streams
            .iter()
            .find(|s| s.id == StreamId { from, kind })
            .expect("the stream is in the view")
    }

    fn ports(v: &SessionView) -> [u16; 2] {
        [v.legs[0].rtp_port, v.legs[1].rtp_port]
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    async fn peer(port: u16) -> UdpSocket {
        UdpSocket::bind(at(port)).await.expect("bind a peer")
    }

    /// Sends one packet from `from` to the relay socket `to` and returns where `receiver` got it
    /// from. One packet, no retries: loopback does not lose it, and a retry could leave a
    /// duplicate queued for the next exchange.
    async fn relay(from: &UdpSocket, to: SocketAddr, receiver: &UdpSocket, seq: u16) -> SocketAddr {
        let sent = rtp(seq);
        from.send_to(&sent, to).await.expect("send");
        let mut buf = [0u8; 2048];
        let (n, src) = tokio::time::timeout(WAIT, receiver.recv_from(&mut buf))
            .await
            .expect("the relay forwarded the packet in time")
            .expect("recv");
        assert_eq!(&buf[..n], &sent[..], "relayed unchanged");
        src
    }

    /// The length of the next packet `sock` receives into `buf` (failing after [`WAIT`]).
    async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> usize {
        tokio::time::timeout(WAIT, sock.recv_from(buf))
            .await
            .expect("forwarded in time")
            .expect("recv")
            .0
    }

    /// Waits for `n` events and returns them.
    async fn events(lab: &mut Lab, n: usize) -> Vec<EventKind> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(lab.next_event().await.kind);
        }
        out
    }

    fn is_offloaded(e: &EventKind, k: Kind) -> bool {
        matches!(e, EventKind::Offloaded { kind } if *kind == k)
    }

    fn is_withdrawn(e: &EventKind, k: Kind, why: &str) -> bool {
        matches!(e, EventKind::Withdrawn { kind, reason } if *kind == k && reason == why)
    }

    #[test]
    fn index_pool_hands_out_round_robin_and_reuses_a_freed_index_last() {
        let mut p = IndexPool::new(3);
        assert_eq!(p.alloc(|_| true), Some(0));
        assert_eq!(p.alloc(|_| true), Some(1));
        p.release(0);
        assert_eq!(p.alloc(|_| true), Some(2), "the freed 0 waits its turn");
        assert_eq!(p.alloc(|_| true), Some(0));
        assert_eq!((p.alloc(|_| true), p.free), (None, 0));
        p.release(1);
        p.release(1);
        assert_eq!(p.free, 1, "a double release frees once");
        assert_eq!(p.alloc(|i| i != 1), None, "a refused index stays free");
        assert_eq!(p.free, 1);
        assert!(p.reserve(1));
        assert!(!p.reserve(1), "reserved twice");
        assert!(!p.reserve(3), "out of range");
        assert_eq!(p.free, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_allocates_ports_from_the_range_and_saves_a_record() {
        let state = StateDir::new("create");
        let b = base(0);
        let lab = Lab::start(config(0, 2, &state), Arc::default());
        assert_eq!((lab.dp.free_ports(), lab.dp.max_sessions()), (4, 1));

        let v = lab
            .dp
            .create(spec("c1", Some(at(b + 4)), Some(at(b + 5)), true))
            .expect("create");

        let mut got = ports(&v);
        got.sort_unstable();
        assert_eq!(
            got,
            [b, b + 2],
            "one RTP/RTCP pair per side, from the range"
        );
        assert!(v.legs.iter().all(|l| l.local == LOCALHOST));
        assert_eq!(v.legs[0].remote.rtp, Some(at(b + 4)));
        assert_eq!(v.legs[1].remote.rtp, Some(at(b + 5)));
        assert_eq!((lab.dp.free_ports(), lab.dp.session_count()), (0, 1));
        assert_eq!(lab.free_slots(), 1024 - 4);
        assert_eq!(v.streams.len(), 4);
        for s in &v.streams {
            assert!(!s.offloaded && s.reason == "latching", "{s:?}");
        }
        assert!(
            lab.entries().is_empty(),
            "nothing latched, nothing offloaded"
        );
        // The sockets are really held: nobody else can bind them.
        for p in got {
            assert!(std::net::UdpSocket::bind(at(p)).is_err(), "{p} is held");
            assert!(
                std::net::UdpSocket::bind(at(p + 1)).is_err(),
                "{} is held",
                p + 1
            );
        }

        let recs = state.records();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].id, "c1");
        assert_eq!(recs[0].media.legs, v.legs);
        assert_eq!(recs[0].media.options, options(true));
        let (page, more, total) = lab.dp.list("", 10, None).expect("list");
        assert_eq!((page.len(), more, total), (1, false, 1));
        assert_eq!(lab.dp.get("c1").expect("get").legs, v.legs);
    }

    /// Two early dialogs of a forked INVITE: the fork shares the parent's gateway-side port, and
    /// each one's media there (told apart by source) reaches the caller from its own pool-side
    /// port, and the caller's back; while shared nothing is offloaded. The fork that answered
    /// inherits the port and is offloaded; the ports come back when it goes. Block 14 is the
    /// relay's (four pairs), block 15 the peers'.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fork_shares_the_gateway_port_told_apart_by_source_and_inherits_it() {
        let state = StateDir::new("fork");
        let pb = base(15);
        let lab = Lab::start(config(14, 4, &state), Arc::default());
        let (caller, fork1, fork2, stranger) = (
            peer(pb).await,
            peer(pb + 2).await,
            peer(pb + 4).await,
            peer(pb + 6).await,
        );
        let parent = lab
            .dp
            .create(spec("p", Some(at(pb)), Some(at(pb + 2)), false))
            .expect("create");
        assert!(!lab.entries().is_empty(), "no latching: offloaded at once");
        let mut fork = spec("f", Some(at(pb)), Some(at(pb + 4)), false);
        fork.fork_of = Some("p".into());
        let f = lab.dp.create(fork.clone()).expect("fork");
        let [p_pool, gw] = ports(&parent);
        let [f_pool, f_gw] = ports(&f);
        assert_eq!(f_gw, gw, "the fork shares the gateway-side port");
        assert_ne!(f_pool, p_pool);
        assert_eq!(f.fork_of.as_deref(), Some("p"));
        assert_eq!(lab.dp.get("p").expect("get").forks, 1);
        assert!(
            lab.entries().is_empty(),
            "shared ports are relayed in userspace"
        );
        assert_eq!(state.records().len(), 1, "a fork is not recorded");
        assert_eq!(lab.dp.free_ports(), 2, "the fork took one pair (two ports)");

        // Each early dialog's media reaches the caller from its own port, and the caller's back.
        assert_eq!(relay(&fork2, at(gw), &caller, 1).await, at(f_pool));
        assert_eq!(relay(&fork1, at(gw), &caller, 2).await, at(p_pool));
        assert_eq!(relay(&caller, at(f_pool), &fork2, 3).await, at(gw));
        assert_eq!(relay(&caller, at(p_pool), &fork1, 4).await, at(gw));
        // A stranger on the shared port is the parent's to drop (strict source).
        stranger.send_to(&rtp(5), at(gw)).await.expect("send");
        assert_eq!(relay(&fork1, at(gw), &caller, 6).await, at(p_pool));
        let pv = lab.dp.get("p").expect("get");
        assert_eq!(stream(&pv, Side::Gateway, Kind::Rtp).merged.src_mismatch, 1);
        let fv = lab.dp.get("f").expect("get");
        assert_eq!(stream(&fv, Side::Gateway, Kind::Rtp).userspace_packets, 1);

        // What cannot be told apart, or is not a parent, is refused with nothing taken.
        let mut same = spec("g", Some(at(pb)), Some(at(pb + 4)), false);
        same.fork_of = Some("p".into());
        let mut of_fork = spec("g", Some(at(pb)), Some(at(pb + 6)), false);
        of_fork.fork_of = Some("f".into());
        let mut no_source = spec("g", Some(at(pb)), None, false);
        no_source.fork_of = Some("p".into());
        let mut no_parent = spec("g", Some(at(pb)), Some(at(pb + 6)), false);
        no_parent.fork_of = Some("nobody".into());
        for (bad, field) in [
            (same, "gateway.remote_rtp"),
            (of_fork, "fork_of"),
            (no_source, "gateway.remote_rtp"),
            (no_parent, "fork_of"),
        ] {
            match lab.dp.create(bad) {
                Err(SessionError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert_eq!(lab.dp.free_ports(), 2);
        assert!(matches!(
            lab.dp.delete("p", Some("p")).await,
            Err(SessionError::Invalid { .. })
        ));

        // The fork answered: it inherits the gateway-side port, the parent goes.
        let gone = lab.dp.delete("p", Some("f")).await.expect("hand over");
        assert_eq!(gone.id, "p");
        assert_eq!(
            lab.dp.free_ports(),
            4,
            "only the parent's pool-side pair came back"
        );
        let f = lab.dp.get("f").expect("the heir lives");
        assert_eq!((f.fork_of.as_deref(), f.legs[1].rtp_port), (None, gw));
        assert_eq!(relay(&fork2, at(gw), &caller, 7).await, at(f_pool));
        assert_eq!(relay(&caller, at(f_pool), &fork2, 8).await, at(gw));
        let recs = state.records();
        assert_eq!(
            recs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["f"],
            "the heir is recorded, the parent not any more"
        );
        assert!(
            lab.entries().contains_key(&StreamKey::new(at(gw))),
            "the heir is offloaded"
        );
        lab.dp.delete("f", None).await.expect("delete");
        assert_eq!(lab.dp.free_ports(), 8);
        assert_eq!(lab.free_slots(), 1024);
        assert!(lab.entries().is_empty());

        // A parent deleted without an heir takes its forks with it.
        lab.dp
            .create(spec("p", Some(at(pb)), Some(at(pb + 2)), false))
            .expect("create");
        lab.dp.create(fork.clone()).expect("fork");
        lab.dp.delete("p", None).await.expect("delete");
        assert!(matches!(lab.dp.get("f"), Err(SessionError::NotFound(_))));
        assert_eq!((lab.dp.free_ports(), lab.dp.session_count()), (8, 0));
        assert_eq!(lab.free_slots(), 1024);
        // A hand-over to a fork that went meanwhile deletes the parent all the same.
        lab.dp
            .create(spec("p", Some(at(pb)), Some(at(pb + 2)), false))
            .expect("create");
        lab.dp.create(fork).expect("fork");
        lab.dp.delete("f", None).await.expect("the fork goes first");
        lab.dp
            .delete("p", Some("f"))
            .await
            .expect("the parent goes too");
        assert_eq!((lab.dp.free_ports(), lab.dp.session_count()), (8, 0));
        assert_eq!(lab.free_slots(), 1024);

        // With latching, fork 2's media may come before its fork exists and latch the parent:
        // the fork is still made, and the parent learns fork 1 again.
        let parent = lab
            .dp
            .create(spec("p", Some(at(pb)), Some(at(pb + 2)), true))
            .expect("create");
        let [p_pool, gw] = ports(&parent);
        assert_eq!(relay(&fork2, at(gw), &caller, 9).await, at(p_pool));
        let mut fork = spec("f", Some(at(pb)), Some(at(pb + 4)), true);
        fork.fork_of = Some("p".into());
        let f_pool = ports(&lab.dp.create(fork).expect("fork"))[0];
        assert_eq!(relay(&fork1, at(gw), &caller, 10).await, at(p_pool));
        assert_eq!(relay(&fork2, at(gw), &caller, 11).await, at(f_pool));
        lab.dp.delete("p", None).await.expect("delete");
    }

    /// UpdateSession with new options (a call moved to a trunk with other settings): latching on
    /// withdraws the streams to learn their sources; the RTCP timeouts change; `rtcp_mux` cannot,
    /// and a bad option changes nothing; a clock rate of 0 keeps the session's. Block 16.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_update_changes_the_options_that_follow_the_trunk() {
        let state = StateDir::new("options");
        let b = base(16);
        let mut lab = Lab::start(config(16, 2, &state), Arc::default());
        lab.dp
            .create(spec("o1", Some(at(b + 4)), Some(at(b + 5)), false))
            .expect("create");
        assert!(!lab.entries().is_empty(), "no latching: offloaded at once");
        lab.drain_events();
        let mut new = options(true);
        new.rtcp_timeout_secs = 30;
        new.clock_rate = 0;
        let bad = UpdateSpec {
            id: "o1".into(),
            options: Some(Options {
                rtcp_mux: true,
                ..new
            }),
            ..UpdateSpec::default()
        };
        assert!(matches!(
            lab.dp.update(bad),
            Err(SessionError::Invalid { field, .. }) if field == "options.rtcp_mux"
        ));
        assert!(
            !lab.entries().is_empty(),
            "a refused update changes nothing"
        );
        let v = lab
            .dp
            .update(UpdateSpec {
                id: "o1".into(),
                options: Some(new),
                ..UpdateSpec::default()
            })
            .expect("update");
        assert!(v.options.latching && v.options.rtcp_timeout_secs == 30);
        assert_eq!(v.options.clock_rate, 8000, "its own clock rate");
        assert!(lab.entries().is_empty(), "withdrawn to latch anew");
        let ev = lab.drain_events();
        assert!(
            ev.iter()
                .any(|e| is_withdrawn(e, Kind::Rtp, "update: new options")),
            "{ev:?}"
        );
        assert_eq!(state.records()[0].media.options.rtcp_timeout_secs, 30);
        lab.dp.delete("o1", None).await.expect("delete");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relays_in_userspace_offloads_once_latched_and_withdraws_on_new_endpoints() {
        let state = StateDir::new("latch");
        let b = base(1);
        let mut lab = Lab::start(config(1, 2, &state), Arc::default());
        let (pool_peer, gw_peer, new_gw_peer) =
            (peer(b + 4).await, peer(b + 5).await, peer(b + 6).await);
        let v = lab
            .dp
            .create(spec("l1", Some(at(b + 4)), Some(at(b + 5)), true))
            .expect("create");
        let [pool_port, gw_port] = ports(&v);

        // Pool to gateway: the gateway peer hears it from the gateway-side socket.
        assert_eq!(
            relay(&pool_peer, at(pool_port), &gw_peer, 1).await,
            at(gw_port)
        );
        let v = lab.dp.get("l1").expect("get");
        assert!(stream(&v, Side::Pool, Kind::Rtp).latched);
        assert!(
            lab.entries().is_empty(),
            "one direction confirmed is not enough"
        );
        // And back: now both directions are confirmed.
        assert_eq!(
            relay(&gw_peer, at(gw_port), &pool_peer, 2).await,
            at(pool_port)
        );

        let ev = events(&mut lab, 2).await;
        assert!(ev.iter().all(|e| is_offloaded(e, Kind::Rtp)), "{ev:?}");
        let v = lab.dp.get("l1").expect("get");
        assert_eq!(v.rtp_path(), (true, "offloaded".to_string()));
        for side in Side::BOTH {
            let s = stream(&v, side, Kind::Rtp);
            assert_eq!(
                (s.userspace_packets, s.userspace_bytes),
                (1, 172),
                "{side:?}"
            );
            assert_eq!(stream(&v, side, Kind::Rtcp).reason, "latching");
        }
        let entries = lab.entries();
        assert_eq!(entries.len(), 2, "the two RTP directions, no RTCP yet");
        let (family, lo) = abi::ip_bytes(LOCALHOST);
        for (from, to, peer_from, peer_to, side) in [
            (pool_port, gw_port, b + 4, b + 5, Side::Pool),
            (gw_port, pool_port, b + 5, b + 4, Side::Gateway),
        ] {
            let e = entries
                .get(&StreamKey::new(at(from)))
                .expect("an entry keyed by the receiving socket");
            assert_eq!(e.family, family);
            assert_eq!((e.src_addr, e.dst_addr, e.expect_addr), (lo, lo, lo));
            assert_eq!(
                u16::from_be(e.src_port),
                to,
                "sent from the other side's socket"
            );
            assert_eq!(
                u16::from_be(e.dst_port),
                peer_to,
                "to the other side's latched peer"
            );
            assert_eq!(
                u16::from_be(e.expect_port),
                peer_from,
                "from this side's latched peer"
            );
            assert_eq!(e.policy, abi::POLICY_DROP_MISMATCH, "strict source");
            let slot = lab.slot(
                "l1",
                StreamId {
                    from: side,
                    kind: Kind::Rtp,
                },
            );
            assert_eq!(e.stats_slot, slot, "counted in the stream's own slot");
        }
        let rec = &state.records()[0];
        assert!(
            rec.media.streams[StreamId {
                from: Side::Pool,
                kind: Kind::Rtp
            }
            .index()]
            .offloaded,
            "the offload is persisted"
        );

        // A re-INVITE moves the gateway: every entry goes, with the reason, until it re-latches.
        let v = lab
            .dp
            .update(UpdateSpec {
                id: "l1".into(),
                gateway: Some(LegRequest {
                    srtp: None,
                    srtp_off: false,
                    local: None,
                    remote: Remote {
                        rtp: Some(at(b + 6)),
                        rtcp: None,
                    },
                }),
                ..Default::default()
            })
            .expect("update");
        assert!(lab.entries().is_empty(), "entries withdrawn");
        let ev = lab.drain_events();
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(
            ev.iter()
                .all(|e| is_withdrawn(e, Kind::Rtp, "update: new endpoints")),
            "{ev:?}"
        );
        assert_eq!(
            v.rtp_path(),
            (false, "latching".to_string()),
            "sources are learned again"
        );
        assert!(v.streams.iter().all(|s| !s.latched));
        assert_eq!(v.legs[1].remote.rtp, Some(at(b + 6)));
        assert_eq!(state.records()[0].media.legs[1].remote.rtp, Some(at(b + 6)));

        // Media from the pool now goes to the new gateway peer, and the session offloads again.
        assert_eq!(
            relay(&pool_peer, at(pool_port), &new_gw_peer, 3).await,
            at(gw_port)
        );
        assert_eq!(
            relay(&new_gw_peer, at(gw_port), &pool_peer, 4).await,
            at(pool_port)
        );
        let ev = events(&mut lab, 2).await;
        assert!(ev.iter().all(|e| is_offloaded(e, Kind::Rtp)), "{ev:?}");
        let e = lab.entries()[&StreamKey::new(at(pool_port))];
        assert_eq!(u16::from_be(e.dst_port), b + 6, "to the new gateway peer");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_latching_offloads_at_create_and_an_update_moves_the_entries() {
        let state = StateDir::new("nolatch");
        let b = base(2);
        let mut lab = Lab::start(config(2, 2, &state), Arc::default());
        let v = lab
            .dp
            .create(spec("n1", Some(at(b + 4)), Some(at(b + 6)), false))
            .expect("create");
        let [pool_port, gw_port] = ports(&v);

        // The SDP is trusted: all four streams go to the fast path at once.
        let ev = lab.drain_events();
        assert_eq!(ev.len(), 4, "{ev:?}");
        assert_eq!(ev.iter().filter(|e| is_offloaded(e, Kind::Rtp)).count(), 2);
        assert_eq!(ev.iter().filter(|e| is_offloaded(e, Kind::Rtcp)).count(), 2);
        assert!(v.streams.iter().all(|s| s.offloaded), "{v:?}");
        let dst = |lab: &Lab, local: u16| {
            u16::from_be(lab.entries()[&StreamKey::new(at(local))].dst_port)
        };
        assert_eq!(lab.entries().len(), 4);
        assert_eq!(dst(&lab, pool_port), b + 6);
        assert_eq!(dst(&lab, pool_port + 1), b + 7, "RTCP to the RTP port + 1");
        assert_eq!(dst(&lab, gw_port), b + 4);
        assert_eq!(dst(&lab, gw_port + 1), b + 5);

        // The same endpoints again (a re-INVITE that changes nothing): nothing moves.
        let before = lab.entries();
        let same = UpdateSpec {
            id: "n1".into(),
            gateway: Some(LegRequest {
                srtp: None,
                srtp_off: false,
                local: None,
                remote: Remote {
                    rtp: Some(at(b + 6)),
                    rtcp: None,
                },
            }),
            ..Default::default()
        };
        lab.dp.update(same).expect("update");
        assert!(lab.drain_events().is_empty());
        assert_eq!(lab.entries(), before);

        // A new gateway endpoint (only an address: nothing is sent to it): withdrawn with the
        // reason, then installed towards it.
        let moved_to: SocketAddr = "127.0.0.9:5000".parse().expect("addr");
        let moved = UpdateSpec {
            id: "n1".into(),
            gateway: Some(LegRequest {
                srtp: None,
                srtp_off: false,
                local: None,
                remote: Remote {
                    rtp: Some(moved_to),
                    rtcp: Some(SocketAddr::new(moved_to.ip(), 5003)),
                },
            }),
            ..Default::default()
        };
        let v = lab.dp.update(moved).expect("update");
        let ev = lab.drain_events();
        assert_eq!(ev.len(), 8, "{ev:?}");
        let (withdrawn, offloaded) = ev.split_at(4);
        assert!(
            withdrawn
                .iter()
                .all(|e| is_withdrawn(e, Kind::Rtp, "update: new endpoints")
                    || is_withdrawn(e, Kind::Rtcp, "update: new endpoints")),
            "{ev:?}"
        );
        assert!(
            offloaded
                .iter()
                .all(|e| is_offloaded(e, Kind::Rtp) || is_offloaded(e, Kind::Rtcp)),
            "{ev:?}"
        );
        assert!(v.streams.iter().all(|s| s.offloaded));
        assert_eq!(lab.entries().len(), 4);
        assert_eq!(dst(&lab, pool_port), 5000);
        assert_eq!(dst(&lab, pool_port + 1), 5003, "a=rtcp wins");
        let (_, moved_ip) = abi::ip_bytes(moved_to.ip());
        assert_eq!(
            lab.entries()[&StreamKey::new(at(pool_port))].dst_addr,
            moved_ip
        );
        assert_eq!(dst(&lab, gw_port), b + 4, "the pool side did not move");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_removes_entries_and_record_and_frees_the_ports() {
        let state = StateDir::new("delete");
        let b = base(3);
        let lab = Lab::start(config(3, 2, &state), Arc::default());
        let v = lab
            .dp
            .create(spec("d1", Some(at(b + 4)), Some(at(b + 6)), false))
            .expect("create");
        assert_eq!((lab.entries().len(), lab.dp.free_ports()), (4, 0));
        assert_eq!(lab.dp.offloaded_streams(), 4);

        let gone = lab.dp.delete("d1", None).await.expect("delete");
        assert_eq!((gone.id.as_str(), gone.legs), ("d1", v.legs));
        assert!(
            lab.entries().is_empty(),
            "its fast-path entries are removed"
        );
        assert!(state.records().is_empty(), "its record is removed");
        assert!(matches!(lab.dp.get("d1"), Err(SessionError::NotFound(_))));
        assert!(matches!(
            lab.dp.delete("d1", None).await,
            Err(SessionError::NotFound(_))
        ));
        assert_eq!((lab.dp.session_count(), lab.dp.free_ports()), (0, 4));
        assert_eq!(lab.free_slots(), 1024);
        assert_eq!(lab.dp.offloaded_streams(), 0);

        // The whole range is one session, so the next one can only exist on the same ports:
        // the sockets were really closed.
        let again = lab
            .dp
            .create(spec("d2", Some(at(b + 4)), Some(at(b + 6)), false))
            .expect("create on the freed ports");
        let (mut a, mut c) = (ports(&v), ports(&again));
        a.sort_unstable();
        c.sort_unstable();
        assert_eq!(a, c);
        assert_eq!(lab.entries().len(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn port_exhaustion_fails_with_nothing_half_created() {
        let state = StateDir::new("ports");
        let b = base(4);
        // Three pairs: one session and a half.
        let lab = Lab::start(config(4, 3, &state), Arc::default());
        lab.dp
            .create(spec("p1", Some(at(b + 6)), Some(at(b + 7)), false))
            .expect("create");
        let entries = lab.entries();
        assert_eq!(lab.dp.free_ports(), 2);

        // The pool side gets the last pair, the gateway side none: the pool side's must be
        // given back, sockets closed.
        let err = lab
            .dp
            .create(spec("p2", Some(at(b + 6)), Some(at(b + 7)), false))
            .expect_err("no pair left for the gateway side");
        assert!(
            matches!(&err, SessionError::Exhausted(m) if m.contains("no free RTP/RTCP port pair")),
            "{err}"
        );
        assert_eq!((lab.dp.session_count(), lab.dp.free_ports()), (1, 2));
        assert_eq!(lab.free_slots(), 1024 - 4);
        assert!(matches!(lab.dp.get("p2"), Err(SessionError::NotFound(_))));
        assert_eq!(state.records().len(), 1, "no record for the failed session");
        assert_eq!(lab.entries(), entries, "no entry for the failed session");
        let spare = [
            std::net::UdpSocket::bind(at(b + 4)).expect("the spare RTP port is closed again"),
            std::net::UdpSocket::bind(at(b + 5)).expect("the spare RTCP port is closed again"),
        ];
        drop(spare);

        lab.dp.delete("p1", None).await.expect("delete");
        lab.dp
            .create(spec("p2", Some(at(b + 6)), Some(at(b + 7)), false))
            .expect("room again once p1 is gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_slot_exhaustion_fails_before_taking_ports() {
        let state = StateDir::new("slots");
        // Ports for two sessions, slots for one and a half: the second session must not start
        // with two of its four streams sharing slots.
        let cfg = Config {
            max_streams: 6,
            ..config(5, 4, &state)
        };
        let lab = Lab::start(cfg, Arc::default());
        assert_eq!(lab.dp.max_sessions(), 1);
        lab.dp.create(spec("s1", None, None, true)).expect("create");
        let err = lab
            .dp
            .create(spec("s2", None, None, true))
            .expect_err("no slots left");
        assert!(
            matches!(&err, SessionError::Exhausted(m) if m.contains("stream slots")),
            "{err}"
        );
        assert_eq!((lab.dp.session_count(), lab.dp.free_ports()), (1, 4));
        assert_eq!(lab.free_slots(), 2);
        assert_eq!(state.records().len(), 1);
    }

    /// The userspace relay's counters outlive a crash: written to the record when they moved
    /// (every `COUNTERS_FLUSH` in the daemon, by hand here), re-adopted with the session. Block 18.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn userspace_counters_survive_a_crash() {
        let state = StateDir::new("counters");
        let b = base(18);
        let cfg = config(18, 2, &state);
        let lab = Lab::start(cfg.clone(), Arc::default());
        let (pool_peer, gw_peer) = (peer(b + 4).await, peer(b + 5).await);
        // Latching, and media one way only: it stays in userspace.
        let v = lab
            .dp
            .create(spec("u1", Some(at(b + 4)), Some(at(b + 5)), true))
            .expect("create");
        let [pool_port, _] = ports(&v);
        for seq in 1..=3 {
            relay(&pool_peer, at(pool_port), &gw_peer, seq).await;
        }
        let before = stream(&lab.dp.get("u1").expect("get"), Side::Pool, Kind::Rtp).clone();
        assert_eq!(before.userspace_packets, 3, "{before:?}");
        assert!(lab.entries().is_empty(), "still in userspace");
        assert_eq!(lab.dp.flush_counters(), 1, "the moved session is written");
        assert_eq!(
            lab.dp.flush_counters(),
            0,
            "at most one write per COUNTERS_FLUSH"
        );

        let fake = lab.crash().await;
        let lab = Lab::start(cfg, fake);
        let after = lab.dp.get("u1").expect("re-adopted");
        let s = stream(&after, Side::Pool, Kind::Rtp);
        assert_eq!(
            (s.userspace_packets, s.userspace_bytes, s.merged.packets),
            (
                before.userspace_packets,
                before.userspace_bytes,
                before.merged.packets
            ),
            "{s:?}"
        );
        assert_eq!(
            s.merged.rtp.map(|r| (r.received, r.highest_seq)),
            before.merged.rtp.map(|r| (r.received, r.highest_seq)),
            "the RTP receiver state too"
        );
        lab.dp.delete("u1", None).await.expect("delete");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_manager_readopts_its_sessions_and_their_entries() {
        let state = StateDir::new("readopt");
        let b = base(6);
        let cfg = config(6, 2, &state);
        let (pool_peer, gw_peer) = (peer(b + 4).await, peer(b + 5).await);
        let lab = Lab::start(cfg.clone(), Arc::default());
        let mut owned = spec("r1", Some(at(b + 4)), Some(at(b + 5)), false);
        owned.owner = Some("ctl".into());
        owned.lease = Duration::from_secs(5);
        let v = lab.dp.create(owned).expect("create");
        let slots: Vec<u32> = StreamId::ALL.iter().map(|&s| lab.slot("r1", s)).collect();
        let entries = lab.entries();
        assert_eq!(entries.len(), 4);
        // An entry left by no session (its record lost): the restart must remove it.
        let stray = StreamKey::new(at(b + 7));
        lab.fake
            .entries
            .lock()
            .expect("fake lock")
            .insert(stray, StreamEntry::default());

        let fake = lab.crash().await;
        let lab = Lab::start(cfg, fake);

        assert_eq!(lab.dp.session_count(), 1);
        let w = lab.dp.get("r1").expect("re-adopted");
        assert_eq!(
            (w.legs, w.options, w.created_unix_ms, w.owner.as_deref()),
            (v.legs, v.options, v.created_unix_ms, Some("ctl"))
        );
        // Its owner gets a fresh lease (READOPTED_LEASE): nothing lapses at once.
        lab.dp.expire_leases().await;
        assert_eq!(lab.dp.session_count(), 1, "kept until the owner can renew");
        assert!(
            lab.dp
                .inner
                .lock()
                .expect("lock")
                .leases
                .get("ctl")
                .is_some_and(|at| *at > monotonic_ns() + 100_000_000_000),
            "about READOPTED_LEASE from now"
        );
        for s in &w.streams {
            assert!(s.offloaded && s.reason == "offloaded", "{s:?}");
        }
        let again: Vec<u32> = StreamId::ALL.iter().map(|&s| lab.slot("r1", s)).collect();
        assert_eq!(
            again, slots,
            "the same statistics slots, which the kernel kept counting in"
        );
        assert_eq!(
            lab.entries(),
            entries,
            "its entries kept, the stray one removed"
        );
        assert_eq!(
            lab.dp.sequence.load(Ordering::Relaxed),
            0,
            "no event: the installed entries were recognised, not offloaded anew"
        );
        assert_eq!((lab.dp.free_ports(), lab.free_slots()), (0, 1024 - 4));
        // Its sockets are bound again and relaying.
        let [pool_port, gw_port] = ports(&w);
        assert_eq!(
            relay(&pool_peer, at(pool_port), &gw_peer, 1).await,
            at(gw_port)
        );
        assert_eq!(
            relay(&gw_peer, at(gw_port), &pool_peer, 2).await,
            at(pool_port)
        );

        lab.dp.delete("r1", None).await.expect("delete");
        assert!(lab.entries().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_that_cannot_be_rebound_is_dropped_at_restart() {
        let state = StateDir::new("readopt-lost");
        let b = base(7);
        let cfg = config(7, 2, &state);
        let lab = Lab::start(cfg.clone(), Arc::default());
        let v = lab
            .dp
            .create(spec("lost", Some(at(b + 4)), Some(at(b + 6)), false))
            .expect("create");
        assert_eq!(lab.entries().len(), 4);
        let fake = lab.crash().await;
        // Something else took one of its ports while the daemon was down.
        let squatter = std::net::UdpSocket::bind(at(v.legs[1].rtp_port)).expect("take a port");

        let lab = Lab::start(cfg, fake);
        assert_eq!(lab.dp.session_count(), 0);
        assert!(state.records().is_empty(), "its record is dropped");
        assert!(
            lab.entries().is_empty(),
            "its entries belong to no session now"
        );
        assert_eq!(
            lab.dp.free_ports(),
            4,
            "the pairs it reserved are given back"
        );
        assert_eq!(lab.free_slots(), 1024);
        drop(squatter);
    }

    /// On an rtcp-mux session the RTP streams carry RTCP: what they forwarded with an RTCP packet
    /// type (RFC 5761) arms and feeds the RTCP timeout; RTP alone does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_rtcp_mux_session_is_watched_by_the_rtcp_on_its_rtp_streams() {
        let state = StateDir::new("rtcp-mux-timeout");
        let mut lab = Lab::start(config(17, 4, &state), Arc::default());
        let mut s = spec("m1", None, None, true);
        s.options.rtcp_mux = true;
        s.options.rtcp_timeout_secs = 1;
        lab.dp.create(s).expect("create");
        let rtp = |from| {
            lab.slot(
                "m1",
                StreamId {
                    from,
                    kind: Kind::Rtp,
                },
            )
        };
        let (pool, gw) = (rtp(Side::Pool), rtp(Side::Gateway));
        let put = |lab: &Lab, slot: u32, rtcp: bool| {
            let now = monotonic_ns();
            let seen = StreamStats {
                packets: 10,
                last_seen_ns: now,
                rtcp_seen_s: if rtcp {
                    (now / 1_000_000_000) as u32 + 1
                } else {
                    0
                },
                ..Default::default()
            };
            lab.fake
                .stats
                .lock()
                .expect("fake lock")
                .insert(slot, vec![seen]);
        };
        // RTP only, for longer than the timeout: not armed.
        put(&lab, pool, false);
        put(&lab, gw, false);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        put(&lab, pool, false);
        put(&lab, gw, false);
        lab.dp.check_timeouts();
        assert!(
            lab.drain_events().is_empty(),
            "RTP without RTCP arms nothing"
        );
        // RTCP both ways on the RTP streams, then the gateway's stops while its RTP goes on.
        put(&lab, pool, true);
        put(&lab, gw, true);
        lab.dp.check_timeouts();
        assert!(lab.drain_events().is_empty(), "RTCP just seen");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        put(&lab, pool, true);
        let mut gw_stats = lab.fake.stats.lock().expect("fake lock")[&gw].clone();
        gw_stats[0].last_seen_ns = monotonic_ns();
        lab.fake
            .stats
            .lock()
            .expect("fake lock")
            .insert(gw, gw_stats);
        lab.dp.check_timeouts();
        let e = lab.next_event().await;
        assert_eq!(e.session_id, "m1");
        assert!(
            matches!(e.kind, EventKind::RtcpTimeout { on_hold: false, .. }),
            "{e:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rtcp_timeout_is_armed_by_rtcp_and_fires_once_per_silence() {
        let state = StateDir::new("rtcp-timeout");
        let mut lab = Lab::start(config(13, 4, &state), Arc::default());
        let mut s = spec("r1", None, None, true);
        s.options.rtcp_timeout_secs = 1;
        lab.dp.create(s).expect("create");
        let silence = Duration::from_millis(1500);
        tokio::time::sleep(silence).await;
        lab.dp.check_timeouts();
        assert!(
            lab.drain_events().is_empty(),
            "no RTCP seen yet: not armed (a peer that never sends RTCP is no dead call)"
        );
        // RTCP from the gateway, seen by the fast path only: armed.
        let slot = lab.slot(
            "r1",
            StreamId {
                from: Side::Gateway,
                kind: Kind::Rtcp,
            },
        );
        let seen = StreamStats {
            packets: 1,
            last_seen_ns: monotonic_ns(),
            ..Default::default()
        };
        lab.fake
            .stats
            .lock()
            .expect("fake lock")
            .insert(slot, vec![seen]);
        lab.dp.check_timeouts();
        assert!(lab.drain_events().is_empty(), "RTCP just seen");
        tokio::time::sleep(silence).await;
        lab.dp.check_timeouts();
        let e = lab.next_event().await;
        assert_eq!(e.session_id, "r1");
        assert!(
            matches!(e.kind, EventKind::RtcpTimeout { on_hold: false, idle_ms } if idle_ms >= 1000),
            "{e:?}"
        );
        lab.dp.check_timeouts();
        assert!(lab.drain_events().is_empty(), "once per silence");
        // An update (a re-INVITE, a new endpoint) starts the watch over: the old RTCP no longer
        // arms it.
        lab.dp
            .update(UpdateSpec {
                id: "r1".into(),
                on_hold: Some(false),
                ..Default::default()
            })
            .expect("update");
        tokio::time::sleep(silence).await;
        lab.dp.check_timeouts();
        assert!(
            !lab.drain_events()
                .iter()
                .any(|e| matches!(e, EventKind::RtcpTimeout { .. })),
            "not armed again until RTCP comes after the update"
        );
        // Each direction on its own: the pool side keeps sending RTCP, the gateway's stopped.
        let pool_slot = lab.slot(
            "r1",
            StreamId {
                from: Side::Pool,
                kind: Kind::Rtcp,
            },
        );
        let fresh = |lab: &Lab| {
            let seen = StreamStats {
                packets: 1,
                last_seen_ns: monotonic_ns(),
                ..Default::default()
            };
            lab.fake
                .stats
                .lock()
                .expect("fake lock")
                .insert(pool_slot, vec![seen]);
        };
        fresh(&lab);
        lab.fake.stats.lock().expect("fake lock").insert(
            slot,
            vec![StreamStats {
                packets: 2,
                last_seen_ns: monotonic_ns(),
                ..Default::default()
            }],
        );
        lab.dp.check_timeouts();
        tokio::time::sleep(silence).await;
        fresh(&lab);
        lab.dp.check_timeouts();
        let e = lab.next_event().await;
        assert!(
            matches!(e.kind, EventKind::RtcpTimeout { .. }),
            "the gateway's RTCP stopped while the pool's goes on: {e:?}"
        );
        // On hold with rtcp_hold_timeout_secs 0: off.
        let mut s = spec("r2", None, None, true);
        s.options.rtcp_timeout_secs = 1;
        s.on_hold = true;
        lab.dp.create(s).expect("create");
        let slot = lab.slot(
            "r2",
            StreamId {
                from: Side::Pool,
                kind: Kind::Rtcp,
            },
        );
        lab.fake
            .stats
            .lock()
            .expect("fake lock")
            .insert(slot, vec![seen]);
        tokio::time::sleep(silence).await;
        lab.dp.check_timeouts();
        assert!(
            !lab.drain_events()
                .iter()
                .any(|e| matches!(e, EventKind::RtcpTimeout { .. })),
            "held, and the hold RTCP timeout is off"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn media_timeout_fires_once_per_silence() {
        let state = StateDir::new("timeout");
        let mut lab = Lab::start(config(8, 2, &state), Arc::default());
        let mut s = spec("t1", None, None, true);
        s.options.media_timeout_secs = 1;
        lab.dp.create(s).expect("create");
        let silence = Duration::from_millis(1500);

        tokio::time::sleep(silence).await;
        lab.dp.check_timeouts();
        let e = lab.next_event().await;
        assert_eq!(e.session_id, "t1");
        assert!(
            matches!(e.kind, EventKind::MediaTimeout { on_hold: false, idle_ms } if idle_ms >= 1000),
            "{e:?}"
        );
        lab.dp.check_timeouts();
        assert!(lab.drain_events().is_empty(), "once per silence");

        // Media forwarded by the fast path (only the kernel's counters see it) ends the silence.
        let slot = lab.slot(
            "t1",
            StreamId {
                from: Side::Pool,
                kind: Kind::Rtp,
            },
        );
        let seen = StreamStats {
            packets: 1,
            last_seen_ns: monotonic_ns(),
            ..Default::default()
        };
        lab.fake
            .stats
            .lock()
            .expect("fake lock")
            .insert(slot, vec![seen]);
        lab.dp.check_timeouts();
        assert!(lab.drain_events().is_empty(), "media came back");

        // A new silence is a new timeout.
        tokio::time::sleep(silence).await;
        lab.dp.check_timeouts();
        let e = lab.next_event().await;
        assert!(
            matches!(e.kind, EventKind::MediaTimeout { on_hold: false, .. }),
            "{e:?}"
        );

        // An update during the silence (a re-INVITE of the dead call) is no new silence.
        lab.dp
            .update(UpdateSpec {
                id: "t1".into(),
                on_hold: Some(false),
                ..Default::default()
            })
            .expect("update");
        lab.dp.check_timeouts();
        assert!(
            lab.drain_events().is_empty(),
            "one event per silence across updates"
        );

        // On hold the hold timeout (an hour) applies instead.
        lab.dp
            .update(UpdateSpec {
                id: "t1".into(),
                on_hold: Some(true),
                ..Default::default()
            })
            .expect("hold");
        lab.dp.check_timeouts();
        assert!(lab.drain_events().is_empty(), "within the hold timeout");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_requests_are_refused_without_taking_anything() {
        let state = StateDir::new("invalid");
        let b = base(9);
        let lab = Lab::start(config(9, 2, &state), Arc::default());
        let field = |r: Result<SessionView, SessionError>| match r {
            Err(SessionError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };

        assert_eq!(
            field(lab.dp.create(spec("bad/id", None, None, true))),
            "session_id"
        );
        assert_eq!(
            field(lab.dp.create(spec("loop", Some(at(b + 2)), None, true))),
            "pool.remote_rtp",
            "one of the relay's own sockets"
        );
        let mut s = spec("v6", None, Some("[::1]:5000".parse().expect("addr")), true);
        assert_eq!(
            field(lab.dp.create(s.clone())),
            "gateway.remote_rtp",
            "no IPv6 address configured"
        );
        s.gateway.remote.rtp = None;
        s.pool.local = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(field(lab.dp.create(s)), "pool.local_address");
        let mut s = spec("hold", None, None, true);
        s.options.hold_timeout_secs = 10;
        s.options.media_timeout_secs = 20;
        assert_eq!(field(lab.dp.create(s)), "options.hold_timeout_secs");
        assert_eq!((lab.dp.session_count(), lab.dp.free_ports()), (0, 4));
        assert_eq!(lab.free_slots(), 1024);
        assert!(state.records().is_empty());

        let v = lab.dp.create(spec("a", None, None, true)).expect("create");
        assert!(matches!(
            lab.dp.create(spec("a", None, None, true)),
            Err(SessionError::AlreadyExists(_))
        ));
        let own = UpdateSpec {
            id: "a".into(),
            gateway: Some(LegRequest {
                srtp: None,
                srtp_off: false,
                local: None,
                remote: Remote {
                    rtp: Some(at(v.legs[0].rtp_port)),
                    rtcp: None,
                },
            }),
            ..Default::default()
        };
        assert_eq!(field(lab.dp.update(own)), "gateway.remote_rtp");
        assert!(matches!(
            lab.dp.update(UpdateSpec {
                id: "nobody".into(),
                ..Default::default()
            }),
            Err(SessionError::NotFound(_))
        ));
        assert_eq!(lab.dp.get("a").expect("get").legs, v.legs, "unchanged");
        assert_eq!(lab.dp.session_count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nat_rebinding_re_installs_the_entry_without_a_new_offload() {
        let state = StateDir::new("rebind");
        let b = base(10);
        let mut lab = Lab::start(config(10, 2, &state), Arc::default());
        let (pool_peer, gw_peer, rebound) =
            (peer(b + 4).await, peer(b + 5).await, peer(b + 6).await);
        let mut s = spec("nat", Some(at(b + 4)), Some(at(b + 5)), true);
        s.options.strict_source = false;
        let v = lab.dp.create(s).expect("create");
        let [pool_port, gw_port] = ports(&v);
        relay(&pool_peer, at(pool_port), &gw_peer, 1).await;
        relay(&gw_peer, at(gw_port), &pool_peer, 2).await;
        let ev = events(&mut lab, 2).await;
        assert!(ev.iter().all(|e| is_offloaded(e, Kind::Rtp)), "{ev:?}");
        let pool_key = StreamKey::new(at(pool_port));
        assert_eq!(lab.entries()[&pool_key].policy, abi::POLICY_PASS_MISMATCH);

        // The pool peer's NAT moves it to a new port; XDP passes the packet up and the relay
        // follows it.
        assert_eq!(
            relay(&rebound, at(pool_port), &gw_peer, 3).await,
            at(gw_port)
        );
        let mut followed = false;
        for _ in 0..200 {
            // Both entries (the source expected, and the replies' destination) follow the peer;
            // they are installed one after the other, so a snapshot may hold one of them only.
            let e = lab.entries();
            let expect = e.get(&pool_key).map(|x| u16::from_be(x.expect_port));
            let back = e
                .get(&StreamKey::new(at(gw_port)))
                .map(|x| u16::from_be(x.dst_port));
            if (expect, back) == (Some(b + 6), Some(b + 6)) {
                followed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            followed,
            "the entries were re-installed for the new source, replies included"
        );
        assert_eq!(lab.entries().len(), 2);
        // get() takes the media lock, which the re-install held until its events were out.
        let v = lab.dp.get("nat").expect("get");
        assert!(
            lab.drain_events().is_empty(),
            "still offloaded: no Withdrawn, no second Offloaded"
        );
        assert_eq!(v.rtp_path(), (true, "offloaded".to_string()));
        assert_eq!(
            stream(&v, Side::Pool, Kind::Rtp).expected_source,
            Some(at(b + 6))
        );
    }
    /// SRTP on the pool side, plain RTP on the gateway side (Lync toward a PSTN gateway): the
    /// relay decrypts what the pool peer sends and encrypts what goes back to it, with the
    /// pool peer's and its own keys; nothing is offloaded; forged packets are dropped and counted
    /// and do not reach the gateway; a re-key keeps the media flowing; a restart drops the session
    /// (its keys were never saved).
    #[tokio::test]
    async fn srtp_on_one_side_is_terminated_in_userspace() {
        use crate::srtp::{InboundContext, Mki, OutboundContext};

        let state = StateDir::new("srtp");
        let b = base(11);
        let fake = Arc::new(FakeForwarder::default());
        let lab = Lab::start(config(11, 2, &state), fake.clone());
        let (pool_peer, gw_peer) = (peer(b + 4).await, peer(b + 5).await);
        let suite = Suite::AesCm128HmacSha1_80;
        let key = |fill: u8| {
            MasterKey::from_concatenated(suite, &[fill; 30]).expect("a 30-byte key and salt")
        };
        let mki = Some(Mki::new(1, 1).expect("mki"));
        let srtp = |peer: u8, relay: u8| {
            Arc::new(LegSrtp {
                peer: key(peer),
                peer_mki: mki,
                relay: key(relay),
                relay_mki: None,
                peer_pending: false,
            })
        };
        let mut create = spec("s1", Some(at(b + 4)), Some(at(b + 5)), false);
        create.pool.srtp = Some(srtp(1, 2));
        let v = lab.dp.create(create).expect("create");
        assert_eq!(v.srtp, [Some(suite.name().to_string()), None]);
        let [pool_port, gw_port] = ports(&v);
        let mut pool_tx = OutboundContext::new(&key(1), mki).expect("the pool peer's sender");
        let mut pool_rx = InboundContext::new(&key(2), None).expect("the pool peer's receiver");
        let mut buf = [0u8; 2048];

        // Pool (SRTP) to gateway (plain): exactly the payload the pool peer protected.
        let plain = rtp(1);
        let mut p = plain.clone();
        pool_tx.protect_rtp(&mut p).expect("protect");
        assert_ne!(p[12..], plain[12..], "encrypted on the pool side");
        pool_peer.send_to(&p, at(pool_port)).await.expect("send");
        let n = recv(&gw_peer, &mut buf).await;
        assert_eq!(&buf[..n], &plain[..], "decrypted for the gateway");

        // Gateway (plain) to pool (SRTP): the pool peer decrypts it with the relay's key.
        let back = rtp(7);
        gw_peer.send_to(&back, at(gw_port)).await.expect("send");
        let n = recv(&pool_peer, &mut buf).await;
        let mut got = buf[..n].to_vec();
        assert_ne!(got, back, "encrypted toward the pool");
        pool_rx
            .unprotect_rtp(&mut got)
            .expect("the pool peer decrypts it");
        assert_eq!(got, back);

        // Forged and replayed packets from the pool side are dropped and counted.
        let mut forged = rtp(2);
        pool_tx.protect_rtp(&mut forged).expect("protect");
        forged[20] ^= 0xff;
        pool_peer
            .send_to(&forged, at(pool_port))
            .await
            .expect("send");
        pool_peer
            .send_to(&p, at(pool_port))
            .await
            .expect("send the first packet again");
        let mut good = rtp(3);
        pool_tx.protect_rtp(&mut good).expect("protect");
        pool_peer.send_to(&good, at(pool_port)).await.expect("send");
        let n = recv(&gw_peer, &mut buf).await;
        assert_eq!(
            &buf[..n],
            &rtp(3)[..],
            "only the genuine packet reaches the gateway"
        );
        let v = lab.dp.get("s1").expect("get");
        let from_pool = stream(&v, Side::Pool, Kind::Rtp);
        assert_eq!(
            (from_pool.srtp.auth_failures, from_pool.srtp.replays),
            (1, 1),
            "{:?}",
            from_pool.srtp
        );
        assert_eq!(
            from_pool.userspace_packets, 2,
            "dropped packets are not media"
        );
        for side in Side::BOTH {
            let st = stream(&v, side, Kind::Rtp);
            assert!(!st.offloaded, "{side:?}");
            assert_eq!(st.reason, "srtp termination", "{side:?}");
        }
        assert!(
            fake.entries.lock().expect("entries").is_empty(),
            "nothing in XDP"
        );

        // Re-keying (a re-INVITE): the pool peer's new key works from the next packet on.
        let mut rekey = UpdateSpec {
            id: "s1".into(),
            ..Default::default()
        };
        rekey.pool = Some(LegRequest {
            srtp: Some(srtp(3, 4)),
            local: None,
            remote: Remote {
                rtp: Some(at(b + 4)),
                rtcp: None,
            },
            srtp_off: false,
        });
        let v = lab.dp.update(rekey).expect("re-key");
        assert_eq!(
            stream(&v, Side::Pool, Kind::Rtp).srtp.auth_failures,
            1,
            "counters kept"
        );
        let mut tx3 = OutboundContext::new(&key(3), mki).expect("new sender");
        let mut p = rtp(4);
        tx3.protect_rtp(&mut p).expect("protect");
        pool_peer.send_to(&p, at(pool_port)).await.expect("send");
        let n = recv(&gw_peer, &mut buf).await;
        assert_eq!(&buf[..n], &rtp(4)[..]);

        // Turning SRTP on for the plain side is refused; nothing changes.
        let mut on = UpdateSpec {
            id: "s1".into(),
            ..Default::default()
        };
        on.gateway = Some(LegRequest {
            srtp: Some(srtp(5, 6)),
            ..Default::default()
        });
        let e = lab.dp.update(on).expect_err("refused");
        assert!(e.to_string().contains("gateway.srtp"), "{e}");

        // The record names the suite and holds no key; a restart drops the session.
        let rec = state.records();
        assert_eq!(rec.len(), 1);
        let text = serde_json::to_string(&rec[0]).expect("json");
        assert!(text.contains("AES_CM_128_HMAC_SHA1_80"), "{text}");
        assert!(
            !text.contains("[1,1,1") && !text.contains("AQEB"),
            "no key bytes: {text}"
        );
        let fake = lab.crash().await;
        let lab = Lab::start(config(11, 2, &state), fake);
        assert!(lab.dp.get("s1").is_err(), "not re-adopted without its keys");
        assert!(state.records().is_empty(), "its record is gone");
    }
    /// SRTP on both sides with a key per leg. Re-keying one side re-makes only the contexts that
    /// use its keys: the relay keeps protecting toward the other side with the same context, so
    /// its SRTCP index keeps rising (a context re-made under the same key would start again at 1,
    /// reusing keystream, and the peer would drop it as a replay). Echoed keys are refused.
    #[tokio::test]
    async fn rekeying_one_side_keeps_the_other_sides_contexts() {
        use crate::srtp::{InboundContext, OutboundContext};

        let state = StateDir::new("srtp2");
        let b = base(12);
        let lab = Lab::start(config(12, 2, &state), Arc::default());
        let (pool_peer, gw_peer) = (peer(b + 4).await, peer(b + 5).await);
        let suite = Suite::AeadAes128Gcm;
        let key = |fill: u8| {
            MasterKey::from_concatenated(suite, &[fill; 28]).expect("a 28-byte key and salt")
        };
        let srtp = |peer: u8, relay: u8| {
            Arc::new(LegSrtp {
                peer: key(peer),
                peer_mki: None,
                relay: key(relay),
                relay_mki: None,
                peer_pending: false,
            })
        };
        let mut echo = spec("e1", Some(at(b + 4)), Some(at(b + 5)), false);
        echo.pool.srtp = Some(srtp(9, 9));
        let e = lab.dp.create(echo).expect_err("an echoed key is refused");
        assert!(e.to_string().contains("pool.srtp.relay_key"), "{e}");

        let mut create = spec("s2", Some(at(b + 4)), Some(at(b + 5)), false);
        create.pool.srtp = Some(srtp(1, 2));
        create.gateway.srtp = Some(srtp(3, 4));
        // RTCP on the RTP ports (RFC 5761), told apart from RTP by the relay.
        create.options.rtcp_mux = true;
        let v = lab.dp.create(create).expect("create");
        let [_, gw_port] = ports(&v);
        let mut gw_tx = OutboundContext::new(&key(3), None).expect("the gateway peer's sender");
        let mut pool_rx = InboundContext::new(&key(2), None).expect("the pool peer's receiver");
        let mut buf = [0u8; 2048];
        let report = vec![0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
        let send_rtcp = |tx: &mut OutboundContext| {
            let mut p = report.clone();
            tx.protect_rtcp(&mut p).expect("protect rtcp");
            p
        };
        for _ in 0..2 {
            let p = send_rtcp(&mut gw_tx);
            gw_peer.send_to(&p, at(gw_port)).await.expect("send");
            let n = recv(&pool_peer, &mut buf).await;
            let mut got = buf[..n].to_vec();
            pool_rx
                .unprotect_rtcp(&mut got)
                .expect("the pool peer accepts it");
            assert_eq!(got, report);
        }
        // The gateway side re-keys; the pool side's keys stay.
        let mut rekey = UpdateSpec {
            id: "s2".into(),
            ..Default::default()
        };
        rekey.gateway = Some(LegRequest {
            srtp: Some(srtp(5, 6)),
            local: None,
            remote: Remote {
                rtp: Some(at(b + 5)),
                rtcp: None,
            },
            srtp_off: false,
        });
        lab.dp.update(rekey).expect("re-key");
        let mut gw_tx = OutboundContext::new(&key(5), None).expect("the gateway's new sender");
        let p = send_rtcp(&mut gw_tx);
        gw_peer.send_to(&p, at(gw_port)).await.expect("send");
        let n = recv(&pool_peer, &mut buf).await;
        let mut got = buf[..n].to_vec();
        pool_rx
            .unprotect_rtcp(&mut got)
            .expect("not a replay: the relay's context toward the pool was kept");
        assert_eq!(got, report);

        // The gateway side turns plain (its peer answered a best-effort offer without a key):
        // its plain packets now pass, protected toward the pool as before.
        let mut rtp_rx = InboundContext::new(&key(2), None).expect("the pool peer's receiver");
        gw_peer.send_to(&rtp(5), at(gw_port)).await.expect("send");
        let dropped = |v: &SessionView| {
            let c = &stream(v, Side::Gateway, Kind::Rtp).srtp;
            c.auth_failures + c.other
        };
        for _ in 0..100 {
            if dropped(&lab.dp.get("s2").expect("get")) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut off = UpdateSpec {
            id: "s2".into(),
            ..Default::default()
        };
        off.gateway = Some(LegRequest {
            srtp_off: true,
            remote: Remote {
                rtp: Some(at(b + 5)),
                rtcp: None,
            },
            ..Default::default()
        });
        let v = lab.dp.update(off).expect("srtp off");
        assert_eq!(v.srtp, [Some(suite.name().to_string()), None]);
        assert_eq!(dropped(&v), 1, "the plain packet sent before was dropped");
        gw_peer.send_to(&rtp(6), at(gw_port)).await.expect("send");
        let n = recv(&pool_peer, &mut buf).await;
        let mut got = buf[..n].to_vec();
        rtp_rx
            .unprotect_rtp(&mut got)
            .expect("protected toward the pool");
        assert_eq!(got, rtp(6));

        // srtp_off is for updates only.
        let mut create = spec("s3", None, None, false);
        create.gateway.srtp_off = true;
        let e = lab.dp.create(create).expect_err("refused");
        assert!(e.to_string().contains("gateway.srtp_off"), "{e}");
    }
}

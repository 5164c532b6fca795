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
use crate::relay::{self, Notice, SessionShared};
use crate::session::{Kind, Leg, Media, Options, Remote, Side, StreamId, StreamState};
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
}

#[derive(Clone, Debug)]
pub struct CreateSpec {
    pub id: String,
    pub pool: LegRequest,
    pub gateway: LegRequest,
    pub options: Options,
    pub on_hold: bool,
}

#[derive(Clone, Debug, Default)]
pub struct UpdateSpec {
    pub id: String,
    pub pool: Option<LegRequest>,
    pub gateway: Option<LegRequest>,
    pub on_hold: Option<bool>,
}

#[derive(Clone, Debug)]
pub enum EventKind {
    MediaTimeout { on_hold: bool, idle_ms: u64 },
    Offloaded { kind: Kind },
    Withdrawn { kind: Kind, reason: String },
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
    pub socket_overflow: u64,
    pub idle_ms: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct SessionView {
    pub id: String,
    pub legs: [Leg; 2],
    pub options: Options,
    pub on_hold: bool,
    pub created_unix_ms: u64,
    pub streams: Vec<StreamView>,
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
    }
}

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
}

struct Inner {
    sessions: BTreeMap<String, Entry>,
    /// Sessions whose teardown is under way: their id cannot be reused until it ends.
    deleting: std::collections::HashSet<String>,
    pairs: IndexPool,
    slots: IndexPool,
    retired: Totals,
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
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock_err<T>(_: T) -> SessionError {
    SessionError::Internal("internal lock poisoned".into())
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
            }),
            cfg,
            forwarder,
            relay,
            store,
            events,
            sequence: AtomicU64::new(0),
            notify,
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

    fn emit(&self, session_id: &str, kind: EventKind) {
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
            self.check_not_self(format!("{}.{name}", side.name()), a)?;
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

    /// A remote must not be one of this relay's own media sockets: one packet would loop forever.
    fn check_not_self(
        &self,
        field: String,
        remote: Option<SocketAddr>,
    ) -> Result<(), SessionError> {
        let Some(a) = remote else { return Ok(()) };
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
            };
            let rec = Record {
                id: spec.id.clone(),
                created_unix_ms: unix_ms(),
                media: media.clone(),
            };
            let started = self.start_session(&rec, [[rtp0, rtcp0], [rtp1, rtcp1]]);
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
        self.evaluate(&shared);
        self.get(&spec.id)
    }

    /// Wraps bound sockets for tokio and spawns the relay tasks of a session.
    fn start_session(
        &self,
        rec: &Record,
        sockets: [[std::net::UdpSocket; 2]; 2],
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
        if shared.deleted.load(Ordering::Acquire) {
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
        {
            let mut m = shared.media.lock().map_err(lock_err)?;
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
                    self.check_not_self(format!("{}.{name}", side.name()), a)?;
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
            if let Some(h) = spec.on_hold {
                m.on_hold = h;
            }
            self.persist(&shared, &m);
        }
        if let Ok(mut inner) = self.inner.lock()
            && let Some(e) = inner.sessions.get_mut(&spec.id)
        {
            e.timed_out = false;
            e.next_check = None;
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
    /// done (ports or slots lost, a record left behind to be re-adopted).
    pub async fn delete(self: &Arc<Self>, id: &str) -> Result<SessionView, SessionError> {
        validate_id(id)?;
        let entry = {
            let mut inner = self.inner.lock().map_err(lock_err)?;
            let entry = inner
                .sessions
                .remove(id)
                .ok_or_else(|| SessionError::NotFound(id.into()))?;
            inner.deleting.insert(id.to_string());
            entry
        };
        let dp = self.clone();
        let id = id.to_string();
        tokio::spawn(async move { dp.teardown(id, entry).await })
            .await
            .map_err(|e| SessionError::Internal(format!("deleting the session: {e}")))
    }

    async fn teardown(&self, id: String, entry: Entry) -> SessionView {
        let (pairs, slots) = {
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
            let pairs: Vec<usize> = m
                .legs
                .iter()
                .filter_map(|l| self.pair_of_port(l.rtp_port))
                .collect();
            let slots: Vec<u32> = m.streams.iter().map(|s| s.stats_slot).collect();
            (pairs, slots)
        };
        let view = self.view(&entry.shared);
        // The ports are free only once the tasks holding the sockets are gone.
        for t in &entry.tasks {
            t.abort();
        }
        for t in entry.tasks {
            let _ = t.await;
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

    pub fn get(&self, id: &str) -> Result<SessionView, SessionError> {
        Ok(self.view(&*self.shared(id)?))
    }

    /// Sessions after `after`, in id order, at most `limit`; and the total count.
    pub fn list(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<SessionView>, bool, usize), SessionError> {
        let (page, total) = {
            let inner = self.inner.lock().map_err(lock_err)?;
            let range = inner
                .sessions
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded));
            let page: Vec<_> = range
                .take(limit + 1)
                .map(|(_, e)| e.shared.clone())
                .collect();
            (page, inner.sessions.len())
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
            options: m.options,
            on_hold: m.on_hold,
            created_unix_ms: shared.created_unix_ms,
            streams,
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

    /// Re-adopts one recorded session: reserves its pairs and slots, re-binds its sockets, marks
    /// the streams whose XDP entries are still installed, starts its relay tasks. On any failure
    /// everything it reserved is given back. Returns the session and the kernel keys it owns.
    fn adopt_one(
        &self,
        rec: &mut Record,
        kernel: &HashMap<StreamKey, StreamEntry>,
    ) -> Result<(Arc<SessionShared>, Vec<StreamKey>), String> {
        validate_id(&rec.id).map_err(|e| e.to_string())?;
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
                .start_session(rec, [pool, gateway])
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
        for shared in adopted {
            self.evaluate(&shared);
        }
    }
}

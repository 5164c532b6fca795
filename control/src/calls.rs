//! The SIP runtime, at the edge: one task owns the [`Engine`], feeds it what the transports
//! receive and its timers, carries out its actions (sends, dataplane sessions over gRPC, call
//! records), and keeps the listening sockets and the pools' relay clients in step with the
//! topology. The API reads calls through a [`CallHandle`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mediator_proto::dataplane::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::media::{Relays, create_request, media_answer, update_request};
use crate::registry::Registry;
use crate::transport::{Inbound, Transports};
use mediator_b2bua::dns::{Query, Resolution};
use mediator_b2bua::media::{MediaAnswer, MediaRequest};
use mediator_b2bua::{
    Action, CallId, CallInfo, Config, EndRefused, Engine, Transport, TrunkChange, TrunkHealth,
    TrunkState, sip_transport,
};
use mediator_topology::topology::Topology;

/// Ended calls kept for the API's recent-calls list.
pub const RECENT: usize = 1000;
/// How often listeners and relay clients are checked against the topology.
const RECONCILE: Duration = Duration::from_secs(1);
/// Bound on every dataplane call made for a call.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(2);
/// Trunk state changes held for a slow watcher before it is told it missed some.
const HEALTH_EVENTS: usize = 256;
/// How often a graceful stop looks at the calls still in progress.
const STOP_POLL: Duration = Duration::from_millis(500);
/// How long a graceful stop waits for one call it ends at its deadline (BYE answered, sessions
/// deleted).
const STOP_END: Duration = Duration::from_secs(5);

/// Every probed trunk's health by trunk name, as of the runtime's last look (at most a second
/// old; at once after a change).
pub type HealthView = Arc<Mutex<HashMap<String, TrunkHealth>>>;

/// The DNS answers the engine uses, by query (updated as each arrives).
pub type DnsView = Arc<Mutex<Vec<(Query, Resolution)>>>;

enum Cmd {
    Created {
        call: CallId,
        pool: String,
        result: Result<Vec<(String, MediaAnswer)>, (u16, String)>,
    },
    List(oneshot::Sender<Vec<CallInfo>>),
    Get(CallId, oneshot::Sender<Option<CallInfo>>),
    /// A relay reported a session's media stopped: (relay, session id).
    MediaTimeout(String, String, crate::media::Silence),
    /// Every (relay, session id) the calls in progress own.
    Sessions(oneshot::Sender<std::collections::HashSet<(String, String)>>),
    /// The resolver's answer for a name the topology uses.
    Dns(Query, Resolution),
    /// A graceful stop has begun: refuse new calls on every pool.
    StopAccepting,
    /// A relay answered an update with NOT_FOUND: (relay, session id). Said aloud only when a
    /// call in progress still owns it (the relay lost it); a call that ended meanwhile is no news.
    UpdateGone(String, String),
    /// Ends a call; answered with its record once its sessions are deleted.
    End(
        CallId,
        String,
        oneshot::Sender<Result<CallView, EndRefused>>,
    ),
}

/// A call as the API shows it: the engine's view and, for each of its streams, the relay's
/// session (live for a call in progress, final in a record; `None` where the relay did not
/// answer).
#[derive(Clone, Debug)]
pub struct CallView {
    pub info: CallInfo,
    pub media: Vec<Option<pb::Session>>,
}

impl CallView {
    fn without_media(info: CallInfo) -> CallView {
        let media = vec![None; info.streams.len()];
        CallView { info, media }
    }
}

/// The API's view of the calls.
#[derive(Clone)]
pub struct CallHandle {
    cmd: mpsc::Sender<Cmd>,
    recent: Arc<Mutex<VecDeque<CallView>>>,
    relays: Arc<Mutex<HashMap<String, Arc<Relays>>>>,
    health: HealthView,
    health_events: tokio::sync::broadcast::Sender<TrunkChange>,
    dns: DnsView,
    /// Sessions found on a relay under this daemon's lease that no call owned, and deleted.
    orphans_deleted: Arc<std::sync::atomic::AtomicU64>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl CallHandle {
    /// The counters the runtime moves, for the metrics endpoint.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// (pool, relay address, answering) of every pool's dataplanes.
    pub fn relay_health(&self) -> Vec<(String, String, bool)> {
        let pools: Vec<(String, Arc<Relays>)> = self
            .relays
            .lock()
            .map(|r| r.iter().map(|(p, r)| (p.clone(), r.clone())).collect())
            .unwrap_or_default();
        let mut out: Vec<(String, String, bool)> = pools
            .into_iter()
            .flat_map(|(pool, r)| {
                r.health()
                    .into_iter()
                    .map(move |(addr, up, _)| (pool.clone(), addr, up))
            })
            .collect();
        out.sort();
        out
    }

    /// Sessions found on a relay under this daemon's lease that no call owned, and deleted,
    /// since start.
    pub fn orphans_deleted(&self) -> u64 {
        self.orphans_deleted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The trunks' health, shared with the topology API (for Trunk.health).
    pub fn health_view(&self) -> HealthView {
        self.health.clone()
    }

    /// The DNS answers in use, shared with the topology API (for Gateway.resolved and
    /// Pool.next_hop_resolved).
    pub fn dns_view(&self) -> DnsView {
        self.dns.clone()
    }

    /// Every probed trunk's health, by trunk name.
    pub fn trunk_health(&self) -> Vec<TrunkHealth> {
        let mut v: Vec<TrunkHealth> = self
            .health
            .lock()
            .map(|h| h.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.trunk.cmp(&b.trunk));
        v
    }

    /// Trunks going up or down from now on.
    pub fn watch_health(&self) -> tokio::sync::broadcast::Receiver<TrunkChange> {
        self.health_events.subscribe()
    }

    pub async fn list(&self) -> Vec<CallView> {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::List(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await
            .unwrap_or_default()
            .into_iter()
            .map(CallView::without_media)
            .collect()
    }

    /// A call in progress with its streams' live figures, or a recent one.
    pub async fn get(&self, id: CallId) -> Option<CallView> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Get(id, tx)).await.ok()?;
        match rx.await.ok().flatten() {
            Some(c) => {
                let mut view = CallView::without_media(c);
                if let Some(r) = self.relays_of(&view.info.pool) {
                    for (s, m) in view.info.streams.iter().zip(view.media.iter_mut()) {
                        *m = r.get_session(&s.relay, &s.session_id).await.ok();
                    }
                }
                Some(view)
            }
            None => self
                .recent
                .lock()
                .ok()?
                .iter()
                .find(|c| c.info.id == id)
                .cloned(),
        }
    }

    /// Ends a call in progress (BYE, or 487 to a caller still waiting) and returns its record,
    /// with the final media figures.
    pub async fn end(&self, id: CallId, reason: String) -> Result<CallView, EndRefused> {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::End(id, reason, tx)).await.is_err() {
            return Err(EndRefused::NotInProgress);
        }
        rx.await.unwrap_or(Err(EndRefused::NotInProgress))
    }

    /// A graceful stop (SIGTERM): new calls are refused on every pool (503 with Retry-After, so
    /// Front Ends and gateways fail over) while the calls in progress go on, for up to
    /// `deadline`; those still up then are ended (BYE on both legs, their sessions deleted).
    /// Returns how many had to be ended.
    pub async fn stop(&self, deadline: Duration) -> usize {
        if self.cmd.send(Cmd::StopAccepting).await.is_err() {
            return 0;
        }
        let until = Instant::now() + deadline;
        let mut said = None;
        let left = loop {
            let calls = self.list().await;
            if calls.is_empty() {
                return 0;
            }
            let now = Instant::now();
            if now >= until {
                break calls;
            }
            if said != Some(calls.len()) {
                tracing::info!(
                    calls = calls.len(),
                    left_secs = (until - now).as_secs(),
                    "stopping: new calls refused, waiting for the calls in progress to end"
                );
                said = Some(calls.len());
            }
            tokio::time::sleep((until - now).min(STOP_POLL)).await;
        };
        tracing::warn!(
            calls = left.len(),
            "stop deadline reached: ending the calls still in progress"
        );
        // Ended side by side, each given STOP_END in all; a call that cannot be ended this
        // instant (its 2xx is waiting for the ACK) is tried again until it can, or STOP_END.
        let give_up = Instant::now() + STOP_END;
        let mut calls = left.iter().map(|c| c.info.id).collect::<Vec<_>>();
        while !calls.is_empty() && Instant::now() < give_up {
            let mut ends = tokio::task::JoinSet::new();
            for id in calls {
                let handle = self.clone();
                ends.spawn(async move {
                    let reason = "Mediator stopped (stop_deadline_secs reached)".to_string();
                    let ended = tokio::time::timeout_at(give_up, handle.end(id, reason)).await;
                    (id, ended)
                });
            }
            calls = Vec::new();
            while let Some(r) = ends.join_next().await {
                if let Ok((id, Ok(Err(EndRefused::Answering)))) = r {
                    calls.push(id);
                }
            }
            if !calls.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        left.len()
    }

    /// Ended calls, newest first.
    pub fn recent(&self) -> Vec<CallView> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    fn relays_of(&self, pool: &str) -> Option<Arc<Relays>> {
        self.relays.lock().ok()?.get(pool).cloned()
    }
}

/// Where Mediator listens for SIP according to the topology: each pool's pool-side address, and
/// each trunk's listening port on its pool's gateway-side address, with the trunk's transport.
pub fn listen_set(t: &Topology) -> BTreeSet<(std::net::SocketAddr, Transport)> {
    let mut set = BTreeSet::new();
    for p in t.pools.values().map(|p| &p.value) {
        set.insert((p.pool_side_listen, sip_transport(p.next_hop.transport)));
    }
    for tr in t.trunks.values().map(|t| &t.value) {
        if let Some(p) = t.pools.get(&tr.pool) {
            set.insert((
                std::net::SocketAddr::new(p.value.gateway_side_address, tr.pool_port),
                sip_transport(tr.transport),
            ));
        }
    }
    set
}

/// What the SIP runtime does besides SIP.
#[derive(Clone, Debug)]
pub struct Options {
    /// A relay's media timeout ends the call (BYE on both legs with a Reason); otherwise it is
    /// only logged.
    pub media_timeout_ends_calls: bool,
    /// Where FQDNs are resolved; `None`: nowhere (FQDN gateways and next hops stay unresolved,
    /// and calls to them get 503).
    pub resolver: Option<crate::dns::Resolver>,
    /// The lease dataplane sessions are created under (`None`: none, they are kept until
    /// deleted), renewed and reconciled by [`lease_upkeep`].
    pub lease: Option<crate::media::Lease>,
    /// How the relays are reached: TLS (their CA, a client certificate) and a bearer token.
    pub relay_auth: mediator_serve::auth::ClientAuth,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            media_timeout_ends_calls: true,
            resolver: None,
            lease: None,
            relay_auth: Default::default(),
        }
    }
}

/// A session younger than this may be one whose creation is still in flight (its call does not
/// know it yet): reconciliation leaves it for the next pass. Well past the bound on a dataplane
/// call (`MEDIA_TIMEOUT`).
const SETTLE_MS: u64 = 10_000;

/// Renews the lease on every pool's relays every third of it, and deletes each session held
/// under it that no call owns (older than [`SETTLE_MS`]): what a crash or restart of this daemon,
/// a lost answer or a flood left behind. The first pass runs at once, so a restarted daemon
/// clears what its previous run left within seconds. Runs until the runtime stops.
async fn lease_upkeep(handle: CallHandle, lease: crate::media::Lease) {
    let every = Duration::from_secs(u64::from(lease.secs / 3).max(1));
    let mut tick = tokio::time::interval(every);
    // The relay clients appear with the runtime's first look at the topology.
    tokio::time::sleep(RECONCILE * 2).await;
    loop {
        tick.tick().await;
        let relays: Vec<Arc<Relays>> = handle
            .relays
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        for r in relays {
            let held = r.leased_sessions().await;
            if held.is_empty() {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            if handle.cmd.send(Cmd::Sessions(tx)).await.is_err() {
                return;
            }
            let Ok(owned) = rx.await else { return };
            let now = crate::clock::unix_ms();
            for (relay, id, created) in held {
                if owned.contains(&(relay.clone(), id.clone()))
                    || created.saturating_add(SETTLE_MS) > now
                {
                    continue;
                }
                match r.delete_session(&relay, &id).await {
                    Ok(_) => {
                        tracing::warn!(relay, session = id, "deleted a session no call owns");
                        handle
                            .orphans_deleted
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::info!(relay, session = id, error = %e, "a session no call owns could not be deleted yet")
                    }
                }
            }
        }
    }
}

/// Starts the SIP runtime on the current tokio runtime (`tls`: for TLS trunks and next hops).
pub fn start(registry: Arc<Registry>, cfg: Config, tls: Option<crate::tls::Tls>) -> CallHandle {
    start_with(registry, cfg, tls, Options::default())
}

/// [`start`] with `options`.
pub fn start_with(
    registry: Arc<Registry>,
    cfg: Config,
    tls: Option<crate::tls::Tls>,
    options: Options,
) -> CallHandle {
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (in_tx, in_rx) = mpsc::channel(16 * 1024);
    let handle = CallHandle {
        cmd: cmd_tx.clone(),
        recent: Arc::new(Mutex::new(VecDeque::new())),
        relays: Arc::new(Mutex::new(HashMap::new())),
        health: Arc::new(Mutex::new(HashMap::new())),
        health_events: tokio::sync::broadcast::channel(HEALTH_EVENTS).0,
        dns: Arc::new(Mutex::new(Vec::new())),
        orphans_deleted: Arc::default(),
        metrics: Arc::default(),
    };
    if let Some(lease) = options.lease.clone() {
        tokio::spawn(lease_upkeep(handle.clone(), lease));
    }
    let (dns_wanted, wanted_rx) = tokio::sync::watch::channel(BTreeSet::new());
    if let Some(resolver) = options.resolver.clone() {
        let (tx, mut rx) = mpsc::channel::<(Query, Resolution)>(256);
        crate::dns::spawn(resolver, wanted_rx, tx);
        let cmd = cmd_tx.clone();
        tokio::spawn(async move {
            while let Some((q, r)) = rx.recv().await {
                if cmd.send(Cmd::Dns(q, r)).await.is_err() {
                    return;
                }
            }
        });
    }
    let rt = Runtime {
        engine: Engine::new(cfg),
        registry,
        transports: Transports::new(in_tx, tls),
        relay_addrs: HashMap::new(),
        handle: handle.clone(),
        cmd_tx,
        bind_errors: Vec::new(),
        end_waiters: HashMap::new(),
        watchers: HashMap::new(),
        timeouts: {
            let (tx, mut rx) = mpsc::channel::<(String, String, crate::media::Silence)>(1024);
            let cmd = handle.cmd.clone();
            tokio::spawn(async move {
                while let Some((relay, session, silence)) = rx.recv().await {
                    if cmd
                        .send(Cmd::MediaTimeout(relay, session, silence))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            tx
        },
        options,
        dns_wanted,
        stopping: false,
    };
    tokio::spawn(rt.run(cmd_rx, in_rx));
    handle
}

struct Runtime {
    engine: Engine,
    registry: Arc<Registry>,
    transports: Transports,
    relay_addrs: HashMap<String, Vec<String>>,
    handle: CallHandle,
    cmd_tx: mpsc::Sender<Cmd>,
    bind_errors: Vec<String>,
    /// EndCall requests waiting for their call's record.
    end_waiters: HashMap<CallId, oneshot::Sender<Result<CallView, EndRefused>>>,
    /// The tasks following the relays' event streams, by relay address.
    watchers: HashMap<String, tokio::task::AbortHandle>,
    /// Where they report media timeouts (forwarded to this runtime as commands, in order).
    timeouts: mpsc::Sender<(String, String, crate::media::Silence)>,
    options: Options,
    /// The names the topology uses, for the resolver task.
    dns_wanted: tokio::sync::watch::Sender<BTreeSet<Query>>,
    /// A graceful stop has begun (no new calls on any pool).
    stopping: bool,
}

impl Runtime {
    async fn run(mut self, mut cmd_rx: mpsc::Receiver<Cmd>, mut in_rx: mpsc::Receiver<Inbound>) {
        let mut tick = tokio::time::interval(RECONCILE);
        loop {
            let deadline = self
                .engine
                .next_deadline()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                Some(m) = in_rx.recv() => {
                    self.inbound(m);
                    // Drain what else is queued before looking at timers again.
                    for _ in 0..256 {
                        match in_rx.try_recv() {
                            Ok(m) => self.inbound(m),
                            Err(_) => break,
                        }
                    }
                }
                Some(c) = cmd_rx.recv() => self.command(c),
                _ = tokio::time::sleep_until(deadline) => {
                    let topology = self.registry.snapshot();
                    let actions = self.engine.on_timer(&topology, crate::clock::now());
                    self.act(actions);
                }
                _ = tick.tick() => self.reconcile(),
            }
        }
    }

    /// A message from a transport (or one of Mediator's that it could not deliver), handled on
    /// the current topology snapshot: a topology write in progress (validation, fsync) never
    /// holds it up.
    fn inbound(&mut self, m: Inbound) {
        let topology = self.registry.snapshot();
        let now = crate::clock::now();
        let actions = if m.undelivered {
            self.engine.on_transport_error(&topology, &m.bytes, now)
        } else {
            self.handle.metrics.sip(&m.bytes, false);
            self.engine.on_message(&topology, &m.bytes, m.peer, now)
        };
        self.act(actions);
    }

    fn command(&mut self, c: Cmd) {
        let now = crate::clock::now();
        match c {
            Cmd::Created { call, pool, result } => {
                let actions = self.engine.on_media_created(call, &pool, result, now);
                self.act(actions);
            }
            Cmd::List(tx) => {
                let _ = tx.send(self.engine.calls(now));
            }
            Cmd::Sessions(tx) => {
                let _ = tx.send(self.engine.media_sessions());
            }
            Cmd::Get(id, tx) => {
                let _ = tx.send(self.engine.call(id, now));
            }
            Cmd::MediaTimeout(relay, session, crate::media::Silence::Media) => {
                if self.options.media_timeout_ends_calls {
                    let actions = self.engine.on_media_timeout(&relay, &session, now);
                    self.act(actions);
                } else {
                    tracing::info!(relay, session, "media timeout (calls are not ended for it)");
                }
            }
            Cmd::MediaTimeout(relay, session, crate::media::Silence::Rtcp) => {
                // Asked of the relay only where the trunk's rtcp_active_calls or
                // rtcp_calls_on_hold is on.
                let actions = self.engine.on_rtcp_timeout(&relay, &session, now);
                self.act(actions);
            }
            Cmd::Dns(q, r) => {
                let topology = self.registry.snapshot();
                let actions = self.engine.on_dns(&topology, q, r, now);
                self.act(actions);
                self.transports
                    .set_peers(self.engine.peer_addresses(&topology));
                self.publish_dns();
                self.publish_health();
            }
            Cmd::UpdateGone(relay, session) => {
                if self
                    .engine
                    .media_sessions()
                    .contains(&(relay.clone(), session.clone()))
                {
                    tracing::warn!(
                        relay,
                        session,
                        "the relay no longer has a call's media session (restarted without it?): the call has no media"
                    );
                } else {
                    tracing::debug!(
                        relay,
                        session,
                        "a media session was gone before its update: its call had ended"
                    );
                }
            }
            Cmd::StopAccepting => {
                self.stopping = true;
                self.engine.stop_accepting();
            }
            Cmd::End(id, reason, tx) => match self.engine.end_call(id, &reason, now) {
                Ok(actions) => {
                    self.end_waiters.insert(id, tx);
                    self.act(actions);
                    // Its record went with the Ended action; were there none, answer now
                    // rather than leave the caller waiting.
                    if let Some(tx) = self.end_waiters.remove(&id) {
                        let _ = tx.send(Err(EndRefused::NotInProgress));
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            },
        }
    }

    /// Publishes the trunks' health for the API.
    fn publish_health(&self) {
        let now: HashMap<String, TrunkHealth> = self
            .engine
            .trunk_health()
            .into_iter()
            .map(|h| (h.trunk.clone(), h))
            .collect();
        if let Ok(mut h) = self.handle.health.lock() {
            *h = now;
        }
    }

    /// Publishes the DNS answers for the API, and the names TLS peers' certificates must bear.
    fn publish_dns(&mut self) {
        let all = self.engine.resolutions();
        let mut names = HashMap::new();
        for (q, r) in &all {
            if q.transport == Transport::Tls {
                for a in r.addresses() {
                    names.entry(a).or_insert_with(Vec::new).push(q.host.clone());
                }
            }
        }
        self.transports.set_server_names(names);
        if let Ok(mut d) = self.handle.dns.lock() {
            *d = all;
        }
    }

    fn reconcile(&mut self) {
        let topology = self.registry.snapshot();
        let actions = self.engine.on_topology(&topology, crate::clock::now());
        self.act(actions);
        // Before any listener binds: who may connect over TCP and TLS.
        self.transports
            .set_peers(self.engine.peer_addresses(&topology));
        // Once a second, not per message: the figures are the gate's, read under its lock.
        self.handle
            .metrics
            .connections(self.transports.gate.counts());
        let stopping = self.stopping;
        self.handle.metrics.pools(
            self.engine
                .calls_by_pool(&topology)
                .into_iter()
                .map(|(pool, calls, draining)| (pool, calls, draining || stopping))
                .collect(),
        );
        self.publish_health();
        let names = mediator_b2bua::dns::wanted(&topology);
        let changed = self.dns_wanted.send_if_modified(|w| {
            let changed = *w != names;
            *w = names;
            changed
        });
        if changed {
            self.publish_dns();
        }
        let (wanted, pools) = self.registry.read(|t| {
            let pools: HashMap<String, Vec<String>> = t
                .pools
                .values()
                .map(|p| (p.value.name.clone(), p.value.dataplanes.clone()))
                .collect();
            (listen_set(t), pools)
        });
        let errors = self.transports.reconcile(&wanted);
        if errors != self.bind_errors {
            for e in &errors {
                tracing::error!(error = %e, "cannot listen for SIP");
            }
            self.bind_errors = errors;
        }
        if pools != self.relay_addrs {
            // One event watcher per relay address: kept while the address is in use, so a
            // change elsewhere in the topology loses none of its events.
            let wanted: BTreeSet<&String> = pools.values().flatten().collect();
            self.watchers.retain(|addr, w| {
                let keep = wanted.contains(addr);
                if !keep {
                    w.abort();
                }
                keep
            });
            for addr in wanted {
                if !self.watchers.contains_key(addr) {
                    match crate::media::watch_relay(
                        addr,
                        MEDIA_TIMEOUT,
                        self.timeouts.clone(),
                        &self.options.relay_auth,
                    ) {
                        Ok(w) => {
                            self.watchers.insert(addr.clone(), w);
                        }
                        Err(e) => {
                            tracing::error!(relay = addr, error = %e, "cannot follow the relay's events")
                        }
                    }
                }
            }
            let mut map = HashMap::new();
            for (pool, addrs) in &pools {
                match Relays::new(
                    addrs,
                    MEDIA_TIMEOUT,
                    self.options.lease.clone(),
                    &self.options.relay_auth,
                ) {
                    Ok(r) => {
                        map.insert(pool.clone(), Arc::new(r));
                    }
                    Err(e) => tracing::error!(pool, error = %e, "bad dataplane address"),
                }
            }
            if let Ok(mut r) = self.handle.relays.lock() {
                *r = map;
            }
            self.relay_addrs = pools;
        }
    }

    fn relays(&self, pool: &str) -> Option<Arc<Relays>> {
        self.handle.relays_of(pool)
    }

    fn act(&mut self, actions: Vec<Action>) {
        self.handle.metrics.engine(
            self.engine.active_calls(),
            self.engine.transactions(),
            self.engine.refused_counts(),
            (
                self.engine.calls_refused(),
                self.engine.calls_refused_draining(),
            ),
        );

        let mut health_changed = false;
        for a in actions {
            match a {
                Action::TrunkState(c) => {
                    match c.state {
                        TrunkState::Down => {
                            tracing::warn!(trunk = %c.trunk, gateway = %c.gateway, why = %c.why, "trunk down: calls skip it until its gateway answers OPTIONS")
                        }
                        _ => {
                            tracing::info!(trunk = %c.trunk, gateway = %c.gateway, why = %c.why, state = c.state.name(), "trunk up")
                        }
                    }
                    // No watcher is no error.
                    let _ = self.handle.health_events.send(*c);
                    health_changed = true;
                }
                Action::Send { to, bytes } => {
                    self.handle.metrics.sip(&bytes, true);
                    self.transports.send(to, bytes)
                }
                Action::CreateMedia {
                    call,
                    pool,
                    requests,
                } => {
                    let relays = self.relays(&pool);
                    let tx = self.cmd_tx.clone();
                    tokio::spawn(async move {
                        let result = create_all(relays, requests).await;
                        let _ = tx.send(Cmd::Created { call, pool, result }).await;
                    });
                }
                Action::UpdateMedia {
                    pool,
                    relay,
                    request,
                } => {
                    let Some(relays) = self.relays(&pool) else {
                        continue;
                    };
                    let cmd = self.cmd_tx.clone();
                    tokio::spawn(async move {
                        let session = request.session_id.clone();
                        match relays
                            .update_session(&relay, update_request(*request))
                            .await
                        {
                            Ok(_) => {}
                            // Updates and deletes run side by side: a call that ended at once
                            // (a peer's BYE right after its ACK) may have had its session
                            // deleted first — the runtime tells that apart from a relay that
                            // lost a live call's session.
                            Err(crate::media::MediaError::Refused { status, .. })
                                if status.code() == tonic::Code::NotFound =>
                            {
                                let _ = cmd.send(Cmd::UpdateGone(relay, session)).await;
                            }
                            Err(e) => {
                                tracing::warn!(relay, error = %e, "updating a media session failed")
                            }
                        }
                    });
                }
                Action::DeleteMedia { pool, sessions } => {
                    let relays = self.relays(&pool);
                    tokio::spawn(async move {
                        if let Some(r) = relays {
                            for (relay, id) in sessions {
                                let _ = r.delete_session(&relay, &id).await;
                            }
                        }
                    });
                }
                Action::HandOverMedia { pool, sessions } => {
                    let relays = self.relays(&pool);
                    tokio::spawn(async move {
                        let Some(r) = relays else { return };
                        for (relay, id, heir) in sessions {
                            if let Err(e) = r.delete_session_to(&relay, &id, Some(&heir)).await {
                                tracing::warn!(relay, session = id, heir, error = %e, "handing a session's ports to its fork failed");
                            }
                        }
                    });
                }
                Action::Ended {
                    record,
                    pool,
                    sessions,
                } => {
                    self.handle.metrics.ended(&record);
                    let relays = self.relays(&pool);
                    let recent = self.handle.recent.clone();
                    let waiter = self.end_waiters.remove(&record.id);
                    tokio::spawn(async move {
                        let mut record = CallView::without_media(*record);
                        if let Some(r) = relays {
                            for (relay, id) in sessions {
                                let last = r.delete_session(&relay, &id).await;
                                if let Some(i) =
                                    record.info.streams.iter().position(|s| s.session_id == id)
                                {
                                    record.media[i] = last.ok();
                                }
                            }
                        }
                        log_record(&record);
                        // In the recent calls before EndCall returns it.
                        if let Ok(mut q) = recent.lock() {
                            if q.len() >= RECENT {
                                q.pop_front();
                            }
                            q.push_back(record.clone());
                        }
                        if let Some(w) = waiter {
                            let _ = w.send(Ok(record));
                        }
                    });
                }
            }
        }
        if health_changed {
            self.publish_health();
        }
    }
}

async fn create_all(
    relays: Option<Arc<Relays>>,
    requests: Vec<MediaRequest>,
) -> Result<Vec<(String, MediaAnswer)>, (u16, String)> {
    let Some(relays) = relays else {
        return Err((503, "the pool has no media relays configured".into()));
    };
    let mut made: Vec<(String, pb::Session)> = Vec::new();
    for req in requests {
        // A fork is made where the session it forks lives.
        let answer = match req.fork_of.clone() {
            Some((relay, _)) => relays.create_session_on(&relay, create_request(req)).await,
            None => relays.create_session(create_request(req)).await,
        };
        match answer {
            Ok(s) => made.push(s),
            Err(e) => {
                for (relay, s) in &made {
                    let _ = relays.delete_session(relay, &s.session_id).await;
                }
                return Err((e.sip_status(), e.to_string()));
            }
        }
    }
    Ok(made
        .iter()
        .map(|(relay, s)| (relay.clone(), media_answer(s)))
        .collect())
}

/// Packets, loss and jitter of a stream's session in one line of figures.
pub fn media_summary(s: &pb::Session) -> String {
    s.streams
        .iter()
        .map(|f| {
            let c = f.counters.unwrap_or_default();
            let (lost, jitter) = f.rtp.map(|r| (r.lost, r.jitter_ms)).unwrap_or((0, 0.0));
            format!(
                "{}:{} {} pkts (xdp {}, user {}) lost {} jitter {:.2}ms",
                pb::Side::try_from(f.from_side)
                    .map(|s| s.as_str_name())
                    .unwrap_or("?"),
                pb::StreamKind::try_from(f.kind)
                    .map(|k| k.as_str_name())
                    .unwrap_or("?"),
                c.packets,
                c.xdp_packets,
                c.userspace_packets,
                lost,
                jitter
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The end-of-call record as one structured log line.
fn log_record(view: &CallView) {
    let r = &view.info;
    let media: Vec<String> = r
        .streams
        .iter()
        .zip(&view.media)
        .map(|(s, m)| match m {
            Some(sess) => format!("#{} {}", s.index, media_summary(sess)),
            None => format!("#{} (no figures: relay did not answer)", s.index),
        })
        .collect();
    let attempts: Vec<String> = r.attempts.iter().map(|(t, s)| format!("{t}:{s}")).collect();
    tracing::info!(
        target: "mediator::cdr",
        call = r.id,
        direction = r.direction,
        pool = %r.pool,
        trunk = %r.trunk,
        route = %r.route,
        caller = %r.caller,
        dialed = %r.dialed,
        calling = %r.calling,
        called = %r.called,
        attempts = %attempts.join(","),
        answered = r.answered_unix_ms.is_some(),
        duration_ms = r.duration_ms,
        status = r.status,
        end_reason = %r.end_reason,
        media_bypass = r.media_bypass,
        media = %media.join(" | "),
        "call record"
    );
}

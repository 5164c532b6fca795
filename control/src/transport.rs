//! SIP transports, the I/O edge: UDP sockets and TCP and TLS listeners on every address the
//! topology defines, TCP and TLS connections (accepted or opened on demand, framed with
//! `mediator_sip::framing`; TLS verifies the peer against the configured CAs), and
//! one channel of [`Inbound`] messages for the engine. Bounded everywhere: a datagram is at most
//! 64 KiB, a TCP peer that sends an unframeable stream is disconnected, and a full engine queue
//! drops UDP (the peer retransmits) rather than growing. A TCP or TLS connection is accepted only
//! from a configured peer of the address it reached, within [`MAX_CONNECTIONS`] in all and
//! [`MAX_PER_SOURCE`] per address (the [`Gate`]); it is closed when idle for [`IDLE`] or when a
//! message has been arriving for longer than [`PARTIAL`] (slowloris).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::tls::Tls;
use mediator_sip::Peer;
use mediator_sip::Transport;
use mediator_sip::framing::{Frame, Framer};

/// A message (or a datagram that may be one) from a peer — or, `undelivered`, one of Mediator's
/// own that could not be sent to it (its TCP/TLS connection or handshake failed).
#[derive(Debug)]
pub(crate) struct Inbound {
    pub bytes: Vec<u8>,
    pub peer: Peer,
    pub undelivered: bool,
}

impl Inbound {
    fn from(peer: Peer, bytes: Vec<u8>) -> Inbound {
        Inbound {
            bytes,
            peer,
            undelivered: false,
        }
    }
}

/// Messages queued toward one TCP connection at most; beyond it the connection is too slow and
/// further messages are dropped (logged).
const CONN_QUEUE: usize = 1024;

type Conns = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>;

/// Accepted TCP and TLS connections held at once, at most.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// The same from one address (a Front End pool behind one address opens a handful).
pub(crate) const MAX_PER_SOURCE: usize = 32;
/// A connection with no byte for this long is closed (peers keep theirs with CRLF pings).
pub(crate) const IDLE: Duration = Duration::from_secs(15 * 60);
/// A message may take this long to arrive whole; longer, its connection is closed (slowloris).
pub(crate) const PARTIAL: Duration = Duration::from_secs(30);

/// File descriptors kept out of reach of SIP connections: the gRPC and metrics APIs, the relay
/// clients, UDP sockets, DNS and the store go on working when peers hold every connection they
/// may.
pub(crate) const FD_RESERVE: u64 = 256;

/// The connections a process allowed `nofile` open files may hold: [`MAX_CONNECTIONS`], or
/// fewer so that [`FD_RESERVE`] stay free (at least 16, so a small limit still takes calls).
pub(crate) fn connection_cap(nofile: u64) -> usize {
    let room = nofile.saturating_sub(FD_RESERVE).max(16);
    usize::try_from(room).map_or(MAX_CONNECTIONS, |r| r.min(MAX_CONNECTIONS))
}

/// Whether a connection may be accepted: from a configured peer of the address it reached
/// (`known`), with fewer than `cap` held in all (`total`, see [`connection_cap`]) and
/// [`MAX_PER_SOURCE`] from its address (`from_source`). Why not, otherwise.
fn admit(known: bool, total: usize, cap: usize, from_source: usize) -> Result<(), &'static str> {
    if !known {
        Err("not a configured peer of this address")
    } else if total >= cap {
        Err("connections at their limit")
    } else if from_source >= MAX_PER_SOURCE {
        Err("connections from this address at their limit")
    } else {
        Ok(())
    }
}

/// Who may hold an accepted connection, and how many are held (see [`admit`]).
pub(crate) struct Gate {
    /// (listening address, transport, peer IP) of every configured peer.
    peers: RwLock<HashSet<(SocketAddr, Transport, IpAddr)>>,
    held: Mutex<HeldCounts>,
    refused: AtomicU64,
    /// Connections held at most ([`connection_cap`] of the open-files limit at start).
    cap: usize,
}

/// Connections held, by address and in all.
#[derive(Default)]
struct HeldCounts {
    by_ip: HashMap<IpAddr, usize>,
    total: usize,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::with_cap(MAX_CONNECTIONS)
    }
}

/// An accepted connection's place at the [`Gate`], given back when it closes.
pub(crate) struct Held {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut h) = self.gate.held.lock()
            && let Some(n) = h.by_ip.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                h.by_ip.remove(&self.ip);
            }
            h.total -= 1;
        }
    }
}

impl Gate {
    pub(crate) fn with_cap(cap: usize) -> Gate {
        Gate {
            peers: RwLock::default(),
            held: Mutex::default(),
            refused: AtomicU64::new(0),
            cap,
        }
    }

    fn try_hold(self: &Arc<Self>, listen: Peer, remote: IpAddr) -> Result<Held, &'static str> {
        let known = self
            .peers
            .read()
            .is_ok_and(|p| p.contains(&(listen.local, listen.transport, remote)));
        let Ok(mut held) = self.held.lock() else {
            return Err("internal lock poisoned");
        };
        let from_source = held.by_ip.get(&remote).copied().unwrap_or(0);
        let verdict = admit(known, held.total, self.cap, from_source);
        if verdict.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        verdict?;
        *held.by_ip.entry(remote).or_insert(0) += 1;
        held.total += 1;
        Ok(Held {
            gate: self.clone(),
            ip: remote,
        })
    }

    /// (connections held, connections refused since start).
    pub(crate) fn counts(&self) -> (usize, u64) {
        let held = self.held.lock().map_or(0, |h| h.total);
        (held, self.refused.load(Ordering::Relaxed))
    }
}

/// RFC 3261 §18.1.1: a request over 1300 bytes (the path MTU being unknown) must go over a
/// congestion-controlled transport. The engine moves it to TCP where the trunk's
/// `large_requests_over_tcp` says so; one still sent over UDP is logged once per peer.
use mediator_sip::message::UDP_REQUEST_LIMIT;
/// Peers remembered for that log line, at most.
const OVERSIZE_PEERS: usize = 1024;

/// Whether `bytes` to `to` is a request over [`UDP_REQUEST_LIMIT`] not yet logged for that peer
/// (and remembers it).
fn first_oversize(
    logged: &mut std::collections::HashSet<SocketAddr>,
    to: SocketAddr,
    bytes: &[u8],
) -> bool {
    bytes.len() > UDP_REQUEST_LIMIT
        && !bytes.starts_with(b"SIP/2.0 ")
        && logged.len() < OVERSIZE_PEERS
        && logged.insert(to)
}

pub(crate) struct Transports {
    /// Peers already told of in the log for a request over [`UDP_REQUEST_LIMIT`].
    oversize_logged: std::collections::HashSet<SocketAddr>,
    udp: HashMap<SocketAddr, (Arc<UdpSocket>, JoinHandle<()>)>,
    tcp: HashMap<SocketAddr, JoinHandle<()>>,
    tls_listeners: HashMap<SocketAddr, JoinHandle<()>>,
    tls: Option<Tls>,
    conns: Conns,
    tx: mpsc::Sender<Inbound>,
    /// The FQDNs each TLS address was resolved from: its certificate must name every one of
    /// them (RFC 5922), sorted (the first is the handshake's SNI).
    server_names: HashMap<SocketAddr, Vec<String>>,
    pub(crate) gate: Arc<Gate>,
}

/// This process's open-files limit (soft), after raising it to the hard limit where allowed.
fn open_files_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Bursts of call setups: a larger buffer rides them out instead of dropping.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

impl Transports {
    /// `tls`: Mediator's certificate and trusted CAs; without it TLS addresses cannot listen.
    pub(crate) fn new(tx: mpsc::Sender<Inbound>, tls: Option<Tls>) -> Transports {
        Transports {
            oversize_logged: std::collections::HashSet::new(),
            udp: HashMap::new(),
            tcp: HashMap::new(),
            tls_listeners: HashMap::new(),
            tls,
            conns: Arc::new(Mutex::new(HashMap::new())),
            tx,
            server_names: HashMap::new(),
            gate: {
                let nofile = open_files_limit();
                let cap = connection_cap(nofile);
                tracing::info!(
                    open_files = nofile,
                    connections = cap,
                    reserve = FD_RESERVE,
                    "SIP TCP/TLS connections held at most (the open-files limit less a reserve)"
                );
                Arc::new(Gate::with_cap(cap))
            },
        }
    }

    /// Who may connect: (listening address, transport, peer IP) of every configured peer.
    pub(crate) fn set_peers(&mut self, peers: HashSet<(SocketAddr, Transport, IpAddr)>) {
        if let Ok(mut p) = self.gate.peers.write()
            && *p != peers
        {
            *p = peers;
        }
    }

    /// The names TLS connections verify certificates against, by address (from DNS answers);
    /// an address not listed is verified against itself (an IP address in the certificate).
    pub(crate) fn set_server_names(&mut self, mut names: HashMap<SocketAddr, Vec<String>>) {
        for v in names.values_mut() {
            v.sort();
            v.dedup();
        }
        // A connection verified against other names than an address now stands for is not
        // used again: the next request there opens one checked against every name.
        let changed: Vec<SocketAddr> = names
            .iter()
            .filter(|(a, v)| self.server_names.get(a) != Some(v))
            .map(|(a, _)| *a)
            .collect();
        if !changed.is_empty()
            && let Ok(mut c) = self.conns.lock()
        {
            for a in changed {
                c.remove(&a);
            }
        }
        self.server_names = names;
    }

    /// Listens on exactly `wanted`: binds what is new, closes what is gone. Returns an error per
    /// address that cannot be bound (the rest still listen).
    pub(crate) fn reconcile(&mut self, wanted: &BTreeSet<(SocketAddr, Transport)>) -> Vec<String> {
        let mut errors = Vec::new();
        self.udp.retain(|a, (_, task)| {
            let keep = wanted.contains(&(*a, Transport::Udp));
            if !keep {
                task.abort();
                tracing::info!(listen = %a, "SIP/UDP closed");
            }
            keep
        });
        self.tcp.retain(|a, task| {
            let keep = wanted.contains(&(*a, Transport::Tcp));
            if !keep {
                task.abort();
                tracing::info!(listen = %a, "SIP/TCP closed");
            }
            keep
        });
        self.tls_listeners.retain(|a, task| {
            let keep = wanted.contains(&(*a, Transport::Tls));
            if !keep {
                task.abort();
                tracing::info!(listen = %a, "SIP/TLS closed");
            }
            keep
        });
        for (addr, transport) in wanted {
            match transport {
                Transport::Udp if !self.udp.contains_key(addr) => match udp_socket(*addr) {
                    Ok(sock) => {
                        let sock = Arc::new(sock);
                        let task = tokio::spawn(udp_loop(sock.clone(), *addr, self.tx.clone()));
                        tracing::info!(listen = %addr, "SIP/UDP listening");
                        self.udp.insert(*addr, (sock, task));
                    }
                    Err(e) => errors.push(format!("udp {addr}: {e}")),
                },
                Transport::Tcp if !self.tcp.contains_key(addr) => match tcp_listener(addr) {
                    Ok(l) => {
                        let task = tokio::spawn(accept_loop(
                            l,
                            Peer {
                                remote: *addr,
                                local: *addr,
                                transport: Transport::Tcp,
                            },
                            None,
                            self.conns.clone(),
                            self.tx.clone(),
                            self.gate.clone(),
                        ));
                        tracing::info!(listen = %addr, "SIP/TCP listening");
                        self.tcp.insert(*addr, task);
                    }
                    Err(e) => errors.push(format!("tcp {addr}: {e}")),
                },
                Transport::Tls if !self.tls_listeners.contains_key(addr) => {
                    let Some(tls) = &self.tls else {
                        errors.push(format!(
                            "tls {addr}: no TLS certificate configured (tls_certificate, tls_private_key, tls_ca)"
                        ));
                        continue;
                    };
                    match tcp_listener(addr) {
                        Ok(l) => {
                            let task = tokio::spawn(accept_loop(
                                l,
                                Peer {
                                    remote: *addr,
                                    local: *addr,
                                    transport: Transport::Tls,
                                },
                                Some(tls.clone()),
                                self.conns.clone(),
                                self.tx.clone(),
                                self.gate.clone(),
                            ));
                            tracing::info!(listen = %addr, "SIP/TLS listening");
                            self.tls_listeners.insert(*addr, task);
                        }
                        Err(e) => errors.push(format!("tls {addr}: {e}")),
                    }
                }
                _ => {}
            }
        }
        errors
    }

    /// Sends `bytes` to `to` over its transport, from its local address.
    pub(crate) fn send(&mut self, to: Peer, bytes: Vec<u8>) {
        match to.transport {
            Transport::Udp => {
                if first_oversize(&mut self.oversize_logged, to.remote, &bytes) {
                    tracing::warn!(
                        to = %to.remote,
                        bytes = bytes.len(),
                        "a request over 1300 bytes goes over UDP (RFC 3261 §18.1.1 asks for TCP; \
                         the trunk's large_requests_over_tcp is off): fragments may be lost on the \
                         way (logged once per peer)"
                    );
                }
                let Some((sock, _)) = self.udp.get(&to.local) else {
                    tracing::warn!(local = %to.local, "no UDP socket to send from");
                    return;
                };
                if let Err(e) = sock.try_send_to(&bytes, to.remote) {
                    tracing::debug!(to = %to.remote, error = %e, "UDP send failed (retransmission will retry)");
                }
            }
            Transport::Tcp | Transport::Tls => {
                let existing = self
                    .conns
                    .lock()
                    .ok()
                    .and_then(|c| c.get(&to.remote).cloned());
                match existing {
                    Some(q) => {
                        if q.try_send(bytes).is_err() {
                            tracing::warn!(to = %to.remote, "TCP connection queue full or closed; message dropped");
                        }
                    }
                    None if to.transport == Transport::Tls && self.tls.is_none() => {
                        tracing::warn!(to = %to.remote, "no TLS certificate configured: cannot connect");
                        let _ = self.tx.try_send(Inbound {
                            bytes,
                            peer: to,
                            undelivered: true,
                        });
                    }
                    None => {
                        tokio::spawn(connect(
                            to,
                            self.server_names
                                .get(&to.remote)
                                .cloned()
                                .unwrap_or_default(),
                            bytes,
                            self.tls.clone(),
                            self.conns.clone(),
                            self.tx.clone(),
                        ));
                    }
                }
            }
        }
    }
}

async fn udp_loop(sock: Arc<UdpSocket>, local: SocketAddr, tx: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                // Keep-alives (CRLF) and runts are not messages.
                if n < 4 {
                    continue;
                }
                let peer = Peer {
                    remote: from,
                    local,
                    transport: Transport::Udp,
                };
                let msg = Inbound::from(peer, buf[..n].to_vec());
                if tx.try_send(msg).is_err() {
                    tracing::debug!("engine queue full; datagram dropped");
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive error");
            }
        }
    }
}

fn tcp_listener(addr: &SocketAddr) -> std::io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts connections on `listen` (its local address and transport), with TLS when `tls` is set.
async fn accept_loop(
    l: TcpListener,
    listen: Peer,
    tls: Option<Tls>,
    conns: Conns,
    tx: mpsc::Sender<Inbound>,
    gate: Arc<Gate>,
) {
    let mut backoff = Duration::from_millis(10);
    let mut failures_log = mediator_b2bua::log_budget::LogBudget::default();
    loop {
        match l.accept().await {
            Ok((stream, remote)) => {
                backoff = Duration::from_millis(10);
                // Refused before a byte is read: a stranger costs a count, no task, no log.
                let Ok(held) = gate.try_hold(listen, remote.ip()) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let peer = Peer { remote, ..listen };
                let (conns, tx) = (conns.clone(), tx.clone());
                match &tls {
                    None => {
                        tokio::spawn(async move {
                            run_conn(stream, peer, conns, tx, None).await;
                            drop(held);
                        });
                    }
                    Some(tls) => {
                        let acceptor = tls.acceptor.clone();
                        tokio::spawn(async move {
                            let _held = held;
                            match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => run_conn(s, peer, conns, tx, None).await,
                                Ok(Err(e)) => {
                                    tracing::info!(peer = %remote, error = %e, "TLS handshake failed")
                                }
                                Err(_) => tracing::info!(peer = %remote, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors, typically: back off (up to a second) instead of
                // spinning on a listener that stays readable.
                if let Some(left_out) = failures_log.allow(std::time::Instant::now()) {
                    tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, left_out, "TCP accept failed");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Opens a connection to `to` from its local address (an ephemeral port), over TLS when its
/// transport is TLS, and sends `first`. The peer's certificate must be valid for every one of
/// `names` (the FQDNs its address was resolved from; the first is sent as SNI) or, without any,
/// for its IP address.
async fn connect(
    to: Peer,
    names: Vec<String>,
    first: Vec<u8>,
    tls: Option<Tls>,
    conns: Conns,
    tx: mpsc::Sender<Inbound>,
) {
    let socket = match to.remote {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    };
    let result = async {
        let s = socket?;
        s.bind(SocketAddr::new(to.local.ip(), 0))?;
        tokio::time::timeout(std::time::Duration::from_secs(5), s.connect(to.remote))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
    }
    .await;
    let stream = match result {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(to = %to.remote, error = %e, "SIP/TCP connect failed");
            return undelivered(&tx, to, first).await;
        }
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls.filter(|_| to.transport == Transport::Tls) else {
        return run_conn(stream, to, conns, tx, Some(first)).await;
    };
    let name = names.first().cloned();
    let shown = name.clone().unwrap_or_else(|| to.remote.ip().to_string());
    let server = match name.and_then(|n| rustls::pki_types::ServerName::try_from(n).ok()) {
        Some(n) => n,
        None => rustls::pki_types::ServerName::IpAddress(to.remote.ip().into()),
    };
    match tokio::time::timeout(HANDSHAKE, tls.connector.connect(server, stream)).await {
        Ok(Ok(s)) => {
            // Every other name this address stands for: a certificate for one configured name
            // must not carry calls meant for another that resolved to the same place.
            let certs = s.get_ref().1.peer_certificates().unwrap_or_default();
            for other in names.iter().skip(1) {
                if let Err(e) = tls.valid_for(certs, other) {
                    tracing::warn!(to = %to.remote, name = %other, error = %e, "TLS: the certificate does not name every configured name of this address");
                    return undelivered(&tx, to, first).await;
                }
            }
            run_conn(s, to, conns, tx, Some(first)).await
        }
        Ok(Err(e)) => {
            tracing::warn!(to = %to.remote, name = %shown, error = %e, "TLS handshake failed");
            undelivered(&tx, to, first).await
        }
        Err(_) => {
            tracing::warn!(to = %to.remote, name = %shown, "TLS handshake timed out");
            undelivered(&tx, to, first).await
        }
    }
}

/// Tells the engine that `bytes` never reached `to` (their transaction fails at once, as a 503).
async fn undelivered(tx: &mpsc::Sender<Inbound>, to: Peer, bytes: Vec<u8>) {
    let _ = tx
        .send(Inbound {
            bytes,
            peer: to,
            undelivered: true,
        })
        .await;
}

async fn run_conn<S>(
    stream: S,
    peer: Peer,
    conns: Conns,
    tx: mpsc::Sender<Inbound>,
    first: Option<Vec<u8>>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (qtx, mut qrx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
    if let Some(f) = first {
        let _ = qtx.try_send(f);
    }
    let pong = qtx.clone();
    if let Ok(mut c) = conns.lock() {
        c.insert(peer.remote, qtx);
    }
    let writer = tokio::spawn(async move {
        while let Some(b) = qrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    /// How long a connection whose stream cannot be framed stays open for the answers to what
    /// came before the error.
    const UNFRAMEABLE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 16 * 1024];
    // When the message now arriving began to (None: between messages).
    let mut partial_since: Option<tokio::time::Instant> = None;
    'read: loop {
        let limit = match partial_since {
            Some(t) => (t + PARTIAL).saturating_duration_since(tokio::time::Instant::now()),
            None => IDLE,
        };
        let n = match tokio::time::timeout(limit, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                let why = if partial_since.is_some() {
                    "a message took too long to arrive"
                } else {
                    "idle"
                };
                tracing::debug!(peer = %peer.remote, why, "closing a SIP/TCP connection");
                break;
            }
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => {
                    if tx.send(Inbound::from(peer, bytes)).await.is_err() {
                        break 'read;
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    let _ = pong.try_send(b"\r\n".to_vec());
                }
                Ok(None) => {
                    partial_since = match (framer.is_between_messages(), partial_since) {
                        (true, _) => None,
                        (false, None) => Some(tokio::time::Instant::now()),
                        (false, since) => since,
                    };
                    break;
                }
                Err(e) => {
                    tracing::info!(peer = %peer.remote, error = ?e, "closing a SIP/TCP connection: unframeable stream");
                    // The messages framed before the error are still being answered: their
                    // responses go out on this connection before it closes (bounded).
                    tokio::time::sleep(UNFRAMEABLE_LINGER).await;
                    break 'read;
                }
            }
        }
    }
    writer.abort();
    if let Ok(mut c) = conns.lock()
        && c.get(&peer.remote).is_some_and(|q| q.same_channel(&pong))
    {
        // Only this connection's own entry: a newer one to the same address stays.
        c.remove(&peer.remote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_admitted_from_configured_peers_within_the_limits() {
        let cap = MAX_CONNECTIONS;
        assert_eq!(
            admit(false, 0, cap, 0),
            Err("not a configured peer of this address")
        );
        assert_eq!(admit(true, 0, cap, 0), Ok(()));
        assert!(admit(true, MAX_CONNECTIONS, cap, 0).is_err());
        assert!(admit(true, 10, cap, MAX_PER_SOURCE).is_err());
        assert!(admit(true, 100, 100, 0).is_err(), "a smaller cap");
        // The open-files limit leaves FD_RESERVE for everything else.
        assert_eq!(connection_cap(1 << 20), MAX_CONNECTIONS);
        assert_eq!(connection_cap(1024), 1024 - FD_RESERVE as usize);
        assert_eq!(connection_cap(100), 16, "a floor, so calls still come in");

        let gate = Arc::new(Gate::default());
        let listen = Peer {
            remote: "198.18.2.1:5068".parse().expect("addr"),
            local: "198.18.2.1:5068".parse().expect("addr"),
            transport: Transport::Tcp,
        };
        let (gw, stranger): (IpAddr, IpAddr) = (
            "198.18.2.2".parse().expect("ip"),
            "198.18.2.99".parse().expect("ip"),
        );
        gate.peers
            .write()
            .expect("lock")
            .insert((listen.local, Transport::Tcp, gw));
        assert!(gate.try_hold(listen, stranger).is_err(), "a stranger");
        let tls = Peer {
            transport: Transport::Tls,
            ..listen
        };
        assert!(gate.try_hold(tls, gw).is_err(), "another transport");
        let held: Vec<Held> = (0..MAX_PER_SOURCE)
            .map(|_| gate.try_hold(listen, gw).expect("within the limit"))
            .collect();
        assert!(gate.try_hold(listen, gw).is_err(), "one too many");
        assert_eq!(gate.counts(), (MAX_PER_SOURCE, 3));
        drop(held);
        assert_eq!(gate.counts().0, 0, "given back on close");
        assert!(gate.try_hold(listen, gw).is_ok());
    }

    #[test]
    fn an_oversize_udp_request_is_noted_once_per_peer() {
        let mut logged = std::collections::HashSet::new();
        let a: SocketAddr = "198.18.2.2:5060".parse().expect("addr");
        let b: SocketAddr = "198.18.2.3:5060".parse().expect("addr");
        let big = [b"INVITE sip:x SIP/2.0\r\n".as_slice(), &[b'x'; 1400]].concat();
        let resp = [b"SIP/2.0 200 OK\r\n".as_slice(), &[b'x'; 1400]].concat();
        assert!(
            !first_oversize(&mut logged, a, b"INVITE sip:x SIP/2.0\r\n"),
            "small"
        );
        assert!(!first_oversize(&mut logged, a, &resp), "a response");
        assert!(first_oversize(&mut logged, a, &big));
        assert!(!first_oversize(&mut logged, a, &big), "once per peer");
        assert!(first_oversize(&mut logged, b, &big));
    }

    /// A connection to an address whose configured names changed is not used again (it was
    /// verified against other names); one whose names stay is.
    #[tokio::test]
    async fn a_connection_is_dropped_from_use_when_its_address_gains_a_name() {
        let (tx, _rx) = mpsc::channel(1);
        let mut t = Transports::new(tx, None);
        let (a, b): (SocketAddr, SocketAddr) = (
            "198.18.2.2:5061".parse().expect("addr"),
            "198.18.2.3:5061".parse().expect("addr"),
        );
        let names = |v: &[(SocketAddr, &str)]| {
            let mut m: HashMap<SocketAddr, Vec<String>> = HashMap::new();
            for (addr, n) in v {
                m.entry(*addr).or_default().push(n.to_string());
            }
            m
        };
        t.set_server_names(names(&[(a, "tls.lab.test"), (b, "b.lab.test")]));
        let (qa, _ra) = mpsc::channel(1);
        let (qb, _rb) = mpsc::channel(1);
        t.conns.lock().expect("conns").insert(a, qa);
        t.conns.lock().expect("conns").insert(b, qb);
        t.set_server_names(names(&[
            (a, "tls.lab.test"),
            (a, "alias.lab.test"),
            (b, "b.lab.test"),
        ]));
        let c = t.conns.lock().expect("conns");
        assert!(!c.contains_key(&a), "verified against one name of two");
        assert!(c.contains_key(&b), "its names did not change");
    }
}

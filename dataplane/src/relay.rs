//! The userspace relay: one task per relay socket, batched with `recvmmsg`/`sendmmsg`.
//!
//! It forwards every stream that is not offloaded and every packet XDP passes up (a new source, a
//! missing neighbour). Under overload it sheds evenly: each task reads at most one batch per turn
//! and then yields, so every socket is served in turn and the kernel drops the excess on each
//! socket's own queue (counted through SO_RXQ_OVFL). No socket is ever left unread: a stream that
//! overflowed forwards again as soon as the load falls.

use std::cell::RefCell;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::session::{Kind, Media, Side, StreamId, Verdict};
use crate::srtp_stream::{StreamCrypto, StreamKind};
use crate::stats::monotonic_ns;

const BATCH: usize = 32;
/// The largest UDP payload: fragmented datagrams the kernel reassembled are relayed whole.
const BUF: usize = 65536;
const CTRL: usize = 64;

/// What relay tasks tell the session manager.
#[derive(Debug)]
pub enum Notice {
    /// A stream (re)learned its source: the session may now be offloaded, or must be re-offloaded.
    Learned(String),
}

/// A session's state shared between its relay tasks and the manager.
pub struct SessionShared {
    pub id: String,
    pub created_unix_ms: u64,
    pub media: Mutex<Media>,
    /// Set (under the media lock) when the session is being deleted: no more offloads.
    pub deleted: AtomicBool,
    pub notify: mpsc::UnboundedSender<Notice>,
    /// Each side's SRTP keys (pool, gateway), kept to re-make the contexts on a re-key.
    pub keys: Mutex<[Option<Arc<crate::manager::LegSrtp>>; 2]>,
    /// Each stream's SRTP work, by `StreamId::index`; only its own relay task (and a re-key)
    /// takes its lock.
    pub crypto: [Mutex<StreamCrypto>; 4],
    /// Early dialogs of a forked INVITE sharing this session's gateway-side ports; `has_forks`
    /// spares the relay the lock when there are none.
    pub forks: Mutex<Vec<Fork>>,
    pub has_forks: AtomicBool,
    /// A digest of the userspace counters as last written to the record, and when (monotonic
    /// ns; see `Dataplane::flush_counters`).
    pub flushed: std::sync::atomic::AtomicU64,
    pub flushed_at: std::sync::atomic::AtomicU64,
}

/// A fork as the session whose gateway-side ports it shares sees it: what arrives there from
/// the fork's source is decided by the fork's own state and leaves by its own pool-side socket.
#[derive(Clone)]
pub struct Fork {
    pub shared: Arc<SessionShared>,
    /// Its pool-side sockets by `Kind` (RTP, RTCP; with rtcp-mux both the RTP one).
    pub tx: [Arc<UdpSocket>; 2],
}

/// Binds a non-blocking UDP socket for relaying on `addr`, with SO_RXQ_OVFL on and the relay's
/// TTL / hop limit.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The same TTL / hop limit as XDP writes, whatever the host's default (abi::RELAY_TTL).
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
        sock.set_unicast_hops_v6(u32::from(crate::abi::RELAY_TTL))?;
    } else {
        sock.set_ttl_v4(u32::from(crate::abi::RELAY_TTL))?;
    }
    sock.set_nonblocking(true)?;
    // Room for bursts: past net.core.rmem_max when privileged (SO_RCVBUFFORCE), else up to it.
    if setsockopt_int(&sock, libc::SO_RCVBUFFORCE, RECV_BUFFER).is_err() {
        let _ = sock.set_recv_buffer_size(RECV_BUFFER as usize);
    }
    setsockopt_int(&sock, libc::SO_RXQ_OVFL, 1)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

const RECV_BUFFER: libc::c_int = 1 << 20;

fn setsockopt_int(sock: &Socket, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads an int of the size we pass from a live local.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A control-message buffer aligned for `cmsghdr`, which the CMSG macros read through.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Ctrl([u8; CTRL]);

struct Batch {
    bufs: Vec<[u8; BUF]>,
    names: [libc::sockaddr_storage; BATCH],
    iovs: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    ctrl: [Ctrl; BATCH],
    out_names: [libc::sockaddr_storage; BATCH],
    out_iovs: [libc::iovec; BATCH],
    out_hdrs: [libc::mmsghdr; BATCH],
    /// (buffer index, destination) of what is to be sent.
    out: Vec<(usize, SocketAddr)>,
}

impl Batch {
    fn new() -> Self {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero is valid.
        unsafe {
            Self {
                bufs: (0..BATCH).map(|_| [0; BUF]).collect(),
                names: zeroed(),
                iovs: zeroed(),
                hdrs: zeroed(),
                ctrl: [Ctrl([0; CTRL]); BATCH],
                out_names: zeroed(),
                out_iovs: zeroed(),
                out_hdrs: zeroed(),
                out: Vec::with_capacity(BATCH),
            }
        }
    }

    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: BUF,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].0.as_mut_ptr().cast();
            h.msg_controllen = CTRL;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by self that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// The cumulative socket drop count the kernel reported with message `i`, if any.
    fn overflow(&self, i: usize) -> Option<u32> {
        let h = &self.hdrs[i].msg_hdr;
        // SAFETY: the CMSG macros walk the control buffer recvmmsg filled, bounded by msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                    return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    /// Sends `self.out`; returns how many went out.
    fn send(&mut self, fd: RawFd) -> usize {
        let count = self.out.len();
        for (j, &(i, dst)) in self.out.iter().enumerate() {
            let len = self.hdrs[i].msg_len as usize;
            self.out_iovs[j] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: len,
            };
            let namelen = encode(dst, &mut self.out_names[j]);
            let h = &mut self.out_hdrs[j].msg_hdr;
            h.msg_name = (&mut self.out_names[j] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = namelen;
            h.msg_iov = &mut self.out_iovs[j];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: the headers from `sent` on point into buffers owned by self.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.out_hdrs[sent..].as_mut_ptr(),
                    (count - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if n < 0 && e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Full send buffer (EAGAIN) or an unreachable peer: drop the rest of the batch.
                break;
            }
            sent += n as usize;
        }
        sent
    }
}

fn decode(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                0,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn encode(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let a = unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = v4.port().to_be();
            a.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in6.
            let a =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = v6.port().to_be();
            a.sin6_flowinfo = 0;
            a.sin6_addr.s6_addr = v6.ip().octets();
            a.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

thread_local! {
    /// One set of batch buffers per relay thread: a batch is received, decided and sent without
    /// an await in between, so tasks on the same thread never share one at the same time.
    static SCRATCH: RefCell<Batch> = RefCell::new(Batch::new());
}

/// Receives one batch on `rx`, decides each packet, sends the forwarded ones from `tx`. On a
/// gateway-side port shared with forks, a fork's packets (by source) go to its own session and
/// leave by its own socket.
fn relay_batch(rx: RawFd, tx: RawFd, shared: &SessionShared, id: StreamId) -> io::Result<usize> {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let b = &mut *guard;
        let n = b.recv(rx)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let now = monotonic_ns();
        let mut owner = [usize::MAX; BATCH];
        let forks = if id.from == Side::Gateway && shared.has_forks.load(Ordering::Acquire) {
            shared.forks.lock().map(|f| f.clone()).unwrap_or_default()
        } else {
            Vec::new()
        };
        if !forks.is_empty() {
            let sources: Vec<Option<SocketAddr>> = forks
                .iter()
                .map(|f| f.shared.media.lock().ok().and_then(|m| m.fork_source(id)))
                .collect();
            for (i, o) in owner.iter_mut().enumerate().take(n) {
                let Some(src) = decode(&b.names[i]).map(unmap) else {
                    continue;
                };
                if let Some(j) = sources.iter().position(|s| *s == Some(src)) {
                    *o = j;
                }
            }
            for (j, f) in forks.iter().enumerate() {
                let fd = f.tx[id.kind as usize].as_raw_fd();
                relay_some(b, (0..n).filter(|&i| owner[i] == j), fd, &f.shared, id, now);
            }
        }
        relay_some(
            b,
            (0..n).filter(|&i| owner[i] == usize::MAX),
            tx,
            shared,
            id,
            now,
        );
        if let Some(ovfl) = b.overflow(n - 1)
            && let Ok(mut m) = shared.media.lock()
        {
            m.stream_mut(id).socket_overflow = ovfl;
        }
        Ok(n)
    })
}

/// Decides the batch's packets `which` as stream `id` of `shared`, sends the forwarded ones from
/// `tx` and counts them.
fn relay_some(
    b: &mut Batch,
    which: impl Iterator<Item = usize>,
    tx: RawFd,
    shared: &SessionShared,
    id: StreamId,
    now: u64,
) {
    b.out.clear();
    let mut learned = false;
    // SRTP termination, when the stream has it: authenticated and decrypted before anything
    // else looks at a packet (a forged one must not latch a source or keep a call alive),
    // encrypted for the receiving peer once it is to be forwarded.
    let kind = match id.kind {
        Kind::Rtp => StreamKind::Rtp,
        Kind::Rtcp => StreamKind::Rtcp,
    };
    {
        let Ok(mut m) = shared.media.lock() else {
            return;
        };
        // Media, then crypto: the order every holder of both takes them in.
        let mut guard = shared.crypto[id.index()].lock().ok();
        let srtp = m.srtp.iter().any(Option::is_some);
        if srtp && guard.is_none() {
            // A poisoned crypto lock must not turn an SRTP session into a plain one.
            m.stream_mut(id).dropped += which.count() as u64;
            return;
        }
        let mut crypto = guard.as_deref_mut().filter(|c| c.terminates());
        let mux = m.options.rtcp_mux;
        // Under strict source with the source known, a packet from elsewhere is dropped before
        // any crypto (no HMAC/GCM for junk, no replay index used up by a copy).
        let strict = m.options.strict_source;
        for i in which {
            let truncated = b.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let Some(src) = decode(&b.names[i]) else {
                continue;
            };
            if truncated {
                m.stream_mut(id).dropped += 1;
                continue;
            }
            let src = unmap(src);
            if let Some(c) = crypto.as_deref_mut() {
                if strict && m.expected_source(id).is_some_and(|e| e != src) {
                    let _ = m.on_packet(id, src, now);
                    continue;
                }
                let len = b.hdrs[i].msg_len as usize;
                match c.unprotect(kind, mux, &mut b.bufs[i], len) {
                    Some(l) => b.hdrs[i].msg_len = l as u32,
                    None => continue,
                }
            }
            let (verdict, l) = m.on_packet(id, src, now);
            learned |= l;
            if let Verdict::Forward(dst) = verdict {
                if let Some(c) = crypto.as_deref_mut() {
                    let len = b.hdrs[i].msg_len as usize;
                    match c.protect(kind, mux, &mut b.bufs[i], len) {
                        Some(l) => b.hdrs[i].msg_len = l as u32,
                        None => continue,
                    }
                }
                b.out.push((i, dst));
            }
        }
    }
    let sent = if b.out.is_empty() { 0 } else { b.send(tx) };
    if let Ok(mut m) = shared.media.lock() {
        for &(i, _) in &b.out[..sent] {
            let len = b.hdrs[i].msg_len as usize;
            m.forwarded(id, &b.bufs[i][..len], now);
        }
        m.stream_mut(id).dropped += (b.out.len() - sent) as u64;
    }
    if learned {
        let _ = shared
            .notify
            .send(crate::relay::Notice::Learned(shared.id.clone()));
    }
}

/// IPv4-mapped IPv6 sources (never on our v6-only sockets, but harmless) as plain IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        a => a,
    }
}

/// Relays stream `id`: packets arriving on `rx`, sent from `tx`. Runs until aborted.
pub async fn run_stream(
    rx: Arc<UdpSocket>,
    tx: Arc<UdpSocket>,
    shared: Arc<SessionShared>,
    id: StreamId,
) {
    let (rx_fd, tx_fd) = (rx.as_raw_fd(), tx.as_raw_fd());
    let mut errors = 0u64;
    loop {
        if rx.readable().await.is_err() {
            return;
        }
        match rx.try_io(Interest::READABLE, || {
            relay_batch(rx_fd, tx_fd, &shared, id)
        }) {
            // A full batch: more may be queued, but let every other socket have its turn first.
            Ok(n) if n == BATCH => tokio::task::yield_now().await,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                errors += 1;
                if errors.is_power_of_two() {
                    tracing::warn!(session = %shared.id, stream = ?id, error = %e, errors, "relay socket error");
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for a in ["198.18.1.2:4000", "[2001:2::5]:6000"] {
            let a: SocketAddr = a.parse().expect("addr");
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut s: libc::sockaddr_storage = unsafe { zeroed() };
            encode(a, &mut s);
            assert_eq!(decode(&s), Some(a));
        }
    }
}

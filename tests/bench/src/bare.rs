//! The userspace floor: a bare relay with a socket pair per session, one thread, level-triggered
//! epoll, `recvmmsg` a batch from each ready socket and `sendmmsg` it out of its pair to the fixed
//! peer. No session table, no statistics, no policy: the least a userspace relay must do.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;

use mediator_tests::lab::in_netns;
use mediator_tests::rtp::pin_thread;

const B: usize = 64;

pub struct BareRelay {
    stop: Arc<AtomicBool>,
    tid: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

impl BareRelay {
    /// Binds `sessions` socket pairs in namespace `ns` (pool side on `pool.0`, gateway side on
    /// `gw.0`, both from `first_port` in steps of 2) and relays between them and the peers
    /// `pool.1` / `gw.1`. Returns the relay and each session's (pool side, gateway side) address.
    pub fn start(
        ns: &str,
        sessions: usize,
        first_port: u16,
        pool: (std::net::Ipv4Addr, SocketAddrV4),
        gw: (std::net::Ipv4Addr, SocketAddrV4),
    ) -> anyhow::Result<(Self, Vec<(SocketAddr, SocketAddr)>)> {
        let addrs: Vec<(SocketAddr, SocketAddr)> = (0..sessions)
            .map(|i| {
                let port = first_port + 2 * i as u16;
                (
                    SocketAddr::from((pool.0, port)),
                    SocketAddr::from((gw.0, port)),
                )
            })
            .collect();
        let to_bind = addrs.clone();
        let socks = in_netns(ns, move || {
            to_bind
                .iter()
                .map(|(p, g)| Ok((UdpSocket::bind(p)?, UdpSocket::bind(g)?)))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .context("binding the bare relay's sockets")?;
        let stop = Arc::new(AtomicBool::new(false));
        let tid = Arc::new(AtomicU64::new(0));
        let (stop2, tid2) = (stop.clone(), tid.clone());
        let (to_gw_peer, to_pool_peer) = (sockaddr(gw.1), sockaddr(pool.1));
        let handle = std::thread::spawn(move || {
            pin_thread(0);
            // SAFETY: gettid has no preconditions.
            tid2.store(unsafe { libc::gettid() } as u64, Ordering::Relaxed);
            relay_loop(&socks, to_gw_peer, to_pool_peer, &stop2);
        });
        while tid.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        Ok((
            Self {
                stop,
                tid,
                handle: Some(handle),
            },
            addrs,
        ))
    }

    /// The relay thread's id (for its schedstat).
    pub fn tid(&self) -> u64 {
        self.tid.load(Ordering::Relaxed)
    }
}

impl Drop for BareRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn relay_loop(
    socks: &[(UdpSocket, UdpSocket)],
    to_gw_peer: libc::sockaddr_in,
    to_pool_peer: libc::sockaddr_in,
    stop: &AtomicBool,
) {
    // SAFETY: epoll_create1 returns a new fd or -1.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return;
    }
    // Token: session index * 2 + (0 = pool side, 1 = gateway side).
    for (i, (p, g)) in socks.iter().enumerate() {
        for (side, s) in [(0u64, p), (1u64, g)] {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64 * 2 + side,
            };
            // SAFETY: registers a live socket with a live epoll fd.
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut bufs = vec![[0u8; 2048]; B];
    // SAFETY: plain C structs; all-zero is valid.
    let mut hdrs: Vec<libc::mmsghdr> = (0..B).map(|_| unsafe { std::mem::zeroed() }).collect();
    // SAFETY: as above.
    let mut iovs: Vec<libc::iovec> = (0..B).map(|_| unsafe { std::mem::zeroed() }).collect();
    let (mut gw_peer, mut pool_peer) = (to_gw_peer, to_pool_peer);
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: the kernel writes at most events.len() events into the live vector.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 20) };
        for ev in events.iter().take(n.max(0) as usize) {
            let token = ev.u64;
            let (pair, side) = ((token / 2) as usize, token % 2);
            let Some((p, g)) = socks.get(pair) else {
                continue;
            };
            let (rx, tx, dst) = if side == 0 {
                (p, g, &mut gw_peer)
            } else {
                (g, p, &mut pool_peer)
            };
            for i in 0..B {
                iovs[i] = libc::iovec {
                    iov_base: bufs[i].as_mut_ptr().cast(),
                    iov_len: 2048,
                };
                hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
                hdrs[i].msg_hdr.msg_name = std::ptr::null_mut();
                hdrs[i].msg_hdr.msg_namelen = 0;
            }
            // SAFETY: headers point into live buffers.
            let got = unsafe {
                libc::recvmmsg(
                    rx.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    B as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got <= 0 {
                continue;
            }
            let got = got as usize;
            for i in 0..got {
                iovs[i].iov_len = hdrs[i].msg_len as usize;
                hdrs[i].msg_hdr.msg_name = (dst as *mut libc::sockaddr_in).cast();
                hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
            // SAFETY: as above; the iovecs now hold the received lengths.
            unsafe { libc::sendmmsg(tx.as_raw_fd(), hdrs.as_mut_ptr(), got as u32, 0) };
        }
    }
    // SAFETY: closes the epoll fd we created.
    unsafe { libc::close(ep) };
}

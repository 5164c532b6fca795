//! Test traffic: RTP packets, UDP sockets inside lab namespaces, kernel UDP counters.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::IntoRawFd;
use std::time::{Duration, Instant};

use crate::lab::in_netns;

/// An RTP v2 packet (PT 0, PCMU) with `payload` bytes of payload.
pub fn rtp_packet(seq: u16, ts: u32, ssrc: u32, payload: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload);
    p.extend_from_slice(&[0x80, 0x00]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// An RTCP receiver report (PT 201) with no report blocks.
pub fn rtcp_packet(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// A UDP socket bound to `addr` inside namespace `ns`.
pub fn udp_in(ns: &str, addr: SocketAddr) -> UdpSocket {
    let s =
        in_netns(ns, move || UdpSocket::bind(addr)).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    // The tests send a burst before they read: give the peer room for all of it.
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt reads an int from a live local; SO_RCVBUFFORCE needs root, as the lab does.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    s
}

/// Everything `sock` receives until it has been quiet for `quiet`.
pub fn drain(sock: &UdpSocket, quiet: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            out.push((buf[..n].to_vec(), from));
            last = Instant::now();
        }
    }
    out
}

/// `UdpInCsumErrors` and `InErrors` of namespace `ns` (/proc/net/snmp as seen from inside).
pub fn udp_errors(ns: &str) -> (u64, u64) {
    in_netns(ns, || {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("snmp");
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        let get = |key: &str| {
            names
                .split_whitespace()
                .position(|n| n == key)
                .and_then(|i| values.split_whitespace().nth(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (get("InCsumErrors"), get("InErrors"))
    })
}

/// UDP checksums (as sent on the wire) of the IPv4 UDP packets to `port` that arrive on `dev` in
/// namespace `ns` during `window`, read with an AF_PACKET socket.
pub fn capture_udp_checksums(
    ns: &str,
    dev: &'static str,
    port: u16,
    window: Duration,
) -> std::thread::JoinHandle<Vec<u16>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        in_netns(&ns, move || {
            // SAFETY: plain socket syscalls on an fd we own and close; buffers outlive the calls.
            unsafe {
                let fd = af_packet(dev, libc::SOCK_DGRAM, libc::ETH_P_IP as u16).into_raw_fd();
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                );
                let mut out = Vec::new();
                let mut buf = [0u8; 2048];
                let start = Instant::now();
                while start.elapsed() < window {
                    let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                    if n < 28 || buf[9] != 17 {
                        continue;
                    }
                    let ihl = usize::from(buf[0] & 0x0f) * 4;
                    let udp = &buf[ihl..];
                    if u16::from_be_bytes([udp[2], udp[3]]) == port {
                        out.push(u16::from_be_bytes([udp[6], udp[7]]));
                    }
                }
                libc::close(fd);
                out
            }
        })
    })
}

/// Sets an integer socket option (for SO_NO_CHECK, IP_OPTIONS and the like in tests).
pub fn set_opt(sock: &UdpSocket, level: i32, opt: i32, value: &[u8]) {
    // SAFETY: setsockopt reads `value.len()` bytes from a live slice.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            level,
            opt,
            value.as_ptr().cast(),
            value.len() as u32,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {level}/{opt}: {}",
        std::io::Error::last_os_error()
    );
}

/// The TTL (IPv4) or hop limit (IPv6) of each datagram `sock` receives until it has been quiet
/// for `quiet` (IP_RECVTTL / IPV6_RECVHOPLIMIT, read from each datagram's control message).
pub fn drain_hop_limits(sock: &UdpSocket, v6: bool, quiet: Duration) -> Vec<u8> {
    let on = 1i32.to_ne_bytes();
    if v6 {
        set_opt(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &on);
    } else {
        set_opt(sock, libc::IPPROTO_IP, libc::IP_RECVTTL, &on);
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        // An aligned control buffer with room for one int-sized message.
        let mut ctrl = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; its pointers are set to live locals below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&ctrl);
        // SAFETY: recvmsg writes into the buffers msg points at, all alive for the call (the
        // socket's read timeout bounds the wait).
        let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
        if n < 0 {
            continue;
        }
        last = Instant::now();
        // SAFETY: the CMSG macros walk the control buffer recvmsg filled, within its length.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        let mut found = None;
        while !c.is_null() {
            // SAFETY: c points at a complete cmsghdr inside ctrl (CMSG_FIRSTHDR/NXTHDR say so).
            let h = unsafe { &*c };
            let wanted = if v6 {
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT)
            } else {
                (libc::IPPROTO_IP, libc::IP_TTL)
            };
            if (h.cmsg_level, h.cmsg_type) == wanted {
                // SAFETY: both messages carry one int.
                found =
                    Some(unsafe { (libc::CMSG_DATA(c) as *const libc::c_int).read_unaligned() });
            }
            // SAFETY: as above.
            c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
        }
        out.push(found.map_or(0, |t| t as u8));
    }
    out
}

/// Sends every (destination, payload) pair with `sendmmsg`, in batches; returns how many went out.
/// IPv4 destinations only (the load generators use the IPv4 lab addresses).
pub fn send_many(sock: &UdpSocket, packets: &[(SocketAddr, &[u8])]) -> usize {
    let mut sent = 0;
    for chunk in packets.chunks(64) {
        // SAFETY: the headers point at names, iovecs and payloads that live until sendmmsg returns.
        unsafe {
            let mut names: Vec<libc::sockaddr_in> = Vec::with_capacity(chunk.len());
            let mut iovs: Vec<libc::iovec> = Vec::with_capacity(chunk.len());
            for (dst, payload) in chunk {
                let SocketAddr::V4(v4) = dst else { continue };
                let mut sin: libc::sockaddr_in = std::mem::zeroed();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                names.push(sin);
                iovs.push(libc::iovec {
                    iov_base: payload.as_ptr() as *mut _,
                    iov_len: payload.len(),
                });
            }
            let mut hdrs: Vec<libc::mmsghdr> = (0..names.len())
                .map(|i| {
                    let mut h: libc::mmsghdr = std::mem::zeroed();
                    h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
                    h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                    h.msg_hdr.msg_iov = &mut iovs[i];
                    h.msg_hdr.msg_iovlen = 1;
                    h
                })
                .collect();
            let n = libc::sendmmsg(
                std::os::fd::AsRawFd::as_raw_fd(sock),
                hdrs.as_mut_ptr(),
                hdrs.len() as u32,
                0,
            );
            if n > 0 {
                sent += n as usize;
            }
        }
    }
    sent
}

/// Pins the calling thread to one CPU.
pub fn pin_thread(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0, ..) applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Ones'-complement sum for IP and UDP checksums.
fn csum(data: &[u8], mut sum: u32) -> u16 {
    for pair in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying IPv4/UDP `payload`, optionally with one 802.1Q tag, with valid
/// IP and UDP checksums.
pub fn udp4_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(64 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    if let Some(vid) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let udp_len = 8 + payload.len() as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    let pseudo_sum = u32::from(!csum(&pseudo, 0));
    let c = match csum(&udp, pseudo_sum) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// An AF_PACKET socket of `kind` for `proto` (host order; 0 = none), bound to `dev` in the calling
/// thread's network namespace.
fn af_packet(dev: &str, kind: i32, proto: u16) -> std::os::fd::OwnedFd {
    // SAFETY: socket/bind on an fd we then own; sockaddr_ll is plain data.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, kind, i32::from(proto.to_be()));
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let name = std::ffi::CString::new(dev).expect("dev");
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto.to_be();
        sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        let rc = libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(
            rc,
            0,
            "bind AF_PACKET to {dev}: {}",
            std::io::Error::last_os_error()
        );
        std::os::fd::FromRawFd::from_raw_fd(fd)
    }
}

/// A raw AF_PACKET socket bound to `dev` in namespace `ns`, for sending whole frames.
pub fn raw_socket(ns: &str, dev: &'static str) -> std::os::fd::OwnedFd {
    in_netns(ns, move || af_packet(dev, libc::SOCK_RAW, 0))
}

pub fn send_frame(fd: &std::os::fd::OwnedFd, frame: &[u8]) {
    // SAFETY: send reads `frame.len()` bytes from a live slice.
    let n = unsafe {
        libc::send(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            frame.as_ptr().cast(),
            frame.len(),
            0,
        )
    };
    assert_eq!(
        n,
        frame.len() as isize,
        "send frame: {}",
        std::io::Error::last_os_error()
    );
}

/// A MAC address "aa:bb:cc:dd:ee:ff" as bytes.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(s.split(':')) {
        *o = u8::from_str_radix(part, 16).expect("mac");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_checksums_verify() {
        let f = super::udp4_frame(
            [2; 6],
            [4; 6],
            Some(100),
            "198.18.1.2:4000".parse().expect("a"),
            "198.18.1.1:30000".parse().expect("a"),
            b"hello rtp",
        );
        assert_eq!(&f[12..14], &[0x81, 0x00]);
        let ip = &f[18..38];
        assert_eq!(super::csum(ip, 0), 0, "IP header checksum verifies");
        let udp = &f[38..];
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        let sum = u32::from(!super::csum(&pseudo, 0));
        assert_eq!(super::csum(udp, sum), 0, "UDP checksum verifies");
    }
}

/// One IPv4 UDP datagram seen on a link.
#[derive(Clone, Debug)]
pub struct Datagram {
    pub src: std::net::SocketAddrV4,
    pub dst: std::net::SocketAddrV4,
    pub payload: Vec<u8>,
}

/// Every IPv4 UDP datagram that crosses `dev` in namespace `ns` (either way) until `stop` is set
/// or `limit` elapses, at most `max` of them — read with an AF_PACKET socket, the way a capture
/// on the wire sees them.
pub fn capture_udp(
    ns: &str,
    dev: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    limit: Duration,
    max: usize,
) -> std::thread::JoinHandle<Vec<Datagram>> {
    let ns = ns.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        in_netns(&ns, move || {
            // ETH_P_ALL: a tap bound to one protocol sees only what arrives, not what is sent.
            let fd = af_packet(dev, libc::SOCK_DGRAM, libc::ETH_P_ALL as u16);
            let _ = ready_tx.send(());
            let fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            // SAFETY: setsockopt reads a live timeval; recv writes at most buf.len() bytes.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                );
            }
            let mut out = Vec::new();
            let mut buf = [0u8; 2048];
            let start = Instant::now();
            while start.elapsed() < limit
                && out.len() < max
                && !stop.load(std::sync::atomic::Ordering::Relaxed)
            {
                // SAFETY: as above.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 28 || buf[9] != 17 || buf[0] >> 4 != 4 {
                    continue;
                }
                let n = n as usize;
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                if n < ihl + 8 {
                    continue;
                }
                let ip =
                    |o: usize| std::net::Ipv4Addr::new(buf[o], buf[o + 1], buf[o + 2], buf[o + 3]);
                let udp = &buf[ihl..n];
                let port = |o: usize| u16::from_be_bytes([udp[o], udp[o + 1]]);
                let len = usize::from(port(4)).clamp(8, udp.len());
                out.push(Datagram {
                    src: std::net::SocketAddrV4::new(ip(12), port(0)),
                    dst: std::net::SocketAddrV4::new(ip(16), port(2)),
                    payload: udp[8..len].to_vec(),
                });
            }
            out
        })
    });
    // The capture is listening before the caller goes on.
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    handle
}

//! The traffic of a run: RTP streams both ways between the lab's two peers, offered at a paced
//! rate by a socket generator (batched `sendmmsg`) or the frame injector, and received with kernel
//! receive timestamps into the probe statistics.
//!
//! One driver thread, pinned to the generator core, does everything in turn: it sends what is due,
//! then reads both peers' sockets until they are empty. The relay has the other core to itself.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::inject::Injector;
use crate::probe::{self, Receiver, Report, Stamp};
use crate::stop_requested;
use mediator_dataplane::srtp::{InboundContext, MasterKey, OutboundContext};
use mediator_tests::rtp::pin_thread;

/// Where the pool-side peer sends from and receives on (every stream uses it, as a PBX or SBC
/// would with one media address; the relay port tells the streams apart).
pub const POOL_PEER_PORT: u16 = 4000;
/// Likewise for the gateway-side peer.
pub const GW_PEER_PORT: u16 = 5000;

/// The RTP a stream carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Codec {
    pub name: &'static str,
    /// Its SDP encoding (a=rtpmap), as offered in `--via-sip` calls.
    pub rtpmap: &'static str,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// Bytes of payload per millisecond of audio at the codec's usual bit rate.
    pub bytes_per_ms: u32,
}

pub const CODECS: [Codec; 4] = [
    Codec {
        name: "pcmu",
        rtpmap: "PCMU/8000",
        payload_type: 0,
        clock_rate: 8000,
        bytes_per_ms: 8,
    },
    Codec {
        name: "pcma",
        rtpmap: "PCMA/8000",
        payload_type: 8,
        clock_rate: 8000,
        bytes_per_ms: 8,
    },
    // RFC 3551: G.722's RTP clock is 8000 although it samples at 16 kHz.
    Codec {
        name: "g722",
        rtpmap: "G722/8000",
        payload_type: 9,
        clock_rate: 8000,
        bytes_per_ms: 8,
    },
    // Opus at 32 kbit/s, dynamic payload type 111 as most SDP offers have it.
    Codec {
        name: "opus",
        rtpmap: "opus/48000/2",
        payload_type: 111,
        clock_rate: 48000,
        bytes_per_ms: 4,
    },
];

impl Codec {
    pub fn parse(name: &str) -> Option<Codec> {
        CODECS.into_iter().find(|c| c.name == name)
    }
}

/// What every stream sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Media {
    pub codec: Codec,
    pub ptime_ms: u32,
    /// RTP payload bytes (the codec's size for the ptime unless overridden).
    pub payload: usize,
}

impl Media {
    pub fn new(codec: Codec, ptime_ms: u32, payload: Option<usize>) -> Self {
        Self {
            codec,
            ptime_ms,
            payload: payload.unwrap_or((codec.bytes_per_ms * ptime_ms) as usize),
        }
    }
    /// RTP timestamp step per packet.
    pub fn samples(&self) -> u32 {
        self.codec.clock_rate * self.ptime_ms / 1000
    }
    /// Packets per second one stream sends in real time.
    pub fn stream_pps(&self) -> f64 {
        1000.0 / f64::from(self.ptime_ms)
    }
    /// An RTP packet of this media: header, then the probe, then filler.
    pub fn packet(&self, seq: u64, ssrc: u32, stamp: Stamp, buf: &mut Vec<u8>) {
        buf.clear();
        buf.push(0x80);
        buf.push(self.codec.payload_type & 0x7f);
        buf.extend_from_slice(&(seq as u16).to_be_bytes());
        buf.extend_from_slice(&((seq as u32).wrapping_mul(self.samples())).to_be_bytes());
        buf.extend_from_slice(&ssrc.to_be_bytes());
        let start = buf.len();
        buf.resize(start + self.payload, 0xd5);
        probe::stamp(&mut buf[start..], stamp);
    }
}

/// One direction of one session, as the generator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    pub id: u32,
    /// Sent by the pool-side peer (else by the gateway-side peer).
    pub from_pool: bool,
    /// The relay address it is sent to.
    pub to: SocketAddr,
    pub ssrc: u32,
}

/// Two streams per session, `(pool-side relay address, gateway-side relay address)` each.
pub fn streams(sessions: &[(SocketAddr, SocketAddr)]) -> Vec<Stream> {
    let mut out = Vec::with_capacity(sessions.len() * 2);
    for (i, (pool_side, gw_side)) in sessions.iter().enumerate() {
        let i = i as u32;
        out.push(Stream {
            id: 2 * i,
            from_pool: true,
            to: *pool_side,
            ssrc: 0x1000_0000 | (2 * i),
        });
        out.push(Stream {
            id: 2 * i + 1,
            from_pool: false,
            to: *gw_side,
            ssrc: 0x2000_0000 | (2 * i + 1),
        });
    }
    out
}

/// How a run offers its packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generator {
    /// UDP sockets, `sendmmsg` in batches of up to 64.
    Socket,
    /// Live frames from the injector program (BPF_PROG_RUN), no socket or skb on the sender.
    Inject,
}

impl Generator {
    pub fn name(self) -> &'static str {
        match self {
            Generator::Socket => "socket",
            Generator::Inject => "inject",
        }
    }
}

/// The peers' sockets: each sends its streams and receives the other side's.
pub struct Peers {
    pub pool: UdpSocket,
    pub gw: UdpSocket,
}

impl Peers {
    pub fn new(pool_ns: &str, gw_ns: &str) -> anyhow::Result<Self> {
        let open = |ns: &str, addr: SocketAddr| -> anyhow::Result<UdpSocket> {
            let s = mediator_tests::rtp::udp_in(ns, addr);
            let on: libc::c_int = 1;
            mediator_tests::rtp::set_opt(
                &s,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &on.to_ne_bytes(),
            );
            s.set_nonblocking(true)?;
            Ok(s)
        };
        Ok(Self {
            pool: open(pool_ns, SocketAddr::from(([198, 18, 1, 2], POOL_PEER_PORT)))?,
            gw: open(gw_ns, SocketAddr::from(([198, 18, 2, 2], GW_PEER_PORT)))?,
        })
    }
}

/// The offered load of one run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Packets per second, both directions together.
    pub rate: u64,
    pub duration: Duration,
    pub media: Media,
    pub generator: Generator,
    /// Packets sent back to back once that many are due (1-64): how a NIC with interrupt
    /// moderation hands a relay its packets.
    pub burst: u32,
}

/// What one run's traffic did.
#[derive(Clone, Debug)]
pub struct Driven {
    /// Packets offered per stream id.
    pub sent: HashMap<u32, u64>,
    pub report: Report,
    /// Seconds the generator ran.
    pub seconds: f64,
}

impl Driven {
    pub fn offered(&self) -> u64 {
        self.sent.values().sum()
    }
}

/// Streams that were sent packets (`sent`) and got none through (`got`), by id.
pub fn muted(sent: &HashMap<u32, u64>, got: &HashMap<u32, u64>) -> Vec<u32> {
    let mut m: Vec<u32> = sent
        .iter()
        .filter(|(id, n)| **n > 0 && got.get(id).copied().unwrap_or(0) == 0)
        .map(|(id, _)| *id)
        .collect();
    m.sort_unstable();
    m
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: clock_gettime writes a timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC now: turns kernel receive timestamps into the senders'
/// clock (a run is too short for the difference to drift).
fn realtime_offset() -> i128 {
    i128::from(clock_ns(libc::CLOCK_REALTIME)) - i128::from(clock_ns(libc::CLOCK_MONOTONIC))
}

const BATCH: usize = 64;
/// What the receiver reads of a plain packet: the RTP header and the probe.
const RX_LEN: usize = 64;
/// Of an SRTP packet: all of it (the tag is at its end).
const RX_LEN_SRTP: usize = 2048;

/// SRTP at the bench's two peers, [0] the pool side's and [1] the gateway side's: a sender's
/// context protects what that peer sends; a receiver's context (one for every SSRC, or one per
/// SSRC where the relay keys each call apart, as rtpengine does) verifies and decrypts what it
/// receives before its probe is read. A side with neither is plain. Packets that do not verify
/// are not counted as received.
#[derive(Default)]
pub struct SrtpPeers {
    inner: std::sync::Mutex<SrtpInner>,
}

#[derive(Default)]
struct SrtpInner {
    tx: [Option<OutboundContext>; 2],
    rx: [Option<InboundContext>; 2],
    rx_by_ssrc: [HashMap<u32, InboundContext>; 2],
}

fn side(pool: bool) -> usize {
    usize::from(!pool)
}

impl SrtpPeers {
    fn inner(&self) -> std::sync::MutexGuard<'_, SrtpInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pool-side (`pool`) or gateway-side peer protects what it sends with `key`.
    pub fn send_with(&self, pool: bool, key: &MasterKey) -> anyhow::Result<()> {
        self.inner().tx[side(pool)] = Some(OutboundContext::new(key, None)?);
        Ok(())
    }

    /// That peer decrypts everything it receives with `key`.
    pub fn receive_with(&self, pool: bool, key: &MasterKey) -> anyhow::Result<()> {
        self.inner().rx[side(pool)] = Some(InboundContext::new(key, None)?);
        Ok(())
    }

    /// That peer decrypts stream `ssrc` with `key`.
    pub fn receive_ssrc_with(&self, pool: bool, ssrc: u32, key: &MasterKey) -> anyhow::Result<()> {
        self.inner().rx_by_ssrc[side(pool)].insert(ssrc, InboundContext::new(key, None)?);
        Ok(())
    }

    fn protect(&self, pool: bool, buf: &mut Vec<u8>) {
        if let Some(tx) = self.inner().tx[side(pool)].as_mut() {
            // A packet that cannot be protected is sent as it is and fails at the relay.
            let _ = tx.protect_rtp(buf);
        }
    }

    /// The plain length of a received packet: itself when this side is plain, `None` when it
    /// does not verify.
    fn unprotect(&self, pool: bool, buf: &mut [u8]) -> Option<usize> {
        let mut inner = self.inner();
        let i = side(pool);
        if buf.len() < 12 {
            return None;
        }
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let SrtpInner { rx, rx_by_ssrc, .. } = &mut *inner;
        let ctx = match rx_by_ssrc[i].get_mut(&ssrc) {
            Some(c) => c,
            None => match rx[i].as_mut() {
                Some(c) => c,
                None => return Some(buf.len()),
            },
        };
        ctx.unprotect_rtp_in_place(buf).ok()
    }

    fn any(&self) -> bool {
        let inner = self.inner();
        inner.tx.iter().any(Option::is_some) || inner.rx.iter().any(Option::is_some)
    }
}
const CTRL_LEN: usize = 64;

/// Reads everything queued on a peer's socket: each probe with its kernel receive time
/// (SO_TIMESTAMPNS, CLOCK_REALTIME, turned into CLOCK_MONOTONIC with `realtime_offset`).
struct Rx {
    bufs: Vec<Vec<u8>>,
    ctrl: Vec<[u8; CTRL_LEN]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Rx {
    fn new(srtp: Option<&SrtpPeers>) -> Self {
        let len = if srtp.is_some_and(SrtpPeers::any) {
            RX_LEN_SRTP
        } else {
            RX_LEN
        };
        Self {
            bufs: vec![vec![0; len]; BATCH],
            ctrl: vec![[0; CTRL_LEN]; BATCH],
            // SAFETY: plain C structs; all-zero is valid, and `drain` points them at the buffers.
            iovs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
            // SAFETY: as above.
            hdrs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }

    /// Reads both peers' sockets; returns how many packets were read.
    fn drain_peers(
        &mut self,
        peers: &Peers,
        realtime_offset: i128,
        rx: &mut Receiver,
        counts: &mut HashMap<u32, u64>,
        srtp: Option<&SrtpPeers>,
    ) -> usize {
        self.drain(&peers.pool, true, realtime_offset, rx, counts, srtp)
            + self.drain(&peers.gw, false, realtime_offset, rx, counts, srtp)
    }

    /// Returns how many packets were read.
    fn drain(
        &mut self,
        sock: &UdpSocket,
        pool: bool,
        realtime_offset: i128,
        rx: &mut Receiver,
        counts: &mut HashMap<u32, u64>,
        srtp: Option<&SrtpPeers>,
    ) -> usize {
        let cap = self.bufs[0].len();
        let mut total = 0;
        loop {
            for i in 0..BATCH {
                self.iovs[i] = libc::iovec {
                    iov_base: self.bufs[i].as_mut_ptr().cast(),
                    iov_len: cap,
                };
                let h = &mut self.hdrs[i].msg_hdr;
                h.msg_iov = &mut self.iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = self.ctrl[i].as_mut_ptr().cast();
                h.msg_controllen = CTRL_LEN;
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
            }
            // SAFETY: every header points at live buffers of the lengths given.
            let n = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                return total;
            }
            let n = n as usize;
            total += n;
            for i in 0..n {
                let mut len = (self.hdrs[i].msg_len as usize).min(cap);
                let at = kernel_time(&self.hdrs[i].msg_hdr)
                    .map(|t| (i128::from(t) - realtime_offset).max(0) as u64)
                    .unwrap_or_else(monotonic_ns);
                if let Some(s) = srtp {
                    match s.unprotect(pool, &mut self.bufs[i][..len]) {
                        Some(n) => len = n,
                        None => continue,
                    }
                }
                let payload = self.bufs[i].get(12..len).unwrap_or(&[]);
                if let Some(s) = probe::read(payload) {
                    *counts.entry(s.stream).or_default() += 1;
                }
                rx.payload(payload, at);
            }
            if n < BATCH {
                return total;
            }
        }
    }
}

/// The SCM_TIMESTAMPNS of a received message, ns since the epoch.
fn kernel_time(h: &libc::msghdr) -> Option<u64> {
    // SAFETY: CMSG_* walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// The socket generator's per-stream state.
struct TxStream {
    stream: Stream,
    seq: u64,
}

/// Sends the next `n` packets, round robin over the streams; returns how many left.
#[allow(clippy::too_many_arguments)]
fn send_socket(
    peers: &Peers,
    tx: &mut [TxStream],
    next: &mut usize,
    n: usize,
    media: &Media,
    bufs: &mut [Vec<u8>],
    sent: &mut HashMap<u32, u64>,
    srtp: Option<&SrtpPeers>,
) -> u64 {
    let mut pool: Vec<(SocketAddr, usize, u32)> = Vec::with_capacity(n);
    let mut gw: Vec<(SocketAddr, usize, u32)> = Vec::with_capacity(n);
    let now = monotonic_ns();
    let count = tx.len();
    for (k, buf) in bufs.iter_mut().enumerate().take(n) {
        let t = &mut tx[*next];
        *next = (*next + 1) % count;
        let stamp = Stamp {
            stream: t.stream.id,
            seq: t.seq,
            sent_ns: now,
        };
        media.packet(t.seq, t.stream.ssrc, stamp, buf);
        if let Some(s) = srtp {
            s.protect(t.stream.from_pool, buf);
        }
        t.seq += 1;
        *sent.entry(t.stream.id).or_default() += 1;
        if t.stream.from_pool {
            pool.push((t.stream.to, k, t.stream.id));
        } else {
            gw.push((t.stream.to, k, t.stream.id));
        }
    }
    let mut out = 0;
    for (sock, list) in [(&peers.pool, pool), (&peers.gw, gw)] {
        let batch: Vec<(SocketAddr, &[u8])> = list
            .iter()
            .map(|(to, k, _)| (*to, bufs[*k].as_slice()))
            .collect();
        let ok = mediator_tests::rtp::send_many(sock, &batch);
        if ok < batch.len() && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS)
        {
            // The relay's veth ring was full: on a wire these packets would have reached the
            // relay's NIC and been dropped there, so they count as offered (and lost).
            out += batch.len() as u64;
            continue;
        }
        // What the socket itself refused (EAGAIN) was never offered: take it back.
        for (_, _, id) in list.iter().skip(ok) {
            if let Some(c) = sent.get_mut(id) {
                *c -= 1;
            }
        }
        out += ok as u64;
    }
    out
}

/// Offers `load` to `streams` and reads what comes through; bounded by `load.duration` plus at
/// most a second of draining. `injectors` (pool side, gateway side) are used with
/// [`Generator::Inject`]. `progress` is told the fraction done now and then.
pub fn drive(
    peers: &Peers,
    streams: &[Stream],
    load: Load,
    injectors: Option<&mut [Injector; 2]>,
    srtp: Option<&SrtpPeers>,
    progress: &(dyn Fn(f64) + Sync),
) -> anyhow::Result<Driven> {
    anyhow::ensure!(!streams.is_empty(), "no streams to drive");
    anyhow::ensure!(
        srtp.is_none() || load.generator == Generator::Socket,
        "the SRTP modes need the socket generator (the injector cannot protect packets)"
    );
    let done = AtomicBool::new(false);
    let done = &done;
    std::thread::scope(|scope| match (load.generator, injectors) {
        (Generator::Socket, _) => scope
            .spawn(move || drive_sockets(peers, streams, load, srtp, progress))
            .join()
            .map_err(|_| anyhow::anyhow!("the traffic driver panicked"))?,
        (Generator::Inject, Some(inj)) => {
            let receiver = scope.spawn(move || receive_until(peers, done));
            let injected = scope
                .spawn(move || inject(inj, load, progress))
                .join()
                .map_err(|_| anyhow::anyhow!("the injector driver panicked"));
            done.store(true, Ordering::Relaxed);
            let (receiver, _) = receiver
                .join()
                .map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
            let (sent, seconds) = injected??;
            progress(1.0);
            Ok(Driven {
                report: receiver.report(&sent),
                sent,
                seconds,
            })
        }
        (Generator::Inject, None) => anyhow::bail!("the injector is not set up"),
    })
}

/// The receiving side while the injector runs: its own thread on the generator core, at
/// real-time priority so the injector's long kernel calls never starve it; it sleeps in poll
/// when nothing is queued. After `done`, drains until 200 ms pass quietly (at most a second).
fn receive_until(
    peers: &Peers,
    done: &AtomicBool,
) -> anyhow::Result<(Receiver, HashMap<u32, u64>)> {
    pin_thread(1);
    let param = libc::sched_param { sched_priority: 40 };
    // SAFETY: sets this thread's policy from a live sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        anyhow::bail!(
            "real-time priority for the receiver: {}",
            std::io::Error::last_os_error()
        );
    }
    let realtime_offset = realtime_offset();
    let mut receiver = Receiver::default();
    let mut counts = HashMap::new();
    let mut rx = Rx::new(None);
    let mut fds = [
        libc::pollfd {
            fd: peers.pool.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: peers.gw.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut quiet: Option<Instant> = None;
    let mut draining_since: Option<Instant> = None;
    loop {
        // SAFETY: polls two live descriptors.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, 10) };
        let got = rx.drain_peers(peers, realtime_offset, &mut receiver, &mut counts, None);
        if done.load(Ordering::Relaxed) {
            let since = *draining_since.get_or_insert_with(Instant::now);
            if got > 0 {
                quiet = Some(Instant::now());
            }
            let q = *quiet.get_or_insert_with(Instant::now);
            if q.elapsed() > Duration::from_millis(200) || since.elapsed() > Duration::from_secs(1)
            {
                return Ok((receiver, counts));
            }
        }
    }
}

/// Runs the two injectors in turns of about 250 ms each, at the full rate during its turn, until
/// the duration is over; returns what each stream was offered and the seconds it took.
fn inject(
    inj: &mut [Injector; 2],
    load: Load,
    progress: &(dyn Fn(f64) + Sync),
) -> anyhow::Result<(HashMap<u32, u64>, f64)> {
    pin_thread(1);
    let rate = u32::try_from(load.rate).unwrap_or(u32::MAX);
    for i in inj.iter_mut() {
        i.reset(rate, load.burst.clamp(1, BATCH as u32))?;
    }
    let start = Instant::now();
    let mut side = 0;
    while start.elapsed() < load.duration && !stop_requested() {
        let left = load.duration.saturating_sub(start.elapsed());
        let turn = left.min(Duration::from_millis(250));
        // Only one side sends at a time and each call has a fixed set-up cost (~15 ms): pace this
        // turn to make up what the run is behind, so it offers about the asked rate (at most 2x).
        let made = inj[0].made()? + inj[1].made()?;
        let target = f64::from(rate) * (start.elapsed() + turn).as_secs_f64();
        let pace = ((target - made as f64) / turn.as_secs_f64())
            .clamp(f64::from(rate), 2.0 * f64::from(rate));
        // Each injector's pacing clock restarts where its last turn ended.
        inj[side].resume(pace as u32)?;
        inj[side].run_for(turn)?;
        side ^= 1;
        progress(start.elapsed().as_secs_f64() / load.duration.as_secs_f64());
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut sent = HashMap::new();
    for i in inj.iter_mut() {
        i.sent_per_stream(&mut sent)?;
    }
    Ok((sent, seconds))
}

fn drive_sockets(
    peers: &Peers,
    streams: &[Stream],
    load: Load,
    srtp: Option<&SrtpPeers>,
    progress: &(dyn Fn(f64) + Sync),
) -> anyhow::Result<Driven> {
    pin_thread(1);
    let realtime_offset = realtime_offset();
    let mut receiver = Receiver::default();
    let mut counts: HashMap<u32, u64> = HashMap::new();
    let mut sent: HashMap<u32, u64> = HashMap::new();
    let mut rx = Rx::new(srtp);
    let mut tx: Vec<TxStream> = streams
        .iter()
        .map(|s| TxStream { stream: *s, seq: 0 })
        .collect();
    let mut next = 0usize;
    let mut bufs: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| Vec::with_capacity(12 + load.media.payload))
        .collect();
    let rate = load.rate.max(1);
    let burst = u64::from(load.burst.clamp(1, BATCH as u32));
    let start = Instant::now();
    let mut offered = 0u64;
    let mut last_progress = Instant::now();
    while start.elapsed() < load.duration && !stop_requested() {
        let due = (start.elapsed().as_nanos() as u64).saturating_mul(rate) / 1_000_000_000;
        let mut busy = false;
        if due >= offered + burst {
            busy = true;
            offered += send_socket(
                peers,
                &mut tx,
                &mut next,
                burst as usize,
                &load.media,
                &mut bufs,
                &mut sent,
                srtp,
            );
        }
        let got = rx.drain_peers(peers, realtime_offset, &mut receiver, &mut counts, srtp);
        if !busy && got == 0 {
            std::thread::sleep(Duration::from_micros(20));
        }
        if last_progress.elapsed() > Duration::from_millis(200) {
            progress(start.elapsed().as_secs_f64() / load.duration.as_secs_f64());
            last_progress = Instant::now();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // Drain what is still in flight: until 200 ms pass quietly, at most one second.
    let drain_start = Instant::now();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(200)
        && drain_start.elapsed() < Duration::from_secs(1)
    {
        let got = rx.drain_peers(peers, realtime_offset, &mut receiver, &mut counts, srtp);
        if got > 0 {
            quiet = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    progress(1.0);
    let report = receiver.report(&sent);
    Ok(Driven {
        sent,
        report,
        seconds,
    })
}

/// After overload: waits for the relay's backlog to drain (at most 5 s), then sends `per_stream`
/// packets on every stream at a gentle pace and returns the streams none of whose packets came
/// through within 3 s: every stream must forward again.
pub fn muted_streams(
    peers: &Peers,
    streams: &[Stream],
    media: Media,
    per_stream: u64,
    srtp: Option<&SrtpPeers>,
) -> anyhow::Result<Vec<u32>> {
    let total = streams.len() as u64 * per_stream;
    // Gentle: well under any mode's capacity.
    let rate = (total / 2).clamp(1000, 20_000);
    let (sent, counts) = std::thread::scope(|scope| {
        scope
            .spawn(move || {
                pin_thread(1);
                let mut receiver = Receiver::default();
                let mut counts = HashMap::new();
                let mut rx = Rx::new(srtp);
                let mut read = |counts: &mut HashMap<u32, u64>| {
                    rx.drain_peers(peers, 0, &mut receiver, counts, srtp)
                };
                let (start, mut quiet) = (Instant::now(), Instant::now());
                while quiet.elapsed() < Duration::from_millis(300)
                    && start.elapsed() < Duration::from_secs(5)
                {
                    if read(&mut HashMap::new()) > 0 {
                        quiet = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let mut sent = HashMap::new();
                let mut tx: Vec<TxStream> = streams
                    .iter()
                    .map(|s| TxStream {
                        stream: *s,
                        seq: 1 << 40,
                    })
                    .collect();
                let mut next = 0;
                let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::new()).collect();
                let start = Instant::now();
                let mut offered = 0u64;
                while offered < total && start.elapsed() < Duration::from_secs(30) {
                    let due = (start.elapsed().as_nanos() as u64 * rate / 1_000_000_000).min(total);
                    if offered < due {
                        let n = (due - offered).min(BATCH as u64) as usize;
                        offered += n as u64;
                        send_socket(
                            peers, &mut tx, &mut next, n, &media, &mut bufs, &mut sent, srtp,
                        );
                    }
                    read(&mut counts);
                    std::thread::sleep(Duration::from_micros(200));
                }
                let waiting = Instant::now();
                while waiting.elapsed() < Duration::from_secs(3)
                    && sent.keys().any(|id| !counts.contains_key(id))
                {
                    read(&mut counts);
                    std::thread::sleep(Duration::from_millis(1));
                }
                (sent, counts)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the probe driver panicked"))
    })?;
    Ok(muted(&sent, &counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_rtp_with_the_probe_after_the_header() {
        let m = Media::new(Codec::parse("pcma").expect("pcma"), 20, None);
        assert_eq!((m.payload, m.samples()), (160, 160));
        let mut buf = Vec::new();
        let stamp = Stamp {
            stream: 9,
            seq: 70_000,
            sent_ns: 5,
        };
        m.packet(70_000, 0xabcd, stamp, &mut buf);
        assert_eq!(buf.len(), 172);
        assert_eq!((buf[0], buf[1]), (0x80, 8), "RTP v2, PT 8");
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 70_000u32 as u16);
        assert_eq!(
            u32::from_be_bytes(buf[4..8].try_into().expect("ts")),
            70_000 * 160
        );
        assert_eq!(
            u32::from_be_bytes(buf[8..12].try_into().expect("ssrc")),
            0xabcd
        );
        assert_eq!(probe::read(&buf[12..]), Some(stamp));
        let opus = Media::new(Codec::parse("opus").expect("opus"), 20, None);
        assert_eq!((opus.payload, opus.samples()), (80, 960));
        assert_eq!(Media::new(opus.codec, 60, Some(300)).payload, 300);
    }

    #[test]
    fn two_streams_per_session_one_each_way() {
        let a: SocketAddr = "198.18.1.1:20000".parse().expect("a");
        let b: SocketAddr = "198.18.2.1:20002".parse().expect("b");
        let s = streams(&[(a, b), (a, b)]);
        assert_eq!(s.len(), 4);
        assert_eq!(
            (s[0].from_pool, s[0].to, s[1].from_pool, s[1].to),
            (true, a, false, b)
        );
        let ids: Vec<u32> = s.iter().map(|s| s.id).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        let mut ssrcs: Vec<u32> = s.iter().map(|s| s.ssrc).collect();
        ssrcs.dedup();
        assert_eq!(ssrcs.len(), 4, "an SSRC per stream");
    }

    #[test]
    fn muted_lists_streams_that_sent_and_got_nothing() {
        let sent: HashMap<u32, u64> = [(1, 5), (2, 5), (3, 0)].into_iter().collect();
        let got: HashMap<u32, u64> = [(1, 5)].into_iter().collect();
        assert_eq!(muted(&sent, &got), vec![2]);
    }

    /// The peers' SRTP: what one side protects, the other verifies and decrypts with the same
    /// key; a packet under another key does not count as received; a plain side is untouched.
    #[test]
    fn srtp_peers_protect_and_verify_per_side() {
        use mediator_dataplane::srtp::{MasterKey, Suite};
        let key = |f: u8| {
            MasterKey::from_concatenated(Suite::AesCm128HmacSha1_80, &[f; 30]).expect("key")
        };
        let peers = SrtpPeers::default();
        peers.send_with(true, &key(1)).expect("tx");
        peers.receive_with(false, &key(1)).expect("rx");
        peers
            .receive_ssrc_with(true, 7, &key(2))
            .expect("rx by ssrc");
        let media = Media::new(Codec::parse("pcmu").expect("codec"), 20, None);
        let mut buf = Vec::new();
        let stamp = Stamp {
            stream: 3,
            seq: 1,
            sent_ns: 5,
        };
        media.packet(1, 9, stamp, &mut buf);
        let plain = buf.clone();
        peers.protect(true, &mut buf);
        assert_ne!(buf, plain, "protected");
        let mut wire = buf.clone();
        let n = peers.unprotect(false, &mut wire).expect("verifies");
        assert_eq!(&wire[..n], &plain[..]);
        let mut other = buf.clone();
        other[8..12].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(peers.unprotect(true, &mut other), None, "under another key");
        let mut gw = plain.clone();
        peers.protect(false, &mut gw);
        assert_eq!(gw, plain, "the gateway side is plain");
    }
}

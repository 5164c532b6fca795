//! SRTP termination on one relayed stream: what the userspace relay does to each packet between
//! receiving it and sending it on. A stream arriving from an SRTP leg is decrypted with that
//! peer's key; a stream leaving toward an SRTP leg is encrypted with the relay's key for that
//! peer; SRTP↔SRTP does both, with different keys per leg (the keys of one leg never reach the
//! other). Packets that fail (authentication, replay, wrong MKI, not RTP/RTCP) are dropped and
//! counted, never logged one by one.
//!
//! With rtcp-mux the RTP socket carries RTCP too: a packet is RTCP when its second byte is 192 to
//! 223 (RFC 5761 §4), and it is then handled as SRTCP.

use crate::srtp::{InboundContext, OutboundContext, PacketError};

/// Which stream a packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Rtp,
    Rtcp,
}

/// Per-stream SRTP counters (what `GetSession` shows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SrtpCounters {
    /// Dropped: the tag did not verify (wrong key, tampered, or plain RTP on an SRTP leg).
    pub auth_failures: u64,
    /// Dropped: replayed, or older than the replay window.
    pub replays: u64,
    /// Dropped: an MKI this leg did not signal.
    pub bad_mki: u64,
    /// Dropped: not RTP/RTCP, too short, no room for the trailer, the key expired, a sequence
    /// number the relay already protected, too many SSRCs toward the peer, or sent before the
    /// peer's key was known (its answer not yet processed).
    pub other: u64,
}

/// The SRTP work on one stream: decrypt on arrival, encrypt on departure, either or both.
#[derive(Debug, Default)]
pub struct StreamCrypto {
    inbound: Option<InboundContext>,
    outbound: Option<OutboundContext>,
    /// The SSRCs the outbound context protects for: libsrtp keeps state per SSRC and the plain
    /// side is not authenticated, so their number is capped.
    outbound_ssrcs: Vec<u32>,
    pub counters: SrtpCounters,
    /// The inbound key stands in for one not known yet: what fails to verify is early, not the
    /// peer's fault, and counted with `other`.
    pub inbound_pending: bool,
}

/// Distinct SSRCs one outbound context protects at most (a call has one or two per stream;
/// more is a peer or an attacker cycling SSRCs to grow the relay's state).
pub const MAX_OUTBOUND_SSRCS: usize = 16;

/// Whether a packet on an rtcp-mux port is RTCP (RFC 5761 §4).
pub fn is_muxed_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (192..=223).contains(&packet[1])
}

impl StreamCrypto {
    /// `inbound`: the arriving peer's key (None: it sends plain RTP); `outbound`: the relay's
    /// key toward the receiving peer (None: it receives plain RTP).
    pub fn new(inbound: Option<InboundContext>, outbound: Option<OutboundContext>) -> StreamCrypto {
        StreamCrypto {
            inbound,
            outbound,
            outbound_ssrcs: Vec::new(),
            counters: SrtpCounters::default(),
            inbound_pending: false,
        }
    }

    /// A new inbound context (the peer's key changed); the outbound one and the counters stay.
    pub fn set_inbound(&mut self, inbound: Option<InboundContext>) {
        self.inbound = inbound;
    }

    /// A new outbound context (the relay's key toward the peer changed); the inbound one and the
    /// counters stay.
    pub fn set_outbound(&mut self, outbound: Option<OutboundContext>) {
        self.outbound = outbound;
        self.outbound_ssrcs.clear();
    }

    /// Whether this stream needs the userspace relay for SRTP (it cannot be offloaded to XDP).
    pub fn terminates(&self) -> bool {
        self.inbound.is_some() || self.outbound.is_some()
    }

    /// Whether a packet is RTCP: on the RTCP stream, or told apart on a muxed port.
    fn rtcp(kind: StreamKind, rtcp_mux: bool, packet: &[u8]) -> bool {
        kind == StreamKind::Rtcp || (rtcp_mux && is_muxed_rtcp(packet))
    }

    /// Authenticates and decrypts the packet `buf[..len]` as it arrived (nothing to do on a
    /// plain leg). Returns its new length, or `None` when it is dropped (and counted): a packet
    /// that does not authenticate must not latch a source or count as media.
    pub fn unprotect(
        &mut self,
        kind: StreamKind,
        rtcp_mux: bool,
        buf: &mut [u8],
        len: usize,
    ) -> Option<usize> {
        let len = len.min(buf.len());
        let Some(i) = &mut self.inbound else {
            return Some(len);
        };
        let r = if Self::rtcp(kind, rtcp_mux, &buf[..len]) {
            i.unprotect_rtcp_in_place(&mut buf[..len])
        } else {
            i.unprotect_rtp_in_place(&mut buf[..len])
        };
        self.count(r)
    }

    /// Encrypts the (plain) packet `buf[..len]` for the receiving peer, in place (nothing to do
    /// toward a plain leg). Returns its new length, or `None` when it is dropped (and counted).
    pub fn protect(
        &mut self,
        kind: StreamKind,
        rtcp_mux: bool,
        buf: &mut [u8],
        len: usize,
    ) -> Option<usize> {
        let len = len.min(buf.len());
        let Some(o) = &mut self.outbound else {
            return Some(len);
        };
        let rtcp = Self::rtcp(kind, rtcp_mux, &buf[..len]);
        // The sender's SSRC: bytes 8..12 of RTP, 4..8 of RTCP.
        let at = if rtcp { 4 } else { 8 };
        if let Some(b) = buf.get(at..at + 4) {
            let ssrc = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            if !self.outbound_ssrcs.contains(&ssrc) {
                if self.outbound_ssrcs.len() >= MAX_OUTBOUND_SSRCS {
                    self.counters.other += 1;
                    return None;
                }
                self.outbound_ssrcs.push(ssrc);
            }
        }
        let r = if rtcp {
            o.protect_rtcp_in_place(buf, len)
        } else {
            o.protect_rtp_in_place(buf, len)
        };
        // Not the peer's fault: a plain peer repeating or rewinding its sequence numbers (libsrtp
        // never reuses a keystream), a key past its lifetime. Counted apart from inbound drops.
        match r {
            Ok(n) => Some(n),
            Err(_) => {
                self.counters.other += 1;
                None
            }
        }
    }

    /// [`unprotect`](Self::unprotect) then [`protect`](Self::protect).
    pub fn transform(
        &mut self,
        kind: StreamKind,
        rtcp_mux: bool,
        buf: &mut [u8],
        len: usize,
    ) -> Option<usize> {
        let n = self.unprotect(kind, rtcp_mux, buf, len)?;
        self.protect(kind, rtcp_mux, buf, n)
    }

    fn count(&mut self, r: Result<usize, PacketError>) -> Option<usize> {
        let c = &mut self.counters;
        match r {
            Ok(n) => return Some(n),
            Err(PacketError::Authentication) if self.inbound_pending => c.other += 1,
            Err(PacketError::Authentication) => c.auth_failures += 1,
            Err(PacketError::Replay) => c.replays += 1,
            Err(PacketError::BadMki) => c.bad_mki += 1,
            Err(_) => c.other += 1,
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::{MasterKey, Mki, Suite};

    fn key(suite: Suite, fill: u8) -> MasterKey {
        let bytes = vec![fill; suite.key_len() + suite.salt_len()];
        MasterKey::from_concatenated(suite, &bytes).expect("key")
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// A receiver report with no blocks, from SSRC 0x12345678.
    fn rtcp() -> Vec<u8> {
        vec![0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78]
    }

    fn room(p: &[u8]) -> Vec<u8> {
        let mut b = p.to_vec();
        b.resize(p.len() + 64, 0);
        b
    }

    /// A peer that encrypts with `k` (and its MKI) as SRTP endpoints do.
    fn peer(k: &MasterKey, mki: Option<Mki>) -> OutboundContext {
        OutboundContext::new(k, mki).expect("peer context")
    }

    /// Packets a peer protects before its key is known (the relay holds a stand-in until its
    /// answer is processed) are dropped as early, not as authentication failures; once the real
    /// key is in, they decrypt and a bad tag is the peer's again.
    #[test]
    fn drops_before_the_peer_s_key_is_known_are_not_authentication_failures() {
        let suite = Suite::AesCm128HmacSha1_80;
        let (real, stand_in) = (key(suite, 7), key(suite, 9));
        let mut s = StreamCrypto::new(
            Some(InboundContext::new(&stand_in, None).expect("inbound")),
            None,
        );
        s.inbound_pending = true;
        let mut sender = peer(&real, None);
        let mut wire = |seq: u16| {
            let plain = rtp(seq, b"early media");
            let mut p = room(&plain);
            let n = sender
                .protect_rtp_in_place(&mut p, plain.len())
                .expect("protect");
            p.truncate(n);
            p
        };
        let first = wire(1);
        let mut buf = room(&first);
        assert_eq!(
            s.transform(StreamKind::Rtp, false, &mut buf, first.len()),
            None
        );
        assert_eq!((s.counters.auth_failures, s.counters.other), (0, 1));
        // The answer is processed: the real key.
        s.set_inbound(Some(InboundContext::new(&real, None).expect("inbound")));
        s.inbound_pending = false;
        let second = wire(2);
        let mut buf = room(&second);
        assert!(
            s.transform(StreamKind::Rtp, false, &mut buf, second.len())
                .is_some()
        );
        let mut bad = wire(3);
        let n = bad.len();
        bad[14] ^= 1;
        let mut buf = room(&bad);
        assert_eq!(s.transform(StreamKind::Rtp, false, &mut buf, n), None);
        assert_eq!((s.counters.auth_failures, s.counters.other), (1, 1));
    }

    #[test]
    fn srtp_to_rtp_decrypts_and_counts_what_it_drops() {
        let suite = Suite::AesCm128HmacSha1_80;
        let k = key(suite, 7);
        let mki = Some(Mki::new(1, 1).expect("mki"));
        let mut from_pool =
            StreamCrypto::new(Some(InboundContext::new(&k, mki).expect("inbound")), None);
        assert!(from_pool.terminates());
        let mut sender = peer(&k, mki);
        let plain = rtp(1, b"hello from an SRTP client");
        let mut p = room(&plain);
        let n = sender
            .protect_rtp_in_place(&mut p, plain.len())
            .expect("protect");
        let wire = p[..n].to_vec();
        assert_ne!(&wire[12..12 + 5], b"hello", "encrypted on the wire");
        let mut buf = room(&wire);
        let out = from_pool
            .transform(StreamKind::Rtp, false, &mut buf, wire.len())
            .expect("forwarded");
        assert_eq!(
            &buf[..out],
            &plain[..],
            "exactly the payload the SRTP side sent"
        );
        // The same packet again: a replay.
        let mut again = room(&wire);
        assert_eq!(
            from_pool.transform(StreamKind::Rtp, false, &mut again, wire.len()),
            None
        );
        // A tampered packet: authentication fails.
        let second = rtp(2, b"second");
        let mut p = room(&second);
        let n2 = sender
            .protect_rtp_in_place(&mut p, second.len())
            .expect("protect");
        p[14] ^= 1;
        assert_eq!(
            from_pool.transform(StreamKind::Rtp, false, &mut p, n2),
            None
        );
        // Plain RTP on an SRTP leg that signalled an MKI: its last byte is read as the MKI, which
        // does not match (without an MKI it would fail authentication instead).
        let mut cleartext = room(&rtp(3, b"plain"));
        let l = rtp(3, b"plain").len();
        assert_eq!(
            from_pool.transform(StreamKind::Rtp, false, &mut cleartext, l),
            None
        );
        assert_eq!(
            from_pool.counters,
            SrtpCounters {
                auth_failures: 1,
                replays: 1,
                bad_mki: 1,
                other: 0
            }
        );
    }

    #[test]
    fn a_wrong_mki_is_dropped_and_counted() {
        let suite = Suite::AesCm128HmacSha1_80;
        let k = key(suite, 9);
        let mut s = StreamCrypto::new(
            Some(InboundContext::new(&k, Some(Mki::new(1, 1).expect("mki"))).expect("inbound")),
            None,
        );
        let mut sender = peer(&k, Some(Mki::new(2, 1).expect("mki")));
        let plain = rtp(1, b"x");
        let mut p = room(&plain);
        let n = sender
            .protect_rtp_in_place(&mut p, plain.len())
            .expect("protect");
        assert_eq!(s.transform(StreamKind::Rtp, false, &mut p, n), None);
        assert_eq!(s.counters.bad_mki, 1);
    }

    #[test]
    fn rtp_to_srtp_encrypts_for_the_receiving_peer() {
        for suite in [
            Suite::AesCm128HmacSha1_80,
            Suite::AesCm128HmacSha1_32,
            Suite::AeadAes128Gcm,
            Suite::AeadAes256Gcm,
        ] {
            let k = key(suite, 3);
            let mut toward_pool = StreamCrypto::new(
                None,
                Some(OutboundContext::new(&k, None).expect("outbound")),
            );
            let mut receiver = InboundContext::new(&k, None).expect("receiver");
            let plain = rtp(10, b"from a plain gateway");
            let mut buf = room(&plain);
            let n = toward_pool
                .transform(StreamKind::Rtp, false, &mut buf, plain.len())
                .expect("forwarded");
            assert!(n > plain.len(), "{suite:?}: a tag was added");
            let mut wire = buf[..n].to_vec();
            receiver
                .unprotect_rtp(&mut wire)
                .expect("the peer decrypts it");
            assert_eq!(wire, plain, "{suite:?}");
        }
    }

    #[test]
    fn srtp_to_srtp_re_keys_per_leg_and_muxed_rtcp_is_srtcp() {
        let suite = Suite::AeadAes128Gcm;
        let (pool_key, gw_key) = (key(suite, 1), key(suite, 2));
        let mut s = StreamCrypto::new(
            Some(InboundContext::new(&pool_key, None).expect("inbound")),
            Some(OutboundContext::new(&gw_key, None).expect("outbound")),
        );
        let mut pool_peer = peer(&pool_key, None);
        let mut gw_peer = InboundContext::new(&gw_key, None).expect("gateway peer");
        // RTP.
        let plain = rtp(5, b"both legs encrypted");
        let mut b = room(&plain);
        let n = pool_peer
            .protect_rtp_in_place(&mut b, plain.len())
            .expect("protect");
        let n = s
            .transform(StreamKind::Rtp, true, &mut b, n)
            .expect("forwarded");
        let mut out = b[..n].to_vec();
        gw_peer
            .unprotect_rtp(&mut out)
            .expect("the other leg's key");
        assert_eq!(out, plain);
        // RTCP on the same (muxed) port.
        let report = rtcp();
        assert!(is_muxed_rtcp(&report) && !is_muxed_rtcp(&plain));
        let mut b = room(&report);
        let n = pool_peer
            .protect_rtcp_in_place(&mut b, report.len())
            .expect("protect rtcp");
        let n = s
            .transform(StreamKind::Rtp, true, &mut b, n)
            .expect("forwarded");
        let mut out = b[..n].to_vec();
        gw_peer
            .unprotect_rtcp(&mut out)
            .expect("SRTCP with the other leg's key");
        assert_eq!(out, report);
        assert_eq!(s.counters, SrtpCounters::default());
    }

    #[test]
    fn the_ssrcs_protected_toward_a_peer_are_capped() {
        let suite = Suite::AesCm128HmacSha1_80;
        let mut s = StreamCrypto::new(
            None,
            Some(OutboundContext::new(&key(suite, 4), None).expect("outbound")),
        );
        for n in 0..(MAX_OUTBOUND_SSRCS as u32 + 4) {
            let mut p = rtp(1, b"x");
            p[8..12].copy_from_slice(&n.to_be_bytes());
            let len = p.len();
            let mut b = room(&p);
            let out = s.transform(StreamKind::Rtp, false, &mut b, len);
            assert_eq!(out.is_some(), (n as usize) < MAX_OUTBOUND_SSRCS, "ssrc {n}");
        }
        assert_eq!(s.counters.other, 4);
    }

    #[test]
    fn a_plain_stream_is_untouched() {
        let mut s = StreamCrypto::default();
        assert!(!s.terminates());
        let plain = rtp(1, b"x");
        let mut b = room(&plain);
        assert_eq!(
            s.transform(StreamKind::Rtp, false, &mut b, plain.len()),
            Some(plain.len())
        );
        assert_eq!(&b[..plain.len()], &plain[..]);
    }
}

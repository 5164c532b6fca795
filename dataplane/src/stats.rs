//! Stream counters and RFC 3550 receiver statistics.
//!
//! The XDP program keeps one [`StreamStats`] per CPU per stream; the userspace relay keeps one more
//! per stream with [`account_packet`], a line-for-line port of the kernel's `rtp_account`. A stream's
//! figures are the [`merge`] of all of them, so they are right whichever path carried the packets.

use crate::abi::StreamStats;

/// Counts one forwarded packet of `payload_len` bytes and, when it is RTP, its receiver statistics.
pub fn account_packet(st: &mut StreamStats, clock_rate: u32, payload: &[u8], now_ns: u64) {
    st.packets += 1;
    st.bytes += payload.len() as u64;
    st.last_seen_ns = now_ns;
    account_rtp(st, clock_rate, payload, now_ns);
}

/// RFC 3550 A.1 (sequence tracking, extended with wrap cycles) and A.8 (interarrival jitter).
/// Must stay identical to `rtp_account` in ebpf/relay.bpf.c.
pub fn account_rtp(st: &mut StreamStats, clock_rate: u32, p: &[u8], now_ns: u64) {
    // An RTCP header is 8 bytes, an RTP one 12.
    if p.len() < 8 || p[0] >> 6 != 2 {
        return;
    }
    if (192..=223).contains(&p[1]) {
        // RTCP multiplexed on the RTP port (RFC 5761): dead-call detection of rtcp-mux sessions.
        st.rtcp_seen_s = (now_ns / 1_000_000_000) as u32 + 1;
        return;
    }
    if p.len() < 12 {
        return;
    }
    let seq = u16::from_be_bytes([p[2], p[3]]);
    let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
    let arrival = if clock_rate != 0 {
        // Wrapping, as the kernel's 64-bit arithmetic does (only the differences matter).
        ((now_ns / 1000).wrapping_mul(u64::from(clock_rate)) / 1_000_000) as u32
    } else {
        0
    };
    let transit = arrival.wrapping_sub(ts);
    if st.rtp_init == 0 || st.ssrc != ssrc {
        st.ssrc = ssrc;
        st.base_seq = u32::from(seq);
        st.max_seq = u32::from(seq);
        st.rtp_packets = 1;
        st.jitter_q4 = 0;
        st.last_transit = transit;
        st.rtp_init = 1;
        return;
    }
    let max16 = st.max_seq as u16;
    let delta = seq.wrapping_sub(max16);
    if delta != 0 && delta < 0x8000 {
        let mut cycles = st.max_seq & 0xffff_0000;
        if seq < max16 {
            cycles = cycles.wrapping_add(0x1_0000);
        }
        st.max_seq = cycles | u32::from(seq);
    }
    st.rtp_packets = st.rtp_packets.wrapping_add(1);
    if clock_rate != 0 {
        let d = (transit.wrapping_sub(st.last_transit) as i32).unsigned_abs();
        st.last_transit = transit;
        st.jitter_q4 = st
            .jitter_q4
            .wrapping_add(d)
            .wrapping_sub((st.jitter_q4.wrapping_add(8)) >> 4);
    }
}

/// A stream's figures, all parts merged.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Merged {
    pub packets: u64,
    pub bytes: u64,
    pub src_mismatch: u64,
    pub last_seen_ns: Option<u64>,
    pub rtp: Option<RtpSummary>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RtpSummary {
    pub ssrc: u32,
    pub received: u64,
    pub expected: u64,
    /// Expected minus received; negative with duplicates, as RFC 3550 allows.
    pub lost: i64,
    pub highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
}

/// Places the extended number `ext` of another part in the extended space of `reference`: same
/// low 16 bits, the wrap cycle (possibly one before the reference's first) closest to it.
fn extend_near(ext: u32, reference: i64) -> i64 {
    let low = i64::from(ext & 0xffff);
    let base = reference & !0xffff;
    [base - 0x1_0000, base, base + 0x1_0000]
        .into_iter()
        .map(|c| c + low)
        .min_by_key(|&c| (c - reference).abs())
        .unwrap_or(low)
}

/// Merges the parts of one stream (one per CPU from the kernel, plus the userspace relay's).
///
/// Counters add up. RTP state is taken for the SSRC seen last; when several parts saw it (the
/// stream moved between CPUs or paths), their sequence ranges are put in the extended space of the
/// busiest part, and jitter is their packet-weighted mean.
pub fn merge<'a>(parts: impl IntoIterator<Item = &'a StreamStats>) -> Merged {
    let parts: Vec<&StreamStats> = parts.into_iter().collect();
    let mut m = Merged::default();
    for p in &parts {
        // Saturating: the parts come from a map anyone with CAP_BPF can write.
        m.packets = m.packets.saturating_add(p.packets);
        m.bytes = m.bytes.saturating_add(p.bytes);
        m.src_mismatch = m.src_mismatch.saturating_add(p.src_mismatch);
        if p.last_seen_ns != 0 {
            m.last_seen_ns = Some(
                m.last_seen_ns
                    .map_or(p.last_seen_ns, |l| l.max(p.last_seen_ns)),
            );
        }
    }
    let Some(current) = parts
        .iter()
        .filter(|p| p.rtp_init != 0)
        .max_by_key(|p| p.last_seen_ns)
    else {
        return m;
    };
    let ssrc = current.ssrc;
    let same: Vec<&&StreamStats> = parts
        .iter()
        .filter(|p| p.rtp_init != 0 && p.ssrc == ssrc)
        .collect();
    let Some(reference) = same.iter().max_by_key(|p| p.rtp_packets) else {
        return m;
    };
    // In signed space: a part that saw the packets before a wrap lands one cycle below.
    let reference_max = i64::from(reference.max_seq);
    let mut base = i64::MAX;
    let mut highest = i64::MIN;
    let mut received = 0u64;
    let mut jitter_weighted = 0u64;
    for p in &same {
        // base_seq is in the part's own cycle 0, so max - base is the part's span.
        let span = i64::from(p.max_seq.wrapping_sub(p.base_seq));
        let max = extend_near(p.max_seq, reference_max);
        base = base.min(max - span);
        highest = highest.max(max);
        received += u64::from(p.rtp_packets);
        jitter_weighted = jitter_weighted
            .saturating_add(u64::from(p.jitter_q4 >> 4).saturating_mul(u64::from(p.rtp_packets)));
    }
    let expected = (highest - base + 1).max(0) as u64;
    // Reported relative to the earliest part's first cycle, as a single receiver would count.
    let highest = (highest - (base & !0xffff)) as u32;
    m.rtp = Some(RtpSummary {
        ssrc,
        received,
        expected,
        lost: expected as i64 - received as i64,
        highest_seq: highest,
        jitter: jitter_weighted.checked_div(received).unwrap_or(0) as u32,
    });
    m
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` reads, so kernel and userspace
/// timestamps compare directly.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    /// Feeds packets `seqs`, each sent at seq*20 ms and arriving at seq*20 ms + delay_ms(i).
    fn feed(seqs: &[u16], delay_ms: impl Fn(usize) -> u64) -> StreamStats {
        let mut st = StreamStats::default();
        for (i, &s) in seqs.iter().enumerate() {
            let send_ms = u64::from(s) * 20;
            let now = 1_000_000_000_000 + (send_ms + delay_ms(i)) * 1_000_000;
            account_packet(&mut st, 8000, &rtp(s, u32::from(s) * 160, 7), now);
        }
        st
    }

    #[test]
    fn in_order_stream_has_no_loss_and_no_jitter() {
        let st = feed(&(0..100).collect::<Vec<_>>(), |_| 5);
        let m = merge([&st]);
        let r = m.rtp.expect("rtp");
        assert_eq!((r.received, r.expected, r.lost, r.jitter), (100, 100, 0, 0));
        assert_eq!(m.packets, 100);
        assert_eq!(m.bytes, 100 * 172);
    }

    #[test]
    fn gaps_count_as_lost() {
        let seqs: Vec<u16> = (0..100).filter(|s| s % 10 != 3).collect();
        let r = merge([&feed(&seqs, |_| 0)]).rtp.expect("rtp");
        assert_eq!((r.received, r.expected, r.lost), (90, 100, 10));
    }

    #[test]
    fn reordering_is_not_loss() {
        let mut seqs: Vec<u16> = (0..50).collect();
        seqs.swap(10, 11);
        seqs.swap(30, 33);
        let r = merge([&feed(&seqs, |_| 0)]).rtp.expect("rtp");
        assert_eq!(
            (r.received, r.expected, r.lost, r.highest_seq),
            (50, 50, 0, 49)
        );
    }

    #[test]
    fn sequence_wrap_extends_the_cycle() {
        let seqs: Vec<u16> = (0..20u32).map(|i| (65530 + i) as u16).collect();
        let st = feed(&seqs, |_| 0);
        let r = merge([&st]).rtp.expect("rtp");
        assert_eq!(r.highest_seq, 0x1_0000 + 13);
        assert_eq!((r.received, r.expected, r.lost), (20, 20, 0));
    }

    #[test]
    fn jitter_follows_rfc3550() {
        // Alternating 0 / 10 ms delay: |D| = 80 RTP units every packet; J -> 80 (J += (|D|-J)/16).
        let st = feed(&(0..400).collect::<Vec<_>>(), |i| {
            if i % 2 == 0 { 0 } else { 10 }
        });
        let mut j = 0f64;
        for i in 1..400 {
            let _ = i;
            j += (80.0 - j) / 16.0;
        }
        let r = merge([&st]).rtp.expect("rtp");
        assert!(
            (f64::from(r.jitter) - j).abs() <= 1.0,
            "jitter {} expected {j}",
            r.jitter
        );
    }

    #[test]
    fn rtcp_and_non_rtp_are_counted_but_not_as_rtp() {
        let mut st = StreamStats::default();
        account_packet(
            &mut st,
            8000,
            &[0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            1,
        );
        account_packet(&mut st, 8000, b"hello", 2);
        assert_eq!(st.packets, 2);
        assert_eq!(merge([&st]).rtp, None);
    }

    #[test]
    fn parts_from_two_cpus_merge() {
        let mut a = StreamStats::default();
        let mut b = StreamStats::default();
        for s in 0..100u16 {
            let part = if s < 60 { &mut a } else { &mut b };
            if s != 70 {
                account_packet(
                    part,
                    8000,
                    &rtp(s, u32::from(s) * 160, 9),
                    1_000_000 + u64::from(s),
                );
            }
        }
        let m = merge([&a, &b]);
        let r = m.rtp.expect("rtp");
        assert_eq!(
            (r.received, r.expected, r.lost, r.highest_seq),
            (99, 100, 1, 99)
        );
        assert_eq!(m.packets, 99);
    }

    proptest::proptest! {
        /// Whatever arrives from the network: no panic, every packet counted, and the RTP figures
        /// stay consistent (received <= packets; expected >= 1 once RTP was seen).
        #[test]
        fn any_payloads_are_safe(packets in proptest::collection::vec(
            (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0u64..1_000_000_000_000),
            0..60,
        ), clock in proptest::prelude::any::<u32>()) {
            let mut st = StreamStats::default();
            for (p, t) in &packets {
                account_packet(&mut st, clock, p, *t);
            }
            let m = merge([&st, &StreamStats::default()]);
            proptest::prop_assert_eq!(m.packets, packets.len() as u64);
            if let Some(r) = m.rtp {
                proptest::prop_assert!(r.received <= packets.len() as u64);
                proptest::prop_assert!(r.expected >= 1);
            }
        }

        /// Merging arbitrary per-CPU parts (as a corrupted or foreign map could hold) never panics.
        #[test]
        fn merge_of_any_parts_is_safe(parts in proptest::collection::vec(
            proptest::prelude::any::<(u64, u64, u64, u32, u32, u32, u32, u32, u32)>(), 0..8)) {
            let parts: Vec<StreamStats> = parts.into_iter().map(|(a, b, c, d, e, f, g, h, i)| StreamStats {
                packets: a >> 1, bytes: b >> 1, last_seen_ns: c, src_mismatch: 0, ssrc: d,
                rtp_packets: e, base_seq: f, max_seq: g, jitter_q4: h, last_transit: 0, rtp_init: i & 1, rtcp_seen_s: 0,
            }).collect();
            let _ = merge(parts.iter());
        }
    }

    #[test]
    fn rtcp_multiplexed_on_an_rtp_stream_is_noted_and_not_counted_as_rtp() {
        let mut st = StreamStats::default();
        let mut rtp = vec![0x80, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        rtp.extend([0u8; 160]);
        account_packet(&mut st, 8000, &rtp, 5_000_000_000);
        assert_eq!((st.rtp_packets, st.rtcp_seen_s), (1, 0));
        // An RTCP receiver report without report blocks (PT 201, its 8 bytes), on the same port.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
        account_packet(&mut st, 8000, &rr, 7_500_000_000);
        assert_eq!(st.rtp_packets, 1, "RTCP is no RTP packet");
        assert_eq!(st.rtcp_seen_s, 8, "second 7, plus one (0 is never)");
        assert_eq!(
            st.rtcp_seen_ns(),
            8_000_000_000,
            "never earlier than the packet"
        );
        assert_eq!(st.packets, 2, "both forwarded");
    }

    #[test]
    fn parts_merge_across_a_wrap() {
        // Userspace relays 65500-65535 before the offload; XDP then sees 0-30000 (and is busiest).
        let (mut user, mut xdp) = (StreamStats::default(), StreamStats::default());
        for s in 65500..=65535u16 {
            account_packet(
                &mut user,
                8000,
                &rtp(s, u32::from(s) * 160, 4),
                1_000 + u64::from(s),
            );
        }
        for s in 0..=30000u16 {
            account_packet(
                &mut xdp,
                8000,
                &rtp(s, u32::from(s) * 160, 4),
                10_000_000 + u64::from(s),
            );
        }
        let r = merge([&xdp, &user]).rtp.expect("rtp");
        assert_eq!(
            (r.received, r.expected, r.lost),
            (36 + 30001, 36 + 30001, 0)
        );
        assert_eq!(
            r.highest_seq,
            0x1_0000 + 30000,
            "one wrap since the first packet"
        );
    }

    #[test]
    fn new_ssrc_restarts_statistics() {
        let mut st = feed(&(0..10).collect::<Vec<_>>(), |_| 0);
        account_packet(&mut st, 8000, &rtp(5000, 0, 99), 2_000_000_000_000);
        let r = merge([&st]).rtp.expect("rtp");
        assert_eq!((r.ssrc, r.received, r.expected), (99, 1, 1));
    }
}

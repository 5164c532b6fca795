//! What the benchmark's receivers measure, from probes the senders stamp into each packet's
//! payload (after the 12-byte RTP header): per stream, how many arrived, were lost, came out of
//! order or twice, and, over all streams, the one-way latency percentiles and the jitter the
//! path added (RFC 3550 interarrival jitter of send vs receive time). Pure: no sockets, no clock.

use std::collections::HashMap;

use hdrhistogram::Histogram;

/// Marks a probe, so stray packets are not counted.
pub const MAGIC: u32 = mediator_dataplane::abi::PROBE_MAGIC; // "MDPB"
/// Bytes a probe takes in a payload.
pub const PROBE_LEN: usize = 24;
/// How far back (in sequence numbers) a repeat is recognised as a duplicate.
pub const DUP_WINDOW: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub stream: u32,
    pub seq: u64,
    /// Send time, ns on the clock sender and receiver share (CLOCK_MONOTONIC on one host).
    pub sent_ns: u64,
}

/// Writes `s` at the start of `payload`; false when the payload is too short.
pub fn stamp(payload: &mut [u8], s: Stamp) -> bool {
    let Some(p) = payload.get_mut(..PROBE_LEN) else {
        return false;
    };
    p[..4].copy_from_slice(&MAGIC.to_be_bytes());
    p[4..8].copy_from_slice(&s.stream.to_be_bytes());
    p[8..16].copy_from_slice(&s.seq.to_be_bytes());
    p[16..24].copy_from_slice(&s.sent_ns.to_be_bytes());
    true
}

/// The probe in `payload`, if it carries one.
pub fn read(payload: &[u8]) -> Option<Stamp> {
    let p = payload.get(..PROBE_LEN)?;
    let word = |r: std::ops::Range<usize>| p.get(r);
    if word(0..4)? != MAGIC.to_be_bytes() {
        return None;
    }
    Some(Stamp {
        stream: u32::from_be_bytes(word(4..8)?.try_into().ok()?),
        seq: u64::from_be_bytes(word(8..16)?.try_into().ok()?),
        sent_ns: u64::from_be_bytes(word(16..24)?.try_into().ok()?),
    })
}

#[derive(Debug, Default)]
struct StreamState {
    highest: Option<u64>,
    /// Bit i: seq `highest - i` was seen (i < DUP_WINDOW).
    seen: Vec<u64>,
    received: u64,
    duplicates: u64,
    reordered: u64,
    last_transit: Option<i128>,
    /// RFC 3550 jitter, ns, scaled by 16 as in its reference code.
    jitter16: i128,
}

impl StreamState {
    fn bit(&mut self, back: u64) -> (usize, u64) {
        let words = (DUP_WINDOW / 64) as usize;
        if self.seen.len() != words {
            self.seen = vec![0; words];
        }
        ((back / 64) as usize, 1u64 << (back % 64))
    }

    /// Shifts the window so `highest` moves up by `by`.
    fn advance(&mut self, by: u64) {
        let words = (DUP_WINDOW / 64) as usize;
        if self.seen.len() != words {
            self.seen = vec![0; words];
        }
        if by >= DUP_WINDOW {
            self.seen.iter_mut().for_each(|w| *w = 0);
            return;
        }
        // The window as one big integer, bit 0 = highest: shift left by `by`.
        let (wshift, bshift) = ((by / 64) as usize, by % 64);
        for i in (0..words).rev() {
            let src = i.checked_sub(wshift);
            let hi = src.map(|s| self.seen[s] << bshift).unwrap_or(0);
            let lo = match (src.and_then(|s| s.checked_sub(1)), bshift) {
                (Some(s), b) if b > 0 => self.seen[s] >> (64 - b),
                _ => 0,
            };
            self.seen[i] = hi | lo;
        }
    }
}

/// Everything a receiver learned.
#[derive(Debug, Default)]
pub struct Receiver {
    streams: HashMap<u32, StreamState>,
    latency: Option<Histogram<u64>>,
    strays: u64,
}

/// One run's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub sent: u64,
    /// Distinct probes received (duplicates not counted).
    pub received: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub duplicates: u64,
    /// Probes that arrived after a later one of their stream.
    pub reordered: u64,
    pub latency_p50_ns: u64,
    pub latency_p99_ns: u64,
    pub latency_p999_ns: u64,
    pub latency_max_ns: u64,
    /// Mean over streams of the RFC 3550 jitter the path added, ns.
    pub jitter_ns: f64,
    /// Packets without a probe.
    pub strays: u64,
}

impl Receiver {
    /// A packet's payload arrived at `recv_ns`.
    pub fn payload(&mut self, payload: &[u8], recv_ns: u64) {
        match read(payload) {
            Some(s) => self.record(s, recv_ns),
            None => self.strays += 1,
        }
    }

    pub fn record(&mut self, s: Stamp, recv_ns: u64) {
        let st = self.streams.entry(s.stream).or_default();
        match st.highest {
            None => {
                st.highest = Some(s.seq);
                let (w, b) = st.bit(0);
                st.seen[w] |= b;
            }
            Some(h) if s.seq > h => {
                st.advance(s.seq - h);
                st.highest = Some(s.seq);
                let (w, b) = st.bit(0);
                st.seen[w] |= b;
            }
            Some(h) => {
                let back = h - s.seq;
                if back < DUP_WINDOW {
                    let (w, b) = st.bit(back);
                    if st.seen[w] & b != 0 {
                        st.duplicates += 1;
                        return;
                    }
                    st.seen[w] |= b;
                }
                if back > 0 {
                    st.reordered += 1;
                }
            }
        }
        st.received += 1;
        let transit = i128::from(recv_ns) - i128::from(s.sent_ns);
        if let Some(last) = st.last_transit {
            let d = (transit - last).abs();
            st.jitter16 += d - ((st.jitter16 + 8) >> 4);
        }
        st.last_transit = Some(transit);
        let hist = self.latency.get_or_insert_with(|| {
            Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
        });
        let _ = hist.record(recv_ns.saturating_sub(s.sent_ns).max(1));
    }

    /// The figures, given how many probes each stream's sender sent.
    pub fn report(&self, sent: &HashMap<u32, u64>) -> Report {
        let total_sent: u64 = sent.values().sum();
        let received: u64 = self.streams.values().map(|s| s.received).sum();
        let lost = total_sent.saturating_sub(received);
        let (p50, p99, p999, max) = match &self.latency {
            Some(h) => (
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
            ),
            None => (0, 0, 0, 0),
        };
        let jitters: Vec<f64> = self
            .streams
            .values()
            .filter(|s| s.received > 1)
            .map(|s| s.jitter16 as f64 / 16.0)
            .collect();
        Report {
            sent: total_sent,
            received,
            lost,
            loss_ratio: if total_sent == 0 {
                0.0
            } else {
                lost as f64 / total_sent as f64
            },
            duplicates: self.streams.values().map(|s| s.duplicates).sum(),
            reordered: self.streams.values().map(|s| s.reordered).sum(),
            latency_p50_ns: p50,
            latency_p99_ns: p99,
            latency_p999_ns: p999,
            latency_max_ns: max,
            jitter_ns: if jitters.is_empty() {
                0.0
            } else {
                jitters.iter().sum::<f64>() / jitters.len() as f64
            },
            strays: self.strays,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn deliver(r: &mut Receiver, stream: u32, seqs: &[u64]) {
        for &seq in seqs {
            r.record(
                Stamp {
                    stream,
                    seq,
                    sent_ns: seq * 20_000_000,
                },
                seq * 20_000_000 + 100_000,
            );
        }
    }

    fn sent(pairs: &[(u32, u64)]) -> HashMap<u32, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn stamps_round_trip_and_strays_are_told_apart() {
        let mut buf = [0u8; 40];
        let s = Stamp {
            stream: 7,
            seq: u64::MAX - 1,
            sent_ns: 123_456_789,
        };
        assert!(stamp(&mut buf, s));
        assert_eq!(read(&buf), Some(s));
        assert!(!stamp(&mut [0u8; 10], s));
        let mut r = Receiver::default();
        r.payload(&[0u8; 40], 1);
        r.payload(&buf[..10], 1);
        assert_eq!(r.report(&HashMap::new()).strays, 2);
    }

    #[test]
    fn loss_reordering_and_duplicates_are_counted_exactly() {
        let mut r = Receiver::default();
        // 0..10 sent; 3 and 7 lost; 5 arrives after 6; 2 arrives twice.
        deliver(&mut r, 1, &[0, 1, 2, 4, 6, 5, 2, 8, 9]);
        let rep = r.report(&sent(&[(1, 10)]));
        assert_eq!(
            (rep.received, rep.lost, rep.reordered, rep.duplicates),
            (8, 2, 1, 1)
        );
        assert!((rep.loss_ratio - 0.2).abs() < 1e-12);
        // A second stream does not disturb the first.
        deliver(&mut r, 2, &[0, 1, 2]);
        let rep = r.report(&sent(&[(1, 10), (2, 3)]));
        assert_eq!((rep.received, rep.lost), (11, 2));
    }

    #[test]
    fn duplicates_far_back_and_jumps_beyond_the_window() {
        let mut r = Receiver::default();
        deliver(&mut r, 1, &[0, 1, 5000, 1, 4999, 4999, 10_000, 0]);
        let rep = r.report(&sent(&[(1, 10_001)]));
        // 1 and 0 again come more than DUP_WINDOW behind the highest: they cannot be told from
        // late first arrivals, so they count as reordered, not as duplicates (the window bounds
        // the memory per stream).
        assert_eq!(rep.duplicates, 1, "4999 twice");
        assert_eq!(rep.reordered, 3, "1, 4999 and 0 behind the highest");
    }

    #[test]
    fn latency_percentiles_follow_the_distribution() {
        let mut r = Receiver::default();
        for i in 1..=10_000u64 {
            // Latencies 1..=10000 µs.
            r.record(
                Stamp {
                    stream: 1,
                    seq: i,
                    sent_ns: i * 1_000_000,
                },
                i * 1_000_000 + i * 1_000,
            );
        }
        let rep = r.report(&sent(&[(1, 10_000)]));
        let near = |v: u64, want: u64| (v as f64 - want as f64).abs() / want as f64 <= 0.002;
        assert!(near(rep.latency_p50_ns, 5_000_000), "{rep:?}");
        assert!(near(rep.latency_p99_ns, 9_900_000), "{rep:?}");
        assert!(near(rep.latency_p999_ns, 9_990_000), "{rep:?}");
        assert!(near(rep.latency_max_ns, 10_000_000), "{rep:?}");
    }

    #[test]
    fn jitter_is_zero_for_a_constant_path_and_tracks_a_varying_one() {
        let mut r = Receiver::default();
        deliver(&mut r, 1, &(0..500).collect::<Vec<_>>());
        assert_eq!(r.report(&sent(&[(1, 500)])).jitter_ns, 0.0);
        // Transit alternating 100 µs and 300 µs: |D| = 200 µs each packet, J converges to it.
        let mut r = Receiver::default();
        for i in 0..2000u64 {
            let transit = if i % 2 == 0 { 100_000 } else { 300_000 };
            r.record(
                Stamp {
                    stream: 1,
                    seq: i,
                    sent_ns: i * 20_000_000,
                },
                i * 20_000_000 + transit,
            );
        }
        let j = r.report(&sent(&[(1, 2000)])).jitter_ns;
        assert!((j - 200_000.0).abs() < 1_000.0, "{j}");
    }

    proptest! {
        /// Any delivery order with repeats: distinct probes plus losses equal what was sent,
        /// repeats are duplicates, and nothing panics.
        #[test]
        fn counts_add_up(order in proptest::collection::vec(0u64..300, 0..600)) {
            let mut r = Receiver::default();
            deliver(&mut r, 1, &order);
            let distinct: std::collections::HashSet<u64> = order.iter().copied().collect();
            let rep = r.report(&sent(&[(1, 300)]));
            prop_assert_eq!(rep.received, distinct.len() as u64);
            prop_assert_eq!(rep.received + rep.lost, 300);
            prop_assert_eq!(rep.duplicates, (order.len() - distinct.len()) as u64);
        }
    }
}

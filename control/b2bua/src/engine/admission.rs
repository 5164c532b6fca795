//! Admission of new calls, as pure decisions: a limit of concurrent calls per pool and per trunk,
//! and a call rate per peer (a token bucket: `rate` calls a second, bursts of twice that). A
//! refused call gets `503` with `Retry-After`, so a Front End or gateway fails over at once
//! instead of retrying into the same overload.

use std::collections::HashMap;
use std::net::IpAddr;
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

/// What is admitted (0 in any field: no limit of that kind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Calls in progress on one pool at most.
    pub calls_per_pool: usize,
    /// Calls in progress on one trunk at most (from its gateway, or being tried on or answered
    /// by it).
    pub calls_per_trunk: usize,
    /// New calls a second from one peer address.
    pub calls_per_second_per_peer: u32,
}

/// The `Retry-After` of a refused call, in seconds.
pub(crate) const RETRY_AFTER_SECS: u32 = 5;

/// Peers whose call rate is followed at most; beyond it the table starts over (only configured
/// peers reach admission, so this is never reached in practice).
const MAX_PEERS: usize = 10_000;

/// Why a call is refused: the Warning's text.
pub(super) fn refuse_by_count(
    limits: &Limits,
    pool: &str,
    on_pool: usize,
    trunk: Option<(&str, usize)>,
) -> Option<String> {
    if limits.calls_per_pool > 0 && on_pool >= limits.calls_per_pool {
        return Some(format!(
            "pool {pool} has {on_pool} calls, its limit (max_calls_per_pool)"
        ));
    }
    if let Some((trunk, on_trunk)) = trunk
        && limits.calls_per_trunk > 0
        && on_trunk >= limits.calls_per_trunk
    {
        return Some(format!(
            "trunk {trunk} has {on_trunk} calls, its limit (max_calls_per_trunk)"
        ));
    }
    None
}

/// A token bucket per peer address.
#[derive(Debug, Default)]
pub(super) struct Rates {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Rates {
    /// Takes one call's token from `peer`'s bucket at `now`; why not when it is empty.
    pub(super) fn take(&mut self, limits: &Limits, peer: IpAddr, now: Instant) -> Option<String> {
        let rate = limits.calls_per_second_per_peer;
        if rate == 0 {
            return None;
        }
        let burst = f64::from(rate) * 2.0;
        if self.buckets.len() >= MAX_PEERS && !self.buckets.contains_key(&peer) {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(peer).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * f64::from(rate)).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Some(format!(
                "{peer} sends more than {rate} calls a second (calls_per_second_per_peer)"
            ));
        }
        *tokens -= 1.0;
        None
    }
}

/// The `Retry-After` header of a refused call.
pub(super) fn retry_after() -> (&'static str, String) {
    ("Retry-After", RETRY_AFTER_SECS.to_string())
}

/// How long the bucket of a peer that sends at `rate` takes to give one more call.
#[cfg(test)]
fn refill(rate: u32) -> Duration {
    Duration::from_secs_f64(1.0 / f64::from(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_refused_at_their_limits_and_say_which() {
        let l = Limits {
            calls_per_pool: 10,
            calls_per_trunk: 3,
            calls_per_second_per_peer: 0,
        };
        assert_eq!(refuse_by_count(&l, "p", 9, Some(("t", 2))), None);
        let why = refuse_by_count(&l, "p", 10, Some(("t", 0))).expect("pool");
        assert!(why.contains("pool p") && why.contains("max_calls_per_pool"));
        let why = refuse_by_count(&l, "p", 0, Some(("t", 3))).expect("trunk");
        assert!(why.contains("trunk t") && why.contains("max_calls_per_trunk"));
        assert_eq!(
            refuse_by_count(&Limits::default(), "p", 1 << 20, Some(("t", 1 << 20))),
            None
        );
    }

    #[test]
    fn a_peer_gets_bursts_of_twice_its_rate_then_its_rate() {
        let l = Limits {
            calls_per_second_per_peer: 5,
            ..Limits::default()
        };
        let (a, b): (IpAddr, IpAddr) = (
            "198.18.2.2".parse().expect("ip"),
            "198.18.2.3".parse().expect("ip"),
        );
        let mut r = Rates::default();
        let t0 = Instant::now();
        let admitted = (0..100).filter(|_| r.take(&l, a, t0).is_none()).count();
        assert_eq!(admitted, 10, "a burst of twice the rate");
        assert!(
            r.take(&l, b, t0).is_none(),
            "another peer has its own bucket"
        );
        let why = r.take(&l, a, t0).expect("empty");
        assert!(why.contains("198.18.2.2") && why.contains("5 calls a second"));
        assert!(
            r.take(&l, a, t0 + refill(5)).is_none(),
            "one more after 1/rate"
        );
        assert!(r.take(&l, a, t0 + refill(5)).is_some());
        // A second later the peer may go on at its rate.
        let t1 = t0 + refill(5) + Duration::from_secs(1);
        let admitted = (0..100).filter(|_| r.take(&l, a, t1).is_none()).count();
        assert_eq!(admitted, 5);
        assert!(
            Rates::default().take(&Limits::default(), a, t0).is_none(),
            "no limit"
        );
    }
}

//! Gateway health, as Lync's Mediation Server keeps it: an OPTIONS probe to every trunk's peer
//! at the trunk's `options_interval_secs`; `options_failures` failed probes in a row mark the
//! trunk down, and routing skips it; a down trunk is probed faster (a quarter of the interval,
//! at least a second, doubling back up to the interval) and is up again on its first answer.
//! Calls in progress are never touched. A gateway named by FQDN is probed at the addresses it
//! resolved to, one at a time: the probes stay on an address while it answers and move to the
//! next when it fails, so the trunk goes down only when `options_failures` probes in a row, over
//! its addresses, found none alive. The decisions ([`alive`], [`Probe::record`]) are pure; the
//! engine sends the probes and feeds their outcome back.

use super::*;

/// A probe's answer counts as life: any final response from 200 to 499 except 408 (the peer's
/// SIP stack answered, even if it dislikes OPTIONS). 408, 5xx, 6xx and no answer are failures.
pub(super) fn alive(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..=499).contains(&s) && s != 408)
}

/// One trunk's probing.
pub(super) struct Probe {
    /// Where the probes go: the gateway's address, or its FQDN's addresses in priority order.
    pub(super) peers: Vec<Peer>,
    /// The one probed now (an index into `peers`).
    pub(super) at: usize,
    pub(super) gateway: String,
    pub(super) interval: Duration,
    pub(super) threshold: u32,
    pub(super) state: TrunkState,
    pub(super) since_unix_ms: u64,
    /// Failed probes in a row.
    pub(super) failures: u32,
    pub(super) probes: u64,
    pub(super) downs: u64,
    /// The last probe's outcome: its status (None: no answer), when, and its round trip.
    pub(super) last: Option<(Option<u16>, u64, Option<Duration>)>,
    /// When the next probe goes out.
    pub(super) next_at: Instant,
    /// The wait before the next probe while down (doubles up to the interval).
    pub(super) down_delay: Duration,
    /// The probe in flight: its transaction, when it went out, when it is given up.
    pub(super) in_flight: Option<(TxKey, Instant, Instant)>,
}

/// What a probe's outcome changed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change {
    None,
    Up,
    Down,
}

impl Probe {
    pub(super) fn new(
        peers: Vec<Peer>,
        gateway: &str,
        interval: Duration,
        threshold: u32,
        now: Instant,
    ) -> Probe {
        Probe {
            peers,
            at: 0,
            gateway: gateway.into(),
            interval,
            threshold,
            state: TrunkState::Unknown,
            since_unix_ms: 0,
            failures: 0,
            probes: 0,
            downs: 0,
            last: None,
            next_at: now,
            down_delay: Duration::ZERO,
            in_flight: None,
        }
    }

    /// The first wait between probes of a down trunk.
    fn fast(&self) -> Duration {
        (self.interval / 4)
            .max(Duration::from_secs(1))
            .min(self.interval)
    }

    /// Takes a probe's outcome (`status` None: no answer in time) at `now`, schedules the next
    /// probe (counted from when this one went out, so `options_failures` failures take about
    /// that many intervals), and says whether the trunk went up or down.
    pub(super) fn record(
        &mut self,
        status: Option<u16>,
        rtt: Option<Duration>,
        now: Instant,
        unix_ms: u64,
    ) -> Change {
        let now = self
            .in_flight
            .take()
            .map(|(_, sent, _)| sent)
            .unwrap_or(now);
        self.last = Some((status, unix_ms, rtt));
        if alive(status) {
            self.failures = 0;
            self.next_at = now + self.interval;
            self.down_delay = Duration::ZERO;
            if self.state != TrunkState::Up {
                self.state = TrunkState::Up;
                self.since_unix_ms = unix_ms;
                return Change::Up;
            }
            return Change::None;
        }
        self.failures = self.failures.saturating_add(1);
        // The next probe tries the gateway's next address (an FQDN's).
        self.at = (self.at + 1) % self.peers.len().max(1);
        if self.state == TrunkState::Down {
            self.down_delay = (self.down_delay * 2).min(self.interval).max(self.fast());
            self.next_at = now + self.down_delay;
            return Change::None;
        }
        if self.failures >= self.threshold {
            self.state = TrunkState::Down;
            self.since_unix_ms = unix_ms;
            self.downs += 1;
            self.down_delay = self.fast();
            self.next_at = now + self.down_delay;
            return Change::Down;
        }
        self.next_at = now + self.interval;
        Change::None
    }

    /// Where the next probe goes.
    pub(super) fn peer(&self) -> Option<Peer> {
        self.peers.get(self.at).or(self.peers.first()).copied()
    }

    /// When this probe wants waking.
    pub(super) fn deadline(&self) -> Instant {
        match &self.in_flight {
            Some((_, _, give_up)) => *give_up,
            None => self.next_at,
        }
    }

    pub(super) fn info(&self, trunk: &str) -> TrunkHealth {
        let (last_status, last_unix_ms, rtt) = match self.last {
            Some((s, at, rtt)) => (s, Some(at), rtt),
            None => (None, None, None),
        };
        TrunkHealth {
            trunk: trunk.into(),
            gateway: self.gateway.clone(),
            peer: self
                .peer()
                .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.remote),
            state: self.state,
            since_unix_ms: (self.since_unix_ms != 0).then_some(self.since_unix_ms),
            failures: self.failures,
            probes: self.probes,
            downs: self.downs,
            last_status,
            last_unix_ms,
            rtt,
            interval: self.interval,
            threshold: self.threshold,
        }
    }
}

impl Engine {
    /// Keeps one probe per trunk with probing on (new trunks are probed at once; a trunk whose
    /// peer or settings changed starts again from unknown), sends the probes that are due, and
    /// gives up on the ones unanswered in time.
    pub(super) fn probe(&mut self, topo: &Topology, out: &mut Vec<Action>, now: Instant) {
        let mut wanted: HashMap<String, (Vec<Peer>, String, Duration, u32)> = HashMap::new();
        let trunks: Vec<mediator_topology::model::Trunk> =
            topo.trunks.values().map(|t| t.value.clone()).collect();
        for t in &trunks {
            let Ok(eff) = topo.effective(&t.name) else {
                continue;
            };
            let secs = eff.settings.options_interval_secs.unwrap_or(60);
            if secs == 0 {
                continue;
            }
            // An FQDN not resolved (yet) is not probed: routing skips it for that reason.
            let Ok(peers) = self.trunk_peers(topo, t, false) else {
                continue;
            };
            let threshold = eff.settings.options_failures.unwrap_or(5).max(1);
            wanted.insert(
                t.name.clone(),
                (
                    peers,
                    t.gateway.clone(),
                    Duration::from_secs(u64::from(secs)),
                    threshold,
                ),
            );
        }
        // A trunk keeps its state and counters while it probes the same gateway from the same
        // address and transport (a new interval or threshold applies from its next probe, new
        // DNS answers from the next probe); another gateway starts it afresh.
        self.health.retain(|trunk, p| {
            let keep = wanted.get(trunk).is_some_and(|(peers, gw, _, _)| {
                p.gateway == *gw
                    && p.peers.first().map(|p| (p.local, p.transport))
                        == peers.first().map(|p| (p.local, p.transport))
            });
            if !keep && let Some((key, _, _)) = p.in_flight.take() {
                self.by_client.insert(key, Purpose::Ignore);
            }
            keep
        });
        for (trunk, (peers, gw, interval, n)) in wanted {
            let p = self
                .health
                .entry(trunk)
                .or_insert_with(|| Probe::new(peers.clone(), &gw, interval, n, now));
            if p.interval != interval {
                p.next_at = p.next_at.min(now + interval);
            }
            if p.peers != peers {
                // Stay on the same address if DNS still gives it.
                let cur = p.peer();
                p.at = peers.iter().position(|x| Some(*x) == cur).unwrap_or(0);
                p.peers = peers;
            }
            p.interval = interval;
            p.threshold = n;
        }
        let mut due: Vec<String> = Vec::new();
        let mut given_up: Vec<(String, TxKey)> = Vec::new();
        for (trunk, p) in &self.health {
            match &p.in_flight {
                Some((key, _, give_up)) if *give_up <= now => {
                    given_up.push((trunk.clone(), key.clone()))
                }
                None if p.next_at <= now => due.push(trunk.clone()),
                _ => {}
            }
        }
        for (trunk, key) in given_up {
            // A late answer is ignored; the transaction ends on its own timer.
            self.by_client.insert(key, Purpose::Ignore);
            self.probe_result(&trunk, None, out, now);
        }
        due.sort();
        for trunk in due {
            self.send_probe(&trunk, out, now);
        }
    }

    fn send_probe(&mut self, trunk: &str, out: &mut Vec<Action>, now: Instant) {
        let Some((peer, interval)) = self
            .health
            .get(trunk)
            .and_then(|p| Some((p.peer()?, p.interval)))
        else {
            return;
        };
        let branch = self.branch();
        let tag = self.token();
        let call_id = format!("{}@mediator.invalid", self.token());
        let host = host_of(peer.remote);
        let uri = format!(
            "sip:{host}:{}{}",
            peer.remote.port(),
            transport_param(&peer)
        );
        let headers = [
            ("Via", via(&peer, &branch)),
            ("Max-Forwards", "70".to_string()),
            (
                "From",
                format!("<sip:mediator@{}>;tag={}", peer.local, &tag[..10]),
            ),
            ("To", format!("<{uri}>")),
            ("Call-ID", call_id),
            ("CSeq", "1 OPTIONS".to_string()),
            ("Contact", contact(&peer)),
            ("Accept", SDP.to_string()),
        ];
        let Ok(req) = build_request("OPTIONS", &uri, &headers, None) else {
            // Never due again at once (no busy loop): tried at the next interval.
            tracing::warn!(trunk, "cannot build the OPTIONS probe");
            if let Some(p) = self.health.get_mut(trunk) {
                p.next_at = now + interval;
            }
            return;
        };
        let (key, step) = self.layer.request(req, peer, now);
        emit(out, step);
        // Given up at the transaction's own timeout (64·T1) or the interval, whichever is first.
        let give_up = now + (64 * self.cfg.timers.t1).min(interval);
        self.by_client.insert(
            key.clone(),
            Purpose::Probe {
                trunk: trunk.to_string(),
            },
        );
        if let Some(p) = self.health.get_mut(trunk) {
            p.probes += 1;
            p.in_flight = Some((key, now, give_up));
        }
    }

    /// A probe of `trunk` answered `status` (None: not in time).
    pub(super) fn probe_result(
        &mut self,
        trunk: &str,
        status: Option<u16>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let unix_ms = self.wall_ms;
        let Some(p) = self.health.get_mut(trunk) else {
            return;
        };
        let rtt = match (&p.in_flight, status) {
            (Some((_, sent, _)), Some(_)) => Some(now.saturating_duration_since(*sent)),
            _ => None,
        };
        let change = p.record(status, rtt, now, unix_ms);
        let why = match status {
            Some(s) => format!("OPTIONS answered {s}"),
            None => "OPTIONS unanswered".to_string(),
        };
        let state = match change {
            Change::None => return,
            Change::Up => TrunkState::Up,
            Change::Down => TrunkState::Down,
        };
        let why = if state == TrunkState::Down {
            format!("{why} ({} failed probes in a row)", p.failures)
        } else {
            why
        };
        out.push(Action::TrunkState(Box::new(TrunkChange {
            trunk: trunk.to_string(),
            gateway: p.gateway.clone(),
            state,
            why,
            unix_ms,
        })));
    }

    /// Whether routing skips `trunk`: its probes marked it down.
    pub(super) fn is_down(&self, trunk: &str) -> bool {
        self.health
            .get(trunk)
            .is_some_and(|p| p.state == TrunkState::Down)
    }

    /// Every probed trunk's health, by trunk name.
    pub fn trunk_health(&self) -> Vec<TrunkHealth> {
        let mut v: Vec<TrunkHealth> = self.health.iter().map(|(t, p)| p.info(t)).collect();
        v.sort_by(|a, b| a.trunk.cmp(&b.trunk));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(threshold: u32) -> Probe {
        let peer = Peer {
            remote: "198.18.0.2:5060".parse().expect("addr"),
            local: "198.18.0.1:5068".parse().expect("addr"),
            transport: mediator_sip::Transport::Udp,
        };
        Probe::new(
            vec![peer],
            "gw",
            Duration::from_secs(60),
            threshold,
            Instant::now(),
        )
    }

    #[test]
    fn what_counts_as_alive() {
        for s in [200, 404, 405, 481, 489, 499] {
            assert!(alive(Some(s)), "{s}");
        }
        for s in [408, 500, 503, 600, 603] {
            assert!(!alive(Some(s)), "{s}");
        }
        assert!(!alive(None));
    }

    #[test]
    fn down_after_the_threshold_then_faster_probes_backing_off_and_up_at_once() {
        let mut p = probe(3);
        let t0 = Instant::now();
        assert_eq!(p.record(Some(200), None, t0, 1), Change::Up);
        assert_eq!(p.record(Some(200), None, t0, 1), Change::None);
        assert_eq!(p.state, TrunkState::Up);
        assert_eq!(p.next_at, t0 + Duration::from_secs(60));
        assert_eq!(p.record(None, None, t0, 2), Change::None);
        assert_eq!(p.record(Some(503), None, t0, 3), Change::None);
        assert_eq!(p.state, TrunkState::Up);
        assert_eq!(p.record(Some(408), None, t0, 4), Change::Down);
        assert_eq!(
            (p.state, p.since_unix_ms, p.downs),
            (TrunkState::Down, 4, 1)
        );
        // Faster while down, doubling back up to the interval.
        assert_eq!(p.next_at, t0 + Duration::from_secs(15));
        p.record(None, None, t0, 5);
        assert_eq!(p.next_at, t0 + Duration::from_secs(30));
        p.record(None, None, t0, 6);
        assert_eq!(p.next_at, t0 + Duration::from_secs(60));
        p.record(None, None, t0, 7);
        assert_eq!(p.next_at, t0 + Duration::from_secs(60));
        assert_eq!(p.record(Some(404), None, t0, 8), Change::Up);
        assert_eq!(
            (p.state, p.failures, p.since_unix_ms),
            (TrunkState::Up, 0, 8)
        );
        // A success in between resets the count.
        p.record(None, None, t0, 9);
        p.record(None, None, t0, 10);
        p.record(Some(200), None, t0, 11);
        p.record(None, None, t0, 12);
        assert_eq!(p.state, TrunkState::Up);
    }

    #[test]
    fn a_short_interval_is_probed_at_least_a_second_apart_while_down() {
        let mut p = probe(1);
        p.interval = Duration::from_secs(2);
        let t0 = Instant::now();
        assert_eq!(p.record(None, None, t0, 1), Change::Down);
        assert_eq!(p.next_at, t0 + Duration::from_secs(1));
    }
}

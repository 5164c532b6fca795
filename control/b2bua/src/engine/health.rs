//! Gateway health, as Lync's Mediation Server keeps it: an OPTIONS probe to every trunk's peer
//! at the trunk's `options_interval_secs`; `options_failures` failed probes in a row mark the
//! trunk down, and routing skips it; a down trunk is probed faster (a quarter of the interval,
//! at least a second, doubling back up to the interval) and is up again on its first answer.
//! Calls in progress are never touched. A gateway named by FQDN is probed at every address it
//! resolved to, each on its own clock: an address with `options_failures` failed probes in a
//! row is down and calls skip it while another is up; the trunk is up while any address is,
//! and down once every one is. The decisions ([`alive`], [`Probe::record`],
//! [`TrunkProbes::state_now`]) are pure; the engine sends the probes and feeds their outcome
//! back.

use super::*;

/// A probe's answer counts as life: any final response from 200 to 499 except 408 (the peer's
/// SIP stack answered, even if it dislikes OPTIONS). 408, 5xx, 6xx and no answer are failures.
pub(super) fn alive(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..=499).contains(&s) && s != 408)
}

/// One trunk's probing: a [`Probe`] per address of its gateway (an FQDN's, in priority order),
/// and the trunk's state drawn from theirs.
pub(super) struct TrunkProbes {
    pub(super) gateway: String,
    pub(super) probes: Vec<Probe>,
    pub(super) state: TrunkState,
    pub(super) since_unix_ms: u64,
    /// Times the trunk went down.
    pub(super) downs: u64,
}

impl TrunkProbes {
    pub(super) fn new(gateway: &str) -> TrunkProbes {
        TrunkProbes {
            gateway: gateway.into(),
            probes: Vec::new(),
            state: TrunkState::Unknown,
            since_unix_ms: 0,
            downs: 0,
        }
    }

    /// The trunk's state from its addresses': up while any is up, down once every one is down;
    /// otherwise (addresses not probed yet) as it was.
    pub(super) fn state_now(&self) -> TrunkState {
        if self.probes.iter().any(|p| p.state == TrunkState::Up) {
            TrunkState::Up
        } else if !self.probes.is_empty() && self.probes.iter().all(|p| p.state == TrunkState::Down)
        {
            TrunkState::Down
        } else {
            self.state
        }
    }

    /// Takes the outcome of the probe of address `at` and says whether the trunk went up or
    /// down; the address's own change comes second.
    pub(super) fn record(
        &mut self,
        at: SocketAddr,
        status: Option<u16>,
        rtt: Option<Duration>,
        now: Instant,
        unix_ms: u64,
    ) -> (Change, Change) {
        let Some(p) = self.probes.iter_mut().find(|p| p.peer.remote == at) else {
            return (Change::None, Change::None);
        };
        let address = p.record(status, rtt, now, unix_ms);
        let state = self.state_now();
        if state == self.state {
            return (Change::None, address);
        }
        self.state = state;
        self.since_unix_ms = unix_ms;
        match state {
            TrunkState::Up => (Change::Up, address),
            TrunkState::Down => {
                self.downs += 1;
                (Change::Down, address)
            }
            TrunkState::Unknown => (Change::None, address),
        }
    }

    /// Whether calls skip address `remote`: its probes found it down.
    pub(super) fn address_down(&self, remote: SocketAddr) -> bool {
        self.probes
            .iter()
            .any(|p| p.peer.remote == remote && p.state == TrunkState::Down)
    }

    pub(super) fn info(&self, trunk: &str) -> TrunkHealth {
        // The address shown, and its figures: the first one up, else the first.
        let shown = self
            .probes
            .iter()
            .find(|p| p.state == TrunkState::Up)
            .or(self.probes.first());
        let last = self
            .probes
            .iter()
            .filter_map(|p| p.last)
            .max_by_key(|(_, at, _)| *at);
        let (last_status, last_unix_ms, rtt) = match last {
            Some((s, at, rtt)) => (s, Some(at), rtt),
            None => (None, None, None),
        };
        TrunkHealth {
            trunk: trunk.into(),
            gateway: self.gateway.clone(),
            peer: shown.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.peer.remote),
            state: self.state,
            since_unix_ms: (self.since_unix_ms != 0).then_some(self.since_unix_ms),
            failures: shown.map_or(0, |p| p.failures),
            probes: self.probes.iter().map(|p| p.probes).sum(),
            downs: self.downs,
            last_status,
            last_unix_ms,
            rtt,
            interval: shown.map_or(Duration::ZERO, |p| p.interval),
            threshold: shown.map_or(0, |p| p.threshold),
            addresses_down: self
                .probes
                .iter()
                .filter(|p| p.state == TrunkState::Down)
                .map(|p| p.peer.remote)
                .collect(),
        }
    }
}

/// One address's probing.
pub(super) struct Probe {
    /// Where the probes go.
    pub(super) peer: Peer,
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
    pub(super) fn new(peer: Peer, interval: Duration, threshold: u32, now: Instant) -> Probe {
        Probe {
            peer,
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

    /// When this probe wants waking.
    pub(super) fn deadline(&self) -> Instant {
        match &self.in_flight {
            Some((_, _, give_up)) => *give_up,
            None => self.next_at,
        }
    }
}

impl Engine {
    /// Keeps a probe per address of every trunk with probing on (new trunks and addresses are
    /// probed at once; a trunk whose peer or settings changed starts again from unknown), sends
    /// the probes that are due, and gives up on the ones unanswered in time.
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
        // address and transport (a new interval or threshold applies from its next probe); an
        // address DNS no longer gives is dropped, a new one probed at once; another gateway
        // starts it afresh.
        let mut dropped: Vec<TxKey> = Vec::new();
        self.health.retain(|trunk, tp| {
            let keep = wanted.get(trunk).is_some_and(|(peers, gw, _, _)| {
                tp.gateway == *gw
                    && tp.probes.first().map(|p| (p.peer.local, p.peer.transport))
                        == peers.first().map(|p| (p.local, p.transport))
            });
            if !keep {
                dropped.extend(
                    tp.probes
                        .iter_mut()
                        .filter_map(|p| p.in_flight.take())
                        .map(|f| f.0),
                );
            }
            keep
        });
        for (trunk, (peers, gw, interval, n)) in wanted {
            let tp = self
                .health
                .entry(trunk)
                .or_insert_with(|| TrunkProbes::new(&gw));
            let mut old = std::mem::take(&mut tp.probes);
            for peer in peers {
                let mut p = match old.iter().position(|p| p.peer == peer) {
                    Some(i) => old.swap_remove(i),
                    None => Probe::new(peer, interval, n, now),
                };
                if p.interval != interval {
                    p.next_at = p.next_at.min(now + interval);
                }
                p.interval = interval;
                p.threshold = n;
                tp.probes.push(p);
            }
            dropped.extend(
                old.iter_mut()
                    .filter_map(|p| p.in_flight.take())
                    .map(|f| f.0),
            );
        }
        for key in dropped {
            self.by_client.insert(key, Purpose::Ignore);
        }
        let mut due: Vec<(String, SocketAddr)> = Vec::new();
        let mut given_up: Vec<(String, SocketAddr, TxKey)> = Vec::new();
        for (trunk, tp) in &self.health {
            for p in &tp.probes {
                match &p.in_flight {
                    Some((key, _, give_up)) if *give_up <= now => {
                        given_up.push((trunk.clone(), p.peer.remote, key.clone()))
                    }
                    None if p.next_at <= now => due.push((trunk.clone(), p.peer.remote)),
                    _ => {}
                }
            }
        }
        for (trunk, at, key) in given_up {
            // A late answer is ignored; the transaction ends on its own timer.
            self.by_client.insert(key, Purpose::Ignore);
            self.probe_result(&trunk, at, None, out, now);
        }
        due.sort();
        for (trunk, at) in due {
            self.send_probe(&trunk, at, out, now);
        }
    }

    fn send_probe(&mut self, trunk: &str, at: SocketAddr, out: &mut Vec<Action>, now: Instant) {
        let Some((peer, interval)) = self
            .health
            .get(trunk)
            .and_then(|tp| tp.probes.iter().find(|p| p.peer.remote == at))
            .map(|p| (p.peer, p.interval))
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
            if let Some(p) = self.probe_at(trunk, at) {
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
                at,
            },
        );
        if let Some(p) = self.probe_at(trunk, at) {
            p.probes += 1;
            p.in_flight = Some((key, now, give_up));
        }
    }

    fn probe_at(&mut self, trunk: &str, at: SocketAddr) -> Option<&mut Probe> {
        self.health
            .get_mut(trunk)?
            .probes
            .iter_mut()
            .find(|p| p.peer.remote == at)
    }

    /// The probe of `trunk`'s address `at` answered `status` (None: not in time).
    pub(super) fn probe_result(
        &mut self,
        trunk: &str,
        at: SocketAddr,
        status: Option<u16>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let unix_ms = self.wall_ms;
        let Some(tp) = self.health.get_mut(trunk) else {
            return;
        };
        let rtt = match (
            tp.probes
                .iter()
                .find(|p| p.peer.remote == at)
                .and_then(|p| p.in_flight.as_ref()),
            status,
        ) {
            (Some((_, sent, _)), Some(_)) => Some(now.saturating_duration_since(*sent)),
            _ => None,
        };
        let (trunk_change, address) = tp.record(at, status, rtt, now, unix_ms);
        let why = match status {
            Some(s) => format!("OPTIONS answered {s}"),
            None => "OPTIONS unanswered".to_string(),
        };
        if tp.probes.len() > 1 && address != Change::None {
            // One address of several: calls skip it while it is down.
            tracing::info!(trunk, address = %at, up = address == Change::Up, why, "a gateway address changed state");
        }
        let state = match trunk_change {
            Change::None => return,
            Change::Up => TrunkState::Up,
            Change::Down => TrunkState::Down,
        };
        let why = if state == TrunkState::Down {
            let failures = tp.probes.iter().map(|p| p.failures).min().unwrap_or(0);
            format!("{why} ({failures} failed probes in a row, every address)")
        } else {
            why
        };
        out.push(Action::TrunkState(Box::new(TrunkChange {
            trunk: trunk.to_string(),
            gateway: tp.gateway.clone(),
            state,
            why,
            unix_ms,
        })));
    }

    /// Whether routing skips `trunk`: its probes found every address down.
    pub(super) fn is_down(&self, trunk: &str) -> bool {
        self.health
            .get(trunk)
            .is_some_and(|tp| tp.state == TrunkState::Down)
    }

    /// Whether calls skip `trunk`'s address `remote`: its probes found it down.
    pub(super) fn address_down(&self, trunk: &str, remote: SocketAddr) -> bool {
        self.health
            .get(trunk)
            .is_some_and(|tp| tp.address_down(remote))
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
        Probe::new(peer, Duration::from_secs(60), threshold, Instant::now())
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

//! A call's own state: its phase, its legs and streams, the attempt in progress and the ones
//! given up, the 2xx being retransmitted and the ACKs waiting to be passed on.

use super::*;

#[derive(Clone, Debug)]
pub(super) struct Stream {
    pub(super) index: usize,
    pub(super) session_id: String,
    pub(super) relay: String,
    /// The relay's address and ports facing the pool [0] and the gateway [1].
    pub(super) anchors: [Anchor; 2],
    /// Where each side's peer receives, as its last SDP said (for key changes of that side).
    pub(super) remotes: [Option<Remote>; 2],
    /// The stream is in use: not declined or dropped (port 0) by the last SDP.
    pub(super) live: bool,
    /// Its relay reported its media stopped.
    pub(super) timed_out: bool,
    /// Its relay reported its RTCP stopped (after RTCP had been seen).
    pub(super) rtcp_timed_out: bool,
    /// Its session multiplexes RTCP on the RTP port (RFC 5761), as the offer it was made from
    /// asked: a peer's separate RTCP address is not the session's.
    pub(super) mux: bool,
}

pub(super) fn slot(side: Side) -> usize {
    match side {
        Side::Pool => 0,
        Side::Gateway => 1,
    }
}

/// The INVITE of the trunk being tried.
pub(super) struct Attempt {
    pub(super) target: usize,
    pub(super) key: TxKey,
    pub(super) invite: Message,
    /// The early dialog whose provisional was relayed last (the caller's PRACKs and early
    /// requests go there), or the leg as sent before any.
    pub(super) leg: Leg,
    /// The leg as sent, before any early dialog (a fork's starts from it).
    pub(super) base: Leg,
    /// Every early dialog of a forked INVITE, at most the trunk's `max_early_dialogs`.
    pub(super) early: Vec<Leg>,
    /// Index in `early` of the early dialog `leg` is.
    pub(super) current: usize,
    /// The caller-facing To tag of each early dialog (by index in `early`) but the first,
    /// which has the caller leg's own.
    pub(super) tags: Vec<Option<String>>,
    /// The early dialog whose SDP the call's sessions answer (the first to send SDP); the
    /// others' is anchored in forks (see `fork.rs`).
    pub(super) media_owner: Option<usize>,
    pub(super) provisional: bool,
    /// Fast failover: no provisional by then, the next target.
    pub(super) deadline: Option<Instant>,
    /// Timer C (RFC 3261 §16.6 step 11): no final answer by then, the INVITE is cancelled and
    /// the next target tried. Restarted by every provisional but a 100.
    pub(super) ring_until: Instant,
}

impl Attempt {
    /// A response with a To tag: its early dialog (found, or started from the leg as sent
    /// while fewer than `max` exist) becomes the current one, learning what the response says.
    /// False when it would be one early dialog too many.
    pub(super) fn fork(&mut self, m: &Message, max: usize) -> bool {
        let tag = m.summary.to_tag.as_deref();
        let i = match self
            .early
            .iter()
            .position(|l| l.remote_tag.as_deref() == tag)
        {
            Some(i) => i,
            None if self.early.len() < max => {
                self.early.push(self.base.clone());
                self.early.len() - 1
            }
            None => return false,
        };
        self.select(i);
        self.leg.learn(m, true);
        self.early[i] = self.leg.clone();
        true
    }

    /// Early dialog `i` becomes the current one (what was learned in the current one kept).
    pub(super) fn select(&mut self, i: usize) {
        if self.current < self.early.len() && self.current != i {
            self.early[self.current] = self.leg.clone();
        }
        let mut leg = self.early[i].clone();
        // Requests sent in any early dialog (PRACK) count toward the next CSeq.
        leg.local_cseq = leg.local_cseq.max(self.leg.local_cseq);
        self.leg = leg;
        self.current = i;
    }

    /// The caller-facing To tag of the current early dialog, when not the caller leg's own.
    pub(super) fn caller_tag(&self) -> Option<&str> {
        self.tags.get(self.current).and_then(|t| t.as_deref())
    }

    /// The early dialog a caller's request with To tag `tag` is in (`own`: the caller leg's).
    pub(super) fn dialog_of(&self, tag: &str, own: &str) -> Option<usize> {
        let i = if tag == own {
            0
        } else {
            self.tags.iter().position(|t| t.as_deref() == Some(tag))?
        };
        (i < self.early.len()).then_some(i)
    }
}

/// An INVITE Mediator gave up on (failover, CANCEL): a late 1xx gets the CANCEL, a late 2xx an
/// ACK and a BYE.
pub(super) struct Orphan {
    pub(super) invite: Message,
    pub(super) leg: Leg,
    pub(super) cancelled: bool,
}

pub(super) enum Purpose {
    Invite {
        call: CallId,
    },
    /// A request relayed into leg `to`; its response goes back on `server` when there is one.
    InDialog {
        call: CallId,
        to: Side,
        server: Option<(TxKey, Box<Message>)>,
        /// The sender's leg's session timer as its request asked it, in force with the 2xx.
        agreed: Option<timer::Agreed>,
    },
    Orphan(Box<Orphan>),
    /// A session refresh Mediator sent on leg `to` (RFC 4028), asking `asked` seconds; the ACK
    /// of its 2xx (a re-INVITE's) is kept to answer the 2xx's retransmissions.
    Refresh {
        call: CallId,
        to: Side,
        asked: u32,
        ack: Option<Vec<u8>>,
    },
    /// An OPTIONS probe of a trunk's peer at address `at`.
    Probe {
        trunk: String,
        at: std::net::SocketAddr,
    },
    Ignore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the relays' sessions.
    Media,
    Calling,
    Early,
    /// 2xx sent to the caller, waiting for its ACK.
    Answered,
    Confirmed,
}

impl Phase {
    pub(super) fn name(self) -> &'static str {
        match self {
            Phase::Media => "media",
            Phase::Calling => "calling",
            Phase::Early => "early",
            Phase::Answered => "answered",
            Phase::Confirmed => "confirmed",
        }
    }
}

/// A 2xx Mediator retransmits until its ACK arrives (RFC 3261 13.3.1.4).
pub(super) struct Retx {
    pub(super) key: TxKey,
    pub(super) bytes: Vec<u8>,
    pub(super) at: Instant,
    pub(super) interval: Duration,
    pub(super) side: Side,
    /// No ACK by then (64×T1): the session is over (RFC 3261 §13.3.1.4).
    pub(super) until: Instant,
}

impl Retx {
    /// A 2xx just sent to `side`, retransmitted from T1 on.
    pub(super) fn new(key: TxKey, bytes: Vec<u8>, side: Side, now: Instant, t1: Duration) -> Retx {
        Retx {
            key,
            bytes,
            at: now + t1,
            interval: t1,
            side,
            until: now + 64 * t1,
        }
    }
}

/// A delayed offer (the caller's INVITE had no SDP) that the callee made in a provisional
/// (RFC 3261 §13.2.1; RFC 3262 when reliable): anchored at once, so the caller has early media.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum EarlyOffer {
    /// None made (or the call's offer came otherwise).
    #[default]
    None,
    /// Its sessions are being made; the provisional waits (later ones are not relayed).
    Anchoring,
    /// Sent to the caller in the provisional; its answer comes in a PRACK or the ACK.
    Sent,
    /// The caller answered it in a PRACK: the 2xx brings no new offer.
    Answered,
}

/// The ACK of a 2xx relayed from `to`'s side, to be sent on when the other side ACKs.
pub(super) struct PendingAck {
    pub(super) to: Side,
    pub(super) cseq: u32,
}

pub(super) struct Call {
    pub(super) id: CallId,
    pub(super) outbound: bool,
    pub(super) pool: String,
    pub(super) a_side: Side,
    pub(super) a: Leg,
    pub(super) a_key: TxKey,
    pub(super) a_invite: Box<Message>,
    /// The offer the sessions were made from: the caller's, or with a delayed offer the
    /// callee's (in its 2xx).
    pub(super) offer: Option<Sdp>,
    /// Whose offer `offer` is.
    pub(super) offerer: Side,
    /// A callee's 2xx with a delayed offer, held while its sessions are made.
    pub(super) delayed: Option<Box<Message>>,
    /// The caller's ACK must carry the answer (Mediator's 2xx to it had the offer).
    pub(super) answer_in_ack: bool,
    /// The offer in the callee's 2xx to the call's INVITE (a delayed offer), until its ACK:
    /// refused, it is still answered in the ACK (rejecting every stream) before the BYE.
    pub(super) offer_in_2xx: Option<Vec<u8>>,
    /// A delayed offer the callee made in a provisional: where that offer stands.
    pub(super) early: EarlyOffer,
    /// That provisional, held while its sessions are made.
    pub(super) early_held: Option<Box<Message>>,
    /// How many times the call's sessions were made and given up (a failed attempt's early
    /// offer): new sessions get new ids, never racing the deletion of the old ones.
    pub(super) media_generation: u32,
    /// Sessions asked for an early offer whose attempt was given up before the relays answered:
    /// their answer is deleted on arrival. One creation is in flight per call at a time: sessions
    /// asked meanwhile wait in `deferred_create`.
    pub(super) orphan_create: bool,
    pub(super) deferred_create: Option<Vec<MediaRequest>>,
    /// The early dialog (the callee's To tag) whose offer the call's sessions were made from.
    pub(super) early_tag: Option<String>,
    /// That offer reached the caller in a reliable provisional (RFC 3262): the caller's answer
    /// comes in its PRACK, and no other early dialog's offer may follow it there.
    pub(super) early_reliable: bool,
    /// The trunk settings the call's sessions were made with: latching, RTCP dead-call
    /// detection on active and on held calls.
    pub(super) media_settings: Option<(bool, bool, bool)>,
    /// Media encryption, once the caller's offer has met its leg's policy (anchored calls).
    pub(super) sec: Option<Sec>,
    /// The sessions of early dialogs other than the one the call's sessions answer.
    pub(super) forks: Vec<fork::ForkMedia>,
    /// Caller-facing To tags given to early dialogs (in the dialog table until the call is
    /// answered, failed over or ended).
    pub(super) fork_tags: Vec<String>,
    /// Forks being made; one creation is in flight per call at a time.
    pub(super) fork_create: Option<Box<fork::ForkCreate>>,
    /// Forks made so far: each creation's session ids carry its number, never reused.
    pub(super) fork_serial: u32,
    /// With a delayed offer, the early offers of early dialogs other than the call's own, each
    /// with its sessions (see `fork.rs`).
    pub(super) delayed_forks: Vec<fork::DelayedFork>,
    /// Sessions being made for one of those: the attempt and the dialog's To tag.
    pub(super) delayed_fork_create: Option<(TxKey, String)>,
    /// The caller's leg's media encryption policy.
    pub(super) a_policy: LegPolicy,
    pub(super) targets: Vec<Target>,
    pub(super) next_target: usize,
    pub(super) attempt: Option<Attempt>,
    pub(super) b: Option<Leg>,
    /// The target that answered (or is being tried).
    pub(super) current: Option<usize>,
    pub(super) phase: Phase,
    pub(super) streams: Vec<Stream>,
    pub(super) last: Option<(u16, String)>,
    pub(super) tried: Vec<(String, u16)>,
    /// The 2xx awaiting its ACK on each side's dialog (by `slot`), retransmitted meanwhile.
    pub(super) retx: [Option<Retx>; 2],
    pub(super) ack_deadline: Option<Instant>,
    pub(super) pending_ack: Option<PendingAck>,
    /// The last ACK sent to each side's 2xx, resent when the 2xx is.
    pub(super) acks: [Option<Vec<u8>>; 2],
    /// An in-dialog INVITE or UPDATE with an offer is in progress.
    pub(super) negotiating: bool,
    pub(super) client_keys: Vec<TxKey>,
    pub(super) dialed: String,
    pub(super) caller: String,
    pub(super) started_unix: u64,
    pub(super) answered_unix: Option<u64>,
    pub(super) answered_at: Option<Instant>,
    pub(super) ident: (String, String, u32),
    /// Each leg's session timer (RFC 4028), by `slot`; `None` where the leg has none.
    pub(super) timers: [Option<SessionTimer>; 2],
    /// The session interval asked of the callee (raised by a 422).
    pub(super) b_se: u32,
    /// The SDP Mediator last sent to each side: a refresh re-INVITE offers it again, and a
    /// peer's refresh re-INVITE is answered with it.
    pub(super) sent_sdp: [Option<Vec<u8>>; 2],
    /// That SDP was Mediator's offer (all its suites and codecs), not an answer: a peer's
    /// refresh re-INVITE is then passed across rather than answered with it.
    pub(super) sent_offer: [bool; 2],
    /// The last SDP from each side: a re-INVITE that repeats it byte for byte is a refresh
    /// (compared whole, not by its `o=` version: some peers change SDP without bumping it).
    pub(super) recv_sdp: [Option<Vec<u8>>; 2],
    /// The last session refresh Mediator sent on each leg (kept to re-ACK its 2xx).
    pub(super) refresh_keys: [Option<TxKey>; 2],
    /// A refresh re-INVITE of Mediator's is pending on the leg (its dialog's only INVITE).
    pub(super) refresh_invite: [bool; 2],
    /// An offer relayed and not yet answered: its SDP as received and as sent on, which become
    /// `recv_sdp` / `sent_sdp` only once answered.
    pub(super) pending_sdp: Option<PendingSdp>,
    /// The Min-SE asked of the callee (raised by a 422).
    pub(super) b_min_se: u32,
    /// The target whose 422 has been retried already (once per target).
    pub(super) se_retried: Option<usize>,
    /// Targets added by followed redirects.
    pub(super) redirected: usize,
    /// A re-offer held while the sessions of the streams it adds are made.
    pub(super) adding: Option<Box<Adding>>,
}

/// A re-offer whose added streams' sessions are being made.
pub(super) struct Adding {
    pub(super) side: Side,
    pub(super) key: TxKey,
    pub(super) m: Message,
    pub(super) sdp: Sdp,
    pub(super) indexes: Vec<usize>,
    /// The offer came in `side`'s 2xx (with the session timer it agreed) to the re-INVITE
    /// without SDP `m`: the 2xx is what goes on once the sessions exist.
    pub(super) answer: Option<(Box<Message>, Option<timer::Agreed>)>,
}

/// An offer in flight between the legs.
pub(super) struct PendingSdp {
    pub(super) from: Side,
    pub(super) recv: Vec<u8>,
    pub(super) sent: Vec<u8>,
}

/// An answer rejecting every stream of `offer` (an SDP Mediator was offered and cannot take),
/// for the ACK that must answer it (RFC 3261 §13.2.2.4); `None` when the offer is unreadable.
pub(super) fn rejecting(offer: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(offer).ok()?;
    Some(Sdp::parse(text).ok()?.rejecting_answer().into_bytes())
}

impl Call {
    /// The offer from `side` that an ACK to it must answer: the one in the callee's 2xx to the
    /// call's INVITE, or one in a 2xx to a re-INVITE without SDP.
    pub(super) fn offer_to_answer(&mut self, side: Side) -> Option<Vec<u8>> {
        self.offer_in_2xx.take().or_else(|| {
            self.pending_sdp
                .as_ref()
                .filter(|p| p.from == side)
                .map(|p| p.recv.clone())
        })
    }

    pub(super) fn target(&self) -> Option<&Target> {
        self.current.and_then(|i| self.targets.get(i))
    }

    /// The leg facing `side`: the caller's, the answered one, or the early one being tried.
    pub(super) fn leg_mut(&mut self, side: Side) -> Option<&mut Leg> {
        if side == self.a_side {
            Some(&mut self.a)
        } else if self.b.is_some() {
            self.b.as_mut()
        } else {
            self.attempt.as_mut().map(|a| &mut a.leg)
        }
    }

    pub(super) fn anchors(&self, toward: Side, sdp: &Sdp) -> Vec<Option<Anchor>> {
        let mut v = vec![None; sdp.media.len()];
        for s in &self.streams {
            if let Some(x) = v.get_mut(s.index) {
                *x = Some(s.anchors[slot(toward)]);
            }
        }
        v
    }

    /// The leg facing `side` keeps a session timer: the pool's always, a gateway's when its
    /// trunk's `session_timer` is on.
    pub(super) fn timer_wanted(&self, side: Side) -> bool {
        match side {
            Side::Pool => true,
            Side::Gateway => self
                .target()
                .or_else(|| self.targets.first())
                .is_some_and(|t| t.session_timer),
        }
    }

    /// An offer was refused or failed: the session stays as it was (RFC 3264 §8) — its keys and
    /// the SDP each side last had.
    pub(super) fn abandon_offer(&mut self) {
        self.pending_sdp = None;
        if let Some(sec) = self.sec.as_mut() {
            sec.drop_reoffer();
        }
    }

    /// The relays' sessions (in request order) for the streams `indexes` of `sdp`, an offer from
    /// `from`'s side, join the call (a session without both anchors is left out).
    pub(super) fn join_streams(
        &mut self,
        sessions: Vec<(String, crate::media::MediaAnswer)>,
        indexes: &[usize],
        sdp: &Sdp,
        from: Side,
    ) {
        for ((relay, s), &index) in sessions.into_iter().zip(indexes) {
            let (Some(p), Some(g)) = (s.pool, s.gateway) else {
                continue;
            };
            let mut remotes = [None, None];
            let stream = sdp.streams().into_iter().find(|x| x.index == index);
            remotes[slot(from)] = stream.as_ref().map(media::remote);
            self.streams.push(Stream {
                mux: stream.is_some_and(|x| x.rtcp_mux),
                index,
                session_id: s.session_id,
                relay,
                anchors: [p, g],
                remotes,
                live: true,
                timed_out: false,
                rtcp_timed_out: false,
            });
        }
    }

    /// Gives the call's sessions up: their deletion (none when it has none), and new ids for
    /// any made again, so a creation never races the deletion.
    pub(super) fn give_up_sessions(&mut self) -> Option<Action> {
        if self.streams.is_empty() {
            return None;
        }
        let sessions = self
            .streams
            .drain(..)
            .map(|s| (s.relay, s.session_id))
            .collect();
        self.media_generation += 1;
        Some(Action::DeleteMedia {
            pool: self.pool.clone(),
            sessions,
        })
    }

    pub(super) fn anchored(&self) -> bool {
        !self.streams.is_empty() && !self.target().is_some_and(|t| t.bypass)
    }
}

//! RFC 3261 §17 transactions (with RFC 6026's Accepted states), sans-IO: each takes messages
//! and the current time, and returns what to send and what to hand to the transaction user; the
//! caller wakes it at [`ClientTx::next_deadline`] / [`ServerTx::next_deadline`]. Retransmission
//! timers run only over unreliable transports (UDP).

use std::time::{Duration, Instant};

use super::message::{Message, Start, ack_for};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// What a transaction asks of its caller.
#[derive(Debug)]
pub enum Output {
    /// Bytes for the transport, to the transaction's peer.
    Send(Vec<u8>),
    /// A response for the client transaction's user (boxed: a message is large, bytes are not).
    Response(Box<Message>),
    /// No final response in time (Timer B / F): the user treats it as 408.
    Timeout,
    /// A server INVITE transaction's negative final was never acknowledged (Timer H).
    AckTimeout,
}

/// Transactions are matched by the top Via's branch and sent-by and the method, ACK going with
/// its INVITE (RFC 3261 17.1.3, 17.2.3): two clients that happen to pick one branch value do not
/// collide.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxKey {
    pub branch: String,
    pub sent_by: String,
    pub method: String,
}

impl TxKey {
    pub fn of(m: &Message) -> TxKey {
        let method = match &m.summary.start {
            Start::Request { method, .. } if method == "ACK" => "INVITE".to_string(),
            Start::Request { method, .. } => method.clone(),
            Start::Response { .. } => m.summary.cseq_method.clone(),
        };
        TxKey {
            branch: m.summary.branch.clone(),
            sent_by: m.summary.sent_by.clone(),
            method,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Client: Calling (INVITE) or Trying (non-INVITE). Server: Trying (non-INVITE).
    Initial,
    Proceeding,
    /// RFC 6026: a 2xx was sent or received; retransmissions belong to the user/dialog.
    Accepted,
    Completed,
    /// Server INVITE: the ACK for a negative final arrived.
    Confirmed,
    Terminated,
}

fn status(m: &Message) -> u16 {
    match m.summary.start {
        Start::Response { status } => status,
        Start::Request { .. } => 0,
    }
}

// ---- client ---------------------------------------------------------------------------------

pub struct ClientTx {
    invite: bool,
    reliable: bool,
    timers: Timers,
    request: Message,
    bytes: Vec<u8>,
    pub state: State,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Option<Instant>,
    end_at: Option<Instant>,
    ack: Option<Vec<u8>>,
}

impl ClientTx {
    /// Starts a client transaction: sends the request and arms its timers.
    pub fn start(
        request: Message,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> (ClientTx, Vec<Output>) {
        let invite =
            matches!(&request.summary.start, Start::Request { method, .. } if method == "INVITE");
        let bytes = request.to_bytes();
        let tx = ClientTx {
            invite,
            reliable,
            timers,
            bytes: bytes.clone(),
            request,
            state: State::Initial,
            retransmit_at: (!reliable).then(|| now + timers.t1),
            interval: timers.t1,
            timeout_at: Some(now + 64 * timers.t1),
            end_at: None,
            ack: None,
        };
        (tx, vec![Output::Send(bytes)])
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn on_response(&mut self, resp: Message, now: Instant) -> Vec<Output> {
        let code = status(&resp);
        match (self.state, code) {
            (State::Initial | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                if self.invite {
                    // Timer A stops on a provisional; Timer B applies to Calling only.
                    self.retransmit_at = None;
                    self.timeout_at = None;
                } else if self.retransmit_at.is_some() {
                    self.interval = self.timers.t2;
                }
                vec![Output::Response(Box::new(resp))]
            }
            (State::Initial | State::Proceeding, 200..=299) if self.invite => {
                self.state = State::Accepted;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.end_at = Some(now + 64 * self.timers.t1); // Timer M
                vec![Output::Response(Box::new(resp))]
            }
            (State::Accepted, 200..=299) => vec![Output::Response(Box::new(resp))], // the user re-ACKs
            (State::Initial | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                self.retransmit_at = None;
                self.timeout_at = None;
                let linger = if self.invite {
                    Duration::from_secs(32)
                } else {
                    self.timers.t4
                };
                self.end_at = Some(if self.reliable { now } else { now + linger }); // Timer D / K
                let mut out = Vec::new();
                if self.invite {
                    let ack = ack_for(&self.request, &resp);
                    out.push(Output::Send(ack.clone()));
                    self.ack = Some(ack);
                }
                out.push(Output::Response(Box::new(resp)));
                out
            }
            // A retransmitted final while Completed: re-ACK (INVITE), otherwise absorb.
            (State::Completed, 300..=699) => {
                self.ack.clone().map(Output::Send).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.end_at.is_some_and(|t| now >= t) {
            self.state = State::Terminated;
            self.end_at = None;
            return out;
        }
        if self.timeout_at.is_some_and(|t| now >= t) {
            self.state = State::Terminated;
            self.timeout_at = None;
            self.retransmit_at = None;
            out.push(Output::Timeout);
            return out;
        }
        if let Some(at) = self.retransmit_at
            && now >= at
        {
            out.push(Output::Send(self.bytes.clone()));
            self.interval = if self.invite {
                self.interval * 2
            } else {
                (self.interval * 2).min(self.timers.t2)
            };
            if !self.invite && self.state == State::Proceeding {
                self.interval = self.timers.t2;
            }
            self.retransmit_at = Some(now + self.interval);
        }
        out
    }
}

// ---- server ---------------------------------------------------------------------------------

pub struct ServerTx {
    invite: bool,
    reliable: bool,
    timers: Timers,
    pub state: State,
    last: Option<Vec<u8>>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Option<Instant>,
    end_at: Option<Instant>,
}

impl ServerTx {
    /// A new server transaction for `request`. An INVITE answers 100 Trying at once (RFC 3261
    /// 17.2.1), so the peer stops retransmitting while the call is routed.
    pub fn new(
        request: &Message,
        reliable: bool,
        timers: Timers,
        trying: Option<Vec<u8>>,
    ) -> (ServerTx, Vec<Output>) {
        let invite =
            matches!(&request.summary.start, Start::Request { method, .. } if method == "INVITE");
        let mut tx = ServerTx {
            invite,
            reliable,
            timers,
            state: if invite {
                State::Proceeding
            } else {
                State::Initial
            },
            last: None,
            retransmit_at: None,
            interval: timers.t1,
            timeout_at: None,
            end_at: None,
        };
        let mut out = Vec::new();
        if invite && let Some(t) = trying {
            tx.last = Some(t.clone());
            out.push(Output::Send(t));
        }
        (tx, out)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The same request again (a retransmission), or the ACK of a negative final.
    pub fn on_request(&mut self, request: &Message, now: Instant) -> Vec<Output> {
        let is_ack =
            matches!(&request.summary.start, Start::Request { method, .. } if method == "ACK");
        match (self.state, is_ack) {
            (State::Completed, true) if self.invite => {
                self.state = State::Confirmed;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.end_at = Some(if self.reliable {
                    now
                } else {
                    now + self.timers.t4
                }); // Timer I
                Vec::new()
            }
            (State::Proceeding | State::Completed, false) => {
                self.last.clone().map(Output::Send).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// The transaction user's response with its status.
    pub fn respond(&mut self, status: u16, bytes: Vec<u8>, now: Instant) -> Vec<Output> {
        // RFC 6026: in Accepted the user retransmits its 2xx through the transaction.
        if self.state == State::Accepted && (200..=299).contains(&status) {
            return vec![Output::Send(bytes)];
        }
        if !matches!(self.state, State::Initial | State::Proceeding) {
            return Vec::new();
        }
        self.last = Some(bytes.clone());
        match status {
            100..=199 => self.state = State::Proceeding,
            200..=299 if self.invite => {
                self.state = State::Accepted;
                self.end_at = Some(now + 64 * self.timers.t1); // Timer L
            }
            _ => {
                self.state = State::Completed;
                if self.invite {
                    if !self.reliable {
                        self.retransmit_at = Some(now + self.timers.t1); // Timer G
                    }
                    self.timeout_at = Some(now + 64 * self.timers.t1); // Timer H
                } else {
                    self.end_at = Some(if self.reliable {
                        now
                    } else {
                        now + 64 * self.timers.t1
                    }); // Timer J
                }
            }
        }
        vec![Output::Send(bytes)]
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<Output> {
        if self.end_at.is_some_and(|t| now >= t) {
            self.state = State::Terminated;
            self.end_at = None;
            return Vec::new();
        }
        if self.timeout_at.is_some_and(|t| now >= t) {
            self.state = State::Terminated;
            self.timeout_at = None;
            self.retransmit_at = None;
            return vec![Output::AckTimeout];
        }
        match self.retransmit_at {
            Some(at) if now >= at => {
                self.interval = (self.interval * 2).min(self.timers.t2);
                self.retransmit_at = Some(now + self.interval);
                self.last.clone().map(Output::Send).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::response_to;
    use crate::message::tests::INVITE;

    fn invite() -> Message {
        Message::parse(INVITE.as_bytes()).expect("invite")
    }

    fn reply(req: &Message, code: u16) -> Message {
        Message::parse(&response_to(req, code, "Reason", "t1")).expect("response")
    }

    fn sends(out: &[Output]) -> usize {
        out.iter().filter(|o| matches!(o, Output::Send(_))).count()
    }

    /// Runs the timers of a client transaction until `until`, counting retransmissions.
    fn run_client(tx: &mut ClientTx, start: Instant, until: Duration) -> (usize, bool) {
        let (mut sent, mut timeout) = (0, false);
        while let Some(at) = tx.next_deadline() {
            if at > start + until {
                break;
            }
            let out = tx.on_timer(at);
            sent += sends(&out);
            timeout |= out.iter().any(|o| matches!(o, Output::Timeout));
        }
        (sent, timeout)
    }

    #[test]
    fn invite_client_retransmits_doubling_then_times_out_after_64_t1() {
        let t0 = Instant::now();
        let (mut tx, out) = ClientTx::start(invite(), false, Timers::default(), t0);
        assert_eq!(sends(&out), 1);
        // Timer A at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; Timer B at 32 s.
        let (sent, timeout) = run_client(&mut tx, t0, Duration::from_secs(40));
        assert_eq!((sent, timeout, tx.state), (6, true, State::Terminated));
    }

    #[test]
    fn invite_client_over_tcp_does_not_retransmit() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientTx::start(invite(), true, Timers::default(), t0);
        let (sent, timeout) = run_client(&mut tx, t0, Duration::from_secs(40));
        assert_eq!((sent, timeout), (0, true));
    }

    #[test]
    fn invite_client_acks_a_negative_final_and_absorbs_its_retransmission() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientTx::start(invite(), false, Timers::default(), t0);
        let out = tx.on_response(reply(&tx.request, 180), t0);
        assert!(matches!(out.as_slice(), [Output::Response(_)]));
        assert_eq!(
            tx.next_deadline(),
            None,
            "no retransmission and no Timer B once proceeding"
        );
        let out = tx.on_response(reply(&tx.request, 486), t0);
        assert_eq!(sends(&out), 1, "ACK sent");
        let Output::Send(ack) = &out[0] else {
            panic!("ack first")
        };
        assert!(
            String::from_utf8_lossy(ack)
                .starts_with("ACK sip:+14255550100@198.18.2.2:5067;transport=udp SIP/2.0")
        );
        assert_eq!(tx.state, State::Completed);
        let again = tx.on_response(reply(&tx.request, 486), t0 + Duration::from_secs(1));
        assert_eq!(
            (sends(&again), again.len()),
            (1, 1),
            "re-ACK, not delivered twice"
        );
        tx.on_timer(t0 + Duration::from_secs(32));
        assert_eq!(tx.state, State::Terminated, "Timer D");
    }

    #[test]
    fn invite_client_accepts_2xx_and_passes_retransmitted_2xx_up() {
        let t0 = Instant::now();
        let (mut tx, _) = ClientTx::start(invite(), false, Timers::default(), t0);
        assert_eq!(tx.on_response(reply(&tx.request, 200), t0).len(), 1);
        assert_eq!(tx.state, State::Accepted);
        assert!(
            matches!(
                tx.on_response(reply(&tx.request, 200), t0).as_slice(),
                [Output::Response(_)]
            ),
            "the dialog re-ACKs"
        );
        tx.on_timer(t0 + Duration::from_secs(32));
        assert_eq!(tx.state, State::Terminated, "Timer M");
    }

    #[test]
    fn non_invite_client_caps_retransmissions_at_t2() {
        let t0 = Instant::now();
        let bye = Message::parse(
            INVITE
                .replace("INVITE sip", "BYE sip")
                .replace("1 INVITE", "1 BYE")
                .as_bytes(),
        )
        .expect("bye");
        let (mut tx, _) = ClientTx::start(bye, false, Timers::default(), t0);
        // Timer E at 0.5, 1.5, 3.5, 7.5, then every 4 s until Timer F at 32 s.
        let (sent, timeout) = run_client(&mut tx, t0, Duration::from_secs(40));
        assert_eq!((sent, timeout), (4 + 6, true));
    }

    #[test]
    fn invite_server_retransmits_a_negative_final_until_acked() {
        let t0 = Instant::now();
        let req = invite();
        let trying = response_to(&req, 100, "Trying", "x");
        let (mut tx, out) = ServerTx::new(&req, false, Timers::default(), Some(trying));
        assert_eq!(sends(&out), 1, "100 Trying at once");
        assert_eq!(
            sends(&tx.on_request(&req, t0)),
            1,
            "a retransmitted INVITE gets the last provisional"
        );
        tx.respond(503, response_to(&req, 503, "Service Unavailable", "t"), t0);
        assert_eq!(tx.state, State::Completed);
        let mut resent = 0;
        let mut at = t0;
        for _ in 0..3 {
            at = tx.next_deadline().expect("G");
            resent += sends(&tx.on_timer(at));
        }
        assert_eq!(resent, 3, "Timer G retransmits");
        let ack = Message::parse(&ack_for(&req, &reply(&req, 503))).expect("ack");
        tx.on_request(&ack, at);
        assert_eq!(tx.state, State::Confirmed);
        tx.on_timer(at + Duration::from_secs(5));
        assert_eq!(tx.state, State::Terminated, "Timer I");
    }

    #[test]
    fn invite_server_gives_up_without_ack() {
        let t0 = Instant::now();
        let req = invite();
        let (mut tx, _) = ServerTx::new(&req, true, Timers::default(), None);
        tx.respond(486, response_to(&req, 486, "Busy Here", "t"), t0);
        assert_eq!(
            tx.next_deadline(),
            Some(t0 + Duration::from_secs(32)),
            "only Timer H over TCP"
        );
        assert!(matches!(
            tx.on_timer(t0 + Duration::from_secs(32)).as_slice(),
            [Output::AckTimeout]
        ));
    }

    #[test]
    fn invite_server_passes_2xx_retransmissions_while_accepted() {
        let t0 = Instant::now();
        let req = invite();
        let (mut tx, _) = ServerTx::new(&req, false, Timers::default(), None);
        let ok = response_to(&req, 200, "OK", "t");
        assert_eq!(sends(&tx.respond(200, ok.clone(), t0)), 1);
        assert_eq!(tx.state, State::Accepted);
        assert_eq!(
            sends(&tx.respond(200, ok, t0 + Duration::from_millis(500))),
            1,
            "the dialog's retransmission goes out"
        );
        assert!(
            tx.respond(486, response_to(&req, 486, "Busy", "t"), t0)
                .is_empty(),
            "no second final"
        );
    }

    #[test]
    fn keys_tell_clients_with_the_same_branch_apart() {
        let a = invite();
        let b = Message::parse(
            INVITE
                .replace("198.18.1.1:5060;branch", "198.18.1.9:5060;branch")
                .as_bytes(),
        )
        .expect("b");
        assert_ne!(TxKey::of(&a), TxKey::of(&b));
    }

    #[test]
    fn keys_match_ack_to_its_invite() {
        let req = invite();
        let ack = Message::parse(&ack_for(&req, &reply(&req, 486))).expect("ack");
        assert_eq!(TxKey::of(&ack), TxKey::of(&req));
        assert_eq!(TxKey::of(&reply(&req, 486)), TxKey::of(&req));
    }
}

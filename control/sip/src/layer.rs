//! The transaction layer, sans-IO: it owns every client and server transaction, routes each
//! incoming message to its transaction (RFC 3261 17.1.3, 17.2.3) or starts one, answers
//! retransmissions itself, and tells the transaction user only what is new. Bytes and time in;
//! bytes to send (with their peer) and user events out.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use super::Peer;
use super::message::{Message, Start, reason_phrase, response_to};
use super::transaction::{ClientTx, Output, ServerTx, State, Timers, TxKey};

/// Something for the transaction user.
#[derive(Debug)]
pub enum Event {
    /// A new request (its server transaction exists; answer with [`Layer::respond`]).
    Request {
        key: TxKey,
        from: Peer,
        message: Box<Message>,
    },
    /// An ACK for a 2xx, or any request outside a transaction the layer keeps: the dialog's.
    Ack { from: Peer, message: Box<Message> },
    /// A response to a client transaction.
    Response { key: TxKey, message: Box<Message> },
    /// A client transaction got no final response in time.
    Timeout { key: TxKey },
    /// A client transaction's request could not be delivered (a TCP or TLS connection that
    /// failed): RFC 3261 §8.1.3.1 treats it as a 503.
    TransportError { key: TxKey },
    /// A malformed request was answered with an error by the layer itself.
    Refused {
        from: Peer,
        status: u16,
        reason: String,
    },
}

/// What the caller must do.
#[derive(Debug, Default)]
pub struct Step {
    pub send: Vec<(Peer, Vec<u8>)>,
    pub events: Vec<Event>,
}

struct Client {
    tx: ClientTx,
    peer: Peer,
}

struct Server {
    tx: ServerTx,
    peer: Peer,
}

/// How many transactions the layer holds at most, so a flood cannot exhaust memory.
pub const MAX_TRANSACTIONS: usize = 200_000;

/// A transaction in the timer index: client (true) or server, and its key.
type Slot = (bool, TxKey);

pub struct Layer {
    timers: Timers,
    clients: HashMap<TxKey, Client>,
    servers: HashMap<TxKey, Server>,
    /// Every transaction's next deadline, ordered, so finding what is due costs O(log n) however
    /// many transactions linger in their Completed/Accepted states.
    schedule: BTreeSet<(Instant, Slot)>,
    scheduled: HashMap<Slot, Instant>,
}

impl Layer {
    pub fn new(timers: Timers) -> Self {
        Self {
            timers,
            clients: HashMap::new(),
            servers: HashMap::new(),
            schedule: BTreeSet::new(),
            scheduled: HashMap::new(),
        }
    }

    /// Re-files a transaction's deadline after anything that may have changed it; forgets a
    /// terminated one.
    fn resched(&mut self, client: bool, key: &TxKey) {
        let slot = (client, key.clone());
        if let Some(at) = self.scheduled.remove(&slot) {
            self.schedule.remove(&(at, slot.clone()));
        }
        let (state, next) = if client {
            match self.clients.get(key) {
                Some(c) => (c.tx.state, c.tx.next_deadline()),
                None => return,
            }
        } else {
            match self.servers.get(key) {
                Some(s) => (s.tx.state, s.tx.next_deadline()),
                None => return,
            }
        };
        if state == State::Terminated {
            if client {
                self.clients.remove(key);
            } else {
                self.servers.remove(key);
            }
            return;
        }
        if let Some(at) = next {
            self.schedule.insert((at, slot.clone()));
            self.scheduled.insert(slot, at);
        }
    }

    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn apply(step: &mut Step, key: &TxKey, peer: Peer, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send(b) => step.send.push((peer, b)),
                Output::Response(m) => step.events.push(Event::Response {
                    key: key.clone(),
                    message: m,
                }),
                Output::Timeout => step.events.push(Event::Timeout { key: key.clone() }),
                Output::AckTimeout => {}
            }
        }
    }

    /// Bytes from `from`; retransmission timers run only when its transport is UDP.
    pub fn on_bytes(&mut self, bytes: &[u8], from: Peer, now: Instant) -> Step {
        let reliable = from.reliable();
        let mut step = Step::default();
        let message = match Message::parse_received(bytes, !reliable) {
            Ok(m) => m,
            Err(e) => {
                // A request we can still read enough of gets its error; anything else is dropped.
                if bytes.starts_with(b"SIP/2.0 ") {
                    return step;
                }
                step.events.push(Event::Refused {
                    from,
                    status: e.status,
                    reason: e.reason.clone(),
                });
                if let Some(reply) = error_reply(bytes, e.status, &e.reason) {
                    step.send.push((from, reply));
                }
                return step;
            }
        };
        let key = TxKey::of(&message);
        match &message.summary.start {
            Start::Response { .. } => {
                if let Some(c) = self.clients.get_mut(&key) {
                    let out = c.tx.on_response(message, now);
                    let peer = c.peer;
                    Self::apply(&mut step, &key, peer, out);
                    self.resched(true, &key);
                }
                // A response to no transaction of ours is dropped (RFC 3261 18.1.2).
            }
            Start::Request { method, .. } => {
                if let Some(s) = self.servers.get_mut(&key) {
                    let is_ack = method == "ACK";
                    let accepted = s.tx.state == State::Accepted;
                    let out = s.tx.on_request(&message, now);
                    let peer = s.peer;
                    Self::apply(&mut step, &key, peer, out);
                    self.resched(false, &key);
                    if is_ack && accepted {
                        step.events.push(Event::Ack {
                            from,
                            message: Box::new(message),
                        });
                    }
                } else if method == "ACK" {
                    // The ACK of a 2xx has its own branch: it belongs to the dialog.
                    step.events.push(Event::Ack {
                        from,
                        message: Box::new(message),
                    });
                } else if self.len() >= MAX_TRANSACTIONS {
                    step.send.push((
                        from,
                        response_to(&message, 503, "Service Unavailable", "overload"),
                    ));
                    step.events.push(Event::Refused {
                        from,
                        status: 503,
                        reason: "too many transactions".into(),
                    });
                } else {
                    let trying =
                        (method == "INVITE").then(|| response_to(&message, 100, "Trying", ""));
                    let (tx, out) = ServerTx::new(&message, reliable, self.timers, trying);
                    Self::apply(&mut step, &key, from, out);
                    self.servers.insert(key.clone(), Server { tx, peer: from });
                    self.resched(false, &key);
                    step.events.push(Event::Request {
                        key,
                        from,
                        message: Box::new(message),
                    });
                }
            }
        }
        step
    }

    /// Sends a request to `to` in a new client transaction.
    pub fn request(&mut self, message: Message, to: Peer, now: Instant) -> (TxKey, Step) {
        let key = TxKey::of(&message);
        let (tx, out) = ClientTx::start(message, to.reliable(), self.timers, now);
        let mut step = Step::default();
        Self::apply(&mut step, &key, to, out);
        self.clients.insert(key.clone(), Client { tx, peer: to });
        self.resched(true, &key);
        (key, step)
    }

    /// The transport could not deliver `bytes` (a TCP or TLS connection to the peer failed, or
    /// its handshake did, RFC 3261 §17.1.4): the client transaction that sent the request ends
    /// at once with [`Event::TransportError`]. Anything else (a response, an ACK, a request of no
    /// transaction kept) changes nothing.
    pub fn transport_error(&mut self, bytes: &[u8]) -> Step {
        let mut step = Step::default();
        let Ok(m) = Message::parse(bytes) else {
            return step;
        };
        if !m.is_request() {
            return step;
        }
        let key = TxKey::of(&m);
        if self.clients.remove(&key).is_some() {
            // Drops its timers (the transaction is gone).
            self.resched(true, &key);
            step.events.push(Event::TransportError { key });
        }
        step
    }

    /// The user's response in server transaction `key`.
    pub fn respond(&mut self, key: &TxKey, status: u16, bytes: Vec<u8>, now: Instant) -> Step {
        let mut step = Step::default();
        if let Some(s) = self.servers.get_mut(key) {
            let out = s.tx.respond(status, bytes, now);
            let peer = s.peer;
            Self::apply(&mut step, key, peer, out);
            self.resched(false, key);
        }
        step
    }

    /// The earliest time any transaction needs to be woken.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// Runs every due timer and forgets terminated transactions.
    pub fn on_timer(&mut self, now: Instant) -> Step {
        let mut step = Step::default();
        while let Some((at, (client, key))) = self.schedule.first().cloned() {
            if at > now {
                break;
            }
            if client {
                if let Some(c) = self.clients.get_mut(&key) {
                    let out = c.tx.on_timer(now);
                    let peer = c.peer;
                    Self::apply(&mut step, &key, peer, out);
                }
            } else if let Some(s) = self.servers.get_mut(&key) {
                let out = s.tx.on_timer(now);
                let peer = s.peer;
                Self::apply(&mut step, &key, peer, out);
            }
            self.resched(client, &key);
            // A timer that did not move its deadline (it cannot, but never spin on it).
            if self.scheduled.get(&(client, key.clone())) == Some(&at) {
                self.schedule.remove(&(at, (client, key.clone())));
                self.scheduled.remove(&(client, key));
            }
        }
        step
    }
}

/// An error response for a request that failed the checks, when enough of it can be read to
/// address one (its Via, From, To, Call-ID, CSeq lines are copied as they are).
fn error_reply(original: &[u8], status: u16, reason: &str) -> Option<Vec<u8>> {
    // The header lines as the parser saw them (unfolded, one Via per line); the size bound is
    // the original's.
    let normal = crate::normalize::normalize(original, false);
    let bytes: &[u8] = &normal;
    let text = std::str::from_utf8(bytes).ok()?;
    let mut head = text.lines();
    // A request line, however malformed, ends in a version (505 answers another one).
    let start = head.next()?;
    if !start
        .trim_end()
        .rsplit(' ')
        .next()
        .is_some_and(|v| v.len() > 4 && v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/")))
    {
        return None;
    }
    let mut out = format!("SIP/2.0 {status} {}\r\n", reason_phrase(status));
    let mut have_via = false;
    for line in head.take_while(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "via" | "v" | "from" | "f" | "to" | "t" | "call-id" | "i" | "cseq"
        ) {
            have_via |= name == "via" || name == "v";
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if !have_via {
        return None; // nowhere to send it
    }
    // Never larger than what provoked it (no amplifier toward a spoofed source): the Warning is
    // cut to fit, or left out.
    let tail = "Content-Length: 0\r\n\r\n";
    let room = original.len().saturating_sub(out.len() + tail.len());
    let warning: String = crate::message::short(reason).replace('"', "'");
    let overhead = "Warning: 399 mediator \"\"\r\n".len();
    if room > overhead + 8 {
        let fit: String = warning.chars().take(room - overhead).collect();
        out.push_str(&format!("Warning: 399 mediator \"{fit}\"\r\n"));
    }
    out.push_str(tail);
    (out.len() <= original.len()).then(|| out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::INVITE;
    use std::time::Duration;

    fn peer() -> Peer {
        Peer::udp("198.18.1.2:5060", "198.18.1.1:5070")
    }

    #[test]
    fn a_new_invite_starts_a_transaction_and_its_retransmission_is_answered_by_the_layer() {
        let t0 = Instant::now();
        let mut l = Layer::new(Timers::default());
        let step = l.on_bytes(INVITE.as_bytes(), peer(), t0);
        assert_eq!(step.send.len(), 1, "100 Trying");
        let Some(Event::Request { key, .. }) = step.events.first() else {
            panic!("request event")
        };
        let key = key.clone();
        let again = l.on_bytes(INVITE.as_bytes(), peer(), t0 + Duration::from_millis(500));
        assert!(again.events.is_empty(), "the user sees it once");
        assert_eq!(again.send.len(), 1, "the last provisional again");
        let req = Message::parse(INVITE.as_bytes()).expect("parse");
        let busy = l.respond(&key, 486, response_to(&req, 486, "Busy Here", "t1"), t0);
        assert_eq!(busy.send.len(), 1);
        // The peer's ACK ends it; a while later the layer forgets it.
        let ack = INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace(
                "To: <sip:+14255550100@contoso.com>",
                "To: <sip:+14255550100@contoso.com>;tag=t1",
            );
        let step = l.on_bytes(ack.as_bytes(), peer(), t0 + Duration::from_secs(1));
        assert!(
            step.events.is_empty() && step.send.is_empty(),
            "the ACK of a negative final stays in the layer"
        );
        l.on_timer(t0 + Duration::from_secs(10));
        assert!(l.is_empty(), "forgotten after Timer I");
    }

    #[test]
    fn malformed_requests_are_answered_with_their_error() {
        let mut l = Layer::new(Timers::default());
        let bad = INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0");
        let step = l.on_bytes(bad.as_bytes(), peer(), Instant::now());
        assert!(matches!(
            step.events.as_slice(),
            [Event::Refused { status: 483, .. }]
        ));
        let (to, reply) = &step.send[0];
        assert_eq!(*to, peer());
        let reply = Message::parse(reply).expect("our error response parses");
        assert_eq!(reply.summary.start, Start::Response { status: 483 });
        let garbage = l.on_bytes(b"\x00\x01garbage", peer(), Instant::now());
        assert!(garbage.send.is_empty(), "nothing to address a reply to");
        assert!(l.is_empty());
        // A large malformed request: the reply names the problem briefly and is never larger
        // than the request (no amplifier toward a spoofed UDP source).
        let huge = INVITE.replace(
            "Max-Forwards: 70",
            &format!("Max-Forwards: 70\r\nContact: <{}", "x".repeat(3000)),
        );
        for req in [huge, bad] {
            let step = l.on_bytes(req.as_bytes(), peer(), Instant::now());
            for (_, reply) in &step.send {
                assert!(reply.len() <= req.len(), "{} > {}", reply.len(), req.len());
                let text = String::from_utf8_lossy(reply);
                let warning = text
                    .lines()
                    .find(|l| l.starts_with("Warning:"))
                    .unwrap_or("");
                assert!(warning.len() < 140, "{warning}");
            }
        }
    }

    #[test]
    fn client_transactions_retransmit_time_out_and_drop_strays() {
        let t0 = Instant::now();
        let mut l = Layer::new(Timers::default());
        let to = Peer::udp("198.18.2.2:5067", "198.18.2.1:5068");
        let (key, step) = l.request(Message::parse(INVITE.as_bytes()).expect("invite"), to, t0);
        assert_eq!(step.send.len(), 1);
        assert_eq!(step.send[0].0, to, "sent to the peer");
        let sent = Message::parse(&step.send[0].1).expect("what we send parses");
        assert_eq!(TxKey::of(&sent), key, "and belongs to the transaction");
        let mut resent = 0;
        let mut timed_out = false;
        while let Some(at) = l.next_deadline() {
            let s = l.on_timer(at);
            resent += s.send.len();
            timed_out |= s
                .events
                .iter()
                .any(|e| matches!(e, Event::Timeout { key: k } if *k == key));
        }
        assert_eq!((resent, timed_out), (6, true));
        assert!(l.is_empty());
        let stray = crate::message::response_to(
            &Message::parse(INVITE.as_bytes()).expect("i"),
            200,
            "OK",
            "x",
        );
        assert!(
            l.on_bytes(&stray, to, t0).events.is_empty(),
            "a response to nothing is dropped"
        );
    }

    #[test]
    fn an_undelivered_request_ends_its_transaction_at_once_and_nothing_else_does() {
        let t0 = Instant::now();
        let mut l = Layer::new(Timers::default());
        let to = Peer {
            transport: crate::Transport::Tls,
            ..Peer::udp("198.18.2.2:5071", "198.18.2.1:5071")
        };
        let (key, step) = l.request(Message::parse(INVITE.as_bytes()).expect("invite"), to, t0);
        let bytes = step.send[0].1.clone();
        let s = l.transport_error(&bytes);
        assert!(
            matches!(s.events.as_slice(), [Event::TransportError { key: k }] if *k == key),
            "{:?}",
            s.events
        );
        assert!(l.is_empty() && l.next_deadline().is_none(), "no timer left");
        assert!(l.transport_error(&bytes).events.is_empty(), "only once");
        let resp = crate::message::response_to(
            &Message::parse(INVITE.as_bytes()).expect("i"),
            200,
            "OK",
            "x",
        );
        assert!(l.transport_error(&resp).events.is_empty());
        assert!(l.transport_error(b"garbage").events.is_empty());
    }
}

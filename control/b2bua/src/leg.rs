//! One leg of a call: a dialog (RFC 3261 12) between Mediator and one peer, and the requests
//! Mediator sends in it.

use mediator_sip::Peer;
use mediator_sip::message::{Message, SipError, build_request, uri_of};

use crate::Side;

#[derive(Clone, Debug)]
pub(crate) struct Leg {
    pub side: Side,
    pub peer: Peer,
    pub call_id: String,
    pub local_tag: String,
    /// Our From (UAC) or To (UAS) header value, with our tag.
    pub local_hdr: String,
    /// Theirs, with their tag once known.
    pub remote_hdr: String,
    pub remote_tag: Option<String>,
    pub local_cseq: u32,
    /// Where in-dialog requests go (their Contact).
    pub remote_target: String,
    /// Route headers for in-dialog requests, in order.
    pub route_set: Vec<String>,
}

pub(crate) fn transport_param(peer: &Peer) -> &'static str {
    match peer.transport {
        mediator_sip::Transport::Udp => "",
        mediator_sip::Transport::Tcp => ";transport=tcp",
        mediator_sip::Transport::Tls => ";transport=tls",
    }
}

pub(crate) fn via(peer: &Peer, branch: &str) -> String {
    let t = match peer.transport {
        mediator_sip::Transport::Udp => "UDP",
        mediator_sip::Transport::Tcp => "TCP",
        mediator_sip::Transport::Tls => "TLS",
    };
    format!("SIP/2.0/{t} {};branch={branch};rport", peer.local)
}

pub(crate) fn contact(peer: &Peer) -> String {
    format!("<sip:mediator@{}{}>", peer.local, transport_param(peer))
}

impl Leg {
    /// The dialog's id as Mediator indexes it: Call-ID and our tag.
    pub(crate) fn key(&self) -> (String, String) {
        (self.call_id.clone(), self.local_tag.clone())
    }

    /// Takes their tag, Contact and (from a response, reversed) Record-Route from a message that
    /// establishes or refreshes the dialog.
    pub(crate) fn learn(&mut self, m: &Message, from_response: bool) {
        if from_response {
            if let Some(to) = m.header("to") {
                self.remote_hdr = to;
            }
            if let Some(t) = &m.summary.to_tag {
                self.remote_tag = Some(t.clone());
            }
        }
        if let Some(c) = m.header("contact") {
            let uri = uri_of(&c);
            if !uri.is_empty() {
                self.remote_target = uri;
            }
        }
        let rr: Vec<String> = m
            .headers_named("record-route")
            .iter()
            .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect();
        if !rr.is_empty() {
            self.route_set = if from_response {
                rr.into_iter().rev().collect()
            } else {
                rr
            };
        }
    }

    /// A target refresh (RFC 3261 12.2): a re-INVITE or UPDATE, or its 2xx, may bring a new
    /// Contact. The route set stays as the dialog was set up.
    pub(crate) fn refresh_target(&mut self, m: &Message) {
        if let Some(c) = m.header("contact") {
            let uri = uri_of(&c);
            if !uri.is_empty() {
                self.remote_target = uri;
            }
        }
    }

    /// A request in this dialog. `cseq` is the next local CSeq unless given (ACK uses its
    /// INVITE's).
    pub(crate) fn request(
        &mut self,
        method: &str,
        branch: &str,
        cseq: Option<u32>,
        extra: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) -> Result<Message, SipError> {
        let cseq = match cseq {
            Some(c) => c,
            None => {
                self.local_cseq = self.local_cseq.wrapping_add(1).max(1);
                self.local_cseq
            }
        };
        let mut headers: Vec<(&str, String)> = vec![
            ("Via", via(&self.peer, branch)),
            ("Max-Forwards", "70".into()),
            ("From", self.local_hdr.clone()),
            ("To", self.remote_hdr.clone()),
            ("Call-ID", self.call_id.clone()),
            ("CSeq", format!("{cseq} {method}")),
        ];
        for r in &self.route_set {
            headers.push(("Route", r.clone()));
        }
        if method != "ACK" && method != "BYE" && method != "CANCEL" {
            headers.push(("Contact", contact(&self.peer)));
        }
        headers.extend(extra.iter().cloned());
        build_request(method, &self.remote_target, &headers, body)
    }
}

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
    /// Other addresses of the configured peer (every address its FQDN resolved to): a route
    /// set or Contact leading to one of them is followed too.
    pub peer_ips: Vec<std::net::IpAddr>,
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

    /// Our tag becomes `tag` (another early dialog of the caller's), in the header too.
    pub(crate) fn retag(&mut self, tag: &str) {
        let old = format!(";tag={}", self.local_tag);
        if let Some(base) = self.local_hdr.strip_suffix(&old) {
            self.local_hdr = format!("{base};tag={tag}");
        }
        self.local_tag = tag.to_string();
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

    /// Where this dialog's requests go (RFC 3261 §12.2.1.1, §8.1.2): the first Route's address
    /// when the route set is loose (`;lr`), the Request-URI's otherwise (the remote target, or a
    /// strict router) — provided it is the configured peer's IP (the one the leg was set up with,
    /// or another its FQDN resolved to) on its transport, as only configured peers may answer or
    /// send (a port of its own is fine: a proxy or gateway that Record-Routes or gives a Contact
    /// on another port). Anything else, or a name, is not followed: the peer the leg was set up
    /// with gets the request (for the peer's own FQDN, the address the call reached).
    pub(crate) fn next_hop(&self) -> Peer {
        let uri = match self.route_set.first() {
            Some(r) => uri_of(r),
            None => self.remote_target.clone(),
        };
        match uri_addr(&uri) {
            Some((addr, transport))
                if (addr.ip() == self.peer.remote.ip() || self.peer_ips.contains(&addr.ip()))
                    && transport.unwrap_or(self.peer.transport) == self.peer.transport =>
            {
                Peer {
                    remote: addr,
                    ..self.peer
                }
            }
            _ => self.peer,
        }
    }

    /// The Request-URI and Route headers of a request in this dialog (RFC 3261 §12.2.1.1):
    /// loose routing keeps the remote target as Request-URI and the route set as Route; a
    /// strict router's URI becomes the Request-URI (without the parameters a Request-URI may
    /// not have: `method` and headers, RFC 3261 §19.1.1) and the remote target the last Route.
    fn routing(&self) -> (String, Vec<String>) {
        let Some(first) = self.route_set.first() else {
            return (self.remote_target.clone(), Vec::new());
        };
        let first_uri = uri_of(first);
        let loose = first_uri.split(';').skip(1).any(|p| {
            p.trim().eq_ignore_ascii_case("lr") || p.trim().to_ascii_lowercase().starts_with("lr=")
        });
        if loose {
            return (self.remote_target.clone(), self.route_set.clone());
        }
        let first_uri = first_uri.split('?').next().unwrap_or_default().to_string();
        let ruri: String = first_uri
            .split(';')
            .enumerate()
            .filter(|(i, p)| {
                *i == 0 || {
                    let name = p
                        .split('=')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_ascii_lowercase();
                    name != "method"
                }
            })
            .map(|(_, p)| p)
            .collect::<Vec<_>>()
            .join(";");
        let mut routes: Vec<String> = self.route_set[1..].to_vec();
        routes.push(format!("<{}>", self.remote_target));
        (ruri, routes)
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
        let (ruri, routes) = self.routing();
        for r in routes {
            headers.push(("Route", r));
        }
        if method != "ACK" && method != "BYE" && method != "CANCEL" {
            headers.push(("Contact", contact(&self.peer)));
        }
        headers.extend(extra.iter().cloned());
        build_request(method, &ruri, &headers, body)
    }
}

/// Where a SIP URI points: its host (lower-cased, an IPv6 literal without brackets), the port
/// it gives (`None` when none), and its `transport` parameter (TLS for `sips`); `None` for
/// another scheme or anything unreadable.
pub(crate) struct UriHost {
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<mediator_sip::Transport>,
    pub sips: bool,
}

pub(crate) fn uri_host(uri: &str) -> Option<UriHost> {
    let lower = uri.trim().to_ascii_lowercase();
    let (rest, sips) = if let Some(r) = lower.strip_prefix("sips:") {
        (r, true)
    } else {
        (lower.strip_prefix("sip:")?, false)
    };
    let mut parts = rest.split(';');
    let hostport = parts.next()?.split('?').next()?;
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (h.to_string(), port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let transport = parts.find_map(|p| {
        let (n, v) = p.split_once('=')?;
        if n.trim() != "transport" {
            return None;
        }
        match v.trim() {
            "udp" => Some(mediator_sip::Transport::Udp),
            "tcp" => Some(mediator_sip::Transport::Tcp),
            "tls" => Some(mediator_sip::Transport::Tls),
            _ => None,
        }
    });
    Some(UriHost {
        host,
        port,
        transport: transport.or(sips.then_some(mediator_sip::Transport::Tls)),
        sips,
    })
}

/// The address (IP literal; a port of 5060, or 5061 for `sips`, when none is given) and the
/// `transport` parameter of a SIP URI; `None` for a name or anything unreadable.
pub(crate) fn uri_addr(
    uri: &str,
) -> Option<(std::net::SocketAddr, Option<mediator_sip::Transport>)> {
    let u = uri_host(uri)?;
    let ip: std::net::IpAddr = u.host.parse().ok()?;
    let port = u.port.unwrap_or(if u.sips { 5061 } else { 5060 });
    Some((std::net::SocketAddr::new(ip, port), u.transport))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(target: &str, routes: &[&str]) -> Leg {
        Leg {
            side: Side::Pool,
            peer: Peer::udp("198.18.1.2:5060", "198.18.1.1:5060"),
            call_id: "c".into(),
            local_tag: "a".into(),
            local_hdr: "<sip:m@198.18.1.1>;tag=a".into(),
            remote_hdr: "<sip:fe@198.18.1.2>;tag=b".into(),
            remote_tag: Some("b".into()),
            local_cseq: 1,
            remote_target: target.into(),
            route_set: routes.iter().map(|s| s.to_string()).collect(),
            peer_ips: Vec::new(),
        }
    }

    #[test]
    fn loose_routing_keeps_the_target_and_goes_to_the_first_route() {
        let mut l = leg(
            "sip:fe@198.18.1.9:5070",
            &["<sip:198.18.1.2:5080;lr>", "<sip:198.18.1.3;lr>"],
        );
        let m = l
            .request("BYE", "z9hG4bK-1", None, &[], None)
            .expect("built");
        assert_eq!(m.request_uri(), Some("sip:fe@198.18.1.9:5070"));
        assert_eq!(
            m.headers_named("route"),
            vec![
                "<sip:198.18.1.2:5080;lr>".to_string(),
                "<sip:198.18.1.3;lr>".to_string()
            ]
        );
        assert_eq!(
            l.next_hop().remote,
            "198.18.1.2:5080".parse().expect("addr")
        );
    }

    #[test]
    fn a_strict_router_becomes_the_request_uri_and_the_target_the_last_route() {
        let mut l = leg(
            "sip:fe@198.18.1.2:5070",
            &["<sip:198.18.1.2:5090;method=INVITE?Subject=x>"],
        );
        let m = l
            .request("BYE", "z9hG4bK-2", None, &[], None)
            .expect("built");
        assert_eq!(m.request_uri(), Some("sip:198.18.1.2:5090"));
        assert_eq!(
            m.headers_named("route"),
            vec!["<sip:fe@198.18.1.2:5070>".to_string()]
        );
        assert_eq!(
            l.next_hop().remote,
            "198.18.1.2:5090".parse().expect("addr")
        );
    }

    #[test]
    fn the_next_hop_is_followed_only_to_the_configured_peer_and_its_name_s_addresses() {
        let l = leg("sip:fe@198.18.1.2:5070", &[]);
        assert_eq!(l.next_hop().remote.port(), 5070, "the Contact's own port");
        let l = leg("sip:fe@198.18.1.77:5060", &[]);
        assert_eq!(l.next_hop(), l.peer, "another host: not a configured peer");
        let l = leg("sip:fe@fe.contoso.com", &[]);
        assert_eq!(l.next_hop(), l.peer, "a name: not resolved");
        let l = leg("sip:fe@198.18.1.2:5061;transport=tls", &[]);
        assert_eq!(l.next_hop(), l.peer, "another transport");
        // Another address the peer's configured FQDN resolved to: the same peer.
        let mut l = leg("sip:fe@198.18.1.2", &["<sip:198.18.1.78:5062;lr>"]);
        assert_eq!(l.next_hop(), l.peer, "not one of its addresses");
        l.peer_ips = vec![
            "198.18.1.2".parse().expect("ip"),
            "198.18.1.78".parse().expect("ip"),
        ];
        assert_eq!(
            l.next_hop().remote,
            "198.18.1.78:5062".parse().expect("addr"),
            "one of its name's addresses"
        );
        assert_eq!(
            uri_addr("sips:[2001:2::1]"),
            Some((
                "[2001:2::1]:5061".parse().expect("addr"),
                Some(mediator_sip::Transport::Tls)
            ))
        );
    }
}

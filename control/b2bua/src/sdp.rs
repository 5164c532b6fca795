//! SDP (RFC 4566) as a media-anchoring B2BUA needs it: read where each stream's peer receives
//! RTP and RTCP and whether the call is on hold, and rewrite the connection addresses and ports of
//! the streams the relay anchors. Every line it does not own passes through byte for byte. No
//! I/O: text in, text out.
//!
//! Anchored: `audio` and `video` m-lines with an RTP profile and a non-zero port. Rejected streams
//! (port 0) and other media (T.38 `image`, `application` …) keep their addresses and ports.

use std::net::{IpAddr, SocketAddr};

/// Limits on what a peer can make us parse.
pub const MAX_SDP_BYTES: usize = 16 * 1024;
pub const MAX_LINES: usize = 512;
pub const MAX_MEDIA: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {reason}")]
pub struct SdpError {
    /// 1-based; 0 for the body as a whole.
    pub line: usize,
    pub reason: String,
}

fn err(line: usize, reason: impl Into<String>) -> SdpError {
    SdpError {
        line,
        reason: reason.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(attr: &str) -> Option<Direction> {
        match attr {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// One m-line and what belongs to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    /// Its own c= address (index of the line, address).
    conn: Option<(usize, IpAddr)>,
    /// a=rtcp (index of the line, port, address if given).
    rtcp: Option<(usize, u16, Option<IpAddr>)>,
    pub rtcp_mux: bool,
    direction: Option<Direction>,
    /// Indexes of its a=crypto lines (SDES, RFC 4568).
    crypto: Vec<usize>,
    /// Index of the m-line and one past its last line.
    start: usize,
    end: usize,
}

impl Media {
    /// Whether the relay anchors this stream.
    pub fn anchored(&self) -> bool {
        self.port != 0
            && matches!(self.kind.as_str(), "audio" | "video")
            && self.proto.starts_with("RTP/")
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Sdp {
    lines: Vec<String>,
    /// Key lines Mediator never passes on when it is the crypto endpoint: session-level
    /// `a=crypto`, `k=` (RFC 4566's clear-text keys) and `a=key-mgmt` (MIKEY).
    key_lines: Vec<usize>,
    origin: usize,
    session_conn: Option<(usize, IpAddr)>,
    session_direction: Option<Direction>,
    pub media: Vec<Media>,
}

/// Where a stream's peer receives media, for the dataplane session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    /// Index of the m-line.
    pub index: usize,
    /// None when the peer gave no usable address (0.0.0.0 hold).
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
    pub rtcp_mux: bool,
    pub direction: Direction,
}

/// What Mediator writes for a stream's crypto: its transport protocol and its own `a=crypto`
/// values (which hold keys: this goes into SDP only, never into a log).
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoRewrite {
    pub proto: String,
    pub crypto: Vec<zeroize::Zeroizing<String>>,
}

impl std::fmt::Debug for CryptoRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CryptoRewrite({}, {} a=crypto)",
            self.proto,
            self.crypto.len()
        )
    }
}

/// What the relay puts in place of a stream's address and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub addr: IpAddr,
    pub rtp_port: u16,
    pub rtcp_port: u16,
}

fn parse_conn(value: &str, n: usize) -> Result<IpAddr, SdpError> {
    let mut parts = value.split_whitespace();
    let (net, family, addr) = (parts.next(), parts.next(), parts.next());
    if net != Some("IN") {
        return Err(err(
            n,
            format!("c=: network type must be IN, got '{value}'"),
        ));
    }
    let addr = addr.ok_or_else(|| err(n, "c=: no address"))?;
    if addr.contains('/') {
        return Err(err(n, "c=: multicast addresses are not supported"));
    }
    let ip: IpAddr = addr.parse().map_err(|_| {
        err(
            n,
            format!("c=: '{addr}' is not an IP address (FQDNs are not supported)"),
        )
    })?;
    match (family, ip) {
        (Some("IP4"), IpAddr::V4(_)) | (Some("IP6"), IpAddr::V6(_)) => Ok(ip),
        _ => Err(err(n, format!("c=: address type does not match '{addr}'"))),
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IP4" } else { "IP6" }
}

/// Only the shape: the lines may hold keys (`a=crypto`), which never go into a log.
impl std::fmt::Debug for Sdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let media: Vec<String> = self
            .media
            .iter()
            .map(|m| format!("{} {} {}", m.kind, m.port, m.proto))
            .collect();
        write!(f, "Sdp({} lines, media {media:?})", self.lines.len())
    }
}

impl Sdp {
    pub fn parse(text: &str) -> Result<Sdp, SdpError> {
        if text.len() > MAX_SDP_BYTES {
            return Err(err(0, format!("larger than {MAX_SDP_BYTES} bytes")));
        }
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() > MAX_LINES {
            return Err(err(0, format!("more than {MAX_LINES} lines")));
        }
        if lines.first().map(String::as_str) != Some("v=0") {
            return Err(err(1, "must start with v=0"));
        }
        let mut sdp = Sdp {
            lines: Vec::new(),
            key_lines: Vec::new(),
            origin: usize::MAX,
            session_conn: None,
            session_direction: None,
            media: Vec::new(),
        };
        for (i, line) in lines.iter().enumerate() {
            let n = i + 1;
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(err(
                    n,
                    format!(
                        "'{}' is not type=value",
                        line.chars().take(40).collect::<String>()
                    ),
                ));
            }
            let value = &line[2..];
            let media = sdp.media.last_mut();
            match (bytes[0], media) {
                (b'o', None) => {
                    if value.split_whitespace().count() != 6 {
                        return Err(err(n, "o=: needs 6 fields"));
                    }
                    sdp.origin = i;
                }
                (b'c', None) => sdp.session_conn = Some((i, parse_conn(value, n)?)),
                (b'c', Some(m)) => m.conn = Some((i, parse_conn(value, n)?)),
                (b'k', _) => sdp.key_lines.push(i),
                (b'm', _) => {
                    if sdp.media.len() >= MAX_MEDIA {
                        return Err(err(n, format!("more than {MAX_MEDIA} m-lines")));
                    }
                    let mut parts = value.split_whitespace();
                    let kind = parts.next().ok_or_else(|| err(n, "m=: empty"))?;
                    let port = parts.next().ok_or_else(|| err(n, "m=: no port"))?;
                    let proto = parts.next().ok_or_else(|| err(n, "m=: no protocol"))?;
                    if parts.next().is_none() {
                        return Err(err(n, "m=: no formats"));
                    }
                    let (port, count) = port
                        .split_once('/')
                        .map_or((port, None), |(p, c)| (p, Some(c)));
                    if count.is_some() {
                        return Err(err(n, "m=: port counts are not supported"));
                    }
                    let port: u16 = port
                        .parse()
                        .map_err(|_| err(n, format!("m=: '{port}' is not a port")))?;
                    if let Some(m) = sdp.media.last_mut() {
                        m.end = i;
                    }
                    sdp.media.push(Media {
                        kind: kind.into(),
                        port,
                        proto: proto.into(),
                        conn: None,
                        rtcp: None,
                        rtcp_mux: false,
                        direction: None,
                        crypto: Vec::new(),
                        start: i,
                        end: lines.len(),
                    });
                }
                (b'a', media) => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    match (name, media) {
                        ("rtcp", Some(m)) => {
                            let mut parts = arg.split_whitespace();
                            let port: u16 = parts
                                .next()
                                .and_then(|p| p.parse().ok())
                                .filter(|&p| p != 0)
                                .ok_or_else(|| err(n, format!("a=rtcp: '{arg}' has no port")))?;
                            let addr = match parts.next() {
                                None => None,
                                Some(_) => {
                                    Some(parse_conn(arg.split_once(' ').map_or("", |x| x.1), n)?)
                                }
                            };
                            m.rtcp = Some((i, port, addr));
                        }
                        ("rtcp-mux", Some(m)) => m.rtcp_mux = true,
                        ("crypto", Some(m)) => m.crypto.push(i),
                        ("crypto", None) | ("key-mgmt", _) => sdp.key_lines.push(i),
                        (d, Some(m)) if Direction::parse(d).is_some() => {
                            m.direction = Direction::parse(d)
                        }
                        (d, None) if Direction::parse(d).is_some() => {
                            sdp.session_direction = Direction::parse(d)
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if sdp.origin == usize::MAX {
            return Err(err(0, "no o= line"));
        }
        for m in &sdp.media {
            let line = m.start + 1;
            if m.anchored() && m.conn.is_none() && sdp.session_conn.is_none() {
                return Err(err(
                    line,
                    "no c= for this stream, at media or session level",
                ));
            }
        }
        sdp.lines = lines;
        Ok(sdp)
    }

    fn conn_of(&self, m: &Media) -> Option<IpAddr> {
        m.conn.or(self.session_conn).map(|(_, ip)| ip)
    }

    /// Where the peer receives each anchored stream.
    pub fn streams(&self) -> Vec<Stream> {
        self.media
            .iter()
            .enumerate()
            .filter(|(_, m)| m.anchored())
            .map(|(index, m)| {
                let ip = self.conn_of(m).filter(|ip| !ip.is_unspecified());
                let rtp = ip.map(|ip| SocketAddr::new(ip, m.port));
                let rtcp = match m.rtcp {
                    Some((_, port, addr)) => addr
                        .or(ip)
                        .filter(|a| !a.is_unspecified())
                        .map(|a| SocketAddr::new(a, port)),
                    None if m.rtcp_mux => rtp,
                    None => ip.map(|ip| SocketAddr::new(ip, m.port.wrapping_add(1))),
                };
                Stream {
                    index,
                    rtp,
                    rtcp,
                    rtcp_mux: m.rtcp_mux,
                    direction: m
                        .direction
                        .or(self.session_direction)
                        .unwrap_or(Direction::SendRecv),
                }
            })
            .collect()
    }

    /// On hold: every anchored stream is sendonly, recvonly or inactive, or has the old
    /// (RFC 2543) 0.0.0.0 address.
    pub fn on_hold(&self) -> bool {
        let streams = self.streams();
        !streams.is_empty()
            && streams
                .iter()
                .all(|s| s.rtp.is_none() || s.direction != Direction::SendRecv)
    }

    /// Whether any line carries key material: an `a=crypto` anywhere, `k=` or `a=key-mgmt`.
    pub fn has_keys(&self) -> bool {
        !self.key_lines.is_empty() || self.media.iter().any(|m| !m.crypto.is_empty())
    }

    /// m-line `index`'s transport protocol and the values of its `a=crypto` attributes.
    pub fn crypto(&self, index: usize) -> Option<(&str, Vec<&str>)> {
        let m = self.media.get(index)?;
        let values = m
            .crypto
            .iter()
            .filter_map(|&i| self.lines[i].strip_prefix("a=crypto:"))
            .collect();
        Some((m.proto.as_str(), values))
    }

    /// An answer that rejects every stream of this offer (RFC 3264 §6: as many m-lines, each with
    /// port 0 and one of the offer's formats): what an ACK must carry when the offer in a 2xx
    /// cannot be accepted and the call is to end at once (RFC 3261 §13.2.2.4).
    pub fn rejecting_answer(&self) -> String {
        let mut out = vec![
            "v=0".to_string(),
            "o=mediator 0 0 IN IP4 0.0.0.0".into(),
            "s=-".into(),
            "c=IN IP4 0.0.0.0".into(),
            "t=0 0".into(),
        ];
        for m in &self.media {
            let fmt = self.lines[m.start][2..]
                .split_whitespace()
                .nth(3)
                .unwrap_or("0");
            out.push(format!("m={} 0 {} {fmt}", m.kind, m.proto));
        }
        join(&out)
    }

    /// The SDP with each anchored stream pointing at its anchor (`anchors[i]` for m-line i;
    /// `None` leaves a stream as it is). A stream on the old 0.0.0.0 hold keeps 0.0.0.0 so the far
    /// side keeps not sending. Lines end with CRLF.
    pub fn rewrite(&self, anchors: &[Option<Anchor>]) -> Result<String, SdpError> {
        self.rewrite_with(anchors, &[])
    }

    /// [`Sdp::rewrite`], and for each m-line i with `crypto[i]` set, its protocol and its
    /// `a=crypto` attributes replaced by Mediator's own (the peer's keys never pass on). With any
    /// `crypto` given, the key lines outside the m-lines' `a=crypto` (session-level `a=crypto`,
    /// `k=`, `a=key-mgmt`) are dropped too.
    pub fn rewrite_with(
        &self,
        anchors: &[Option<Anchor>],
        crypto: &[Option<CryptoRewrite>],
    ) -> Result<String, SdpError> {
        let mut lines = self.lines.clone();
        let mut inserts: Vec<(usize, String)> = Vec::new();
        // Lines to drop (the peer's a=crypto), by original index.
        let mut dropped = vec![false; lines.len()];
        if !crypto.is_empty() {
            for &i in &self.key_lines {
                dropped[i] = true;
            }
        }
        for (m, cr) in self.media.iter().zip(crypto) {
            let Some(cr) = cr else { continue };
            let mut tokens: Vec<&str> = self.lines[m.start][2..].split_whitespace().collect();
            if tokens.len() < 4 {
                return Err(err(m.start + 1, "m=: malformed"));
            }
            tokens[2] = &cr.proto;
            lines[m.start] = format!("m={}", tokens.join(" "));
            for &i in &m.crypto {
                dropped[i] = true;
            }
            for c in &cr.crypto {
                inserts.push((m.end, format!("a=crypto:{}", c.as_str())));
            }
        }
        let relay: Vec<(usize, &Media, Anchor)> = self
            .media
            .iter()
            .enumerate()
            .filter(|(_, m)| m.anchored())
            .filter_map(|(i, m)| anchors.get(i).copied().flatten().map(|a| (i, m, a)))
            .collect();
        let Some(first) = relay.first().map(|r| r.2) else {
            return Ok(join(&finish(lines, dropped, inserts)));
        };
        let c_line = |ip: IpAddr| format!("c=IN {} {ip}", family(ip));
        // RFC 4566 order within a media section: m=, i=, c=, b=, k=, a=.
        let conn_slot = |m: &Media| {
            if self
                .lines
                .get(m.start + 1)
                .is_some_and(|l| l.starts_with("i="))
            {
                m.start + 2
            } else {
                m.start + 1
            }
        };
        // Session-level c= moves to the first anchor; a stream that relied on it and now needs
        // another address (not anchored, a 0.0.0.0 hold, another anchor) gets a c= of its own.
        if let Some((idx, orig)) = self.session_conn {
            lines[idx] = c_line(first.addr);
            for (i, m) in self.media.iter().enumerate() {
                if m.conn.is_some() || m.port == 0 {
                    continue;
                }
                let own = match relay.iter().find(|r| r.0 == i) {
                    None => Some(orig),
                    Some(_) if orig.is_unspecified() => Some(orig),
                    Some((_, _, a)) if a.addr != first.addr => Some(a.addr),
                    Some(_) => None,
                };
                if let Some(ip) = own {
                    inserts.push((conn_slot(m), c_line(ip)));
                }
            }
        }
        for (_, m, a) in &relay {
            // A 0.0.0.0 c= (old-style hold) stays, with its a=rtcp: the far side must keep not sending.
            let zero_hold = self.conn_of(m).is_some_and(|ip| ip.is_unspecified());
            // Rebuilt from tokens: peers separate fields with tabs or several spaces too.
            let mut tokens: Vec<String> = lines[m.start][2..]
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if tokens.len() < 4 {
                return Err(err(m.start + 1, "m=: malformed"));
            }
            tokens[1] = a.rtp_port.to_string();
            lines[m.start] = format!("m={}", tokens.join(" "));
            if let Some((idx, ip)) = m.conn
                && !ip.is_unspecified()
            {
                lines[idx] = c_line(a.addr);
            }
            match m.rtcp {
                Some(_) if zero_hold => {}
                Some((idx, _, Some(_))) => {
                    lines[idx] = format!("a=rtcp:{} IN {} {}", a.rtcp_port, family(a.addr), a.addr)
                }
                Some((idx, _, None)) => lines[idx] = format!("a=rtcp:{}", a.rtcp_port),
                // Without a=rtcp a peer sends RTCP to RTP + 1 (RFC 3605): say so when it is not.
                None if !m.rtcp_mux
                    && !zero_hold
                    && Some(a.rtcp_port) != a.rtp_port.checked_add(1) =>
                {
                    inserts.push((m.end, format!("a=rtcp:{}", a.rtcp_port)));
                }
                None => {}
            }
        }
        // o= names the relay, not the peer behind it.
        let o: Vec<&str> = self.lines[self.origin][2..].split_whitespace().collect();
        if o.len() == 6 {
            lines[self.origin] = format!(
                "o={} {} {} IN {} {}",
                o[0],
                o[1],
                o[2],
                family(first.addr),
                first.addr
            );
        }
        Ok(join(&finish(lines, dropped, inserts)))
    }
}

/// `lines` with the `dropped` ones removed and `inserts` placed, both by original index.
fn finish(
    lines: Vec<String>,
    dropped: Vec<bool>,
    mut inserts: Vec<(usize, String)>,
) -> Vec<String> {
    // Stable: lines inserted at one index keep the order they were pushed in.
    inserts.sort_by_key(|i| i.0);
    let mut inserts = inserts.into_iter().peekable();
    let mut out = Vec::with_capacity(lines.len() + inserts.len());
    for (i, (line, drop)) in lines.into_iter().zip(dropped).enumerate() {
        while let Some((_, l)) = inserts.next_if(|x| x.0 == i) {
            out.push(l);
        }
        if !drop {
            out.push(line);
        }
    }
    out.extend(inserts.map(|x| x.1));
    out
}

fn join(lines: &[String]) -> String {
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejecting_answer_has_every_m_line_at_port_0() {
        let offer = Sdp::parse(
            "v=0\r\no=- 1 1 IN IP4 198.18.2.2\r\ns=-\r\nc=IN IP4 198.18.2.2\r\nt=0 0\r\n\
             m=audio 7000 RTP/SAVP 0 8\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n\
             m=image 7002 udptl t38\r\n",
        )
        .expect("offer");
        let answer = offer.rejecting_answer();
        assert_eq!(
            answer,
            "v=0\r\no=mediator 0 0 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             m=audio 0 RTP/SAVP 0\r\nm=image 0 udptl t38\r\n"
        );
        let parsed = Sdp::parse(&answer).expect("a valid SDP");
        assert!(parsed.media.iter().all(|m| m.port == 0));
    }

    const BASIC: &str = "v=0\r\no=- 1 1 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n";

    #[test]
    fn crypto_is_read_per_stream_and_replaced_never_passed_on() {
        let offer = "v=0\r\no=- 1 1 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\n\
            m=audio 4000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PEERKEYPEERKEYPEERKEYPEERKEYPEERKEYPEER|2^31|1:1\r\n\
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:PEERKEYPEERKEYPEERKEYPEERKEYPEERKEYPEER\r\n\
            a=ptime:20\r\n\
            m=video 0 RTP/SAVP 96\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:OTHER\r\n";
        let sdp = Sdp::parse(offer).expect("parses");
        let (proto, values) = sdp.crypto(0).expect("stream 0");
        assert_eq!(proto, "RTP/SAVP");
        assert_eq!(values.len(), 2);
        assert!(values[0].starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:PEERKEY"));
        let anchor = Anchor {
            addr: "198.18.2.1".parse().expect("ip"),
            rtp_port: 30002,
            rtcp_port: 30003,
        };
        let ours = CryptoRewrite {
            proto: "RTP/AVP".into(),
            crypto: vec![zeroize::Zeroizing::new(
                "1 AES_CM_128_HMAC_SHA1_80 inline:OURS".to_string(),
            )],
        };
        let out = sdp
            .rewrite_with(&[Some(anchor), None], &[Some(ours.clone()), None])
            .expect("rewrite");
        assert!(
            !out.contains("PEERKEY"),
            "the peer's keys never pass on:\n{out}"
        );
        assert!(out.contains("m=audio 30002 RTP/AVP 0\r\n"), "{out}");
        assert!(
            out.contains("a=ptime:20\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:OURS\r\nm=video"),
            "ours at the end of its media section:\n{out}"
        );
        assert!(
            out.contains(
                "m=video 0 RTP/SAVP 96\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:OTHER"
            ),
            "a stream not rewritten keeps its lines:\n{out}"
        );
        assert!(!format!("{ours:?}").contains("OURS"), "Debug shows no key");
        // Without anchors the crypto is still replaced.
        let out = sdp
            .rewrite_with(&[None, None], &[Some(ours), None])
            .expect("rewrite");
        assert!(
            !out.contains("PEERKEY") && out.contains("m=audio 4000 RTP/AVP 0"),
            "{out}"
        );
    }

    #[test]
    fn reads_streams_and_hold() {
        let s = Sdp::parse(BASIC).expect("parse");
        let st = s.streams();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].rtp, Some("198.18.1.2:4000".parse().expect("a")));
        assert_eq!(st[0].rtcp, Some("198.18.1.2:4001".parse().expect("a")));
        assert!(!s.on_hold());
        let held =
            Sdp::parse(&BASIC.replace("a=ptime:20", "a=ptime:20\r\na=sendonly")).expect("parse");
        assert!(held.on_hold());
        let old =
            Sdp::parse(&BASIC.replace("c=IN IP4 198.18.1.2", "c=IN IP4 0.0.0.0")).expect("parse");
        assert!(old.on_hold());
        assert_eq!(old.streams()[0].rtp, None);
    }

    #[test]
    fn bad_sdp_names_the_line() {
        for (text, line) in [
            ("v=1\r\n", 1),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nX=1\r\n", 3),
            (
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 example.com\r\n",
                3,
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
                3,
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n",
                3,
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:x\r\n",
                5,
            ),
        ] {
            assert_eq!(Sdp::parse(text).map_err(|e| e.line), Err(line), "{text:?}");
        }
    }

    fn anchor(addr: &str, rtp: u16, rtcp: u16) -> Option<Anchor> {
        Some(Anchor {
            addr: addr.parse().expect("ip"),
            rtp_port: rtp,
            rtcp_port: rtcp,
        })
    }

    #[test]
    fn tabs_and_extra_spaces_in_fields_do_not_break_the_rewrite() {
        let text = BASIC
            .replace(
                "m=audio 4000 RTP/AVP 0 101",
                "m=audio\t4000  RTP/AVP\t0 101",
            )
            .replace("o=- 1 1 IN IP4", "o=-\t1 1 IN  IP4");
        let out = Sdp::parse(&text)
            .expect("parse")
            .rewrite(&[anchor("198.18.2.1", 40000, 40001)])
            .expect("rewrite");
        assert!(out.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{out}");
        assert!(
            out.contains("o=- 1 1 IN IP4 198.18.2.1\r\n"),
            "the peer's address does not leak: {out}"
        );
    }

    #[test]
    fn rtcp_port_other_than_rtp_plus_one_is_announced() {
        let out = Sdp::parse(BASIC)
            .expect("parse")
            .rewrite(&[anchor("198.18.2.1", 40000, 40007)])
            .expect("rewrite");
        assert!(out.ends_with("a=ptime:20\r\na=rtcp:40007\r\n"), "{out}");
    }

    #[test]
    fn streams_on_other_anchors_get_their_own_c_line_after_i() {
        let text = BASIC.replace(
            "a=ptime:20\r\n",
            "a=ptime:20\r\nm=video 5000 RTP/AVP 96\r\ni=camera\r\na=rtpmap:96 H264/90000\r\n",
        );
        let out = Sdp::parse(&text)
            .expect("parse")
            .rewrite(&[
                anchor("198.18.2.1", 40000, 40001),
                anchor("198.18.2.9", 40002, 40003),
            ])
            .expect("rewrite");
        assert!(
            out.contains("m=video 40002 RTP/AVP 96\r\ni=camera\r\nc=IN IP4 198.18.2.9\r\n"),
            "{out}"
        );
        assert!(out.contains("c=IN IP4 198.18.2.1\r\nt=0 0"), "{out}");
    }

    proptest::proptest! {
        /// Whatever a peer sends: no panic, and a rewrite of what parsed parses again.
        #[test]
        fn any_input_is_safe(body in "(v=0\r\n)?([a-z]=[\t -~]{0,30}\r\n){0,20}") {
            if let Ok(s) = Sdp::parse(&body) {
                let anchors: Vec<Option<Anchor>> = s.media.iter().map(|_| Some(Anchor {
                    addr: "198.18.2.1".parse().expect("ip"), rtp_port: 40000, rtcp_port: 40001,
                })).collect();
                let out = s.rewrite(&anchors).expect("rewrite");
                proptest::prop_assert!(Sdp::parse(&out).is_ok(), "{}", out);
            }
        }
    }
}

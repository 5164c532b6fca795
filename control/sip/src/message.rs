//! SIP messages: parsed with `rsip`, bounded, checked for what RFC 3261 requires before any
//! logic sees them, and summarised into Mediator's own types. A message that fails gets the SIP
//! status a UAS must answer with (400, 483, 416 …) and a reason naming what was wrong.

use rsip::headers::ToTypedHeader;
use rsip::headers::UntypedHeader;
use rsip::message::{HasHeaders, HeadersExt};

/// Limits on what a peer can make us parse.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 128;
pub const MAX_VIAS: usize = 70;

/// Why a message is refused, as the status to answer a request with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct SipError {
    pub status: u16,
    pub reason: String,
}

fn bad(reason: impl Into<String>) -> SipError {
    SipError {
        status: 400,
        reason: reason.into(),
    }
}

/// What the transaction and call layers need of a message, in Mediator's own types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// A request's method, or a response's status.
    pub start: Start,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: String,
    /// The top Via's branch (the transaction id under RFC 3261's magic cookie) and sent-by.
    pub branch: String,
    pub sent_by: String,
    pub via_count: usize,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    pub max_forwards: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    Request { method: String, uri: String },
    Response { status: u16 },
}

/// A parsed, checked message.
#[derive(Clone, Debug)]
pub struct Message {
    pub inner: rsip::SipMessage,
    pub summary: Summary,
    /// The bytes as received or built: what is sent and retransmitted, byte for byte (rsip
    /// would re-serialise parameters in its own spelling).
    raw: Vec<u8>,
    /// The size it had on the wire (before normalising): what an error reply must not exceed.
    wire_len: usize,
}

/// At most this much of anything a peer wrote goes into an error's reason (and so into a
/// Warning or a log line): an error reply is never larger than what provoked it.
const MAX_QUOTED: usize = 80;

/// `text` cut to [`MAX_QUOTED`] characters of printable ASCII (no `\`, which would escape a
/// quoted string's end), for reasons that quote a peer.
pub fn short(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '\\') || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_QUOTED)
        .collect();
    if text.chars().count() > MAX_QUOTED {
        out.push_str("...");
    }
    out
}

/// At most [`MAX_HEADERS`] header lines (and the start line) before the body.
fn check_header_lines(bytes: &[u8]) -> Result<(), SipError> {
    let lines = bytes
        .split(|&b| b == b'\n')
        .take_while(|l| l.len() > 1)
        .count();
    if lines > MAX_HEADERS + 1 {
        return Err(bad(format!("more than {MAX_HEADERS} header lines")));
    }
    Ok(())
}

impl Message {
    /// A message Mediator builds (or a test gives it): its header section normalised, nothing cut.
    pub fn parse(bytes: &[u8]) -> Result<Message, SipError> {
        Self::parse_received(bytes, false)
    }

    /// A message from a peer: every legal spelling of its header section accepted (compact
    /// names, folding, whitespace around the colon — RFC 3261 §7.3), and from a `datagram` the
    /// bytes past Content-Length dropped (§18.3).
    pub fn parse_received(bytes: &[u8], datagram: bool) -> Result<Message, SipError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(SipError {
                status: 513,
                reason: format!("Message Too Large (over {MAX_MESSAGE_BYTES} bytes)"),
            });
        }
        check_header_lines(bytes)?;
        let wire_len = bytes.len();
        let normal = crate::normalize::normalize(bytes, datagram);
        let bytes: &[u8] = &normal;
        // Again after normalising: several values on one line became several lines.
        check_header_lines(bytes)?;
        check_single_headers(bytes)?;
        let form = rsip_form(bytes)?;
        let inner = rsip::SipMessage::try_from(&*form.bytes)
            .map_err(|e| bad(format!("unparseable message: {}", short(&e.to_string()))))?;
        let mut summary = summarise(&inner, bytes)?;
        // The method and Request-URI as they arrived: rsip knows only some methods, is stricter
        // than RFC 3261 about URIs and re-serialises parameters, and a B2BUA echoes what it got.
        if let Some(m) = form.cseq_method {
            summary.cseq_method = m;
        }
        if let Some((method, uri)) = form.start {
            summary.start = Start::Request { method, uri };
        }
        Ok(Message {
            inner,
            summary,
            raw: bytes.to_vec(),
            wire_len,
        })
    }

    pub fn is_request(&self) -> bool {
        matches!(self.summary.start, Start::Request { .. })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.raw.clone()
    }

    /// The message's size as received (or built).
    pub fn wire_len(&self) -> usize {
        self.wire_len
    }
}

/// The methods `rsip` has names for (it matches them case-insensitively; SIP does not).
const RSIP_METHODS: &[&str] = &[
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// A message (or what follows its start line) cut at the CRLF CRLF that ends its headers: the
/// headers, and the rest from that CRLF CRLF on (empty when there is none).
fn head_and_body(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => bytes.split_at(end),
        None => (bytes, &[][..]),
    }
}

/// The header lines of a normalised message (after the start line, before the blank line).
fn header_lines(bytes: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let (head, _) = head_and_body(bytes);
    std::str::from_utf8(head)
        .unwrap_or_default()
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n, v.trim_start()))
}

/// Headers a message has at most one of (RFC 3261 §7.3.1, §20): two are a 400, whichever is
/// right (RFC 4475 §3.3.8, §3.3.9).
const SINGLE: &[&str] = &[
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
];

fn check_single_headers(bytes: &[u8]) -> Result<(), SipError> {
    let mut seen = [0usize; SINGLE.len()];
    for (name, _) in header_lines(bytes) {
        if let Some(i) = SINGLE.iter().position(|s| s.eq_ignore_ascii_case(name)) {
            seen[i] += 1;
            if seen[i] > 1 {
                return Err(bad(format!("more than one {} header", SINGLE[i])));
            }
        }
    }
    Ok(())
}

/// What a received message is to `rsip`, and what it hides from it.
struct RsipForm<'a> {
    bytes: std::borrow::Cow<'a, [u8]>,
    /// A request's method and Request-URI as written.
    start: Option<(String, String)>,
    /// The CSeq method as written, when `rsip` was shown OPTIONS instead.
    cseq_method: Option<String>,
}

/// The message as `rsip` is given it. The request line is checked here (RFC 3261 §7.1: 400, or
/// 505 for another version); `rsip` sees a placeholder Request-URI (it refuses legal URIs such as
/// RFC 4475's `sip:user;par=u%40…@host`, and the URI Mediator uses is the one as written) and, for
/// a method it has no name for, OPTIONS in the request line and CSeq (the engine answers the real
/// method 501; a response keeps its real CSeq method).
fn rsip_form(bytes: &[u8]) -> Result<RsipForm<'_>, SipError> {
    let line_end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(bytes.len());
    let (first, rest) = bytes.split_at(line_end);
    let cseq = header_lines(bytes)
        .find(|(n, _)| n.eq_ignore_ascii_case("CSeq"))
        .map(|(_, v)| v);
    let cseq_method = cseq.and_then(|v| v.split_whitespace().nth(1));
    let unknown = |m: &str| !RSIP_METHODS.contains(&m);
    if first.starts_with(b"SIP/") {
        return Ok(match cseq_method {
            Some(m) if unknown(m) => RsipForm {
                bytes: std::borrow::Cow::Owned([first, &cseq_as_options(rest)].concat()),
                start: None,
                cseq_method: Some(m.to_string()),
            },
            _ => RsipForm {
                bytes: std::borrow::Cow::Borrowed(bytes),
                start: None,
                cseq_method: None,
            },
        });
    }
    let first = std::str::from_utf8(first).map_err(|_| bad("the request line is not UTF-8"))?;
    let line = crate::grammar::request_line(first).map_err(|(status, reason)| SipError {
        status,
        reason: short(&reason),
    })?;
    if let Some(m) = cseq_method
        && m != line.method
    {
        return Err(bad(format!(
            "CSeq method {} does not match the request method {}",
            short(m),
            short(line.method)
        )));
    }
    let known = !unknown(line.method);
    let as_rsip = if known { line.method } else { "OPTIONS" };
    let mut out = format!("{as_rsip} sip:mediator.invalid SIP/2.0").into_bytes();
    if known {
        out.extend_from_slice(rest);
    } else {
        out.extend_from_slice(&cseq_as_options(rest));
    }
    Ok(RsipForm {
        bytes: std::borrow::Cow::Owned(out),
        start: Some((line.method.to_string(), line.uri.to_string())),
        cseq_method: (!known).then(|| line.method.to_string()),
    })
}

/// The header lines and body after a start line, with the CSeq method replaced by OPTIONS.
fn cseq_as_options(rest: &[u8]) -> Vec<u8> {
    let (head, body) = head_and_body(rest);
    let mut out = Vec::with_capacity(rest.len());
    for line in String::from_utf8_lossy(head).split("\r\n") {
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("CSeq") => {
                let seq = value.split_whitespace().next().unwrap_or_default();
                out.extend_from_slice(format!("\r\nCSeq: {seq} OPTIONS").as_bytes());
            }
            _ if line.is_empty() => {}
            _ => {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(line.as_bytes());
            }
        }
    }
    out.extend_from_slice(body);
    out
}

fn summarise(m: &rsip::SipMessage, raw: &[u8]) -> Result<Summary, SipError> {
    let vias: Vec<&rsip::headers::Via> = m
        .headers()
        .iter()
        .filter_map(|h| match h {
            rsip::Header::Via(v) => Some(v),
            _ => None,
        })
        .collect();
    if vias.is_empty() {
        return Err(bad("no Via header"));
    }
    if vias.len() > MAX_VIAS {
        return Err(bad(format!("more than {MAX_VIAS} Via headers")));
    }
    let top = vias[0]
        .typed()
        .map_err(|e| bad(format!("malformed Via: {e}")))?;
    // To, From and Contact by RFC 3261's grammar: rsip refuses legal ones (any URI scheme,
    // RFC 4475's odd tokens) and accepts some that are not (an unbalanced quote).
    let address = |name: &str| -> Result<Option<crate::grammar::NameAddr<'_>>, SipError> {
        match header_lines(raw).find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            None => Ok(None),
            Some((_, v)) => crate::grammar::name_addr(v)
                .map(Some)
                .map_err(|e| bad(format!("malformed {name}: {e}"))),
        }
    };
    let from = address("From")?.ok_or_else(|| bad("no From header"))?;
    let to = address("To")?.ok_or_else(|| bad("no To header"))?;
    for (_, contact) in header_lines(raw).filter(|(n, _)| n.eq_ignore_ascii_case("Contact")) {
        if contact.trim() != "*" {
            crate::grammar::name_addr(contact)
                .map_err(|e| bad(format!("malformed Contact: {e}")))?;
        }
    }
    let tag = |a: &crate::grammar::NameAddr<'_>| a.param("tag").flatten().map(str::to_string);
    let (from_tag, to_tag) = (tag(&from), tag(&to));
    let call_id = m
        .call_id_header()
        .map_err(|_| bad("no Call-ID header"))?
        .value()
        .trim()
        .to_string();
    if call_id.is_empty() || call_id.len() > 256 {
        return Err(bad("Call-ID must be 1-256 characters"));
    }
    let cseq = m
        .cseq_header()
        .map_err(|_| bad("no CSeq header"))?
        .typed()
        .map_err(|e| bad(format!("malformed CSeq: {e}")))?;
    let max_forwards = match m.max_forwards_header() {
        Ok(h) => Some(
            h.value()
                .trim()
                .parse::<u32>()
                .map_err(|_| bad("malformed Max-Forwards"))?,
        ),
        Err(_) => None,
    };
    let declared = m.headers().iter().find_map(|h| match h {
        rsip::Header::ContentLength(l) => Some(l.value().trim().parse::<usize>()),
        _ => None,
    });
    if let Some(len) = declared {
        let len = len.map_err(|_| bad("malformed Content-Length"))?;
        if len != m.body().len() {
            return Err(bad(format!(
                "Content-Length says {len} bytes, the body has {}",
                m.body().len()
            )));
        }
    }
    let start = match m {
        rsip::SipMessage::Request(r) => {
            let method = r.method().to_string();
            if cseq.method.to_string() != method {
                return Err(bad(format!(
                    "CSeq method {} does not match the request method {method}",
                    cseq.method
                )));
            }
            // No Max-Forwards is taken as 70, as a proxy adds (RFC 3261 §16.6 step 3; RFC 2543
            // peers send none).
            if max_forwards == Some(0) && method != "OPTIONS" {
                return Err(SipError {
                    status: 483,
                    reason: "Too Many Hops".into(),
                });
            }
            Start::Request {
                method,
                uri: r.uri().to_string(),
            }
        }
        rsip::SipMessage::Response(r) => Start::Response {
            status: r.status_code().code(),
        },
    };
    // An RFC 2543 peer's top Via has no branch: its transactions are told apart by Call-ID,
    // From tag, CSeq number and sent-by instead (RFC 3261 §17.2.3), folded into a key no
    // RFC 3261 branch can equal (those start with z9hG4bK; this has a space).
    let branch = match top.branch() {
        Some(b) => b.to_string(),
        None => format!(
            "rfc2543 {call_id};{};{}",
            from_tag.as_deref().unwrap_or_default(),
            cseq.seq
        ),
    };
    Ok(Summary {
        start,
        call_id,
        cseq: cseq.seq,
        cseq_method: cseq.method.to_string(),
        branch,
        sent_by: top.sent_by().to_string(),
        via_count: vias.len(),
        from_tag,
        to_tag,
        max_forwards,
    })
}

/// A response to `req` (RFC 3261 8.2.6): its Vias, From, To (with `to_tag` added when the request's
/// To has none), Call-ID and CSeq, with status and reason and no body.
pub fn response_to(req: &Message, status: u16, reason: &str, to_tag: &str) -> Vec<u8> {
    build_response(req, status, reason, to_tag, &[], None)
}

/// A response to `req` as [`response_to`], with `extra` headers (name, value) and an optional body
/// (content type, bytes).
pub fn build_response(
    req: &Message,
    status: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, String)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    if !req.is_request() {
        return Vec::new();
    }
    let reason = clean(reason);
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    // Copied as the peer wrote them (normalised: one per line, full names): the CSeq of a
    // method rsip has no name for stays that method.
    for (name, value) in header_lines(&req.raw) {
        let Some(&name) = ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .find(|n| n.eq_ignore_ascii_case(name))
        else {
            continue;
        };
        let value = value.trim_end();
        if name == "To" && req.summary.to_tag.is_none() && status != 100 && !to_tag.is_empty() {
            out.push_str(&format!("To: {value};tag={to_tag}\r\n"));
        } else {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let mut out = out.into_bytes();
    finish(&mut out, extra, body);
    out
}

/// Headers, Content-Type/Length and body after a start line and the headers already written.
fn finish(out: &mut Vec<u8>, extra: &[(&str, String)], body: Option<(&str, &[u8])>) {
    for (name, value) in extra {
        out.extend_from_slice(format!("{name}: {}\r\n", clean(value)).as_bytes());
    }
    match body {
        Some((ctype, bytes)) if !bytes.is_empty() => {
            out.extend_from_slice(
                format!(
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                    bytes.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(bytes);
        }
        _ => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
}

/// A header value or reason phrase with no line breaks: what a peer sent can never inject a
/// header into what Mediator writes.
fn clean(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

/// A request Mediator originates: start line, `headers` in order, optional body. It is parsed
/// back with the same checks as a received message, so nothing malformed leaves Mediator.
pub fn build_request(
    method: &str,
    uri: &str,
    headers: &[(&str, String)],
    body: Option<(&str, &[u8])>,
) -> Result<Message, SipError> {
    let mut out = format!("{method} {} SIP/2.0\r\n", clean(uri)).into_bytes();
    finish(&mut out, headers, body);
    Message::parse(&out)
}

/// A message Mediator built with its header names in their compact forms (RFC 3261 §7.3.3), for
/// an error reply that must fit in the size of the request that drew it.
pub fn with_compact_names(message: &[u8]) -> Vec<u8> {
    const FORMS: &[(&str, &str)] = &[
        ("Via: ", "v: "),
        ("From: ", "f: "),
        ("To: ", "t: "),
        ("Call-ID: ", "i: "),
        ("Content-Length: ", "l: "),
        ("Content-Type: ", "c: "),
        ("Supported: ", "k: "),
    ];
    let (head, body) = head_and_body(message);
    let mut out = Vec::with_capacity(message.len());
    for (i, line) in String::from_utf8_lossy(head).split("\r\n").enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        match FORMS.iter().find(|(long, _)| line.starts_with(long)) {
            Some((long, short)) if i > 0 => {
                out.extend_from_slice(short.as_bytes());
                out.extend_from_slice(&line.as_bytes()[long.len()..]);
            }
            _ => out.extend_from_slice(line.as_bytes()),
        }
    }
    out.extend_from_slice(body);
    out
}

/// The standard reason phrase of a status Mediator answers with itself.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Error",
    }
}

impl Message {
    /// The values of every header called `name` (case-insensitive, compact forms included), in
    /// order, as text.
    pub fn headers_named(&self, name: &str) -> Vec<String> {
        let name = crate::normalize::full_name(name);
        header_lines(&self.raw)
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers_named(name).into_iter().next()
    }

    pub fn body(&self) -> &[u8] {
        self.inner.body()
    }

    pub fn method(&self) -> Option<&str> {
        match &self.summary.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.summary.start {
            Start::Response { status } => Some(status),
            Start::Request { .. } => None,
        }
    }

    /// The reason phrase of a response.
    /// A response's reason phrase as the peer wrote it (printable, bounded), or the standard
    /// one when it wrote none.
    pub fn reason(&self) -> String {
        match &self.inner {
            rsip::SipMessage::Response(r) => {
                let first = self.raw.split(|&b| b == b'\n').next().unwrap_or_default();
                let line = String::from_utf8_lossy(first);
                // UTF-8 is allowed in a reason phrase (RFC 3261 §25.1); control characters and
                // backslashes are not passed on.
                let phrase: String = line
                    .trim_end()
                    .splitn(3, ' ')
                    .nth(2)
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| !c.is_control() && *c != '\\')
                    .take(MAX_QUOTED)
                    .collect();
                if phrase.is_empty() {
                    reason_phrase(r.status_code().code()).to_string()
                } else {
                    phrase
                }
            }
            rsip::SipMessage::Request(_) => String::new(),
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.summary.start {
            Start::Request { uri, .. } => Some(uri),
            Start::Response { .. } => None,
        }
    }
}

/// The URI of a name-addr or addr-spec header value: inside `<>`, or up to the first `;`.
pub fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].trim().to_string(),
        _ => value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// The user part of a `sip:`/`sips:` URI, or the number of a `tel:` URI, without parameters.
pub fn user_of(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let user = match rest.split_once('@') {
        Some((u, _)) => u,
        None if uri.starts_with("tel:") => rest,
        None => return None,
    };
    let user = user.split([';', ':']).next().unwrap_or_default();
    (!user.is_empty()).then(|| user.to_string())
}

/// The value of parameter `name` in a header value (`;name=value`), case-insensitive.
pub fn param_of(value: &str, name: &str) -> Option<String> {
    let after = value.rsplit_once('>').map(|(_, p)| p).unwrap_or(value);
    after.split(';').skip(1).find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A request in a client INVITE's own transaction: its Request-URI, top Via (so the INVITE's
/// branch), Route, From, Call-ID, Max-Forwards and CSeq number with `method`; then `to` as the To
/// header, or the INVITE's own To when `to` is `None`.
fn in_invite_transaction(invite: &Message, method: &str, to: Option<String>) -> Option<String> {
    let (Start::Request { uri, .. }, rsip::SipMessage::Request(req)) =
        (&invite.summary.start, &invite.inner)
    else {
        return None;
    };
    let mut out = format!("{method} {uri} SIP/2.0\r\n");
    let mut via_done = false;
    for h in req.headers.iter() {
        match h {
            rsip::Header::Via(_) if !via_done => {
                out.push_str(&format!("{h}\r\n"));
                via_done = true;
            }
            rsip::Header::To(_) if to.is_none() => out.push_str(&format!("{h}\r\n")),
            rsip::Header::Route(_)
            | rsip::Header::From(_)
            | rsip::Header::CallId(_)
            | rsip::Header::MaxForwards(_) => out.push_str(&format!("{h}\r\n")),
            rsip::Header::CSeq(c) => {
                let seq = c.typed().map(|c| c.seq).unwrap_or_default();
                out.push_str(&format!("CSeq: {seq} {method}\r\n"));
            }
            _ => {}
        }
    }
    if let Some(to) = to {
        out.push_str(&format!("{to}\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out)
}

/// The ACK a client INVITE transaction sends for a non-2xx final response (RFC 3261 17.1.1.3):
/// the request's Request-URI, top Via, Route, From, Call-ID and CSeq number, the response's To.
pub fn ack_for(invite: &Message, response: &Message) -> Vec<u8> {
    let rsip::SipMessage::Response(response) = &response.inner else {
        return Vec::new();
    };
    let to = response
        .to_header()
        .ok()
        .map(|to| rsip::Header::To(to.clone()).to_string());
    // Every parsed response has a To; without one the INVITE's would do.
    in_invite_transaction(invite, "ACK", to)
        .map(String::into_bytes)
        .unwrap_or_default()
}

/// The CANCEL for a client INVITE (RFC 3261 9.1): the INVITE's Request-URI, top Via (so it has the
/// INVITE's branch), Route, From, To, Call-ID and CSeq number.
/// RFC 3261 §18.1.1: a request over this many bytes, the path MTU being unknown, goes over a
/// congestion-controlled transport.
pub const UDP_REQUEST_LIMIT: usize = 1300;

/// `request` with its top Via's transport set to `transport` (`"TCP"`): sent over another
/// transport than it was built for, its Via must say so (RFC 3261 §18.1.1).
pub fn with_via_transport(request: &Message, transport: &str) -> Result<Message, SipError> {
    let bytes = request.to_bytes();
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8"))?;
    // The first header line named Via (or v), before the empty line that ends the head.
    let mut start = text.find("\r\n").ok_or_else(|| bad("no head"))? + 2;
    let (at, end) = loop {
        let end = text[start..].find("\r\n").map_or(text.len(), |e| start + e);
        if end == start {
            return Err(bad("no Via"));
        }
        let name = text[start..end]
            .split(':')
            .next()
            .unwrap_or_default()
            .trim();
        if name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v") {
            break (start, end);
        }
        start = end + 2;
    };
    let line = &text[at..end];
    let value = line
        .split_once(':')
        .map(|(_, v)| v.trim_start())
        .unwrap_or_default();
    let (protocol, rest) = value
        .split_once(' ')
        .ok_or_else(|| bad("a Via without sent-by"))?;
    let (base, _) = protocol
        .rsplit_once('/')
        .ok_or_else(|| bad("a Via without transport"))?;
    let rewritten = format!(
        "{}Via: {base}/{transport} {rest}{}",
        &text[..at],
        &text[end..]
    );
    Message::parse(rewritten.as_bytes())
}

pub fn cancel_for(invite: &Message) -> Result<Message, SipError> {
    let text =
        in_invite_transaction(invite, "CANCEL", None).ok_or_else(|| bad("CANCEL of a response"))?;
    Message::parse(text.as_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const INVITE: &str = "INVITE sip:+14255550100@198.18.2.2:5067;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.1.1:5060;branch=z9hG4bK-abc123\r\n\
Max-Forwards: 70\r\n\
From: <sip:+14255550111@contoso.com>;tag=f1\r\n\
To: <sip:+14255550100@contoso.com>\r\n\
Call-ID: 9f1c2e@198.18.1.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:med@198.18.1.1:5060>\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn a_request_moved_to_tcp_says_so_in_its_top_via_only() {
        let two = INVITE.replace(
            "Max-Forwards",
            "Via: SIP/2.0/UDP 198.18.9.9;branch=z9hG4bK-x\r\nMax-Forwards",
        );
        let m = Message::parse(two.as_bytes()).expect("parse");
        let tcp = with_via_transport(&m, "TCP").expect("rewritten");
        let vias = tcp.headers_named("via");
        assert_eq!(
            vias,
            [
                "SIP/2.0/TCP 198.18.1.1:5060;branch=z9hG4bK-abc123",
                "SIP/2.0/UDP 198.18.9.9;branch=z9hG4bK-x"
            ]
        );
        assert_eq!(tcp.summary.branch, m.summary.branch);
        assert_eq!(tcp.body(), m.body());
    }

    #[test]
    fn a_good_invite_is_summarised() {
        let m = Message::parse(INVITE.as_bytes()).expect("parse");
        let s = &m.summary;
        assert_eq!(
            s.start,
            Start::Request {
                method: "INVITE".into(),
                uri: "sip:+14255550100@198.18.2.2:5067;transport=udp".into()
            }
        );
        assert_eq!(
            (s.call_id.as_str(), s.cseq, s.cseq_method.as_str()),
            ("9f1c2e@198.18.1.1", 1, "INVITE")
        );
        assert_eq!((s.branch.as_str(), s.via_count), ("z9hG4bK-abc123", 1));
        assert_eq!(
            (s.from_tag.as_deref(), s.to_tag.as_deref(), s.max_forwards),
            (Some("f1"), None, Some(70))
        );
    }

    #[test]
    fn broken_requests_get_the_right_status() {
        let cases: [(String, u16, &str); 9] = [
            (
                INVITE.replace(
                    "Via: SIP/2.0/UDP 198.18.1.1:5060;branch=z9hG4bK-abc123\r\n",
                    "",
                ),
                400,
                "Via",
            ),
            (
                INVITE.replace("Call-ID: 9f1c2e@198.18.1.1\r\n", ""),
                400,
                "Call-ID",
            ),
            (
                INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
                400,
                "CSeq method",
            ),
            (
                INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0"),
                483,
                "Too Many Hops",
            ),
            (
                INVITE.replace("Call-ID: 9f1c2e@198.18.1.1\r\n", "Call-ID: a\r\ni: b\r\n"),
                400,
                "more than one Call-ID",
            ),
            (
                INVITE.replace(" SIP/2.0\r\n", " SIP/3.0\r\n"),
                505,
                "SIP/3.0",
            ),
            (
                INVITE.replace("To: <sip:", "To: \"Unbalanced <sip:"),
                400,
                "malformed To",
            ),
            (
                INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 NEWMETHOD"),
                400,
                "CSeq method NEWMETHOD",
            ),
            (
                INVITE.replace("Content-Length: 0", "Content-Length: 10"),
                400,
                "Content-Length",
            ),
        ];
        for (text, status, what) in cases {
            let e = Message::parse(text.as_bytes()).expect_err(what);
            assert_eq!(e.status, status, "{what}: {e}");
            assert!(e.reason.contains(what), "{what}: {e}");
        }
        let huge = vec![b'a'; MAX_MESSAGE_BYTES + 1];
        assert_eq!(Message::parse(&huge).map_err(|e| e.status).err(), Some(513));
    }

    /// An RFC 2543 request (no branch, no Max-Forwards) is taken: its transaction key is made
    /// of Call-ID, From tag and CSeq (RFC 3261 §17.2.3), and Max-Forwards counts as absent.
    #[test]
    fn an_rfc_2543_request_is_accepted() {
        let old = INVITE
            .replace(";branch=z9hG4bK-abc123", "")
            .replace("Max-Forwards: 70\r\n", "");
        let m = Message::parse(old.as_bytes()).expect("RFC 2543 INVITE");
        assert_eq!(m.summary.branch, "rfc2543 9f1c2e@198.18.1.1;f1;1");
        assert_eq!(m.summary.max_forwards, None);
        // The ACK of a non-2xx (To tag added) is in the same transaction.
        let ack = old
            .replace("INVITE sip:", "ACK sip:")
            .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
            .replace(
                "To: <sip:+14255550100@contoso.com>",
                "To: <sip:+14255550100@contoso.com>;tag=t1",
            );
        let ack = Message::parse(ack.as_bytes()).expect("RFC 2543 ACK");
        assert_eq!(
            crate::transaction::TxKey::of(&ack),
            crate::transaction::TxKey::of(&m)
        );
    }

    /// A method rsip has no name for is a request like any other (the engine answers it 501),
    /// and a response to it carries its CSeq as written.
    #[test]
    fn extension_methods_parse_and_their_responses_echo_them() {
        let m = INVITE
            .replace("INVITE sip:", "NEWMETHOD sip:")
            .replace("CSeq: 1 INVITE", "CSeq: 1 NEWMETHOD");
        let m = Message::parse(m.as_bytes()).expect("extension method");
        assert_eq!(m.method(), Some("NEWMETHOD"));
        assert_eq!(m.summary.cseq_method, "NEWMETHOD");
        let r = String::from_utf8(response_to(&m, 501, "Not Implemented", "t")).expect("utf8");
        assert!(r.contains("\r\nCSeq: 1 NEWMETHOD\r\n"), "{r}");
        assert!(r.contains(";tag=t\r\n"), "{r}");
        let lower = INVITE
            .replace("INVITE sip:", "invite sip:")
            .replace("CSeq: 1 INVITE", "CSeq: 1 invite");
        let m = Message::parse(lower.as_bytes()).expect("methods are case-sensitive");
        assert_eq!(m.method(), Some("invite"), "not INVITE");
    }

    #[test]
    fn responses_and_acks_carry_the_right_headers() {
        let m = Message::parse(INVITE.as_bytes()).expect("parse");
        let resp = response_to(&m, 486, "Busy Here", "t9");
        let parsed = Message::parse(&resp).expect("our response parses");
        assert_eq!(parsed.summary.start, Start::Response { status: 486 });
        assert_eq!(
            (
                parsed.summary.branch.as_str(),
                parsed.summary.to_tag.as_deref()
            ),
            ("z9hG4bK-abc123", Some("t9"))
        );
        let ack = Message::parse(&ack_for(&m, &parsed)).expect("our ACK parses");
        assert_eq!(
            ack.summary.start,
            Start::Request {
                method: "ACK".into(),
                uri: "sip:+14255550100@198.18.2.2:5067;transport=udp".into()
            }
        );
        assert_eq!(
            (
                ack.summary.cseq,
                ack.summary.branch.as_str(),
                ack.summary.to_tag.as_deref()
            ),
            (1, "z9hG4bK-abc123", Some("t9"))
        );
    }

    proptest::proptest! {
        /// Nothing a peer sends panics the parser.
        #[test]
        fn any_bytes_are_safe(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = Message::parse(&bytes);
        }

        /// Nor do mutations of a valid message.
        #[test]
        fn mutated_invites_are_safe(pos in 0usize..400, byte in proptest::prelude::any::<u8>()) {
            let mut b = INVITE.as_bytes().to_vec();
            let i = pos % b.len();
            b[i] = byte;
            let _ = Message::parse(&b);
        }
    }

    /// RFC 3261 §7.3: compact names, folded lines and whitespace around the colon are the same
    /// message as their long forms.
    #[test]
    fn every_legal_spelling_of_the_headers_is_the_same_message() {
        let compact = "INVITE sip:+14255550100@198.18.2.2:5067 SIP/2.0\r\n\
v: SIP/2.0/UDP 198.18.1.1:5060\r\n ;branch=z9hG4bK-abc123\r\n\
Max-Forwards : 70\r\n\
f: <sip:+14255550111@contoso.com>;tag=f1\r\n\
t:<sip:+14255550100@contoso.com>\r\n\
i:\tcall-1@contoso.com\r\n\
CSeq: 7\r\n\tINVITE\r\n\
m: <sip:fe@198.18.1.1:5060>\r\n\
l: 0\r\n\r\n";
        let m = Message::parse_received(compact.as_bytes(), true).expect("compact form parses");
        assert_eq!(m.summary.call_id, "call-1@contoso.com");
        assert_eq!(m.summary.branch, "z9hG4bK-abc123");
        assert_eq!(m.summary.from_tag.as_deref(), Some("f1"));
        assert_eq!(
            (m.summary.cseq, m.summary.cseq_method.as_str()),
            (7, "INVITE")
        );
        assert_eq!(m.summary.max_forwards, Some(70));
        assert!(m.header("contact").is_some_and(|c| c.contains("fe@")));
    }

    /// The peer's reason phrase passes as written (not rsip's enum name), bounded and printable.
    #[test]
    fn reason_phrases_are_the_peers_own() {
        let resp = |line: &str| {
            format!(
                "{line}\r\nVia: SIP/2.0/UDP 198.18.1.1:5060;branch=z9hG4bK-1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let m = Message::parse(resp("SIP/2.0 183 Session Progress").as_bytes()).expect("183");
        assert_eq!(m.reason(), "Session Progress");
        let m = Message::parse(resp("SIP/2.0 486 Busy Here Right Now").as_bytes()).expect("486");
        assert_eq!(m.reason(), "Busy Here Right Now");
    }

    /// An error reply names the problem briefly and never echoes the request: a large malformed
    /// request gets a reply smaller than itself.
    #[test]
    fn an_error_reply_is_small_whatever_provoked_it() {
        let junk = "x".repeat(3000);
        let bad = format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.1:5060;branch=z9hG4bK-1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <{junk}\r\nContent-Length: 0\r\n\r\n"
        );
        if let Err(e) = Message::parse(bad.as_bytes()) {
            assert!(e.reason.len() < 200, "{}", e.reason.len());
        }
        let e = Message::parse(format!("INVITE {junk} SIP/2.0\r\n\r\n").as_bytes())
            .expect_err("no headers");
        assert!(e.reason.len() < 200, "{}", e.reason.len());
    }

    /// Compact names are the same response, shorter.
    #[test]
    fn a_response_with_compact_names_is_the_same_response() {
        let m = Message::parse(INVITE.as_bytes()).expect("parse");
        let long = response_to(&m, 405, "Method Not Allowed", "t1");
        let short = with_compact_names(&long);
        assert!(
            short.len() + 20 < long.len(),
            "{}",
            String::from_utf8_lossy(&short)
        );
        let (a, b) = (
            Message::parse(&long).expect("long"),
            Message::parse(&short).expect("short"),
        );
        assert_eq!(a.summary, b.summary);
        assert_eq!(a.header("to"), b.header("to"));
    }

    /// Several Vias on one line (RFC 3261 §7.3.1) are several Vias: the top one is the first.
    #[test]
    fn vias_on_one_line_count_one_by_one() {
        let m = INVITE.replace(
            "Via: SIP/2.0/UDP 198.18.1.1:5060;branch=z9hG4bK-abc123\r\n",
            "Via: SIP/2.0/UDP 198.18.1.1:5060;branch=z9hG4bK-abc123, SIP/2.0/UDP 198.18.1.9;branch=z9hG4bK-x\r\n",
        );
        let m = Message::parse(m.as_bytes()).expect("parses");
        assert_eq!(m.summary.via_count, 2);
        assert_eq!(m.summary.branch, "z9hG4bK-abc123");
    }
}

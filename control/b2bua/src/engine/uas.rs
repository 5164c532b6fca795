//! What RFC 3261 §8.2 has a UAS check of a request before acting on it, past what the parser
//! checks: the Request-URI's scheme (416, §8.2.2.1), the extensions it requires (420 with
//! Unsupported, §8.2.2.3) and, for an INVITE, whether an SDP answer is acceptable to it at all
//! (406, RFC 4475 §3.3.15). A pure decision that says why it refuses.

use mediator_sip::grammar::scheme_of;
use mediator_sip::message::Message;

/// The option tags Mediator implements: reliable provisional responses (RFC 3262) and session
/// timers (RFC 4028).
pub(super) const SUPPORTED: &[&str] = &["100rel", "timer"];

/// Request-URI schemes a call can be placed to.
const SCHEMES: &[&str] = &["sip", "sips", "tel"];

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: u16,
    pub why: String,
    pub headers: Vec<(&'static str, String)>,
}

/// Whether Mediator can act on request `m` (not an ACK or CANCEL, which have no such checks).
pub(super) fn check(m: &Message) -> Result<(), Refusal> {
    let uri = m.request_uri().unwrap_or_default();
    let scheme = scheme_of(uri).unwrap_or_default();
    if !SCHEMES.contains(&scheme.as_str()) {
        return Err(Refusal {
            status: 416,
            why: format!(
                "the Request-URI scheme '{}' is not supported",
                mediator_sip::message::short(&scheme)
            ),
            headers: Vec::new(),
        });
    }
    let unsupported: Vec<String> = m
        .headers_named("require")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if !unsupported.is_empty() {
        let list = mediator_sip::message::short(&unsupported.join(", "));
        return Err(Refusal {
            status: 420,
            why: format!("unsupported extension {list}"),
            headers: vec![("Unsupported", list)],
        });
    }
    if m.method() == Some("INVITE") {
        let accept = m.headers_named("accept");
        let types: Vec<String> = accept
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|t| !t.is_empty())
            .collect();
        if !types.is_empty()
            && !types
                .iter()
                .any(|t| matches!(t.as_str(), "application/sdp" | "application/*" | "*/*"))
        {
            return Err(Refusal {
                status: 406,
                why: "the Accept header does not allow application/sdp".into(),
                headers: vec![("Accept", "application/sdp".into())],
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str, extra: &str) -> Message {
        let (method, _) = line.split_once(' ').expect("method");
        let text = format!(
            "{line} SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK-1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes()).expect("parses")
    }

    #[test]
    fn what_a_uas_refuses_and_why() {
        assert_eq!(
            check(&req("INVITE sip:1@h", "Require: 100rel, timer\r\n")),
            Ok(())
        );
        assert_eq!(check(&req("INVITE tel:+14255550100", "")), Ok(()));
        assert_eq!(
            check(&req(
                "INVITE sip:1@h",
                "Accept: application/sdp, text/plain\r\n"
            )),
            Ok(())
        );
        let r = check(&req("OPTIONS soap.beep://192.0.2.103:3002", "")).expect_err("416");
        assert_eq!((r.status, r.why.contains("soap.beep")), (416, true));
        let r = check(&req(
            "OPTIONS sip:1@h",
            "Require: timer, nothingSupportsThis\r\nProxy-Require: x\r\n",
        ))
        .expect_err("420");
        assert_eq!(r.status, 420);
        assert_eq!(
            r.headers,
            vec![("Unsupported", "nothingSupportsThis".to_string())]
        );
        let r = check(&req("INVITE sip:1@h", "Accept: text/nobodyKnowsThis\r\n")).expect_err("406");
        assert_eq!(r.status, 406);
        assert_eq!(
            check(&req("OPTIONS sip:1@h", "Accept: text/nobodyKnowsThis\r\n")),
            Ok(()),
            "an OPTIONS answer has no body"
        );
    }
}

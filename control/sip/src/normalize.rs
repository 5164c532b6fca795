//! Every legal spelling of a message's header section, brought to the one `rsip` parses (RFC 3261
//! §7.3): folded lines unfolded, whitespace around the colon removed, compact header names
//! expanded (§7.3.3: implementations MUST accept both forms), and a datagram's bytes past its
//! Content-Length dropped (§18.3). The body is never touched; the start line only has its line
//! ending normalised. Done here rather than in a patched `rsip`: it is one small, tested pass in
//! front of the parser, and `rsip` stays an unmodified dependency.

use std::borrow::Cow;

/// The compact forms (RFC 3261 §7.3.3 and the extensions that define one), by letter.
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// The full name of a header name as written (compact or not).
pub fn full_name(name: &str) -> &str {
    if let [c] = name.as_bytes() {
        let c = c.to_ascii_lowercase();
        if let Some((_, full)) = COMPACT.iter().find(|(l, _)| *l == c) {
            return full;
        }
    }
    name
}

/// Headers whose values are free text, left as written.
const FREE_TEXT: &[&str] = &["Subject", "User-Agent", "Server", "Organization"];

/// A header value with the optional whitespace around `;` and `=` of its parameters removed
/// (RFC 3261's SEMI and EQUAL are `SWS ";" SWS`, `SWS "=" SWS`), outside quoted strings.
fn tidy_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut quoted = false;
    let mut escaped = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                out.push(c);
            }
            ';' | '=' => {
                while out.ends_with([' ', '\t']) {
                    out.pop();
                }
                out.push(c);
                while chars.peek().is_some_and(|n| *n == ' ' || *n == '\t') {
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A Via value with [`tidy_value`]'s treatment, and the optional whitespace of its sent-protocol
/// and sent-by removed (RFC 3261 §25.1: `SLASH = SWS "/" SWS`, `COLON = SWS ":" SWS`, so
/// `SIP / 2.0 / UDP  host : 5060` is `SIP/2.0/UDP host:5060`).
fn tidy_via(value: &str) -> String {
    let value = tidy_value(value);
    let (head, params) = value.split_at(value.find(';').unwrap_or(value.len()));
    // Only SP and HTAB are LWS here, as in `tidy_value` (a stray CR stays where it is).
    let words: Vec<&str> = head.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let mut out = String::with_capacity(value.len());
    for (i, w) in words.iter().enumerate() {
        let glued = i == 0 || out.ends_with(['/', ':']) || w.starts_with(['/', ':']);
        if !glued {
            out.push(' ');
        }
        out.push_str(w);
    }
    out.push_str(params);
    out
}

/// Headers whose comma-separated values are each a header of their own (RFC 3261 §7.3.1): written
/// one per line, so the parser sees every Via and every route.
const ONE_PER_LINE: &[&str] = &["Via", "Route", "Record-Route", "Contact"];

/// A value's comma-separated parts, commas inside quoted strings and `<…>` not counting.
fn split_values(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut angle, mut start) = (false, false, false, 0);
    for (i, c) in value.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '<' => angle = true,
            '>' => angle = false,
            ',' if !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// Where the header section ends: the index of the empty line's first byte and the body's start.
fn split(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let next = &bytes[i + 1..];
            if next.starts_with(b"\r\n") {
                return Some((i + 1, i + 3));
            }
            if next.starts_with(b"\n") {
                return Some((i + 1, i + 2));
            }
        }
        i += 1;
    }
    None
}

/// The message with its header section in the form `rsip` parses; borrowed when it already is.
/// `datagram`: bytes past Content-Length are dropped (a stream's framing already cut there).
pub fn normalize(bytes: &[u8], datagram: bool) -> Cow<'_, [u8]> {
    let Some((head_end, body_start)) = split(bytes) else {
        return Cow::Borrowed(bytes);
    };
    let head = &bytes[..head_end];
    let body = &bytes[body_start..];
    let Ok(text) = std::str::from_utf8(head) else {
        // Not UTF-8: left to the parser, which refuses it.
        return Cow::Borrowed(bytes);
    };
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        // The start line cannot be folded: a continuation right after it stays a line of its
        // own, for the parser to refuse.
        if line.starts_with([' ', '\t']) && lines.len() > 1 {
            // A folded continuation: one space in its place (RFC 3261 §7.3.1).
            if let Some(last) = lines.last_mut() {
                last.push(' ');
                last.push_str(line.trim_start_matches([' ', '\t']));
            }
            continue;
        }
        lines.push(line.to_string());
    }
    let mut out_lines = Vec::with_capacity(lines.len());
    let mut content_length: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            out_lines.push(line.clone());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            out_lines.push(line.clone());
            continue;
        };
        let name = full_name(name.trim_end_matches([' ', '\t']));
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("Content-Length")
            && content_length.is_none()
            && !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_digit())
        {
            content_length = value.parse().ok();
        }
        if FREE_TEXT.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            out_lines.push(format!("{name}: {value}"));
        } else if ONE_PER_LINE.iter().any(|f| f.eq_ignore_ascii_case(name)) && value != "*" {
            let parts = split_values(value);
            if parts.is_empty() {
                out_lines.push(format!("{name}: "));
            }
            let via = name.eq_ignore_ascii_case("Via");
            for part in parts {
                let part = if via {
                    tidy_via(part)
                } else {
                    tidy_value(part)
                };
                out_lines.push(format!("{name}: {part}"));
            }
        } else {
            out_lines.push(format!("{name}: {}", tidy_value(value)));
        }
    }
    let body = match content_length {
        Some(n) if datagram && body.len() > n => &body[..n],
        _ => body,
    };
    let mut out = out_lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    if out == bytes {
        Cow::Borrowed(bytes)
    } else {
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        String::from_utf8(normalize(s.as_bytes(), true).into_owned()).expect("utf8")
    }

    #[test]
    fn compact_names_become_full_ones() {
        let m = "INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:x@y>;tag=1\r\nt: <sip:a@b>\r\ni: abc\r\nm: <sip:x@h>\r\nl: 0\r\n\r\n";
        let n = norm(m);
        for h in [
            "Via: SIP",
            "From: <",
            "To: <",
            "Call-ID: abc",
            "Contact: <",
            "Content-Length: 0",
        ] {
            assert!(n.contains(h), "{h} in\n{n}");
        }
        assert!(n.starts_with("INVITE sip:a@b SIP/2.0\r\n"));
        assert_eq!(full_name("V"), "Via", "case-insensitive");
        assert_eq!(full_name("Via"), "Via");
        assert_eq!(full_name("q"), "q", "no compact form: as written");
    }

    #[test]
    fn folds_and_whitespace_around_the_colon_are_undone() {
        let m = "OPTIONS sip:a@b SIP/2.0\r\nSubject   :  a\r\n  folded\r\n\tline\r\nTo\t: <sip:a@b>\r\n\r\n";
        assert_eq!(
            norm(m),
            "OPTIONS sip:a@b SIP/2.0\r\nSubject: a folded line\r\nTo: <sip:a@b>\r\n\r\n"
        );
    }

    #[test]
    fn a_datagram_past_its_content_length_is_cut_and_a_body_is_untouched() {
        let m = "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nbody and then junk";
        assert!(norm(m).ends_with("\r\n\r\nbody"));
        let stream = normalize(m.as_bytes(), false);
        assert!(
            stream.ends_with(b"junk"),
            "a stream's framing cuts, not this"
        );
        let lf = "MESSAGE sip:a@b SIP/2.0\nl: 5\n\nx:  y";
        assert_eq!(
            norm(lf),
            "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nx:  y"
        );
    }

    #[test]
    fn whitespace_around_parameters_goes_but_not_inside_quotes_or_free_text() {
        assert_eq!(
            tidy_value("SIP/2.0/UDP h:5060 ; branch = z9hG4bK1 ;rport"),
            "SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport"
        );
        assert_eq!(
            tidy_value("\"a ; b = \\\" c\" <sip:x@y> ; tag = 1"),
            "\"a ; b = \\\" c\" <sip:x@y>;tag=1"
        );
        let m = "OPTIONS sip:a@b SIP/2.0\r\nSubject: a ; b\r\n\r\n";
        assert!(norm(m).contains("Subject: a ; b\r\n"));
    }

    #[test]
    fn several_vias_or_routes_on_one_line_become_one_per_line() {
        let m = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP b;branch=z9hG4bK2\r\n\
                 Route: <sip:p1;lr>, \"x, y\" <sip:p2;lr;q=\"a,b\">\r\nContact: *\r\n\r\n";
        assert_eq!(
            norm(m),
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/TCP b;branch=z9hG4bK2\r\n\
             Route: <sip:p1;lr>\r\nRoute: \"x, y\" <sip:p2;lr;q=\"a,b\">\r\nContact: *\r\n\r\n"
        );
    }

    #[test]
    fn a_via_written_with_optional_whitespace_is_the_plain_one() {
        assert_eq!(
            tidy_via("SIP  /   2.0 /UDP  198.18.1.1 : 5060 ; branch = z9hG4bK1"),
            "SIP/2.0/UDP 198.18.1.1:5060;branch=z9hG4bK1"
        );
        assert_eq!(
            tidy_via("SIP/2.0/TCP [2001:2::1]:5061;branch=z9hG4bK2"),
            "SIP/2.0/TCP [2001:2::1]:5061;branch=z9hG4bK2"
        );
        // A stray CR is not whitespace to glue around (proptest found `""= =` then `""==`).
        assert_eq!(tidy_via("\"\"=\r="), "\"\"=\r=");
    }

    #[test]
    fn a_canonical_message_is_borrowed() {
        let m = "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(normalize(m.as_bytes(), true), Cow::Borrowed(_)));
    }

    proptest::proptest! {
        /// Whatever a peer sends: no panic, and a normalised message is its own normal form.
        #[test]
        fn any_bytes_normalise_without_panic_and_once_is_enough(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            datagram in proptest::prelude::any::<bool>(),
        ) {
            let once = normalize(&bytes, datagram).into_owned();
            let twice = normalize(&once, datagram).into_owned();
            proptest::prop_assert_eq!(once, twice);
        }

        /// Header sections made of the characters that matter here (colons, folds, quotes,
        /// escapes, parameters, compact names): the same two properties.
        #[test]
        fn header_like_sections_normalise_once(
            head in "[ \t:;=\"\\\\avftilmx0-9\r\n]{0,200}",
            datagram in proptest::prelude::any::<bool>(),
        ) {
            let msg = format!("INVITE sip:a@b SIP/2.0\r\n{head}\r\n\r\nbody");
            let once = normalize(msg.as_bytes(), datagram).into_owned();
            let twice = normalize(&once, datagram).into_owned();
            proptest::prop_assert_eq!(once, twice);
        }
    }
}

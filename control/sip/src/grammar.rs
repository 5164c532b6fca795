//! The parts of RFC 3261's grammar (§25.1) that `rsip` is stricter or looser about than the RFC:
//! the request line (single spaces, the version, any `token` method, any URI scheme), `token`,
//! and name-addr / addr-spec header values (To, From, Contact) with their parameters. Each check
//! returns what was wrong in a few words; the caller turns that into a 400, 416 or 505.

/// RFC 3261 `token` characters besides alphanumerics.
const TOKEN_MARKS: &[u8] = b"-.!%*_+`'~";

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || TOKEN_MARKS.contains(&b)
}

/// `token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// A request line, checked: `Method SP Request-URI SP SIP-Version` with single spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    /// The URI's scheme, lower-cased.
    pub scheme: String,
}

/// Why a start line is refused: the status and a reason.
pub type Refusal = (u16, String);

/// Checks a request line (RFC 3261 §7.1, §25.1). The version must be SIP/2.0 (505 otherwise);
/// the Request-URI any `scheme ":" …` without whitespace or `<>` (a SIP URI without headers,
/// §19.1.1 table 1), the method any token.
pub fn request_line(line: &str) -> Result<RequestLine<'_>, Refusal> {
    let malformed = |what: &str| (400, format!("malformed request line: {what}"));
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts[..] else {
        return Err(malformed(
            "not Method SP Request-URI SP SIP-Version with single spaces",
        ));
    };
    if !is_token(method) {
        return Err(malformed("the method is not a token"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let numeric = version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
            && version
                .get(4..)
                .and_then(|v| v.split_once('.'))
                .is_some_and(|(a, b)| is_number(a) && is_number(b));
        return Err(if numeric {
            (
                505,
                format!("{} is not supported", crate::message::short(version)),
            )
        } else {
            malformed("the version is not SIP/2.0")
        });
    }
    let scheme = scheme_of(uri).ok_or_else(|| malformed("the Request-URI has no scheme"))?;
    if uri
        .bytes()
        .any(|b| b <= b' ' || b >= 0x7f || b == b'<' || b == b'>' || b == b'"')
    {
        return Err(malformed("the Request-URI has characters a URI cannot"));
    }
    // The user part may hold a '?' (user-unreserved); after the host it starts headers.
    let host_part = uri.split_once('@').map_or(uri, |(_, h)| h);
    if matches!(scheme.as_str(), "sip" | "sips") && host_part.contains('?') {
        return Err(malformed("a SIP Request-URI cannot carry headers"));
    }
    Ok(RequestLine {
        method,
        uri,
        scheme,
    })
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`, lower-cased, when `uri` starts with one
/// and a colon.
pub fn scheme_of(uri: &str) -> Option<String> {
    let (scheme, _) = uri.split_once(':')?;
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    (first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
    .then(|| scheme.to_ascii_lowercase())
}

/// A To, From or Contact value: `( name-addr / addr-spec ) *( ";" param )`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub uri: &'a str,
    /// Header parameters (after the `>`, or after an addr-spec), names as written.
    pub params: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> NameAddr<'a> {
    /// The value of parameter `name` (case-insensitive): `Some(None)` when it has no value.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// The end (exclusive) of the quoted string starting at `s[0] == '"'`.
fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            b'\r' | b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

fn lws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses a name-addr or addr-spec header value (RFC 3261 §20.10, §25.1). A URI with a comma,
/// question mark or semicolon must be in angle brackets; nothing may stand between `<` and the
/// URI; a display name is a quoted string or tokens.
pub fn name_addr(value: &str) -> Result<NameAddr<'_>, &'static str> {
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() && lws(b[i]) {
        i += 1;
    }
    let (uri, rest_at) = if let Some(lt) = find_unquoted(b, i, b'<') {
        // name-addr: the display name before `<` is a quoted string or tokens.
        let display = value[i..lt].trim_matches([' ', '\t']);
        if display.starts_with('"') {
            let end = quoted_end(display.as_bytes()).ok_or("an unterminated quoted string")?;
            if end != display.len() {
                return Err("text after the quoted display name");
            }
        } else if !display
            .split([' ', '\t'])
            .filter(|w| !w.is_empty())
            .all(is_token)
        {
            return Err("a display name that is neither tokens nor quoted");
        }
        let gt = value[lt..].find('>').map(|g| g + lt).ok_or("no '>'")?;
        let uri = &value[lt + 1..gt];
        if uri.bytes().any(|c| c <= b' ' || c == b'<') {
            return Err("whitespace or '<' inside <>");
        }
        (uri, gt + 1)
    } else {
        if b.get(i) == Some(&b'"') {
            return Err("an unterminated quoted string or no <URI>");
        }
        let end = value[i..].find(';').map_or(value.len(), |e| e + i);
        let uri = value[i..end].trim_end_matches([' ', '\t']);
        if uri.contains(['?', ',', ' ', '\t', '"', '>']) {
            return Err("a URI with '?', ',' or whitespace not in <>");
        }
        (uri, end)
    };
    if scheme_of(uri).is_none() {
        return Err("a URI without a scheme");
    }
    let params = params(&value[rest_at..])?;
    Ok(NameAddr { uri, params })
}

/// The index of the first `c` at or after `from` outside quoted strings.
fn find_unquoted(b: &[u8], from: usize, c: u8) -> Option<usize> {
    let mut i = from;
    while i < b.len() {
        if b[i] == b'"' {
            i += quoted_end(&b[i..])?;
            continue;
        }
        if b[i] == c {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// `*( SEMI generic-param )`, `generic-param = token [ EQUAL ( token / host / quoted-string ) ]`.
fn params(s: &str) -> Result<Vec<(&str, Option<&str>)>, &'static str> {
    let s = s.trim_matches([' ', '\t']);
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let Some(s) = s.strip_prefix(';') else {
        return Err("text after the URI that is not a parameter");
    };
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    loop {
        if i < b.len() && b[i] == b'"' {
            i += quoted_end(&b[i..]).ok_or("an unterminated quoted string")?;
            continue;
        }
        if i == b.len() || b[i] == b';' {
            out.push(param(s[start..i].trim_matches([' ', '\t']))?);
            if i == b.len() {
                return Ok(out);
            }
            start = i + 1;
        }
        i += 1;
    }
}

fn param(p: &str) -> Result<(&str, Option<&str>), &'static str> {
    let (name, value) = match p.split_once('=') {
        Some((n, v)) => (n.trim_end(), Some(v.trim_start())),
        None => (p, None),
    };
    if !is_token(name) {
        return Err("an empty or malformed parameter");
    }
    if let Some(v) = value {
        let ok = if v.starts_with('"') {
            quoted_end(v.as_bytes()) == Some(v.len())
        } else {
            // token, or host (an IPv6 reference has brackets and colons)
            !v.is_empty()
                && v.bytes()
                    .all(|c| is_token_char(c) || matches!(c, b'[' | b']' | b':'))
        };
        if !ok {
            return Err("a malformed parameter value");
        }
    }
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let l = request_line("INVITE sip:a@b SIP/2.0").expect("plain");
        assert_eq!(
            (l.method, l.uri, l.scheme.as_str()),
            ("INVITE", "sip:a@b", "sip")
        );
        let odd = "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0";
        // RFC 4475's intmeth: a '?' in the user part is legal (user-unreserved).
        assert_eq!(request_line(odd).expect("intmeth").scheme, "sip");
        let l = request_line("OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0").expect("scheme");
        assert_eq!(l.scheme, "soap.beep");
        for (line, status) in [
            ("INVITE  sip:a@b SIP/2.0", 400),
            ("INVITE sip:a@b SIP/2.0  ", 400),
            ("INVITE <sip:a@b> SIP/2.0", 400),
            ("INVITE sip:a@b?Route=%3Csip:c%3E SIP/2.0", 400),
            ("INVITE sip:a@b SIP/7.0", 505),
            ("INVITE sip:a@b HTTP/1.1", 400),
            ("IN(VITE sip:a@b SIP/2.0", 400),
            ("INVITE nocolon SIP/2.0", 400),
        ] {
            assert_eq!(
                request_line(line).map_err(|e| e.0).err(),
                Some(status),
                "{line}"
            );
        }
    }

    #[test]
    fn name_addrs_and_addr_specs() {
        let n = name_addr("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>;tag=98asjd8")
            .expect("quoted with escapes");
        assert_eq!(n.uri, "sip:jdrosen@example.com");
        assert_eq!(n.param("TAG"), Some(Some("98asjd8")));
        let n = name_addr("sip:vivekg@chair-dnrc.example.com;tag=1918181833n").expect("addr-spec");
        assert_eq!(n.uri, "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(n.param("tag"), Some(Some("1918181833n")));
        let n = name_addr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.")
            .expect("tokens and odd parameters");
        assert_eq!(n.param("tag"), Some(Some("_token~1'+`*%!-.")));
        assert!(name_addr("isbn:2983792873").is_ok(), "any scheme");
        assert!(name_addr("<sip:a@b;lr>;expires=60;q=0.5;x").is_ok());
        assert!(name_addr("<sip:[2001:2::1]:5060>;received=[2001:2::9]").is_ok());
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Watson, Thomas <sip:t.watson@example.org>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b>;;tag=1",
            "<sip:a@b> junk",
            "<sip:a@b",
            "nothing",
            "<sip:a@b>;tag=\"open",
        ] {
            assert!(name_addr(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_value_panics_the_checks(s in "\\PC{0,80}") {
            let _ = name_addr(&s);
            let _ = request_line(&s);
        }
    }
}

//! SDP security descriptions (SDES, RFC 4568): the `a=crypto` attribute read from a peer's SDP
//! and written into Mediator's own, and fresh master keys for each leg. Mediator is the crypto
//! endpoint on each leg: it never hands one leg's keys to the other.
//!
//! Keys are secrets: [`MasterKey`] zeroizes its bytes when dropped and its `Debug` shows only
//! their length; an [`Crypto`] attribute's `Debug` and every error here name the key by its tag,
//! never by its bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// The SRTP crypto suites Mediator offers and accepts (RFC 4568 §6.2, RFC 7714 §14.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Suite {
    /// Every suite, in Mediator's order of preference for its own offers.
    pub const ALL: [Suite; 4] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AeadAes128Gcm,
        Suite::AeadAes256Gcm,
    ];

    /// The name in SDP.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Master key and master salt lengths, bytes.
    pub fn key_salt_len(self) -> (usize, usize) {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => (16, 14),
            Suite::AeadAes128Gcm => (16, 12),
            Suite::AeadAes256Gcm => (32, 12),
        }
    }

    /// The largest master-key lifetime (packets) a peer may state: 2^48 for every suite here
    /// (RFC 4568 §6.2, RFC 7714 §14.1; SRTCP's own bound of 2^31 is enforced by the SRTP
    /// library, which re-keys or stops at it).
    pub fn max_lifetime_log2(self) -> u32 {
        48
    }
}

/// A master key and master salt (`key || salt`), zeroized when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(Zeroizing<Vec<u8>>);

impl MasterKey {
    /// The concatenated key and salt.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A fresh key for `suite` from the operating system's CSPRNG.
    pub fn generate(suite: Suite) -> Result<MasterKey, SdesError> {
        let (k, s) = suite.key_salt_len();
        let mut v = Zeroizing::new(vec![0u8; k + s]);
        getrandom::getrandom(&mut v).map_err(|_| SdesError::Random)?;
        Ok(MasterKey(v))
    }

    fn base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_slice()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({} bytes)", self.0.len())
    }
}

/// A master key identifier (RFC 3711 §3.1): the value sent in each packet, `len` bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mki {
    pub value: u64,
    pub len: u8,
}

/// Session parameters that change what SRTP protects (RFC 4568 §6.3). Mediator refuses each one
/// explicitly (see [`Crypto::refusal`]) rather than silently protecting less or more than a peer
/// asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionParams {
    pub unencrypted_srtp: bool,
    pub unencrypted_srtcp: bool,
    pub unauthenticated_srtp: bool,
    /// Any other parameter (KDR, FEC_ORDER, FEC_KEY, WSH, or unknown), as written.
    pub other: Vec<String>,
}

/// One `a=crypto` attribute.
#[derive(Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: Suite,
    pub key: MasterKey,
    /// The master key's lifetime as its base-2 logarithm, when given.
    pub lifetime_log2: Option<u32>,
    pub mki: Option<Mki>,
    pub params: SessionParams,
}

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("key", &self.key)
            .field("lifetime_log2", &self.lifetime_log2)
            .field("mki", &self.mki)
            .field("params", &self.params)
            .finish()
    }
}

/// Why an `a=crypto` line was not understood. Never carries key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    #[error("a=crypto: {0}")]
    Syntax(&'static str),
    #[error("a=crypto: unknown crypto suite '{0}'")]
    UnknownSuite(String),
    #[error("a=crypto tag {tag}: the key is {got} bytes, {suite} needs {want}")]
    KeyLength {
        tag: u32,
        suite: &'static str,
        got: usize,
        want: usize,
    },
    #[error("a=crypto tag {tag}: {what}")]
    Value { tag: u32, what: &'static str },
    #[error("no randomness for a new SRTP key")]
    Random,
}

/// At most this many bytes of an attribute are read; longer ones are refused unread.
const MAX_LINE: usize = 1024;

impl Crypto {
    /// Parses the value of an `a=crypto:` attribute (what follows the colon).
    pub fn parse(value: &str) -> Result<Crypto, SdesError> {
        if value.len() > MAX_LINE {
            return Err(SdesError::Syntax("longer than 1024 bytes"));
        }
        let mut fields = value.split_ascii_whitespace();
        let tag: u32 = fields
            .next()
            .filter(|t| (1..=9).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or(SdesError::Syntax("the tag is not 1 to 9 digits"))?;
        let suite_name = fields.next().ok_or(SdesError::Syntax("no crypto suite"))?;
        let suite = Suite::from_name(suite_name)
            .ok_or_else(|| SdesError::UnknownSuite(printable(suite_name)))?;
        let key_params = fields
            .next()
            .ok_or(SdesError::Syntax("no key parameters"))?;
        // Several master keys (`;`-separated, each with its MKI) are legal; Mediator uses the
        // first and ignores the rest, which a sender may only switch to by MKI.
        let first = key_params.split(';').next().unwrap_or_default();
        let inline = first
            .strip_prefix("inline:")
            .ok_or(SdesError::Syntax("the key method is not 'inline:'"))?;
        let mut parts = inline.split('|');
        let key_b64 = parts.next().unwrap_or_default();
        let bytes = Zeroizing::new(STANDARD.decode(key_b64).map_err(|_| SdesError::Value {
            tag,
            what: "the key is not base64",
        })?);
        let (k, s) = suite.key_salt_len();
        if bytes.len() != k + s {
            return Err(SdesError::KeyLength {
                tag,
                suite: suite.name(),
                got: bytes.len(),
                want: k + s,
            });
        }
        let mut lifetime_log2 = None;
        let mut mki = None;
        for p in parts {
            if let Some((v, l)) = p.split_once(':') {
                if mki.is_some() {
                    return Err(SdesError::Value {
                        tag,
                        what: "two MKIs",
                    });
                }
                let len: u8 =
                    l.parse()
                        .ok()
                        .filter(|l| (1..=128).contains(l))
                        .ok_or(SdesError::Value {
                            tag,
                            what: "the MKI length is not 1 to 128",
                        })?;
                let value: u64 = v.parse().map_err(|_| SdesError::Value {
                    tag,
                    what: "the MKI value is not a number",
                })?;
                if len < 8 && value >> (8 * u32::from(len)) != 0 {
                    return Err(SdesError::Value {
                        tag,
                        what: "the MKI value does not fit its length",
                    });
                }
                mki = Some(Mki { value, len });
            } else {
                if lifetime_log2.is_some() || mki.is_some() {
                    return Err(SdesError::Value {
                        tag,
                        what: "the lifetime is misplaced",
                    });
                }
                lifetime_log2 = Some(lifetime(p).ok_or(SdesError::Value {
                    tag,
                    what: "the lifetime is neither 2^N nor a power of two",
                })?);
            }
        }
        let mut params = SessionParams::default();
        for f in fields {
            match f {
                "UNENCRYPTED_SRTP" => params.unencrypted_srtp = true,
                "UNENCRYPTED_SRTCP" => params.unencrypted_srtcp = true,
                "UNAUTHENTICATED_SRTP" => params.unauthenticated_srtp = true,
                other => params.other.push(printable(other)),
            }
        }
        Ok(Crypto {
            tag,
            suite,
            key: MasterKey(bytes),
            lifetime_log2,
            mki,
            params,
        })
    }

    /// Why Mediator will not use this attribute, or `None` when it can. A peer's line is
    /// refused, not silently weakened or strengthened: Mediator protects exactly what both
    /// sides agreed on.
    pub fn refusal(&self) -> Option<String> {
        let p = &self.params;
        if p.unencrypted_srtp || p.unencrypted_srtcp || p.unauthenticated_srtp {
            return Some(format!(
                "crypto tag {}: UNENCRYPTED_SRTP, UNENCRYPTED_SRTCP and UNAUTHENTICATED_SRTP are not supported",
                self.tag
            ));
        }
        if let Some(o) = p.other.first() {
            return Some(format!(
                "crypto tag {}: session parameter {o} is not supported",
                self.tag
            ));
        }
        if self
            .lifetime_log2
            .is_some_and(|l| l > self.suite.max_lifetime_log2())
        {
            return Some(format!(
                "crypto tag {}: the key lifetime is over 2^{}",
                self.tag,
                self.suite.max_lifetime_log2()
            ));
        }
        if self.mki.is_some_and(|m| m.len > 4) {
            return Some(format!(
                "crypto tag {}: MKIs longer than 4 bytes are not supported",
                self.tag
            ));
        }
        None
    }

    /// The attribute's value as Mediator writes it. It contains the key: it goes only into SDP,
    /// never into a log.
    pub fn to_sdp(&self) -> Zeroizing<String> {
        let mut s = format!("{} {} inline:", self.tag, self.suite.name());
        s.push_str(&self.key.base64());
        if let Some(l) = self.lifetime_log2 {
            s.push_str(&format!("|2^{l}"));
        }
        if let Some(m) = self.mki {
            s.push_str(&format!("|{}:{}", m.value, m.len));
        }
        Zeroizing::new(s)
    }

    /// Mediator's answer to this offered attribute: the same tag, suite and MKI length (the MKI
    /// value 1), with a fresh key of its own. No lifetime: the peer's lifetime is about the
    /// peer's key, and Mediator's key is good for the suite's maximum (the relay re-keys on
    /// nothing sooner).
    pub fn answer(&self) -> Result<Crypto, SdesError> {
        Ok(Crypto {
            tag: self.tag,
            suite: self.suite,
            key: MasterKey::generate(self.suite)?,
            lifetime_log2: None,
            mki: self.mki.map(|m| Mki {
                value: 1,
                len: m.len,
            }),
            params: SessionParams::default(),
        })
    }

    /// One of Mediator's own offers: tag `tag`, `suite`, a fresh key, no lifetime, no MKI.
    pub fn offer(tag: u32, suite: Suite) -> Result<Crypto, SdesError> {
        Ok(Crypto {
            tag,
            suite,
            key: MasterKey::generate(suite)?,
            lifetime_log2: None,
            mki: None,
            params: SessionParams::default(),
        })
    }
}

/// `2^N` or a decimal power of two, as its logarithm.
fn lifetime(s: &str) -> Option<u32> {
    if let Some(n) = s.strip_prefix("2^") {
        return n.parse::<u32>().ok().filter(|n| *n <= 64);
    }
    let v: u64 = s.parse().ok()?;
    v.is_power_of_two().then(|| v.trailing_zeros())
}

/// A peer's token for an error message: at most 32 characters, graphic ASCII only.
fn printable(s: &str) -> String {
    s.chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// The attribute Mediator picks from a peer's offer: the first it can use, in the offer's
/// order (the offerer's preference, RFC 4568 §7.1.1), or why none is usable.
pub fn choose(offered: &[Result<Crypto, SdesError>]) -> Result<&Crypto, String> {
    let mut why = Vec::new();
    for c in offered {
        match c {
            Ok(c) => match c.refusal() {
                None => return Ok(c),
                Some(r) => why.push(r),
            },
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(if why.is_empty() {
        "no a=crypto attribute".into()
    } else {
        format!("no usable a=crypto: {}", why.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lync's line (key from RFC 4568's example): a 2^31 lifetime and a one-byte MKI of 1.
    const LYNC: &str =
        "2 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|1:1";

    #[test]
    fn lyncs_line_parses_and_round_trips() {
        let c = Crypto::parse(LYNC).expect("parses");
        assert_eq!(c.tag, 2);
        assert_eq!(c.suite, Suite::AesCm128HmacSha1_80);
        assert_eq!(c.key.bytes().len(), 30);
        assert_eq!(c.lifetime_log2, Some(31));
        assert_eq!(c.mki, Some(Mki { value: 1, len: 1 }));
        assert_eq!(c.refusal(), None);
        assert_eq!(c.to_sdp().as_str(), LYNC);
        let again = Crypto::parse(&c.to_sdp()).expect("our own line parses");
        assert_eq!(again, c);
    }

    #[test]
    fn every_suite_offers_a_fresh_key_of_its_length() {
        for s in Suite::ALL {
            let a = Crypto::offer(1, s).expect("offer");
            let b = Crypto::offer(1, s).expect("offer");
            let (k, salt) = s.key_salt_len();
            assert_eq!(a.key.bytes().len(), k + salt, "{}", s.name());
            assert_ne!(a.key, b.key, "each offer has its own key");
            assert_eq!(Crypto::parse(&a.to_sdp()).expect("parses"), a);
        }
    }

    #[test]
    fn an_answer_keeps_tag_suite_and_mki_length_with_a_new_key_and_no_lifetime() {
        let offer = Crypto::parse(LYNC).expect("parses");
        let ans = offer.answer().expect("answer");
        assert_eq!(
            (ans.tag, ans.suite, ans.lifetime_log2),
            (2, offer.suite, None),
            "the offer's 2^31 is about the peer's key"
        );
        assert_eq!(ans.mki, Some(Mki { value: 1, len: 1 }));
        assert_ne!(ans.key, offer.key, "never the peer's key");
    }

    #[test]
    fn keys_never_show_in_debug_or_errors() {
        let c = Crypto::parse(LYNC).expect("parses");
        let key_b64 = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let dbg = format!("{c:?} {:?}", c.key);
        assert!(!dbg.contains(key_b64) && !dbg.contains("89, 83"), "{dbg}");
        let short = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7";
        let e = Crypto::parse(short).expect_err("short key");
        assert!(!e.to_string().contains("WVNf"), "{e}");
        assert!(e.to_string().contains("needs 30"), "{e}");
    }

    #[test]
    fn bad_lines_name_what_is_wrong() {
        let cases = [
            ("", "tag"),
            ("x AES_CM_128_HMAC_SHA1_80 inline:AAAA", "tag"),
            ("1234567890 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "tag"),
            ("1", "no crypto suite"),
            (
                "1 F8_128_HMAC_SHA1_80 inline:AAAA",
                "unknown crypto suite 'F8_128_HMAC_SHA1_80'",
            ),
            ("1 AES_CM_128_HMAC_SHA1_80", "no key parameters"),
            ("1 AES_CM_128_HMAC_SHA1_80 uri:http://x", "'inline:'"),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!", "not base64"),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|300:1",
                "does not fit",
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|1:0",
                "MKI length",
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|1000",
                "lifetime",
            ),
        ];
        for (line, want) in cases {
            let e = Crypto::parse(line).expect_err(line);
            assert!(e.to_string().contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn session_parameters_and_long_mkis_are_refused_explicitly() {
        let key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        for (extra, want) in [
            (" UNENCRYPTED_SRTCP", "UNENCRYPTED_SRTCP"),
            (" UNAUTHENTICATED_SRTP", "UNAUTHENTICATED_SRTP"),
            (" KDR=1", "KDR=1"),
        ] {
            let c = Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}{extra}"))
                .expect("parses");
            let r = c.refusal().expect("refused");
            assert!(r.contains(want), "{r}");
        }
        let c = Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31|1:5"))
            .expect("parses");
        assert!(c.refusal().expect("refused").contains("4 bytes"));
        let c =
            Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^49")).expect("parses");
        assert!(c.refusal().expect("refused").contains("lifetime"));
    }

    #[test]
    fn the_first_usable_offer_is_chosen_in_the_offerers_order() {
        let key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let offered = vec![
            Crypto::parse("1 F8_128_HMAC_SHA1_80 inline:AAAA"),
            Crypto::parse(&format!(
                "2 AES_CM_128_HMAC_SHA1_80 inline:{key} UNENCRYPTED_SRTCP"
            )),
            Crypto::parse(&format!("3 AES_CM_128_HMAC_SHA1_32 inline:{key}")),
            Crypto::parse(&format!("4 AES_CM_128_HMAC_SHA1_80 inline:{key}")),
        ];
        assert_eq!(choose(&offered).expect("one is usable").tag, 3);
        let why = choose(&offered[..2]).expect_err("none usable");
        assert!(
            why.contains("F8_128") && why.contains("UNENCRYPTED_SRTCP"),
            "{why}"
        );
        assert_eq!(choose(&[]).expect_err("none"), "no a=crypto attribute");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_attributes_never_panic(s in "\\PC{0,200}") {
            let _ = Crypto::parse(&s);
        }

        #[test]
        fn mutated_lines_never_panic(cut in 0usize..80, byte in 0u8..128) {
            let mut v = LYNC.as_bytes().to_vec();
            let i = cut % v.len();
            v[i] = byte;
            if let Ok(s) = std::str::from_utf8(&v)
                && let Ok(c) = Crypto::parse(s)
            {
                let _ = c.refusal();
                let _ = c.to_sdp();
            }
        }
    }
}

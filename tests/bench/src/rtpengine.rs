//! The peer mode: rtpengine (Debian's rtpengine-daemon, userspace forwarding: no kernel table) in
//! the relay namespace, with calls set up through its ng control protocol (bencoded dictionaries
//! over UDP), so the same run measures the relay operators run today beside Mediator.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_bencode::value::Value;

use crate::{FIRST_PORT, stop_requested};
use mediator_tests::lab::{GW_RELAY, POOL_RELAY, in_netns};

/// Where rtpengine is looked for; the harness measures it only when it is there.
pub fn binary() -> Option<PathBuf> {
    ["/usr/bin/rtpengine", "/usr/sbin/rtpengine"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

const NG_PORT: u16 = 22222;

pub struct Rtpengine {
    child: Child,
    ng: UdpSocket,
    log: PathBuf,
    cookie: u64,
}

fn bytes(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

fn dict(entries: &[(&str, Value)]) -> Value {
    Value::Dict(
        entries
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect(),
    )
}

/// An ng message: a cookie, a space, a bencoded dictionary.
pub fn encode(cookie: &str, msg: &Value) -> anyhow::Result<Vec<u8>> {
    let mut out = format!("{cookie} ").into_bytes();
    out.extend(serde_bencode::to_bytes(msg)?);
    Ok(out)
}

/// The dictionary of an ng reply to `cookie`.
pub fn decode(cookie: &str, reply: &[u8]) -> anyhow::Result<BTreeMap<String, Value>> {
    let prefix = format!("{cookie} ");
    let body = reply
        .strip_prefix(prefix.as_bytes())
        .with_context(|| format!("ng reply without cookie {cookie}"))?;
    match serde_bencode::from_bytes::<Value>(body)? {
        Value::Dict(d) => Ok(d
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect()),
        _ => bail!("ng reply is not a dictionary"),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// The audio port and connection address of an SDP body.
pub fn sdp_media(sdp: &str) -> Option<(std::net::IpAddr, u16)> {
    let addr = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
        .trim()
        .parse()
        .ok()?;
    let port = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((addr, port))
}

fn sdp(addr: SocketAddrV4) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=bench\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = addr.ip(),
        port = addr.port()
    )
}

/// The same with SDES: RTP/SAVP and one AES_CM_128_HMAC_SHA1_80 key.
fn srtp_sdp(addr: SocketAddrV4, key: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=bench\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
        base64::engine::general_purpose::STANDARD.encode(key),
        ip = addr.ip(),
        port = addr.port()
    )
}

/// The key of the first AES_CM_128_HMAC_SHA1_80 `a=crypto` of an SDP.
pub fn sdp_key(sdp: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let line = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=crypto:"))
        .find(|l| l.contains(" AES_CM_128_HMAC_SHA1_80 "))?;
    let inline = line.split_whitespace().nth(2)?.strip_prefix("inline:")?;
    base64::engine::general_purpose::STANDARD
        .decode(inline.split('|').next()?)
        .ok()
}

impl Rtpengine {
    /// Starts rtpengine in namespace `ns` with interfaces "pool" and "gw" on the lab's relay
    /// addresses, kernel forwarding off, one worker thread.
    pub fn start(ns: &str, sessions: usize) -> anyhow::Result<Self> {
        let bin = binary().context(
            "rtpengine is not installed (apt-get install -y --no-install-recommends rtpengine-daemon)",
        )?;
        let log = std::env::temp_dir().join(format!(
            "mediator-bench-rtpengine-{}.log",
            std::process::id()
        ));
        let last_port = (u32::from(FIRST_PORT) + 4 * sessions as u32 + 64).min(65000);
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&bin)
            .args([
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--log-level=4",
                "--table=-1",
                "--num-threads=1",
                "--delete-delay=0",
                &format!("--interface=pool/{POOL_RELAY}"),
                &format!("--interface=gw/{GW_RELAY}"),
                &format!("--listen-ng=127.0.0.1:{NG_PORT}"),
                &format!("--port-min={FIRST_PORT}"),
                &format!("--port-max={last_port}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting rtpengine")?;
        let ng = in_netns(ns, || UdpSocket::bind("127.0.0.1:0")).context("ng socket")?;
        ng.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut r = Self {
            child,
            ng,
            log,
            cookie: 0,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                bail!("rtpengine exited at start ({status}): {}", r.log_tail());
            }
            if r.command(&dict(&[("command", bytes("ping"))])).is_ok() {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "rtpengine did not answer ng ping within 10 s: {}",
                    r.log_tail()
                );
            }
        }
        Ok(r)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Sends one ng command and returns the reply's dictionary; an error result is an error.
    fn command(&mut self, msg: &Value) -> anyhow::Result<BTreeMap<String, Value>> {
        self.cookie += 1;
        let cookie = format!("mb{}", self.cookie);
        self.ng
            .send_to(&encode(&cookie, msg)?, ("127.0.0.1", NG_PORT))?;
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let Ok(n) = self.ng.recv(&mut buf) else {
                continue;
            };
            let Ok(reply) = decode(&cookie, &buf[..n]) else {
                continue; // a late reply to an earlier cookie
            };
            let result = text(reply.get("result")).unwrap_or_default();
            if result == "ok" || result == "pong" {
                return Ok(reply);
            }
            bail!(
                "rtpengine answered {result}: {}",
                text(reply.get("error-reason")).unwrap_or_default()
            );
        }
        bail!("rtpengine did not answer within 2 s")
    }

    /// Sets up `sessions` calls, the caller at `pool_peer` (pool side) and the callee at
    /// `gw_peer`, and returns each call's rtpengine addresses (pool side, gateway side). With
    /// `pool_srtp`, the caller offers SRTP with that key and rtpengine bridges it to plain RTP
    /// toward the callee (`transport-protocol`); then each call's key of rtpengine's toward the
    /// caller is returned too.
    #[allow(clippy::type_complexity)]
    pub fn offer_answer(
        &mut self,
        sessions: usize,
        pool_peer: SocketAddrV4,
        gw_peer: SocketAddrV4,
        pool_srtp: Option<&[u8]>,
    ) -> anyhow::Result<(Vec<(SocketAddr, SocketAddr)>, Vec<Vec<u8>>)> {
        let mut out = Vec::with_capacity(sessions);
        let mut keys = Vec::new();
        for i in 0..sessions {
            if stop_requested() {
                bail!("interrupted");
            }
            let call_id = format!("bench-{i}");
            let mut offer = vec![
                ("command", bytes("offer")),
                ("call-id", bytes(&call_id)),
                ("from-tag", bytes("caller")),
                (
                    "sdp",
                    bytes(&match pool_srtp {
                        Some(k) => srtp_sdp(pool_peer, k),
                        None => sdp(pool_peer),
                    }),
                ),
                ("direction", Value::List(vec![bytes("pool"), bytes("gw")])),
            ];
            if pool_srtp.is_some() {
                offer.push(("transport-protocol", bytes("RTP/AVP")));
            }
            let offer = self.command(&dict(&offer))?;
            let to_callee = text(offer.get("sdp")).context("offer answered without SDP")?;
            let answer = self.command(&dict(&[
                ("command", bytes("answer")),
                ("call-id", bytes(&call_id)),
                ("from-tag", bytes("caller")),
                ("to-tag", bytes("callee")),
                ("sdp", bytes(&sdp(gw_peer))),
            ]))?;
            let to_caller = text(answer.get("sdp")).context("answer without SDP")?;
            if pool_srtp.is_some() {
                anyhow::ensure!(
                    !to_callee.contains("a=crypto") && to_callee.contains("RTP/AVP"),
                    "rtpengine did not bridge to plain RTP toward the callee: {to_callee}"
                );
                keys.push(sdp_key(&to_caller).with_context(|| {
                    format!("rtpengine's answer to the SRTP caller has no key: {to_caller}")
                })?);
            }
            let (gw_ip, gw_port) = sdp_media(&to_callee).context("no media in the offer's SDP")?;
            let (pool_ip, pool_port) =
                sdp_media(&to_caller).context("no media in the answer's SDP")?;
            out.push((
                SocketAddr::new(pool_ip, pool_port),
                SocketAddr::new(gw_ip, gw_port),
            ));
        }
        Ok((out, keys))
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ng_messages_round_trip() {
        let msg = dict(&[
            ("command", bytes("offer")),
            ("direction", Value::List(vec![bytes("pool"), bytes("gw")])),
        ]);
        let wire = encode("c1", &msg).expect("encode");
        assert_eq!(
            String::from_utf8_lossy(&wire),
            "c1 d7:command5:offer9:directionl4:pool2:gwee"
        );
        let reply = decode("c7", b"c7 d6:result2:ok3:sdp5:v=0\r\ne").expect("decode");
        assert_eq!(text(reply.get("result")).as_deref(), Some("ok"));
        assert!(decode("c8", b"c7 d6:result2:oke").is_err(), "wrong cookie");
        assert!(decode("c7", b"c7 le").is_err(), "not a dictionary");
    }

    #[test]
    fn sdp_media_reads_address_and_port() {
        let s = sdp("198.18.2.2:5000".parse().expect("addr"));
        assert_eq!(
            sdp_media(&s),
            Some(("198.18.2.2".parse().expect("ip"), 5000))
        );
        assert_eq!(sdp_media("v=0\r\n"), None);
    }

    #[test]
    fn the_srtp_offer_carries_the_key_and_answers_give_theirs() {
        let key = [7u8; 30];
        let s = srtp_sdp("198.18.1.2:5000".parse().expect("addr"), &key);
        assert!(s.contains(" RTP/SAVP 0"), "{s}");
        assert_eq!(sdp_key(&s), Some(key.to_vec()));
        assert_eq!(
            sdp_key(&sdp("198.18.1.2:5000".parse().expect("addr"))),
            None
        );
    }
}

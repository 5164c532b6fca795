//! SIP over TLS in the lab: certificates made with openssl (a CA, Mediator's for both relay
//! addresses, the gateway's for 198.18.2.2), and a minimal SIP peer on one accepted TLS
//! connection — Debian's SIPp 3.6.1 has no TLS. The peer frames messages by Content-Length and
//! leaves what to answer to the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;

/// A CA, a certificate for Mediator (both relay addresses and 127.0.0.1), one for the gateway's address and one
/// for its DNS name `tls.lab.test`, one for `alias.lab.test` and one for both, made with openssl
/// in `dir` (`ca.pem`, `mediator.pem`/`.key`, `gateway.pem`/`.key`, `gateway-fqdn.pem`/`.key`,
/// `gateway-alias.pem`/`.key`, `gateway-both.pem`/`.key`).
pub fn certificates(dir: &Path) -> anyhow::Result<()> {
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("openssl")?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Mediator test CA",
    ])?;
    for (name, ips) in [
        // Also 127.0.0.1: the APIs' certificate in the authentication tests.
        ("mediator", "IP:198.18.1.1,IP:198.18.2.1,IP:127.0.0.1"),
        ("gateway", "IP:198.18.2.2"),
        // The gateway as named in DNS (the DNS lab's `tls.lab.test`), without its address.
        ("gateway-fqdn", "DNS:tls.lab.test"),
        // A second name of the same address (`alias.lab.test`) alone, and both names.
        ("gateway-alias", "DNS:alias.lab.test"),
        ("gateway-both", "DNS:tls.lab.test,DNS:alias.lab.test"),
    ] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName={ips}\n"),
        )?;
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ])?;
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ])?;
    }
    Ok(())
}

/// One accepted TLS connection carrying SIP, as the gateway (with `gateway.pem`, or another of
/// [`certificates`], from `dir`).
pub struct TlsPeer {
    tls: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsPeer {
    /// Accepts one connection on `listener` (bound in the gateway's namespace) within `limit`.
    pub fn accept(listener: &TcpListener, dir: &Path, limit: Duration) -> anyhow::Result<TlsPeer> {
        Self::accept_as(listener, dir, "gateway", limit)
    }

    /// [`Self::accept`] presenting certificate `name` (`gateway`, `gateway-fqdn`) from `dir`.
    pub fn accept_as(
        listener: &TcpListener,
        dir: &Path,
        name: &str,
        limit: Duration,
    ) -> anyhow::Result<TlsPeer> {
        let chain: Vec<_> =
            rustls::pki_types::CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))?
                .collect::<Result<_, _>>()?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key")))?;
        let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + limit;
        let tcp = loop {
            match listener.accept() {
                Ok((tcp, _)) => break tcp,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        bail!("no TLS connection within {limit:?}");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        tcp.set_nonblocking(false)?;
        tcp.set_read_timeout(Some(Duration::from_millis(200)))?;
        let conn = rustls::ServerConnection::new(std::sync::Arc::new(cfg))?;
        Ok(TlsPeer {
            tls: rustls::StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        })
    }

    /// The next whole message (headers and Content-Length bytes of body) within `limit`.
    pub fn read(&mut self, limit: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Content-Length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let msg: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return Ok(String::from_utf8_lossy(&msg).to_string());
                }
            }
            if Instant::now() > deadline {
                bail!("no whole SIP message within {limit:?}");
            }
            match self.tls.read(&mut chunk) {
                Ok(0) => bail!("the connection closed"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn send(&mut self, msg: &str) -> anyhow::Result<()> {
        self.tls.write_all(msg.as_bytes())?;
        self.tls.flush()?;
        Ok(())
    }
}

/// A header's value in a message (the first one named `name`, case-insensitive).
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A response to `req` with `status` and optional SDP: its Via, From, Call-ID and CSeq copied,
/// its To with `tag` added.
pub fn response(req: &str, status: &str, tag: &str, contact: &str, sdp: Option<&str>) -> String {
    let head = req.split("\r\n\r\n").next().unwrap_or_default();
    let copied: String = head
        .lines()
        .filter(|l| {
            ["via:", "from:", "call-id:", "cseq:"]
                .iter()
                .any(|h| l.to_ascii_lowercase().starts_with(h))
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    let to = header(req, "to").unwrap_or("<sip:x>");
    let to = if to.contains(";tag=") || tag.is_empty() {
        to.to_string()
    } else {
        format!("{to};tag={tag}")
    };
    let body = sdp.unwrap_or_default();
    let ctype = if sdp.is_some() {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "SIP/2.0 {status}\r\n{copied}To: {to}\r\nContact: {contact}\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

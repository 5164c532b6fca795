//! RFC 4475 ("SIP Torture Test Messages") as a test: the 49 messages of its appendix, byte for
//! byte (`tests/rfc4475/*.dat`, the RFC's own archive), fed to the engine from the lab pool's
//! Front End over UDP, and over TCP through the stream framer. Each gets what RFC 4475 says of it:
//! a valid message is accepted and processed (a call routed, an OPTIONS answered, an unknown method
//! 501, a REGISTER 405 — Mediator is no registrar), an invalid one its 4xx/505, a malformed or
//! stray response is dropped. None panics, and no error reply is larger than its request.

use std::time::Instant;

use mediator_b2bua::{Action, Config, Engine, Now, Peer};
use mediator_sip::Transport;
use mediator_sip::framing::{Frame, Framer};

/// What Mediator sends back for one message: the final statuses, in order (100 Trying left out).
type Outcome = Vec<u16>;

/// One line of `tests/rfc4475/EXPECTED`: a message and the final responses it must draw.
struct Case {
    name: String,
    section: String,
    udp: Outcome,
    tcp: Outcome,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475/EXPECTED"),
    )
    .expect("tests/rfc4475/EXPECTED");
    let statuses = |s: &str| -> Outcome {
        match s.trim() {
            "-" => Vec::new(),
            s => s.split(',').map(|n| n.parse().expect("a status")).collect(),
        }
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '|').collect();
            assert_eq!(f.len(), 4, "EXPECTED line: {l}");
            Case {
                name: f[0].trim().into(),
                udp: statuses(f[1]),
                tcp: statuses(f[2]),
                section: f[3].trim().into(),
            }
        })
        .collect()
}

fn message(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/rfc4475")
        .join(format!("{name}.dat"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn front_end(transport: Transport) -> Peer {
    Peer {
        remote: "198.18.1.2:5060".parse().expect("address"),
        local: "198.18.1.1:5060".parse().expect("address"),
        transport,
    }
}

/// Feeds one message (a datagram, or a stream cut by the framer) and returns the final statuses
/// sent back, checking every reply on the way.
fn run(name: &str, transport: Transport) -> Outcome {
    let mut topo = mediator_topology::testing::lab();
    if let Some(g) = topo.configs.get_mut("global") {
        g.value.settings.options_interval_secs = Some(0);
    }
    if transport == Transport::Tcp {
        // The Front End is reached over TCP: it is a configured peer only over TCP.
        for p in topo.pools.values_mut() {
            p.value.next_hop.transport = mediator_topology::model::Transport::Tcp;
        }
    }
    let bytes = message(name);
    let frames = match transport {
        Transport::Udp => vec![bytes.clone()],
        _ => {
            let mut framer = Framer::default();
            framer.push(&bytes);
            let mut frames = Vec::new();
            while let Ok(Some(f)) = framer.next_frame() {
                if let Frame::Message(m) = f {
                    frames.push(m);
                }
            }
            frames
        }
    };
    let mut engine = Engine::new(Config::default());
    let now = Now {
        mono: Instant::now(),
        unix_ms: 1_700_000_000_000,
    };
    let from = front_end(transport);
    let mut out = Vec::new();
    for frame in frames {
        for action in engine.on_message(&topo, &frame, from, now) {
            let Action::Send { to, bytes: reply } = action else {
                continue;
            };
            if to != from {
                continue; // toward a gateway: the call was routed (none is, in these cases)
            }
            let text = String::from_utf8_lossy(&reply).into_owned();
            let status: u16 = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|r| r.get(..3))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{name}: not a response:\n{text}"));
            if transport != Transport::Udp {
                // Over a stream the peer cuts the reply out with its Content-Length.
                let mut framer = Framer::default();
                framer.push(&reply);
                assert_eq!(
                    framer.next_frame(),
                    Ok(Some(Frame::Message(reply.clone()))),
                    "{name}: a reply a stream peer cannot frame:\n{text}"
                );
            }
            if status == 100 {
                continue;
            }
            assert!(
                status < 400 || reply.len() <= frame.len(),
                "{name}: a {status} of {} bytes answers {} bytes",
                reply.len(),
                frame.len()
            );
            // (A stateless 400 echoes the peer's malformed headers, so it is read as text.)
            let has = |h: &str| {
                text.lines().any(|l| {
                    l.split(':')
                        .next()
                        .is_some_and(|n| n.trim().eq_ignore_ascii_case(h))
                })
            };
            let must = match status {
                405 => Some("allow"),
                406 | 415 => Some("accept"),
                420 => Some("unsupported"),
                _ => None,
            };
            if let Some(h) = must {
                assert!(has(h), "{name}: {status} without {h}:\n{text}");
            }
            out.push(status);
        }
    }
    out
}

#[test]
fn every_rfc_4475_message_gets_what_the_rfc_says() {
    let mut files: Vec<String> =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475"))
            .expect("the messages")
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".dat")
                    .map(String::from)
            })
            .collect();
    files.sort();
    let cases = cases();
    let mut listed: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
    listed.sort();
    assert_eq!(files, listed, "every message of the archive has its case");
    assert_eq!(files.len(), 49, "RFC 4475's appendix has 49 messages");
    let mut wrong = Vec::new();
    for c in &cases {
        for (transport, want) in [(Transport::Udp, &c.udp), (Transport::Tcp, &c.tcp)] {
            let got = run(&c.name, transport);
            if got != *want {
                wrong.push(format!(
                    "{} (§{}) over {}: sent {got:?}, RFC 4475 wants {want:?}",
                    c.name,
                    c.section,
                    transport.name()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

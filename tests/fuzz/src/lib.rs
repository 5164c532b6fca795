//! The fuzz targets' bodies, shared by the afl.rs binaries (`src/bin/`) and by this crate's own
//! tests over the seed inputs. Each takes arbitrary bytes and must never panic; a panic, or a
//! broken property asserted here, is a crash afl records.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mediator_b2bua::media::MediaAnswer;
use mediator_b2bua::sdp::{Anchor, Sdp};
use mediator_b2bua::{Action, Config, Engine, Now, Peer, Transport};
use mediator_topology::Topology;

/// Where the lab's peers are: the Front End, a gateway on two trunk ports, and a stranger.
fn peer(selector: u8) -> Peer {
    let (remote, local) = match selector % 5 {
        0 => ("198.18.1.2:5060", "198.18.1.1:5060"),
        1 => ("198.18.2.2:5060", "198.18.2.1:5060"),
        2 => ("198.18.2.2:5062", "198.18.2.1:5062"),
        3 => ("198.18.2.2:5064", "198.18.2.1:5064"),
        _ => ("203.0.113.9:5060", "198.18.1.1:5060"),
    };
    Peer {
        remote: remote.parse().expect("literal"),
        local: local.parse().expect("literal"),
        transport: match selector / 5 % 3 {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            _ => Transport::Tls,
        },
    }
}

/// SIP message handling: the input is up to 8 messages separated by `\0\0`, each led by a byte
/// choosing its peer and transport, given to a fresh engine (lab topology) in turn, with relay
/// answers for every session it asks for and its timers run between messages — so a fuzzed
/// INVITE goes on to the gateway and a second message meets a call in progress.
pub struct SipTarget {
    topology: Topology,
}

impl Default for SipTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl SipTarget {
    pub fn new() -> Self {
        // Without OPTIONS probing (as the engine's own tests): each input's messages are the
        // only traffic, and a timer run is cheap.
        let mut topology = mediator_topology::testing::lab();
        if let Some(g) = topology.configs.get_mut("global") {
            g.value.settings.options_interval_secs = Some(0);
        }
        SipTarget { topology }
    }

    pub fn run(&self, data: &[u8]) {
        let mut engine = Engine::new(Config::default());
        let mut now = Now {
            mono: Instant::now(),
            unix_ms: 1_700_000_000_000,
        };
        let anchor = |ip: [u8; 4], port: u16| Anchor {
            addr: IpAddr::from(ip),
            rtp_port: port,
            rtcp_port: port + 1,
        };
        for (i, part) in split(data).into_iter().take(8).enumerate() {
            let Some((&sel, msg)) = part.split_first() else {
                continue;
            };
            let mut actions = engine.on_message(&self.topology, msg, peer(sel), now);
            // Answer every session request at once, as a relay would.
            for _ in 0..4 {
                let mut next = Vec::new();
                for a in &actions {
                    if let Action::CreateMedia {
                        call,
                        pool,
                        requests,
                    } = a
                    {
                        let answers = (0..requests.len())
                            .map(|n| {
                                let base = 30_000 + (i as u16) * 16 + (n as u16) * 4;
                                (
                                    "relay".to_string(),
                                    MediaAnswer {
                                        session_id: format!("s{i}-{n}"),
                                        pool: Some(anchor([198, 18, 1, 1], base)),
                                        gateway: Some(anchor([198, 18, 2, 1], base + 2)),
                                    },
                                )
                            })
                            .collect();
                        next.extend(engine.on_media_created(*call, pool, Ok(answers), now));
                    }
                }
                if next.is_empty() {
                    break;
                }
                actions = next;
            }
            now += Duration::from_millis(600);
            engine.on_timer(&self.topology, now);
        }
        // Whatever happened, the engine still answers questions about itself.
        let _ = engine.calls(now);
        let _ = engine.active_calls();
    }
}

/// The parts of `data` between `\0\0` separators.
fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(2).position(|w| w == b"\0\0") {
        parts.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    parts.push(rest);
    parts
}

/// The SDP rewriter: what parses is rewritten toward the relay for every m-line, and the result
/// must parse again with the relay's address and ports in place; the other questions asked of a
/// parsed SDP must not panic either.
pub fn sdp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sdp) = Sdp::parse(text) else {
        return;
    };
    let streams = sdp.streams();
    let _ = (sdp.on_hold(), sdp.has_keys(), sdp.rejecting_answer());
    for i in 0..streams.len() {
        let _ = sdp.crypto(i);
    }
    let anchors: Vec<Option<Anchor>> = streams
        .iter()
        .enumerate()
        .map(|(i, _)| {
            Some(Anchor {
                addr: IpAddr::from([198, 18, 2, 1]),
                rtp_port: 40_000 + 2 * i as u16,
                rtcp_port: 40_001 + 2 * i as u16,
            })
        })
        .collect();
    if let Ok(out) = sdp.rewrite(&anchors) {
        let again = Sdp::parse(&out)
            .unwrap_or_else(|e| panic!("a rewrite does not parse again: {e}\n{out}"));
        assert_eq!(
            again.streams().len(),
            streams.len(),
            "a rewrite keeps every m-line:\n{out}"
        );
    }
}

/// The dataplane's gRPC input: a userspace-only relay on loopback (16 port pairs), driven through
/// its gRPC service as a client would, with the input's first byte choosing the RPC and the rest
/// decoded as its request message. Every session is deleted after each input, so state and
/// ports never run out between inputs.
pub struct DataplaneTarget {
    rt: tokio::runtime::Runtime,
    service: mediator_dataplane::service::Service,
    _state: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl DataplaneTarget {
    pub fn new() -> Self {
        use mediator_dataplane::config::Config as DpConfig;
        use mediator_dataplane::forwarder::{Forwarder, NoOffload};
        let state = TempDir(
            std::env::temp_dir().join(format!("mediator-fuzz-dataplane-{}", std::process::id())),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cfg = DpConfig {
            port_min: 47_000,
            port_max: 47_031,
            state_dir: state.0.clone(),
            ..DpConfig::default()
        };
        let service = rt.block_on(async {
            let forwarder: std::sync::Arc<dyn Forwarder> = std::sync::Arc::new(NoOffload {
                reason: "fuzzing",
                capacity: 1024,
            });
            let (dp, notices) = mediator_dataplane::manager::Dataplane::new(
                cfg,
                forwarder,
                tokio::runtime::Handle::current(),
            )
            .expect("dataplane");
            tokio::spawn(dp.clone().run_notices(notices));
            mediator_dataplane::service::Service::new(
                dp,
                mediator_dataplane::service::XdpInfo {
                    mode: mediator_proto::dataplane::v1::XdpMode::Off,
                    note: String::new(),
                    interfaces: Vec::new(),
                },
            )
            // Keys are taken (as over TLS with client certificates) so their checks run too.
            .with_remote_keys(true)
        });
        DataplaneTarget {
            rt,
            service,
            _state: state,
        }
    }

    pub fn run(&self, data: &[u8]) {
        use mediator_proto::dataplane::v1 as pb;
        use pb::dataplane_service_server::DataplaneService;
        use prost::Message;
        use tonic::Request;
        let Some((&which, body)) = data.split_first() else {
            return;
        };
        let s = &self.service;
        self.rt.block_on(async {
            match which % 6 {
                0 => {
                    if let Ok(r) = pb::CreateSessionRequest::decode(body) {
                        let _ = s.create_session(Request::new(r)).await;
                    }
                }
                1 => {
                    // An update of a session that exists: made first, then updated.
                    let made = s
                        .create_session(Request::new(pb::CreateSessionRequest {
                            session_id: "fuzz-upd".into(),
                            ..Default::default()
                        }))
                        .await;
                    if let (Ok(_), Ok(mut r)) = (made, pb::UpdateSessionRequest::decode(body)) {
                        r.session_id = "fuzz-upd".into();
                        let _ = s.update_session(Request::new(r)).await;
                    }
                }
                2 => {
                    if let Ok(r) = pb::UpdateSessionRequest::decode(body) {
                        let _ = s.update_session(Request::new(r)).await;
                    }
                }
                3 => {
                    if let Ok(r) = pb::DeleteSessionRequest::decode(body) {
                        let _ = s.delete_session(Request::new(r)).await;
                    }
                }
                4 => {
                    if let Ok(r) = pb::GetSessionRequest::decode(body) {
                        let _ = s.get_session(Request::new(r)).await;
                    }
                }
                _ => {
                    if let Ok(r) = pb::RenewLeaseRequest::decode(body) {
                        let _ = s.renew_lease(Request::new(r)).await;
                    }
                    if let Ok(r) = pb::ListSessionsRequest::decode(body) {
                        let _ = s.list_sessions(Request::new(r)).await;
                    }
                }
            }
            // Back to empty: every session made by this input is deleted.
            if let Ok(list) = s
                .list_sessions(Request::new(pb::ListSessionsRequest::default()))
                .await
            {
                for session in list.into_inner().sessions {
                    let _ = s
                        .delete_session(Request::new(pb::DeleteSessionRequest {
                            session_id: session.session_id,
                            ..Default::default()
                        }))
                        .await;
                }
            }
        });
    }
}

impl Default for DataplaneTarget {
    fn default() -> Self {
        Self::new()
    }
}

/// The seeds of `target` (files in `seeds/<target>/`).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_runs_through_its_target() {
        let sip = SipTarget::new();
        let sip_seeds = seeds("sip_message");
        assert!(!sip_seeds.is_empty());
        for s in &sip_seeds {
            sip.run(s);
        }
        for s in seeds("sdp_rewrite") {
            sdp(&s);
        }
        let dp = DataplaneTarget::new();
        for s in seeds("dataplane_grpc") {
            dp.run(&s);
        }
    }

    #[test]
    fn the_separator_splits_messages() {
        assert_eq!(split(b"a\0\0b\0c"), vec![&b"a"[..], &b"b\0c"[..]]);
    }
}
